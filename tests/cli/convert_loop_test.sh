#!/usr/bin/env bash
# convert into a real block device (a loop device): -n writes into it in
# place — the source's holes zeroed over old data, --target-is-zero skipping
# them, the device's excess kept, a device smaller than the source refused —
# and without -n the device is refused whatever --overwrite says: the /dev
# node stays a block device and its data unchanged (also through a symlink,
# through create --overwrite and in a batch job file).
# Needs root and loop devices: without them the test says why and is
# reported as skipped (exit 77; in CI, where both are expected, it fails).
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img python3
export VDKIT_PLUGIN_PATH="$VDKIT_TEST_EXTRA_PLUGIN_DIR"

unavailable() { skip "the block-device tests did not run because $*"; }
[ "$(id -u)" -eq 0 ] || unavailable "they need root (losetup)"
command -v losetup > /dev/null || unavailable "losetup is not installed (util-linux, scripts/install-deps.sh)"
[ -e /dev/loop-control ] || unavailable "/dev/loop-control is missing (no loop driver in this kernel or container)"

truncate -s 64M backing.img
dev=$(losetup -f --show backing.img 2> losetup.err) || unavailable "losetup -f failed: $(cat losetup.err)"
[ -b "$dev" ] || { losetup -d "$dev" 2> /dev/null; unavailable "losetup gave $dev, which is not a block device"; }
at_exit 'losetup -d "$dev"'
echo "using $dev"

paint() { # paint BYTE: every byte of the device is BYTE
    python3 -c "import sys; open(sys.argv[1],'r+b').write(bytes([int(sys.argv[2],16)]) * (64 << 20))" "$dev" "$1"
    sync
}
byte_at() { od -An -tx1 -j "$2" -N1 "$1" | tr -d ' \n'; }
MiB=$((1 << 20))

# A 48 MiB source: data, a hole, written zeros, data at the end; as raw and VDI.
python3 - <<'PY'
import os, random
data = random.Random(os.environ["VDKIT_TEST_SEED"])  # the bytes (seeded, script_lib.sh)
with open("src.raw", "wb") as f:
    f.truncate(48 << 20)
    f.seek(0); f.write(data.randbytes(2 << 20))
    f.seek(10 << 20); f.write(bytes(1 << 20))
    f.seek(20 << 20); f.write(data.randbytes(3 << 20))
    f.seek(47 << 20); f.write(data.randbytes(1 << 20))
PY
qemu-img convert -f raw -O vdi src.raw src.vdi

# 1. -n: the device reads as the source; the holes, full of 0xaa before, read
#    as zero; the 16 MiB past the source are left as they were.
paint aa
expect_exit 0 "convert -n into $dev" "$VDKIT" convert -n -f vdi -O raw src.vdi "$dev"
cmp -s -n $((48 * MiB)) src.raw "$dev" && ok || bad "-n: $dev does not read as the source"
[ "$(byte_at "$dev" $((5 * MiB)))" = 00 ] && [ "$(byte_at "$dev" $((30 * MiB)))" = 00 ] && ok \
    || bad "-n: a hole of the source kept the device's old bytes"
python3 -c "import sys; f=open(sys.argv[1],'rb'); f.seek(48<<20); assert f.read(16<<20) == b'\xaa' * (16<<20)" "$dev" \
    && ok || bad "-n changed the device past the source's size"

# 2. --target-is-zero: the holes are not written (the old bytes stay).
paint aa
expect_exit 0 "convert -n --target-is-zero into $dev" "$VDKIT" convert -n --target-is-zero -O raw src.raw "$dev"
cmp -s -n $((2 * MiB)) src.raw "$dev" && ok || bad "--target-is-zero: data not written"
[ "$(byte_at "$dev" $((5 * MiB)))" = aa ] && ok || bad "--target-is-zero wrote a hole of the source"
paint 00
expect_exit 0 "convert -n --target-is-zero into a zeroed $dev" "$VDKIT" convert -n --target-is-zero -O raw src.raw "$dev"
cmp -s -n $((48 * MiB)) src.raw "$dev" && ok || bad "--target-is-zero into a zeroed device"

# 3. Without -n the device is refused, with or without --overwrite, and
#    nothing is written; the node is still the block device.
paint aa
sum=$(md5sum < "$dev")
for ow in "" --overwrite; do
    expect_exit 1 "convert $ow onto $dev without -n" "$VDKIT" convert $ow -O raw src.raw "$dev"
    says "refusal names the device" "$dev is a block device; convert never replaces one, even with --overwrite"
    says "refusal hints at -n" "pass -n to write into it"
done
[ -b "$dev" ] && ok || bad "$dev is no longer a block device"
[ "$(md5sum < "$dev")" = "$sum" ] && ok || bad "a refused convert wrote to $dev"
losetup "$dev" > /dev/null 2>&1 && ok || bad "$dev is no longer a loop device"
ls -A /dev | grep -q vdkit-partial && bad "a staging directory was made in /dev" || ok

