"""Mixed precision against fp32, side by side: loss curves and speed.

For each workload, trains the same run (same seed, data, plan, schedule) in fp32, bf16 (autocast)
and fp16 (autocast + dynamic loss scaling), plus bf16 parameters with fp32 master weights, and
reports how far each loss curve strays from fp32 (moving average over 10 steps, relative), the
final evaluation, skipped fp16 steps, and throughput. Then times fp32 against bf16 on a larger gpt
where matrix products dominate, interleaved over --reps rounds.

Usage: bench/precision.sh [--steps 200] [--reps 2] [--speed-only] [--out results.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRADACC = os.path.join(ROOT, "build", "gradacc")
TEXT = os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt")
if not os.path.exists(TEXT):
    TEXT = "/usr/share/common-licenses/GPL-3"

WORKLOADS = {
    "cnn": ["--model", "cnn", "--norm", "group", "--micro-batch", "32", "--accum", "4", "--lr", "2e-3"],
    "gpt": ["--model", "gpt", "--data", "text:" + TEXT, "--layers", "2", "--heads", "4", "--dim", "128",
            "--context", "128", "--micro-batch", "8", "--accum", "4", "--lr", "3e-3"],
}
VARIANTS = {
    "fp32": [],
    "bf16": ["--precision", "bf16"],
    "fp16": ["--precision", "fp16"],
    "bf16 params + fp32 masters": ["--param-dtype", "bf16"],
}
SPEED = ["--model", "gpt", "--data", "text:" + TEXT, "--layers", "4", "--heads", "8", "--dim", "512",
         "--context", "256", "--micro-batch", "8", "--accum", "4"]


def train(args, tmp, tag):
    log = os.path.join(tmp, tag + ".jsonl")
    out = subprocess.run([GRADACC, "train", *args, "--log", log], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"gradacc {' '.join(args)} failed: {out.stderr.strip()}")
    rows = [json.loads(line) for line in open(log)]
    steps = [r for r in rows if "step" in r]
    evals = [r for r in rows if r.get("event") == "eval"]
    return steps, (evals[0] if evals else {}), out.stdout.strip().splitlines()[-1]


def smooth(values, k=10):
    out = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - k + 1): i + 1] if v is not None]
        out.append(sum(window) / len(window) if window else None)
    return out


def throughput(steps):
    timed = steps[2:]  # after warm-up
    return sum(s["samples"] for s in timed) / sum(s["seconds"] for s in timed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out")
    ap.add_argument("--speed-only", action="store_true", help="skip the loss curves")
    a = ap.parse_args()
    common = ["--steps", str(a.steps), "--schedule", "cosine", "--clip", "1", "--threads", str(a.threads), "--seed", "0"]
    results = {"curves": {}, "speed": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, wl in ({} if a.speed_only else WORKLOADS).items():
            ref = None
            print(f"\n{name}: {a.steps} steps, deviation of the 10-step moving-average loss from fp32")
            print(f"{'variant':28} {'max dev':>8} {'final dev':>9} {'final loss':>10} {'eval':>18} {'skipped':>7} {'samples/s':>9}")
            for variant, flags in VARIANTS.items():
                steps, ev, _ = train(wl + common + flags, tmp, f"{name}-{variant.split()[0]}")
                loss = smooth([s["loss"] for s in steps])
                if ref is None:
                    ref = loss
                dev = [abs(x - r) / r for x, r in zip(loss, ref) if x is not None and r is not None]
                evaluation = (f"acc {ev['accuracy']:.4f}" if "accuracy" in ev else f"{ev.get('bits_per_byte', 0):.3f} bits/byte")
                row = dict(max_dev=max(dev), final_dev=dev[-1], final_loss=loss[-1], eval=evaluation,
                           skipped=sum(1 for s in steps if s.get("skipped")), samples_per_s=throughput(steps))
                results["curves"].setdefault(name, {})[variant] = row
                print(f"{variant:28} {row['max_dev']:8.2%} {row['final_dev']:9.2%} {row['final_loss']:10.4f} "
                      f"{row['eval']:>18} {row['skipped']:7d} {row['samples_per_s']:9.1f}")

        print(f"\nspeed: gpt 4 layers × dim 512 × context 256, 8 × 4, {a.reps} interleaved rounds of 12 steps")
        runs = {"fp32": [], "bf16": []}
        for r in range(a.reps):
            for variant in (["fp32", "bf16"] if r % 2 == 0 else ["bf16", "fp32"]):
                flags = [] if variant == "fp32" else ["--precision", "bf16"]
                steps, _, _ = train(SPEED + ["--steps", "12", "--threads", str(a.threads)] + flags, tmp, "speed")
                runs[variant].append(throughput(steps))
        med = {k: statistics.median(v) for k, v in runs.items()}
        results["speed"] = dict(runs=runs, median=med, ratio=med["bf16"] / med["fp32"])
        print(f"fp32 {med['fp32']:.1f} sequences/s, bf16 {med['bf16']:.1f} sequences/s: bf16 = {med['bf16'] / med['fp32']:.2f}× fp32")
    if a.out:
        json.dump(results, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
