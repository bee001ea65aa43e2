#!/usr/bin/env bash
# Chains across directories and what dry runs promise (docs/design/paths.md):
#  * `attach --check` answers what `attach` does, over generated situations
#    (the VirtualBox folder of /work/shared/cases/vbox-snapshots-reattach.py
#    and variants), and writes nothing;
#  * the VirtualBox Snapshots/ layout and qemu-style `-b ../base` chains open
#    with no configuration; the relinked VirtualBox top reads expected.raw;
#  * hostile parent and extent paths are refused, naming the rule;
#  * a new file's format follows its extension; a clash with -f is refused;
#  * delete and rename find children wherever the path rule lets one name the image (and --search-dir);
#  * every spelling of an image's path gives the same directory.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools python3 qemu-img qemu-io
unset VDKIT_CONFIG # everything here must work without a configuration file
export VDKIT_PLUGIN_PATH="$VDKIT_TEST_EXTRA_PLUGIN_DIR"
cases="$VDKIT_SOURCE_DIR/tests/cases" # generators handed over with the issue (text, no images)

run() { # run <name> <command...>: output in <name>.out; prints the exit code
    local out=$1
    shift
    "$@" > "$out.out" 2>&1
    echo $?
}
S1='vm/Snapshots/{2f3e1c2d-4b5a-4697-8877-665544332211}.vdi'
S2='vm/Snapshots/{4f3e1c2d-4b5a-4697-8877-665544332211}.vdi'
python3 "$cases/vbox-snapshots-reattach.py" case > /dev/null || { bad "the case generator failed"; finish; exit 1; }
# Variants beside the case's own images (same UUIDs as the script's).
python3 - "$cases" case <<'PY' || bad "variant generator failed"
import os, sys, uuid
sys.path.insert(0, sys.argv[1])
import vmdkgen as g
os.chdir(sys.argv[2])
M = 1 << 20
base_u = uuid.UUID("0f3e1c2d-4b5a-4697-8877-665544332211")
base_m = uuid.UUID("1f3e1c2d-4b5a-4697-8877-665544332211")
kw = dict(offset_bmap=M, align=M)
# A child smaller than its parent (2 MiB over 4 MiB).
g.build_vdi("vm/Snapshots/small.vdi", 2 * M, {}, image_type=4, uuid_create=uuid.uuid4().bytes_le,
            uuid_link=base_u.bytes_le, uuid_parent_modify=base_m.bytes_le, **kw)
# A child recording a parent that was modified since (same UUID, other modification UUID).
g.build_vdi("vm/Snapshots/stale.vdi", 4 * M, {}, image_type=4, uuid_create=uuid.uuid4().bytes_le,
            uuid_link=base_u.bytes_le, uuid_parent_modify=uuid.uuid4().bytes_le, **kw)
# A copy of the base two directories above a Snapshots/ child (too far for the path rule).
os.makedirs("far/a/b", exist_ok=True)
g.build_vdi("far/disk.vdi", 4 * M, {0: b"\x10" * M}, uuid_create=base_u.bytes_le, uuid_modify=base_m.bytes_le, **kw)
g.build_vdi("far/a/b/child.vdi", 4 * M, {}, image_type=4, uuid_create=uuid.uuid4().bytes_le,
            uuid_link=base_u.bytes_le, uuid_parent_modify=base_m.bytes_le, **kw)
PY

