#!/usr/bin/env bash
# The nbd transport against real servers (qemu-nbd and nbdkit on Unix
# sockets in the work directory, stopped at the end):
#  * VMDK and VDI images whose container bytes qemu-nbd exports (-f raw) read
#    through nbd+unix:// exactly as qemu-img reads the local file;
#  * writes land: convert -n into nbdkit memory and into qemu-nbd over a raw
#    file, checked with qemu-img compare; a read-only export and a new image
#    on NBD are refused with clear messages;
#  * block status: vdkit map of an export equals nbdinfo --map, and a sparse
#    convert reads only the data (nbdkit's log filter counts the bytes read);
#  * several connections with multi-conn, one without;
#  * a dead socket, a refused port, a silent server and a stalled reply all
#    fail quickly, naming the URL;
#  * reconnect_timeout: reads across a server restart succeed; acknowledged
#    writes not yet flushed when the server went make the flush fail; a
#    server that does not come back fails the call after the timeout;
#  * a VMDK descriptor's extent resolves against the image's URL (another
#    export of the same server), never a local file (strace).
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img qemu-io qemu-nbd nbdkit nbdinfo python3 strace
. "$VDKIT_SOURCE_DIR/tests/support/nbd_lib.sh"

"$VDKIT" plugins > plugins.txt 2>&1
says "vdkit plugins lists the nbd schemes" "schemes: nbd:// nbds:// nbd+unix:// nbds+unix://" plugins.txt
says "vdkit plugins lists the file scheme" "schemes: file://" plugins.txt

# ---- reads: every format's container bytes over NBD --------------------------
random_bytes 3M > rnd
make_images() {
    qemu-img create -q -f vmdk sparse.vmdk 64M
    qemu-io -f vmdk -c 'write -P 0x5a 1M 1M' -c 'write -s rnd 7M 3M' -c 'write -P 0xa5 63M 64k' sparse.vmdk > /dev/null
    qemu-img convert -O vmdk -o subformat=streamOptimized sparse.vmdk stream.vmdk
    qemu-img convert -O vdi sparse.vmdk dynamic.vdi
    qemu-img convert -O vdi -o static=on sparse.vmdk static.vdi
    qemu-img convert -O raw sparse.vmdk ref.raw
}
make_images || bad "making the images with qemu-img"

