#!/usr/bin/env bash
# VHD against outside oracles (qemu-img/qemu-io `-f vpc`, and an independent
# Python writer of Hyper-V-style images, make_hyperv_vhd.py):
#  1. images qemu-img makes (fixed/dynamic, force_size on/off, odd sizes)
#     read byte for byte like `qemu-img convert -O raw`, with qemu's size;
#  2. images vdkit makes (fixed/dynamic, force-size, block sizes, azure)
#     compare equal under qemu-img with the size qemu reads, the creator and
#     block size in the file; (`qemu-img check` has no vpc checker: compare
#     and info are qemu's judgement);
#  3. Hyper-V-style dynamic and differencing images (BAT at 0x2000, W2ku,
#     W2ru and MacX locators, sector bitmaps, exact sizes, block sizes 2M,
#     512K, 4K) read as the writer meant;
#  4. chains: vhd over vhd written through vdkit serve by qemu-io (partial
#     sectors, zero writes), commit, rebase -b ""; qcow2 over vhd (qemu's
#     child, vdkit's commit); vmdk over vhd; vhd over qcow2; the parent's
#     UUID and time stamp verified;
#  5. resize, discard;
#  6. damage and hostile headers: clear errors naming the field, bounded
#     memory, check findings and check -r repairs that keep the data.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3 nbdkit
. "$VDKIT_SOURCE_DIR/tests/support/nbd_lib.sh"
here="$VDKIT_SOURCE_DIR/plugins/formats/vhd/tests"

qsize() { qemu-img info -f "$1" --output=json "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }
vsize() { "$VDKIT" info --output=json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }
# footer IMAGE FIELD: a footer field (creator, type, current, checksum-ok) or
# dynamic header field (block) read from the file's last 512 bytes.
footer() {
    python3 - "$1" "$2" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
f = d[-512:]
field = sys.argv[2]
if field == "creator": print(f[28:32].decode("latin-1"))
elif field == "type": print(struct.unpack(">I", f[60:64])[0])
elif field == "current": print(struct.unpack(">Q", f[48:56])[0])
elif field == "checksum-ok": print(int(struct.unpack(">I", f[64:68])[0] == (~(sum(f[:64]) + sum(f[68:])) & 0xFFFFFFFF)))
elif field == "block":
    off = struct.unpack(">Q", f[16:24])[0]
    print(struct.unpack(">I", d[off + 32:off + 36])[0])
PY
}
qsame() { # qsame A(raw) B(vhd) WHAT: qemu-img compare (B read as vpc)
    if qemu-img compare -f raw -F vpc "$1" "$2" > cmp.log 2>&1; then ok; else bad "$3: $(cat cmp.log)"; fi
}
vsame() { # vsame IMAGE RAW WHAT: vdkit reads IMAGE as RAW
    if "$VDKIT" compare -F raw "$1" "$2" > cmp.log 2>&1; then ok; else bad "$3: $(cat cmp.log)"; fi
}

# 20 MiB of random data at odd offsets, zeros and holes.
python3 - <<'PY'
import os, random
random.seed(5)
data = random.Random(os.environ["VDKIT_TEST_SEED"])
with open("src.raw", "wb") as f:
    for _ in range(20):
        f.seek(random.randrange(0, 19 << 20))
        f.write(data.randbytes(random.choice([1, 512, 70000, 1 << 20])))
    f.truncate(20 << 20)
PY

# ---- 1. qemu-img's images, read by vdkit.
for sub in fixed dynamic; do
    for fs in off on; do
        for size in 20M 7340033; do
            img="q-$sub-$fs-$size.vhd"
            if [ "$size" = 20M ]; then qemu-img convert -f raw -O vpc -o "subformat=$sub,force_size=$fs" src.raw "$img"
            else qemu-img create -q -f vpc -o "subformat=$sub,force_size=$fs" "$img" "$size"; fi
            qemu-img convert -f vpc -O raw "$img" q.raw
            vsame "$img" q.raw "qemu's $img"
            [ "$(vsize "$img")" = "$(qsize vpc "$img")" ] && ok || bad "$img: vdkit reads $(vsize "$img") bytes, qemu $(qsize vpc "$img")"
            expect_exit 0 "check $img" "$VDKIT" check "$img"
            says "check $img" "No errors"
        done
    done
done
"$VDKIT" map --output=json q-dynamic-off-20M.vhd > v.map && qemu-img map -f vpc --output=json q-dynamic-off-20M.vhd > q.map &&
    python3 "$VDKIT_SOURCE_DIR/tests/support/map_ranges.py" v.map q.map && ok || bad "qemu's dynamic VHD: maps differ"
# The probe takes VHDs by their footer, whatever the name (qemu's fixed VHD named .img).
cp q-fixed-off-20M.vhd fixed.img
"$VDKIT" info fixed.img > out 2>&1 && says "fixed VHD named .img" "file format: vhd" || bad "fixed.img: $(cat out)"

# ---- 2. vdkit's images, judged by qemu.
for opts in "subformat=dynamic" "subformat=fixed" "subformat=dynamic,force-size=off" "subformat=fixed,force-size=off" \
    "block-size=512" "block-size=512k" "block-size=16M" "azure=on"; do
    img="v-${opts//[=,]/_}.vhd"
    "$VDKIT" convert -O vhd -o "$opts" src.raw "$img" > out 2>&1 || { bad "convert -o $opts: $(cat out)"; continue; }
    qsame src.raw "$img" "vdkit's $opts"
    [ "$(vsize "$img")" = "$(qsize vpc "$img")" ] && ok || bad "$img: vdkit says $(vsize "$img") bytes, qemu reads $(qsize vpc "$img")"
    [ "$(footer "$img" checksum-ok)" = 1 ] && ok || bad "$img: footer checksum"
    case $opts in
        *force-size=off*)
            [ "$(footer "$img" creator)" = vdkt ] && ok || bad "$img: creator '$(footer "$img" creator)'"
            # CHS-rounded up like qemu's default: the same size qemu gives 20 MiB.
            [ "$(vsize "$img")" = "$(qsize vpc q-dynamic-off-20M.vhd)" ] && ok || bad "$img: size $(vsize "$img") is not qemu's CHS size" ;;
        *)
            [ "$(footer "$img" creator)" = qem2 ] && [ "$(vsize "$img")" = $((20 << 20)) ] && ok ||
                bad "$img: exact size wanted, creator '$(footer "$img" creator)', size $(vsize "$img")" ;;
    esac
    case $opts in
        block-size=512) [ "$(footer "$img" block)" = 512 ] && ok || bad "$img: block size $(footer "$img" block)" ;;
        block-size=512k) [ "$(footer "$img" block)" = 524288 ] && ok || bad "$img: block size $(footer "$img" block)" ;;
        block-size=16M) [ "$(footer "$img" block)" = 16777216 ] && ok || bad "$img: block size $(footer "$img" block)" ;;
    esac
