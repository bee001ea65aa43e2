#!/usr/bin/env python3
"""Convert throughput and memory, vdkit side by side with qemu-img in one run.

Usage: bench/convert_bench.py [--build build] [--size-gib 2] [--work DIR]

Generates a sparse raw image with a realistic mix (random data, zero-filled
data, holes), then times `vdkit convert` and `qemu-img convert` for the same
conversion (raw, VMDK monolithicSparse and streamOptimized, VDI targets) and
prints time and peak-RSS ratios. A second source is a 1 TiB sparse image
holding 64 MiB of data, to show that cost follows allocated data, not
virtual size.
Not part of `make test`: timings belong here, not in unit tests.
"""
import argparse, os, random, resource, shutil, subprocess, sys, tempfile, time


def run(cmd):
    """Run cmd in a fresh Python child so ru_maxrss is that command's alone."""
    probe = ("import resource,subprocess,sys,time;t=time.perf_counter();"
             "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL);"
             "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe] + cmd, check=True, capture_output=True, text=True).stdout
    secs, rss_kib = out.split()
    return float(secs), int(rss_kib)


def make_image(path, size, data_bytes, seed):
    rng = random.Random(seed)
    chunk = 1 << 20
    with open(path, "wb") as f:
        f.truncate(size)
        written = 0
        while written < data_bytes:
            off = rng.randrange(0, size - chunk) & ~0xFFFF
            f.seek(off)
            f.write(os.urandom(chunk) if rng.random() < 0.75 else bytes(chunk))
            written += chunk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--size-gib", type=int, default=2)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    vdkit = os.path.join(args.build, "bin", "vdkit")
    if not shutil.which("qemu-img"):
        sys.exit("qemu-img is required (apt-get install qemu-utils)")
    work = args.work or tempfile.mkdtemp(prefix="vdkit-bench-")
    # (source size, data bytes) -> conversions: (label, qemu-img -O/-o args, vdkit -O/-o args)
    big = args.size_gib << 30
    sources = [
        ("%d GiB, 1/4 data" % args.size_gib, big, big // 4, [
            ("raw -> raw", ["-O", "raw"], ["-O", "raw"]),
            ("raw -> vmdk", ["-O", "vmdk"], ["-O", "vmdk"]),
            ("raw -> vmdk streamOptimized", ["-O", "vmdk", "-o", "subformat=streamOptimized"],
             ["-O", "vmdk", "-o", "subformat=streamOptimized"]),
            ("raw -> vdi", ["-O", "vdi"], ["-O", "vdi"]),
        ]),
        ("1 TiB sparse, 64 MiB data", 1 << 40, 64 << 20, [
            ("raw -> raw", ["-O", "raw"], ["-O", "raw"]),
            ("raw -> vdi", ["-O", "vdi"], ["-O", "vdi"]),
        ]),
    ]
    print(f"{'case':58} {'tool':9} {'seconds':>8} {'peak MiB':>9}")
    for i, (desc, size, data, conversions) in enumerate(sources):
        src = os.path.join(work, f"src{i}.img")
        make_image(src, size, data, seed=i)
        for label, qargs, vargs in conversions:
            name = f"{label}, {desc}"
            results = {}
            for tool, cmd in (("qemu-img", ["qemu-img", "convert", "-f", "raw"] + qargs + [src]),
                              ("vdkit", [vdkit, "convert", "-f", "raw"] + vargs + [src])):
                dst = os.path.join(work, f"dst{i}-{tool}")
                if os.path.exists(dst):
                    os.remove(dst)
                secs, rss = run(cmd + [dst])
                results[tool] = (secs, rss)
                print(f"{name:58} {tool:9} {secs:8.2f} {rss / 1024:9.1f}", flush=True)
                subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", src, dst], check=True)
                os.remove(dst)
            q, v = results["qemu-img"], results["vdkit"]
            print(f"{'':58} {'ratio':9} {v[0] / q[0]:8.2f} {v[1] / q[1]:9.2f}   (vdkit / qemu-img; < 1 is better)",
                  flush=True)
        os.remove(src)
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
