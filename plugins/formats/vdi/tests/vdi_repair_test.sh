#!/usr/bin/env bash
# VDI blocks cut by the end of the file (the "trust" issue): a block whose
# data starts inside the file is data up to the end of the file and zeros
# past it — read, map, check and check -r agree, as qemu-img reads it — and
# check -r keeps the surviving part. Dynamic, fixed and differencing images.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3

for kind in dynamic fixed diff; do
    img=$kind.vdi
    case $kind in
    dynamic) qemu-img create -q -f vdi $img 8M ;;
    fixed) qemu-img create -q -f vdi -o static=on $img 8M ;;
    diff) # qemu does not open VDI differencing images: vdkit writes it, and is its only reader here
        "$VDKIT" -q create -f vdi base.vdi 8M
        qemu-io -f vdi -c 'write -P 0x70 3M 1M' base.vdi > /dev/null
        truncate -s 8M child.raw
        qemu-io -f raw -c 'write -P 0x70 3M 1M' -c 'write -P 0x61 0 1M' -c 'write -P 0x62 5M 1M' child.raw > /dev/null
        "$VDKIT" -q convert -f raw -O vdi -B base.vdi -F vdi child.raw $img ;;
    esac
    if [ $kind != diff ]; then
        qemu-io -f vdi -c 'write -P 0x61 0 1M' -c 'write -P 0x62 3M 1M' $img > /dev/null
        [ $kind = fixed ] && qemu-io -f vdi -c 'write -P 0x63 7M 1M' $img > /dev/null
    fi
    qemu() { [ $kind != diff ]; } # qemu-img is the oracle where it reads the image
    size=$(stat -c %s $img)
    cut=$((size - 512 * 1024 - 4096))   # the last data block keeps its first 512 KiB - 4 KiB
    truncate -s $cut $img
    # Which block is cut, and where its data starts (header: map at 0x154, data at 0x158).
    read -r blk data_at <<< "$(python3 - $img $cut <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
bmap, data = struct.unpack_from("<II", d, 0x154)
bs = struct.unpack_from("<I", d, 0x178)[0]
n = struct.unpack_from("<I", d, 0x180)[0]
m = struct.unpack_from("<%dI" % n, d, bmap)
cut = int(sys.argv[2])
for b, e in enumerate(m):
    if e < 0xFFFFFFFE and data + e * bs < cut < data + (e + 1) * bs:
        print(b, data + e * bs)
PY
)"
    [ -n "$blk" ] && ok || { bad "$kind: no block is cut (generator)"; continue; }
    kept=$((cut - data_at))
    if qemu; then
        qemu-img convert -O raw $img $kind.qemu.raw
        "$VDKIT" convert -O raw $img $kind.before.raw 2>/dev/null && cmp -s $kind.before.raw $kind.qemu.raw && ok \
            || bad "$kind: vdkit does not read the cut block as qemu-img does"
    else
        "$VDKIT" convert -O raw $img $kind.before.raw || bad "$kind: vdkit does not read the cut block"
        python3 - $kind.before.raw child.raw $((blk << 20)) $kept <<'PY' && ok || bad "$kind: vdkit does not read the cut block's surviving part and zeros"
import sys
a, c = open(sys.argv[1], "rb").read(), bytearray(open(sys.argv[2], "rb").read())
lo, kept = int(sys.argv[3]), int(sys.argv[4])
c[lo + kept:lo + (1 << 20)] = bytes((1 << 20) - kept)
sys.exit(0 if a == bytes(c) else 1)
PY
    fi
    "$VDKIT" map --output=json $img | python3 -c '
import json, sys
b = int(sys.argv[1]) << 20
sys.exit(0 if any(e["start"] <= b < e["start"] + e["length"] and e["data"] for e in json.load(sys.stdin)) else 1)' "$blk" \
        && ok || bad "$kind: map does not show the cut block as data"
    out=$("$VDKIT" check --output=json $img); rc=$?
    python3 - <<PY && ok || bad "$kind: check (exit $rc): $out"
import json
f = json.loads('''$out''')["findings"]
hits = [x for x in f if "cut off" in x["message"]]
assert $rc == 2 and len(hits) == 1, f
h = hits[0]
assert h["offset"] == $cut, h
assert "data block" in h["message"] and "at byte $data_at" in h["message"], h
lo = ($blk << 20) + $kept
assert "lost disk bytes [%d, %d)" % (lo, ($blk + 1) << 20) in h["message"], h
assert not any("the map uses" in x["message"] or "clears" in x["message"] for x in f), f
PY
    "$VDKIT" check -r $img > /dev/null; rc=$?
    [ $rc -eq 0 ] && ok || bad "$kind: check -r exit $rc"
    "$VDKIT" convert -O raw $img $kind.after.raw && cmp -s $kind.after.raw $kind.before.raw && ok \
        || bad "$kind: check -r changed what the disk reads"
    [ "$(dd if=$kind.after.raw bs=4k skip=$((blk << 8)) count=$((kept / 4096)) status=none | tr -d '\0' | wc -c)" = $kept ] \
        && ok || bad "$kind: the surviving part of the cut block is gone"
    if qemu; then
        qemu-img check -q $img && ok || bad "$kind: qemu-img check after the repair"
        qemu-img convert -O raw $img $kind.qemu2.raw && cmp -s $kind.qemu2.raw $kind.before.raw && ok \
            || bad "$kind: qemu-img reads the repaired image differently"
    fi
    "$VDKIT" check $img > /dev/null && ok || bad "$kind: check after the repair is not clean"
done

finish
