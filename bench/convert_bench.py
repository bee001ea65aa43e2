#!/usr/bin/env python3
"""Convert throughput and memory, vdkit side by side with qemu-img in one run.

Usage: bench/convert_bench.py [--build build] [--size-gib 2] [--work DIR]

Generates a sparse raw image with a realistic mix (random data, zero-filled
data, holes), then times `vdkit convert` and `qemu-img convert` for the same
conversion and prints time and peak-RSS ratios. A second case converts a 1 TiB
sparse image holding 64 MiB of data, to show that cost follows allocated data,
not virtual size. Formats other than raw join this table as their plugins land.
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
    cases = [
        ("raw -> raw, %d GiB, 1/4 data" % args.size_gib, args.size_gib << 30, (args.size_gib << 30) // 4),
        ("raw -> raw, 1 TiB sparse, 64 MiB data", 1 << 40, 64 << 20),
    ]
    print(f"{'case':42} {'tool':9} {'seconds':>8} {'peak MiB':>9}")
    for i, (name, size, data) in enumerate(cases):
        src = os.path.join(work, f"src{i}.img")
        make_image(src, size, data, seed=i)
        results = {}
        for tool, cmd in (("qemu-img", ["qemu-img", "convert", "-f", "raw", "-O", "raw", src]),
                          ("vdkit", [vdkit, "convert", "-f", "raw", "-O", "raw", src])):
            dst = os.path.join(work, f"dst{i}-{tool}.img")
            if os.path.exists(dst):
                os.remove(dst)
            secs, rss = run(cmd + [dst])
            results[tool] = (secs, rss)
            print(f"{name:42} {tool:9} {secs:8.2f} {rss / 1024:9.1f}")
            subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", src, dst], check=True)
            os.remove(dst)
        q, v = results["qemu-img"], results["vdkit"]
        print(f"{'':42} {'ratio':9} {v[0] / q[0]:8.2f} {v[1] / q[1]:9.2f}   (vdkit / qemu-img; < 1 is better)")
        os.remove(src)
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
