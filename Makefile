# The two entry points of the README. Both install what is missing (scripts/setup.sh), then build.
#   make run    builds the library and the gradacc command only, and trains the default job.
#   make test   builds everything (tests, sanitizer variants, the fuzzer) with warnings as errors,
#               then runs the suite.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
export CCACHE_SLOPPINESS = pch_defines,time_macros,include_file_mtime,include_file_ctime
# Key the compiler cache by content, not by where the clone lives (CI clones afresh each time).
export CCACHE_BASEDIR = $(CURDIR)
export CCACHE_NOHASHDIR = 1

# configure(extra cmake flags, setup flags): setup, then cmake (quietly) with the venv's python.
define configure
	@py=$$(scripts/setup.sh $(2) | tail -n 1) && \
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCH_PYTHON="$$py" \
	      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache $(1) >/dev/null
endef

.PHONY: build run test clean

# The library and the command: what `make run` needs, nothing more.
build:
	$(call configure,,--run)
	cmake --build $(BUILD_DIR) -j $(JOBS) --target gradacc_cli

# Main job: the embedded default run (CNN with GroupNorm on Fashion-MNIST, accumulated).
run: build
	$(BUILD_DIR)/gradacc train

# Warnings are errors here and in CI (.ci/run calls this), not in a user's `make run`.
test:
	$(call configure,-DGRADACC_WERROR=ON)
	cmake --build $(BUILD_DIR) -j $(JOBS)
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 1200 -j $(JOBS)

clean:
	rm -rf $(BUILD_DIR)
