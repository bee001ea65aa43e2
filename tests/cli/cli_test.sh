#!/usr/bin/env bash
# The vdkit command line: every command, its output formats and its exit codes.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img python3
export VDKIT_PLUGIN_PATH="$VDKIT_TEST_EXTRA_PLUGIN_DIR"
expect() { # expect <exit code> <description> <command...>; output in $work/out
    local want=$1 what=$2
    shift 2
    "$@" > "$work/out" 2>&1
    local got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: $what: exit $got, expected $want"; sed 's/^/    /' "$work/out"; failures=$((failures + 1))
    else
        pass=$((pass + 1))
    fi
}
contains() { # contains <description> <text>
    if grep -qF -- "$2" "$work/out"; then pass=$((pass + 1)); else
        echo "FAIL: $1: output lacks '$2'"; sed 's/^/    /' "$work/out"; failures=$((failures + 1)); fi
}

expect 0 "plugins" "$VDKIT" plugins
contains "plugins lists raw" "format raw"
contains "plugins lists file" "transport file"
contains "plugins lists keys" "-o preallocation=<enum> (off|full) default off [create-only]"
expect 0 "plugins json" "$VDKIT" plugins --output=json
python3 - "$work/out" <<'PY' || { echo "FAIL: plugins json content"; failures=$((failures + 1)); }
import json, sys
doc = json.load(open(sys.argv[1]))
names = {(p["kind"], p["name"]) for p in doc["plugins"]}
assert ("format", "raw") in names and ("transport", "file") in names, names
raw = next(p for p in doc["plugins"] if p["name"] == "raw")
assert "create-dynamic" in raw["capabilities"] and raw["keys"][0]["name"] == "preallocation"
assert raw["keys"][0]["flags"] == ["create-only"]
PY

expect 0 "create raw" "$VDKIT" create -f raw "$work/a.img" 64M
contains "create reports" "Formatting '$work/a.img', fmt=raw size=67108864"
[ "$(stat -c %s "$work/a.img")" = 67108864 ] || { echo "FAIL: raw size"; failures=$((failures + 1)); }
expect 1 "create refuses to overwrite" "$VDKIT" create -f raw "$work/a.img" 1M
contains "overwrite hint" "--overwrite"
expect 0 "create --overwrite" "$VDKIT" create -f raw --overwrite "$work/a.img" 32M
expect 1 "unknown format" "$VDKIT" create -f rwa "$work/b.img" 1M
contains "format suggestion" "did you mean 'raw'?"
expect 1 "unknown option" "$VDKIT" create -f raw -o prealocation=full "$work/b.img" 1M
contains "option suggestion" "did you mean 'preallocation'?"
expect 1 "bad enum" "$VDKIT" create -f raw -o preallocation=some "$work/b.img" 1M
contains "enum values" "must be one of: off, full"
expect 2 "bad size" "$VDKIT" create -f raw "$work/b.img" 12Q
expect 2 "missing argument" "$VDKIT" create "$work/b.img"
expect 2 "unknown command" "$VDKIT" frobnicate
test ! -e "$work/b.img" || { echo "FAIL: a failed create left b.img behind"; failures=$((failures + 1)); }

# Data, then info / map / convert / compare.
python3 - "$work/a.img" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1 << 20); f.write(bytes(range(256)) * 256)
    f.seek(20 << 20); f.write(b"vdkit" * 1000)
PY
expect 0 "info" "$VDKIT" info "$work/a.img"
contains "info format" "file format: raw"
contains "info size" "virtual size: 32 MiB (33554432 bytes)"
expect 0 "info json" "$VDKIT" info --output=json -f raw "$work/a.img"
python3 -c "import json,sys; d=json.load(open('$work/out')); assert d['format']=='raw' and d['virtual-size']==33554432, d" \
    || { echo "FAIL: info json"; failures=$((failures + 1)); }
expect 1 "info of a missing file" "$VDKIT" info "$work/missing.img"
contains "missing file named" "missing.img"

