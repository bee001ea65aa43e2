# Thin wrapper over CMake presets. The two promised commands:
#   make demo   install missing Debian packages, build, run the demo job
#   make test   install missing Debian packages, build, run the whole suite
#               (then, when clang is installed, a short fuzz run: fuzz-ci)
#   make fuzz   build the libFuzzer targets (preset `fuzz`, build-fuzz/) and
#               run each for FUZZ_SECONDS (docs/reliability.md)
PRESET ?= default
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 20

.PHONY: all deps configure build demo test test-asan install clean fuzz fuzz-build fuzz-ci

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	cmake --preset $(PRESET)

build: configure
	cmake --build --preset $(PRESET)

demo: build
	@bash scripts/demo.sh build

test: build
	ctest --preset $(PRESET)
	@if command -v clang++ > /dev/null; then $(MAKE) fuzz-ci; else echo "make test: no clang++, fuzz-ci skipped"; fi

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan:
	$(MAKE) test PRESET=debug

install: build
	cmake --install build

fuzz-build: deps
	cmake --preset fuzz
	cmake --build --preset fuzz

# Every target for FUZZ_SECONDS (make fuzz FUZZ_SECONDS=600; FUZZ_TARGETS=... for some).
fuzz: fuzz-build
	bash tests/fuzz/run_fuzz.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The short run CI makes after the suite (~20 s per target).
fuzz-ci:
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_CI_SECONDS)

clean:
	rm -rf build build-asan build-fuzz
