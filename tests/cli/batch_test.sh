#!/usr/bin/env bash
# vdkit batch: validation reports every problem with its line and runs
# nothing; several jobs run in parallel, one fails, the rest land and are
# read back by qemu-img; a rerun skips what is done and converts what failed;
# a killed run leaves no target under its final name and the next run
# finishes it; reports in JSON and YAML.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img

mkdir disks out
# web.img: 64 MiB raw, data in three places; db.vdi: 40 MiB of data in 3 GiB.
truncate -s 64M disks/web.img
for at in 1 20 63; do random_bytes 1M | dd of=disks/web.img bs=1M seek=$at conv=notrunc status=none; done
random_bytes 40M > db.raw && truncate -s 3G db.raw
"$VDKIT" convert -f raw -O vdi db.raw disks/db.vdi > /dev/null || bad "making db.vdi"
# A VDI whose header is damaged: the job that reads it fails at open.
cp disks/db.vdi disks/broken.vdi
printf '\xff\xff\xff\xff' | dd of=disks/broken.vdi bs=1 seek=$((0x154)) conv=notrunc status=none

# 1. Validation: every problem, with its line, and nothing runs.
cat > bad.yaml <<'EOF'
version: 1
parallel: 99
defaults:
  format: vdii
  verfy: true
jobs:
  - source: disks/web.img
    target: out/a.vdi
    format: vdi
    options: {blok-size: 1M}
  - source: disks/missing.img
    target: out/a.vdi
    format: vdi
    overwrite: perhaps
  - source: disks/web.img
    target: nodir/x.vdi
    format: vmdk
    options: {subformat: streamOptimised}
  - target: out/y.vdi
EOF
out=$("$VDKIT" batch bad.yaml 2>&1); rc=$?
[ "$rc" -eq 2 ] && ok || bad "validation errors: exit $rc, expected 2"
for want in "bad.yaml:2: parallel must be a whole number from 1 to 64" \
            "bad.yaml:5: unknown key 'verfy' under defaults — did you mean 'verify'?" \
            "bad.yaml:10: job 'a.vdi': format 'vdi': unknown option 'blok-size'" \
            "bad.yaml:11: job 'a.vdi': source" \
            "bad.yaml:12: job 'a.vdi': the target is also written by the job at line 7" \
            "bad.yaml:11: job 'a.vdi': the name is also used by the job at line 7" \
            "bad.yaml:14: overwrite must be true or false" \
            "bad.yaml:16: job 'x.vdi': the target's directory nodir does not exist" \
            "bad.yaml:18: job 'x.vdi': format 'vmdk': option 'subformat' must be one of" \
            "bad.yaml:19: the job has no source" \
            "bad.yaml:19: job 'y.vdi': format: no format plugin named 'vdii' is loaded — did you mean 'vdi'?" \
            "bad.yaml:16: job 'x.vdi': nodir/x.vdi: its extension '.vdi' names the vdi format, but it would be written as vmdk" \
            "12 problems; nothing was run"; do
    grep -qF -- "$want" <<< "$out" && ok || bad "validation output lacks '$want'"
