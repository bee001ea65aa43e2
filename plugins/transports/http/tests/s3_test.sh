#!/usr/bin/env bash
# The s3 transport end to end against two stand-ins started on free loopback
# ports and stopped here:
#  * s3rver (npm, installed under build/test-tools by scripts/install-deps.sh):
#    a real S3 API (buckets, path-style URLs, ETags, S3's XML errors); the
#    images are uploaded with curl's own SigV4 signing, then `vdkit info` and
#    `vdkit convert -O raw` of s3://bucket/... (a monolithicSparse VMDK, a split
#    VMDK whose extents are other objects, a VDI, a key with a space and a
#    '+') equal qemu-img's conversion of the local files; credentials from
#    the config file or the AWS_* environment; an unknown access key and a
#    missing key fail by name; writes are refused. s3rver checks the access
#    key id but not SigV4 signatures, so:
#  * test_server.py --mode s3sig verifies each request's signature (its own
#    SigV4 code, from AWS's documentation): a wrong secret key gives
#    SignatureDoesNotMatch by name, the right one reads the same bytes.
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img python3 curl node
# scripts/install-deps.sh puts it under the checkout's build/test-tools (any preset's build may use it).
s3rver=$VDKIT_SOURCE_DIR/build/test-tools/node_modules/.bin/s3rver
[ -x "$s3rver" ] || s3rver=$VDKIT_BUILD_DIR/test-tools/node_modules/.bin/s3rver
[ -x "$s3rver" ] || skip "s3rver is not installed under $VDKIT_SOURCE_DIR/build/test-tools (scripts/install-deps.sh installs it with npm)"

tests_dir=$VDKIT_SOURCE_DIR/plugins/transports/http/tests
. "$VDKIT_SOURCE_DIR/tests/support/server_lib.sh"

# ---- images ----------------------------------------------------------------------------
mkdir img
python3 - <<'PY'
import random, os
rng = random.Random(int(os.environ["VDKIT_TEST_SEED"]))
buf = bytearray(5 << 20)
for _ in range(10):
    off = rng.randrange(0, len(buf) - 200000)
    n = rng.randrange(1, 200000)
    buf[off:off + n] = rng.randbytes(n)
open("data.raw", "wb").write(buf)
PY
qemu-img convert -f raw -O vmdk data.raw img/disk.vmdk
qemu-img convert -f raw -O vdi data.raw img/disk.vdi
"$VDKIT" convert -O vmdk -o subformat=twoGbMaxExtentSparse,split-size=1M data.raw img/split.vmdk > /dev/null ||
    bad "make the split vmdk"
cp img/disk.vdi "img/my disk+1.vdi"
for f in disk.vmdk split.vmdk disk.vdi "my disk+1.vdi"; do
    qemu-img convert -O raw "img/$f" "want-$f.raw" || bad "qemu-img convert $f"
done

