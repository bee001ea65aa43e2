#!/usr/bin/env bash
# vdkit fuse: a disk as one file through FUSE. Images are made by qemu-img
# and qemu-io; what the mount shows is compared with `qemu-img convert -O
# raw`, holes with SEEK_DATA/SEEK_HOLE against qemu-img map, writes made with
# dd and fallocate through the mount are checked by qemu-img after unmount.
set -u
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io fusermount3 fallocate python3
[ -c /dev/fuse ] || skip "no /dev/fuse on this machine"

M=64M
qemu-img create -q -f vmdk d.vmdk $M
qemu-io -f vmdk -c "write -P 0x11 1M 1M" -c "write -P 0x22 40M 64k" d.vmdk > /dev/null
qemu-img convert -O raw d.vmdk expect.raw

mounted_pid=
# mount IMAGE MOUNTPOINT FILE [vdkit fuse options]: start vdkit fuse in the
# background and wait until FILE shows the disk.
mount_view() {
    local image=$1 mnt=$2 file=$3
    shift 3
    "$VDKIT" fuse "$@" "$image" "$mnt" 2> fuse.log &
    mounted_pid=$!
    for _ in $(seq 100); do
        mountpoint -q "$mnt" 2> /dev/null || grep -q " $(readlink -f "$mnt") fuse" /proc/mounts && [ -e "$file" ] && return 0
        kill -0 $mounted_pid 2> /dev/null || break
        sleep 0.1
    done
    bad "vdkit fuse did not mount $image on $mnt"; sed 's/^/    /' fuse.log
    return 1
}
unmount_view() { # unmount and wait for vdkit fuse to close the disk and exit 0
    fusermount3 -u "$1" && wait $mounted_pid && ok || bad "unmount of $1 / vdkit fuse's exit status"
    mounted_pid=
}
at_exit 'for m in "$work"/mnt "$work"/cover; do fusermount3 -u -z "$m" 2> /dev/null; done'

mkdir mnt
if mount_view d.vmdk mnt mnt/disk; then
    [ "$(stat -c %s mnt/disk)" = 67108864 ] && ok || bad "the file's size is not the disk's"
    cmp -s mnt/disk expect.raw && ok || bad "the mount reads other bytes than qemu-img convert"
    # SEEK_DATA / SEEK_HOLE follow the allocation qemu-img map reports.
    python3 - mnt/disk > seeks << 'PY'
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
def seek(off, how):
    try:
        return os.lseek(fd, off, how)
    except OSError as e:
        return "ENXIO" if e.errno == errno.ENXIO else "errno %d" % e.errno
M = 1 << 20
print(seek(0, os.SEEK_DATA), seek(M, os.SEEK_HOLE), seek(2 * M, os.SEEK_DATA),
      seek(40 * M, os.SEEK_HOLE), seek(41 * M, os.SEEK_DATA), seek(63 * M, os.SEEK_HOLE))
PY
    qemu-img map -U --output=json d.vmdk | python3 -c '
import json, sys
M = 1 << 20
data = [(e["start"], e["start"] + e["length"]) for e in json.load(sys.stdin) if e["data"]]
def seek_data(off):
    for a, b in data:
        if b > off: return max(a, off)
    return "ENXIO"
def seek_hole(off):
    for a, b in data:
        if a <= off < b: off = b
    return off
print(seek_data(0), seek_hole(M), seek_data(2 * M), seek_hole(40 * M), seek_data(41 * M), seek_hole(63 * M))' > expect.seeks
    cmp -s seeks expect.seeks && ok || bad "SEEK_DATA/SEEK_HOLE: $(cat seeks) (qemu-img map says $(cat expect.seeks))"

    # While mounted for writing, the image is locked against other writers.
    expect_exit 1 "a second writer is refused while mounted" "$VDKIT" resize d.vmdk 128M
    says "the refusal says the image is in use" "in use"

    # Writes with dd, a hole punched and a range zeroed with fallocate.
    random_bytes 192K > pattern
    dd if=pattern of=mnt/disk bs=64K seek=100 conv=notrunc,fsync status=none && ok || bad "dd into the mount"
    dd if=pattern of=expect.raw bs=64K seek=100 conv=notrunc status=none
    fallocate --punch-hole -o $((1024 * 1024)) -l 65536 mnt/disk && ok || bad "punch a hole through the mount"
    fallocate --zero-range -o $((40 * 1024 * 1024)) -l 4096 mnt/disk && ok || bad "zero a range through the mount"
    python3 - expect.raw << 'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1 << 20); f.write(bytes(65536))
    f.seek(40 << 20); f.write(bytes(4096))