# ---- attach --check agrees with attach ------------------------------------------------
# Each situation in a fresh copy: --check, then (files unchanged?) attach.
parity() { # parity <what> <expected exit> <parent> <child> [options...]
    local what=$1 want=$2 parent=$3 child=$4
    shift 4
    rm -rf p && cp -a case p
    local before after check real
    before=$(cd p && find . -type f -exec md5sum {} + | sort)
    check=$(cd p && run ../check "$VDKIT" attach --check "$@" "$parent" "$child")
    after=$(cd p && find . -type f -exec md5sum {} + | sort)
    [ "$before" = "$after" ] || bad "$what: attach --check changed files"
    real=$(cd p && run ../real "$VDKIT" attach "$@" "$parent" "$child")
    if [ "$check" != "$real" ]; then
        bad "$what: attach --check exits $check but attach exits $real"
        sed 's/^/    check: /' check.out
        sed 's/^/    real:  /' real.out
    elif [ "$real" != "$want" ]; then
        bad "$what: attach exits $real, expected $want"
        sed 's/^/    /' real.out
    else ok; fi
}
parity "right parent one directory up" 0 vm/disk.vdi "$S1"
parity "wrong parent (other.vdi)" 1 vm/other.vdi "$S1"
parity "no room for a parent location (tight-child.vdi)" 1 vm/disk.vdi vm/tight-child.vdi
grep -q "no room for a parent location" real.out && ok || bad "tight child: reason not named: $(cat real.out)"
parity "second snapshot onto the wrong image (the base)" 1 vm/disk.vdi "$S2"
# PARENT is opened with its chain: an unlinked snapshot cannot be one yet, check or not.
parity "second snapshot onto its parent, not linked yet itself" 1 "$S1" "$S2"
parity "a base image is not a child" 1 vm/disk.vdi vm/other.vdi
parity "a parent larger than the child" 1 vm/disk.vdi vm/Snapshots/small.vdi
parity "a parent modified since" 1 vm/disk.vdi vm/Snapshots/stale.vdi
parity "--force over a modified parent" 0 vm/disk.vdi vm/Snapshots/stale.vdi --force
parity "--force over a parent with no room still fails" 1 vm/disk.vdi vm/tight-child.vdi --force
parity "a parent two directories up" 1 far/disk.vdi far/a/b/child.vdi
grep -q "allow_unsafe_paths" real.out && ok || bad "far parent: the override is not named: $(cat real.out)"
printf 'allow_unsafe_paths: true\n' > unsafe.yaml
# The override (--config is a global option: it goes before the command).
rm -rf p && cp -a case p
c=$(cd p && run ../check "$VDKIT" --config "$work/unsafe.yaml" attach --check far/disk.vdi far/a/b/child.vdi)
r=$(cd p && run ../real "$VDKIT" --config "$work/unsafe.yaml" attach far/disk.vdi far/a/b/child.vdi)
[ "$c" = 0 ] && [ "$r" = 0 ] && ok || bad "allow_unsafe_paths: check $c, attach $r (both should be 0)"
c=$(cd p && run ../check "$VDKIT" attach --check --output=json vm/disk.vdi vm/tight-child.vdi)
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["possible"] is False and "room" in j["reason"] else 1)' check.out \
    && [ "$c" = 1 ] && ok || bad "attach --check --output=json for the tight child: $(cat check.out)"

# rebase checks the link it will write before it moves data: nothing changes when refused.
rm -rf p && cp -a case p
unchanged() { # unchanged <what> <file> <command...>: the command fails and the file keeps its bytes
    local what=$1 file=$2 before
    shift 2
    before=$(md5sum < "$file")
    if "$@" > o.out 2>&1; then bad "$what: accepted"; cat o.out
    elif [ "$(md5sum < "$file")" != "$before" ]; then bad "$what: refused, but $file changed"; cat o.out
    else ok; fi
}
unchanged "rebase onto a parent two directories up" p/far/a/b/child.vdi \
    "$VDKIT" rebase -u -b ../../disk.vdi p/far/a/b/child.vdi
grep -q "allow_unsafe_paths" o.out && ok || bad "rebase: the rule is not named: $(cat o.out)"
unchanged "rebase -u of a VDI with no room for a parent location" p/vm/tight-child.vdi \
    "$VDKIT" rebase -u -b disk.vdi p/vm/tight-child.vdi
