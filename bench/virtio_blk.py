#!/usr/bin/env python3
"""Block I/O from inside a guest (docs/BENCHMARKS.md,
"Block I/O — bench/virtio_blk.py"):
tests/guests/virtio_blk.c in its "bench" mode keeps requests in flight
on mmud's virtio-blk (4 KiB random reads at queue depth 1 and 32,
1 MiB sequential reads and writes at depth 1, polled) and prints a line
before and after each; this script times the lines as they arrive on
mmud's stdout and reports IOPS and MB/s, for each backend (io_uring,
submitted from the vCPU thread; the thread pool, MMUD_TEST_NO_IO_URING)
and each image (tmpfs with cache=writeback; a disk file with cache=none
and with writeback).

    bench/virtio_blk.py BUILD_DIR [--runs N] [--disk-dir DIR]
"""
import argparse
import os
import subprocess
import sys
import time

PHASES = {
    "4k-randread-qd1": (4096, "IOPS"),
    "4k-randread-qd32": (4096, "IOPS"),
    "1m-seqread-qd1": (1 << 20, "MB/s"),
    "1m-seqwrite-qd1": (1 << 20, "MB/s"),
}


def run_once(build, image, drive_opts, env):
    args = [os.path.join(build, "daemon", "mmud"), "--kernel",
            os.path.join(build, "tests", "guests", "virtio_blk.elf"),
            "--memory", "512M", "--drive",
            "file=%s%s" % (image, drive_opts), "--append", "bench"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         env=dict(os.environ, **env))
    starts, results = {}, {}
    for raw in p.stdout:
        now = time.monotonic()
        line = raw.decode(errors="replace").strip()
        if not line.startswith("bench: "):
            continue
        words = line.split()
        if len(words) >= 3 and words[2] == "start":
            starts[words[1]] = now
        elif len(words) >= 4 and words[2] == "end":
            name, n = words[1], int(words[3])
            secs = now - starts[name]
            size, unit = PHASES[name]
            results[name] = (n / secs if unit == "IOPS"
                             else n * size / secs / 1e6)
    p.wait(60)
    err = p.stderr.read().decode()
    if p.returncode != 1 or len(results) != len(PHASES):
        sys.exit("mmud failed (%s): %s" % (p.returncode, err[-2000:]))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--disk-dir", default="/var/tmp")
    a = ap.parse_args()
    images = []
    for where, d, opts in (("tmpfs", "/dev/shm", ",cache=writeback"),
                           ("disk", a.disk_dir, ",cache=none"),
                           ("disk", a.disk_dir, ",cache=writeback")):
        path = os.path.join(d, "mmud-bench-blk.raw")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(os.urandom(64 << 20))
        images.append((where + opts.replace(",", " "), path, opts))
    print("%-28s %-9s " % ("image", "backend") +
          " ".join("%18s" % n for n in PHASES))
    for label, path, opts in images:
        for backend, env in (("io_uring", {}),
                             ("threads", {"MMUD_TEST_NO_IO_URING": "1"})):
            runs = [run_once(a.build, path, opts, env)
                    for _ in range(a.runs)]
            cells = []
            for name, (_, unit) in PHASES.items():
                v = sorted(r[name] for r in runs)
                cells.append("%9.0f %-4s(±%2.0f%%)" % (
                    v[len(v) // 2], unit,
                    100 * (v[-1] - v[0]) / 2 / v[len(v) // 2]))
            print("%-28s %-9s " % (label, backend) + " ".join(cells))
            sys.stdout.flush()
    for _, path, _ in images:
        if os.path.exists(path):
            os.unlink(path)


if __name__ == "__main__":
    main()
