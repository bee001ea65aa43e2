#!/usr/bin/env bash
# A third party's view: install vdkit into a fresh prefix, build the example
# plugin out of tree against the *installed* SDK (find_package + pkg-config),
# and use it from the installed CLI without touching the core.
set -euo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
prefix="$work/prefix"
cmake --install "$VDKIT_BUILD_DIR" --prefix "$prefix" > "$work/install.log"

# The package files are there.
test -f "$prefix/lib/cmake/vdkit/vdkitConfig.cmake"
test -f "$prefix/include/vdkit/plugin.hpp"
test -f "$prefix/lib/pkgconfig/vdkit-sdk.pc"
ls "$prefix"/lib/vdkit/plugins/vdkit_format_raw.so "$prefix"/lib/vdkit/plugins/vdkit_transport_file.so > /dev/null
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags vdkit-sdk | grep -q -- "/include"
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=plugindir vdkit | grep -q "lib/vdkit/plugins"

# Out-of-tree build of the example against the installed package.
cp -r "$VDKIT_SOURCE_DIR/sdk/examples/toysparse" "$work/src"
cmake -S "$work/src" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"
plugin="$work/build/toysparse.so"
test -f "$plugin"

# The installed CLI finds its own plugins from the install layout, and the
# third-party plugin from --plugin-path.
mkdir "$work/plugins" && cp "$plugin" "$work/plugins/"
vdkit="$prefix/bin/vdkit"
# grep reads to the end (no -q): with pipefail, a grep that stops at the
# first match kills vdkit, still writing the rest of the list, with SIGPIPE.
env -u VDKIT_PLUGIN_PATH "$vdkit" --plugin-path "$work/plugins" plugins | grep "^format toysparse" > /dev/null
env -u VDKIT_PLUGIN_PATH "$vdkit" --plugin-path "$work/plugins" create -f toysparse "$work/a.toys" 8M > /dev/null
random_bytes 3000000 > "$work/data.raw"
truncate -s 8M "$work/data.raw"
env -u VDKIT_PLUGIN_PATH "$vdkit" --plugin-path "$work/plugins" convert -f raw -O toysparse "$work/data.raw" "$work/b.toys"
env -u VDKIT_PLUGIN_PATH "$vdkit" --plugin-path "$work/plugins" info "$work/b.toys" | grep -q "file format: toysparse"
env -u VDKIT_PLUGIN_PATH "$vdkit" --plugin-path "$work/plugins" compare -f raw "$work/data.raw" "$work/b.toys" | grep -q identical

# The guide's non-CMake recipe (sdk/docs/plugin-guide.md, "Build"): pkg-config
# and the installed version script give a plugin that exports only the entry.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
script=$(pkg-config --variable=versionscript vdkit-sdk)
test -f "$script"
mkdir "$work/plain"
c++ -std=c++20 -O2 -fPIC -shared -fvisibility=hidden -fvisibility-inlines-hidden \
    $(pkg-config --cflags vdkit-sdk) "$work/src/toysparse.cpp" -o "$work/plain/toysparse.so" \
    -Wl,--version-script="$script" -Wl,--no-undefined
exported=$(nm -D --defined-only "$work/plain/toysparse.so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort -u)
[ "$exported" = "vdkit_plugin_entry" ] || { echo "FAIL: the non-CMake recipe exports: $exported"; exit 1; }
env -u VDKIT_PLUGIN_PATH "$vdkit" --plugin-path "$work/plain" info "$work/b.toys" | grep -q "file format: toysparse"
echo "OK: example plugin built against the installed SDK (CMake and the plain recipe) loads and converts"
