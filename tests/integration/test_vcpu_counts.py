#!/usr/bin/env python3
"""Guests at vCPU counts past the guest runtime's static per-vCPU areas.

Usage: test_vcpu_counts.py MMUD SMP_ELF

mmud accepts 1-64 vCPUs (README.md, "Running a guest"); the embedded
sample (the hello guest) and the guests of tests/guests must run at
every one of them, or fail with a message, never hang. The runtime keeps
the areas of vCPUs 0-15 in the image and allocates the others at boot
(tests/guests/rt/cpu.c), so 17 is the first count that takes the second
path and 64 the largest.
"""
import os
import re
import subprocess
import sys

TIMEOUT = 180 if os.environ.get("MMUD_SLOW") else 60
MMUD = SMP_ELF = None


def run(*args):
    """mmud's exit status and stdout; fails loudly when it does not end."""
    cmd = [MMUD] + list(args)
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        raise AssertionError("%s did not end within %d s (a vCPU the guest "
                             "waits for never started?); its output ends "
                             "%r" % (" ".join(cmd), TIMEOUT, out[-300:]))
    return p.returncode, p.stdout, p.stderr


def test_sample_runs_at(n):
    rc, out, err = run("--smp", str(n))
    ok = re.findall(r"^vcpu (\d+): entry state ok$", out, re.M)
    # Status 1: the guest wrote 0 (pass) to the debug-exit port.
    assert rc == 1 and "vcpus: %d\n" % n in out and \
        "hello: PASS\n" in out, (n, rc, out[-500:], err)
    assert ok == [str(i) for i in range(n)], (n, ok)


def test_smp_guest_runs_at(n):
    rc, out, err = run("--kernel", SMP_ELF, "--smp", str(n), "--append",
                       "mmud test")
    assert rc == 1 and out.endswith("smp: PASS\n"), (n, rc, out[-500:], err)
    assert "counter: %d (expected %d)\n" % (n * 2000, n * 2000) in out, out


def test_too_little_ram_for_the_areas_says_so():
    # 64 vCPUs need 48 more areas of 40 KiB above the image: 3M of RAM
    # holds the image but not them, and the guest must say so and exit.
    rc, out, err = run("--smp", "64", "--memory", "3M")
    assert rc == 3 and "FAIL: out of guest RAM" in out, (rc, out, err)


def main():
    global MMUD, SMP_ELF
    MMUD, SMP_ELF = sys.argv[1:3]
    failed = 0
    for name, fn, arg in [("sample_smp17", test_sample_runs_at, 17),
                          ("sample_smp64", test_sample_runs_at, 64),
                          ("smp_guest_smp17", test_smp_guest_runs_at, 17),
                          ("smp_guest_smp64", test_smp_guest_runs_at, 64),
                          ("too_little_ram", None, None)]:
        try:
            if fn:
                fn(arg)
            else:
                test_too_little_ram_for_the_areas_says_so()
            print("ok   %s" % name)
        except AssertionError as e:
            print("FAIL %s: %s" % (name, e))
            failed += 1
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
