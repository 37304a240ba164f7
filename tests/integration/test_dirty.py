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
rate: calc-dirty-rate in each mode against the dirtyrate guest, which
  writes a known number of distinct MiB inside the measured window when
  its doorbell rings: query-dirty-rate's dirty-rate is within 10% of
  that; and calc-dirty-rate's refusals.

Usage: test_dirty.py GROUP MMUD MMUCTL FOREVER_ELF DIRTY_ELF DIRTYRATE_ELF
"""
import base64
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as td  # noqa: E402
from dirtylib import (  # noqa: E402
    DATA_GPA, GiB, Bells, burst_rounds, judge_rate, window)

ROUNDS = 8
DIRTY = DIRTYRATE = None
# Under meson test --setup dirtyring every daemon has a dirty ring.
RING = os.environ.get("MMUD_TEST_DIRTY_RING")
test = td.test  # registers in daemonlib's TESTS, which td.main() runs


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
    bells = Bells(c)
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
        bells.ring(r + 1)
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


def measure(c, args, during=None, timeout=60):
    """calc-dirty-rate with args, then during() (if given), then
    query-dirty-rate until measured: (seconds from the reply to the end
    of during(), seconds from the command sent to the result seen: the
    most the window can have lasted, the final query)."""
    sent = time.monotonic()
    r = c.cmd("calc-dirty-rate", args)
    t0 = time.monotonic()
    assert r == {"return": {}}, (args, r)
    took = during() - t0 if during else 0
    q = ok(c.cmd("query-dirty-rate"))
    assert q["status"] in ("measuring", "measured"), q
    deadline = t0 + timeout
    while q["status"] != "measured":
        assert time.monotonic() < deadline, ("never measured", q)
        time.sleep(0.01)
        q = ok(c.cmd("query-dirty-rate"))
    return took, time.monotonic() - sent, q


@test("rate")
def test_calc_dirty_rate_within_ten_percent_in_every_mode(tmp):
    """The dirtyrate guest writes BURST MiB of distinct pages when its
    doorbell rings; the bell is added right after calc-dirty-rate, so
    the worker runs it after the measurement's first pass, and the burst
    lands inside the window: the rate is BURST over the window, which
    lasts calc-time unless a loaded host stretches it (judge_rate())."""
    burst = 128
    d = td.Daemon(tmp, smp=1, kernel=DIRTYRATE,
                  append="fill=192 burst=%d" % burst)
    c = d.client()
    con = Console(d.con)
    con.wait(r"dirtyrate: ready")
    q = ok(c.cmd("query-dirty-rate"))
    assert q["status"] == "unstarted" and "dirty-rate" not in q, q
    ring = burst_rounds(c, con, burst)
    # Two rounds first, outside any measurement: every page of the
    # region is then mapped, and a burst is only stores (and, under
    # dirty-bitmap, the faults of the write protection). The first
    # round's faults cost about what dirty-bitmap's do: the window is
    # long enough for two such bursts (2 s here, longer under a
    # sanitizer).
    secs = window(ring, 2)
    # 128 MiB of the 256 MiB are dirty: 4096 samples per GiB (1024 here)
    # see half of them change, give or take 3%.
    for mode, extra in [("page-sampling", {"sample-pages": 4096}),
                        ("dirty-bitmap", {})]:
        args = dict({"calc-time": secs, "mode": mode}, **extra)
        q = judge_rate(mode, burst, secs,
                       lambda: measure(c, args, ring))
        assert q["mode"] == mode and q["calc-time"] == secs, q
        assert q["calc-time-unit"] == "second", q
        assert q["sample-pages"] == extra.get("sample-pages", 0), q
        assert abs(q["start-time"] - time.time()) < 60, q
        # dirty-bitmap leaves no slot logging behind it.
        assert not any(s["log-dirty"]
                       for s in ok(c.cmd("x-query-memslots"))), mode
    # mmuctl dirty-rate measures and waits for the result, while the
    # guest writes another burst.
    def by_mmuctl():
        sent = time.monotonic()
        p = td.popen([td.MMUCTL, "--socket", d.qmp, "dirty-rate",
                      "calc-time=%d" % secs, "sample-pages=4096"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     text=True)
        # Ring once its measurement has begun (its first pass is queued
        # on the worker, so the bell's slot comes after it).
        deadline = time.monotonic() + td.TIMEOUT
        while ok(c.cmd("query-dirty-rate"))["status"] != "measuring":
            assert time.monotonic() < deadline and p.poll() is None, \
                p.communicate()
            time.sleep(0.01)
        t0 = time.monotonic()
        took = ring() - t0
        out, err = p.communicate(timeout=td.TIMEOUT)
        span = time.monotonic() - sent
        assert p.returncode == 0, (out, err)
        m = re.search(r"^dirty-rate: (\d+)$", out, re.M)
        assert m and "status: measured" in out, out
        return took, span, {"dirty-rate": int(m.group(1)), "out": out}
    judge_rate("mmuctl dirty-rate", burst, secs, by_mmuctl)
    if not RING:
        rc = td.popen([td.MMUCTL, "--socket", d.qmp, "dirty-rate",
                       "calc-time=1", "mode=dirty-ring"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      text=True)
        out, err = rc.communicate(timeout=td.TIMEOUT)
        assert rc.returncode != 0 and "dirty-ring is not enabled" in err, \
            (rc.returncode, out, err)
    # Nothing written: nothing measured.
    _, _, q = measure(c, {"calc-time": 300, "calc-time-unit": "millisecond",
                       "mode": "dirty-bitmap"})
    assert q["dirty-rate"] <= 1, q
    assert q["calc-time"] == 0 and q["calc-time-unit"] == "second", q
    q = ok(c.cmd("query-dirty-rate", {"calc-time-unit": "millisecond"}))
    assert q["calc-time"] == 300 and q["sample-pages"] == 0, q
    audit(c)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("rate")
def test_calc_dirty_rate_refusals_change_nothing(tmp):
    d = td.Daemon(tmp, smp=1)
    c = d.client()
    slot = ok(c.cmd("x-memslot-add", {"gpa": DATA_GPA, "size": 1 << 20,
                                      "log-dirty": True}))["slot"]
    cases = [
        ({"calc-time": 0}, "Calculation time is out of range"),
        ({"calc-time": 61}, "Calculation time is out of range"),
        ({"calc-time": 10, "calc-time-unit": "millisecond"},
         "Calculation time is out of range"),
        ({"calc-time": -1}, "Calculation time"),
        ({"calc-time": 1, "calc-time-unit": "hour"}, "calc-time-unit"),
        ({"calc-time": 1, "sample-pages": 100}, "sample-pages is out of"),
        ({"calc-time": 1, "sample-pages": 5000}, "sample-pages is out of"),
        ({"calc-time": 1, "mode": "dirty-bitmap", "sample-pages": 512},
         "only in page-sampling mode"),
        ({"calc-time": 1, "mode": "dirty-ring"},
         "slot %d logs" % slot if RING else "dirty-ring is not"),
        ({"calc-time": 1, "mode": "bogus"}, "mode"),
        ({"calc-time": 1, "mode": "dirty-bitmap"}, "slot %d logs" % slot),
        ({}, "calc-time"),
    ]
    for args, text in cases:
        r = c.cmd("calc-dirty-rate", args)
        assert "error" in r and text in r["error"]["desc"], (args, r)
        q = ok(c.cmd("query-dirty-rate"))
        assert q["status"] == "unstarted", (args, q)
    # One at a time; the x-dirty-log commands wait for a dirty-bitmap
    # measurement.
    ok(c.cmd("x-dirty-log-stop", {"slot": slot}))
    ok(c.cmd("calc-dirty-rate", {"calc-time": 3, "mode": "dirty-bitmap"}))
    r = c.cmd("calc-dirty-rate", {"calc-time": 1})
    assert "already being measured" in r["error"]["desc"], r
    r = c.cmd("x-dirty-log-harvest", {"slot": slot})
    assert "calc-dirty-rate is measuring in dirty-bitmap mode" in \
        r["error"]["desc"], r
    q = ok(c.cmd("query-dirty-rate"))
    assert q["status"] == "measuring" and q["mode"] == "dirty-bitmap", q
    audit(c)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


def main():
    global DIRTY, DIRTYRATE
    DIRTY, DIRTYRATE = sys.argv[5:7]
    return td.main()


if __name__ == "__main__":
    sys.exit(main())
