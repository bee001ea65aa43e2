"""Disk.info(): one ImageInfo per image of the chain, checked against qemu-img
info and the VDI header (formats.md: uuidCreate at 0x188, IPRT byte order)."""
import os
import uuid

import pytest

import vdkit
from conftest import qemu_json, require_tools, run

MiB = 1 << 20


def vdi_uuids(path):
    header = open(path, "rb").read(0x1C8)
    return [uuid.UUID(bytes_le=header[o:o + 16]) for o in (0x188, 0x198, 0x1A8, 0x1B8)]


def test_vmdk_chain_made_by_qemu_img(lib, tmp_path):
    require_tools("qemu-img")
    base, mid, top = (tmp_path / n for n in ("base.vmdk", "mid.vmdk", "top.vmdk"))
    run("qemu-img", "create", "-q", "-f", "vmdk", base, "10M")
    run("qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", mid)
    run("qemu-img", "create", "-q", "-f", "vmdk", "-b", "mid.vmdk", "-F", "vmdk", top)
    chain = qemu_json("info", "--backing-chain", top)  # top first
    with lib.open(top) as disk:
        infos = disk.info()
        assert disk.image_count == len(infos) == 3
        for ours, theirs in zip(infos, reversed(chain)):  # ours: base first
            assert os.path.samefile(ours.location, theirs["filename"])
            assert ours.format == theirs["format"] == "vmdk"
            assert ours.virtual_size == theirs["virtual-size"]
            assert ours.has_parent == ("backing-filename" in theirs)
            assert ours.parent == theirs.get("backing-filename")
            assert ours.file_length == os.path.getsize(ours.location)
            assert ours.file_size is not None and ours.file_size <= os.stat(ours.location).st_blocks * 512 + 4096
        assert repr(infos[2]).startswith("<vdkit.ImageInfo ")
        assert disk.image_info(0).location == infos[0].location
        with pytest.raises(vdkit.OutOfRangeError):
            disk.image_info(3)


def test_vdi_uuids_and_geometry(lib, tmp_path):
    require_tools("qemu-img")
    image = tmp_path / "disk.vdi"
    run("qemu-img", "create", "-q", "-f", "vdi", image, "64M")
    created, modified, link, parent_mod = vdi_uuids(image)
    with lib.open(image) as disk:
        (info,) = disk.info()
    assert info.format == "vdi" and info.subformat == "dynamic" and not info.fixed
    assert info.virtual_size == qemu_json("info", image)["virtual-size"] == 64 * MiB
    assert info.uuid == created and info.uuid != uuid.UUID(int=0)
    assert info.modification_uuid == modified
    assert info.parent_uuid == link == uuid.UUID(int=0)
    assert info.parent_modification_uuid == parent_mod
    assert info.parent is None and not info.has_parent
    assert all(isinstance(g, tuple) and len(g) == 3 for g in (info.pchs, info.lchs))
    assert info.granularity == MiB  # qemu-img's default VDI block


def test_python_made_chain_is_read_by_qemu_img(lib, tmp_path, rng):
    require_tools("qemu-img")
    base, top = tmp_path / "base.vmdk", tmp_path / "top.vmdk"
    a, b = rng.randbytes(65536), rng.randbytes(65536)
    with lib.create(base, "vmdk", 4 * MiB, {"subformat": "monolithicSparse"}) as disk:
        disk.write(0, a)
    with lib.create(top, "vmdk", parent=base, parent_format="vmdk") as disk:
        disk.write(MiB, b)
        infos = disk.info()
    assert [os.path.basename(i.location) for i in infos] == ["base.vmdk", "top.vmdk"]
    assert infos[1].has_parent and os.path.basename(infos[1].parent) == "base.vmdk"
    chain = qemu_json("info", "--backing-chain", top)
    assert [os.path.basename(c["filename"]) for c in chain] == ["top.vmdk", "base.vmdk"]
    flat = tmp_path / "flat.raw"
    run("qemu-img", "convert", "-O", "raw", top, flat)
    content = flat.read_bytes()
    assert content[:65536] == a and content[MiB:MiB + 65536] == b


def test_vmdk_metadata_matches_the_descriptor_qemu_img_wrote(lib, tmp_path):
    require_tools("qemu-img")
    import re
    image = tmp_path / "disk.vmdk"
    run("qemu-img", "create", "-q", "-f", "vmdk", image, "10M")
    descriptor = dict(re.findall(rb'^(ddb\.[\w.]+) = "([^"]*)"', image.read_bytes()[:65536], re.M))
    assert descriptor
    with lib.open(image) as disk:
        keys = disk.metadata_keys()
        assert sorted(k.encode() for k in keys) == sorted(descriptor)
        for key in keys:
            assert disk.metadata_get(key).encode() == descriptor[key.encode()]
        with pytest.raises(vdkit.Error):
            disk.metadata_set("ddb.comment", "read-only disk")
    with lib.open(image, writable=True) as disk:
        disk.metadata_set("ddb.comment", "set from python")
    text = run("qemu-img", "info", image).stdout  # still a valid image for qemu
    assert "vmdk" in text
    assert b'ddb.comment = "set from python"' in image.read_bytes()[:65536]
    # And the geometry info reports is the descriptor's.
    with lib.open(image) as disk:
        (info,) = disk.info()
    assert info.pchs == tuple(int(descriptor[b"ddb.geometry." + k]) for k in (b"cylinders", b"heads", b"sectors"))
