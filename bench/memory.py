#!/usr/bin/env python3
"""The memory budget, measured: one row per budget with what the planner chose, its predicted peak,
the peak every step actually held (JSONL peak_bytes) and the speed. Also the full batch's peak and
`verify` on a planned configuration. Prints Markdown (docs/memory.md).

    bench/memory.sh [--text PATH] [--steps N] [--budgets 4GiB,1GiB,...] [--model gpt|cnn]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

GRADACC = os.path.join(os.path.dirname(__file__), "..", "build", "gradacc")
MIB = 1 << 20


def run(args, refusal_ok=False):
    p = subprocess.run([GRADACC] + args, capture_output=True, text=True)
    if p.returncode not in (0, 1) and not refusal_ok:
        sys.exit(f"gradacc {' '.join(args)} failed: {p.stderr.strip()}")
    return p


def plan(model_flags, budget, extra=()):
    p = run(["plan", "--fit", "--json", "--memory-budget", budget] + model_flags + list(extra))
    return json.loads(p.stdout)


def train(model_flags, budget, steps, extra=()):
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "log.jsonl")
        args = ["train", "--steps", str(steps), "--log", log, "--progress", "off"] + model_flags + list(extra)
        if budget:
            args += ["--memory-budget", budget]
        run(args)
        steps = [json.loads(l) for l in open(log) if '"step"' in l]
    return steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt", choices=["gpt", "cnn"])
    ap.add_argument("--text", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                   "tinyshakespeare.txt"))
    ap.add_argument("--global-batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--budgets", default="")
    a = ap.parse_args()
    if a.model == "gpt":
        flags = ["--model", "gpt", "--layers", "6", "--dim", "256", "--heads", "4", "--context", "256",
                 "--data", "text:" + a.text, "--global-batch", str(a.global_batch)]
        budgets = a.budgets or "4GiB,1GiB,400MiB,150MiB,95MiB,80MiB"
        unit = "tokens/s"
    else:
        flags = ["--model", "cnn", "--global-batch", str(a.global_batch)]
        budgets = a.budgets or "1GiB,200MiB,100MiB,40MiB,25MiB"
        unit = "samples/s"

    full = plan(flags, "64GiB")
    print(f"Full batch ({a.global_batch} in one micro-batch): measured peak {full['probed_peak_bytes'] / MIB:.1f} MiB "
          f"(static {full['static_bytes'] / MIB:.1f} MiB; activations "
          f"{full['activation_bytes_per_example'] / MIB:.2f} MiB per example); smallest budget "
          f"{full['min_budget_without_checkpointing_bytes'] / MIB:.1f} MiB without checkpointing, "
          f"{(full['min_budget_with_checkpointing_bytes'] or 0) / MIB:.1f} MiB with.\n")
    print(f"| budget | micro-batch × accumulation | checkpointing | predicted peak | measured peak (max over steps) "
          f"| {unit} |")
    print("|---|---|---|---|---|---|")
    for b in budgets.split(","):
        p = run(["plan", "--fit", "--json", "--memory-budget", b] + flags, refusal_ok=True)
        if p.returncode != 0 or not p.stdout.strip():
            print(f"| {b} | refused: {p.stderr.strip().removeprefix('gradacc: error: ')} | | | | |")
            continue
        m = json.loads(p.stdout)
        steps = train(flags, b, a.steps)
        peak = max(s["peak_bytes"] for s in steps)
        done = sum(s["items" if a.model == "gpt" else "samples"] for s in steps)
        seconds = sum(s["seconds"] for s in steps)
        ok = "" if peak <= m["budget_bytes"] else " **over**"
        print(f"| {b} | {m['micro_batch']} × {m['accumulation_steps']} | {m['activation_checkpointing']} "
              f"| {m['predicted_peak_bytes'] / MIB:.1f} MiB | {peak / MIB:.1f} MiB{ok} | {done / seconds:,.0f} |")

    # Activation checkpointing at one fixed micro-batch: peak and speed, off against on.
    micro = 32 if a.model == "gpt" else 128
    print(f"\nActivation checkpointing at micro-batch {micro} (no budget), {a.steps} step(s) each:\n")
    print(f"| checkpointing | peak (max over steps) | {unit} |")
    print("|---|---|---|")
    for mode in ("off", "blocks"):
        steps = train(flags, None, a.steps, ["--micro-batch", str(micro), "--activation-checkpointing", mode])
        peak = max(s["peak_bytes"] for s in steps)
        done = sum(s["items" if a.model == "gpt" else "samples"] for s in steps)
        print(f"| {mode} | {peak / MIB:.1f} MiB | {done / sum(s['seconds'] for s in steps):,.0f} |")


if __name__ == "__main__":
    main()
