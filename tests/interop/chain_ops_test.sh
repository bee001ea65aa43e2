#!/usr/bin/env bash
# commit, rebase and merge against qemu-img: chains made by qemu-img are
# committed/rebased by vdkit and by qemu-img on copies, and the results must
# read the same (qemu-img compare) and pass qemu-img check; VDI and mixed
# chains made by vdkit end in images qemu-img reads back identically.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io

random_bytes $((16 << 20)) > r.raw
make_chain() { # make_chain <dir>: base <- mid <- top, made and written by qemu
    mkdir -p "$1"
    qemu-img convert -q -f raw -O vmdk r.raw "$1/base.vmdk"
    qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$1/mid.vmdk"
    qemu-io -f vmdk -c "write -P 0x11 1M 100k" -c "write -z 3M 128k" -c "write -P 0x12 15M 1M" "$1/mid.vmdk" > /dev/null
    qemu-img create -q -f vmdk -b mid.vmdk -F vmdk "$1/top.vmdk"
    qemu-io -f vmdk -c "write -P 0x22 1050k 64k" -c "write -P 0x33 7M 4k" -c "write -z 15M 64k" "$1/top.vmdk" > /dev/null
}
make_chain ref && qemu-img convert -f vmdk -O raw ref/top.vmdk want.raw

# 1. commit into the parent: vdkit's and qemu-img's committed parents match.
make_chain q1 && qemu-img commit -q q1/top.vmdk
make_chain v1 && "$VDKIT" commit v1/top.vmdk > /dev/null && ok || bad "vdkit commit failed"
qemu-img compare -q v1/mid.vmdk q1/mid.vmdk && ok || bad "commit: vdkit's mid differs from qemu-img's"
qemu-img check -q v1/mid.vmdk && qemu-img check -q v1/top.vmdk && ok || bad "commit: qemu-img check"
qemu-img compare -q v1/top.vmdk want.raw && ok || bad "commit: the top no longer reads the same"
# The top was emptied: it holds (almost) nothing and reads through to mid.
[ "$(stat -c %s v1/top.vmdk)" -lt 400000 ] && ok || bad "commit: the top was not emptied ($(stat -c %s v1/top.vmdk) bytes)"

# 2. commit -b base through mid, keeping the top (-d).
make_chain q2 && (cd q2 && qemu-img commit -q -d -b base.vmdk top.vmdk)
make_chain v2 && "$VDKIT" commit -d -b v2/base.vmdk --output=json v2/top.vmdk > v2.json && ok || bad "vdkit commit -b failed"
python3 -c "import json; d=json.load(open('v2.json')); assert d['emptied'] is False and d['base'].endswith('v2/base.vmdk') \
    and [p.rsplit('/', 2)[-2:] for p in d['left-chain']] == [['v2', 'mid.vmdk']], d" && ok || bad "commit --output=json"
qemu-img compare -q v2/base.vmdk q2/base.vmdk && qemu-img compare -q v2/base.vmdk want.raw && ok \
    || bad "commit -b: base differs"
qemu-img check -q v2/base.vmdk && ok || bad "commit -b: qemu-img check base"
grep -q "backing file: base.vmdk" <<< "$("$VDKIT" info v2/top.vmdk)" && qemu-img compare -q v2/top.vmdk want.raw && ok \
    || bad "commit -b: the top is not relinked onto base"

# 3. safe rebase of the top onto base (skipping mid), and onto nothing.
# (qemu-img 7 cannot rebase a VMDK, "Operation not supported": want.raw is the reference.)
make_chain v3 && "$VDKIT" rebase -b base.vmdk v3/top.vmdk && ok || bad "vdkit rebase failed"
qemu-img compare -q v3/top.vmdk want.raw && ok || bad "rebase: content changed"
qemu-img check -q v3/top.vmdk && [ "$(qemu-img info --output=json v3/top.vmdk | python3 -c 'import json,sys; print(json.load(sys.stdin)["backing-filename"])')" = base.vmdk ] \
    && ok || bad "rebase: qemu-img does not see the new backing file"
"$VDKIT" rebase -b "" v3/top.vmdk && qemu-img compare -q v3/top.vmdk want.raw && ok || bad "rebase onto nothing"
[ "$(qemu-img info --output=json v3/top.vmdk | grep -c backing-filename)" = 0 ] && ok || bad "rebase onto nothing left a backing file"
# Unsafe rebase changes the link only: content then differs.
make_chain v4 && "$VDKIT" rebase -u -b base.vmdk v4/top.vmdk && qemu-img check -q v4/top.vmdk && ok || bad "unsafe rebase"
qemu-img compare -q v4/top.vmdk want.raw > /dev/null 2>&1; [ $? -eq 1 ] && ok || bad "unsafe rebase kept content (mid's data should be gone)"

# 4. merge: backward (top into base, deleting mid and top) and forward (base into mid).
make_chain v5 && "$VDKIT" merge --to v5/base.vmdk --output=json v5/top.vmdk > v5.json && ok || bad "merge backward"
python3 -c "import json; d=json.load(open('v5.json')); assert [p.rsplit('/', 1)[-1] for p in d['chain']] == ['base.vmdk'] \
    and sorted(p.rsplit('/', 1)[-1] for p in d['deleted']) == ['mid.vmdk', 'top.vmdk'], d" && ok || bad "merge --output=json"
