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
tmpfs and disk images, busybox dd with O_DIRECT inside (see
compare_qemu()).
"""
import argparse
import os
import re
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


# ---- beside QEMU 7.2's TCG: Linux's driver and busybox dd under both ----
#
# Our guest is entered the way mmud's loader enters it (docs/GUEST-ABI.md)
# and QEMU cannot boot it, so the comparison runs Debian's kernel with
# scripts/linux-guest's initramfs (mmud.modules mmud.shell) under both
# runners on the same image, and times busybox dd with O_DIRECT inside
# the guest (Debian's busybox dd prints no rate: the guest's
# /proc/uptime before and after, 10 ms ticks, each phase lasting seconds).
# busybox has no random offsets and no queue depth: the 4 KiB row is
# sequential at depth 1, and there is no depth-32 row.
LINUX_DD = [
    ("4k-read-qd1", 4096, "IOPS",
     "dd if=/dev/vda of=/dev/null bs=4k count=8192 iflag=direct", 8192),
    ("1m-seqread-qd1", 1 << 20, "MB/s",
     "dd if=/dev/vda of=/dev/null bs=1M count=64 iflag=direct", 64),
    ("1m-seqwrite-qd1", 1 << 20, "MB/s",
     "dd if=/dev/zero of=/dev/vda bs=1M count=64 oflag=direct", 64),
]
QEMU_CMD = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off,pit=off,"
            "pic=off,rtc=off,isa-serial=on,acpi=on", "-accel", "tcg",
            "-cpu", "qemu64,-mtrr,-mca,-mce", "-m", "512M", "-nographic",
            "-no-reboot", "-nodefaults", "-serial", "stdio"]
LINUX_TIMEOUT = 900


def linux_session(read, write):
    """Waits for the shell, runs LINUX_DD, returns {name: value}."""
    text = ""
    end = time.monotonic() + LINUX_TIMEOUT

    def until(pred):
        nonlocal text
        while not pred(text):
            if time.monotonic() > end:
                raise RuntimeError("timed out; last lines:\n" + text[-2000:])
            chunk = read()
            if not chunk:
                raise RuntimeError("console ended; last lines:\n" +
                                   text[-2000:])
            text += chunk.decode(errors="replace")
    until(lambda t: "loaded virtio_blk" in t and
          t.replace("\x1b[6n", "").rstrip(" ").endswith("#"))
    time.sleep(1)
    cmd = "; ".join("read a b </proc/uptime; %s 2>/dev/null; "
                    "read c d </proc/uptime; echo T-%s $a $c" % (c, n)
                    for n, _, _, c, _ in LINUX_DD)
    write((cmd + "; echo DD-$((40+2))\n").encode())
    until(lambda t: "DD-42" in t)
    out = {}
    for name, size, unit, _, count in LINUX_DD:
        m = re.search(r"^T-%s ([\d.]+) ([\d.]+)$" % name,
                      text.replace("\r", ""), re.M)
        if not m:
            raise RuntimeError("no dd result for %s:\n%s" %
                               (name, text[-2000:]))
        secs = float(m.group(2)) - float(m.group(1))
        out[name] = (count / secs if unit == "IOPS" else
                     count * size / secs / 1e6)
    write(b"poweroff -f\n")
    return out


def linux_mmud(build, kernel, initrd, image):
    args = [os.path.join(build, "daemon", "mmud"), "--kernel", kernel,
            "--initrd", initrd, "--memory", "512M", "--smp", "1",
            "--no-reboot", "--drive", "file=%s,format=raw,cache=none" % image,
            "--append", "console=ttyS0 panic=-1 reboot=acpi nokaslr "
            "mmud.modules mmud.shell"]
    with tempfile.TemporaryDirectory(prefix="mmud-bench-") as tmp:
        sock = os.path.join(tmp, "con.sock")
        p = subprocess.Popen(args + ["--console", "socket:" + sock],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            for _ in range(600):
                try:
                    con.connect(sock)
                    break
                except OSError:
                    time.sleep(0.05)
            return linux_session(lambda: con.recv(65536), con.sendall)
        finally:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def linux_qemu(kernel, initrd, image):
    args = QEMU_CMD + [
        "-kernel", kernel, "-initrd", initrd, "-append",
        "console=ttyS0 tsc_early_khz=2000000 tsc=reliable mmud.modules "
        "mmud.shell", "-device", "virtio-blk-device,drive=d0", "-drive",
        "id=d0,file=%s,format=raw,if=none,aio=io_uring,cache.direct=on" %
        image]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)

    def write(b):
        p.stdin.write(b)
        p.stdin.flush()
    try:
        return linux_session(lambda: os.read(p.stdout.fileno(), 65536),
                             write)
    finally:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def compare_qemu(build, runs, disk_dir):
    out = subprocess.run([sys.executable, os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "scripts",
        "linux-guest")], check=True, stdout=subprocess.PIPE).stdout.decode()
    g = dict(line.split(" ", 1) for line in out.splitlines())
    print("load average before: %s" % open("/proc/loadavg").read().strip())
    print("%-14s %-7s " % ("image", "runner") +
          " ".join("%16s" % n for n, _, _, _, _ in LINUX_DD))
    for where, d in (("tmpfs", "/dev/shm"), ("disk", disk_dir)):
        path = os.path.join(d, "mmud-bench-linux.raw")
        with open(path, "wb") as f:
            f.write(os.urandom(64 << 20))
        res = {"mmud": [], "qemu": []}
        for _ in range(runs):
            res["mmud"].append(linux_mmud(build, g["kernel"], g["initrd"],
                                          path))
            res["qemu"].append(linux_qemu(g["kernel"], g["initrd"], path))
        med = {}
        for runner in ("mmud", "qemu"):
            med[runner] = {}
            cells = []
            for n, _, unit, _, _ in LINUX_DD:
                v = sorted(r[n] for r in res[runner])
                med[runner][n] = v[len(v) // 2]
                cells.append("%9.0f %-6s" % (med[runner][n], unit))
            print("%-14s %-7s " % (where + " none", runner) +
                  " ".join(cells))
        print("%-14s %-7s " % (where + " none", "ratio") +
              " ".join("%15.2fx" % (med["mmud"][n] / med["qemu"][n])
                       for n, _, _, _, _ in LINUX_DD))
        sys.stdout.flush()
        os.unlink(path)
    print("load average after: %s" % open("/proc/loadavg").read().strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--disk-dir", default="/var/tmp")
    ap.add_argument("--qemu", action="store_true",
                    help="only the comparison with QEMU 7.2's TCG")
    a = ap.parse_args()
    if a.qemu:
        compare_qemu(a.build, a.runs, a.disk_dir)
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
