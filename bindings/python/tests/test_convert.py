"""Library.convert / Library.copy: content checked by qemu-img compare; the
progress callback, cancel (a False answer, vdkit.Cancel, an exception in the
callback) and the no-replace rule."""
import hashlib
import threading

import pytest

import vdkit
from conftest import require_tools, run

MiB = 1 << 20


def make_source(lib, path, fmt, rng, size=24 * MiB):
    with lib.create(path, fmt, size) as disk:
        for _ in range(24):
            offset = rng.randrange(0, size - 200000)
            disk.write(offset, rng.randbytes(rng.choice([4096, 65536, 200000])))
    return path


@pytest.mark.parametrize("src_fmt,dst_fmt", [("vdi", "vmdk"), ("vmdk", "vdi"), ("vdi", "raw"), ("raw", "vmdk")])
def test_convert_matches_qemu_img_compare(lib, tmp_path, rng, src_fmt, dst_fmt):
    require_tools("qemu-img")
    src = make_source(lib, tmp_path / ("src." + src_fmt), src_fmt, rng)
    dst = tmp_path / ("dst." + dst_fmt)
    calls = []
    lib.convert(src, dst, format=dst_fmt, progress=lambda done, total: calls.append((done, total)))
    result = run("qemu-img", "compare", "-f", src_fmt, "-F", dst_fmt, src, dst, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls, "progress was never called"
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and calls[-1][0] == calls[-1][1] > 0
    # Library::convert reports (0, 0) at its checkpoints before the copy
    # has begun (the total is not known yet); after that the total is fixed.
    started = [t for d, t in calls if (d, t) != (0, 0)]
    assert started and len(set(started)) == 1


def test_convert_with_options_and_disk_source(lib, tmp_path, rng):
    require_tools("qemu-img")
    src = make_source(lib, tmp_path / "src.vdi", "vdi", rng)
    dst = tmp_path / "dst.vmdk"
    with lib.open(src) as disk:
        lib.convert(disk, dst, "vmdk", options={"subformat": "streamOptimized"})
    info = run("qemu-img", "info", "--output=json", dst).stdout
    assert "streamOptimized" in info
    assert run("qemu-img", "compare", src, dst, check=False).returncode == 0


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_existing_target_is_never_replaced(lib, tmp_path, rng):
    src = make_source(lib, tmp_path / "src.vdi", "vdi", rng)
    dst = tmp_path / "dst.vmdk"
    dst.write_bytes(b"precious")
    with pytest.raises(vdkit.ExistsError) as err:
        lib.convert(src, dst, "vmdk")
    assert err.value.status == vdkit.Status.EXISTS and str(dst) in err.value.message
    assert dst.read_bytes() == b"precious"


def cancelled_leaves_nothing(tmp_path, dst):
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.vdi"]


def test_progress_false_cancels_and_removes_the_target(lib, tmp_path, rng):
    src = make_source(lib, tmp_path / "src.vdi", "vdi", rng)
    dst = tmp_path / "dst.vmdk"
    calls = []

    def progress(done, total):
        calls.append(done)
        return len(calls) < 2  # stop at the second report

    with pytest.raises(vdkit.CancelledError) as err:
        lib.convert(src, dst, "vmdk", progress=progress, threads=1)
    assert err.value.status == vdkit.Status.CANCELLED
    assert len(calls) == 2
    cancelled_leaves_nothing(tmp_path, dst)


def test_exception_in_progress_is_raised_and_target_removed(lib, tmp_path, rng):
    src = make_source(lib, tmp_path / "src.vdi", "vdi", rng)
    dst = tmp_path / "dst.vmdk"

    def progress(done, total):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        lib.convert(src, dst, "vmdk", progress=progress)
    cancelled_leaves_nothing(tmp_path, dst)


def test_cancel_token_from_another_thread(lib, tmp_path, rng):
    src = make_source(lib, tmp_path / "src.vdi", "vdi", rng)
    dst = tmp_path / "dst.vmdk"
    cancel = vdkit.Cancel()
    reported = threading.Event()
    # The callback runs on a copy worker while this thread waits in convert:
    # it must get the GIL (convert released it) and the other thread must
    # be able to run meanwhile.
    def progress(done, total):
        reported.set()
        threading.Thread(target=cancel.cancel).start()
        while not cancel.cancelled:
            pass
        return True

    with pytest.raises(vdkit.CancelledError):
        lib.convert(src, dst, "vmdk", progress=progress, cancel=cancel, threads=1)
    assert reported.is_set() and cancel.cancelled
    cancelled_leaves_nothing(tmp_path, dst)
    # A token already set stops a copy before it writes.
    with lib.open(src) as s, lib.create(tmp_path / "into.vdi", "vdi", s.size) as d:
        with pytest.raises(vdkit.CancelledError):
            lib.copy(s, d, cancel=cancel)
        assert list(st for _, _, st in d.block_status() if st == vdkit.BlockState.DATA) == []


def test_copy_into_an_existing_disk(lib, tmp_path, rng):
    require_tools("qemu-img")
    src = make_source(lib, tmp_path / "src.vmdk", "vmdk", rng)
    dst = tmp_path / "dst.raw"
    dst.write_bytes(b"\xff" * (32 * MiB))  # larger, and not zero: zero ranges must be written
    with lib.open(src) as s, lib.open(dst, "raw", writable=True) as d:
        lib.copy(s, d)
    head = tmp_path / "head.raw"
    run("qemu-img", "convert", "-O", "raw", src, head)
    content = dst.read_bytes()
    assert content[:24 * MiB] == head.read_bytes()
    assert content[24 * MiB:] == b"\xff" * (8 * MiB)


def test_ctrl_c_cancels_a_convert(lib, tmp_path, rng):
    import os
    import signal
    import time
    src = make_source(lib, tmp_path / "src.vdi", "vdi", rng)
    dst = tmp_path / "dst.vmdk"
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # handled by the main thread, which waits in convert
        time.sleep(0.05)
        return True

    with pytest.raises(KeyboardInterrupt):
        lib.convert(src, dst, "vmdk", progress=progress, threads=1, options={"subformat": "monolithicSparse"})
    assert len(calls) < 24  # stopped long before the end (24 source writes, 1 MiB reports)
    cancelled_leaves_nothing(tmp_path, dst)


def test_overwrite_replaces_a_regular_file_only_when_asked(lib, tmp_path, rng):
    require_tools("qemu-img")
    src = make_source(lib, tmp_path / "src.vdi", "vdi", rng)
    dst = tmp_path / "dst.vmdk"
    dst.write_bytes(b"old")
    lib.convert(src, dst, "vmdk", overwrite=True, verify=True)
    assert run("qemu-img", "compare", src, dst, check=False).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.vmdk", "src.vdi"]  # no staging left
    target = tmp_path / "dir.vmdk"
    target.mkdir()
    with pytest.raises(vdkit.Error):
        lib.convert(src, target, "vmdk", overwrite=True)
    assert target.is_dir() and not any(target.iterdir())
    with lib.open(src) as disk:
        with pytest.raises(ValueError):
            lib.convert(disk, tmp_path / "other.vmdk", "vmdk", overwrite=True)
    assert not (tmp_path / "other.vmdk").exists()


def test_verify_with_an_open_disk_source(lib, tmp_path, rng):
    require_tools("qemu-img")
    src = make_source(lib, tmp_path / "src.vmdk", "vmdk", rng)
    dst = tmp_path / "dst.vdi"
    with lib.open(src) as disk:
        lib.convert(disk, dst, "vdi", verify=True, threads=2)
    assert run("qemu-img", "compare", src, dst, check=False).returncode == 0
