#!/usr/bin/env python3
"""An independent implementation, for the tests, of VirtualBox's disk
encryption as ../shared/reference/virtualbox-vd.md §4.3 and formats.md §6.3
document it: key store version 1 (packed little-endian 250 bytes, base64,
struct '<4sH32s32sI32sI32sI32sII64s'), PBKDF2-HMAC key derivation, the data
key wrapped with AES-XTS under a zero tweak, and AES-XTS-PLAIN64 sectors
(512 bytes, tweak = LE64(sector) || 0^8). Written from the documents with
python3-cryptography; it shares no code with vdkit's crypt plugin.

  vbox_keystore.py make PWFILE CIPHER KDF ITER OUT.b64   new store, random key
  vbox_keystore.py encrypt STORE.b64 PWFILE IN OUT [HOLES]  every sector (HOLES:
                                           "start:len,..." byte ranges left as zero bytes)
  vbox_keystore.py decrypt STORE.b64 PWFILE IN OUT     all-zero sectors stay zero
  vbox_keystore.py from-vmdk IMAGE.vmdk OUT.b64        the ddb.vdkit.crypt.keystore value
  vbox_keystore.py dump STORE.b64                      fields, for failure messages
"""
import base64, os, re, struct, sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

FMT = "<4sH32s32sI32sI32sI32sII64s"
assert struct.calcsize(FMT) == 250
HASHES = {"PBKDF2-SHA1": hashes.SHA1, "PBKDF2-SHA256": hashes.SHA256, "PBKDF2-SHA512": hashes.SHA512}
KEYLEN = {"AES-XTS128-PLAIN64": 32, "AES-XTS256-PLAIN64": 64}
SECTOR = 512


def password(path):
    with open(path, "rb") as f:
        return f.readline().rstrip(b"\r\n")


def pbkdf2(kdf, secret, salt, iterations, length):
    return PBKDF2HMAC(algorithm=HASHES[kdf](), length=length, salt=salt, iterations=iterations).derive(secret)


def xts(key, tweak, data, encrypt):
    c = Cipher(algorithms.AES(key), modes.XTS(tweak))
    op = c.encryptor() if encrypt else c.decryptor()
    return op.update(data) + op.finalize()


def cstr(b):
    return b.split(b"\0", 1)[0].decode()


def load(path):
    raw = base64.b64decode(open(path).read().strip())
    assert len(raw) == 250, f"key store is {len(raw)} bytes"
    (magic, version, cipher, kdf, cb_key, digest, cb_digest, digest_salt, digest_iter,
     dek_salt, dek_iter, cb_enc, enc) = struct.unpack(FMT, raw)
    assert magic == b"SCNE", magic  # 0x454E4353 little-endian
    assert version == 0x0100, hex(version)
    return dict(cipher=cstr(cipher), kdf=cstr(kdf), cb_key=cb_key, digest=digest[:cb_digest],
                digest_salt=digest_salt, digest_iter=digest_iter, dek_salt=dek_salt, dek_iter=dek_iter,
                enc=enc[:cb_enc])


def unwrap(ks, pw):
    kek = pbkdf2(ks["kdf"], pw, ks["dek_salt"], ks["dek_iter"], ks["cb_key"])
    dek = xts(kek, bytes(16), ks["enc"], False)
    check = pbkdf2(ks["kdf"], dek, ks["digest_salt"], ks["digest_iter"], len(ks["digest"]))
    if check != ks["digest"]:
        sys.exit("wrong password (digest mismatch)")
    return dek


def make(pwfile, cipher, kdf, iterations, out):
    n = KEYLEN[cipher]
    while True:
        dek = os.urandom(n)
        if dek[: n // 2] != dek[n // 2:]:
            break
    digest_salt, dek_salt = os.urandom(32), os.urandom(32)
    digest = pbkdf2(kdf, dek, digest_salt, 20000, 32)
    kek = pbkdf2(kdf, password(pwfile), dek_salt, iterations, n)
    enc = xts(kek, bytes(16), dek, True)
    raw = struct.pack(FMT, b"SCNE", 0x0100, cipher.encode(), kdf.encode(), n, digest, 32, digest_salt, 20000,
                      dek_salt, iterations, n, enc)
    with open(out, "w") as f:
        f.write(base64.b64encode(raw).decode() + "\n")


def tweak(sector):
    return struct.pack("<Q", sector) + bytes(8)


def transform(store, pwfile, src, dst, encrypt, holes=""):
    dek = unwrap(load(store), password(pwfile))
    skip = []
    for part in filter(None, holes.split(",")):
        a, n = part.split(":")
        skip.append((int(a), int(a) + int(n)))
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        sector = 0
        while True:
            block = fi.read(SECTOR)
            if not block:
                break
            assert len(block) == SECTOR, "not a whole number of sectors"
            off = sector * SECTOR
            if any(a <= off < b for a, b in skip) or (not encrypt and block == bytes(SECTOR)):
                fo.write(bytes(SECTOR) if encrypt else block)
            else:
                fo.write(xts(dek, tweak(sector), block, encrypt))
            sector += 1


def from_vmdk(image, out):
    head = open(image, "rb").read(1 << 20)
    m = re.search(rb'ddb\.vdkit\.crypt\.keystore\s*=\s*"([A-Za-z0-9+/=]+)"', head)
    if not m:
        sys.exit(f"{image}: no ddb.vdkit.crypt.keystore in the descriptor")
    with open(out, "w") as f:
        f.write(m.group(1).decode() + "\n")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(args[0], args[1], args[2], int(args[3]), args[4])
    elif cmd == "encrypt":
        transform(args[0], args[1], args[2], args[3], True, args[4] if len(args) > 4 else "")
    elif cmd == "decrypt":
        transform(args[0], args[1], args[2], args[3], False)
    elif cmd == "from-vmdk":
        from_vmdk(args[0], args[1])
    elif cmd == "dump":
        ks = load(args[0])
        print({k: (v.hex() if isinstance(v, bytes) else v) for k, v in ks.items() if k not in ("enc", "digest")})
    else:
        sys.exit("unknown command " + cmd)


main()
