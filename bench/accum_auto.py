#!/usr/bin/env python3
"""What --accum auto buys: the cost to reach a fixed test loss (docs/noise-scale.md).

    bench/accum_auto.sh [--target LOSS] [--out DIR] [--extra "FLAGS"]

The mlp on Fashion-MNIST, micro-batches of 32, AdamW at a constant 2e-3, clip 1, seed 1, with
  - a small fixed accumulation (2: global 64),
  - a large fixed accumulation (32: global 1024),
  - --accum auto:2:32 (from 2, following the measured noise scale; warmup 20, every 10 steps).
Each run evaluates the 10,000 test images every few steps (--eval-every: about every 1,024 examples
for the fixed runs, every 2 steps for auto), and the table gives the optimizer steps, the examples
and the seconds of training until the test loss first reaches the target, for each seed and their
medians. `gradacc plot` then draws the test loss of the first seed against the examples seen.
--extra adds flags to every run: "--lr-scaling sqrt --base-batch 64" is docs/lr-scaling.md's rerun
(the rate follows each window's batch, from the small fixed batch's).
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
    rows = [json.loads(l) for l in open(log)]
    return [r for r in rows if "step" in r], [r for r in rows if "at_step" in r]


def until_target(steps, evals, target):
    """(steps, examples, seconds, loss, accuracy) when the test loss first reaches target, else None."""
    seen, seconds, total_seen, total_s = {}, {}, 0, 0.0
    for r in steps:
        total_seen += r["samples"]
        total_s += r["seconds"]
        seen[r["step"]], seconds[r["step"]] = total_seen, total_s
    hit = next((e for e in evals if e["loss"] <= target), None)
    if hit is None:
        return None, seen
    s = hit["at_step"]
    return (s, seen[s], seconds[s], hit["loss"], hit["accuracy"]), seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=float, default=0.40, help="test loss to reach")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--out", default=tempfile.mkdtemp())
    ap.add_argument("--extra", default="", help="flags added to every run")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    common = ["--model", "mlp", "--micro-batch", "32", "--lr", "2e-3", "--schedule", "constant", "--clip", "1",
              "--threads", "2", "--noise-scale", "on"] + a.extra.split()
    runs = {  # name: (args, evaluation every N steps: about every 1,024 examples for the fixed runs)
        "fixed 2 (global 64)": (["--accum", "2", "--steps", "4700"], 16),
        "fixed 32 (global 1024)": (["--accum", "32", "--steps", "300"], 1),
        "auto 2..32": (["--accum", "auto:2:32", "--accum-auto-warmup", "20", "--accum-auto-every", "10",
                        "--steps", "1500"], 2),
    }
    seeds = [int(x) for x in a.seeds.split(",")]
    print(f"target: test loss ≤ {a.target}; seeds {seeds}\n")
    print("| run | seed | optimizer steps | examples seen | training seconds | test loss then | test accuracy then |"
          " accumulation (auto: its changes) |")
    print("|---|---|---|---|---|---|---|---|")
    results = {name: [] for name in runs}
    for seed in seeds:
        for name, (args, every) in runs.items():
            tag = name.split()[0] + name.split()[1] + f"_s{seed}"
            steps, evals = train(common + args + ["--seed", str(seed), "--eval-every", str(every)],
                                 os.path.join(a.out, tag + ".jsonl"))
            hit, seen = until_target(steps, evals, a.target)
            accums = [r["micro_batches"] for r in steps[: hit[0] if hit else len(steps)]]
            if "auto" in name:
                changes = [accums[0]] + [accums[i] for i in range(1, len(accums)) if accums[i] != accums[i - 1]]
                shown = "→".join(str(x) for x in changes[:10]) + ("…" if len(changes) > 10 else "")
                shown += f" (mean {sum(accums) / len(accums):.1f})"
            else:
                shown = str(max(accums))
            if hit is None:
                print(f"| {name} | {seed} | not reached in {len(steps)} | | | | | {shown} |")
            else:
                results[name].append(hit)
                print(f"| {name} | {seed} | {hit[0]} | {hit[1]:,} | {hit[2]:.1f} | {hit[3]:.4f} | {hit[4]:.4f} "
                      f"| {shown} |")
            if seed == seeds[0]:
                with open(os.path.join(a.out, tag + "_evals.jsonl"), "w") as f:
                    for e in evals:  # the test loss against the examples seen, for the plot
                        f.write(json.dumps({"step": seen[e["at_step"]], "test_loss": e["loss"]}) + "\n")
    print("\n| run | median optimizer steps | median examples seen | median training seconds |\n|---|---|---|---|")
    for name, hits in results.items():
        if hits:
            med = lambda i: statistics.median(h[i] for h in hits)
            print(f"| {name} | {med(0):.0f} | {med(1):,.0f} | {med(2):.1f} |")
    logs = [os.path.join(a.out, n.split()[0] + n.split()[1] + f"_s{seeds[0]}_evals.jsonl") for n in runs]
    png = os.path.join(a.out, "accum_auto.png")
    subprocess.run([GRADACC, "plot"] + logs + ["-o", png, "--metrics", "test_loss", "--labels",
                                                 "fixed 2,fixed 32,auto 2..32", "--title",
                                                 "test loss against examples seen (x: examples, not steps)"],
                   check=True)
    print(f"\nplot: {png}")


if __name__ == "__main__":
    main()
