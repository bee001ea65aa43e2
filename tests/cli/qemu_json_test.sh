#!/usr/bin/env bash
# Machine-readable output against qemu-img on the same images
# (docs/qemu-img-differences.md): `info --output=json` (and
# --backing-chain), `map --output=json` and `check --output=json` are diffed
# with qemu-img's for VMDK (four create types and a child), VDI (dynamic,
# fixed), qcow2 (compat 1.1, 0.10, lazy refcounts, a dirty one, a child) and
# raw — every key qemu-img prints must be there with qemu's value (except
# the ones the differences document names), and every other key must be one
# of vdkit's documented extras.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3

cmp_py="$VDKIT_SOURCE_DIR/tests/cli/qemu_json_compare.py"

# Images, each made by qemu-img/qemu-io with some data, zero writes and holes.
mk() { # mk FILE FMT [create options...]
    local f=$1 fmt=$2
    shift 2
    qemu-img create -q -f "$fmt" "$@" "$f" 64M || bad "qemu-img create $f"
}
data() { qemu-io -f "$2" -c "write -P 0x11 0 64k" -c "write -P 0x22 1M 128k" -c "write -z 4M 64k" "$1" > /dev/null || bad "qemu-io $1"; }
mk s.vmdk vmdk -o subformat=monolithicSparse && data s.vmdk vmdk
mk f.vmdk vmdk -o subformat=monolithicFlat && data f.vmdk vmdk
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse t.vmdk 3G && data t.vmdk vmdk
qemu-img convert -q -f vmdk -O vmdk -o subformat=streamOptimized s.vmdk o.vmdk
mkdir -p sub && qemu-img create -q -f vmdk -b ../s.vmdk -F vmdk sub/child.vmdk &&
    qemu-io -f vmdk -c "write -P 0x33 2M 64k" sub/child.vmdk > /dev/null
mk d.vdi vdi && data d.vdi vdi
mk x.vdi vdi -o static=on
mk q.qcow2 qcow2 && data q.qcow2 qcow2
mk q010.qcow2 qcow2 -o compat=0.10 && data q010.qcow2 qcow2
mk ql.qcow2 qcow2 -o lazy_refcounts=on && data ql.qcow2 qcow2
qemu-img create -q -f qcow2 -b q.qcow2 -F qcow2 qc.qcow2 && qemu-io -f qcow2 -c "write -P 0x44 64k 64k" qc.qcow2 > /dev/null
mk r.raw raw && data r.raw raw
# A dirty qcow2: incompatible feature bit 0 (qcow2.txt "Header", byte 72).
cp ql.qcow2 dirty.qcow2 && printf '\x01' | dd of=dirty.qcow2 bs=1 seek=79 conv=notrunc status=none

images="s.vmdk f.vmdk t.vmdk o.vmdk sub/child.vmdk d.vdi x.vdi q.qcow2 q010.qcow2 ql.qcow2 qc.qcow2 r.raw dirty.qcow2"
for img in $images; do
    fmt=${img##*.}
    qemu-img info -U --output=json -f "$fmt" "$img" > q.json 2> qerr || { bad "qemu-img info $img: $(cat qerr)"; continue; }
    "$VDKIT" info --output=json "$img" > v.json 2> verr || { bad "vdkit info $img: $(cat verr)"; continue; }
    python3 "$cmp_py" info q.json v.json > diff.txt && ok || { bad "info $img differs from qemu-img:"; cat diff.txt; }
    qemu-img info -U --output=json --backing-chain -f "$fmt" "$img" > q.json 2> /dev/null
    "$VDKIT" info --output=json --backing-chain "$img" > v.json 2> verr
    python3 "$cmp_py" info-chain q.json v.json > diff.txt && ok || { bad "info --backing-chain $img differs:"; cat diff.txt; }
    [ "$img" = dirty.qcow2 ] && continue
    qemu-img map -U --output=json -f "$fmt" "$img" > q.json 2> /dev/null
    "$VDKIT" map --output=json "$img" > v.json 2> verr || { bad "vdkit map $img: $(cat verr)"; continue; }
    python3 "$cmp_py" map q.json v.json > diff.txt && ok || { bad "map $img differs from qemu-img:"; cat diff.txt; }
done

# The dirty mark is qemu's dirty-flag, true; a clean image says false (above).
"$VDKIT" info --output=json dirty.qcow2 > v.json 2> verr
python3 -c 'import json,sys; sys.exit(0 if json.load(open("v.json"))["dirty-flag"] is True else 1)' && ok || bad "dirty.qcow2: dirty-flag not true: $(cat v.json verr)"
# parent-uuid is absent, not "", when the image records none (qemu's VMDK child).
python3 -c 'import json,subprocess,sys
j=json.loads(subprocess.check_output([sys.argv[1],"info","--output=json","sub/child.vmdk"]))
sys.exit(0 if "parent-uuid" not in j and j["backing-filename"]=="../s.vmdk" else 1)' "$VDKIT" && ok || bad "child.vmdk: parent-uuid present or backing wrong"

# map: one object per line, the array's brackets on the first and last.
"$VDKIT" map --output=json sub/child.vmdk > v.json
python3 - <<'EOF' && ok || bad "map --output=json is not one record per line: $(head -3 v.json)"
import json
lines = open("v.json").read().splitlines()
assert lines[0].startswith("[{") and lines[-1].endswith("}]") and len(lines) > 2
for l in lines:
    json.loads(l.lstrip("[").rstrip(",]"))
EOF

# check: qemu-img's keys on a clean image and on one with a leaked cluster and
# one with a corruption (a qcow2 L2 entry cleared / two L2 entries sharing a
# cluster, written with python from the header's l1_table_offset).
cp q.qcow2 leak.qcow2 && cp q.qcow2 corrupt.qcow2
python3 - <<'EOF' || bad "could not damage the qcow2 copies"
import struct
def l2(path):
    f = open(path, "r+b")
    f.seek(40); l1 = struct.unpack(">Q", f.read(8))[0]
    f.seek(l1); l2off = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    return f, l2off
f, off = l2("leak.qcow2")          # cluster 0's data is no longer referenced: a leak
f.seek(off); f.write(b"\0" * 8); f.close()
f, off = l2("corrupt.qcow2")       # cluster 1 (64k) points at cluster 0's data: refcount 1, used twice
f.seek(off); e = f.read(8); f.seek(off + 8); f.write(e); f.close()
EOF
for img in q.qcow2 leak.qcow2 corrupt.qcow2 d.vdi s.vmdk; do
    fmt=${img##*.}
    qemu-img check --output=json -f "$fmt" "$img" > q.json 2> /dev/null; qrc=$?
    "$VDKIT" check --output=json "$img" > v.json 2> verr; vrc=$?
    [ "$qrc" = "$vrc" ] && ok || bad "check $img: exit $vrc, qemu-img $qrc ($(cat verr))"
    python3 "$cmp_py" check q.json v.json > diff.txt && ok || { bad "check $img differs from qemu-img:"; cat diff.txt; }
done
# check -r: the -fixed counts are what the repair fixed, as qemu-img says.
cp leak.qcow2 leak-saved.qcow2
qemu-img check -r all --output=json leak.qcow2 > q.json 2> /dev/null
cp leak-saved.qcow2 leak.qcow2
"$VDKIT" check -r --output=json leak.qcow2 > v.json 2> verr
python3 "$cmp_py" check q.json v.json > diff.txt && ok || { bad "check -r leak differs from qemu-img:"; cat diff.txt; }

finish
