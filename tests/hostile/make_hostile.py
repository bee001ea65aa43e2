#!/usr/bin/env python3
"""Writes the hostile-image corpus of tests/hostile/hostile_test.sh at test time.

  make_hostile.py WORK

WORK/c/<case>/ holds one case each (its image and the files it names);
WORK/outside/ and WORK/c/ (one level above every case) hold files a hostile
image tries to reach. Writes:
  WORK/manifest.tsv   case, main file, info, check and convert exit codes,
                      texts every refusal must show ("|"-separated), flags
  WORK/forbidden.txt  every path outside its case a case names (never opened)

Kinds (shared/reference/formats.md §8; OpenStack os-test-images): VMDK
extents and parents naming host files (absolute, "..", /dev, /proc, symlinks
out, fifos), URLs and other schemes as names, VDI parents the same way, loops
in chains, over-deep chains, huge capacities, tables past the end of the
file, grain sizes and table sizes out of range, descriptor tricks (size,
NUL bytes, overlong lines, thousands of extents, duplicate keys, createType
mismatches), compressed grains that lie, VDI header fields that lie.

Exit codes (docs/cli.md): an image that does not open is refused by info,
check and convert with 1; one that opens but whose tables are damaged
opens (info 0), check reports the errors (2) and convert fails (1).
"""
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cases"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "plugins", "formats", "vmdk", "tests"))
import vmdkgen as g  # noqa: E402
import make_esx_extents as esx  # noqa: E402

WORK = os.path.abspath(sys.argv[1])
CASES = os.path.join(WORK, "c")
OUTSIDE = os.path.join(WORK, "outside")
SECRET = b"SECRET!!" * 8192  # 64 KiB: must never appear in anything vdkit outputs
UPBASE = b"UPBASE!!" * 8192
MIB = 1 << 20

manifest = []
forbidden = set()

REFUSE = (1, 1, 1)   # info, check, convert: the image does not open
DAMAGED = (0, 2, 1)  # opens; check finds errors; reading the damage fails
WORKS = (0, 0, 0)


def case(name, main, codes, needles, flags=()):
    """Register a case; needles: texts each failing command's output must hold."""
    manifest.append("\t".join([name, main, *map(str, codes), "|".join(needles) or "-", ",".join(flags) or "-"]))


def cdir(name):
    d = os.path.join(CASES, name)
    os.makedirs(d, exist_ok=True)
    return d


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def patch(path, off, fmt, *values):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(struct.pack(fmt, *values))


def named(target):
    """A path a case names outside itself: it must never be opened."""
    if target.startswith("/"):
        forbidden.add(target)


def flat_descriptor(extents, create_type="monolithicFlat", **kw):
    return g.descriptor(create_type, extents, **kw)


def sparse(path, desc, grains=None, capacity=2048, **kw):
    grains = {0: bytes(range(256)) * 256} if grains is None else grains
    return g.build_monolithic_sparse(path, capacity, grains, desc, **kw)


def vmdk_child(path, hint, parent_cid, cid="c0c0c0c0", capacity=2048):
    d = g.descriptor("monolithicSparse", ['RW %d SPARSE "%s"' % (capacity, os.path.basename(path))], cid=cid,
                     parent_cid=parent_cid, parent_hint=hint)
    return g.build_monolithic_sparse(path, capacity, {1: b"\x42" * 65536}, d)


def vdi_child(path, hint, uuid_create, uuid_link, parent_modify=b"\0" * 16):
    """A VDI differencing image with vdkit's parent location record at 0x200."""
    g.build_vdi(path, MIB, {}, image_type=4, uuid_create=uuid_create, uuid_link=uuid_link,
                uuid_parent_modify=parent_modify, offset_bmap=0x1000)
    h = hint.encode() if isinstance(hint, str) else hint
    with open(path, "r+b") as f:
        f.seek(0x200)
        f.write(b"VDKTPRNT" + struct.pack("<II", 1, len(h)) + h)


# ---------------------------------------------------------------- outside targets
os.makedirs(OUTSIDE, exist_ok=True)
os.makedirs(CASES, exist_ok=True)
write(os.path.join(OUTSIDE, "secret.bin"), SECRET)
SECRET_CID = "5ec12e70"
sparse(os.path.join(OUTSIDE, "secret.vmdk"),
       g.descriptor("monolithicSparse", ['RW 2048 SPARSE "secret.vmdk"'], cid=SECRET_CID), grains={0: SECRET})
