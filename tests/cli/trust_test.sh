#!/usr/bin/env bash
# The CLI's trust rules (docs/design/probing.md, config/batch.md,
# docs/check.md, docs/cli.md):
#  1. one naming rule for every new file: an extension that names another
#     format (an installed plugin's or a foreign container's) is refused for
#     create, snapshot, convert targets and caches, batch targets; .img, .bin
#     and .dd fit any format; every allowed name reopens by probing as the
#     format written;
#  2. batch --check opens every source (read-only, no locks) and reports the
#     ones that do not open with their job's name;
#  3. batch source_force_share reads a source a writer holds open;
#  4. delete --output=json on refusal lists where children were searched;
#  5. check coalesces runs of one kind of finding;
#  6. the naming rule judges the file a symlink names, a renamed file the
#     probe refuses, names with trailing dots/spaces and dotfiles; convert -n
#     into an image of another format and a commit that gives a raw base a
#     container magic are refused.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img
HOLD="$VDKIT_BUILD_DIR/tests/vdkit_hold_image"
[ -x "$HOLD" ] || { echo "FAIL: $HOLD is not built"; exit 1; }
hpid=
trap '[ -n "$hpid" ] && kill "$hpid" 2> /dev/null; rm -rf "$work"' EXIT

# The format an extension names for creating (empty: none, fits any).
named_by() {
    case $1 in
        vdi) echo vdi ;; vmdk) echo vmdk ;; raw) echo raw ;;
        qcow2 | qcow3) echo qcow2 ;; vhd | vpc) echo vhd ;; vhdx) echo vhdx ;; qed) echo qed ;;
        *) echo "" ;;
    esac
}
allowed() { # allowed FORMAT EXT
    local n
    n=$(named_by "$2")
    [ -z "$n" ] || [ "$n" = "$1" ]
}

# 1. The naming rule, over every format and a set of extensions.
head -c 1M /dev/urandom > src.bin
truncate -s 4M src.bin
"$VDKIT" create -f vdi base.vdi 4M > /dev/null || bad "making base.vdi"
for fmt in vdi vmdk raw; do
    for ext in vdi vmdk raw qcow2 qcow3 vhd vhdx qed img bin dd disk; do
        n=$(named_by "$ext")
        for cmd in create convert snapshot; do
            f="$cmd-$fmt.$ext"
            rm -f "$f"
            case $cmd in
                create) args=(create -f "$fmt" "$f" 4M) ;;
                convert) args=(convert -f raw -O "$fmt" src.bin "$f") ;;
                snapshot)
                    [ "$fmt" = raw ] && continue # raw has no differencing images
                    args=(snapshot -f "$fmt" base.vdi "$f") ;;
            esac
            if allowed "$fmt" "$ext"; then
                expect_exit 0 "$cmd -> $fmt named .$ext" "$VDKIT" "${args[@]}"
                # The name reopens by probing as the format written.
                expect_exit 0 "$f reopens by probing" "$VDKIT" info --output=json "$f"
                says "$f probes as $fmt" "\"format\": \"$fmt\"" out
            else
                expect_exit 2 "$cmd -> $fmt named .$ext is refused" "$VDKIT" "${args[@]}"
                says "$cmd $f: the message names file and formats" \
                    "$f: its extension '.$ext' names the $n format, but it would be written as $fmt" out
                [ ! -e "$f" ] && [ -z "$(ls -A . | grep -F "$f.vdkit-partial")" ] && ok || bad "$cmd left $f behind"
            fi
        done
    done
