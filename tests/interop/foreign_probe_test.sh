#!/usr/bin/env bash
# A container vdkit has no plugin for is never read as raw by accident
# (docs/design/probing.md, "Foreign containers"): every format qemu-img can
# write is refused by every read command (and by the writing ones), naming
# the format, with a non-zero exit and nothing written; `-f raw` still reads
# the container's bytes. A file named for a format it is not is refused too.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img python3
unset VDKIT_PLUGIN_PATH # the installed formats only: none reads these containers

run() { # run <command...>: exit status in $rc, stdout+stderr in out
    "$@" > out 2>&1
    rc=$?
}
refused() { # refused <what> <text the message must hold> <command...>
    local what=$1 says=$2
    shift 2
    run "$@"
    if [ "$rc" -eq 0 ]; then bad "$what: exit 0"; sed 's/^/    /' out
    elif ! grep -qF -- "$says" out; then bad "$what: exit $rc, the message lacks '$says'"; sed 's/^/    /' out
    elif ! grep -qF -- "-f raw" out; then bad "$what: the message does not offer -f raw"; sed 's/^/    /' out
    else ok; fi
}
listing() { find . -mindepth 1 ! -name out | sort; }

# One line per format: file name | how the message names it | qemu-img create
# arguments, or @generator and its arguments.
formats=(
    "q2v2.img|is a qcow2 image|-f qcow2 -o compat=0.10"
    "q2v3.img|is a qcow2 image|-f qcow2 -o compat=1.1"
    "q2back.img|is a qcow2 image|-f qcow2 -b q2v3.img -F qcow2"
    "qcow1.img|is a qcow (version 1) image|-f qcow"
    "qed.img|is a qed image|-f qed"
    "vpcfixed.img|is a VHD (vpc) image|-f vpc -o subformat=fixed"
    "vpcdyn.img|is a VHD (vpc) image|-f vpc -o subformat=dynamic"
    "vpcdiff.img|is a VHD (vpc) image|@vhd_differencing vpcdyn.img"
    "vhdx.img|is a vhdx image|-f vhdx"
    "parallels.img|is a parallels image|-f parallels"
    "luks.img|is a luks image|-f luks --object secret,id=s0,data=pw -o key-secret=s0,iter-time=10"
)

# qemu-img cannot create a differencing VHD: this one is qemu's dynamic VHD
# with disk type 4 in both footer copies (MS-VHD; formats.md §3.1), checksums
# recomputed. qemu-img still reads it as vpc.
vhd_differencing() { # vhd_differencing <dynamic vhd> <new file>
    python3 - "$1" "$2" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
for off in (0, len(data) - 512):
    f = data[off:off + 512]
    assert f[:8] == b"conectix", off
    f[60:64] = struct.pack(">I", 4)
    f[64:68] = b"\0" * 4
    f[64:68] = struct.pack(">I", ~sum(f) & 0xFFFFFFFF)
    data[off:off + 512] = f
open(sys.argv[2], "wb").write(data)
PY
}

for line in "${formats[@]}"; do
    IFS='|' read -r img says args <<< "$line"
    if [ "${args:0:1}" = "@" ]; then
        # shellcheck disable=SC2086 # a generator function and its arguments
        ${args:1} "$img" || { bad "generating $img"; continue; }
    else
        # shellcheck disable=SC2086 # args is a list of qemu-img arguments
        qemu-img create -q $args "$img" 4M || { bad "qemu-img create $args"; continue; }
    fi
    qemu-img info "$img" > /dev/null || bad "qemu-img cannot read $img"
done

