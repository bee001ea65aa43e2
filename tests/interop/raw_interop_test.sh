#!/usr/bin/env bash
# Interop with qemu-img (a tool nobody here wrote): images made by vdkit
# compare equal with `qemu-img compare`, pass `qemu-img info`, and
# `vdkit map` agrees with `qemu-img map` on allocated ranges.
set -euo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img python3
export VDKIT_PLUGIN_PATH="$VDKIT_TEST_EXTRA_PLUGIN_DIR"

# A sparse source made by qemu-img, with random data written into it.
qemu-img create -q -f raw "$work/src.img" 256M
python3 - "$work/src.img" <<'PY'
import os, random, sys
random.seed(11)                                     # the layout
data = random.Random(os.environ["VDKIT_TEST_SEED"])  # the bytes
with open(sys.argv[1], "r+b") as f:
    for _ in range(40):
        off = random.randrange(0, 255 << 20) & ~4095
        f.seek(off); f.write(data.randbytes(random.choice([4096, 65536, 1 << 20])))
    f.seek((256 << 20) - 512); f.write(b"\xee" * 512)   # last sector
PY

"$VDKIT" convert -f raw -O raw "$work/src.img" "$work/vdkit.img"
qemu-img compare -f raw -F raw "$work/src.img" "$work/vdkit.img"
qemu-img info --output=json "$work/vdkit.img" | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['virtual-size']==256<<20, d"

# Through the sparse example format and back, still identical to qemu-img.
"$VDKIT" convert -f raw -O toysparse "$work/src.img" "$work/mid.toys"
"$VDKIT" convert -O raw "$work/mid.toys" "$work/back.img"
qemu-img compare -f raw -F raw "$work/src.img" "$work/back.img"

# vdkit create makes what qemu-img expects.
"$VDKIT" create -f raw "$work/new.img" 1G
qemu-img info -f raw --output=json "$work/new.img" | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['virtual-size']==1<<30 and d['actual-size']<1<<20, d"
"$VDKIT" create -f raw --preallocate "$work/full.img" 4M
qemu-img info -f raw --output=json "$work/full.img" | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['actual-size']>=4<<20, d"
qemu-img create -q -f raw "$work/qemu4m.img" 4M
qemu-img compare -f raw -F raw "$work/full.img" "$work/qemu4m.img"

# The conversion kept holes, and both tools see the same data ranges.
"$VDKIT" map --output=json -f raw "$work/vdkit.img" > "$work/vdkit.map"
qemu-img map --output=json -f raw "$work/vdkit.img" > "$work/qemu.map"
python3 - "$work/vdkit.map" "$work/qemu.map" <<'PY'
import json, sys
def data_ranges(entries):
    out = []
    for e in entries:
        if not e["data"]:
            continue
        if out and out[-1][1] == e["start"]:
            out[-1][1] = e["start"] + e["length"]
        else:
            out.append([e["start"], e["start"] + e["length"]])
    return out
ours = data_ranges(json.load(open(sys.argv[1])))
theirs = data_ranges(json.load(open(sys.argv[2])))
assert ours == theirs, (ours[:5], theirs[:5])
assert 0 < sum(b - a for a, b in ours) < 100 << 20, "conversion lost sparseness"
print(f"OK: {len(ours)} data ranges agree with qemu-img map")
PY
echo "OK: raw interop with qemu-img"
