#!/usr/bin/env python3
"""Live migration timed on mmud beside QEMU 7.2 TCG in the same run
(docs/BENCHMARKS.md, "Live migration — bench/migration.py").

The guest is tests/guests/migrate_dirty.c: 1 GiB of RAM, 512 MiB of it
filled, then dirtied at R pages a second (one write a page) while it
measures its longest stop from its TSC. For each case, a source and a
destination process on this machine, a unix: socket between them:

  R = 10000 and 50000 pages/s, max-bandwidth uncapped (0) and 128 MiB/s;
  on mmud also 128 MiB/s with the dirty-limit capability (QEMU's TCG
  has none) and saves to a file: URI (QEMU 7.2 has none).

Each row: total-time, downtime and setup-time as query-migrate reports
them, bytes transferred, passes (dirty-sync-count), the guest's longest
stop by its own TSC from the start of the migration to its second report
on the destination, and the console gap the host sees across the
switchover (from the source's last report to the destination's first,
less one report interval). QEMU stops its guest TSC while the VM is
stopped, so its guest-measured stop leaves out the switchover; the
console gap does not. A case that does not converge in --limit seconds
is cancelled and reported as such.

Usage: bench/migration.py BUILDDIR [--runs N] [--only CASE,...]
        [--limit S] [--json]
(BUILDDIR: a meson build with daemon/mmud, tests/guests/migrate_dirty.elf
and tests/guests/qemu-shim.elf; release or debugoptimized.)
One JSON line per migration on stdout, then a table. MIG_BENCH_PERF=FILE
records `perf record -g` of both processes during each migration.
"""
import argparse
import importlib.machinery
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")

MEM_MIB = 1024
FILL_MIB = 512
REPORT_MS = 10
MIB = 1 << 20
REPORT = re.compile(r"dirty: hb (\d+) pages (\d+) gap (\d+) max (\d+)")