done
# Azure: a fixed VHD, whole MiB, file = size + 512; other sizes are refused by name.
[ "$(footer v-azure_on.vhd type)" = 2 ] && [ "$(stat -c %s v-azure_on.vhd)" = $(((20 << 20) + 512)) ] && ok ||
    bad "azure: type $(footer v-azure_on.vhd type), file size $(stat -c %s v-azure_on.vhd)"
head -c 5000000 src.raw > odd.raw
expect_exit 1 "azure with 5000000 bytes" "$VDKIT" convert -O vhd -o azure=on odd.raw az.vhd
says "azure refusal" "Azure takes whole MiB"
[ ! -e az.vhd ] && ok || bad "a refused azure convert left az.vhd"
# Sparse: holes and zeros take no blocks (qemu-img map agrees).
qemu-img map -f vpc --output=json v-subformat_dynamic.vhd > q.map && "$VDKIT" map --output=json v-subformat_dynamic.vhd > v.map &&
    python3 "$VDKIT_SOURCE_DIR/tests/support/map_ranges.py" v.map q.map && ok || bad "vdkit's dynamic VHD: maps differ"
size=$(stat -c %s v-subformat_dynamic.vhd); qs=$(stat -c %s q-dynamic-off-20M.vhd)
[ "$size" -le "$qs" ] && [ "$size" -lt $((20 << 20)) ] && ok || bad "vdkit's dynamic VHD is larger ($size bytes) than qemu's ($qs)"
# measure predicts the file convert writes.
"$VDKIT" measure --output=json -O vhd src.raw > m.json &&
    python3 -c "import json,sys; print(json.load(open('m.json'))['required'])" > m.req &&
    [ "$(cat m.req)" = "$(stat -c %s v-subformat_dynamic.vhd)" ] && ok || bad "measure says $(cat m.req 2> /dev/null), convert wrote $(stat -c %s v-subformat_dynamic.vhd)"

