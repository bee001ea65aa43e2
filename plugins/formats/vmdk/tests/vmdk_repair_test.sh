#!/usr/bin/env bash
# VMDK check/repair against the cases of the "trust" issue, qemu-img as the
# oracle: a monolithicSparse cut inside its last grain (check names the cut
# truly, check -r keeps the surviving half), one cut inside its tables
# (reported, never converted), the grain directory at the end with a footer
# and end-of-stream marker (no leak, repair changes nothing), and an
# embedded descriptor with an empty extent file name (FreeBSD mkimg).
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3

# 1. The last allocated grain (pattern 0x62 at 4M) lost its second half.
qemu-img create -q -f vmdk cut.vmdk 16M
qemu-io -f vmdk -c 'write -P 0x61 0 64k' -c 'write -P 0x62 4M 64k' cut.vmdk > /dev/null
size=$(stat -c %s cut.vmdk)
grain_at=$((size - 65536))
truncate -s $((size - 32768)) cut.vmdk
cut=$((size - 32768))
qemu-img convert -f vmdk -O raw cut.vmdk cut.qemu.raw
"$VDKIT" convert -O raw cut.vmdk cut.before.raw && cmp -s cut.before.raw cut.qemu.raw && ok \
    || bad "vdkit reads the cut grain differently from qemu-img"
"$VDKIT" map --output=json cut.vmdk | python3 -c '
import json, sys
m = json.load(sys.stdin)
sys.exit(0 if any(e["start"] <= 4 << 20 < e["start"] + e["length"] and e["data"] for e in m) else 1)' \
    && ok || bad "map does not show the cut grain as data"
out=$("$VDKIT" check --output=json cut.vmdk); rc=$?
python3 - "$cut" "$grain_at" <<PY && ok || bad "check of the cut grain (exit $rc): $out"
import json, sys
cut, at = int(sys.argv[1]), int(sys.argv[2])
f = json.loads('''$out''')["findings"]
hits = [x for x in f if "cut off" in x["message"]]
assert $rc == 2 and len(hits) == 1, f
h = hits[0]
assert h["offset"] == cut, (h["offset"], cut)                      # the true place of the damage
assert "at byte %d" % at in h["message"], h["message"]             # where the grain really is
assert "lost disk bytes [%d, %d)" % ((4 << 20) + 32768, (4 << 20) + 65536) in h["message"], h["message"]
assert not any(x["severity"] == "leak" for x in f), f              # its start is no leak
PY
"$VDKIT" check -r cut.vmdk > /dev/null; rc=$?
[ $rc -eq 0 ] && ok || bad "check -r of the cut grain: exit $rc"
"$VDKIT" convert -O raw cut.vmdk cut.after.raw && cmp -s cut.after.raw cut.before.raw && ok \
    || bad "check -r changed what the disk reads"
cmp -s <(head -c $((32768)) /dev/zero | tr '\0' 'b') <(dd if=cut.after.raw bs=32k skip=128 count=1 status=none) && ok \
    || bad "the surviving 32 KiB of the cut grain are gone"
qemu-img check -q cut.vmdk && ok || bad "qemu-img check after the repair"
qemu-img convert -f vmdk -O raw cut.vmdk cut.qemu2.raw && cmp -s cut.qemu2.raw cut.before.raw && ok \
    || bad "qemu-img reads the repaired image differently"
"$VDKIT" check cut.vmdk > /dev/null && ok || bad "check after the repair is not clean"

# 1b. Writing before check -r: a new grain must not land on the cut grain's
# tail (it reads as zeros). A commit from a child allocates grains in the cut base.
qemu-img create -q -f vmdk cutw.vmdk 16M
qemu-io -f vmdk -c 'write -P 0x62 4M 64k' cutw.vmdk > /dev/null
truncate -s $(($(stat -c %s cutw.vmdk) - 32768)) cutw.vmdk
"$VDKIT" -q create -f vmdk -b cutw.vmdk -F vmdk cutw-child.vmdk
qemu-io -f vmdk -c 'write -P 0x63 8M 64k' cutw-child.vmdk > /dev/null
"$VDKIT" convert -O raw cutw-child.vmdk cutw.expected.raw
out=$("$VDKIT" commit cutw-child.vmdk 2>&1) && ok || bad "commit into a base with a cut grain: $out"
"$VDKIT" convert -O raw cutw.vmdk cutw.after.raw && cmp -s cutw.after.raw cutw.expected.raw && ok \
    || bad "a grain allocated in a file with a cut grain overwrote the cut grain's tail"

