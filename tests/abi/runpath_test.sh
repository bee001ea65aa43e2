#!/usr/bin/env bash
# Every program and library the build makes finds its libraries only in
# absolute directories or $ORIGIN-relative ones: no RPATH/RUNPATH entry is
# empty or relative. The loader reads an empty entry ("/build/lib:", which
# CMake leaves on a target whose RPATH it rewrites at install) or a relative
# one as the current directory, so vdkit run in a directory holding a
# planted libvdkit.so (a hostile image's directory) would load it.
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools readelf
python3 - "$VDKIT_BUILD_DIR" > report 2>&1 <<'PY'
import os, re, subprocess, sys
root = sys.argv[1]
checked = bad = 0
for top in ("bin", "lib", "python", "tests"):
    for d, _, files in os.walk(os.path.join(root, top)):
        if "CMakeFiles" in d:
            continue
        for name in files:
            f = os.path.join(d, name)
            if os.path.islink(f):
                continue
            with open(f, "rb") as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
            out = subprocess.run(["readelf", "-d", f], capture_output=True, text=True).stdout
            for m in re.finditer(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[(.*)\]", out):
                checked += 1
                for e in m.group(1).split(":"):
                    if not (e.startswith("/") or e == "$ORIGIN" or e.startswith("$ORIGIN/")):
                        bad += 1
                        print("FAIL: %s: RUNPATH [%s] has the entry '%s' (the current directory or relative to it)"
                              % (os.path.relpath(f, root), m.group(1), e))
print("checked %d RPATH/RUNPATH entries" % checked)
sys.exit(1 if bad or checked < 10 else 0)
PY
rc=$?
cat report
[ $rc -eq 0 ] && ok || bad "programs or libraries with a RUNPATH that searches the current directory (above)"
says "the vdkit program was checked" "checked" report
finish
