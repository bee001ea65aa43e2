#!/usr/bin/env python3
"""Oracles and damage for tests/cli/volumes_test.sh.

  volumes_check.py expect IMAGE.raw EXPECT.json [--lvm VG:LVS_FILE:PE_START]
      What util-linux says about a raw disk: sfdisk --json (partitions: number,
      start, size, type), blkid -p on each partition's byte range (TYPE, LABEL,
      UUID), and, with --lvm, the LVs as `lvs -o lv_name,seg_pe_ranges,
      vg_extent_size` listed them (LVS_FILE) with the PV's pe_start in bytes.
  volumes_check.py compare EXPECT.json VDKIT.json
      vdkit volumes --output=json lists exactly those volumes; exit 1 and a
      diff otherwise.
  volumes_check.py damage KIND IN.raw OUT.raw SEED
      A damaged copy: gpt-header-crc, gpt-array-crc, gpt-both, overlap,
      ebr-loop, past-end (formats.md §8.5); SEED picks which bytes.
"""
import json
import random
import struct
import subprocess
import sys
import zlib


def sfdisk(path):
    out = subprocess.run(["sfdisk", "--json", path], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)["partitiontable"]


def blkid(path, offset, size):
    out = subprocess.run(["blkid", "-p", "-o", "export", "-O", str(offset), "-S", str(size), path],
                         capture_output=True, text=True)
    vals = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return {"filesystem": vals.get("TYPE", ""), "label": vals.get("LABEL", ""), "uuid": vals.get("UUID", "")}


def expect(args):
    image, out = args[0], args[1]
    lvm = None
    if len(args) > 3 and args[2] == "--lvm":
        lvm = args[3].split(":")
    size = int(subprocess.check_output(["stat", "-c", "%s", image]))
    table = sfdisk(image)
    vols = []
    if table:
        ss = table.get("sectorsize", 512)
        for p in table.get("partitions", []):
            num = int(p["node"][len(table["device"]):].lstrip("p"))
            v = {"index": num, "start": p["start"] * ss, "size": p["size"] * ss}
            if table["label"] == "gpt":
                v["type-guid"] = p["type"].upper()
                v["part-uuid"] = p.get("uuid", "").upper()
                v["name"] = p.get("name", "")
            else:
                v["mbr-type"] = int(p["type"], 16)
            if table["label"] == "dos" and int(p["type"], 16) in (5, 0xF, 0x85):
                v.update(filesystem="", label="", uuid="")
            else:
                v.update(blkid(image, v["start"], v["size"]))
            vols.append(v)
        result = {"table": "gpt" if table["label"] == "gpt" else "mbr", "sector-size": ss, "volumes": vols}
    else:
        v = {"index": 1, "start": 0, "size": size}
        v.update(blkid(image, 0, size))
        result = {"table": "none", "sector-size": 512, "volumes": [v]}
    if lvm:
        pv_index, lvs_file, pe_start = int(lvm[0]), lvm[1], int(lvm[2])
        pv = next(v for v in result["volumes"] if v["index"] == pv_index)
        nxt = max(v["index"] for v in result["volumes"]) + 1
        vg = lvm[3]
        for line in open(lvs_file):
            f = line.split()
            if len(f) < 3:
                continue
            name, ranges, extent = f[0], f[1], int(f[2].rstrip("B"))
            first, last = (int(x) for x in ranges.split(":")[1].split("-"))
            start = pv["start"] + pe_start + first * extent
            length = (last - first + 1) * extent
            v = {"index": nxt, "start": start, "size": length, "name": vg + "/" + name}
            v.update(blkid(image, start, length))
            result["volumes"].append(v)
            nxt += 1
    json.dump(result, open(out, "w"), indent=1)


def compare(args):
    want = json.load(open(args[0]))
    got = json.load(open(args[1]))
    bad = []
    for key in ("table", "sector-size"):
        if want[key] != got[key]:
            bad.append(f"{key}: vdkit {got[key]!r}, util-linux {want[key]!r}")
    gv = {v["index"]: v for v in got["volumes"]}
    if sorted(gv) != sorted(v["index"] for v in want["volumes"]):
        bad.append(f"indices: vdkit {sorted(gv)}, util-linux {[v['index'] for v in want['volumes']]}")
    for w in want["volumes"]:
        g = gv.get(w["index"])
        if not g:
            continue
        for k, val in w.items():
            if g.get(k, "") != val:
                bad.append(f"volume {w['index']} {k}: vdkit {g.get(k)!r}, util-linux {val!r}")
    for b in bad:
        print("MISMATCH", b)
    sys.exit(1 if bad else 0)


def damage(args):
    kind, src, dst, seed = args[0], args[1], args[2], args[3]
    rng = random.Random(seed)
    data = bytearray(open(src, "rb").read())
    ss = 4096 if data[4096:4104] == b"EFI PART" else 512
    if kind in ("gpt-header-crc", "gpt-both"):
        # Any byte of the 92-byte header but the CRC field changes its CRC.
        i = rng.choice([b for b in range(92) if not 16 <= b < 20])
        data[ss + i] ^= 1 << rng.randrange(8)
        if kind == "gpt-both":
            last = len(data) - ss
            data[last + rng.randrange(0, 8)] ^= 0xFF  # the backup's signature
    elif kind == "gpt-array-crc":
        entries = struct.unpack_from("<Q", data, ss + 72)[0] * ss
        used = 128 * rng.randrange(0, 2)
        data[entries + used + rng.randrange(0, 128)] ^= 1 << rng.randrange(8)
    elif kind == "overlap":
        # Primary 2 starts inside primary 1.
        s1, n1 = struct.unpack_from("<II", data, 446 + 8)
        struct.pack_into("<I", data, 446 + 16 + 8, s1 + rng.randrange(1, n1))
    elif kind == "past-end":
        slot = rng.randrange(0, 2)
        start = struct.unpack_from("<I", data, 446 + 16 * slot + 8)[0]
        total = len(data) // 512
        struct.pack_into("<I", data, 446 + 16 * slot + 12, total - start + rng.randrange(1, 1 << 20))
    elif kind == "ebr-loop":
        # The extended entry, then a link in a later EBR back to an earlier one (or itself).
        ext = next(i for i in range(4) if data[446 + 16 * i + 4] in (5, 0xF, 0x85))
        e = struct.unpack_from("<I", data, 446 + 16 * ext + 8)[0]
        chain = [e]
        while True:
            link = struct.unpack_from("<I", data, chain[-1] * 512 + 446 + 16 + 8)[0]
            if link == 0 or data[chain[-1] * 512 + 446 + 16 + 4] == 0 or len(chain) > 10:
                break
            chain.append(e + link)
        last = chain[-1]
        target = rng.choice(chain)
        data[last * 512 + 446 + 16 + 4] = 5
        struct.pack_into("<II", data, last * 512 + 446 + 16 + 8, target - e, 2048)
    else:
        sys.exit("unknown damage " + kind)
    open(dst, "wb").write(data)


if __name__ == "__main__":
    {"expect": expect, "compare": compare, "damage": damage}[sys.argv[1]](sys.argv[2:])
