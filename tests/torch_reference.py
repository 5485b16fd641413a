"""PyTorch reference for gradacc's models, rebuilt from docs/models.md.

Usage: torch_reference.py MODEL NORM WEIGHTS BATCH OUT
  WEIGHTS  safetensors written by gradacc (parameter and buffer names as documented)
  BATCH    safetensors with "inputs" and "targets"
  OUT      receives "loss" (mean cross-entropy), "logits" and "grad.<name>" for every parameter,
           computed the ordinary way: the whole batch in one forward/backward, in train mode.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
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
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.norm1 = norm_layer(norm, 16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.norm2 = norm_layer(norm, 32)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.norm1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.norm2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def main(model, norm, weights, batch, out):
    net = Mlp() if model == "mlp" else Cnn(norm)
    net.load_state_dict(load_file(weights), strict=True)
    net.train()
    data = load_file(batch)
    logits = net(data["inputs"])
    loss = F.cross_entropy(logits, data["targets"])
    loss.backward()
    result = {"loss": loss.detach().reshape(1), "logits": logits.detach()}
    for name, p in net.named_parameters():
        result["grad." + name] = p.grad
    save_file(result, out)


if __name__ == "__main__":
    main(*sys.argv[1:6])
