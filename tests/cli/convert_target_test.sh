#!/usr/bin/env bash
# convert's targets: only a regular file is ever replaced (a device, fifo,
# socket or directory, or a symlink to one, is refused by name whatever
# --overwrite says, before anything is written; so is create --overwrite);
# -n writes into an existing file or image in place (zeros where the target
# held data, --target-is-zero skips them; too small refused, a larger one's
# excess kept; create-only options refused); the same in batch job files.
# Block devices themselves: convert_loop_test.sh.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io python3
export VDKIT_PLUGIN_PATH="$VDKIT_TEST_EXTRA_PLUGIN_DIR"

fill() { # fill FILE SIZE_MIB BYTE: a file of SIZE MiB, every byte BYTE (all allocated)
    python3 -c "import sys; open(sys.argv[1],'wb').write(bytes([int(sys.argv[3],16)]) * (int(sys.argv[2]) << 20))" "$@"
}
byte_at() { # byte_at FILE OFFSET: the byte there, as two hex digits
    od -An -tx1 -j "$2" -N1 "$1" | tr -d ' \n'
}
same_prefix() { # same_prefix A B BYTES
    cmp -s -n "$3" "$1" "$2"
}

# An 8 MiB source: data, a hole, written zeros, data, a hole to the end.
python3 - <<'PY'
import os, random
data = random.Random(os.environ["VDKIT_TEST_SEED"])  # the bytes (seeded, script_lib.sh)
with open("src.raw", "wb") as f:
    f.truncate(8 << 20)
    f.seek(0); f.write(data.randbytes(1 << 20))          # [0, 1M) data
    f.seek(3 << 20); f.write(bytes(1 << 20))          # [3M, 4M) written zeros
    f.seek(4 << 20); f.write(data.randbytes(1 << 20))    # [4M, 5M) data
PY
qemu-img convert -f raw -O vdi src.raw src.vdi

# ---- -n into a regular file --------------------------------------------------
fill t.raw 8 aa
expect_exit 0 "-n into a preallocated file" "$VDKIT" convert -n -f vdi -O raw src.vdi t.raw
cmp -s src.raw t.raw && ok || bad "-n: the target does not read as the source (holes must be zeroed)"
[ "$(byte_at t.raw $((2 << 20)))" = 00 ] && [ "$(byte_at t.raw $((7 << 20)))" = 00 ] && ok \
    || bad "-n: a hole of the source kept the target's old bytes"
[ -z "$(ls -A | grep vdkit-partial)" ] && ok || bad "-n staged the target"
qemu-img compare -q -f raw -F raw src.raw t.raw && ok || bad "qemu-img compare after -n"

fill big.raw 12 aa
expect_exit 0 "-n into a larger file" "$VDKIT" convert -n -O raw src.raw big.raw
same_prefix src.raw big.raw $((8 << 20)) && ok || bad "-n into a larger file: its first 8 MiB differ"
[ "$(stat -c %s big.raw)" -eq $((12 << 20)) ] && ok || bad "-n changed the larger target's size"
fill twelve.raw 12 aa
cmp -s -i $((8 << 20)) big.raw twelve.raw && ok || bad "-n touched the larger target's excess"

fill small.raw 4 aa
cp small.raw small.before
expect_exit 1 "-n into a too small file" "$VDKIT" convert -n -O raw src.raw small.raw
says "too small" "small.raw holds 4194304 bytes, less than the virtual size of src.raw (8388608 bytes)"
cmp -s small.raw small.before && ok || bad "a refused -n changed the target"

fill z.raw 8 aa
expect_exit 0 "-n --target-is-zero" "$VDKIT" convert -n --target-is-zero -O raw src.raw z.raw
same_prefix src.raw z.raw $((1 << 20)) && ok || bad "--target-is-zero: data not written"
[ "$(byte_at z.raw $((2 << 20)))" = aa ] && [ "$(byte_at z.raw $((7 << 20)))" = aa ] && ok \
    || bad "--target-is-zero wrote the source's holes (it must skip them)"
truncate -s 8M zero.raw
expect_exit 0 "-n --target-is-zero into a zero file" "$VDKIT" convert -n --target-is-zero -O raw src.raw zero.raw
cmp -s src.raw zero.raw && ok || bad "--target-is-zero into a zero file"
expect_exit 2 "--target-is-zero without -n" "$VDKIT" convert --target-is-zero -O raw src.raw new.raw
says "--target-is-zero without -n" "--target-is-zero needs -n"
[ ! -e new.raw ] && ok || bad "a refused convert created its target"