SECRET_UUID = b"\x5e" * 16
g.build_vdi(os.path.join(OUTSIDE, "secret.vdi"), MIB, {0: SECRET * 16}, uuid_create=SECRET_UUID)
os.mkfifo(os.path.join(OUTSIDE, "fifo"))
# One level above every case: the path rule's parent area (docs/design/paths.md rule 3).
write(os.path.join(CASES, "up-secret.bin"), SECRET)
UP_CID = "0b0b0b0b"
sparse(os.path.join(CASES, "up-base.vmdk"), g.descriptor("monolithicSparse", ['RW 2048 SPARSE "up-base.vmdk"'],
                                                         cid=UP_CID), grains={0: UPBASE})
for p in ("secret.bin", "secret.vmdk", "secret.vdi", "fifo"):
    forbidden.add(os.path.join(OUTSIDE, p))
forbidden.add(os.path.join(CASES, "up-secret.bin"))

# Names that reach outside: (tag, name as written, refusal text).
out_secret = os.path.join(OUTSIDE, "secret.bin")
HOST_NAMES = [
    ("abs", out_secret, "outside"),
    ("etc", "/etc/passwd", "outside"),
    ("dotdot", "../../outside/secret.bin", "outside"),
    ("dotdot-up", "../up-secret.bin", "outside"),
    ("dotdot-inner", "sub/../../../outside/secret.bin", "outside"),
    ("dev-zero", "/dev/zero", "/dev/zero"),
    ("dev-sda", "/dev/sda", "/dev/sda"),
    ("proc-environ", "/proc/self/environ", "/proc"),
    ("proc-fd", "/proc/self/fd/0", "/proc"),
    ("proc-root", "/proc/self/root/etc/passwd", "/proc"),
    ("sys", "/sys/kernel/notes", "/sys"),
    ("url-http", "http://127.0.0.1:9/secret.vmdk", "URL"),
    ("url-https", "https://example.invalid/secret.vmdk", "URL"),
    ("url-file", "file:///etc/passwd", "URL"),
    ("url-nbd", "nbd://127.0.0.1:9/export", "URL"),
    ("url-ssh", "ssh://root@127.0.0.1/etc/passwd", "URL"),
    ("json", 'json:{"file.driver":"file","file.filename":"/etc/passwd"}', "json:"),
    ("datastore", "[datastore1] vm/secret-flat.vmdk", "datastore"),
    ("drive", "C:\\secret.bin", "drive"),
    ("drive-slash", "c:/secret.bin", "drive"),
    ("unc", "\\\\server\\share\\secret.bin", "UNC"),
    ("fifo-out", os.path.join(OUTSIDE, "fifo"), "outside"),
]
for _, n, _ in HOST_NAMES:
    named(n)
for p in ("/etc/passwd", "/dev/zero", "/dev/sda", "/proc/self/environ", "/proc/self/fd/0", "/sys/kernel/notes"):
    forbidden.add(p)

# ---------------------------------------------------------------- VMDK extents naming host files
for tag, target, why in HOST_NAMES:
    name = "vmdk-extent-" + tag
    d = cdir(name)
    write(os.path.join(d, "disk.vmdk"), flat_descriptor(['RW 128 FLAT "%s" 0' % target]))
    # (A name holding quotes cannot be an extent file name at all.)
    case(name, "disk.vmdk", REFUSE, ["disk.vmdk", "malformed extent line" if '"' in target else target])
# The same through a split sparse extent, an ESX redo-log extent and a seSparse extent.
for kind, line in (("sparse", 'RW 2048 SPARSE "%s"'), ("vmfssparse", 'RW 2048 VMFSSPARSE "%s"'),
                   ("sesparse", 'RW 2048 SESPARSE "%s"')):
    for tag, target in (("abs", os.path.join(OUTSIDE, "secret.vmdk")), ("dotdot", "../../outside/secret.vmdk"),
                        ("url", "https://example.invalid/x.vmdk")):
        named(target)
        name = "vmdk-%s-extent-%s" % (kind, tag)
        d = cdir(name)
        write(os.path.join(d, "disk.vmdk"), flat_descriptor([line % target], create_type="twoGbMaxExtentSparse"))
        case(name, "disk.vmdk", REFUSE, ["disk.vmdk", target])
