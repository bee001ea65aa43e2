#!/usr/bin/env bash
# vdkit measure: what it predicts against what convert then writes, for every
# format and subformat; raw against qemu-img measure (qemu measures no VDI or
# VMDK). Sparse layouts must be predicted to the byte; streams and
# descriptor files are upper bounds.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img

# 200 MiB with random data in unaligned pieces and holes between.
truncate -s 200M src.raw
for spec in "1 300000" "7 2000000" "64 65537" "150 9000000" "199 1048576"; do
    set -- $spec
    random_bytes "$2" | dd of=src.raw bs=1M seek="$1" conv=notrunc status=none
done
measure() { # measure <json field> <vdkit measure args...>
    local field=$1; shift
    python3 -c "import json,sys; print(json.load(sys.stdin)['$field'])" <<< "$("$VDKIT" measure --output=json "$@")"
}
files_size() { local t=0 f; for f in "$@"; do t=$((t + $(stat -c %s "$f"))); done; echo "$t"; }

# raw: as qemu-img measure says.
[ "$(measure required -O raw src.raw)" = "$(qemu-img measure -O raw -f raw src.raw | awk '/required/ {print $3}')" ] \
    && ok || bad "raw required differs from qemu-img measure"
[ "$(measure fully-allocated -O raw --size 5G)" = $((5 << 30)) ] && ok || bad "raw --size"

# Exact: VDI (two block sizes) and monolithicSparse (two grain sizes).
for case in "vdi|" "vdi|block-size=4M" "vmdk|" "vmdk|grain-size=8k"; do
    fmt=${case%%|*} opts=${case#*|}
    o=(); [ -n "$opts" ] && o=(-o "$opts")
    want=$(measure required -O "$fmt" "${o[@]}" src.raw)
    "$VDKIT" convert -O "$fmt" "${o[@]}" src.raw "m.$fmt" > /dev/null
    got=$(stat -c %s "m.$fmt")
    [ "$got" = "$want" ] && ok || bad "$case: measure said $want, convert wrote $got"
    rm -f "m.$fmt"
done
# Empty images: the metadata alone.
"$VDKIT" create -f vdi e.vdi 1G > /dev/null
[ "$(measure required -O vdi --size 1G)" = "$(stat -c %s e.vdi)" ] && ok || bad "vdi --size: empty image"
# Preallocated: fully-allocated is the fixed image's size.
"$VDKIT" convert --preallocate -O vdi src.raw f.vdi > /dev/null
[ "$(measure fully-allocated -O vdi src.raw)" = "$(stat -c %s f.vdi)" ] && ok || bad "vdi fully-allocated vs a fixed VDI"

# Split sparse: extents exact, the descriptor bounded.
want=$(measure required -O vmdk -o subformat=twoGbMaxExtentSparse,split-size=64M src.raw)
"$VDKIT" convert -O vmdk -o subformat=twoGbMaxExtentSparse,split-size=64M src.raw s.vmdk > /dev/null
got=$(files_size s.vmdk s-s00*.vmdk)
[ "$got" -le "$want" ] && [ $((want - got)) -le 4096 ] && ok || bad "split sparse: measure $want, files $got"

# Streams: an upper bound, not far above random (incompressible) data.
want=$(measure required -O vmdk -o subformat=streamOptimized src.raw)
"$VDKIT" convert -O vmdk -o subformat=streamOptimized src.raw st.vmdk > /dev/null
got=$(stat -c %s st.vmdk)
[ "$got" -le "$want" ] && [ "$want" -le $((got + got / 20)) ] && ok || bad "stream: measure $want, file $got"

# Flat: the whole size plus the descriptor.
want=$(measure required -O vmdk -o subformat=monolithicFlat src.raw)
"$VDKIT" convert -O vmdk -o subformat=monolithicFlat src.raw fl.vmdk > /dev/null
got=$(files_size fl.vmdk fl-flat.vmdk)
[ "$got" -le "$want" ] && [ $((want - got)) -le 4096 ] && ok || bad "flat: measure $want, files $got"

# Errors name the problem.
out=$("$VDKIT" measure -O vdi -o block-size=3M src.raw 2>&1); rc=$?
[ "$rc" -eq 1 ] && grep -q "block-size must be a power of two" <<< "$out" && ok || bad "bad option: $out"
out=$("$VDKIT" measure -O vdi 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q "either a source image or --size" <<< "$out" && ok || bad "no source: $out"
out=$("$VDKIT" measure -O vdj --size 1G 2>&1); rc=$?
[ "$rc" -eq 1 ] && grep -q "did you mean 'vdi'" <<< "$out" && ok || bad "unknown format: $out"

finish
