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
    elif ! grep -qF -- "${ADVICE--f raw}" out; then bad "$what: the message does not say '${ADVICE--f raw}'"; sed 's/^/    /' out
    else ok; fi
}
listing() { find . -mindepth 1 ! -name out | sort; }

# One line per format: file name | how the message names it | qemu-img create
# arguments, or @generator and its arguments. (qcow2 has a plugin now: see
# the end of the loop below, and so has VHD: plugins/formats/vhd.)
formats=(
    "qcow1.img|is a qcow (version 1) image|-f qcow"
    "qed.img|is a qed image|-f qed"
    "vhdx.img|is a vhdx image|-f vhdx"
    "parallels.img|is a parallels image|-f parallels"
    "luks.img|is a luks image|-f luks --object secret,id=s0,data=pw -o key-secret=s0,iter-time=10"
)

# qemu-img cannot create a differencing VHD: this one is qemu's dynamic VHD
# with disk type 4 in both footer copies (MS-VHD; formats.md §3.1), checksums
# recomputed. qemu-img still reads it as vpc.
vhd_differencing() { # vhd_differencing <dynamic vhd> <new file>
    python3 - "$1" "$2" <<'PY' || bad "vhd_differencing: $1 has no VHD footers"
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
        # qemu-img's LUKS key derivation times itself and gives up on a busy
        # machine ("Unable to get accurate CPU usage"): a few tries.
        made=0
        for _ in 1 2 3 4 5; do
            # shellcheck disable=SC2086 # args is a list of qemu-img arguments
            if qemu-img create -q $args "$img" 4M 2> create.err; then made=1; break; fi
            grep -q 'accurate CPU usage' create.err || break
            sleep 1
        done
        [ $made = 1 ] || { bad "qemu-img create $args: $(cat create.err)"; continue; }
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
    # The advice names the flag of the image's position: -F for compare's second.
    ADVICE="(-F raw)" refused "compare (second) $img" "$says" "$VDKIT" compare -f raw "$img" "$img"
    refused "measure $img" "$says" "$VDKIT" measure -O vdi "$img"
    refused "convert $img" "$says" "$VDKIT" convert -O vdi "$img" out.vdi
    refused "convert to vmdk $img" "$says" "$VDKIT" convert -O vmdk "$img" out.vmdk
    # Writing commands and new images over it are refused the same way.
    refused "resize $img" "$says" "$VDKIT" resize "$img" +1M
    refused "compact $img" "$says" "$VDKIT" compact "$img"
    # As a parent no flag helps (a parent is probed at every open): no advice of one.
    export ADVICE="cannot be a chain's parent"
    refused "create -b $img" "$says" "$VDKIT" create -f vdi -b "$img" child.vdi
    refused "snapshot $img" "$says" "$VDKIT" snapshot "$img" snap.vdi
    refused "convert -B $img" "$says" "$VDKIT" convert -f raw -O vdi -B "$img" qed.img over.vdi
    unset ADVICE
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

# VHD has a plugin (plugins/formats/vhd): qemu's fixed and dynamic VHDs named
# .img are read, not refused; a differencing one that names no parent is
# refused by the plugin, by name (the probe path of the containers table is
# won by the plugin).
qemu-img create -q -f vpc -o subformat=fixed vpcfixed.img 4M && qemu-img create -q -f vpc -o subformat=dynamic vpcdyn.img 4M ||
    bad "qemu-img create -f vpc"
vhd_differencing vpcdyn.img vpcdiff.img
for img in vpcfixed.img vpcdyn.img; do
    run "$VDKIT" info --output=json "$img"
    [ "$rc" -eq 0 ] && grep -q '"format": "vhd"' out && ok || { bad "info $img: exit $rc"; sed 's/^/    /' out; }
done
run "$VDKIT" info vpcdiff.img
[ "$rc" -ne 0 ] && grep -qF "is a differencing image but names no parent location" out && ok ||
    { bad "info vpcdiff.img: exit $rc"; sed 's/^/    /' out; }

# qcow2 has a plugin (plugins/formats/qcow2): its images are read, not refused,
# whatever their name.
for compat in 0.10 1.1; do
    qemu-img create -q -f qcow2 -o compat=$compat "q2-$compat.img" 4M
    run "$VDKIT" info --output=json "q2-$compat.img"
    [ "$rc" -eq 0 ] && grep -q '"format": "qcow2"' out && ok || { bad "info q2-$compat.img: exit $rc"; sed 's/^/    /' out; }
done

# A qed parent named by a VDI child's hint is refused too, also when the
# child's format is named (-f names the top image only).
"$VDKIT" -q create -f vdi base.vdi 4M && "$VDKIT" -q create -f vdi -b base.vdi child.vdi || bad "vdi chain"
qemu-img create -q -f qed base.vdi 4M
# No flag names a parent's format: the message says whose parent it is.
export ADVICE="is the parent of"
refused "info over a qed parent" "base.vdi is a qed image" "$VDKIT" info child.vdi
refused "info -f vdi over a qed parent" "base.vdi is a qed image" "$VDKIT" info -f vdi child.vdi
refused "convert over a qed parent" "base.vdi is a qed image" "$VDKIT" convert -O raw child.vdi flat.raw
unset ADVICE
[ ! -e flat.raw ] && ok || bad "convert over a qed parent wrote flat.raw"

# Names: a raw file called .vdi/.vmdk/.qcow2/... is not taken as raw; plain
# dump names are.
random_bytes 1048576 > plain.data
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


# ---- links a later open could not follow (docs/design/probing.md, "Links the
# next open must find"): with -F raw onto a file with a foreign signature or a
# foreign name, nothing is written, and the message says why.
python3 -c "import sys; sys.stdout.buffer.write(bytes([0x5a]) * 65536 + bytes(4 * 1048576 - 65536))" > data.raw
qemu-img convert -O qcow2 data.raw link.qcow2      # a small qcow2 (4 MiB virtual)
qemu-img convert -O qed data.raw link.qed          # a small qed: no plugin reads it
cp data.raw plain.vmdk                               # raw bytes under a foreign name
"$VDKIT" -q create -f vdi -b data.raw over.vdi || bad "create over.vdi"
for parent in link.qcow2 plain.vmdk; do
    export ADVICE="could never be opened again"
    for fmt in vdi vmdk; do
        refused "create -f $fmt -b $parent -F raw" "the parent of new.$fmt" "$VDKIT" create -f $fmt -b $parent -F raw new.$fmt
        [ ! -e new.$fmt ] && ok || bad "create -f $fmt -b $parent -F raw wrote new.$fmt"
    done
    refused "convert -B $parent -F raw" "the parent of" "$VDKIT" convert -O vdi -B $parent -F raw data.raw conv.vdi
    [ ! -e conv.vdi ] && ok || bad "convert -B $parent -F raw wrote conv.vdi"
    for mode in "" -u; do
        cp over.vdi before.vdi
        refused "rebase $mode -F raw -b $parent" "the parent of" "$VDKIT" rebase $mode -F raw -b $parent over.vdi
        cmp -s over.vdi before.vdi && ok || bad "rebase $mode -F raw -b $parent changed over.vdi"
    done
    printf 'jobs:\n  - source: data.raw\n    target: batch.vdi\n    format: vdi\n    backing: %s\n    backing_format: raw\n' $parent > link.yaml
    refused "batch backing $parent, backing_format raw" "the parent of" "$VDKIT" batch link.yaml
    [ ! -e batch.vdi ] && ok || bad "batch with backing $parent wrote batch.vdi"
    unset ADVICE
done
# attach: a child whose recorded parent file became a qcow2 (same path).
cp data.raw base2.raw && "$VDKIT" -q create -f vdi -b base2.raw kid.vdi || bad "create kid.vdi"
cp link.qcow2 base2.raw
for check in --check ""; do
    ADVICE="could never be opened again" refused "attach $check -F raw" "the parent of" \
        "$VDKIT" attach $check -F raw base2.raw kid.vdi
done
# The refusals an open would make are what the check predicts: the probed
# (not named) parent of a chain made without -F opens again.
"$VDKIT" -q create -f vdi -b data.raw fine.vdi && "$VDKIT" info fine.vdi > /dev/null && ok || bad "a raw parent without -F"

# commit into a raw base: data that would give the base a qcow2 signature (a
# guest that wrote an image at offset 0 of its disk) is refused before
# anything is written; other data commits.
truncate -s 4M cbase.raw && "$VDKIT" -q create -f vdi -b cbase.raw ctop.vdi || bad "commit chain"
for blob in link.qcow2 luks.img; do
    n=$(stat -c %s $blob); [ "$n" -gt 4194304 ] && n=65536
    qemu-io -f vdi ctop.vdi -c "write -s $blob 0 $n" > /dev/null 2>&1 || { bad "qemu-io write $blob"; continue; }
    # qcow2 has a plugin: its probe is named; luks has none: its signature is.
    says=signature; [ $blob = link.qcow2 ] && says="cbase.raw a qcow2 header (the qcow2 probe recognises"
    ADVICE="vdkit convert" refused "commit of a $blob header" "$says" "$VDKIT" commit ctop.vdi
    cmp -s cbase.raw <(head -c 4194304 /dev/zero) && ok || bad "commit of a $blob header wrote into cbase.raw"
    "$VDKIT" info ctop.vdi > /dev/null && ok || bad "the chain no longer opens after a refused commit"
done
# The same for headers an installed plugin reads (qemu's "probed raw" rule:
# data that would make the probe pick another format): a VDI header, a
# sparse VMDK header, a VMDK descriptor's text, each at offset 0 of the
# guest's data. The base would next be probed as that format.
qemu-img create -q -f vdi g.vdi 1M && qemu-img create -q -f vmdk g.vmdk 1M || bad "qemu-img create (guest headers)"
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 2048 FLAT "x-flat.vmdk" 0\n' > g.desc
for blob in g.vdi g.vmdk g.desc; do
    case $blob in g.vdi) fmt=vdi ;; *) fmt=vmdk ;; esac
    n=$(stat -c %s $blob); [ "$n" -gt 65536 ] && n=65536
    rm -f ctop.vdi; "$VDKIT" -q create -f vdi -b cbase.raw ctop.vdi || bad "commit chain ($blob)"
    head -c $n $blob > blob.part
    qemu-io -f vdi ctop.vdi -c "write -s blob.part 0 $n" > /dev/null 2>&1 || { bad "qemu-io write $blob"; continue; }
    ADVICE="vdkit convert" refused "commit of a $blob header" "cbase.raw a $fmt header (the $fmt probe recognises" "$VDKIT" commit ctop.vdi
    cmp -s cbase.raw <(head -c 4194304 /dev/zero) && ok || bad "commit of a $blob header wrote into cbase.raw"
    run "$VDKIT" info --output=json cbase.raw
    grep -q '"format": "raw"' out && ok || { bad "cbase.raw is no longer probed as raw after $blob"; sed 's/^/    /' out; }
    ADVICE="vdkit convert" refused "merge of a $blob header" "cbase.raw a $fmt header (the $fmt probe recognises" "$VDKIT" merge ctop.vdi
    cmp -s cbase.raw <(head -c 4194304 /dev/zero) && [ -e ctop.vdi ] && ok || bad "a refused merge of $blob changed the chain"
