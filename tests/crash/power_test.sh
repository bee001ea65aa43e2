#!/usr/bin/env bash
# Power-cut trials (tests/crash/crashsim.c, `power` mode): a workload runs
# through the `record` test transport, which logs every write and flush the
# format plugin issues to its files; every prefix of that log, and random
# subsets of each file's unflushed writes on top of what it had flushed, are
# replayed into images that must check clean (or be repaired by check -r)
# and read back every range flushed before the cut. VDKIT_CRASH_SEED picks
# another seed; VDKIT_CRASH_POWER_RUNS=N runs N seeds per format (default 1),
# VDKIT_CRASH_POWER_OPS=N disk operations per run (default 30).
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"

SIM="$VDKIT_BUILD_DIR/tests/vdkit_crashsim"
[ -x "$SIM" ] || { echo "FAIL: $SIM is not built"; exit 1; }
REC="$VDKIT_BUILD_DIR/tests/probe-plugins/record"
[ -d "$REC" ] || { echo "FAIL: the record transport is not built ($REC)"; exit 1; }
runs=${VDKIT_CRASH_POWER_RUNS:-1}
ops=${VDKIT_CRASH_POWER_OPS:-30}
seed=${VDKIT_CRASH_SEED:-1}
echo "power-cut trials: $runs runs per format, seed $seed (VDKIT_CRASH_SEED=$seed reproduces)"

# name | expected | crashsim arguments. expected "xfail": a known, reported
# bug makes this run fail (docs/reliability.md); it is run and its failures
# printed, and it must keep failing — remove the mark when the fix lands.
formats=(
    "vmdk monolithicSparse|pass|--format vmdk --opts subformat=monolithicSparse"
    "vmdk twoGbMaxExtentSparse (8M extents)|pass|--format vmdk --opts subformat=twoGbMaxExtentSparse,split-size=8M"
    "vmdk differencing|pass|--format vmdk --diff"
    "vdi dynamic|pass|--format vdi"
    "vdi differencing|pass|--format vdi --diff"
    "qcow2 v3 (4k clusters)|pass|--format qcow2 --opts cluster-size=4k"
    "qcow2 v2 differencing|pass|--format qcow2 --opts compat=0.10 --diff"
    "raw|pass|--format raw"
)
n=0
for f in "${formats[@]}"; do
    name=${f%%|*}
    rest=${f#*|}
    expected=${rest%%|*}
    simargs=${rest#*|}
    for run in $(seq 1 "$runs"); do
        n=$((n + 1))
        mkdir -p "p$n"
        # shellcheck disable=SC2086 # the arguments are words
        "$SIM" power --record-plugins "$REC" $simargs --dir "$PWD/p$n" --seed "$((seed + n))" --ops "$ops" --size 8388608 \
            > "p$n.out" 2>&1
        rc=$?
        grep -qE "^[0-9]+ passed, [0-9]+ failed$" "p$n.out" || { bad "$name: no summary (exit $rc)"; tail -5 "p$n.out"; continue; }
        if [ "$expected" = xfail ]; then
            grep -E '^(FAIL|power )' "p$n.out" | head -6 | sed "s/^/  XFAIL $name: /"
            # Each seed may or may not hit the bug; only a crash or a
            # missing summary fails here (the long run reports XPASS).
            [ "$rc" -le 1 ] && ok || bad "$name: exit $rc"
            [ "$rc" -eq 0 ] && echo "  XPASS $name (seed $((seed + n))): the known failure did not show"
            continue
        fi
        [ "$rc" -eq 0 ] && ok || bad "$name: power-cut trials failed (seed $((seed + n)))"
        grep -E '^(FAIL|CRASH-ERROR|CRASH-LEAK|power )' "p$n.out" | head -20 | sed "s/^/  $name: /"
    done
done
finish
