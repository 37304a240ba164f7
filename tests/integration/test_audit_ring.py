#!/usr/bin/env python3
"""The MMU audit with the dirty ring on and a slot logging, while the
guest writes (docs/MMU.md, "The dirty ring"): every writable spte of the
logging slot must have its page in some vCPU's ring not yet reset, or
in the bitmap. tests/guests/migrate.c ("fill=16") writes its memory all
the time; the daemon's reaper harvests and resets the rings meanwhile,
so the audit runs against pushes, harvests and resets in progress and
must find nothing (tests/unit/mmu/test_audit.c plants the violations).

Usage: test_audit_ring.py GROUP MMUD MMUCTL FOREVER_ELF MIGRATE_ELF
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, test  # noqa: E402
import test_migration as tm  # noqa: E402  its guest's heartbeats


def ok(r):
    assert "return" in r, r
    return r["return"]


def ring_stats(c):
    return ok(c.cmd("x-query-mmu-stats"))["vm"]


@test("audit-ring")
def test_audit_finds_every_writable_page_in_a_ring_while_guest_writes(tmp):
    d = Daemon(tmp, "--memory", "256M", "--dirty-ring", "128", smp=2,
               kernel=dl.ECHO, append="fill=16")
    hb = tm.Heartbeats(d.con)
    hb.wait_ready()
    hb.advance(2)
    c = d.client()
    ok(c.cmd("x-dirty-log-start", {"slot": 0}))
    before = ring_stats(c)
    for i in range(20):
        hb.advance(1)
        r = c.cmd("x-mmu-audit")
        assert r == {"return": {}}, ("audit %d with the ring on and slot "
                                     "0 logging" % i, r, d.log())
    after = ring_stats(c)
    assert after["dirty_ring_pushes"] > before["dirty_ring_pushes"] and \
        after["dirty_ring_resets"] > before["dirty_ring_resets"], \
        ("the guest's writes went through no ring", before, after)
    ok(c.cmd("x-dirty-log-stop", {"slot": 0}))
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


if __name__ == "__main__":
    sys.exit(dl.main())
