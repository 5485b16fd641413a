#!/usr/bin/env bash
# Installs what gradacc needs to build and run, once; later runs find it and return at once.
#
#   - Debian packages: compilers and test tools, header-only libraries (JSON, CLI parsing, Boost's
#     CRC), protobuf for TensorBoard's event files,
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
#   --run: only what `make run` needs, for a first run in minutes: the torch wheel without its
#     Python and CUDA dependencies (about 3 GB of nvidia and triton wheels the CPU build never
#     loads), plus the two CUDA runtime libraries libtorch_cpu.so is linked against (cudart,
#     cupti), at the versions the wheel itself requires. `make test` completes the install later.
#
# Prints the path of the venv's python on the last line of stdout (the Makefile reads it).
set -euo pipefail
MODE=full
[ "${1:-}" = "--run" ] && MODE=run

TORCH_VERSION="${GRADACC_TORCH_VERSION:-2.11.0}"
CACHE="${GRADACC_CACHE:-$HOME/.cache/gradacc}"
VENV="$CACHE/torch-$TORCH_VERSION/venv"
APT_PACKAGES=(g++ cmake make ninja-build ccache libgtest-dev nlohmann-json3-dev libcli11-dev
              zlib1g-dev clang-format python3 python3-venv dataset-fashion-mnist gnuplot-nox libgloo-dev
              libprotobuf-dev protobuf-compiler libboost-dev)

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

PY_PACKAGES="torch==$TORCH_VERSION numpy safetensors tensorboard"
RUN_PACKAGES="torch==$TORCH_VERSION --no-deps, cuda-toolkit[cudart,cupti]"
stamp="$VENV/.gradacc-ready"   # holds the package list it was made with (the full one, or the run one)
have="$(cat "$stamp" 2>/dev/null || true)"
# pip's output only when it fails (a wheel installed without its dependencies makes it list them).
pip() {
  local out
  out=$("$VENV/bin/pip" install -q --disable-pip-version-check "$@" 2>&1) || { echo "$out" >&2; return 1; }
}
# A run needs any install; the tests need the full list. A venv made with another list (the run's,
# or an older full one) is completed in place: only a missing or unmarked one is made anew.
if { [ "$MODE" = full ] && [ "$have" != "$PY_PACKAGES" ]; } || { [ "$MODE" = run ] && [ -z "$have" ]; }; then
  if [ -z "$have" ] || [ ! -x "$VENV/bin/python" ]; then
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV" >&2
  fi
  if [ "$MODE" = run ]; then
    log "installing torch==$TORCH_VERSION (the wheel and the CUDA runtime it links, about 1 GB) into $VENV"
    pip --no-deps "torch==$TORCH_VERSION"
    # The cuda-toolkit pin the wheel declares, with only the two libraries libtorch_cpu.so needs.
    toolkit=$("$VENV/bin/python" -c "import importlib.metadata as m, re; print(next(re.match(r'cuda-toolkit\[[^]]*\]\s*(==\s*[0-9.]+)', r).group(1).replace(' ', '') for r in m.requires('torch') if r.startswith('cuda-toolkit')))")
    pip "cuda-toolkit[cudart,cupti]$toolkit"
    echo "$RUN_PACKAGES" > "$stamp"
  else
    if [ -z "$have" ]; then
      log "installing torch==$TORCH_VERSION with its dependencies into $VENV (about 5 GB, once)"
    else
      log "completing $VENV: $PY_PACKAGES"
    fi
    # numpy + safetensors let the tests read our weight files the way Python users will; tensorboard
    # reads our event files the way TensorBoard will.
    pip $PY_PACKAGES
    echo "$PY_PACKAGES" > "$stamp"
  fi
fi
python="$VENV/bin/python"
if [ "$(cat "$stamp")" = "$PY_PACKAGES" ]; then
  "$python" -c "import torch" 2>/dev/null || { echo "setup: torch in $VENV does not import; remove $VENV and rerun" >&2; exit 1; }
else
  [ -f "$("$python" -c "import importlib.util as u; print(u.find_spec('torch').submodule_search_locations[0])")/lib/libtorch_cpu.so" ] \
    || { echo "setup: no libtorch_cpu.so in $VENV; remove $VENV and rerun" >&2; exit 1; }
fi
echo "$python"