done
# Without -f: a generic name takes the parent's format, a specific one its own.
expect_exit 0 "snapshot base.vdi s.img (no -f)" "$VDKIT" snapshot base.vdi s.img
expect_exit 0 "s.img" "$VDKIT" info --output=json s.img
says "s.img is a vdi over base.vdi" '"format": "vdi"' out
expect_exit 0 "create disk.img 1M (no -f, no parent): raw" "$VDKIT" create disk.img 1M
says "disk.img is raw" "fmt=raw" out
expect_exit 2 "snapshot base.vdi s.qed (no -f): vdi named .qed" "$VDKIT" snapshot base.vdi s.qed
says "names qed" "s.qed: its extension '.qed' names the qed format, but it would be written as vdi" out
# convert's cache image is a new file too.
"$VDKIT" convert -f raw -O vdi src.bin cs.vdi > /dev/null || bad "making cs.vdi"
expect_exit 2 "a --cache named for another format" "$VDKIT" convert --cache cache.vmdk -O raw cs.vdi cs.raw
says "cache name" "cache.vmdk: its extension '.vmdk' names the vmdk format, but it would be written as vdi" out
[ ! -e cache.vmdk ] && [ ! -e cs.raw ] && ok || bad "a refused cache left files"
# rename: the new name follows the rule for the format the image probes as.
"$VDKIT" create -f vdi mv.vdi 1M > /dev/null && "$VDKIT" create -f raw mv.img 1M > /dev/null || bad "making mv.*"
expect_exit 2 "rename a VDI to .vmdk" "$VDKIT" rename mv.vdi mv2.vmdk
says "rename: the naming rule" "mv2.vmdk: its extension '.vmdk' names the vmdk format, but it would be written as vdi" out
expect_exit 2 "rename a raw disk to .qcow2" "$VDKIT" rename mv.img mv2.qcow2
[ -e mv.vdi ] && [ -e mv.img ] && [ ! -e mv2.vmdk ] && [ ! -e mv2.qcow2 ] && ok || bad "a refused rename moved something"
expect_exit 0 "rename a VDI to .bin" "$VDKIT" rename mv.vdi mv2.bin
expect_exit 0 "rename a raw disk to .raw" "$VDKIT" rename mv.img mv2.raw
# -n writes into an existing file: no new name, no rule.
cp src.bin existing.vmdk
expect_exit 0 "convert -n into an existing file keeps working" "$VDKIT" convert -n -f raw -O raw src.bin existing.vmdk

# Batch targets: every problem at its line, nothing run.
mkdir -p dst
cat > names.yaml <<'Y'
version: 1
jobs:
  - source: src.bin
    source_format: raw
    target: dst/a.vmdk
    format: vdi
  - source: src.bin
    source_format: raw
    target: dst/b.qcow2
    format: raw
  - source: src.bin
    source_format: raw
    target: dst/c.img
    format: vmdk
Y
expect_exit 2 "batch: targets named for other formats" "$VDKIT" batch names.yaml
says "batch a.vmdk at its line" "names.yaml:5: job 'a.vmdk': " out
says "batch a.vmdk message" "its extension '.vmdk' names the vmdk format, but it would be written as vdi" out
says "batch b.qcow2 at its line" "names.yaml:9: job 'b.qcow2': " out
grep -q "names.yaml:13" out && bad "batch: dst/c.img (generic) was reported" || ok
[ -z "$(ls -A dst)" ] && ok || bad "batch ran with invalid targets: $(ls dst)"
expect_exit 2 "batch --check: the same" "$VDKIT" batch --check names.yaml
says "--check names the job" "job 'b.qcow2'" out

# 2. batch --check opens every source: a qed (no plugin reads it), a damaged VDI, a good one.
qemu-img create -q -f qed disk.qed 4M
"$VDKIT" convert -f raw -O vdi src.bin good.vdi > /dev/null || bad "making good.vdi"
cp good.vdi broken.vdi
printf '\xff\xff\xff\xff' | dd of=broken.vdi bs=1 seek=$((0x154)) conv=notrunc status=none
cat > sources.yaml <<'Y'
version: 1
defaults:
  format: vdi
jobs:
  - name: from-qed
    source: disk.qed
    target: dst/q.vdi
  - name: from-broken
    source: broken.vdi
    target: dst/b.vdi
  - name: from-good
    source: good.vdi
    target: dst/g.vdi
  - name: second-step
    source: dst/g.vdi
    target: dst/g2.vmdk
    format: vmdk
Y
expect_exit 2 "batch --check reports sources that do not open" "$VDKIT" batch --check sources.yaml
says "--check: the qed source, with its job and line" "sources.yaml:6: job 'from-qed': source" out
says "--check: the qed source is named as such" "is a qed image" out
says "--check: the advice names the batch key" "source_format: raw" out
says "--check: the damaged source, with its job" "sources.yaml:9: job 'from-broken': source" out
grep -q "from-good\|second-step" out && bad "--check reported a good job" || ok
[ -z "$(ls -A dst)" ] && ok || bad "--check wrote something: $(ls dst)"
# A source held open by a writer: --check takes no lock, so it is neither refused nor in the way.
cat > held.yaml <<'Y'
version: 1
jobs:
  - name: held
    source: good.vdi
    target: dst/h.vdi
    format: vdi
