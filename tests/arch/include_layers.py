#!/usr/bin/env python3
"""Check that no #include in core/src runs upward (docs/design/core.md).

Every folder of core/src has a layer; a file may include headers of its own
folder, of folders in its own layer or in lower ones, and the public and SDK
headers ("vdkit/..."). An include of a higher layer, of a folder with no
layer, or a source file outside any folder is reported with its file and
line; the exit status is 1 when anything is reported, else 0.

A few files are kept narrower than their layer (NARROW below): an include
of a folder they are kept off is reported the same way.

Usage: include_layers.py [SRC_DIR]   (default: core/src next to this tree)
"""
import os
import re
import sys

# Lowest first; folders on one line share a layer. Keep in step with the
# picture in docs/design/core.md.
LAYERS = [
    ["util"],
    ["config", "loader", "registry"],
    ["io"],
    ["host"],
    ["disk"],
    ["volume"],
    ["api"],
]
# Files kept narrower than their layer allows: the file (relative to
# core/src) may not include these folders although they lie below it.
# An Image is one opened image of a chain; it reaches the core through the
# Stores it is given (io/), not the whole Host (docs/design/core.md).
NARROW = {
    "disk/image.hpp": ["host"],
    "disk/image.cpp": ["host"],
}
PUBLIC = "vdkit"  # core/include/vdkit and sdk/include/vdkit: below every layer
SOURCES = (".c", ".cc", ".cpp", ".h", ".hpp")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def layer_of(folder):
    for level, folders in enumerate(LAYERS):
        if folder in folders:
            return level
    return None


def check(src):
    problems = []
    files = 0
    seen = set()
    for root, _, names in os.walk(src):
        for name in sorted(names):
            if not name.endswith(SOURCES):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)
            parts = rel.split(os.sep)
            files += 1
            seen.add("/".join(parts))
            if len(parts) < 2:
                problems.append(f"{rel}: lies in no folder; put it in one of {', '.join(sum(LAYERS, []))}")
                continue
            folder = parts[0]
            mine = layer_of(folder)
            if mine is None:
                problems.append(f"{rel}: folder '{folder}' has no layer (add it to LAYERS in {__file__} "
                                "and to docs/design/core.md)")
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                for number, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = m.group(1)
                    top = target.split("/")[0] if "/" in target else None
                    if top == PUBLIC:
                        continue
                    if top is None:
                        problems.append(f"{rel}:{number}: includes \"{target}\" without its folder; "
                                        "name it as \"<folder>/<file>\"")
                        continue
                    theirs = layer_of(top)
                    if theirs is None:
                        problems.append(f"{rel}:{number}: includes \"{target}\" from folder '{top}', "
                                        "which has no layer")
                    elif theirs > mine:
                        problems.append(f"{rel}:{number}: {folder}/ (layer {mine}) includes \"{target}\" "
                                        f"from {top}/ (layer {theirs}), a higher layer")
                    elif top in NARROW.get("/".join(parts), []):
                        problems.append(f"{rel}:{number}: includes \"{target}\", but {rel} is kept "
                                        f"off {top}/ (NARROW in {os.path.basename(__file__)})")
    for kept in sorted(set(NARROW) - seen):
        problems.append(f"{kept}: named in NARROW but not found; keep NARROW in step with the tree")
    return files, problems


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "core", "src")
    if not os.path.isdir(src):
        print(f"include_layers: {src} is not a directory", file=sys.stderr)
        return 2
    files, problems = check(src)
    if files == 0:
        print(f"include_layers: no source files under {src}", file=sys.stderr)
        return 2
    for p in problems:
        print(p)
    order = " -> ".join("/".join(f) for f in LAYERS)
    if problems:
        print(f"{len(problems)} include(s) break the layering ({order}, lowest first)")
        return 1
    print(f"{files} files checked; every include runs down ({order})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
