#!/usr/bin/env python3
"""The execution engine's switch and counters: --cpu (interp, the only
engine built; jit refused by name) and x-query-cpu-stats (docs/QMP.md,
"x-query-cpu-stats (daemon)"), the run loop's block and decoded-block
cache counters of one vCPU, on the forever guest.

Usage: test_cpustats.py GROUP MMUD MMUCTL FOREVER_ELF
GROUP: cpustats (meson: daemon-cpustats). Shared parts:
tests/lib/daemonlib.py.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, test, read_console_until, error  # noqa: E402

KEYS = {"cpu-index", "engine", "blocks", "cache-hits", "cache-misses",
        "cache-stale", "uncached", "mmio-fetches", "smc-breaks", "flushes",
        "budget-exits", "kick-exits", "pool-bytes", "generic-irq",
        "generic-budget", "chain-hits"}


def stats(c, index):
    r = c.cmd("x-query-cpu-stats", {"cpu-index": index})
    assert "return" in r, r
    return r["return"]


@test("cpustats")
def test_cpu_stats_count_blocks_and_cache_of_each_vcpu(tmp):
    d = Daemon(tmp, "--cpu", "interp", smp=2)
    read_console_until(d.con, "tick 1\n")
    c = d.client()
    for i in (0, 1):
        s = stats(c, i)
        assert set(s) == KEYS, s
        assert s["cpu-index"] == i and s["engine"] == "interp", s
        # The guest loops: blocks are run, most found decoded.
        assert s["blocks"] > 1000, s
        assert 0 < s["cache-misses"] < s["cache-hits"] <= s["blocks"], s
        # A loop's blocks are found as each other's successors.
        assert 0 < s["chain-hits"] <= s["cache-hits"], s
        assert s["blocks"] <= (s["cache-hits"] + s["cache-misses"] +
                               s["cache-stale"]), s
        assert 0 < s["pool-bytes"] <= 16 << 20, s
        assert s["flushes"] == 0 and s["mmio-fetches"] == 0, s
        # Most blocks run on the specialised handlers (fast.c).
        assert s["generic-irq"] + s["generic-budget"] < s["blocks"] / 2, s
    # Counters only grow while the guest runs.
    a = stats(c, 0)
    deadline = time.time() + 10
    while stats(c, 0)["blocks"] == a["blocks"]:
        assert time.time() < deadline, "blocks of vCPU 0 stuck: %r" % a
        time.sleep(0.01)
    b = stats(c, 0)
    for k in KEYS - {"cpu-index", "engine", "pool-bytes"}:
        assert b[k] >= a[k], (k, a, b)
    # Bad cpu-index values: refused, named, nothing else happens.
    for bad in (2, -1, 1 << 40):
        error(c.cmd("x-query-cpu-stats", {"cpu-index": bad}),
              "GenericError",
              "Parameter 'cpu-index' expects a vCPU index from 0 to 1")
    for args in ({"cpu-index": "1"}, None, {"cpu-index": 0, "x": 1}):
        r = c.cmd("x-query-cpu-stats", args) if args is not None else \
            c.cmd("x-query-cpu-stats")
        assert r["error"]["class"] == "GenericError", r
    assert c.cmd("query-status")["return"]["status"] == "running"
    c.cmd("quit")
    assert d.wait() == 0
    d.kill()


@test("cpustats")
def test_cpu_engine_other_than_interp_refused_by_name(tmp):
    for value, why in (("jit", "'jit' is not built in this mmud (only "
                        "interp)"),
                       ("fast", "'fast' is not interp")):
        p = subprocess.run([dl.MMUD, "--kernel", dl.FOREVER, "--cpu", value],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 4, (value, p.returncode, p.stderr)
        assert "--cpu: " + why in p.stderr, (value, p.stderr)
    conf = os.path.join(tmp, "vm.conf")
    with open(conf, "w") as f:
        f.write("cpu = jit\n")
    p = subprocess.run([dl.MMUD, "--kernel", dl.FOREVER, "--config", conf],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert "'jit' is not built" in p.stderr, p.stderr
    assert "--cpu" in subprocess.run([dl.MMUD, "--help"],
                                     capture_output=True,
                                     text=True).stdout


if __name__ == "__main__":
    sys.exit(dl.main())
