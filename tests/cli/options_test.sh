#!/usr/bin/env bash
# Command-line options documented in docs/cli.md that no other suite used:
# each is run for real and its effect checked, against qemu-img where it
# has the same option (compare -s, measure) or reads the result.
#   compare -s, measure -f, snapshot -o, commit/rebase/merge -f -p,
#   compact -f -p --output=json, discard -f, attach -f, rename --no-relink
#   --search-dir --allow-unsafe-paths --output=json, delete --force (and rm),
#   batch -j -p, --version, --help.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3

random_bytes 3M > w.raw && truncate -s 8M w.raw
# chain <dir>: base.vmdk (w.raw) <- top.vmdk (0x44 at 1M), made by qemu; $1/want.raw is what top reads.
chain() {
    mkdir -p "$1"
    qemu-img convert -q -f raw -O vmdk w.raw "$1/base.vmdk"
    qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$1/top.vmdk"
    qemu-io -f vmdk -c "write -P 0x44 1M 64k" "$1/top.vmdk" > /dev/null
    qemu-img convert -f vmdk -O raw "$1/top.vmdk" "$1/want.raw"
}
json() { python3 -c "import json,sys; d=json.load(open('out')); sys.exit(0 if ($1) else 1)"; }

# compare -s: images of different size differ, as for qemu-img compare -s;
# without it a zero tail is equal and a data tail is not.
head -c 4M w.raw > small.raw
cp small.raw zerotail.raw && truncate -s 6M zerotail.raw
cp zerotail.raw datatail.raw && printf 'x' | dd of=datatail.raw bs=1 seek=$((5 << 20)) conv=notrunc status=none
for pair in "zerotail.raw 0 1" "datatail.raw 1 1"; do
    set -- $pair
    expect_exit "$2" "compare small.raw $1" "$VDKIT" compare -f raw -F raw small.raw "$1"
    qemu-img compare -q -f raw -F raw small.raw "$1" > /dev/null 2>&1; [ $? -eq "$2" ] && ok || bad "qemu-img compare $1: oracle disagrees"
    expect_exit "$3" "compare -s small.raw $1" "$VDKIT" compare -s -f raw -F raw small.raw "$1"
    says "compare -s names the size" "Strict mode: image size mismatch!"
    qemu-img compare -q -s -f raw -F raw small.raw "$1" > /dev/null 2>&1; [ $? -eq "$3" ] && ok || bad "qemu-img compare -s $1: oracle disagrees"
done
expect_exit 0 "compare -s of equal sizes" "$VDKIT" compare -s -f raw -F raw w.raw w.raw

# measure -f: a raw file named like a VDI is measured as raw only when told so.
cp w.raw named.vdi
expect_exit 1 "measure of a raw file named .vdi" "$VDKIT" measure -O raw named.vdi
expect_exit 0 "measure -f raw" "$VDKIT" measure -f raw -O raw --output=json named.vdi
want=$(qemu-img measure -f raw -O raw named.vdi | awk '/required/ {print $3}')
json "d['required'] == $want" && ok || bad "measure -f raw: required differs from qemu-img measure ($want): $(cat out)"

# snapshot -o: the new delta takes the options (a split VMDK) and qemu-img reads the chain.
chain s
expect_exit 0 "snapshot -o subformat" "$VDKIT" snapshot -o subformat=twoGbMaxExtentSparse s/top.vmdk s/snap.vmdk
[ -f s/snap-s001.vmdk ] && grep -aq 'createType="twoGbMaxExtentSparse"' s/snap.vmdk && ok || bad "snapshot -o: not a split VMDK: $(ls s)"
qemu-img compare -q s/snap.vmdk s/want.raw && ok || bad "snapshot -o: qemu-img reads the new chain differently"

# commit, rebase, merge with -f and -p: a progress bar that reaches 100%, results read by qemu-img.
chain c
expect_exit 0 "commit -f -p" "$VDKIT" commit -f vmdk -p c/top.vmdk
says "commit -p shows progress" "100.00%"
qemu-img compare -q c/base.vmdk c/want.raw && ok || bad "commit -f -p: the base does not hold the top's data"
expect_exit 1 "commit -f with the wrong format" "$VDKIT" commit -f vdi c/top.vmdk
chain r
expect_exit 0 "rebase -f -p onto nothing" "$VDKIT" rebase -f vmdk -p -b "" r/top.vmdk
says "rebase -p shows progress" "100.00%"
rm r/base.vmdk && qemu-img compare -q r/top.vmdk r/want.raw && ok || bad "rebase -f -p: the top does not stand alone"
expect_exit 1 "rebase -f with the wrong format" "$VDKIT" rebase -f vdi -b "" r/top.vmdk
chain m
expect_exit 0 "merge -f -p" "$VDKIT" merge -f vmdk -p m/top.vmdk
says "merge -p shows progress" "100.00%"
[ ! -e m/top.vmdk ] && qemu-img compare -q m/base.vmdk m/want.raw && ok || bad "merge -f -p: result"

