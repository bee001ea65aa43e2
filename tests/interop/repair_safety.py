"""Property: `vdkit check -r` never destroys data that can still be read.

For each writable subformat an image with known data is damaged at many
points (truncated inside the header, descriptor, tables, grains/blocks,
footer; table and map entries corrupted), then:
  - the disk is read before (vdkit convert -O raw), checked (--output=json),
    repaired (check -r), and read after;
  - every byte that differs lies in a range a finding listed as lost
    ("lost disk bytes [A, B)", docs/check.md), and every finding's offset
    lies inside the damaged file;
  - what vdkit read before it reads after; what qemu-img could convert
    before it converts after; when the repair left no errors, a second check
    is clean and qemu-img reads what vdkit reads.
Run by repair_safety_test.sh (environment: VDKIT, VDKIT_SOURCE_DIR).
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys

VDKIT = os.environ["VDKIT"]
LOST = re.compile(r"(?:lost|changed) disk bytes \[(\d+), (\d+)\)")
LOST_ONLY = re.compile(r"lost disk bytes")
failures = []
passes = 0
MiB = 1 << 20


def run(*args, ok=(0,)):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def check(cond, what):
    global passes
    if cond:
        passes += 1
    else:
        failures.append(what)
        print("FAIL: " + what, flush=True)


def vdkit_read(img, fmt, out):
    if os.path.exists(out):
        os.unlink(out)
    rc, _, err = run(VDKIT, "-q", "convert", "-f", fmt, "-O", "raw", img, out)
    if rc != 0:
        return None, err.strip()
    with open(out, "rb") as f:
        return f.read(), ""


def qemu_read(img, fmt, out):
    if os.path.exists(out):
        os.unlink(out)
    rc, _, _ = run("qemu-img", "convert", "-f", fmt, "-O", "raw", img, out)
    if rc != 0:
        return None
    with open(out, "rb") as f:
        return f.read()


def vdkit_check(img, fmt, *flags):
    rc, out, err = run(VDKIT, "check", "-f", fmt, "--output=json", *flags, img)
    try:
        return rc, json.loads(out)["findings"], err
    except (ValueError, KeyError):
        return rc, None, err.strip()


def lost_ranges(findings):
    out = []
    for f in findings or []:
        out += [(int(a), int(b)) for a, b in LOST.findall(f["message"])]
    return out


def differing(a, b):
    """Sorted [start, end) runs where a and b differ (equal lengths), 4 KiB resolution then exact."""
    runs = []
    n = len(a)
    step = 4096
    i = 0
    while i < n:
        j = min(n, i + step)
        if a[i:j] != b[i:j]:
            k = i
            while k < j:
                if a[k] != b[k]:
                    s = k
                    while k < j and a[k] != b[k]:
                        k += 1
                    if runs and runs[-1][1] == s:
                        runs[-1] = (runs[-1][0], k)
                    else:
                        runs.append((s, k))
                else:
                    k += 1
        i = j
    return runs


def covered(run_, ranges):
    s, e = run_
    for a, b in sorted(ranges):
        if a <= s < b:
            s = b
        if s >= e:
            return True
    return s >= e


# ---------------------------------------------------------------- images

def pattern_writes(img, fmt, writes):
    cmds = []
    for off, length, pat in writes:
        cmds += ["-c", "write -P 0x%02x %d %d" % (pat, off, length)]
    rc, _, err = run("qemu-io", "-f", fmt, *cmds, img)
    assert rc == 0, err


WRITES = [(0, 64 << 10, 0x61), (1 * MiB + 4096, 100 << 10, 0x62), (3 * MiB, 64 << 10, 0x63),
          (4 * MiB - 8192, 8192, 0x64)]


def make_vmdk(path, subformat):
    if not os.path.exists("src/data.raw"):
        with open("src/data.raw", "wb") as f:
            f.truncate(4 * MiB)
        pattern_writes("src/data.raw", "raw", WRITES)
    rc, _, err = run("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=" + subformat,
                     "src/data.raw", path)
    assert rc == 0, err


def make_vmdk_footer(path):
    """monolithicSparse with the grain directory at the end: header gdOffset =
    GD_AT_END, grains, grain table, directory, footer marker, footer, EOS."""
    def pad(b):
        return b + b"\0" * (-len(b) % 512)

    def header(gd):  # VDF50 hosted sparse header, version 1, newline test flag
        return pad(struct.pack("<IIIQQQQIQQQB4sH", 0x564D444B, 1, 1, cap, 128, 1, dsec, 512, 0, gd, overhead, 0,
                               b"\n \r\n", 0))

    cap = 8192  # 4 MiB
    grains = {0: b"\x61" * 65536, 17: b"\x62" * 65536, 63: b"\x63" * 65536}
    desc = ('# Disk DescriptorFile\nversion=1\nCID=1a2b3c4d\nparentCID=ffffffff\ncreateType="monolithicSparse"\n'
            'RW %d SPARSE "f.vmdk"\nddb.adapterType = "ide"\n' % cap).encode()
    dsec = 2
    overhead = 128
    out = bytearray(header(0xFFFFFFFFFFFFFFFF))
    out += pad(desc)
    out += b"\0" * (overhead * 512 - len(out))
    gt = [0] * 512
    for gi in sorted(grains):
        gt[gi] = len(out) // 512
        out += grains[gi]
    gt_sec = len(out) // 512
    out += struct.pack("<512I", *gt)
    gd_sec = len(out) // 512
    out += pad(struct.pack("<I", gt_sec))
    out += pad(struct.pack("<QII", 1, 0, 3))  # footer marker
    out += header(gd_sec)  # footer
    out += pad(struct.pack("<QII", 0, 0, 0))  # end-of-stream marker
    with open(path, "wb") as f:
        f.write(out)


def make_vdi(path, static):
    opts = ["-o", "static=on"] if static else []
    run("qemu-img", "create", "-q", "-f", "vdi", *opts, path, "4M")
    pattern_writes(path, "vdi", WRITES)


def sparse_layout(path):
    """(header fields, GD entries) of a hosted sparse extent file."""
    with open(path, "rb") as f:
        h = f.read(512)
        gd_off = struct.unpack_from("<Q", h, 56)[0]
        ov = struct.unpack_from("<Q", h, 64)[0]
        rgd = struct.unpack_from("<Q", h, 48)[0]
        grain = struct.unpack_from("<Q", h, 20)[0]
        dsc = struct.unpack_from("<Q", h, 28)[0]
        if gd_off == 0xFFFFFFFFFFFFFFFF:
            f.seek(0, 2)
            end = f.tell() // 512 * 512
            f.seek(end - 1024)
            gd_off = struct.unpack_from("<Q", f.read(512), 56)[0]
        f.seek(gd_off * 512)
        gt = struct.unpack("<I", f.read(4))[0]
        f.seek(gt * 512)
        entries = struct.unpack("<512I", f.read(2048))
    return dict(gd=gd_off, gt=gt, rgd=rgd, overhead=ov, desc=dsc, entries=entries, grain=grain)


def truncation_points(path, kind):
    size = os.path.getsize(path)
    pts = {100, 600, size - 1, size - 512, size - 1000, size - 1536, size - 32768}
    if kind == "vmdk":
        L = sparse_layout(path)
        pts |= {L["gd"] * 512 + 2, L["gt"] * 512 + 1000, L["overhead"] * 512 + 300}
        if L["rgd"]:
            pts.add(L["rgd"] * 512 + 1)
        if L["desc"]:
            pts.add(L["desc"] * 512 + 20)
        for e in L["entries"]:
            if e > 1:
                pts |= {e * 512 + 1, e * 512 + 40000}
    else:
        with open(path, "rb") as f:
            h = f.read(512)
        bmap, data = struct.unpack_from("<II", h, 0x154)
        pts |= {bmap + 2, data, data + 1, data + 300000, data + MiB + 5, data + 2 * MiB - 512}
    step = max(1, size // 4)
    pts |= set(range(step, size, step))
    return sorted(p for p in pts if 0 < p < size)


def corruptions(path, kind):
    """(description, [(file offset, bytes)]) entry corruptions."""
    size = os.path.getsize(path)
    out = []
    if kind == "vmdk":
        L = sparse_layout(path)
        used = [(i, e) for i, e in enumerate(L["entries"]) if e > 1]
        at = lambda i: L["gt"] * 512 + i * 4
        if used:
            i0, e0 = used[0]
            out.append(("entry into the metadata", [(at(i0), struct.pack("<I", 3))]))
            out.append(("entry beyond the file", [(at(i0), struct.pack("<I", size // 512 + 1000))]))
            out.append(("entry on the last sector", [(at(i0), struct.pack("<I", size // 512 - 1))]))
            out.append(("free entry on a used grain", [(at(5), struct.pack("<I", e0))]))
            out.append(("entry into the middle of a grain", [(at(40), struct.pack("<I", e0 + 64))]))
        out.append(("directory entry beyond the file", [(L["gd"] * 512, struct.pack("<I", size // 512 + 10))]))
        if L["rgd"]:
            # Primary copies damaged, the redundant ones sound: reads follow the
            # copy check -r keeps, so nothing may differ before and after.
            out.append(("primary directory entry 0", [(L["gd"] * 512, struct.pack("<I", 0))]))
            out.append(("primary directory entry on the descriptor", [(L["gd"] * 512, struct.pack("<I", max(L["desc"], 1)))]))
            out.append(("primary table zeroed", [(L["gt"] * 512, bytes(2048))]))
            out.append(("primary entries past the end", [(at(i), struct.pack("<I", size // 512 + 99)) for i, _ in used]))
            out.append(("header grainSize halved", [(20, struct.pack("<Q", L["grain"] // 2))]))
    else:
        with open(path, "rb") as f:
            h = f.read(512)
        bmap = struct.unpack_from("<I", h, 0x154)[0]
        out.append(("map entry out of range", [(bmap + 4, struct.pack("<I", 4000))]))
        out.append(("map entry beyond the file", [(bmap, struct.pack("<I", 3))]))
        out.append(("two blocks share data", [(bmap + 4 * 2, struct.pack("<I", 0))]))
        out.append(("allocated count too high", [(0x184, struct.pack("<I", 4))]))
    return out


def extent_file(img, subformat):
    if subformat == "twoGbMaxExtentSparse":
        return img[:-5] + "-s001.vmdk"
    return img


def one_case(name, pristine_files, img, fmt, damaged_file, damage):
    d = "case"
    shutil.rmtree(d, ignore_errors=True)
    os.mkdir(d)
    for f in pristine_files:
        shutil.copy(f, d)
    img = os.path.join(d, os.path.basename(img))
    target = os.path.join(d, os.path.basename(damaged_file))
    damage(target)
    largest = max(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    before, why = vdkit_read(img, fmt, "before.raw")
    q_before = qemu_read(img, fmt, "qbefore.raw")
    rc1, found, err1 = vdkit_check(img, fmt)
    check(found is not None or before is None, "%s: check gave no findings list (%s)" % (name, err1))
    for f in found or []:
        off = f.get("offset")
        check(off is None or off <= largest,
              "%s: finding offset %s lies past the end of every file: %s" % (name, off, f["message"]))
    with open(target, "rb") as f:
        raw_before = f.read()
    rc2, fixed, err2 = vdkit_check(img, fmt, "-r")
    if rc2 in (1, 63) or fixed is None:
        # The repair did not run: nothing may have changed.
        with open(target, "rb") as f:
            check(f.read() == raw_before, "%s: check -r failed (%s) yet changed the file" % (name, err2))
        return
    lost = lost_ranges(found) + lost_ranges(fixed)
    after, why_after = vdkit_read(img, fmt, "after.raw")
    if name.endswith(EXACT) and not name.startswith("streamOptimized"):  # a stream's tables have no redundant copy in use
        check(before is not None and after == before and not LOST_ONLY.search(" ".join(f["message"] for f in fixed)),
              "%s: reads must follow the sound redundant copy before and after check -r (before: %s)" %
              (name, why or "read"))
    if before is not None:
        check(after is not None, "%s: readable before check -r, not after (%s)" % (name, why_after))
        if after is not None:
            check(len(after) == len(before), "%s: disk size changed" % name)
            bad_runs = [r for r in differing(before, after) if not covered(r, lost)]
            check(not bad_runs, "%s: bytes changed outside the lost ranges %s: %s; findings: %s" %
                  (name, lost, bad_runs[:4], [f["message"] for f in fixed]))
    if rc2 == 0:
        rc3, again, _ = vdkit_check(img, fmt)
        check(rc3 == 0, "%s: check after a complete repair is not clean: %s" %
              (name, [f["message"] for f in again or []]))
        check(after is not None, "%s: a complete repair left an unreadable disk (%s)" % (name, why_after))
    q_after = qemu_read(img, fmt, "qafter.raw")
    if q_before is not None:
        check(q_after is not None, "%s: qemu-img converted the image before check -r, not after" % name)
    if rc2 == 0 and after is not None and q_after is not None:
        check(q_after == after, "%s: after a complete repair qemu-img reads other data than vdkit" % name)


EXACT = ("primary directory entry 0", "primary directory entry on the descriptor", "primary table zeroed",
         "primary entries past the end")


def truncate_to(n):
    def f(path):
        with open(path, "r+b") as fh:
            fh.truncate(n)
    return f


def patch(edits):
    def f(path):
        with open(path, "r+b") as fh:
            for off, b in edits:
                fh.seek(off)
                fh.write(b)
    return f


def main():
    os.makedirs("src", exist_ok=True)
    subjects = []
    for sub in ("monolithicSparse", "twoGbMaxExtentSparse", "streamOptimized"):
        img = "src/%s.vmdk" % sub
        make_vmdk(img, sub)
        files = [img] + ([extent_file(img, sub)] if sub == "twoGbMaxExtentSparse" else [])
        subjects.append((sub, img, "vmdk", files, extent_file(img, sub), "vmdk"))
    make_vmdk_footer("src/f.vmdk")
    subjects.append(("monolithicSparse, directory at the end", "src/f.vmdk", "vmdk", ["src/f.vmdk"], "src/f.vmdk", "vmdk"))
    for static in (False, True):
        img = "src/%s.vdi" % ("fixed" if static else "dynamic")
        make_vdi(img, static)
        subjects.append(("VDI " + ("fixed" if static else "dynamic"), img, "vdi", [img], img, "vdi"))
    # differencing images: damage the child
    run(VDKIT, "-q", "create", "-f", "vmdk", "src/base.vmdk", "4M")
    run(VDKIT, "-q", "create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "src/child.vmdk")
    pattern_writes("src/child.vmdk", "vmdk", WRITES[:2])
    subjects.append(("VMDK differencing", "src/child.vmdk", "vmdk", ["src/base.vmdk", "src/child.vmdk"],
                     "src/child.vmdk", "vmdk"))
    run(VDKIT, "-q", "create", "-f", "vdi", "src/base.vdi", "4M")
    pattern_writes("src/base.vdi", "vdi", [(2 * MiB, 64 << 10, 0x70)])
    # qemu does not open VDI differencing images: vdkit writes the child (convert -B keeps what differs).
    shutil.copy("src/data.raw", "src/child-vdi.raw")
    pattern_writes("src/child-vdi.raw", "raw", [(2 * MiB, 64 << 10, 0x70), (2 * MiB + (64 << 10), 1 * MiB, 0x71)])
    subprocess.run([VDKIT, "-q", "convert", "-f", "raw", "-O", "vdi", "-B", "base.vdi", "-F", "vdi", "child-vdi.raw",
                    "child.vdi"], cwd="src", check=True)
    subjects.append(("VDI differencing", "src/child.vdi", "vdi", ["src/base.vdi", "src/child.vdi"],
                     "src/child.vdi", "vdi"))

    cases = 0
    for label, img, fmt, files, damaged, kind in subjects:
        if not os.path.exists(damaged):
            check(False, "%s: could not create the test image" % label)
            continue
        rc, _, err = run(VDKIT, "check", "-f", fmt, img)
        check(rc == 0, "%s: the undamaged image does not check clean: %s" % (label, err))
        for n in truncation_points(damaged, kind):
            one_case("%s cut at %d" % (label, n), files, img, fmt, damaged, truncate_to(n))
            cases += 1
        for what, edits in corruptions(damaged, kind):
            one_case("%s: %s" % (label, what), files, img, fmt, damaged, patch(edits))
            cases += 1
    print("%d damaged images, %d checks passed, %d failed" % (cases, passes, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