cp t.raw t.before
for opt in "-o preallocation=full" "--preallocate" "-B src.vdi" "--keep-uuid" "--overwrite"; do
    # shellcheck disable=SC2086 # the option and its value are two words
    expect_exit 2 "-n with $opt" "$VDKIT" convert -n $opt -O raw src.raw t.raw
    says "-n with $opt" "with -n"
done
cmp -s t.raw t.before && ok || bad "a refused -n changed the target"
expect_exit 1 "-n into a missing target" "$VDKIT" convert -n -O raw src.raw missing.raw
says "-n missing" "missing.raw: does not exist; -n writes into an existing target"
[ ! -e missing.raw ] && ok || bad "-n created a missing target"

# -n into existing VDI and VMDK images: opened writable, copied into in place.
for fmt in vdi vmdk; do
    qemu-img create -q -f $fmt t.$fmt 8M
    qemu-io -f $fmt -c "write -P 0x55 2M 1M" -c "write -P 0x66 7M 512k" t.$fmt > /dev/null
    expect_exit 0 "-n into an existing $fmt" "$VDKIT" convert -n -O $fmt src.raw t.$fmt
    qemu-img compare -q -f raw -F $fmt src.raw t.$fmt && ok || bad "-n into $fmt: qemu-img compare differs"
    qemu-img check -q -f $fmt t.$fmt && ok || bad "-n into $fmt: qemu-img check"
    qemu-img create -q -f $fmt small.$fmt 4M
    expect_exit 1 "-n into a too small $fmt" "$VDKIT" convert -n -O $fmt src.raw small.$fmt
    says "too small $fmt" "less than the virtual size"
done

# ---- targets that are not regular files: refused, never replaced -------------
mkfifo fifo
mkdir dir
python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.bind('sock')"
ln -s fifo fifo-link
specials="fifo:fifo dir:directory sock:socket fifo-link:fifo"
if [ "$(id -u)" -eq 0 ]; then
    mknod chr c 1 3 # /dev/null's numbers
    mknod blk b 7 255 # a loop device's numbers; only looked at, never opened
    specials="$specials chr:character blk:block"
else
    skip_part "not root: the character/block device node cases (mknod)"
