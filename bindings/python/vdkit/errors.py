"""vdkit errors: every failure of the library raises vdkit.Error.

Error carries the status code (``status``, a vdkit.Status, an IntEnum whose
values are the codes of vdkit/status.h) and the message naming what failed
and where (``message``). Each code has its subclass (NotFoundError,
CorruptError, CancelledError, ...), so callers can catch one kind.
"""

import enum

from . import _vdkit

# Codes of vdkit/status.h, read from the library itself: (code, C name, text).
_TABLE = _vdkit._status_table()


def _short(c_name):
    for prefix in ("VDKIT_E_", "VDKIT_"):
        if c_name.startswith(prefix):
            return c_name[len(prefix):]
    return c_name


Status = enum.IntEnum("Status", [(_short(name), code) for code, name, _ in _TABLE])
Status.__doc__ = "Status codes of vdkit/status.h (OK = 0; Status.IO.value == VDKIT_E_IO)."
Status.__module__ = __name__

_C_NAMES = {code: name for code, name, _ in _TABLE}
_TEXTS = {code: text for code, _, text in _TABLE}


class Error(Exception):
    """A vdkit call failed.

    status:      the vdkit.Status (an int: the C code; .name: "NOT_FOUND")
    status_name: the C name ("VDKIT_E_NOT_FOUND")
    message:     what failed and where
    """

    def __init__(self, status, message):
        try:
            status = Status(status)
        except ValueError:  # a code newer than this table: keep the number
            status = int(status)
        self.status = status
        self.message = message
        super().__init__(message)

    @property
    def status_name(self):
        return _C_NAMES.get(int(self.status), "VDKIT_E_UNKNOWN_%d" % int(self.status))

    def __str__(self):
        # As vdkit::Status::to_string(): "message (VDKIT_E_IO)".
        text = self.message or _TEXTS.get(int(self.status), "unknown status")
        return "%s (%s)" % (text, self.status_name)

    def __repr__(self):
        return "%s(%s, %r)" % (type(self).__name__, self.status_name, self.message)


# Class names where CamelCase of the code would hide a builtin.
_CLASS_NAMES = {"IO": "IoError", "PERMISSION": "PermissionDeniedError"}


def _class_name(short):
    return _CLASS_NAMES.get(short) or "".join(p.capitalize() for p in short.split("_")) + "Error"


# One subclass per error code: vdkit.NotFoundError is raised for VDKIT_E_NOT_FOUND.
_CLASSES = {}
for _code, _name, _text in _TABLE:
    if _code == 0:
        continue
    _cls = type(_class_name(_short(_name)), (Error,), {"__doc__": "%s: %s" % (_name, _text), "__module__": __name__})
    _CLASSES[_code] = _cls
    globals()[_cls.__name__] = _cls

ERROR_CLASSES = dict(_CLASSES)  # code -> subclass of Error


def from_status(code, message):
    """The exception for a status code and message (the binding raises it)."""
    return _CLASSES.get(int(code), Error)(code, message)


__all__ = ["Error", "Status", "ERROR_CLASSES", "from_status"] + [cls.__name__ for cls in _CLASSES.values()]
