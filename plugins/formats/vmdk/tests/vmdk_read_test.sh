#!/usr/bin/env bash
# VMDK reading against qemu-img (a writer nobody here wrote): every subformat
# qemu-img can write reads back byte-identical through vdkit, chains made by
# qemu-img read through, and hostile or damaged files give clear errors.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io

python3 - <<'PY'
import os, random
random.seed(5)
data = random.Random(os.environ["VDKIT_TEST_SEED"])  # the bytes (seeded, script_lib.sh)
with open("src.raw", "wb") as f:
    f.truncate(300 << 20)
    for _ in range(30):
        f.seek(random.randrange(0, 299 << 20) & ~511)
        f.write(data.randbytes(random.choice([512, 70000, 1 << 20])))
    f.seek((300 << 20) - 4096); f.write(b"\xab" * 4096)
PY

# 1. Every subformat and option combination qemu-img writes.
for opts in subformat=monolithicSparse subformat=monolithicSparse,zeroed_grain=on subformat=monolithicFlat \
            subformat=twoGbMaxExtentSparse subformat=twoGbMaxExtentFlat subformat=streamOptimized \
            subformat=monolithicSparse,adapter_type=lsilogic subformat=monolithicSparse,hwversion=6 \
            subformat=monolithicSparse,compat6=on; do
    name=$(echo "$opts" | tr ',=' '__')
    if ! qemu-img convert -f raw -O vmdk -o "$opts" src.raw "$name.vmdk" 2> "$name.err"; then
        bad "qemu-img could not write $opts: $(cat "$name.err")"; continue
    fi
    qemu-img convert -f vmdk -O raw "$name.vmdk" "$name.qemu.raw"
    if "$VDKIT" convert -O raw "$name.vmdk" "$name.vdkit.raw" > "$name.log" 2>&1 && cmp -s "$name.qemu.raw" "$name.vdkit.raw"; then
        ok
    else
        bad "$opts: vdkit's raw differs from qemu-img's"; cat "$name.log"
    fi
    grep -q "file format: vmdk" <<< "$("$VDKIT" info "$name.vmdk")" && ok || bad "$opts: info does not say vmdk"
    # Allocation agrees with qemu-img on where data is.
    "$VDKIT" map --output=json "$name.vmdk" > "$name.vmap" && qemu-img map --output=json "$name.vmdk" > "$name.qmap" \
        || bad "$opts: map failed"
    # Sparse extents must agree exactly; for flat extents qemu reports the
    # whole file as data while vdkit also sees the file's holes, so vdkit's
    # data must lie inside qemu's.
    within=""; [[ "$opts" == *Flat* ]] && within=--within
    python3 "$VDKIT_SOURCE_DIR/tests/support/map_ranges.py" "$name.vmap" "$name.qmap" $within && ok \
        || bad "$opts: map differs from qemu-img map"
done

