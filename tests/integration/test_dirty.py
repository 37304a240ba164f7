#!/usr/bin/env python3
"""Dirty tracking beyond the plain harvest, with the real daemon.

manual: the dirty guest writes pages in rounds and prints which; the log
  runs with manual-protect: each harvest (in 64-page ranges) reports
  exactly the pages written since the last one, and only clears: with
  the vCPUs paused a second one finds none, and x-dirty-log-clear then
  protects exactly the pages reported, so the next round's writes are
  all reported again.
badargs: x-dirty-log-clear and the ranged harvest refuse every bad
  argument with a GenericError naming it, and change nothing.

Usage: test_dirty.py GROUP MMUD MMUCTL FOREVER_ELF DIRTY_ELF
"""
import base64
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as td  # noqa: E402

GiB = 1 << 30
DATA_GPA = 8 * GiB
BELLS = [12 * GiB, 12 * GiB + (2 << 20)]
ROUNDS = 8
DIRTY = None
TESTS = {}


def test(group):
    def reg(fn):
        TESTS.setdefault(group, []).append(fn)
        return fn
    return reg


def ok(r):
    assert "return" in r, r
    return r["return"]


def audit(c):
    assert c.cmd("x-mmu-audit") == {"return": {}}, "audit failed"


def pages_of(bitmap_b64, first, npages):
    raw = base64.b64decode(bitmap_b64)
    return {first + p for p in range(npages) if raw[p // 8] >> (p % 8) & 1}


class Console:
    """The console socket as a stream of lines to wait for."""

    def __init__(self, path):
        self.sock, self.buf = td.read_console_until(path, "")

    def wait(self, pattern):
        while True:
            m = re.search(pattern, self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("console closed waiting for %r" % pattern)
            self.buf += chunk.decode(errors="replace")


def harvest_ranges(c, slot, npages, step, clear=True):
    """The whole slot in ranges of step pages: (pages, [replies])."""
    got, replies = set(), []
    for first in range(0, npages, step):
        h = ok(c.cmd("x-dirty-log-harvest",
                     {"slot": slot, "first-page": first,
                      "num-pages": step, "clear": clear}))
        assert h["first-page"] == first, h
        assert h["num-pages"] == min(step, npages - first), h
        p = pages_of(h["bitmap"], first, h["num-pages"])
        assert h["dirty-pages"] == len(p), h
        got |= p
        replies.append(h)
    return got, replies


@test("manual")
def test_manual_protect_reports_exactly_and_clear_reprotects(tmp):
    d = td.Daemon(tmp, smp=2, kernel=DIRTY)
    c = d.client()
    con = Console(d.con)
    con.wait(r"dirty: waiting")
    # Logged from its first page; manual-protect from before the guest's
    # first round can be over (it waits for the first harvest's bell).
    data = ok(c.cmd("x-memslot-add", {"gpa": DATA_GPA, "size": 64 << 12,
                                      "log-dirty": True}))["slot"]
    ok(c.cmd("x-dirty-log-start", {"slot": data, "manual-protect": True}))
    bells = [None, None]
    cleared_total = 0
    for r in range(1, ROUNDS + 1):
        line = con.wait(r"dirty: round %d:([^\n]*)\n" % r)
        wrote = {int(p) for p in line.group(1).split()}
        got, replies = harvest_ranges(c, data, 64, 64)
        assert got == wrote, ("round", r, "missed", wrote - got,
                              "invented", got - wrote)
        # Only cleared: a second harvest, paused, finds nothing.
        ok(c.cmd("stop"))
        again, _ = harvest_ranges(c, data, 64, 64)
        assert not again, ("round", r, "reported twice", again)
        for h in replies:
            cl = ok(c.cmd("x-dirty-log-clear",
                          {"slot": data, "first-page": h["first-page"],
                           "num-pages": h["num-pages"],
                           "bitmap": h["bitmap"]}))
            assert cl == {"slot": data, "first-page": h["first-page"],
                          "num-pages": h["num-pages"],
                          "cleared-pages": h["dirty-pages"]}, (cl, h)
            cleared_total += cl["cleared-pages"]
        ok(c.cmd("cont"))
        audit(c)
        nxt = (r + 1) % 2
        if bells[1 - nxt] is not None:
            ok(c.cmd("x-memslot-remove", {"slot": bells[1 - nxt]}))
            bells[1 - nxt] = None
        bells[nxt] = ok(c.cmd("x-memslot-add", {"gpa": BELLS[nxt],
                                                "size": 4096}))["slot"]
    con.wait(r"dirty: done")
    print("manual protect: %d pages harvested and cleared" % cleared_total)
    assert cleared_total > 0
    assert d.wait() == 1, d.log()
    d.kill()


@test("badargs")
def test_clear_and_ranged_harvest_refuse_bad_arguments(tmp):
    d = td.Daemon(tmp, smp=1)
    c = d.client()
    plain = ok(c.cmd("x-memslot-add", {"gpa": DATA_GPA, "size": 1 << 20,
                                       "log-dirty": True}))["slot"]
    man = ok(c.cmd("x-memslot-add", {"gpa": DATA_GPA + GiB,
                                     "size": 1 << 20}))["slot"]
    off = ok(c.cmd("x-memslot-add", {"gpa": DATA_GPA + 2 * GiB,
                                     "size": 1 << 20}))["slot"]
    ok(c.cmd("x-dirty-log-start", {"slot": man, "manual-protect": True}))
    b8 = base64.b64encode(bytes(8)).decode()
    cases = [
        ("x-dirty-log-clear", {"slot": plain, "first-page": 0,
                               "num-pages": 64, "bitmap": b8},
         "manual-protect"),
        ("x-dirty-log-clear", {"slot": man, "first-page": 32,
                               "num-pages": 64, "bitmap": b8},
         "first-page"),
        ("x-dirty-log-clear", {"slot": man, "first-page": 0,
                               "num-pages": 0, "bitmap": b8}, "num-pages"),
        ("x-dirty-log-clear", {"slot": man, "first-page": 0,
                               "num-pages": 64, "bitmap": "AAAA"},
         "bitmap"),
        ("x-dirty-log-clear", {"slot": man, "first-page": 0,
                               "num-pages": 64, "bitmap": "!!!!"},
         "bitmap"),
        ("x-dirty-log-clear", {"slot": man, "first-page": 0,
                               "num-pages": 4,
                               "bitmap": base64.b64encode(b"\xff").decode()},
         "bitmap"),
        ("x-dirty-log-clear", {"slot": man, "first-page": 256,
                               "num-pages": 64, "bitmap": b8}, "first-page"),
        ("x-dirty-log-clear", {"slot": man, "first-page": 192,
                               "num-pages": 128,
                               "bitmap": base64.b64encode(
                                   bytes(16)).decode()}, "num-pages"),
        ("x-dirty-log-clear", {"slot": off, "first-page": 0,
                               "num-pages": 64, "bitmap": b8},
         "manual-protect"),
        ("x-dirty-log-clear", {"slot": 77, "first-page": 0,
                               "num-pages": 64, "bitmap": b8}, "slot"),
        ("x-dirty-log-clear", {"slot": man, "first-page": 0,
                               "num-pages": 64}, "bitmap"),
        ("x-dirty-log-start", {"slot": man, "manual-protect": 1},
         "manual-protect"),
        ("x-dirty-log-harvest", {"slot": man, "first-page": 64 * 5},
         "first-page"),
        ("x-dirty-log-harvest", {"slot": man, "first-page": 3},
         "first-page"),
    ]
    before = ok(c.cmd("x-query-memslots"))
    for cmd, args, field in cases:
        r = c.cmd(cmd, args)
        assert "error" in r and r["error"]["class"] == "GenericError", \
            (cmd, args, r)
        assert field in r["error"]["desc"], (cmd, args, r)
        assert ok(c.cmd("x-query-memslots")) == before, (cmd, args)
    # Stopped and started again without manual-protect: clear refused.
    ok(c.cmd("x-dirty-log-stop", {"slot": man}))
    ok(c.cmd("x-dirty-log-start", {"slot": man}))
    r = c.cmd("x-dirty-log-clear", {"slot": man, "first-page": 0,
                                    "num-pages": 64, "bitmap": b8})
    assert "error" in r and "manual-protect" in r["error"]["desc"], r
    audit(c)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


def main():
    global DIRTY
    group = sys.argv[1]
    td.MMUD, td.MMUCTL, td.FOREVER, DIRTY = sys.argv[2:6]
    failed = 0
    for fn in TESTS[group]:
        with tempfile.TemporaryDirectory(prefix="mmud-dirty-") as tmp:
            t0 = time.monotonic()
            try:
                fn(tmp)
                print("ok   %s (%.1fs)" % (fn.__name__,
                                           time.monotonic() - t0))
            except Exception as e:  # report and go on
                failed += 1
                print("FAIL %s: %r" % (fn.__name__, e))
                import traceback
                traceback.print_exc()
            finally:
                td.kill_live()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
