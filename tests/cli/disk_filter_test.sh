#!/usr/bin/env bash
# Disk-level filter stacks (VDKIT_CAP_FILTER_DISK) in the core, with the
# rodisk test filter (tests/fixtures/ro_disk_filter.cpp: XOR 0x5a on reads,
# declares nothing else): reads pass through it over the whole chain; a
# write, zero or discard is refused by name and changes nothing; info lists
# the disk-level stack apart from the file-level one; plugins lists it.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
export VDKIT_PLUGIN_PATH="$VDKIT_TEST_EXTRA_PLUGIN_DIR"

python3 -c 'import os,random; r=random.Random(os.environ["VDKIT_TEST_SEED"]); open("a.raw","wb").write(r.randbytes(2<<20)); open("b.raw","wb").write(r.randbytes(2<<20))'
xored() { # xored PLAIN FILTERED: FILTERED is PLAIN with every byte XOR 0x5a
    python3 -c 'import sys; a=open(sys.argv[1],"rb").read(); b=open(sys.argv[2],"rb").read(); sys.exit(0 if bytes(c^0x5a for c in a)==b else 1)' "$1" "$2"
}

# Reads: convert, over a chain (the filter sits over the whole chain).
expect_exit 0 "read through a read-only disk filter" "$VDKIT" convert -O raw --source-filter rodisk a.raw x.raw
xored a.raw x.raw && ok || bad "rodisk did not transform what convert read"
expect_exit 0 "a VDI base" "$VDKIT" convert -O vdi a.raw base.vdi
expect_exit 0 "a VMDK child" "$VDKIT" create -f vmdk -b base.vdi -F vdi child.vmdk
expect_exit 0 "read a chain through it" "$VDKIT" convert -O raw --source-filter rodisk child.vmdk y.raw
xored a.raw y.raw && ok || bad "the chain read through rodisk is not the base XOR 0x5a"
expect_exit 0 "info lists the disk-level stack" "$VDKIT" info --filter rodisk child.vmdk
says "info: disk filters" "disk filters: rodisk"
if grep -q '^filters:' out; then bad "rodisk listed as a file-level filter"; cat out; else ok; fi
expect_exit 0 "a raw file stored through rot" "$VDKIT" convert -O raw --target-filter rot a.raw r.raw
expect_exit 0 "info with a file-level and a disk-level filter" "$VDKIT" info -f raw --filter rodisk --filter rot r.raw
says "both kinds: file-level" "filters: rot"
says "both kinds: disk-level" "disk filters: rodisk"
expect_exit 0 "read through both kinds" "$VDKIT" convert -O raw --source-filter rot --source-filter rodisk r.raw z.raw
xored a.raw z.raw && ok || bad "rot under rodisk did not read back a XOR 0x5a"

# Writes: refused by name, nothing changed (convert -n into an existing image).
cp a.raw keep.raw
expect_exit 1 "write through a read-only disk filter" "$VDKIT" convert -n -O raw --target-filter rodisk b.raw keep.raw
says "the refusal names the filter and the operation" "filter 'rodisk' does not handle writing"
cmp -s a.raw keep.raw && ok || bad "a refused write changed the target"
md5sum base.vdi child.vmdk > before.sum
expect_exit 1 "write into a chain through it" "$VDKIT" convert -n -O vmdk --target-filter rodisk b.raw child.vmdk
says "chain: refusal names the filter" "filter 'rodisk' does not handle writing"
md5sum -c --quiet before.sum > /dev/null 2>&1 && ok || bad "a refused write changed the chain"
# A new image: creating is allowed, the first write is refused and the
# half-made target is not left behind.
expect_exit 1 "convert into a new image through it" "$VDKIT" convert -O vdi --target-filter rodisk b.raw new.vdi
[ ! -e new.vdi ] && ok || bad "a refused convert left new.vdi"

# plugins: the capability and the filter.
expect_exit 0 "vdkit plugins" "$VDKIT" plugins
says "plugins lists rodisk" "rodisk"
says "plugins names the capability" "disk-filter"
finish
