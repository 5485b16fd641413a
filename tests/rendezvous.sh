#!/usr/bin/env bash
# Who hosts the ranks' rendezvous store (sync/dist_env.h, sync/rendezvous_host.h):
#   1. gradacc launch hosts it, on a port the kernel picks, so a stalled rank 0 is named by its
#      peers like any other rank (rank 0 hosting it is distributed.sh's);
#   2. the launcher killed, its store with it: its ranks stop;
#   3. torchrun's agent hosts it (TORCHELASTIC_USE_AGENT_STORE=True): the ranks train as under
#      gradacc launch, byte for byte, also across a restart on the same store (--resume auto), as
#      across gradacc launch --max-restarts;
#   4. a port that is taken, an address that does not resolve: one line, no rank started.
# Usage: rendezvous.sh path/to/gradacc path/to/venv/python
set -u
G=${1:?usage: rendezvous.sh gradacc python}
PY=${2:?usage: rendezvous.sh gradacc python}
D=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$D"' EXIT
. "$(dirname "$0")/ranks_lib.sh"  # fail, port, steps_logged
stall=(train --model mlp --train-limit 4096 --micro-batch 8 --accum 2 --steps 100000 --threads 1 --dist-timeout 4)

# Under the launcher the store is the launcher's, so a stalled rank 0 is named like any other rank.
"$G" launch --nproc 2 --grace 2 -- "${stall[@]}" --log "$D/ls.jsonl" >"$D/ls.out" 2>&1 &
lp=$!; PIDS+=("$lp")
for _ in $(seq 600); do [ "$(steps_logged "$D/ls.jsonl")" -ge 3 ] && break; sleep 0.05; done
rank0=$(pgrep -P "$lp" | head -1)
kill -STOP "$rank0"
wait "$lp"; rc=$?
kill -9 "$rank0" 2>/dev/null
[ "$rc" -ne 0 ] && grep -q "\[rank 1\] .*because rank 0 did not answer" "$D/ls.out" \
  || fail "launch, stalled rank 0: exit $rc: $(cat "$D/ls.out")"
echo "launch, stalled rank 0: $(grep -o 'rank 1: .*did not answer' "$D/ls.out")"

# The launcher killed with SIGKILL (its store with it): its ranks get SIGTERM and stop, none is
# left training on unwatched.
"$G" launch --nproc 2 -- "${stall[@]}" --log "$D/k.jsonl" >"$D/k.out" 2>&1 &
lp=$!; PIDS+=("$lp")
for _ in $(seq 600); do [ "$(steps_logged "$D/k.jsonl")" -ge 3 ] && break; sleep 0.05; done
ranks=$(pgrep -P "$lp" | tr '\n' ' ')
[ -n "$ranks" ] || fail "no ranks under the launcher"
PIDS+=($ranks)
kill -9 "$lp"; wait "$lp" 2>/dev/null
for _ in $(seq 200); do kill -0 $ranks 2>/dev/null || break; sleep 0.1; done
for r in $ranks; do kill -0 "$r" 2>/dev/null && fail "rank $r still runs 20 s after its launcher was killed"; done
echo "launcher killed with SIGKILL: its ranks ($ranks) stopped"

# torchrun hosts the store in its agent (TORCHELASTIC_USE_AGENT_STORE=True): the ranks join it as
# clients and train as under gradacc launch, byte for byte.
tr=(train --model mlp --train-limit 1024 --micro-batch 8 --accum 2 --threads 1 --dist-timeout 30)
"$G" launch --nproc 2 -- "${tr[@]}" --steps 8 --save "$D/tl.safetensors" >"$D/tl.out" 2>&1 || fail "launch: $(tail -3 "$D/tl.out")"
"$PY" -m torch.distributed.run --nproc-per-node 2 --master-port "$(port)" --no-python "$G" "${tr[@]}" --steps 8 \
  --save "$D/tt.safetensors" >"$D/tt.out" 2>&1 || fail "torchrun: $(grep -m3 -i error "$D/tt.out")"
cmp -s "$D/tl.safetensors" "$D/tt.safetensors" || fail "torchrun's ranks ended with other weights than launch's"
# --standalone: the c10d rendezvous backend, whose store is shared with the ranks too.
"$PY" -m torch.distributed.run --standalone --nproc-per-node 2 --no-python "$G" "${tr[@]}" --steps 8 \
  --save "$D/ts.safetensors" >"$D/ts.out" 2>&1 || fail "torchrun --standalone: $(grep -m3 -i error "$D/ts.out")"
cmp -s "$D/tl.safetensors" "$D/ts.safetensors" || fail "torchrun --standalone: other weights than launch's"
echo "torchrun (its agent hosts the store; static and --standalone): weights equal launch's"

# A restart meets on the same store. First attempt: rank 1 is killed 2 s in, about when the group
# forms. Second attempt: rank 0 comes late, so rank 1 reads rank 0's address of the first attempt
# unless each attempt's keys are kept apart (TORCHELASTIC_RESTART_COUNT). Without that prefix this
# failed 2 runs of 2 here (Gloo connectFullMesh: connection refused); when rank 1 died later, 3 s
# in, Gloo's retries hid the stale address, so the check's power depends on that timing.
cat >"$D/killed" <<EOF
#!/bin/sh
if [ "\$TORCHELASTIC_RESTART_COUNT" = 0 ]; then
  [ "\$RANK" = 1 ] && exec timeout -s KILL 2 "$G" "\$@" --steps 100000
  exec "$G" "\$@" --steps 100000
