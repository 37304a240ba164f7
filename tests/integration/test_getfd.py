#!/usr/bin/env python3
"""QEMU's getfd and closefd on the real mmud: descriptors passed with
SCM_RIGHTS on the QMP socket, as libvirt passes the one for migrate
{"uri": "fd:NAME"} (docs/QMP.md, "Passing descriptors").

Each descriptor handed over is the write end of a pipe whose read end
the test keeps: once the test has closed its own copy of the write end,
the read end reports EOF exactly when mmud has closed its copy. That is
how every test sees whether mmud still holds a descriptor.

Usage: test_getfd.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
GROUP: getfd (meson: daemon-GROUP). Shared parts: tests/lib/daemonlib.py.
"""
import json
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, error, fds_of, test, TIMEOUT  # noqa: E402

MAX_CLIENT_FDS = 8  # rpc/rpc.h, QMP_MAX_CLIENT_FDS
MAX_NAMED = 64  # daemon/internal/migrate_uri.h, MIG_FDS_MAX


class Probe:
    """A pipe: write_fd goes to mmud, read end stays here."""

    def __init__(self):
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)

    def sent(self):
        """The write end has gone to mmud: drop our copy."""
        os.close(self.w)
        self.w = None

    def closed_by_mmud(self, wait=TIMEOUT):
        """True once mmud has closed its copy (EOF), False if it still
        holds it after wait seconds."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.r], [], [], max(left, 0))
            if ready:
                try:
                    if os.read(self.r, 16) == b"":
                        return True
                except BlockingIOError:
                    pass
            if left <= 0:
                return False

    def held_by_mmud(self):
        return not self.closed_by_mmud(wait=0.3)

    def close(self):
        os.close(self.r)
        if self.w is not None:
            os.close(self.w)


def wait_fds(d, n):
    """Waits until mmud has n descriptors open (a client it has seen go
    is closed from its loop, a moment later); returns how many it has."""
    deadline = time.monotonic() + TIMEOUT
    while fds_of(d) != n and time.monotonic() < deadline:
        time.sleep(0.05)
    return fds_of(d)


def send_with(c, text, probes):
    """One sendmsg: text and the probes' write ends."""
    data = text if isinstance(text, bytes) else text.encode()
    n = socket.send_fds(c.sock, [data], [p.w for p in probes])
    assert n == len(data), (n, len(data))
    for p in probes:
        p.sent()


def getfd(name, id=None):
    m = {"execute": "getfd", "arguments": {"fdname": name}}
    if id is not None:
        m["id"] = id
    return json.dumps(m)


# ---- getfd and closefd ---------------------------------------------------

@test("getfd")
def test_getfd_keeps_descriptor_until_closefd(tmp):
    d = Daemon(tmp)
    c = d.client()
    before = fds_of(d)
    p = Probe()
    send_with(c, getfd("migrate", id=1), [p])
    assert c.reply() == {"return": {}, "id": 1}
    assert p.held_by_mmud(), "mmud closed the descriptor getfd named"
    assert fds_of(d) == before + 1, (fds_of(d), before)
    assert c.cmd("closefd", {"fdname": "migrate"}) == {"return": {}}
    assert p.closed_by_mmud(), "closefd left the descriptor open"
    assert fds_of(d) == before
    # Once closed, the name is gone.
    error(c.cmd("closefd", {"fdname": "migrate"}), "GenericError",
          "File descriptor named 'migrate' not found")
    p.close()
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("getfd")
def test_getfd_errors_as_qemu_and_change_nothing(tmp):
    d = Daemon(tmp)
    c = d.client()
    before = fds_of(d)
    error(c.cmd("getfd", {"fdname": "x"}), "GenericError",
          "No file descriptor supplied via SCM_RIGHTS")
    error(c.cmd("closefd", {"fdname": "nope"}), "GenericError",
          "File descriptor named 'nope' not found")
    error(c.cmd("getfd", {}), "GenericError",
          "Parameter 'fdname' is missing")
    error(c.cmd("getfd", {"fdname": 3}), "GenericError")
    # A refused name: the descriptor that came with it is closed.
    for name, why in [("7up", "a name not starting with a digit"),
                      ("", "a name of 1 to 127 bytes"),
                      ("n" * 128, "a name of 1 to 127 bytes")]:
        p = Probe()
        send_with(c, getfd(name), [p])
        error(c.reply(), "GenericError",
              "Parameter 'fdname' expects " + why)
        assert p.closed_by_mmud(), "refused getfd %r kept its fd" % name
        p.close()
    assert fds_of(d) == before, (fds_of(d), before)
    # A name of 127 bytes is fine.
    p = Probe()
    send_with(c, getfd("n" * 127), [p])
    assert c.reply() == {"return": {}}
    assert c.cmd("closefd", {"fdname": "n" * 127}) == {"return": {}}
    assert p.closed_by_mmud()
    p.close()
    d.kill()


@test("getfd")
def test_getfd_same_name_replaces_and_closes_old(tmp):
    d = Daemon(tmp)
    c = d.client()
    a, b = Probe(), Probe()
    send_with(c, getfd("m"), [a])
    assert c.reply() == {"return": {}}
    send_with(c, getfd("m"), [b])
    assert c.reply() == {"return": {}}
    assert a.closed_by_mmud(), "the replaced descriptor stayed open"
    assert b.held_by_mmud()
    # Names are mmud's, not the connection's: another client closes it.
    c2 = d.client()
    assert c2.cmd("closefd", {"fdname": "m"}) == {"return": {}}
    assert b.closed_by_mmud()
    a.close()
    b.close()
    d.kill()


