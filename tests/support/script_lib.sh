# Shared set-up of vdkit's shell test suites; source it first:
#   . "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
#   require_tools qemu-img qemu-io    # skip (77) locally, fail in CI
#   ... ok / bad "what" ...
#   finish                            # summary; non-zero exit on any failure
# Each suite runs in a fresh directory ($work, also the current directory)
# removed on exit.

# Tools nobody here wrote are required in CI (CI=true) and skip the suite elsewhere.
require_tools() {
    local t
    for t in "$@"; do
        if ! command -v "$t" > /dev/null; then
            if [ "${CI:-}" = "true" ]; then echo "FAIL: $t is required in CI (scripts/install-deps.sh installs it)"; exit 1; fi
            echo "SKIP: $t is not installed (scripts/install-deps.sh installs it)"; exit 77
        fi
    done
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
pass=0
failures=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }
finish() {
    echo "$pass passed, $failures failed"
    [ "$failures" -eq 0 ]
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