for line in "${formats[@]}"; do
    IFS='|' read -r img says args <<< "$line"
    [ -f "$img" ] || continue
    sum=$(sha256sum "$img")
    before=$(listing)
    # The name ends in .img (raw's own extension): only the signature refuses it.
    refused "info $img" "$img $says" "$VDKIT" info "$img"
    refused "info --backing-chain $img" "$says" "$VDKIT" info --backing-chain "$img"
    refused "map $img" "$says" "$VDKIT" map "$img"
    refused "check $img" "$says" "$VDKIT" check "$img"
    refused "compare $img $img" "$says" "$VDKIT" compare "$img" "$img"
    refused "compare (second) $img" "$says" "$VDKIT" compare -f raw "$img" "$img"
    refused "measure $img" "$says" "$VDKIT" measure -O vdi "$img"
    refused "convert $img" "$says" "$VDKIT" convert -O vdi "$img" out.vdi
    refused "convert to vmdk $img" "$says" "$VDKIT" convert -O vmdk "$img" out.vmdk
    # Writing commands and new images over it are refused the same way.
    refused "resize $img" "$says" "$VDKIT" resize "$img" +1M
    refused "compact $img" "$says" "$VDKIT" compact "$img"
    refused "create -b $img" "$says" "$VDKIT" create -f vdi -b "$img" child.vdi
    refused "snapshot $img" "$says" "$VDKIT" snapshot "$img" snap.vdi
    refused "convert -B $img" "$says" "$VDKIT" convert -f raw -O vdi -B "$img" q2v3.img over.vdi
    [ "$(sha256sum "$img")" = "$sum" ] && ok || bad "$img changed"
    # Nothing written: no target, no staging directory, no new file.
    [ "$(listing)" = "$before" ] && ok || { bad "files appeared beside $img:"; diff <(echo "$before") <(listing); }

    # Named raw, the container's bytes are read.
    run "$VDKIT" info -f raw "$img"
    [ "$rc" -eq 0 ] && grep -q "raw" out && ok || { bad "info -f raw $img: exit $rc"; sed 's/^/    /' out; }
    run "$VDKIT" compare -f raw -F raw "$img" "$img"
    [ "$rc" -eq 0 ] && ok || { bad "compare -f raw $img: exit $rc"; sed 's/^/    /' out; }
    run "$VDKIT" convert -f raw -O raw "$img" bytes.raw
    [ "$rc" -eq 0 ] && cmp -s "$img" bytes.raw && ok || { bad "convert -f raw $img: exit $rc or other bytes"; sed 's/^/    /' out; }
    rm -f bytes.raw
done

# A qcow2 parent named by a VDI child's hint is refused too, also when the
# child's format is named (-f names the top image only).
"$VDKIT" -q create -f vdi base.vdi 4M && "$VDKIT" -q create -f vdi -b base.vdi child.vdi || bad "vdi chain"
qemu-img create -q -f qcow2 base.vdi 4M
refused "info over a qcow2 parent" "base.vdi is a qcow2 image" "$VDKIT" info child.vdi
refused "info -f vdi over a qcow2 parent" "base.vdi is a qcow2 image" "$VDKIT" info -f vdi child.vdi
refused "convert over a qcow2 parent" "base.vdi is a qcow2 image" "$VDKIT" convert -O raw child.vdi flat.raw
[ ! -e flat.raw ] && ok || bad "convert over a qcow2 parent wrote flat.raw"

# Names: a raw file called .vdi/.vmdk/.qcow2/... is not taken as raw; plain
# dump names are.
head -c 1048576 /dev/urandom > plain.data
for name in fake.vdi fake.vmdk fake.qcow2 fake.vhd fake.VHDX fake.qed fake.hdd fake.dmg; do
    cp plain.data "$name"
    refused "info $name" "named like a" "$VDKIT" info "$name"
    refused "convert $name" "named like a" "$VDKIT" convert -O vdi "$name" out.vdi
    [ ! -e out.vdi ] && ok || bad "convert $name wrote out.vdi"
    run "$VDKIT" compare -f raw "$name" plain.data
    [ "$rc" -eq 0 ] && ok || { bad "compare -f raw $name: exit $rc"; sed 's/^/    /' out; }
done
grep -qF "the vdi probe found no header" <("$VDKIT" info fake.vdi 2>&1) && ok || bad "fake.vdi: the message does not name the vdi probe"
for name in dump.img dump.raw dump.bin dump.iso dump; do
    cp plain.data "$name"
    run "$VDKIT" info "$name"
    [ "$rc" -eq 0 ] && ok || { bad "info $name: exit $rc"; sed 's/^/    /' out; }
done

finish