done
# The oracle: what qemu-img makes of a raw file holding each of these headers.
for blob in g.vdi g.vmdk; do
    cp cbase.raw oracle.raw; head -c 65536 $blob | dd of=oracle.raw conv=notrunc status=none
    qemu-img info oracle.raw 2> /dev/null | grep -q "file format: ${blob#g.}" && ok || bad "qemu-img does not probe a raw file holding $blob as ${blob#g.}"
done
rm -f ctop.vdi; "$VDKIT" -q create -f vdi -b cbase.raw ctop.vdi || bad "commit chain (plain)"
qemu-io -f vdi ctop.vdi -c "write -P 0x33 0 65536" > /dev/null 2>&1
run "$VDKIT" commit ctop.vdi
[ "$rc" -eq 0 ] && ok || { bad "commit of plain data: exit $rc"; sed 's/^/    /' out; }
"$VDKIT" info cbase.raw > /dev/null && ok || bad "cbase.raw after commit"

# ---- the advice names the flag of the image's position (bug: "-f raw"
# where -f means another image, or where there is no -f).
ADVICE="(-F raw)" refused "compare: second image" "link.qed is a qed image" "$VDKIT" compare data.raw link.qed
ADVICE="(-f raw)" refused "compare: first image" "link.qed is a qed image" "$VDKIT" compare link.qed data.raw
ADVICE="cannot be a chain's parent" refused "create -b" "link.qed is a qed image" "$VDKIT" create -f vdi -b link.qed s.vdi
ADVICE="cannot be a chain's parent" refused "snapshot" "link.qed is a qed image" "$VDKIT" snapshot link.qed s.vdi
ADVICE="cannot be a chain's parent" refused "convert -B" "link.qed is a qed image" "$VDKIT" convert -O vdi -B link.qed data.raw s.vdi
ADVICE="cannot be a chain's parent" refused "attach parent" "link.qed is a qed image" "$VDKIT" attach link.qed kid.vdi
printf 'jobs:\n  - source: link.qed\n    target: b.vdi\n    format: vdi\n' > src.yaml
ADVICE="(source_format: raw)" refused "batch source" "link.qed is a qed image" "$VDKIT" batch src.yaml
# delete and rename have no -f: the file the user names is removed or moved as it is.
for f in d1.qed d2.raw d3.vmdk; do cp link.qed $f; done; cp data.raw d2.raw; cp data.raw d3.vmdk
for f in d1.qed d2.raw d3.vmdk; do
    run "$VDKIT" rename $f m-$f
    [ "$rc" -eq 0 ] && [ -e m-$f ] && [ ! -e $f ] && ok || { bad "rename $f: exit $rc"; sed 's/^/    /' out; }
    run "$VDKIT" delete m-$f
    [ "$rc" -eq 0 ] && [ ! -e m-$f ] && ok || { bad "delete m-$f: exit $rc"; sed 's/^/    /' out; }
