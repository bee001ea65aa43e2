#!/usr/bin/env bash
# The http transport end to end: nginx (run unprivileged on a free loopback
# port, its configuration, pid and logs under this suite's directory) serves
# a monolithicSparse VMDK, a split twoGbMaxExtentSparse VMDK and a
# monolithicFlat VMDK (extents named relatively), a VDI and a raw image;
# `vdkit info` and `vdkit convert -O raw` from http:// must equal qemu-img's
# reading of the local files, while same-named local files with other bytes
# beside vdkit are never read. test_server.py stands in for bad servers:
# flaky (503/429/500, dropped connections, cut bodies, short ranges: retries
# hide it and the bytes are right), one that ignores Range (refused by name),
# one that answers HEAD badly (the GET size probe). A dead port and a server
# that never answers fail quickly naming the URL; writes are refused.
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
PATH=$PATH:/usr/sbin
require_tools nginx qemu-img qemu-io python3 strace openssl

tests_dir=$VDKIT_SOURCE_DIR/plugins/transports/http/tests
. "$VDKIT_SOURCE_DIR/tests/support/server_lib.sh"

# in_local CMD...: CMD run from local/ (same-named decoys beside it).
in_local() { (cd local && exec "$@"); }

# ---- images, and what qemu-img reads from them ----------------------------------
mkdir www
python3 - <<'PY'
import random, os
rng = random.Random(int(os.environ["VDKIT_TEST_SEED"]))
size = 6 << 20
buf = bytearray(size)
for _ in range(12):  # data islands between holes, some unaligned
    off = rng.randrange(0, size - 300000)
    n = rng.randrange(1, 300000)
    buf[off:off + n] = rng.randbytes(n)
open("data.raw", "wb").write(buf)
PY
cp data.raw www/disk.raw
qemu-img convert -f raw -O vmdk data.raw www/disk.vmdk
qemu-img convert -f raw -O vmdk -o subformat=monolithicFlat data.raw www/flat.vmdk
qemu-img convert -f raw -O vdi data.raw www/disk.vdi
"$VDKIT" convert -O vmdk -o subformat=twoGbMaxExtentSparse,split-size=1M data.raw www/split.vmdk > /dev/null ||
    bad "make the split vmdk"
[ "$(grep -c '^RW .*"split-s00[0-9]*\.vmdk"' www/split.vmdk)" -ge 3 ] && ok || bad "split.vmdk has 3+ relative extents"
# Differencing VMDKs over the split one, beside it and one directory down
# (its parent named ../split.vmdk: the parent zone of the path rule).
mkdir www/snap
(cd www && qemu-img create -q -f vmdk -b split.vmdk -F vmdk child.vmdk &&
    cd snap && qemu-img create -q -f vmdk -b ../split.vmdk -F vmdk child.vmdk) || bad "qemu-img create children"
qemu-io -c "write -P 0x5a 1M 200k" -c "write -P 0xa5 3000k 64k" www/child.vmdk > /dev/null || bad "qemu-io child"
qemu-io -c "write -P 0x3c 100k 300k" www/snap/child.vmdk > /dev/null || bad "qemu-io snap/child"
grep -q '"flat-flat.vmdk"' www/flat.vmdk && ok || bad "flat.vmdk names its extent relatively"

# Beside vdkit (its working directory): files under the extents' names
# holding other bytes. Reading any of them would change the result.
mkdir local && cd local || exit 1
for f in ../www/split-s*.vmdk ../www/flat-flat.vmdk; do head -c "$(stat -c %s "$f")" /dev/zero | tr '\0' 'L' > "$(basename "$f")"; done
cd .. || exit 1

