#!/usr/bin/env bash
# The library as a user gets it: `cmake --install` into a fresh prefix, moved elsewhere; exactly the
# public headers installed, each compiling alone; then examples/custom_model's main.cc (its own
# model, data, loss and a stock LibTorch optimizer) built with the CMakeLists.txt that
# docs/library.md shows, and run:
#   - a few training steps (the loss must fall);
#   - --verify: accumulated vs full-batch training of the example's own model (must pass);
#   - data parallel: 2 ranks through `gradacc launch --program` end with the weights of 1 process
#     (within 1e-5), also under ZeRO-3 over the example's declared units;
#   - examples/dual_encoder (a contrastive loss over the whole window): it learns, and 2 ranks end
#     with the weights of 1.
# Usage: install_example.sh BUILD_DIR SOURCE_DIR GRADACC_BIN PYTHON
set -u
build="$1" src="$2" G="$3" py="$4"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$tmp/built" >"$tmp/install.log" 2>&1 || fail "install: $(tail -n 5 "$tmp/install.log")"
# The installed tree is moved before use: nothing of the build machine may be baked into it.
mv "$tmp/built" "$tmp/prefix"
[ -f "$tmp/prefix/lib/cmake/gradacc/gradaccConfig.cmake" ] || fail "no package config installed"
grep -rq "$tmp/built\|$build" "$tmp/prefix/lib/cmake/gradacc" && fail "the package names the tree it was installed into or built in"

# Exactly the public headers: include/gradacc/*.h of the source tree, nothing else.
installed=$(cd "$tmp/prefix/include" && find . -type f | sort)
public=$(cd "$src/include" && find . -type f | sort)
[ "$installed" = "$public" ] || fail "installed headers differ from the public set: $(diff <(echo "$public") <(echo "$installed") | grep '^[<>]' | head -5 | tr '\n' ' ')"
echo "installed: $(echo "$installed" | wc -l) public headers, nothing else"

# The user's environment: a python that imports torch on PATH (as an activated venv), and the
# CMakeLists.txt of docs/library.md, exactly as written there, around the example's main.cc.
export PATH="$(dirname "$py"):$PATH"
mkdir -p "$tmp/app"
awk '/^```cmake$/ {on=1; next} on && /^```$/ {exit} on' "$src/docs/library.md" >"$tmp/app/CMakeLists.txt"
grep -q 'find_package(gradacc' "$tmp/app/CMakeLists.txt" || fail "no CMake snippet in docs/library.md"
cp "$src/examples/custom_model/main.cc" "$tmp/app/main.cc"
cp "$src/examples/dual_encoder/main.cc" "$tmp/app/dual_encoder.cc"
# ... and each public header compiled alone against the installed tree.
for h in $installed; do
  name=$(basename "$h" .h)
  echo "#include <gradacc/$name.h>" >"$tmp/app/alone_$name.cc"
done
cat >>"$tmp/app/CMakeLists.txt" <<CMAKE
file(GLOB alone alone_*.cc)
add_library(headers_alone OBJECT \${alone})
target_link_libraries(headers_alone PRIVATE gradacc::gradacc)
add_executable(dual_encoder dual_encoder.cc)
target_link_libraries(dual_encoder PRIVATE gradacc::gradacc)
CMAKE
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$tmp/app" -B "$tmp/ex" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
  >"$tmp/configure.log" 2>&1 || fail "configure against the installed package: $(tail -n 8 "$tmp/configure.log")"
cmake --build "$tmp/ex" --target headers_alone >"$tmp/headers.log" 2>&1 \
  || fail "a public header does not compile alone: $(grep -m3 -E 'error' "$tmp/headers.log")"
echo "each public header compiles alone against the installed tree"
cmake --build "$tmp/ex" --target app >"$tmp/build.log" 2>&1 || fail "build: $(grep -m5 -E 'error' "$tmp/build.log")"
ex="$tmp/ex/app"

