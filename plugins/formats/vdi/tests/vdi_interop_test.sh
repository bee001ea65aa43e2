#!/usr/bin/env bash
# VDI against qemu-img (a reader and writer nobody here wrote): images made
# by qemu-img (dynamic and static, 0x180 header, 512-byte alignment) read
# back byte-identical; images made by vdkit — fresh, after compact, resize
# and repair — pass `qemu-img check` and compare equal; mixed chains with
# VMDK read through; damaged files give clear errors through the CLI.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img
same() { # same A B what: qemu-img compare says the contents are equal
    if qemu-img compare "$1" "$2" > cmp.log 2>&1; then ok; else bad "$3: $(cat cmp.log)"; fi
}
qcheck() { # qemu-img check finds nothing wrong
    if qemu-img check -f vdi "$1" > qcheck.log 2>&1; then ok; else bad "qemu-img check $1: $(cat qcheck.log)"; fi
}

# 100 MiB of data, zeros and holes at odd offsets; an odd-sized tail.
python3 - <<'PY'
import os, random
random.seed(11)
data = random.Random(os.environ["VDKIT_TEST_SEED"])  # the bytes (seeded, script_lib.sh)
with open("src.raw", "wb") as f:
    f.truncate(100 << 20)
    for _ in range(25):
        f.seek(random.randrange(0, 99 << 20))
        f.write(data.randbytes(random.choice([1, 512, 70000, 1 << 20, 3 << 20])))
    f.seek((100 << 20) - 5000); f.write(b"\xcd" * 5000)
PY

# 1. qemu-img writes, vdkit reads: dynamic and static.
for opts in static=off static=on; do
    qemu-img convert -f raw -O vdi -o "$opts" src.raw "q_$opts.vdi"
    if "$VDKIT" convert -O raw "q_$opts.vdi" "q_$opts.raw" > log 2>&1 && cmp -s src.raw "q_$opts.raw"; then ok; else bad "qemu $opts: vdkit read differs"; cat log; fi
    "$VDKIT" check "q_$opts.vdi" > log 2>&1 && ok || bad "vdkit check on qemu's $opts image: $(cat log)"
    "$VDKIT" map --output=json "q_$opts.vdi" > v.map && qemu-img map --output=json "q_$opts.vdi" > q.map || bad "map of q_$opts.vdi failed"
    python3 "$VDKIT_SOURCE_DIR/tests/support/map_ranges.py" v.map q.map && ok || bad "qemu $opts: data ranges differ from qemu-img map"
done
# vdkit changes a qemu-made image (0x180 header, map at 0x200, data right
# behind it): growing moves data blocks to make room; qemu-img still agrees.
cp q_static=off.vdi qw.vdi
"$VDKIT" resize qw.vdi +4G > log 2>&1 && ok || bad "grow qemu's image: $(cat log)"
qcheck qw.vdi
same src.raw qw.vdi "qemu's image after growing"
"$VDKIT" compact qw.vdi > log 2>&1 && ok || bad "compact qemu's image: $(cat log)"
qcheck qw.vdi
same src.raw qw.vdi "qemu's image after compact"

# 2. vdkit writes, qemu-img reads: dynamic, fixed, small blocks, qemu-like alignment.
for opts in "" "--preallocate" "-o block-size=1M,alignment=512"; do
    name="v$(echo "$opts" | tr -c 'a-z0-9' '_')"
    # shellcheck disable=SC2086
    "$VDKIT" convert -O vdi $opts src.raw "$name.vdi" > log 2>&1 || { bad "vdkit convert $opts: $(cat log)"; continue; }
    qcheck "$name.vdi"
    same src.raw "$name.vdi" "vdkit $opts"
    qemu-img convert -f vdi -O raw "$name.vdi" "$name.raw" && cmp -s src.raw "$name.raw" && ok || bad "vdkit $opts: qemu-img raw differs"
done
"$VDKIT" info --output=json v_.vdi | python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(0 if j["format"]=="vdi" and j["virtual-size"]==100<<20 else 1)' && ok || bad "info json"
# vdkit reads VirtualBox-sized blocks other than 1M too (qemu only reads 1M).
"$VDKIT" convert -O vdi -o block-size=64k src.raw b64.vdi > /dev/null && "$VDKIT" compare -F raw b64.vdi src.raw > /dev/null && ok || bad "64k blocks"

