#!/usr/bin/env python3
"""Every Catch2 test case is reached by exactly one ctest entry.

    ctest_coverage.py BUILD_DIR CATCH2_BINARY...

A Catch2 test case no ctest entry runs (a name catch_discover_tests split
or mangled, a binary left unregistered) passes silently; one reached by two
entries runs twice. This lists the binaries' test cases
(--list-test-names-only), the ctest entries (ctest --show-only=json-v1),
and asks each binary which of its test cases an entry's arguments select
(the same arguments plus --list-test-names-only: Catch2's own matching,
wildcards and escapes included). Disabled entries reach nothing.
Exit 0 when every test case is reached exactly once, 1 otherwise.
"""
import collections
import json
import os
import subprocess
import sys


def names(binary, args):
    """The test cases a Catch2 binary runs for these arguments."""
    run = subprocess.run([binary, *args, "--list-test-names-only"], capture_output=True, text=True)
    if run.returncode < 0:
        sys.exit(f"FAIL: {binary} {args} --list-test-names-only died (signal {-run.returncode})")
    return [line for line in run.stdout.split("\n") if line.strip()]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    build, binaries = sys.argv[1], [os.path.realpath(b) for b in sys.argv[2:]]
    shown = subprocess.run(["ctest", "--show-only=json-v1"], cwd=build, capture_output=True, text=True, check=True)
    entries = json.loads(shown.stdout)["tests"]
    failures = 0
    for binary in binaries:
        if not os.access(binary, os.X_OK):
            print(f"FAIL: {binary} is not built")
            failures += 1
            continue
        cases = names(binary, [])
        if not cases:
            print(f"FAIL: {binary} lists no test cases")
            failures += 1
            continue
        reached = collections.defaultdict(list)
        mine = 0
        for entry in entries:
            command = entry.get("command") or []
            if not command or os.path.realpath(command[0]) != binary:
                continue
            props = {p["name"]: p["value"] for p in entry.get("properties", [])}
            if props.get("DISABLED") in (True, "ON", "TRUE", "1"):
                continue
            mine += 1
            args = [a for a in command[1:] if a != ""]
            selected = names(binary, args)
            if not selected:
                print(f"FAIL: ctest entry '{entry['name']}' selects no test case of {os.path.basename(binary)} ({args})")
                failures += 1
            for case in selected:
                reached[case].append(entry["name"])
        for case in cases:
            if len(reached[case]) != 1:
                print(f"FAIL: test case '{case}' of {os.path.basename(binary)} is reached by "
                      f"{len(reached[case])} ctest entries {reached[case]}")
                failures += 1
        unknown = set(reached) - set(cases)
        for case in sorted(unknown):
            print(f"FAIL: ctest reaches '{case}', which {os.path.basename(binary)} does not list")
            failures += 1
        print(f"{os.path.basename(binary)}: {len(cases)} test cases, {mine} ctest entries")
    print("OK" if failures == 0 else f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
