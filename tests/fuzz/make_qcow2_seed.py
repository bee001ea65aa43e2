#!/usr/bin/env python3
"""Write a small, valid qcow2 version 3 image (QEMU docs/interop/qcow2.txt)
for the qcow2 fuzz targets: make_qcow2_seed.py OUT

512-byte clusters, 64 KiB virtual: a feature name table and an unknown
header extension; guest cluster 0 data, 1 a zero cluster, 2 and 3
compressed (raw deflate, both packed into one host cluster), the rest
unallocated. Built at build time (tests/fuzz/CMakeLists.txt) and by
make_seeds.sh, so no binary is committed."""
import os
import struct
import sys
import zlib

CS = 512
SIZE = 64 << 10


def deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -12)
    return c.compress(data) + c.flush()


def main(out):
    img = bytearray(7 * CS)
    ext = struct.pack(">II", 0x6803F857, 48) + bytes([0, 0]) + b"dirty".ljust(46, b"\0")
    ext += struct.pack(">II", 0x12345678, 3) + b"abc" + b"\0" * 5  # unknown: ignored
    ext += struct.pack(">II", 0, 0)
    header = struct.pack(">4sIQIIQIIQQIIQQQQII", b"QFI\xfb", 3, 0, 0, 9, SIZE, 0, 2, 3 * CS, 1 * CS, 1, 0, 0,
                         0, 0, 0, 4, 112) + b"\0" * 8  # compression_type 0 (zlib) and padding
    img[0:len(header) + len(ext)] = header + ext
    struct.pack_into(">Q", img, 1 * CS, 2 * CS)                   # refcount table -> block
    for c in range(7):  # 16-bit refcounts; cluster 6 holds two compressed clusters
        struct.pack_into(">H", img, 2 * CS + 2 * c, 2 if c == 6 else 1)
    struct.pack_into(">Q", img, 3 * CS, (4 * CS) | (1 << 63))  # L1[0] -> L2
    struct.pack_into(">Q", img, 4 * CS, (5 * CS) | (1 << 63))  # data
    struct.pack_into(">Q", img, 4 * CS + 8, 1)                 # zero cluster
    img[5 * CS:6 * CS] = bytes((i * 7) & 0xFF for i in range(CS))
    pos = 6 * CS
    x = 62 - (9 - 8)
    for n, fill in ((2, b"\x5a"), (3, bytes(range(256)) * 2)):
        z = deflate(fill * (CS // len(fill)))
        sectors = ((pos + len(z) - 1) >> 9) - (pos >> 9)
        struct.pack_into(">Q", img, 4 * CS + 8 * n, (1 << 62) | (sectors << x) | pos)
        img[pos:pos + len(z)] = z
        pos += len(z)
    assert pos <= 7 * CS
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write(img)


if __name__ == "__main__":
    main(sys.argv[1])
