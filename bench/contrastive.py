#!/usr/bin/env python3
"""The contrastive job (InfoNCE over two views of Fashion-MNIST, the cnn), measured side by side in one
run. Prints Markdown for docs/contrastive.md:

  time     seconds per example of gradient caching (the window's negatives) against plain
           accumulation of each micro-batch's own InfoNCE (--negatives micro-batch), same windows and
           micro-batches, alternating which runs first, the median of REPS runs each;
  memory   the peak tensor memory of every step (JSONL peak_bytes) and the log's cache_bytes for
           window 64 and window 512 in micro-batches of 8, and window 512 in one micro-batch (the full
           batch, for scale); above the static part (`plan --fit`), and whether
           peak(512 @ 8) <= peak(64 @ 8) + cache(512) + 5%;
  quality  linear-probe test accuracy after the same number of examples at windows 16, 64 and 256
           in micro-batches of 16, with the window's negatives and with the micro-batch's, per seed.

    bench/contrastive.sh [--part time,memory,quality] [--reps 3] [--examples 16384] [--seeds 0,1]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

GRADACC = os.path.join(os.path.dirname(__file__), "..", "build", "gradacc")
MIB = 1 << 20
BASE = ["--objective", "contrastive", "--model", "cnn", "--progress", "off"]


def train(args):
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "log.jsonl")
        p = subprocess.run([GRADACC, "train", "--log", log] + BASE + args, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"gradacc train {' '.join(args)} failed: {p.stderr.strip() or p.stdout.strip()}")
        rows = [json.loads(l) for l in open(log)]
    steps = [r for r in rows if "step" in r]
    probe = [r["linear_probe_accuracy"] for r in rows if "linear_probe_accuracy" in r]
    seconds = float(re.search(r"optimizer steps in ([0-9.]+) s", p.stdout).group(1))
    return steps, (probe[0] if probe else None), seconds


def part_time(a):
    window, micro, steps = 256, 32, a.time_steps
    args = ["--train-limit", str(window * steps), "--global-batch", str(window), "--micro-batch", str(micro),
            "--steps", str(steps), "--threads", "2"]
    per = {"window": [], "micro-batch": []}
    for rep in range(a.reps):
        order = ["window", "micro-batch"] if rep % 2 == 0 else ["micro-batch", "window"]
        for n in order:
            _, _, s = train(args + ["--negatives", n])
            per[n].append(s / (window * steps))
    w, m = statistics.median(per["window"]), statistics.median(per["micro-batch"])
    print(f"### Time per example: window {window} in micro-batches of {micro}, {steps} steps, {a.reps} runs each\n")
    print("| negatives | median ms per example | runs |")
    print("|---|---|---|")
    for n, v in (("window (gradient caching)", per["window"]), ("micro-batch (plain accumulation)", per["micro-batch"])):
        print(f"| {n} | {1e3 * statistics.median(v):.3f} | {', '.join(f'{1e3 * x:.3f}' for x in v)} |")
    print(f"\ngradient caching / plain accumulation: **{w / m:.2f}×**\n")


def static_bytes():
    p = subprocess.run([GRADACC, "plan", "--fit", "--json", "--memory-budget", "64GiB", "--global-batch", "64",
                        "--micro-batch", "8", "--train-limit", "8192"] + BASE[:4], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"plan --fit failed: {p.stderr.strip()}")
    return json.loads(p.stdout)["static_bytes"]


def part_memory(a):
    static = static_bytes()
    rows = {}
    for name, window, micro in (("64 @ 8", 64, 8), ("512 @ 8", 512, 8), ("512 @ 512 (full batch)", 512, 512)):
        steps, _, _ = train(["--train-limit", "8192", "--global-batch", str(window), "--micro-batch", str(micro),
                             "--steps", "3", "--threads", "2"])
        rows[name] = (max(r["peak_bytes"] for r in steps), steps[0]["cache_bytes"])
    print(f"### Peak tensor memory (static part {static / MIB:.1f} MiB: parameters, optimizer, the data set)\n")
    print("| window @ micro-batch | peak | above static | cache_bytes |")
    print("|---|---|---|---|")
    for name, (peak, cache) in rows.items():
        print(f"| {name} | {peak / MIB:.1f} MiB | {(peak - static) / MIB:.2f} MiB | {cache / MIB:.2f} MiB |")
    p64, p512 = rows["64 @ 8"][0], rows["512 @ 8"][0]
    bound = (p64 + rows["512 @ 8"][1]) * 1.05
    print(f"\npeak(512 @ 8) = {p512 / MIB:.1f} MiB ≤ (peak(64 @ 8) + cache(512)) × 1.05 = {bound / MIB:.1f} MiB: "
          f"**{'yes' if p512 <= bound else 'NO'}**. Above static: {(p512 - static) / MIB:.2f} MiB against "
          f"{(p64 - static) / MIB:.2f} + {rows['512 @ 8'][1] / MIB:.2f} MiB.\n")


def part_quality(a):
    seeds = [int(s) for s in a.seeds.split(",")]
    print(f"### Linear probe after {a.examples} examples, micro-batches of 16 (AdamW 2e-3, cosine)\n")
    print("| window | negatives | steps | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | seconds (first seed) |")
    print("|---|---|---|" + "---|" * len(seeds) + "---|---|")
    for window in (16, 64, 256):
        for n in ("window", "micro-batch"):
            if window == 16 and n == "micro-batch":
                continue  # the same run: one micro-batch per window
            accs, secs = [], []
            for seed in seeds:
                steps, acc, s = train(["--train-limit", str(a.examples), "--global-batch", str(window),
                                       "--micro-batch", "16", "--epochs", "1", "--seed", str(seed), "--negatives", n,
                                       "--threads", "2"])
                accs.append(acc)
                secs.append(s)
            print(f"| {window} | {n} | {len(steps)} | " + " | ".join(f"{x:.4f}" for x in accs) +
                  f" | {statistics.mean(accs):.4f} | {secs[0]:.1f} |", flush=True)
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="time,memory,quality")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--time-steps", type=int, default=8)
    ap.add_argument("--examples", type=int, default=16384)
    ap.add_argument("--seeds", default="0,1")
    a = ap.parse_args()
    parts = a.part.split(",")
    if "time" in parts:
        part_time(a)
    if "memory" in parts:
        part_memory(a)
    if "quality" in parts:
        part_quality(a)


if __name__ == "__main__":
    main()
