"""A ctypes client that uses libvixDiskLib the way nbdkit's vddk plugin does.

It finds the library under LIBDIR/lib64 by the versioned names that plugin
tries, checks every function the plugin requires or optionally uses is
exported, and copies a disk: InitEx -> AllocateConnectParams -> ConnectEx
(read-only) -> Open -> GetInfo -> QueryAllocatedBlocks -> Read of each
allocated block -> Close -> Disconnect -> Exit, writing a raw image that
vix_test.sh compares with qemu-img's. It also checks the error table of
docs/compat.md against the library, and refusals a VDDK client meets.

    python3 vddk_client_test.py LIBDIR DISK OUT.raw COMPAT_MD
"""
import ctypes
import os
import re
import sys

LIBDIR, DISK, OUT, COMPAT_MD = sys.argv[1:5]
failures = []


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        failures.append(what)


# nbdkit's vddk plugin: <libdir>/lib64/libvixDiskLib.so.N, newest major first.
lib = None
for major in (9, 8, 7, 6, 5):
    path = os.path.join(LIBDIR, "lib64", "libvixDiskLib.so.%d" % major)
    if os.path.exists(path):
        lib = ctypes.CDLL(path)
        print("loaded", path)
        break
check(lib is not None, "no libvixDiskLib.so.N under %s/lib64" % LIBDIR)
if lib is None:
    sys.exit(1)

REQUIRED = ["VixDiskLib_InitEx", "VixDiskLib_Exit", "VixDiskLib_GetErrorText", "VixDiskLib_FreeErrorText",
            "VixDiskLib_FreeConnectParams", "VixDiskLib_ConnectEx", "VixDiskLib_Open",
            "VixDiskLib_GetTransportMode", "VixDiskLib_Close", "VixDiskLib_Disconnect", "VixDiskLib_GetInfo",
            "VixDiskLib_FreeInfo", "VixDiskLib_Read", "VixDiskLib_Write"]
OPTIONAL = ["VixDiskLib_Flush", "VixDiskLib_QueryAllocatedBlocks", "VixDiskLib_FreeBlockList",
            "VixDiskLib_AllocateConnectParams", "VixDiskLib_ReadAsync", "VixDiskLib_WriteAsync",
            "VixDiskLib_Wait", "VixDiskLib_PrepareForAccess", "VixDiskLib_EndAccess", "VixDiskLib_Cleanup"]
for name in REQUIRED + OPTIONAL:
    check(hasattr(lib, name), "%s is not exported" % name)

VixError = ctypes.c_uint64
LogFunc = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)
log_calls = []
log = LogFunc(lambda fmt, args: log_calls.append(fmt))


class Geometry(ctypes.Structure):
    _fields_ = [("cylinders", ctypes.c_uint32), ("heads", ctypes.c_uint32), ("sectors", ctypes.c_uint32)]


class Info(ctypes.Structure):
    _fields_ = [("biosGeo", Geometry), ("physGeo", Geometry), ("capacity", ctypes.c_uint64),
                ("adapterType", ctypes.c_int), ("numLinks", ctypes.c_int),
                ("parentFileNameHint", ctypes.c_char_p), ("uuid", ctypes.c_char_p)]


class Block(ctypes.Structure):
    _fields_ = [("offset", ctypes.c_uint64), ("length", ctypes.c_uint64)]


class BlockList(ctypes.Structure):
    _fields_ = [("numBlocks", ctypes.c_uint32), ("blocks", Block * 1)]


# nbdkit's vddk-structs.h layout of VixDiskLibConnectParams (VDDK 6.7).
class ConnectParams(ctypes.Structure):
    _fields_ = [("vmxSpec", ctypes.c_char_p), ("serverName", ctypes.c_char_p), ("thumbPrint", ctypes.c_char_p),
                ("reserved1", ctypes.c_long), ("credType", ctypes.c_int),
                ("creds", ctypes.c_void_p * 3), ("port", ctypes.c_uint32), ("nfcHostPort", ctypes.c_uint32),
                ("reserved3", ctypes.c_char_p), ("reserved4", ctypes.c_char * 8), ("reserved5", ctypes.c_void_p),
                ("spec", ctypes.c_void_p * 3), ("specType", ctypes.c_int)]


