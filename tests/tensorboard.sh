#!/usr/bin/env bash
# `gradacc train --tensorboard DIR` (docs/tensorboard.md), read back by TensorBoard's own Python
# reader (tests/tensorboard_check.py):
#   1. our message declarations have TensorBoard's field numbers, types and labels (protoc's
#      descriptor of src/log/tensorboard_event.proto against the tensorboard package's);
#   2. a run that logged 5 steps and left a checkpoint at step 3, resumed (steps 4 and 5 are redone)
#      and finished: TensorBoard's scalars equal the JSONL at every step, evaluations included, across the
#      two event files; the options and the run are text;
#   3. the first file cut in the middle of its last record reads up to the record before;
#   4. data parallel (2 ranks): one event file, rank 0's, equal to its JSONL;
#   5. bad input gets one line: a directory that cannot be made, a directory that is a file.
# Usage: tensorboard.sh path/to/gradacc path/to/venv/python path/to/protoc
set -u
G=${1:?usage: tensorboard.sh gradacc python protoc}
PY=${2:?usage: tensorboard.sh gradacc python protoc}
PROTOC=${3:?usage: tensorboard.sh gradacc python protoc}
HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
. "$HERE/ranks_lib.sh"  # fail, port, bad
"$PY" -c "import tensorboard" 2>/dev/null || fail "the tensorboard package is missing from $PY (scripts/setup.sh installs it)"

"$PROTOC" --descriptor_set_out="$D/ours.pb" -I"$HERE/../src/log" "$HERE/../src/log/tensorboard_event.proto" \
  || fail "protoc on tensorboard_event.proto"
"$PY" "$HERE/tensorboard_check.py" proto "$D/ours.pb" || fail "the message declarations"

c=(--model cnn --train-limit 512 --global-batch 64 --micro-batch 16 --eval-every 2 --seed 3 --progress off)
"$G" train "${c[@]}" --threads 2 --steps 8 --log "$D/a.jsonl" --tensorboard "$D/tb" --checkpoint-dir "$D/ck" --save-every 3 --stop-at 5 \
  >"$D/out.txt" 2>&1 || fail "the first run: $(cat "$D/out.txt")"
first=$(ls "$D"/tb/events.out.tfevents.*)
# As if the run had died after logging step 5 but before its checkpoint: the resume redoes 4 and 5.
rm "$D/ck/ckpt-step-00000005.safetensors"
"$G" train "${c[@]}" --threads 2 --steps 8 --log "$D/a.jsonl" --tensorboard "$D/tb" --resume "$D/ck" \
  >"$D/out.txt" 2>&1 || fail "the resumed run: $(cat "$D/out.txt")"
[ "$(ls "$D"/tb/events.out.tfevents.* | wc -l)" = 2 ] || fail "a resume adds one event file: $(ls "$D/tb")"
"$PY" "$HERE/tensorboard_check.py" equal "$D/tb" "$D/a.jsonl" || fail "TensorBoard against the JSONL"
"$PY" "$HERE/tensorboard_check.py" cut "$first" || fail "a cut event file"

"$G" launch --nproc 2 -- train "${c[@]}" --threads 1 --steps 3 --log "$D/w2.jsonl" \
  --tensorboard "$D/tb2" >"$D/out.txt" 2>&1 || fail "2 ranks: $(cat "$D/out.txt")"
[ "$(ls "$D"/tb2/events.out.tfevents.* | wc -l)" = 1 ] || fail "2 ranks write one event file: $(ls "$D/tb2")"
"$PY" "$HERE/tensorboard_check.py" equal "$D/tb2" "$D/w2.jsonl" || fail "2 ranks: TensorBoard against the JSONL"

touch "$D/file"
bad "cannot write TensorBoard directory" --steps 1 --train-limit 64 --tensorboard "$D/file/tb"
bad "cannot write TensorBoard directory" --steps 1 --train-limit 64 --tensorboard "$D/file"
echo "tensorboard: all checks passed"
