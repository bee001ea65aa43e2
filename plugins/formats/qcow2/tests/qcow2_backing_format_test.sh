#!/usr/bin/env bash
# The backing format a qcow2 records (qcow2.txt §Header extensions, "Backing
# file format name") decides how its backing file is read, as in qemu:
# 1. a backing file recorded as raw is read as raw even when its bytes are
#    an image (qcow2, VMDK, VDI; one of them naming /etc/passwd as its own
#    backing file: the CVE-2008-2004 pattern): vdkit reads what
#    `qemu-img convert -O raw` reads;
# 2. a recorded format the file does not carry is an error naming both
#    (and a name no plugin has, by that name);
# 3. vdkit create -b FILE -F raw over such bytes makes a qcow2 qemu reads
#    the same way, and rebase -u -F changes the record.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3

# Guest data that happens to start with an image: each inner image, padded
# to 4 MiB of "disk" with a pattern after it.
qemu-img create -q -f qcow2 inner.qcow2 64M
qemu-img create -q -f qcow2 -u -b /etc/passwd -F raw inner-passwd.qcow2 64M
head -c 1M /dev/urandom > one.raw
"$VDKIT" convert -O vmdk one.raw inner.vmdk > /dev/null && "$VDKIT" convert -O vdi one.raw inner.vdi > /dev/null || bad "inner images"
for pair in inner.qcow2:looks-qcow2 inner-passwd.qcow2:looks-passwd inner.vmdk:looks-vmdk inner.vdi:looks-vdi; do
    inner=${pair%%:*} name=${pair#*:}
    raw="$name.img"
    cp "$inner" "$raw"
    qemu-io -f raw -c 'write -P 0x6c 3M 64k' "$raw" > /dev/null
    truncate -s 4M "$raw"
    qemu-img create -q -f qcow2 -b "$raw" -F raw "top-$name.qcow2" 4M
    qemu-io -f qcow2 -c 'write -P 0x33 1M 4k' "top-$name.qcow2" > /dev/null
    qemu-img convert -O raw "top-$name.qcow2" "q-$name.raw"
    expect_exit 0 "read the chain over raw $inner bytes" "$VDKIT" convert -O raw "top-$name.qcow2" "v-$name.raw"
    cmp -s "q-$name.raw" "v-$name.raw" && ok || bad "$inner as raw backing: vdkit reads other bytes than qemu-img"
    expect_exit 0 "info --backing-chain over raw $inner bytes" "$VDKIT" info --backing-chain --output=json "top-$name.qcow2"
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); sys.exit(0 if c[-1]["format"]=="raw" else 1)' out \
        && ok || bad "$inner as raw backing: info names its format otherwise: $(cat out)"
    expect_exit 0 "compare with qemu's reading" "$VDKIT" compare -F raw "top-$name.qcow2" "q-$name.raw"
done

# 2. The record and the file disagree: an error naming both.
qemu-img create -q -f qcow2 realq.qcow2 4M
"$VDKIT" convert -O vmdk one.raw realv.vmdk > /dev/null
head -c 4M /dev/zero > plain.img
for spec in "realq.qcow2 vmdk a 'qcow2' image" "realv.vmdk qcow2 a 'vmdk' image" "realq.qcow2 vdi a 'qcow2' image" \
            "plain.img qcow2 a 'raw' image"; do
    set -- $spec
    file=$1 rec=$2; shift 2; probed="$*"
    qemu-img create -q -f qcow2 -u -b "$file" -F "$rec" "mis-$rec-${file%.*}.qcow2" 4M
    expect_exit 1 "$file recorded as $rec" "$VDKIT" info "mis-$rec-${file%.*}.qcow2"
    says "names the recorded format ($rec over $file)" "as '$rec'" out
    says "names what probing finds ($rec over $file)" "$probed" out
done
python3 - <<'PY'
# A recorded name no plugin has: patch the extension of a qcow2 over raw.
import struct
p = "mis-name.qcow2"
d = bytearray(open("top-looks-qcow2.qcow2", "rb").read())
i = d.index(struct.pack(">I", 0xe2792aca))
n = struct.unpack(">I", d[i + 4:i + 8])[0]
d[i + 8:i + 8 + n] = b"zzz"[:n].ljust(n, b"z")
open(p, "wb").write(d)
PY
expect_exit 1 "an unknown recorded format" "$VDKIT" info mis-name.qcow2
says "names it" "as 'zzz'" out
says "says no plugin has it" "no installed format plugin" out

# 3. vdkit links a qcow2 to raw bytes that look like an image, and qemu
#    reads the link the same way.
expect_exit 0 "create -b looks-qcow2.img -F raw" "$VDKIT" create -f qcow2 -b looks-qcow2.img -F raw vtop.qcow2
[ "$(qemu-img info --output=json vtop.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin).get("backing-filename-format"))')" = raw ] \
    && ok || bad "vtop.qcow2 does not record raw for qemu"
expect_exit 0 "qemu-img compare reads vdkit's link as raw" qemu-img compare -F raw vtop.qcow2 looks-qcow2.img
expect_exit 0 "vdkit reads it as raw" "$VDKIT" compare -F raw vtop.qcow2 looks-qcow2.img
# A wrong record is mended by rebase -u -F (the link only).
cp mis-vmdk-realq.qcow2 fix.qcow2
expect_exit 0 "rebase -u -F qcow2 mends a wrong record" "$VDKIT" rebase -u -b realq.qcow2 -F qcow2 fix.qcow2
expect_exit 0 "and the image opens" "$VDKIT" info fix.qcow2
[ "$(qemu-img info --output=json fix.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin).get("backing-filename-format"))')" = qcow2 ] \
    && ok || bad "fix.qcow2 does not record qcow2 after rebase -u -F qcow2"

finish
