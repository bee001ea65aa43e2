#!/usr/bin/env bash
# The reliability jobs `make test` runs after the suite (docs/reliability.md
# "CI cost"):
#   fuzz  every libFuzzer target for FUZZ_CI_SECONDS (make fuzz-ci)
#   tsan  the threaded tests under ThreadSanitizer (make test-tsan)
# Usage: ci-extras.sh [fuzz] [tsan]   (default: both)
#
# Each job runs when its tools exist (clang with libFuzzer; a compiler that
# links -fsanitize=thread). Without them it is skipped with a note — but not
# under CI=true (.ci/run): there a missing tool fails the run, as every
# skipped test does (tests/support/script_lib.sh). VDKIT_CI_EXTRAS=0 skips
# both on a developer machine (refused under CI=true). The wall time of each
# job is printed.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=("$@")
[ ${#jobs[@]} -eq 0 ] && jobs=(fuzz tsan)
strict=0
case "${CI:-}" in true | 1 | yes) strict=1 ;; esac

if [ "${VDKIT_CI_EXTRAS:-1}" = 0 ]; then
    if [ $strict = 1 ]; then
        echo "ci-extras: VDKIT_CI_EXTRAS=0 under CI=true: the fuzz and TSan jobs may not be skipped in CI" >&2
        exit 1
    fi
    echo "ci-extras: SKIPPED (VDKIT_CI_EXTRAS=0): ${jobs[*]}"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Whether `compiler flags...` compiles and links a program from stdin.
links() {
    local cxx=$1
    shift
    command -v "$cxx" > /dev/null 2>&1 || { echo "$cxx: not found" > "$tmp/probe.log"; return 1; }
    "$cxx" -x c++ - -o "$tmp/probe" "$@" > "$tmp/probe.log" 2>&1
}
have_fuzz() {
    links clang++ -fsanitize=fuzzer,address,undefined <<'EOF'
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *, size_t) { return 0; }
EOF
}
have_tsan() {
    # The tsan preset uses the default C++ compiler (CMAKE_CXX_COMPILER or c++).
    links "${CXX:-c++}" -fsanitize=thread -pthread <<'EOF'
#include <thread>
int main() { std::thread t([] {}); t.join(); }
EOF
}

failed=()
for job in "${jobs[@]}"; do
    case $job in
        fuzz) check=have_fuzz what="clang++ with libFuzzer (-fsanitize=fuzzer): packages clang, libclang-rt-dev" ;;
        tsan) check=have_tsan what="a C++ compiler that links -fsanitize=thread: package libtsan2" ;;
        *) echo "ci-extras: unknown job $job (fuzz, tsan)" >&2; exit 2 ;;
    esac
    if ! $check; then
        if [ $strict = 1 ]; then
            echo "ci-extras: FAILED $job: missing $what (scripts/install-deps.sh installs it)" >&2
            sed 's/^/  /' "$tmp/probe.log" | head -5 >&2
            failed+=("$job")
        else
            echo "ci-extras: SKIPPED $job: missing $what"
        fi
        continue
    fi
    start=$(date +%s)
    echo "ci-extras: $job"
    if [ "$job" = fuzz ]; then make --no-print-directory fuzz-ci; else make --no-print-directory test-tsan; fi
    rc=$?
    echo "ci-extras: $job took $(($(date +%s) - start)) s wall (exit $rc)"
    [ $rc -eq 0 ] || failed+=("$job")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "ci-extras: FAILED: ${failed[*]}" >&2
    exit 1
fi
