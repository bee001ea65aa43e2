"""Errors are vdkit.Error exceptions carrying the status code (as vdkit/status.h
numbers it, read here from the header itself) and the message."""
import os
import re
import sys

import pytest

import vdkit

HEADER = os.path.join(os.environ.get("VDKIT_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../../..")),
                      "sdk/include/vdkit/status.h")


def header_codes():
    codes = {}
    for line in open(HEADER):
        m = re.match(r"#define (VDKIT_(?:OK|E_\w+))\s+(\d+)u", line)
        if m:
            codes[m.group(1)] = int(m.group(2))
    assert len(codes) > 10
    return codes


def test_status_enum_and_classes_follow_the_header():
    codes = header_codes()
    assert {m.value for m in vdkit.Status} == set(codes.values())
    for c_name, code in codes.items():
        member = vdkit.Status(code)
        assert c_name.endswith(member.name)
        if code == 0:
            continue
        cls = vdkit.errors.ERROR_CLASSES[code]
        assert issubclass(cls, vdkit.Error) and getattr(vdkit, cls.__name__) is cls
        e = vdkit.errors.from_status(code, "what failed")
        assert type(e) is cls and e.status == code and e.status_name == c_name
        assert str(e) == "what failed (%s)" % c_name
    # Names that would hide a builtin are not used.
    assert vdkit.IoError is vdkit.errors.ERROR_CLASSES[codes["VDKIT_E_IO"]]
    assert not hasattr(vdkit, "PermissionError") and not hasattr(vdkit, "IOError")


def test_missing_file(lib, tmp_path):
    missing = tmp_path / "missing.vdi"
    with pytest.raises(vdkit.NotFoundError) as err:
        lib.open(missing)
    e = err.value
    assert isinstance(e, vdkit.Error)
    assert e.status == vdkit.Status.NOT_FOUND == header_codes()["VDKIT_E_NOT_FOUND"]
    assert e.status.name == "NOT_FOUND" and e.status_name == "VDKIT_E_NOT_FOUND"
    assert str(missing) in e.message


def test_damaged_image_names_what_and_where(lib, tmp_path):
    image = tmp_path / "disk.vdi"
    lib.create(image, "vdi", 1 << 20).close()
    data = bytearray(image.read_bytes())
    data[0x154:0x158] = (1 << 31).to_bytes(4, "little")  # offBlocks far beyond the file (formats.md, VDI header)
    image.write_bytes(bytes(data))
    with pytest.raises(vdkit.Error) as err:
        lib.open(image, "vdi")
    assert err.value.status in (vdkit.Status.CORRUPT, vdkit.Status.NOT_SUPPORTED)
    assert "disk.vdi" in err.value.message


def test_bad_arguments(lib, tmp_path):
    with pytest.raises(vdkit.NotFoundError):
        lib.create(tmp_path / "x.img", "no-such-format", 1 << 20)
    with pytest.raises(vdkit.ConfigError) as err:
        lib.create(tmp_path / "x.vmdk", "vmdk", 1 << 20, {"no_such_key": "1"})
    assert "no_such_key" in err.value.message
    with pytest.raises(TypeError):
        lib.create(tmp_path / "y.vmdk", "vmdk", 1 << 20, {"subformat": 1.5})
    with pytest.raises(vdkit.InvalidArgumentError):
        vdkit.Library(log_level="loud")
    assert not (tmp_path / "x.img").exists() and not (tmp_path / "x.vmdk").exists()


def test_log_callback_receives_messages(tmp_path, monkeypatch):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.so").write_bytes(b"not an ELF file")
    seen = []
    lib = vdkit.Library(search_environment=False, plugin_paths=[plugins],
                        log=lambda level, message: seen.append((level, message)))
    assert "vdi" in lib.formats()  # the installed plugins still load
    assert any(level == "warning" and "broken.so" in message for level, message in seen), seen
    # A callback that raises is reported as unraisable; the library goes on.
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    lib = vdkit.Library(search_environment=False, plugin_paths=[plugins], log=lambda level, message: 1 / 0)
    assert "vdi" in lib.formats()
    assert unraisable and isinstance(unraisable[0].exc_value, ZeroDivisionError)
