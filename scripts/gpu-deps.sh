#!/usr/bin/env bash
# Fills .gpu-deps/ (git-ignored) with what scripts/gpu-check.sh needs on a GPU machine that has
# LibTorch, a compiler, CMake and ninja but no package manager and no network: GoogleTest's
# sources, the header-only libraries (nlohmann-json, CLI11), gloo's and zlib's headers (and a
# libz.so for machines without one), and the data the tests and benchmarks read. About 40 MiB.
#
# Usage (here, where Debian's packages are installed by scripts/setup.sh):
#   scripts/gpu-deps.sh            then carry .gpu-deps with the working tree
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
d=.gpu-deps
rm -rf "$d"
mkdir -p "$d/include" "$d/lib" "$d/data/fashion-mnist"
cp -r /usr/src/googletest "$d/googletest"
cp -r /usr/include/nlohmann /usr/include/CLI /usr/include/gloo /usr/include/zlib.h /usr/include/zconf.h "$d/include/"
cp -L "$(ls /usr/lib/*/libz.so.1 /lib/*/libz.so.1 2>/dev/null | head -n 1)" "$d/lib/libz.so"
cp /usr/share/datasets/fashion-mnist/*.gz "$d/data/fashion-mnist/"
cp /usr/share/common-licenses/GPL-3 "$d/data/GPL-3"
shared=../shared/data/tinyshakespeare.txt
if [ -f "$shared" ]; then cp "$shared" "$d/data/tinyshakespeare.txt"; fi
grep -qx '/.gpu-deps/' .gitignore || echo '/.gpu-deps/' >> .gitignore
du -sh "$d"
