#!/usr/bin/env python3
"""COM1 input by receive interrupt: the irq_echo guest (tests/guests/
irq_echo.c) sleeps in HLT until COM1's "received data" interrupt comes
through I/O APIC pin 4, and echoes what the console types.

Usage: test_irq_echo.py GROUP MMUD MMUCTL FOREVER_ELF IRQ_ECHO_ELF
GROUP: irq-echo (meson: daemon-irq-echo). Shared parts: tests/lib/daemonlib.py.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, test, read_console_until, error  # noqa: E402


def guest_hash(data):
    """The guest's hash: h = h * 31 + byte, 64 bits."""
    h = 0
    for b in data:
        h = (h * 31 + b) & (2**64 - 1)
    return h


@test("irq-echo")
def test_input_by_receive_interrupt_whole_and_in_order(tmp):
    assert dl.ECHO, "test_irq_echo.py needs IRQ_ECHO_ELF"
    d = Daemon(tmp, smp=1, kernel=dl.ECHO)
    s, _ = read_console_until(d.con, "irq_echo: ready\n")
    # Waiting for input, the vCPU sleeps in HLT (QMP.md: x-halted).
    c = d.client()
    deadline = time.monotonic() + dl.TIMEOUT
    while True:
        cpus = c.cmd("query-cpus-fast")["return"]
        if cpus[0].get("x-halted"):
            break
        assert time.monotonic() < deadline, ("never halted", cpus)
        time.sleep(0.05)
    c.close()
    # One line, typed while the guest sleeps in HLT.
    s.sendall(b"hello, guest\n")
    read_console_until(d.con, "irq_echo: hello, guest\n", sock=s)
    # Each byte alone, CR as Enter (a terminal in raw mode).
    for b in b"one byte at a time\r":
        s.sendall(bytes([b]))
    read_console_until(d.con, "irq_echo: one byte at a time\n", sock=s)
    # A paste far larger than COM1's FIFO and the guest's ring: nothing
    # lost or reordered, no ring overrun.
    data = b"".join(b"line %05d %s\n" % (i, b"x" * 50) for i in range(2000))
    s.sendall(data + b"sum\n")
    typed = b"hello, guest\n" + b"one byte at a time\n" + data
    want = "irq_echo: %d bytes, hash %x, by receive interrupts\n" % (
        len(typed), guest_hash(typed))
    _, text = read_console_until(
        d.con, re.compile(r"bytes, hash \w+, [a-z ]+\n"), sock=s)
    assert want in text, (want, text[-200:])
    s.sendall(b"quit\n")
    read_console_until(d.con, "irq_echo: bye\n", sock=s)
    assert d.wait() == 1, d.log()
    d.kill()


@test("irq-echo")
def test_query_ioapic_shows_com1s_pin(tmp):
    """x-query-ioapic (docs/QMP.md) while irq_echo waits for input: pin
    4 routed as the guest wrote it, every other pin as reset left it."""
    d = Daemon(tmp, smp=1, kernel=dl.ECHO)
    s, _ = read_console_until(d.con, "irq_echo: ready\n")
    c = d.client()
    r = c.cmd("x-query-ioapic")["return"]
    assert r["version"] == 0x20 and r["id"] == 0, r
    assert r["arbitration-id"] == 0 and len(r["pins"]) == 24, r
    assert [p["pin"] for p in r["pins"]] == list(range(24)), r
    assert r["pins"][4] == {
        "pin": 4, "vector": 0x24, "delivery-mode": "fixed",
        "dest-mode": "physical", "destination": 0,
        "polarity": "active-high", "trigger": "edge", "masked": False,
        "remote-irr": False, "line": False}, r["pins"][4]
    for p in r["pins"][:4] + r["pins"][5:]:
        assert p["masked"] and p["vector"] == 0 and not p["line"], p
        assert p["trigger"] == "edge" and p["polarity"] == "active-high", p
    # Arguments it does not take are refused; it still answers after.
    error(c.cmd("x-query-ioapic", {"pin": 4}), "GenericError")
    s.sendall(b"quit\n")
    read_console_until(d.con, "irq_echo: bye\n", sock=s)
    assert d.wait() == 1, d.log()
    d.kill()


if __name__ == "__main__":
    sys.exit(dl.main())
