#!/usr/bin/env python3
"""Runs a guest command and compares its transcript with an expected file.

usage: run-guest.py --expect FILE [--status N] [--timeout S] -- CMD ARGS...

Passes (exit 0) when CMD's stdout equals FILE byte for byte and its exit
status is N (default 1: the guest wrote 0 to the debug-exit port). On a
mismatch prints a unified diff and/or both statuses plus CMD's stderr and
exits 1. Exits 77 (skip) when CMD does, e.g. kvm-run without /dev/kvm.
"""

import argparse
import difflib
import os
import subprocess
import sys

SKIP = 77


def lines(data):
    return data.decode("utf-8", errors="replace").splitlines(keepends=True)


def main():
    ap = argparse.ArgumentParser(
        usage="%(prog)s --expect FILE [--status N] [--timeout S] -- CMD ARGS...")
    ap.add_argument("--expect", required=True, help="expected stdout")
    ap.add_argument("--status", type=int, default=1,
                    help="expected exit status (default 1)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="kill CMD after S seconds (default: none)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given after --")
    # meson test --setup dirtyring: mmud on the dirty ring (docs/MMU.md,
    # "The dirty ring").
    ring = os.environ.get("MMUD_TEST_DIRTY_RING")
    if ring and os.path.basename(cmd[0]) == "mmud":
        cmd = cmd + ["--dirty-ring", ring]
    # meson test --setup mmuoptions: mmud with the MMU's switches off
    # their defaults (docs/MMU.md, "Switches"), NAME=VALUE words.
    if os.path.basename(cmd[0]) == "mmud":
        for o in os.environ.get("MMUD_TEST_MMU_OPTIONS", "").split():
            cmd = cmd + ["--mmu-option", o]
    # meson test --setup jit / jitverify: mmud's vCPUs on the template
    # JIT, or on both engines compared block by block (docs/JIT.md).
    engine = os.environ.get("MMUD_TEST_CPU")
    if engine and os.path.basename(cmd[0]) == "mmud" and "--cpu" not in cmd:
        cmd = cmd + ["--cpu", engine]

    with open(args.expect, "rb") as f:
        expected = f.read()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=args.timeout,
                              check=False)
    except subprocess.TimeoutExpired as e:
        sys.stdout.write("FAIL: %s timed out after %s s\n"
                         % (cmd[0], args.timeout))
        sys.stdout.write((e.stdout or b"").decode(errors="replace"))
        sys.stderr.write((e.stderr or b"").decode(errors="replace"))
        return 1
    except OSError as e:
        sys.stdout.write("FAIL: cannot run %s: %s\n" % (cmd[0], e))
        return 1

    if proc.returncode == SKIP:
        sys.stdout.write("SKIP: %s exited %d\n" % (cmd[0], SKIP))
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        return SKIP

    ok = True
    if proc.stdout != expected:
        ok = False
        sys.stdout.write("FAIL: output differs from %s\n" % args.expect)
        diff = difflib.unified_diff(lines(expected), lines(proc.stdout),
                                    fromfile=args.expect, tofile="output")
        for line in diff:
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
    if proc.returncode != args.status:
        ok = False
        sys.stdout.write("FAIL: exit status %d, expected %d\n"
                         % (proc.returncode, args.status))
    if not ok:
        sys.stdout.write("--- stderr of %s ---\n" % cmd[0])
        sys.stdout.write(proc.stderr.decode(errors="replace"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
