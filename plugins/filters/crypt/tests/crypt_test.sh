#!/usr/bin/env bash
# The crypt filter (disk-level AES-XTS) end to end through the CLI:
#  - raw, VDI and VMDK encrypted by convert --target-filter, read back equal
#    (compare, convert --source-filter); the stored sectors decrypted by an
#    independent python implementation (vbox_keystore.py, python3-cryptography)
#    from the key store vdkit wrote (sidecar, or the VMDK's ddb) equal the
#    plaintext, and are not the plaintext;
#  - disks encrypted by that implementation (VirtualBox's key store layout,
#    both ciphers, three KDF hashes) open in vdkit with keystore-file=;
#  - allocation status kept through the filter; wrong or missing password:
#    a clear error, nothing changed, no secret in any output;
#  - password change rewraps the key only.
# (The core's disk-level filter rules: tests/cli/disk_filter_test.sh.)
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
python3 -c 'import cryptography' 2> /dev/null || skip "python3-cryptography is not installed"
ks_py="$VDKIT_SOURCE_DIR/plugins/filters/crypt/tests/vbox_keystore.py"
PW='correct horse battery'
printf '%s\n' "$PW" > pw.txt
printf 'Correct horse battery\n' > wrong.txt
printf 'new staple\n' > pw2.txt
C="crypt:password-file=pw.txt,kdf-iterations=20000"
secret_free() { # secret_free FILE...: the password never appears in output
    if grep -qF -- "$PW" "$@"; then bad "the password appears in $*"; else ok; fi
}

# 8 MiB: random data at odd offsets, zero runs inside data, holes.
python3 - <<'PY'
import os, random
rng = random.Random(os.environ["VDKIT_TEST_SEED"])
with open("src.raw", "wb") as f:
    f.truncate(8 << 20)
    for off, n in [(0, 4096), (700, 3000), (1 << 20, 300000), (3 << 20 | 123, 5000), ((8 << 20) - 9000, 9000)]:
        f.seek(off); f.write(rng.randbytes(n))
    f.seek(5 << 20); f.write(rng.randbytes(4096) + bytes(8192) + rng.randbytes(4096))
PY

# 1. Encrypt into each format, read back, decrypt independently.
for fmt in raw vdi vmdk; do
    expect_exit 0 "$fmt: convert --target-filter crypt" "$VDKIT" convert -O "$fmt" --target-filter "$C" src.raw "enc.$fmt"
    secret_free out
    expect_exit 0 "$fmt: compare through crypt" "$VDKIT" compare --filter "$C" "enc.$fmt" src.raw
    expect_exit 0 "$fmt: convert --source-filter crypt" "$VDKIT" convert -O raw --source-filter "$C" "enc.$fmt" "dec_$fmt.raw"
    cmp -s src.raw "dec_$fmt.raw" && ok || bad "$fmt: decrypted copy differs from the source"
    expect_exit 0 "$fmt: info through crypt" "$VDKIT" info --filter "$C" "enc.$fmt"
    says "$fmt: info shows the disk-level stack" "disk filters: crypt"
    secret_free out
    expect_exit 0 "$fmt: info --output=json" "$VDKIT" info --output=json --filter "$C" "enc.$fmt"
    python3 -c 'import json,sys; d=json.load(open("out")); sys.exit(0 if d.get("disk-filters")==["crypt"] else 1)' && ok ||
        bad "$fmt: JSON info lacks disk-filters: $(cat out)"
    # The stored bytes, without the filter: ciphertext, not the plaintext.
    expect_exit 0 "$fmt: stored bytes" "$VDKIT" convert -O raw "enc.$fmt" "ct_$fmt.raw"
    python3 - "ct_$fmt.raw" <<'PY' && ok || bad "$fmt: plaintext sectors are stored in clear"
