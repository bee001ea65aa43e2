#!/usr/bin/env bash
# The demo job: generate a sample disk (data, zeros and holes), look at it,
# convert it with a progress bar, and check the result with qemu-img.
set -euo pipefail
build=${1:-build}
vdkit="$build/bin/vdkit"
# The SDK example format (toysparse) is built with the tests; show it too.
export VDKIT_PLUGIN_PATH="$build/tests/plugins"
work="$build/demo"
rm -rf "$work" && mkdir -p "$work"

echo "== Generating a 1 GiB sample disk: 24 MiB of data, 48 MiB written as zeros, the rest holes"
python3 - "$work/sample.img" <<'PY'
import os, random, sys
random.seed(2026)
size = 1 << 30
with open(sys.argv[1], "wb") as f:
    f.truncate(size)
    for i in range(48):
        off = random.randrange(0, size - (2 << 20)) & ~0xFFFF
        f.seek(off)
        # half random data, half runs of zeros written as data
        f.write(os.urandom(1 << 20) if i % 2 else bytes(2 << 20))
PY

echo
echo "== vdkit plugins"
"$vdkit" plugins | grep -E '^(format|transport|filter) '
echo
echo "== vdkit info sample.img"
"$vdkit" info -f raw "$work/sample.img"
echo
echo "== vdkit convert -p -f raw -O toysparse sample.img sample.toys"
"$vdkit" convert -p -f raw -O toysparse "$work/sample.img" "$work/sample.toys"
echo
echo "== vdkit info sample.toys"
"$vdkit" info "$work/sample.toys"
echo
echo "== vdkit convert -p -O raw sample.toys roundtrip.img"
"$vdkit" convert -p -O raw "$work/sample.toys" "$work/roundtrip.img"
echo
echo "== vdkit compare / qemu-img compare"
"$vdkit" compare -f raw "$work/sample.img" "$work/sample.toys"
qemu-img compare -f raw -F raw "$work/sample.img" "$work/roundtrip.img"
echo
echo "== vdkit map roundtrip.img (data ranges only)"
"$vdkit" map -f raw "$work/roundtrip.img" | awk 'NR==1 || /data/' | head -8
echo "..."
echo
echo "== VirtualBox and VMware: vdkit convert -O vdi / -O vmdk, a snapshot over the VDI, check, compact"
"$vdkit" convert -p -f raw -O vdi "$work/sample.img" "$work/sample.vdi"
"$vdkit" convert -p -O vmdk "$work/sample.vdi" "$work/sample.vmdk"
"$vdkit" create -f vmdk -b sample.vdi "$work/snapshot.vmdk"
"$vdkit" info "$work/snapshot.vmdk" | grep -E "format|backing|chain"
"$vdkit" check "$work/sample.vdi"
"$vdkit" compact "$work/sample.vdi"
qemu-img check -f vdi "$work/sample.vdi" && qemu-img compare -f raw "$work/sample.img" "$work/sample.vdi"
qemu-img compare -f raw "$work/sample.img" "$work/sample.vmdk"
"$vdkit" compare -F raw "$work/snapshot.vmdk" "$work/sample.img"
echo
echo "== vdkit batch: config/examples/batch-demo.yaml (four conversions, two at a time, verified)"
mkdir -p "$work/batch/disks" "$work/batch/out"
cp "$(dirname "$0")/../config/examples/batch-demo.yaml" "$work/batch/"
cp --sparse=always "$work/sample.img" "$work/batch/disks/web.img"
cp "$work/sample.vdi" "$work/batch/disks/db.vdi"
"$vdkit" batch --check "$work/batch/batch-demo.yaml"
"$vdkit" batch -p "$work/batch/batch-demo.yaml"
sed -n '1,8p' "$work/batch/batch-report.yaml"
echo "-- run again: finished jobs are skipped"
"$vdkit" batch "$work/batch/batch-demo.yaml"
qemu-img compare -f raw "$work/sample.img" "$work/batch/out/web-stream.vmdk"
qemu-img compare -f raw "$work/sample.img" "$work/batch/out/db.vmdk"
echo
du -h --apparent-size "$work/sample.img" | sed 's/^/apparent: /'
du -h "$work/sample.toys" "$work/roundtrip.img" "$work/sample.vdi" "$work/sample.vmdk" | sed 's/^/on disk:  /'
