#!/usr/bin/env bash
# The file transport on a file system without open file description locks
# (plugins/transports/file/README.md, "No lock support"): F_OFD_SETLK fails
# with EINVAL there, and the README promises that the image is then opened
# without locks, with a warning naming the file and saying that other
# processes are not kept out. The missing locks are made real with an
# LD_PRELOAD shim (tests/support/no_ofd_locks.c) that makes every OFD
# fcntl fail with EINVAL, as such kernels and FUSE file systems do.
#
# The same pairs are run first with real locks (a second writer is refused),
# so the test fails if the shim had no effect or the fallback stopped
# applying.
set -u
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
. "$VDKIT_SOURCE_DIR/tests/support/hold_lib.sh"
SHIM="$VDKIT_BUILD_DIR/tests/vdkit_no_ofd_locks.so"
[ -x "$HOLD" ] || { echo "FAIL: $HOLD is not built"; exit 1; }
[ -r "$SHIM" ] || { echo "FAIL: $SHIM is not built"; exit 1; }
SHIM=$(with_sanitizer_runtime "$SHIM") # an ASan build needs its runtime loaded before the shim
[ -r /proc/locks ] || { echo "FAIL: /proc/locks is needed to see the locks"; exit 1; }

cleanup() {
    [ -n "$hpid" ] && kill "$hpid" 2> /dev/null && wait "$hpid" 2> /dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The OFD lock bytes /proc/locks shows on FILE's inode.
held() {
    local ino
    ino=$(stat -c %i "$1")
    awk -v ino="$ino" '$2 == "OFDLCK" { n = split($6, d, ":"); if (d[n] == ino) print $7 "-" $8 }' /proc/locks | sort -u |
        tr '\n' ' '
}
WARN="cannot take the QEMU-compatible image lock (Invalid argument); opened without it"

for fmt in vdi vmdk raw; do
    img=disk.$fmt
    rm -f "$img"
    expect_exit 0 "create $img" "$VDKIT" create -f "$fmt" "$img" 8M

    # Real locks: a writer holds the image, a second writer is refused.
    hold_image -- -w -f "$fmt" "$img"
    [ -n "$(held "$img")" ] && ok || bad "$fmt: a real writer holds no OFD locks on $img"
    expect_exit 1 "$fmt: a second writer with real locks is refused" "$VDKIT" resize -f "$fmt" "$img" 16M
    says "$fmt: the refusal names the lock" "in use for writing" out
    release_image

    # No OFD locks: the holder opens unlocked (nothing in /proc/locks), and
    # the shim was in effect (it logged refused calls).
    rm -f shim.log
    hold_image VDKIT_NO_OFD_LOG="$PWD/shim.log" LD_PRELOAD="$SHIM" -- -w -f "$fmt" "$img"
    [ -z "$(held "$img")" ] && ok || bad "$fmt: a writer without OFD locks holds locks: $(held "$img")"
    [ -s shim.log ] && ok || bad "$fmt: the shim refused no fcntl call (was it loaded?)"

    # A second writer, also without OFD locks: opened anyway, with the
    # README's warning naming the file; its write lands.
    expect_exit 0 "$fmt: a second writer without OFD locks opens unlocked" \
        env LD_PRELOAD="$SHIM" "$VDKIT" resize -f "$fmt" "$img" 16M
    says "$fmt: the warning names the file and the missing lock" "$img: $WARN" out
    says "$fmt: the warning says others are not kept out" "not kept from writing it meanwhile" out
    # A vdkit with working locks next to it: nothing is held, so nothing keeps it out either.
    expect_exit 0 "$fmt: a locking writer beside an unlocked holder is not kept out" \
        "$VDKIT" resize -f "$fmt" "$img" 24M
    release_image
    expect_exit 0 "$fmt: info after the resizes" "$VDKIT" info --output=json -f "$fmt" "$img"
    says "$fmt: both writes landed" '"virtual-size": 25165824' out

    # A read-only open without OFD locks warns the same way and reads.
    expect_exit 0 "$fmt: a reader without OFD locks" env LD_PRELOAD="$SHIM" "$VDKIT" info -f "$fmt" "$img"
    says "$fmt: the reader's warning" "$img: $WARN" out
    # Nothing is left locked afterwards (a partly taken set would be released).
    [ -z "$(held "$img")" ] && ok || bad "$fmt: locks left behind: $(held "$img")"
done

# convert without OFD locks works (its staging marker cannot be locked
# either), and a staging directory a killed convert left is "unknown" to
# cleanup there — whether its convert still runs cannot be told — and is
# left alone, even by --remove (docs/cli.md, cleanup).
head -c 4M /dev/urandom > small.raw
expect_exit 0 "convert without OFD locks" env LD_PRELOAD="$SHIM" "$VDKIT" convert -f raw -O vdi small.raw small.vdi
expect_exit 0 "its target reads as the source" "$VDKIT" compare -f raw small.raw small.vdi
head -c 48M /dev/urandom > big.raw
env --default-signal=INT,TERM,HUP LD_PRELOAD="$SHIM" "$VDKIT" convert -f raw -m 1 -O vmdk \
    -o subformat=streamOptimized,compression-level=12,threads=1 big.raw big.vmdk > big.log 2>&1 &
cpid=$!
for _ in $(seq 3000); do [ -f .big.vmdk.vdkit-partial/.vdkit-staging ] && break; kill -0 "$cpid" 2> /dev/null || break; sleep 0.01; done
if [ -f .big.vmdk.vdkit-partial/.vdkit-staging ]; then
    kill -9 "$cpid"; wait "$cpid" 2> /dev/null
    expect_exit 0 "cleanup without OFD locks" env LD_PRELOAD="$SHIM" "$VDKIT" cleanup --remove --output=json .
    python3 - out <<'PY' && ok || { bad "cleanup without OFD locks: the leftover is not 'unknown'"; sed 's/^/    /' out; }
import json, sys
text = open(sys.argv[1]).read()
doc = json.loads(text[text.index("["):text.rindex("]") + 1])
states = {d["path"].rstrip("/").split("/")[-1]: d["state"] for d in doc}
assert states.get(".big.vmdk.vdkit-partial") == "unknown", states
PY
    [ -d .big.vmdk.vdkit-partial ] && ok || bad "cleanup --remove without OFD locks removed a directory it cannot judge"
    # With working locks the same directory is stale (nobody holds its marker) and is removed.
    expect_exit 0 "cleanup with locks" "$VDKIT" cleanup --remove .
    [ ! -e .big.vmdk.vdkit-partial ] && ok || bad "cleanup with locks left the stale directory"
else
    kill "$cpid" 2> /dev/null; wait "$cpid" 2> /dev/null
    bad "could not catch the convert running: $(cat big.log)"
fi

# The no-lock warning is printed once per file per process, also for a batch
# job's staging target, which is opened more than once (written, verified).
cat > nolock.yaml <<'Y'
version: 1
jobs:
  - source: small.vdi
    target: once.vdi
    format: vdi
Y
expect_exit 0 "batch without OFD locks" env LD_PRELOAD="$SHIM" "$VDKIT" batch nolock.yaml
staged=$(grep -c "vdkit-partial/once.vdi: cannot take the QEMU-compatible image lock" out)
[ "$staged" = 1 ] && ok || bad "the staging target's no-lock warning was printed $staged times: $(cat out)"
for f in $(grep -o "[^ ]*: cannot take the QEMU-compatible image lock" out | sort | uniq -d); do
    bad "warned more than once: $f"
done

finish
