#!/usr/bin/env bash
# vdkit's libvixDiskLib driven by three clients that know nothing of vdkit:
# vix_sample (C, written like VMware's vixDiskLibSample), a Ruby client that
# binds it with ruby-ffi as the ffi-vix_disk_lib gem does, and a Python
# ctypes client that loads it the way nbdkit's vddk plugin does. What they
# write is judged by qemu-img, qemu-nbd and vmdkinfo; what they read is
# compared with `qemu-img convert -O raw`.
set -u
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
. "$VDKIT_SOURCE_DIR/tests/support/server_lib.sh"
S="$VDKIT_BUILD_DIR/tests/vix_sample"
LIBDIR="$VDKIT_BUILD_DIR/lib/vdkit/vddk"
[ -x "$S" ] || { echo "FAIL: $S is not built"; exit 1; }
require_tools qemu-img qemu-nbd vmdkinfo ruby python3
ruby -e 'require "ffi"' 2> /dev/null || skip "ruby-ffi is not installed (scripts/install-deps.sh installs it)"
# In a sanitizer build the runtime must load before libvdkit in interpreters,
# which run without leak checks: LeakSanitizer reports python3's own
# allocations as leaks, and its tracer crashes at ruby's exit.
PRELOAD=$(with_sanitizer_runtime)
vix() { "$S" -nolog "$@"; }
size_of() { qemu-img info --output=json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }
same_as_qemu() { # what, image, file read through the library
    qemu-img convert -O raw "$2" ref.raw && cmp -s ref.raw "$3" && ok || bad "$1: differs from qemu-img convert -O raw"
}

# The library is laid out as VDDK is, with the names clients probe.
for n in 8.0.2 8 7 6 5; do
    [ -e "$LIBDIR/lib64/libvixDiskLib.so.$n" ] && ok || bad "lib64/libvixDiskLib.so.$n is missing"
done
[ -f "$LIBDIR/include/vixDiskLib.h" ] && ok || bad "include/vixDiskLib.h is missing beside lib64"

# ---- Create: every VMDK disk type VixDiskLib names, and VDI and raw by extension
for t in 1 2 3 4 5 6; do
    expect_exit 0 "Create type $t" vix create "t$t.vmdk" 20480 "$t" 3 7
    [ "$(size_of "t$t.vmdk")" = 10485760 ] && ok || bad "Create type $t: qemu-img sees another size"
    expect_exit 0 "vmdkinfo reads type $t" vmdkinfo "t$t.vmdk"
done
expect_exit 0 "qemu-img check accepts a new sparse VMDK" qemu-img check t1.vmdk
grep -aq 'createType="streamOptimized"' t6.vmdk && ok || bad "type 6 is not streamOptimized"
grep -aq 'createType="twoGbMaxExtentSparse"' t3.vmdk && ok || bad "type 3 is not split sparse"
grep -aq 'ddb.adapterType = "lsilogic"' t1.vmdk && ok || bad "adapter type 3 is not lsilogic in the descriptor"
grep -aq 'ddb.virtualHWVersion = "7"' t1.vmdk && ok || bad "hwVersion 7 is not in the descriptor"
expect_exit 2 "Create refuses VMFS sparse (type 8)" vix create t8.vmdk 20480 8
says "VMFS sparse: not supported" "error 6:"
expect_exit 0 "Create d.vdi" vix create d.vdi 20480
[ "$(qemu-img info --output=json d.vdi | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')" = vdi ] &&
    ok || bad "a .vdi name does not make a VDI"
expect_exit 0 "Create d.img flat" vix create d.img 20480 2
[ "$(stat -c %s d.img)" = 10485760 ] && ok || bad "a flat .img is not 10 MiB"
expect_exit 2 "Create over an existing disk" vix create d.vdi 20480
says "existing file: VIX_E_FILE_ALREADY_EXISTS" "error 12:"