# ---- 3. Hyper-V-style images (an independent writer).
for bs in 2097152 524288 4096; do
    mkdir -p "hv$bs"
    python3 "$here/make_hyperv_vhd.py" "hv$bs" "$VDKIT_TEST_SEED" "$bs" || { bad "make_hyperv_vhd $bs"; continue; }
    (cd "hv$bs" && "$VDKIT" compare -F raw hv-base.vhd hv-base.raw && "$VDKIT" compare -F raw hv-child.vhd hv-child.raw) > out 2>&1 &&
        ok || bad "Hyper-V-style images, block size $bs: $(cat out)"
    qsame "hv$bs/hv-base.raw" "hv$bs/hv-base.vhd" "qemu reads the Hyper-V-style base ($bs)"
    [ "$(vsize "hv$bs/hv-base.vhd")" = $(((5 << 20) + 3584)) ] && ok || bad "Hyper-V-style: size $(vsize "hv$bs/hv-base.vhd") (current_size wanted)"
    "$VDKIT" info "hv$bs/hv-child.vhd" > out 2>&1 && says "Hyper-V child's parent (W2ru)" "backing file: hv-base.vhd" || bad "info hv-child: $(cat out)"
    expect_exit 0 "check Hyper-V-style child $bs" "$VDKIT" check "hv$bs/hv-child.vhd"
done

# ---- 4. Chains.
qemu-img convert -f raw -O vpc src.raw base.vhd
qemu-img convert -f vpc -O raw base.vhd model.raw
"$VDKIT" create -f vhd -b base.vhd c.vhd > out 2>&1 || bad "create -b base.vhd: $(cat out)"
vsame c.vhd model.raw "an empty vhd child"
serve_vdkit c c.vhd || bad "vdkit serve c.vhd"
ops=(-c 'write -P 0x77 3M 3k' -c 'write -z 8M 1M' -c 'write -P 0x12 19M 100k' -c 'write -P 0x33 6001 3000'
     -c 'write -P 0x21 12k 4k' -c 'write -P 0x44 4194303 2' -c 'write -P 0x45 5000000 1' -c 'write -z 12M 2M')
qemu-io -f raw "${ops[@]}" "$(url c "")" > io.log 2>&1 || bad "qemu-io through vdkit serve: $(cat io.log)"
stop_server c
qemu-io -f raw "${ops[@]}" model.raw > /dev/null
vsame c.vhd model.raw "the vhd child after partial-sector writes"
expect_exit 0 "check the written child" "$VDKIT" check c.vhd
"$VDKIT" map --output=json c.vhd > c.map && python3 - c.map <<'PY' && ok || bad "the child's map: written sectors only"
import json, sys
top = [(e["start"], e["length"]) for e in json.load(open(sys.argv[1])) if e["depth"] == 0 and e["data"]]
# 6001..9001 is sectors 0x1600..0x2400 (partial sectors filled from the parent), not the whole block.
assert any(a == 0x1600 and n == 0xe00 for a, n in top), top
PY
cp base.vhd base0.vhd
"$VDKIT" commit c.vhd > out 2>&1 || bad "commit c.vhd: $(cat out)"
qsame model.raw base.vhd "base.vhd after vdkit commit (qemu reads it)"
vsame c.vhd model.raw "the child after commit"
"$VDKIT" rebase -b "" c.vhd > out 2>&1 || bad "rebase -b '': $(cat out)"
qsame model.raw c.vhd "the child made standalone (rebase -b '')"
[ "$(footer c.vhd type)" = 3 ] && ok || bad "rebase -b '': disk type $(footer c.vhd type)"
# snapshot over a VHD, and a parent that is not the one recorded.
cp base0.vhd base.vhd
"$VDKIT" snapshot base.vhd s1.vhd > out 2>&1 && [ "$(footer s1.vhd type)" = 4 ] && ok || bad "snapshot: $(cat out)"
qemu-img create -q -f vpc other.vhd 20M
cp base.vhd keep.vhd && cp other.vhd base.vhd
expect_exit 1 "child over another VHD" "$VDKIT" info s1.vhd
says "UUID mismatch" "expects parent"
cp keep.vhd base.vhd
# The parent's time stamp (vdkit records it): a parent written again by a writer that stamps it is refused.
python3 - base.vhd <<'PY'
import struct, sys
p = sys.argv[1]; d = bytearray(open(p, "rb").read())
for off in (0, len(d) - 512):
    f = d[off:off + 512]
    struct.pack_into(">I", f, 24, struct.unpack(">I", f[24:28])[0] + 100)
    struct.pack_into(">I", f, 64, ~(sum(f[:64]) + sum(f[68:])) & 0xFFFFFFFF)
    d[off:off + 512] = f
