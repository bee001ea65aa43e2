#!/usr/bin/env python3
"""Writes a dynamic VHD and a differencing child the way Hyper-V lays them
out (formats.md §3: creator 'win ', exact current_size (no CHS rounding),
BAT at 0x2000, locator data space in bytes, W2ku and W2ru UTF-16LE paths,
a MacX URL, parent time stamp 0, a Microsoft-order GUID), an independent
implementation of MS-VHD used as the oracle for vdkit's reader, plus the
raw content each should read as.

    make_hyperv_vhd.py DIR SEED BLOCK_SIZE

writes DIR/hv-base.vhd, DIR/hv-child.vhd, DIR/hv-base.raw (the base's
content) and DIR/hv-child.raw (the child's view: its sectors whose bitmap
bit is set, the base's elsewhere)."""
import os
import random
import struct
import sys
import uuid

out, seed, block = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
SECTOR = 512
size = 5 * 1024 * 1024 + 7 * SECTOR  # not a CHS size: readers must take current_size
sectors = size // SECTOR
entries = (size + block - 1) // block
bitmap_bytes = ((block // SECTOR // 8) + SECTOR - 1) // SECTOR * SECTOR
TABLE = 0x2000
ts = 0x2A000000


def checksum(b, at):
    return ~(sum(b[:at]) + sum(b[at + 4:])) & 0xFFFFFFFF


def chs(total):
    # MS-VHD appendix (formats.md §3.4); only recorded, Hyper-V ignores it.
    total = min(total, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max(4, (cth + 1023) // 1024)
        if cth >= heads * 1024 or heads > 16:
            spt, heads, cth = 31, 16, total // 31
        if cth >= heads * 1024:
            spt, heads, cth = 63, 16, total // 63
    return cth // heads, heads, spt


def footer(disk_type, uid):
    c, h, s = chs(sectors)
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">IIQI", f, 8, 2, 0x00010000, 512, ts)
    f[28:32] = b"win "
    struct.pack_into(">II", f, 32, 0x000A0000, 0x5769326B)
    struct.pack_into(">QQHBBI", f, 40, size, size, c, h, s, disk_type)
    f[68:84] = uid
    struct.pack_into(">I", f, 64, checksum(f, 64))
    return bytes(f)


def write_image(path, disk_type, uid, blocks, parent=None):
    """blocks: {index: (bitmap bytes, data bytes)}."""
    locators = []
    loc_data = b""
    data_start = TABLE + ((entries * 4 + 511) // 512) * 512
    if parent is not None:
        puid, w2ku, w2ru, macx = parent
        at = data_start
        for code, raw, space in ((b"W2ku", w2ku.encode("utf-16-le"), 4096),
                                 (b"W2ru", w2ru.encode("utf-16-le"), 65536 // 16),
                                 (b"MacX", macx.encode(), 512)):
            locators.append((code, space, len(raw), at))
            loc_data += raw + b"\0" * (space - len(raw))
            at += space
        data_start = at
    h = bytearray(1024)
    h[0:8] = b"cxsparse"
    struct.pack_into(">QQIII", h, 8, 0xFFFFFFFFFFFFFFFF, TABLE, 0x00010000, entries, block)
    if parent is not None:
        h[40:56] = puid
        struct.pack_into(">I", h, 56, 0)  # Windows writes 0 (formats.md §3.2)
        name = "C:\\vms\\hv-base.vhd".encode("utf-16-be")
        h[64:64 + len(name)] = name
        for i, (code, space, length, at) in enumerate(locators):
            struct.pack_into(">4sIIIQ", h, 576 + 24 * i, code, space, length, 0, at)
    struct.pack_into(">I", h, 36, checksum(h, 36))
    bat = [0xFFFFFFFF] * entries
    body = bytearray()
    pos = data_start
    for b in sorted(blocks):
        bm, data = blocks[b]
        bat[b] = pos // SECTOR
        body += bm + data
        pos += len(bm) + len(data)
    with open(path, "wb") as f:
        f.write(footer(disk_type, uid))
        f.write(h)
        f.write(b"\0" * (TABLE - 1536))
        f.write(struct.pack(">%dI" % entries, *bat) + b"\xff" * ((-entries * 4) % 512))
        f.write(loc_data)
        f.write(body)
        f.write(footer(disk_type, uid))


base_raw = bytearray(size)
base_blocks = {}
for b in range(entries):
    if rng.random() < 0.3:
        continue  # unallocated: zeros
    span = min(block, size - b * block)
    data = bytearray(block)
    for s in range(span // SECTOR):
        if rng.random() < 0.6:
            data[s * SECTOR:(s + 1) * SECTOR] = rng.randbytes(SECTOR)
    base_raw[b * block:b * block + span] = data[:span]
    base_blocks[b] = (b"\xff" * bitmap_bytes, bytes(data))
base_uid = uuid.UUID(int=rng.getrandbits(128)).bytes_le  # Microsoft GUID order (formats.md §3.5)
write_image(os.path.join(out, "hv-base.vhd"), 3, base_uid, base_blocks)

child_raw = bytearray(base_raw)
child_blocks = {}
for b in range(entries):
    if rng.random() < 0.4:
        continue  # unallocated: the parent's data
    span = min(block, size - b * block)
    bm = bytearray(bitmap_bytes)
    data = bytearray(block)
    for s in range(span // SECTOR):
        if rng.random() < 0.5:
            bm[s // 8] |= 0x80 >> (s % 8)  # MSB first (formats.md §3.3)
            sec = rng.randbytes(SECTOR)
            data[s * SECTOR:(s + 1) * SECTOR] = sec
            child_raw[b * block + s * SECTOR:b * block + (s + 1) * SECTOR] = sec
        elif rng.random() < 0.5:
            data[s * SECTOR:(s + 1) * SECTOR] = b"\xee" * SECTOR  # stale bytes a clear bit hides
    child_blocks[b] = (bytes(bm), bytes(data))
child_uid = uuid.UUID(int=rng.getrandbits(128)).bytes_le
write_image(os.path.join(out, "hv-child.vhd"), 4, child_uid, child_blocks,
            (base_uid, "C:\\vms\\hv-base.vhd", ".\\hv-base.vhd", "file://localhost/Volumes/vms/hv-base.vhd"))
open(os.path.join(out, "hv-base.raw"), "wb").write(base_raw)
open(os.path.join(out, "hv-child.raw"), "wb").write(child_raw)
