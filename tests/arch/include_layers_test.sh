#!/usr/bin/env bash
# core/src includes only downward (util -> config/loader/registry -> io ->
# host -> disk -> api; docs/design/core.md): the real tree passes, and trees
# made here with an upward include, a folder with no layer or an include
# without its folder are refused, naming the file and line.
set -u
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"

check="$VDKIT_SOURCE_DIR/tests/arch/include_layers.py"

expect_exit 0 "core/src follows the layering" python3 "$check" "$VDKIT_SOURCE_DIR/core/src"
says "summary" "every include runs down"

# A copy of the real tree, one upward include added per trial: every pair
# of layers where the lower includes the higher is refused.
layers=(util config io host disk api)
for ((lo = 0; lo < ${#layers[@]}; lo++)); do
    for ((hi = lo + 1; hi < ${#layers[@]}; hi++)); do
        rm -rf tree && cp -r "$VDKIT_SOURCE_DIR/core/src" tree
        low=${layers[$lo]} high=${layers[$hi]}
        victim=$(ls tree/"$low"/*.cpp | head -n 1)
        target=$(cd tree && ls "$high"/*.hpp "$high"/*.cpp 2> /dev/null | head -n 1)
        printf '#include "%s"\n' "$target" >> "$victim"
        line=$(wc -l < "$victim")
        expect_exit 1 "$low/ including $high/ is refused" python3 "$check" tree
        says "$low -> $high names the file and line" "${victim#tree/}:$line: $low/" out
        says "$low -> $high names the target" "\"$target\"" out
    done
done

# Same layer and downward includes pass (registry/ and config/ share one).
rm -rf tree && cp -r "$VDKIT_SOURCE_DIR/core/src" tree
printf '#include "registry/registry.hpp"\n#include "util/util.hpp"\n' >> tree/config/options.cpp
expect_exit 0 "a same-layer and a downward include pass" python3 "$check" tree

# A new folder must be given a layer before anything lives in it.
rm -rf tree && cp -r "$VDKIT_SOURCE_DIR/core/src" tree
mkdir tree/newthing && echo 'int x;' > tree/newthing/a.cpp
expect_exit 1 "a folder with no layer is refused" python3 "$check" tree
says "names the folder" "folder 'newthing' has no layer"

rm -rf tree && cp -r "$VDKIT_SOURCE_DIR/core/src" tree
printf '#include "util.hpp"\n' >> tree/util/util.cpp
expect_exit 1 "an include without its folder is refused" python3 "$check" tree
says "names the include" 'includes "util.hpp" without its folder'

rm -rf tree && cp -r "$VDKIT_SOURCE_DIR/core/src" tree
printf '#include "tools/thing.hpp"\n' >> tree/api/c_api.cpp
expect_exit 1 "an include of a folder outside core/src's layers is refused" python3 "$check" tree
says "names the folder" "from folder 'tools', which has no layer"

# An Image is kept off host/ although disk/ lies above it: it is handed
# the Stores (io/) and nothing else of the Host.
for file in disk/image.hpp disk/image.cpp; do
    rm -rf tree && cp -r "$VDKIT_SOURCE_DIR/core/src" tree
    printf '#include "host/host.hpp"\n' >> "tree/$file"
    line=$(wc -l < "tree/$file")
    expect_exit 1 "$file including host/ is refused" python3 "$check" tree
    says "$file -> host names the file and line" "$file:$line: includes \"host/host.hpp\"" out
done
# The rule follows the file: one that is gone is reported, not skipped.
rm -rf tree && cp -r "$VDKIT_SOURCE_DIR/core/src" tree
rm tree/disk/image.cpp
expect_exit 1 "a kept-narrow file that is gone is reported" python3 "$check" tree
says "names the missing file" "disk/image.cpp: named in NARROW but not found"

finish
