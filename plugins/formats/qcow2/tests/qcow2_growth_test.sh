#!/usr/bin/env bash
# qcow2 images that outgrow their metadata, judged by qemu-img:
# 1. the refcount table: qemu-img makes 512-byte-cluster images whose first
#    refcount table counts a few MiB; vdkit writes far past that (convert -n
#    into them), so the table must grow (a new, larger table at the end of
#    the file that counts itself, named by the header last). qemu-img check
#    finds no error and no leak, qemu-img compare finds the data, and the
#    header names a larger table than qemu made.
# 2. resize: growing past what the L1 table maps (a new, larger L1 table)
#    and within it; shrinking with --shrink frees every cluster past the new
#    end (qemu-img check finds no leak); qemu-img info reads the new virtual
#    size, qemu-img compare the content (a model raw resized alike), and qemu
#    writes into the grown part.
# 3. measure -O qcow2 gives what `qemu-img measure -O qcow2` gives (required
#    and fully allocated, same cluster size) for sparse and dense sources and
#    for --size alone, and vdkit's own convert fits in the required size.
# 4. preallocation=metadata|falloc|full (and --preallocate): every cluster
#    allocated at create (qemu-img map: all data), qemu-img check clean,
#    content equal after convert and after qemu writes; full takes the disk
#    on the file system; the file fits measure's fully-allocated size.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img python3

qcheck() { # qemu-img check finds no error and no leak
    if qemu-img check "$1" > qcheck.log 2>&1; then ok; else bad "qemu-img check $1: $(cat qcheck.log)"; fi
}
same() { # same A B WHAT: qemu-img compare says the contents are equal
    if qemu-img compare "$1" "$2" > cmp.log 2>&1; then ok; else bad "$3: $(cat cmp.log)"; fi
}
rt_clusters() { # the refcount_table_clusters of a qcow2 header (bytes 56-59)
    python3 -c 'import struct,sys; print(struct.unpack(">I", open(sys.argv[1],"rb").read(60)[56:60])[0])' "$1"
}

# 12 MiB of data, dense (every cluster), with a 1 MiB zero run.
python3 - <<'PY'
import os, random
r = random.Random(os.environ["VDKIT_TEST_SEED"])
with open("dense.raw", "wb") as f:
    for i in range(12):
        f.write(b"\0" * (1 << 20) if i == 5 else r.randbytes(1 << 20))
PY

# 1. Refcount table growth: 512-byte clusters, refcount widths 16 and 64 (v3)
#    and 16 (v2, which has no other).
for spec in "1.1 16" "1.1 64" "0.10 16"; do
    set -- $spec
    img="grow_$1_$2.qcow2"
    qemu-img create -q -f qcow2 -o "compat=$1,cluster_size=512,refcount_bits=$2" "$img" 32M
    before=$(rt_clusters "$img")
    "$VDKIT" convert -n -O qcow2 dense.raw "$img" > log 2>&1 && ok || bad "convert -n into $img: $(cat log)"
    qcheck "$img"
    same dense.raw "$img" "$img after growing its refcount table"
    after=$(rt_clusters "$img")
    [ "$after" -gt "$before" ] && ok || bad "$img: the refcount table did not grow ($before -> $after clusters)"
    expect_exit 0 "vdkit check $img" "$VDKIT" check "$img"
    # Writing again reuses the grown table (no growth, still consistent).
    "$VDKIT" convert -n -O qcow2 dense.raw "$img" > log 2>&1 && ok || bad "second convert -n into $img: $(cat log)"
    qcheck "$img"
    same dense.raw "$img" "$img after a second write"
done

# 2. resize.
size_of() { qemu-img info --output=json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }
for spec in "1.1 512" "0.10 512" "1.1 64k"; do
    set -- $spec
    img="rs_$1_$2.qcow2"
    qemu-img create -q -f qcow2 -o "compat=$1,cluster_size=$2" "$img" 2M
    head -c 2M dense.raw > model.raw
    "$VDKIT" convert -n -O qcow2 model.raw "$img" > log 2>&1 || bad "fill $img: $(cat log)"
    for to in 3M 64M 1G; do
        expect_exit 0 "resize $img to $to" "$VDKIT" resize "$img" "$to"
        truncate -s "$to" model.raw
        [ "$(size_of "$img")" = "$(stat -c %s model.raw)" ] && ok || bad "$img: qemu-img reads size $(size_of "$img"), not $to"
        qcheck "$img"
        same model.raw "$img" "$img grown to $to"
    done
    # qemu writes into the grown part; both read the same.
    qemu-io -f qcow2 -c 'write -P 0x4d 1000M 192k' -c 'write -P 0x4e 63M 5k' "$img" > /dev/null
    qemu-io -f raw -c 'write -P 0x4d 1000M 192k' -c 'write -P 0x4e 63M 5k' model.raw > /dev/null
    expect_exit 0 "vdkit reads qemu's writes past the old end ($img)" "$VDKIT" compare -F raw "$img" model.raw
    # Shrinking: refused without --shrink, then every cluster past the end freed.
    expect_exit 2 "shrink without --shrink ($img)" "$VDKIT" resize "$img" 1M
    for to in 900M 63M 1536K; do
        expect_exit 0 "resize --shrink $img to $to" "$VDKIT" resize --shrink "$img" "$to"
        truncate -s "$to" model.raw
        [ "$(size_of "$img")" = "$(stat -c %s model.raw)" ] && ok || bad "$img: qemu-img reads size $(size_of "$img"), not $to"
        qcheck "$img"
        same model.raw "$img" "$img shrunk to $to"
    done
    expect_exit 0 "vdkit check after the resizes ($img)" "$VDKIT" check "$img"
    expect_exit 1 "a size that is not whole sectors ($img)" "$VDKIT" resize "$img" 2000000
    says "says why" "512-byte sectors" out
