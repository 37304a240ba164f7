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

    bench/virtio_blk.py BUILD_DIR [--runs N] [--disk-dir DIR] [--qemu]

--qemu: instead, Debian's kernel under mmud and under QEMU 7.2's TCG
(microvm, virtio-blk-device, aio=io_uring, cache.direct=on) on the same
tmpfs and disk images, alternating, with bench/blkload.c inside
(O_DIRECT through Linux AIO: 4 KiB random reads, 1 MiB sequential reads
and writes, each at queue depth 1 and 32; see compare_qemu()).

    bench/virtio_blk.py BUILD_DIR --qemu [--runs N] [--disk-dir DIR]
        [--phase-secs S]
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
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


# ---- beside QEMU 7.2's TCG: Linux's driver and mmud-blkload under both ----
#
# Our guest is entered the way mmud's loader enters it (docs/GUEST-ABI.md)
# and QEMU cannot boot it, so the comparison runs Debian's kernel with
# scripts/linux-guest's initramfs under both runners on the same image,
# with bench/blkload.c (mmud-blkload, static, Linux AIO with O_DIRECT) as
# the load: /init runs it on /dev/vda for mmud.blkbench=SECONDS per phase
# and powers off. Each phase is timed by the guest's CLOCK_MONOTONIC;
# the host's arrival times of its "begin" and "result" lines are kept to
# check the guest's clock (they include the console's latency).
LINUX_PHASES = [
    ("randread-4096-qd1", "4k randread QD1", "IOPS"),
    ("randread-4096-qd32", "4k randread QD32", "IOPS"),
    ("seqread-1048576-qd1", "1M seqread QD1", "MB/s"),
    ("seqread-1048576-qd32", "1M seqread QD32", "MB/s"),
    ("seqwrite-1048576-qd1", "1M seqwrite QD1", "MB/s"),
    ("seqwrite-1048576-qd32", "1M seqwrite QD32", "MB/s"),
]
QEMU_CMD = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off,pit=off,"
            "pic=off,rtc=off,isa-serial=on,acpi=on", "-accel", "tcg",
            "-cpu", "qemu64,-mtrr,-mca,-mce", "-m", "512M", "-nographic",
            "-no-reboot", "-nodefaults", "-serial", "stdio"]
LINUX_TIMEOUT = 600
RESULT = re.compile(r"blkload: result (\S+) ops (\d+) bytes (\d+) ns (\d+)")


def blkload_session(p, what):
    """Reads the guest's console from p.stdout until mmud-blkload is done;
    returns {phase: (value, guest seconds, host seconds)}."""
    out, begins, text = {}, {}, ""
    end = time.monotonic() + LINUX_TIMEOUT
    for raw in p.stdout:
        now = time.monotonic()
        line = raw.decode(errors="replace").strip()
        text = (text + line + "\n")[-3000:]
        if now > end:
            break
        if line.startswith("blkload: begin "):
            begins[line.split()[2]] = now
        m = RESULT.search(line)
        if m:
            name, ops, nbytes, ns = (m.group(1), int(m.group(2)),
                                     int(m.group(3)), int(m.group(4)))
            unit = dict((n, u) for n, _, u in LINUX_PHASES).get(name)
            secs = ns / 1e9
            out[name] = (ops / secs if unit == "IOPS" else
                         nbytes / secs / 1e6, secs,
                         now - begins.get(name, now))
        if "blkload: error" in line or "blkload: done" in line or \
                "powering off" in line:
            break
    p.kill()
    p.wait()
    missing = [n for n, _, _ in LINUX_PHASES if n not in out]
    if missing:
        sys.exit("%s: no result for %s; last lines:\n%s" %
                 (what, ", ".join(missing), text))
    return out