Y
rm -f hold.in; mkfifo hold.in
"$HOLD" -w good.vdi < hold.in > hold.out 2> hold.err &
hpid=$!
exec 7> hold.in
for _ in $(seq 400); do grep -q '^ready$' hold.out 2> /dev/null && break; sleep 0.025; done
grep -q '^ready$' hold.out || bad "vdkit_hold_image did not open good.vdi: $(cat hold.err)"
expect_exit 0 "batch --check of a source a writer holds" "$VDKIT" batch --check held.yaml
says "--check: good" "1 job, no problems" out

# 3. source_force_share: without it the held source fails its job; with it the job converts.
expect_exit 1 "batch: a held source without source_force_share fails" "$VDKIT" batch held.yaml
says "the failure names the lock" "in use for writing" out
says "batch advice: the job's key" "source_force_share: true on the job (config/batch.md)" out
grep -q -- "-U/--force-share" out && bad "batch advice names the CLI's -U: $(cat out)" || ok
[ ! -e dst/h.vdi ] && ok || bad "a failed job left dst/h.vdi"
cat > shared.yaml <<'Y'
version: 1
defaults:
  source_force_share: true
jobs:
  - name: held
    source: good.vdi
    target: dst/h.vdi
    format: vdi
  - name: held-job-key
    source: good.vdi
    target: dst/h2.vmdk
    format: vmdk
    source_force_share: yes
Y
expect_exit 0 "batch: source_force_share reads the held source" "$VDKIT" batch shared.yaml
exec 7>&-
wait "$hpid" || bad "vdkit_hold_image failed: $(cat hold.err)"
hpid=
expect_exit 0 "the copy reads as the source" "$VDKIT" compare good.vdi dst/h.vdi
expect_exit 0 "the job-level key too" "$VDKIT" compare good.vdi dst/h2.vmdk
expect_exit 0 "qemu-img reads the copy" qemu-img compare -f raw -F vdi src.bin dst/h.vdi
cat > badshare.yaml <<'Y'
version: 1
jobs:
  - source: good.vdi
    target: dst/x.vdi
    format: vdi
    source_force_share: sometimes
    source_forceshare: true
Y
expect_exit 2 "source_force_share is validated" "$VDKIT" batch --check badshare.yaml
says "bad value at its line" "badshare.yaml:6: source_force_share must be true or false, not 'sometimes'" out
says "misspelt key" "did you mean 'source_force_share'?" out

# 4. delete --output=json: a refusal lists where children were searched and the children.
mkdir -p vm/Snapshots
"$VDKIT" create -f vdi vm/disk.vdi 4M > /dev/null && "$VDKIT" snapshot vm/disk.vdi vm/Snapshots/s1.vdi > /dev/null \
    || bad "making vm/"
expect_exit 1 "delete of a parent is refused" "$VDKIT" delete --output=json vm/disk.vdi
"$VDKIT" delete --output=json vm/disk.vdi > delete.json 2> /dev/null
python3 - delete.json "$PWD" <<'PY' && ok || bad "delete JSON refusal: $(cat delete.json)"
import json, os, sys
doc = json.load(open(sys.argv[1]))
cwd = sys.argv[2]
assert doc["status"] == "VDKIT_E_PERMISSION", doc
assert isinstance(doc["searched"], list) and doc["searched"], doc
assert os.path.join(cwd, "vm") in doc["searched"], doc["searched"]
assert os.path.join(cwd, "vm", "Snapshots") in doc["searched"], doc["searched"]
assert doc["children"] == [os.path.join(cwd, "vm", "Snapshots", "s1.vdi")], doc["children"]
assert "error" in doc and "s1.vdi" in doc["error"]
PY
[ -e vm/disk.vdi ] && ok || bad "the refused delete removed vm/disk.vdi"

# 5. check: a 4 GiB VMDK with 600 grains far apart, cut to 1 MiB, gives one
# finding per lost grain; the text coalesces them, JSON lists every one.
python3 - sparse.raw <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.truncate(4 << 30)
    for i in range(600):
        f.seek(i * (7 << 20) + 65536)
        f.write(os.urandom(4096))