expect 0 "map json" "$VDKIT" map --output=json -f raw "$work/a.img"
python3 - "$work/out" <<'PY' || { echo "FAIL: map json content"; failures=$((failures + 1)); }
import json, sys
m = json.load(open(sys.argv[1]))
data = [(e["start"], e["length"]) for e in m if e["data"]]
assert data == [(1 << 20, 65536), (20 << 20, 8192)], data
assert sum(e["length"] for e in m) == 32 << 20
PY
expect 0 "map human" "$VDKIT" map -f raw "$work/a.img"
contains "map human data row" "data"

expect 0 "convert to toysparse" "$VDKIT" convert -f raw -O toysparse -o block-size=4k "$work/a.img" "$work/a.toys"
expect 0 "compare raw with toysparse" "$VDKIT" compare -f raw "$work/a.img" "$work/a.toys"
contains "identical" "Images are identical."
expect 0 "convert with progress" "$VDKIT" convert -p -O raw "$work/a.toys" "$work/back.img"
contains "progress bar" "100.00%"
cmp "$work/a.img" "$work/back.img" || { echo "FAIL: round trip differs"; failures=$((failures + 1)); }
expect 1 "convert refuses an existing target" "$VDKIT" convert -O raw "$work/a.toys" "$work/back.img"
expect 2 "convert refuses to overwrite its source" "$VDKIT" convert --overwrite -O raw "$work/a.toys" "$work/a.toys"
contains "same file" "source and target are the same file"
expect 0 "source survived" "$VDKIT" compare -f raw "$work/a.img" "$work/a.toys"

# convert -m/-W, and the staging directory: a target appears under its final
# name only when complete; a failed convert leaves nothing and an old target
# untouched; a leftover staging directory is cleared.
expect 0 "convert -m 3 -W" "$VDKIT" convert -m 3 -W -O vdi "$work/a.toys" "$work/m.vdi"
expect 0 "convert -m result" "$VDKIT" compare "$work/m.vdi" "$work/a.toys"
expect 2 "convert -m 0 refused" "$VDKIT" convert -m 0 -O vdi "$work/a.toys" "$work/m0.vdi"
expect 1 "convert with an unknown option" "$VDKIT" convert -O vdi -o no-such-key=1 "$work/a.toys" "$work/bad.vdi"
[ ! -e "$work/bad.vdi" ] && [ ! -e "$work/.bad.vdi.vdkit-partial" ] && pass=$((pass + 1)) \
    || { echo "FAIL: a failed convert left files"; ls -la "$work"; failures=$((failures + 1)); }
cp "$work/m.vdi" "$work/m.before"
expect 1 "failed overwrite" "$VDKIT" convert --overwrite -O vdi -o no-such-key=1 "$work/a.img" "$work/m.vdi"
cmp -s "$work/m.vdi" "$work/m.before" && pass=$((pass + 1)) \
    || { echo "FAIL: a failed --overwrite convert changed the old target"; failures=$((failures + 1)); }
mkdir "$work/.n.vdi.vdkit-partial" && echo junk > "$work/.n.vdi.vdkit-partial/n.vdi"
# No vdkit marker in it: it may be the user's, so it is refused, not removed
# (convert_signal_test.sh: what vdkit's own leftovers get).
expect 1 "convert over a staging name without a vdkit marker" "$VDKIT" convert -O vdi "$work/a.toys" "$work/n.vdi"
[ -f "$work/.n.vdi.vdkit-partial/n.vdi" ] && [ ! -e "$work/n.vdi" ] && pass=$((pass + 1)) \
    || { echo "FAIL: a directory without a vdkit marker under the staging name was removed"; failures=$((failures + 1)); }