# 2. Chains made by qemu-img: base <- child <- grandchild, with writes at each level.
qemu-img convert -f raw -O vmdk src.raw base.vmdk
qemu-img create -q -f vmdk -b base.vmdk -F vmdk child.vmdk
qemu-io -f vmdk -c "write -P 0x11 1M 100k" -c "write -P 0x22 299M 4k" child.vmdk > /dev/null
qemu-img create -q -f vmdk -b child.vmdk -F vmdk grand.vmdk
qemu-io -f vmdk -c "write -P 0x33 1100k 64k" -c "write -z 5M 128k" grand.vmdk > /dev/null
qemu-img convert -f vmdk -O raw grand.vmdk grand.qemu.raw
"$VDKIT" convert -O raw grand.vmdk grand.vdkit.raw && cmp -s grand.qemu.raw grand.vdkit.raw && ok || bad "chain reads differ"
grep -q "chain length: 3" <<< "$("$VDKIT" info grand.vmdk)" && ok || bad "chain length"
# A parent modified after its child was made (its CID changed) breaks the link.
# qemu writes CIDs without zero padding (1..8 hex digits), so replace the
# whole value, keeping the descriptor's length within its padded area.
set_cid() { # set_cid <file> <new value>
    python3 - "$1" "$2" <<'PY' || bad "set_cid $1: no CID line or no padding to trade"
import re, sys
path, new = sys.argv[1], sys.argv[2].encode()
data = bytearray(open(path, "rb").read())
m = re.search(rb"\nCID=([^\n]*)\n", data)
delta = len(new) - (m.end(1) - m.start(1))
data[m.start(1):m.end(1)] = new
# Keep every later byte in place: trade the length change against the
# descriptor's NUL padding.
nul = data.index(b"\0", m.start(1))
if delta > 0:
    assert data[nul:nul + delta] == b"\0" * delta
    del data[nul:nul + delta]
elif delta < 0:
    data[nul:nul] = b"\0" * -delta
open(path, "wb").write(data)
PY
}
cp base.vmdk base.orig
old_cid=$(grep -ao "^CID=[0-9a-f]*" base.vmdk | head -1 | cut -d= -f2)
set_cid base.vmdk "$([ "$old_cid" = 0badc1d0 ] && echo 0badc1d1 || echo 0badc1d0)"
out=$("$VDKIT" info child.vmdk 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "was modified after its child" <<< "$out" && ok \
    || bad "CID mismatch not detected: $rc $out (base: $(grep -ao '^CID=[0-9a-z]*' base.vmdk | head -1), was $old_cid; child: $(grep -ao '^parentCID=[0-9a-f]*' child.vmdk | head -1))"
# A CID that is not a hex number is corruption, not a reason to skip the check.
cp base.orig base.vmdk
set_cid base.vmdk "zz"
out=$("$VDKIT" info child.vmdk 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "CID 'zz' is not 1 to 8 hex digits" <<< "$out" && ok || bad "garbled CID accepted: $rc $out"
mv base.orig base.vmdk

# 3. Images vdkit writes are valid for qemu-img and libvmdk (vmdkinfo).
for opts in "" zeroed-grain=on grain-size=8k,adapter-type=lsilogic adapter-type=pvscsi,hw-version=11 grain-size=1M \
            subformat=streamOptimized subformat=streamOptimized,threads=1,compression-level=1,grain-size=128k \
            subformat=monolithicFlat subformat=monolithicFlat,preallocation=full subformat=twoGbMaxExtentFlat,split-size=40M \
            subformat=twoGbMaxExtentSparse,split-size=40M subformat=twoGbMaxExtentSparse,zeroed-grain=on subformat=vmfs; do
    case "$opts" in
    *streamOptimized*) kind="Stream optimized" ;; *monolithicFlat*) kind="Monolithic flat" ;;
    *twoGbMaxExtentFlat*) kind="2GB extent flat" ;; *twoGbMaxExtentSparse*) kind="2GB extent sparse" ;;
    *vmfs*) kind="VMFS flat" ;; *) kind="Monolithic sparse" ;;
    esac
    name="vd_$(echo "${opts:-default}" | tr ',=' '__')"
    if ! "$VDKIT" convert -f raw -O vmdk ${opts:+-o "$opts"} src.raw "$name.vmdk" > "$name.log" 2>&1; then
        bad "vdkit could not write vmdk ($opts)"; cat "$name.log"; continue
    fi
    qemu-img check -q -f vmdk "$name.vmdk" && ok || bad "qemu-img check fails on vdkit vmdk ($opts)"
    qemu-img compare -q -f raw -F vmdk src.raw "$name.vmdk" && ok || bad "qemu-img compare differs ($opts)"
    if command -v vmdkinfo > /dev/null; then
        vmdkinfo "$name.vmdk" > "$name.info" 2>&1 && grep -q "$kind" "$name.info" && ok \
            || bad "vmdkinfo rejects vdkit vmdk ($opts): $(cat "$name.info")"
    fi
done
# The vmdkinfo checks (here and below) need libvmdk-utils: without it the
# suite is reported skipped (a failure in CI), not passed.
command -v vmdkinfo > /dev/null || skip_part "vmdkinfo is not installed (libvmdk-utils, scripts/install-deps.sh): the libvmdk checks"
[ "$(ls vd_subformat_twoGbMaxExtentFlat_split-size_40M-f*.vmdk | wc -l)" = 8 ] && ok || bad "split-size not honoured"
[ "$(stat -c %b vd_subformat_monolithicFlat_preallocation_full-flat.vmdk)" -ge $(((300 << 20) / 512)) ] && ok \
    || bad "preallocation=full left the flat file sparse"