grep -q "no room" o.out && ok || bad "rebase tight: reason not named: $(cat o.out)"
"$VDKIT" --config "$work/unsafe.yaml" rebase -u -b ../../disk.vdi p/far/a/b/child.vdi > o.out 2>&1 && ok \
    || { bad "rebase with allow_unsafe_paths"; cat o.out; }

# ---- the VirtualBox layout relinks and reads expected.raw, no configuration -----------------
rm -rf vb && cp -a case vb
(
    cd vb || exit 1
    "$VDKIT" attach vm/disk.vdi "$S1" && "$VDKIT" attach "$S1" "$S2"
) > relink.out 2>&1 && ok || { bad "relinking the Snapshots/ chain"; cat relink.out; }
"$VDKIT" compare -F raw "vb/$S2" vb/expected.raw > cmp.out 2>&1 && ok || { bad "the relinked top does not read expected.raw"; cat cmp.out; }
n=$("$VDKIT" info --backing-chain --output=json "vb/$S2" 2> /dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 3 ] && ok || bad "the relinked chain has $n images, expected 3"
# The base cannot be deleted while its Snapshots/ children exist (found there).
"$VDKIT" delete vb/vm/disk.vdi > del.out 2>&1
[ $? = 1 ] && grep -q "Snapshots" del.out && [ -f vb/vm/disk.vdi ] && ok || { bad "delete orphaned Snapshots/ children"; cat del.out; }
# Unlinked VirtualBox children name their parent only by UUID: still children.
"$VDKIT" delete case/vm/disk.vdi > del.out 2>&1
[ $? = 1 ] && grep -q "tight-child.vdi" del.out && grep -q "2f3e1c2d" del.out && [ -f case/vm/disk.vdi ] && ok \
    || { bad "delete ignored children that name the base by UUID only"; cat del.out; }

# ---- qemu-style chains: -b ../base and snapshot into a subdirectory ---------------------------
mkdir -p q/vm/sub q/vm/Snapshots
"$VDKIT" create -f vdi q/vm/base.vdi 4M > /dev/null && ok || bad "create base"
"$VDKIT" create -b ../base.vdi q/vm/sub/child.vdi > c.out 2>&1 && ok || { bad "create -b ../base.vdi"; cat c.out; }
"$VDKIT" info q/vm/sub/child.vdi > i.out 2>&1 && ok || { bad "a -b ../base.vdi child does not open"; cat i.out; }
"$VDKIT" snapshot q/vm/base.vdi q/vm/Snapshots/s.vmdk > s.out 2>&1 && ok || { bad "snapshot into Snapshots/"; cat s.out; }
"$VDKIT" info --output=json q/vm/Snapshots/s.vmdk > i.out 2>&1
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["format"]=="vmdk" else 1)' i.out 2> /dev/null \
    && ok || { bad "snapshot NEW.vmdk over a VDI did not make a VMDK"; cat i.out; }
"$VDKIT" snapshot -f vdi q/vm/base.vdi q/vm/clash.vmdk > s.out 2>&1
[ $? = 2 ] && [ ! -e q/vm/clash.vmdk ] && grep -q "clash.vmdk: its extension ..vmdk. names the vmdk format, but it would be written as vdi" s.out && ok || { bad "snapshot -f vdi X.vmdk was not refused"; cat s.out; }
"$VDKIT" create -f raw q/vm/clash.vdi 1M > s.out 2>&1
[ $? = 2 ] && [ ! -e q/vm/clash.vdi ] && ok || { bad "create -f raw X.vdi was not refused"; cat s.out; }
"$VDKIT" snapshot q/vm/base.vdi q/vm/top.snap > s.out 2>&1
"$VDKIT" info --output=json q/vm/top.snap > i.out 2>&1
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["format"]=="vdi" else 1)' i.out 2> /dev/null \
    && ok || { bad "snapshot with an unknown extension did not take the parent's format"; cat s.out i.out; }
