#!/usr/bin/env bash
# Compacting an image that other images are made over (docs/cli.md
# `compact`): compact changes nothing a reader sees, so it keeps the image's
# modification id (VMDK CID, VDI modification UUID) and its children still
# open and read what they read before (qemu-img is the oracle where it reads
# the chain). Chains made by vdkit and by qemu-img, VMDK and VDI, the parent
# or a middle image compacted. Compact never grows a file (also one whose
# last block the end of the file cuts). A compact cut off at any write is
# covered by tests/unit/fault_test.cpp.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3

# The modification id as the file holds it: the CID line of a VMDK's
# descriptor, the modification UUID field (0x198) of a VDI header.
mod_id() {
    case $1 in
    # qemu-img writes the CID without leading zeros and vdkit with them: compare the number.
    *.vmdk) printf 'CID=%08x' "0x$(grep -a -m1 '^CID=' "$1" | cut -d= -f2)" ;;
    *.vdi) od -A n -t x1 -j $((0x198)) -N 16 "$1" | tr -d ' \n' ;;
    esac
}
# The parent gets data, zeros written as data (compact gives them back) and
# a discarded hole in the middle.
fill_parent() { # fill_parent <fmt> <image>
    qemu-io -f "$1" -c 'write -P 0x11 0 1M' -c 'write -P 0 1M 1M' -c 'write -P 0x22 2M 1M' \
        -c 'write -P 0 5M 1M' -c 'write -P 0x23 7M 1M' "$2" > /dev/null
}

# 1. The parent is compacted; its child (made by vdkit or qemu-img) reads the same.
for fmt in vmdk vdi; do
    for maker in vdkit qemu; do
        [ $fmt = vdi ] && [ $maker = qemu ] && continue # qemu does not open VDI differencing images
        d=$fmt-$maker; mkdir $d
        if [ $maker = qemu ]; then
            qemu-img create -q -f $fmt $d/base.$fmt 16M
            fill_parent $fmt $d/base.$fmt
            qemu-img create -q -f $fmt -b base.$fmt -F $fmt $d/child.$fmt
            qemu-io -f $fmt -c 'write -P 0x33 1M 64k' -c 'write -P 0x34 9M 1M' $d/child.$fmt > /dev/null
        else
            "$VDKIT" -q create -f $fmt $d/base.$fmt 16M
            fill_parent $fmt $d/base.$fmt
            "$VDKIT" -q discard $d/base.$fmt 2M:1M || bad "$d: discard"
            "$VDKIT" -q convert -O raw $d/base.$fmt $d/want.raw
            qemu-io -f raw -c 'write -P 0x33 1M 64k' -c 'write -P 0x34 9M 1M' $d/want.raw > /dev/null
            "$VDKIT" -q convert -f raw -O $fmt -B base.$fmt -F $fmt $d/want.raw $d/child.$fmt || bad "$d: child"
        fi
        "$VDKIT" -q convert -O raw $d/child.$fmt $d/child-before.raw
        [ $fmt = vmdk ] && qemu-img convert -O raw $d/child.$fmt $d/child-qemu.raw
        [ $fmt = vmdk ] && { cmp -s $d/child-before.raw $d/child-qemu.raw && ok || bad "$d: vdkit and qemu-img read the chain differently before compact"; }
        "$VDKIT" -q convert -O raw $d/base.$fmt $d/base-before.raw
        id=$(mod_id $d/base.$fmt); size=$(stat -c %s $d/base.$fmt)
        expect_exit 0 "$d: compact" "$VDKIT" compact $d/base.$fmt
        [ "$(mod_id $d/base.$fmt)" = "$id" ] && ok || bad "$d: compact changed the modification id ($id -> $(mod_id $d/base.$fmt))"
        [ "$(stat -c %s $d/base.$fmt)" -lt "$size" ] && ok || bad "$d: compact did not shrink the parent ($size -> $(stat -c %s $d/base.$fmt))"
        expect_exit 0 "$d: the child opens after its parent was compacted" "$VDKIT" info $d/child.$fmt
        "$VDKIT" -q convert -O raw $d/child.$fmt $d/child-after.raw && cmp -s $d/child-after.raw $d/child-before.raw && ok \
            || bad "$d: the child reads differently after its parent was compacted"
        if [ $fmt = vmdk ]; then
            qemu-img compare -q $d/child.$fmt $d/child-before.raw && ok || bad "$d: qemu-img reads the child differently"
            qemu-img check -q $d/base.$fmt && ok || bad "$d: qemu-img check of the compacted parent"
        else
            qemu-img compare -q -f vdi $d/base.$fmt $d/base-before.raw && ok || bad "$d: qemu-img reads the compacted parent differently"
            qemu-img check -q -f vdi $d/base.$fmt && ok || bad "$d: qemu-img check of the compacted parent"
        fi
        expect_exit 0 "$d: check of the compacted parent" "$VDKIT" check $d/base.$fmt
        # A second compact has nothing left to give back: same size, same id.
        size=$(stat -c %s $d/base.$fmt)
        expect_exit 0 "$d: compact again" "$VDKIT" compact $d/base.$fmt
        [ "$(stat -c %s $d/base.$fmt)" = "$size" ] && [ "$(mod_id $d/base.$fmt)" = "$id" ] && ok \
            || bad "$d: a second compact changed the size or the id"
    done
done

