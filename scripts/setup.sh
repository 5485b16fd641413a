#!/usr/bin/env bash
# Installs what gradacc needs to build and run, once; later runs find it and return at once.
#
#   - Debian packages: compilers and test tools, header-only libraries (JSON, CLI parsing),
#     gnuplot for run reports and the Fashion-MNIST data set, and gloo's headers: the wheel lacks
#     them, yet c10d's ProcessGroupGloo.hpp includes them. gradacc only names gloo types through
#     pointers (the gloo that runs is the one compiled into libtorch_cpu; Debian's libgloo is never
#     linked), so the older Debian snapshot's declarations are enough (docs/distributed.md).
#   - LibTorch from the PyPI `torch` wheel (pinned), in a virtual environment cached outside the
#     clone, keyed by the torch version: ${GRADACC_CACHE:-~/.cache/gradacc}/torch-<version>/.
#     The C++ build links only libtorch_cpu and c10 (no GPU, no CUDA runtime needed); the full
#     wheel with its dependencies is installed so that Python-side references (PyTorch reference
#     computations in tests, the Python peers in bench/) import the very same torch.
#
# Prints the path of the venv's python on the last line of stdout (the Makefile reads it).
set -euo pipefail

TORCH_VERSION="${GRADACC_TORCH_VERSION:-2.11.0}"
CACHE="${GRADACC_CACHE:-$HOME/.cache/gradacc}"
VENV="$CACHE/torch-$TORCH_VERSION/venv"
APT_PACKAGES=(g++ cmake make ninja-build ccache libgtest-dev nlohmann-json3-dev libcli11-dev
              zlib1g-dev clang-format python3 python3-venv dataset-fashion-mnist gnuplot-nox libgloo-dev)

log() { echo "setup: $*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

PY_PACKAGES="torch==$TORCH_VERSION numpy safetensors"
stamp="$VENV/.gradacc-ready"   # holds the package list it was made with
if [ "$(cat "$stamp" 2>/dev/null)" != "$PY_PACKAGES" ]; then
  log "installing torch==$TORCH_VERSION into $VENV (about 5 GB, once)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV" >&2
  # numpy + safetensors let the tests read our weight files the way Python users will.
  "$VENV/bin/pip" install -q --disable-pip-version-check $PY_PACKAGES >&2
  echo "$PY_PACKAGES" > "$stamp"
fi
python="$VENV/bin/python"
"$python" -c "import torch" 2>/dev/null || { echo "setup: torch in $VENV does not import; remove $VENV and rerun" >&2; exit 1; }
echo "$python"