# Symbolic links in the directory that lead out of it, and a fifo inside it.
for tag, link, via in (("symlink-abs", out_secret, "link.bin"),
                       ("symlink-rel", "../../outside/secret.bin", "link.bin"),
                       ("symlink-dev", "/dev/zero", "link.bin"),
                       ("symlink-proc", "/proc/self/environ", "link.bin"),
                       ("symlink-dir", OUTSIDE, "sub/secret.bin")):
    name = "vmdk-extent-" + tag
    d = cdir(name)
    os.symlink(link, os.path.join(d, via.split("/")[0]))
    write(os.path.join(d, "disk.vmdk"), flat_descriptor(['RW 128 FLAT "%s" 0' % via]))
    case(name, "disk.vmdk", REFUSE, ["disk.vmdk", via])
d = cdir("vmdk-extent-fifo-inside")
os.mkfifo(os.path.join(d, "pipe.bin"))
write(os.path.join(d, "disk.vmdk"), flat_descriptor(['RW 128 FLAT "pipe.bin" 0']))
case("vmdk-extent-fifo-inside", "disk.vmdk", REFUSE, ["disk.vmdk", "fifo"])
d = cdir("vmdk-extent-directory")
os.makedirs(os.path.join(d, "sub"))
write(os.path.join(d, "disk.vmdk"), flat_descriptor(['RW 128 FLAT "sub" 0']))
case("vmdk-extent-directory", "disk.vmdk", REFUSE, ["disk.vmdk", "directory"])
# Device-backed disks and raw device mappings (formats.md §8.2.13).
d = cdir("vmdk-fulldevice")
write(os.path.join(d, "disk.vmdk"), flat_descriptor(['RW 128 FLAT "/dev/sda" 0'], create_type="fullDevice"))
case("vmdk-fulldevice", "disk.vmdk", REFUSE, ["disk.vmdk", "extent"])
for t in ("VMFSRDM", "VMFSRAW"):
    name = "vmdk-" + t.lower() + "-dev"
    d = cdir(name)
    write(os.path.join(d, "disk.vmdk"), flat_descriptor(['RW 128 %s "/dev/sda"' % t], create_type="vmfsRaw"))
    case(name, "disk.vmdk", REFUSE, ["disk.vmdk", "extent"])
# The embedded descriptor of a monolithic sparse file names an outside file
# as its extent (formats.md §8.2.1: the single extent is the file itself).
d = cdir("vmdk-embedded-extent-name-outside")
sparse(os.path.join(d, "disk.vmdk"), g.descriptor("monolithicSparse", ['RW 2048 SPARSE "%s"' % out_secret]))
case("vmdk-embedded-extent-name-outside", "disk.vmdk", WORKS, [])

# ---------------------------------------------------------------- VMDK parents naming host files
for tag, target, why in HOST_NAMES:
    name = "vmdk-parent-" + tag
    d = cdir(name)
    vmdk_child(os.path.join(d, "child.vmdk"), target, "fffffffe")
    flags = ("parent-area",) if tag == "dotdot-up" else ()
    case(name, "child.vmdk", REFUSE, ["child.vmdk", target], flags)
# A real VMDK outside whose CID the attacker knows: outside the parent area it is still refused.
for tag, target in (("abs", os.path.join(OUTSIDE, "secret.vmdk")), ("dotdot", "../../outside/secret.vmdk")):
    name = "vmdk-parent-known-cid-" + tag
    d = cdir(name)
    vmdk_child(os.path.join(d, "child.vmdk"), target, SECRET_CID)
    named(target)
    case(name, "child.vmdk", REFUSE, ["child.vmdk", "outside"])
# The parent area one level up: an image there must prove its identity.
d = cdir("vmdk-parent-up-wrong-cid")
vmdk_child(os.path.join(d, "child.vmdk"), "../up-base.vmdk", "12345678")
case("vmdk-parent-up-wrong-cid", "child.vmdk", REFUSE, ["child.vmdk", "up-base.vmdk"], ("parent-area",))
d = cdir("vmdk-parent-up-proven")
vmdk_child(os.path.join(d, "child.vmdk"), "../up-base.vmdk", UP_CID)
case("vmdk-parent-up-proven", "child.vmdk", WORKS, [], ("parent-area",))
for tag, link in (("symlink-abs", os.path.join(OUTSIDE, "secret.vmdk")), ("symlink-dev", "/dev/zero"),
                  ("symlink-proc", "/proc/self/environ")):
    name = "vmdk-parent-" + tag
    d = cdir(name)
    os.symlink(link, os.path.join(d, "base.vmdk"))
    vmdk_child(os.path.join(d, "child.vmdk"), "base.vmdk", SECRET_CID)
    case(name, "child.vmdk", REFUSE, ["child.vmdk", "base.vmdk"])