# A raw parent one directory up has no identity: refused when written, not at the next open.
"$VDKIT" create -f raw q/base.img 4M > /dev/null
"$VDKIT" create -f vdi -b ../base.img -F raw q/vm/rawchild.vdi > c.out 2>&1
[ $? = 1 ] && [ ! -e q/vm/rawchild.vdi ] && grep -q "identity" c.out && ok || { bad "a raw parent one level up was accepted"; cat c.out; }
# delete: children in Snapshots/ and in a directory the user names.
mkdir -p q/other
"$VDKIT" create -b ../vm/base.vdi q/other/kid.vdi > /dev/null 2>&1 || bad "create q/other/kid.vdi"
"$VDKIT" rm q/vm/Snapshots/s.vmdk q/vm/top.snap q/vm/sub/child.vdi > /dev/null 2>&1 || bad "removing the children"
"$VDKIT" delete --search-dir q/other q/vm/base.vdi > del.out 2>&1
[ $? = 1 ] && grep -q "kid.vdi" del.out && grep -q "q/other" del.out && [ -f q/vm/base.vdi ] && ok \
    || { bad "delete --search-dir did not find the child"; cat del.out; }
# q/other is a directory directly in the one above q/vm: a child there can name ../vm/base.vdi,
# so it is searched without --search-dir too.
"$VDKIT" delete q/vm/base.vdi > del.out 2>&1
[ $? = 1 ] && grep -q "kid.vdi" del.out && [ -f q/vm/base.vdi ] && ok \
    || { bad "delete did not find a child in a sibling directory"; cat del.out; }
rm q/other/kid.vdi
"$VDKIT" delete q/vm/base.vdi > del.out 2>&1 && [ ! -e q/vm/base.vdi ] && grep -q "searched for children in: .*q/vm" del.out && ok \
    || { bad "delete with no children left (and naming the searched places)"; cat del.out; }

# ---- delete and rename find every child vdkit would open (the search set) ---------------------
# base at w/vm/images/base.vdi; a child in each kind of place the path rule lets one name it from.
for place in images/c.vdi images/Snapshots/s.vdi images/sub/x.vdi c.vdi sib/c.vdi ../top.vdi ../../w2top.vdi; do
    rm -rf w w2top.vdi && mkdir -p w/vm/images
    "$VDKIT" create -f vdi w/vm/images/base.vdi 1M > /dev/null || bad "create base for $place"
    kid="w/vm/$place"
    mkdir -p "$(dirname "$kid")"
    (cd w/vm && "$VDKIT" snapshot images/base.vdi "$place") > sc.out 2>&1 || { bad "snapshot into $place"; cat sc.out; continue; }
    "$VDKIT" info "$kid" > sc.out 2>&1 && ok || { bad "the child $place does not open"; cat sc.out; }
    "$VDKIT" delete --output=json w/vm/images/base.vdi > del.out 2>&1
    [ $? = 1 ] && grep -q "$(basename "$kid")" del.out && [ -f w/vm/images/base.vdi ] && ok \
        || { bad "delete missed the child $place"; cat del.out; }
    "$VDKIT" rename w/vm/images/base.vdi w/vm/images/renamed.vdi > ren.out 2>&1 && "$VDKIT" info "$kid" > sc.out 2>&1 \
        && grep -q "relinked child .*$(basename "$kid")" ren.out && grep -q "searched for children in: " ren.out && ok \
        || { bad "rename did not relink the child $place"; cat ren.out sc.out; }
done
rm -rf w w2top.vdi

# ---- rename tries every child's relink before moving anything ------------------------------------
# A VDI child whose block map leaves room for a short parent location only (generated at 0x300,
# and 0x400 which fits): a long new name is refused with nothing moved, or done.
for room in 0x300 0x400; do
    rm -rf rn && mkdir rn
    "$VDKIT" create -f vdi rn/b.vdi 1M > /dev/null
    python3 - "$cases" rn/kid.vdi "$room" <<'PY' || bad "generating the tight VDI"
