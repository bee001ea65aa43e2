#!/usr/bin/env bash
# The file transport's image locks against real qemu-io and qemu-img, in
# both directions, and -U/--force-share (plugins/transports/file/README.md).
#
# QEMU's file-posix driver takes open file description read locks on byte
# 100 + i ("holds permission i") and 200 + i ("does not share permission
# i"); permissions: 0 consistent read, 1 write, 2 write unchanged, 3 resize.
# What each side holds is read from /proc/locks and checked against what
# QEMU itself holds for the same kind of open, then every pair of users is
# run for real. Holders stay open for the test's duration: qemu-io under
# `-c 'sleep N'` (killed when done), vdkit through vdkit_hold_image (opens
# through the C API, prints "ready", closes when its stdin ends). Nothing
# waits on a timer: a holder is "up" once its locks are in /proc/locks or
# it said ready.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
. "$VDKIT_SOURCE_DIR/tests/support/hold_lib.sh"
require_tools qemu-img qemu-io
[ -x "$HOLD" ] || { echo "FAIL: $HOLD is not built"; exit 1; }
[ -r /proc/locks ] || { echo "FAIL: /proc/locks is needed to see the locks"; exit 1; }

loopdev=
cleanup() {
    local p
    [ -n "$loopdev" ] && losetup -d "$loopdev" 2> /dev/null
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2> /dev/null; done
}
at_exit cleanup

# The OFD lock bytes /proc/locks shows on FILE's inode, one "start-end" per
# line, sorted (several holders: all of them).
held() {
    local ino
    ino=$(stat -c %i "$1")
    awk -v ino="$ino" '$2 == "OFDLCK" { n = split($6, d, ":"); if (d[n] == ino) print $7 "-" $8 }' /proc/locks | sort -u |
        tr '\n' ' '
}
# Waits (bounded) until FILE carries at least one OFD lock (or PID died).
wait_locked() {
    local i
    for ((i = 0; i < 2400; i++)); do # up to 60 s
        [ -n "$(held "$1")" ] && return 0
        kill -0 "$2" 2> /dev/null || return 1
        sleep 0.025
    done
    return 1
}
wait_unlocked() {
    local i
    for ((i = 0; i < 2400; i++)); do # up to 60 s
        [ -z "$(held "$1")" ] && return 0
        sleep 0.025
    done
    return 1
}

# qemu_hold [-r] FMT FILE: qemu-io holds FILE open (read-only with -r) until
# qemu_release. Sets qpid.
qemu_hold() {
    local ro=()
    [ "$1" = -r ] && { ro=(-r); shift; }
    qemu-io "${ro[@]}" -f "$1" -c 'sleep 600000' "$2" > qemu-io.out 2>&1 &
    qpid=$!
    pids+=("$qpid")
    wait_locked "$2" "$qpid" || { echo "FAIL: qemu-io did not come up on $2:"; cat qemu-io.out; exit 1; }
}
qemu_release() {
    kill "$qpid" 2> /dev/null
    wait "$qpid" 2> /dev/null
    wait_unlocked "$1" || bad "qemu-io's locks on $1 outlived it"
}


expect_usage() { # a usage error: exit 2, but 1 for check and compare (as qemu-img; docs/cli.md)
    local what=$1 pattern=$2
    shift 2
    local want=2
    case " $* " in *" check "* | *" compare "*) want=1 ;; esac
    "$@" > cmd.out 2> cmd.err
    local rc=$?
    if [ "$rc" -eq "$want" ] && grep -qE -- "$pattern" cmd.err; then ok; else bad "$what: exit $rc, want $want and /$pattern/: $(cat cmd.err)"; fi
}

# ---- images -----------------------------------------------------------------------
qemu-img create -q -f vmdk img.vmdk 64M
qemu-io -f vmdk -c 'write -P 0x5a 1M 1M' img.vmdk > /dev/null
qemu-img create -q -f vmdk other.vmdk 64M
qemu-img create -q -f raw img.raw 8M
# Split extents: three 2 GiB extent files, each locked like the descriptor.
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse split.vmdk 5G
extent=split-s002.vmdk
[ -f "$extent" ] || { echo "FAIL: qemu-img made no $extent"; ls; exit 1; }

