# Helpers of the data-parallel test scripts (distributed.sh, zero2.sh, zero3.sh), sourced after they set
# G (the gradacc binary), PY (the venv's python) and D (a scratch directory).
fail() { echo "FAIL: $*" >&2; exit 1; }
# A port for ranks started by hand, whose rank 0 hosts the store (`gradacc launch` picks its own):
# below Linux's ephemeral range (32768+), where outgoing connections never take it, and free now.
port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 12000))
    "$PY" -c 'import socket, sys; socket.create_server(("127.0.0.1", int(sys.argv[1]))).close()' "$p" 2>/dev/null \
      && { echo "$p"; return; }
  done
  fail "no free port in 20000..31999"
}

steps_logged() {  # steps_logged log.jsonl: the optimizer steps a run has logged so far (0 before its log exists)
  local n; n=$(grep -c '"step"' "$1" 2>/dev/null); echo "${n:-0}"
}

bad() {  # bad expected args...: `gradacc train args` fails with one error line matching expected, exit 2
  local want=$1; shift
  "$G" train "$@" >"$D/bad.out" 2>&1
  local rc=$?
  [ $rc = 2 ] && grep -q "error: .*$want" "$D/bad.out" && [ "$(grep -c error "$D/bad.out")" = 1 ] \
    || fail "$* (rc $rc): $(cat "$D/bad.out")"
  echo "$*: $(grep -o 'error: .*' "$D/bad.out")"
}

run_world() {  # run_world N out.safetensors log.jsonl args...
  local n=$1 save=$2 log=$3; shift 3
  if [ "$n" = 1 ]; then
    "$G" train "$@" --save "$save" --log "$log" >"$D/out.txt" 2>&1 || fail "world 1: $(tail -3 "$D/out.txt")"
  else
    "$G" launch --nproc "$n" -- train "$@" --save "$save" --log "$log" >"$D/out.txt" 2>&1 \
      || fail "world $n: $(tail -3 "$D/out.txt")"
  fi
}

max_diff() {  # max_diff a.safetensors b.safetensors: the largest |Δw| of two weight files
  "$PY" -c 'import sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys()
print(max((a[k].double() - b[k].double()).abs().max().item() for k in a))' "$1" "$2"
}

within() {  # within a.safetensors b.safetensors tolerance label
  local d; d=$(max_diff "$1" "$2") || fail "$4: unreadable weights"
  "$PY" -c "import sys; sys.exit(0 if $d <= $3 else 1)" || fail "$4: max |Δw| = $d > $3"
  echo "$4: max |Δw| = $d (tolerance $3)"
}

refuses_per_micro_batch_sync() {  # refuses_per_micro_batch_sync STAGE: one error line at world 2, a note at world 1
  "$G" launch --nproc 2 -- train --model mlp --train-limit 256 --steps 1 --zero "$1" \
    --sync every-micro-batch >"$D/bad.out" 2>&1 && fail "zero $1 with every-micro-batch sync ran"
  grep -q "error: zero $1 reduces each micro-batch's gradient into the owners' shards" "$D/bad.out" \
    || fail "zero $1 with every-micro-batch sync: $(cat "$D/bad.out")"
  echo "every-micro-batch sync: $(grep -o 'error: .*' "$D/bad.out" | head -1)"
  "$G" train --model mlp --train-limit 256 --steps 1 --micro-batch 32 --zero "$1" >"$D/one.out" 2>&1 || fail "world 1"
  grep -q "note: zero $1 at world size 1 changes nothing" "$D/one.out" || fail "world 1 note: $(cat "$D/one.out")"
}
