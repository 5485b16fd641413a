#!/usr/bin/env python3
"""The gradient noise scale over training, and what measuring it costs (docs/noise-scale.md).

    bench/noise_scale.sh [--text PATH] [--out DIR]

1. Overhead: the cnn (8 × 32), 8 pairs of 40-step runs with --noise-scale on and off back to back;
   the median of the paired samples/s ratios (steps 2..40).
2. The noise scale over training: the cnn on Fashion-MNIST (1 epoch, global 256 = 8 × 32) and a
   gpt on tinyshakespeare (300 steps, global 64 = 8 × 8); prints every 25th step and draws both
   with `gradacc plot --metrics noise_scale`.
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
    p = subprocess.run([GRADACC, "train", "--progress", "off", "--log", log] + args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"gradacc train {' '.join(args)} failed: {p.stderr.strip()}")
    return [json.loads(l) for l in open(log) if '"step"' in l]


def rate(rows, key):
    rows = rows[1:]
    return sum(r[key] for r in rows) / sum(r["seconds"] for r in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", default=os.path.join(HERE, "..", "..", "shared", "data", "tinyshakespeare.txt"))
    ap.add_argument("--out", default=tempfile.mkdtemp())
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    cnn = ["--model", "cnn", "--global-batch", "256", "--micro-batch", "32", "--threads", "2"]
    # Overhead: 8 pairs of 40-step runs, on and off back to back (order alternating), so that the
    # machine's drift falls on both sides of each pair; the median of the paired ratios.
    ratios = []
    print("| pair | samples/s off | samples/s on | on / off |\n|---|---|---|---|")
    for i in range(8):
        speed = {}
        for mode in (("off", "on") if i % 2 == 0 else ("on", "off")):
            rows = train(cnn + ["--steps", "40", "--noise-scale", mode], os.path.join(a.out, f"o{i}{mode}.jsonl"))
            speed[mode] = rate(rows, "samples")
        ratios.append(speed["on"] / speed["off"])
        print(f"| {i + 1} | {speed['off']:,.0f} | {speed['on']:,.0f} | {ratios[-1]:.3f} |")
    print(f"\noverhead: median on / off = {statistics.median(ratios):.3f}, mean {statistics.mean(ratios):.3f}\n")

    runs = {
        "cnn": cnn + ["--epochs", "1", "--noise-scale", "on"],
        "gpt": ["--model", "gpt", "--data", "text:" + a.text, "--layers", "4", "--heads", "4", "--dim", "128",
                "--context", "128", "--global-batch", "64", "--micro-batch", "8", "--steps", "300", "--lr", "3e-3",
                "--noise-scale", "on"],
    }
    logs = []
    for name, args in runs.items():
        log = os.path.join(a.out, f"{name}.jsonl")
        rows = train(args, log)
        logs.append(log)
        print(f"| {name} step | loss | noise scale B_simple | tr Σ | |G|² |\n|---|---|---|---|---|")
        for r in rows:
            if r["step"] == 1 or r["step"] % 25 == 0 or r["step"] == len(rows):
                print(f"| {r['step']} | {r['loss']:.3f} | {r['noise_scale']:.0f} | {r['trace_sigma_est']:.3g} "
                      f"| {r['grad_sq_est']:.3g} |")
        print()
    png = os.path.join(a.out, "noise_scale.png")
    subprocess.run([GRADACC, "plot"] + logs + ["-o", png, "--metrics", "noise_scale", "--labels", "cnn,gpt",
                                                 "--title", "gradient noise scale B_simple"], check=True)
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