def tsc_khz():
    """The host TSC's frequency: the guest TSC runs at it under mmud and
    under QEMU's TCG (host ticks). /proc/cpuinfo's MHz is the TSC's on a
    host with a constant TSC."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    return 2000000


class QMP:
    """A minimal QMP client for mmud and QEMU alike."""

    def __init__(self, path, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        self.recv()
        self.cmd("qmp_capabilities")

    def recv(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("QMP closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while True:
            m = self.recv()
            if "event" in m:
                self.events.append(m)
                continue
            if "error" in m:
                raise RuntimeError("%s: %s" % (name, m["error"]))
            return m["return"]

    def close(self):
        self.sock.close()


class Console(threading.Thread):
    """The guest's reports as they arrive, with the host's time."""

    def __init__(self, path, timeout=30):
        super().__init__(daemon=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.lines = []  # (host time, text)
        self.text = ""
        self.cond = threading.Condition()
        self.start()

    def run(self):
        buf = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            now = time.monotonic()
            with self.cond:
                if not data:
                    self.lines.append((now, None))
                    self.cond.notify_all()
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    t = line.decode(errors="replace")
                    self.lines.append((now, t))
                    self.text += t + "\n"
                self.cond.notify_all()

    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if "MISMATCH" in self.text:
                    raise RuntimeError("guest: " + self.text[-300:])
                r = pred(self.lines)
                if r:
                    return r
                left = deadline - time.monotonic()
                if left <= 0 or (self.lines and self.lines[-1][1] is None):
                    raise RuntimeError("no %s; console: %r"
                                       % (what, self.text[-300:]))
                self.cond.wait(left)

    def reports(self, since=0.0):
        out = []
        with self.cond:
            for t, line in self.lines:
                m = REPORT.search(line or "")
                if m and t >= since:
                    out.append((t, int(m.group(1)), int(m.group(2)),
                                int(m.group(3)), int(m.group(4))))
        return out

    def count_reports(self):
        return len(self.reports())


# ---- the two hypervisors ---------------------------------------------------

class Mmud:
    name = "mmud"

    def __init__(self, build, tmp, tag, append, incoming=None):
        self.qmp_path = os.path.join(tmp, tag + ".qmp")
        self.con_path = os.path.join(tmp, tag + ".con")
        self.err = open(os.path.join(tmp, tag + ".err"), "w")
        argv = [os.path.join(build, "daemon", "mmud"), "--kernel",
                os.path.join(build, "tests", "guests", "migrate_dirty.elf"),
                "--smp", "1", "--memory", "%dM" % MEM_MIB, "--qmp",
                self.qmp_path, "--console", "socket:" + self.con_path,
                "--append", append]
        if incoming:
            argv += ["--incoming", incoming]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        self.qmp = QMP(self.qmp_path)
        self.con = Console(self.con_path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.err.close()


def qemu_run_module():
    path = os.path.join(ROOT, "tests", "tools", "qemu-run")
    return importlib.machinery.SourceFileLoader("qemu_run", path).load_module()


class Qemu:
    """QEMU TCG with the reference runner's boot shim and command line
    (tests/tools/qemu-run), COM1 on a socket."""
    name = "qemu"

    def __init__(self, build, tmp, tag, append, incoming=None):
        qr = qemu_run_module()
        shim = os.path.join(build, "tests", "guests", "qemu-shim.elf")
        kernel = os.path.join(build, "tests", "guests", "migrate_dirty.elf")
        args = argparse.Namespace(smp=1, mem=MEM_MIB, append=append)
        d = os.path.join(tmp, tag)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "params.bin"), "wb") as f:
            f.write(qr.params_module(args))
        shutil.copy(kernel, os.path.join(d, "kernel.elf"))
        self.qmp_path = os.path.join(d, "qmp.sock")
        self.con_path = os.path.join(d, "con.sock")
        argv = [
            os.environ.get("MMUD_QEMU", "qemu-system-x86_64"),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-machine", "pc,max-ram-below-4g=3G",
            "-accel", "tcg", "-cpu", qr.CPU, "-m", str(MEM_MIB),
            "-smp", "1",
            "-chardev", "socket,id=com1,path=%s,server=on,wait=off"
            % self.con_path, "-serial", "chardev:com1",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-device", "isa-debugcon,iobase=%#x,chardev=shim,readback=0xff"
            % qr.DEBUGCON_PORT,
            "-chardev", "file,id=shim,path=" + os.path.join(d, "shim.log"),
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
            "-kernel", shim, "-initrd", "%s,%s" % (
                os.path.join(d, "params.bin"),
                os.path.join(d, "kernel.elf")),
        ]
        if incoming:
            argv += ["-incoming", "defer"]
        self.err = open(os.path.join(d, "stderr"), "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        self.qmp = QMP(self.qmp_path)
        self.con = Console(self.con_path)
        if incoming:
            self.qmp.cmd("migrate-incoming", {"uri": incoming})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.err.close()


# ---- one migration ----------------------------------------------------------

def migrate_once(kind, build, rate, bw, dirty_limit, to_file, limit):
    khz = tsc_khz()
    append = "fill=%d rate=%d tsckhz=%d report=%d" % (
        FILL_MIB, rate, khz, REPORT_MS)
    with tempfile.TemporaryDirectory(prefix="mmud-bench-mig-") as tmp:
        uri = ("file:" + os.path.join(tmp, "vm.mig") if to_file else
               "unix:" + os.path.join(tmp, "mig.sock"))
        src = dst = None
        try:
            src = kind(build, tmp, "src", append)
            if kind is Mmud and not to_file:
                src.con.wait_for(lambda ls: any(
                    "dirty: ready" in (l or "") for _, l in ls), 300,
                    "ready line")
                dst = kind(build, tmp, "dst", append, incoming="defer")
                dst.qmp.cmd("migrate-incoming", {"uri": uri})
            elif not to_file:
                src.con.wait_for(lambda ls: any(
                    "dirty: ready" in (l or "") for _, l in ls), 300,
                    "ready line")
                dst = kind(build, tmp, "dst", append, incoming=uri)
            else:
                src.con.wait_for(lambda ls: any(
                    "dirty: ready" in (l or "") for _, l in ls), 300,
                    "ready line")
            # Warm-up: a second of dirtying at the rate.
            n0 = src.con.count_reports()
            src.con.wait_for(lambda ls: src.con.count_reports() >= n0 + 50,
                             60, "reports")
            q = src.qmp
            caps = [{"capability": "events", "state": True}]
            if dirty_limit:
                caps.append({"capability": "dirty-limit", "state": True})
            q.cmd("migrate-set-capabilities", {"capabilities": caps})
            params = {"max-bandwidth": bw, "downtime-limit": 300}
            if dirty_limit:
                params["vcpu-dirty-limit"] = dirty_limit
            q.cmd("migrate-set-parameters", params)
            t0 = time.monotonic()
            before = src.con.reports()
            pages0 = before[-1][2] if before else 0
            perf = None
            if os.environ.get("MIG_BENCH_PERF"):
                # Profile both ends for the migration alone.
                pids = ",".join(str(p.proc.pid) for p in (src, dst) if p)
                perf = subprocess.Popen(
                    ["perf", "record", "-g", "-o",
                     os.environ["MIG_BENCH_PERF"], "-p", pids],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
            q.cmd("migrate", {"uri": uri})
            info = {}
            while True:
                info = q.cmd("query-migrate")
                st = info.get("status")
                if st in ("completed", "failed", "cancelled"):
                    break
                if time.monotonic() - t0 > limit:
                    q.cmd("migrate_cancel")
                    return {"converged": False, "limit": limit,
                            "passes": info.get("ram", {}).get(
                                "dirty-sync-count"),
                            "throttle": info.get(
                                "dirty-limit-throttle-time-per-round")}
                time.sleep(0.05)
            if perf:
                perf.send_signal(2)
                perf.wait()
            if info["status"] != "completed":
                raise RuntimeError("migration %s: %r" % (info["status"],
                                                         info))
            src_reports = src.con.reports(t0)
            res = {
                "converged": True,
                "total_ms": info.get("total-time"),
                "downtime_ms": info.get("downtime"),
                "setup_ms": info.get("setup-time"),
                "bytes": info["ram"]["transferred"],
                "passes": info["ram"].get("dirty-sync-count"),
                "dirtied_during": (src_reports[-1][2] - pages0)
                if src_reports else None,
            }
            # What the guest achieved while the source ran it: the pages
            # it dirtied over the time from migrate to its last report
            # on the source (TCG may run it below the rate asked).
            if src_reports and src_reports[-1][0] > t0:
                res["dirty_rate"] = round(res["dirtied_during"] / (
                    src_reports[-1][0] - t0))
            if to_file:
                return res
            # The destination's first reports: its guest's view of the
            # switchover.
            dst.con.wait_for(lambda ls: dst.con.count_reports() >= 3, 60,
                             "reports on the destination")
            dr = dst.con.reports()
            gaps = [r[3] for r in src_reports] + [r[3] for r in dr[:2]]
            res["guest_max_stop_ms"] = max(gaps) / 1000.0 if gaps else None
            res["guest_switch_stop_ms"] = max(r[3] for r in dr[:2]) / 1000.0
            if src_reports:
                res["console_gap_ms"] = max(0.0, (dr[0][0] - src_reports[-1][0])
                                            * 1000.0 - REPORT_MS)
            return res
        finally:
            for p in (src, dst):
                if p:
                    p.stop()


CASES = [
    # name, rate, bandwidth, dirty-limit MiB/s, file:
    ("r10k-uncapped", 10000, 0, 0, False),
    ("r50k-uncapped", 50000, 0, 0, False),
    ("r10k-128M", 10000, 128 * MIB, 0, False),
    ("r50k-128M", 50000, 128 * MIB, 0, False),
    ("r50k-128M-dirty-limit", 50000, 128 * MIB, 1, False),
    ("r10k-128M-dirty-limit", 10000, 128 * MIB, 1, False),
    ("r10k-file", 10000, 0, 0, True),
    ("r50k-file-dirty-limit", 50000, 0, 1, True),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", default="")
    ap.add_argument("--limit", type=float, default=60.0)
    ap.add_argument("--no-qemu", action="store_true")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    only = set(a.only.split(",")) if a.only else None
    rows = []
    for name, rate, bw, dlim, to_file in CASES:
        if only and name not in only:
            continue
        kinds = [Mmud]
        if not dlim and not to_file and not a.no_qemu:
            kinds.append(Qemu)
        # The sides alternate run by run, so a change in the host's load
        # falls on both.
        for run in range(a.runs):
            for kind in kinds:
                try:
                    r = migrate_once(kind, build, rate, bw, dlim, to_file,
                                     a.limit)
                except (RuntimeError, OSError, EOFError) as e:
                    # One failed run is a row saying so, not the end of
                    # the others.
                    r = {"converged": False, "error": str(e)[:300],
                         "limit": a.limit, "passes": None}
                r.update({"case": name, "side": kind.name, "run": run})
                print(json.dumps(r), flush=True)
                rows.append(r)
    print()
    print("| case | side | total ms | downtime ms | setup ms | MB sent | "
          "passes | guest pages/s | guest stop ms | console gap ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("error"):
            print("| %s | %s | failed: %s |" % (r["case"], r["side"],
                                                r["error"]))
            continue
        if not r["converged"]:
            print("| %s | %s | no convergence in %d s (%s passes) |"
                  % (r["case"], r["side"], r["limit"], r["passes"]))
            continue
        print("| %s | %s | %s | %s | %s | %.0f | %s | %s | %s | %s |" % (
            r["case"], r["side"], r["total_ms"], r["downtime_ms"],
            r["setup_ms"], r["bytes"] / 1e6, r["passes"],
            r.get("dirty_rate"), r.get("guest_max_stop_ms"),
            r.get("console_gap_ms")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