rm -rf "$work/.n.vdi.vdkit-partial"
# A raw image named .vdi is never made (docs/design/probing.md, "Naming new
# files"); the old target is left as it was.
expect 2 "convert --overwrite -O raw onto m.vdi is refused by its name" "$VDKIT" convert --overwrite -O raw "$work/a.toys" "$work/m.vdi"
contains "the naming rule" "m.vdi: its extension '.vdi' names the vdi format, but it would be written as raw"
cmp -s "$work/m.vdi" "$work/m.before" && pass=$((pass + 1)) \
    || { echo "FAIL: a refused --overwrite convert changed the old target"; failures=$((failures + 1)); }
expect 0 "convert --overwrite replaces" "$VDKIT" convert --overwrite -O vmdk "$work/a.toys" "$work/m.vmdk"
expect 0 "convert --overwrite replaces (again)" "$VDKIT" convert --overwrite -O vmdk -o subformat=streamOptimized "$work/a.toys" "$work/m.vmdk"
expect 0 "the replaced target" "$VDKIT" info "$work/m.vmdk"
contains "the replaced target is the new one" "streamOptimized"
# Named .vdi but raw (made by another tool): probing refuses the name, -f raw reads it.
cp "$work/a.img" "$work/m.vdi"
expect 1 "the raw file named .vdi is no VDI" "$VDKIT" info "$work/m.vdi"
contains "replaced target refused by name" "named like a vdi image but it is not one"
expect 0 "the replaced target is raw" "$VDKIT" info -f raw "$work/m.vdi"
contains "replaced format" "file format: raw"
# A multi-file target (split VMDK) is moved in extents first, descriptor last.
expect 0 "convert to split vmdk" "$VDKIT" convert -O vmdk -o subformat=twoGbMaxExtentSparse "$work/a.toys" "$work/s.vmdk"
[ -e "$work/s-s001.vmdk" ] && [ ! -e "$work/.s.vmdk.vdkit-partial" ] && pass=$((pass + 1)) \
    || { echo "FAIL: split vmdk extents not in place"; ls -la "$work"; failures=$((failures + 1)); }
expect 0 "split vmdk reads the same" "$VDKIT" compare "$work/s.vmdk" "$work/a.toys"

printf 'X' | dd of="$work/back.img" bs=1 seek=$((20 << 20)) conv=notrunc status=none
expect 1 "compare finds a difference" "$VDKIT" compare -f raw -F raw "$work/a.img" "$work/back.img"
contains "mismatch offset" "Content mismatch at offset $((20 << 20))!"
expect 2 "compare with a missing image" "$VDKIT" compare "$work/a.img" "$work/none.img"

# A differencing image over a base.
expect 0 "create diff" "$VDKIT" create -f toysparse -b "$work/a.toys" "$work/child.toys"
expect 0 "info on diff" "$VDKIT" info "$work/child.toys"
contains "backing file" "backing file: a.toys"
contains "chain length" "chain length: 2"
expect 0 "diff reads through" "$VDKIT" compare "$work/child.toys" "$work/a.toys"

# discard: freed ranges of a base read as zero, --zero ranges read as zero
# even over a parent's data (checked by qemu-img against an edited raw copy).
expect 0 "convert for discard" "$VDKIT" convert -f raw -O vdi "$work/a.img" "$work/d.vdi"
expect 0 "discard a whole block" "$VDKIT" discard "$work/d.vdi" 1M:1M
contains "discard reports" "Discarded 1048576 bytes in 1 range."
expect 0 "map after discard" "$VDKIT" map --output=json "$work/d.vdi"
python3 -c "import json; m=json.load(open('$work/out')); assert [e['start'] for e in m if e['data']] == [20 << 20], m" \
    && pass=$((pass + 1)) || { echo "FAIL: the discarded block still holds data"; failures=$((failures + 1)); }
expect 0 "a vmdk base for qemu-img" "$VDKIT" convert -O vmdk "$work/d.vdi" "$work/d.vmdk"
expect 0 "snapshot for discard" "$VDKIT" snapshot --output=json "$work/d.vmdk" "$work/d-top.vmdk"
python3 -c "import json; d=json.load(open('$work/out')); assert d['format'] == 'vmdk' and d['backing-filename'] == 'd.vmdk' and d['chain-length'] == 2, d" \
    && pass=$((pass + 1)) || { echo "FAIL: snapshot json"; failures=$((failures + 1)); }
