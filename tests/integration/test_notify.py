#!/usr/bin/env python3
"""The sd_notify protocol of the real mmud (READY, STATUS, WATCHDOG).

Usage: test_notify.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
GROUP: notify (meson: daemon-GROUP). Shared parts: tests/lib/daemonlib.py.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import (  # noqa: E402
    Daemon, test)


# ---- sd_notify -----------------------------------------------------------

@test("notify")
def test_notify_protocol(tmp):
    d = Daemon(tmp, env={"WATCHDOG_USEC": "200000"})
    assert "STATUS=VM running" in d.ready.split("\n"), d.ready
    for _ in range(3):
        d.notify.wait("WATCHDOG=1")
    c = d.client()
    c.cmd("stop")
    d.notify.wait("STATUS=VM paused")
    c.cmd("quit")
    d.notify.wait("STOPPING=1")
    assert d.wait() == 0
    d.kill()
    # A watchdog meant for another process is not ours to ping.
    d = Daemon(tmp, env={"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
    d.client().cmd("quit")
    d.notify.wait("STOPPING=1")
    assert d.wait() == 0
    assert not [m for m in d.notify.seen if "WATCHDOG=1" in m]
    d.kill()


@test("notify")
def test_unread_notify_socket_never_blocks_the_loop(tmp):
    # The notify queue fills (net.unix.max_dgram_qlen is 10 by default)
    # and nobody reads it: mmud drops the STATUS lines, never blocks.
    d = Daemon(tmp)
    d.notify.stop_reading()
    c = d.client()
    for i in range(60):
        assert c.cmd("stop", id=i) == {"return": {}, "id": i}
        assert c.cmd("cont", id=i) == {"return": {}, "id": i}
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


if __name__ == "__main__":
    sys.exit(dl.main())
