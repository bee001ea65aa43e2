#!/usr/bin/env bash
# Normal use leaves images that check clean (docs/check.md, "Free space"):
# writes, zeroing and discards — by vdkit (discard, discard -z: the C API's
# discard and write_zeroes) and by qemu-io (write, write -z) — then
# `vdkit check` exits 0 and `qemu-img check` agrees. VMDK: grains given back
# inside the file are free space (a note) that vdkit's next grains reuse
# (the file does not grow), and free grains at the end are cut off. VDI:
# given-back blocks are filled with the last ones and the file truncated.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io

clean() { # clean <what> <image>: both checks pass, vdkit with exit 0
    expect_exit 0 "$1: vdkit check" "$VDKIT" check "$2"
    qemu-img check -q "$2" && ok || bad "$1: qemu-img check"
}
same() { # same <what> <image> <raw>: vdkit and qemu-img read the raw file's content
    qemu-img compare -q -F raw "$2" "$3" && ok || bad "$1: qemu-img reads something else"
    "$VDKIT" -q convert -O raw "$2" "$2.raw" && cmp -s "$2.raw" "$3" && ok || bad "$1: vdkit reads something else"
    rm -f "$2.raw"
}
size() { stat -c %s "$1"; }

for zg in false true; do
    v=zg-$zg.vmdk
    "$VDKIT" -q create -f vmdk -o zeroed-grain=$zg $v 16M
    truncate -s 16M model.raw
    for img in $v model.raw; do
        f=vmdk; [ $img = model.raw ] && f=raw
        qemu-io -f $f -c 'write -P 0x11 0 4M' -c 'write -P 0x12 6M 1M' $img > /dev/null
    done
    s0=$(size $v)
    # A hole in the middle: free space, not a leak; the file keeps its size.
    "$VDKIT" -q discard $v 1M:512K && qemu-io -f raw -c 'write -z 1M 512K' model.raw > /dev/null
    clean "zg=$zg: discard in the middle" $v
    says "zg=$zg: the hole is reported as free grains" "grains inside the file are free"
    [ "$(size $v)" = "$s0" ] && ok || bad "zg=$zg: a discard in the middle changed the file size"
    # Zeroing the last grains: they are cut off the end of the file.
    "$VDKIT" -q discard -z $v 6M:1M && qemu-io -f raw -c 'write -z 6M 1M' model.raw > /dev/null
    clean "zg=$zg: zeroing the last grains" $v
    [ "$(size $v)" = $((s0 - 1048576)) ] && ok || bad "zg=$zg: the freed grains at the end were not cut off ($s0 -> $(size $v))"
    same "zg=$zg: after discards" $v model.raw
    # qemu-io zeroes grains (zeroed-grain extents keep the old grain unused), then vdkit discards.
    if [ $zg = true ]; then
        qemu-io -f vmdk -c 'write -z 2M 256K' $v > /dev/null && qemu-io -f raw -c 'write -z 2M 256K' model.raw > /dev/null
        clean "zg=$zg: qemu-io write -z" $v
    fi
    "$VDKIT" -q discard $v 3M:128K && qemu-io -f raw -c 'write -z 3M 128K' model.raw > /dev/null
    clean "zg=$zg: vdkit discard after qemu" $v
    same "zg=$zg: after qemu and vdkit" $v model.raw
    # New grains written by vdkit go into the free ones: the file does not grow.
    s1=$(size $v)
    qemu-io -f raw -c 'write -P 0x13 10M 512K' model.raw > /dev/null
    expect_exit 0 "zg=$zg: vdkit writes new grains" "$VDKIT" -q convert -n -f raw -O vmdk model.raw $v
    [ "$(size $v)" -le "$s1" ] && ok || bad "zg=$zg: new grains did not reuse the free ones ($s1 -> $(size $v))"
    clean "zg=$zg: after new grains" $v
    same "zg=$zg: after new grains" $v model.raw
    rm -f model.raw
done

# Unused bytes after the last grain (here a grain and a ragged part, as
# another writer may leave them) are cut off by vdkit's next session that
# gives grains back: the image checks clean afterwards.
"$VDKIT" -q create -f vmdk tail.vmdk 16M
qemu-io -f vmdk -c 'write -P 0x11 0 1M' tail.vmdk > /dev/null
s0=$(size tail.vmdk)
head -c $((65536 + 3000)) /dev/urandom >> tail.vmdk
expect_exit 3 "tail: unused bytes at the end are a leak" "$VDKIT" check tail.vmdk
"$VDKIT" -q discard tail.vmdk 512K:64K
clean "tail: after a discard" tail.vmdk
[ "$(size tail.vmdk)" = "$s0" ] && ok || bad "tail: the unused end was not cut off ($s0 -> $(size tail.vmdk))"

# VDI: the same sequences (qemu's 1 MiB blocks).
for sub in vdkit qemu; do
    v=$sub.vdi
    if [ $sub = qemu ]; then qemu-img create -q -f vdi $v 16M; else "$VDKIT" -q create -f vdi $v 16M; fi
    truncate -s 16M model.raw
    for img in $v model.raw; do
        f=vdi; [ $img = model.raw ] && f=raw
        qemu-io -f $f -c 'write -P 0x11 0 4M' -c 'write -P 0x12 6M 1M' $img > /dev/null
    done
    s0=$(size $v)
    "$VDKIT" -q discard $v 1M:1M && qemu-io -f raw -c 'write -z 1M 1M' model.raw > /dev/null
    clean "$sub.vdi: discard in the middle" $v
    [ "$(size $v)" = $((s0 - 1048576)) ] && ok || bad "$sub.vdi: the freed block was not given back"
    "$VDKIT" -q discard -z $v 6M:1M && qemu-io -f raw -c 'write -z 6M 1M' model.raw > /dev/null
    clean "$sub.vdi: zeroing the last block" $v
    qemu-io -f vdi -c 'write -P 0x14 12M 1M' $v > /dev/null && qemu-io -f raw -c 'write -P 0x14 12M 1M' model.raw > /dev/null
    "$VDKIT" -q discard $v 2M:1M && qemu-io -f raw -c 'write -z 2M 1M' model.raw > /dev/null
    clean "$sub.vdi: vdkit discard after qemu" $v
    same "$sub.vdi: after discards" $v model.raw
    rm -f model.raw
done

finish