expect 0 "discard --zero over the parent" "$VDKIT" discard -z --output=json "$work/d-top.vmdk" 20M:4K 30M:64K
python3 -c "import json; d=json.load(open('$work/out')); assert d['zero'] and d['bytes'] == 4096 + 65536 and len(d['ranges']) == 2, d" \
    && pass=$((pass + 1)) || { echo "FAIL: discard json"; failures=$((failures + 1)); }
python3 - "$work/a.img" "$work/d-base.raw" "$work/d-top.raw" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[1 << 20:2 << 20] = bytes(1 << 20)
open(sys.argv[2], "wb").write(data)
data[20 << 20:(20 << 20) + 4096] = bytes(4096)
open(sys.argv[3], "wb").write(data)
PY
qemu-img compare -q -f vmdk -F raw "$work/d-top.vmdk" "$work/d-top.raw" && pass=$((pass + 1)) \
    || { echo "FAIL: qemu-img reads other data in the top after discard"; failures=$((failures + 1)); }
qemu-img compare -q -f vmdk -F raw "$work/d.vmdk" "$work/d-base.raw" && pass=$((pass + 1)) \
    || { echo "FAIL: the base changed under the zeroed range"; failures=$((failures + 1)); }
expect 2 "discard past the end" "$VDKIT" discard "$work/d.vdi" 31M:2M
contains "range named" "range '31M:2M' is empty or ends past the disk's 33554432 bytes"
expect 2 "discard without a length" "$VDKIT" discard "$work/d.vdi" 1M
contains "syntax named" "range '1M' is not OFFSET:LENGTH"

