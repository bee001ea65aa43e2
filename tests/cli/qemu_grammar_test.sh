#!/usr/bin/env bash
# qemu-img's grammar where vdkit takes it (docs/cli.md, docs/qemu-img-
# differences.md), each checked against qemu-img on the same files:
#   -V, vdkit help [COMMAND]; convert without -O and create without -f make
#   raw; -o help; qemu-img's -o spellings (adapter_type, cluster_size,
#   hwversion, static=on); compare -q, the size-mismatch warning, -p;
#   check -r leaks|all; usage errors of check and compare exit 1;
#   convert -r (rate limit); progress on a pipe, --progress=json[:FD], SIGUSR1.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3

random_bytes 2M > src.raw && truncate -s 8M src.raw

# -V and help.
expect_exit 0 "vdkit -V" "$VDKIT" -V
says "-V prints the version" "vdkit "
expect_exit 0 "vdkit help" "$VDKIT" help
says "vdkit help lists the commands" "convert"
expect_exit 0 "vdkit help convert" "$VDKIT" help convert
says "vdkit help convert lists its options" "--output-format"
"$VDKIT" convert --help > want 2>&1
grep '^  -' out > got-options; grep '^  -' want > want-options
[ -s got-options ] && cmp -s got-options want-options && ok || bad "vdkit help convert lists other options than vdkit convert --help"
expect_exit 2 "vdkit help convrt" "$VDKIT" help convrt
says "help of an unknown command suggests one" "did you mean 'convert'"

# Defaults: raw, as qemu-img.
expect_exit 0 "convert without -O" "$VDKIT" convert -f raw src.raw noext
qemu-img convert -f raw src.raw qemu-noext
[ "$(qemu-img info --output=json noext | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')" = raw ] && ok || bad "convert without -O did not make raw"
cmp -s noext qemu-noext && ok || bad "convert without -O: not what qemu-img convert makes"
expect_exit 0 "create without -f" "$VDKIT" create plain 1M
qemu-img info --output=json plain > out; says "create without -f makes raw" '"format": "raw"'
[ "$(stat -c %s plain)" = 1048576 ] && ok || bad "create plain 1M: size $(stat -c %s plain)"
# ... but an extension that names a format still chooses it (vdkit's naming rule).
expect_exit 0 "convert to .vdi without -O" "$VDKIT" convert -f raw src.raw named.vdi
qemu-img info --output=json named.vdi > out; says "the extension chose vdi" '"format": "vdi"'

# -o help lists the target format's keys.
expect_exit 0 "convert -O vmdk -o help" "$VDKIT" convert -O vmdk -o help
says "-o help lists vmdk's keys" "subformat=<enum>"
says "-o help lists vmdk's keys" "adapter-type"
expect_exit 0 "create -f qcow2 -o help" "$VDKIT" create -f qcow2 -o help
says "-o help lists qcow2's keys" "cluster-size"

# qemu-img's -o spellings, checked with qemu-img info on what was made.
expect_exit 0 "create -o adapter_type=lsilogic,hwversion=6" \
    "$VDKIT" create -f vmdk -o adapter_type=lsilogic,hwversion=6,zeroed_grain=on a.vmdk 64M
grep -a -q 'ddb.adapterType = "lsilogic"' a.vmdk && ok || bad "adapter_type was not applied"
grep -a -q 'ddb.virtualHWVersion = "6"' a.vmdk && ok || bad "hwversion was not applied"
expect_exit 0 "create -o cluster_size=128k (qcow2)" "$VDKIT" create -f qcow2 -o cluster_size=128k,compat=0.10 c.qcow2 64M
qemu-img info --output=json c.qcow2 > out
says "cluster_size is qcow2's cluster-size" '"cluster-size": 131072'
says "compat=0.10" '"compat": "0.10"'
expect_exit 0 "create -o cluster_size=2M (vdi block size)" "$VDKIT" create -f vdi -o cluster_size=2M b.vdi 64M
"$VDKIT" info --output=json b.vdi > out; says "cluster_size is vdi's block-size" '"cluster-size": 2097152'
expect_exit 0 "create -o static=on (vdi)" "$VDKIT" create -f vdi -o static=on s.vdi 4M
"$VDKIT" info --output=json s.vdi > out; says "static=on makes a fixed vdi" '"type": "fixed"'
expect_exit 1 "an unknown key is still refused" "$VDKIT" create -f vdi -o no_such_key=1 n.vdi 4M

# compare: -q prints nothing, the size warning, -p; exit statuses as qemu-img.
cp src.raw big.raw && truncate -s 9M big.raw
expect_exit 0 "compare of different sizes" "$VDKIT" compare -f raw -F raw src.raw big.raw
qemu-img compare -f raw -F raw src.raw big.raw > want
cmp -s out want && ok || { bad "compare's output differs from qemu-img's:"; diff out want; }
says "the size warning" "Warning: Image size mismatch!"
expect_exit 0 "compare -q" "$VDKIT" compare -q -f raw -F raw src.raw big.raw
[ ! -s out ] && ok || bad "compare -q printed: $(cat out)"
printf 'x' | dd of=big.raw bs=1 seek=$((1 << 20)) conv=notrunc status=none
expect_exit 1 "compare -q of different images" "$VDKIT" compare -q -f raw -F raw src.raw big.raw
[ ! -s out ] && ok || bad "compare -q printed: $(cat out)"
"$VDKIT" compare -p -f raw -F raw src.raw src.raw > out 2> err; [ $? = 0 ] && ok || bad "compare -p"
says "compare -p reports progress on stderr (a log line here)" "progress: 100.00%" err
# Usage errors exit 1 for check and compare (qemu-img: 2 is corruptions / open error).
for cmd in "check --no-such-option src.raw" "compare -f raw src.raw" "check"; do
    $VDKIT $cmd > out 2>&1; got=$?
    qemu-img $cmd > /dev/null 2>&1; want=$?
    [ "$got" = 1 ] && [ "$want" = 1 ] && ok || bad "vdkit $cmd: exit $got, qemu-img $want (both should be 1)"
