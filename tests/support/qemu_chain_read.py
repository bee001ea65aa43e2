#!/usr/bin/env python3
"""What a chain reads, as qemu-img reads its images one by one.

    qemu_chain_read.py OUT.raw FMT:IMAGE [FMT:IMAGE ...]      (top first)

qemu cannot open some chains vdkit writes (a VMDK over a VDI: its vmdk
driver checks the parent's CID and refuses a non-VMDK parent), but it reads
each image alone. This reads every image with no backing file
(qemu-img convert) and takes its allocation from qemu-img map; the chain's
content is the bottom image's, overlaid bottom-up with every range an image
above has present (data or zero). The result is an oracle for the chain that
uses no vdkit code. Needs qemu-img.
"""
import json
import os
import subprocess
import sys
import tempfile


def spec(fmt, path, alone):
    if not alone:
        return ["-f", fmt, path]
    return ["json:" + json.dumps({"driver": fmt, "file": {"driver": "file", "filename": os.path.abspath(path)},
                                  "backing": None})]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, images = sys.argv[1], [a.split(":", 1) for a in sys.argv[2:]]
    with tempfile.TemporaryDirectory() as tmp:
        content = None
        for depth, (fmt, path) in enumerate(reversed(images)):
            alone = depth > 0  # the bottom image has no parent to cut off
            raw = os.path.join(tmp, f"{depth}.raw")
            subprocess.run(["qemu-img", "convert", *spec(fmt, path, alone), "-O", "raw", raw], check=True)
            data = open(raw, "rb").read()
            if content is None:
                content = bytearray(data)
                continue
            mapping = json.loads(subprocess.run(["qemu-img", "map", "--output=json", *spec(fmt, path, alone)],
                                                check=True, capture_output=True, text=True).stdout)
            if len(data) > len(content):
                content.extend(bytes(len(data) - len(content)))
            for e in mapping:
                if e["present"]:
                    content[e["start"]:e["start"] + e["length"]] = data[e["start"]:e["start"] + e["length"]]
        open(out, "wb").write(content)


if __name__ == "__main__":
    main()
