#!/usr/bin/env python3
"""libvdkit exports only its public API (issue 16, "a real public boundary").

Usage: library_exports_test.py LIBVDKIT.so INCLUDE_DIR

Every symbol in the library's dynamic symbol table (nm -D --defined-only)
must be
  * a vdkit_* C function declared VDKIT_API in vdkit/vdkit.h, or
  * (demangled) vdkit::v1::NAME or vdkit::v1::CLASS::MEMBER, where NAME is a
    function and CLASS a class the public C++ headers (vdkit.hpp,
    status.hpp, volumes.hpp) mark VDKIT_API;
and nothing may name the core's internals (util::, containers::, Host,
Image, Disk::State), Boost, yaml-cpp or std:: template instantiations.
Conversely every VDKIT_API declaration must be exported (a declaration
without its symbol is a broken API). Everything wrong is printed.
"""
import re
import subprocess
import sys


def nm(lib, demangle):
    args = ["nm", "-D", "--defined-only", "-p"] + (["-C"] if demangle else []) + [lib]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            syms.append((parts[1], parts[2]))
    return syms


def public_declarations(include_dir):
    """C functions of vdkit.h; C++ free functions and classes with exported members."""
    c_functions = set()
    with open(f"{include_dir}/vdkit/vdkit.h") as f:
        text = f.read()
    for m in re.finditer(r"^VDKIT_API\b[^;(]*?\b(vdkit_\w+)\s*\(", text, re.M):
        c_functions.add(m.group(1))
    cxx_functions, cxx_classes = set(), set()
    for header in ("vdkit/vdkit.hpp", "vdkit/status.hpp", "vdkit/volumes.hpp"):
        current = None  # the class at column 0 being read
        with open(f"{include_dir}/{header}") as f:
            for line in f:
                cls = re.match(r"^(?:class|struct)\b(.*?)\b(\w+)\s*(?:final\s*)?(?::[^{]*)?\{", line)
                if cls:
                    current = cls.group(2)
                    if "VDKIT_API" in cls.group(1):
                        cxx_classes.add(current)
                    continue
                if line.startswith("};"):
                    current = None
                    continue
                fn = re.match(r"^(\s*)VDKIT_API\b[^;(]*?\b(\w+)\s*\(", line)
                if fn:
                    if fn.group(1) and current:
                        cxx_classes.add(current)  # a class exporting chosen members
                    else:
                        cxx_functions.add(fn.group(2))
    return c_functions, cxx_functions, cxx_classes


def entity(demangled):
    """'vdkit::v1::Disk::read(unsigned long, ...) const' -> ['vdkit','v1','Disk','read']."""
    depth, out = 0, ""
    for ch in demangled:
        if ch in "<(" and depth == 0 and ch == "(":
            break
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out += ch
    out = re.sub(r"\[abi:\w+\]", "", out).strip()
    return out.split("::")


INTERNAL = re.compile(r"\butil::|\bcontainers::|\bvdkit::(?:v1::)?(?:Host|Image)\b|\bDisk::State\b|"
                      r"\bboost::|\bYAML::|^(?:typeinfo|vtable|guard variable|VTT)\b|^std::|^__gnu_cxx::")


def main():
    lib, include_dir = sys.argv[1], sys.argv[2]
    mangled, demangled = nm(lib, False), nm(lib, True)
    if len(mangled) != len(demangled):
        print("FAIL: nm listed the table twice with different lengths")
        return 1
    c_functions, cxx_functions, cxx_classes = public_declarations(include_dir)
    if not c_functions or not cxx_functions or not cxx_classes:
        print(f"FAIL: read no declarations from {include_dir} "
              f"({len(c_functions)} C, {len(cxx_functions)} C++ functions, {len(cxx_classes)} classes)")
        return 1

    leaks, seen_c, seen_fn, seen_cls = [], set(), set(), set()
    for (kind, raw), (_, name) in zip(mangled, demangled):
        if re.fullmatch(r"vdkit_\w+", raw):
            if kind == "T" and raw in c_functions:
                seen_c.add(raw)
            else:
                leaks.append(f"{kind} {raw}  (not a VDKIT_API function of vdkit.h)")
            continue
        if INTERNAL.search(name):
            leaks.append(f"{kind} {name}")
            continue
        parts = entity(name)
        if parts[:2] != ["vdkit", "v1"]:
            leaks.append(f"{kind} {name}  (outside namespace vdkit::v1, the public API)")
        elif len(parts) == 3 and parts[2] in cxx_functions:
            seen_fn.add(parts[2])
        elif len(parts) == 4 and parts[2] in cxx_classes:
            seen_cls.add(parts[2])
        else:
            leaks.append(f"{kind} {name}  (not a VDKIT_API function or class of vdkit.hpp/status.hpp/volumes.hpp)")

    missing = sorted(c_functions - seen_c) + sorted(cxx_functions - seen_fn) + \
        [f"class {c} (no member)" for c in sorted(cxx_classes - seen_cls)]
    for leak in leaks:
        print(f"LEAK: {leak}")
    for m in missing:
        print(f"MISSING (declared VDKIT_API, not exported): {m}")
    if leaks or missing:
        print(f"FAIL: {len(leaks)} symbols leak, {len(missing)} public declarations are not exported "
              f"({len(mangled)} exported)")
        return 1
    print(f"OK: {len(mangled)} exported symbols: {len(seen_c)} C functions, {len(seen_fn)} C++ functions, "
          f"members of {', '.join(sorted(seen_cls))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