d = cdir("vmdk-parent-fifo-inside")
os.mkfifo(os.path.join(d, "base.vmdk"))
vmdk_child(os.path.join(d, "child.vmdk"), "base.vmdk", "fffffffe")
case("vmdk-parent-fifo-inside", "child.vmdk", REFUSE, ["child.vmdk", "fifo"])
# Loops: its own parent, A -> B -> A, A -> B -> C -> A; and a chain deeper than max_chain_depth (32).
d = cdir("vmdk-parent-self")
vmdk_child(os.path.join(d, "child.vmdk"), "child.vmdk", "c0c0c0c0")
case("vmdk-parent-self", "child.vmdk", REFUSE, ["child.vmdk", "loop"])
for n in (2, 3):
    name = "vmdk-parent-loop%d" % n
    d = cdir(name)
    for i in range(n):
        vmdk_child(os.path.join(d, "l%d.vmdk" % i), "l%d.vmdk" % ((i + 1) % n), "%08x" % (0xa0 + (i + 1) % n),
                   cid="%08x" % (0xa0 + i))
    case(name, "l0.vmdk", REFUSE, ["l0.vmdk", "loop"])
d = cdir("vmdk-chain-too-deep")
vmdk_child(os.path.join(d, "c00.vmdk"), "c00.vmdk", "ffffffff", cid="00000100")
for i in range(1, 40):
    vmdk_child(os.path.join(d, "c%02d.vmdk" % i), "c%02d.vmdk" % (i - 1), "%08x" % (0x100 + i - 1),
               cid="%08x" % (0x100 + i))
case("vmdk-chain-too-deep", "c39.vmdk", REFUSE, ["c39.vmdk", "max_chain_depth"])

# ---------------------------------------------------------------- VDI parents
for tag, target, why in HOST_NAMES:
    if tag == "fifo-out":
        continue
    name = "vdi-parent-" + tag
    d = cdir(name)
    vdi_child(os.path.join(d, "child.vdi"), target, b"\x01" * 16, SECRET_UUID)
    case(name, "child.vdi", REFUSE, ["child.vdi", target], ("parent-area",) if tag == "dotdot-up" else ())
for tag, target in (("abs", os.path.join(OUTSIDE, "secret.vdi")), ("dotdot", "../../outside/secret.vdi")):
    name = "vdi-parent-known-uuid-" + tag
    d = cdir(name)
    vdi_child(os.path.join(d, "child.vdi"), target, b"\x01" * 16, SECRET_UUID)
    named(target)
    case(name, "child.vdi", REFUSE, ["child.vdi", "outside"])
d = cdir("vdi-parent-symlink")
os.symlink(os.path.join(OUTSIDE, "secret.vdi"), os.path.join(d, "base.vdi"))
vdi_child(os.path.join(d, "child.vdi"), "base.vdi", b"\x01" * 16, SECRET_UUID)
case("vdi-parent-symlink", "child.vdi", REFUSE, ["child.vdi", "base.vdi"])
d = cdir("vdi-parent-self")
vdi_child(os.path.join(d, "child.vdi"), "child.vdi", b"\x01" * 16, b"\x01" * 16)
case("vdi-parent-self", "child.vdi", REFUSE, ["child.vdi", "loop"])
d = cdir("vdi-parent-loop2")
vdi_child(os.path.join(d, "a.vdi"), "b.vdi", b"\x0a" * 16, b"\x0b" * 16)
vdi_child(os.path.join(d, "b.vdi"), "a.vdi", b"\x0b" * 16, b"\x0a" * 16)
case("vdi-parent-loop2", "a.vdi", REFUSE, ["a.vdi", "loop"])
d = cdir("vdi-parent-hint-too-long")
vdi_child(os.path.join(d, "child.vdi"), "base.vdi", b"\x01" * 16, SECRET_UUID)
patch(os.path.join(d, "child.vdi"), 0x20c, "<I", 0xfffffff0)
case("vdi-parent-hint-too-long", "child.vdi", REFUSE, ["child.vdi", "parent location"])

