#!/usr/bin/env python3
"""Where a training step's time goes: sums a `gradacc train --profile FILE` Chrome trace.

    python3 bench/profile_summary.py TRACE.json [--top 25]

Prints (1) the step's phases — gradacc::data, forward_and_loss, backward_and_accumulate,
window_boundary — as totals over the profiled steps, and (2) the operators by *self* time (their
own time, without the operators they call), grouped into GEMMs, attention, head and
cross-entropy, optimizer, allocation and the rest. Self time is computed per thread from the
nesting of the trace's complete ("X") events.
"""
import argparse
import collections
import json

GROUPS = [  # first match wins
    ("GEMM", ("addmm", "aten::mm", "bmm", "matmul", "linear", "baddbmm")),
    ("cross-entropy", ("log_softmax", "nll_loss", "cross_entropy")),
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention", "softmax")),
    ("optimizer", ("_fused_adamw", "adamw", "_foreach", "lerp", "addcdiv", "addcmul", "sqrt")),
    ("allocation and copies", ("aten::empty", "aten::zeros", "aten::zero_", "aten::fill_", "aten::full", "copy_",
                               "aten::to", "_to_copy", "clone", "contiguous", "resize_")),
]


def group_of(name):
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "other (elementwise, norms, gelu, reductions, ...)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    events = [e for e in json.load(open(a.trace))["traceEvents"] if e.get("ph") == "X" and "dur" in e]
    phases = collections.Counter()
    self_time = collections.Counter()
    calls = collections.Counter()
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "user_annotation" and e["name"].startswith("gradacc::"):
            phases[e["name"]] += e["dur"]
        elif e.get("cat") == "cpu_op":
            by_thread[e["tid"]].append(e)
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # open events: [event, time of its children]
        def close(upto):
            while stack and stack[-1][0]["ts"] + stack[-1][0]["dur"] <= upto:
                ev, children = stack.pop()
                self_time[ev["name"]] += ev["dur"] - children
                calls[ev["name"]] += 1
                if stack:
                    stack[-1][1] += ev["dur"]
        for e in evs:
            close(e["ts"])
            stack.append([e, 0.0])
        close(float("inf"))
    total_phase = sum(phases.values())
    print("| phase | ms (steps 3-5) | share |\n|---|---|---|")
    for name, us in phases.most_common():
        print(f"| {name} | {us / 1e3:.1f} | {us / total_phase:.1%} |")
    total_ops = sum(self_time.values())
    groups = collections.Counter()
    for name, us in self_time.items():
        groups[group_of(name)] += us
    print("\n| operator group | self ms | share of operator time |\n|---|---|---|")
    for g, us in groups.most_common():
        print(f"| {g} | {us / 1e3:.1f} | {us / total_ops:.1%} |")
    print(f"\n| operator | calls | self ms | share | group |\n|---|---|---|---|---|")
    for name, us in self_time.most_common(a.top):
        print(f"| {name} | {calls[name]} | {us / 1e3:.1f} | {us / total_ops:.1%} | {group_of(name)} |")


if __name__ == "__main__":
    main()