# ---- what QEMU holds on this machine: the protocol vdkit must match --------------------
# A writer of a vmdk holds consistent read, write, resize (100, 101, 103)
# and does not share write, resize (201, 203); a reader holds consistent
# read (100) and shares no write or resize either.
want_writer="100-100 101-101 103-103 201-201 203-203 "
want_reader="100-100 201-201 203-203 "
norm() { tr ' ' '\n' | awk -F- 'NF == 2 { for (b = $1; b <= $2; b++) print b "-" b }' | sort -u | tr '\n' ' '; }

qemu_hold vmdk img.vmdk
qemu_writer=$(held img.vmdk | norm)
[ "$qemu_writer" = "$want_writer" ] && ok || bad "qemu-io (rw) holds [$qemu_writer], the protocol expected [$want_writer]"

# ---- qemu-io writes: vdkit readers need -U, vdkit writers are kept out -----------------
expect_refused "check -r while qemu-io writes" "img.vmdk is in use for writing by another process.*byte 101" \
    "$VDKIT" check -r img.vmdk
expect_refused "info while qemu-io writes" "in use for writing.*-U/--force-share" "$VDKIT" info img.vmdk
expect_ok "info -U while qemu-io writes" "$VDKIT" info -U img.vmdk
grep -q "virtual size: 64 MiB" cmd.out && ok || bad "info -U printed: $(cat cmd.out)"
expect_ok "info --force-share --output=json" "$VDKIT" info --force-share --output=json img.vmdk
expect_refused "map while qemu-io writes" "-U/--force-share" "$VDKIT" map img.vmdk
expect_ok "map -U" "$VDKIT" map -U --output=json img.vmdk
expect_refused "check (no -r) while qemu-io writes" "-U/--force-share" "$VDKIT" check img.vmdk
expect_ok "check -U" "$VDKIT" check -U img.vmdk
expect_ok "check -U -r -n (dry run: reads only)" "$VDKIT" check -U -r -n img.vmdk
expect_usage "check -U -r" "force-share.*check -r writes" "$VDKIT" check -U -r img.vmdk
expect_refused "measure while qemu-io writes" "-U/--force-share" "$VDKIT" measure -O vdi img.vmdk
expect_ok "measure -U" "$VDKIT" measure -U -O vdi img.vmdk
expect_refused "compare while qemu-io writes" "-U/--force-share" "$VDKIT" compare other.vmdk img.vmdk
"$VDKIT" compare -U img.vmdk other.vmdk > cmd.out 2> cmd.err
[ $? -eq 1 ] && grep -q "mismatch" cmd.out && ok || bad "compare -U: $(cat cmd.out cmd.err)"
expect_refused "convert from it" "-U/--force-share" "$VDKIT" convert -O raw img.vmdk copy.raw
[ ! -e copy.raw ] && ok || bad "a refused convert left copy.raw"
expect_ok "convert -U from it" "$VDKIT" convert -U -O raw img.vmdk copy.raw
cmp <(head -c 2M copy.raw | tail -c 1M) <(head -c 1M /dev/zero | tr '\0' '\132') && ok || bad "convert -U copied other data"
# A command that writes elsewhere but reads this image (snapshot over it) cannot take -U:
# the advice must say to close it first, not only to use -U.
expect_refused "snapshot over an image qemu-io writes" "close it there first, or, to only look at it" \
    "$VDKIT" snapshot img.vmdk snap-over-held.vmdk
[ ! -e snap-over-held.vmdk ] && ok || bad "a refused snapshot left snap-over-held.vmdk"
# --overwrite never replaces an image in use: the VM would go on writing into the unlinked
# file and lose everything it writes (create, convert and a batch job all replace files).
ino=$(stat -c %i img.vmdk)
expect_refused "create --overwrite of an image qemu-io writes" "img.vmdk is in use.*never replaces an image in use" \
    "$VDKIT" create -f vmdk --overwrite img.vmdk 16M
expect_refused "convert --overwrite onto an image qemu-io writes" "img.vmdk is in use.*never replaces an image in use" \
    "$VDKIT" convert --overwrite -O vmdk other.vmdk img.vmdk