[ ! -e v5/mid.vmdk ] && [ ! -e v5/top.vmdk ] && qemu-img compare -q v5/base.vmdk want.raw && qemu-img check -q v5/base.vmdk \
    && ok || bad "merge backward: result"
make_chain v6 && "$VDKIT" merge --from v6/base.vmdk --to v6/mid.vmdk v6/top.vmdk > /dev/null && ok || bad "merge forward"
[ ! -e v6/base.vmdk ] && qemu-img compare -q v6/top.vmdk want.raw && qemu-img check -q v6/mid.vmdk && ok \
    || bad "merge forward: result"
[ "$(qemu-img info --output=json v6/mid.vmdk | grep -c backing-filename)" = 0 ] && ok || bad "merge forward: mid still has a parent"

# 5. A mixed chain (VDI base, VMDK middle, VDI top; qemu-img reads VDI bases
# but not VDI or mixed diffs). Data gets into the diffs by unsafe rebases of
# converted copies, then compact gives back what equals the parent.
mkdir mixed && cd mixed
python3 - <<'PY'
import os, random
rng = random.Random(os.environ["VDKIT_TEST_SEED"] + ":mixed")
r = bytearray(open("../r.raw", "rb").read())
r[2 << 20:(2 << 20) + 300000] = rng.randbytes(300000)
open("one.raw", "wb").write(r)
r[9 << 20:(9 << 20) + 70000] = rng.randbytes(70000)
r[12 << 20:13 << 20] = bytes(1 << 20)
open("two.raw", "wb").write(r)
PY
"$VDKIT" convert -O vdi ../r.raw base.vdi > /dev/null
"$VDKIT" convert -O vmdk one.raw mid.vmdk > /dev/null && "$VDKIT" rebase -u -b base.vdi mid.vmdk && "$VDKIT" compact mid.vmdk > /dev/null
# convert leaves the zero MiB at 12M unallocated; qemu-io writes it as zero
# data so that, once rebased, it still hides mid's data there.
"$VDKIT" convert -O vdi two.raw top.vdi > /dev/null && qemu-io -f vdi -c "write -z 12M 1M" top.vdi > /dev/null \
    && "$VDKIT" rebase -u -b mid.vmdk top.vdi && "$VDKIT" compact top.vdi > /dev/null
grep -q "chain length: 3" <<< "$("$VDKIT" info top.vdi)" && "$VDKIT" compare top.vdi two.raw > /dev/null && ok \
    || bad "mixed chain: not built as expected"
python3 "$VDKIT_SOURCE_DIR/tests/support/qemu_chain_read.py" mid-before.raw vmdk:mid.vmdk vdi:base.vdi && cmp -s mid-before.raw one.raw \
    && ok || bad "mixed chain: qemu-img reads mid over base differently from one.raw"
[ "$(stat -c %s top.vdi)" -lt $((8 << 20)) ] && ok || bad "mixed chain: compact did not give the top's parent-equal blocks back"
cp top.vdi top0.vdi; cp mid.vmdk mid0.vmdk; cp base.vdi base0.vdi
# qemu-img opens no VDI diff and no VMDK over a VDI, so the committed chain
# is read by qemu-img image by image (qemu_chain_read.py): mid over base
# must read as the top did. The emptied top.vdi is read by vdkit only.
"$VDKIT" commit top.vdi > commit.out 2>&1 && ok || bad "mixed chain: commit a VDI into a VMDK: $(cat commit.out)"
python3 "$VDKIT_SOURCE_DIR/tests/support/qemu_chain_read.py" mid-chain.raw vmdk:mid.vmdk vdi:base.vdi && cmp -s mid-chain.raw two.raw \
    && ok || bad "mixed chain: after the commit qemu-img reads mid over base differently from the top before"
python3 "$VDKIT_SOURCE_DIR/tests/support/qemu_chain_read.py" base-only.raw vdi:base.vdi && cmp -s base-only.raw ../r.raw \
    && ok || bad "mixed chain: the commit into mid changed the base"
"$VDKIT" compare top.vdi two.raw > /dev/null && ok || bad "mixed chain: the emptied top does not read through to mid"
"$VDKIT" check mid.vmdk > /dev/null && "$VDKIT" check top.vdi > /dev/null && ok || bad "mixed chain: checks after commit"
"$VDKIT" merge --to base.vdi top.vdi > /dev/null && [ ! -e mid.vmdk ] && [ ! -e top.vdi ] && ok || bad "mixed chain: merge into the base"
qemu-img check -q base.vdi && qemu-img compare -q -F raw base.vdi two.raw && ok || bad "mixed chain: qemu-img reads the merged VDI base differently"
# Forward: the base into the middle, which becomes a standalone VMDK qemu-img reads.
cp top0.vdi top.vdi; cp mid0.vmdk mid.vmdk; cp base0.vdi base.vdi
"$VDKIT" merge --from base.vdi --to mid.vmdk top.vdi > /dev/null && [ ! -e base.vdi ] && ok || bad "mixed chain: forward merge"
qemu-img check -q mid.vmdk && qemu-img compare -q -F raw mid.vmdk one.raw && "$VDKIT" compare top.vdi two.raw > /dev/null && ok \
    || bad "mixed chain: after the forward merge"
