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


random_bytes 64M > big.raw
random_bytes 1M > small.raw
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

expect_exit 0 "cleanup lists" "$VDKIT" cleanup .
says "cleanup: the killed convert's directory is stale" "./.killed.vmdk.vdkit-partial: stale"
says "cleanup: names the target and pid" "by pid $killed"
says "cleanup: no marker" "./.foreign.vdkit-partial: no vdkit marker"
says "cleanup: a foreign marker" "./.fake.vdkit-partial: no vdkit marker"
says "cleanup: summary" "1 stale staging directory"
[ -d .killed.vmdk.vdkit-partial ] && ok || bad "cleanup without --remove removed something"
expect_exit 0 "cleanup json" "$VDKIT" cleanup --output=json .
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
expect_exit 0 "convert notes stale staging directories" "$VDKIT" convert -f raw -O raw small.raw other.raw
says "convert note" "note: . holds 1 staging directory left by interrupted converts"
says "convert note" "vdkit cleanup --remove ."

# 4. A running convert's staging directory: cleanup leaves it, a second
#    convert into the same target is refused; the first one then finishes.
if catch busy.vmdk; then
    busy=$pid
    expect_exit 0 "cleanup --remove" "$VDKIT" cleanup --remove .
    says "cleanup --remove: in use" "./.busy.vmdk.vdkit-partial: in use by pid $busy"
    says "cleanup --remove: removed" "./.killed.vmdk.vdkit-partial: removed"
    [ -d .busy.vmdk.vdkit-partial ] && [ ! -e .killed.vmdk.vdkit-partial ] && ok \
        || bad "cleanup --remove removed the wrong directories"
    [ -f .foreign.vdkit-partial/data ] && [ -f .fake.vdkit-partial/.vdkit-staging ] && ok \
        || bad "cleanup --remove removed a directory without vdkit's marker"
    expect_exit 1 "a second convert into a target being converted" "$VDKIT" convert -f raw -O vmdk small.raw busy.vmdk
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
expect_exit 0 "convert after kill -9" "$VDKIT" convert -f raw -O vmdk small.raw again.vmdk
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
assert json.load(open("report.json"))["summary"]["not_run"] == 1
PY
else
    bad "could not catch the batch running"
fi

# 7. Only vdkit's own staging directory is ever removed. kill9 TARGET leaves
#    a stale one (marker valid, nobody holding it).
kill9() {
    catch "$1" || return 1
    kill -9 "$pid"
    kill -CONT "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
    [ -f ".$1.vdkit-partial/.vdkit-staging" ] || { bad "kill -9 of the convert into $1 left no staging marker"; return 1; }
}
# The note about stale directories does not count the one the convert
# removes itself.
if kill9 own.vmdk; then
    expect_exit 0 "convert over its own leftover" "$VDKIT" convert -f raw -O vmdk small.raw own.vmdk
    if grep -qF "note:" out; then bad "the stale-directory note counted the convert's own leftover"; sed 's/^/    /' out; else ok; fi
    [ ! -e .own.vmdk.vdkit-partial ] && ok || bad "the convert did not remove its own leftover"
fi
kill9 model.vmdk || bad "no stale staging directory to copy a marker from"
cp .model.vmdk.vdkit-partial/.vdkit-staging model.marker # cleanup --remove below removes the directory
# A user's directory under a target's staging name: no marker, a garbage
# marker, a directory or a symlink as marker, a marker copied from another
# target's directory, a marker from another host. convert and batch refuse
# by name and leave it whole; cleanup --remove leaves it too.
for kind in none garbage dir symlink copied otherhost; do
    d=.u-$kind.raw.vdkit-partial
    mkdir "$d"
    echo mine > "$d/mine.txt"
    case $kind in
    garbage) echo "vdkit staging directory but not really" > "$d/.vdkit-staging" ;;
    dir) mkdir "$d/.vdkit-staging" ;;
    symlink) ln -s ../model.marker "$d/.vdkit-staging" ;;
    copied) cp model.marker "$d/.vdkit-staging" ;;
    otherhost)
        sed "s|^target: .*|target: $PWD/u-$kind.raw|; s|^host: .*|host: not-$(hostname)|" \
            model.marker > "$d/.vdkit-staging" ;;
    esac
    expect_exit 1 "convert onto a $kind staging name" "$VDKIT" convert -f raw -O raw small.raw "u-$kind.raw"
    case $kind in
    copied) says "convert refuses $kind" "is not this target's staging directory (its vdkit marker names" ;;
    otherhost) says "convert refuses $kind" "was made by a convert on host not-$(hostname)" ;;
    *) says "convert refuses $kind" "$d is not a vdkit staging directory" ;;
    esac
    printf 'jobs:\n  - {source: small.raw, source_format: raw, target: u-%s.raw, format: raw}\n' "$kind" > u.yaml
    expect_exit 1 "batch onto a $kind staging name" "$VDKIT" batch u.yaml
    expect_exit 0 "cleanup --remove with a $kind staging name" "$VDKIT" cleanup --remove .
    [ -f "$d/mine.txt" ] && [ ! -e "u-$kind.raw" ] && ok || bad "$kind: the user's directory $d was removed or emptied"