fi
for entry in $specials; do
    path=${entry%%:*} kind=${entry#*:}
    before=$(stat -c %F "$path")
    for ow in "" --overwrite; do
        expect_exit 1 "convert $ow onto a $kind ($path)" "$VDKIT" convert $ow -O raw src.raw "$path"
        says "convert $ow onto $path names it" "$path"
        says "convert $ow onto $path names its type" "$kind"
        says "convert $ow onto $path" "convert never replaces one, even with --overwrite"
    done
    [ "$(stat -c %F "$path")" = "$before" ] && ok || bad "$path is no longer a $before"
    [ -z "$(ls -A | grep vdkit-partial)" ] && ok || bad "a refused convert onto $path left a staging directory"
done
expect_exit 1 "symlink to a fifo" "$VDKIT" convert --overwrite -O raw src.raw fifo-link
says "symlink named" "fifo-link (a symlink to"
[ -L fifo-link ] && [ -p fifo ] && ok || bad "the symlink or the fifo was replaced"
if [ "$(id -u)" -eq 0 ]; then
    expect_exit 1 "block device hint" "$VDKIT" convert --overwrite -O raw src.raw blk
    says "block device hint" "pass -n to write into it"
fi
expect_exit 1 "-n into a fifo" "$VDKIT" convert -n -O raw src.raw fifo
says "-n into a fifo" "-n writes into a regular file or a block device"
# The same kind of mistake through create --overwrite (the file transport
# never removes anything but a file).
expect_exit 1 "create --overwrite onto a fifo" "$VDKIT" create -f raw --overwrite fifo 1M
says "create --overwrite onto a fifo" "is a fifo (named pipe), not an image file"
[ -p fifo ] && ok || bad "create --overwrite replaced the fifo"

# A symlink to a file: the file it names is replaced, the link kept.
cp t.before real.raw
ln -s real.raw link.raw
expect_exit 0 "convert --overwrite through a symlink" "$VDKIT" convert --overwrite -f vdi -O raw src.vdi link.raw
[ -L link.raw ] && [ "$(readlink link.raw)" = real.raw ] && cmp -s src.raw real.raw && ok \
    || bad "convert --overwrite through a symlink: the link was replaced or its file not written"
expect_exit 1 "convert onto a symlink without --overwrite" "$VDKIT" convert -O raw src.raw link.raw
says "symlink exists" "link.raw: already exists; pass --overwrite"
ln -s nowhere.raw dangling.raw
expect_exit 1 "convert onto a dangling symlink" "$VDKIT" convert -O raw src.raw dangling.raw
says "dangling" "dangling.raw is a symlink to nowhere.raw"
[ -L dangling.raw ] && [ ! -e nowhere.raw ] && ok || bad "a dangling symlink was replaced"

# ---- batch: the same rules, checked before anything runs ----------------------
fill bt.raw 10 aa
cat > jobs.yaml <<'EOF'
jobs:
  - name: onto-fifo
    source: src.raw
    target: fifo
    format: raw
    overwrite: true
  - name: zero-without-n
    source: src.raw
    target: x.raw
    format: raw
    target_is_zero: true
  - name: n-with-options
    source: src.raw
    target: bt.raw
    format: raw
    existing_target: true
    preallocate: true
  - name: n-missing
    source: src.raw
    target: nothere.raw
    format: raw
    existing_target: true
EOF
expect_exit 2 "batch validation" "$VDKIT" batch jobs.yaml
says "batch: fifo target at its line" "jobs.yaml:4: job 'onto-fifo': fifo is a fifo (named pipe); a job never replaces one"
says "batch: target_is_zero" "jobs.yaml:7: job 'zero-without-n': target_is_zero needs existing_target: true"
says "batch: preallocate with existing_target" "jobs.yaml:12: job 'n-with-options': preallocate only applies when convert creates the target; with existing_target: true"
says "batch: missing existing target" "job 'n-missing': nothere.raw does not exist; existing_target: true"
[ -p fifo ] && [ ! -e x.raw ] && ok || bad "a batch with problems changed something"

cat > inplace.yaml <<'EOF'
jobs:
  - name: in-place
    source: src.vdi
    target: bt.raw
    format: raw
    existing_target: true
EOF
expect_exit 0 "batch existing_target" "$VDKIT" batch inplace.yaml
says "batch existing_target converted" "in-place: converted"
same_prefix src.raw bt.raw $((8 << 20)) && ok || bad "batch existing_target: the target's first 8 MiB differ"
[ "$(byte_at bt.raw $((9 << 20)))" = aa ] && [ "$(stat -c %s bt.raw)" -eq $((10 << 20)) ] && ok \
    || bad "batch existing_target: the excess changed"
expect_exit 0 "batch existing_target rerun" "$VDKIT" batch inplace.yaml
says "batch existing_target rerun skips" "in-place: skipped: up to date"
printf 'X' | dd of=bt.raw bs=1 seek=$((2 << 20)) conv=notrunc status=none
expect_exit 0 "batch existing_target after the target changed" "$VDKIT" batch inplace.yaml
says "batch existing_target writes again" "in-place: converted"
same_prefix src.raw bt.raw $((8 << 20)) && ok || bad "batch existing_target: not rewritten after a change"

# ---- --overwrite replaces the new image's files only ------------------------
# A descriptor wrapping a file with an unrelated name: that file is the old
# image's extent, not vdkit's, and stays (as with qemu-img, which replaces
# only the descriptor); so with every target format and subformat.
random_bytes 16M > disk.raw
cp disk.raw disk.before
wrap() { printf '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 32768 FLAT "disk.raw" 0\n' > wrap.vmdk; }
# A VDI or raw image is never named .vmdk (the naming rule, docs/design/probing.md);
# a descriptor named .img may be replaced by any format.
for t in "vmdk -o subformat=monolithicFlat" "vmdk -o subformat=twoGbMaxExtentSparse" "vmdk -o subformat=monolithicSparse" "vdi" "raw"; do
    wrap
    name=wrap.vmdk
    case $t in vmdk*) ;; *)
        # shellcheck disable=SC2086 # format and its options
        expect_exit 2 "convert --overwrite -O $t onto wrap.vmdk is refused by its name" "$VDKIT" convert --overwrite -O $t src.raw wrap.vmdk
        says "-O $t onto wrap.vmdk: the naming rule" "wrap.vmdk: its extension '.vmdk' names the vmdk format, but it would be written as ${t%% *}"
        grep -q 'RW 32768 FLAT "disk.raw"' wrap.vmdk && ok || bad "a refused convert changed wrap.vmdk"
        mv wrap.vmdk wrap.img; name=wrap.img ;;
    esac
    # shellcheck disable=SC2086 # format and its options
    expect_exit 0 "convert --overwrite -O $t onto a descriptor" "$VDKIT" convert --overwrite -O $t src.raw $name
    cmp -s disk.raw disk.before && ok || bad "convert --overwrite -O $t removed or changed the old image's extent disk.raw"
    says "convert --overwrite -O $t notes the extent it left" "disk.raw, a file of the image $name replaced, is left in place"
    qemu-img compare -q -f raw src.raw $name && ok || bad "convert --overwrite -O $t: the new image differs"
    rm -f wrap-*.vmdk wrap.img