import sys, uuid
sys.path.insert(0, sys.argv[1])
import vmdkgen as g
g.build_vdi(sys.argv[2], 1 << 20, {}, image_type=4, uuid_create=uuid.uuid4().bytes_le, offset_bmap=int(sys.argv[3], 0))
PY
    "$VDKIT" attach --force rn/b.vdi rn/kid.vdi > rn.out 2>&1 || { bad "attach to the tight VDI ($room)"; cat rn.out; }
    long="rn/$(printf 'L%.0s' $(seq 1 240)).vdi"
    "$VDKIT" rename rn/b.vdi "$long" > rn.out 2>&1
    rc=$?
    if [ "$room" = 0x300 ]; then
        [ $rc = 1 ] && [ -f rn/b.vdi ] && [ ! -e "$long" ] && grep -q "nothing was moved" rn.out \
            && "$VDKIT" info rn/kid.vdi > /dev/null 2>&1 && ok || { bad "rename moved the image before finding the child cannot record it"; cat rn.out; ls rn; }
    else
        [ $rc = 0 ] && [ -f "$long" ] && "$VDKIT" info rn/kid.vdi > /dev/null 2>&1 && ok || { bad "rename with room for the path ($room)"; cat rn.out; }
    fi
done
rm -rf rn

# ---- --output=json reports failures on stdout too (exit status kept) ----------------------------
rm -rf jf && mkdir jf
"$VDKIT" create -f vdi jf/b.vdi 1M > /dev/null && "$VDKIT" snapshot jf/b.vdi jf/c.vdi > /dev/null && "$VDKIT" create -f vdi jf/o.vdi 1M > /dev/null
jerr() { # jerr <what> <expected status> <command...>: exit 1 and a JSON object with error and status on stdout
    local what=$1 want=$2
    shift 2
    "$@" > jf.json 2> jf.err
    local rc=$?
    [ $rc = 1 ] && python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["status"]==sys.argv[2] and j["error"] else 1)' jf.json "$want" \
        && ok || { bad "$what: rc=$rc, no JSON error on stdout"; cat jf.json jf.err; }
}
jerr "delete --output=json of a parent" VDKIT_E_PERMISSION "$VDKIT" delete --output=json jf/b.vdi
jerr "attach --output=json onto another parent" VDKIT_E_PARENT_MISMATCH "$VDKIT" attach --output=json jf/o.vdi jf/c.vdi
jerr "attach --output=json of a missing parent" VDKIT_E_NOT_FOUND "$VDKIT" attach --output=json jf/none.vdi jf/c.vdi
jerr "attach --check --output=json of a missing parent" VDKIT_E_NOT_FOUND "$VDKIT" attach --check --output=json jf/none.vdi jf/c.vdi
rm -rf jf

# ---- attach: a parent without identity, and the same file twice ----------------------------------
rm -rf at && mkdir at
"$VDKIT" create -f vdi at/b.vdi 1M > /dev/null && "$VDKIT" snapshot at/b.vdi at/c.vdi > /dev/null \
    && "$VDKIT" snapshot at/c.vdi at/d.vdi > /dev/null || bad "making the attach chain"
"$VDKIT" create -f raw at/junk.img 1M > /dev/null
random_bytes 1048576 > at/fake.bin # any file no format recognises is read as raw
for p in junk.img fake.bin; do
    cp at/c.vdi at/c.orig
    "$VDKIT" attach --check "at/$p" at/c.vdi > at.out 2>&1
    rc_check=$?
    "$VDKIT" attach "at/$p" at/c.vdi >> at.out 2>&1
    rc=$?
    [ $rc_check = 1 ] && [ $rc = 1 ] && cmp -s at/c.vdi at/c.orig && grep -q "no identity" at.out && ok \
        || { bad "attach onto $p (no identity) was not refused, or --check disagreed ($rc_check/$rc)"; cat at.out; }
    "$VDKIT" attach --check --force "at/$p" at/c.vdi > at.out 2>&1 && ok || { bad "--force onto $p"; cat at.out; }
