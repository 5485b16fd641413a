"""gradacc against the Python loops users run today, interleaved in one invocation.

For each workload (mlp, cnn with GroupNorm, gpt) and micro-batch size (accumulation 8), runs
gradacc, the seed-document loop and Accelerate's accumulate() loop (bench/peers.py) with the same
initial weights, data in memory, AdamW, no clipping and all cores; repeats the round --reps times,
rotating the order, and reports the median samples/s (tokens/s for gpt), the ratio to each peer,
and peak resident memory. Then checks that memory stays flat in the accumulation factor and times
the window boundary against a memcpy of the same bytes.

For the gpt, gradacc also runs the same windows with token-budget micro-batches of the same budget
(--micro-batching tokens:micro×context), and a second table gives their real tokens/s.

Usage: bench/run.sh [--reps 3] [--workloads mlp,cnn,gpt] [--micro 1,4,16,64] [--out results.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from torch_reference import Cnn, Gpt, Mlp  # noqa: E402

GRADACC = os.path.join(ROOT, "build", "gradacc")
TEXT = os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt")
if not os.path.exists(TEXT):
    TEXT = "/usr/share/common-licenses/GPL-3"
GPT = dict(layers=4, heads=4, dim=128, context=128)
TARGET = {"mlp": 12288, "cnn": 6144, "gpt": 768}  # examples timed per run (after warm-up)
WARMUP_STEPS = 2


def write_init(workload, path):
    torch.manual_seed(0)
    if workload == "mlp":
        model, meta = Mlp(), {"model": "mlp", "norm": "group"}
    elif workload == "cnn":
        model, meta = Cnn("group"), {"model": "cnn", "norm": "group"}
    else:
        model = Gpt(GPT["layers"], GPT["heads"], GPT["dim"], GPT["context"], "layer")
        meta = {"model": "gpt", "norm": "layer", **{k: str(v) for k, v in GPT.items()}}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path, metadata=meta)
    return sum(p.numel() for p in model.parameters())


def run(cmd):
    """Runs cmd; returns (stdout, peak RSS in MB of that process)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        err = proc.stderr.read().decode()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
        out.seek(0)
        return out.read().decode(), usage.ru_maxrss / 1024


def gradacc_cmd(workload, init, micro, accum, steps, log, threads, tokens=False, packing=False):
    # tokens: the same windows (micro × accum sequences), cut into micro-batches of the same token
    # budget as the fixed ones (micro × context) instead of micro sequences each.
    batch = (["--global-batch", str(micro * accum), "--micro-batching", f"tokens:{micro * GPT['context']}"] if tokens
             else ["--micro-batch", str(micro), "--accum", str(accum)])
    batch += ["--packing", "on"] if packing else []
    cmd = [GRADACC, "train", "--model", workload, "--init", init] + batch + [
           "--steps", str(steps), "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.01",
           "--schedule", "constant", "--clip", "0", "--threads", str(threads), "--log", log]
    if workload == "gpt":
        cmd += ["--data", "text:" + TEXT] + sum([[f"--{k}", str(v)] for k, v in GPT.items()], [])
    else:
        cmd += ["--norm", "group"]
    return cmd


def run_gradacc(workload, init, micro, accum, steps, threads, tokens=False, packing=False):
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as log:
        _, rss = run(gradacc_cmd(workload, init, micro, accum, steps, log.name, threads, tokens, packing))
        rows = [json.loads(l) for l in open(log.name) if '"step"' in l][WARMUP_STEPS:]
    seconds = sum(r["seconds"] for r in rows)
    return {"samples_per_s": sum(r["samples"] for r in rows) / seconds, "tokens_per_s": sum(r["items"] for r in rows) / seconds,
            "padding_fraction": statistics.mean(r.get("padding_fraction", 0.0) for r in rows),
            "boundary_seconds": statistics.median(r["boundary_seconds"] for r in rows), "peak_rss_mb": rss}


