"""The Python training loops gradacc is measured against, on the same workloads.

  seed        the plain loop from the seed documents: loss / steps, backward, step every N
  compiled    the seed loop as users who want GPU speed write it: the model's forward and the loss
              under one torch.compile (TorchInductor, --compile-mode), and fused AdamW
  accelerate  Hugging Face Accelerate's accumulate() loop

Same models (tests/torch_reference.py, the PyTorch rebuild of docs/models.md), same initial weights
(--init, written by bench/run.py or bench/gpu.py and also given to gradacc), data already in
memory, same shuffled order of examples, AdamW, no clipping, all cores. On a GPU (--device cuda)
each loop runs the way its users write it: batches moved with .to(device), torch.autocast for
bf16/fp16, GradScaler for fp16 (Accelerate: mixed_precision=...), PyTorch's default AdamW for CUDA.
Prints one JSON line: samples/s and tokens/s over the steps after --warmup, peak resident memory
and, on a GPU, the caching allocator's peak.
"""
import argparse
import gzip
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from torch_reference import build  # noqa: E402


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist():
    d = os.environ.get("GRADACC_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    x = torch.from_numpy(read_idx(f"{d}/train-images-idx3-ubyte.gz").astype(np.float32))
    x = ((x / 255.0 - 0.2860) / 0.3530).unsqueeze(1).contiguous()
    y = torch.from_numpy(read_idx(f"{d}/train-labels-idx1-ubyte.gz").astype(np.int64))
    return x, y


def text_sequences(path, context):
    """Byte sequences as gradacc cuts them (docs/models.md): blank-line documents, ≤ context predictions."""
    raw = open(path, "rb").read()
    seqs, start, n = [], 0, len(raw)
    docs = []
    while start < n:
        while start < n and raw[start] == 10:
            start += 1
        if start >= n:
            break
        cut = raw.find(b"\n\n", start)
        end = n if cut < 0 else cut + 1
        docs.append((start, end))
        start = end
    for d, (b, e) in enumerate(docs):
        if (d + 1) % 10 == 0:
            continue  # validation documents
        k = b
        while k + 1 < e:
            seqs.append(torch.frombuffer(bytearray(raw[k:min(k + context + 1, e)]), dtype=torch.uint8).long())
            k += context
    return seqs


def text_batch(seqs, idx):
    longest = max(len(seqs[i]) - 1 for i in idx)
    x = torch.zeros(len(idx), longest, dtype=torch.long)
    y = torch.full((len(idx), longest), -100, dtype=torch.long)
    for r, i in enumerate(idx):
        s = seqs[i]
        x[r, :len(s) - 1] = s[:-1]
        y[r, :len(s) - 1] = s[1:]
    return x, y


MASK = (1 << 64) - 1


def gradacc_order(size, seed, epoch=0):
    """The epoch order gradacc uses (src/batch/window_sampler.cc): Fisher–Yates over splitmix64 with
    Lemire's bounded draw, so both sides train on exactly the same micro-batches."""
    state = (seed * 0x2545F4914F6CDD1D + epoch + 1) & MASK

    def next64():
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def bounded(bound):
        m = next64() * bound
        low = m & MASK
        if low < bound:
            threshold = (-bound & MASK) % bound
            while low < threshold:
                m = next64() * bound
                low = m & MASK
        return m >> 64

    order = list(range(size))
    for i in range(size - 1, 0, -1):
        j = bounded(i + 1)
        order[i], order[j] = order[j], order[i]
    return torch.tensor(order)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--loop", choices=["seed", "compiled", "accelerate"], required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--norm", default="group")
    p.add_argument("--init", required=True)
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--micro-batch", type=int, required=True)
    p.add_argument("--accum", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--profile", default="", help="Chrome trace of optimizer steps 3-5 (as gradacc train --profile)")
    p.add_argument("--compile-mode", default="default", help="torch.compile's mode for --loop compiled")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if cuda:  # fp32 stays exact, as in gradacc (TF32 off)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    model = build(a.model, a.norm, a.init)
    model.load_state_dict(load_file(a.init), strict=True)
    model.to(device)
    model.train()
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.precision)
    if a.model == "gpt":
        seqs = text_sequences(a.data[len("text:"):], a.context)
        size = len(seqs)
        get = lambda idx: text_batch(seqs, idx)  # noqa: E731
    else:
        x, y = fashion_mnist()
        size = x.shape[0]
        get = lambda idx: (x[idx], y[idx])  # noqa: E731
    order = gradacc_order(size, a.seed)
    micro_total = a.steps * a.accum
    if micro_total * a.micro_batch > size:
        raise SystemExit("the benchmark run must fit in one epoch")
    batches = [order[i * a.micro_batch:(i + 1) * a.micro_batch] for i in range(micro_total)]

    def forward_and_loss(xb, yb, own_autocast=True):
        # The seed loop wraps forward and loss in autocast itself; Accelerate's prepare() wraps the
        # model's forward for its users, who compute the loss outside it.
        with torch.autocast(device.type, dtype=amp_dtype, enabled=own_autocast and amp_dtype is not None):
            logits = model(xb)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), ignore_index=-100)

    def loss_of(idx, own_autocast=True, fn=forward_and_loss):
        xb, yb = get(idx)
        real = int((yb != -100).sum())  # counted on the host, before the copy
        xb, yb = xb.to(device), yb.to(device)
        return fn(xb, yb, own_autocast), yb.shape[0], real

    def now():
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    samples = tokens = 0
    t0 = None
    prof = None

    def profile_at(i):
        """Optimizer steps 3-5 (micro-batches 2·accum to 5·accum), as gradacc train --profile."""
        nonlocal prof
        if not a.profile:
            return
        if i == 2 * a.accum and prof is None:
            acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
            prof = torch.profiler.profile(activities=acts)
            prof.start()
        elif (i == 5 * a.accum or i < 0) and prof is not None:
            prof.stop()
            prof.export_chrome_trace(a.profile)
            prof = None
    if a.loop in ("seed", "compiled"):
        compiled = a.loop == "compiled"
        # The compiled loop: forward and loss traced as one graph (so the loss head fuses with the
        # model's last ops), compiled on the first micro-batch, inside the warm-up; fused AdamW.
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, **({"fused": True} if compiled else {}))
        forward_loss = loss_of
        if compiled:
            compiled_fn = torch.compile(forward_and_loss, mode=a.compile_mode)
            forward_loss = lambda idx: loss_of(idx, fn=compiled_fn)  # noqa: E731
        scaler = torch.amp.GradScaler(device.type, enabled=a.precision == "fp16")
        opt.zero_grad()
        for i, idx in enumerate(batches):
            profile_at(i)
            if i == a.warmup * a.accum:
                t0 = now()
            loss, n, real = forward_loss(idx)
            scaler.scale(loss / a.accum).backward()
            if (i + 1) % a.accum == 0:
                scaler.step(opt)
                scaler.update()
                opt.zero_grad()
                _ = loss.item()  # the loop logs its loss once per step
            if t0 is not None:
                samples += n
                tokens += real
    else:
        from accelerate import Accelerator
        accelerator = Accelerator(gradient_accumulation_steps=a.accum, cpu=not cuda,
                                  mixed_precision=a.precision if a.precision != "fp32" else "no")
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
        model, opt = accelerator.prepare(model, opt)
        for i, idx in enumerate(batches):
            profile_at(i)
            if i == a.warmup * a.accum:
                t0 = now()
            with accelerator.accumulate(model):
                loss, n, real = loss_of(idx, own_autocast=False)
                accelerator.backward(loss)
                opt.step()
                opt.zero_grad()
                if accelerator.sync_gradients:
                    _ = loss.item()
            if t0 is not None:
                samples += n
                tokens += real
    seconds = now() - t0
    profile_at(-1)  # a run shorter than 5 steps saves what it profiled
    result = {"loop": a.loop, "samples_per_s": samples / seconds, "tokens_per_s": tokens / seconds,
              "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if cuda:
        result["peak_cuda_bytes"] = torch.cuda.max_memory_allocated(device)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
