#!/usr/bin/env python3
"""Runs the benchmarks of bench/ under mmud and under the KVM reference
runner, on the same guests in the same run, and prints one JSON line per
figure: the median of each side over the runs, the ratio mmud / kvm, and
the spread (min, max) of each side.

Usage: bench/run.py BUILDDIR [--runs N] [--only NAME[,NAME...]] [--quick]

Figures (docs/BENCHMARKS.md says how each is measured):
  loop_insns_per_s    guest instructions per second on 10^8 iterations of
                      add/xor/add/dec/jnz at CPL3, process start to exit
  loop_insns_per_cpu_s  mmud's, per second of CPU time the process used
                      (user + system): what the wall figure would be on
                      an idle host (KVM's is null: kvm_pvm does not charge
                      all guest time to the process)
  first_touch_4k_ns   first write to a 4 KiB guest page at CPL3
  first_touch_2m_ns   first write to a 2 MiB guest page at CPL3
  first_touch_*_hostwarm_ns  the same with the host memory behind the
                      pages already allocated: the shadow MMU's part alone
  pio_exit_ns         OUT to an unclaimed port at CPL0, exit and back
                      (10^6 OUTs under mmud, 10^5 under KVM)

The guests read the time stamp counter; cycles become nanoseconds at the
TSC frequency the kernel reports (/proc/cpuinfo "cpu MHz" on this host,
which has constant_tsc). A KVM side that cannot run (no /dev/kvm: the
runner exits 77) is reported as null.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

GUEST_PASS = 1  # the guests write 0 to the debug-exit port
KVM_SKIP = 77
LOOP_ITERS = 100_000_000
LOOP_INSNS_PER_ITER = 5


class BenchError(Exception):
    pass


def tsc_mhz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    raise BenchError("no 'cpu MHz' in /proc/cpuinfo")


class Runner:
    """Runs one guest ELF under mmud or kvm-run and returns its JSON lines,
    the wall time from process start to exit and the CPU time it used."""

    def __init__(self, build):
        self.mmud = os.path.join(build, "daemon", "mmud")
        self.kvm = os.path.join(build, "tests", "tools", "kvm-run")
        self.elfs = os.path.join(build, "bench")
        for p in (self.mmud, self.kvm):
            if not os.access(p, os.X_OK):
                raise BenchError(f"{p} is missing: build first "
                                 "(meson compile -C BUILDDIR)")

    def run(self, side, guest, append="", timeout=600):
        elf = os.path.join(self.elfs, guest + ".elf")
        if side == "mmud":
            cmd = [self.mmud, "--kernel", elf, "--smp", "1"]
        else:
            cmd = [self.kvm, "--smp", "1", "--timeout", str(timeout)]
        if append:
            cmd += ["--append", append]
        if side == "kvm":
            cmd.append(elf)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout + 30)
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        if side == "kvm" and p.returncode == KVM_SKIP:
            return None, wall, cpu
        if p.returncode != GUEST_PASS:
            raise BenchError(f"{' '.join(cmd)} exited {p.returncode}: "
                             f"{p.stdout[-500:]}{p.stderr[-500:]}")
        lines = {}
        for line in p.stdout.splitlines():
            if line.startswith("{"):
                obj = json.loads(line)
                lines[obj["figure"]] = obj
        return lines, wall, cpu


def loop_ips(r, side, runs):
    """Instructions per second of the 10^8-iteration loop, end to end and
    per CPU second."""
    append = f"n={LOOP_ITERS}"
    insns = LOOP_ITERS * LOOP_INSNS_PER_ITER
    r.run(side, "loop", append)  # warm-up: page cache, CPU frequency
    wall_ips, cpu_ips = [], []
    for _ in range(runs):
        res, wall, cpu = r.run(side, "loop", append)
        if res is None:
            return None, None
        wall_ips.append(insns / wall)
        cpu_ips.append(insns / cpu)
    return wall_ips, cpu_ips


TOUCH_FIGURES = ("first_touch_4k_ns", "first_touch_2m_ns",
                 "first_touch_4k_hostwarm_ns", "first_touch_2m_hostwarm_ns")


def touch(r, side, runs, mhz):
    """ns per page of the first touch, 4 KiB and 2 MiB, from one boot each
    with cold host memory and with host memory already allocated."""
    out = {fig: [] for fig in TOUCH_FIGURES}
    for _ in range(runs):
        for append, suffix in (("", ""), ("hostwarm=1", "_hostwarm")):
            res, _, _ = r.run(side, "touch", append)
            if res is None:
                return None
            for size in ("4k", "2m"):
                m = res["first_touch_" + size]
                out[f"first_touch_{size}{suffix}_ns"].append(
                    m["first_cycles"] / m["pages"] * 1000 / mhz)
    return out


def pio(r, side, runs, mhz, count):
    """ns per OUT exit round trip, the NOP loop's cost subtracted."""
    out = []
    for _ in range(runs):
        res, _, _ = r.run(side, "pio", f"n={count}")
        if res is None:
            return None
        m = res["pio_out"]
        out.append((m["out_cycles"] - m["nop_cycles"]) / m["count"] *
                   1000 / mhz)
    return out