# ---- Write and read through the library, VMDK, VDI and raw
python3 - > expect.raw << 'PY'
import sys
img = bytearray(20480 * 512)
def fill(start, count, byte):
    for s in range(start, start + count):
        img[s * 512:(s + 1) * 512] = bytes((byte ^ (s % 251)) & 0xFF for _ in range(512))
fill(100, 50, 7); fill(5000, 3, 9); fill(20479, 1, 1)
sys.stdout.buffer.write(img)
PY
for d in t1.vmdk t2.vmdk t3.vmdk d.vdi d.img; do
    expect_exit 0 "Write $d" vix fill "$d" 100 50 7
    vix fill "$d" 5000 3 9 > /dev/null && vix fill "$d" 20479 1 1 > /dev/null && ok || bad "Write $d (more)"
    expect_exit 0 "Read $d" vix readall "$d" got.raw
    cmp -s expect.raw got.raw && ok || bad "$d reads other bytes than were written"
    same_as_qemu "$d" "$d" got.raw
done
expect_exit 0 "qemu-img check after writes" qemu-img check t1.vmdk
expect_exit 2 "Write past the end" vix fill t1.vmdk 20480 1 1
says "past the end: VIX_E_DISK_OUTOFRANGE" "error 16007:"
says "past the end: the message names the disk" "t1.vmdk"

# ---- GetInfo
expect_exit 0 "GetInfo" vix info t1.vmdk
says "capacity in sectors" "capacity 20480"
says "adapter lsilogic" "adapterType 3"
says "one link" "numLinks 1"
says "no parent" "parent (none)"
says "local disks use the file mode" "transport file"
grep -q '^uuid [0-9a-f]\{2\}\( [0-9a-f]\{2\}\)\{7\}-[0-9a-f]\{2\}\( [0-9a-f]\{2\}\)\{7\}$' out && ok || bad "uuid is not VMware's text form"
expect_exit 0 "GetInfo of a VDI" vix info d.vdi
says "VDI capacity" "capacity 20480"
says "VDI adapter unknown" "adapterType 256"

# ---- Metadata (VMDK disk database; keys without "ddb.")
expect_exit 0 "WriteMetadata" vix wmeta t1.vmdk backupTool vdkit-test
expect_exit 0 "GetMetadataKeys + ReadMetadata" vix meta t1.vmdk
says "the new key" "backupTool = vdkit-test"
says "the adapter key" "adapterType = lsilogic"
grep -aq 'ddb.backupTool = "vdkit-test"' t1.vmdk && ok || bad "the key is not in the descriptor as ddb.backupTool"
expect_exit 0 "vmdkinfo still reads it" vmdkinfo t1.vmdk

# ---- CreateChild and chains
expect_exit 0 "CreateChild of a base opened read-write" vix redo t1.vmdk child.vmdk
says "the parent's handle is usable after CreateChild" "parent handle still open"
expect_exit 0 "GetInfo of the child" vix info child.vmdk
says "two links" "numLinks 2"
says "the parent hint" "parent t1.vmdk"
vix fill child.vmdk 120 4 3 > /dev/null && ok || bad "Write into the child"
expect_exit 0 "Read the chain" vix readall child.vmdk chain.raw
same_as_qemu "child over base" child.vmdk chain.raw
expect_exit 0 "qemu-img check the child" qemu-img check child.vmdk
expect_exit 0 "base unchanged" vix readall t1.vmdk base.raw
cmp -s expect.raw base.raw && ok || bad "writing the child changed the base"
# A raw parent open for writing: it is opened again as raw, never guessed.
expect_exit 0 "CreateChild of a raw disk opened read-write" vix redo d.img rawchild.vmdk
says "the raw parent's handle is usable after CreateChild" "parent handle still open"
# (qemu reads a VMDK's parent only as VMDK: vdkit reads this chain.)
expect_exit 0 "the VMDK child of a raw parent opens as a chain" vix info rawchild.vmdk
says "raw parent + VMDK child: two links" "numLinks 2"
expect_exit 0 "and reads as its parent" vix readall rawchild.vmdk rawchild.raw
cmp -s rawchild.raw expect.raw && ok || bad "the child of d.img does not read as d.img"
expect_exit 2 "CreateChild refuses a flat child" vix redo t1.vmdk flatchild.vmdk 2
says "flat child: VIX_E_INVALID_ARG" "error 3:"
expect_exit 0 "CreateChild of a VDI" vix redo d.vdi dchild.vdi
vix fill dchild.vdi 0 1 4 > /dev/null && ok || bad "Write into the VDI child"
expect_exit 0 "VDI chain info" vix info dchild.vdi
says "VDI chain has two links" "numLinks 2"

