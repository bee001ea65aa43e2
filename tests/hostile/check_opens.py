#!/usr/bin/env python3
"""Reads an `strace -f -y` log and prints every file a hostile case must not open.

  check_opens.py LOG WORK CASE_DIR [parent-area]

Every open/openat/openat2/creat is judged by the path as written (made
absolute against the directory strace shows for its dirfd) and, when it
succeeded, by the real path strace shows for the new descriptor (so a
symbolic link is judged by where it leads). Refused:
  * anything under WORK but outside CASE_DIR and WORK/o (the outputs); with
    `parent-area`, files directly in CASE_DIR's parent are allowed (the path
    rule's parent area, docs/design/paths.md rule 3: opened to prove identity);
  * every path WORK/forbidden.txt lists (the host files the cases name);
  * anything under /dev (but /dev/null), /proc (but the process's own
    descriptor list and memory map) and /sys (but the CPU list), /etc (but
    the loader cache, the time zone and vdkit's own configuration).
A sanitizer runtime (ASan, UBSan) reads the process's own command line and
environment at start-up, with the raw `open` system call (glibc, and so
vdkit, use openat): /proc/self/cmdline and /proc/self/environ opened so, by
a process that has not yet opened anything under WORK, are its start-up and
allowed; the same names opened any other way or later (a hostile extent or
parent naming them) are refused.
stat-like calls are not judged: the path rule stats a name to refuse it.
Exit 1 when anything was opened that must not be.
"""
import os
import re
import sys

log, work, case_dir = (os.path.realpath(a) for a in sys.argv[1:4])
parent_area = len(sys.argv) > 4 and sys.argv[4] == "parent-area"
forbidden = {os.path.normpath(p) for p in open(os.path.join(work, "forbidden.txt")).read().split("\n") if p}
outputs = os.path.join(work, "o")
CALL = re.compile(r'^(?:\[pid +(\d+)\] |(\d+) +)?(open|openat|openat2|creat)\((.*)\) += (-?\d+)(<[^>]*>)?')
SANITIZER_START = re.compile(r"^/proc/self/(cmdline|environ)$")


def under(p, d):
    return p == d or p.startswith(d + "/")


def allowed_system(p):
    # vdkit's own: the null device, its descriptor list (convert closes
    # inherited descriptors), sanitizer runtimes' memory map, the time zone.
    if p == "/dev/null" or re.match(r"^/proc/(self|\d+)/(maps|fd)$", p):
        return True
    if under(p, "/sys/devices/system/cpu"):
        return True
    if under(p, "/etc"):
        return p in ("/etc/ld.so.cache", "/etc/ld.so.preload", "/etc/localtime") or under(p, "/etc/vdkit")
    return not (under(p, "/dev") or under(p, "/proc") or under(p, "/sys"))


def verdict(p):
    p = os.path.normpath(p)
    if parent_area and os.path.dirname(p) == os.path.dirname(case_dir):
        return None  # probed to prove (or disprove) it is the parent the child records
    if p in forbidden:
        return "names a forbidden host file"
    if under(p, work):
        if under(p, case_dir) or under(p, outputs):
            return None
        return "lies outside the case directory"
    return None if allowed_system(p) else "is a host system file"


bad = []
past_start = set()  # processes that have opened something under WORK
for line in open(log, errors="replace"):
    m = CALL.match(line)
    if not m:
        continue
    pid1, pid2, call, args, rc, fdpath = m.groups()
    pid = pid1 or pid2 or "main"
    # The path argument: the first quoted string; its dirfd's path for openat.
    q = re.search(r'"((?:[^"\\]|\\.)*)"', args)
    if not q:
        continue
    path = q.group(1).encode().decode("unicode_escape")
    if not path.startswith("/"):
        base = re.match(r"^(?:AT_FDCWD|\d+)<([^>]*)>", args) if call in ("openat", "openat2") else None
        path = os.path.join(base.group(1) if base else os.getcwd(), path)
    if call == "open" and pid not in past_start and SANITIZER_START.match(path):
        continue  # a sanitizer runtime starting (see above)
    if under(os.path.normpath(path), work):
        past_start.add(pid)
    for p in (path, fdpath[1:-1] if fdpath and int(rc) >= 0 else None):
        if p is None:
            continue
        why = verdict(p)
        if why:
            bad.append("%s %s (%s)" % (p, why, line.strip()[:200]))
for b in bad:
    print("opened: " + b)
sys.exit(1 if bad else 0)