done
# The same through batch.
wrap
cat > ow.yaml <<'EOF'
jobs:
  - {name: ow, source: src.raw, source_format: raw, target: wrap.vmdk, format: vmdk, overwrite: true, options: {subformat: monolithicFlat}}
EOF
expect_exit 0 "batch overwrite onto a descriptor" "$VDKIT" batch ow.yaml
cmp -s disk.raw disk.before && ok || bad "batch overwrite removed the old image's extent disk.raw"
rm -f wrap-*.vmdk

# Publishing renames the new files over the old ones, extents first, the
# descriptor last: killed between the two renames, the old descriptor is
# still there, whole (never a moment without one).
if command -v strace > /dev/null; then
    "$VDKIT" convert -O vmdk -o subformat=monolithicFlat disk.raw f.vmdk > /dev/null 2>&1
    cp f.vmdk f.vmdk.before
    traced -f -o /dev/null -e inject=rename:signal=SIGKILL:when=2 -e trace=rename \
        "$VDKIT" convert --overwrite -O vmdk -o subformat=monolithicFlat src.raw f.vmdk > out 2>&1
    cmp -s f.vmdk f.vmdk.before && ok || bad "killed while publishing: the old descriptor f.vmdk is gone or changed"
    rm -rf .f.vmdk.vdkit-partial f.vmdk f-flat.vmdk
else
    skip_part "strace is not installed (scripts/install-deps.sh installs it): the kill between two renames"
fi

# A replaced file's mode carries over to the new one (never world-readable
# because it was replaced).
for fmt in raw vdi "vmdk -o subformat=monolithicFlat"; do
    fill m.img 1 aa
    chmod 600 m.img
    # shellcheck disable=SC2086
    expect_exit 0 "convert --overwrite -O $fmt onto a 600 file" "$VDKIT" convert --overwrite -O $fmt src.raw m.img
    [ "$(stat -c %a m.img)" = 600 ] && ok || bad "convert --overwrite -O $fmt: mode $(stat -c %a m.img), expected 600"
    rm -f m.img m-*.img
done

# ---- never a file of the source's chain ---------------------------------------
qemu-img create -q -f vdi base.vdi 8M
qemu-io -f vdi -c "write -P 0x11 0 1M" base.vdi > /dev/null
"$VDKIT" create -f vdi -b base.vdi c.vdi > /dev/null
qemu-io -f vdi -c "write -P 0x22 1M 1M" c.vdi > /dev/null
cp base.vdi base.before
expect_exit 2 "convert --overwrite onto the source's backing image" "$VDKIT" convert --overwrite -O vdi c.vdi base.vdi
says "chain: named" "base.vdi is part of the source's chain"
expect_exit 2 "convert -n into the source's backing image" "$VDKIT" convert -n -O vdi c.vdi base.vdi
says "chain -n: named" "base.vdi is part of the source's chain"
if grep -qF "in use by another process" out; then bad "-n into the chain: blames another process"; else ok; fi
cmp -s base.vdi base.before && ok || bad "a convert changed the source's backing image"
# An extent file of the source, and an image whose extent is one.
wrap
cp disk.raw disk.before
expect_exit 2 "convert --overwrite onto the source's extent" "$VDKIT" convert --overwrite -O raw wrap.vmdk disk.raw
says "extent target named" "disk.raw is part of the source's chain"
expect_exit 2 "convert --overwrite onto an image using the source" "$VDKIT" convert --overwrite -O vmdk disk.raw wrap.vmdk
says "target's extent named" "a file of the source's chain"
expect_exit 2 "convert -n into an image using the source" "$VDKIT" convert -n -O vmdk disk.raw wrap.vmdk
says "-n target's extent named" "a file of the source's chain"
cmp -s disk.raw disk.before && ok || bad "a convert changed the source's extent"
# A new image's extent name that is a source file.
cp src.raw n-flat.vmdk
expect_exit 1 "a new image's extent would replace the source" "$VDKIT" convert --overwrite -f raw -O vmdk -o subformat=monolithicFlat n-flat.vmdk n.vmdk
says "new extent over the source" "a file of the source's chain"
cmp -s src.raw n-flat.vmdk && ok || bad "a new extent replaced the source file"