done

# ---- batch names no file for another format (docs/design/probing.md,
# "Naming new files"): raw targets named step1.vdi or plain.qcow2 are
# refused at validation; under generic names a later job reads an earlier
# raw target and an identical existing raw target is verified.
printf 'jobs:\n  - source: data.raw\n    target: step1.vdi\n    format: raw\n  - source: step1.vdi\n    target: step2.vmdk\n    format: vmdk\n  - source: data.raw\n    target: plain.qcow2\n    format: raw\n' > steps.yaml
run "$VDKIT" batch steps.yaml
[ "$rc" -eq 2 ] && grep -qF "steps.yaml:3: job 'step1.vdi': " out && grep -qF "steps.yaml:9: job 'plain.qcow2': " out \
    && [ ! -e step1.vdi ] && [ ! -e plain.qcow2 ] && ok || { bad "batch: raw targets named .vdi/.qcow2: exit $rc"; sed 's/^/    /' out; }
printf 'jobs:\n  - source: data.raw\n    target: step1.bin\n    format: raw\n  - source: step1.bin\n    target: step2.vmdk\n    format: vmdk\n' > steps.yaml
run "$VDKIT" batch steps.yaml
[ "$rc" -eq 0 ] && ok || { bad "batch: a job reading an earlier raw target step1.bin: exit $rc"; sed 's/^/    /' out; }
cp data.raw plain.img
printf 'jobs:\n  - source: data.raw\n    target: plain.img\n    format: raw\n' > again.yaml
run "$VDKIT" batch again.yaml
if [ "$rc" -eq 0 ] && grep -q "reads the same as the source" out; then ok; else bad "batch: an identical raw plain.img: exit $rc"; sed 's/^/    /' out; fi