PY
    cmp -s mnt/disk expect.raw && ok || bad "the mount does not read back what was written"
    expect_exit 1 "writing past the end is refused" dd if=pattern of=mnt/disk bs=64K seek=1024 count=1 conv=notrunc status=none
    expect_exit 1 "the file cannot be truncated" truncate -s 1M mnt/disk
    unmount_view mnt
    expect_exit 0 "qemu-img check after unmount" qemu-img check d.vmdk
    qemu-img convert -O raw d.vmdk after.raw
    cmp -s after.raw expect.raw && ok || bad "after unmount the image holds other bytes than were written"
fi

# Read-only: writes refused, the image unchanged.
if mount_view d.vmdk mnt mnt/disk --read-only; then
    [ "$(stat -c %a mnt/disk)" = 400 ] && ok || bad "a read-only view's file mode is $(stat -c %a mnt/disk)"
    expect_exit 1 "a read-only view refuses writes" dd if=pattern of=mnt/disk bs=64K count=1 conv=notrunc status=none
    expect_exit 0 "a reader beside a read-only view" "$VDKIT" info d.vmdk
    unmount_view mnt
    qemu-img convert -O raw d.vmdk ro.raw
    cmp -s ro.raw expect.raw && ok || bad "a read-only view changed the image"
fi

# A regular file as the mountpoint (qemu-storage-daemon's style), a VDI chain.
qemu-img create -q -f vdi base.vdi 8M
qemu-io -f vdi -c "write -P 0x33 0 1M" base.vdi > /dev/null
"$VDKIT" snapshot base.vdi top.vdi > /dev/null 2>&1 && ok || bad "vdkit snapshot base.vdi top.vdi"
: > cover
if mount_view top.vdi cover cover; then
    [ "$(stat -c %s cover)" = 8388608 ] && ok || bad "the covered file's size is not the disk's"
    printf 'through the cover' | dd of=cover bs=1 seek=4096 conv=notrunc status=none && ok || bad "write the cover"
    unmount_view cover
    [ "$(stat -c %s cover)" = 0 ] && ok || bad "the covered file changed"
    "$VDKIT" convert -O raw top.vdi top.raw > /dev/null && ok || bad "convert the chain"
    [ "$(dd if=top.raw bs=1 skip=4096 count=17 status=none)" = "through the cover" ] && ok || bad "the write landed in the top image"
    qemu-img convert -O raw base.vdi base.raw
    [ "$(od -An -tx1 -j 4096 -N 1 base.raw | tr -d ' ')" = 33 ] && ok || bad "the base changed"
fi

# A signal ends a mount cleanly: unmounted, flushed, exit 0, nothing printed
# by libfuse about its options.
if mount_view d.vmdk mnt mnt/disk; then
    printf 'before the signal' | dd of=mnt/disk bs=1 seek=8192 conv=notrunc status=none
    kill -TERM $mounted_pid
    wait $mounted_pid && ok || bad "vdkit fuse ended by SIGTERM did not exit 0"
    ! grep -q "max threads\|could not mount" fuse.log && ok || { bad "vdkit fuse printed noise or an error"; cat fuse.log; }
    grep -q " $work/mnt " /proc/mounts && bad "SIGTERM left the mount" || ok
    qemu-img convert -O raw d.vmdk sig.raw
    [ "$(dd if=sig.raw bs=1 skip=8192 count=17 status=none)" = "before the signal" ] && ok || bad "a write before SIGTERM was lost"
fi

# Bad input: clear errors, nothing mounted.
expect_exit 1 "a missing image" "$VDKIT" fuse nope.vmdk mnt
says "the error names the image" "nope.vmdk"
expect_exit 2 "a missing mountpoint" "$VDKIT" fuse d.vmdk no-such-dir
says "the error names the mountpoint" "no-such-dir"
expect_exit 2 "a bad --name" "$VDKIT" fuse --name a/b d.vmdk mnt
! grep -q " $work/mnt " /proc/mounts && ok || bad "something is still mounted on mnt"

finish