def blkload_mmud(build, kernel, initrd, image, secs):
    args = [os.path.join(build, "daemon", "mmud"), "--kernel", kernel,
            "--initrd", initrd, "--memory", "512M", "--smp", "1",
            "--no-reboot", "--drive", "file=%s,format=raw,cache=none" % image,
            "--append", "console=ttyS0 panic=-1 reboot=acpi nokaslr "
            "mmud.modules mmud.blkbench=%d" % secs]
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return blkload_session(p, "mmud")


def blkload_qemu(kernel, initrd, image, secs):
    args = QEMU_CMD + [
        "-kernel", kernel, "-initrd", initrd, "-append",
        "console=ttyS0 tsc_early_khz=2000000 tsc=reliable mmud.modules "
        "mmud.blkbench=%d" % secs, "-device", "virtio-blk-device,drive=d0",
        "-drive",
        "id=d0,file=%s,format=raw,if=none,aio=io_uring,cache.direct=on" %
        image]
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return blkload_session(p, "qemu")


def compare_qemu(build, runs, disk_dir, secs):
    blkload = os.path.join(build, "bench", "mmud-blkload")
    if not os.path.exists(blkload):
        sys.exit("no %s: build the bench/ targets first" % blkload)
    out = subprocess.run([sys.executable, os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "scripts",
        "linux-guest"), "--blkload", blkload], check=True,
        stdout=subprocess.PIPE).stdout.decode()
    g = dict(line.split(" ", 1) for line in out.splitlines())
    print("load average before: %s" % open("/proc/loadavg").read().strip())
    print("%-11s %-6s " % ("image", "runner") +
          " ".join("%17s" % label for _, label, _ in LINUX_PHASES))
    clock_skew = 0.0
    for where, d in (("tmpfs", "/dev/shm"), ("disk", disk_dir)):
        path = os.path.join(d, "mmud-bench-linux.raw")
        with open(path, "wb") as f:
            f.write(os.urandom(64 << 20))
        res = {"mmud": [], "qemu": []}
        try:
            for i in range(runs):
                # Alternate which runner goes first, so that a drift of
                # the host's load does not always favour the same one.
                order = ("mmud", "qemu") if i % 2 == 0 else ("qemu", "mmud")
                for runner in order:
                    if runner == "mmud":
                        r = blkload_mmud(build, g["kernel"], g["initrd"],
                                         path, secs)
                    else:
                        r = blkload_qemu(g["kernel"], g["initrd"], path,
                                         secs)
                    res[runner].append(r)
                    for _, gsecs, hsecs in r.values():
                        clock_skew = max(clock_skew,
                                         abs(hsecs - gsecs) / gsecs)
        finally:
            os.unlink(path)
        med = {}
        for runner in ("mmud", "qemu"):
            med[runner] = {}
            cells = []
            for n, _, unit in LINUX_PHASES:
                v = sorted(r[n][0] for r in res[runner])
                med[runner][n] = v[len(v) // 2]
                cells.append("%6.0f %-4s(±%2.0f%%)" % (
                    v[len(v) // 2], unit,
                    100 * (v[-1] - v[0]) / 2 / v[len(v) // 2]))
            print("%-11s %-6s " % (where, runner) + " ".join(cells))
        print("%-11s %-6s " % (where, "ratio") +
              " ".join("%16.2fx" % (med["mmud"][n] / med["qemu"][n])
                       for n, _, _ in LINUX_PHASES))
        sys.stdout.flush()
    print("guest clock against the console's arrival times: at most "
          "%.1f %% apart" % (100 * clock_skew))
    print("load average after: %s" % open("/proc/loadavg").read().strip())


def split_mmud(build, disk_dir, secs):
    """--split: one boot of mmud with QMP per image (tmpfs, disk),
    reading query-cpus-fast and query-blockstats at each phase's begin
    and result lines: where a phase's time goes, device or guest."""
    sys.path.insert(0, os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "..", "tests", "lib"))
    blkload = os.path.join(build, "bench", "mmud-blkload")
    out = subprocess.run([sys.executable, os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "scripts",
        "linux-guest"), "--blkload", blkload], check=True,
        stdout=subprocess.PIPE).stdout.decode()
    g = dict(line.split(" ", 1) for line in out.splitlines())
    for where, d in (("tmpfs", "/dev/shm"), ("disk", disk_dir)):
        print("%s image, cache=none:" % where)
        split_one(build, g, os.path.join(d, "mmud-bench-split.raw"), secs)


def split_one(build, g, path, secs):
    import qmpclient

    with open(path, "wb") as f:
        f.write(os.urandom(64 << 20))
    tmp = tempfile.mkdtemp(prefix="mmud-bench-")
    qmp_path = os.path.join(tmp, "qmp.sock")
    args = [os.path.join(build, "daemon", "mmud"), "--kernel", g["kernel"],
            "--initrd", g["initrd"], "--memory", "512M", "--smp", "1",
            "--no-reboot", "--qmp", qmp_path, "--drive",
            "file=%s,format=raw,cache=none" % path, "--append",
            "console=ttyS0 panic=-1 reboot=acpi nokaslr mmud.modules "
            "mmud.blkbench=%d" % secs]
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for _ in range(200):
        if os.path.exists(qmp_path):
            break
        time.sleep(0.05)
    q = qmpclient.Client(qmp_path, negotiate=True)

    def ask(cmd):
        q.send({"execute": cmd})
        while True:
            m = q.recv()
            if "return" in m or "error" in m:
                return m["return"]

    def snap():
        cpu = ask("query-cpus-fast")[0]
        st = ask("query-blockstats")[0]["stats"]
        return (time.monotonic(), cpu["instructions"], cpu["exits"], st)

    print("%-22s %7s %9s %8s %7s %7s %7s %6s" % (
        "phase", "ops/s", "instr/op", "Minstr/s", "mmio/op", "hlt/op",
        "dev ms", "dev %"))
    begin = None
    try:
        for raw in p.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("blkload: begin"):
                begin = snap()
            m = RESULT.search(line)
            if m and begin:
                end = snap()
                ops = int(m.group(2))
                wall = end[0] - begin[0]
                ins = end[1] - begin[1]
                mmio = end[2]["mmio"] - begin[2]["mmio"]
                hlt = end[2]["hlt"] - begin[2]["hlt"]
                dev_ns = sum(end[3][k] - begin[3][k] for k in
                             ("rd_total_time_ns", "wr_total_time_ns"))
                dev_ops = sum(end[3][k] - begin[3][k] for k in
                              ("rd_operations", "wr_operations"))
                print("%-22s %7.0f %9.0f %8.1f %7.2f %7.2f %7.0f %5.0f%%"
                      "  (%d device requests)" % (
                          m.group(1), ops / wall, ins / max(ops, 1),
                          ins / wall / 1e6, mmio / max(ops, 1),
                          hlt / max(ops, 1), dev_ns / 1e6,
                          100 * dev_ns / 1e9 / wall, dev_ops))
                sys.stdout.flush()
            if "blkload: done" in line or "blkload: error" in line:
                if "error" in line:
                    print(line)
                break
    finally:
        p.kill()
        p.wait()
        os.unlink(path)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--disk-dir", default="/var/tmp")
    ap.add_argument("--qemu", action="store_true",
                    help="only the comparison with QEMU 7.2's TCG")
    ap.add_argument("--phase-secs", type=int, default=3,
                    help="--qemu: seconds per mmud-blkload phase")
    ap.add_argument("--split", action="store_true",
                    help="only mmud under Linux, with the device's and "
                    "the vCPU's counters per mmud-blkload phase")
    a = ap.parse_args()
    if a.split:
        split_mmud(a.build, a.disk_dir, a.phase_secs)
        return
    if a.qemu:
        compare_qemu(a.build, a.runs, a.disk_dir, a.phase_secs)
        return
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
