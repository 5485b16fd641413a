"""The Python training loops gradacc is measured against, on the same workloads.

  seed        the plain loop from the seed documents: loss / steps, backward, step every N
  accelerate  Hugging Face Accelerate's accumulate() loop

Same models (tests/torch_reference.py, the PyTorch rebuild of docs/models.md), same initial weights
(--init, written by bench/run.py and also given to gradacc), data already in memory, same shuffled
order of examples, AdamW, no clipping, all cores. Prints one JSON line: samples/s and tokens/s over
the steps after --warmup, and peak resident memory.
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
    d = "/usr/share/datasets/fashion-mnist"
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
    """The epoch order gradacc uses (src/data/window_sampler.cc): Fisher–Yates over splitmix64 with
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
    p.add_argument("--loop", choices=["seed", "accelerate"], required=True)
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
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    model = build(a.model, a.norm, a.init)
    model.load_state_dict(load_file(a.init), strict=True)
    model.train()
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

    def loss_of(idx):
        xb, yb = get(idx)
        logits = model(xb)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), ignore_index=-100), yb

    samples = tokens = 0
    t0 = None
    if a.loop == "seed":
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
        opt.zero_grad()
        for i, idx in enumerate(batches):
            if i == a.warmup * a.accum:
                t0 = time.perf_counter()
            loss, yb = loss_of(idx)
            (loss / a.accum).backward()
            if (i + 1) % a.accum == 0:
                opt.step()
                opt.zero_grad()
                _ = loss.item()  # the loop logs its loss once per step
            if t0 is not None:
                samples += yb.shape[0]
                tokens += int((yb != -100).sum())
    else:
        from accelerate import Accelerator
        accelerator = Accelerator(gradient_accumulation_steps=a.accum, cpu=True)
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
        model, opt = accelerator.prepare(model, opt)
        for i, idx in enumerate(batches):
            if i == a.warmup * a.accum:
                t0 = time.perf_counter()
            with accelerator.accumulate(model):
                loss, yb = loss_of(idx)
                accelerator.backward(loss)
                opt.step()
                opt.zero_grad()
                if accelerator.sync_gradients:
                    _ = loss.item()
            if t0 is not None:
                samples += yb.shape[0]
                tokens += int((yb != -100).sum())
    seconds = time.perf_counter() - t0
    print(json.dumps({"loop": a.loop, "samples_per_s": samples / seconds, "tokens_per_s": tokens / seconds,
                      "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