import sys
src, ct = open("src.raw", "rb").read(), open(sys.argv[1], "rb").read()
sys.exit(0 if src[:4096] != ct[:4096] and src[1 << 20:(1 << 20) + 4096] != ct[1 << 20:(1 << 20) + 4096] else 1)
PY
    if [ "$fmt" = vmdk ]; then
        python3 "$ks_py" from-vmdk enc.vmdk "ks_$fmt.b64" && ok || bad "vmdk: no key store in the ddb"
        [ ! -e enc.vmdk.keystore ] && ok || bad "vmdk: a sidecar was written although the ddb holds the store"
    else
        cp "enc.$fmt.keystore" "ks_$fmt.b64" && ok || bad "$fmt: no sidecar key store enc.$fmt.keystore"
    fi
    head -c 8 "ks_$fmt.b64" | grep -q '^U0NORQAB' && ok || bad "$fmt: the key store is not an ENCS v1 blob"
    if python3 "$ks_py" decrypt "ks_$fmt.b64" pw.txt "ct_$fmt.raw" "py_$fmt.raw" > py.log 2>&1 && cmp -s src.raw "py_$fmt.raw"; then
        ok
    else
        bad "$fmt: python's decryption of vdkit's sectors differs from the plaintext: $(cat py.log)"
    fi
done
# A VMDK stream being written has a fixed descriptor: its store goes into
# the sidecar, and opening finds it there.
expect_exit 0 "streamOptimized VMDK through crypt" "$VDKIT" convert -O vmdk -o subformat=streamOptimized --target-filter "$C" src.raw so.vmdk
[ -s so.vmdk.keystore ] && ok || bad "streamOptimized: no sidecar key store"
expect_exit 0 "streamOptimized compares equal" "$VDKIT" compare --filter "$C" so.vmdk src.raw
# A new disk's key store follows the cipher option: AES-XTS128 on request.
expect_exit 0 "convert with cipher=aes-xts-128" "$VDKIT" convert -O vdi --target-filter "$C,cipher=aes-xts-128" src.raw e128.vdi
python3 "$ks_py" dump e128.vdi.keystore > out 2>&1; says "aes-xts-128 store names its cipher" "AES-XTS128-PLAIN64"
expect_exit 0 "aes-xts-128 compares equal" "$VDKIT" compare --filter "$C" e128.vdi src.raw

# 2. Allocation through the filter is the chain's: the map with and without
#    crypt agree, and the holes are still holes.
"$VDKIT" map --output=json enc.vdi > plain.map 2>&1 || bad "map enc.vdi"
"$VDKIT" map --output=json --filter "$C" enc.vdi > filtered.map 2>&1 || bad "map --filter crypt enc.vdi"
cmp -s plain.map filtered.map && ok || bad "map through crypt differs from the chain's"
python3 - <<'PY' && ok || bad "the encrypted VDI lost its holes: $(head -c 400 plain.map)"
import json, sys
m = json.load(open("plain.map"))
sys.exit(0 if any(not e.get("data", True) for e in m) else 1)
PY

# 3. Key stores made by the independent implementation (VirtualBox's layout):
#    every cipher and KDF VirtualBox reads; sectors encrypted by python.
for combo in "AES-XTS256-PLAIN64 PBKDF2-SHA256" "AES-XTS128-PLAIN64 PBKDF2-SHA1" "AES-XTS256-PLAIN64 PBKDF2-SHA512"; do
    set -- $combo
    python3 "$ks_py" make pw.txt "$1" "$2" 20000 vb.b64 || bad "python make $combo"
    python3 "$ks_py" encrypt vb.b64 pw.txt src.raw vb.raw "$((2 << 20)):$((1 << 20))" || bad "python encrypt $combo"
    expect_exit 0 "$combo: vdkit reads python's disk" "$VDKIT" compare -f raw \
        --filter crypt:password-file=pw.txt,keystore-file=vb.b64 vb.raw src.raw
    expect_exit 2 "$combo: wrong password refused" "$VDKIT" compare -f raw \
        --filter crypt:password-file=wrong.txt,keystore-file=vb.b64 vb.raw src.raw
    says "$combo: wrong password named" "password is wrong"
done
# A damaged store: the field and its offset are named.
python3 - <<'PY'
import base64
raw = bytearray(base64.b64decode(open("vb.b64").read()))
raw[70] = 33
open("bad.b64", "w").write(base64.b64encode(bytes(raw)).decode())
PY
expect_exit 2 "damaged key store refused" "$VDKIT" compare -f raw --filter crypt:password-file=pw.txt,keystore-file=bad.b64 vb.raw src.raw
says "damaged key store: field named" "offset 70"