# ---------------------------------------------------------------- VMDK sparse header fields
def sparse_case(name, field_patches, codes, needles, capacity=2048, flags=()):
    d = cdir(name)
    p = os.path.join(d, "disk.vmdk")
    info = sparse(p, g.descriptor("monolithicSparse", ['RW %d SPARSE "disk.vmdk"' % capacity]),
                  grains={0: b"\x11" * 65536, 3: b"\x33" * 65536}, capacity=capacity)
    for off, fmt, value in field_patches(info, p):
        patch(p, off, fmt, value)
    case(name, "disk.vmdk", codes, ["disk.vmdk"] + needles, flags)


CAP, GRAIN, DOFF, DSIZE, GTES, RGD, GD, OVERHEAD = 12, 20, 28, 36, 44, 48, 56, 64
sparse_case("vmdk-capacity-2p63-sectors", lambda i, p: [(CAP, "<Q", 1 << 63)], REFUSE, ["capacity", "offset 12"])
sparse_case("vmdk-capacity-times-512-overflows", lambda i, p: [(CAP, "<Q", (1 << 55) + 1)], REFUSE,
            ["capacity", "offset 12"])
sparse_case("vmdk-capacity-2p63-bytes", lambda i, p: [(CAP, "<Q", 1 << 54)], REFUSE, ["capacity", "grain directory"])
sparse_case("vmdk-capacity-max", lambda i, p: [(CAP, "<Q", (1 << 64) - 1)], REFUSE, ["capacity", "offset 12"])
for tag, v in (("0", 0), ("3", 3), ("1p40", 1 << 40), ("4m-sectors", 1 << 22), ("max", (1 << 64) - 1)):
    sparse_case("vmdk-grain-" + tag, lambda i, p, v=v: [(GRAIN, "<Q", v)], REFUSE, ["grain size", "offset 20"])
for tag, v in (("0", 0), ("513", 513), ("1p31", 1 << 31), ("max", 0xffffffff)):
    sparse_case("vmdk-gtes-per-gt-" + tag, lambda i, p, v=v: [(GTES, "<I", v)], REFUSE, ["grain table size", "offset 44"])
sparse_case("vmdk-gd-past-eof", lambda i, p: [(GD, "<Q", 1 << 20)], REFUSE, ["grain directory", "beyond the end"])
sparse_case("vmdk-gd-offset-overflows", lambda i, p: [(GD, "<Q", (1 << 63) + 5)], REFUSE,
            ["grain directory", "beyond the end"])
sparse_case("vmdk-descriptor-size-huge", lambda i, p: [(DSIZE, "<Q", 1 << 60)], REFUSE, ["embedded descriptor"])
sparse_case("vmdk-descriptor-offset-past-eof", lambda i, p: [(DOFF, "<Q", 1 << 30)], REFUSE, ["embedded descriptor"])
sparse_case("vmdk-descriptor-offset-overflows", lambda i, p: [(DOFF, "<Q", (1 << 63) + 1)], REFUSE,
            ["embedded descriptor"])
sparse_case("vmdk-version-4", lambda i, p: [(4, "<I", 4)], REFUSE, ["version", "offset 4"])
sparse_case("vmdk-overhead-huge", lambda i, p: [(OVERHEAD, "<Q", (1 << 64) - 1)], DAMAGED, ["metadata"])
sparse_case("vmdk-overhead-times-512-overflows", lambda i, p: [(OVERHEAD, "<Q", (1 << 55) + 1)], DAMAGED, ["metadata"])


def gd_entry(i, p, n=0):
    return i["gd_off"] * 512 + 4 * n


def first_gt(p, gd_sector):
    with open(p, "rb") as f:
        f.seek(gd_sector * 512)
        return struct.unpack("<I", f.read(4))[0]


# Grain tables and grains past the end of the file (both copies, so no redundant copy saves it).
sparse_case("vmdk-gt-past-eof", lambda i, p: [(gd_entry(i, p), "<I", 0x7fffffff),
                                              (i["rgd_off"] * 512, "<I", 0x7fffffff)], DAMAGED, ["beyond the end"])