done
[ -z "$(ls out)" ] && ok || bad "validation failed but something ran"
printf 'jobs: [\n  - source: a\n' > syntax.yaml
out=$("$VDKIT" batch syntax.yaml 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q "^syntax.yaml:[0-9]*: " <<< "$out" && ok || bad "YAML syntax error not reported with a line: $out"

# 2. A run with one failing job: the others land, exit 1, a JSON report.
cat > jobs.yaml <<'EOF'
parallel: 3
defaults:
  format: vdi
  threads: 2
jobs:
  - name: web-vdi
    source: disks/web.img
    source_format: raw
    target: out/web.vdi
  - name: web-stream
    source: disks/web.img
    source_format: raw
    target: out/web.vmdk
    format: vmdk
    options: {subformat: streamOptimized}
  - name: broken
    source: disks/broken.vdi
    target: out/broken.vmdk
    format: vmdk
  - name: db-split
    source: disks/db.vdi
    target: out/db.vmdk
    format: vmdk
    options: {subformat: twoGbMaxExtentSparse}
    out_of_order: true
EOF
# --check opens the sources: the damaged one is reported with its job, the rest pass.
out=$("$VDKIT" batch --check jobs.yaml 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q "^jobs.yaml:17: job 'broken': source disks/broken.vdi: " <<< "$out" \
    && ! grep -q "web-vdi\|web-stream\|db-split" <<< "$out" && ok || bad "--check of a damaged source: exit $rc: $out"
out=$("$VDKIT" batch --report report.json jobs.yaml 2>&1); rc=$?
[ "$rc" -eq 1 ] && ok || bad "a failed job: exit $rc, expected 1"
grep -q "broken: failed: .*broken.vdi" <<< "$out" && ok || bad "the failure does not name the source: $out"
grep -q "4 jobs: 3 converted, 0 skipped, 1 failed" <<< "$out" && ok || bad "summary: $out"
qemu-img compare -q -F raw out/web.vdi disks/web.img && qemu-img check -q out/web.vdi && ok || bad "web.vdi"
qemu-img compare -q -F raw out/web.vmdk disks/web.img && ok || bad "web.vmdk (stream)"
qemu-img compare -q -F raw out/db.vmdk db.raw && qemu-img check -q out/db.vmdk && [ -e out/db-s002.vmdk ] && ok \
    || bad "db.vmdk (split)"
[ ! -e out/broken.vmdk ] && [ -z "$(ls -A out | grep vdkit-partial)" ] && ok || bad "the failed job left files"
python3 - <<'PY' && ok || bad "report.json content"
import json
r = json.load(open("report.json"))
s = r["summary"]
assert (s["jobs"], s["converted"], s["failed"]) == (4, 3, 1), s
jobs = {j["name"]: j for j in r["jobs"]}
assert jobs["broken"]["status"] == "failed" and "broken.vdi" in jobs["broken"]["error"], jobs["broken"]
assert jobs["web-vdi"]["data_bytes"] == 3 << 20, jobs["web-vdi"]
assert jobs["db-split"]["virtual_size"] == 3 << 30
PY

# 3. Rerun after mending the source: done jobs are skipped (not rewritten),
#    the failed one converts; a YAML report.
cp disks/db.vdi disks/broken.vdi
before=$(stat -c %Y.%s out/web.vdi)
out=$("$VDKIT" batch --report report.yaml jobs.yaml 2>&1); rc=$?
[ "$rc" -eq 0 ] && grep -q "4 jobs: 1 converted, 3 skipped, 0 failed" <<< "$out" && ok || bad "rerun: exit $rc: $out"
[ "$(stat -c %Y.%s out/web.vdi)" = "$before" ] && ok || bad "rerun rewrote a finished target"
qemu-img compare -q -F raw out/broken.vmdk db.raw && ok || bad "rerun: the mended job's target"
python3 -c "import yaml; r = yaml.safe_load(open('report.yaml')); assert r['summary']['skipped'] == 3, r" \
    && ok || bad "report.yaml content"
# A finished target changed behind the batch's back is not silently skipped,
# and one made by nobody but equal to its source is verified and kept.
printf 'X' | dd of=out/web.vdi bs=1 seek=$((2 << 20)) conv=notrunc status=none
out=$("$VDKIT" batch jobs.yaml 2>&1); rc=$?
[ "$rc" -eq 1 ] && grep -q "web-vdi: failed: the source or the target changed" <<< "$out" && ok \
    || bad "a modified target was not reported: $out"
rm -f .jobs.yaml.vdkit-state.json out/web.vdi
qemu-img convert -f raw -O vdi disks/web.img out/web.vdi
out=$("$VDKIT" batch jobs.yaml 2>&1); rc=$?
[ "$rc" -eq 0 ] && grep -q "web-vdi: skipped: verified" <<< "$out" && ok || bad "an equal target was not verified: $out"

# 4. A run killed mid-job leaves nothing under the final name; the next run
#    clears the staging directory and finishes.
random_bytes 96M > big.raw
cat > slow.yaml <<'EOF'
jobs:
  - source: big.raw
    source_format: raw
    target: out/big.vmdk
    format: vmdk
    threads: 1
    options: {subformat: streamOptimized, compression-level: 12, threads: 1}
EOF
"$VDKIT" batch slow.yaml > /dev/null 2>&1 &
pid=$!
# Killed as soon as the target file exists in the staging directory (no
# fixed sleep: polled for up to 60 s, stopping if the batch ends first).
for _ in $(seq 6000); do
    [ -e out/.big.vmdk.vdkit-partial/big.vmdk ] && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.01
done
kill -9 "$pid" 2> /dev/null; wait "$pid" 2> /dev/null
[ -d out/.big.vmdk.vdkit-partial ] && ok || bad "the killed job had no staging directory (did it finish already?)"
[ ! -e out/big.vmdk ] && ok || bad "a killed job left its target under the final name"
"$VDKIT" batch slow.yaml > /dev/null && [ ! -e out/.big.vmdk.vdkit-partial ] \
    && qemu-img compare -q -F raw out/big.vmdk big.raw && ok || bad "the run after a kill"

# 5. A chain copied image by image: the base under its own UUID, then the
#    child as a differencing image over that copy (backing: names the first
#    job's target, so it waits for it) holding only the child's data; a
#    backing image that neither exists nor comes from an earlier job is a
#    validation problem.
mkdir chain
random_bytes 16M > chain/b.raw
"$VDKIT" -q convert -f raw -O vmdk chain/b.raw chain/base.vmdk
qemu-img create -q -f vmdk -b base.vmdk -F vmdk chain/top.vmdk
qemu-io -f vmdk -c "write -P 0x55 4M 1M" chain/top.vmdk > /dev/null
cat > chain.yaml <<'EOF'
version: 1
parallel: 2
defaults: {format: vmdk}
jobs:
  - {name: base, source: chain/base.vmdk, target: out/c-base.vmdk, keep_uuid: true}
  - {name: top, source: chain/top.vmdk, target: out/c-top.vmdk, backing: out/c-base.vmdk}
EOF
"$VDKIT" batch chain.yaml > out.txt 2>&1 && ok || bad "chain batch: $(cat out.txt)"
qemu-img compare -q out/c-top.vmdk chain/top.vmdk && qemu-img info out/c-top.vmdk | grep -q "backing file: c-base.vmdk" && ok \
    || bad "chain batch: the copied top does not read as the source over its copied base"
[ "$(stat -c %s out/c-top.vmdk)" -lt $((3 << 20)) ] && ok || bad "chain batch: the top's copy holds more than the top's data"
cat > chain-bad.yaml <<'EOF'
version: 1
jobs:
  - {source: chain/top.vmdk, target: out/x.vmdk, format: vmdk, backing: out/nothing.vmdk}
EOF
"$VDKIT" batch chain-bad.yaml > out.txt 2>&1; [ $? -eq 2 ] && grep -q "chain-bad.yaml:3: .*out/nothing.vmdk does not exist and no earlier job makes it" out.txt \
    && ok || bad "chain batch: a missing backing image: $(cat out.txt)"

# 5b. A job whose source is an earlier job's target waits for it (raw ->
#     vdi -> streamOptimized vmdk in one file, two at a time); when the first
#     fails, the second fails naming it; a source only a later job makes is
#     a validation problem.
cat > steps.yaml <<'EOF'
version: 1
parallel: 2
jobs:
  - {name: first, source: disks/web.img, target: out/s-1.vdi, format: vdi}
  - {name: second, source: out/s-1.vdi, target: out/s-2.vmdk, format: vmdk, options: {subformat: streamOptimized}}
EOF
"$VDKIT" batch steps.yaml > out.txt 2>&1 && grep -q "second: converted" out.txt && ok || bad "steps batch: $(cat out.txt)"
qemu-img compare -q -F raw out/s-2.vmdk disks/web.img && ok || bad "steps batch: the second step's output differs for qemu-img"
cp disks/db.vdi disks/damaged.vdi
printf '\xff\xff\xff\xff' | dd of=disks/damaged.vdi bs=1 seek=$((0x154)) conv=notrunc status=none
cat > steps-fail.yaml <<'EOF'
version: 1
parallel: 2
jobs:
  - {name: first, source: disks/damaged.vdi, target: out/t-1.vdi, format: vdi}
  - {name: second, source: out/t-1.vdi, target: out/t-2.vdi, format: vdi}
EOF
"$VDKIT" batch steps-fail.yaml > out.txt 2>&1; [ $? -eq 1 ] \
    && grep -q "second: failed: its source comes from job 'first', which failed" out.txt && [ ! -e out/t-2.vdi ] \
    && ok || bad "steps batch: a failed first step: $(cat out.txt)"
cat > steps-bad.yaml <<'EOF'
version: 1
jobs:
  - {source: out/u-1.vdi, target: out/u-2.vdi, format: vdi}
  - {source: disks/web.img, target: out/u-1.vdi, format: vdi}
EOF
"$VDKIT" batch steps-bad.yaml > out.txt 2>&1; [ $? -eq 2 ] \
    && grep -q "steps-bad.yaml:3: .*source .*out/u-1.vdi does not exist and no earlier job makes it" out.txt \
    && ok || bad "steps batch: a source made only by a later job: $(cat out.txt)"

# 5c. More jobs than threads, each a multi-worker convert, with chains (a job
#     whose source is an earlier job's target): the jobs' pool never holds a
#     job waiting for another (a dependent is queued when its source's job
#     ends), and each convert finishes on its own thread even when the
#     library's pool is busy with the others' workers (docs/design/threads.md).
#     Under a time limit: a design that waits would hang here.
{
    echo "version: 1"
    echo "defaults: {threads: 4}"
    echo "jobs:"
    for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
        echo "  - {name: p$i, source: disks/web.img, source_format: raw, target: out/p-$i.vdi, format: vdi}"
        echo "  - {name: q$i, source: out/p-$i.vdi, target: out/q-$i.vmdk, format: vmdk}"
    done
} > many.yaml
timeout 300 "$VDKIT" batch -j 3 many.yaml > out.txt 2>&1; rc=$?
[ "$rc" -eq 0 ] && grep -q "24 jobs: 24 converted, 0 skipped, 0 failed" out.txt && ok \
    || bad "many jobs on 3 threads: exit $rc (124: timed out): $(tail -5 out.txt)"
for i in 1 7 12; do
    qemu-img compare -q -F raw out/q-$i.vmdk disks/web.img && ok || bad "many jobs: out/q-$i.vmdk differs for qemu-img"
done
order_ok=1
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    # A chained job ran only after the job making its source had ended.
    p=$(grep -n "] p$i: converted" out.txt | cut -d: -f1); q=$(grep -n "] q$i: converted" out.txt | cut -d: -f1)
    [ -n "$p" ] && [ -n "$q" ] && [ "$p" -lt "$q" ] || order_ok=0
done
[ "$order_ok" = 1 ] && ok || bad "many jobs: a chained job ended before the job making its source: $(cat out.txt)"

# 6. A state file that cannot be written (here a directory stands in its
#    way) does not fail a finished job; the job says so.
cat > nostate.yaml <<'EOF'
version: 1
jobs:
  - {source: disks/web.img, target: out/nostate.vdi, format: vdi}
EOF
mkdir .nostate.yaml.vdkit-state.json
"$VDKIT" batch nostate.yaml > out.txt 2>&1 && grep -q "nostate.vdi: converted: the batch state could not be saved" out.txt \
    && qemu-img compare -q -F raw out/nostate.vdi disks/web.img && ok || bad "an unsaved state failed the job: $(cat out.txt)"

# 7. Filter stacks: `filters` (the target's) under defaults and per job, an
#    empty list to drop the default's, `source_filters` to read a filtered
#    source. The rot test filter rotates every byte's bits; undoing that by
#    hand gives files qemu-img reads as the source. A different stack on a
#    rerun is other settings; bad stacks are validation problems with lines.
export VDKIT_PLUGIN_PATH="$VDKIT_TEST_EXTRA_PLUGIN_DIR"
unrot() { # unrot FILE BITS: undo the rot filter in place
    python3 - "$1" "$2" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
table = bytes(((b >> n) | (b << (8 - n))) & 0xff for b in range(256))
with open(path, 'rb') as f: data = f.read()
with open(path, 'wb') as f: f.write(data.translate(table))
PY
}
"$VDKIT" convert -O vdi --target-filter rot:bits=2 disks/web.img disks/web-rot.vdi > /dev/null || bad "making web-rot.vdi"
mkdir out/f
cat > filters.yaml <<'EOF'
version: 1
defaults:
  filters: [rot]
jobs:
  - {source: disks/web.img, target: out/f/a.vdi, format: vdi}
  - source: disks/web-rot.vdi
    source_filters: ["rot:bits=2"]
    target: out/f/b.vmdk
    format: vmdk
    options: {subformat: twoGbMaxExtentSparse, split-size: 16M}
    filters:
      - name: rot
        options: {bits: 6}
  - {source: disks/web-rot.vdi, source_filters: [{name: rot, options: {bits: 2}}], target: out/f/c.raw, format: raw, filters: []}
EOF
"$VDKIT" batch filters.yaml > out.txt 2>&1 && grep -q "3 converted" out.txt && ok || bad "filter batch: $(cat out.txt)"
cmp -s out/f/c.raw disks/web.img && ok || bad "filter batch: the unfiltered target differs from the source"
[ -s out/f/a.vdi ] && [ "$(head -c 4 out/f/a.vdi)" != "<<< " ] && ok || bad "filter batch: a.vdi is missing or was written without its filter"
mkdir plain
cp out/f/a.vdi out/f/b*.vmdk plain/
unrot plain/a.vdi 3
for f in plain/b*.vmdk; do unrot "$f" 6; done
qemu-img compare -q -F raw plain/a.vdi disks/web.img && ok || bad "filter batch: a.vdi, unrotated, differs for qemu-img"
qemu-img compare -q -F raw plain/b.vmdk disks/web.img && ok || bad "filter batch: the split b.vmdk, unrotated, differs for qemu-img"
[ "$(ls plain/b*.vmdk | wc -l)" -eq 5 ] && ok || bad "filter batch: b.vmdk should have 4 extents: $(ls plain)"
"$VDKIT" batch filters.yaml > out.txt 2>&1 && grep -q "3 skipped" out.txt && ok || bad "filter batch rerun: $(cat out.txt)"
sed -i 's/bits: 6/bits: 5/' filters.yaml
"$VDKIT" batch filters.yaml > out.txt 2>&1; [ $? -eq 1 ] && grep -q "b.vmdk: failed: the target was made with other settings" out.txt \
    && ok || bad "filter batch: another stack is other settings: $(cat out.txt)"
cat > filters-bad.yaml <<'EOF'
version: 1
jobs:
  - source: disks/web.img
    target: out/f/z.vdi
    format: vdi
    filters:
      - rott
      - "rot:bits=0"
      - {name: rot, options: {bitz: 2}}
    source_filters: rot
EOF
"$VDKIT" batch filters-bad.yaml > out.txt 2>&1; [ $? -eq 2 ] \
    && grep -q "filters-bad.yaml:7: .*no filter plugin named 'rott'.*did you mean 'rot'" out.txt \
    && grep -q "filters-bad.yaml:8: .*option 'bits' must be within \[1, 7\]" out.txt \
    && grep -q "filters-bad.yaml:9: .*unknown option 'bitz' — did you mean 'bits'" out.txt \
    && grep -q "filters-bad.yaml:10: source_filters must be a list" out.txt \
    && [ ! -e out/f/z.vdi ] && ok || bad "filter batch validation: $(cat out.txt)"

finish
