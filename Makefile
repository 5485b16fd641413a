# The two entry points of the README. Both install what is missing (scripts/setup.sh), then build.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
export CCACHE_SLOPPINESS = pch_defines,time_macros,include_file_mtime,include_file_ctime
# Key the compiler cache by content, not by where the clone lives (CI clones afresh each time).
export CCACHE_BASEDIR = $(CURDIR)
export CCACHE_NOHASHDIR = 1

.PHONY: build run test clean

build:
	@py=$$(scripts/setup.sh | tail -n 1) && \
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCH_PYTHON="$$py" \
	      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null && \
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Main job: the embedded default run (CNN with GroupNorm on Fashion-MNIST, accumulated).
run: build
	$(BUILD_DIR)/gradacc train

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 1200 -j $(JOBS)

clean:
	rm -rf $(BUILD_DIR)
