#!/usr/bin/env python3
"""The learning rate that follows the batch (docs/lr-scaling.md): the experiments behind its tables.

    bench/lr_scaling.sh [--part cnn|gpt|all] [--seeds N] [--epochs E] [--text PATH] [--out DIR]

cnn  The cnn on Fashion-MNIST with SGD (momentum 0.9, lr 0.01 at B0 = 32, cosine with the default
     5% warmup), E epochs each: B0 itself, then batches 256 and 1024 by accumulation (micro-batches
     of 32) with no scaling, linear and sqrt; the median test accuracy and loss over the seeds. Then
     AdaScale at 256 = 8 × B0 with the base run's schedule length (E epochs of B0's steps): its
     optimizer steps against B0's, and its test loss against B0's.
gpt  A small gpt on tinyshakespeare with AdamW (lr 1e-3 at B0 = 8 sequences of 64 tokens, cosine):
     B0, then 4× and 16× by accumulation with none, linear and sqrt, at equal tokens; the median
     validation bits/byte.
Each run is one `gradacc train`; every number comes from the runs' JSONL logs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
GRADACC = os.path.join(HERE, "..", "build", "gradacc")


def train(args, log):
    p = subprocess.run([GRADACC, "train", "--progress", "off", "--threads", "2", "--log", log] + args,
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"gradacc train {' '.join(args)} failed: {p.stderr.strip() or p.stdout.strip()[-300:]}")
    rows = [json.loads(l) for l in open(log)]
    steps = [r for r in rows if "step" in r]
    final = [r for r in rows if r.get("event") == "eval" and "at_step" not in r][-1]
    return steps, final


def table(title, header, rows):
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


def cnn_part(a):
    base = ["--model", "cnn", "--micro-batch", "32", "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.01",
            "--schedule", "cosine"]
    runs = [("32 (B0)", 1, "none")]
    for accum in (8, 32):
        for rule in ("none", "linear", "sqrt"):
            runs.append((str(32 * accum), accum, rule))
    results = {}
    for batch, accum, rule in runs:
        for seed in range(1, a.seeds + 1):
            extra = [] if rule == "none" else ["--lr-scaling", rule, "--base-batch", "32"]
            steps, final = train(base + ["--epochs", str(a.epochs), "--accum", str(accum), "--seed", str(seed)] + extra,
                                 os.path.join(a.out, f"cnn_{accum}_{rule}_{seed}.jsonl"))
            results.setdefault((batch, rule), []).append((final["accuracy"], final["loss"], len(steps),
                                                          steps[-1]["lr_scale"]))
            print(f"  cnn batch {batch} {rule} seed {seed}: test accuracy {final['accuracy']:.4f}, loss "
                  f"{final['loss']:.4f}, {len(steps)} steps", flush=True)
    b0 = statistics.median(x[0] for x in results[("32 (B0)", "none")])
    rows = []
    for (batch, rule), xs in results.items():
        acc = statistics.median(x[0] for x in xs)
        rows.append([batch, rule, f"{xs[0][3]:g}", xs[0][2], " / ".join(f"{x[0] * 100:.2f}" for x in xs),
                     f"{acc * 100:.2f}", f"{(acc - b0) * 100:+.2f}", f"{statistics.median(x[1] for x in xs):.4f}"])
    table(f"cnn, SGD momentum 0.9, lr 0.01 at B0 = 32, {a.epochs} epochs, {a.seeds} seeds",
          ["batch", "scaling", "factor", "steps", "test accuracy per seed (%)", "median (%)", "vs B0 (points)",
           "median test loss"], rows)

    # AdaScale at 8 × B0, over B0's schedule length.
    b0_steps = results[("32 (B0)", "none")][0][2]
    b0_loss = statistics.median(x[1] for x in results[("32 (B0)", "none")])
    ada = []
    for seed in range(1, a.seeds + 1):
        steps, final = train(base + ["--accum", "8", "--seed", str(seed), "--steps", str(b0_steps), "--lr-scaling",
                                     "adascale", "--base-batch", "32"],
                             os.path.join(a.out, f"cnn_adascale_{seed}.jsonl"))
        gains = [r["lr_scale"] for r in steps]
        ada.append((len(steps), final["loss"], final["accuracy"], statistics.mean(gains), gains[-1]))
        print(f"  cnn adascale seed {seed}: {len(steps)} steps, test loss {final['loss']:.4f}", flush=True)
    rows = [[seed + 1, n, f"{n / b0_steps:.3f}", f"{loss:.4f}", f"{(loss / b0_loss - 1) * 100:+.2f}%",
             f"{acc * 100:.2f}", f"{mean_r:.2f}", f"{last_r:.2f}"]
            for seed, (n, loss, acc, mean_r, last_r) in enumerate(ada)]
    table(f"AdaScale at 256 = 8 × B0 over B0's {b0_steps} steps of schedule (B0's median test loss {b0_loss:.4f})",
          ["seed", "optimizer steps", "of B0's", "test loss", "vs B0's", "test accuracy (%)", "mean r", "last r"],
          rows)


def gpt_part(a):
    tokens_b0 = 8 * 64
    base = ["--model", "gpt", "--data", "text:" + a.text, "--layers", "2", "--heads", "4", "--dim", "64",
            "--context", "64", "--micro-batch", "8", "--optimizer", "adamw", "--lr", "1e-3", "--schedule", "cosine"]
    sequences = 8 * 16 * a.gpt_steps16  # equal tokens: 16× runs take gpt_steps16 steps
    runs = [("8 (B0)", 1, "none")] + [(str(8 * k), k, r) for k in (4, 16) for r in ("none", "linear", "sqrt")]
    results = {}
    for batch, accum, rule in runs:
        for seed in range(1, a.seeds + 1):
            extra = [] if rule == "none" else ["--lr-scaling", rule, "--base-batch", str(tokens_b0)]
            steps, final = train(base + ["--accum", str(accum), "--seed", str(seed), "--steps",
                                         str(sequences // (8 * accum))] + extra,
                                 os.path.join(a.out, f"gpt_{accum}_{rule}_{seed}.jsonl"))
            results.setdefault((batch, rule), []).append((final["bits_per_byte"], len(steps), steps[-1]["lr_scale"]))
            print(f"  gpt batch {batch} {rule} seed {seed}: {final['bits_per_byte']:.4f} bits/byte", flush=True)
    b0 = statistics.median(x[0] for x in results[("8 (B0)", "none")])
    rows = [[batch, rule, f"{xs[0][2]:.4g}", xs[0][1], " / ".join(f"{x[0]:.4f}" for x in xs),
             f"{statistics.median(x[0] for x in xs):.4f}", f"{statistics.median(x[0] for x in xs) - b0:+.4f}"]
            for (batch, rule), xs in results.items()]
    table(f"gpt 2 × 64 (context 64), AdamW lr 1e-3 at B0 = 8 sequences ({tokens_b0} tokens), {sequences} sequences "
          f"each, {a.seeds} seeds", ["batch (sequences)", "scaling", "factor", "steps", "bits/byte per seed",
                                     "median", "vs B0"], rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["cnn", "gpt", "all"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--gpt-steps16", type=int, default=40, help="optimizer steps of the 16× gpt runs")
    ap.add_argument("--text", default=os.path.join(HERE, "..", "..", "shared", "data", "tinyshakespeare.txt"))
    ap.add_argument("--out", default=tempfile.mkdtemp())
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    print(f"logs: {a.out}")
    if a.part in ("cnn", "all"):
        cnn_part(a)
    if a.part in ("gpt", "all"):
        gpt_part(a)


if __name__ == "__main__":
    main()