"$ex" --steps 30 >"$tmp/run.out" 2>&1 || fail "run: $(tail -n 3 "$tmp/run.out")"
first=$(grep -m1 '^step 10 ' "$tmp/run.out" | awk '{print $4}')
last=$(grep '^step 30 ' "$tmp/run.out" | awk '{print $4}')
[ -n "$first" ] && [ -n "$last" ] || fail "no step lines: $(cat "$tmp/run.out")"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "loss did not fall: step 10 $first, step 30 $last"
echo "example trained: loss $first at step 10, $last at step 30; $(grep accuracy "$tmp/run.out")"

"$ex" --steps 5 --verify >"$tmp/verify.out" 2>&1 || fail "verify on the example's model: $(tail -n 4 "$tmp/verify.out")"
grep -q "PASS" "$tmp/verify.out" || fail "verify did not pass"
echo "verify on the example's model: $(grep 'max |Δweight|' "$tmp/verify.out" | cut -c1-80)"

"$G" launch --nproc 2 --program "$ex" -- --steps 8 --save "$tmp/w2.safetensors" >"$tmp/dp.out" 2>&1 \
  || fail "2 ranks: $(tail -n 5 "$tmp/dp.out")"
"$ex" --steps 8 --save "$tmp/w1.safetensors" >/dev/null 2>&1 || fail "1 rank"
close_to_one_rank() {  # close_to_one_rank WEIGHTS LABEL [ONE-RANK WEIGHTS]: within 1e-5 of the one-rank run's
  "$py" - "${3:-$tmp/w1.safetensors}" "$1" "$2" <<'PY' || fail "$2: differs from 1 rank"
import sys
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys(), (a.keys(), b.keys())
worst = max(float(abs(a[k].astype("float64") - b[k].astype("float64")).max()) for k in a)
print(f"{sys.argv[3]}: max |Δw| = {worst:.2e} (tolerance 1e-5)")
sys.exit(0 if worst <= 1e-5 else 1)
PY
}
close_to_one_rank "$tmp/w2.safetensors" "data parallel: 2 ranks × 4 micro-batches vs 1 rank × 8"
# ZeRO-3 over the example's declared units: 2 ranks, each keeping half of every block, end with the
# weights of 1 process too.
"$G" launch --nproc 2 --program "$ex" -- --steps 8 --zero 3 --save "$tmp/z3.safetensors" \
  >"$tmp/z3.out" 2>&1 || fail "2 ranks, zero 3: $(tail -n 5 "$tmp/z3.out")"
close_to_one_rank "$tmp/z3.safetensors" "zero 3 on the example's units: 2 ranks vs 1 rank"

# examples/dual_encoder: a contrastive loss over the whole window (gradient caching) of the user's
# own two towers: it learns (recall@1 on held-out pairs), and 2 ranks end with 1 rank's weights.
cmake --build "$tmp/ex" --target dual_encoder >"$tmp/build2.log" 2>&1 || fail "build dual_encoder: $(grep -m5 error "$tmp/build2.log")"
"$tmp/ex/dual_encoder" --steps 30 --save "$tmp/d1.safetensors" >"$tmp/d1.out" 2>&1 || fail "dual_encoder: $(tail -3 "$tmp/d1.out")"
recall=$(awk '/^recall@1/ {print $2}' "$tmp/d1.out")
awk -v r="$recall" 'BEGIN { exit !(r >= 0.1) }' || fail "dual_encoder learned too little: $(cat "$tmp/d1.out")"
echo "dual encoder (window 256 in micro-batches of 32): $(grep '^step 30' "$tmp/d1.out"), recall@1 $recall (chance 1/512)"
"$G" launch --nproc 2 --program "$tmp/ex/dual_encoder" -- --steps 30 \
  --save "$tmp/d2.safetensors" >"$tmp/d2.out" 2>&1 || fail "dual_encoder, 2 ranks: $(tail -n 5 "$tmp/d2.out")"
close_to_one_rank "$tmp/d2.safetensors" "dual encoder: 2 ranks × 4 micro-batches vs 1 rank × 8" "$tmp/d1.safetensors"
echo "install + example: ok"
