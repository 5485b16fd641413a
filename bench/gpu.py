"""gradacc on one GPU: speed against torch.compile, the seed loop and Accelerate, and memory
(docs/gpu.md).

Usage: bench/gpu.py --gradacc BUILD/gradacc --text FILE --out DIR [--micro 4,16,32] [--fp16-micro 16]
                    [--accum 4] [--steps 6] [--warmup 2] [--peak-tflops 989.4] [--programs ...]

Workload: a gpt of GPT-2-small shape with the byte vocabulary (12 layers, 12 heads, dim 768, context
1024), on FILE with its blank lines removed, so that every sequence is a full 1024 bytes (the text
is one document). The programs (gradacc; `unfused`, gradacc with --fused-kernels off; and
bench/peers.py's loops: `compiled`, the seed loop under torch.compile with fused AdamW; `seed`;
`accelerate`) get the same initial weights (written here),
the same micro-batches in the same order (bench/peers.py ports gradacc's sampler), AdamW at lr 6e-4
and no clipping; the runs of one configuration are interleaved, rotating who goes first. The
compiled program compiles inside its warm-up steps, which are not timed.

Reports every program's real tokens/s over the steps after the warm-up and its model FLOPs
utilisation
  MFU = tokens/s × (6·N + 12·L·d·T) / peak,
N the parameters without the position embedding (the tied head's matmul is counted through the
token embedding), T the sequence length, peak the GPU's dense bf16 rate (H100/H200 SXM datasheet:
989.4 TFLOP/s). Then kernel profiles of gradacc and one peer (--profile-peer, the compiled loop by
default) side by side (steps 3-5, bench/trace_compare.py), and memory: a run planned by
--memory-budget (each step's peak against the budget) and a window of micro-batches too large for
the card, replayed after the real CUDA out-of-memory error with halved micro-batches (--mem-probe
adds the doubling probe of the first run). Every part's numbers go to OUT/gpu_bench.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

SHAPE = dict(layers=12, heads=12, dim=768, context=1024)
PEERS = ("compiled", "seed", "accelerate")  # bench/peers.py's loops
GRADACC = ("gradacc", "unfused")  # unfused: gradacc --fused-kernels off


def log(msg):
    print(msg, flush=True)


def flops_per_token(n_params, shape, seq):
    return 6 * n_params + 12 * shape["layers"] * shape["dim"] * seq


def write_init(path):
    import torch
    from safetensors.torch import save_file
    from torch_reference import Gpt, gpt2_init

    torch.manual_seed(0)  # GPT-2's initialization, not PyTorch's defaults (whose first loss is ~85 nats)
    model = gpt2_init(Gpt(SHAPE["layers"], SHAPE["heads"], SHAPE["dim"], SHAPE["context"], "layer"), SHAPE["layers"])
    meta = {"model": "gpt", "norm": "layer", **{k: str(v) for k, v in SHAPE.items()}}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path, metadata=meta)
    return sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()


def one_document(src, dst):
    with open(src, "rb") as f:
        lines = [l for l in f.read().split(b"\n") if l.strip()]
    with open(dst, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")


def gradacc_args(a, text, init, precision, micro, accum, steps, logpath):
    cmd = [a.gradacc, "train", "--device", a.device, "--model", "gpt", "--data", "text:" + text, "--init", init,
           "--precision", precision, "--micro-batch", str(micro), "--accum", str(accum), "--steps", str(steps),
           "--optimizer", "adamw", "--lr", "6e-4", "--weight-decay", "0.0", "--schedule", "constant", "--clip", "0",
           "--shuffle", "on", "--log", logpath] + a.gradacc_flags.split()
    return cmd + sum([[f"--{k}", str(v)] for k, v in SHAPE.items()], [])


def run_gradacc(a, text, init, precision, micro, accum, prog="gradacc"):
    """gradacc itself, or `unfused`: gradacc with --fused-kernels off (ATen's separate ops)."""
    logpath = os.path.join(a.out, f"{prog}{a.tag}_{precision}_{micro}.jsonl")
    cmd = gradacc_args(a, text, init, precision, micro, accum, a.warmup + a.steps, logpath)
    if prog == "unfused":
        cmd += ["--fused-kernels", "off"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.program_timeout)
    if p.returncode != 0:
        raise RuntimeError(f"gradacc exited {p.returncode}: {p.stderr.strip()[-400:]}")
    rows = [json.loads(l) for l in open(logpath) if '"step"' in l][a.warmup:]
    seconds = sum(r["seconds"] for r in rows)
    return {"tokens_per_s": sum(r["items"] for r in rows) / seconds, "samples_per_s": sum(r["samples"] for r in rows) / seconds,
            "peak_cuda_bytes": max(r["peak_bytes"] for r in rows), "boundary_s": statistics.median(r["boundary_seconds"] for r in rows)}


def peer_args(a, loop, text, init, precision, micro, accum, steps, warmup):
    return [sys.executable, os.path.join(HERE, "peers.py"), "--loop", loop, "--model", "gpt", "--norm", "layer",
            "--init", init, "--data", "text:" + text, "--context", str(SHAPE["context"]), "--micro-batch", str(micro),
            "--accum", str(accum), "--steps", str(steps), "--warmup", str(warmup), "--lr", "6e-4", "--device",
            a.device, "--precision", precision, "--compile-mode", a.compile_mode]


def run_peer(a, loop, text, init, precision, micro, accum):
    cmd = peer_args(a, loop, text, init, precision, micro, accum, a.warmup + a.steps, a.warmup)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.program_timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{loop} exited {p.returncode}: {p.stderr.strip()[-400:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def speed(a, text, init, n_params, rows, save):
    """Appends one row per configuration to `rows`, saving and logging each as it comes (a run cut
    short by its time limit keeps the rows it finished)."""
    configs = [("bf16", m) for m in a.micro] + [("fp16", m) for m in a.fp16_micro]
    for ci, (precision, micro) in enumerate(configs):
        programs = a.programs
        programs = programs[ci % len(programs):] + programs[:ci % len(programs)]
        res = {}
        for prog in programs:
            t = time.time()
            try:
                res[prog] = (run_gradacc(a, text, init, precision, micro, a.accum, prog) if prog in GRADACC
                             else run_peer(a, prog, text, init, precision, micro, a.accum))
            except Exception as e:  # one failing program must not hide the others' numbers
                res[prog] = {"error": str(e)}
            r = res[prog]
            log(f"  {precision} micro {micro:3} {prog:10} " +
                (f"{r['tokens_per_s']:10.0f} tok/s" if "tokens_per_s" in r else r["error"]) + f"  ({time.time() - t:.0f} s)")
        fpt = flops_per_token(n_params, SHAPE, SHAPE["context"])
        row = {"precision": precision, "micro": micro, "accum": a.accum, "gradacc_flags": a.gradacc_flags,
               **{p: res[p] for p in res}}
        for p, r in res.items():  # every program's MFU, against the same FLOP count per token
            if r.get("tokens_per_s"):
                r["mfu"] = r["tokens_per_s"] * fpt / (a.peak_tflops * 1e12)
        g = res.get("gradacc", {}).get("tokens_per_s")
        if g:
            row["gradacc_mfu"] = res["gradacc"]["mfu"]
            for p in PEERS + ("unfused",):
                if res.get(p, {}).get("tokens_per_s"):
                    row[f"vs_{p}"] = g / res[p]["tokens_per_s"]
        rows.append(row)
        save()
        log(row_line(a, row))


def row_line(a, row):
    nan = float("nan")
    cells = [f"{p} {row[p].get('tokens_per_s', nan):8.0f} ({100 * row[p].get('mfu', nan):4.1f}%)"
             for p in GRADACC + PEERS if p in row]
    ratios = [f"x{row[f'vs_{p}']:.2f} {p}" for p in PEERS + ("unfused",) if f"vs_{p}" in row]
    return (f"{a.gradacc_flags or 'default'}: {row['precision']} micro {row['micro']:3} x{row['accum']}: "
            f"tok/s (MFU) {'  '.join(cells)}  {'  '.join(ratios)}")


def doubling_probe(a, text, init):
    """Doubles the micro-batch until the first out-of-memory (one optimizer step each)."""
    fits = []
    micro = a.mem_start
    while micro <= a.mem_max:
        logpath = os.path.join(a.out, f"mem_{micro}.jsonl")
        cmd = gradacc_args(a, text, init, "bf16", micro, 1, 1, logpath)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            err = (p.stderr.strip().splitlines() or ["?"])[-1]
            log(f"  micro {micro:4}: does not fit ({err[:160]})")
            break
        peak = json.loads([l for l in open(logpath) if '"step"' in l][-1])["peak_bytes"]
        fits.append({"micro": micro, "peak_bytes": peak})
        log(f"  micro {micro:4}: peak {peak / 2**30:7.2f} GiB")
        micro *= 2
    return fits


def with_global_batch(cmd, global_batch, drop=("--micro-batch", "--accum")):
    """gradacc_args' command with --global-batch instead of the flags in `drop`."""
    out, skip = [], False
    for x in cmd:
        if skip:
            skip = False
        elif x in drop:
            skip = True
        else:
            out.append(x)
    return out + ["--global-batch", str(global_batch)]


def run_checked(cmd, what):
    """Runs cmd; on failure logs `what` with the exit status and the end of stderr."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        log(f"  {what}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
    return p


def run_logged(cmd, logpath, what):
    """run_checked, then the step records of gradacc's log (None on failure)."""
    p = run_checked(cmd, what)
    if p.returncode != 0:
        return None, p
    return [json.loads(l) for l in open(logpath) if '"step"' in l], p


def memory(a, text, init):
    """The memory budget on CUDA: a run planned for a budget, whose every step's peak must stay
    within it, and a window too large for the card, replayed with halved micro-batches after a real
    CUDA out-of-memory error. Global batch 512 sequences of 1024 tokens, bf16."""
    res = {}
    budget = a.mem_budget_gib
    logpath = os.path.join(a.out, "mem_planned.jsonl")
    cmd = with_global_batch(gradacc_args(a, text, init, "bf16", 1, 1, 2, logpath), 512) + \
        ["--memory-budget", f"{budget}GiB"]
    recs, p = run_logged(cmd, logpath, f"planned run, budget {budget} GiB")
    if recs:
        line = next((l for l in p.stdout.splitlines() if l.startswith("memory plan:")), "")
        peaks = [r["peak_bytes"] for r in recs]
        res["planned"] = {"budget_bytes": budget * 2**30, "plan_line": line, "micro_batch": recs[-1]["micro_batch"],
                          "micro_batches": recs[-1]["micro_batches"], "peak_bytes": peaks,
                          "within_budget": all(x <= budget * 2**30 for x in peaks),
                          "oom_replays": sum(r["oom_replays"] for r in recs)}
        log(f"  {line}")
        log(f"  measured peak per step: " + ", ".join(f"{x / 2**30:.2f}" for x in peaks) +
            f" GiB; within the {budget} GiB budget: {res['planned']['within_budget']}")
    else:
        res["planned"] = {"error": p.stderr.strip()[-300:]}

    # Micro-batches of 512 sequences (about 170 GB of activations) exceed an H100's and an H200's
    # memory: the window runs out of memory on the card, is discarded and replayed with half the
    # micro-batch, until it fits.
    logpath = os.path.join(a.out, "mem_replay.jsonl")
    cmd = with_global_batch(gradacc_args(a, text, init, "bf16", 1, 1, 1, logpath), 512) + ["--micro-batch", "512"]
    recs, p = run_logged(cmd, logpath, "out-of-memory replay")
    if recs:
        r = recs[-1]
        res["replay"] = {"asked_micro_batch": 512, "micro_batch": r["micro_batch"], "oom_replays": r["oom_replays"],
                         "peak_bytes": r["peak_bytes"], "loss": r.get("loss")}
        log(f"  micro-batch 512 asked: {r['oom_replays']} out-of-memory replays, ran with {r['micro_batch']}, "
            f"peak {r['peak_bytes'] / 2**30:.2f} GiB")
    else:
        res["replay"] = {"error": p.stderr.strip()[-300:]}
    if a.mem_probe:
        res["fits"] = doubling_probe(a, text, init)
    return res


def profile(a, text, init):
    """Kernel profiles of gradacc and a peer, steps 3-5, side by side (bench/trace_compare.py)."""
    micro, peer = a.profile_micro, a.profile_peer
    g_trace = os.path.join(a.out, f"trace_gradacc_{micro}.json")
    s_trace = os.path.join(a.out, f"trace_{peer}_{micro}.json")
    cmd = gradacc_args(a, text, init, "bf16", micro, a.accum, 5, os.path.join(a.out, "profile_gradacc.jsonl"))
    p = run_checked(cmd + ["--profile", g_trace], "gradacc --profile")
    if p.returncode != 0:
        return {"error": p.stderr.strip()[-300:]}
    p = run_checked(peer_args(a, peer, text, init, "bf16", micro, a.accum, 5, 2) + ["--profile", s_trace],
                    f"{peer} --profile")
    if p.returncode != 0:
        return {"error": p.stderr.strip()[-300:]}
    report = os.path.join(a.out, f"kernels_{micro}.txt")
    cmp = subprocess.run([sys.executable, os.path.join(HERE, "trace_compare.py"), g_trace, s_trace,
                          "--names", f"gradacc,{peer}", "--top", "40", "--json", report[:-4] + ".json"],
                         capture_output=True, text=True, timeout=120)
    with open(report, "w") as f:
        f.write(cmp.stdout + cmp.stderr)
    for line in cmp.stdout.splitlines()[:3] + [l for l in cmp.stdout.splitlines() if l.startswith("GPU time")]:
        log("  " + line)
    return {"report": report, "exit": cmp.returncode}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gradacc", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--micro", default="16,32,4", help="bf16 micro-batches, in the order run (the targets' first)")
    p.add_argument("--fp16-micro", default="")
    p.add_argument("--accum", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peak-tflops", type=float, default=989.4)
    p.add_argument("--mem-budget-gib", type=float, default=40, help="the planned run's --memory-budget")
    p.add_argument("--mem-probe", action="store_true", help="also double the micro-batch until out of memory")
    p.add_argument("--mem-start", type=int, default=32)
    p.add_argument("--mem-max", type=int, default=1024)
    p.add_argument("--profile-micro", type=int, default=16)
    p.add_argument("--profile-peer", default="compiled", help="the loop whose kernels are set beside gradacc's")
    p.add_argument("--program-timeout", type=int, default=300, help="seconds for one program's run")
    p.add_argument("--skip", default="", help="comma list of parts to skip: speed,profile,memory")
    p.add_argument("--device", default="cuda", help="cpu: a dry run of this script's logic")
    p.add_argument("--programs", default="gradacc,unfused,compiled,seed,accelerate",
                   help="gradacc, unfused (gradacc --fused-kernels off), compiled, seed, accelerate")
    p.add_argument("--compile-mode", default="default", help="torch.compile's mode for the compiled program")
    p.add_argument("--gradacc-flags", default="", help="extra flags for gradacc train (a variant)")
    p.add_argument("--tag", default="", help="suffix for this variant's files")
    p.add_argument("--shape", default="", help="layers,heads,dim,context instead of GPT-2 small (dry runs)")
    a = p.parse_args()
    if a.shape:
        SHAPE.update(zip(["layers", "heads", "dim", "context"], (int(x) for x in a.shape.split(","))))
    a.micro = [int(x) for x in a.micro.split(",") if x]
    a.fp16_micro = [int(x) for x in a.fp16_micro.split(",") if x]
    a.programs = a.programs.split(",")
    os.makedirs(a.out, exist_ok=True)
    text = os.path.join(a.out, "one_document.txt")
    one_document(a.text, text)
    init = os.path.join("/tmp", "gradacc_gpt2small_init.safetensors")
    n_params = write_init(init)
    log(f"gpt {SHAPE}: {n_params / 1e6:.1f} M parameters without wpe; "
        f"{flops_per_token(n_params, SHAPE, SHAPE['context']) / 1e9:.3f} GFLOP per token")
    results = {"shape": SHAPE, "params": n_params, "peak_tflops": a.peak_tflops}
    skip = set(a.skip.split(","))

    def save():  # after each part, so that a run cut short by its time limit keeps what it measured
        with open(os.path.join(a.out, f"gpu_bench{a.tag}.json"), "w") as f:
            json.dump(results, f, indent=1)

    if "speed" not in skip:
        log("speed (real tokens/s, steps after the warm-up):")
        results["speed"] = []
        speed(a, text, init, n_params, results["speed"], save)
    if "profile" not in skip:
        log(f"kernel profiles, bf16 micro {a.profile_micro} x{a.accum}, steps 3-5 (gradacc vs {a.profile_peer}):")
        results["profile"] = profile(a, text, init)
        save()
    if "memory" not in skip:
        log("memory (bf16, global batch 512): a planned run, and out-of-memory replay:")
        results["memory"] = memory(a, text, init)
    save()
    for row in results.get("speed", []):
        log(row_line(a, row))


if __name__ == "__main__":
    main()