done
# A random file named like a VDI is refused by its name before identity is even asked, --force or not
# (the probe of every later open would refuse it: the chain could never be opened again).
cp at/fake.bin at/fake.vdi
cp at/c.vdi at/c.orig
for force in "" --force; do
    "$VDKIT" attach --check $force at/fake.vdi at/c.vdi > at.out 2>&1
    rc_check=$?
    "$VDKIT" attach $force at/fake.vdi at/c.vdi >> at.out 2>&1
    rc=$?
    [ $rc_check = 1 ] && [ $rc = 1 ] && cmp -s at/c.vdi at/c.orig && grep -q "named like a vdi image" at.out && ok \
        || { bad "attach $force onto fake.vdi: not refused by its name, or --check disagreed ($rc_check/$rc)"; cat at.out; }
done
rm -f at/c.orig
twice() { # twice <parent> <child>: refused as the same file twice, not as a lock held elsewhere
    "$VDKIT" attach --force "$1" "$2" > at.out 2>&1
    local rc=$?
    "$VDKIT" attach --check --force "$1" "$2" >> at.out 2>&1
    local rc_check=$?
    [ $rc = 1 ] && [ $rc_check = 1 ] && grep -q "in the chain twice" at.out && ! grep -q "another process" at.out && ok \
        || { bad "attach $1 $2: not refused as the same file twice"; cat at.out; }
}
twice at/b.vdi at/b.vdi
twice at/d.vdi at/c.vdi
twice at/d.vdi at/b.vdi
ln -s c.vdi at/alias.vdi
twice at/d.vdi at/alias.vdi
twice vb/$S1 vb/$S1
twice vb/$S2 vb/$S1
rm -rf at

# ---- a user-typed fifo or character device is refused, not waited on ------------------------------
mkfifo ufifo
for f in ufifo /dev/zero; do
    timeout 20 "$VDKIT" info "$f" > uf.out 2>&1
    rc=$?
    [ $rc = 1 ] && grep -q "not an image file" uf.out && ok || { bad "vdkit info $f: rc=$rc (124: it hung)"; cat uf.out; }
done
rm -f ufifo

# ---- a VMDK's modification id is shown as its CID (8 hex digits), paths absolute -------------------
# qemu-img writes VMDKs without UUIDs: one level up, the parent is verified by CID; a write changes it.
rm -rf cid && mkdir -p cid/sub
qemu-img create -q -f vmdk cid/base.vmdk 1M && qemu-img create -q -f vmdk -b ../base.vmdk -F vmdk cid/sub/c.vmdk \
    && qemu-io -c 'write 0 512' cid/base.vmdk > /dev/null || bad "qemu-img/qemu-io making the CID case"
# qemu-img writes the CID without leading zeros (CID=1ecee13); vdkit always shows 8 digits.
cid=$(printf '%08x' "0x$(grep -a '^CID=' cid/base.vmdk | cut -d= -f2)")
"$VDKIT" info cid/sub/c.vmdk > cid.out 2>&1
[ $? = 1 ] && grep -q "modification id CID $cid, recorded CID [0-9a-f]\{8\})" cid.out && grep -q "($PWD/cid/base.vmdk)" cid.out && ok \
    || { bad "the CID mismatch should name CIDs as 8 hex digits and the absolute path"; cat cid.out; }
rm -rf cid

