# Thin wrapper over CMake presets. The two promised commands:
#   make demo   install missing Debian packages, build, run the demo job
#   make test   install missing Debian packages, build, run the whole suite
#               then (default preset) the short fuzz run and the TSan job
#               when their tools exist (scripts/ci-extras.sh; a missing tool
#               fails under CI=true; VDKIT_CI_EXTRAS=0 skips them locally)
#   make fuzz   build the libFuzzer targets (preset `fuzz`, build-fuzz/) and
#               run each for FUZZ_SECONDS (docs/reliability.md)
PRESET ?= default
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 20

.PHONY: all deps configure build demo test test-asan install clean test-tsan crash-long fuzz fuzz-build fuzz-ci docs \
	format format-check

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	cmake --preset $(PRESET)

build: configure
	cmake --build --preset $(PRESET)

demo: build
	@bash scripts/demo.sh build

# The suite, then (default preset only: test-asan reuses this target) the
# reliability jobs: fuzz-ci and test-tsan (scripts/ci-extras.sh).
test: build
	ctest --preset $(PRESET)
	@if [ "$(PRESET)" = default ]; then bash scripts/ci-extras.sh fuzz tsan; fi

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan:
	$(MAKE) test PRESET=debug

# The threaded tests under ThreadSanitizer (build-tsan/): one handle hammered
# by readers and writers, async I/O, convert workers (and a failing source
# stopping them: [fault][copy]), caches, batch -j. Left to the suite, for the
# CI budget (docs/reliability.md "CI cost"): the other [fault] cases
# (one-thread cut-off sweeps of chain operations) and the copy matrix
# ([copy][matrix]: content equality over every thread count, order and
# target, 40% of this job's test time; the concurrent-copies case keeps
# many workers under TSan).
TSAN_TAGS = [threads],[async],[cache],[copy]~[matrix]
test-tsan: deps
	cmake --preset tsan
	cmake --build --preset tsan --target vdkit_unit_tests vdkit
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/bin/vdkit_unit_tests "$(TSAN_TAGS)"
	ctest --preset tsan -R "^cli: batch job files$$"

# Many more crash trials than `make test` runs (tests/crash/): kill -9
# trials per format (CRASH_TRIALS), power-cut replays (CRASH_POWER_RUNS seeds
# per format), a new seed each time
# (printed; VDKIT_CRASH_SEED=N reproduces).
CRASH_TRIALS ?= 2000
CRASH_POWER_RUNS ?= 20
crash-long: build
	@seed=$${VDKIT_CRASH_SEED:-$$(date +%s)}; for t in kill power; do \
	  VDKIT=$(CURDIR)/build/bin/vdkit VDKIT_SOURCE_DIR=$(CURDIR) VDKIT_BUILD_DIR=$(CURDIR)/build \
	  VDKIT_CRASH_TRIALS=$(CRASH_TRIALS) VDKIT_CRASH_POWER_RUNS=$(CRASH_POWER_RUNS) VDKIT_CRASH_SEED=$$seed \
	  bash tests/crash/$${t}_test.sh || exit 1; done

install: build
	cmake --install build

# API reference of vdkit.h and vdkit.hpp (Doxygen) in build/docs/html; fails
# when a public function is undocumented (scripts/api-docs.sh).
docs: deps
	bash scripts/api-docs.sh build/docs

# The tracked C/C++ files against .clang-format (scripts/format-check.sh):
# `make format` formats them in place, `make format-check` lists those that
# differ and fails.
format: deps
	bash scripts/format-check.sh --fix

format-check: deps
	bash scripts/format-check.sh

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
	rm -rf build build-asan build-tsan build-fuzz