lib.VixDiskLib_InitEx.restype = VixError
lib.VixDiskLib_InitEx.argtypes = [ctypes.c_uint32, ctypes.c_uint32, LogFunc, LogFunc, LogFunc, ctypes.c_char_p,
                                  ctypes.c_char_p]
lib.VixDiskLib_AllocateConnectParams.restype = ctypes.POINTER(ConnectParams)
lib.VixDiskLib_FreeConnectParams.argtypes = [ctypes.POINTER(ConnectParams)]
lib.VixDiskLib_ConnectEx.restype = VixError
lib.VixDiskLib_ConnectEx.argtypes = [ctypes.POINTER(ConnectParams), ctypes.c_char, ctypes.c_char_p,
                                     ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
lib.VixDiskLib_Open.restype = VixError
lib.VixDiskLib_Open.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_void_p)]
lib.VixDiskLib_GetInfo.restype = VixError
lib.VixDiskLib_GetInfo.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(Info))]
lib.VixDiskLib_FreeInfo.argtypes = [ctypes.POINTER(Info)]
lib.VixDiskLib_GetTransportMode.restype = ctypes.c_char_p
lib.VixDiskLib_GetTransportMode.argtypes = [ctypes.c_void_p]
lib.VixDiskLib_QueryAllocatedBlocks.restype = VixError
lib.VixDiskLib_QueryAllocatedBlocks.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
                                                ctypes.POINTER(ctypes.POINTER(BlockList))]
lib.VixDiskLib_FreeBlockList.restype = VixError
lib.VixDiskLib_FreeBlockList.argtypes = [ctypes.POINTER(BlockList)]
lib.VixDiskLib_Read.restype = VixError
lib.VixDiskLib_Read.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p]
lib.VixDiskLib_Write.restype = VixError
lib.VixDiskLib_Write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p]
lib.VixDiskLib_Close.restype = VixError
lib.VixDiskLib_Close.argtypes = [ctypes.c_void_p]
lib.VixDiskLib_Disconnect.restype = VixError
lib.VixDiskLib_Disconnect.argtypes = [ctypes.c_void_p]
lib.VixDiskLib_GetErrorText.restype = ctypes.c_void_p
lib.VixDiskLib_GetErrorText.argtypes = [VixError, ctypes.c_char_p]
lib.VixDiskLib_FreeErrorText.argtypes = [ctypes.c_void_p]
lib.VixDiskLib_VdkitErrorFromStatus.restype = VixError
lib.VixDiskLib_VdkitErrorFromStatus.argtypes = [ctypes.c_uint32]


def error_text(err):
    p = lib.VixDiskLib_GetErrorText(err, None)
    text = ctypes.string_at(p).decode()
    lib.VixDiskLib_FreeErrorText(p)
    return text


def vix(err, what):
    if err != 0:
        print("FAIL: %s: error %d: %s" % (what, err, error_text(err)))
        sys.exit(1)


# Before InitEx nothing opens.
conn = ctypes.c_void_p()
err = lib.VixDiskLib_ConnectEx(None, b"\x01", None, None, ctypes.byref(conn))
check(err == 16001, "ConnectEx before InitEx gives VIX_E_DISK_NOINIT, not %d" % err)

vix(lib.VixDiskLib_InitEx(6, 5, log, log, log, LIBDIR.encode(), None), "InitEx")
err = lib.VixDiskLib_InitEx(9, 0, log, log, log, None, None)
check(err == 6, "InitEx of a newer major gives VIX_E_NOT_SUPPORTED, not %d" % err)

params = lib.VixDiskLib_AllocateConnectParams()
check(bool(params), "AllocateConnectParams returned NULL")