open(p, "wb").write(d)
PY
expect_exit 1 "child over a re-stamped parent" "$VDKIT" info s1.vhd
says "time stamp" "was modified after its child"
cp keep.vhd base.vhd
# qcow2 over vhd: qemu's child, written by qemu, committed by vdkit.
qemu-img create -q -f qcow2 -b base.vhd -F vpc q.qcow2
qemu-io -f qcow2 "${ops[@]}" q.qcow2 > /dev/null
qemu-img convert -O raw q.qcow2 qchain.raw
vsame q.qcow2 qchain.raw "qcow2 over vhd"
"$VDKIT" commit q.qcow2 > out 2>&1 || bad "commit q.qcow2 into base.vhd: $(cat out)"
qsame qchain.raw base.vhd "base.vhd after committing a qcow2 child"
cp keep.vhd base.vhd
# vmdk over vhd, vhd over qcow2.
"$VDKIT" create -f vmdk -b base.vhd k.vmdk > out 2>&1 || bad "vmdk over vhd: $(cat out)"
qemu-img convert -f vpc -O raw base.vhd model0.raw
vsame k.vmdk model0.raw "vmdk over vhd"
qemu-img convert -f raw -O qcow2 src.raw b.qcow2
"$VDKIT" create -f vhd -b b.qcow2 oq.vhd > out 2>&1 || bad "vhd over qcow2: $(cat out)"
vsame oq.vhd src.raw "vhd over qcow2"

# ---- 5. resize and discard.
"$VDKIT" convert -O vhd -o subformat=fixed src.raw rf.vhd > /dev/null
"$VDKIT" resize rf.vhd 40M > out 2>&1 || bad "resize fixed: $(cat out)"
[ "$(vsize rf.vhd)" = "$(qsize vpc rf.vhd)" ] && [ "$(vsize rf.vhd)" = $((40 << 20)) ] && ok || bad "resize fixed: vdkit $(vsize rf.vhd), qemu $(qsize vpc rf.vhd)"
cp src.raw grown.raw && truncate -s "$(vsize rf.vhd)" grown.raw
qsame grown.raw rf.vhd "fixed VHD grown"
"$VDKIT" convert -O vhd src.raw rd.vhd > /dev/null
"$VDKIT" resize rd.vhd 100M > out 2>&1 || bad "resize dynamic: $(cat out)"
cp src.raw grown.raw && truncate -s "$(vsize rd.vhd)" grown.raw
[ "$(vsize rd.vhd)" = "$(qsize vpc rd.vhd)" ] && ok || bad "resize dynamic: vdkit $(vsize rd.vhd), qemu $(qsize vpc rd.vhd)"
qsame grown.raw rd.vhd "dynamic VHD grown"
expect_exit 1 "shrink with data past the end" "$VDKIT" resize --shrink rd.vhd 8M
says "shrink refused" "shrinking never drops data"
cp src.raw disc.raw
"$VDKIT" discard rd.vhd 4M:4M > out 2>&1 || bad "discard: $(cat out)"
python3 -c "
f = open('disc.raw', 'r+b'); f.seek(4 << 20); f.write(bytes(4 << 20))"
truncate -s "$(vsize rd.vhd)" disc.raw
qsame disc.raw rd.vhd "dynamic VHD after discard"

