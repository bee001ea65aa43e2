#!/usr/bin/env bash
# Hostile images (issue 22; shared/reference/formats.md §8, the OpenStack
# os-test-images kinds): make_hostile.py writes each case at test time, and
# for each one `vdkit info`, `check`, `convert -O raw` and `compare` (plus
# `map` of the images that are legal) must
#   * exit as the manifest says (docs/cli.md: a refused image is exit 1, and
#     2 for compare; check exits 2 for damaged tables) with a message that
#     names the file and the field (the manifest's texts);
#   * open nothing outside the case's directory (strace: every open/openat is
#     judged by tests/hostile/check_opens.py), and never write host data
#     (the outside files' pattern) into an output;
#   * stay within `ulimit -v` (2 GiB; not under AddressSanitizer, which
#     reserves terabytes of address space) and a timeout (a loop without
#     progress, or a fifo that blocks, fails the case).
# docs/reliability.md ("Hostile images") lists the kinds and what was found.
# VDKIT_HOSTILE_CASES=REGEX runs only the matching cases.
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools strace python3 timeout

python3 "$VDKIT_SOURCE_DIR/tests/hostile/make_hostile.py" "$work" || { bad "make_hostile.py failed"; finish; }
mkdir -p "$work/o"
: > "$work/o/empty.raw"

limit=2097152 # KiB
if ldd "$VDKIT" 2> /dev/null | grep -q 'libasan'; then
    echo "NOTE: AddressSanitizer build: no ulimit -v (ASan reserves terabytes of address space); timeouts still apply"
    limit=unlimited
fi
seconds=${VDKIT_HOSTILE_TIMEOUT:-30}

# run <case dir> <flags> <log name> <command...>: the command under the
# limits and strace, in the case's directory; its output in ./out, the
# strace log judged by check_opens.py. Returns the command's exit status
# (124 for a timeout).
run() {
    local dir=$1 flags=$2 name=$3
    shift 3
    local log="$work/o/$name.strace"
    (cd "$dir" && ulimit -v "$limit" && exec timeout -k 5 "$seconds" \
        env "$(no_leak_check)" strace -f -y -qq -o "$log" -e trace=open,openat,openat2,creat "$@") > "$work/out" 2>&1
    local rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        return 124
    fi
    local area=""
    [[ ,$flags, == *,parent-area,* ]] && area=parent-area
    if python3 "$VDKIT_SOURCE_DIR/tests/hostile/check_opens.py" "$log" "$work" "$dir" $area > "$work/opens" 2>&1; then
        ok; rm -f "$log"
    else
        bad "$name: opened files outside its directory"; sed 's/^/    /' "$work/opens"
    fi
    return $rc
}

# verdict <case> <what> <got> <want> <needles>: exit status and message.
verdict() {
    local name=$1 what=$2 got=$3 want=$4 needles=$5 n
    if [ "$got" -eq 124 ]; then
        bad "$name: $what timed out after ${seconds}s (a loop without progress, or a blocking open)"
        return
    fi
    if [ "$got" -ne "$want" ]; then
        bad "$name: $what exit $got, expected $want"; sed 's/^/    /' "$work/out" | head -20; return
    fi
    ok
    # check's findings are about the image named on its command line; each
    # names the field by its file offset.
    if [ "$what" = check ] && [ "$got" -eq 2 ]; then needles="error at 0x"; fi
    if [ "$got" -ne 0 ] && [ "$got" -ne 3 ] && [ -n "$needles" ]; then
        local IFS='|'
        for n in $needles; do
            if grep -qiF -- "$n" "$work/out"; then ok; else
                bad "$name: $what output lacks '$n'"; sed 's/^/    /' "$work/out" | head -20
            fi
        done
    fi
    # Out-of-memory kills and sanitizer reports are failures whatever the code.
    if grep -qE 'AddressSanitizer|runtime error:|std::bad_alloc|terminate called' "$work/out"; then
        bad "$name: $what crashed or ran out of memory"; sed 's/^/    /' "$work/out" | head -20
    fi
}

no_secret() { # no_secret <case> <file>: no byte of the outside files' data in it
    if [ -e "$2" ] && grep -qaF 'SECRET!!' "$2"; then bad "$1: host data leaked into $2"; else ok; fi
}

cases=0
while IFS=$'\t' read -r name main info check convert needles flags; do
    [ -n "$name" ] || continue
    [[ $name =~ ${VDKIT_HOSTILE_CASES:-.} ]] || continue
    cases=$((cases + 1))
    dir="$work/c/$name"
    [ "$needles" = - ] && needles=""
    run "$dir" "$flags" "$name.info" "$VDKIT" info "$main"; rc=$?
    verdict "$name" info "$rc" "$info" "$needles"
    run "$dir" "$flags" "$name.check" "$VDKIT" check "$main"; rc=$?
    verdict "$name" check "$rc" "$check" "$needles"
    out="$work/o/$name.raw"
    run "$dir" "$flags" "$name.convert" "$VDKIT" convert -O raw "$main" "$out"; rc=$?
    verdict "$name" "convert -O raw" "$rc" "$convert" "$needles"
    no_secret "$name" "$out"
    if [ "$convert" -eq 0 ]; then
        # Read through again: the image equals what convert wrote, and maps.
        run "$dir" "$flags" "$name.compare" "$VDKIT" compare "$main" "$out"; rc=$?
        verdict "$name" compare "$rc" 0 ""
        run "$dir" "$flags" "$name.map" "$VDKIT" map "$main"; rc=$?
        verdict "$name" map "$rc" 0 ""
    else
        [ ! -e "$out" ] && ok || bad "$name: a refused convert left $out behind"
        if [ "$info" -ne 0 ]; then
            run "$dir" "$flags" "$name.compare" "$VDKIT" compare "$main" "$work/o/empty.raw"; rc=$?
            verdict "$name" compare "$rc" 2 "$needles"
        fi
    fi
    rm -f "$out"
done < "$work/manifest.tsv"
echo "$cases hostile cases run"
[ "$cases" -gt 0 ] && ok || bad "no case ran"
finish
