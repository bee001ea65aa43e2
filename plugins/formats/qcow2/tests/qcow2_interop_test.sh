#!/usr/bin/env bash
# qcow2 read side against qemu-img and qemu-io (a writer and reader nobody
# here wrote): every image qemu makes here — versions 2 and 3, clusters of
# 512 B, 64 KiB and 2 MiB, extended L2 with subclusters, zlib and zstd
# compression, zero clusters, internal snapshots, backing chains over
# qcow2, VMDK and VDI — converts to the same raw bytes as
# `qemu-img convert -O raw`, and `vdkit map` finds the data ranges
# `qemu-img map` does. Backing names the path policy refuses (json:,
# protocols, system files), encryption, external data files and patched
# header fields are refused by name, within bounded memory.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3

# 24 MiB less 3 sectors: random data, zeros and holes at odd offsets (qemu
# sizes are whole sectors).
python3 - <<'PY'
import os, random
random.seed(21)
data = random.Random(os.environ["VDKIT_TEST_SEED"])
size = (24 << 20) - 3 * 512
with open("src.raw", "wb") as f:
    for _ in range(30):
        f.seek(random.randrange(0, 23 << 20))
        f.write(data.randbytes(random.choice([1, 512, 4096, 70000, 1 << 20, 3 << 20])))
    f.seek(size - 5000); f.write(b"\xcd" * 3000)
    f.truncate(size)
PY

# same_as_qemu IMAGE WHAT: vdkit's and qemu-img's raw conversions are equal,
# and so are the data ranges of both maps.
same_as_qemu() {
    rm -f v.raw q.raw
    if ! "$VDKIT" convert -O raw "$1" v.raw > log 2>&1; then bad "$2: vdkit convert: $(cat log)"; return; fi
    qemu-img convert -O raw "$1" q.raw
    cmp -s v.raw q.raw && ok || bad "$2: vdkit's raw differs from qemu-img's ($(cmp v.raw q.raw | head -1))"
    if "$VDKIT" map --output=json "$1" > v.map 2> log && qemu-img map --output=json "$1" > q.map; then
        python3 "$VDKIT_SOURCE_DIR/tests/support/map_ranges.py" v.map q.map && ok || bad "$2: data ranges differ from qemu-img map"
    else
        bad "$2: map failed: $(cat log)"
    fi
}

# 1. Versions and cluster sizes.
for compat in 0.10 1.1; do
    for cs in 512 64k 2M; do
        qemu-img convert -f raw -O qcow2 -o "compat=$compat,cluster_size=$cs" src.raw "c_${compat}_$cs.qcow2"
        same_as_qemu "c_${compat}_$cs.qcow2" "compat=$compat cluster_size=$cs"
    done
done
"$VDKIT" info c_1.1_64k.qcow2 > out 2>&1 && ok || bad "info: $(cat out)"
says "info names the format" "qcow2" out
"$VDKIT" compare -F raw c_0.10_512.qcow2 src.raw > out 2>&1 && ok || bad "compare with the source: $(cat out)"

# 2. Compressed clusters: zlib (v2 and v3) and zstd; a partly rewritten one.
qemu-img convert -f raw -O qcow2 -c -o compat=0.10 src.raw z2.qcow2
same_as_qemu z2.qcow2 "zlib, compat=0.10"
qemu-img convert -f raw -O qcow2 -c -o cluster_size=4k src.raw z4k.qcow2
same_as_qemu z4k.qcow2 "zlib, 4k clusters"
if qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd src.raw zs.qcow2 2> log; then
    same_as_qemu zs.qcow2 "zstd"
    qemu-io -f qcow2 -c 'write -P 0x3c 65k 8k' -c 'write -z 1M 64k' zs.qcow2 > /dev/null
    same_as_qemu zs.qcow2 "zstd, rewritten in parts"
else
    bad "qemu-img cannot write zstd: $(cat log)"
fi

# 3. Zero clusters (v3), and zeros over a backing file: they shadow it.
cp c_1.1_64k.qcow2 zc.qcow2
qemu-io -f qcow2 -c 'write -z 0 2M' -c 'write -z 5M 192k' -c 'write -P 0x77 7M 3k' zc.qcow2 > /dev/null
same_as_qemu zc.qcow2 "zero clusters"
"$VDKIT" map --output=json zc.qcow2 | python3 -c '
import json, sys
runs = json.load(sys.stdin)
sys.exit(0 if any(r["start"] == 0 and r["zero"] and not r["data"] for r in runs) else 1)' && ok || bad "map reports the zero cluster at 0 as zero"

