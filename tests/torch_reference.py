"""PyTorch reference for gradacc's models, rebuilt from docs/models.md.

Usage: torch_reference.py MODEL NORM WEIGHTS BATCH OUT [LABEL_SMOOTHING]
  WEIGHTS  safetensors written by gradacc (parameter and buffer names as documented)
  BATCH    safetensors with "inputs" and "targets"
  OUT      receives "loss" (mean cross-entropy over non-padding targets), "logits" and
           "grad.<name>" for every parameter, computed the ordinary way: the whole batch in one
           forward/backward, in train mode. For gpt the sizes come from WEIGHTS' metadata.
"""
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def norm_layer(kind, channels):
    return {"batch": lambda: nn.BatchNorm2d(channels),
            "group": lambda: nn.GroupNorm(8, channels),
            "layer": lambda: nn.GroupNorm(1, channels),
            "none": lambda: nn.Identity()}[kind]()


class Cnn(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.norm1 = norm_layer(norm, 32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.norm2 = norm_layer(norm, 64)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.norm1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.norm2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def token_norm(kind, dim):
    return nn.LayerNorm(dim, eps=1e-5) if kind == "layer" else nn.RMSNorm(dim, eps=1e-5)


class Block(nn.Module):
    def __init__(self, dim, heads, norm):
        super().__init__()
        self.heads = heads
        self.ln_1 = token_norm(norm, dim)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(dim, 3 * dim)
        self.attn.c_proj = nn.Linear(dim, dim)
        self.ln_2 = token_norm(norm, dim)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(dim, 4 * dim)
        self.mlp.c_proj = nn.Linear(4 * dim, dim)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.attn.c_attn(self.ln_1(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn.c_proj(y.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))


class Gpt(nn.Module):
    def __init__(self, layers, heads, dim, context, norm, vocab=256):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.h = nn.ModuleList([Block(dim, heads, norm) for _ in range(layers)])
        self.ln_f = token_norm(norm, dim)

    def forward(self, tokens):
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()  # head tied to the token embedding


def gpt2_init(model, layers):
    """gradacc's gpt initialization (src/model/gpt.cc): N(0, 0.02) for weights and embeddings, zero
    biases, norms at one and zero, and the residual projections (c_proj) at 0.02 / sqrt(2 * layers)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or name.startswith("ln_"):
                continue
            if name.endswith(".bias"):
                p.zero_()
            elif name.endswith("c_proj.weight"):
                p.normal_(0.0, 0.02 / math.sqrt(2 * layers))
            else:
                p.normal_(0.0, 0.02)
    return model


def build(model, norm, weights):
    if model == "mlp":
        return Mlp()
    if model == "cnn":
        return Cnn(norm)
    with safe_open(weights, framework="pt") as f:
        meta = f.metadata()
    return Gpt(int(meta["layers"]), int(meta["heads"]), int(meta["dim"]), int(meta["context"]), norm)


def main(model, norm, weights, batch, out, label_smoothing="0"):
    net = build(model, norm, weights)
    net.load_state_dict(load_file(weights), strict=True)
    net.train()
    data = load_file(batch)
    logits = net(data["inputs"])
    # Mean over every target that is not padding (-100): tokens for text, samples otherwise.
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), data["targets"].reshape(-1), ignore_index=-100,
                           label_smoothing=float(label_smoothing))
    loss.backward()
    result = {"loss": loss.detach().reshape(1), "logits": logits.detach()}
    for name, p in net.named_parameters():
        result["grad." + name] = p.grad
    save_file(result, out)


if __name__ == "__main__":
    main(*sys.argv[1:7])
