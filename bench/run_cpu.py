#!/usr/bin/env python3
"""Runs the CPU-bound guests of bench/ under mmud, QEMU TCG (qemu-run, the
reference runner of docs/REFERENCE-RUNNERS.md) and, where /dev/kvm exists,
the KVM reference runner, in the same run on the same machine, and prints
one JSON line per figure and side: the median over the runs of the
guest's own measurement (TSC cycles around its loop, read in the guest,
so start-up is not in it), as cycles per guest instruction and guest
instructions per second, with the spread and the ratio to QEMU's.

Usage: bench/run_cpu.py BUILDDIR [--runs N] [--only loop,sse]

Figures (docs/BENCHMARKS.md):
  loop  add/xor/add/dec/jnz at CPL3, 5 instructions per iteration
  sse   strlen's and memcpy's SSE2 loops over 4 KiB at CPL3
        (MOVDQA/PCMPEQB/PMOVMSKB, MOVDQU), 3079 instructions per iteration
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

GUEST_PASS = 1  # the guests write 0 to the debug-exit port
KVM_SKIP = 77
COUNTS = {"loop": 100_000_000, "sse": 100_000}


def tsc_mhz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    raise RuntimeError("no cpu MHz in /proc/cpuinfo")


def command(build, side, elf, append):
    if side == "mmud":
        return [os.path.join(build, "daemon", "mmud"), "--kernel", elf,
                "--smp", "1", "--append", append]
    if side == "qemu":
        here = os.path.dirname(os.path.abspath(__file__))
        return [os.path.join(here, "..", "tests", "tools", "qemu-run"),
                "--shim", os.path.join(build, "tests", "guests",
                                       "qemu-shim.elf"),
                "--timeout", "600", "--append", append, elf]
    return [os.path.join(build, "tests", "tools", "kvm-run"), "--smp", "1",
            "--timeout", "600", "--append", append, elf]


def run(build, side, guest, n):
    elf = os.path.join(build, "bench", guest + ".elf")
    p = subprocess.run(command(build, side, elf, f"n={n}"),
                       capture_output=True, text=True, timeout=900)
    if side == "kvm" and p.returncode == KVM_SKIP:
        return None
    if p.returncode != GUEST_PASS:
        raise RuntimeError(f"{side} {guest} exited {p.returncode}: "
                           f"{p.stdout[-300:]}{p.stderr[-300:]}")
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if obj.get("figure") == guest:
                return obj["cycles"] / obj["insns"]
    raise RuntimeError(f"{side} {guest}: no JSON line in its output")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="loop,sse")
    args = ap.parse_args()
    mhz = tsc_mhz()
    for guest in filter(None, args.only.split(",")):
        if guest not in COUNTS:
            ap.error(f"--only: unknown {guest}")
        res = {}
        for side in ("mmud", "qemu", "kvm"):
            run(args.build, side, guest, COUNTS[guest] // 10)  # warm-up
            vals = []
            for _ in range(args.runs):
                v = run(args.build, side, guest, COUNTS[guest])
                if v is None:
                    break
                vals.append(v)
            res[side] = vals
        qemu = statistics.median(res["qemu"])
        for side, vals in res.items():
            if not vals:
                print(json.dumps({"figure": guest, "side": side,
                                  "skipped": "no /dev/kvm"}), flush=True)
                continue
            med = statistics.median(vals)
            print(json.dumps({
                "figure": guest, "side": side, "runs": len(vals),
                "cycles_per_insn": round(med, 3),
                "cycles_min": round(min(vals), 3),
                "cycles_max": round(max(vals), 3),
                "insns_per_s": round(mhz * 1e6 / med),
                "ratio_to_qemu": round(med / qemu, 2),
            }, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
