#!/usr/bin/env bash
# vdkit measure: what it predicts against qemu-img (measure for raw, the
# size of its convert for a default sparse VMDK), the format layouts
# (formats.md) for VDI and other grain sizes, and what convert then writes.
# Sparse layouts must be predicted to the byte; streams and descriptor files
# are upper bounds.
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

# The expected sizes come from outside vdkit: qemu-img convert for a
# default monolithicSparse VMDK (same layout: qemu measures no VMDK, but
# writes one), the layouts of shared/reference/formats.md for the rest
# (model below: VirtualBox's VDI with offBlocks and offData 1 MiB-aligned;
# qemu's sparse VMDK layout, header + 20-sector descriptor + redundant and
# primary grain directory and tables, grain-aligned), with the data blocks
# or grains that hold a non-zero byte counted in src.raw itself.
model() { # model vdi|vdi-fixed|vmdk <block or grain bytes> <source or ""> <size>
    python3 - "$@" <<'PY'
import sys
kind, unit, src, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
used = 0
if src:
    with open(src, "rb") as f:
        while True:
            chunk = f.read(unit)
            if not chunk:
                break
            used += any(chunk)
MiB = 1 << 20
up = lambda x, a: -(-x // a) * a
if kind in ("vdi", "vdi-fixed"):
    blocks = up(size, unit) // unit
    data = MiB + up(4 * blocks, MiB)          # offData: offBlocks (1 MiB) + the block map, 1 MiB-aligned
    print(data + (blocks if kind == "vdi-fixed" else used) * unit)
else:
    grain = unit // 512
    cap = up(size, 512) // 512
    gts = -(-cap // (512 * grain))
    gd = -(-gts * 4 // 512)
    overhead = up(1 + 20 + 2 * (gd + 4 * gts), grain)
    print(overhead * 512 + used * unit)
PY
}
size=$(stat -c %s src.raw)
qemu-img convert -f raw -O vmdk src.raw q.vmdk
for case in "vdi||vdi $((1 << 20))" "vdi|block-size=4M|vdi $((4 << 20))" "vmdk||qemu" \
            "vmdk||vmdk 65536" "vmdk|grain-size=8k|vmdk 8192"; do
    IFS='|' read -r fmt opts oracle <<< "$case"
    o=(); [ -n "$opts" ] && o=(-o "$opts")
    if [ "$oracle" = qemu ]; then oracle_size=$(stat -c %s q.vmdk); else oracle_size=$(model $oracle src.raw "$size"); fi
    want=$(measure required -O "$fmt" "${o[@]}" src.raw)
    [ "$want" = "$oracle_size" ] && ok || bad "$fmt $opts: measure said $want, expected $oracle_size ($oracle)"
    "$VDKIT" convert -O "$fmt" "${o[@]}" src.raw "m.$fmt" > /dev/null
    got=$(stat -c %s "m.$fmt")
    [ "$got" = "$oracle_size" ] && ok || bad "$fmt $opts: convert wrote $got, expected $oracle_size ($oracle)"
    rm -f "m.$fmt"
done
# Empty images: the metadata alone.
[ "$(measure required -O vdi --size 1G)" = "$(model vdi $((1 << 20)) "" $((1 << 30)))" ] && ok || bad "vdi --size: empty image"
"$VDKIT" create -f vdi e.vdi 1G > /dev/null
[ "$(stat -c %s e.vdi)" = "$(model vdi $((1 << 20)) "" $((1 << 30)))" ] && ok || bad "vdi create: an empty image's size"
[ "$(measure required -O vmdk --size 1G)" = "$(model vmdk 65536 "" $((1 << 30)))" ] && ok || bad "vmdk --size: empty image"
# Preallocated: fully-allocated is the fixed image's size.
want=$(model vdi-fixed $((1 << 20)) "" "$size")
[ "$(measure fully-allocated -O vdi src.raw)" = "$want" ] && ok || bad "vdi fully-allocated: expected $want"
"$VDKIT" convert --preallocate -O vdi src.raw f.vdi > /dev/null
[ "$(stat -c %s f.vdi)" = "$want" ] && ok || bad "a fixed VDI's size: expected $want"

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
