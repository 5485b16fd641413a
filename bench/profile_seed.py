#!/usr/bin/env python3
"""The seed loop's gpt step under PyTorch's profiler, for comparison with `gradacc train --profile`.

    python3 bench/profile_seed.py [--micro 16] [--accum 8] [--out seed_trace.json]
    python3 bench/profile_summary.py seed_trace.json

The seed loop of bench/peers.py (the gpt of tests/torch_reference.py, 4 layers, dim 128, context 128,
tinyshakespeare, AdamW, 2 threads) runs two windows of warm-up, then three under the profiler,
as `--profile` profiles steps 3-5. The initial weights come from bench/run.py's write_init.
"""
import argparse
import os
import sys
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import peers  # noqa: E402
import run  # noqa: E402
from torch_reference import Gpt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--micro", type=int, default=16)
    ap.add_argument("--accum", type=int, default=8)
    ap.add_argument("--out", default="seed_trace.json")
    a = ap.parse_args()
    torch.set_num_threads(2)
    init = os.path.join(tempfile.mkdtemp(), "gpt.safetensors")
    run.write_init("gpt", init)
    model = Gpt(4, 4, 128, 128, "layer")
    model.load_state_dict(load_file(init))
    seqs = peers.text_sequences(run.TEXT, 128)
    order = peers.gradacc_order(len(seqs), 0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def window(w):
        for m in range(a.accum):
            first = (w * a.accum + m) * a.micro
            xb, yb = peers.text_batch(seqs, order[first:first + a.micro])
            logits = model(xb)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), ignore_index=-100)
            (loss / a.accum).backward()
        opt.step()
        opt.zero_grad()
        loss.item()

    for w in range(2):
        window(w)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
        for w in range(2, 5):
            window(w)
    p.export_chrome_trace(a.out)
    print(f"trace of 3 windows: {a.out}")


if __name__ == "__main__":
    main()
