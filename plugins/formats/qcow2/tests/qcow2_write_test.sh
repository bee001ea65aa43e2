#!/usr/bin/env bash
# qcow2 written by vdkit, judged by qemu-img and qemu-io: images made by
# `vdkit convert -O qcow2` (compat 0.10 and 1.1, clusters of 512 B, 64 KiB
# and 2 MiB) pass `qemu-img check` and compare equal to their source;
# differencing images vdkit makes over qcow2, VMDK and VDI name their
# backing file and format as qemu reads them; vdkit's in-place writes,
# zero writes and discards (commit into a qcow2 base, discard -z, rebase
# -b "") keep the refcounts consistent (qemu-img check) and the content
# right (qemu-img compare); zero writes in version 3 are zero clusters.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3

qcheck() { # qemu-img check finds no error and no leak
    if qemu-img check "$1" > qcheck.log 2>&1; then ok; else bad "qemu-img check $1: $(cat qcheck.log)"; fi
}
same() { # same A B WHAT: qemu-img compare says the contents are equal
    if qemu-img compare "$1" "$2" > cmp.log 2>&1; then ok; else bad "$3: $(cat cmp.log)"; fi
}
field() { # field IMAGE KEY: a field of qemu-img info --output=json (dotted path)
    qemu-img info --output=json "$1" | python3 -c "import json,sys; j=json.load(sys.stdin)
for k in sys.argv[1].split('.'): j=j.get(k, {}) if isinstance(j, dict) else {}
print(j)" "$2"
}

# 20 MiB: random data at odd offsets, zeros, holes.
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

# 1. convert -O qcow2: every version and cluster size.
for compat in 0.10 1.1; do
    for cs in 512 64k 2M; do
        img="v_${compat}_$cs.qcow2"
        "$VDKIT" convert -O qcow2 -o "compat=$compat,cluster-size=$cs" src.raw "$img" > log 2>&1 || { bad "convert $compat $cs: $(cat log)"; continue; }
        qcheck "$img"
        same src.raw "$img" "compat=$compat cluster-size=$cs"
        [ "$(field "$img" format-specific.data.compat)" = "$compat" ] && ok || bad "$img: qemu-img reads compat $(field "$img" format-specific.data.compat)"
        case $cs in 512) bytes=512 ;; 64k) bytes=65536 ;; 2M) bytes=2097152 ;; esac
        [ "$(field "$img" cluster-size)" = "$bytes" ] && ok || bad "$img: cluster size $(field "$img" cluster-size)"
    done
done
# Sparse: holes and zeros take no clusters (qemu-img map agrees with vdkit map).
"$VDKIT" map --output=json v_1.1_64k.qcow2 > v.map && qemu-img map --output=json v_1.1_64k.qcow2 > q.map &&
    python3 "$VDKIT_SOURCE_DIR/tests/support/map_ranges.py" v.map q.map && ok || bad "vdkit's image: maps differ"
size=$(stat -c %s v_1.1_64k.qcow2); [ "$size" -lt $((12 << 20)) ] && ok || bad "the image is not sparse ($size bytes)"

# 2. Differencing images over qcow2, VMDK and VDI; qemu writes into them, both read the same.
"$VDKIT" convert -O vmdk src.raw base.vmdk > /dev/null && "$VDKIT" convert -O vdi src.raw base.vdi > /dev/null || bad "bases"
cp v_1.1_64k.qcow2 base.qcow2
for fmt in qcow2 vmdk vdi; do
    "$VDKIT" create -f qcow2 -b "base.$fmt" "d-$fmt.qcow2" > log 2>&1 || { bad "create -b base.$fmt: $(cat log)"; continue; }
    qcheck "d-$fmt.qcow2"
    [ "$(field "d-$fmt.qcow2" backing-filename)" = "base.$fmt" ] && [ "$(field "d-$fmt.qcow2" backing-filename-format)" = "$fmt" ] \
        && ok || bad "d-$fmt.qcow2: qemu reads backing '$(field "d-$fmt.qcow2" backing-filename)' format '$(field "d-$fmt.qcow2" backing-filename-format)'"
    same src.raw "d-$fmt.qcow2" "an empty diff over $fmt"
    qemu-io -f qcow2 -c 'write -P 0x5b 70k 5k' -c 'write -z 1M 128k' "d-$fmt.qcow2" > /dev/null
    qemu-img convert -O raw "d-$fmt.qcow2" q.raw
    "$VDKIT" compare -F raw "d-$fmt.qcow2" q.raw > log 2>&1 && ok || bad "diff over $fmt after qemu-io: $(cat log)"