# 2. A 100G monolithicSparse cut to 10M (its primary grain tables cut; the
# redundant ones, which come first, intact): reads follow the redundant
# tables, the choice check -r makes (docs/check.md rule 5), so the map is the
# same before and after; check -r writes new primary tables at the end from
# the redundant copies.
qemu-img create -q -f vmdk -o subformat=monolithicSparse big.vmdk 100G
truncate -s 10M big.vmdk
out=$("$VDKIT" map --output=json big.vmdk 2>&1 > big.map1); rc=$?
[ $rc -eq 0 ] && ok || bad "big truncated: map before the repair: exit $rc: $out"
out=$("$VDKIT" check -r big.vmdk 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q "grain directory entry .* lies beyond the end of the file.*from the redundant copy" <<< "$out" && ok \
    || bad "big truncated: check -r exit $rc"
out=$("$VDKIT" check big.vmdk 2>&1) && ok || bad "big truncated: check after the repair: $out"
"$VDKIT" map --output=json big.vmdk | python3 -c '
import json, sys
m = json.load(sys.stdin)
sys.exit(0 if m and not any(e["data"] for e in m) else 1)' && ok || bad "big truncated: the repaired map shows data"
"$VDKIT" map --output=json big.vmdk | cmp -s - big.map1 && ok || bad "big truncated: map before and after check -r differ"

# 3. Grain directory at the end (footer + end-of-stream marker) in a monolithicSparse.
python3 - <<'PY'
import struct
def pad(b): return b + b"\0" * (-len(b) % 512)
cap, ov = 8192, 128
def header(gd):
    return pad(struct.pack("<IIIQQQQIQQQB4sH", 0x564D444B, 1, 1, cap, 128, 1, 2, 512, 0, gd, ov, 0, b"\n \r\n", 0))
desc = ('# Disk DescriptorFile\nversion=1\nCID=1a2b3c4d\nparentCID=ffffffff\ncreateType="monolithicSparse"\n'
        'RW %d SPARSE "end.vmdk"\nddb.adapterType = "ide"\n' % cap).encode()
out = bytearray(header(0xFFFFFFFFFFFFFFFF)) + pad(desc)
out += bytes(ov * 512 - len(out))
gt = [0] * 512
for gi, b in ((0, 0x61), (17, 0x62), (63, 0x63)):
    gt[gi] = len(out) // 512
    out += bytes([b]) * 65536
gt_sec = len(out) // 512
out += struct.pack("<512I", *gt)
gd_sec = len(out) // 512
out += pad(struct.pack("<I", gt_sec)) + pad(struct.pack("<QII", 1, 0, 3)) + header(gd_sec) + pad(struct.pack("<QII", 0, 0, 0))
open("end.vmdk", "wb").write(out)
PY
qemu-img convert -f vmdk -O raw end.vmdk end.qemu.raw && ok || bad "qemu-img does not read the footer layout"
"$VDKIT" convert -O raw end.vmdk end.raw && cmp -s end.raw end.qemu.raw && ok || bad "vdkit reads the footer layout differently"
out=$("$VDKIT" check end.vmdk 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "footer layout: check exit $rc: $out"
sum=$(sha256sum < end.vmdk)
"$VDKIT" check -r end.vmdk > /dev/null 2>&1
[ "$(sha256sum < end.vmdk)" = "$sum" ] && ok || bad "check -r changed a sound footer layout"
qemu-img convert -f vmdk -O raw end.vmdk end.qemu2.raw && cmp -s end.qemu2.raw end.qemu.raw && ok \
    || bad "qemu-img cannot read the footer layout after check -r"
# Writing would append grains after the footer, hiding it: refused, the file unchanged.
out=$("$VDKIT" discard -z end.vmdk 1M:64K 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "footer" <<< "$out" && ok || bad "a write into the footer layout: exit $rc: $out"
[ "$(sha256sum < end.vmdk)" = "$sum" ] && ok || bad "a refused write changed the footer layout"
# ... and the stream of the same layout (vdkit's own streamOptimized) checks clean.
"$VDKIT" convert -O vmdk -o subformat=streamOptimized end.raw st.vmdk > /dev/null
out=$("$VDKIT" check st.vmdk 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "streamOptimized with a footer: check exit $rc: $out"

# 4. Embedded descriptor with an empty extent file name (FreeBSD mkimg): the file itself.
qemu-img create -q -f vmdk mk.vmdk 5M
qemu-io -f vmdk -c 'write -P 0x5a 1M 100k' mk.vmdk > /dev/null
python3 - <<'PY' || bad "mk.vmdk: no extent line to blank"
d = bytearray(open("mk.vmdk", "rb").read())
i = d.find(b'SPARSE "mk.vmdk"')
assert i > 0
d[i:i + 16] = b'SPARSE ""' + b" " * 7
open("mk.vmdk", "wb").write(d)
PY
grep -aq 'SPARSE ""' mk.vmdk && ok || bad "the mkimg-style descriptor was not written"
qemu-img convert -f vmdk -O raw mk.vmdk mk.qemu.raw && ok || bad "qemu-img does not read the empty extent name"
out=$("$VDKIT" convert -O raw mk.vmdk mk.raw 2>&1) && cmp -s mk.raw mk.qemu.raw && ok || bad "empty extent name: $out"
"$VDKIT" check mk.vmdk > /dev/null && ok || bad "empty extent name: check"
# In a descriptor file an empty name stays an error.
head -c 1M /dev/zero > flat-f.img
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "" 0\n' > flat.vmdk
out=$("$VDKIT" info flat.vmdk 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "extent has no file name" <<< "$out" && ok || bad "empty name in a descriptor file: exit $rc $out"
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="twoGbMaxExtentSparse"\nRW 2048 SPARSE ""\n' > sp.vmdk
out=$("$VDKIT" info sp.vmdk 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "extent has no file name" <<< "$out" && ok || bad "empty SPARSE name in a descriptor file: exit $rc $out"

# 5. One copy of a grain directory or grain table entry damaged (docs/check.md
# rule 5): the copy that names a table in the descriptor, a grain, another
# table or past the end of the file is the error and is never written; an
# entry that is 0 or points into another grain loses to the sound copy's
# grain; nothing is truncated and every byte reads as before (qemu-img the
# oracle of the undamaged image).
qemu-img create -q -f vmdk gd0.vmdk 8M
qemu-io -f vmdk -c 'write -P 0x61 0 64k' -c 'write -P 0x62 1M 64k' gd0.vmdk > /dev/null
qemu-img convert -f vmdk -O raw gd0.vmdk gd.good.raw
# damage: <copy p|r> <gd|gt> <index> <value in sectors; 'g0'/'g16' = grain 0/16's sector, '+N' added>
damage() {
    python3 - "$@" <<'PY'
import struct, sys
copy, kind, idx, val = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
f = open("gd.vmdk", "r+b"); h = f.read(512)
d = struct.unpack_from("<Q", h, 56 if copy == "p" else 48)[0]
def rd(at): f.seek(at); return struct.unpack("<I", f.read(4))[0]
gt = rd(struct.unpack_from("<Q", h, 56)[0] * 512)
grain = {"g0": rd(gt * 512), "g16": rd(gt * 512 + 64)}
base, _, plus = val.partition("+")
v = grain.get(base, None)
v = (int(base) if v is None else v) + (int(plus) if plus else 0)
at = d * 512 + idx * 4 if kind == "gd" else rd(d * 512) * 512 + idx * 4
f.seek(at); f.write(struct.pack("<I", v))
PY
}
for spec in "r gd 0 1" "p gd 0 1" "r gd 0 g0" "p gd 0 g0" "p gd 0 g16+8" "r gd 0 4000000" \
            "p gd 0 0" "p gt 0 0" "p gt 16 0" "p gt 0 g16" "p gt 0 g16+64" "r gt 16 g0" \
            "p gd 0 4000000" "p gt 16 4000000" "p gt 0 3" "p gd 0 g16" "p gt 16 g0+1"; do
    cp gd0.vmdk gd.vmdk
    damage $spec
    # Reads follow the copy check -r keeps: the same bytes before and after the repair.
    rm -f gd.before.raw
    out=$("$VDKIT" convert -O raw gd.vmdk gd.before.raw 2>&1) && cmp -s gd.before.raw gd.good.raw && ok \
        || bad "[$spec] before check -r vdkit reads other data than after it: $out"
    "$VDKIT" map --output=json gd.vmdk > gd.map.before 2>&1 || bad "[$spec] map before check -r"
    out=$("$VDKIT" check gd.vmdk 2>&1); rc=$?
    [ $rc -eq 2 ] && ! grep -q "lost disk bytes" <<< "$out" && ok || bad "[$spec] check (exit $rc): $out"
    out=$("$VDKIT" check -r gd.vmdk 2>&1); rc=$?
    [ $rc -eq 0 ] && ! grep -q "lost disk bytes" <<< "$out" && ok || bad "[$spec] check -r (exit $rc): $out"
    rm -f gd.after.raw gd.qemu.raw
    "$VDKIT" convert -O raw gd.vmdk gd.after.raw && cmp -s gd.after.raw gd.good.raw && ok \
        || bad "[$spec] check -r changed what the disk reads"
    qemu-img convert -f vmdk -O raw gd.vmdk gd.qemu.raw && cmp -s gd.qemu.raw gd.good.raw && ok \
        || bad "[$spec] qemu-img reads the repaired image differently"
    qemu-img check -q gd.vmdk && ok || bad "[$spec] qemu-img check after the repair"
    out=$("$VDKIT" check gd.vmdk 2>&1) && ok || bad "[$spec] check after the repair: $out"
    "$VDKIT" map --output=json gd.vmdk | cmp -s - gd.map.before && ok || bad "[$spec] map differs before and after check -r"
done

# 6. Writing into damaged tables is refused until check -r (as VDI does):
# two entries sharing a grain (both copies), a grain directory entry that is 0
# while the redundant one names the table, an entry into the descriptor. The
# refused commit / compact / resize / discard change no byte.
for spec in "both-shared" "p gd 0 0" "r gd 0 1" "p gt 1 g0"; do
    cp gd0.vmdk gd.vmdk
    if [ "$spec" = both-shared ]; then damage p gt 1 g0; damage r gt 1 g0; else damage $spec; fi
    sum=$(sha256sum < gd.vmdk)
    rm -f gdc.vmdk
    "$VDKIT" -q create -f vmdk -b gd.vmdk -F vmdk gdc.vmdk
    qemu-io -f vmdk -c 'write -P 0x63 64k 64k' -c 'write -P 0x64 2M 64k' gdc.vmdk > /dev/null
    out=$("$VDKIT" commit gdc.vmdk 2>&1); rc=$?
    [ $rc -ne 0 ] && grep -q "run 'vdkit check -r' first" <<< "$out" && ok || bad "[$spec] commit into damaged tables: exit $rc: $out"
    out=$("$VDKIT" compact gd.vmdk 2>&1); rc=$?
    [ $rc -ne 0 ] && grep -q "check -r" <<< "$out" && ok || bad "[$spec] compact of damaged tables: exit $rc: $out"
    out=$("$VDKIT" resize gd.vmdk 16M 2>&1); rc=$?
    [ $rc -ne 0 ] && grep -q "check -r" <<< "$out" && ok || bad "[$spec] resize of damaged tables: exit $rc: $out"
    out=$("$VDKIT" discard gd.vmdk 2M:64K 2>&1); rc=$?
    [ $rc -ne 0 ] && grep -q "check -r" <<< "$out" && ok || bad "[$spec] discard in damaged tables: exit $rc: $out"
    [ "$(sha256sum < gd.vmdk)" = "$sum" ] && ok || bad "[$spec] a refused write changed the image"
done

# 7. qemu's streamOptimized (grain directory at the end, footer) cut by 1
# byte: the footer is still found (the file size is rounded up to a sector,
# as qemu does).
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized gd.good.raw so.vmdk
truncate -s $(($(stat -c %s so.vmdk) - 1)) so.vmdk
qemu-img convert -f vmdk -O raw so.vmdk so.qemu.raw
rm -f so.raw
out=$("$VDKIT" convert -O raw so.vmdk so.raw 2>&1) && cmp -s so.raw so.qemu.raw && ok \
    || bad "a stream cut by one byte reads differently from qemu-img: $out"

# 8. A corrupt overhead field (header byte 64) reaching over grains: reported,
# never trusted over the tables; repair sets it back, no grain is dropped.
for ov in 200 file; do
    cp gd0.vmdk gd.vmdk
    python3 - "$ov" <<'PY'
import os, struct, sys
v = os.path.getsize("gd.vmdk") // 512 if sys.argv[1] == "file" else int(sys.argv[1])
f = open("gd.vmdk", "r+b"); f.seek(64); f.write(struct.pack("<Q", v))
PY
    out=$("$VDKIT" check gd.vmdk 2>&1); rc=$?
    [ $rc -eq 2 ] && grep -q "overhead field" <<< "$out" && ! grep -q "lost disk bytes" <<< "$out" && ok \
        || bad "[overhead $ov] check (exit $rc): $out"
    out=$("$VDKIT" check -r gd.vmdk 2>&1); rc=$?
    [ $rc -eq 0 ] && ! grep -q "lost disk bytes" <<< "$out" && ok || bad "[overhead $ov] check -r (exit $rc): $out"
    rm -f gd.after.raw
    "$VDKIT" convert -O raw gd.vmdk gd.after.raw && cmp -s gd.after.raw gd.good.raw && ok \
        || bad "[overhead $ov] check -r changed what the disk reads"
    qemu-img compare -q gd.vmdk gd.good.raw && ok || bad "[overhead $ov] qemu-img reads the repaired image differently"
done

# 9. A wrong but plausible grainSize (header byte 20) over images whose grains
# lie one after the other: check notes the spacing at byte 20 (a halved or
# quartered grainSize looks like a healthy image with every other grain
# free: a note, exit 0; a doubled one makes grains overlap: errors); nothing
# is called a leak, truncated, unmapped or padded, so check -r leaves the
# file as it is and qemu-img reads the same before and after.
qemu-img create -q -f vmdk gs0.vmdk 64M
qemu-io -f vmdk -c 'write -P 0x61 0 64k' -c 'write -P 0x62 1M 128k' -c 'write -P 0x63 5M 64k' \
    -c 'write -P 0x64 40M 64k' -c 'write -P 0x65 63M 64k' gs0.vmdk > /dev/null
qemu-img create -q -f vmdk -o subformat=monolithicSparse gs1.vmdk 8M
qemu-io -f vmdk -c 'write -P 0x71 64k 64k' -c 'write -P 0x72 3M 64k' gs1.vmdk > /dev/null
"$VDKIT" -q create -f vmdk -o grain-size=32k gs2.vmdk 8M
qemu-io -f vmdk -c 'write -P 0x73 0 32k' -c 'write -P 0x74 2M 96k' -c 'write -P 0x75 7M 32k' gs2.vmdk > /dev/null
for img in gs0 gs1 gs2; do
    for factor in half quarter double; do
        cp $img.vmdk gs.vmdk
        python3 - "$factor" <<'PY'
import struct, sys
f = open("gs.vmdk", "r+b"); f.seek(20); g = struct.unpack("<Q", f.read(8))[0]
g = {"half": g // 2, "quarter": g // 4, "double": g * 2}[sys.argv[1]]
f.seek(20); f.write(struct.pack("<Q", g))
PY
        sum=$(sha256sum < gs.vmdk)
        rm -f gs.q1.raw gs.q2.raw
        qemu-img convert -f vmdk -O raw gs.vmdk gs.q1.raw 2> /dev/null; q1=$?
        "$VDKIT" check --output=json gs.vmdk > gs.json; rc=$?
        want=0; [ $factor = double ] && want=2
        python3 - "$rc" $want <<'PY' && ok || bad "[$img $factor] check (exit $rc): $(cat gs.json)"
import json, sys
f = json.load(open("gs.json"))["findings"]
assert int(sys.argv[1]) == int(sys.argv[2]), f
assert any(x["offset"] == 20 and "grainSize" in x["message"] for x in f), f
assert not any(x["severity"] == "leak" or "lost disk bytes" in x["message"] for x in f), f
if sys.argv[2] == "2":
    assert all("overlap" in x["message"] or "grainSize" in x["message"] for x in f if x["severity"] == "error"), f
PY
        out=$("$VDKIT" check -r gs.vmdk 2>&1); rc=$?
        [ $rc -eq $want ] && [ "$(sha256sum < gs.vmdk)" = "$sum" ] && ok \
            || bad "[$img $factor] check -r (exit $rc) changed the file: $out"
        qemu-img convert -f vmdk -O raw gs.vmdk gs.q2.raw 2> /dev/null; q2=$?
        [ $q1 -eq $q2 ] && { [ $q1 -ne 0 ] || cmp -s gs.q1.raw gs.q2.raw; } && ok \
            || bad "[$img $factor] qemu-img reads differently after check -r"
    done
    # The true grainSize is clean (no false alarm on the layouts this test uses).
    out=$("$VDKIT" check $img.vmdk 2>&1) && ok || bad "[$img] the undamaged image: $out"
done

# Healthy images whose grains are spaced like a wrong grainSize (every other
# grain, or 3 of 4, zeroed or discarded): a note at byte 20, never an error;
# check -r keeps the space (changes nothing) and the disk reads the same.
qemu-img create -q -f vmdk -o zeroed_grain=on zo.vmdk 8M
qemu-io -f vmdk -c 'write -P 7 0 8M' zo.vmdk > /dev/null
cp zo.vmdk zo4.vmdk
eval qemu-io -f vmdk $(for i in $(seq 1 2 127); do printf " -c 'write -z %dk 64k'" $((i * 64)); done) zo.vmdk > /dev/null
eval qemu-io -f vmdk $(for i in $(seq 0 127); do [ $((i % 4)) -ne 0 ] && printf " -c 'write -z %dk 64k'" $((i * 64)); done) zo4.vmdk > /dev/null
"$VDKIT" -q create -f vmdk dz.vmdk 256K
qemu-io -f vmdk -c 'write -P 5 0 256k' dz.vmdk > /dev/null
"$VDKIT" -q create -f vmdk dz4.vmdk 1M
qemu-io -f vmdk -c 'write -P 5 0 1M' dz4.vmdk > /dev/null
"$VDKIT" -q discard dz.vmdk 64K:64K 192K:64K
"$VDKIT" -q discard dz4.vmdk 64K:192K 320K:192K 576K:192K 832K:192K
"$VDKIT" -q create -f vmdk -o zeroed-grain=on dzz.vmdk 1M
qemu-io -f vmdk -c 'write -P 6 0 1M' dzz.vmdk > /dev/null
"$VDKIT" -q discard -z dzz.vmdk 64K:64K 192K:64K 320K:64K 448K:64K 576K:64K 704K:64K 832K:64K 960K:64K
for img in zo zo4 dz dz4 dzz; do
    rm -f hs.b.raw hs.a.raw
    qemu-img convert -f vmdk -O raw $img.vmdk hs.b.raw
    sum=$(sha256sum < $img.vmdk)
    "$VDKIT" check --output=json $img.vmdk > hs.json; rc=$?
    python3 - "$rc" <<'PY' && ok || bad "[$img] a healthy image with free grains between used ones (exit $rc): $(cat hs.json)"
import json, sys
f = json.load(open("hs.json"))["findings"]
assert int(sys.argv[1]) == 0, f
assert not any(x["severity"] == "error" for x in f), f
# The spacing note at byte 20, or (where vdkit's own discard cut the free
# grains off the end so the spacing no longer looks like a grain size) the
# free-grain note: a note either way, never an error or a leak.
assert any(x["severity"] == "note" and ((x["offset"] == 20 and "repair keeps it" in x["message"])
           or "grains inside the file are free" in x["message"]) for x in f), f
assert not any(x["severity"] == "leak" for x in f), f
PY
    out=$("$VDKIT" check -r $img.vmdk 2>&1); rc=$?
    [ $rc -eq 0 ] && [ "$(sha256sum < $img.vmdk)" = "$sum" ] && ok || bad "[$img] check -r (exit $rc) changed the file: $out"
    qemu-img convert -f vmdk -O raw $img.vmdk hs.a.raw && cmp -s hs.a.raw hs.b.raw && ok || bad "[$img] reads differ after check -r"
done
# A directory with more tables than the header needs stays an error; it never
# fires on images qemu-img or vdkit make at odd sizes or resize.
for sz in 1M 33M 100M 1G 2047M 4097M; do
    rm -f od.vmdk odv.vmdk
    qemu-img create -q -f vmdk od.vmdk $sz
    "$VDKIT" -q create -f vmdk odv.vmdk $sz
    for img in od odv; do
        qemu-io -f vmdk -c 'write -P 3 0 64k' $img.vmdk > /dev/null
        out=$("$VDKIT" check $img.vmdk 2>&1) && ok || bad "[$img $sz] a fresh image: $out"
    done
done
"$VDKIT" -q create -f vmdk rs.vmdk 100M
qemu-io -f vmdk -c 'write -P 3 0 64k' -c 'write -P 4 90M 64k' rs.vmdk > /dev/null
for s in 40M 3G 1G 3M 100M 5G 17M; do
    "$VDKIT" -q resize --shrink rs.vmdk $s
    qemu-io -f vmdk -c 'write -P 5 1M 64k' rs.vmdk > /dev/null
    out=$("$VDKIT" check rs.vmdk 2>&1) && ok || bad "[resized to $s] $out"
done
qemu-img create -q -f vmdk gx.vmdk 100M                 # 4 tables, all preallocated
qemu-io -f vmdk -c 'write -P 3 0 64k' -c 'write -P 4 80M 64k' gx.vmdk > /dev/null
python3 - <<'PY'
import struct
f = open("gx.vmdk", "r+b"); f.seek(20); g = struct.unpack("<Q", f.read(8))[0]
f.seek(20); f.write(struct.pack("<Q", g * 2))           # the header now needs 2 tables
PY
out=$("$VDKIT" check gx.vmdk 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "error at 0x14: .*grainSize.*need only 2 tables" <<< "$out" && ok \
    || bad "a directory holding more tables than a doubled grainSize needs (exit $rc): $out"

# Writes under a grainSize the layout contradicts stay consistent with the
# header (vdkit and qemu-img read the same afterwards) and are allowed;
# grains that overlap under the header's grainSize refuse them.
for factor in half double; do
    cp gs1.vmdk gw.vmdk
    python3 - "$factor" <<'PY'
import struct, sys
f = open("gw.vmdk", "r+b"); f.seek(20); g = struct.unpack("<Q", f.read(8))[0]
f.seek(20); f.write(struct.pack("<Q", g // 2 if sys.argv[1] == "half" else g * 2))
PY
    sum=$(sha256sum < gw.vmdk)
    out=$("$VDKIT" discard -z gw.vmdk 5M:64K 2>&1); rc=$?
    if [ $factor = half ]; then
        rm -f gw.v.raw gw.q.raw
        [ $rc -eq 0 ] && "$VDKIT" convert -O raw gw.vmdk gw.v.raw && qemu-img convert -f vmdk -O raw gw.vmdk gw.q.raw \
            && cmp -s gw.v.raw gw.q.raw && ok || bad "[gw $factor] a write under the halved grainSize: exit $rc: $out"
    else
        [ $rc -ne 0 ] && grep -q "check -r" <<< "$out" && [ "$(sha256sum < gw.vmdk)" = "$sum" ] && ok \
            || bad "[gw $factor] a write over grains overlapping under the header's grainSize: exit $rc: $out"
    fi
done

# 10. streamOptimized: qemu-img's (tables at the front) and vdkit's (footer)
# check clean, and check -r exits 0 without touching them; damaged grain
# markers (compressed data, the LBA, the size, a cut) are errors naming the
# marker's byte; check -r changes nothing and says why.
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized gd.good.raw sq.vmdk
"$VDKIT" -q convert -O vmdk -o subformat=streamOptimized gd.good.raw sv.vmdk
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized cut.after.raw sq2.vmdk
for img in sq sv sq2; do
    sum=$(sha256sum < $img.vmdk)
    out=$("$VDKIT" check $img.vmdk 2>&1) && ok || bad "[$img] a clean stream does not check clean: $out"
    out=$("$VDKIT" check -r $img.vmdk 2>&1); rc=$?
    [ $rc -eq 0 ] && [ "$(sha256sum < $img.vmdk)" = "$sum" ] && ok || bad "[$img] check -r of a clean stream: exit $rc: $out"
done
# Streams with data under several grain tables (vdkit's: the tables after
# their grains; qemu's: at the front), compressible and incompressible grains
# (a compressed grain may take more or less than a grain in the file), and
# data spread over more than 4 GiB: clean, and read like the source.
truncate -s 300M mt.raw
python3 - <<'PY'
import random
r = random.Random(7)
f = open("mt.raw", "r+b")
for i, off in enumerate([0, 33 << 20, 40 << 20, 70 << 20, 100 << 20, 150 << 20, (299 << 20) + (512 << 10)]):
    f.seek(off); f.write(r.randbytes(65536) if i % 2 else bytes([i + 1]) * 100000)
PY
qemu-img create -q -f vmdk mt6.vmdk 6G
qemu-io -f vmdk -c 'write -P 1 0 64k' -c 'write -P 2 2G 128k' -c 'write -P 3 4100M 64k' -c 'write -P 4 6143M 1M' mt6.vmdk > /dev/null
"$VDKIT" -q convert -O vmdk -o subformat=streamOptimized mt.raw mts.vmdk
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized mt.raw mtq.vmdk
"$VDKIT" -q convert -O vmdk -o subformat=streamOptimized mt6.vmdk mt6s.vmdk
qemu-img convert -f vmdk -O vmdk -o subformat=streamOptimized mt6.vmdk mt6q.vmdk
for img in mts mtq mt6s mt6q; do
    case $img in mt6*) src=mt6.vmdk;; *) src=mt.raw;; esac
    out=$("$VDKIT" check $img.vmdk 2>&1) && ok || bad "[$img] a stream with several grain tables: $out"
    qemu-img compare -q $img.vmdk $src && ok || bad "[$img] qemu-img reads the stream differently from its source"
done
# A grain directory entry naming a table that really overlaps a grain marker's
# compressed data is still an error (vdkit's stream: directory in the footer).
python3 - <<'PY'
import struct
d = bytearray(open("mts.vmdk", "rb").read())
ft = len(d) - 1024                         # the footer (a header copy) before the end-of-stream marker
gd = struct.unpack_from("<Q", d, ft + 56)[0]
s = struct.unpack_from("<Q", d, 64)[0]
while True:                                # the first grain marker whose data is incompressible
    lba, n = struct.unpack_from("<QI", d, s * 512)
    if n > 60000: break
    s += (12 + n + 511) // 512 if n else 1 + (struct.unpack_from("<Q", d, s * 512)[0] or 1)
assert lba == 528 * 128, lba
struct.pack_into("<I", d, gd * 512, s + 64)   # table 0 inside grain 528's compressed data
open("mtd.vmdk", "wb").write(d)
PY
out=$("$VDKIT" check mtd.vmdk 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "grain directory entry 0 names sector .* which overlaps grain 528 " <<< "$out" && ok \
    || bad "a table over a grain marker's data in a stream (exit $rc): $out"

# A vdkit stream cut before its footer (no tables to read): the grains are
# found by their markers, and check names the lost disk bytes: everything
# after the last grain found (a stream is written in disk order). The source
# is the oracle: the disk reads it up to there.
head -c 4M /dev/urandom > r4.raw
"$VDKIT" -q convert -O vmdk -o subformat=streamOptimized r4.raw r4s.vmdk
for cut in 70000 1000000 2500000 $(($(stat -c %s r4s.vmdk) - 2000)); do
    cp r4s.vmdk rc.vmdk
    truncate -s $cut rc.vmdk
    rm -f rc.raw
    out=$("$VDKIT" check rc.vmdk 2>&1); rc=$?
    "$VDKIT" convert -O raw rc.vmdk rc.raw 2> /dev/null
    python3 - "$rc" "$out" <<'PY' && ok || bad "[stream cut to $cut] check (exit $rc): $out"
import re, sys
rc, out = int(sys.argv[1]), sys.argv[2]
assert rc == 2, out
m = set(re.findall(r"lost disk bytes \[(\d+), (\d+)\)", out))   # the open's warning says it too
src, got = open("r4.raw", "rb").read(), open("rc.raw", "rb").read()
assert len(m) <= 1, out
if not m:                                  # cut inside the footer: every grain was found
    assert got == src and "64 grains recovered" in out, out
    sys.exit()
a, b = map(int, m.pop())
assert b == len(src) and a % 65536 == 0, (a, b)
assert got[:a] == src[:a], "data before the named range differs from the source"
assert got[a:a + 65536] != src[a:a + 65536], "the first grain named lost reads like the source"
PY
done

# sdamage <image> <what>: writes sd.vmdk, prints the byte of the damaged grain marker
sdamage() {
    python3 - "$@" <<'PY'
import struct, sys
img, what = sys.argv[1], sys.argv[2]
d = bytearray(open(img + ".vmdk", "rb").read())
ov = struct.unpack_from("<Q", d, 64)[0]
s, markers = ov, []
while s * 512 + 12 <= len(d):
    v, n = struct.unpack_from("<QI", d, s * 512)
    if n == 0:
        t = struct.unpack_from("<I", d, s * 512 + 12)[0]
        if t == 0: break
        s += 1 + (v or 1)
        continue
    markers.append(s * 512)
    s += (12 + n + 511) // 512
at = markers[-1] if what.startswith("last") else markers[0]
if what.endswith("zlib"): d[at + 14:at + 18] = b"\xde\xad\xbe\xef"
elif what.endswith("lba"): struct.pack_into("<Q", d, at, struct.unpack_from("<Q", d, at)[0] + 128)
elif what.endswith("size"): struct.pack_into("<I", d, at + 8, 0x7fffffff)
elif what.endswith("cut"): d = d[:at + 20]
open("sd.vmdk", "wb").write(d)
print(at)
PY
}
for img in sq sv sq2 mts mtq; do
    for what in zlib lba size last-cut last-zlib; do
        at=$(sdamage $img $what)
        sum=$(sha256sum < sd.vmdk)
        "$VDKIT" check --output=json sd.vmdk > sd.json; rc=$?
        python3 - "$rc" "$at" "$what" <<'PY' && ok || bad "[$img $what] check (exit $rc): $(cat sd.json)"
import json, sys
rc, at, what = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
f = json.load(open("sd.json"))["findings"]
assert rc == 2, f
errs = [x for x in f if x["severity"] == "error"]
assert errs, f
if what != "last-cut":  # a cut stream's findings name where the file ends
    assert any(x["offset"] == at or ("byte %d" % at) in x["message"] for x in errs), (at, f)
PY
        out=$("$VDKIT" check -r sd.vmdk 2>&1); rc=$?
        [ $rc -eq 2 ] && grep -q "not repaired in place" <<< "$out" && [ "$(sha256sum < sd.vmdk)" = "$sum" ] && ok \
            || bad "[$img $what] check -r of a damaged stream: exit $rc: $out"
    done
done

# 11. A cut flat extent names its lost disk bytes (the extent's range past the
# end of its file); check -r extends it with the zeros it reads as, so vdkit
# and qemu-img read the same before and after.
head -c $((3 << 20)) /dev/urandom > fl.raw
for sub in monolithicFlat twoGbMaxExtentFlat; do
    rm -f fl.vmdk fl-*.vmdk
    "$VDKIT" -q convert -O vmdk -o subformat=$sub,split-size=1M fl.raw fl.vmdk
    for cutfile in $(ls fl-*.vmdk | head -2); do
        for keep in 0 4096 100000; do
            rm -f c.vmdk c-*.vmdk
            for f in fl.vmdk fl-*.vmdk; do sed 's/"fl-/"c-/' "$f" > "c${f#fl}"; done
            c="c${cutfile#fl}"
            start=$(python3 - "$c" <<'PY'
import re, sys
off = 0
for l in open("c.vmdk"):
    m = re.match(r'RW (\d+) FLAT "([^"]+)"', l)
    if m:
        if m.group(2) == sys.argv[1]: print(off, int(m.group(1)) * 512); break
        off += int(m.group(1)) * 512
PY
)
            set -- $start
            truncate -s $keep "$c"
            rm -f c.b.raw c.a.raw c.q.raw
            "$VDKIT" convert -O raw c.vmdk c.b.raw
            out=$("$VDKIT" check c.vmdk 2>&1); rc=$?
            [ $rc -eq 2 ] && grep -q "lost disk bytes \[$(($1 + keep)), $(($1 + $2))): the file was truncated" <<< "$out" && ok \
                || bad "[$sub $cutfile cut to $keep] check (exit $rc): $out"
            out=$("$VDKIT" check -r c.vmdk 2>&1); rc=$?
            [ $rc -eq 0 ] && [ "$(stat -c %s "$c")" -eq "$2" ] && ok || bad "[$sub $cutfile $keep] check -r (exit $rc): $out"
            "$VDKIT" convert -O raw c.vmdk c.a.raw && cmp -s c.a.raw c.b.raw && ok || bad "[$sub $cutfile $keep] reads differ after check -r"
            qemu-img convert -f vmdk -O raw c.vmdk c.q.raw && cmp -s c.q.raw c.b.raw && ok || bad "[$sub $cutfile $keep] qemu-img reads differently"
            # only the lost range differs from the original data
            cmp -s <(head -c $(($1 + keep)) fl.raw) <(head -c $(($1 + keep)) c.a.raw) && ok || bad "[$sub $cutfile $keep] data before the cut changed"
        done
    done
done

# 12. Header fields the tables contradict: a redundant directory the flags
# announce at offset 0 or past the end of the file; a descriptor size
# reaching over the directories (writes are refused until check -r, which
# shrinks it; the descriptor text is kept). qemu-img the oracle of the data.
for spec in "48 0" "48 999999" "36 100" "36 40"; do
    cp gd0.vmdk hf.vmdk
    set -- $spec
    python3 - $1 $2 <<'PY'
import struct, sys
f = open("hf.vmdk", "r+b"); f.seek(int(sys.argv[1])); f.write(struct.pack("<Q", int(sys.argv[2])))
PY
    out=$("$VDKIT" check --output=json hf.vmdk); rc=$?
    [ $rc -eq 2 ] && python3 -c '
import json, sys
f = json.loads(sys.argv[1])["findings"]
assert [x["offset"] for x in f if x["severity"] == "error"] == [int(sys.argv[2])], f' "$out" $1 && ok || bad "[$spec] check (exit $rc): $out"
    sum=$(sha256sum < hf.vmdk)
    out=$("$VDKIT" discard hf.vmdk 2M:64K 2>&1); rc=$?
    if [ $1 = 36 ]; then
        [ $rc -ne 0 ] && grep -q "check -r" <<< "$out" && [ "$(sha256sum < hf.vmdk)" = "$sum" ] && ok \
            || bad "[$spec] a write over a descriptor reaching the tables: exit $rc: $out"
    fi
    out=$("$VDKIT" check -r hf.vmdk 2>&1); rc=$?
    [ $rc -eq 0 ] && ok || bad "[$spec] check -r (exit $rc): $out"
    "$VDKIT" check hf.vmdk > /dev/null && ok || bad "[$spec] not clean after check -r"
    qemu-img compare -q hf.vmdk gd.good.raw && ok || bad "[$spec] qemu-img reads other data after check -r"
    "$VDKIT" info hf.vmdk > /dev/null && qemu-img check -q hf.vmdk && ok || bad "[$spec] the repaired image does not open"
done

# 12b. One table named by both directories (a primary entry naming the
# redundant copy's table, or the other way round), or the redundant directory
# at the primary's offset: the table is usable (reads, map and qemu agree);
# the finding is the missing redundancy, never lost data; check -r restores
# a copy (or clears the redundant directory) and every byte reads the same.
qemu-img create -q -f vmdk -o subformat=monolithicSparse al2.vmdk 100M
qemu-io -f vmdk -c 'write -P 0x41 0 64k' -c 'write -P 0x42 1M 128k' -c 'write -P 0x43 40M 64k' \
    -c 'write -P 0x44 99M 64k' al2.vmdk > /dev/null
qemu-img convert -f vmdk -O raw al2.vmdk al2.raw
for spec in rgd=gd p0=r p1=r p3=r r0=p r2=p; do
    cp al2.vmdk ad.vmdk
    python3 - $spec <<'PY'
import struct, sys
spec = sys.argv[1]
f = open("ad.vmdk", "r+b")
f.seek(48); rgd, gd = struct.unpack("<QQ", f.read(16))
if spec == "rgd=gd":
    f.seek(48); f.write(struct.pack("<Q", gd)); sys.exit()
i = int(spec[1]); dst, src = (gd, rgd) if spec[0] == "p" else (rgd, gd)
f.seek(src * 512 + i * 4); v = f.read(4)
f.seek(dst * 512 + i * 4); f.write(v)
PY
    rm -f ad.b.raw
    "$VDKIT" convert -O raw ad.vmdk ad.b.raw && cmp -s ad.b.raw al2.raw && ok || bad "[$spec] vdkit reads other data"
    "$VDKIT" check --output=json ad.vmdk > ad.json; rc=$?
    python3 - "$rc" <<'PY' && ok || bad "[$spec] check (exit $rc): $(cat ad.json)"
import json, sys
f = json.load(open("ad.json"))["findings"]
assert int(sys.argv[1]) == 2, f
errs = [x for x in f if x["severity"] == "error"]
assert len(errs) == 1 and ("no redundant copy" in errs[0]["message"]), f
assert not any(x["severity"] == "leak" or "lost disk bytes" in x["message"] or "usable" in x["message"] for x in f), f
PY
    out=$("$VDKIT" check -r ad.vmdk 2>&1); rc=$?
    [ $rc -eq 0 ] && ok || bad "[$spec] check -r (exit $rc): $out"
    out=$("$VDKIT" check ad.vmdk 2>&1) && ok || bad "[$spec] not clean after check -r: $out"
    qemu-img compare -q ad.vmdk al2.raw && qemu-img check -q ad.vmdk && ok || bad "[$spec] qemu-img after check -r"
done

# 13. A split descriptor naming one extent file twice (or overlapping ranges
# of one flat file): refused on open, for reading and writing, naming both lines.
"$VDKIT" -q create -f vmdk -o subformat=twoGbMaxExtentSparse,split-size=4M al.vmdk 12M
sed -i 's/al-s003.vmdk/al-s001.vmdk/' al.vmdk
for cmd in "info" "check" "convert -O raw" "discard"; do
    case $cmd in convert*) args="al.vmdk al.raw";; discard) args="al.vmdk 0:64K";; *) args=al.vmdk;; esac
    out=$("$VDKIT" $cmd $args 2>&1); rc=$?
    [ $rc -ne 0 ] && grep -q 'descriptor lines 8 and 10 both name the extent file "al-s001.vmdk"' <<< "$out" && ok \
        || bad "aliased extents: $cmd: exit $rc: $out"
done
# Names compared lexically normalised: "./x", "sub/../x", ".//x" are x.
for alias in './al-s001.vmdk' 'sub/../al-s001.vmdk' './/al-s001.vmdk' 'sub/./../al-s001.vmdk'; do
    mkdir -p sub
    sed "10s|\"al-s001.vmdk\"|\"$alias\"|" al.vmdk > an.vmdk
    grep -qF "\"$alias\"" an.vmdk || bad "the test did not write the alias $alias"
    for cmd in check discard; do
        case $cmd in discard) args="an.vmdk 0:64K";; *) args=an.vmdk;; esac
        out=$("$VDKIT" $cmd $args 2>&1); rc=$?
        [ $rc -ne 0 ] && grep -qF "descriptor lines 8 and 10 both name the extent file \"al-s001.vmdk\" (as \"$alias\")" <<< "$out" && ok || bad "aliased extents as \"$alias\": $cmd: exit $rc: $out"
    done
done
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="twoGbMaxExtentFlat"\nRW 2048 FLAT "fl1.img" 0\nRW 2048 FLAT "fl1.img" 1024\n' > ov.vmdk
head -c 2M /dev/zero > fl1.img
out=$("$VDKIT" info ov.vmdk 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "overlapping sector ranges" <<< "$out" && ok || bad "overlapping flat ranges: exit $rc: $out"
for alias in './fl1.img' 'sub/../fl1.img'; do
    sed "0,/\"fl1.img\"/s||\"$alias\"|" ov.vmdk > ovn.vmdk
    out=$("$VDKIT" check ovn.vmdk 2>&1); rc=$?
    [ $rc -ne 0 ] && grep -q "overlapping sector ranges" <<< "$out" && ok || bad "overlapping flat ranges as \"$alias\": exit $rc: $out"
done
sed -i 's/"fl1.img" 1024/"fl1.img" 2048/' ov.vmdk
head -c 4M /dev/zero > fl1.img
"$VDKIT" info ov.vmdk > /dev/null && ok || bad "two disjoint ranges of one flat file are refused"

finish