# ---- nginx ---------------------------------------------------------------------------
# Started as root, nginx's workers drop to nobody: they must reach www/.
chmod 755 "$work" && chmod -R a+rX www
port=$(free_port)
tls_port=$(free_port)
mkdir -p nginx/tmp
echo 'vdkit:{PLAIN}open-sesame' > nginx/htpasswd
openssl req -x509 -newkey rsa:2048 -nodes -keyout nginx/key.pem -out nginx/cert.pem -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 2> /dev/null || bad "make a TLS certificate"
cat > nginx/nginx.conf <<EOF
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 128; }
http {
  access_log $work/nginx/access.log;
  client_body_temp_path $work/nginx/tmp; proxy_temp_path $work/nginx/tmp; fastcgi_temp_path $work/nginx/tmp;
  uwsgi_temp_path $work/nginx/tmp; scgi_temp_path $work/nginx/tmp;
  types { }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$port;
    root $work/www;
    location /moved/ { rewrite ^/moved/(.*)\$ /\$1 redirect; }
    location /private/ { auth_basic vdkit; auth_basic_user_file $work/nginx/htpasswd; alias $work/www/; }
    location /token/ { if (\$http_x_vdkit_token != "s3cret") { return 403; } alias $work/www/; }
  }
  server {
    listen 127.0.0.1:$tls_port ssl;
    ssl_certificate $work/nginx/cert.pem;
    ssl_certificate_key $work/nginx/key.pem;
    root $work/www;
  }
}
EOF
start_server nginx nginx -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" -p "$work/nginx"
wait_port "$port" || { cat nginx.server.log nginx/error.log; bad "nginx did not start"; finish; }
url=http://127.0.0.1:$port

