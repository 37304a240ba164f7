#!/usr/bin/env python3
"""Debian's kernel and scripts/linux-guest's initramfs timed on mmud and
on QEMU 7.2's TCG in the same run (docs/BENCHMARKS.md, "Linux").

For each runner: seconds from starting the process to /init's banner,
then the MMU workload's wall time (/bin/mmud-workload: from its
"start" line to its "done" line on the console, as the host sees them),
and the guest's instructions per second on mmud (x-query-mmu-stats's
instructions over the boot). Both boot with mmud.workload, then power
off. QEMU runs the command line of docs/BENCHMARKS.md, "Linux" (microvm,
TCG, qemu64 without MTRR/MCA/MCE, 512 MiB, tsc_early_khz since TCG has
no kvmclock); mmud gets 512 MiB and 1 vCPU too.

Usage: bench/linux.py MMUD [ROUNDS]   (MMUD: build/daemon/mmud)
       bench/linux.py --to-init MMUD [WRAPPER...]

--to-init boots mmud alone, without the workload, stops at /init's
banner and prints the guest instructions retired, the daemon's CPU time
(user + system, from /proc) and the run loop's counters; with a WRAPPER
command (say `valgrind --tool=cachegrind --cache-sim=no`) mmud runs
under it and is ended with QMP quit, so the wrapper reports. Host
instructions per guest instruction (docs/BENCHMARKS.md, "Linux") are
the wrapper's count over the guest's.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import daemonlib as dl  # noqa: E402

BANNER = "mmud-linux-guest: /init running"
QEMU_APPEND = "console=ttyS0 tsc_early_khz=2000000 tsc=reliable"
MMUD_APPEND = "console=ttyS0 panic=-1 reboot=acpi nokaslr"
TIMEOUT = 1800


def guest_files():
    out = subprocess.run([sys.executable, os.path.join(
        HERE, "..", "scripts", "linux-guest")], check=True,
        stdout=subprocess.PIPE).stdout.decode()
    g = dict(line.split(" ", 1) for line in out.splitlines())
    return g["kernel"], g["initrd"]


def watch(read, t_start, marks):
    """Reads console text with read() until every mark is seen; returns
    {mark: seconds since t_start} and the text."""
    text, seen = "", {}
    while len(seen) < len(marks):
        chunk = read()
        if not chunk:
            raise RuntimeError("console ended; last lines:\n" + text[-2000:])
        text += chunk.decode(errors="replace")
        now = time.monotonic() - t_start
        for m in marks:
            if m not in seen and m in text:
                seen[m] = now
        if now > TIMEOUT:
            raise RuntimeError("timed out; last lines:\n" + text[-2000:])
    return seen, text


MARKS = [BANNER, "mmud-workload: start", "mmud-workload: done",
         "mmud-linux-guest: powering off"]


def run_mmud(mmud, kernel, initrd):
    dl.MMUD = mmud
    dl.TIMEOUT = 120
    with tempfile.TemporaryDirectory(prefix="mmud-bench-") as tmp:
        t0 = time.monotonic()
        d = dl.Daemon(tmp, "--paused", "--initrd", initrd, "--memory",
                      "512M", "--no-reboot", smp=1, kernel=kernel,
                      append=MMUD_APPEND + " mmud.workload")
        con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        con.connect(d.con)
        c = dl.client_then_cont(d)
        c.sock.settimeout(TIMEOUT)

        def read():
            return con.recv(65536)
        seen, _ = watch(read, t0, MARKS[:2])
        insn = c.cmd("x-query-mmu-stats")["return"]["vcpus"][0][
            "instructions"]
        more, _ = watch(read, t0, MARKS[2:])
        seen.update(more)
        d.wait()
        d.kill()
    return seen, insn


def run_qemu(kernel, initrd):
    args = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off,pit=off,"
            "pic=off,rtc=off,isa-serial=on,acpi=on", "-accel", "tcg",
            "-cpu", "qemu64,-mtrr,-mca,-mce", "-m", "512M",
            "-kernel", kernel, "-initrd", initrd,
            "-append", QEMU_APPEND + " mmud.workload", "-nographic",
            "-no-reboot", "-nodefaults", "-serial", "stdio"]
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        seen, _ = watch(lambda: os.read(p.stdout.fileno(), 65536), t0,
                        MARKS)
        p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return seen


def cpu_seconds(pid):
    """User + system CPU seconds of process pid and its threads."""
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def to_init(mmud, wrapper):
    kernel, initrd = guest_files()
    print("load average before: %s" % open("/proc/loadavg").read().strip())
    if wrapper:
        script = tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False)
        script.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (
            " ".join(wrapper), os.path.abspath(mmud)))
        script.close()
        os.chmod(script.name, 0o755)
        mmud = script.name
    dl.MMUD = mmud
    dl.TIMEOUT = 600
    with tempfile.TemporaryDirectory(prefix="mmud-bench-") as tmp:
        t0 = time.monotonic()
        d = dl.Daemon(tmp, "--paused", "--initrd", initrd, "--memory",
                      "512M", "--no-reboot", smp=1, kernel=kernel,
                      append=MMUD_APPEND)
        con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        con.connect(d.con)
        c = dl.client_then_cont(d)
        c.sock.settimeout(TIMEOUT)
        seen, _ = watch(lambda: con.recv(65536), t0, [BANNER])
        c.cmd("stop")
        cpu = cpu_seconds(d.proc.pid)
        insn = c.cmd("x-query-mmu-stats")["return"]["vcpus"][0][
            "instructions"]
        stats = c.cmd("x-query-cpu-stats", {"cpu-index": 0})["return"]
        c.cmd("quit")
        d.wait()
        print(d.log()[-3000:] if wrapper else "", end="")
        d.kill()
    print("to /init: %.1f s wall, %.2f s CPU, %d instructions "
          "(%.0f M/s of CPU time)" % (seen[BANNER], cpu, insn,
                                      insn / 1e6 / cpu))
    print("cpu-stats: %s" % stats)
    print("load average after: %s" % open("/proc/loadavg").read().strip())
    return 0


def main():
    if sys.argv[1] == "--to-init":
        return to_init(sys.argv[2], sys.argv[3:])
    mmud = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    kernel, initrd = guest_files()
    print("load average before: %s" % open("/proc/loadavg").read().strip())
    for r in range(rounds):
        m, insn = run_mmud(mmud, kernel, initrd)
        q = run_qemu(kernel, initrd)
        mw = m[MARKS[2]] - m[MARKS[1]]
        qw = q[MARKS[2]] - q[MARKS[1]]
        print("round %d: to /init: mmud %.1f s, qemu-tcg %.1f s (%.2fx); "
              "workload: mmud %.1f s, qemu-tcg %.1f s (%.2fx); mmud %.0f M "
              "instructions to the workload's start (%.0f M/s)"
              % (r, m[BANNER], q[BANNER], m[BANNER] / q[BANNER], mw, qw,
                 mw / qw, insn / 1e6, insn / 1e6 / m[MARKS[1]]))
        sys.stdout.flush()
    print("load average after: %s" % open("/proc/loadavg").read().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