# ---- s3rver ------------------------------------------------------------------------------
port=$(free_port)
mkdir s3data
start_server s3rver "$s3rver" -d "$work/s3data" -a 127.0.0.1 -p "$port" --silent --configure-bucket images
wait_port "$port" 15 || { cat s3rver.server.log; bad "s3rver did not start"; finish; }
endpoint=http://127.0.0.1:$port
# s3rver's built-in account: access key S3RVER, secret S3RVER.
for f in img/*; do
    key=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$(basename "$f")")
    curl -sS -f --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        -T "$f" "$endpoint/images/vms/$key" > /dev/null || bad "upload $f to s3rver"
done
cat > s3.yaml <<EOF
defaults:
  transport:
    s3:
      endpoint: $endpoint
      access_key: S3RVER
      secret_key: S3RVER
EOF
for f in disk.vmdk split.vmdk disk.vdi "my disk+1.vdi"; do
    expect_exit 0 "info s3://images/vms/$f" "$VDKIT" --config s3.yaml info "s3://images/vms/$f"
    says "info $f: names the location" "image: s3://images/vms/$f"
    says "info $f: its size" "($(stat -c %s data.raw) bytes)"
    expect_exit 0 "convert s3://images/vms/$f" "$VDKIT" --config s3.yaml convert -m 4 -O raw "s3://images/vms/$f" "got-$f.raw"
    cmp "want-$f.raw" "got-$f.raw" > /dev/null && ok || bad "$f from s3rver differs from qemu-img's conversion"
done
# Credentials from the environment when the configuration has none.
printf 'defaults:\n  transport:\n    s3:\n      endpoint: %s\n' "$endpoint" > nokeys.yaml
expect_exit 0 "credentials from AWS_*" env AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER \
    "$VDKIT" --config nokeys.yaml convert -O raw s3://images/vms/split.vmdk env.raw
cmp want-split.vmdk.raw env.raw > /dev/null && ok || bad "split.vmdk with AWS_* credentials differs"
# Wrong credentials and missing keys: clear errors naming the location.
sed 's/access_key: S3RVER/access_key: NOBODY/' s3.yaml > badkey.yaml
expect_exit 1 "an unknown access key" "$VDKIT" --config badkey.yaml info s3://images/vms/disk.vmdk
says "an unknown access key: says so" "s3://images/vms/disk.vmdk: opening it failed: HTTP 403 Forbidden (InvalidAccessKeyId"
grep -q "S3RVER\|NOBODY" out && bad "a secret key value appears in the error: $(cat out)" || ok
expect_exit 1 "a missing key" "$VDKIT" --config s3.yaml info s3://images/vms/nothing.vmdk
says "a missing key: 404 naming it" "s3://images/vms/nothing.vmdk: opening it failed: HTTP 404"
expect_exit 1 "a bad bucket name" "$VDKIT" --config s3.yaml info s3://X/disk.vmdk
says "a bad bucket name: says so" "'X' is not an S3 bucket name"
expect_exit 1 "create on s3" "$VDKIT" --config s3.yaml create -f raw s3://images/vms/new.img 1M
says "create on s3: read-only, naming it" "s3://images/vms/new.img: cannot create it: remote images (http, https, s3) are read-only"

# ---- signatures checked (test_server.py --mode s3sig) -----------------------------------
mkdir -p sig/images/vms && cp img/* sig/images/vms/
start_server sig python3 "$tests_dir/test_server.py" --root "$work/sig" --port-file port.sig --stats-file stats.sig \
    --mode s3sig --access-key AKIDVDKIT --secret-key 'wJalr/XUtn+FEMI' --region eu-west-3
wait_for_file port.sig || bad "test_server.py --mode s3sig did not start: $(cat sig.server.log)"
sig_endpoint=http://127.0.0.1:$(cat port.sig)
printf "defaults:\n  transport:\n    s3:\n      endpoint: %s\n      region: eu-west-3\n      access_key: AKIDVDKIT\n      secret_key: 'wJalr/XUtn+FEMI'\n" \
    "$sig_endpoint" > sig.yaml
for f in split.vmdk "my disk+1.vdi"; do
    expect_exit 0 "convert $f, signatures checked" "$VDKIT" --config sig.yaml convert -m 4 -O raw "s3://images/vms/$f" "sig-$f.raw"
    cmp "want-$f.raw" "sig-$f.raw" > /dev/null && ok || bad "$f, signatures checked, differs"
done
grep -q '"signature-ok"' stats.sig && ok || bad "the signing server saw no signed request ($(cat stats.sig))"
grep -q '"fault:' stats.sig && bad "a signature did not verify: $(cat stats.sig)" || ok
sed "s#secret_key: 'wJalr/XUtn+FEMI'#secret_key: wrong#" sig.yaml > wrongsig.yaml
expect_exit 1 "a wrong secret key" "$VDKIT" --config wrongsig.yaml info s3://images/vms/split.vmdk
says "a wrong secret key: SignatureDoesNotMatch, naming the location" \
    "s3://images/vms/split.vmdk: opening it failed: HTTP 403 Forbidden (SignatureDoesNotMatch"
grep -q "wrong\|wJalr" out && bad "a secret key value appears in the error: $(cat out)" || ok

finish