def summary(vals):
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def figure(name, unit, better, mmud_vals, kvm_vals):
    m, mmin, mmax = summary(mmud_vals)
    k, kmin, kmax = summary(kvm_vals)
    ratio = m / k if m is not None and k else None

    def rnd(x):
        return None if x is None else float(f"{x:.4g}")

    return {"figure": name, "mmud": rnd(m), "kvm": rnd(k),
            "ratio": rnd(ratio), "unit": unit, "better": better,
            "runs": len(mmud_vals or []),
            "mmud_min": rnd(mmin), "mmud_max": rnd(mmax),
            "kvm_min": rnd(kmin), "kvm_max": rnd(kmax)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", help="the meson build directory")
    ap.add_argument("--runs", type=int, default=5,
                    help="measured runs per figure and side (default 5)")
    ap.add_argument("--only", default="",
                    help="comma-separated: loop, touch, pio")
    ap.add_argument("--quick", action="store_true",
                    help="one run each, smaller PIO count (a smoke test)")
    args = ap.parse_args()
    runs = 1 if args.quick else args.runs
    only = set(filter(None, args.only.split(","))) or {"loop", "touch",
                                                        "pio"}
    if not only <= {"loop", "touch", "pio"}:
        ap.error(f"--only: unknown {sorted(only - {'loop', 'touch', 'pio'})}")
    try:
        r = Runner(args.build)
        mhz = tsc_mhz()
        if "loop" in only:
            m, k = loop_ips(r, "mmud", runs), loop_ips(r, "kvm", runs)
            for i, fig in enumerate(("loop_insns_per_s",
                                     "loop_insns_per_cpu_s")):
                # kvm_pvm does not charge all guest time to the process,
                # so KVM's CPU-time figure would be meaningless.
                print(json.dumps(separators=(",", ":"), obj=figure(
                    fig, "insn/s", "higher", m[i],
                    k[i] if i == 0 else None)), flush=True)
        if "touch" in only:
            m, k = touch(r, "mmud", runs, mhz), touch(r, "kvm", runs, mhz)
            for fig in TOUCH_FIGURES:
                print(json.dumps(separators=(",", ":"), obj=figure(fig, "ns", "lower", m[fig],
                                        k[fig] if k else None)),
                      flush=True)
        if "pio" in only:
            # Each side's loops run ~0.2-2 s: long enough that one host
            # preemption is a small part of them.
            scale = 10 if args.quick else 1
            print(json.dumps(separators=(",", ":"), obj=figure(
                "pio_exit_ns", "ns", "lower",
                pio(r, "mmud", runs, mhz, 1_000_000 // scale),
                pio(r, "kvm", runs, mhz, 100_000 // scale))), flush=True)
    except (BenchError, subprocess.TimeoutExpired) as e:
        print(f"bench/run.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