# 3. Maintenance keeps content and stays valid for qemu-img.
cp v_.vdi m.vdi
dd if=/dev/zero of=zeros.raw bs=1M count=8 status=none
before=$(stat -c %s m.vdi)
"$VDKIT" resize m.vdi +50M > /dev/null && ok || bad "resize grow"
qcheck m.vdi
[ "$(qemu-img info --output=json m.vdi | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" = $((150 << 20)) ] && ok || bad "qemu-img sees the new size"
same src.raw m.vdi "after grow"
"$VDKIT" resize --shrink m.vdi 100M > /dev/null && ok || bad "shrink back over zeros"
"$VDKIT" resize --shrink m.vdi 1M > log 2>&1 && bad "shrink over data was allowed" || { grep -q "data lies past the new end" log && ok || bad "shrink error: $(cat log)"; }
"$VDKIT" resize m.vdi 1M > log 2>&1; [ $? -eq 2 ] && grep -q -- "--shrink" log && ok || bad "shrink without --shrink: $(cat log)"
"$VDKIT" compact m.vdi > /dev/null && ok || bad "compact"
# A fixed image grows fully allocated (VirtualBox cannot grow fixed images).
cp --sparse=never v__preallocate_.vdi fx.vdi
"$VDKIT" resize fx.vdi +20M > /dev/null && ok || bad "grow fixed"
qcheck fx.vdi
same src.raw fx.vdi "fixed after grow"
[ "$(qemu-img info --output=json fx.vdi | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["actual-size"] >= j["virtual-size"])')" = True ] && ok || bad "grown fixed image is not allocated"
qcheck m.vdi
same src.raw m.vdi "after compact"
# A diff made by vdkit over a qemu-made base, compacted: still the same disk.
"$VDKIT" create -f vdi -b q_static=off.vdi d.vdi > /dev/null && ok || bad "diff over qemu base"
"$VDKIT" compare -F raw d.vdi src.raw > /dev/null && ok || bad "diff over qemu base reads differently"  # qemu-img cannot open VDI diffs
"$VDKIT" compact d.vdi > /dev/null && ok || bad "compact diff"
grep -q "backing file: q_static=off.vdi" <<< "$("$VDKIT" info d.vdi)" && ok || bad "diff names its parent"

# 4. Mixed chains: VDI diff over a VMDK base and the other way round.
qemu-img convert -f raw -O vmdk src.raw base.vmdk
"$VDKIT" create -f vdi -b base.vmdk over-vmdk.vdi > /dev/null && ok || bad "vdi diff over vmdk"
"$VDKIT" convert -O raw over-vmdk.vdi mixed.raw > /dev/null && cmp -s mixed.raw src.raw && ok || bad "vdi-over-vmdk content"

# 5. Damage: check finds it with offsets, repair fixes it, qemu-img agrees.
cp v_.vdi k.vdi
python3 - k.vdi <<'PY'
import struct, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(0x154); off_blocks = struct.unpack("<I", f.read(4))[0]
    f.seek(off_blocks); m = list(struct.unpack("<100I", f.read(400)))
    used = [i for i, e in enumerate(m) if e < 0xFFFFFFFE]
    f.seek(off_blocks + 4 * used[1]); f.write(struct.pack("<I", m[used[0]]))  # shared data block
PY
"$VDKIT" check k.vdi > log 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "shares data block" log && grep -q "error at 0x" log && ok || bad "check exit $rc: $(cat log)"
# Two errors: the shared entry, and the data block it no longer uses below the count (qemu-img: mismatch).
"$VDKIT" check --output=json k.vdi > check.json; python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(0 if j.get("corruptions")==2 and j["check-errors"]==0 and all(f["offset"]>0 for f in j["findings"]) else 1)' < check.json && ok || bad "check json: $(cat check.json)"
sum_before=$(sha256sum < k.vdi)
"$VDKIT" check -r -n k.vdi > log 2>&1; [ "$(sha256sum < k.vdi)" = "$sum_before" ] && grep -q "would be repaired" log && ok || bad "dry run changed the file or said nothing"
"$VDKIT" check -r k.vdi > log 2>&1 && grep -q "repaired" log && ok || bad "repair: $(cat log)"
"$VDKIT" check k.vdi > /dev/null && ok || bad "clean after repair"
qcheck k.vdi
# Hostile headers through the CLI.
cp v_.vdi h.vdi; printf '\x00\x00\x00\x40' | dd of=h.vdi bs=1 seek=$((0x180)) conv=notrunc status=none
"$VDKIT" info h.vdi > log 2>&1; [ $? -ne 0 ] && grep -q "h.vdi" log && grep -q "block map" log && ok || bad "huge block count: $(cat log)"
cp v_.vdi h2.vdi; printf '\x00\x30\x00\x00' | dd of=h2.vdi bs=1 seek=$((0x178)) conv=notrunc status=none
"$VDKIT" info -f vdi h2.vdi > log 2>&1; [ $? -ne 0 ] && grep -q "power of two" log && ok || bad "bad block size: $(cat log)"
head -c 300 v_.vdi > trunc.vdi
"$VDKIT" info trunc.vdi > log 2>&1; [ $? -ne 0 ] && grep -q "trunc.vdi" log && ok || bad "truncated header: $(cat log)"

finish