# compact -f -p --output=json: a block written as zeros is given back (qemu-img
# map sees only the two data blocks), the content stays (qemu-img compare),
# the JSON sizes are the bytes the file takes (qemu-img info's actual-size).
actual() { qemu-img info -f vdi --output=json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["actual-size"])'; }
"$VDKIT" -q convert -f raw -O vdi -o block-size=1M w.raw cz.vdi
qemu-io -f vdi -c "write -z 2M 1M" cz.vdi > /dev/null  # allocated, all zero
cp w.raw cz.raw && dd if=/dev/zero of=cz.raw bs=1M seek=2 count=1 conv=notrunc status=none
before=$(actual cz.vdi)
expect_exit 0 "compact -f -p --output=json" "$VDKIT" compact -f vdi -p --output=json cz.vdi
says "compact -p shows progress" "100.00%"
python3 - "$before" "$(actual cz.vdi)" <<'PY' && ok || bad "compact --output=json: $(cat out)"
import json, sys
text = open("out").read()
doc = json.loads(text[text.index("{"):])
before, after = int(sys.argv[1]), int(sys.argv[2])
assert doc["size-before"] == before and doc["size-after"] == after and after < before, (doc, before, after)
PY
qemu-img map -f vdi --output=json cz.vdi | python3 -c 'import json,sys; sys.exit(sum(e["length"] for e in json.load(sys.stdin) if e["data"]) != 2 << 20)' \
    && ok || bad "compact: qemu-img map does not show exactly the two data blocks: $(qemu-img map -f vdi cz.vdi)"
qemu-img compare -q -f vdi -F raw cz.vdi cz.raw && ok || bad "compact: content changed"

# discard -f: a whole block freed, read as zero by qemu-img.
"$VDKIT" -q convert -f raw -O vdi -o block-size=1M w.raw d.vdi
expect_exit 0 "discard -f vdi" "$VDKIT" discard -f vdi d.vdi 1M:1M
cp w.raw d.raw && dd if=/dev/zero of=d.raw bs=1M seek=1 count=1 conv=notrunc status=none
qemu-img compare -q -f vdi -F raw d.vdi d.raw && ok || bad "discard -f: qemu-img reads other data"
expect_exit 1 "discard -f with the wrong format" "$VDKIT" discard -f vmdk d.vdi 0:1M

# attach -f / -F: the child's format named; a wrong one is refused.
chain a
expect_exit 0 "attach --check -f -F" "$VDKIT" attach --check -f vmdk -F vmdk a/base.vmdk a/top.vmdk
expect_exit 1 "attach -f with the wrong format" "$VDKIT" attach --check -f vdi a/base.vmdk a/top.vmdk

# rename: --no-relink leaves the child naming the old path; --search-dir
# finds a child the default search does not (three levels down); a move
# whose link would leave the path rule needs --allow-unsafe-paths.
chain n
expect_exit 0 "rename --no-relink --output=json" "$VDKIT" rename --no-relink --output=json n/base.vmdk n/moved.vmdk
json "d['relinked-children'] == [] and d['location'].endswith('n/moved.vmdk')" && ok || bad "rename --no-relink json: $(cat out)"
grep -aq 'parentFileNameHint="base.vmdk"' n/top.vmdk && ok || bad "rename --no-relink: the child was relinked"
chain f
mkdir -p f/deep/a/b && qemu-img create -q -f vmdk -b ../../../base.vmdk -F vmdk f/deep/a/b/far.vmdk
expect_exit 0 "rename without --search-dir" "$VDKIT" rename --output=json f/base.vmdk f/b2.vmdk
json "[c.rsplit('/', 1)[-1] for c in d['relinked-children']] == ['top.vmdk']" && ok || bad "rename: relinked $(cat out)"
grep -aq 'parentFileNameHint="../../../base.vmdk"' f/deep/a/b/far.vmdk && ok || bad "rename: the far child was found without --search-dir"
# Back to base.vmdk (relinking top.vmdk; sed would shift the bytes of a binary VMDK).
"$VDKIT" -q rename f/b2.vmdk f/base.vmdk || bad "rename back to base.vmdk: exit $?"
expect_exit 1 "rename --search-dir: the far child's new link needs allow_unsafe_paths" \
    "$VDKIT" rename --search-dir f/deep/a/b f/base.vmdk f/b3.vmdk