# ---- Single-link opens, Attach, QueryAllocatedBlocks
expect_exit 0 "Attach child to base" vix attach t1.vmdk child.vmdk attached.raw
cmp -s chain.raw attached.raw && ok || bad "the attached chain reads other bytes than the chain"
expect_exit 0 "QueryAllocatedBlocks of the child (single link)" vix -single allocated child.vmdk 128
says "the child's one grain" "block 0 128"
[ "$(grep -c '^block' out)" = 1 ] && ok || bad "the child has one allocated chunk"
expect_exit 0 "QueryAllocatedBlocks of the base" vix allocated t1.vmdk 128
grep '^block' out | awk '{print $2, $3}' > vix.map
qemu-img map --output=json t1.vmdk | python3 -c '
import json, sys
chunk = 128 * 512
runs = []
for e in json.load(sys.stdin):
    if not e["data"]: continue
    a, b = e["start"] // chunk * chunk, -(-(e["start"] + e["length"]) // chunk) * chunk
    if runs and runs[-1][1] >= a: runs[-1][1] = max(runs[-1][1], b)
    else: runs.append([a, b])
for a, b in runs: print(a // 512, (b - a) // 512)' > qemu.map
cmp -s vix.map qemu.map && ok || { bad "allocated blocks differ from qemu-img map"; diff vix.map qemu.map; }
expect_exit 2 "QueryAllocatedBlocks with a small chunk" vix allocated t1.vmdk 64
says "small chunk: VIX_E_INVALID_ARG" "error 3:"

# ---- Async I/O
expect_exit 0 "WriteAsync + ReadAsync + Wait" vix async d.vdi 300 40 5
says "every request called back" "callbacks 10"
says "async reads see async writes" "match yes"
vix readall d.vdi async.raw > /dev/null && same_as_qemu "after async writes" d.vdi async.raw

# ---- Clone from any format, with create parameters, overwrite, cancel
expect_exit 0 "Clone chain -> streamOptimized" vix clone child.vmdk c6.vmdk 6
expect_exit 0 "qemu-img compare clone" qemu-img compare child.vmdk c6.vmdk
grep -aq 'createType="streamOptimized"' c6.vmdk && ok || bad "clone type 6 is not streamOptimized"
expect_exit 0 "Clone VDI -> VMDK (no create params)" vix clone d.vdi c.vmdk
expect_exit 0 "qemu-img compare VDI clone" qemu-img compare d.vdi c.vmdk
expect_exit 0 "Clone VMDK -> VDI" vix clone t2.vmdk c.vdi
expect_exit 0 "qemu-img compare VDI target" qemu-img compare t2.vmdk c.vdi
expect_exit 2 "Clone onto an existing disk" vix clone d.vdi c.vmdk
says "existing clone target: VIX_E_FILE_ALREADY_EXISTS" "error 12:"
expect_exit 0 "Clone with overWrite" vix clone t1.vmdk c.vmdk 1 1
expect_exit 0 "qemu-img compare overwritten clone" qemu-img compare t1.vmdk c.vmdk
expect_exit 2 "a progress callback returning FALSE cancels" vix cancel t1.vmdk cancelled.vmdk
says "cancel: VIX_E_CANCELLED" "error 10:"
[ ! -e cancelled.vmdk ] && ok || bad "a cancelled clone left its target"
expect_exit 0 "SpaceNeededForClone sparse" vix space t1.vmdk 1
sparse=$(sed -n 's/^space //p' out)
expect_exit 0 "SpaceNeededForClone flat" vix space t1.vmdk 2
flat=$(sed -n 's/^space //p' out)
[ "${flat:-0}" -ge 10485760 ] && [ "${sparse:-0}" -gt 0 ] && [ "$sparse" -lt "$flat" ] && ok ||
    bad "space needed: sparse $sparse, flat $flat"

# ---- Grow, Shrink, Defragment, CheckRepair
expect_exit 0 "Grow" vix grow c.vmdk 40960
[ "$(size_of c.vmdk)" = 20971520 ] && ok || bad "Grow: qemu-img sees another size"
expect_exit 2 "Grow never shrinks" vix grow c.vmdk 100
says "grow smaller: VIX_E_INVALID_ARG" "error 3:"
expect_exit 0 "Shrink" vix shrink c.vmdk
expect_exit 0 "Defragment" vix defrag c.vmdk
expect_exit 0 "qemu-img check after shrink" qemu-img check c.vmdk
vix readall c.vmdk shrunk.raw > /dev/null && same_as_qemu "after shrink" c.vmdk shrunk.raw
expect_exit 0 "CheckRepair of a sound disk" vix check t1.vmdk 0
# A grain table entry pointing far past the end of the file.
cp t1.vmdk broken.vmdk
python3 - broken.vmdk << 'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(512)
gd_offset = struct.unpack_from("<Q", h, 56)[0]   # primary grain directory, sectors
f.seek(gd_offset * 512); gt = struct.unpack("<I", f.read(4))[0]
f.seek(gt * 512 + 4 * 4); f.write(struct.pack("<I", 0x7FFFFFF0))
PY
expect_exit 2 "CheckRepair finds the damage" vix check broken.vmdk 0
says "damage: VIX_E_DISK_NEEDSREPAIR" "error 16006:"
expect_exit 0 "CheckRepair repairs it" vix check broken.vmdk 1
expect_exit 0 "qemu-img check after repair" qemu-img check broken.vmdk

# ---- Rename and Unlink
expect_exit 0 "Rename" vix rename c.vdi moved.vdi
[ ! -e c.vdi ] && [ -e moved.vdi ] && ok || bad "Rename did not move the disk"
expect_exit 0 "Unlink" vix unlink moved.vdi
[ ! -e moved.vdi ] && ok || bad "Unlink left the disk"
expect_exit 2 "Unlink refuses a base with a child beside it" vix unlink t1.vmdk
[ -e t1.vmdk ] && ok || bad "Unlink removed a base in use"

# ---- A disk whose size is not a whole number of sectors: the last sector is
# partial; it reads with zeros past the end, as qemu reads it.
head -c 1000 expect.raw > odd.img
expect_exit 0 "GetInfo of a 1000-byte raw disk" vix info odd.img
says "capacity counts the partial sector" "capacity 2"
expect_exit 0 "Read every sector of it" vix readall odd.img odd.raw
{ cat odd.img; head -c 24 /dev/zero; } > odd.expect
cmp -s odd.raw odd.expect && ok || bad "the partial sector does not read as the file then zeros"
expect_exit 0 "Write its last (partial) sector" vix fill odd.img 1 1 2
[ "$(stat -c %s odd.img)" = 1000 ] && ok || bad "a write into the partial sector changed the file's size"
expect_exit 2 "the sector after it is out of range" vix fill odd.img 2 1 2
says "past the partial sector: VIX_E_DISK_OUTOFRANGE" "error 16007:"

# ---- Pointers never handed out are refused, never dereferenced
expect_exit 0 "bogus handles" vix bogus
says "a bogus handle: VIX_E_INVALID_ARG for Read and Close; an invalid connection" "bogus read 3 close 3 disconnect 16054"

# ---- Connections: read-only, transport modes
expect_exit 2 "a read-only connection refuses writes" vix -ro fill t2.vmdk 0 1 1
says "read-only: VIX_E_FILE_READ_ONLY" "error 11:"
expect_exit 2 "a path on an nbd-only connection" vix -modes nbd info t1.vmdk
says "mode refused: VIX_E_NOT_SUPPORTED" "error 6:"
says "the message names the mode" "needs transport mode 'file'"
expect_exit 2 "an unknown transport mode" vix -modes file:warp info t1.vmdk
says "unknown mode: VIX_E_INVALID_ARG" "error 3:"
expect_exit 0 "VMware's default modes (san, hotadd skipped)" vix -modes file:san:hotadd:nbd info t1.vmdk
expect_exit 2 "a missing disk" vix info nope.vmdk
says "missing disk: VIX_E_FILE_NOT_FOUND" "error 4:"
says "missing disk: the message names it" "nope.vmdk"

# ---- Over NBD: a VMDK's bytes served by qemu-nbd, opened through vdkit's nbd transport
sock="$work/nbd.sock"
cp t1.vmdk served.vmdk
start_server nbd qemu-nbd -f raw -k "$sock" --persistent served.vmdk
wait_for_socket "$sock"
url="nbd+unix:///?socket=$sock"
expect_exit 0 "GetInfo over NBD" vix -modes nbd info "$url"
says "NBD transport mode" "transport nbd"
says "NBD capacity" "capacity 20480"
# An NBD export has a fixed size: a sparse VMDK on it can rewrite its
# allocated grains but not grow, and says so.
expect_exit 2 "a new grain cannot grow the export" vix -modes nbd fill "$url" 7000 2 6
says "growing an export: VIX_E_DISK_OUTOFRANGE" "error 16007:"
says "growing an export: the message names the export" "beyond the end of the export"
expect_exit 0 "Write over NBD into an allocated grain" vix -modes nbd fill "$url" 120 2 6
expect_exit 0 "Read over NBD" vix -modes nbd readall "$url" nbd.raw
stop_server nbd
same_as_qemu "VMDK over NBD after a write" served.vmdk nbd.raw
expect_exit 0 "qemu-img check of the VMDK written over NBD" qemu-img check served.vmdk

# ---- Ruby (ruby-ffi, bound as the ffi-vix_disk_lib gem binds it)
expect_exit 0 "the Ruby client" env LD_PRELOAD="$PRELOAD" "$(no_leak_check)" ruby "$VDKIT_SOURCE_DIR/compat/vixdisklib/tests/vix_ffi_test.rb" \
    "$LIBDIR/lib64/libvixDiskLib.so.8" "$work/ruby"
says "the Ruby client ran to its end" "ruby client: all checks passed"
expect_exit 0 "qemu-img compare the Ruby client's clone" qemu-img compare "$work/ruby/base.vmdk" "$work/ruby/clone.vdi"
expect_exit 0 "qemu-img check the Ruby client's child" qemu-img check "$work/ruby/child.vmdk"

# ---- Python ctypes, loading the library as nbdkit's vddk plugin does
expect_exit 0 "the nbdkit-style ctypes client" env LD_PRELOAD="$PRELOAD" "$(no_leak_check)" python3 \
    "$VDKIT_SOURCE_DIR/compat/vixdisklib/tests/vddk_client_test.py" "$LIBDIR" child.vmdk ctypes.raw \
    "$VDKIT_SOURCE_DIR/docs/compat.md"
says "the ctypes client ran to its end" "ctypes client: all checks passed"
same_as_qemu "read by the ctypes client through QueryAllocatedBlocks" child.vmdk ctypes.raw

finish