# 4. Extended L2 entries: subclusters allocated, zero and unallocated in one cluster.
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=64k xb.qcow2 24M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' xb.qcow2 > /dev/null
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=64k -b xb.qcow2 -F qcow2 x.qcow2
qemu-io -f qcow2 -c 'write -P 0x22 4k 2k' -c 'write -z 16k 4k' -c 'write -P 0x33 2M 6k' -c 'write -z 3M 64k' x.qcow2 > /dev/null
same_as_qemu x.qcow2 "extended L2 over a backing file"
"$VDKIT" map --output=json x.qcow2 | python3 -c '
import json, sys
runs = json.load(sys.stdin)
# [16k, 20k) reads as zeros although the backing file has 0x11 there.
sys.exit(0 if any(r["start"] <= 16384 and r["start"] + r["length"] >= 20480 and r["zero"] for r in runs) else 1)' && ok || bad "a zero subcluster is reported as zero"

# 5. Internal snapshots: the active L1 table is read, the snapshot table is only checked.
cp c_1.1_64k.qcow2 s.qcow2
qemu-img snapshot -c first s.qcow2
qemu-io -f qcow2 -c 'write -P 0x5e 64k 128k' s.qcow2 > /dev/null
qemu-img snapshot -c second s.qcow2
qemu-io -f qcow2 -c 'write -z 0 64k' s.qcow2 > /dev/null
same_as_qemu s.qcow2 "active layer after two snapshots"

# 6. Chains: qcow2 over qcow2 (three levels), and over VMDK and VDI made by vdkit.
qemu-img create -q -f qcow2 -b c_1.1_64k.qcow2 -F qcow2 mid.qcow2
qemu-io -f qcow2 -c 'write -P 0x44 1M 100k' -c 'write -z 3M 64k' mid.qcow2 > /dev/null
qemu-img create -q -f qcow2 -o compat=0.10 -b mid.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c 'write -P 0x55 1050k 4k' -c 'write -P 0x66 23M 512' top.qcow2 > /dev/null
same_as_qemu top.qcow2 "three-level qcow2 chain"
"$VDKIT" info top.qcow2 > out 2>&1; says "the top names its backing file" "mid.qcow2" out
for fmt in vmdk vdi; do
    "$VDKIT" convert -O $fmt src.raw "base.$fmt" > log 2>&1 || bad "vdkit convert -O $fmt: $(cat log)"
    qemu-img create -q -f qcow2 -b "base.$fmt" -F $fmt "over-$fmt.qcow2"
    qemu-io -f qcow2 -c 'write -P 0x99 100k 300k' -c 'write -z 2M 1M' "over-$fmt.qcow2" > /dev/null
    same_as_qemu "over-$fmt.qcow2" "qcow2 over a $fmt made by vdkit"
done
# A backing file smaller than the image reads as zeros past its end.
truncate -s 1M small.raw; printf 'tail' | dd of=small.raw bs=1 seek=$((1024 * 1024 - 4)) conv=notrunc status=none
qemu-img create -q -f qcow2 -b small.raw -F raw big.qcow2 4M
same_as_qemu big.qcow2 "backing file smaller than the image"

# 7. Backing names the path policy refuses; qemu-img -u records them unchecked.
refused() { # refused WHAT TEXT IMAGE: info and convert fail naming TEXT, write nothing
    expect_exit 1 "$1: info" "$VDKIT" info "$3"
    says "$1" "$2" out
    rm -f r.raw
    "$VDKIT" convert -O raw "$3" r.raw > out 2>&1; [ $? -ne 0 ] && [ ! -e r.raw ] && ok || bad "$1: convert went ahead"
}
qemu-img create -q -f qcow2 -u -b 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/passwd"}}' -F raw j.qcow2 1M
refused "json: backing" "a protocol name (qemu's '<protocol>:' syntax)" j.qcow2
qemu-img create -q -f qcow2 -u -b 'nbd:localhost:10809' -F raw n.qcow2 1M
refused "nbd: backing" "a protocol name" n.qcow2
qemu-img create -q -f qcow2 -u -b 'http://example.invalid/disk.img' -F raw h.qcow2 1M
refused "URL backing" "a URL" h.qcow2
qemu-img create -q -f qcow2 -u -b /etc/passwd -F raw p.qcow2 1M
refused "absolute system path backing" "/etc/passwd" p.qcow2