# ---- every spelling of the image's path gives the same directory (`child.vdi`, `./`, `a/./`, `a/b/../`) --
# The parent one level up must be found whether the image path has no directory part, `.`, `..`
# segments, is absolute, or the working directory is reached through a symbolic link.
mkdir -p sp/q/d/a/b sp/q/e
"$VDKIT" create -f vdi sp/q/base.vdi 4M > /dev/null || bad "create sp/q/base.vdi"
ln -s "$PWD/sp/q/d" sp/linkd
spell() { # spell <dir to run in> <what> <command...>: the command must succeed
    local dir=$1 what=$2
    shift 2
    (cd "$dir" && "$@") > sp.out 2>&1 && ok || { bad "$what (in $dir: $*)"; cat sp.out; }
}
spell sp/q/d "create -b ../base.vdi child.vdi" "$VDKIT" create -b ../base.vdi child.vdi
spell sp/q/d "info child.vdi" "$VDKIT" info child.vdi
spell sp/q/d "info ./child.vdi" "$VDKIT" info ./child.vdi
spell sp/q/d "info a/./../child.vdi" "$VDKIT" info a/./../child.vdi
spell sp/q/d "info a/b/../../child.vdi" "$VDKIT" info a/b/../../child.vdi
spell sp/q/d "info absolute" "$VDKIT" info "$PWD/sp/q/d/child.vdi"
spell sp/q "info d/child.vdi from outside" "$VDKIT" info d/child.vdi
spell sp/q "info d/./child.vdi from outside" "$VDKIT" info d/./child.vdi
spell sp/q "info e/../d/child.vdi from outside" "$VDKIT" info e/../d/child.vdi
spell sp/linkd "info child.vdi in a symlinked cwd" "$VDKIT" info child.vdi
spell sp/q/d "snapshot ../base.vdi ./snap.vdi" "$VDKIT" snapshot ../base.vdi ./snap.vdi
spell sp/q/d "info snap.vdi" "$VDKIT" info snap.vdi
spell sp/q/d/a "snapshot ../../base.vdi ./b/../../c2.vdi" "$VDKIT" snapshot ../../base.vdi ./b/../../c2.vdi
spell sp/q/d "info c2.vdi" "$VDKIT" info c2.vdi
spell sp/q/d "convert -O raw child.vdi" "$VDKIT" convert -O raw child.vdi out.raw
spell sp/q/d "compare child.vdi with the base" "$VDKIT" compare child.vdi ../base.vdi
rm -f sp/q/d/child.vdi
spell sp/q/d "attach ../base.vdi to a bare name" sh -c '"$0" create -f vdi child.vdi 4M && "$0" attach --force ../base.vdi child.vdi' "$VDKIT"
spell sp/q/d "convert -B ../base.vdi" "$VDKIT" convert -O vdi -B ../base.vdi child.vdi conv.vdi
# The VirtualBox top relinked, converted from inside Snapshots/ by its bare name.
spell vb/vm/Snapshots "convert the relinked top by its bare name" "$VDKIT" convert -O raw "${S2#vm/Snapshots/}" x.raw
"$VDKIT" compare -F raw vb/vm/Snapshots/x.raw vb/expected.raw > cmp.out 2>&1 && ok || { bad "the bare-name conversion differs"; cat cmp.out; }
rm -f vb/vm/Snapshots/x.raw
# A refusal names the absolute path the hint resolved to, and the directory without a trailing separator.
mkdir -p sp/far/x/y
"$VDKIT" create -f vdi sp/far/base.vdi 1M > /dev/null
(cd sp/far/x/y && "$VDKIT" create -b ../../base.vdi c.vdi) > sp.out 2>&1
[ $? = 1 ] && grep -q "($PWD/sp/far/base.vdi)" sp.out && grep -q "directory ($PWD/sp/far/x/y)" sp.out && ok \
    || { bad "a parent two levels up: refusal should name absolute paths"; cat sp.out; }

