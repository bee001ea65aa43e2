#!/usr/bin/env bash
# ESX extents: COWD redo logs (vmfsSparse) and seSparse, generated here by
# make_esx_extents.py (COWD per VDF50, seSparse as qemu reads it), read
# by vdkit and by qemu-img (which reads both) and compared with the
# generator's model; hostile headers give clear errors; device-backed disks
# (fullDevice, VMFSRDM) are refused unless the user allows unsafe paths.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img
gen="$VDKIT_SOURCE_DIR/plugins/formats/vmdk/tests/make_esx_extents.py"
ranges="$VDKIT_SOURCE_DIR/tests/support/map_ranges.py"
cap=131072 # sectors (64 MiB)

# A qemu-made sparse base with some data, read as raw for the models.
python3 - <<'PY'
import os, random
random.seed(7)
data = random.Random(os.environ["VDKIT_TEST_SEED"])  # the bytes (seeded, script_lib.sh)
with open("base.raw", "wb") as f:
    f.truncate(64 << 20)
    for _ in range(20):
        f.seek(random.randrange(0, 63 << 20) & ~4095)
        f.write(data.randbytes(random.choice([4096, 65536, 300000])))
PY
qemu-img convert -f raw -O vmdk base.raw base.vmdk
cid=$(grep -a '^CID=' base.vmdk | cut -d= -f2)

descriptor() { # descriptor <file> <createType> <extent type> <extent file> [parent]
    {
        echo "# Disk DescriptorFile"
        echo "version=1"
        echo "CID=2468ace0"
        if [ -n "${5:-}" ]; then echo "parentCID=$cid"; else echo "parentCID=ffffffff"; fi
        echo "createType=\"$2\""
        [ -n "${5:-}" ] && echo "parentFileNameHint=\"$5\""
        echo
        echo "RW $cap $3 \"$4\""
        echo
        echo 'ddb.virtualHWVersion = "4"'
    } > "$1"
}

# qemu-img 7.2 reports vmfsSparse and seSparse descriptor disks at twice
# their size (the extent is counted twice); its first $cap sectors are the
# disk, so its raw output and map are cut there.
qemu_raw() { # qemu_raw <image> <out>
    qemu-img convert -f vmdk -O raw "$1" "$2.full" && head -c $((cap * 512)) "$2.full" > "$2" && rm -f "$2.full"
}
maps_agree() { # maps_agree <image>: vdkit's map equals qemu-img's over the disk
    "$VDKIT" map --output=json "$1" > v.map && qemu-img map --output=json "$1" > q.map || return 1
    python3 - q.map $((cap * 512)) <<'PY' || return 1
import json, sys
end = int(sys.argv[2])
m = [e for e in json.load(open(sys.argv[1])) if e["start"] < end]
for e in m:
    e["length"] = min(e["length"], end - e["start"])
json.dump(m, open(sys.argv[1], "w"))
PY
    python3 "$ranges" v.map q.map
}

# 1. COWD redo logs over the qemu-made base, grain sizes 1 (ESX's default), 8 and 128 sectors.
for grain in 1 8 128; do
    python3 "$gen" cowd "cowd$grain-delta.vmdk" $cap $grain base.raw "cowd$grain.model" $grain
    descriptor "cowd$grain.vmdk" vmfsSparse VMFSSPARSE "cowd$grain-delta.vmdk" base.vmdk
    "$VDKIT" convert -O raw "cowd$grain.vmdk" "cowd$grain.vdkit.raw" && cmp -s "cowd$grain.vdkit.raw" "cowd$grain.model" \
        && ok || bad "COWD grain $grain: vdkit does not read the model"
    qemu_raw "cowd$grain.vmdk" "cowd$grain.qemu.raw" && cmp -s "cowd$grain.qemu.raw" "cowd$grain.model" \
        && ok || bad "COWD grain $grain: qemu-img does not read the model (generator or qemu changed)"
    out=$("$VDKIT" info "cowd$grain.vmdk")
    grep -q "subformat: vmfsSparse" <<< "$out" && grep -q "chain length: 2" <<< "$out" && ok || bad "COWD info: $out"
    "$VDKIT" check "cowd$grain.vmdk" > /dev/null && ok || bad "COWD grain $grain: check finds problems"
    maps_agree "cowd$grain.vmdk" && ok || bad "COWD grain $grain: map differs from qemu-img's"