done

# 3. vdkit writes into qcow2: commit (in-place writes, new clusters, zero
#    writes, then the top emptied), discard -z, rebase -b "" (the parent's
#    data copied into the top, then the backing file removed).
for compat in 0.10 1.1; do
    cp src.raw model.raw
    rm -f cb.qcow2 ct.qcow2
    "$VDKIT" convert -O qcow2 -o "compat=$compat,cluster-size=4k" src.raw cb.qcow2 > /dev/null
    qemu-img create -q -f qcow2 -b cb.qcow2 -F qcow2 ct.qcow2
    ops=(-c 'write -P 0x77 3M 3k' -c 'write -z 8M 1M' -c 'write -P 0x12 19M 100k' -c 'write -z 6001 3000' -c 'write -P 0x21 12k 4k')
    qemu-io -f qcow2 "${ops[@]}" ct.qcow2 > /dev/null && qemu-io -f raw "${ops[@]}" model.raw > /dev/null
    "$VDKIT" commit ct.qcow2 > log 2>&1 && ok || bad "commit ($compat): $(cat log)"
    qcheck cb.qcow2; qcheck ct.qcow2
    same model.raw cb.qcow2 "base after commit ($compat)"
    same model.raw ct.qcow2 "emptied top after commit ($compat)"
    "$VDKIT" discard -z cb.qcow2 2M:3M 5000:10000 > log 2>&1 && ok || bad "discard -z ($compat): $(cat log)"
    qemu-io -f raw -c 'write -z 2M 3M' -c 'write -z 5000 10000' model.raw > /dev/null
    qcheck cb.qcow2
    same model.raw cb.qcow2 "after discard -z ($compat)"
    "$VDKIT" rebase -b "" ct.qcow2 > log 2>&1 && ok || bad "rebase -b '' ($compat): $(cat log)"
    qcheck ct.qcow2
    [ -z "$(qemu-img info ct.qcow2 | grep 'backing file')" ] && ok || bad "ct.qcow2 still has a backing file"
    same model.raw ct.qcow2 "after rebase -b '' ($compat)"
done
# Zero writes are zero clusters in version 3 (qemu-img map: zero, no data).
qemu-img map --output=json cb.qcow2 | python3 -c '
import json, sys
sys.exit(0 if any(r["start"] <= 2 << 20 and r["start"] + r["length"] >= 5 << 20 and r["zero"] and not r["data"]
                  for r in json.load(sys.stdin)) else 1)' && ok || bad "discard -z did not leave zero clusters"

# 4. check: clean on every image here and on qemu's compressed ones; a
#    refcount raised is a leak (exit 3), lowered an error (exit 2); -r
#    sets both right and qemu-img check agrees.
qemu-img convert -f raw -O qcow2 -c src.raw qz.qcow2
for img in v_0.10_512.qcow2 v_1.1_2M.qcow2 d-vmdk.qcow2 cb.qcow2 ct.qcow2 qz.qcow2; do
    expect_exit 0 "check $img" "$VDKIT" check "$img"