sparse_case("vmdk-gte-past-eof", lambda i, p: [(first_gt(p, i["gd_off"]) * 512, "<I", 0xfffffff0),
                                               (first_gt(p, i["rgd_off"]) * 512, "<I", 0xfffffff0)], DAMAGED,
            ["beyond the end"])
sparse_case("vmdk-gte-in-header", lambda i, p: [(first_gt(p, i["gd_off"]) * 512, "<I", 2),
                                                (first_gt(p, i["rgd_off"]) * 512, "<I", 2)], DAMAGED, ["grain"])
# Every directory entry names the same table; every table entry the same grain:
# a 64 MiB disk from one grain (an amplification, not a layout any writer makes).
d = cdir("vmdk-shared-tables")
p = os.path.join(d, "disk.vmdk")
info = g.build_monolithic_sparse(p, 131072, {0: b"\x5a" * 65536}, g.descriptor(
    "monolithicSparse", ['RW 131072 SPARSE "disk.vmdk"']), write_rgd=False)
gt0 = first_gt(p, info["gd_off"])
with open(p, "rb") as f:
    f.seek(gt0 * 512)
    grain_sector = struct.unpack("<I", f.read(4))[0]
patch(p, info["gd_off"] * 512, "<%dI" % info["n_gts"], *([gt0] * info["n_gts"]))
patch(p, gt0 * 512, "<512I", *([grain_sector] * 512))
case("vmdk-shared-tables", "disk.vmdk", (0, 2, 0), ["disk.vmdk"])

# ---------------------------------------------------------------- stream-optimized grains that lie
def stream_case(name, edit, codes, needles):
    d = cdir(name)
    p = os.path.join(d, "disk.vmdk")
    g.build_stream_gd_at_end(p, 2048, {0: os.urandom(65536), 5: b"\x55" * 65536},
                             g.descriptor("streamOptimized", ['RW 2048 SPARSE "disk.vmdk"']))
    edit(p)
    case(name, "disk.vmdk", codes, ["disk.vmdk"] + needles)


def grain_marker_length(value):
    return lambda p: patch(p, 128 * 512 + 8, "<I", value)


def inflate_bomb(p):
    # The first grain (incompressible, ~64 KiB on disk) replaced by 4 MiB of
    # zeros deflated into a few KiB: more than a grain once inflated.
    bomb = zlib.compress(b"\0" * (4 << 20), 9)
    with open(p, "r+b") as f:
        f.seek(128 * 512 + 8)
        f.write(struct.pack("<I", len(bomb)) + bomb)


def footer_gd(value):
    return lambda p: patch(p, os.path.getsize(p) - 1024 + GD, "<Q", value)


stream_case("vmdk-stream-grain-length-huge", grain_marker_length(0x7fffffff), DAMAGED, ["grain"])
stream_case("vmdk-stream-grain-length-0", grain_marker_length(0), DAMAGED, ["grain"])
stream_case("vmdk-stream-inflate-bomb", inflate_bomb, DAMAGED, ["grain"])
stream_case("vmdk-stream-footer-gd-past-eof", footer_gd(1 << 40), REFUSE, ["grain directory"])
stream_case("vmdk-stream-footer-gd-at-end-again", footer_gd((1 << 64) - 1), REFUSE, ["footer"])
stream_case("vmdk-stream-capacity-2p63-bytes", lambda p: patch(p, CAP, "<Q", 1 << 54), REFUSE, ["capacity"])

# ---------------------------------------------------------------- ESX extents with lying headers
# (A directory longer than the capacity needs is legal: only the entries the capacity needs are read.)
for name, off, value, codes, needle in (("vmdk-cowd-gd-entries-huge", 24, 0xffffffff, WORKS, ""),
                                        ("vmdk-cowd-grain-0", 16, 0, REFUSE, "grain"),
                                        ("vmdk-cowd-capacity-huge", 12, 0xffffffff, REFUSE, "capacity")):
    d = cdir(name)
    esx.cowd(os.path.join(d, "disk.vmdk"), 4096, 8, "-", os.path.join(d, "expected.raw"), 1)
    os.remove(os.path.join(d, "expected.raw"))
    patch(os.path.join(d, "disk.vmdk"), off, "<I", value)
    case(name, "disk.vmdk", codes, ["disk.vmdk", needle] if needle else [])