# ---- 6. Damage and hostile headers.
refused() { # refused WHAT TEXT IMAGE: info (or convert) fails naming TEXT, writes nothing
    rm -f r.raw
    "$VDKIT" convert -O raw "$3" r.raw > out 2>&1; [ $? -ne 0 ] && [ ! -e r.raw ] && ok || bad "$1: convert went ahead"
    says "$1" "$2"
}
# edit IMAGE OUT PYTHON: OUT is IMAGE changed by PYTHON (d: bytearray; fix(off, n): recompute the checksum
# of the n-byte structure at off, its field at +64 (footer) or +36 (dynamic header)).
edit() {
    python3 - "$1" "$2" "$3" <<'PY'
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
def fix(off, n):
    at = off + (64 if n == 512 else 36)
    struct.pack_into(">I", d, at, ~(sum(d[off:at]) + sum(d[at + 4:off + n])) & 0xFFFFFFFF)
def be(off, fmt, v): struct.pack_into(">" + fmt, d, off, v)
E = len(d) - 512
exec(sys.argv[3])
open(sys.argv[2], "wb").write(d)
PY
}
orig=q-dynamic-off-20M.vhd
edit $orig h-both.vhd 'd[64] ^= 1; d[E + 64] ^= 1'
refused "both footers damaged" "checksum" h-both.vhd
edit $orig h-dyn.vhd 'd[512 + 40] ^= 1'
refused "dynamic header checksum" "the dynamic header at byte 512: checksum" h-dyn.vhd
edit $orig h-bs.vhd 'be(512 + 32, "I", 3000); fix(512, 1024)'
refused "block size 3000" "block size 3000" h-bs.vhd
edit $orig h-bat.vhd 'be(512 + 16, "Q", 1 << 40); fix(512, 1024)'
refused "BAT past the end" "extends beyond the end of the file" h-bat.vhd
edit $orig h-off.vhd 'be(16, "Q", 1 << 50); be(E + 16, "Q", 1 << 50); fix(0, 512); fix(E, 512)'
refused "data offset out of the file" "data offset" h-off.vhd
edit $orig h-type.vhd 'be(60, "I", 5); be(E + 60, "I", 5); fix(0, 512); fix(E, 512)'
refused "disk type 5" "disk type 5" h-type.vhd
# A huge table: 2 TiB-ish disk of 512-byte blocks (4 G entries): refused by its count, in bounded memory.
edit $orig h-huge.vhd 'd[28:32] = b"qem2"; d[E + 28:E + 32] = b"qem2"; be(48, "Q", 0xFE000000 * 512); be(E + 48, "Q", 0xFE000000 * 512)
be(512 + 32, "I", 512); be(512 + 28, "I", 0xFFFFFFFF); fix(0, 512); fix(E, 512); fix(512, 1024)'
(ulimit -v 400000; "$VDKIT" info h-huge.vhd > out 2>&1); [ $? -eq 1 ] && ok || bad "a huge BAT: not refused in 400 MB"
says "huge BAT" "more than the 16777216 vdkit holds in memory"
# A BAT entry past the end of the file: that block cannot be read; check finds it, check -r frees it.
edit $orig h-entry.vhd 'be(1536 + 4, "I", 0x7FFFFF00)'
refused "BAT entry past the end" "run past the data area" h-entry.vhd
expect_exit 2 "check, BAT entry past the end" "$VDKIT" check h-entry.vhd
says "check names the entry" "block 1 (BAT entry at byte 1540)"
# The data block the entry used to name stays in the file: a leak (exit 3), no error.
expect_exit 3 "check -r, BAT entry past the end" "$VDKIT" check -r h-entry.vhd
expect_exit 3 "check after repair" "$VDKIT" check h-entry.vhd
says "only the leak is left" "0 errors and 1 leaks"
qemu-img convert -f vpc -O raw $orig r0.raw && python3 -c "
f = open('r0.raw', 'r+b'); f.seek(2 << 20); f.write(bytes(2 << 20))"
vsame h-entry.vhd r0.raw "the repaired image: block 1 reads as zeros, the rest as before"
# A file cut inside its last block (docs/check.md rule 2): the copy at 0
# serves, the block reads its bytes up to the cut and zeros after (as qemu
# reads the cut file), check names the lost disk bytes, check -r pads the
# file and writes the footer after the block: the disk reads the same.
python3 - $orig h-cut.vhd cut.raw <<'PY'
import struct, subprocess, sys
src, out, model = sys.argv[1:4]
d = open(src, "rb").read()
to = struct.unpack(">Q", d[512 + 16:512 + 24])[0]; n = struct.unpack(">I", d[512 + 28:512 + 32])[0]
bs = struct.unpack(">I", d[512 + 32:512 + 36])[0]
bat = struct.unpack(">%dI" % n, d[to:to + 4 * n])
b = max(range(n), key=lambda i: -1 if bat[i] == 0xFFFFFFFF else bat[i])
cut = bat[b] * 512 + 512 + 100000
open(out, "wb").write(d[:cut])
subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", src, model], check=True)
m = bytearray(open(model, "rb").read())
end = min(len(m), (b + 1) * bs)
m[b * bs + 100000:end] = bytes(end - b * bs - 100000)
open(model, "wb").write(m)
print(b * bs + 100000, end)
PY
vsame h-cut.vhd cut.raw "a cut file reads its data up to the cut, zeros after"
expect_exit 2 "check, a cut file" "$VDKIT" check h-cut.vhd
says "check names the lost bytes" "lost disk bytes ["
expect_exit 0 "check -r, a cut file" "$VDKIT" check -r h-cut.vhd
expect_exit 0 "check after padding" "$VDKIT" check h-cut.vhd
vsame h-cut.vhd cut.raw "the padded file reads the same"
qsame cut.raw h-cut.vhd "qemu reads the padded file the same"
# The footer at the end damaged: the copy at 0 serves; check -r rewrites it byte for byte.
edit $orig h-end.vhd 'd[E + 70] ^= 0xff'
qemu-img convert -f vpc -O raw $orig q.raw; vsame h-end.vhd q.raw "the copy at 0 serves"
expect_exit 2 "check, damaged end footer" "$VDKIT" check h-end.vhd
says "check names the footer" "the footer at byte"
expect_exit 0 "check -r, damaged end footer" "$VDKIT" check -r h-end.vhd
cmp -s h-end.vhd $orig && ok || bad "check -r did not restore the footer at the end"
# The copy at 0 different from the footer at the end: reported, rewritten.
edit $orig h-copy.vhd 'be(24, "I", 12345); fix(0, 512)'
expect_exit 2 "check, copy mismatch" "$VDKIT" check h-copy.vhd
says "copy mismatch" "differs from the footer at the end"
expect_exit 0 "check -r, copy mismatch" "$VDKIT" check -r h-copy.vhd
cmp -s h-copy.vhd $orig && ok || bad "check -r did not restore the copy at 0"
# Parent locators: oversized, outside the file, and a child naming itself (a loop).
"$VDKIT" create -f vhd -b base.vhd loc.vhd > /dev/null
edit loc.vhd h-loc-big.vhd 'be(512 + 576 + 8, "I", 0x7FFFFFFF); fix(512, 1024)'
refused "oversized locator" "bytes of path; at most 65536" h-loc-big.vhd
edit loc.vhd h-loc-out.vhd 'be(512 + 576 + 16, "Q", 1 << 40); fix(512, 1024)'
refused "locator outside the file" "lies outside the file" h-loc-out.vhd
edit loc.vhd h-loop.vhd 'n = "h-loop.vhd".encode("utf-16-le"); o = struct.unpack(">Q", d[512 + 576 + 16:512 + 576 + 24])[0]
d[o:o + len(n)] = n; be(512 + 576 + 8, "I", len(n)); d[512 + 40:512 + 56] = d[68:84]; fix(512, 1024)'
(ulimit -v 400000; timeout 60 "$VDKIT" convert -O raw h-loop.vhd r.raw > out 2>&1); rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ ! -e r.raw ] && ok || bad "a child naming itself: exit $rc"
# ---- 7. Rules found by a new-user trial.
# Safe rebase copies from the old parent only the sectors the child does not
# hold: the child's writes in blocks the parent has allocated survive (whole
# sectors, partial sectors, several blocks), judged by qemu-img against the
# model of what the disk read before.
qemu-img convert -f raw -O vpc src.raw rp.vhd
"$VDKIT" create -f vhd -b rp.vhd rk.vhd > out 2>&1 || bad "create -b rp.vhd: $(cat out)"
qemu-img convert -f vpc -O raw rp.vhd rk-model.raw
rops=(-c 'write -P 0x51 1M 4k' -c 'write -P 0x52 5243392 1k' -c 'write -P 0x53 9440184 700'
      -c 'write -P 0x54 17M 64k' -c 'write -z 13M 512' -c 'write -P 0x55 20479k 1k')
