#!/usr/bin/env python3
"""Runs the CPU-bound guests of bench/ under mmud, QEMU TCG (qemu-run, the
reference runner of docs/REFERENCE-RUNNERS.md) and, where /dev/kvm exists,
the KVM reference runner, in the same run on the same machine, and prints
one JSON line per figure and side: the median over the runs of the
guest's own measurement (TSC cycles around its loop, read in the guest,
so start-up is not in it), as cycles per guest instruction and guest
instructions per second, with the spread and the ratio to QEMU's.

Usage: bench/run_cpu.py BUILDDIR [--runs N] [--only loop,sse,cpu]
                        [--sides mmud,qemu,kvm] [--engines interp,jit]
                        [--mmud-arg ARG]
       bench/run_cpu.py BUILDDIR --cachegrind [--phases alu,mem,...]
                        [--engines interp,jit] [--mmud PATH]

--engines runs mmud once per CPU engine (--cpu, docs/JIT.md) as sides of
their own, mmud-interp, mmud-jit, beside QEMU's; the default, interp, is
the side called mmud.

--cachegrind counts host instructions per guest instruction of each
bench/cpu.c phase on mmud alone, which the machine's load does not move:
cachegrind's instruction count (--cache-sim=no) of a scale=2 run less
that of a scale=1 run, over the difference in the guest's instructions
(docs/BENCHMARKS.md, "Interpreter costs by phase — bench/cpu.c").

Guests and their figures (docs/BENCHMARKS.md):
  loop  add/xor/add/dec/jnz at CPL3, 5 instructions per iteration
  sse   strlen's and memcpy's SSE2 loops over 4 KiB at CPL3
        (MOVDQA/PCMPEQB/PMOVMSKB, MOVDQU), 3079 instructions per iteration
  cpu   bench/cpu.c's phases, one figure each: alu, mem, frame,
        callret, indirect, rep, chain256, chain4096, chain32768

The sides alternate run by run (mmud, QEMU, KVM, mmud, ...), so a load
that comes and goes touches every side alike.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

GUEST_PASS = 1  # the guests write 0 to the debug-exit port
KVM_SKIP = 77
# The guest's work argument: full runs, and the warm-up run.
ARGS = {"loop": ("n=100000000", "n=10000000"),
        "sse": ("n=100000", "n=10000"),
        "cpu": ("scale=10", "scale=1")}


def tsc_mhz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    raise RuntimeError("no cpu MHz in /proc/cpuinfo")


def command(build, side, elf, append, mmud_args=()):
    if side.startswith("mmud"):
        engine = side.partition("-")[2] or "interp"
        return [os.path.join(build, "daemon", "mmud"), "--kernel", elf,
                "--smp", "1", "--append", append,
                "--cpu", engine] + list(mmud_args)
    if side == "qemu":
        here = os.path.dirname(os.path.abspath(__file__))
        return [os.path.join(here, "..", "tests", "tools", "qemu-run"),
                "--shim", os.path.join(build, "tests", "guests",
                                       "qemu-shim.elf"),
                "--timeout", "600", "--append", append, elf]
    return [os.path.join(build, "tests", "tools", "kvm-run"), "--smp", "1",
            "--timeout", "600", "--append", append, elf]


def run(build, side, guest, append, mmud_args=()):
    """{figure: cycles per instruction} of one run; None: no KVM."""
    elf = os.path.join(build, "bench", guest + ".elf")
    p = subprocess.run(command(build, side, elf, append, mmud_args),
                       capture_output=True, text=True, timeout=900)
    if side == "kvm" and p.returncode == KVM_SKIP:
        return None
    if p.returncode != GUEST_PASS:
        raise RuntimeError(f"{side} {guest} exited {p.returncode}: "
                           f"{p.stdout[-300:]}{p.stderr[-300:]}")
    out = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if "figure" in obj:
                out[obj["figure"]] = obj["cycles"] / obj["insns"]
    if not out:
        raise RuntimeError(f"{side} {guest}: no JSON line in its output")
    return out


PHASES = ("alu,mem,frame,callret,indirect,rep,chain256,chain4096,"
          "chain32768")


def cachegrind_run(mmud, elf, append, engine="interp"):
    """(host instructions, {figure: guest instructions}) of one run."""
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".cg") as out:
        p = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no",
             "--cachegrind-out-file=" + out.name, mmud, "--kernel", elf,
             "--smp", "1", "--append", append, "--cpu", engine],
            capture_output=True, text=True, timeout=3600)
        if p.returncode != GUEST_PASS:
            raise RuntimeError(f"cachegrind run exited {p.returncode}: "
                               f"{p.stderr[-500:]}")
        host = None
        for line in open(out.name):
            if line.startswith("summary:"):
                host = int(line.split()[1])
    guest = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if "figure" in obj:
                guest[obj["figure"]] = obj["insns"]
    return host, guest


def cachegrind(build, mmud, phases, engines):
    elf = os.path.join(build, "bench", "cpu.elf")
    mmud = mmud or os.path.join(build, "daemon", "mmud")
    for ph in phases:
        for engine in engines:
            h1, g1 = cachegrind_run(mmud, elf, "scale=1 only=" + ph, engine)
            h2, g2 = cachegrind_run(mmud, elf, "scale=2 only=" + ph, engine)
            print(json.dumps({"figure": ph, "engine": engine,
                              "host_insns_per_insn": round(
                                  (h2 - h1) / (g2[ph] - g1[ph]), 1)}),
                  flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="loop,sse")
    ap.add_argument("--sides", default="mmud,qemu,kvm")
    ap.add_argument("--engines", default="interp",
                    help="mmud's CPU engines, each a side (interp,jit)")
    ap.add_argument("--mmud-arg", action="append", default=[],
                    help="an extra mmud argument (e.g. --dirty-ring=256)")
    ap.add_argument("--cachegrind", action="store_true",
                    help="host instructions per guest instruction of the "
                    "cpu phases under cachegrind")
    ap.add_argument("--phases", default=PHASES)
    ap.add_argument("--mmud", help="the mmud to measure (--cachegrind)")
    args = ap.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    for e in engines:
        if e not in ("interp", "jit", "jit-verify"):
            ap.error(f"--engines: unknown {e}")
    if args.cachegrind:
        return cachegrind(args.build, args.mmud,
                          filter(None, args.phases.split(",")), engines)
    mhz = tsc_mhz()
    sides = []
    for side in filter(None, args.sides.split(",")):
        if side not in ("mmud", "qemu", "kvm"):
            ap.error(f"--sides: unknown {side}")
        if side == "mmud" and engines != ["interp"]:
            sides += ["mmud-" + e for e in engines]
        else:
            sides.append(side)
    for guest in filter(None, args.only.split(",")):
        if guest not in ARGS:
            ap.error(f"--only: unknown {guest}")
        full, warm = ARGS[guest]
        live = []
        for side in sides:
            if run(args.build, side, guest, warm, args.mmud_arg) is not None:
                live.append(side)
            else:
                print(json.dumps({"figure": guest, "side": side,
                                  "skipped": "no /dev/kvm"}), flush=True)
        res = {side: {} for side in live}
        for _ in range(args.runs):
            for side in live:
                for fig, v in run(args.build, side, guest, full,
                                  args.mmud_arg).items():
                    res[side].setdefault(fig, []).append(v)
        for side in live:
            for fig, vals in res[side].items():
                med = statistics.median(vals)
                line = {
                    "figure": fig, "side": side, "runs": len(vals),
                    "cycles_per_insn": round(med, 3),
                    "cycles_min": round(min(vals), 3),
                    "cycles_max": round(max(vals), 3),
                    "insns_per_s": round(mhz * 1e6 / med),
                }
                if "qemu" in res and fig in res["qemu"]:
                    line["ratio_to_qemu"] = round(
                        med / statistics.median(res["qemu"][fig]), 2)
                print(json.dumps(line, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
