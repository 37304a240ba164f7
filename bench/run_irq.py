#!/usr/bin/env python3
"""Interrupt latencies under mmud and QEMU TCG (qemu-run, the reference
runner of docs/REFERENCE-RUNNERS.md), in the same run on the same machine:
runs bench/irq.c with 2 vCPUs on each side and prints one JSON line per
figure and side with the median and 99th percentile in microseconds (the
guest's TSC cycles at the host's TSC frequency) and the ratio of the
medians to QEMU's (above 1: slower than QEMU). No KVM side: kvm-run's VM
has no in-kernel irqchip.

Usage: bench/run_irq.py BUILDDIR [--runs N] [--samples N]

Figures (docs/BENCHMARKS.md, "Interrupt latencies — bench/run_irq.py"):
ipi_rtt_running, ipi_rtt_halted, hlt_wake, timer_running, timer_halted.
With --runs N, the median and p99 are the medians over the runs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

GUEST_PASS = 1  # the guest writes 0 to the debug-exit port
FIGURES = ["ipi_rtt_running", "ipi_rtt_halted", "hlt_wake",
           "timer_running", "timer_halted"]


def tsc_mhz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    raise RuntimeError("no cpu MHz in /proc/cpuinfo")


def command(build, side, elf, append):
    if side == "mmud":
        return [os.path.join(build, "daemon", "mmud"), "--kernel", elf,
                "--smp", "2", "--append", append]
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, "..", "tests", "tools", "qemu-run"),
            "--shim", os.path.join(build, "tests", "guests", "qemu-shim.elf"),
            "--smp", "2", "--timeout", "600", "--append", append, elf]


def run(build, side, samples, khz):
    elf = os.path.join(build, "bench", "irq.elf")
    p = subprocess.run(command(build, side, elf,
                               "n=%d tsc_khz=%d" % (samples, khz)),
                       capture_output=True, text=True, timeout=900)
    if p.returncode != GUEST_PASS:
        raise RuntimeError("%s exited %d: %s%s" % (
            side, p.returncode, p.stdout[-300:], p.stderr[-300:]))
    out = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            out[obj["figure"]] = (obj["median_cycles"], obj["p99_cycles"])
    missing = [f for f in FIGURES if f not in out]
    if missing:
        raise RuntimeError("%s: no figures %s" % (side, missing))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    mhz = tsc_mhz()
    res = {"mmud": [], "qemu": []}
    for _ in range(args.runs):
        for side in res:
            res[side].append(run(args.build, side, args.samples,
                                 int(mhz * 1000)))
    for fig in FIGURES:
        med = {s: statistics.median(r[fig][0] for r in runs) / mhz
               for s, runs in res.items()}
        for side, runs in res.items():
            p99 = statistics.median(r[fig][1] for r in runs) / mhz
            print(json.dumps({
                "figure": fig, "side": side, "runs": len(runs),
                "samples": args.samples, "median_us": round(med[side], 2),
                "p99_us": round(p99, 2),
                "ratio_to_qemu": round(med[side] / med["qemu"], 2),
            }, separators=(",", ":")), flush=True)
    print(json.dumps({"figure": "kvm", "side": "kvm",
                      "skipped": "kvm-run has no in-kernel irqchip"}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