# 4. Wrong or missing password: clear error, nothing changed (compare
#    exits 2 on errors, as qemu-img compare; convert 1).
sums() { md5sum enc.vdi enc.vdi.keystore enc.vmdk; }
sums > before.sum
expect_exit 2 "wrong password" "$VDKIT" compare --filter crypt:password-file=wrong.txt enc.vdi src.raw
says "wrong password named" "password is wrong"
secret_free out
expect_exit 2 "no password" "$VDKIT" compare --filter crypt enc.vdi src.raw
says "no password: how to give one" "password-file=PATH"
expect_exit 2 "password option is no clear-text argument" "$VDKIT" compare --filter "crypt:password=$PW" enc.vdi src.raw
says "no password= option" "unknown option 'password'"
secret_free out
expect_exit 1 "wrong password on a write" "$VDKIT" convert -n -O vdi --target-filter crypt:password-file=wrong.txt src.raw enc.vdi
says "write refused on a wrong password" "password is wrong"
sums > after.sum
cmp -s before.sum after.sum && ok || bad "a refused password changed a file"
expect_exit 0 "password from an environment variable" env VDKIT_PW="$PW" "$VDKIT" compare --filter crypt:password-env=VDKIT_PW enc.vdi src.raw
expect_exit 0 "password from standard input" sh -c "printf '%s\n' '$PW' | '$VDKIT' compare --filter crypt:password-file=- enc.vmdk src.raw"

# 5. Writing into an encrypted disk in place (convert -n) through crypt.
python3 -c 'import os,random; r=random.Random(os.environ["VDKIT_TEST_SEED"]+"b"); open("src2.raw","wb").write(r.randbytes(8<<20))'
expect_exit 0 "convert -n into the encrypted VMDK" "$VDKIT" convert -n -O vmdk --target-filter "$C" src2.raw enc.vmdk
expect_exit 0 "the rewritten VMDK reads the new data" "$VDKIT" compare --filter "$C" enc.vmdk src2.raw

# 6. Password change: the key store changes, the data key does not (the
#    stored sectors stay the same ciphertext).
expect_exit 0 "change the password" "$VDKIT" resize --filter "$C,new-password-file=pw2.txt" enc.vdi 8M
secret_free out
expect_exit 2 "the old password no longer opens it" "$VDKIT" compare --filter "$C" enc.vdi src.raw
says "old password: wrong" "password is wrong"
expect_exit 0 "the new password opens it" "$VDKIT" compare --filter crypt:password-file=pw2.txt enc.vdi src.raw
expect_exit 0 "stored bytes after the change" "$VDKIT" convert -O raw enc.vdi ct_after.raw
cmp -s ct_vdi.raw ct_after.raw && ok || bad "changing the password rewrote the data"
if python3 "$ks_py" decrypt enc.vdi.keystore pw2.txt ct_after.raw py_after.raw > py.log 2>&1 && cmp -s src.raw py_after.raw; then
    ok
else
    bad "python cannot decrypt with the new password's store: $(cat py.log)"
fi

# 7. Batch jobs: filters (target) and source_filters take crypt; the
#    batch's own verification reads the new image back through it.
cat > jobs.yaml <<YAML
version: 1
jobs:
  - {source: src.raw, target: b_enc.vmdk, format: vmdk, filters: ["$C"]}
  - {source: b_enc.vmdk, source_filters: ["$C"], target: b_plain.raw, format: raw}
YAML
expect_exit 0 "batch with crypt filters" "$VDKIT" batch jobs.yaml
secret_free out
cmp -s src.raw b_plain.raw && ok || bad "batch: encrypted then decrypted copy differs"
expect_exit 0 "batch's encrypted target opens" "$VDKIT" compare --filter "$C" b_enc.vmdk src.raw
expect_exit 1 "new-password at creation is refused" "$VDKIT" convert -O vdi --target-filter "$C,new-password-file=pw2.txt" src.raw np.vdi
says "new-password at creation: why" "change an existing disk's password"

# A stale sidecar is never replaced: the new image is refused and removed.
echo stale > stale.vdi.keystore
expect_exit 1 "a stale sidecar key store" "$VDKIT" create -f vdi --filter "$C" stale.vdi 1M
says "stale sidecar named" "'stale.vdi.keystore' next to the base image already exists"
[ ! -e stale.vdi ] && [ "$(cat stale.vdi.keystore)" = stale ] && ok || bad "a refused create left stale.vdi or changed the sidecar"

expect_exit 0 "vdkit plugins" "$VDKIT" plugins
says "plugins lists crypt" "crypt"
says "plugins lists the disk-filter capability" "disk-filter"
says "plugins lists crypt's keys" "password-file"
finish
