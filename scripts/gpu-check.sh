#!/usr/bin/env bash
# The GPU check, in one go (docs/gpu.md): on a machine with an NVIDIA GPU, PyTorch (python3), a
# C++ compiler, CMake and ninja, but no package manager or network:
#   1. builds gradacc with CUDA against that machine's own PyTorch (build-gpu/), taking what the
#      machine lacks from .gpu-deps/ (filled here by scripts/gpu-deps.sh);
#   2. runs the device tests (each on CPU and CUDA), the fused kernels' tests against ATen, and
#      `gradacc verify` on CUDA (fp32, TF32 off);
#   3. measures speed against torch.compile, the seed loop and Accelerate, and gradacc without its
#      fused kernels, at micro-batch 4, 16 and 32, and profiles gradacc's and the compiled loop's
#      kernels side by side (bench/gpu.py; its memory part is left out here: GPU_BENCH_SKIP);
#   4. runs the whole test suite with what time is left.
# Everything lands in OUTDIR: logs, JSON results, summary.txt (printed again at the end), and all of
# it but the profiler traces in OUTDIR/results.tar.gz.
#
# Usage: scripts/gpu-check.sh OUTDIR [--no-gpu]
#   --no-gpu   check the script's own logic on a machine without a GPU: configure and build the
#              CUDA variant, run the CPU halves, skip every GPU step (saying so).
# Budget: under 9 minutes on 16 cores (each stage has its own timeout; the benchmark gets what the
# earlier stages left of it).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/gpu-check.sh OUTDIR [--no-gpu]}"
no_gpu=0
[ "${2:-}" = "--no-gpu" ] && no_gpu=1
mkdir -p "$out"
out=$(cd "$out" && pwd)
deps="$PWD/.gpu-deps"
py="${GRADACC_GPU_PYTHON:-$(command -v python3)}"
build=build-gpu
t0=$(date +%s)
jobs=$(nproc)
say() { echo "[$(($(date +%s) - t0)) s] $*" | tee -a "$out/summary.txt"; }
left() { echo $((520 - ($(date +%s) - t0))); }  # seconds left of the 9-minute budget, with margin

[ -d "$deps" ] || { echo "no .gpu-deps: run scripts/gpu-deps.sh on the development machine first" >&2; exit 2; }
{
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
  "${CXX:-g++}" --version | head -n 1; cmake --version | head -n 1; echo "ninja $(ninja --version)"; echo "cores $jobs"
} >"$out/env.txt" 2>&1
say "environment: $(grep -m1 -o 'torch [^ ]* cuda [^ ]* available [A-Za-z]*' "$out/env.txt")"
gpu=0
if [ $no_gpu -eq 0 ] && "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then gpu=1; fi
[ $gpu -eq 1 ] || say "no GPU in use: every GPU step below is skipped"

# The data the tests and benchmarks read, where they look for it (this machine has no Debian
# packages). Only when missing; needs write access there (root on the lent GPU machines).
if [ ! -e /usr/share/datasets/fashion-mnist ]; then
  mkdir -p /usr/share/datasets && ln -s "$deps/data/fashion-mnist" /usr/share/datasets/fashion-mnist
fi
if [ ! -e /usr/share/common-licenses/GPL-3 ]; then
  mkdir -p /usr/share/common-licenses && cp "$deps/data/GPL-3" /usr/share/common-licenses/GPL-3
fi
text="$deps/data/tinyshakespeare.txt"
[ -f "$text" ] || text=/usr/share/common-licenses/GPL-3

# ── 1. build ─────────────────────────────────────────────────────────────────────────────────
zlib=()
if ! ls /usr/include/zlib.h >/dev/null 2>&1; then
  zlib=(-DZLIB_INCLUDE_DIR="$deps/include")
  ls /usr/lib/x86_64-linux-gnu/libz.so >/dev/null 2>&1 || zlib+=(-DZLIB_LIBRARY="$deps/lib/libz.so")
fi
gtest=()
[ -d /usr/src/googletest ] || gtest=(-DGRADACC_GTEST_SOURCE="$deps/googletest")
command -v ccache >/dev/null && gtest+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# The sanitizer builds check CPU code that CI covers; here they would only double the build.
# Warnings are errors, as in CI: this machine's GCC 13 is newer than CI's, and any warning it finds
# is reported (the build log's first warnings go to the summary).
say "configure + build ($jobs jobs)"
if ! cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCH_PYTHON="$py" -DGRADACC_CUDA=ON \
     -DGRADACC_WERROR=ON -DGRADACC_SANITIZE_CHECKS=OFF -DCMAKE_PREFIX_PATH="$deps" "${zlib[@]}" "${gtest[@]}" >"$out/configure.log" 2>&1; then
  say "configure FAILED: $(tail -n 5 "$out/configure.log" | tr '\n' ' ')"; exit 1
