"""Disk I/O through Python, checked by qemu-img (compare) and qemu-io (write)."""
import random
import threading

import pytest

import vdkit
from conftest import WRITABLE_FORMATS, qemu_json, require_tools, run

MiB = 1 << 20


def random_writes(rng, size, count):
    """(offset, data) pairs: unaligned, some crossing 1 MiB block edges."""
    out = []
    for _ in range(count):
        length = rng.choice([1, 511, 4096, 65536, 200000])
        offset = rng.randrange(0, size - length)
        out.append((offset, rng.randbytes(length)))
    return out


@pytest.mark.parametrize("fmt", WRITABLE_FORMATS)
def test_writes_match_a_raw_file_written_alongside(lib, tmp_path, rng, fmt):
    require_tools("qemu-img")
    size = 16 * MiB
    image, reference = tmp_path / ("disk." + fmt), tmp_path / "reference.raw"
    with open(reference, "wb") as ref:
        ref.truncate(size)
    with lib.create(image, fmt, size) as disk, open(reference, "r+b") as ref:
        assert disk.size == size and disk.writable
        for offset, data in random_writes(rng, size, 40):
            assert disk.write(offset, data) == len(data)
            ref.seek(offset)
            ref.write(data)
        # Other bytes-like objects than bytes.
        disk.write(3 * MiB + 7, bytearray(b"\x5a" * 1000))
        disk.write(9 * MiB, memoryview(b"abcdefgh")[2:6])
        ref.seek(3 * MiB + 7)
        ref.write(b"\x5a" * 1000)
        ref.seek(9 * MiB)
        ref.write(b"cdef")
        # Zeroed ranges read as zero, over written data and across blocks.
        for offset, length in [(rng.randrange(0, 4 * MiB), 70000), (MiB - 100, 300), (12 * MiB, 2 * MiB)]:
            disk.write_zeroes(offset, length)
            ref.seek(offset)
            ref.write(bytes(length))
        disk.flush()
    result = run("qemu-img", "compare", "-f", fmt, "-F", "raw", image, reference, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # And vdkit reads back what it wrote, whole.
    with lib.open(image) as disk:
        assert disk.read(0, size) == reference.read_bytes()


@pytest.mark.parametrize("fmt", ["vdi", "vmdk"])
def test_reads_what_qemu_io_wrote(lib, tmp_path, rng, fmt):
    require_tools("qemu-img", "qemu-io")
    size = 8 * MiB
    image, flat = tmp_path / ("disk." + fmt), tmp_path / "flat.raw"
    run("qemu-img", "create", "-q", "-f", fmt, image, str(size))
    for _ in range(12):
        pattern = rng.randrange(1, 256)
        length = rng.choice([512, 4096, 65536, 1 << 20])
        offset = rng.randrange(0, (size - length) // 512) * 512
        run("qemu-io", "-f", fmt, "-c", "write -P %d %d %d" % (pattern, offset, length), image)
    run("qemu-img", "convert", "-f", fmt, "-O", "raw", image, flat)
    expected = flat.read_bytes()
    with lib.open(image, fmt) as disk:
        assert disk.size == size
        assert disk.read(0, size) == expected
        for _ in range(20):
            offset = rng.randrange(0, size)
            length = rng.randrange(0, min(300000, size - offset) + 1)
            assert disk.read(offset, length) == expected[offset:offset + length]
            buf = bytearray(length)
            assert disk.readinto(offset, buf) == length
            assert bytes(buf) == expected[offset:offset + length]


def test_discard_gives_blocks_back(lib, tmp_path):
    require_tools("qemu-img")
    image = tmp_path / "disk.vdi"
    with lib.create(image, "vdi", 8 * MiB) as disk:
        disk.write(0, b"\x11" * (4 * MiB))
        disk.discard(MiB, 2 * MiB)  # whole 1 MiB VDI blocks
        disk.flush()
        assert disk.read(MiB, 2 * MiB) == bytes(2 * MiB)
    # qemu-img sees the discarded blocks as not holding data any more.
    data = [(e["start"], e["length"]) for e in qemu_json("map", "-f", "vdi", image) if e["data"]]
    assert data == [(0, MiB), (3 * MiB, MiB)], data


def test_read_only_and_range_errors(lib, tmp_path):
    image = tmp_path / "disk.vdi"
    lib.create(image, "vdi", MiB).close()
    with lib.open(image) as disk:
        assert not disk.writable
        with pytest.raises(vdkit.ReadOnlyError) as err:
            disk.write(0, b"x")
        assert err.value.status == vdkit.Status.READ_ONLY
        with pytest.raises(vdkit.OutOfRangeError):
            disk.read(MiB - 1, 2)
        with pytest.raises(vdkit.OutOfRangeError):  # no 2**62-byte buffer is allocated first
            disk.read(0, 1 << 62)
        with pytest.raises(vdkit.OutOfRangeError):
            disk.readinto(MiB, bytearray(1))
        with pytest.raises(BufferError):  # readinto needs a writable buffer
            disk.readinto(0, b"immutable")
    # After close every call fails with an Error, not a crash.
    disk = lib.open(image)
    disk.close()
    with pytest.raises(vdkit.Error):
        disk.read(0, 1)


def test_threads_read_one_disk_concurrently(lib, tmp_path, rng):
    size = 4 * MiB
    image = tmp_path / "disk.vmdk"
    content = rng.randbytes(size)
    with lib.create(image, "vmdk", size) as disk:
        disk.write(0, content)
    errors = []
    with lib.open(image) as disk:
        def reader(seed):
            r = random.Random(seed)
            try:
                for _ in range(50):
                    offset = r.randrange(0, size - 70000)
                    if disk.read(offset, 70000) != content[offset:offset + 70000]:
                        errors.append("mismatch at %d" % offset)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=reader, args=(rng.random(),)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
