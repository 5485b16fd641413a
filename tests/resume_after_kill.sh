#!/usr/bin/env bash
# Exact resume through the CLI: a run killed with SIGKILL between checkpoints, and one stopped by
# SIGTERM (a scheduler's preemption), each resumed with --resume, must end with the same weights
# (byte-identical files) and the same logged step records as a run that was never interrupted.
# Usage: resume_after_kill.sh path/to/gradacc
set -u
G=${1:?usage: resume_after_kill.sh path/to/gradacc}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 2560 images in windows of 4 × 32: 20 windows per epoch, 80 steps = 4 epochs. The CNN makes a
# step slow enough (tens of ms) for the signal to land mid-run.
common=(train --model cnn --train-limit 2560 --micro-batch 32 --accum 4 --steps 80 --schedule cosine --threads 2)

"$G" "${common[@]}" --log "$D/full.jsonl" --save "$D/full.safetensors" >/dev/null || fail "uninterrupted run"

steps_logged() { local n; n=$(grep -c '"step"' "$1" 2>/dev/null); echo "${n:-0}"; }

# Starts a checkpointing run, waits until it has logged `at` steps, sends `signal`; echoes the exit code.
interrupt_run() {
  local tag=$1 signal=$2 at=$3
  "$G" "${common[@]}" --log "$D/$tag.jsonl" --save "$D/$tag.safetensors" --checkpoint-dir "$D/$tag-ckpt" \
      --save-every 10 >"$D/$tag.out" 2>&1 &
  local pid=$! waited=0
  while [ "$(steps_logged "$D/$tag.jsonl")" -lt "$at" ]; do
    kill -0 "$pid" 2>/dev/null || fail "$tag: the run ended before step $at"
    sleep 0.02
    waited=$((waited + 1))
    [ "$waited" -lt 6000 ] || { kill -9 "$pid"; fail "$tag: no step $at after 120 s"; }
  done
  kill "-$signal" "$pid"
  wait "$pid"
  echo $?
}

compare_with_full() {
  local tag=$1
  cmp -s "$D/full.safetensors" "$D/$tag.safetensors" || fail "$tag: resumed weights differ from the uninterrupted run"
  python3 - "$D/full.jsonl" "$D/$tag.jsonl" <<'PY' || fail "$tag: logged steps differ"
import json, sys
def steps(path):
    rows = [json.loads(line) for line in open(path)]
    return [(r["step"], r["epoch"], r["loss"], r["grad_norm"], r["lr"], r["samples"]) for r in rows if "step" in r]
a, b = steps(sys.argv[1]), steps(sys.argv[2])
if len(a) != 80 or a != b:
    bad = next((x, y) for x, y in zip(a + [None] * 80, b + [None] * 80) if x != y)
    sys.exit(f"{len(a)} vs {len(b)} records; first difference {bad}")
PY
}

# SIGKILL at step ≥ 25: checkpoints 10 and 20 exist, steps after 20 are lost and redone.
rc=$(interrupt_run kill KILL 25)
[ "$rc" = 137 ] || fail "kill: exit $rc, expected 137"
[ ! -e "$D/kill.safetensors" ] || fail "kill: the run finished before the kill"
last=$(steps_logged "$D/kill.jsonl")
ls "$D/kill-ckpt"/ckpt-step-*.safetensors >/dev/null 2>&1 || fail "kill: no checkpoint written"
"$G" "${common[@]}" --log "$D/kill.jsonl" --save "$D/kill.safetensors" --resume "$D/kill-ckpt" >"$D/kill-resume.out" 2>&1 \
  || fail "kill: resume failed: $(cat "$D/kill-resume.out")"
grep -q "resumed from" "$D/kill-resume.out" || fail "kill: no resume message"
compare_with_full kill
echo "SIGKILL after $last logged steps; $(grep -o 'resumed from .*' "$D/kill-resume.out"); identical weights and 80 step records"

# SIGTERM: the run finishes its window, checkpoints that step, exits 143.
rc=$(interrupt_run term TERM 33)
[ "$rc" = 143 ] || fail "term: exit $rc, expected 143 ($(cat "$D/term.out"))"
grep -q "interrupted (SIGTERM) after step" "$D/term.out" || fail "term: no interruption message: $(cat "$D/term.out")"
"$G" "${common[@]}" --log "$D/term.jsonl" --save "$D/term.safetensors" --resume "$D/term-ckpt" >"$D/term-resume.out" 2>&1 \
  || fail "term: resume failed: $(cat "$D/term-resume.out")"
compare_with_full term
echo "SIGTERM: $(grep -o 'interrupted.*' "$D/term.out" | cut -d';' -f1); identical weights and 80 step records"