@test("getfd")
def test_fd_with_another_command_is_closed(tmp):
    d = Daemon(tmp)
    c = d.client()
    before = fds_of(d)
    p = Probe()
    send_with(c, '{"execute": "query-status", "id": 5}', [p])
    r = c.reply()
    assert r["id"] == 5 and r["return"]["status"] == "running", r
    assert p.closed_by_mmud(), "a descriptor with query-status was kept"
    # With blanks only: no command at all.
    q = Probe()
    send_with(c, "  \r\n", [q])
    assert q.closed_by_mmud(), "a descriptor with blanks was kept"
    # With a text that is not JSON.
    g = Probe()
    send_with(c, "{nonsense}", [g])
    error(c.reply(), "GenericError")
    assert g.closed_by_mmud()
    # And the next getfd, without one, has none.
    error(c.cmd("getfd", {"fdname": "x"}), "GenericError",
          "No file descriptor supplied via SCM_RIGHTS")
    assert fds_of(d) == before
    for x in (p, q, g):
        x.close()
    d.kill()


@test("getfd")
def test_fd_goes_to_the_command_its_sendmsg_completed(tmp):
    d = Daemon(tmp)
    c = d.client()
    # Two commands in one sendmsg: the descriptor is the second's.
    p = Probe()
    send_with(c, '{"execute": "getfd", "arguments": {"fdname": "a"}, '
              '"id": 1}' + getfd("b", id=2) + "\r\n", [p])
    error(c.reply(), "GenericError",
          "No file descriptor supplied via SCM_RIGHTS")
    assert c.reply() == {"return": {}, "id": 2}
    assert p.held_by_mmud()
    error(c.cmd("closefd", {"fdname": "a"}), "GenericError")
    assert c.cmd("closefd", {"fdname": "b"}) == {"return": {}}
    assert p.closed_by_mmud()
    # The descriptor sent with the first half of a command, the rest
    # later: it belongs to that command.
    q = Probe()
    text = getfd("c", id=3)
    send_with(c, text[:10], [q])
    time.sleep(0.1)
    c.send_raw(text[10:].encode())
    assert c.reply() == {"return": {}, "id": 3}
    assert q.held_by_mmud()
    assert c.cmd("closefd", {"fdname": "c"}) == {"return": {}}
    assert q.closed_by_mmud()
    # A stray descriptor (with blanks only) right before getfd's: the
    # stray one is closed, getfd's kept.
    u, v = Probe(), Probe()
    send_with(c, "  ", [u])
    send_with(c, getfd("e"), [v])
    assert c.reply() == {"return": {}}
    assert u.closed_by_mmud()
    assert v.held_by_mmud()
    assert c.cmd("closefd", {"fdname": "e"}) == {"return": {}}
    assert v.closed_by_mmud()
    u.close()
    v.close()
    # Two descriptors with one getfd: the first is kept, the other
    # closed when getfd has answered.
    r, s = Probe(), Probe()
    send_with(c, getfd("d"), [r, s])
    assert c.reply() == {"return": {}}
    assert r.held_by_mmud()
    assert s.closed_by_mmud(), "the second descriptor stayed open"
    assert c.cmd("closefd", {"fdname": "d"}) == {"return": {}}
    assert r.closed_by_mmud()
    for x in (p, q, r, s):
        x.close()
    d.kill()


@test("getfd")
def test_client_cannot_pile_up_descriptors(tmp):
    d = Daemon(tmp)
    c = d.client()
    before = fds_of(d)
    # Twenty with one getfd: at most QMP_MAX_CLIENT_FDS get in at all.
    many = [Probe() for _ in range(20)]
    send_with(c, getfd("one"), many)
    assert c.reply() == {"return": {}}
    assert many[0].held_by_mmud()
    for p in many[1:]:
        assert p.closed_by_mmud(), "an extra descriptor stayed open"
    assert c.cmd("closefd", {"fdname": "one"}) == {"return": {}}
    assert many[0].closed_by_mmud()
    # A command that never ends, a descriptor with every piece of it:
    # mmud holds at most QMP_MAX_CLIENT_FDS and closes the rest at once.
    probes = [Probe() for _ in range(MAX_CLIENT_FDS + 5)]
    send_with(c, '{"execute": "getfd", ', probes[:1])
    for p in probes[1:]:
        time.sleep(0.02)
        send_with(c, " ", [p])
    held = [p for p in probes if p.held_by_mmud()]
    assert len(held) == MAX_CLIENT_FDS, len(held)
    assert fds_of(d) <= before + MAX_CLIENT_FDS
    # The client goes: everything it passed is closed, and its socket.
    c.close()
    for p in probes:
        assert p.closed_by_mmud(), "a disconnected client's fd stayed"
    dl.assert_alive(d)
    assert wait_fds(d, before - 1) == before - 1, (fds_of(d), before)
    for p in many + probes:
        p.close()
    d.kill()


@test("getfd")
def test_named_descriptors_are_bounded(tmp):
    d = Daemon(tmp)
    c = d.client()
    probes = []
    for i in range(MAX_NAMED):
        p = Probe()
        send_with(c, getfd("n%d" % i), [p])
        assert c.reply() == {"return": {}}
        probes.append(p)
    p = Probe()
    send_with(c, getfd("one-more"), [p])
    error(c.reply(), "GenericError",
          "Too many named file descriptors (64): close one with "
          "closefd first")
    assert p.closed_by_mmud()
    probes.append(p)
    # closefd frees a name for another.
    assert c.cmd("closefd", {"fdname": "n0"}) == {"return": {}}
    assert probes[0].closed_by_mmud()
    q = Probe()
    send_with(c, getfd("one-more"), [q])
    assert c.reply() == {"return": {}}
    assert q.held_by_mmud()
    probes.append(q)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    for p in probes:
        p.close()
    d.kill()


if __name__ == "__main__":
    sys.exit(dl.main())