done
expect_exit 2 "a usage error of info stays 2 (docs/cli.md)" "$VDKIT" info --no-such-option src.raw

# check -r leaks|all, on a qcow2 with a leaked cluster and one with a corruption.
qemu-img create -q -f qcow2 q.qcow2 8M && qemu-io -f qcow2 -c "write -P 1 0 128k" q.qcow2 > /dev/null
cp q.qcow2 leak.qcow2 && cp q.qcow2 corrupt.qcow2
python3 - <<'EOF' || bad "could not damage the qcow2 copies"
import struct
def l2(path):
    f = open(path, "r+b")
    f.seek(40); l1 = struct.unpack(">Q", f.read(8))[0]
    f.seek(l1); return f, struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
f, off = l2("leak.qcow2"); f.seek(off); f.write(b"\0" * 8); f.close()
f, off = l2("corrupt.qcow2"); f.seek(off); e = f.read(8); f.seek(off + 8); f.write(e); f.close()
EOF
cp leak.qcow2 leak2.qcow2 && cp corrupt.qcow2 corrupt2.qcow2
expect_exit 0 "check -r leaks on a leak" "$VDKIT" check -r leaks leak.qcow2
qemu-img check leak.qcow2 > /dev/null 2>&1 && ok || bad "qemu-img check after vdkit check -r leaks: not clean"
expect_exit 0 "check -r all on a leak" "$VDKIT" check -r all leak2.qcow2
qemu-img check leak2.qcow2 > /dev/null 2>&1 && ok || bad "qemu-img check after vdkit check -r all: not clean"
before=$(sha256sum < corrupt.qcow2)
expect_exit 2 "check -r leaks with a corruption changes nothing" "$VDKIT" check -r leaks corrupt.qcow2
[ "$(sha256sum < corrupt.qcow2)" = "$before" ] && ok || bad "check -r leaks wrote to an image with errors"
says "-r leaks says why" "nothing but leaks"
expect_exit 1 "check -r bogus" "$VDKIT" check --repair-mode=bogus corrupt.qcow2

# convert -r: 2 MiB of data at 1 MiB/s takes about 2 s.
start=$(date +%s.%N)
expect_exit 0 "convert -r 1M" "$VDKIT" convert -r 1M -f raw -O vdi src.raw slow.vdi
elapsed=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 1.5 else 1)" "$elapsed" && ok || bad "convert -r 1M of 2 MiB took $elapsed s"
qemu-img compare -f raw -F vdi src.raw slow.vdi > /dev/null && ok || bad "convert -r: content differs"

# Progress: plain lines when stderr is not a terminal, no carriage returns.
"$VDKIT" convert -p -f raw -O vdi src.raw p1.vdi > out 2> err
says "-p on a pipe prints lines" "progress: 100.00%" err
! grep -q $'\r' err && ok || bad "-p on a pipe drew a bar (carriage returns)"
# --progress=json on stderr and on a given descriptor: JSON lines with the fields.
"$VDKIT" --progress=json convert -f raw -O vdi src.raw p2.vdi 2> err
"$VDKIT" --progress=json:3 convert -f raw -O vdi src.raw p3.vdi 3> fd3.json 2> err3
for f in err fd3.json; do
    python3 - "$f" <<'EOF' && ok || bad "--progress=json lines in $f: $(head -3 "$f")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert lines, "no lines"
for l in lines:
    assert {"phase", "done", "total", "percent", "rate", "elapsed"} <= set(l), l
assert lines[-1]["phase"] == "convert" and lines[-1]["percent"] == 100.0 and lines[-1]["done"] == 2 << 20, lines[-1]
EOF
done
expect_exit 2 "--progress=json:99 (not open)" "$VDKIT" --progress=json:99 info src.raw
# batch: one JSON line per job progress, with the job's name.
cat > jobs.yaml <<'EOF'
jobs:
  - name: first
    source: src.raw
    source_format: raw
    target: j1.vdi
    format: vdi
EOF
"$VDKIT" --progress=json batch jobs.yaml > out 2> err
grep -q '"job": "first"' err && ok || bad "batch --progress=json names the job: $(cat err out)"
# SIGUSR1 prints the progress so far, -p or not.
"$VDKIT" convert -r 512k -f raw -O vdi src.raw usr1.vdi > out 2> err &
pid=$!
sleep 1.5
kill -USR1 "$pid"
wait "$pid" && ok || bad "convert with SIGUSR1 failed: $(cat err)"
grep -qE '^    \([0-9]+\.[0-9]{2}/100%\)$' err && ok || bad "SIGUSR1 printed no progress: $(cat err)"

finish
