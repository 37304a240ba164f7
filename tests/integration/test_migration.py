#!/usr/bin/env python3
"""The guest that migration must not disturb (tests/guests/migrate.c),
under the control-plane operations a migration is made of: dirty logging
started, harvested (each harvest write-protects the guest's pages again)
and stopped while its vCPUs write, stop, the MMU audit, cont. Its
heartbeats must stay numbered without gap or repeat with the checksum
recomputed here, its own checks of its memory must never fail, and the
harvests must find its hot pages dirty.

Usage: test_migration.py GROUP MMUD MMUCTL FOREVER_ELF MIGRATE_ELF
GROUP: guest (meson: migration-GROUP). Shared parts: tests/lib/daemonlib.py.
"""
import base64
import os
import re
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import TIMEOUT, Daemon, test  # noqa: E402

MIGRATE = None
MASK = (1 << 64) - 1
HB = re.compile(r"migrate: hb (\d+) sum (0x[0-9a-f]+)\n")


def mix(x):
    """The guest's mix(): a 64-bit finalizer, never 0."""
    x ^= x >> 33
    x = (x * 0xff51afd7ed558ccd) & MASK
    x ^= x >> 33
    x = (x * 0xc4ceb9fe1a85ec53) & MASK
    x ^= x >> 33
    return x | 1


class Heartbeats:
    """Reads the console and checks each heartbeat as it comes: the next
    number, the sum of mix(1..n) computed here, no MISMATCH line."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.buf = ""
        self.n = 0
        self.sum = 0

    def _read(self):
        chunk = self.sock.recv(65536)
        assert chunk, "console closed; last output: %r" % self.buf[-300:]
        self.buf += chunk.decode(errors="replace")
        assert "MISMATCH" not in self.buf, \
            "the guest found its memory changed: %r" % self.buf[-400:]

    def wait_ready(self):
        while "migrate: ready" not in self.buf:
            self._read()
        self.buf = self.buf[self.buf.index("migrate: ready"):]

    def advance(self, count):
        """Takes count more heartbeats, checking each."""
        target = self.n + count
        while self.n < target:
            m = HB.search(self.buf)
            if not m:
                self._read()
                continue
            self.buf = self.buf[m.end():]
            n, s = int(m.group(1)), int(m.group(2), 16)
            assert n == self.n + 1, \
                "heartbeat %d after %d: a gap or a repeat" % (n, self.n)
            self.n = n
            self.sum = (self.sum + mix(n)) & MASK
            assert s == self.sum, "heartbeat %d: sum %#x, expected %#x" % (
                n, s, self.sum)


def ok(r):
    assert "return" in r, r
    return r["return"]


@test("guest")
def test_guest_memory_unchanged_by_dirty_logging_stop_audit_cont(tmp):
    d = Daemon(tmp, "--memory", "256M", smp=2, kernel=MIGRATE,
               append="fill=16")
    hb = Heartbeats(d.con)
    hb.wait_ready()
    hb.advance(3)
    c = d.client()
    ok(c.cmd("x-dirty-log-start", {"slot": 0}))
    dirty = []
    for _ in range(4):
        hb.advance(2)
        h = ok(c.cmd("x-dirty-log-harvest", {"slot": 0}))
        dirty.append(h["dirty-pages"])
        bits = base64.b64decode(h["bitmap"])
        assert sum(bin(b).count("1") for b in bits) == h["dirty-pages"], h
    # Two vCPUs rewrite 16 hot pages each between heartbeats.
    assert all(n >= 32 for n in dirty), dirty
    assert ok(c.cmd("stop")) == {}
    assert ok(c.cmd("x-mmu-audit")) == {}
    assert ok(c.cmd("cont")) == {}
    hb.advance(3)
    ok(c.cmd("x-dirty-log-stop", {"slot": 0}))
    hb.advance(3)
    assert ok(c.cmd("x-mmu-audit")) == {}
    c.close()
    d.kill()


def main():
    global MIGRATE
    MIGRATE = sys.argv[5]
    return dl.main()


if __name__ == "__main__":
    sys.exit(main())