done
# A redo log cut inside its last grain: that grain reads up to the end of
# the file and zeros after (as qemu-img reads it); check names the cut and
# the lost disk bytes.
cp cowd128-delta.vmdk cut128-delta.vmdk && truncate -s -1000 cut128-delta.vmdk
descriptor cut128.vmdk vmfsSparse VMFSSPARSE cut128-delta.vmdk base.vmdk
"$VDKIT" convert -O raw cut128.vmdk cut128.raw && qemu_raw cut128.vmdk cut128.qemu.raw && cmp -s cut128.raw cut128.qemu.raw \
    && ok || bad "COWD cut in its last grain: vdkit and qemu-img read it differently"
out=$("$VDKIT" check cut128.vmdk 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "cut off by the end of the file at byte $(stat -c %s cut128-delta.vmdk): .*lost disk bytes \[" <<< "$out" \
    && ok || bad "COWD cut in its last grain: check exit $rc: $out"
# A redo log opened directly has no parent: unallocated grains read as zeros.
python3 "$gen" cowd alone.vmdk $cap 1 - alone.model 9
"$VDKIT" convert -O raw alone.vmdk alone.raw && cmp -s alone.raw alone.model && ok || bad "standalone COWD"
# Writes are refused with a clear error, and nothing changes.
cp cowd1-delta.vmdk before.bin
out=$("$VDKIT" resize cowd1.vmdk +1M 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "read-only" <<< "$out" && cmp -s before.bin cowd1-delta.vmdk && ok || bad "COWD write: rc=$rc $out"

# 2. seSparse, over the base and alone.
python3 "$gen" sesparse se-sesparse.vmdk $cap base.raw se.model 4
descriptor se.vmdk seSparse SESPARSE se-sesparse.vmdk base.vmdk
"$VDKIT" convert -O raw se.vmdk se.vdkit.raw && cmp -s se.vdkit.raw se.model && ok || bad "seSparse: vdkit does not read the model"
qemu_raw se.vmdk se.qemu.raw && cmp -s se.qemu.raw se.model && ok || bad "seSparse: qemu-img does not read the model"
maps_agree se.vmdk && ok || bad "seSparse: map differs from qemu-img's"
"$VDKIT" check se.vmdk > /dev/null && ok || bad "seSparse: check finds problems"
python3 "$gen" sesparse se-alone.vmdk $cap - se-alone.model 5
"$VDKIT" convert -O raw se-alone.vmdk se-alone.raw && cmp -s se-alone.raw se-alone.model && ok || bad "standalone seSparse"
grep -q "subformat: seSparse" <<< "$("$VDKIT" info se-alone.vmdk)" && ok || bad "seSparse info"
# A file still growing: the header declares grain and table regions larger
# than the file (ESXi sizes them for the whole disk). Reads are bounded by
# the file, not the declared regions; qemu-img reads it too.
python3 - se-sesparse.vmdk se-grow-sesparse.vmdk <<'PY'
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
for field in (19, 25):  # tables size, grains size (u64 fields at bytes 152, 200)
    struct.pack_into("<Q", d, field * 8, struct.unpack_from("<Q", d, field * 8)[0] + 1000000)
open(sys.argv[2], "wb").write(d)
PY
descriptor se-grow.vmdk seSparse SESPARSE se-grow-sesparse.vmdk base.vmdk
out=$("$VDKIT" convert -O raw se-grow.vmdk se-grow.raw 2>&1) && cmp -s se-grow.raw se.model && ok \
    || bad "seSparse with regions past the end of the file: $out"
qemu_raw se-grow.vmdk se-grow.qemu.raw && cmp -s se-grow.qemu.raw se.model && ok || bad "qemu-img reads se-grow differently"
"$VDKIT" check se-grow.vmdk > /dev/null && ok || bad "seSparse with regions past the end: check finds problems"
# Zero and unmapped grains hide the parent's data (the model zeroes them);
# a grain-level probe: some grain reads zero in the model but not in the base.
python3 - <<'PY' && ok || bad "seSparse: the model has no zero grain over parent data (generator)"
a, b = open("se.model", "rb").read(), open("base.raw", "rb").read()
import sys
sys.exit(0 if any(a[i:i+4096] == bytes(4096) and b[i:i+4096] != bytes(4096) for i in range(0, len(a), 4096)) else 1)
PY

# 2b. seSparse cut inside its grains: every grain at or past the new end and
# the one the end cuts is an error naming its lost disk bytes; the expected
# ranges are computed here from the file's own tables (seSparse grain tables).
for cut in 0 1000 2049; do
    python3 - se-alone.vmdk se-cut.vmdk $cut <<'PY' > se-cut.expected
import struct, sys
d = open(sys.argv[1], "rb").read()
q = lambda i: struct.unpack_from("<Q", d, i * 8)[0]
gd_off, tables_off, grains_off = q(16), q(18), q(24)
grains = []  # (disk grain index, file byte)
for g in range((q(2) + 4096 * 8 - 1) // (4096 * 8)):
    e = struct.unpack_from("<Q", d, gd_off * 512 + g * 8)[0]
    if not e: continue
    t = (tables_off + (e & 0xffffffff) * 64) * 512
    for i in range(4096):
        x = struct.unpack_from("<Q", d, t + i * 8)[0]
        if x >> 60 == 3:
            idx = ((x & 0x0fff000000000000) >> 48) | ((x & 0x0000ffffffffffff) << 12)
            grains.append((g * 4096 + i, (grains_off + idx * 8) * 512))
grains.sort(key=lambda p: p[1])
# cut inside the grain area: a few grains before the last one, plus an offset into one
at = grains[-4][1] + int(sys.argv[3])
open(sys.argv[2], "wb").write(d[:at])
for g, off in grains:
    if off + 4096 > at:
        print(g * 4096 + max(0, at - off), g * 4096 + 4096)
PY
    "$VDKIT" check --output=json se-cut.vmdk > se-cut.json; rc=$?
    python3 - "$rc" se-cut.expected <<'PY' && ok || bad "seSparse cut at +$cut: check (exit $rc): $(cat se-cut.json)"
import json, re, sys
f = json.load(open("se-cut.json"))["findings"]
want = sorted(tuple(map(int, l.split())) for l in open(sys.argv[2]))
got = sorted((int(a), int(b)) for x in f for a, b in re.findall(r"lost disk bytes \[(\d+), (\d+)\)", x["message"]))
assert int(sys.argv[1]) == 2 and want and got == want, (want, got)
PY
done

# 3. Hostile headers: each a clear error naming the problem.
hostile() { # hostile <name> <source> <python: patch bytearray d> <expected message part>
    cp "$2" "$1"
    python3 - "$1" <<PY
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
$3
open(sys.argv[1], "wb").write(d)
PY
    out=$("$VDKIT" convert -O raw "$1" "$1.raw" 2>&1); rc=$?
    if [ $rc -ne 0 ] && grep -q -- "$4" <<< "$out"; then ok; else bad "$1: rc=$rc, expected '$4': $out"; fi
}
hostile h-cowd-version.vmdk alone.vmdk 'struct.pack_into("<I", d, 4, 2)' "COWD version 2"
hostile h-cowd-grain.vmdk alone.vmdk 'struct.pack_into("<I", d, 16, 0)' "grain size 0"
hostile h-cowd-gd.vmdk alone.vmdk 'struct.pack_into("<I", d, 24, 1)' "needs"
hostile h-cowd-gdoff.vmdk alone.vmdk 'struct.pack_into("<I", d, 20, 0xfffffff0)' "grain directory at sector"
hostile h-cowd-gte.vmdk alone.vmdk '
gd = struct.unpack_from("<I", d, 2048)[0]
struct.pack_into("<I", d, gd * 512, 0x7fffffff)
t = [i for i in range(0, 1000) if struct.unpack_from("<I", d, 2048 + 4 * i)[0]]
struct.pack_into("<4096I", d, struct.unpack_from("<I", d, 2048 + 4 * t[0])[0] * 512, *([0x7fffffff] * 4096))' \
    "beyond the end of the file"
hostile h-se-version.vmdk se-alone.vmdk 'struct.pack_into("<Q", d, 8, 0x300000001)' "version 0x300000001"
hostile h-se-dirty.vmdk se-alone.vmdk 'struct.pack_into("<Q", d, 512 + 24, 1)' "journal is dirty"
hostile h-se-flags.vmdk se-alone.vmdk 'struct.pack_into("<Q", d, 40, 4)' "flags 0x4"
hostile h-se-cap.vmdk se-alone.vmdk 'struct.pack_into("<Q", d, 16, 1 << 50)' "too large"
hostile h-se-gde.vmdk se-alone.vmdk 'struct.pack_into("<Q", d, 16 * 512, 0x2000000000000000)' "unknown kind"
hostile h-se-gte.vmdk se-alone.vmdk '
off = (struct.unpack_from("<Q", d, 144)[0] + 64 * (struct.unpack_from("<Q", d, 16 * 512)[0] & 0xffffffff)) * 512
struct.pack_into("<4096Q", d, off, *([0x7000000000000001] * 4096))' "unknown kind"
# check reports the same damage with the file offset instead of stopping.
out=$("$VDKIT" check h-se-gte.vmdk 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "error at 0x[0-9a-f]*: h-se-gte.vmdk: grain 0 has an unknown kind" <<< "$out" && ok || bad "seSparse check: rc=$rc $out"

# 4. Device-backed disks: refused unless the user allows unsafe paths.
random_bytes $((4 << 20)) > dev.img
{ echo "# Disk DescriptorFile"; echo version=1; echo CID=fffffffe; echo parentCID=ffffffff
  echo 'createType="fullDevice"'; echo "RW 8192 FLAT \"dev.img\" 0"; } > full.vmdk
{ echo "# Disk DescriptorFile"; echo version=1; echo CID=fffffffe; echo parentCID=ffffffff
  echo 'createType="vmfsRawDeviceMap"'; echo "RW 8192 VMFSRDM \"dev.img\""; } > rdm.vmdk
cat > allow.yaml <<'Y'
allow_unsafe_paths: true
Y
for d in full rdm; do
    out=$("$VDKIT" info "$d.vmdk" 2>&1); rc=$?
    [ $rc -ne 0 ] && grep -q "raw device data" <<< "$out" && grep -q "allow_unsafe_paths" <<< "$out" && ok \
        || bad "$d: not refused by default: rc=$rc $out"
    "$VDKIT" --config allow.yaml convert -O raw "$d.vmdk" "$d.raw" && cmp -s "$d.raw" dev.img && ok \
        || bad "$d: not read when allowed"
done
# 5. Extent access (VDF50): RDONLY extents read but refuse writes; a NOACCESS
# extent's file is never opened (it may be missing), the disk opens, and
# reading its range is refused by name while the other extents read.
random_bytes 1M > acc1.bin; random_bytes 1M > acc2.bin
{ echo "# Disk DescriptorFile"; echo version=1; echo CID=fffffffe; echo parentCID=ffffffff
  echo 'createType="monolithicFlat"'; echo 'RDONLY 2048 FLAT "acc1.bin" 0'; echo 'RW 2048 FLAT "acc2.bin" 0'; } > ro.vmdk
cat acc1.bin acc2.bin > ro.want
"$VDKIT" convert -O raw ro.vmdk ro.raw && cmp -s ro.raw ro.want && ok || bad "RDONLY extent does not read"
out=$("$VDKIT" resize ro.vmdk 3M 2>&1); [ $? -ne 0 ] && cmp -s acc1.bin <(head -c 1M ro.want) && ok || bad "RDONLY extent: resize accepted: $out"
{ echo "# Disk DescriptorFile"; echo version=1; echo CID=fffffffe; echo parentCID=ffffffff
  echo 'createType="monolithicFlat"'; echo 'RW 2048 FLAT "acc1.bin" 0'; echo 'NOACCESS 2048 FLAT "missing.bin" 0'; } > na.vmdk
grep -q "virtual size: 2 MiB" <<< "$("$VDKIT" info na.vmdk)" && ok || bad "NOACCESS: the disk does not open"
out=$("$VDKIT" convert -O raw na.vmdk na.raw 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "lie in a NOACCESS extent (descriptor line 7)" <<< "$out" && [ ! -e na.raw ] && ok \
    || bad "NOACCESS: rc=$rc $out"
"$VDKIT" check na.vmdk > /dev/null && ok || bad "NOACCESS: check"

# A real block device (a loop device over the same bytes), named by its absolute path.
if loop=$(losetup -f --show dev.img 2> /dev/null); then
    { echo "# Disk DescriptorFile"; echo version=1; echo CID=fffffffe; echo parentCID=ffffffff
      echo 'createType="fullDevice"'; echo "RW 8192 FLAT \"$loop\" 0"; } > loop.vmdk
    out=$("$VDKIT" info loop.vmdk 2>&1); rc=$?
    [ "$rc" -eq 1 ] && grep -qF "extent '$loop' is raw device data" <<< "$out" && ok \
        || bad "loop: an absolute device path is not refused by default with its reason: exit $rc $out"
    "$VDKIT" --config allow.yaml convert -O raw loop.vmdk loop.raw && cmp -s loop.raw dev.img && ok || bad "loop device not read"
    losetup -d "$loop"
else
    skip_part "no loop device here (needs root and /dev/loop-control): the block-device case"
fi
finish
