#!/usr/bin/env bash
# An embedder's view of the public boundary: install vdkit into a fresh
# prefix, then build and run against the INSTALLED tree
#   - a strict C99 program including only <vdkit/vdkit.h> (-Werror), and
#   - a C++17 program using vdkit.hpp through find_package(vdkit) and the
#     vdkit::core target, which must leave it at C++17 (the core itself is
#     C++20; its consumers are not forced to it).
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
src="$VDKIT_SOURCE_DIR/tests/abi/consumer"
prefix="$work/prefix"
cmake --install "$VDKIT_BUILD_DIR" --prefix "$prefix" > "$work/install.log" || { echo "FAIL: install"; exit 1; }
lib="$prefix/lib"
mkdir "$work/images"
# The consumers are not instrumented: in a sanitizer build the runtime
# libvdkit links must load first (nothing is added in a normal build).
preload=$(with_sanitizer_runtime)
run() { env -u VDKIT_PLUGIN_PATH ${preload:+LD_PRELOAD="$preload"} "$@"; }

# C99, only vdkit.h, warnings are errors.
expect_exit 0 "the C99 consumer compiles against the installed vdkit.h alone" \
    cc -std=c99 -Wall -Wextra -pedantic -Werror -I"$prefix/include" "$src/c_consumer.c" -o "$work/c_consumer" \
    -L"$lib" -lvdkit -Wl,-rpath,"$lib"
expect_exit 0 "the C99 consumer runs on the installed library and its plugins" \
    run "$work/c_consumer" "$work/images"
says "C consumer wrote through the installed raw plugin" "OK: C99 consumer" "$work/out"
test -s "$work/images/c.raw" && ok || bad "c.raw was created"
# The installed header needs no SDK header beyond what it includes itself:
# the preprocessed consumer defines VDKIT_BLOCK_DATA without plugin.h.
if cc -std=c99 -I"$prefix/include" -E "$src/c_consumer.c" | grep -q 'vdkit_plugin_entry\|vdkit_host_api'; then
    bad "vdkit.h pulls in the plugin ABI header"
else
    ok
fi

# C++17 through the CMake package.
expect_exit 0 "the C++17 consumer configures against the installed package" \
    cmake -S "$src" -B "$work/cxx" -G Ninja -DCMAKE_PREFIX_PATH="$prefix"
expect_exit 0 "the C++17 consumer builds (-Werror)" cmake --build "$work/cxx"
if grep -q -- '-std=c++17' "$work/cxx/compile_commands.json" &&
    ! grep -q -- '-std=\(c\|gnu\)++2' "$work/cxx/compile_commands.json"; then
    ok
else
    bad "vdkit::core raises the consumer's language level: $(grep -o -- '-std=[^ ]*' "$work/cxx/compile_commands.json")"
fi
expect_exit 0 "the C++17 consumer runs on the installed library" \
    run "$work/cxx/cxx17_consumer" "$work/images"
says "C++ consumer wrote through the installed raw plugin" "OK: C++17 consumer" "$work/out"
# The same source with pkg-config instead of CMake.
expect_exit 0 "the C++17 consumer builds with pkg-config's flags" \
    sh -c 'export PKG_CONFIG_PATH="$1/lib/pkgconfig"; c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror \
        $(pkg-config --cflags vdkit) "$2/cxx17_consumer.cpp" -o "$3/pc_consumer" $(pkg-config --libs vdkit) \
        -Wl,-rpath,"$1/lib"' sh "$prefix" "$src" "$work"
finish