# ---- hostile paths inside images ---------------------------------------------------------
# A child in h/vm whose parent location record (VDI, at 0x200) is rewritten.
mkdir -p h/vm
"$VDKIT" create -f vdi h/vm/base.vdi 1M > /dev/null
"$VDKIT" snapshot h/vm/base.vdi h/vm/child.vdi > /dev/null
sethint() {
    python3 - "$1" "$2" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(0x200)
    f.write(b"VDKTPRNT" + struct.pack("<II", 1, len(sys.argv[2].encode())) + sys.argv[2].encode())
PY
}
refused() { # refused <what> <hint> <text the error must name>
    sethint h/vm/child.vdi "$2"
    "$VDKIT" info h/vm/child.vdi > o.out 2>&1
    local rc=$?
    if [ "$rc" = 1 ] && grep -qF -- "$3" o.out && grep -q "allow_unsafe_paths" o.out; then ok; else
        bad "$1 ('$2'): exit $rc"; sed 's/^/    /' o.out; fi
}
cp /etc/passwd h/passwd
cp h/vm/base.vdi h/vm/base-copy.vdi
"$VDKIT" convert -O raw h/vm/base.vdi h/base.raw > /dev/null
"$VDKIT" create -f vdi h/stranger.vdi 1M > /dev/null
mkfifo h/vm/pipe
ln -s /etc/hostname h/vm/link.vdi
ln -s /dev/zero h/vm/zero.vdi
refused "two levels up" "../../etc/passwd" "lies neither in"
refused "a system file by absolute path" "/etc/passwd" "lies neither in"
refused "a text file one level up" "../passwd" "no identity"
refused "a raw copy of the parent one level up" "../base.raw" "no identity"
refused "another image one level up" "../stranger.vdi" "not the parent"
refused "a character device" "/dev/zero" "lies neither in"
refused "a character device through a symlink" "zero.vdi" "symbolic link"
refused "a symlink leading out to a non-image" "link.vdi" "symbolic link"
refused "a fifo" "pipe" "a fifo"
refused "a URL" "http://example.invalid/base.vdi" "URL"
refused "a directory" "../vm" "a directory"
if [ "$(id -u)" = 0 ]; then
    mknod h/vm/dev c 1 5 # /dev/zero's numbers, inside the image's directory
    refused "a device node in the image's directory" "dev" "a character device"
fi
sethint h/vm/child.vdi "base.vdi"
"$VDKIT" info h/vm/child.vdi > o.out 2>&1 && ok || { bad "the proper hint does not open"; cat o.out; }
# The same image one level up (its own UUID) opens; a hostile one with the override too.
mv h/vm/base-copy.vdi h/base-up.vdi
sethint h/vm/child.vdi "../base-up.vdi"
"$VDKIT" info h/vm/child.vdi > o.out 2>&1 && ok || { bad "the right image one level up does not open"; cat o.out; }
sethint h/vm/child.vdi "../base.raw"
"$VDKIT" --config "$PWD/unsafe.yaml" info h/vm/child.vdi > o.out 2>&1 && ok \
    || { bad "allow_unsafe_paths does not override"; cat o.out; }

# Extents stay in the image's directory: a flat VMDK naming one level up, or a fifo.
mkdir -p x/vm
head -c 1048576 /dev/zero > x/data.bin
cp x/data.bin x/vm/data.bin
flat() { printf '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "%s" 0\n' "$1" > x/vm/flat.vmdk; }
flat data.bin
"$VDKIT" info x/vm/flat.vmdk > o.out 2>&1 && ok || { bad "a flat extent beside its descriptor"; cat o.out; }
flat ../data.bin
"$VDKIT" info x/vm/flat.vmdk > o.out 2>&1
[ $? = 1 ] && grep -q "outside the image's directory" o.out && ok || { bad "an extent one level up was followed"; cat o.out; }
mkfifo x/vm/fifo.bin
flat fifo.bin
"$VDKIT" info x/vm/flat.vmdk > o.out 2>&1
[ $? = 1 ] && grep -q "a fifo" o.out && ok || { bad "a fifo extent was opened"; cat o.out; }

finish
