"""vdkit: open, create, read, write and convert virtual disks (VMDK, VDI, raw, ...).

    import vdkit
    lib = vdkit.Library()
    with lib.open("disk.vmdk") as disk:
        data = disk.read(0, 512)
        for offset, length, state in disk.block_status():
            ...

Every failure raises vdkit.Error (or the subclass for its code, e.g.
vdkit.NotFoundError). The binding is built on the vdkit C++ API
(core/include/vdkit/vdkit.hpp); see bindings/python/README.md.
"""

import enum

from ._vdkit import Cancel, Disk, ImageInfo, Library  # noqa: F401
from . import errors
from .errors import Error, Status  # noqa: F401
from .errors import *  # noqa: F401,F403  (NotFoundError, CorruptError, ...)


class BlockState(enum.IntEnum):
    """State of a run from Disk.block_status() (VDKIT_BLOCK_*)."""

    DATA = 0         # allocated, reads what was written
    ZERO = 1         # reads as zero (allocated or recorded as zero)
    UNALLOCATED = 2  # no image of the chain holds it: reads as zero


__all__ = ["Library", "Disk", "ImageInfo", "Cancel", "BlockState", "Error", "Status"] + [
    cls.__name__ for cls in errors.ERROR_CLASSES.values()
]
