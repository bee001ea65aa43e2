# Thin wrapper over CMake presets. The two promised commands:
#   make demo   install missing Debian packages, build, run the demo job
#   make test   install missing Debian packages, build, run the whole suite
PRESET ?= default

.PHONY: all deps configure build demo test test-asan install clean

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

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan:
	$(MAKE) test PRESET=debug

install: build
	cmake --install build

clean:
	rm -rf build build-asan