cd ..

# Rename and delete on a chain qemu-img made: the renamed middle keeps
# reading the same for qemu-img (its child follows it), a parent with a
# child is not deleted, a split VMDK's extent files follow its descriptor.
make_chain rn && cd rn
"$VDKIT" rename mid.vmdk middle.vmdk > ../out 2>&1 && grep -q "relinked child .*top.vmdk" ../out && ok || bad "rename: $(cat ../out)"
[ ! -e mid.vmdk ] && grep -q 'parentFileNameHint="middle.vmdk"' top.vmdk && ok || bad "rename: the child does not name middle.vmdk"
qemu-img compare -q top.vmdk ../want.raw && qemu-img check -q top.vmdk && qemu-img check -q middle.vmdk && ok \
    || bad "rename: qemu-img reads the renamed chain differently"
"$VDKIT" delete middle.vmdk > ../out 2>&1; [ $? -eq 1 ] && [ -e middle.vmdk ] && grep -q "is the parent of" ../out && ok \
    || bad "delete: a parent with a child was not refused"
qemu-img convert -q -f vmdk -O vmdk -o subformat=twoGbMaxExtentSparse top.vmdk split.vmdk
"$VDKIT" rename split.vmdk whole.vmdk > /dev/null && ls whole-s0*.vmdk > /dev/null && ! ls split* > /dev/null 2>&1 \
    && qemu-img compare -q whole.vmdk ../want.raw && ok || bad "rename: a split VMDK's extents did not follow"
"$VDKIT" delete whole.vmdk > /dev/null && ! ls whole* > /dev/null 2>&1 && ok || bad "delete: files of a split VMDK left behind"
cd ..
# convert -B into an existing chain (VDCopyEx "same content up to image N"):
# with the base copied under its own UUID, the top's copy holds only what
# the top holds (2 MiB of its 8: data and zeros); over an unrelated backing
# image the copy is whole.
mkdir cb && cd cb
random_bytes $((8 << 20)) > b.raw
"$VDKIT" -q convert -f raw -O vmdk b.raw base.vmdk
qemu-img create -q -f vmdk -b base.vmdk -F vmdk top.vmdk
qemu-io -f vmdk -c "write -P 0x44 2M 1M" -c "write -z 5M 1M" top.vmdk > /dev/null
mkdir c && "$VDKIT" convert --keep-uuid -O vmdk base.vmdk c/base.vmdk && "$VDKIT" convert -O vmdk -B base.vmdk top.vmdk c/top.vmdk \
    && ok || bad "convert -B failed"
qemu-img compare -q c/top.vmdk top.vmdk && qemu-img check -q c/top.vmdk && ok || bad "convert -B: qemu-img reads the copy differently"
qemu-img info c/top.vmdk | grep -q "backing file: base.vmdk" && ok || bad "convert -B: the copy does not name base.vmdk"
[ "$(stat -c %s c/top.vmdk)" -lt $((4 << 20)) ] && ok || bad "convert -B: copied more than the top holds ($(stat -c %s c/top.vmdk) bytes)"
random_bytes $((8 << 20)) > o.raw && qemu-img convert -q -f raw -O vmdk o.raw c/other.vmdk
"$VDKIT" convert -O vmdk -B other.vmdk top.vmdk c/over.vmdk && qemu-img compare -q c/over.vmdk top.vmdk && ok \
    || bad "convert -B over an unrelated image does not read as the source"
cd ..
# attach: a delta whose parent was moved by hand is linked onto it again,
# verified by the parent's CID; an unrelated image is refused (--check).
make_chain at && cd at && mkdir moved && mv base.vmdk moved/
qemu-img info --backing-chain top.vmdk > /dev/null 2>&1 && bad "attach: the chain should be broken before" || ok
"$VDKIT" attach --check moved/base.vmdk mid.vmdk > /dev/null && ok || bad "attach --check refused the real parent"
qemu-img convert -q -f raw -O vmdk ../r.raw stranger.vmdk
"$VDKIT" attach --check stranger.vmdk mid.vmdk > ../out 2>&1; [ $? -eq 1 ] && grep -q "was modified after" ../out && ok \
    || bad "attach --check: a parent with another CID: $(cat ../out)"
"$VDKIT" attach --check --output=json stranger.vmdk mid.vmdk > ../out; [ $? -eq 1 ] \
    && python3 -c "import json; d=json.load(open('../out')); assert d['possible'] is False and 'was modified after' in d['reason'], d" \
    && ok || bad "attach --check --output=json: $(cat ../out)"
"$VDKIT" attach moved/base.vmdk mid.vmdk > /dev/null && qemu-img compare -q top.vmdk ../want.raw && qemu-img check -q mid.vmdk \
    && ok || bad "attach: the relinked chain does not read as before"
cd ..
finish
