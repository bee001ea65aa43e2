#!/usr/bin/env bash
# Two vdkit processes on one image, for every writable format and without
# QEMU (qemu_lock_test.sh covers VMDK against QEMU's own processes): a
# second writer is refused, readers coexist, a reader keeps writers out, a
# writer keeps plain readers out (not -U readers), and a writer killed with
# SIGKILL leaves no lock behind (the kernel drops OFD locks with the process).
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"

HOLD="$VDKIT_BUILD_DIR/tests/vdkit_hold_image"
[ -x "$HOLD" ] || { echo "FAIL: $HOLD is not built"; exit 1; }

pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done; rm -rf "$work"' EXIT

# hold [-w] [-U] FILE: vdkit_hold_image holds FILE until release; sets hpid.
hold() {
    local file=${*: -1}
    rm -f hold.in hold.out hold.err
    mkfifo hold.in
    "$HOLD" "$@" < hold.in > hold.out 2> hold.err &
    hpid=$!
    pids+=("$hpid")
    exec 7> hold.in
    local i
    for ((i = 0; i < 400; i++)); do
        grep -q '^ready$' hold.out 2> /dev/null && return 0
        kill -0 "$hpid" 2> /dev/null || break
        sleep 0.025
    done
    echo "FAIL: vdkit_hold_image $* did not open $file:"
    cat hold.err
    exit 1
}
release() {
    exec 7>&-
    wait "$hpid" || bad "vdkit_hold_image failed closing: $(cat hold.err)"
}
# refused WHAT PATTERN CMD...: CMD fails and its stderr matches PATTERN.
refused() {
    local what=$1 pattern=$2
    shift 2
    if "$@" > cmd.out 2> cmd.err; then
        bad "$what: succeeded but should be refused"
    elif grep -qE -- "$pattern" cmd.err; then
        ok
    else
        bad "$what: refused without /$pattern/: $(cat cmd.err)"
    fi
}
works() {
    local what=$1
    shift
    if "$@" > cmd.out 2> cmd.err; then ok; else bad "$what: failed: $(cat cmd.err)"; fi
}

"$VDKIT" create -f raw disk.img 4M > /dev/null || bad "create raw"
"$VDKIT" create -f vdi disk.vdi 4M > /dev/null || bad "create vdi"
"$VDKIT" create -f vmdk disk.vmdk 4M > /dev/null || bad "create vmdk"
"$VDKIT" create -f vmdk -o subformat=twoGbMaxExtentSparse,split-size=1M split.vmdk 4M > /dev/null || bad "create split"
"$VDKIT" snapshot disk.vdi child.vdi > /dev/null || bad "snapshot vdi"

for entry in raw:disk.img vdi:disk.vdi vmdk:disk.vmdk vmdk:split.vmdk vdi:child.vdi; do
    fmt=${entry%%:*}
    img=${entry#*:}
    hold -w -f "$fmt" "$img"
    refused "$img: a second writer" "in use for writing by another process" "$HOLD" -w -f "$fmt" "$img" < /dev/null
    refused "$img: a reader beside a writer" "in use for writing.*-U/--force-share" "$VDKIT" info -f "$fmt" "$img"
    works "$img: a -U reader beside a writer" "$VDKIT" info -f "$fmt" -U "$img"
    release

    hold -f "$fmt" "$img"
    works "$img: a second reader" "$VDKIT" info -f "$fmt" "$img"
    works "$img: a third reader, through the C API" "$HOLD" -f "$fmt" "$img" < /dev/null
    refused "$img: a writer beside a reader" "does not let others write it" "$HOLD" -w -f "$fmt" "$img" < /dev/null
    release

    # A killed writer leaves no lock: the next writer opens at once.
    hold -w -f "$fmt" "$img"
    kill -9 "$hpid"
    wait "$hpid" 2> /dev/null
    exec 7>&-
    works "$img: a writer after the last one was killed" "$HOLD" -w -f "$fmt" "$img" < /dev/null
done
# The parent of an open child: in use for reading, so no writer gets it.
hold -w child.vdi
refused "the parent of a child open for writing" "does not let others write it" "$HOLD" -w disk.vdi < /dev/null
works "the parent of a child open for writing, read" "$VDKIT" info disk.vdi
release
finish