fi
[ "\$RANK" = 0 ] && sleep 2
exec "$G" "\$@" --steps 8
EOF
chmod +x "$D/killed"
"$PY" -m torch.distributed.run --nproc-per-node 2 --max-restarts 1 --master-port "$(port)" --no-python "$D/killed" \
  "${tr[@]}" --save "$D/tk.safetensors" >"$D/tk.out" 2>&1 \
  || fail "torchrun restart after a kill: $(grep -m3 -i error "$D/tk.out")"
cmp -s "$D/tl.safetensors" "$D/tk.safetensors" || fail "torchrun's restarted ranks ended with other weights"
echo "torchrun restart after rank 1 was killed: weights equal the uninterrupted run's"

# A restarted job continues with the same command line (--resume auto). First attempt: both ranks
# stop after step 3 with a checkpoint, then rank 1 fails. Second attempt: rank 0 comes late again;
# both resume from step 3 and end with the uninterrupted run's weights.
cat >"$D/flaky" <<EOF
#!/bin/sh
if [ "\$TORCHELASTIC_RESTART_COUNT" = 0 ]; then
  "$G" "\$@" --stop-at 3 || exit
  [ "\$RANK" = 1 ] && exit 3
  exit 0
fi
[ "\$RANK" = 0 ] && sleep 2
exec "$G" "\$@"
EOF
chmod +x "$D/flaky"
"$PY" -m torch.distributed.run --nproc-per-node 2 --max-restarts 1 --master-port "$(port)" --no-python "$D/flaky" \
  "${tr[@]}" --steps 8 --checkpoint-dir "$D/rck" --resume auto --save "$D/tr.safetensors" >"$D/tr.out" 2>&1 \
  || fail "torchrun restart: $(grep -m3 -i error "$D/tr.out")"
grep -q "resumed from $D/rck/ckpt-step-00000003.safetensors at step 3" "$D/tr.out" \
  || fail "torchrun restart: the second attempt did not resume from step 3: $(grep -m3 -i 'resum\|error' "$D/tr.out")"
cmp -s "$D/tl.safetensors" "$D/tr.safetensors" || fail "torchrun's restarted ranks ended with other weights"
echo "torchrun restart with --resume auto: resumed at step 3, weights equal the uninterrupted run's"
# gradacc launch restarts the same way (--max-restarts), on its one store.
"$G" launch --nproc 2 --max-restarts 1 --program "$D/flaky" -- "${tr[@]}" --steps 8 --checkpoint-dir "$D/lck" \
  --resume auto --save "$D/lr.safetensors" >"$D/lr.out" 2>&1 || fail "launch restart: $(grep -m3 'error\|launch' "$D/lr.out")"
grep -q "^\[launch\] restarting all ranks: attempt 2 of 2" "$D/lr.out" \
  && grep -q "resumed from $D/lck/ckpt-step-00000003.safetensors at step 3" "$D/lr.out" \
  || fail "launch restart: $(grep -m4 'launch\|resum\|error' "$D/lr.out")"
cmp -s "$D/tl.safetensors" "$D/lr.safetensors" || fail "launch's restarted ranks ended with other weights"
echo "launch --max-restarts 1 with --resume auto: $(grep -o 'restarting.*' "$D/lr.out"), weights equal the uninterrupted run's"
"$G" launch --nproc 2 --max-restarts 1001 -- "${tr[@]}" >"$D/mr.out" 2>&1 && fail "--max-restarts 1001 ran"
grep -q "error: --max-restarts must be in 0..1000, got 1001" "$D/mr.out" || fail "--max-restarts 1001: $(cat "$D/mr.out")"

# A port that is taken: the launcher says so in one line and starts no rank.
"$PY" -c 'import socket, sys, time
s = socket.create_server(("", 0)); print(s.getsockname()[1], flush=True); time.sleep(60)' >"$D/held" &
holder=$!; PIDS+=("$holder")
for _ in $(seq 100); do [ -s "$D/held" ] && break; sleep 0.05; done
"$G" launch --nproc 2 --master-port "$(cat "$D/held")" -- "${tr[@]}" >"$D/taken.out" 2>&1; rc=$?
kill "$holder"
[ "$rc" -eq 2 ] && [ "$(wc -l <"$D/taken.out")" -eq 1 ] && grep -q "cannot host the rendezvous store at .*:$(cat "$D/held"): .*EADDRINUSE" "$D/taken.out" \
  || fail "taken port: exit $rc: $(cat "$D/taken.out")"
echo "taken port: $(cat "$D/taken.out")"

# An address that does not resolve: one line, at once, instead of a connect timeout.
start=$(date +%s)
"$G" launch --nproc 2 --master-addr no-such-host.invalid -- "${tr[@]}" >"$D/addr.out" 2>&1; rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <"$D/addr.out")" -eq 1 ] && grep -q "'no-such-host.invalid' does not resolve" "$D/addr.out" \
  || fail "unresolvable address: exit $rc: $(cat "$D/addr.out")"
echo "unresolvable address after $(( $(date +%s) - start )) s: $(cat "$D/addr.out")"
echo "rendezvous: all checks passed"
