#!/usr/bin/env bash
# `make docs` (scripts/api-docs.sh): the API reference builds, every public
# function of vdkit.h and vdkit.hpp is documented — and the check really
# fails on one that is not (a copy of the tree with one function's
# documentation removed, in C and in C++).
set -u
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools doxygen

expect_exit 0 "the public headers are fully documented" bash "$VDKIT_SOURCE_DIR/scripts/api-docs.sh" "$work/docs" "$VDKIT_SOURCE_DIR"
says "the check names the result" "every public function documented"
[ -s "$work/docs/html/index.html" ] && ok || bad "no html/index.html was built"
grep -q "vdkit_disk_get_image_info" "$work/docs/html/vdkit_8h.html" 2> /dev/null && ok || bad "the C reference lacks vdkit_disk_get_image_info"

# A tree whose header lost one function's documentation fails, naming it.
fake=$work/tree
mkdir -p "$fake/core/include/vdkit" "$fake/docs"
cp "$VDKIT_SOURCE_DIR/docs/Doxyfile" "$VDKIT_SOURCE_DIR/docs/api.md" "$fake/docs/"
cp "$VDKIT_SOURCE_DIR/core/include/vdkit/vdkit.hpp" "$fake/core/include/vdkit/"
# C: drop the comment block right above vdkit_disk_flush.
awk '/^VDKIT_API vdkit_status vdkit_disk_flush\(/ { while (n > 0 && buf[n] ~ /^\/\/\//) n--; }
     { buf[++n] = $0 } END { for (i = 1; i <= n; i++) print buf[i] }' \
    "$VDKIT_SOURCE_DIR/core/include/vdkit/vdkit.h" > "$fake/core/include/vdkit/vdkit.h"
grep -q "Make what was written durable (VDFlush)" "$fake/core/include/vdkit/vdkit.h" && bad "the awk edit removed nothing" || ok
expect_exit 1 "an undocumented C function fails the check" bash "$VDKIT_SOURCE_DIR/scripts/api-docs.sh" "$work/fake-docs" "$fake"
says "the failure names the C function" "vdkit_disk_flush"
# C++: the same for Disk::flush.
cp "$VDKIT_SOURCE_DIR/core/include/vdkit/vdkit.h" "$fake/core/include/vdkit/"
sed 's|^    /// Make what was written durable. Serialised with writes. IO.$||' \
    "$VDKIT_SOURCE_DIR/core/include/vdkit/vdkit.hpp" > "$fake/core/include/vdkit/vdkit.hpp"
expect_exit 1 "an undocumented C++ method fails the check" bash "$VDKIT_SOURCE_DIR/scripts/api-docs.sh" "$work/fake-docs2" "$fake"
says "the failure names the C++ method" "flush()"
finish
