#!/usr/bin/env bash
# Two vdkit processes on one image, for every writable format and without
# QEMU (qemu_lock_test.sh covers VMDK against QEMU's own processes): a
# second writer is refused, readers coexist, a reader keeps writers out, a
# writer keeps plain readers out (not -U readers), and a writer killed with
# SIGKILL leaves no lock behind (the kernel drops OFD locks with the process).
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
. "$VDKIT_SOURCE_DIR/tests/support/hold_lib.sh"

[ -x "$HOLD" ] || { echo "FAIL: $HOLD is not built"; exit 1; }

trap 'for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done; rm -rf "$work"' EXIT


"$VDKIT" create -f raw disk.img 4M > /dev/null || bad "create raw"
"$VDKIT" create -f vdi disk.vdi 4M > /dev/null || bad "create vdi"
"$VDKIT" create -f vmdk disk.vmdk 4M > /dev/null || bad "create vmdk"
"$VDKIT" create -f vmdk -o subformat=twoGbMaxExtentSparse,split-size=1M split.vmdk 4M > /dev/null || bad "create split"
"$VDKIT" snapshot disk.vdi child.vdi > /dev/null || bad "snapshot vdi"

for entry in raw:disk.img vdi:disk.vdi vmdk:disk.vmdk vmdk:split.vmdk vdi:child.vdi; do
    fmt=${entry%%:*}
    img=${entry#*:}
    hold_image -w -f "$fmt" "$img"
    expect_refused "$img: a second writer" "in use for writing by another process" "$HOLD" -w -f "$fmt" "$img" < /dev/null
    expect_refused "$img: a reader beside a writer" "in use for writing.*-U/--force-share" "$VDKIT" info -f "$fmt" "$img"
    expect_ok "$img: a -U reader beside a writer" "$VDKIT" info -f "$fmt" -U "$img"
    release_image

    hold_image -f "$fmt" "$img"
    expect_ok "$img: a second reader" "$VDKIT" info -f "$fmt" "$img"
    expect_ok "$img: a third reader, through the C API" "$HOLD" -f "$fmt" "$img" < /dev/null
    expect_refused "$img: a writer beside a reader" "does not let others write it" "$HOLD" -w -f "$fmt" "$img" < /dev/null
    release_image

    # A killed writer leaves no lock: the next writer opens at once.
    hold_image -w -f "$fmt" "$img"
    kill -9 "$hpid"
    wait "$hpid" 2> /dev/null
    exec 7>&-
    expect_ok "$img: a writer after the last one was killed" "$HOLD" -w -f "$fmt" "$img" < /dev/null
done
# The parent of an open child: in use for reading, so no writer gets it.
hold_image -w child.vdi
expect_refused "the parent of a child open for writing" "does not let others write it" "$HOLD" -w disk.vdi < /dev/null
expect_ok "the parent of a child open for writing, read" "$VDKIT" info disk.vdi
release_image
finish
