#!/usr/bin/env bash
# An interrupted convert cleans up: SIGINT, SIGTERM, SIGHUP and a closed pipe
# cancel the copy, the staging directory is removed, no target appears and
# vdkit ends by that signal; batch stops its running job and starts no more.
# What a kill -9 leaves, `vdkit cleanup` reports and removes — only
# directories with vdkit's marker that no running convert holds; a running
# convert's staging directory is never removed (nor taken over by a second
# convert into the same target).
#
# A convert is caught mid-way deterministically: it runs slowly (random data
# into a streamOptimized VMDK at the highest deflate level, one thread) and
# is stopped (SIGSTOP) as soon as its staging directory exists; the signal
# under test is sent while it is stopped, then it continues.
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img python3
export VDKIT_PLUGIN_PATH="$VDKIT_TEST_EXTRA_PLUGIN_DIR"

run() { # run <exit code> <what> <command...>; output in ./out
    local want=$1 what=$2
    shift 2
    "$@" > out 2>&1
    local got=$?
    if [ "$got" -eq "$want" ]; then ok; else bad "$what: exit $got, expected $want"; sed 's/^/    /' out; fi
}
says() { if grep -qF -- "$2" "${3:-out}"; then ok; else bad "$1: ${3:-out} lacks '$2'"; sed 's/^/    /' "${3:-out}"; fi; }

head -c 64M /dev/urandom > big.raw
head -c 1M /dev/urandom > small.raw
slow=(-f raw -m 1 -O vmdk -o subformat=streamOptimized,compression-level=12,threads=1)

# catch TARGET [convert options...]: start a slow convert of big.raw into
# TARGET in the background and stop it once its staging directory exists
# (pid in $pid). Fails when the convert ended first.
catch() {
    local target=$1
    shift
    # A shell starts background jobs with SIGINT ignored, which vdkit keeps: undo that.
    env --default-signal=INT,TERM,HUP "$VDKIT" convert "$@" "${slow[@]}" big.raw "$target" > "$target.log" 2>&1 &
    pid=$!
    for _ in $(seq 3000); do
        if [ -d ".$target.vdkit-partial" ]; then
            kill -STOP "$pid"
            return 0
        fi
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.01
    done
    bad "could not catch the convert into $target running (it ended first?)"
    cat "$target.log"
    return 1
}
leftovers() { ls -A | grep -F vdkit-partial; }

# 1. SIGINT, SIGTERM, SIGHUP: the staging directory goes, no target, exit by the signal.
for sig in INT TERM HUP; do
    t=sig-$sig.vmdk
    catch "$t" || continue
    kill -"$sig" "$pid"
    kill -CONT "$pid"
    wait "$pid"
    rc=$?
    [ "$rc" -eq $((128 + $(kill -l "$sig"))) ] && ok || bad "SIG$sig: exit $rc, expected $((128 + $(kill -l "$sig")))"
    [ ! -e "$t" ] && ok || bad "SIG$sig: the target was created"
    [ -z "$(leftovers)" ] && ok || bad "SIG$sig left $(leftovers)"
    says "SIG$sig message" "interrupted by SIG$sig: $t was not written" "$t.log"
done

# A signal ignored when vdkit starts (nohup ignores SIGHUP) stays ignored.
env --ignore-signal=HUP "$VDKIT" convert "${slow[@]}" big.raw nohup.vmdk > nohup.vmdk.log 2>&1 &
pid=$!
for _ in $(seq 3000); do [ -d .nohup.vmdk.vdkit-partial ] && break; kill -0 "$pid" 2> /dev/null || break; sleep 0.01; done
kill -HUP "$pid" 2> /dev/null
wait "$pid" && [ -f nohup.vmdk ] && ok || { bad "an ignored SIGHUP stopped the convert"; cat nohup.vmdk.log; }
rm -f nohup.vmdk

# 2. A closed pipe: the progress bar's stderr goes to `head -c1`, which exits.
"$VDKIT" convert -p "${slow[@]}" big.raw pipe.vmdk 2>&1 | head -c1 > /dev/null
rc=${PIPESTATUS[0]}
[ "$rc" -eq 141 ] && ok || bad "closed pipe: exit $rc, expected 141 (SIGPIPE)"
[ ! -e pipe.vmdk ] && [ -z "$(leftovers)" ] && ok || bad "closed pipe: left $(ls -A | grep pipe)"

# 3. kill -9 leaves the staging directory, with vdkit's marker naming the convert.
catch killed.vmdk || true
killed=$pid
kill -9 "$killed"
kill -CONT "$killed" 2> /dev/null
wait "$killed" 2> /dev/null
[ -f .killed.vmdk.vdkit-partial/.vdkit-staging ] && ok || bad "kill -9: no staging directory with a marker"
[ ! -e killed.vmdk ] && ok || bad "kill -9: the target appeared"
mkdir .foreign.vdkit-partial && echo keep > .foreign.vdkit-partial/data # no marker: not vdkit's
mkdir .fake.vdkit-partial && echo "something else" > .fake.vdkit-partial/.vdkit-staging

