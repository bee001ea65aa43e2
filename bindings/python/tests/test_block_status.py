"""Disk.block_status(): a lazy iterator of (offset, length, BlockState) runs,
checked against qemu-img map."""
import types

import pytest

import vdkit
from conftest import qemu_json, require_tools, run

MiB = 1 << 20


def merged(ranges):
    out = []
    for start, length in ranges:
        if out and out[-1][1] == start:
            out[-1][1] += length
        else:
            out.append([start, start + length])
    return out


def check_tiling(runs, start, end):
    """The runs cover [start, end) in order, without gaps or overlaps."""
    pos = start
    for offset, length, state in runs:
        assert offset == pos and length > 0
        assert isinstance(state, vdkit.BlockState)
        pos += length
    assert pos == end


@pytest.mark.parametrize("fmt", ["vdi", "vmdk"])
def test_data_runs_match_qemu_img_map(lib, tmp_path, rng, fmt):
    require_tools("qemu-img", "qemu-io")
    size = 32 * MiB
    image = tmp_path / ("disk." + fmt)
    run("qemu-img", "create", "-q", "-f", fmt, image, str(size))
    for _ in range(10):
        offset = rng.randrange(0, size // 65536) * 65536
        run("qemu-io", "-f", fmt, "-c", "write -P 7 %d 65536" % offset, image)
    theirs = merged((e["start"], e["length"]) for e in qemu_json("map", "-f", fmt, image) if e["data"])
    with lib.open(image, fmt) as disk:
        runs = list(disk.block_status())
        check_tiling(runs, 0, size)
        ours = merged((o, n) for o, n, s in runs if s == vdkit.BlockState.DATA)
        assert ours == theirs
        # Unallocated runs read as zero.
        for offset, length, state in runs:
            if state != vdkit.BlockState.DATA:
                assert disk.read(offset, min(length, MiB)) == bytes(min(length, MiB))


def test_iteration_is_lazy_and_bounded(lib, tmp_path):
    image = tmp_path / "disk.vdi"
    with lib.create(image, "vdi", 8 * MiB) as disk:
        disk.write(2 * MiB, b"\x01" * MiB)
        disk.write_zeroes(5 * MiB, MiB)
        it = disk.block_status(MiB + 5, 3 * MiB)
        assert not isinstance(it, (list, tuple)) and iter(it) is it
        first = next(it)
        assert first == (MiB + 5, MiB - 5, vdkit.BlockState.UNALLOCATED)
        rest = list(it)
        check_tiling([first] + rest, MiB + 5, 4 * MiB + 5)
        assert rest[0][2] == vdkit.BlockState.DATA
        assert list(it) == []  # exhausted
        states = {s for _, _, s in disk.block_status(5 * MiB, MiB)}
        assert vdkit.BlockState.DATA not in states
        assert list(disk.block_status(8 * MiB)) == []
        with pytest.raises(vdkit.OutOfRangeError):
            list(disk.block_status(7 * MiB, 2 * MiB))


def test_chain_runs_fall_through_to_the_parent(lib, tmp_path):
    base, top = tmp_path / "base.vmdk", tmp_path / "top.vmdk"
    with lib.create(base, "vmdk", 4 * MiB) as disk:
        disk.write(0, b"\x02" * MiB)
    with lib.create(top, "vmdk", parent=base) as disk:
        assert disk.size == 4 * MiB and disk.image_count == 2
        disk.write(3 * MiB, b"\x03" * 65536)
    with lib.open(top) as disk:
        runs = list(disk.block_status())
        check_tiling(runs, 0, 4 * MiB)
        data = merged((o, n) for o, n, s in runs if s == vdkit.BlockState.DATA)
        assert data == [[0, MiB], [3 * MiB, 3 * MiB + 65536]]