for name, index, value, codes, needle in (("vmdk-sesparse-capacity-huge", 2, 1 << 62, REFUSE, "capacity"),
                                          ("vmdk-sesparse-gd-past-eof", 16, 1 << 40, REFUSE, "directory"),
                                          ("vmdk-sesparse-gd-size-huge", 17, 1 << 40, WORKS, "")):
    d = cdir(name)
    esx.sesparse(os.path.join(d, "disk.vmdk"), 65536, "-", os.path.join(d, "expected.raw"), 1)
    os.remove(os.path.join(d, "expected.raw"))
    patch(os.path.join(d, "disk.vmdk"), index * 8, "<Q", value)
    case(name, "disk.vmdk", codes, ["disk.vmdk", needle] if needle else [])

# ---------------------------------------------------------------- descriptor tricks
def desc_case(name, text, codes, needles, extra_files=None, flags=()):
    d = cdir(name)
    write(os.path.join(d, "disk.vmdk"), text)
    write(os.path.join(d, "disk-flat.bin"), b"\x66" * 65536)
    for fname, data in (extra_files or {}).items():
        write(os.path.join(d, fname), data)
    case(name, "disk.vmdk", codes, ["disk.vmdk"] + needles, flags)


ok_extent = 'RW 128 FLAT "disk-flat.bin" 0'
base_text = flat_descriptor([ok_extent])
desc_case("vmdk-descriptor-2mib", base_text + b"# " + b"x" * (2 * MIB) + b"\n", REFUSE, ["descriptor"])
desc_case("vmdk-descriptor-overlong-line", base_text + b"ddb.comment = \"" + b"y" * 900000 + b"\"\n", WORKS, [])
desc_case("vmdk-descriptor-too-many-lines", base_text + b"#\n" * 20000, REFUSE, ["too many lines"])
desc_case("vmdk-descriptor-nul-before-createtype", b"version=1\nCID=12345678\n\0" + base_text, REFUSE,
          ["vmdk probe"])
desc_case("vmdk-descriptor-nul-in-extent-name",
          base_text.replace(b'"disk-flat.bin"', b'"disk-flat.bin\0/../../outside/secret.bin"'), REFUSE, ["descriptor"])
desc_case("vmdk-descriptor-5000-extents", flat_descriptor(["RW 1 ZERO"] * 5000), REFUSE, ["too many extents"])
desc_case("vmdk-descriptor-4000-zero-extents", flat_descriptor(["RW 1 ZERO"] * 4000), WORKS, [])
desc_case("vmdk-descriptor-4000-flat-extents-one-file",
          flat_descriptor(['RW 1 FLAT "disk-flat.bin" %d' % i for i in range(4000)]), WORKS, [],
          {"disk-flat.bin": b"\x66" * (4000 * 512)})
desc_case("vmdk-descriptor-900-flat-files", flat_descriptor(['RW 1 FLAT "f%04d.bin" 0' % i for i in range(900)]),
          WORKS, [], {"f%04d.bin" % i: b"\x77" * 512 for i in range(900)})
desc_case("vmdk-descriptor-aliased-extents", flat_descriptor([ok_extent, ok_extent]), REFUSE, ["both name"])
desc_case("vmdk-descriptor-extent-sectors-overflow",
          flat_descriptor(["RW 36028797018963968 ZERO", "RW 36028797018963968 ZERO"]), REFUSE, ["overflows"])
desc_case("vmdk-descriptor-extent-sectors-2p63", flat_descriptor(["RW 9223372036854775808 ZERO"]), REFUSE,
          ["overflows"])
desc_case("vmdk-descriptor-flat-offset-overflows", flat_descriptor(['RW 128 FLAT "disk-flat.bin" 18014398509481984']),
          (0, 2, 0), [])
# (A flat file shorter than its extent reads as zeros past its end; check reports it.)
desc_case("vmdk-descriptor-flat-offset-past-file", flat_descriptor(['RW 128 FLAT "disk-flat.bin" 4096']), (0, 2, 0),
          [])
desc_case("vmdk-descriptor-duplicate-createtype",
          base_text.replace(b'createType="monolithicFlat"', b'createType="monolithicFlat"\ncreateType="fullDevice"'),
          REFUSE, ["duplicate key 'createType'"])
desc_case("vmdk-descriptor-duplicate-parent-hint",
          g.descriptor("monolithicSparse", [ok_extent], parent_cid="12345678", parent_hint="base.vmdk",
                       extra_header_lines=['parentFileNameHint="%s"' % out_secret]), REFUSE,
          ["duplicate key 'parentFileNameHint'"])
