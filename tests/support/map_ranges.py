#!/usr/bin/env python3
"""Compare the data ranges of two `map --output=json` files (vdkit's and
qemu-img's record format).

Usage: map_ranges.py OURS THEIRS [--within]
Exit 0 when the merged data ranges are equal, or with --within when every
range of OURS lies inside one of THEIRS (flat files: qemu reports the whole
file as data, vdkit also sees the file's holes). Prints both on mismatch.
"""
import json
import sys


def ranges(path):
    out = []
    for e in json.load(open(path)):
        if e["data"]:
            if out and out[-1][1] == e["start"]:
                out[-1][1] += e["length"]
            else:
                out.append([e["start"], e["start"] + e["length"]])
    return out


def main():
    ours, theirs = ranges(sys.argv[1]), ranges(sys.argv[2])
    if "--within" in sys.argv[3:]:
        good = all(any(a >= c and b <= d for c, d in theirs) for a, b in ours)
    else:
        good = ours == theirs
    if not good:
        print("ours:  ", ours[:6], "\ntheirs:", theirs[:6])
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