done
expect_exit 0 "cleanup json: mismatched and other-host" "$VDKIT" cleanup --output=json .
python3 - <<'PY' && ok || { bad "cleanup json states"; cat out; }
import json
doc = {d["path"]: d["state"] for d in json.load(open("out"))}
assert doc["./.u-copied.raw.vdkit-partial"] == "mismatched", doc
assert doc["./.u-otherhost.raw.vdkit-partial"] == "other-host", doc
assert doc["./.u-none.raw.vdkit-partial"] == "foreign", doc
PY
# A directory that cannot be listed does not hide the others' report.
expect_exit 1 "cleanup json with a missing directory" "$VDKIT" cleanup --output=json . nonexist
grep -qF '"./.u-none.raw.vdkit-partial"' out && ok || bad "cleanup --output=json . nonexist: nothing listed for ."
says "cleanup names the missing directory" "nonexist: cannot list the directory"
rm -rf .u-*.raw.vdkit-partial .model.vmdk.vdkit-partial

# A mount point inside a stale staging directory: nothing across it is
# removed, and the directory is left whole (marker included).
if [ "$(id -u)" -ne 0 ]; then
    skip_part "not root: the bind-mount cases (they need mount --bind)"
elif kill9 mnt.vmdk; then
    mkdir keep && echo precious > keep/p.txt && mkdir .mnt.vmdk.vdkit-partial/m
    if mount --bind keep .mnt.vmdk.vdkit-partial/m 2> mount.err; then
        expect_exit 1 "cleanup --remove across a mount point" "$VDKIT" cleanup --remove .
        says "cleanup names the mount point" ".mnt.vmdk.vdkit-partial/m is a mount point"
        expect_exit 1 "convert over a staging directory holding a mount point" "$VDKIT" convert -f raw -O vmdk small.raw mnt.vmdk
        says "convert names the mount point" ".mnt.vmdk.vdkit-partial/m is a mount point"
        [ -f keep/p.txt ] && [ -f .mnt.vmdk.vdkit-partial/.vdkit-staging ] && ok \
            || bad "removing a staging directory went across a mount point (or left it half removed)"
        umount .mnt.vmdk.vdkit-partial/m
    else
        bad "mount --bind failed as root: $(cat mount.err)"
    fi
    rm -rf .mnt.vmdk.vdkit-partial keep
fi

# A staging directory whose marker is locked by a process other than the
# convert that made it (that one is dead): `cleanup --remove` removing it.
# A convert waits for it to go; if it does not, it says so (not "pid N is
# converting", N being dead).
locker() { # locker DIR SECONDS REMOVE: hold DIR's marker locked, then maybe remove DIR
    python3 - "$@" <<'PY' &
import fcntl, os, shutil, sys, time
d, secs, remove = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
f = open(os.path.join(d, ".vdkit-staging"), "r+")
fcntl.lockf(f, fcntl.LOCK_EX)
open("locked", "w").close()
time.sleep(secs)
if remove:
    shutil.rmtree(d)
PY
    lpid=$!
    for _ in $(seq 6000); do [ -e locked ] && break; sleep 0.01; done # up to 60 s
    rm -f locked
}
if kill9 race.vmdk; then
    dead=$(sed -n 's/^pid: //p' .race.vmdk.vdkit-partial/.vdkit-staging)
    locker .race.vmdk.vdkit-partial 60 0
    expect_exit 1 "convert while another process holds a dead convert's marker" "$VDKIT" convert -f raw -O vmdk small.raw race.vmdk
    says "names the cleanup" "a \`vdkit cleanup --remove\` may be removing it"
    if grep -qF "(pid $dead) is converting" out; then bad "blames the dead pid $dead"; else ok; fi
    kill "$lpid"
    wait "$lpid" 2> /dev/null
    locker .race.vmdk.vdkit-partial 0.3 1
    expect_exit 0 "convert waits for a cleanup removing the directory" "$VDKIT" convert -f raw -O vmdk small.raw race.vmdk
    wait "$lpid"
    "$VDKIT" compare -f raw small.raw race.vmdk > /dev/null && ok || bad "the convert after the cleanup did not write its target"
fi

finish
