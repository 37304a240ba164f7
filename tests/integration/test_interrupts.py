#!/usr/bin/env python3
"""Interrupts through QMP and the VM's end: x-query-lapic, query-cpus-fast's
x-halted and x-wait-for-sipi, inject-nmi, and halted-for-good with a vCPU
waiting for a SIPI. The guest is tests/guests/apic_init.c: vCPU 0 sends
INIT and two SIPIs to vCPU 1, then does what its command line says.

Usage: test_interrupts.py GROUP MMUD MMUCTL FOREVER_ELF APIC_INIT_ELF
GROUP: interrupts (meson: daemon-interrupts). Shared parts:
tests/lib/daemonlib.py.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, test, read_console_until, error  # noqa: E402


def cpus(c):
    return c.cmd("query-cpus-fast")["return"]


@test("interrupts")
def test_init_sipi_reported_and_inject_nmi_reaches_running_vcpu(tmp):
    d = Daemon(tmp, smp=2, kernel=dl.ECHO, append="wait")
    s, _ = read_console_until(d.con, "apic_init: waiting\n")
    c = d.client()
    v = cpus(c)
    assert [x["x-wait-for-sipi"] for x in v] == [False, True], v
    assert not v[0]["x-halted"], v
    a1 = c.cmd("x-query-lapic", {"cpu-index": 1})["return"]
    # INIT reset its registers (software disabled again, ID kept) and
    # the two SIPIs were recorded, not executed.
    assert a1["wait-for-sipi"] is True and a1["sipis"] == 2, a1
    assert a1["sipi-vector"] == 0x9a, a1
    assert a1["id"] == 1 << 24 and a1["svr"] == 0xff, a1
    assert a1["mode"] == "xapic" and a1["apic-base"] == 0xfee00800, a1
    a0 = c.cmd("x-query-lapic", {"cpu-index": 0})["return"]
    assert a0["apic-base"] == 0xfee00900, a0  # EN | BSP
    assert a0["svr"] & 0x100 and a0["id"] == 0, a0
    assert a0["wait-for-sipi"] is False and "sipi-vector" not in a0, a0
    assert a0["version"] == 0x50014 and len(a0["irr"]) == 8, a0
    assert set(a0["lvt"]) == {"timer", "thermal", "perf", "lint0",
                              "lint1", "error"}, a0
    # The ICR last sent: the fixed IPI 0x48 to APIC 1.
    assert a0["icr"] == (1 << 56) | (1 << 14) | 0x48, a0
    # Bad cpu-index values: refused, named, nothing else happens.
    for bad in (2, -1, 1 << 40):
        error(c.cmd("x-query-lapic", {"cpu-index": bad}), "GenericError",
              "Parameter 'cpu-index' expects a vCPU index from 0 to 1")
    r = c.cmd("x-query-lapic", {"cpu-index": "1"})
    assert r["error"]["class"] == "GenericError", r
    r = c.cmd("x-query-lapic")
    assert r["error"]["class"] == "GenericError", r
    # inject-nmi: every vCPU; the running one takes it (the one waiting
    # for a SIPI holds it).
    assert c.cmd("inject-nmi") == {"return": {}}
    read_console_until(d.con, "apic_init: NMI 1\n", sock=s)
    assert c.cmd("inject-nmi") == {"return": {}}
    read_console_until(d.con, "apic_init: NMI 2\n", sock=s)
    assert c.cmd("query-status")["return"]["status"] == "running"
    c.cmd("quit")
    assert d.wait() == 0
    d.kill()


@test("interrupts")
def test_halted_vcpu_reported_and_woken_by_inject_nmi(tmp):
    d = Daemon(tmp, smp=2, kernel=dl.ECHO, append="sleep")
    s, _ = read_console_until(d.con, "apic_init: sleeping\n")
    c = d.client()
    # vCPU 0 sleeps in HLT between timer ticks 50 ms apart.
    deadline = time.time() + 10
    while not cpus(c)[0]["x-halted"]:
        assert time.time() < deadline, cpus(c)
        time.sleep(0.01)
    assert c.cmd("inject-nmi") == {"return": {}}
    read_console_until(d.con, "apic_init: NMI 1\n", sock=s)
    a0 = c.cmd("x-query-lapic", {"cpu-index": 0})["return"]
    assert a0["timer"]["armed"] and a0["timer"]["initial-count"] == 50000000
    assert a0["lvt"]["timer"] == 0x49 | (1 << 17), a0
    c.cmd("quit")
    assert d.wait() == 0
    d.kill()


@test("interrupts")
def test_halted_for_good_with_a_vcpu_waiting_for_sipi(tmp):
    # vCPU 0 ends in cli; hlt, vCPU 1 waits for a SIPI: nothing inside
    # the guest can wake either, so the VM has halted for good.
    d = Daemon(tmp, smp=2, kernel=dl.ECHO, append="halt", qmp=False)
    assert d.wait() == 2, d.log()
    assert "every vCPU halted with nothing to wake it" in d.log(), d.log()
    d.kill()


if __name__ == "__main__":
    sys.exit(dl.main())
