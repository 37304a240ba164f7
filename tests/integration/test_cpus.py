#!/usr/bin/env python3
"""vCPU threads, memslots and the live MMU audit of the real mmud.

Usage: test_cpus.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
GROUP: cpus (meson: daemon-GROUP). Shared parts: tests/lib/daemonlib.py.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import (  # noqa: E402
    Daemon, test)


# ---- vCPUs, memslots, MMU ------------------------------------------------

@test("cpus")
def test_query_cpus_fast_threads_are_real(tmp):
    d = Daemon(tmp, smp=3)
    c = d.client()
    cpus = c.cmd("query-cpus-fast")["return"]
    assert [v["cpu-index"] for v in cpus] == [0, 1, 2], cpus
    tasks = set(int(t) for t in os.listdir("/proc/%d/task" % d.proc.pid))
    tids = [v["thread-id"] for v in cpus]
    assert len(set(tids)) == 3 and set(tids) <= tasks, (tids, tasks)
    assert d.proc.pid not in tids
    # A halted vCPU's timer is its timed sleep: 1 ns of timer slack,
    # not the default 50 us (core/vcpu/vcpu.c, vcpu_thread).
    for t in tids:
        with open("/proc/%d/timerslack_ns" % t) as f:
            assert int(f.read()) == 1, (t, "timer slack")
    for v in cpus:
        assert v["target"] == "x86_64" and v["state"] == "running", v
        assert v["qom-path"] == "/machine/cpu[%d]" % v["cpu-index"], v
        assert set(v["exits"]) == {"total", "io", "mmio", "hlt",
                                   "page-fault"}, v
    later = c.cmd("query-cpus-fast")["return"]
    assert later[0]["exits"]["page-fault"] >= cpus[0]["exits"]["page-fault"]
    assert [v["thread-id"] for v in later] == tids
    c.cmd("quit")
    assert d.wait() == 0
    d.kill()


@test("cpus")
def test_memslots_stats_and_live_audit(tmp):
    d = Daemon(tmp, "--memory", "3584M")
    c = d.client()
    slots = c.cmd("x-query-memslots")["return"]
    assert slots == [
        {"slot": 0, "gpa": 0, "size": 3 << 30, "readonly": False,
         "log-dirty": False},
        {"slot": 1, "gpa": 4 << 30, "size": 512 << 20, "readonly": False,
         "log-dirty": False}], slots
    for _ in range(5):
        assert c.cmd("x-mmu-audit") == {"return": {}}
    st = c.cmd("x-query-mmu-stats")["return"]
    assert st["vm"]["shadow_pages"] > 0 and st["vm"]["pf_fixed"] > 0, st
    assert [v["cpu-index"] for v in st["vcpus"]] == [0, 1], st
    assert st["vcpus"][0]["pf_taken"] > 0, st
    # The audit left the guest running.
    assert c.cmd("query-status")["return"]["status"] == "running"
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("cpus")
def test_audit_of_big_sparse_slots_is_quick_and_sigterm_bounded(tmp):
    """x-mmu-audit costs what the guest touched, not the slots' size
    (docs/MMU.md, "Touched chunks"): 16 hot-added 64 GiB slots once made
    it take over 30 s with every vCPU held, and SIGTERM's audit at
    shutdown ran past the unit's TimeoutStopSec=30s. The guest runs on
    meanwhile and query-status says so."""
    GiB = 1 << 30
    d = Daemon(tmp, "--maxmem", "2048G")
    c = d.client()
    for i in range(16):
        r = c.cmd("x-memslot-add", {"gpa": (i + 1) * 64 * GiB,
                                    "size": 64 * GiB})
        assert "return" in r, r
    before = c.cmd("query-cpus-fast")["return"][0]["instructions"]
    for _ in range(3):
        t0 = time.monotonic()
        assert c.cmd("x-mmu-audit") == {"return": {}}
        took = time.monotonic() - t0
        assert took < 3, "x-mmu-audit took %.1f s" % took
        st = c.cmd("query-status")["return"]
        assert st["status"] == "running" and st["running"], st
    # vCPU 0 publishes its count when a run ends; a loaded host may not
    # have scheduled it since the last audit, so give it a moment (a
    # vCPU stuck by the audits would still fail this).
    deadline = time.monotonic() + 10
    while True:
        after = c.cmd("query-cpus-fast")["return"][0]["instructions"]
        if after > before:
            break
        assert time.monotonic() < deadline, \
            "vCPU 0 retired nothing in 10 s after the audits: %d" % after
        time.sleep(0.05)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait() == 0, d.log()
    took = time.monotonic() - t0
    assert took < 10, "SIGTERM took %.1f s: %s" % (took, d.log())
    assert "audit at shutdown" not in d.log(), d.log()
    d.kill()


if __name__ == "__main__":
    sys.exit(dl.main())
