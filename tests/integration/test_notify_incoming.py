#!/usr/bin/env python3
"""READY=1 of a migration destination (docs/MIGRATION.md, "The migration
commands"): a supervisor may start the source's migrate the moment the
destination says READY=1, so by then --incoming must listen.

ready-listens:  the test owns $NOTIFY_SOCKET; the moment READY=1 arrives
                it connects to the --incoming unix: socket and to the
                QMP socket: both accept.
ready-refused:  an --incoming URI that cannot listen (its directory does
                not exist): mmud exits with status 4 (docs/GUEST-ABI.md,
                "Exit statuses") and never said READY=1.

Usage: test_notify_incoming.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
Shared parts: tests/lib/daemonlib.py.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, test  # noqa: E402


def notify_socket(tmp):
    path = os.path.join(tmp, "own-notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    return s, path


@test("notify-incoming")
def test_ready_comes_after_incoming_listens(tmp):
    s, path = notify_socket(tmp)
    sock = os.path.join(tmp, "in.sock")
    d = Daemon(tmp, "--incoming", "unix:" + sock, ready=False,
               env={"NOTIFY_SOCKET": path})
    s.settimeout(dl.TIMEOUT)
    seen = []
    while True:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            raise AssertionError("no READY=1 within %d s; got %r; log %s"
                                 % (dl.TIMEOUT, seen, d.log()))
        seen.append(msg)
        if "READY=1" in msg.split("\n"):
            break
    # At once, before anything else: both sockets must accept.
    for what, p in (("--incoming", sock), ("QMP", d.qmp)):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            c.connect(p)
        except OSError as e:
            raise AssertionError("READY=1 (%r) came before the %s socket "
                                 "%s listened: %s" % (msg, what, p, e))
        c.close()
    assert "STATUS=VM inmigrate" in msg.split("\n"), msg
    d.kill()
    s.close()


@test("notify-refused")
def test_no_ready_when_incoming_cannot_listen(tmp):
    s, path = notify_socket(tmp)
    bad = os.path.join(tmp, "no-such-dir", "in.sock")
    d = Daemon(tmp, "--incoming", "unix:" + bad, ready=False,
               env={"NOTIFY_SOCKET": path})
    rc = d.wait()
    assert rc == 4, ("exit status %r, expected 4 (refused)" % rc, d.log())
    assert "--incoming unix:" + bad in d.log(), d.log()
    # Everything mmud sent is queued on the socket by now.
    s.setblocking(False)
    seen = []
    while True:
        try:
            seen.append(s.recv(4096).decode())
        except BlockingIOError:
            break
    assert not [m for m in seen if "READY=1" in m.split("\n")], \
        ("READY=1 from a destination that never listened", seen)
    d.kill()
    s.close()


if __name__ == "__main__":
    sys.exit(dl.main())
