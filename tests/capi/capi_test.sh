#!/usr/bin/env bash
# The C API table (docs/api.md): tests/capi/capi_table_test.c calls every
# supported row from C and checks what it can itself (including VDI header
# bytes and VMDK descriptor lines). Here the identity fields it wrote
# through vdkit_disk_set_uuid / _set_geometry / _set_comment are read back
# by tools nobody here wrote: vmdkinfo and qemu-img show the VMDK's content
# id (the modification id the C program set), qemu-img check accepts both
# images, and od reads the VDI header fields at the offsets of the
# VirtualBox header (uuidCreate 0x188, uuidModify 0x198, PCHS 0x15C,
# LCHS 0x1C8, comment 0x54).
set -u
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
BIN="$VDKIT_BUILD_DIR/tests/vdkit_capi_table_test"
[ -x "$BIN" ] || { echo "FAIL: $BIN is not built"; exit 1; }

expect_exit 0 "the C program passes every supported row" "$BIN" "$work"
says "the C program ran to its end" "every supported row of docs/api.md passed"

# VDI header bytes (little-endian u32s).
hex() { od -An -tx1 -j "$2" -N "$3" "$1" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; }
u32() { od -An -tu4 -j "$2" -N 4 "$1" | tr -d ' \n'; }
vdi=$work/identity.vdi
# RTUUIDs: the first three fields little-endian (11223344-5566-7788-...).
[ "$(hex "$vdi" $((0x188)) 16)" = "44 33 22 11 66 55 88 77 99 aa bb cc dd ee f0 01" ] && ok || bad "VDI uuidCreate"
[ "$(hex "$vdi" $((0x198)) 4)" = "cd ab 34 12" ] && ok || bad "VDI uuidModify"
[ "$(u32 "$vdi" $((0x15c))),$(u32 "$vdi" $((0x160))),$(u32 "$vdi" $((0x164)))" = "1000,16,63" ] && ok || bad "VDI PCHS"
[ "$(u32 "$vdi" $((0x1c8))),$(u32 "$vdi" $((0x1cc))),$(u32 "$vdi" $((0x1d0)))" = "520,32,63" ] && ok || bad "VDI LCHS"
[ "$(dd if="$vdi" bs=1 skip=$((0x54)) count=25 status=none)" = "written through the C API" ] && ok || bad "VDI comment"

# VMDK descriptor (embedded in the monolithic sparse file).
vmdk=$work/identity.vmdk
strings "$vmdk" > desc
says "VMDK image UUID" 'ddb.uuid.image = "11 22 33 44 55 66 77 88-99 aa bb cc dd ee f0 01"' desc
says "VMDK PCHS cylinders" 'ddb.geometry.cylinders = "1000"' desc
says "VMDK LCHS cylinders" 'ddb.geometry.biosCylinders = "520"' desc
says "VMDK comment" 'ddb.comment = "written through the C API"' desc

require_tools qemu-img vmdkinfo
expect_exit 0 "vmdkinfo reads the VMDK" vmdkinfo "$vmdk"
says "vmdkinfo shows the content id set as the modification UUID" "0x1234abcd"
expect_exit 0 "qemu-img info reads the VMDK" qemu-img info --output=json "$vmdk"
says "qemu-img shows the content id" "\"cid\": $((0x1234abcd))"
says "qemu-img keeps the size" '"virtual-size": 8388608'
expect_exit 0 "qemu-img check accepts the VMDK" qemu-img check "$vmdk"
expect_exit 0 "qemu-img check accepts the VDI" qemu-img check -f vdi "$vdi"
expect_exit 0 "qemu-img reads the VDI" qemu-img info --output=json "$vdi"
says "qemu-img sees the VDI size" '"virtual-size": 8388608'
finish