fi
if ! timeout 330 cmake --build $build -j "$jobs" >"$out/build.log" 2>&1; then
  say "build FAILED: $(grep -m3 -E 'error|Error' "$out/build.log" | tr '\n' ' ')"; exit 1
fi
say "compiler warnings: $(grep -c 'warning:' "$out/build.log")"
say "built: $(grep -c 'Building CXX' "$out/build.log") objects"
bin=$build/gradacc

# ── 2. device tests and verify ───────────────────────────────────────────────────────────────
# The build above must carry gradacc's CUDA kernels (this machine has nvcc): the test of that fails
# otherwise, rather than the fused-kernel tests skipping.
GRADACC_EXPECT_CUDA_KERNELS=1 timeout 150 $build/gradacc_tests --gtest_filter='Devices/*:Link.*:CpuMemoryCounter.*:Devices.*:AddNorm.*:Kernels/*:Gpt.FusedKernels*' \
  --gtest_output="xml:$out/device_tests.xml" >"$out/device_tests.log" 2>&1
say "device tests: $(grep -E '^\[  (PASSED|FAILED) ' "$out/device_tests.log" | tr '\n' ' ') $(grep -c '^\[  SKIPPED \] Devices' "$out/device_tests.log") skipped"
grep -E '^\[  FAILED  \]|Failure|Expected|Which is|actual|measured' "$out/device_tests.log" | head -n 30 >>"$out/summary.txt"

if [ $gpu -eq 1 ]; then
  for job in "mlp|--model mlp --train-limit 6000" \
             "cnn|--model cnn --norm group --train-limit 6000" \
             "gpt|--model gpt --data text:$text --layers 2 --heads 2 --dim 64 --context 128 --global-batch 64 --micro-batch 8 --train-limit 2000"; do
    name=${job%%|*}
    # shellcheck disable=SC2086
    timeout 120 $bin verify --device cuda ${job#*|} --json >"$out/verify_$name.json" 2>"$out/verify_$name.err"
    rc=$?
    say "verify $name on cuda: exit $rc $("$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("pass" if d["pass"] else "FAIL", "rel_loss %.1e rel_weight %.1e" % (d["max_rel_loss_diff"], d["max_rel_weight_diff"]))' "$out/verify_$name.json" 2>/dev/null || head -c 300 "$out/verify_$name.err")"
  done

  # ── 3. speed and memory ──────────────────────────────────────────────────────────────────────
  budget=$(($(left) - 20))
  say "bench/gpu.py, ${budget} s (speed: gradacc, unfused, compiled, seed, accelerate; kernel profiles)"
  PYTHONUNBUFFERED=1 timeout "$budget" "$py" bench/gpu.py --gradacc $bin --text "$text" --out "$out/bench" \
    --skip "${GPU_BENCH_SKIP-memory}" >"$out/bench.log" 2>&1
  say "bench exit $?"
  grep -E 'ATen operators|GPU time|memory plan|measured peak|asked|exit| tok/s' "$out/bench.log" | tee -a "$out/summary.txt"
  grep -E '^default:' "$out/bench.log" | awk '!seen[$0]++' | tee -a "$out/summary.txt"
else
  say "skipped: verify on cuda, bench/gpu.py (no GPU)"
  "$py" -c "import ast,sys; ast.parse(open('bench/gpu.py').read())" && say "bench/gpu.py parses"
fi

# ── 4. the whole suite, with the time left ───────────────────────────────────────────────────
budget=$(left)
if [ "$budget" -gt 40 ]; then
  say "ctest, ${budget} s budget"
  timeout "$budget" ctest --test-dir $build -j "$jobs" --timeout 200 >"$out/ctest.log" 2>&1
  say "ctest: $(grep -E 'tests passed|tests failed' "$out/ctest.log" || echo 'cut short by the budget')"
  grep -E '\*\*\*Failed|\*\*\*Timeout|Failed  |Not Run' "$out/ctest.log" | head -n 20 >>"$out/summary.txt"
else
  say "ctest skipped: ${budget} s left"
fi
# Everything but the profiler traces and the text copy, in one archive: a lent machine hands back
# only a few files (docs/gpu.md), so summary.txt and results.tar.gz are the two to take.
say "done"
(cd "$out" && find . -type f ! -name 'trace_*.json' ! -name 'one_document.txt' ! -name results.tar.gz -size -8M |
   tar -czf results.tar.gz -T -) || echo "could not write $out/results.tar.gz" >&2
echo "================ summary ================"
cat "$out/summary.txt"
