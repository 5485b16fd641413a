#!/usr/bin/env bash
# The library as a user gets it: `cmake --install` into a fresh prefix, then examples/custom_model
# (a project of its own, with its own model, data, loss and a stock LibTorch optimizer) configured
# with find_package(gradacc), built and run:
#   - a few training steps (the loss must fall);
#   - --verify: accumulated vs full-batch training of the example's own model (must pass);
#   - data parallel: 2 ranks through `gradacc launch --program` end with the weights of 1 process
#     (within 1e-5).
# Usage: install_example.sh BUILD_DIR SOURCE_DIR GRADACC_BIN PYTHON
set -u
build="$1" src="$2" G="$3" py="$4"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || fail "install: $(tail -n 5 "$tmp/install.log")"
[ -f "$tmp/prefix/lib/cmake/gradacc/gradaccConfig.cmake" ] || fail "no package config installed"
[ -f "$tmp/prefix/include/gradacc/gradacc.h" ] || fail "no umbrella header installed"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src/examples/custom_model" -B "$tmp/ex" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" "${launcher[@]}" \
  >"$tmp/configure.log" 2>&1 || fail "configure against the installed package: $(tail -n 8 "$tmp/configure.log")"
cmake --build "$tmp/ex" >"$tmp/build.log" 2>&1 || fail "build: $(grep -m5 -E 'error' "$tmp/build.log")"
ex="$tmp/ex/custom_model"

"$ex" --steps 30 >"$tmp/run.out" 2>&1 || fail "run: $(tail -n 3 "$tmp/run.out")"
first=$(grep -m1 '^step 10 ' "$tmp/run.out" | awk '{print $4}')
last=$(grep '^step 30 ' "$tmp/run.out" | awk '{print $4}')
[ -n "$first" ] && [ -n "$last" ] || fail "no step lines: $(cat "$tmp/run.out")"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "loss did not fall: step 10 $first, step 30 $last"
echo "example trained: loss $first at step 10, $last at step 30; $(grep accuracy "$tmp/run.out")"

"$ex" --steps 5 --verify >"$tmp/verify.out" 2>&1 || fail "verify on the example's model: $(tail -n 4 "$tmp/verify.out")"
grep -q "PASS" "$tmp/verify.out" || fail "verify did not pass"
echo "verify on the example's model: $(grep 'max |Δweight|' "$tmp/verify.out" | cut -c1-80)"

port=$((20000 + RANDOM % 20000))
"$G" launch --nproc 2 --master-port "$port" --program "$ex" -- --steps 8 --save "$tmp/w2.safetensors" >"$tmp/dp.out" 2>&1 \
  || fail "2 ranks: $(tail -n 5 "$tmp/dp.out")"
"$ex" --steps 8 --save "$tmp/w1.safetensors" >/dev/null 2>&1 || fail "1 rank"
"$py" - "$tmp/w1.safetensors" "$tmp/w2.safetensors" <<'PY' || fail "world 2 differs from world 1"
import sys
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys(), (a.keys(), b.keys())
worst = max(float(abs(a[k].astype("float64") - b[k].astype("float64")).max()) for k in a)
print(f"data parallel: 2 ranks × 4 micro-batches vs 1 rank × 8: max |Δw| = {worst:.2e} (tolerance 1e-5)")
sys.exit(0 if worst <= 1e-5 else 1)
PY
echo "install + example: ok"