# 8. Features refused by name.
if qemu-img create -q -f qcow2 --object secret,id=s0,data=pw -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 e.qcow2 1M 2> log ||
   qemu-img create -q -f qcow2 --object secret,id=s0,data=pw -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 e.qcow2 1M 2> log; then
    refused "LUKS encryption" "encrypted qcow2 images are refused until the crypt filter can serve them" e.qcow2
else
    bad "qemu-img cannot make a LUKS qcow2: $(cat log)"
fi
qemu-img create -q -f qcow2 -o data_file=ext.raw df.qcow2 1M
refused "external data file" "external data file ('ext.raw')" df.qcow2

# 9. Hostile header fields patched into a qemu-made image (big endian):
#    refused by name, within a bounded memory (no table sized from a lie).
patch() { # patch FILE OFFSET HEXBYTES
    printf "$(echo "$3" | sed 's/../\\x&/g')" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
bounded() { # bounded WHAT TEXT FILE: info fails naming TEXT, max RSS under 200 MB
    /usr/bin/time -f %M -o rss "$VDKIT" info "$3" > out 2>&1
    [ $? -ne 0 ] && ok || bad "$1: info accepted it"
    says "$1" "$2" out
    [ "$(tail -1 rss)" -lt 200000 ] && ok || bad "$1: info used $(tail -1 rss) KiB"
}
hostile() { # hostile WHAT OFFSET HEX TEXT
    cp c_1.1_64k.qcow2 hh.qcow2; patch hh.qcow2 "$2" "$3"; bounded "$1" "$4" hh.qcow2
}
hostile "l1_size 2^31-1 (CVE-2014-0143)" 36 7fffffff "makes an L1 table over 32 MiB"
hostile "l1_size smaller than the disk" 36 00000000 "is too small for a disk"
hostile "refcount_table_clusters 2^32-1 (CVE-2014-0144)" 56 ffffffff "makes a refcount table over 8 MiB"
hostile "nb_snapshots 2^32-1 (CVE-2014-0143)" 60 ffffffff "exceeds 65536"
hostile "snapshots with no table" 60 0000ffff "the snapshot table starts at offset 0, over the header"
hostile "L1 table past the end" 40 0000010000000000 "extends past the end of the file"
hostile "cluster_bits 31" 20 0000001f "cluster_bits 31"
hostile "header_length 2^32-8" 100 fffffff8 "header_length 4294967288"
hostile "version 4" 4 00000004 "unknown version 4"
# An unknown header extension with a huge length (CVE-2014-0142 kind).
cp c_1.1_64k.qcow2 hx.qcow2
off=$(python3 -c 'import struct; print(struct.unpack(">I", open("hx.qcow2","rb").read()[100:104])[0])')
patch hx.qcow2 "$off" 12345678fffffff0
bounded "huge header extension" "claims 4294967280 bytes, past the end of the header area" hx.qcow2
# An unknown extension of sane length is ignored (qcow2.txt: "can be safely ignored").
cp c_0.10_512.qcow2 ux.qcow2
patch ux.qcow2 72 1234567800000008ffffffffffffffff0000000000000000
same_as_qemu ux.qcow2 "an unknown header extension"
# L2 entries pointing at the header or past the end: a clear error at the read.
cp c_1.1_64k.qcow2 l2.qcow2
python3 - l2.qcow2 <<'PY'
import struct, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    h = f.read(104)
    l1_off = struct.unpack(">Q", h[40:48])[0]
    f.seek(l1_off); l2_off = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    f.seek(l2_off); entries = struct.unpack(">8192Q", f.read(65536))
    first = next(i for i, e in enumerate(entries) if e & 0x00fffffffffffe00)
    f.seek(l2_off + 8 * first); f.write(struct.pack(">Q", (1 << 63)))          # host offset 0 with the copied flag
    second = next(i for i, e in enumerate(entries) if e & 0x00fffffffffffe00 and i > first)
    f.seek(l2_off + 8 * second); f.write(struct.pack(">Q", (1 << 63) | (1 << 40)))  # 1 TiB: past the end
PY
"$VDKIT" convert -O raw l2.qcow2 l2.raw > out 2>&1; [ $? -ne 0 ] && ok || bad "damaged L2 entries were read"
grep -qE "is allocated at host offset 0|past the end of the file" out && ok || bad "damaged L2: $(cat out)"
# A set dirty bit: reading needs no refcounts; still read-only, still the same bytes.
cp c_1.1_64k.qcow2 dirty.qcow2; patch dirty.qcow2 79 01
"$VDKIT" convert -O raw dirty.qcow2 d.raw > out 2>&1 && cmp -s d.raw src.raw && ok || bad "dirty image: $(cat out)"

finish
