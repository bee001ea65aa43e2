#!/usr/bin/env bash
# kill -9 trials (tests/crash/crashsim.c, `kill` mode): for every writable
# format a writer process does random writes, zero writes, discards and
# flushes — and, but for raw, snapshot steps (a differencing image over the
# disk, written on) and commit steps (committed back into the disk) — and is
# killed with SIGKILL at a random moment; `vdkit check` must then exit 0 (or
# report only the expected crash findings) on every image the writer may
# have changed, and every range flushed before the kill must read back as
# it was. VDKIT_CRASH_TRIALS=N trials per format (default 100; `make crash-long`
# runs many more); VDKIT_CRASH_SEED picks another seed.
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"

SIM="$VDKIT_BUILD_DIR/tests/vdkit_crashsim"
[ -x "$SIM" ] || { echo "FAIL: $SIM is not built"; exit 1; }
trials=${VDKIT_CRASH_TRIALS:-100}
seed=${VDKIT_CRASH_SEED:-1}
echo "kill -9 trials: $trials per format, seed $seed (VDKIT_CRASH_SEED=$seed reproduces)"

# name | crashsim arguments
formats=(
    "raw|--format raw"
    "vmdk monolithicSparse|--format vmdk --opts subformat=monolithicSparse"
    "vmdk twoGbMaxExtentSparse (8M extents)|--format vmdk --opts subformat=twoGbMaxExtentSparse,split-size=8M"
    "vmdk differencing|--format vmdk --diff"
    "vdi dynamic|--format vdi"
    "vdi differencing|--format vdi --diff"
    "qcow2 v3 (4k clusters)|--format qcow2 --opts cluster-size=4k"
    "qcow2 v2 differencing|--format qcow2 --opts compat=0.10 --diff"
)
n=0
for f in "${formats[@]}"; do
    name=${f%%|*}
    n=$((n + 1))
    mkdir -p "t$n"
    # shellcheck disable=SC2086 # the arguments are words
    if "$SIM" kill --vdkit "$VDKIT" ${f#*|} --dir "$PWD/t$n" --trials "$trials" --seed "$((seed + n))" > "t$n.out" 2>&1; then
        ok
    else
        bad "$name: kill -9 trials failed"
    fi
    grep -E '^(FAIL|CRASH-ERROR|CRASH-LEAK|kill )' "t$n.out" | head -20 | sed "s/^/  $name: /"
    grep -qE "^[0-9]+ passed, [0-9]+ failed$" "t$n.out" || { bad "$name: no summary"; tail -5 "t$n.out"; }
done
finish