# A move to another file system (rename(2) says EXDEV) copies, then removes.
if [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(stat -c %d /dev/shm)" != "$(stat -c %d "$work")" ]; then
    shm=$(mktemp -d /dev/shm/vdkit-cli-XXXXXX)
    expect 0 "mv to another file system" "$VDKIT" mv "$work/d.vdi" "$shm/d.vdi"
    [ ! -e "$work/d.vdi" ] && qemu-img compare -q -f vdi -F raw "$shm/d.vdi" "$work/d-base.raw" && pass=$((pass + 1)) \
        || { echo "FAIL: the image moved across file systems differs or stayed"; failures=$((failures + 1)); }
    rm -rf "$shm"
else
    skip_part "the move across file systems: /dev/shm is missing, read-only or on $work's file system"
fi

# Writing to a file no format recognises needs the format named.
random_bytes 4096 > "$work/blob"
expect 0 "probe falls back to raw for reading" "$VDKIT" info "$work/blob"
contains "raw guess" "file format: raw"

# convert --cache: the first run fills the cache, the second reads only from it.
random_bytes 3M > "$work/cs.raw" && truncate -s 16M "$work/cs.raw"
"$VDKIT" -q convert -f raw -O vdi "$work/cs.raw" "$work/cs.vdi"
expect 0 "convert --cache (cold)" "$VDKIT" -v convert --cache "$work/cs-cache.vdi" -O raw "$work/cs.vdi" "$work/cs1.raw"
contains "cold cache" "0 bytes read from the cache, 3145728 from the chain"
expect 0 "convert --cache (warm)" "$VDKIT" -v convert --cache "$work/cs-cache.vdi" -O raw "$work/cs.vdi" "$work/cs2.raw"
contains "warm cache" "3145728 bytes read from the cache, 0 from the chain"
cmp -s "$work/cs.raw" "$work/cs2.raw" && pass=$((pass + 1)) || { echo "FAIL: convert through a warm cache"; failures=$((failures + 1)); }
expect 1 "a cache format that cannot hold one" "$VDKIT" convert --cache "$work/cs.toys" --cache-format toysparse -O raw "$work/cs.vdi" "$work/cs3.raw"
contains "cache format refused" "cannot hold a cache"

# File-level filter stacks (the rot test filter): every command that opens an
# image takes --filter; convert takes one stack per side.
random_bytes 2M > "$work/fs.raw" && truncate -s 8M "$work/fs.raw"
expect 0 "create --filter" "$VDKIT" create -f vdi --filter rot:bits=4 "$work/fb.vdi" 8M
expect 0 "info --filter" "$VDKIT" info --filter rot:bits=4 "$work/fb.vdi"
contains "info names the stack" "filters: rot"
contains "the filtered image is a VDI" "file format: vdi"
expect 1 "info without the stack" "$VDKIT" info "$work/fb.vdi"
contains "unfiltered it is no VDI" "named like a vdi image but it is not one"
expect 0 "snapshot --filter" "$VDKIT" snapshot --filter rot:bits=4 "$work/fb.vdi" "$work/ft.vmdk"
expect 0 "convert into the filtered chain's base" "$VDKIT" convert -O vdi --overwrite --target-filter rot:bits=4 "$work/fs.raw" "$work/fb2.vdi"
expect 0 "rebase --filter" "$VDKIT" rebase -u --filter rot:bits=4 -b fb2.vdi "$work/ft.vmdk"
expect 0 "commit --filter" "$VDKIT" commit --filter rot:bits=4 "$work/ft.vmdk"
expect 0 "check --filter" "$VDKIT" check --filter rot:bits=4 "$work/fb2.vdi"
expect 0 "map --filter" "$VDKIT" map --filter rot:bits=4 "$work/ft.vmdk"
expect 0 "resize --filter" "$VDKIT" resize --filter rot:bits=4 "$work/fb.vdi" 16M
expect 0 "info after resize" "$VDKIT" info --filter rot:bits=4 "$work/fb.vdi"
contains "resized through the filter" "virtual size: 16 MiB"
expect 0 "convert --source-filter" "$VDKIT" convert -O raw --source-filter rot:bits=4 "$work/ft.vmdk" "$work/fback.raw"
cmp -s "$work/fs.raw" "$work/fback.raw" && pass=$((pass + 1)) || { echo "FAIL: a filtered chain read back differs"; failures=$((failures + 1)); }
expect 0 "rename --filter relinks a filtered child" "$VDKIT" rename --filter rot:bits=4 "$work/fb2.vdi" "$work/fb3.vdi"
contains "child relinked" "relinked child $work/ft.vmdk"
expect 0 "delete --filter" "$VDKIT" delete --filter rot:bits=4 "$work/ft.vmdk"
expect 0 "compare --filter" "$VDKIT" compare --filter rot:bits=4 -F raw "$work/fb3.vdi" "$work/fs.raw"
expect 0 "compare --second-filter" "$VDKIT" compare -f raw --second-filter rot:bits=4 "$work/fs.raw" "$work/fb3.vdi"
expect 1 "compare without the stack" "$VDKIT" compare -f raw -F raw "$work/fb3.vdi" "$work/fs.raw"
expect 0 "measure --filter" "$VDKIT" measure --filter rot:bits=4 -O vdi --output=json "$work/fb3.vdi"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["required"] > 2 * 1024 * 1024 else 1)' "$work/out" \
    && pass=$((pass + 1)) || { echo "FAIL: measure --filter did not see the data"; failures=$((failures + 1)); }
expect 1 "an unknown filter" "$VDKIT" info --filter rott "$work/fb3.vdi"
contains "unknown filter named" "no filter plugin named 'rott' is loaded — did you mean 'rot'?"
expect 1 "a filter option out of range" "$VDKIT" convert -O vdi --target-filter rot:bits=8 "$work/fs.raw" "$work/fx.vdi"
contains "range named" "filter 'rot': option 'bits' must be within [1, 7]"
[ ! -e "$work/fx.vdi" ] && pass=$((pass + 1)) || { echo "FAIL: a refused filter left a target"; failures=$((failures + 1)); }
expect 2 "a malformed filter spec" "$VDKIT" info --filter ":bits=1" "$work/fb3.vdi"

finish