done
bump() { # bump IMAGE DELTA: add DELTA to the refcount of the image's last cluster
    python3 - "$1" "$2" <<'PY'
import os, struct, sys
p, delta = sys.argv[1], int(sys.argv[2])
with open(p, "r+b") as f:
    h = f.read(104)
    cs = 1 << struct.unpack(">I", h[20:24])[0]
    rt = struct.unpack(">Q", h[48:56])[0]
    c = os.path.getsize(p) // cs - 1
    f.seek(rt + 8 * (c // (cs // 2))); rb = struct.unpack(">Q", f.read(8))[0]
    f.seek(rb + 2 * (c % (cs // 2))); v = struct.unpack(">H", f.read(2))[0]
    f.seek(rb + 2 * (c % (cs // 2))); f.write(struct.pack(">H", v + delta))
PY
}
for delta in 1 -1; do
    cp v_1.1_64k.qcow2 k.qcow2; bump k.qcow2 $delta
    if [ $delta = 1 ]; then want=3 what="(leaked)"; else want=2 what="a writer could reuse it"; fi
    expect_exit $want "check, refcount $delta" "$VDKIT" check k.qcow2
    says "refcount $delta named" "$what" out
    expect_exit 0 "check -r, refcount $delta" "$VDKIT" check -r k.qcow2
    qcheck k.qcow2
    same src.raw k.qcow2 "after check -r (refcount $delta)"
done

# 5. What vdkit does not write is refused by name, and the image is untouched.
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=64k x.qcow2 4M
sum=$(sha256sum < x.qcow2)
expect_exit 1 "discard on an extended-L2 image" "$VDKIT" discard x.qcow2 0:64k
says "extended L2 refused by name" "it has extended L2 entries" out
[ "$(sha256sum < x.qcow2)" = "$sum" ] && ok || bad "the refused image changed"

# 6. Sizes qemu can see whole: a size that is not a whole number of sectors is
#    rounded up (qemu reads the header's size in whole sectors), and every
#    byte of an odd-sized source stays visible to qemu.
for n in 1000 513 4194303; do
    expect_exit 0 "create a qcow2 of $n bytes" "$VDKIT" create -f qcow2 "odd$n.qcow2" $n
    [ "$(qemu-img info --output=json "odd$n.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" = \
      $(( (n + 511) / 512 * 512 )) ] && ok || bad "a $n-byte qcow2 is not rounded up to whole sectors for qemu"
done
head -c 1048500 src.raw > odd.raw
expect_exit 0 "convert an odd-sized raw to qcow2" "$VDKIT" convert -O qcow2 odd.raw odd.qcow2
{ cat odd.raw; head -c 76 /dev/zero; } > odd.padded
expect_exit 0 "qemu-img compare sees every byte of the odd-sized source" qemu-img compare -f raw -F qcow2 odd.padded odd.qcow2

# 7. A parent outside the image's directory: a qcow2 records no identity of
#    its parent, so such a link could never be opened again; create refuses
#    it, leaving nothing (whatever the parent's format).
mkdir -p rc/sub
cp v_1.1_64k.qcow2 rc/p.qcow2
"$VDKIT" convert -O vmdk src.raw rc/p.vmdk > /dev/null 2>&1 && "$VDKIT" convert -O vdi src.raw rc/p.vdi > /dev/null 2>&1 &&
    ok || bad "make parents"
for p in p.qcow2 p.vmdk p.vdi; do
    (cd rc && "$VDKIT" create -f qcow2 -b "../$p" "sub/over-${p%.*}.qcow2") > out 2>&1
    [ $? -ne 0 ] && ok || bad "create -b ../$p outside the directory was accepted"
    says "the refusal says why ($p)" "outside its directory" out
    [ ! -e "rc/sub/over-${p%.*}.qcow2" ] && ok || bad "a refused create left rc/sub/over-${p%.*}.qcow2"
done
expect_exit 0 "a parent in the same directory is fine" "$VDKIT" create -f qcow2 -b p.vmdk rc/same.qcow2
expect_exit 0 "and opens" "$VDKIT" info rc/same.qcow2

finish