# 2. A middle image is compacted (its blocks equal to the parent are given
#    back through discard): the top still opens and reads the same.
for fmt in vmdk vdi; do
    d=mid-$fmt; mkdir $d
    "$VDKIT" -q create -f $fmt $d/base.$fmt 16M
    qemu-io -f $fmt -c 'write -P 0x11 0 4M' $d/base.$fmt > /dev/null
    "$VDKIT" -q convert -O raw $d/base.$fmt $d/mid.raw
    qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x44 6M 1M' -c 'write -P 0 8M 1M' $d/mid.raw > /dev/null
    "$VDKIT" -q convert -f raw -O $fmt -B base.$fmt -F $fmt $d/mid.raw $d/mid.$fmt
    # convert skips what the base already shows: write the equal block as data.
    "$VDKIT" -q convert -O raw $d/mid.$fmt $d/top.raw
    qemu-io -f raw -c 'write -P 0x55 12M 1M' $d/top.raw > /dev/null
    "$VDKIT" -q convert -f raw -O $fmt -B mid.$fmt -F $fmt $d/top.raw $d/top.$fmt
    id=$(mod_id $d/mid.$fmt); size=$(stat -c %s $d/mid.$fmt)
    expect_exit 0 "$d: compact the middle image" "$VDKIT" compact $d/mid.$fmt
    [ "$(mod_id $d/mid.$fmt)" = "$id" ] && ok || bad "$d: compact changed the middle image's id"
    [ "$(stat -c %s $d/mid.$fmt)" -le "$size" ] && ok || bad "$d: compact grew the middle image"
    "$VDKIT" -q convert -O raw $d/top.$fmt $d/top-after.raw && cmp -s $d/top-after.raw $d/top.raw && ok \
        || bad "$d: the top reads differently after the middle image was compacted"
    [ $fmt = vmdk ] && { qemu-img compare -q $d/top.$fmt $d/top.raw && ok || bad "$d: qemu-img reads the top differently"; }
done

# 3. Compact never grows a file: the last data block is cut by the end of
#    the file (it reads as zeros past it); compact leaves it cut.
for fmt in vmdk vdi; do
    d=cut-$fmt; mkdir $d
    qemu-img create -q -f $fmt $d/c.$fmt 8M
    qemu-io -f $fmt -c 'write -P 0x11 0 1M' -c 'write -P 0 1M 1M' -c 'write -P 0x22 3M 1M' $d/c.$fmt > /dev/null
    truncate -s $(($(stat -c %s $d/c.$fmt) - 30000)) $d/c.$fmt
    "$VDKIT" -q convert -O raw $d/c.$fmt $d/before.raw
    size=$(stat -c %s $d/c.$fmt)
    expect_exit 0 "$d: compact" "$VDKIT" compact $d/c.$fmt
    [ "$(stat -c %s $d/c.$fmt)" -le "$size" ] && ok || bad "$d: compact grew the file ($size -> $(stat -c %s $d/c.$fmt))"
    "$VDKIT" -q convert -O raw $d/c.$fmt $d/after.raw && cmp -s $d/after.raw $d/before.raw && ok \
        || bad "$d: compact changed what the disk reads"
    qemu-img compare -q -f $fmt $d/c.$fmt $d/before.raw && ok || bad "$d: qemu-img reads the compacted image differently"
done

# 4. A VMDK grown by 'vdkit resize' has its grain tables and directories at
#    the end, past free grains (zeros given back): compact moves them down
#    and gives every free grain back; check then names none, qemu-img reads
#    the same and a second compact changes nothing. Made by qemu-img and by
#    vdkit, grown a little and a lot.
for maker in qemu vdkit; do
    for grow in 1G 100G; do
        d=grow-$maker-$grow; mkdir $d
        if [ $maker = qemu ]; then qemu-img create -q -f vmdk $d/w.vmdk 64M; else "$VDKIT" -q create -f vmdk $d/w.vmdk 64M; fi
        qemu-io -f vmdk -c 'write -P 1 0 4M' -c 'write -P 0 4M 4M' -c 'write -P 2 60M 1M' $d/w.vmdk > /dev/null
        "$VDKIT" -q convert -O raw $d/w.vmdk $d/before.raw
        expect_exit 0 "$d: resize" "$VDKIT" resize $d/w.vmdk $grow
        size=$(stat -c %s $d/w.vmdk)
        expect_exit 0 "$d: compact" "$VDKIT" compact --output=json $d/w.vmdk
        after=$(stat -c %s $d/w.vmdk)
        # JSON names the file size before and after (size-*: allocated bytes).
        says "$d: file-size-before" "\"file-size-before\": $size"
        says "$d: file-size-after" "\"file-size-after\": $after"
        # 4 MiB of zeros were 64 grains; at least 63 of them go back.
        [ $((size - after)) -ge $((63 * 65536)) ] && ok || bad "$d: compact gave back only $((size - after)) bytes"
        "$VDKIT" check $d/w.vmdk > $d/check.txt 2>&1
        grep -q 'grains inside the file are free' $d/check.txt && bad "$d: free grains left after compact: $(cat $d/check.txt)" || ok
        qemu-img check -q $d/w.vmdk && ok || bad "$d: qemu-img check fails after compact"
        # The grown part reads as zeros: qemu-img compares it with the raw so.
        qemu-img compare -q -f vmdk -F raw $d/w.vmdk $d/before.raw 2> /dev/null && ok || bad "$d: compact changed what the disk reads"
        expect_exit 0 "$d: second compact" "$VDKIT" compact $d/w.vmdk
        [ "$(stat -c %s $d/w.vmdk)" = "$after" ] && ok || bad "$d: a second compact changed the file"
    done
done

finish