# vmfsThin: qemu-img does not know it; vmdkinfo and vdkit do.
"$VDKIT" convert -O vmdk -o subformat=vmfsThin src.raw thin.vmdk > /dev/null && "$VDKIT" compare -F raw thin.vmdk src.raw > /dev/null \
    && ok || bad "vmfsThin"
if command -v vmdkinfo > /dev/null; then
    vmdkinfo thin.vmdk > thin.info 2>&1; grep -q "VMFS sparse (thin)" thin.info && ok || bad "vmdkinfo on vmfsThin: $(cat thin.info)"
fi
# A split sparse child over a monolithic base.
"$VDKIT" create -f vmdk -o subformat=twoGbMaxExtentSparse -b vd_default.vmdk splitkid.vmdk > /dev/null && ok || bad "split child"
qemu-img check -q splitkid.vmdk && qemu-img compare -q -F raw splitkid.vmdk src.raw && ok || bad "split child for qemu-img"
# vdkit reads its own streams back, and the header is what ESXi expects (version 3, GD at the end, footer).
"$VDKIT" convert -O raw vd_subformat_streamOptimized.vmdk so.raw > /dev/null && cmp -s so.raw src.raw && ok || bad "stream read back"
python3 - vd_subformat_streamOptimized.vmdk <<'PY' && ok || bad "stream header/footer layout"
import struct, sys
d = open(sys.argv[1], "rb").read()
magic, version, flags = struct.unpack_from("<III", d, 0)
gd = struct.unpack_from("<Q", d, 56)[0]
assert magic == 0x564D444B and version == 3 and flags == 0x30001 and gd == 0xFFFFFFFFFFFFFFFF, (version, hex(flags), gd)
assert struct.unpack_from("<H", d, 77)[0] == 1
marker = d[-1536:-1024]; footer = d[-1024:-512]; eos = d[-512:]
assert struct.unpack_from("<I", marker, 12)[0] == 3 and footer[:4] == b"KDMV" and eos == bytes(512)
assert struct.unpack_from("<Q", footer, 56)[0] not in (0, 0xFFFFFFFFFFFFFFFF)
PY
qemu-img info --output=json vd_grain-size_8k_adapter-type_lsilogic.vmdk > lsi.json
python3 -c "import json; d=json.load(open('lsi.json')); assert d['cluster-size']==8192, d" && ok || bad "grain-size not honoured"
grep -aq 'ddb.adapterType = "lsilogic"' vd_grain-size_8k_adapter-type_lsilogic.vmdk && ok || bad "adapter type not written"
out=$("$VDKIT" create -f vmdk -o grain-size=4k g.vmdk 1M 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "within" <<< "$out" && ok || bad "grain-size 4k accepted: $out"
# A qemu-made child over a vdkit-made base reads the same in both tools.
qemu-img create -q -f vmdk -b vd_default.vmdk -F vmdk vdchild.vmdk
qemu-io -f vmdk -c "write -P 0x44 7M 200k" vdchild.vmdk > /dev/null
qemu-img convert -f vmdk -O raw vdchild.vmdk vdchild.qemu.raw
"$VDKIT" convert -O raw vdchild.vmdk vdchild.vdkit.raw && cmp -s vdchild.qemu.raw vdchild.vdkit.raw && ok \
    || bad "qemu child over a vdkit base differs"
# A vdkit-made child (VixDiskLib CreateChild) over a qemu-made base: qemu-img
# and libvmdk accept it, both tools read the same after qemu writes into it.
qemu-img convert -q -f raw -O vmdk src.raw qbase.vmdk
"$VDKIT" create -f vmdk -b qbase.vmdk vkid.vmdk > /dev/null && ok || bad "vdkit could not create a vmdk child"
qemu-img check -q vkid.vmdk && ok || bad "qemu-img check fails on a vdkit child"
qemu-img compare -q -F raw vkid.vmdk src.raw && ok || bad "vdkit child reads differently in qemu"
grep -q "backing file: qbase.vmdk" <<< "$(qemu-img info vkid.vmdk)" && ok || bad "qemu-img does not see the parent"
if command -v vmdkinfo > /dev/null; then
    vmdkinfo vkid.vmdk > vkid.info 2>&1; grep -q "Parent filename:.*qbase.vmdk" vkid.info && ok || bad "vmdkinfo does not see the parent"
fi
qemu-io -f vmdk -c "write -P 0x55 3M 100k" vkid.vmdk > /dev/null
qemu-img convert -f vmdk -O raw vkid.vmdk vkid.qemu.raw
"$VDKIT" convert -O raw vkid.vmdk vkid.vdkit.raw && cmp -s vkid.qemu.raw vkid.vdkit.raw && ok || bad "vdkit child after a qemu write"

# 4. Hostile and damaged files: a clear error, never a crash or a silent answer.
expect_error() { # expect_error <what> <file> <needle>
    local out
    out=$("$VDKIT" info "$2" 2>&1); rc=$?
    if [ $rc -eq 1 ] && grep -q -- "$3" <<< "$out"; then ok; else bad "$1: exit $rc, output: $out"; fi
}
cp subformat_monolithicFlat.vmdk hostile.vmdk && sed -i 's|"subformat_monolithicFlat-flat.vmdk"|"/etc/hostname"|' hostile.vmdk
expect_error "extent path outside the directory" hostile.vmdk "allow_unsafe_paths"
cp subformat_monolithicFlat.vmdk dotdot.vmdk && sed -i 's|"subformat_monolithicFlat-flat.vmdk"|"../subformat_monolithicFlat-flat.vmdk"|' dotdot.vmdk
expect_error "extent path with .." dotdot.vmdk "outside the image's directory"
cp subformat_monolithicSparse.vmdk badmagic.vmdk && printf 'XXXX' | dd of=badmagic.vmdk conv=notrunc status=none
out=$("$VDKIT" info -f vmdk badmagic.vmdk 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "bad magic at offset 0" <<< "$out" && ok || bad "bad magic: exit $rc, $out"
# open-vmdk marks an unfinished file with the magic XOR 0x20202020 ("kdmv").
cp subformat_monolithicSparse.vmdk temp.vmdk && printf 'kdmv' | dd of=temp.vmdk conv=notrunc status=none
expect_error "temporary magic" temp.vmdk "never finished"
python3 - <<'PY'
import struct, shutil
def patch(src, dst, off, data):
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.seek(off); f.write(data)
base = "subformat_monolithicSparse.vmdk"
patch(base, "hugecap.vmdk", 12, struct.pack("<Q", 1 << 50))           # capacity: a 2^34-entry directory
patch(base, "overflow.vmdk", 12, struct.pack("<Q", 1 << 62))          # capacity in bytes overflows
patch(base, "crlf.vmdk", 73, b"\r\n \n")                              # FTP-mangled newline test
hdr = open(base, "rb").read(512)
gd = struct.unpack_from("<Q", hdr, 56)[0]
gt0 = struct.unpack_from("<I", open(base, "rb").read()[gd * 512:gd * 512 + 4])[0]
rgd = struct.unpack_from("<Q", hdr, 48)[0]
rgt0 = struct.unpack_from("<I", open(base, "rb").read()[rgd * 512:rgd * 512 + 4])[0]
patch(base, "gtebeyond1.vmdk", gt0 * 512, struct.pack("<I", 0x7fffffff))  # first GTE far past EOF...
patch("gtebeyond1.vmdk", "gtebeyond.vmdk", rgt0 * 512, struct.pack("<I", 0x7fffffff))  # ... in both copies
patch(base, "grain.vmdk", 20, struct.pack("<Q", 3))                    # grain size not a power of two
PY
expect_error "huge capacity" hugecap.vmdk "grain directory entries"
expect_error "capacity overflow" overflow.vmdk "capacity at offset 12 overflows"
expect_error "CR/LF-mangled header" crlf.vmdk "text mode"
expect_error "grain size" grain.vmdk "not a power of two"
out=$("$VDKIT" convert -O raw gtebeyond.vmdk gtebeyond.raw 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "beyond the end of the file" <<< "$out" && ok || bad "GTE beyond EOF: $rc $out"
[ ! -e gtebeyond.raw ] && ok || bad "a failed convert left its target behind"
# ... and a multi-file target leaves none of its extent files.
"$VDKIT" convert -O vmdk -o subformat=twoGbMaxExtentFlat,split-size=1M gtebeyond.vmdk split.vmdk > /dev/null 2>&1
[ -z "$(ls split.vmdk split-f*.vmdk 2> /dev/null)" ] && ok || bad "a failed convert left extent files: $(ls split.vmdk split-f*)"
head -c 700 subformat_monolithicSparse.vmdk > truncated.vmdk
expect_error "truncated file" truncated.vmdk "lies outside the file"
# A qemu-made stream (tables at the front) cut short: the grains before the
# cut read back exactly, the rest read as zero, a warning says how many were
# lost, and check lists each lost grain with its table entry's offset.
head -c 3000000 subformat_streamOptimized.vmdk > truncstream.vmdk
out=$("$VDKIT" convert -O raw truncstream.vmdk truncstream.raw 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q "grains lie past the end and read as zero" <<< "$out" && ok || bad "truncated stream: exit $rc $out"
python3 - <<'PY' && ok || bad "truncated stream: the grains before the cut differ"
a, b = open("src.raw", "rb").read(), open("truncstream.raw", "rb").read()
g = 1 << 16
got = [i for i in range(0, len(b), g) if any(b[i:i + g])]
lost = [i for i in range(0, len(b), g) if any(a[i:i + g]) and not any(b[i:i + g])]
assert got and lost and all(a[i:i + g] == b[i:i + g] for i in got), (len(got), len(lost))
PY
out=$("$VDKIT" check truncstream.vmdk 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "error at 0x[0-9a-f]*: truncstream.vmdk: grain [0-9]* lies past the end of the stream" <<< "$out" \
    && ok || bad "check of a truncated stream: $rc $out"
# A stream with its grain directory at the end (vdkit's, ovftool's layout)
# that lost its footer is rebuilt from the grain markers: without the last
# 1536 bytes everything is recovered (GT/GD markers are skipped), cut in the
# middle the grains before the cut are, and check reports what happened.
head -c -1536 vd_subformat_streamOptimized.vmdk > nofooter.vmdk
out=$("$VDKIT" convert -O raw nofooter.vmdk nofooter.raw 2>&1) && cmp -s nofooter.raw src.raw && grep -q "grains recovered" <<< "$out" \
    && ok || bad "footerless stream: $out"
# The rebuilt map holds the grains found, never one slot per grain the
# header claims: a footerless stream claiming 512 TiB opens in little memory.
python3 - <<'PY'
import struct
d = bytearray(open("nofooter.vmdk", "rb").read())
struct.pack_into("<Q", d, 12, 1 << 40)
open("hugestream.vmdk", "wb").write(d)
PY
# (AddressSanitizer reserves terabytes of address space, so the limit applies
# to the normal build only.)
limit=1000000; grep -q libasan <<< "$(ldd "$VDKIT" 2> /dev/null)" && limit=unlimited
out=$( (ulimit -v "$limit"; "$VDKIT" check hugestream.vmdk) 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "grains recovered" <<< "$out" && ok || bad "footerless stream with a huge capacity: $rc $out"
head -c 2000000 vd_subformat_streamOptimized.vmdk > cutstream.vmdk
"$VDKIT" convert -O raw cutstream.vmdk cutstream.raw > /dev/null 2>&1 && python3 - <<'PY' && ok || bad "cut stream: recovered grains differ"
a, b = open("src.raw", "rb").read(), open("cutstream.raw", "rb").read()
g = 1 << 16
got = [i for i in range(0, len(b), g) if any(b[i:i + g])]
assert got and all(a[i:i + g] == b[i:i + g] for i in got), len(got)
PY
out=$("$VDKIT" check cutstream.vmdk 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "the stream is cut off there" <<< "$out" && ok || bad "check of a cut stream: $rc $out"
printf 'version=1\ncreateType="monolithicFlat"\nRW 100 FLAT "x.bin" 0\nRW 1 BOGUS "y"\n' > badline.vmdk
expect_error "unknown extent type" badline.vmdk "line 4: unknown extent type 'BOGUS'"
cp child.vmdk orphan.vmdk && sed -i 's|parentFileNameHint="base.vmdk"|parentFileNameHint="missing.vmdk"|' orphan.vmdk
expect_error "missing parent" orphan.vmdk "missing.vmdk"

# Growing: vdkit grows a qemu-made sparse disk (its grain directory moves to
# the end), qemu writes at the far end, both tools and both checks agree.
qemu-img convert -q -f raw -O vmdk src.raw grow.vmdk
"$VDKIT" resize grow.vmdk 100G > /dev/null && ok || bad "grow a qemu-made vmdk"
qemu-img check -q grow.vmdk && ok || bad "qemu-img check after grow"
[ "$(qemu-img info --output=json grow.vmdk | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" = $((100 << 30)) ] \
    && ok || bad "qemu-img sees the grown size"
qemu-io -f vmdk -c "write -P 0x77 99G 1M" grow.vmdk > /dev/null
qemu-img check -q grow.vmdk && "$VDKIT" check grow.vmdk > /dev/null && ok || bad "checks after a write past the old end"
qemu-img compare -q grow.vmdk src.raw > /dev/null 2>&1; [ $? -eq 1 ] && ok || bad "the far write is not seen"
qemu-img convert -f vmdk -O raw grow.vmdk grow.raw   # sparse: only the data is written
"$VDKIT" compare -F raw grow.vmdk grow.raw > /dev/null && ok || bad "vdkit reads the grown disk differently from qemu-img"
rm -f grow.raw
vmdkinfo grow.vmdk > grow.info 2>&1; grep -q "100 GiB" grow.info && ok || bad "vmdkinfo does not see the grown size"

# Compacting (VMware's Shrink + Defragment): qemu zero-fills grains of its
# own image, vdkit gives them back and closes the holes; qemu-img agrees.
qemu-img convert -q -f raw -O vmdk src.raw shrink.vmdk
qemu-img convert -q -f raw -O raw src.raw shrink.raw
python3 - <<'PY'
import json, subprocess
m = json.loads(subprocess.check_output(["qemu-img", "map", "--output=json", "shrink.vmdk"]))
data = [e for e in m if e["data"]][:6]
with open("shrink.cmds", "w") as f:
    for e in data[::2]:  # zero every other data extent (as data, so the grains stay allocated)
        f.write("write -P 0 %d %d\n" % (e["start"], e["length"]))
PY
while read -r cmd; do
    qemu-io -f vmdk -c "$cmd" shrink.vmdk > /dev/null
    qemu-io -f raw -c "$cmd" shrink.raw > /dev/null
done < shrink.cmds
before=$(stat -c %s shrink.vmdk)
"$VDKIT" compact shrink.vmdk > /dev/null && ok || bad "compact a qemu-made vmdk"
[ "$(stat -c %s shrink.vmdk)" -lt "$before" ] && ok || bad "compact gave nothing back ($before bytes)"
qemu-img check -q shrink.vmdk && qemu-img compare -q -F raw shrink.vmdk shrink.raw && ok || bad "qemu-img after compact"

# Resizing split disks: a vdkit split-sparse disk grows by new extent files
# named like the others and shrinks by dropping them; a qemu-made one (one
# short extent) fills it to 2 GiB first; a split flat disk shrinks; a
# monolithicSparse disk shrinks with --shrink and is compacted; qemu-img
# checks and compares each, vmdkinfo reads the grown split disk.
head -c $((3 << 20)) src.raw > rs.raw
"$VDKIT" convert -O vmdk -o subformat=twoGbMaxExtentSparse,split-size=1M rs.raw rs.vmdk > /dev/null
"$VDKIT" resize rs.vmdk 10M > /dev/null && [ -f rs-s010.vmdk ] && [ ! -e rs-s011.vmdk ] && ok || bad "split grow: $(ls rs-s*)"
cp rs.raw rs10.raw && truncate -s 10M rs10.raw
qemu-io -f vmdk -c "write -P 0x55 9M 512k" rs.vmdk > /dev/null && qemu-io -f raw -c "write -P 0x55 9M 512k" rs10.raw > /dev/null
qemu-img check -q rs.vmdk && qemu-img compare -q rs.vmdk rs10.raw && "$VDKIT" check rs.vmdk > /dev/null && ok \
    || bad "split grow: qemu-img or vdkit disagree"
grep -q "10 MiB" <<< "$(vmdkinfo rs.vmdk 2>&1)" && ok || bad "split grow: vmdkinfo does not see 10 MiB"
"$VDKIT" resize --shrink rs.vmdk 2560K > /dev/null && [ -f rs-s003.vmdk ] && [ ! -e rs-s004.vmdk ] && ok || bad "split shrink: $(ls rs-s*)"
head -c 2560K rs10.raw > rs25.raw
qemu-img check -q rs.vmdk && qemu-img compare -q rs.vmdk rs25.raw && "$VDKIT" check rs.vmdk > /dev/null && ok \
    || bad "split shrink: qemu-img or vdkit disagree"
qemu-img convert -q -f raw -O vmdk -o subformat=twoGbMaxExtentSparse rs.raw qs.vmdk
"$VDKIT" resize qs.vmdk 5G > /dev/null && [ -f qs-s003.vmdk ] && [ ! -e qs-s004.vmdk ] && ok || bad "qemu split grow: $(ls qs-s*)"
[ "$(grep -ac '^RW 4194304 SPARSE' qs.vmdk)" = 2 ] && ok || bad "qemu split grow: extents not filled to 2 GiB: $(grep -a '^RW' qs.vmdk)"
qemu-io -f vmdk -c "write -P 0x66 4700M 64k" qs.vmdk > /dev/null
qemu-img check -q qs.vmdk && "$VDKIT" check qs.vmdk > /dev/null && ok || bad "qemu split grow: checks"
[ "$(qemu-io -f vmdk -c 'read -P 0x66 4700M 64k' qs.vmdk | grep -c 'read 65536')" = 1 ] && ok \
    || bad "qemu split grow: qemu-io does not read its far write back"
# vdkit sees the far write, and nothing else changed: the first difference
# from the old content is where qemu-io wrote.
"$VDKIT" compare qs.vmdk rs.raw > cmp.out 2>&1; rc=$?
[ "$rc" -eq 1 ] && grep -q "Content mismatch at offset $((4700 << 20)) " cmp.out && ok \
    || bad "qemu split grow: vdkit does not see the far write: exit $rc $(cat cmp.out)"
"$VDKIT" convert -O vmdk -o subformat=twoGbMaxExtentFlat,split-size=1M rs.raw rf.vmdk > /dev/null
"$VDKIT" resize --shrink rf.vmdk 1536K > /dev/null && [ ! -e rf-f003.vmdk ] && ok || bad "split flat shrink: $(ls rf-f*)"
head -c 1536K rs.raw > rf.raw && qemu-img compare -q rf.vmdk rf.raw && ok || bad "split flat shrink: content"
qemu-img convert -q -f raw -O vmdk src.raw ms.vmdk
before=$(stat -c %s ms.vmdk)
out=$("$VDKIT" resize ms.vmdk 100M 2>&1); [ $? -ne 0 ] && grep -q "shrink" <<< "$out" && ok || bad "shrink without --shrink: $out"
"$VDKIT" resize --shrink ms.vmdk 100M > /dev/null && [ "$(stat -c %s ms.vmdk)" -lt "$before" ] && ok || bad "sparse shrink gave nothing back"
head -c 100M src.raw > ms.raw
qemu-img check -q ms.vmdk && qemu-img compare -q ms.vmdk ms.raw && "$VDKIT" check ms.vmdk > /dev/null && ok \
    || bad "sparse shrink: qemu-img or vdkit disagree (or leaks left)"
"$VDKIT" resize ms.vmdk 300M > /dev/null && truncate -s 300M ms.raw && qemu-img compare -q ms.vmdk ms.raw && ok \
    || bad "grow after shrink brings old data back"
"$VDKIT" convert -O vmdk -o subformat=streamOptimized rs.raw rst.vmdk > /dev/null
out=$("$VDKIT" resize rst.vmdk 10M 2>&1); [ $? -ne 0 ] && grep -q "streamOptimized disk is written once" <<< "$out" && ok \
    || bad "stream resize: $out"

# 5. check / repair: every finding with its offset, dry run changes nothing,
#    repair leaves an image both vdkit and qemu-img find clean.
qemu-img convert -q -f raw -O vmdk src.raw ck.vmdk
"$VDKIT" check ck.vmdk > /dev/null && ok || bad "check of a clean qemu image"
python3 - <<'PY'
import struct, shutil
base = "ck.vmdk"
d = open(base, "rb").read()
gd, rgd = struct.unpack_from("<Q", d, 56)[0], struct.unpack_from("<Q", d, 48)[0]
gt0, rgt0 = struct.unpack_from("<I", d, gd * 512)[0], struct.unpack_from("<I", d, rgd * 512)[0]
ents = struct.unpack_from("<512I", d, gt0 * 512)
used = [i for i, e in enumerate(ents) if e > 1]
open("ck.used", "w").write("%d %d" % (used[0], used[1]))
def patch(dst, edits):
    shutil.copy(base, dst)
    with open(dst, "r+b") as f:
        for off, data in edits:
            f.seek(off); f.write(data)
patch("ck_beyond.vmdk", [(gt0 * 512 + used[0] * 4, struct.pack("<I", 0x7fffffff))])       # primary GTE past EOF
patch("ck_dup.vmdk", [(gt0 * 512 + used[1] * 4, struct.pack("<I", ents[used[0]]))])      # primary GTE reuses a grain
patch("ck_both.vmdk", [(gt0 * 512 + used[0] * 4, struct.pack("<I", 3)),                  # both copies into the metadata
                       (rgt0 * 512 + used[0] * 4, struct.pack("<I", 3))])
patch("ck_unclean.vmdk", [(72, b"\x01")])
patch("ck_shared.vmdk", [(gd * 512 + 4, struct.pack("<I", gt0))])                         # two directory entries, one table
shutil.copy(base, "ck_tail.vmdk"); open("ck_tail.vmdk", "ab").write(bytes(200000))        # orphaned tail
PY
read -r g0 g1 < ck.used
check_case() { # check_case <file> <exit before> <needle> <exit after repair>
    local out rc sum
    out=$("$VDKIT" check "$1" 2>&1); rc=$?
    [ $rc -eq "$2" ] && grep -q -- "$3" <<< "$out" && grep -q "at 0x" <<< "$out" && ok || bad "check $1: exit $rc: $out"
    sum=$(sha256sum < "$1")
    "$VDKIT" check -r -n "$1" > /dev/null 2>&1
    [ "$(sha256sum < "$1")" = "$sum" ] && ok || bad "dry run changed $1"
    out=$("$VDKIT" check -r "$1" 2>&1); rc=$?
    [ $rc -eq "$4" ] && ok || bad "repair $1: exit $rc: $out"
    qemu-img check -q "$1" && ok || bad "qemu-img check after repairing $1"
}
check_case ck_beyond.vmdk 2 "differ in 1 entries" 0
check_case ck_dup.vmdk 2 "overlap" 0   # the redundant entry (a sound grain) wins: nothing is lost
check_case ck_both.vmdk 2 "points into the metadata" 0 # the grain it named is free space afterwards (a note)
check_case ck_unclean.vmdk 0 "not closed cleanly" 0
out=$("$VDKIT" check ck_shared.vmdk 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "grain directory entry 1 names sector .* overlaps grain table 0" <<< "$out" && ok \
    || bad "shared grain table: $rc $out"
# Both entries naming one table are unproven: each is rebuilt from its redundant table.
out=$("$VDKIT" check -r ck_shared.vmdk 2>&1) && qemu-img compare -q ck_shared.vmdk ck.vmdk && ok \
    || bad "shared grain table: repair: $out"
check_case ck_tail.vmdk 3 "after the last structure in use" 0
# The mismatched entry loses the overlap: the grain whose tables agreed keeps its data.
qemu-img convert -f vmdk -O raw ck.vmdk ck.raw && "$VDKIT" convert -O raw ck_dup.vmdk ck_dup.raw > /dev/null
cmp -s <(dd if=ck.raw bs=64k skip="$g0" count=1 status=none) <(dd if=ck_dup.raw bs=64k skip="$g0" count=1 status=none) \
    && ok || bad "repair kept the wrong one of two overlapping grains"
qemu-img compare -q ck_dup.vmdk ck.vmdk && ok || bad "the grain whose primary entry was bad did not get the redundant value"
cmp -s ck_beyond.vmdk ck.vmdk && ok || bad "repair from the redundant table did not restore the image"

finish