for img in sparse.vmdk stream.vmdk dynamic.vdi static.vdi; do
    fmt=${img##*.}
    name=${img%.*}
    serve_qemu "$name" "$img" -r || continue
    u=$(url "$name")
    expect_exit 0 "$img: info over NBD" "$VDKIT" info --output=json "$u"
    says "$img: probed as $fmt over NBD" "\"format\": \"$fmt\""
    says "$img: virtual size over NBD" "\"virtual-size\": 67108864"
    expect_exit 0 "$img: convert from NBD" "$VDKIT" convert -O raw "$u" "$name.raw"
    if cmp -s "$name.raw" ref.raw; then ok; else bad "$img: read over NBD differs from qemu-img's read of the file"; fi
    expect_exit 0 "$img: compare NBD with the local file" "$VDKIT" compare "$u" "$img"
    stop_server "$name"
done

# ---- writes -------------------------------------------------------------------
serve_nbdkit mem memory 64M || true
expect_exit 0 "convert -n -O raw into nbdkit memory" "$VDKIT" convert -n -O raw sparse.vmdk "$(url mem)"
expect_exit 0 "nbdkit memory holds what was written (qemu-img compare)" \
    qemu-img compare -f raw -F raw "$(url mem)" ref.raw
# Zeros over data: a second convert of another image writes zeros where
# the first wrote data (-n without --target-is-zero).
qemu-img create -q -f raw small.raw 64M
qemu-io -f raw -c 'write -P 0x77 2M 64k' small.raw > /dev/null
expect_exit 0 "convert -n over old data" "$VDKIT" convert -n -f raw -O raw small.raw "$(url mem)"
expect_exit 0 "old data is zeroed where the new image has none" qemu-img compare -f raw -F raw "$(url mem)" small.raw
stop_server mem

qemu-img create -q -f raw target.raw 64M
serve_qemu target target.raw || true
expect_exit 0 "convert -n -O raw into qemu-nbd over a raw file" "$VDKIT" convert -n -O raw sparse.vmdk "$(url target)"
stop_server target
expect_exit 0 "the raw file behind qemu-nbd holds the image (qemu-img compare)" \
    qemu-img compare -f raw -F raw target.raw ref.raw

serve_qemu ro target.raw -r || true
expect_exit 1 "writing to a read-only export" "$VDKIT" convert -n -O raw small.raw "$(url ro)"
says "a read-only export is refused by name" "exports it read-only"
says "... naming the URL" "$(url ro)"
expect_exit 1 "a new image on NBD" "$VDKIT" convert -O raw small.raw "$(url ro)"
says "a new image on NBD names the way that works" "convert -n"
expect_exit 1 "vdkit create on NBD" "$VDKIT" create -f raw "$(url ro)" 1M
says "vdkit create on NBD says why" "cannot be created anew"
says "vdkit create on NBD names the way that works" "convert -n"
stop_server ro
expect_exit 0 "the read-only export is unchanged" qemu-img compare -f raw -F raw target.raw ref.raw

# ---- block status ---------------------------------------------------------------
qemu-img create -q -f raw holes.raw 256M
qemu-io -f raw -c 'write -P 0x31 4M 1M' -c 'write -P 0x32 100M 64k' -c 'write -P 0x33 255M 1M' holes.raw > /dev/null
serve_qemu holes holes.raw -r || true
"$VDKIT" map --output=json "$(url holes)" > vdkit-map.json 2> map.err || bad "vdkit map over NBD: $(cat map.err)"
nbdinfo --map --json "$(url holes)" > nbdinfo-map.json || bad "nbdinfo --map"
# Data ranges (merged) from both: vdkit's "data": true, nbdinfo's type
# without the zero bit (2).
if same_data_map vdkit-map.json nbdinfo-map.json > map-compare.txt; then ok; else
    bad "vdkit map over NBD differs from nbdinfo --map"; cat map-compare.txt
fi
stop_server holes

# A sparse convert reads only what block status calls data: nbdkit's log
# filter records every read (with a 1 GiB export, 2 MiB of data).
qemu-img create -q -f raw big.raw 1G
qemu-io -f raw -c 'write -P 0x41 300M 1M' -c 'write -P 0x42 900M 1M' big.raw > /dev/null
serve_nbdkit big --filter=log file big.raw logfile="$work/big-requests.log" || true
start=$(date +%s)
expect_exit 0 "sparse convert from NBD" "$VDKIT" convert -f raw -O raw "$(url big)" big-copy.raw
end=$(date +%s)
stop_server big
expect_exit 0 "sparse convert result" cmp big.raw big-copy.raw
read_bytes=$(python3 -c '
import re, sys
print(sum(int(m.group(1), 16) for m in re.finditer(r"\bRead id=\d+ offset=0x[0-9a-f]+ count=(0x[0-9a-f]+)", open(sys.argv[1]).read())))
' big-requests.log)
if [ "$read_bytes" -gt 0 ] && [ "$read_bytes" -le $((4 << 20)) ]; then ok
else bad "a sparse convert of 2 MiB of data in 1 GiB read $read_bytes bytes from the server"; fi
[ $((end - start)) -le 20 ] && ok || bad "sparse convert took $((end - start)) s"
allocated=$(du -k big-copy.raw | cut -f1)
[ "$allocated" -le 8192 ] && ok || bad "the sparse copy allocates $allocated KiB"

# ---- connections: several with multi-conn, one without ---------------------------
serve_nbdkit multi --filter=log memory 64M logfile="$work/multi.log" || true
expect_exit 0 "convert -n into a multi-conn export" "$VDKIT" convert -m 4 -n -O raw sparse.vmdk "$(url multi)"
expect_exit 0 "multi-conn writes landed" qemu-img compare -f raw -F raw "$(url multi)" ref.raw
stop_server multi
conns=$(grep -c ' Connect export=' multi.log)
# One for the probe/exists checks at most, then up to 4 for the copy.
[ "$conns" -ge 3 ] && ok || bad "a multi-conn export got $conns connections (expected several)"
serve_nbdkit single --filter=log --filter=multi-conn memory 64M multi-conn-mode=disable logfile="$work/single.log" || true
expect_exit 0 "convert -n into an export without multi-conn" "$VDKIT" convert -m 4 -n -O raw sparse.vmdk "$(url single)"
expect_exit 0 "single-connection writes landed" qemu-img compare -f raw -F raw "$(url single)" ref.raw
stop_server single
per_open=$(python3 -c '
import re, sys
# connections of the convert target: those that wrote
log = open(sys.argv[1]).read()
print(len(set(re.findall(r"connection=(\d+) Write ", log))))' single.log)
[ "$per_open" -eq 1 ] && ok || bad "an export without multi-conn was written over $per_open connections"

# ---- dead, refused, silent and stalled servers --------------------------------------
cat > fast.yaml <<'EOF'
defaults:
  transport:
    nbd:
      connect_timeout: 2
      timeout: 2
EOF
gone="nbd+unix:///x?socket=$work/nothing-here.sock"
start=$(date +%s)
expect_exit 1 "a missing socket" "$VDKIT" info "$gone"
says "a missing socket names the URL" "$gone"
says "a missing socket says what failed" "cannot connect to the NBD server"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect_exit 1 "a closed TCP port" "$VDKIT" info "nbd://127.0.0.1:$port/x"
says "a closed TCP port names the URL" "nbd://127.0.0.1:$port/x"
says "a closed TCP port says connection refused" "refused"
[ $(($(date +%s) - start)) -le 8 ] && ok || bad "refused connections took $(($(date +%s) - start)) s"

# A server that accepts and says nothing.
rm -f "$work/silent.sock"
start_server silent python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
' "$work/silent.sock"
wait_for_socket "$work/silent.sock"
start=$(date +%s)
VDKIT_CONFIG=$work/fast.yaml expect_exit 1 "a silent server" "$VDKIT" info "nbd+unix:///x?socket=$work/silent.sock"
elapsed=$(($(date +%s) - start))
says "a silent server: the handshake times out, naming the URL" "nbd+unix:///x?socket=$work/silent.sock: no NBD handshake within 2 s"
[ "$elapsed" -le 8 ] && ok || bad "a silent server held vdkit for $elapsed s (connect_timeout 2)"
stop_server silent

# A server that stops answering requests: every read is delayed 30 s.
serve_nbdkit slow --filter=delay file holes.raw rdelay=30 || true
start=$(date +%s)
VDKIT_CONFIG=$work/fast.yaml expect_exit 1 "a stalled read" "$VDKIT" convert -f raw -O raw "$(url slow)" slow.raw
elapsed=$(($(date +%s) - start))
says "a stalled read names the URL and the timeout" "did not answer within 2 s"
[ "$elapsed" -le 10 ] && ok || bad "a stalled server held vdkit for $elapsed s (timeout 2)"
[ ! -e slow.raw ] && ok || bad "a failed convert left slow.raw"
stop_server slow

# A server killed while an image is read: the read fails naming the URL.
serve_nbdkit dying --filter=delay file holes.raw rdelay=3 || true
dying=$(server_pid dying)
( sleep 1; kill "$dying" ) &
killer=$!
start=$(date +%s)
expect_exit 1 "a server killed mid-read" "$VDKIT" convert -f raw -O raw "$(url dying)" dying.raw
elapsed=$(($(date +%s) - start))
says "a server killed mid-read: the error names the URL" "$(url dying)"
[ "$elapsed" -le 10 ] && ok || bad "a server killed mid-read held vdkit for $elapsed s"
wait "$killer"
stop_server dying

# ---- reconnect_timeout: a restarted server --------------------------------------
cat > reconnect.yaml <<'EOF'
defaults:
  transport:
    nbd:
      connect_timeout: 2
      timeout: 20
      reconnect_timeout: 15
EOF
# restart_after SECONDS NAME ARGS...: kill server NAME (SIGKILL: a crash)
# after SECONDS, start it again (same socket) a second later. (A server
# stopped with SIGTERM keeps its socket listening until its connections end,
# and vdkit's reconnect attempts are such connections.)
restart_after() {
    local after=$1 name=$2
    shift 2
    sleep "$after"
    kill -KILL "$(server_pid "$name")"
    stop_server "$name"
    sleep 1
    serve_nbdkit "$name" "$@" || true
}
# Reads in flight when the server goes are sent again once it is back.
serve_nbdkit rc --filter=delay file holes.raw rdelay=2 || true
VDKIT_CONFIG=$work/reconnect.yaml "$VDKIT" convert -f raw -O raw "$(url rc)" rc.raw > rc.out 2>&1 &
conv=$!
restart_after 1 rc --filter=delay file holes.raw rdelay=2
wait "$conv" && ok || bad "a read across a server restart failed with reconnect_timeout: $(cat rc.out)"
cmp -s rc.raw holes.raw && ok || bad "a read across a server restart gave other bytes than the export"
stop_server rc

# Writes: the server acknowledged writes that were not flushed when it went,
# so the convert's final flush must fail (a restarted server may have
# dropped them), naming why; never a silent success.
qemu-img create -q -f raw wtarget.raw 256M
serve_nbdkit wc --filter=delay file wtarget.raw wdelay=2 || true
VDKIT_CONFIG=$work/reconnect.yaml "$VDKIT" convert -n -f raw -O raw holes.raw "$(url wc)" > wc.out 2>&1 &
conv=$!
restart_after 3 wc --filter=delay file wtarget.raw wdelay=2
wait "$conv"
code=$?
[ "$code" = 1 ] && ok || bad "writes across a server restart: exit $code (want 1): $(cat wc.out)"
says "unflushed writes across a reconnect fail the flush, naming why" "may have dropped them" wc.out
says "... and the URL" "$(url wc)" wc.out
stop_server wc

# A server that does not come back: the call fails after reconnect_timeout,
# naming the URL and the key.
cat > giveup.yaml <<'EOF'
defaults:
  transport:
    nbd:
      connect_timeout: 2
      reconnect_timeout: 2
EOF
serve_nbdkit gone --filter=delay file holes.raw rdelay=2 || true
VDKIT_CONFIG=$work/giveup.yaml "$VDKIT" convert -f raw -O raw "$(url gone)" gone.raw > gone.out 2>&1 &
conv=$!
sleep 1
kill -KILL "$(server_pid gone)"
stop_server gone
start=$(date +%s)
wait "$conv"
code=$?
elapsed=$(($(date +%s) - start))
[ "$code" = 1 ] && ok || bad "a server that never comes back: exit $code (want 1)"
says "a server that never comes back: the error names the key" "could not be opened again within 2 s (transport key \`reconnect_timeout\`)" gone.out
says "... and the URL" "$(url gone)" gone.out
[ "$elapsed" -le 10 ] && ok || bad "a server that never came back held vdkit for $elapsed s (reconnect_timeout 2)"
[ ! -e gone.raw ] && ok || bad "a failed convert left gone.raw"

# ---- a VMDK whose descriptor names its extent --------------------------------------
mkdir remote elsewhere
qemu-img create -q -f vmdk -o subformat=monolithicFlat remote/flat.vmdk 8M
qemu-io -f vmdk -c 'write -P 0x6b 1M 2M' remote/flat.vmdk > /dev/null
qemu-img convert -O raw remote/flat.vmdk flat-ref.raw
# A local file under the extent's name, with other bytes, where a wrong
# resolution would find it (the current directory and the work directory).
head -c 8M /dev/zero | tr '\0' 'L' > elsewhere/flat-flat.vmdk
cp elsewhere/flat-flat.vmdk flat-flat.vmdk
serve_nbdkit dir file dir="$work/remote" || true
(
    cd elsewhere || exit 1
    traced -f -e trace=open,openat -o ../trace.txt "$VDKIT" convert -O raw "$(url dir flat.vmdk)" ../flat-copy.raw
) > out 2>&1 || bad "convert of a flat VMDK over NBD: $(cat out)"
cmp -s flat-copy.raw flat-ref.raw && ok || bad "the flat VMDK read over NBD differs from qemu-img's local read"
if grep 'flat-flat' trace.txt | grep -v ENOENT | grep -q .; then
    bad "a remote VMDK made vdkit open a local file:"; grep 'flat-flat' trace.txt
else ok; fi
# Descriptors naming extents outside the image's directory, or another
# socket, are refused.
for extent in '../flat-flat.vmdk' 'flat-flat.vmdk?socket=/tmp/other.sock'; do
    sed "s|\"flat-flat.vmdk\"|\"$extent\"|" remote/flat.vmdk > remote/evil.vmdk
    expect_exit 1 "extent '$extent' of a remote VMDK" "$VDKIT" info "$(url dir evil.vmdk)"
    says "extent '$extent' is refused by the path rule" "allow_unsafe_paths"
done
# An absolute name in an image at the export root lies in its directory
# (as it would locally): it is asked of the same server, never opened as a
# local file although one exists by that name.
sed "s|\"flat-flat.vmdk\"|\"$work/flat-flat.vmdk\"|" remote/flat.vmdk > remote/evil.vmdk
cp remote/flat-flat.vmdk "$work/flat-flat.vmdk"
traced -f -e trace=open,openat -o trace-abs.txt "$VDKIT" info "$(url dir evil.vmdk)" > out 2>&1
says "an absolute extent name is asked of the same server" "server has no export named '${work#/}/flat-flat.vmdk'"
if grep -F "$work/flat-flat.vmdk" trace-abs.txt | grep -q .; then bad "an absolute extent name opened a local file"; else ok; fi
stop_server dir

finish