done

# 3. measure.
python3 - <<'PY'
import os, random
r = random.Random(os.environ["VDKIT_TEST_SEED"] + "m")
with open("sparse.raw", "wb") as f:
    for _ in range(30):
        f.seek(r.randrange(0, 3000 << 20))
        f.write(r.randbytes(r.choice([1, 4096, 70000, 3 << 20])))
    f.truncate((3000 << 20) + 777)
PY
cp --sparse=always sparse.raw whole.raw && truncate -s 3000M whole.raw # VMDK sizes are whole sectors
"$VDKIT" convert -O vmdk whole.raw sparse.vmdk > /dev/null || bad "sparse.vmdk"
measure_pair() { # measure_pair WHAT ARGS...: vdkit and qemu-img measure -O qcow2 agree
    local what=$1; shift
    local v q
    v=$("$VDKIT" measure -O qcow2 ${cso:+-o cluster-size=$cso} --output=json "$@" 2> err) || { bad "vdkit measure $what: $(cat err)"; return; }
    q=$(qemu-img measure -O qcow2 ${cso:+-o cluster_size=$cso} --output=json "$@" 2> err) || { bad "qemu-img measure $what: $(cat err)"; return; }
    python3 - "$v" "$q" <<'PY' && ok || bad "measure $what (cluster ${cso:-64k}): vdkit $v, qemu-img $q"
import json, sys
v, q = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.exit(0 if v["required"] == q["required"] and v["fully-allocated"] == q["fully-allocated"] else 1)
PY
}
for cso in 512 64k 2M; do
    measure_pair "sparse raw" sparse.raw
    measure_pair "dense raw" dense.raw
    measure_pair "--size 20G" --size 20G
    measure_pair "--size 1000001" --size 1000001
done
cso=
measure_pair "a VMDK source" sparse.vmdk
req=$("$VDKIT" measure -O qcow2 --output=json sparse.raw | python3 -c 'import json,sys; print(json.load(sys.stdin)["required"])')
"$VDKIT" convert -O qcow2 sparse.raw m.qcow2 > /dev/null || bad "convert sparse.raw"
[ "$(stat -c %s m.qcow2)" -le "$req" ] && ok || bad "vdkit's qcow2 ($(stat -c %s m.qcow2) bytes) exceeds the measured $req"

# 4. preallocation.
for mode in metadata falloc full; do
    img="pre-$mode.qcow2"
    expect_exit 0 "create -o preallocation=$mode" "$VDKIT" create -f qcow2 -o "preallocation=$mode,cluster-size=4k" "$img" 9M
    qcheck "$img"
    qemu-img map --output=json "$img" | python3 -c '
import json, sys
m = json.load(sys.stdin)
sys.exit(0 if all(r["data"] for r in m) and sum(r["length"] for r in m) == 9 << 20 else 1)' && ok || bad "$img: not every cluster is allocated"
    head -c 9M /dev/zero > zero9.raw
    same zero9.raw "$img" "$img reads zeros"
    qemu-io -f qcow2 -c 'write -P 0x61 100k 300k' "$img" > /dev/null
    qemu-io -f raw -c 'write -P 0x61 100k 300k' zero9.raw > /dev/null
    expect_exit 0 "vdkit reads qemu's write into $img" "$VDKIT" compare -F raw "$img" zero9.raw
    fully=$("$VDKIT" measure -O qcow2 -o cluster-size=4k --output=json --size 9M | python3 -c 'import json,sys; print(json.load(sys.stdin)["fully-allocated"])')
    [ "$(stat -c %s "$img")" -le "$fully" ] && ok || bad "$img: $(stat -c %s "$img") bytes, over the measured $fully"
done
[ $(( $(stat -c %b pre-full.qcow2) * $(stat -c %B pre-full.qcow2) )) -ge $((9 << 20)) ] && ok || bad "preallocation=full did not allocate the data"
expect_exit 0 "convert -o preallocation=metadata" "$VDKIT" convert -O qcow2 -o preallocation=metadata dense.raw pre-conv.qcow2
qcheck pre-conv.qcow2
same dense.raw pre-conv.qcow2 "convert into a preallocated qcow2"
expect_exit 0 "create --preallocate" "$VDKIT" create -f qcow2 --preallocate pre-flag.qcow2 3M
[ $(( $(stat -c %b pre-flag.qcow2) * $(stat -c %B pre-flag.qcow2) )) -ge $((3 << 20)) ] && ok || bad "--preallocate did not allocate the data"
qcheck pre-flag.qcow2
expect_exit 0 "make a base" "$VDKIT" create -f qcow2 base-p.qcow2 3M
expect_exit 1 "a preallocated diff is refused" "$VDKIT" create -f qcow2 -o preallocation=metadata -b base-p.qcow2 d-p.qcow2
says "says why" "cannot be preallocated" out

finish
