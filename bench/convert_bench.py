#!/usr/bin/env python3
"""Convert throughput and memory, vdkit side by side with qemu-img in one run.

Usage: bench/convert_bench.py [--build build] [--size-gib 2] [--repeat 3] [--work DIR] [--only TEXT]

Generates a sparse raw image with a realistic mix (random data, zero-filled
data, holes), then times `vdkit convert` and `qemu-img convert` for the same
conversion (raw, VMDK monolithicSparse and streamOptimized, VDI targets) and
prints time and peak-RSS ratios. A second source is a 1 TiB sparse image
holding 64 MiB of data, to show that cost follows allocated data, not
virtual size.
Not part of `make test`: timings belong here, not in unit tests.
"""
import argparse, os, random, shutil, statistics, subprocess, sys, tempfile, time


def run(cmd):
    """Seconds and peak RSS (KiB) of cmd.

    The peak comes from GNU time, which forks a copy of itself (about 1 MiB)
    before exec. Python's own spawn would not do: the child is created with
    vfork, and the kernel counts the parent's resident set (about 14 MiB of
    Python) into the child's peak, a floor that hid the tools' real numbers.
    """
    t = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    secs = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return secs, int(out.stderr.strip().splitlines()[-1])


def make_image(path, size, data_bytes, seed):
    """A realistic mix: half incompressible data (media, encrypted files),
    a quarter compressible text-like data (logs, binaries), a quarter
    zero-filled data (freed blocks a guest wrote zeros over), holes between."""
    rng = random.Random(seed)
    chunk = 1 << 20
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randrange(2, 10)))
             for _ in range(2000)]
    with open(path, "wb") as f:
        f.truncate(size)
        written = 0
        while written < data_bytes:
            off = rng.randrange(0, size - chunk) & ~0xFFFF
            f.seek(off)
            kind = rng.random()
            if kind < 0.5:
                block = os.urandom(chunk)
            elif kind < 0.75:
                block = b" ".join(rng.choice(words) for _ in range(chunk // 5))[:chunk].ljust(chunk, b"\n")
            else:
                block = bytes(chunk)
            f.write(block)
            written += chunk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--size-gib", type=int, default=2)
    ap.add_argument("--work", default=None)
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool and case; the median time is reported")
    ap.add_argument("--only", default=None, help="run only the cases whose name contains this text (e.g. 'raw -> vdi' or 'vdi, 1 TiB')")
    args = ap.parse_args()
    vdkit = os.path.join(args.build, "bin", "vdkit")
    if not shutil.which("qemu-img"):
        sys.exit("qemu-img is required (apt-get install qemu-utils)")
    if not os.access("/usr/bin/time", os.X_OK):
        sys.exit("GNU time is required for peak memory (apt-get install time)")
    work = args.work or tempfile.mkdtemp(prefix="vdkit-bench-")
    os.makedirs(work, exist_ok=True)
    # (source size, data bytes) -> conversions:
    #   (label, source format, qemu-img -O/-o args, vdkit -O/-o args)
    # A vmdk or vdi source is made from the raw one by qemu-img first.
    big = args.size_gib << 30
    stream = ["-O", "vmdk", "-o", "subformat=streamOptimized"]
    sources = [
        ("%d GiB, 1/3 data" % args.size_gib, big, big // 3, [
            ("raw -> raw", "raw", ["-O", "raw"], ["-O", "raw"]),
            ("raw -> vmdk", "raw", ["-O", "vmdk"], ["-O", "vmdk"]),
            ("raw -> vmdk streamOptimized", "raw", stream, stream),
            ("raw -> vdi", "raw", ["-O", "vdi"], ["-O", "vdi"]),
            ("raw -> vdi, -W", "raw", ["-W", "-O", "vdi"], ["-W", "-O", "vdi"]),
            ("vmdk -> vdi", "vmdk", ["-O", "vdi"], ["-O", "vdi"]),
            ("vdi -> vmdk streamOptimized", "vdi", stream, stream),
            ("raw -> vhd", "raw", ["-O", "vpc"], ["-O", "vhd"]),
            ("raw -> vhd fixed", "raw", ["-O", "vpc", "-o", "subformat=fixed"], ["-O", "vhd", "-o", "subformat=fixed"]),
        ]),
        ("1 TiB sparse, 64 MiB data", 1 << 40, 64 << 20, [
            ("raw -> raw", "raw", ["-O", "raw"], ["-O", "raw"]),
            ("raw -> vdi", "raw", ["-O", "vdi"], ["-O", "vdi"]),
            ("raw -> vhd", "raw", ["-O", "vpc"], ["-O", "vhd"]),
        ]),
    ]
    print(f"{'case':58} {'tool':9} {'seconds':>8} {'peak MiB':>9}")
    for i, (desc, size, data, conversions) in enumerate(sources):
        conversions = [c for c in conversions if not args.only or args.only in f"{c[0]}, {desc}"]
        if not conversions:
            continue
        raw_src = os.path.join(work, f"src{i}.img")
        make_image(raw_src, size, data, seed=i)
        for label, fmt, qargs, vargs in conversions:
            src = raw_src
            if fmt != "raw":
                src = os.path.join(work, f"src{i}.{fmt}")
                if not os.path.exists(src):
                    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt, raw_src, src], check=True)
            name = f"{label}, {desc}"
            results = {}
            # -t writeback: qemu-img's convert default ("unsafe") never flushes the
            # target; vdkit flushes it before renaming it into place, so both
            # are timed to the same durability.
            tools = (("qemu-img", ["qemu-img", "convert", "-t", "writeback", "-f", fmt] + qargs + [src]),
                     ("vdkit", [vdkit, "convert", "-f", fmt] + vargs + [src]))
            times = {t: [] for t, _ in tools}
            peaks = {t: 0 for t, _ in tools}
            # The tools take turns going first (ABBA), so the order favours
            # neither. Every output is kept until the case is over: deleting
            # one frees blocks that a filesystem mounted with `discard` then
            # trims while the next run writes, and a run that reuses blocks
            # just freed by the other tool's output measured up to 2.5x slower
            # than one reusing its own (see README).
            outputs = []
            reps, rep = args.repeat, 0
            while rep < reps:
                if rep == 1 and max(t[0] for t in times.values()) < 0.5:
                    # Runs this short are mostly fixed costs and disk
                    # latency: take three times as many for the median.
                    reps = args.repeat * 3
                for tool, cmd in (tools if rep % 2 == 0 else tools[::-1]):
                    dst = os.path.join(work, f"dst{i}-{tool}-{rep}")
                    os.sync()
                    secs, rss = run(cmd + [dst])
                    times[tool].append(secs)
                    peaks[tool] = max(peaks[tool], rss)
                    subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", raw_src, dst], check=True)
                    outputs.append(dst)
                rep += 1
            for dst in outputs:
                os.remove(dst)
            os.sync()
            for tool, _ in tools:
                secs = statistics.median(times[tool])
                results[tool] = (secs, peaks[tool])
                print(f"{name:58} {tool:9} {secs:8.2f} {peaks[tool] / 1024:9.1f}", flush=True)
            q, v = results["qemu-img"], results["vdkit"]
            print(f"{'':58} {'ratio':9} {v[0] / q[0]:8.2f} {v[1] / q[1]:9.2f}   (vdkit / qemu-img; < 1 is better)",
                  flush=True)
        for f in os.listdir(work):
            if f.startswith(f"src{i}"):
                os.remove(os.path.join(work, f))
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