serve_vdkit rk rk.vhd || bad "vdkit serve rk.vhd"
qemu-io -f raw "${rops[@]}" "$(url rk "")" > io.log 2>&1 || bad "qemu-io through vdkit serve: $(cat io.log)"
stop_server rk
qemu-io -f raw "${rops[@]}" rk-model.raw > /dev/null
vsame rk.vhd rk-model.raw "the child before rebase"
cp rk.vhd rk2.vhd
"$VDKIT" rebase -b "" rk.vhd > out 2>&1 || bad "rebase -b '' (child writes in parent blocks): $(cat out)"
qsame rk-model.raw rk.vhd "rebase -b '' keeps the child's writes in blocks the parent holds"
expect_exit 0 "check the rebased child" "$VDKIT" check rk.vhd
# Onto another parent (an empty VHD of the same size): the same rule.
"$VDKIT" create -f vhd rnp.vhd "$(vsize rp.vhd)" > out 2>&1 || bad "create rnp.vhd: $(cat out)"
"$VDKIT" rebase -b rnp.vhd rk2.vhd > out 2>&1 || bad "rebase -b rnp.vhd: $(cat out)"
vsame rk2.vhd rk-model.raw "rebase onto a new parent keeps the child's writes"

# max table entries (byte 540) larger than the disk needs: only the needed
# entries count; qemu reads the file the same; check names the field and
# check -r frees nothing; a value past the file is refused by name.
qemu-img convert -f vpc -O raw $orig q.raw
for mte in 200 4096 1048576; do
    edit $orig h-mte.vhd "be(512 + 28, 'I', $mte); fix(512, 1024)"
    # qemu refuses a table past its data ("free_data_block_offset points after the end"); vdkit reads the needed entries.
    [ "$mte" -lt 100000 ] && qsame q.raw h-mte.vhd "qemu reads max table entries $mte"
    vsame h-mte.vhd q.raw "max table entries $mte reads as qemu reads it"
    "$VDKIT" check h-mte.vhd > out 2>&1
    if [ "$mte" -gt 1000 ]; then says "check names max table entries $mte" "max table entries $mte (byte 540)"; fi
    "$VDKIT" check -r h-mte.vhd > out 2>&1
    vsame h-mte.vhd q.raw "check -r keeps every block with max table entries $mte"
