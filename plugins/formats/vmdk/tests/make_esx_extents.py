#!/usr/bin/env python3
"""Write ESX sparse extents for the tests, following the layouts in
VDF50 "ESX Server Sparse Extent Header" (COWD) and qemu block/vmdk.c's
vmdk_open_se_sparse (seSparse, undocumented by VMware), and the raw
bytes a reader must see (over a parent given as a raw file, or zeros).

  make_esx_extents.py cowd OUT CAPACITY_SECTORS GRAIN_SECTORS PARENT_RAW EXPECTED_RAW [SEED]
  make_esx_extents.py sesparse OUT CAPACITY_SECTORS PARENT_RAW EXPECTED_RAW [SEED]

PARENT_RAW may be "-" (no parent: unallocated reads zero). The extent gets
random grains of random bytes; seSparse also gets zero and unmapped grains
written over parent data, and directory entries left empty.
"""
import os
import random
import struct
import sys


def parent_bytes(path, size):
    if path == "-":
        return bytearray(size)
    data = bytearray(open(path, "rb").read()[:size])
    return data + bytearray(size - len(data))


def cowd(out, capacity, grain, parent, expected, seed):
    rng = random.Random(seed)
    size = capacity * 512
    model = parent_bytes(parent, size)
    per_table = 4096 * grain
    gd_entries = (capacity + per_table - 1) // per_table
    gd_sectors = (gd_entries * 4 + 511) // 512
    # Choose grains: leave some tables absent entirely.
    grains = capacity // grain
    chosen = sorted(rng.sample(range(grains), min(grains, 200)))
    chosen = [g for g in chosen if (g // 4096) % 3 != 1]  # every third table stays absent
    tables = sorted({g // 4096 for g in chosen})
    next_sector = 4 + gd_sectors
    table_at = {}
    for t in tables:
        table_at[t] = next_sector
        next_sector += 32  # 4096 entries * 4 bytes
    body = {}
    gts = {t: [0] * 4096 for t in tables}
    rng.shuffle(chosen)  # grains stored out of order, as a redo log writes them
    for g in chosen:
        data = rng.randbytes(grain * 512) if rng.random() < 0.8 else bytes([rng.randrange(256)]) * (grain * 512)
        gts[g // 4096][g % 4096] = next_sector
        body[next_sector] = data
        model[g * grain * 512:(g + 1) * grain * 512] = data
        next_sector += grain
    header = bytearray(2048)
    struct.pack_into("<4sIIIIIII", header, 0, b"COWD", 1, 3, capacity, grain, 4, gd_entries, next_sector)
    struct.pack_into("<III", header, 32, 0, 16, 63)
    with open(out, "wb") as f:
        f.write(header)
        gd = [0] * gd_entries
        for t in tables:
            gd[t] = table_at[t]
        f.seek(4 * 512)
        f.write(struct.pack("<%dI" % gd_entries, *gd))
        for t in tables:
            f.seek(table_at[t] * 512)
            f.write(struct.pack("<4096I", *gts[t]))
        for sector, data in body.items():
            f.seek(sector * 512)
            f.write(data)
    open(expected, "wb").write(model)


def sesparse(out, capacity, parent, expected, seed):
    rng = random.Random(seed)
    size = capacity * 512
    model = parent_bytes(parent, size)
    grains = capacity // 8
    per_table = 4096
    gd_entries = (grains + per_table - 1) // per_table
    gd_sectors = max(1, (gd_entries * 8 + 511) // 512)
    chosen = sorted(rng.sample(range(grains), min(grains, 300)))
    chosen = [g for g in chosen if (g // per_table) % 3 != 2]
    tables = sorted({g // per_table for g in chosen})
    # Layout in sectors: const header 0, volatile header 1, journal header 2,
    # journal 4..12, directory, tables, free bitmap, backmap, grains.
    gd_offset = 16
    tables_offset = gd_offset + gd_sectors
    # Tables are stored in reverse order, so directory indices are not the identity.
    table_index = {t: i for i, t in enumerate(reversed(tables))}
    tables_size = 64 * max(1, len(tables))
    grains_offset = tables_offset + tables_size + 8
    slots = list(range(len(chosen) + 50))
    rng.shuffle(slots)
    gts = {t: [0] * per_table for t in tables}
    body = {}
    for g, slot in zip(chosen, slots):
        kind = rng.random()
        lo, hi = g * 4096, (g + 1) * 4096
        if kind < 0.1:
            gts[g // per_table][g % per_table] = 0x1 << 60  # unmapped: reads zero
            model[lo:hi] = bytes(4096)
        elif kind < 0.2:
            gts[g // per_table][g % per_table] = 0x2 << 60  # zero
            model[lo:hi] = bytes(4096)
        else:
            data = rng.randbytes(4096)
            e = (0x3 << 60) | ((slot & 0xfff) << 48) | (slot >> 12)
            gts[g // per_table][g % per_table] = e
            body[grains_offset + slot * 8] = data
            model[lo:hi] = data
    grains_size = 8 * len(slots)
    hdr = [0xcafebabe, 0x200000001, capacity, 8, 64, 0, 0, 0, 0, 0,
           1, 1, 2, 2, 4, 8, gd_offset, gd_sectors, tables_offset, tables_size,
           tables_offset + tables_size, 4, tables_offset + tables_size + 4, 4, grains_offset, grains_size]
    with open(out, "wb") as f:
        f.write(struct.pack("<26Q", *hdr).ljust(512, b"\0"))
        f.write(struct.pack("<4Q", 0xcafecafe, len(tables), 1, 0).ljust(512, b"\0"))
        gd = [0] * gd_entries
        for t in tables:
            gd[t] = (0x10000000 << 32) | table_index[t]
        f.seek(gd_offset * 512)
        f.write(struct.pack("<%dQ" % gd_entries, *gd).ljust(gd_sectors * 512, b"\0"))
        for t in tables:
            f.seek((tables_offset + table_index[t] * 64) * 512)
            f.write(struct.pack("<4096Q", *gts[t]))
        f.truncate((grains_offset + grains_size) * 512)
        for sector, data in body.items():
            f.seek(sector * 512)
            f.write(data)
    open(expected, "wb").write(model)


def main():
    kind = sys.argv[1]
    if kind == "cowd":
        out, cap, grain, parent, expected = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
        seed = int(sys.argv[7]) if len(sys.argv) > 7 else int(os.environ.get("VDKIT_TEST_SEED", "1"))
        cowd(out, cap, grain, parent, expected, seed)
    elif kind == "sesparse":
        out, cap, parent, expected = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
        seed = int(sys.argv[6]) if len(sys.argv) > 6 else int(os.environ.get("VDKIT_TEST_SEED", "1"))
        sesparse(out, cap, parent, expected, seed)
    else:
        sys.exit("unknown kind " + kind)


if __name__ == "__main__":
    main()