PY
"$VDKIT" convert -f raw -O vmdk sparse.raw cut.vmdk > /dev/null || bad "making cut.vmdk"
truncate -s 1M cut.vmdk
"$VDKIT" check cut.vmdk > check.txt 2>&1
rc=$?
"$VDKIT" check --output=json cut.vmdk > check.json 2>&1
rc_json=$?
[ "$rc" -eq "$rc_json" ] && [ "$rc" -ne 0 ] && ok || bad "check exit codes: text $rc, json $rc_json"
python3 - check.txt check.json <<'PY' && ok || bad "check coalescing: $(head -30 check.txt)"
import json, re, sys
text = open(sys.argv[1]).read().splitlines()
doc = json.load(open(sys.argv[2]))
findings, summary = doc["findings"], doc["summary"]
assert len(findings) >= 500, len(findings)            # one per lost grain, all kept
assert sum(r["count"] for r in summary) == len(findings)
assert len(summary) < 20, [r["message"] for r in summary]
assert len(text) < 40, len(text)                      # instead of ~600 lines
more = [l for l in text if re.match(r"  \.\.\. \d+ more \w+ findings like it \(offsets 0x[0-9a-f]+ to 0x[0-9a-f]+\); \d+ in all", l)]
assert more, text
big = max(summary, key=lambda r: r["count"])
assert big["count"] > 400 and big["last-offset"] >= big["offset"], big
# the run's first and last findings are printed as they are in JSON
assert any(big["message"] in l for l in text) and any(big["last-message"] in l for l in text)
n = int(re.search(r"(\d+) in all", [l for l in more if str(big["count"] - 2) + " more" in l][0]).group(1))
assert n == big["count"], (n, big["count"])
assert text[-1].endswith("were found on the image."), text[-1]
PY

# 6. The naming rule judges what is written and what a file is.
mkdir -p nm && cd nm
"$VDKIT" create -f raw r.raw 4M > /dev/null && "$VDKIT" create -f vdi v.vdi 4M > /dev/null || bad "making nm sources"
# 6a. A symlink target: the name of the file written through it counts too (convert and batch).
for pair in "vmdk vdi vdi" "vdi img raw" "vdi vmdk vmdk" "vmdk img raw" "raw vdi vdi"; do
    set -- $pair # real file's extension, the link's, the format written
    real="real-$1-$2-$3.$1"; link="link-$1-$2-$3.$2"
    "$VDKIT" create -f "$([ "$1" = raw ] && echo raw || echo "$1")" "$real" 4M > /dev/null
    ln -sf "$real" "$link"
    before=$(md5sum < "$real")
    src=v.vdi; [ "$3" = vdi ] && src=r.raw
    expect_exit 2 "convert -O $3 through $link -> $real" "$VDKIT" convert --overwrite -O "$3" "$src" "$link"
    says "$link: names the file written" "$link is a symlink to $PWD/$real, the file that would be written; $PWD/$real: its extension '.$1'" out
    [ "$(md5sum < "$real")" = "$before" ] && [ -L "$link" ] && ok || bad "$real was changed through $link"
    cat > "j-$link.yaml" <<Y
version: 1
jobs:
  - source: $src
    target: $link
    format: $3
    overwrite: true
Y
    expect_exit 2 "batch: target $link" "$VDKIT" batch "j-$link.yaml"
    says "batch $link at its line" "j-$link.yaml:4: job '$link': $link is a symlink to" out
    [ "$(md5sum < "$real")" = "$before" ] && ok || bad "batch changed $real"
done
ln -sf v.vdi ok-link.vdi
expect_exit 0 "a link named like the file it names is followed" "$VDKIT" convert --overwrite -O vdi r.raw ok-link.vdi
[ -L ok-link.vdi ] && [ "$(qemu-img info --output=json v.vdi | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')" = vdi ] && ok || bad "ok-link.vdi"
ln -sf real-vmdk-vdi-vdi.vmdk c-link.vdi
expect_exit 0 "create --overwrite replaces the link itself" "$VDKIT" create --overwrite -f vdi c-link.vdi 4M
[ ! -L c-link.vdi ] && [ "$(head -c 4 real-vmdk-vdi-vdi.vmdk)" = KDMV ] && ok || bad "create --overwrite through a link"

# 6b. rename of a file the probe refuses: judged as the container it is, or raw.
for ext in vdi vmdk raw qed img; do
    qemu-img create -q -f qed q.qed 4M # no plugin reads qed
    if [ "$ext" = qed ] || [ "$ext" = img ]; then code=0; else code=2; fi
    expect_exit $code "mv q.qed q2.$ext" "$VDKIT" mv q.qed "q2.$ext"
    if [ $code = 2 ]; then
        says "mv q2.$ext names the container" "but q.qed is a qed image (" out
        [ -e q.qed ] && [ ! -e "q2.$ext" ] && ok || bad "mv q2.$ext moved it"
    fi
    rm -f q.qed "q2.$ext"
    truncate -s 1M rawx.vdi # raw bytes named for VDI: the probe refuses it
    if [ "$ext" = raw ] || [ "$ext" = img ] || [ "$ext" = vdi ]; then code=0; else code=2; fi
    expect_exit $code "mv rawx.vdi rawy.$ext (raw)" "$VDKIT" mv rawx.vdi "rawy.$ext"
    [ $code = 2 ] && { says "raw rename refused" "names the" out; [ -e rawx.vdi ] && ok || bad "rawx.vdi moved"; }
    rm -f rawx.vdi "rawy.$ext"
