#!/usr/bin/env python3
"""Memory operations on a running VM: times mmud's QMP commands
on the real daemon while the memops guest (bench/memops.c) runs, and the
closest KVM operations through the KVM API (bench/kvm_memops.c) on the
same guest in the same run, and prints one JSON line per figure in
bench/run.py's shape (median of each side, ratio mmud / kvm, spread).

Usage: bench/run_memops.py BUILDDIR [--runs N] [--only NAME[,NAME...]]
                           [--quick]

Figures (docs/BENCHMARKS.md says how each is measured):
  qmp_roundtrip_ns          query-status, for scale (mmud only)
  memslot_remove_p50_ns     x-memslot-remove of a 1 MiB slot the guest does
  memslot_remove_p99_ns     not use, one per 10 ms, vCPU running (KVM:
                            KVM_SET_USER_MEMORY_REGION with size 0)
  touch_rate_during_remove  the guest's 4 KiB-page write rate during that
                            churn / its rate before and after (1 = no cost)
  zap_all_fast_caller_ns    x-mmu-zap-all with ~100k shadow pages (KVM:
  zap_all_slow_caller_ns    deleting an unused memslot, which zaps all
                            shadow pages the fast way; the same KVM figure
                            beside both)
  zap_all_fast_paused_caller_ns  the fast one with the vCPU stopped
                            (QMP stop before, cont after): a diagnostic,
                            no KVM figure
  zap_all_*_shared_caller_ns  with --shared-page: the same, every page
                            table mapping one shared data page
  dirty_harvest_1g_ns       x-dirty-log-harvest {clear: true} of a 1 GiB
                            slot whose every page the guest wrote (KVM:
                            KVM_GET_DIRTY_LOG)

The mmud side reads and writes the guest's control page (a 4 KiB
hot-added slot) through /proc/PID/mem of the daemon, at the address of
its memfd mapping in /proc/PID/maps.
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import daemonlib as td  # noqa: E402  (Daemon, Client)

GiB = 1 << 30
CTRL_GPA, DIRTY_GPA = 64 * GiB, 16 * GiB
CHURN_GPA, CHURN_SIZE = 8 * GiB, 1 << 20
DIRTY_PAGES = GiB // 4096
PERIOD = 0.010  # one remove per 10 ms, as kvm_memops.c
KVM_SKIP = 77
GROUPS = ("remove", "zap", "dirty")


class BenchError(Exception):
    pass


def ok(r):
    if "return" not in r:
        raise BenchError(f"QMP error: {r}")
    return r["return"]


class Mmud:
    """One paused mmud on the memops guest with its control slot added;
    cont() starts the vCPU."""

    def __init__(self, tmp, mode, slots=(), extra=""):
        self.d = td.Daemon(tmp, "--paused", "--memory", "1G", smp=1,
                           kernel=os.path.join(ELFS, "memops.elf"),
                           append=f"mode={mode} {extra}".strip())
        self.c = self.d.client()
        ok(self.c.cmd("x-memslot-add", {"gpa": CTRL_GPA, "size": 4096}))
        for args in slots:
            ok(self.c.cmd("x-memslot-add", args))
        self.ctrl = self._ctrl_hva()
        self.mem = os.open(f"/proc/{self.d.proc.pid}/mem", os.O_RDWR)

    def _ctrl_hva(self):
        with open(f"/proc/{self.d.proc.pid}/maps") as f:
            for line in f:
                if "mmud-hotmem" not in line:
                    continue
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if hi - lo == 4096:
                    return lo
        raise BenchError("no 4 KiB mmud-hotmem mapping in the daemon")

    def cont(self):
        ok(self.c.cmd("cont"))

    def progress(self):
        return struct.unpack("<Q", os.pread(self.mem, 8, self.ctrl))[0]

    def go(self, v):
        os.pwrite(self.mem, struct.pack("<Q", v), self.ctrl + 8)

    def wait_progress(self, want, timeout=120):
        deadline = time.monotonic() + timeout
        while self.progress() < want:
            if self.d.proc.poll() is not None or \
                    time.monotonic() > deadline:
                raise BenchError("the guest made no progress: " +
                                 self.d.log()[-500:])
            time.sleep(0.0002)

    def timed(self, cmd, args=None):
        t0 = time.perf_counter_ns()
        r = ok(self.c.cmd(cmd, args))
        return time.perf_counter_ns() - t0, r

    def close(self):
        os.close(self.mem)
        self.c.cmd("quit")
        self.d.wait()
        self.d.kill()

    def touch_rate(self, secs):
        p0, t0 = self.progress(), time.monotonic()
        time.sleep(secs)
        return (self.progress() - p0) / (time.monotonic() - t0)


def mmud_remove(tmp, runs):
    m = Mmud(tmp, 1)
    m.cont()
    m.wait_progress(1)
    time.sleep(0.5)
    rtt = [m.timed("query-status")[0] for _ in range(100)]
    base1 = m.touch_rate(1.0)
    lat = []
    p0, t0 = m.progress(), time.monotonic()
    for i in range(runs):
        slot = ok(m.c.cmd("x-memslot-add", {"gpa": CHURN_GPA,
                                            "size": CHURN_SIZE}))["slot"]
        lat.append(m.timed("x-memslot-remove", {"slot": slot})[0])
        while time.monotonic() < t0 + (i + 1) * PERIOD:
            time.sleep(0.0001)
    churn = (m.progress() - p0) / (time.monotonic() - t0)
    base2 = m.touch_rate(1.0)
    m.close()
    return {"remove_ns": lat, "touch_base": base1, "touch_churn": churn,
            "touch_base2": base2, "rtt_ns": rtt}


def mmud_zap(tmp, runs, extra):
    m = Mmud(tmp, 2, extra=extra)
    m.cont()
    kinds = ("fast", "slow", "fast_paused")
    out = {k: [] for k in kinds}
    out.update({k + "_pages": [] for k in kinds})
    for i in range(3 * runs):
        kind = kinds[i % 3]
        m.wait_progress(m.progress() + 2, timeout=300)
        if kind == "fast_paused":
            ok(m.c.cmd("stop"))
        ns, r = m.timed("x-mmu-zap-all", {"slow": kind == "slow"})
        if kind == "fast_paused":
            ok(m.c.cmd("cont"))
        out[kind].append(ns)
        out[kind + "_pages"].append(r["shadow-pages"])
    m.close()
    return out


def mmud_dirty(tmp, runs):
    m = Mmud(tmp, 3, [{"gpa": DIRTY_GPA, "size": GiB, "log-dirty": True}])
    slot = max(s["slot"] for s in ok(m.c.cmd("x-query-memslots")))
    m.cont()
    lat, pages = [], []
    for r in range(runs + 1):  # round 0: first touches, not timed
        m.go(r + 1)
        m.wait_progress(r + 1, timeout=300)
        ns, h = m.timed("x-dirty-log-harvest", {"slot": slot})
        if r:
            lat.append(ns)
            pages.append(h["dirty-pages"])
    m.close()
    if any(p != DIRTY_PAGES for p in pages):
        raise BenchError(f"mmud harvested {pages}, not {DIRTY_PAGES}")
    return {"harvest_ns": lat, "dirty_pages": pages}


def kvm(build, mode, runs, extra=""):
    tool = os.path.join(build, "bench", "kvm-memops")
    p = subprocess.run([tool, mode, str(runs),
                        os.path.join(ELFS, "memops.elf")] +
                       ([extra] if extra else []),
                       capture_output=True, text=True, timeout=900)
    if p.returncode == KVM_SKIP:
        return None
    if p.returncode != 0:
        raise BenchError(f"kvm-memops {mode} exited {p.returncode}: "
                         f"{p.stderr[-500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def pct(vals, q):
    s = sorted(vals)
    return s[min(len(s) - 1, int(q * len(s)))]


def rnd(x):
    return None if x is None else float(f"{x:.4g}")


def emit(name, unit, better, m, k, mvals=None, kvals=None, **extra):
    obj = {"figure": name, "mmud": rnd(m), "kvm": rnd(k),
           "ratio": rnd(m / k) if m is not None and k else None,
           "unit": unit, "better": better}
    if mvals:
        obj.update(runs=len(mvals), mmud_min=rnd(min(mvals)),
                   mmud_max=rnd(max(mvals)))
    if kvals:
        obj.update(kvm_min=rnd(min(kvals)), kvm_max=rnd(max(kvals)))
    obj.update({key: rnd(v) if isinstance(v, float) else v
                for key, v in extra.items()})
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def med(vals):
    return statistics.median(vals) if vals else None


def main():
    global ELFS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", help="the meson build directory")
    ap.add_argument("--runs", type=int, default=5,
                    help="zap-all and harvest samples per side (default "
                    "5); memslot removes are 40 times as many")
    ap.add_argument("--only", default="", help="remove, zap, dirty")
    ap.add_argument("--shared-page", action="store_true",
                    help="zap: every page table maps one shared data "
                    "page (one 100k-entry rmap list; figures get _shared)")
    ap.add_argument("--quick", action="store_true",
                    help="one sample of each, 20 removes: a smoke test")
    args = ap.parse_args()
    runs = 1 if args.quick else args.runs
    extra = "shared=1" if args.shared_page else ""
    sfx = "_shared" if args.shared_page else ""
    only = set(filter(None, args.only.split(","))) or set(GROUPS)
    if not only <= set(GROUPS):
        ap.error(f"--only: unknown {sorted(only - set(GROUPS))}")
    ELFS = os.path.join(args.build, "bench")
    td.MMUD = os.path.join(args.build, "daemon", "mmud")
    td.TIMEOUT = 300
    try:
        if "remove" in only:
            n = 20 if args.quick else 40 * runs
            with tempfile.TemporaryDirectory(prefix="mmud-bench-") as tmp:
                m = mmud_remove(tmp, n)
            k = kvm(args.build, "remove", n)
            emit("qmp_roundtrip_ns", "ns", "lower", med(m["rtt_ns"]), None,
                 m["rtt_ns"])
            for q, name in ((0.5, "p50"), (0.99, "p99")):
                emit(f"memslot_remove_{name}_ns", "ns", "lower",
                     pct(m["remove_ns"], q),
                     k and pct(k["remove_ns"], q), m["remove_ns"],
                     k and k["remove_ns"])

            def frac(s):
                return s["touch_churn"] / ((s["touch_base"] +
                                            s["touch_base2"]) / 2)

            emit("touch_rate_during_remove", "fraction", "higher", frac(m),
                 k and frac(k),
                 mmud_touch_per_s=float(m["touch_base"]),
                 kvm_touch_per_s=k and float(k["touch_base"]),
                 mmud_touch_churn_per_s=float(m["touch_churn"]),
                 kvm_touch_churn_per_s=k and float(k["touch_churn"]))
        if "zap" in only:
            with tempfile.TemporaryDirectory(prefix="mmud-bench-") as tmp:
                m = mmud_zap(tmp, runs, extra)
            k = kvm(args.build, "zap", runs, extra)
            for kind in ("fast", "slow", "fast_paused"):
                # The paused one is a diagnostic: no KVM counterpart.
                kk = k if kind != "fast_paused" else None
                emit(f"zap_all_{kind}{sfx}_caller_ns", "ns", "lower",
                     med(m[kind]), kk and med(kk["zap_ns"]), m[kind],
                     kk and kk["zap_ns"],
                     mmud_shadow_pages=med(m[kind + "_pages"]),
                     kvm_shadow_zapped=kk and med(kk["zapped"]))
        if "dirty" in only:
            with tempfile.TemporaryDirectory(prefix="mmud-bench-") as tmp:
                m = mmud_dirty(tmp, runs)
            k = kvm(args.build, "dirty", runs)
            emit("dirty_harvest_1g_ns", "ns", "lower", med(m["harvest_ns"]),
                 k and med(k["harvest_ns"]), m["harvest_ns"],
                 k and k["harvest_ns"], dirty_pages=DIRTY_PAGES)
    except (BenchError, AssertionError, OSError,
            subprocess.TimeoutExpired) as e:
        print(f"bench/run_memops.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
