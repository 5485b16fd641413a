#!/usr/bin/env python3
"""gradacc's include graph, with folders as nodes, checked against the layers the project declares.

    scripts/include_graph.py              figures: nodes, layers, edges, edges pointing up, cycles
    scripts/include_graph.py --check      the same, and exit 1 on an edge that points up a layer,
                                          a cycle, more than 7 layers, a public header that includes
                                          a private one, or a folder no layer names
    scripts/include_graph.py --edges      every edge, with the files that make it
    scripts/include_graph.py --layout     the README's layout section, drawn from LAYERS below

A node is a folder of src/ (a component). A public header, include/gradacc/NAME.h, belongs to the
component whose folder holds NAME.cc (or to the one PUBLIC_HOME names). Tests (*_test.cc) and
src/testing/ may include anything and are left out. An edge A -> B means a file of A includes a
file of B. Layers are listed bottom first: an edge may point down, or stay inside its layer, never
up; and the graph must have no cycle.
"""
import argparse
import collections
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Bottom first. Each folder: what it is, in the words of the data path.
LAYERS = [
    ("base", {"base": "errors, parsing of numbers and names, files written atomically",
              "device": "devices, memory readings, the CPU allocator hook, the CUDA backend"}),
    ("data", {"data": "Dataset and Batch (samples and items), TensorDataset, torch::data adapter",
              "batch": "the batch plan, windows of the epoch, micro-batches (fixed, token budget, packed)"}),
    ("compute", {"model": "the user's Model and loss, activation checkpointing",
                 "optim": "optimizers (LibTorch's, gradacc's fused AdamW), the LR schedule",
                 "precision": "autocast, fp16 loss scaling, fp32 master weights",
                 "sync": "process groups (Gloo, NCCL), the window's reduction, ZeRO's partitions of the flat buffers"}),
    ("accumulate", {"accumulate": "the flat gradient buffer and its ZeRO-2 shard, ZeRO-3's gathers of units, the window boundary",
                    "memory": "the memory budget's planner",
                    "log": "the step log (JSONL), the progress bar",
                    "checkpoint": "safetensors, the checkpoint file, the checkpointer, optimizer shards"}),
    ("train", {"train": "options resolved once, the Trainer, the step loop, verify, train_with_accumulation",
               "builtin": "gradacc's own models (mlp, cnn, gpt) and data readers (Fashion-MNIST, text)"}),
    ("app", {"app": "the gradacc command: jobs, options table, DeepSpeed/HF configs, launch, plot, generate"}),
]
MAX_LAYERS = 7
# Components only some others may include: gradacc's own models and readers are not the library's.
ONLY_FOR = {"builtin": {"app"}, "app": set()}
# Public headers with no NAME.cc of the same stem: the component that owns their contract.
PUBLIC_HOME = {
    "gradacc.h": "train", "errors.h": "base", "torch_dataset.h": "data", "batch_plan.h": "batch",
    "step_report.h": "accumulate", "sync_mode.h": "sync", "options.h": "train",
    "train_with_accumulation.h": "train",
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of():
    return {folder: i for i, (_, folders) in enumerate(LAYERS) for folder in folders}


def public_headers():
    return sorted(str(p.relative_to(ROOT / "include/gradacc")) for p in (ROOT / "include/gradacc").rglob("*.h"))


def node_of(path, homes):
    """The component of a file (a path relative to ROOT), or None for what the graph leaves out."""
    parts = path.parts
    if parts[0] == "include":
        # include/gradacc/NAME.h; an older layout's include/gradacc/FOLDER/NAME.h is FOLDER's
        return parts[2] if len(parts) > 3 else homes.get(path.name, "include/gradacc")
    if parts[0] != "src" or len(parts) < 3 or parts[1] == "testing" or path.stem.endswith("_test"):
        return None
    return parts[1]


def resolve(spelled):
    """The file an include names: gradacc/NAME.h is public; anything else is relative to src/."""
    if spelled.startswith("gradacc/"):
        return pathlib.Path("include") / spelled
    return pathlib.Path("src") / spelled


def graph():
    homes = {}
    for name in (n for n in public_headers() if "/" not in n):
        stem = name[:-2]
        owners = [p.parent.name for p in (ROOT / "src").glob(f"*/{stem}.cc")]
        homes[name] = PUBLIC_HOME.get(name) or (owners[0] if owners else None)
    files = [p.relative_to(ROOT) for p in list((ROOT / "src").rglob("*")) + list((ROOT / "include").rglob("*"))
             if p.suffix in (".h", ".cc")]
    edges = collections.defaultdict(list)
    problems = []
    for f in files:
        a = node_of(f, homes)
        text = (ROOT / f).read_text(errors="replace")
        for spelled in INCLUDE.findall(text):
            target = resolve(spelled)
            if not (ROOT / target).exists():
                if (ROOT / f.parent / spelled).exists():
                    problems.append(f"{f}: includes {spelled} relative to itself; spell it from src/")
                continue  # a system or third-party header
            if f.parts[0] == "include" and target.parts[0] != "include":
                problems.append(f"{f}: a public header includes the private {target}")
            b = node_of(target, homes)
            if a and b and a != b:
                edges[(a, b)].append(f"{f} -> {spelled}")
    nodes = sorted({n for e in edges for n in e} | {h for h in homes.values() if h} |
                   {p.name for p in (ROOT / "src").iterdir() if p.is_dir() and p.name != "testing"})
    for name, home in homes.items():
        if home is None:
            problems.append(f"include/gradacc/{name}: no component owns it (add it to PUBLIC_HOME)")
    return nodes, edges, problems


def cycles(nodes, edges):
    """Strongly connected components of more than one node (Tarjan)."""
    succ = collections.defaultdict(list)
    for a, b in edges:
        succ[a].append(b)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def layout():
    lines = ["```", f"{'layer':<11}{'folder':<17}what it holds",
             f"{'(API)':<11}{'include/gradacc/':<17}the public headers a user includes (docs/library.md)"]
    for name, folders in reversed(LAYERS):
        for i, (folder, what) in enumerate(folders.items()):
            lines.append(f"{name if i == 0 else '':<11}{'src/' + folder + '/':<17}{what}")
    lines.append("```")
    return "\n".join(lines)


def depth(nodes, edges):
    """Levels of the longest-path layering of the graph with its cycles collapsed: the fewest
    layers any declaration could have."""
    comp = {n: n for n in nodes}
    for c in cycles(nodes, edges):
        for n in c:
            comp[n] = c[0]
    succ = collections.defaultdict(set)
    for a, b in edges:
        if comp[a] != comp[b]:
            succ[comp[a]].add(comp[b])
    memo = {}

    def level(v):
        if v not in memo:
            memo[v] = 1 + max((level(w) for w in succ[v]), default=0)
        return memo[v]

    return max((level(comp[n]) for n in nodes), default=0)


def main():
    global ROOT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", help="the checkout to read (default: this script's)")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--edges", action="store_true")
    ap.add_argument("--layout", action="store_true")
    args = ap.parse_args()
    if args.root:
        ROOT = pathlib.Path(args.root).resolve()
    if args.layout:
        print(layout())
        return 0
    nodes, edges, problems = graph()
    layers = layer_of()
    unplaced = [n for n in nodes if n not in layers]
    up = sorted((a, b) for a, b in edges if a in layers and b in layers and layers[b] > layers[a])
    loops = cycles(nodes, edges)
    if args.edges:
        for (a, b), why in sorted(edges.items()):
            print(f"{a} -> {b}  ({len(why)}): {why[0]}" + (f" and {len(why) - 1} more" if len(why) > 1 else ""))
    print(f"nodes {len(nodes)}, layers {len(LAYERS)} declared ({depth(nodes, edges)} by longest path), "
          f"edges {len(edges)}, edges pointing up {len(up)}, cycles {len(loops)}, "
          f"public headers {len(public_headers())}")
    for (a, b), why in sorted(edges.items()):
        if b in ONLY_FOR and a not in ONLY_FOR[b]:
            problems.append(f"{a} -> {b}: only {sorted(ONLY_FOR[b]) or 'nothing'} may include {b}: {why[0]}")
    for a, b in up:
        problems.append(f"{a} ({LAYERS[layers[a]][0]}) -> {b} ({LAYERS[layers[b]][0]}) points up: {edges[(a, b)][0]}")
    for c in loops:
        problems.append("cycle: " + " <-> ".join(c))
    for n in unplaced:
        problems.append(f"src/{n}/ is in no layer (add it to LAYERS)")
    readme = (ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else ""
    start, end = "<!-- layout: drawn by scripts/include_graph.py --layout -->\n", "<!-- /layout -->"
    if start in readme and readme.split(start, 1)[1].split(end, 1)[0].strip() != layout().strip():
        problems.append("README.md's layout section differs from LAYERS: paste scripts/include_graph.py --layout")
    if len(LAYERS) > MAX_LAYERS:
        problems.append(f"{len(LAYERS)} layers, more than {MAX_LAYERS}")
    for p in problems:
        print("  " + p)
    return 1 if (args.check and problems) else 0


if __name__ == "__main__":
    sys.exit(main())
