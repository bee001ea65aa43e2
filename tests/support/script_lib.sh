# Shared set-up of vdkit's shell test suites; source it first:
#   . "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
#   require_tools qemu-img qemu-io    # skip (77) locally, fail in CI
#   ... ok / bad "what" ...
#   finish                            # summary; non-zero exit on any failure
# Each suite runs in a fresh directory ($work, also the current directory),
# removed on success or skip and KEPT (its path printed) when the suite fails.
# Suites needing their own clean-up register it with `at_exit 'command'`
# instead of replacing the EXIT trap.
#
# Skips: a suite (or a part of one) that cannot run exits 77, which ctest
# reports as skipped (SKIP_RETURN_CODE 77, set by vdkit_script_test). Under
# CI=true every skip is a failure: CI installs everything (scripts/install-deps.sh).
#
# Random data comes from `random_bytes COUNT` (seeded): the seed is printed,
# VDKIT_TEST_SEED=<seed> replays a run, and a failing suite prints it again.

# traced ARGS...: strace ARGS... . LeakSanitizer stops the world with
# ptrace itself, so it cannot run under strace; in a sanitizer build the
# traced program runs without it (ASan and UBSan still check it). Where a
# command must be an executable (timeout, exec), use
#   env "$(no_leak_check)" strace ARGS...
no_leak_check() { echo "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"; }
traced() { env "$(no_leak_check)" strace "$@"; }

# A suite that cannot run: skipped locally (77), a failure under CI=true.
skip() {
    if [ "${CI:-}" = "true" ]; then echo "FAIL: cannot run under CI=true: $*"; exit 1; fi
    echo "SKIP: $*"; exit 77
}
# Tools nobody here wrote are required in CI (CI=true) and skip the suite elsewhere.
require_tools() {
    local t
    for t in "$@"; do
        command -v "$t" > /dev/null || skip "$t is not installed (scripts/install-deps.sh installs it)"
    done
}
# Root and loop devices (losetup, mount): skipped locally without them, a
# failure under CI=true.
require_root_loop() {
    [ "$(id -u)" -eq 0 ] || skip "this suite needs root (losetup, mount)"
    command -v losetup > /dev/null || skip "losetup is not installed (util-linux, scripts/install-deps.sh)"
    [ -e /dev/loop-control ] || skip "/dev/loop-control is missing (no loop driver in this kernel or container)"
}

if [ -z "${VDKIT_TEST_SEED:-}" ]; then VDKIT_TEST_SEED=$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); fi
export VDKIT_TEST_SEED
echo "random data seed: VDKIT_TEST_SEED=$VDKIT_TEST_SEED"
_random_calls=$(mktemp)
# flip_byte FILE OFFSET: invert the byte at OFFSET of FILE (a regular file or
# a device) in place. A change whatever the byte held: writing a fixed byte
# into seeded random data leaves it unchanged once in 256 seeds.
flip_byte() {
    python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    o = int(sys.argv[2]); f.seek(o); b = f.read(1)
    if len(b) != 1: sys.exit(sys.argv[1] + ": no byte at offset " + sys.argv[2])
    f.seek(o); f.write(bytes([b[0] ^ 0xff]))' "$1" "$2"
}
# random_bytes <count>[K|M|G]: that many pseudo-random bytes on stdout, from
# VDKIT_TEST_SEED and the number of earlier calls (each call its own stream,
# also from subshells and pipelines).
random_bytes() {
    local n
    n=$(($(cat "$_random_calls" 2> /dev/null || echo 0) + 1))
    echo "$n" > "$_random_calls"
    python3 - "$1" "$VDKIT_TEST_SEED:$n" <<'PY'
import random, sys
spec, seed = sys.argv[1], sys.argv[2]
mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(spec[-1:].upper(), 1)
count = int(spec[:-1] if mult > 1 else spec) * mult
rng = random.Random(seed)
out = sys.stdout.buffer
while count > 0:
    chunk = min(count, 1 << 24)
    out.write(rng.randbytes(chunk))
    count -= chunk
PY
}

# with_sanitizer_runtime [LIB...]: an LD_PRELOAD value of LIBs, led by the
# sanitizer runtime libvdkit links in an ASan or TSan build, then the C++
# runtime (nothing added in a normal build). The runtime must load first,
# before a preload shim or into a program that is not instrumented itself
# (python3 or ruby loading libvdkit, nbdkit loading vdkit's plugin); and the
# C++ runtime with it, or ASan's interceptor of __cxa_throw finds no real
# function to call in a program that does not link libstdc++ (the first
# exception thrown aborts with "CHECK failed: ... real___cxa_throw").
with_sanitizer_runtime() {
    local deps rt cxx
    deps=$(ldd "$VDKIT_BUILD_DIR/lib/libvdkit.so" 2> /dev/null)
    rt=$(awk '/lib(asan|tsan)\.so/ { print $3; exit }' <<< "$deps")
    [ -n "$rt" ] && cxx=$(awk '/libstdc\+\+\.so/ { print $3; exit }' <<< "$deps") && rt=$rt${cxx:+:$cxx}
    local IFS=:
    echo "${rt:+$rt${1:+:}}$*"
}

_at_exit=()
at_exit() { _at_exit+=("$1"); }
_on_exit() {
    local rc=$? c
    for c in "${_at_exit[@]}"; do eval "$c"; done
    rm -f "$_random_calls"
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        echo "work directory kept: $work"
        echo "replay with VDKIT_TEST_SEED=$VDKIT_TEST_SEED"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
work=$(mktemp -d)
trap _on_exit EXIT
cd "$work" || exit 1
pass=0
failures=0
skipped_parts=()
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }
# skip_part <why>: a part of the suite could not run; the rest goes on, and
# finish reports the suite skipped (77) unless something failed.
skip_part() {
    if [ "${CI:-}" = "true" ]; then bad "cannot run under CI=true: $*"; return; fi
    echo "SKIP (part): $*"; skipped_parts+=("$*")
}
finish() {
    echo "$pass passed, $failures failed"
    [ "$failures" -eq 0 ] || exit 1
    if [ "${#skipped_parts[@]}" -gt 0 ]; then
        printf 'SKIP: parts did not run: %s\n' "${skipped_parts[@]}"; exit 77
    fi
    exit 0
}

# expect_exit <exit code> <what> <command...>: the command's stdout and stderr
# land in ./out; a different exit status fails with its output.
expect_exit() {
    local want=$1 what=$2
    shift 2
    "$@" > out 2>&1
    local got=$?
    if [ "$got" -eq "$want" ]; then ok; else bad "$what: exit $got, expected $want"; sed 's/^/    /' out; fi
}
# says <what> <text> [file]: the file (default ./out) holds the text.
says() { if grep -qF -- "$2" "${3:-out}"; then ok; else bad "$1: ${3:-out} lacks '$2'"; sed 's/^/    /' "${3:-out}"; fi; }