run 0 "cleanup lists" "$VDKIT" cleanup .
says "cleanup: the killed convert's directory is stale" "./.killed.vmdk.vdkit-partial: stale"
says "cleanup: names the target and pid" "by pid $killed"
says "cleanup: no marker" "./.foreign.vdkit-partial: no vdkit marker"
says "cleanup: a foreign marker" "./.fake.vdkit-partial: no vdkit marker"
says "cleanup: summary" "1 stale staging directory"
[ -d .killed.vmdk.vdkit-partial ] && ok || bad "cleanup without --remove removed something"
run 0 "cleanup json" "$VDKIT" cleanup --output=json .
python3 - "$killed" "$PWD" <<'PY' && ok || bad "cleanup json"
import json, sys
doc = {d["path"]: d for d in json.load(open("out"))}
k = doc["./.killed.vmdk.vdkit-partial"]
assert k["state"] == "stale" and k["pid"] == int(sys.argv[1]), k
assert k["target"] == sys.argv[2] + "/killed.vmdk" and k["bytes"] > 0 and k["started"].endswith("Z"), k
assert doc["./.foreign.vdkit-partial"]["state"] == "foreign"
assert doc["./.fake.vdkit-partial"]["state"] == "foreign"
PY

# A convert into another target in the directory points at them.
run 0 "convert notes stale staging directories" "$VDKIT" convert -f raw -O raw small.raw other.raw
says "convert note" "note: . holds 1 staging directory left by interrupted converts"
says "convert note" "vdkit cleanup --remove ."

# 4. A running convert's staging directory: cleanup leaves it, a second
#    convert into the same target is refused; the first one then finishes.
if catch busy.vmdk; then
    busy=$pid
    run 0 "cleanup --remove" "$VDKIT" cleanup --remove .
    says "cleanup --remove: in use" "./.busy.vmdk.vdkit-partial: in use by pid $busy"
    says "cleanup --remove: removed" "./.killed.vmdk.vdkit-partial: removed"
    [ -d .busy.vmdk.vdkit-partial ] && [ ! -e .killed.vmdk.vdkit-partial ] && ok \
        || bad "cleanup --remove removed the wrong directories"
    [ -f .foreign.vdkit-partial/data ] && [ -f .fake.vdkit-partial/.vdkit-staging ] && ok \
        || bad "cleanup --remove removed a directory without vdkit's marker"
    run 1 "a second convert into a target being converted" "$VDKIT" convert -f raw -O vmdk small.raw busy.vmdk
    says "second convert refused" "busy.vmdk: another vdkit process (pid $busy) is converting into it now"
    [ -d .busy.vmdk.vdkit-partial ] && ok || bad "the second convert removed the running one's staging directory"
    kill -CONT "$busy"
    wait "$busy" && ok || { bad "the stopped convert failed"; cat busy.vmdk.log; }
    qemu-img compare -q -f raw -F vmdk big.raw busy.vmdk && ok || bad "the resumed convert's target differs"
    [ ! -e .busy.vmdk.vdkit-partial ] && ok || bad "the finished convert left its staging directory"
fi

# 5. The next convert into a killed convert's target removes its leftover.
catch again.vmdk || true
kill -9 "$pid"
kill -CONT "$pid" 2> /dev/null
wait "$pid" 2> /dev/null
run 0 "convert after kill -9" "$VDKIT" convert -f raw -O vmdk small.raw again.vmdk
[ ! -e .again.vmdk.vdkit-partial ] && qemu-img compare -q -f raw -F vmdk small.raw again.vmdk && ok \
    || bad "the convert after kill -9 did not clear the leftover"

# 6. batch: SIGTERM stops the running job (its staging directory removed)
#    and the next one never starts; the report says which is which.
rm -rf .foreign.vdkit-partial .fake.vdkit-partial
cat > jobs.yaml <<'EOF'
report: report.json
defaults:
  source_format: raw
  format: vmdk
  threads: 1
  options: {subformat: streamOptimized, compression-level: 12, threads: 1}
jobs:
  - {source: big.raw, target: b1.vmdk}
  - {source: big.raw, target: b2.vmdk}
EOF
env --default-signal=INT,TERM,HUP "$VDKIT" batch jobs.yaml > batch.log 2>&1 &
pid=$!
caught=0
for _ in $(seq 3000); do
    if [ -d .b1.vmdk.vdkit-partial ]; then kill -STOP "$pid"; caught=1; break; fi
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.01
done
if [ "$caught" -eq 1 ]; then
    kill -TERM "$pid"
    kill -CONT "$pid"
    wait "$pid"
    rc=$?
    [ "$rc" -eq 143 ] && ok || bad "batch SIGTERM: exit $rc, expected 143"
    [ ! -e b1.vmdk ] && [ ! -e b2.vmdk ] && [ -z "$(leftovers)" ] && ok || bad "batch SIGTERM left $(ls -A)"
    python3 - <<'PY' && ok || { bad "batch SIGTERM report"; cat report.json batch.log; }
import json
jobs = {j["name"]: j for j in json.load(open("report.json"))["jobs"]}
assert jobs["b1.vmdk"]["status"] == "failed" and "interrupted by SIGTERM" in jobs["b1.vmdk"]["error"], jobs
assert jobs["b2.vmdk"]["status"] == "not_run", jobs
PY
else
    bad "could not catch the batch running"
fi

finish