for img in disk.vmdk split.vmdk flat.vmdk disk.vdi disk.raw child.vmdk snap/child.vmdk; do
    qemu-img convert -O raw "www/$img" "want-${img//\//-}.raw" || bad "qemu-img convert $img"
    want_size=$(qemu-img info --output=json "www/$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
    expect_exit 0 "info $url/$img" in_local "$VDKIT" info "$url/$img"
    says "info $img: its size" "($want_size bytes)"
    says "info $img: names the URL" "image: $url/$img"
    expect_exit 0 "convert $url/$img" in_local "$VDKIT" convert -m 4 -O raw "$url/$img" "../got-${img//\//-}.raw"
    cmp "want-${img//\//-}.raw" "got-${img//\//-}.raw" > /dev/null && ok || bad "$img over http differs from qemu-img's conversion"
done
# Every data request was a range answered 206 (nginx's log: status is field 9).
awk '$6 == "\"GET" && $9 != 206 { bad = 1 } END { exit bad }' nginx/access.log && ok ||
    bad "a GET was not answered 206: $(awk '$6 == "\"GET" && $9 != 206' nginx/access.log | head -3)"
# A redirect is followed.
expect_exit 0 "convert through a redirect" in_local "$VDKIT" convert -O raw "$url/moved/split.vmdk" ../redirected.raw
cmp want-split.vmdk.raw redirected.raw > /dev/null && ok || bad "split.vmdk through a redirect differs"

# Credentials and headers from the configuration (secret keys: never printed).
expect_exit 1 "basic auth missing" "$VDKIT" info "$url/private/split.vmdk"
says "basic auth missing: 401 naming the URL" "$url/private/split.vmdk: opening it failed: HTTP 401"
printf 'defaults:\n  transport:\n    http:\n      user: vdkit\n      password: open-sesame\n' > auth.yaml
expect_exit 0 "basic auth" "$VDKIT" --config auth.yaml convert -O raw "$url/private/split.vmdk" auth.raw
cmp want-split.vmdk.raw auth.raw > /dev/null && ok || bad "split.vmdk with basic auth differs"
printf 'defaults:\n  transport:\n    http:\n      user: vdkit\n      password: not-it\n' > badauth.yaml
expect_exit 1 "a wrong password" "$VDKIT" --config badauth.yaml info "$url/private/split.vmdk"
says "a wrong password: 401" "HTTP 401"
grep -q "not-it" out && bad "the password appears in the error" || ok
expect_exit 1 "a header missing" "$VDKIT" info "$url/token/split.vmdk"
says "a header missing: 403 naming the URL" "$url/token/split.vmdk: opening it failed: HTTP 403"
printf 'defaults:\n  transport:\n    http:\n      headers: |\n        X-Other: 1\n        X-Vdkit-Token: s3cret\n' > token.yaml
expect_exit 0 "headers" "$VDKIT" --config token.yaml convert -O raw "$url/token/split.vmdk" token.raw
cmp want-split.vmdk.raw token.raw > /dev/null && ok || bad "split.vmdk with a header differs"

# https: the server's certificate verified against ca_file, or refused.
turl=https://127.0.0.1:$tls_port
expect_exit 1 "https, unknown CA" "$VDKIT" info "$turl/split.vmdk"
says "https, unknown CA: names the URL" "$turl/split.vmdk: opening it failed"
says "https, unknown CA: the certificate" "certificate"
printf 'defaults:\n  transport:\n    https:\n      ca_file: %s\n' "$work/nginx/cert.pem" > tls.yaml
expect_exit 0 "https with ca_file" "$VDKIT" --config tls.yaml convert -m 4 -O raw "$turl/split.vmdk" tls.raw
cmp want-split.vmdk.raw tls.raw > /dev/null && ok || bad "split.vmdk over https differs"

# Nothing local is opened for a remote image: no file of the images' names.
cd local || exit 1
traced -f -qq -e trace=open,openat,stat,newfstatat,statx -o ../trace "$VDKIT" info "$url/split.vmdk" > /dev/null 2>&1 ||
    bad "strace'd info of split.vmdk"
cd .. || exit 1
if grep -E '"[^"]*(split|flat)[^"]*\.vmdk"' trace | grep -v ENOENT > trace.hits; [ -s trace.hits ]; then
    bad "info of a remote image touched local files: $(head -3 trace.hits)"
else ok; fi

# Extents outside the image's URL directory are refused, not fetched (each
# names a file the server has: only the path rule stops it).
sed 's#"flat-flat.vmdk"#"../flat-flat.vmdk"#' www/flat.vmdk > www/snap/escape.vmdk
expect_exit 1 "an extent named ../ over http" "$VDKIT" info "$url/snap/escape.vmdk"
says "an extent named ../: refused by the path rule" "as its file, which lies outside the image's directory ($url/snap)"
sed 's#"flat-flat.vmdk"#"/flat-flat.vmdk"#' www/flat.vmdk > www/snap/absolute.vmdk
expect_exit 1 "an absolute extent over http" "$VDKIT" info "$url/snap/absolute.vmdk"
says "an absolute extent: refused by the path rule" "refers to '/flat-flat.vmdk' ($url/flat-flat.vmdk) as its file, which lies outside"
sed 's#"flat-flat.vmdk"#"../flat-flat.vmdk"#' www/flat.vmdk > www/escape.vmdk
expect_exit 1 "an extent climbing above the server's root" "$VDKIT" info "$url/escape.vmdk"
says "an extent above the root: refused by the path rule" "as its file, which lies outside the image's directory"
chmod -R a+rX www

# ---- errors --------------------------------------------------------------------------
expect_exit 1 "a missing file" "$VDKIT" info "$url/missing.vmdk"
says "a missing file: 404 and the URL" "$url/missing.vmdk: opening it failed: HTTP 404"
# Read-only: every way of writing is refused by name.
expect_exit 1 "create over http" "$VDKIT" create -f raw "$url/new.img" 1M
says "create over http: read-only, naming the URL" "$url/new.img: cannot create it: remote images (http, https, s3) are read-only"
expect_exit 1 "resize over http" "$VDKIT" resize "$url/disk.vdi" +1M
says "resize over http: read-only" "$url/disk.vdi: cannot open it for writing: remote images"
expect_exit 1 "discard over http" "$VDKIT" discard "$url/disk.vmdk" 0:65536
says "discard over http: read-only" "read-only"
expect_exit 1 "convert into http" "$VDKIT" convert -O raw data.raw "$url/target.raw"
says "convert into http: refused naming the URL" "$url/target.raw is a URL: convert builds a new image in a local staging directory"
[ ! -e www/target.raw ] && ok || bad "convert into http wrote something"
cmp data.raw www/disk.raw > /dev/null && ok || bad "the served raw image changed"

# A dead port: an error naming the URL, within the retries' back-off.
dead=$(free_port)
start=$(date +%s)
expect_exit 1 "a dead server" timeout 60 "$VDKIT" info "http://127.0.0.1:$dead/disk.vmdk"
says "a dead server: names the URL" "http://127.0.0.1:$dead/disk.vmdk: opening it failed after 6 attempts"
says "a dead server: says why" "Couldn't connect"
[ $(($(date +%s) - start)) -le 15 ] && ok || bad "a dead server took $(($(date +%s) - start)) s to fail"

# A server that accepts connections and never answers: the configured timeout.
stall=$(free_port)
start_server stall python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); time.sleep(600)' "$stall"
wait_port "$stall"
printf 'defaults:\n  transport:\n    http:\n      timeout: 1\n      retries: 1\n      retry_delay: 10\n' > stall.yaml
start=$(date +%s)
expect_exit 1 "a silent server" timeout 60 "$VDKIT" --config stall.yaml info "http://127.0.0.1:$stall/disk.vmdk"
says "a silent server: names the URL and the timeout" "http://127.0.0.1:$stall/disk.vmdk: opening it failed after 2 attempts"
says "a silent server: timed out" "timed out"
[ $(($(date +%s) - start)) -le 10 ] && ok || bad "a silent server took $(($(date +%s) - start)) s with timeout 1, retries 1"

