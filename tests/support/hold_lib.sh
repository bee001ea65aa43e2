# Holding an image open from a second process (tests/support/hold_image.c),
# for the lock suites; source after script_lib.sh:
#   . "$VDKIT_SOURCE_DIR/tests/support/hold_lib.sh"
#   hold_image -w disk.vdi          # held until release_image
#   expect_refused "what" "regex" cmd...; expect_ok "what" cmd...
#   release_image
# Each holder's pid is added to pids; the suite's EXIT trap kills them.
HOLD="$VDKIT_BUILD_DIR/tests/vdkit_hold_image"
pids=()
hpid=

# hold_image [ENV=VALUE... --] ARGS: vdkit_hold_image ARGS (with those
# variables in its environment) holds the image until release_image; sets
# hpid; fails the suite when it cannot open within 60 s.
hold_image() {
    local envs=()
    if printf '%s\n' "$@" | grep -qx -- '--'; then
        while [ "$1" != "--" ]; do envs+=("$1"); shift; done
        shift
    fi
    rm -f hold.in hold.out hold.err
    mkfifo hold.in
    env "${envs[@]}" "$HOLD" "$@" < hold.in > hold.out 2> hold.err &
    hpid=$!
    pids+=("$hpid")
    exec 7> hold.in
    local i
    for ((i = 0; i < 2400; i++)); do
        grep -q '^ready$' hold.out 2> /dev/null && return 0
        kill -0 "$hpid" 2> /dev/null || break
        sleep 0.025
    done
    echo "FAIL: vdkit_hold_image $* did not open the image:"
    cat hold.err
    exit 1
}
release_image() {
    exec 7>&-
    wait "$hpid" || bad "vdkit_hold_image failed closing: $(cat hold.err)"
    hpid=
}

# expect_refused WHAT PATTERN CMD...: CMD fails and its stderr matches
# PATTERN (grep -E).
expect_refused() {
    local what=$1 pattern=$2
    shift 2
    if "$@" > cmd.out 2> cmd.err; then
        bad "$what: succeeded but should be refused"
    elif grep -qE -- "$pattern" cmd.err; then
        ok
    else
        bad "$what: refused without /$pattern/: $(cat cmd.err)"
    fi
}
# expect_ok WHAT CMD...: CMD succeeds.
expect_ok() {
    local what=$1
    shift
    if "$@" > cmd.out 2> cmd.err; then ok; else bad "$what: failed: $(cat cmd.err)"; fi
}
