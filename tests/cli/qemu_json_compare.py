#!/usr/bin/env python3
"""Compare vdkit's JSON output with qemu-img's for the same image
(tests/cli/qemu_json_test.sh). Usage: qemu_json_compare.py KIND QEMU VDKIT
with KIND info, info-chain, map or check. Prints each difference and exits
1 when there is one. The rules are docs/qemu-img-differences.md's."""
import json
import os
import sys

# vdkit's extras in `info` (names qemu's QAPI ImageInfo does not use).
INFO_EXTRAS = {"subformat", "uuid", "parent-uuid", "comment", "filters", "chain-length", "disk-filters"}
# qemu-img keys vdkit does not print (docs/qemu-img-differences.md):
# qcow2's snapshots list, encryption facts, qemu 8's "children".
INFO_SKIPPED = {"snapshots", "encrypted", "encrypt", "children", "backing-image"}
# qemu-img check's cluster statistics vdkit's formats do not count.
CHECK_SKIPPED = {"total-clusters", "allocated-clusters", "fragmented-clusters", "compressed-clusters",
                 "image-end-offset"}
CHECK_EXTRAS = {"repaired", "findings", "summary"}

problems = []


def info(q, v, where):
    for key, want in q.items():
        if key in INFO_SKIPPED:
            continue
        if key not in v:
            problems.append(f"{where}: qemu-img's '{key}' missing (qemu: {json.dumps(want)})")
        elif key == "format-specific":
            if v[key].get("type") != want.get("type"):
                problems.append(f"{where}: format-specific type {v[key].get('type')} != {want.get('type')}")
            got = v[key].get("data", {})
            for k, w in want.get("data", {}).items():
                if k not in got:
                    problems.append(f"{where}: format-specific '{k}' missing (qemu: {json.dumps(w)})")
                elif k == "extents" and isinstance(w, list) and normalise_extents(got[k]) == normalise_extents(w):
                    pass
                elif got[k] != w:
                    problems.append(f"{where}: format-specific '{k}': {json.dumps(got[k])} != qemu {json.dumps(w)}")
        elif key in PATH_KEYS and isinstance(want, str) and os.path.normpath(v[key]) == os.path.normpath(want):
            pass  # qemu joins without normalising ("sub/../s.vmdk"); the same file
        elif v[key] != want:
            problems.append(f"{where}: '{key}': {json.dumps(v[key])} != qemu {json.dumps(want)}")
    for key in v:
        if key not in q and key not in INFO_EXTRAS and key not in ("format-specific",):
            problems.append(f"{where}: '{key}' is neither qemu-img's nor a documented extra")
    if v.get("parent-uuid") == "":
        problems.append(f"{where}: parent-uuid is \"\" (absent when unknown)")


PATH_KEYS = {"filename", "full-backing-filename"}


def normalise_extents(extents):
    return [dict(e, filename=os.path.normpath(e["filename"])) if "filename" in e else e for e in extents]


def runs(records):
    """Byte ranges with their state, adjacent equal ones merged (qemu also
    splits where the host offset jumps; vdkit prints no offset)."""
    out = []
    for r in records:
        state = (r["depth"], r["present"], r["zero"], r["data"])
        if out and out[-1][2] == state and out[-1][0] + out[-1][1] == r["start"]:
            out[-1][1] += r["length"]
        else:
            out.append([r["start"], r["length"], state])
    return out


def same_map(qr, vr):
    """Byte by byte, the states agree, with two equivalences
    (docs/qemu-img-differences.md): qemu's data+zero (file space that reads
    as zero, e.g. a flat extent's hole) may be vdkit's data or zero; and in
    the bottom image of the chain, qemu's "present zero" for a block the
    format leaves unallocated (qemu's VDI driver) is vdkit's "not present,
    zero" at the same depth."""
    if sum(r[1] for r in qr) != sum(r[1] for r in vr):
        return False
    bottom = max([r[2][0] for r in qr] + [0])
    edges = sorted({r[0] for r in qr} | {r[0] for r in vr} | {r[0] + r[1] for r in qr})
    def at(rs, pos):
        for start, length, state in rs:
            if start <= pos < start + length:
                return state
        return None
    for pos in edges[:-1]:
        q, v = at(qr, pos), at(vr, pos)
        if q is None or v is None:
            return False
        if q == v:
            continue
        qd, qp, qz, qdata = q
        vd, vp, vz, vdata = v
        if qd != vd:
            return False
        if qp and qz and qdata and vp and (vz != vdata):
            continue
        if qd == bottom and qz and not qdata and vz and not vdata:
            continue
        return False
    return True


def main():
    kind, qpath, vpath = sys.argv[1:4]
    q = json.load(open(qpath))
    v = json.load(open(vpath))
    if kind == "info":
        info(q, v, "info")
    elif kind == "info-chain":
        if len(q) != len(v):
            problems.append(f"backing chain: {len(v)} images, qemu-img {len(q)}")
        for i, (qi, vi) in enumerate(zip(q, v)):
            info(qi, vi, f"chain[{i}]")
    elif kind == "map":
        for r in v:
            for key in ("start", "length", "depth", "present", "zero", "data"):
                if key not in r:
                    problems.append(f"map record {r} lacks '{key}'")
        qr, vr = runs(q), runs(v)
        if not same_map(qr, vr):
            problems.append("map differs:\n  qemu:  " + json.dumps(qr) + "\n  vdkit: " + json.dumps(vr))
    elif kind == "check":
        for key, want in q.items():
            if key in CHECK_SKIPPED:
                continue
            if v.get(key) != want:
                problems.append(f"check '{key}': {json.dumps(v.get(key))} != qemu {json.dumps(want)}")
        for key in v:
            if key not in q and key not in CHECK_EXTRAS:
                problems.append(f"check: '{key}' ({json.dumps(v[key])}) is not in qemu-img's output")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


main()