[ "$(stat -c %i img.vmdk)" = "$ino" ] && ok || bad "img.vmdk was replaced while qemu-io held it"
expect_refused "a vdkit writer (C API) while qemu-io writes" "in use for writing.*byte 101.*close it there" \
    "$HOLD" -w img.vmdk
expect_refused "the C API refuses force-share with write" "force-share.*cannot be opened for writing" \
    "$HOLD" -w -U img.vmdk
qemu_release img.vmdk
expect_ok "check -r once qemu-io is gone" "$VDKIT" check -r img.vmdk

# ---- qemu-io reads: vdkit readers coexist, writers are kept out ------------------------
qemu_hold -r vmdk img.vmdk
qemu_reader=$(held img.vmdk | norm)
[ "$qemu_reader" = "$want_reader" ] && ok || bad "qemu-io -r holds [$qemu_reader], the protocol expected [$want_reader]"
expect_ok "info beside qemu-io -r" "$VDKIT" info img.vmdk
expect_ok "check beside qemu-io -r" "$VDKIT" check img.vmdk
expect_refused "check -r beside qemu-io -r" "does not let others write it.*byte 201" "$VDKIT" check -r img.vmdk
expect_refused "a vdkit writer beside qemu-io -r" "does not let others write it.*byte 201" "$HOLD" -w img.vmdk
qemu_release img.vmdk

# ---- vdkit writes: QEMU is kept out unless it forces sharing -----------------------------
hold_image -w img.vmdk
vdkit_writer=$(held img.vmdk | norm)
[ "$vdkit_writer" = "$qemu_writer" ] && ok || bad "the vdkit writer holds [$vdkit_writer], QEMU's writer [$qemu_writer]"
expect_refused "qemu-io rw beside a vdkit writer" 'Failed to get "write" lock' qemu-io -f vmdk -c 'read 0 512' img.vmdk
expect_refused "qemu-io -r beside a vdkit writer" 'Failed to get shared "write" lock' \
    qemu-io -r -f vmdk -c 'read 0 512' img.vmdk
expect_refused "qemu-img info beside a vdkit writer" 'Failed to get shared "write" lock' qemu-img info img.vmdk
expect_ok "qemu-img info -U beside a vdkit writer" qemu-img info -U img.vmdk
expect_ok "qemu-img compare -U beside a vdkit writer" qemu-img compare -U img.vmdk img.vmdk
# Two vdkit processes: the second writer and a plain reader are refused,
# a reader with -U is not.
expect_refused "a second vdkit writer" "in use for writing by another process" "$HOLD" -w img.vmdk
expect_refused "vdkit info beside a vdkit writer" "in use for writing.*-U/--force-share" "$VDKIT" info img.vmdk
expect_ok "vdkit info -U beside a vdkit writer" "$VDKIT" info -U img.vmdk
expect_refused "vdkit check -r beside a vdkit writer" "in use" "$VDKIT" check -r img.vmdk
release_image
[ -z "$(held img.vmdk)" ] && ok || bad "locks outlived the vdkit writer: $(held img.vmdk)"
expect_ok "qemu-io rw once vdkit closed" qemu-io -f vmdk -c 'read 0 512' img.vmdk

# ---- vdkit reads: QEMU readers coexist, QEMU writers are kept out -------------------------
hold_image img.vmdk
vdkit_reader=$(held img.vmdk | norm)
[ "$vdkit_reader" = "$qemu_reader" ] && ok || bad "the vdkit reader holds [$vdkit_reader], QEMU's reader [$qemu_reader]"
expect_ok "qemu-img info beside a vdkit reader" qemu-img info img.vmdk
expect_ok "qemu-io -r beside a vdkit reader" qemu-io -r -f vmdk -c 'read 0 512' img.vmdk
expect_refused "qemu-io rw beside a vdkit reader" 'Failed to get "write" lock' qemu-io -f vmdk -c 'read 0 512' img.vmdk
expect_ok "a second vdkit reader" "$VDKIT" info img.vmdk
expect_refused "a vdkit writer beside a vdkit reader" "does not let others write it.*byte 201" "$VDKIT" check -r img.vmdk
release_image

