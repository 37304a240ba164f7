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
import threading
import time

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


# ---- migration between two mmud -------------------------------------------

FILL = "fill=4"
MEM = "64M"


class Reader(threading.Thread):
    """Reads one console socket all the time, as a terminal would, so
    that the console's ring never overwrites what the test has not read
    yet however slowly the test goes."""

    def __init__(self, path, cond):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.data = b""
        self.eof = False
        self.cond = cond
        self.start()

    def run(self):
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.eof = True
                else:
                    self.data += chunk
                self.cond.notify_all()
            if not chunk:
                return


class Console:
    """The heartbeats across hops: one stream made of each process's
    console in turn (the source's to its end, then the destination's), so
    a line cut by a switchover is whole again and every byte must come
    exactly once."""

    def __init__(self, path):
        self.cond = threading.Condition()
        self.done = b""  # the consoles of processes that have ended
        self.cur = Reader(path, self.cond)
        self.pos = 0  # of the text checked so far
        self.n = 0
        self.sum = 0

    def text(self):
        return (self.done + self.cur.data).decode(errors="replace")

    def _wait(self, pred, what):
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while True:
                t = self.text()
                assert "MISMATCH" not in t, \
                    "the guest found its memory changed: %r" % t[-400:]
                r = pred(t)
                if r:
                    return r
                left = deadline - time.monotonic()
                assert left > 0 and not self.cur.eof, \
                    "console: no %s; the last of it: %r" % (what, t[-300:])
                self.cond.wait(left)

    def wait_ready(self):
        self._wait(lambda t: "migrate: ready" in t, "ready line")
        self.pos = self.text().index("migrate: ready")

    def advance(self, count):
        target = self.n + count
        while self.n < target:
            m = self._wait(lambda t: HB.search(t, self.pos), "heartbeat")
            self.pos = m.end()
            n, s = int(m.group(1)), int(m.group(2), 16)
            assert n == self.n + 1, \
                "heartbeat %d after %d: a gap or a repeat" % (n, self.n)
            self.n = n
            self.sum = (self.sum + mix(n)) & MASK
            assert s == self.sum, "heartbeat %d: sum %#x, expected %#x" % (
                n, s, self.sum)

    def switch(self, nxt):
        """The source has quit: its console up to its end, then nxt's
        (a Reader connected before the migration began)."""
        self._wait(lambda t: self.cur.eof or None, "end of the source")
        with self.cond:
            self.done += self.cur.data
            nxt.cond = self.cond
            self.cur = nxt


def vm(tmp, name, smp, *extra):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    return Daemon(d, "--memory", MEM, *extra, smp=smp, kernel=MIGRATE,
                  append=FILL)


def events_on(c):
    ok(c.cmd("migrate-set-capabilities", {"capabilities": [
        {"capability": "events", "state": True}]}))


def migration_events(c, last):
    """The MIGRATION statuses (and MIGRATION_PASS as "pass") up to last."""
    seen = []
    while True:
        m = c.recv() if not c.events else c.events.pop(0)
        if "event" not in m:
            continue
        if m["event"] == "MIGRATION":
            seen.append(m["data"]["status"])
            if m["data"]["status"] == last:
                return seen
        elif m["event"] == "MIGRATION_PASS":
            seen.append("pass")
        else:
            seen.append(m["event"])


def hop(tmp, name, src, smp, hb, uri_of):
    """Moves the guest from src to a new process; returns it."""
    dst = vm(tmp, name, smp, "--incoming", "defer")
    dcon = Reader(dst.con, hb.cond)
    dc = dst.client()
    events_on(dc)
    uri = uri_of(tmp, name)
    ok(dc.cmd("migrate-incoming", {"uri": uri}))
    info = ok(dc.cmd("query-migrate"))
    if uri.startswith("tcp:") and uri.endswith(":0"):
        port = info["socket-address"][0]["port"]
        uri = uri[:-1] + port
    sc = src.client()
    events_on(sc)
    ok(sc.cmd("migrate-set-parameters", {"max-bandwidth": 0}))
    ok(sc.cmd("migrate", {"uri": uri}))
    seq = migration_events(sc, "completed")
    assert seq[0] == "setup" and seq[1] == "active", seq
    assert seq[2] == "pass", seq
    i = seq.index("STOP")
    assert seq[i:] == ["STOP", "device", "completed"], seq
    info = ok(sc.cmd("query-migrate"))
    assert info["status"] == "completed", info
    ram = info["ram"]
    assert ram["remaining"] == 0 and ram["transferred"] > 0, info
    assert ram["total"] >= 64 << 20, info
    assert ram["normal"] >= 1024 // smp, info
    assert info["downtime"] <= info["total-time"], info
    st = ok(sc.cmd("query-status"))
    assert st["status"] == "postmigrate" and not st["running"], st
    dseq = migration_events(dc, "completed")
    assert dseq == ["setup", "active", "completed"], dseq
    dc.event("RESUME")
    st = ok(dc.cmd("query-status"))
    assert st["status"] == "running", st
    # The source says nothing more: quit it, read its console to the
    # end, then go on with the destination's.
    assert ok(sc.cmd("x-mmu-audit")) == {}
    ok(sc.cmd("quit"))
    sc.close()
    assert src.wait() == 0, src.log()
    hb.switch(dcon)
    hb.advance(2)
    assert ok(dc.cmd("x-mmu-audit")) == {}
    dc.close()
    return dst


def unix_uri(tmp, name):
    return "unix:" + os.path.join(tmp, name + ".mig")


def tcp_uri(tmp, name):
    return "tcp:127.0.0.1:0"


def round_trips(tmp, smp, uri_of, hops):
    src = vm(tmp, "h0", smp)
    hb = Console(src.con)
    hb.wait_ready()
    hb.advance(2)
    for i in range(1, hops + 1):
        src = hop(tmp, "h%d" % i, src, smp, hb, uri_of)
    src.kill()


@test("roundtrip")
def test_unix_1_vcpu_hops_keep_memory_heartbeats_and_console(tmp):
    round_trips(tmp, 1, unix_uri, 2)


def main():
    global MIGRATE
    MIGRATE = sys.argv[5]
    return dl.main()


if __name__ == "__main__":
    sys.exit(main())