# Through a symlink: judged by what it points to; -n writes through it.
ln -s "$dev" disk-link
expect_exit 1 "convert --overwrite onto a symlink to $dev" "$VDKIT" convert --overwrite -O raw src.raw disk-link
says "symlink refusal" "disk-link (a symlink to $dev) is a block device"
[ -L disk-link ] && [ -b "$dev" ] && [ "$(md5sum < "$dev")" = "$sum" ] && ok || bad "the symlink or the device changed"
expect_exit 0 "convert -n through a symlink" "$VDKIT" convert -n -O raw src.vdi disk-link
cmp -s -n $((48 * MiB)) src.raw "$dev" && ok || bad "-n through a symlink: $dev does not read as the source"

# create --overwrite onto the device: refused, the node stays.
expect_exit 1 "create --overwrite onto $dev" "$VDKIT" create -f raw --overwrite "$dev" 1M
says "create --overwrite refusal" "$dev is a block device, not an image file"
[ -b "$dev" ] && ok || bad "create --overwrite removed $dev"

# A device in use (mounted, or claimed as here by an exclusive open) is refused.
python3 -c "import os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL); print('held', flush=True); time.sleep(60)" "$dev" > holder.out &
holder=$!
for _ in $(seq 6000); do grep -q held holder.out && break; sleep 0.01; done # up to 60 s
sum=$(md5sum < "$dev")
expect_exit 1 "convert -n into a device in use" "$VDKIT" convert -n -O raw src.raw "$dev"
says "device in use" "$dev is in use (mounted, or held by device-mapper, RAID or another program)"
kill "$holder"; wait "$holder" 2> /dev/null
[ "$(md5sum < "$dev")" = "$sum" ] && ok || bad "-n wrote into a device in use"

# 4. A source larger than the device: refused before anything is written.
truncate -s 80M large.raw
printf 'data' | dd of=large.raw bs=1 seek=$((70 * MiB)) conv=notrunc status=none
paint aa
sum=$(md5sum < "$dev")
expect_exit 1 "convert -n of a source larger than $dev" "$VDKIT" convert -n -O raw large.raw "$dev"
says "too small" "$dev holds 67108864 bytes, less than the virtual size of large.raw (83886080 bytes)"
[ "$(md5sum < "$dev")" = "$sum" ] && ok || bad "a refused -n wrote to $dev"

# 5. -n into the device as a VDI image cannot work (it holds none): an error, not a new image.
expect_exit 1 "convert -n -O vdi into a raw device" "$VDKIT" convert -n -O vdi src.raw "$dev"
[ -b "$dev" ] && [ "$(md5sum < "$dev")" = "$sum" ] && ok || bad "a failed -n -O vdi changed $dev"

# 6. Batch: a device target needs existing_target (validation, at its line);
#    with it the job writes into the device and a rerun verifies and skips.
cat > onto.yaml <<EOF
jobs:
  - name: dev
    source: src.vdi
    target: $dev
    format: raw
    overwrite: true
EOF
expect_exit 2 "batch job onto $dev without existing_target" "$VDKIT" batch onto.yaml
says "batch refusal at the line" "onto.yaml:4: job 'dev': $dev is a block device; a job never replaces one, even with overwrite: true (existing_target: true writes into it)"
[ -b "$dev" ] && [ "$(md5sum < "$dev")" = "$sum" ] && ok || bad "a refused batch changed $dev"
cat > into.yaml <<EOF
jobs:
  - name: dev
    source: src.vdi
    target: $dev
    format: raw
    existing_target: true
EOF
expect_exit 0 "batch existing_target into $dev" "$VDKIT" batch into.yaml
says "batch converted" "dev: converted"
cmp -s -n $((48 * MiB)) src.raw "$dev" && ok || bad "batch existing_target: $dev does not read as the source"
[ "$(byte_at "$dev" $((60 * MiB)))" = aa ] && ok || bad "batch existing_target changed the device's excess"
expect_exit 0 "batch existing_target rerun" "$VDKIT" batch into.yaml
says "batch rerun verifies the device" "dev: skipped: verified"
flip_byte "$dev" $((21 * MiB)) # inside the source's random data
expect_exit 0 "batch existing_target after the device changed" "$VDKIT" batch into.yaml
says "batch writes the changed device again" "dev: converted"
cmp -s -n $((48 * MiB)) src.raw "$dev" && ok || bad "batch: $dev not rewritten after a change"

# A read-only device (losetup -r): refused up front, not "partly written".
truncate -s 64M ro-backing.img
if rodev=$(losetup -r -f --show ro-backing.img 2> losetup.err); then
    cp ro-backing.img ro-backing.before
    expect_exit 1 "-n into a read-only loop device" "$VDKIT" convert -n -O raw src.raw "$rodev"
    says "-n read-only device named" "$rodev"
    says "-n read-only device: nothing written" "(nothing was written)"
    if grep -qF "partly written" out; then bad "-n into a read-only device says it was partly written"; else ok; fi
    losetup -d "$rodev"
    cmp -s ro-backing.img ro-backing.before && ok || bad "-n into a read-only device changed it"
else
    bad "losetup -r failed: $(cat losetup.err)"
fi

finish