# ---- -U takes no locks at all ---------------------------------------------------------------
hold_image -U img.vmdk
[ -z "$(held img.vmdk)" ] && ok || bad "a force-share open holds locks: $(held img.vmdk)"
expect_ok "qemu-io rw beside a vdkit -U reader" qemu-io -f vmdk -c 'read 0 512' img.vmdk
release_image

# ---- split extents: every file of the image is locked, and -U locks none ------------------
qemu_hold vmdk split.vmdk
[ "$(held "$extent" | norm)" = "$want_writer" ] && ok || bad "qemu-io holds [$(held "$extent")] on $extent"
expect_refused "info of a split vmdk qemu-io writes" "in use for writing" "$VDKIT" info split.vmdk
expect_ok "info -U of a split vmdk qemu-io writes (extents opened unlocked too)" "$VDKIT" info -U split.vmdk
qemu_release split.vmdk
hold_image -w split.vmdk
[ "$(held "$extent" | norm)" = "$want_writer" ] && ok || bad "the vdkit writer holds [$(held "$extent")] on $extent"
expect_refused "qemu-img info of a split vmdk vdkit writes" 'Failed to get shared "write" lock' qemu-img info split.vmdk
release_image

# ---- a chain: a parent QEMU writes is in use for the child's readers too ---------------------
qemu-img create -q -f vmdk -b img.vmdk -F vmdk child.vmdk
qemu_hold vmdk img.vmdk
expect_refused "info of a child whose parent qemu-io writes" "img.vmdk is in use for writing.*-U" "$VDKIT" info child.vmdk
expect_ok "info -U of that child" "$VDKIT" info -U child.vmdk
qemu_release img.vmdk
# Commands that write take no -U, and say so.
expect_usage "commit -U" "force-share.*this command writes" "$VDKIT" commit -U child.vmdk
expect_usage "resize -U" "force-share.*this command writes" "$VDKIT" resize -U img.vmdk +1M

# ---- raw: QEMU's raw driver shares every permission, vdkit's reader does not share writes --
# (a raw image has no metadata for QEMU to protect; vdkit does not know the
# format when it locks, so its reader still keeps writers out).
qemu_hold raw img.raw
[ "$(held img.raw | norm)" = "100-100 101-101 " ] && ok || bad "qemu-io -f raw holds [$(held img.raw)]"
expect_refused "vdkit info of a raw image qemu-io writes" "in use for writing.*-U/--force-share" "$VDKIT" info img.raw
expect_ok "vdkit info -U of it" "$VDKIT" info -U img.raw
expect_refused "a vdkit writer of it" "in use for writing" "$HOLD" -w -f raw img.raw
qemu_release img.raw
hold_image -w -f raw img.raw
expect_refused "qemu-io -f raw rw beside a vdkit writer" 'Failed to get "write" lock' qemu-io -f raw -c 'read 0 512' img.raw
expect_ok "qemu-img info -f raw beside a vdkit writer (QEMU's raw reader shares writes)" qemu-img info -f raw img.raw
release_image

# ---- a block device is locked like a file (QEMU locks the device node too) ---------------
truncate -s 16M dev.img
if loopdev=$(losetup -f --show dev.img 2> losetup.err) && [ -b "$loopdev" ]; then
    qemu_hold raw "$loopdev"
    expect_refused "vdkit info of a block device qemu-io writes" "$loopdev is in use for writing.*-U" \
        "$VDKIT" info -f raw "$loopdev"
    expect_ok "vdkit info -U of it" "$VDKIT" info -U -f raw "$loopdev"
    qemu_release "$loopdev"
    hold_image -w -f raw "$loopdev"
    expect_refused "qemu-io rw of a block device vdkit writes" 'Failed to get "write" lock' \
        qemu-io -f raw -c 'read 0 512' "$loopdev"
    release_image
    losetup -d "$loopdev" && loopdev=
else
    # Only this part: it needs root and a free loop device (CI has both).
    loopdev=
    skip_part "the block device part: cannot attach a loop device: $(cat losetup.err)"
fi

finish