desc_case("vmdk-descriptor-duplicate-cid", base_text.replace(b"CID=1a2b3c4d", b"CID=1a2b3c4d\nCID=99999999"), REFUSE,
          ["duplicate key 'CID'"])
desc_case("vmdk-descriptor-createtype-sparse-with-flat", flat_descriptor([ok_extent], create_type="monolithicSparse"),
          WORKS, [])
desc_case("vmdk-descriptor-createtype-stream-with-flat", flat_descriptor([ok_extent], create_type="streamOptimized"),
          WORKS, [])
desc_case("vmdk-descriptor-createtype-unknown", flat_descriptor([ok_extent], create_type="bogusType"), WORKS, [])
desc_case("vmdk-descriptor-createtype-fulldevice-regular-file",
          flat_descriptor([ok_extent], create_type="fullDevice"), REFUSE, ["extent"])

# ---------------------------------------------------------------- VDI header fields that lie
def vdi_case(name, patches, codes, needles, legacy=False):
    d = cdir(name)
    p = os.path.join(d, "disk.vdi")
    g.build_vdi(p, 4 * MIB, {0: b"\x11" * MIB, 2: b"\x22" * MIB})
    for off, fmt, value in patches:
        patch(p, off, fmt, value)
    case(name, "disk.vdi", codes, ["disk.vdi"] + needles)


HSIZE, OFF_BLOCKS, OFF_DATA, DISK, BSIZE, BEXTRA, BLOCKS, ALLOC = 0x48, 0x154, 0x158, 0x170, 0x178, 0x17c, 0x180, 0x184
for tag, v in (("0", 0), ("3", 3), ("1p31", 1 << 31), ("512m", 512 << 20), ("max", 0xffffffff)):
    vdi_case("vdi-block-size-" + tag, [(BSIZE, "<I", v)], REFUSE, ["block size"])
for tag, v in (("0", 0), ("0x1000", 0x1000), ("max", 0xffffffff)):
    vdi_case("vdi-header-size-" + tag, [(HSIZE, "<I", v)], REFUSE, ["header size"])
vdi_case("vdi-disk-size-2p63", [(DISK, "<Q", 1 << 63)], REFUSE, ["disk size"])
vdi_case("vdi-disk-size-max", [(DISK, "<Q", (1 << 64) - 1)], REFUSE, ["disk size"])
vdi_case("vdi-blocks-huge", [(BLOCKS, "<I", 0xfffffff0), (DISK, "<Q", 0xfffffff0 << 20)], REFUSE, ["block map"])
vdi_case("vdi-blocks-cannot-hold-disk", [(DISK, "<Q", 1 << 40)], REFUSE, ["cannot hold"])
vdi_case("vdi-map-offset-past-eof", [(OFF_BLOCKS, "<I", 0xfffff000)], REFUSE, ["block map"])
vdi_case("vdi-map-offset-in-header", [(OFF_BLOCKS, "<I", 0x100)], REFUSE, ["block map offset"])
vdi_case("vdi-data-offset-past-eof", [(OFF_DATA, "<I", 0xfffff000)], DAMAGED, ["block"])
vdi_case("vdi-map-entry-past-eof", [(0x200, "<I", 0x00ffffff)], DAMAGED, ["block"])
# Two blocks sharing a data block read the same; check calls it an error (a write to one changes both).
vdi_case("vdi-map-entries-shared", [(0x200 + 8, "<I", 0)], (0, 2, 0), [])
vdi_case("vdi-allocated-count-huge", [(ALLOC, "<I", 0xffffffff)], (0, 2, 0), ["allocated"])
vdi_case("vdi-block-extra-huge", [(BEXTRA, "<I", 1 << 31)], REFUSE, ["extra"])
vdi_case("vdi-version-2", [(0x44, "<I", 0x00020000)], REFUSE, ["version"])
vdi_case("vdi-type-99", [(0x4c, "<I", 99)], REFUSE, ["type"])

with open(os.path.join(WORK, "manifest.tsv"), "w") as f:
    f.write("\n".join(manifest) + "\n")
with open(os.path.join(WORK, "forbidden.txt"), "w") as f:
    f.write("\n".join(sorted(forbidden)) + "\n")
print("%d hostile cases in %s" % (len(manifest), CASES))
