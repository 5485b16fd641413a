#!/usr/bin/env python3
"""Two training loops' profiles side by side: which operators each one calls, and on a GPU which
kernels run and for how long.

    python3 bench/trace_compare.py A.json B.json [--names gradacc,seed] [--top 30] [--json OUT]

A and B are Chrome traces of the same optimizer steps of the same workload: `gradacc train
--profile A.json` and `bench/peers.py --loop seed --profile B.json` both profile steps 3-5.

Prints
  1. ATen operators whose call counts differ (every aten:: event, nested ones included, forward and
     backward): the same model written the same way calls the same operators the same number of
     times, so a difference names work one loop does and the other does not;
  2. when the traces hold GPU kernels: total device time of each, grouped by kernel name with its
     template arguments dropped, the largest first, with the difference B - A; and the totals of
     kernels, memcpy and memset. A kernel that only one loop launches, or one that takes longer in
     one loop, is where a GPU step's time goes apart.
--require-equal OPS makes it a check (tests/op_parity.sh): each listed operator must be called, and
as often in A as in B.
"""
import argparse
import collections
import json
import re


def load(path):
    with open(path) as f:
        return [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]


def short_kernel(name):
    """A kernel's name without return type, namespaces' template arguments or parameter list."""
    name = re.sub(r"^void ", "", name)
    depth, out = 0, []
    for ch in name:  # drop <...> and (...) at any depth
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    s = "".join(out).strip()
    return s[:90] or name[:90]


def census(events):
    ops = collections.Counter(e["name"] for e in events if e.get("cat") == "cpu_op" and e["name"].startswith("aten::"))
    kernels = collections.defaultdict(lambda: [0, 0.0])  # name → [count, µs]
    totals = collections.Counter()
    for e in events:
        cat = e.get("cat", "")
        if cat == "kernel":
            k = kernels[short_kernel(e["name"])]
            k[0] += 1
            k[1] += float(e["dur"])
            totals["kernel"] += float(e["dur"])
        elif cat in ("gpu_memcpy", "gpu_memset"):
            totals[cat] += float(e["dur"])
    return ops, kernels, totals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--names", default="A,B")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--json", default="")
    ap.add_argument("--require-equal", default="",
                    help="comma list of operators whose counts must be equal (and nonzero); exit 1 if not")
    args = ap.parse_args()
    na, nb = args.names.split(",")
    ops_a, ker_a, tot_a = census(load(args.a))
    ops_b, ker_b, tot_b = census(load(args.b))

    diff = sorted(((n, ops_a[n], ops_b[n]) for n in set(ops_a) | set(ops_b) if ops_a[n] != ops_b[n]),
                  key=lambda r: -abs(r[1] - r[2]))
    print(f"ATen operators: {sum(ops_a.values())} calls in {na}, {sum(ops_b.values())} in {nb}; "
          f"{len(diff)} of {len(set(ops_a) | set(ops_b))} operators differ in count")
    if diff:
        print(f"  {'operator':44} {na:>9} {nb:>9}")
        for n, ca, cb in diff[:args.top]:
            print(f"  {n:44} {ca:9d} {cb:9d}")

    result = {"ops_differing": [{"op": n, na: ca, nb: cb} for n, ca, cb in diff]}
    if ker_a or ker_b:
        print(f"\nGPU time (ms): kernels {tot_a['kernel'] / 1e3:.1f} vs {tot_b['kernel'] / 1e3:.1f}, "
              f"memcpy {tot_a['gpu_memcpy'] / 1e3:.1f} vs {tot_b['gpu_memcpy'] / 1e3:.1f}, "
              f"memset {tot_a['gpu_memset'] / 1e3:.1f} vs {tot_b['gpu_memset'] / 1e3:.1f}  ({na} vs {nb})")
        print(f"  {'kernel':90} {na + ' n':>7} {na + ' ms':>9} {nb + ' n':>7} {nb + ' ms':>9} {'Δ ms':>8}")
        rows = []
        for n in set(ker_a) | set(ker_b):
            ca, ta = ker_a.get(n, [0, 0.0])
            cb, tb = ker_b.get(n, [0, 0.0])
            rows.append({"kernel": n, "count": [ca, cb], "ms": [ta / 1e3, tb / 1e3]})
        rows.sort(key=lambda r: -max(r["ms"]))  # the largest in either loop first
        for r in rows[:args.top]:
            (ca, cb), (ta, tb) = r["count"], r["ms"]
            print(f"  {r['kernel']:90} {ca:7d} {ta:9.2f} {cb:7d} {tb:9.2f} {tb - ta:8.2f}")
        result["kernels"] = rows
        result["totals_ms"] = {na: {k: v / 1e3 for k, v in tot_a.items()}, nb: {k: v / 1e3 for k, v in tot_b.items()}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    bad = [f"{op}: {ops_a[op]} in {na}, {ops_b[op]} in {nb}" for op in args.require_equal.split(",") if op
           and (ops_a[op] != ops_b[op] or ops_a[op] == 0)]
    if bad:
        raise SystemExit("operator counts differ: " + "; ".join(bad))


if __name__ == "__main__":
    main()
