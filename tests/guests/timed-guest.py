#!/usr/bin/env python3
"""Runs a timing guest and checks its transcript and its pace in host time.

usage: timed-guest.py --expect FILE [--status N] --start LINE --end LINE
                      --seconds S --events K [--tolerance F] [--tries N]
                      -- CMD ARGS...

Like tests/tools/run-guest.py (CMD's stdout must equal FILE byte for byte,
its exit status must be N, default 1), except that lines starting with
"~ " are the guest's measurements, not transcript. Each line is stamped
with host time (CLOCK_MONOTONIC) as it arrives. The guest counts K timer
events between the lines START and END, which should take S seconds, and
reports on its "~ " line

    ~ tsc_elapsed E tsc_period P missed M

the TSC cycles from START to its last event (E), the median TSC cycles
between events (P) and how many periods passed without an event (M: the
guest did not run when one was due, so the timer coalesced it; the TSC
runs at the host's rate under mmud and QEMU alike). With H the host time
from START to END:

- the timer's events, missed ones included, match host time:
  (K + M) * S / K is H within a fraction F (default 0.05);
- the timer's period in host time, P * H / E, is S / K within F.

A loaded machine only makes the lines late; a run whose numbers are off
is tried again, up to N runs in all (default 2), and each try's numbers
are printed. A wrong transcript or status fails at once.
"""

import argparse
import difflib
import re
import subprocess
import sys
import time

TIMING = re.compile(r"~ tsc_elapsed (\d+) tsc_period (\d+) missed (\d+)$")


def run_once(cmd, start, end):
    """(transcript bytes, status, stderr, host seconds or None, timing)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out = []
    t_start = t_end = None
    timing = None
    for line in iter(proc.stdout.readline, b""):
        now = time.monotonic()
        text = line.decode("utf-8", errors="replace").rstrip("\n")
        if text.startswith("~ "):
            m = TIMING.match(text)
            if m:
                timing = tuple(int(x) for x in m.groups())
            continue
        out.append(line)
        if text == start and t_start is None:
            t_start = now
        elif text == end and t_start is not None and t_end is None:
            t_end = now
    err = proc.stderr.read()
    status = proc.wait()
    elapsed = t_end - t_start if t_start is not None and t_end else None
    return b"".join(out), status, err, elapsed, timing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--expect", required=True)
    ap.add_argument("--status", type=int, default=1)
    ap.add_argument("--start", required=True)
    ap.add_argument("--end", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--tries", type=int, default=2)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given after --")
    with open(args.expect, "rb") as f:
        expected = f.read()
    period = args.seconds / args.events
    tol = args.tolerance

    for attempt in range(1, args.tries + 1):
        out, status, err, host, timing = run_once(cmd, args.start, args.end)
        if out != expected or status != args.status:
            if out != expected:
                sys.stdout.write("FAIL: output differs from %s\n"
                                 % args.expect)
                for line in difflib.unified_diff(
                        expected.decode(errors="replace").splitlines(True),
                        out.decode(errors="replace").splitlines(True),
                        fromfile=args.expect, tofile="output"):
                    sys.stdout.write(line if line.endswith("\n")
                                     else line + "\n")
            if status != args.status:
                sys.stdout.write("FAIL: exit status %d, expected %d\n"
                                 % (status, args.status))
            sys.stdout.write("--- stderr of %s ---\n" % cmd[0])
            sys.stdout.write(err.decode(errors="replace"))
            return 1
        if host is None or timing is None:
            sys.stdout.write("FAIL: no '%s'/'%s' lines or no '~ tsc_elapsed'"
                             " line\n" % (args.start, args.end))
            return 1
        tsc_elapsed, tsc_period, missed = timing
        want = (args.events + missed) * period
        host_period = tsc_period * host / tsc_elapsed
        sys.stdout.write(
            "try %d: %.3f s of host time for %d events and %d missed "
            "(want %.3f s); period %.4f ms in host time (want %.4f ms); "
            "within %g%%: " % (attempt, host, args.events, missed, want,
                               host_period * 1e3, period * 1e3, tol * 100))
        ok = (abs(host - want) <= tol * want and
              abs(host_period - period) <= tol * period)
        sys.stdout.write("%s\n" % ("yes" if ok else "no"))
        if ok:
            return 0
    sys.stdout.write("FAIL: the guest's timer does not keep host time\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
