#!/usr/bin/env bash
# check -r never destroys data that can still be read: every writable
# subformat (VMDK monolithicSparse, twoGbMaxExtentSparse, streamOptimized,
# a directory-at-the-end layout, differencing; VDI dynamic, fixed,
# differencing) damaged at many points, read before and after check -r,
# every changed byte inside a range the findings list as lost; qemu-img as
# the oracle (repair_safety.py says what exactly is asserted).
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3
python3 "$VDKIT_SOURCE_DIR/tests/interop/repair_safety.py"