# ---- unknown qcow2 versions, cut-off headers and a damaged VHD: refused, as qemu-img refuses them.
python3 - <<'PY'
import struct
d = open("link.qcow2", "rb").read()
open("v4.img", "wb").write(d[:4] + struct.pack(">I", 4) + d[8:])
for src, dst, n in (("luks.img", "cut-luks.img", 7), ("qed.img", "cut-qed.img", 12),
                    ("vhdx.img", "cut-vhdx.img", 65538)):
    try:  # a source qemu-img failed to make is reported above
        open(dst, "wb").write(open(src, "rb").read()[:n])
    except OSError:
        pass
v = bytearray(open("vpcdyn.img", "rb").read()); v[64] ^= 0xff; v[-512 + 64] ^= 0xff
open("bad-vhd.img", "wb").write(v)
PY
run qemu-img info v4.img; grep -q "Unsupported qcow2 version 4" out && ok || bad "qemu-img does not refuse v4.img"
refused "qcow2 version 4" "v4.img carries a qcow2 signature (QFI\\xfb magic, unknown version 4" "$VDKIT" info v4.img
refused "7 bytes of LUKS" "is a truncated luks image" "$VDKIT" info cut-luks.img
refused "12 bytes of QED" "is a truncated qed image" "$VDKIT" info cut-qed.img
refused "VHDX cut at 65538" "is a truncated vhdx image" "$VDKIT" info cut-vhdx.img
# The vhd plugin names the damage (and how to read it anyway).
ADVICE="ignore-checksums" refused "VHD with both checksums damaged" "the footer copy at byte 0: checksum" "$VDKIT" info bad-vhd.img
printf 'QFI' > near.img; run "$VDKIT" info near.img
[ "$rc" -eq 0 ] && ok || bad "a 3-byte near miss of the qcow2 magic is refused"


# merge (backward, into a raw base) is checked like commit.
truncate -s 4M mbase.raw && "$VDKIT" -q create -f vdi -b mbase.raw mtop.vdi || bad "merge chain"
qemu-io -f vdi mtop.vdi -c "write -s link.qcow2 0 65536" > /dev/null 2>&1 || bad "qemu-io write (merge)"
ADVICE="vdkit convert" refused "merge of a qcow2 header into a raw base" "would give" "$VDKIT" merge mtop.vdi
cmp -s mbase.raw <(head -c 4194304 /dev/zero) && [ -e mtop.vdi ] && ok || bad "a refused merge changed the chain"

# A named format that fails on a known container says what the file is, and
# a VMDK flat extent refused by its name is called one.
run "$VDKIT" info -f vdi link.qcow2
[ "$rc" -ne 0 ] && grep -qF "link.qcow2 is a qcow2 image" out && ok || { bad "info -f vdi link.qcow2"; sed 's/^/    /' out; }
cp data.raw disk-flat.vmdk
refused "a flat extent by name" "looks like a VMDK flat extent" "$VDKIT" info disk-flat.vmdk

finish