done
for mte in 4294967295 16777217 100000000; do
    edit $orig h-mte.vhd "be(512 + 28, 'I', $mte); fix(512, 1024)"
    cp h-mte.vhd h-mte0.vhd
    refused "max table entries $mte" "max table entries $mte (byte 540)" h-mte.vhd
    "$VDKIT" check -r h-mte.vhd > out 2>&1 && bad "check -r accepted max table entries $mte" || ok
    cmp -s h-mte.vhd h-mte0.vhd && ok || bad "check -r changed a file with max table entries $mte"
done

# ignore-checksums opens the image, but check still reports each wrong
# checksum (stored and computed values) and check -r writes it again.
printf 'defaults:\n  format:\n    vhd:\n      ignore-checksums: true\n' > ic.yaml
for what in end copy both dyn fixed; do
    src=$orig
    case $what in
        end) e='d[E + 64] ^= 1' ;; copy) e='d[64] ^= 1' ;; both) e='d[64] ^= 1; d[E + 64] ^= 1' ;;
        dyn) e='d[512 + 36] ^= 1' ;;
        fixed) qemu-img convert -f raw -O vpc -o subformat=fixed src.raw ic-fixed.vhd; src=ic-fixed.vhd; e='d[E + 64] ^= 1' ;;
    esac
    qemu-img convert -f vpc -O raw $src ic.raw
    edit $src h-ic.vhd "$e"
    expect_exit 2 "check (ignore-checksums), $what checksum" "$VDKIT" --config ic.yaml check h-ic.vhd
    says "check names the $what checksum" "does not match the"
    expect_exit 0 "check -r (ignore-checksums), $what checksum" "$VDKIT" --config ic.yaml check -r h-ic.vhd
    expect_exit 0 "check after the $what checksum repair (checksums verified)" "$VDKIT" check h-ic.vhd
    cmp -s h-ic.vhd $src && ok || bad "check -r did not restore the $what checksum byte for byte"
    qsame ic.raw h-ic.vhd "qemu reads the repaired $what checksum"
done

finish