# ---- -n into a streamOptimized VMDK: refused up front ---------------------------
qemu-img create -q -f vmdk -o subformat=streamOptimized so.vmdk 8M
cp so.vmdk so.before
expect_exit 1 "-n into a streamOptimized vmdk" "$VDKIT" convert -n -O vmdk src.raw so.vmdk
says "-n streamOptimized" "so.vmdk is a streamOptimized image"
if grep -qF "partly written" out; then bad "-n streamOptimized says partly written"; else ok; fi
cmp -s so.vmdk so.before && ok || bad "-n into a streamOptimized vmdk changed it"

# ---- odd target names: said plainly ----------------------------------------------
expect_exit 2 "an empty target" "$VDKIT" convert -O raw src.raw ''
says "empty target" "the target is an empty name"
expect_exit 2 "a target ending in /" "$VDKIT" convert -O raw src.raw pre.img/
says "target ending in /" "pre.img/: the target ends in '/'"
expect_exit 1 "a target in a missing directory" "$VDKIT" convert -O raw src.raw nodir/x.img
says "missing directory" "nodir/x.img: the directory nodir does not exist"
[ -z "$(ls -A | grep vdkit-partial)" ] && ok || bad "an odd target name left a staging directory"

# ---- batch --check: jobs certain to fail ------------------------------------------
ln -sf nowhere-else.raw dang2.raw
fill tiny.raw 1 aa
cat > sure.yaml <<'EOF'
jobs:
  - {name: dangling, source: src.raw, source_format: raw, target: dang2.raw, format: raw}
EOF
expect_exit 2 "batch --check: a dangling symlink target" "$VDKIT" batch --check sure.yaml
says "batch --check dangling" "dang2.raw is a symlink to nowhere-else.raw, which cannot be reached"
cat > sure.yaml <<'EOF'
jobs:
  - {name: tiny, source: src.raw, source_format: raw, target: tiny.raw, format: raw, existing_target: true}
EOF
expect_exit 2 "batch --check: existing_target smaller than the source" "$VDKIT" batch --check sure.yaml
says "batch --check too small" "job 'tiny': tiny.raw holds 1048576 bytes, less than the virtual size of"
cat > sure.yaml <<'EOF'
jobs:
  - {name: fine, source: src.raw, source_format: raw, target: fine.raw, format: raw}
EOF
expect_exit 0 "batch --check: one job" "$VDKIT" batch --check sure.yaml
says "batch --check: 1 job" "sure.yaml: 1 job, no problems"

# ---- exit codes: 2 for what convert cannot do as asked, 1 for a failed job ----
# The CLI asks the library which refusals are about convert's arguments
# (Library::check_convert); every other failure exits 1, whatever its status
# code — INVALID_ARGUMENT from an image's own content included (a backing
# image of another size, a parent or source that is a fifo).
qemu-img create -q -f vdi small-base.vdi 4M
expect_exit 1 "-B: a backing image of another virtual size" "$VDKIT" convert -f vdi -O vdi -B small-base.vdi src.vdi sized.vdi
says "backing size named" "must have its parent's size"
[ ! -e sized.vdi ] && ok || bad "a refused backing left a target"
qemu-img create -q -f vdi lnk-base.vdi 8M
"$VDKIT" create -f vdi -b lnk-base.vdi lnk-top.vdi > /dev/null
rm lnk-base.vdi && mkfifo lnk-base.vdi
expect_exit 1 "a source whose backing image is a fifo" "$VDKIT" convert -O raw lnk-top.vdi lnk.raw
says "fifo backing named" "lnk-base.vdi"
rm -f lnk-base.vdi lnk-top.vdi
mkfifo src-fifo
expect_exit 1 "a source that is a fifo" "$VDKIT" convert -f raw -O raw src-fifo fifo-out.raw
says "fifo source named" "src-fifo"
rm -f src-fifo
# ... while the arguments' own problems stay usage errors (exit 2).
expect_exit 2 "a target named for another format" "$VDKIT" convert -f vdi -O raw src.vdi misnamed.vmdk
says "naming rule named" "misnamed.vmdk: its extension '.vmdk' names the vmdk format"
expect_exit 2 "create-only options with -n" "$VDKIT" convert -n --keep-uuid -f vdi -O raw src.vdi t.raw
says "-n --keep-uuid named" "--keep-uuid only applies when convert creates the target"

finish
