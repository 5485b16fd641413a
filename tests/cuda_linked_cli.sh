#!/usr/bin/env bash
# The CLI linked against LibTorch's CUDA libraries, on whatever machine CI has (usually no GPU):
# it trains and checkpoints on the CPU, draws a plot (the command that crashed when libtorch.so's
# std::filesystem shadowed libstdc++'s), and refuses `--device cuda` in one line where there is no
# GPU, or trains on it where there is one.
set -u
bin="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$bin" train --model mlp --train-limit 256 --global-batch 64 --micro-batch 16 --steps 3 \
  --log "$tmp/run.jsonl" --checkpoint-dir "$tmp/ckpt" >"$tmp/out" 2>&1 || fail "train on cpu: $(tail -n 3 "$tmp/out")"
[ "$(grep -c '"step"' "$tmp/run.jsonl")" -eq 3 ] || fail "expected 3 step records"
ls "$tmp"/ckpt/ckpt-step-*.safetensors >/dev/null 2>&1 || fail "no checkpoint written"
if command -v gnuplot >/dev/null; then
  "$bin" plot "$tmp/run.jsonl" -o "$tmp/run.png" >"$tmp/out" 2>&1 || fail "plot exited $?: $(tail -n 3 "$tmp/out")"
  [ -s "$tmp/run.png" ] || fail "plot wrote no PNG"

fi
"$bin" train --model mlp --train-limit 64 --steps 1 --device cuda >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 2 ]; then
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "expected one error line, got: $(cat "$tmp/err")"
  grep -q "no usable CUDA device" "$tmp/err" || fail "unexpected error: $(cat "$tmp/err")"
  echo "no GPU here: --device cuda refused in one line, as it should be"
elif [ $rc -eq 0 ]; then
  echo "trained on the GPU"
else
  fail "--device cuda exited $rc: $(cat "$tmp/err")"
fi
echo "cuda-linked CLI: ok"