done
truncate -s 1M rawx.vdi
expect_exit 0 "mv keeping the extension names nothing new" "$VDKIT" mv rawx.vdi rawz.vdi

# 6c. convert -n into an image of another format is refused; raw files and matching images are fine.
truncate -s 1M small.raw
"$VDKIT" create -f vdi ex.vdi 4M > /dev/null; "$VDKIT" create -f vmdk ex.vmdk 4M > /dev/null
qemu-img create -q -f qcow2 ex.qcow2 4M; qemu-img create -q -f vpc ex.vhd 4M; truncate -s 4M plain.bin
for t in ex.vdi ex.vmdk ex.qcow2 ex.vhd; do
    for o in raw vdi vmdk; do
        [ "$t" = "ex.$o" ] && continue
        before=$(md5sum < "$t")
        expect_exit 2 "convert -n -O $o into $t" "$VDKIT" convert -n -O "$o" small.raw "$t"
        says "-n $o into $t: both named" "$t is a " out
        says "-n $o into $t: -O named" "but -n -O $o would write $o data" out
        [ "$(md5sum < "$t")" = "$before" ] && ok || bad "$t changed by -n -O $o"
    done
done
expect_exit 0 "convert -n -O raw into a plain file" "$VDKIT" convert -n -O raw small.raw plain.bin
expect_exit 0 "convert -n -O vdi into a VDI" "$VDKIT" convert -n -O vdi small.raw ex.vdi

# 6d. Trailing dots/spaces are dropped and a dotfile is named by its extension.
for name in "t.vmdk." "t.vmdk " "t.vmdk. ." ".vmdk" ".qcow2" ".VMDK.."; do
    expect_exit 2 "create -f raw '$name'" "$VDKIT" create -f raw "$name" 4M
    [ ! -e "$name" ] && ok || bad "'$name' was created"
done
expect_exit 0 "create -f vmdk 't2.vmdk.'" "$VDKIT" create -f vmdk "t2.vmdk." 4M
expect_exit 0 "create -f raw '.img'" "$VDKIT" create -f raw ".img" 4M

# 6e. The advice suggests only formats an installed plugin writes.
for f in x.qed x.luks x.vhdx; do
    expect_exit 2 "create -f raw $f" "$VDKIT" create -f raw "$f" 4M
    grep -q "or write" out && bad "$f: advice suggests a format vdkit cannot write: $(cat out)" || ok
done
expect_exit 2 "create -f raw x.vdi" "$VDKIT" create -f raw x.vdi 4M
says "a writable format is suggested" "or write vdi)" out
expect_exit 2 "create -f raw x.qcow2" "$VDKIT" create -f raw x.qcow2 4M
says "qcow2 (written by its plugin) is suggested" "or write qcow2)" out
expect_exit 2 "create -f raw x.vhd" "$VDKIT" create -f raw x.vhd 4M
says "vhd (written by its plugin) is suggested" "or write vhd)" out

# 6f. commit into a raw base whose first bytes would carry a container's magic alone.
for magic in 'QED\0' 'vhdxfile' 'conectix' 'QFI\xfb' 'LUKS\xba\xbe' 'KDMV' 'COWD' 'WithoutFreeSpace'; do
    rm -f data P.raw P.vdi
    head -c 1M /dev/urandom > data
    printf "$magic" | dd of=data conv=notrunc status=none
    truncate -s 1M P.raw
    "$VDKIT" convert -f raw -O vdi -B P.raw data P.vdi > /dev/null 2>&1 || { bad "making P.vdi ($magic)"; continue; }
    expect_exit 1 "commit of a '$magic' magic into a raw base" "$VDKIT" commit P.vdi
    says "'$magic': refused, named" "commit would give P.raw a " out
    says "'$magic': nothing written" "Nothing was written" out
    [ "$(head -c 16 P.raw | tr -d '\0')" = "" ] && ok || bad "'$magic' was written into P.raw"
    qemu-img info -f raw P.raw > /dev/null && ok || bad "qemu-img cannot read P.raw"
done
cd ..

finish