# A vSphere login is refused, naming the server (nbdkit's remote case).
remote = lib.VixDiskLib_AllocateConnectParams()
remote.contents.serverName = b"esxi.example.com"
remote.contents.vmxSpec = b"moref=vm-42"
err = lib.VixDiskLib_ConnectEx(remote, b"\x01", b"snapshot-7", b"nbdssl:nbd", ctypes.byref(conn))
check(err == 18000, "a vSphere ConnectEx gives VIX_E_CANNOT_CONNECT_TO_HOST, not %d" % err)
check("esxi.example.com" in error_text(err), "the error text names the server")
lib.VixDiskLib_FreeConnectParams(remote)

vix(lib.VixDiskLib_ConnectEx(params, b"\x01", None, b"file:nbd", ctypes.byref(conn)), "ConnectEx")
disk = ctypes.c_void_p()
vix(lib.VixDiskLib_Open(conn, DISK.encode(), 4, ctypes.byref(disk)), "Open")  # VIXDISKLIB_FLAG_OPEN_READ_ONLY
check(lib.VixDiskLib_GetTransportMode(disk) == b"file", "transport mode")
info = ctypes.POINTER(Info)()
vix(lib.VixDiskLib_GetInfo(disk, ctypes.byref(info)), "GetInfo")
capacity = info.contents.capacity
check(capacity > 0, "capacity")
lib.VixDiskLib_FreeInfo(info)

buf = ctypes.create_string_buffer(512)
err = lib.VixDiskLib_Write(disk, 0, 1, buf)
check(err == 11, "a write on a read-only connection gives VIX_E_FILE_READ_ONLY, not %d" % err)
err = lib.VixDiskLib_Read(disk, capacity, 1, buf)
check(err == 16007, "a read past the end gives VIX_E_DISK_OUTOFRANGE, not %d" % err)
check("pass the end" in error_text(err), "the error text says why")

# Copy the allocated blocks, as nbdkit's extents + pread do.
CHUNK = 128
out = bytearray(capacity * 512)
start, allocated = 0, 0
while start < capacity:
    n = min(capacity - start, CHUNK * 4096)
    n = -(-n // CHUNK) * CHUNK
    blocks = ctypes.POINTER(BlockList)()
    vix(lib.VixDiskLib_QueryAllocatedBlocks(disk, start, n, CHUNK, ctypes.byref(blocks)), "QueryAllocatedBlocks")
    count = blocks.contents.numBlocks
    array = ctypes.cast(ctypes.addressof(blocks.contents.blocks), ctypes.POINTER(Block * max(count, 1))).contents
    for i in range(count):
        off, length = array[i].offset, min(array[i].length, capacity - array[i].offset)
        check(off % CHUNK == 0 and off >= start, "block %d is not chunk-aligned inside the query" % i)
        data = ctypes.create_string_buffer(length * 512)
        vix(lib.VixDiskLib_Read(disk, off, length, data), "Read")
        out[off * 512:(off + length) * 512] = data.raw
        allocated += length
    vix(lib.VixDiskLib_FreeBlockList(blocks), "FreeBlockList")
    start += n
check(0 < allocated < capacity, "a sparse disk has some but not all sectors allocated (%d of %d)"
      % (allocated, capacity))
with open(OUT, "wb") as f:
    f.write(out)

vix(lib.VixDiskLib_Close(disk), "Close")
vix(lib.VixDiskLib_Disconnect(conn), "Disconnect")
lib.VixDiskLib_FreeConnectParams(params)

# docs/compat.md's error table is what the library does, for every status.
rows = re.findall(r"^\| `VDKIT_E?_?(\w+)` \((\d+)\) \| `(VIX_\w+)` \((\d+)\) \|", open(COMPAT_MD).read(), re.M)
check(len(rows) >= 20, "docs/compat.md lists %d status rows" % len(rows))
seen = set()
for name, status, vix_name, code in rows:
    seen.add(int(status))
    got = lib.VixDiskLib_VdkitErrorFromStatus(int(status))
    check(got == int(code), "status %s (%s) maps to %d, docs/compat.md says %s (%s)"
          % (name, status, got, vix_name, code))
check(seen == set(range(20)), "docs/compat.md misses statuses %s" % sorted(set(range(20)) - seen))
lib.VixDiskLib_Exit()
check(len(log_calls) > 0, "the log callback was never called")

if failures:
    sys.exit(1)
print("ctypes client: all checks passed")