def run_peer(loop, workload, init, micro, accum, steps, threads):
    cmd = [sys.executable, os.path.join(HERE, "peers.py"), "--loop", loop, "--model", workload, "--init", init,
           "--micro-batch", str(micro), "--accum", str(accum), "--steps", str(steps), "--warmup", str(WARMUP_STEPS),
           "--threads", str(threads), "--lr", "1e-3"]
    if workload == "gpt":
        cmd += ["--data", "text:" + TEXT, "--context", str(GPT["context"]), "--norm", "layer"]
    else:
        cmd += ["--norm", "group"]
    out, rss = run(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    r["peak_rss_mb"] = rss
    return r


def memcpy_seconds(nbytes):
    a = np.ones(nbytes // 4, dtype=np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(50):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--workloads", default="mlp,cnn,gpt")
    p.add_argument("--micro", default="1,4,16,64")
    p.add_argument("--accum", type=int, default=8)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default=None)
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="gradacc_bench_")
    workloads = a.workloads.split(",")
    micros = [int(m) for m in a.micro.split(",")]
    inits, params = {}, {}
    for w in workloads:
        inits[w] = os.path.join(tmp, f"{w}.safetensors")
        params[w] = write_init(w, inits[w])

    programs = ["gradacc", "seed", "accelerate"]
    results = {}
    token_programs = ["gradacc-tokens", "gradacc-packed"] if "gpt" in workloads else []
    for rep in range(a.reps):
        for w in workloads:
            for m in micros:
                steps = WARMUP_STEPS + max(3, TARGET[w] // (m * a.accum))
                every = programs + (token_programs if w == "gpt" else [])
                order = every[rep % len(every):] + every[:rep % len(every)]  # rotate who goes first
                for prog in order:
                    if prog.startswith("gradacc"):
                        r = run_gradacc(w, inits[w], m, a.accum, steps, a.threads,
                                        tokens=prog in ("gradacc-tokens", "gradacc-packed"),
                                        packing=prog == "gradacc-packed")
                    else:
                        r = run_peer(prog, w, inits[w], m, a.accum, steps, a.threads)
                    results.setdefault((w, m, prog), []).append(r)
                    print(f"rep {rep} {w:4} micro {m:3} {prog:10} {r['samples_per_s']:10.1f} samples/s "
                          f"{r['tokens_per_s']:10.1f} tokens/s  rss {r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)

    def med(w, m, prog, key):
        return statistics.median(r[key] for r in results[(w, m, prog)])

    lines = [f"Accumulation {a.accum}, {a.threads} threads, median of {a.reps} interleaved repetitions; "
             "rate = samples/s (tokens/s for gpt).", "",
             "| workload | micro | gradacc | seed loop | Accelerate | × seed | × Accelerate | RSS gradacc / seed / Acc (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    table = []
    for w in workloads:
        key = "tokens_per_s" if w == "gpt" else "samples_per_s"
        for m in micros:
            g, s, acc = (med(w, m, prog, key) for prog in programs)
            rss = [med(w, m, prog, "peak_rss_mb") for prog in programs]
            table.append({"workload": w, "micro": m, "gradacc": g, "seed": s, "accelerate": acc, "rss_mb": rss})
            lines.append(f"| {w} | {m} | {g:.0f} | {s:.0f} | {acc:.0f} | {g / s:.2f} | {g / acc:.2f} | "
                         f"{rss[0]:.0f} / {rss[1]:.0f} / {rss[2]:.0f} |")

    if "gpt" in workloads:
        # Token-budget micro-batches on the same windows and the same token budget per micro-batch.
        lines += ["", "gpt, the same windows: gradacc with token-budget micro-batches (--micro-batching tokens:"
                  "micro×128), and with packing too (--packing on), against fixed micro-batches of `micro` padded "
                  "sequences (gradacc fixed, seed loop, Accelerate); real tokens/s:", "",
                  "| micro | tokens:N | tokens:N + packing | gradacc fixed | seed loop | Accelerate | tokens × seed |"
                  " tokens × Acc | packed × seed | packed × Acc | padding: fixed → tokens → packed |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for m in micros:
            t, pk, g, s_, acc = (med("gpt", m, prog, "tokens_per_s")
                                 for prog in ["gradacc-tokens", "gradacc-packed"] + programs)
            pads = [med("gpt", m, prog, "padding_fraction") for prog in ["gradacc", "gradacc-tokens", "gradacc-packed"]]
            table.append({"workload": "gpt-tokens", "micro": m, "gradacc": t, "seed": s_, "accelerate": acc})
            table.append({"workload": "gpt-packed", "micro": m, "gradacc": pk, "seed": s_, "accelerate": acc})
            lines.append(f"| {m} | {t:.0f} | {pk:.0f} | {g:.0f} | {s_:.0f} | {acc:.0f} | {t / s_:.2f} | {t / acc:.2f} "
                         f"| {pk / s_:.2f} | {pk / acc:.2f} | {pads[0]:.3f} → {pads[1]:.3f} → {pads[2]:.3f} |")

    # Memory flat in the accumulation factor (cnn, micro 32): ×1, ×64, and the full batch of 2048.
    lines += ["", "Peak RSS of gradacc, cnn (GroupNorm), 3 optimizer steps:", "",
              "| plan | peak RSS (MB) |", "|---|---|"]
    mem = {}
    if "cnn" in workloads:
        for label, micro, accum in [("micro 32 × accum 1", 32, 1), ("micro 32 × accum 64", 32, 64), ("full batch 2048 × 1", 2048, 1)]:
            with tempfile.NamedTemporaryFile(suffix=".jsonl") as log:
                _, rss = run(gradacc_cmd("cnn", inits["cnn"], micro, accum, 3, log.name, a.threads))
            mem[label] = rss
            lines.append(f"| {label} | {rss:.0f} |")
        lines.append(f"\naccum 64 / accum 1 = {mem['micro 32 × accum 64'] / mem['micro 32 × accum 1']:.3f}")

    # The window boundary against a memcpy of the parameter bytes.
    lines += ["", "Window boundary (norm, rescale/clip, AdamW update, zeroing) vs memcpy of the parameters' bytes:", "",
              "| workload | parameters | boundary (ms, median) | memcpy of params (ms) | ratio |", "|---|---|---|---|---|"]
    for w in workloads:
        b = statistics.median(r["boundary_seconds"] for m in micros for r in results[(w, m, "gradacc")])
        c = memcpy_seconds(params[w] * 4)
        lines.append(f"| {w} | {params[w]} | {b * 1e3:.3f} | {c * 1e3:.3f} | {b / c:.1f} |")

    print("\n".join(lines))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"table": table, "memory": mem}, f, indent=1)


if __name__ == "__main__":
    main()