says "the path rule is named" "set allow_unsafe_paths to allow it"
[ -e f/base.vmdk ] && [ ! -e f/b3.vmdk ] && ok || bad "a refused rename moved something"
expect_exit 0 "rename --search-dir --allow-unsafe-paths" \
    "$VDKIT" rename --search-dir f/deep/a/b --allow-unsafe-paths --output=json f/base.vmdk f/b3.vmdk
json "sorted(c.rsplit('/', 1)[-1] for c in d['relinked-children']) == ['far.vmdk', 'top.vmdk']" && ok || bad "rename --search-dir json: $(cat out)"
grep -aq 'parentFileNameHint="../../../b3.vmdk"' f/deep/a/b/far.vmdk && qemu-img compare -q f/deep/a/b/far.vmdk w.raw \
    && ok || bad "rename --search-dir: the far child does not read through the moved parent"

# delete --force orphans a child (warned, listed in JSON); rm is its alias.
chain x
expect_exit 1 "rm (delete) of a parent" "$VDKIT" rm x/base.vmdk
[ -e x/base.vmdk ] && ok || bad "a refused delete removed the parent"
expect_exit 0 "delete --force" "$VDKIT" delete --force --output=json x/base.vmdk
[ ! -e x/base.vmdk ] && ok || bad "delete --force left the parent"
says "delete --force warns" "x/top.vmdk lost its parent x/base.vmdk (deleted)"
python3 -c "import json; t=open('out').read(); d=json.loads(t[t.index('['):t.rindex(']') + 1]); \
assert [c.rsplit('/', 1)[-1] for c in d[0]['orphaned-children']] == ['top.vmdk'], d" && ok || bad "delete --force json: $(cat out)"

# batch -j N runs N jobs at once (both staging directories seen together;
# with -j 1 never), -p shows the batch's progress; -j outside 1..64 is refused.
random_bytes 24M > slow.raw
cat > two.yaml <<'YAML'
version: 1
parallel: 1
defaults:
  format: vmdk
  options: {subformat: streamOptimized, compression-level: 9}
jobs:
  - source: slow.raw
    target: j1.vmdk
  - source: slow.raw
    target: j2.vmdk
YAML
# together <pid>: 0 if both jobs' staging directories existed at once while pid ran.
together() {
    local seen=1
    while kill -0 "$1" 2> /dev/null; do
        [ -d .j1.vmdk.vdkit-partial ] && [ -d .j2.vmdk.vdkit-partial ] && seen=0
        sleep 0.01
    done
    return $seen
}
"$VDKIT" batch -j 2 -p two.yaml > batch2.out 2>&1 &
pid=$!
together $pid && ok || bad "batch -j 2: the two jobs never ran at once"
wait $pid && ok || { bad "batch -j 2 failed"; cat batch2.out; }
grep -qF "100.00%" batch2.out && ok || { bad "batch -p: no progress bar"; cat batch2.out; }
qemu-img compare -q j1.vmdk slow.raw && qemu-img compare -q j2.vmdk slow.raw && ok || bad "batch -j 2: targets differ from the source"
rm -f j1.vmdk j2.vmdk .vdkit-batch* 2> /dev/null
"$VDKIT" batch -j 1 two.yaml > batch1.out 2>&1 &
pid=$!
together $pid && bad "batch -j 1 ran two jobs at once" || ok
wait $pid && qemu-img compare -q j1.vmdk slow.raw && ok || { bad "batch -j 1"; cat batch1.out; }
expect_exit 2 "batch -j 0" "$VDKIT" batch -j 0 two.yaml
expect_exit 2 "batch -j 65" "$VDKIT" batch -j 65 two.yaml

# --version is the project's version (CMakeLists.txt); --help lists every command the docs list.
expect_exit 0 "--version" "$VDKIT" --version
v=$(sed -n 's/^project(vdkit VERSION \([0-9.]*\).*/\1/p' "$VDKIT_SOURCE_DIR/CMakeLists.txt")
[ -n "$v" ] && grep -qx "vdkit $v" out && ok || bad "--version: '$(cat out)', CMakeLists.txt says '$v'"
expect_exit 0 "--help" "$VDKIT" --help
for c in $(grep -o '^| `vdkit [a-z]*' "$VDKIT_SOURCE_DIR/docs/cli.md" | awk '{print $3}'); do
    grep -qE "^  $c( |,|$)" out && ok || bad "--help does not list $c"
done

finish