# ---- bad servers (test_server.py) ----------------------------------------------------
# serve_test_server MODE [ARGS...]: test_server.py in MODE; sets $burl and $stats.
serve_test_server() {
    local mode=$1
    shift
    rm -f "port.$mode"
    stats=$work/stats.$mode
    start_server "test-$mode" python3 "$tests_dir/test_server.py" --root "$work/www" --port-file "port.$mode" \
        --stats-file "$stats" --mode "$mode" --seed "$VDKIT_TEST_SEED" "$@"
    wait_for_file "port.$mode" || bad "test_server.py --mode $mode did not start: $(cat "test-$mode.server.log")"
    burl=http://127.0.0.1:$(cat "port.$mode")
}
faults() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(v for k,v in d.items() if k.startswith("fault:")))' "$stats"; }

# Flaky: every kind of transient failure, at a 30 % rate; retries hide them.
serve_test_server flaky --fail-rate 0.3
printf 'defaults:\n  transport:\n    http:\n      retries: 12\n      retry_delay: 1\n' > flaky.yaml
for img in disk.vmdk split.vmdk disk.vdi; do
    expect_exit 0 "convert $img from a flaky server" in_local "$VDKIT" --config ../flaky.yaml convert -m 4 -O raw "$burl/$img" "../flaky-$img.raw"
    cmp "want-$img.raw" "flaky-$img.raw" > /dev/null && ok || bad "$img from a flaky server differs"
done
n=$(faults)
[ "$n" -ge 10 ] && ok || bad "the flaky server injected only $n faults ($(cat "$stats"))"
for kind in 503 close cut short-range; do
    grep -q "\"fault:$kind\"" "$stats" && ok || bad "the flaky server never injected $kind ($(cat "$stats"))"
done
# Without retries the same server fails, by name (so the retries are what hides it).
printf 'defaults:\n  transport:\n    http:\n      retries: 0\n' > noretry.yaml
expect_exit 1 "a flaky server without retries" in_local "$VDKIT" --config ../noretry.yaml convert -O raw "$burl/split.vmdk" ../noretry.raw
says "a flaky server without retries: names the URL" "$burl/"
[ ! -e noretry.raw ] && ok || bad "a failed convert left its target"

# A server that ignores Range: refused, never wrong bytes.
serve_test_server norange
expect_exit 1 "a server ignoring Range" "$VDKIT" convert -O raw "$burl/disk.vmdk" norange.raw
says "a server ignoring Range: says so" "$burl/disk.vmdk: the server ignores range requests"
[ ! -e norange.raw ] && ok || bad "a refused convert left its target"
grep -q '"fault:ignored-range"' "$stats" && ok || bad "the norange server was never asked for a range"

# HEAD answered 405, or without Content-Length: the size comes from GET bytes=0-0.
for mode in badhead nolength; do
    serve_test_server "$mode"
    expect_exit 0 "convert from a $mode server" in_local "$VDKIT" convert -O raw "$burl/split.vmdk" "../$mode.raw"
    cmp want-split.vmdk.raw "$mode.raw" > /dev/null && ok || bad "split.vmdk from a $mode server differs"
    [ "$(faults)" -ge 1 ] && ok || bad "the $mode server was never asked HEAD"
done

# Parallel requests: a server holding each GET shows how many are in flight.
for conns in 4 1; do
    serve_test_server slow --delay 0.05
    printf 'defaults:\n  transport:\n    http:\n      connections: %s\n' "$conns" > conns.yaml
    expect_exit 0 "convert with $conns connections" "$VDKIT" --config conns.yaml convert -m 4 -O raw "$burl/disk.vdi" "conns$conns.raw"
    cmp want-disk.vdi.raw "conns$conns.raw" > /dev/null && ok || bad "disk.vdi with $conns connections differs"
    max=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max-inflight"])' "$stats")
    if [ "$conns" = 1 ]; then
        [ "$max" = 1 ] && ok || bad "connections=1 had $max requests in flight"
    else
        [ "$max" -ge 3 ] && ok || bad "connections=4 with 4 workers had at most $max requests in flight"
    fi
done

finish
