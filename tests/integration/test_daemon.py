#!/usr/bin/env python3
"""The real mmud, real guests, real sockets (meson suite 'daemon').

Each daemon is started with $NOTIFY_SOCKET pointing at a datagram socket
this script owns, and the test waits for READY=1 there before it talks
QMP, so the notify protocol is checked on every start. Every wait is a
read with a timeout (QMP socket, console socket, notify socket, process
exit), never a sleep.

Usage: test_daemon.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
GROUP: protocol, runstate, guest-end, console, cpus, mmuctl, config,
notify, or all.
"""
import base64
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import qmpclient  # noqa: E402

TIMEOUT = 60 if os.environ.get("MMUD_SLOW") else 20
MMUD = MMUCTL = FOREVER = ECHO = None


class Notify:
    """The datagram socket systemd would own for $NOTIFY_SOCKET.

    A thread reads it all the time, as systemd does: the queue of an
    unread datagram socket holds about ten messages and mmud drops what
    does not fit (it never blocks on systemd), so a test that reads only
    when it waits would lose watchdog pings and STATUS lines whenever it
    is slow (sanitizer builds on a loaded machine)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.seen = []  # every datagram not yet taken by wait(), in order
        self.cond = threading.Condition()
        self.reading = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            with self.cond:
                if not self.reading:
                    return
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.cond:
                self.seen.append(msg)
                self.cond.notify_all()

    def wait(self, needle):
        """The first datagram not yet taken that holds the line needle
        (waiting up to TIMEOUT for it); takes it."""
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while True:
                for msg in self.seen:
                    if needle in msg.split("\n"):
                        self.seen.remove(msg)
                        return msg
                left = deadline - time.monotonic()
                assert left > 0 and self.reading, \
                    "notify: no %r within %d s; got %r" % (
                        needle, TIMEOUT, self.seen[-5:])
                self.cond.wait(left)

    def stop_reading(self):
        """From now on nobody reads the socket (its queue fills)."""
        with self.cond:
            self.reading = False
        self.thread.join()

    def close(self):
        if self.reading:
            self.stop_reading()
        self.sock.close()
        os.unlink(self.path)


class Client(qmpclient.Client):
    """A negotiated client that keeps the events arriving between replies
    (their shape checked) for event() to return in order."""

    def __init__(self, path, negotiate=True):
        self.events = []
        super().__init__(path, negotiate, TIMEOUT)

    def reply(self):
        """The next message that is not an event (events are kept)."""
        while True:
            m = self.recv()
            if "event" in m:
                check_event_shape(m)
                self.events.append(m)
                continue
            return m

    def event(self, name):
        """Takes the first event name not yet taken, waiting for it;
        returns it and the events that came before it. Those stay to be
        taken too: the daemon does not order an event the guest causes
        after the reply or event of a command racing with it (a guest
        that crashes right after cont can have GUEST_PANICKED queued
        before cont's RESUME)."""
        while True:
            for i, m in enumerate(self.events):
                if m["event"] == name:
                    before = self.events[:i]
                    del self.events[i]
                    return m, before
            m = self.recv()
            assert "event" in m, ("expected an event", m)
            check_event_shape(m)
            self.events.append(m)


def check_event_shape(m):
    ts = m["timestamp"]
    assert set(ts) == {"seconds", "microseconds"}, m
    assert abs(ts["seconds"] - time.time()) < 3600, m
    assert 0 <= ts["microseconds"] < 1000000, m
    assert set(m) <= {"event", "data", "timestamp"}, m


def error(resp, cls, desc=None):
    assert "error" in resp, resp
    assert resp["error"]["class"] == cls, resp
    if desc is not None:
        assert resp["error"]["desc"] == desc, resp


class Daemon:
    """One mmud; waits for READY=1 before returning."""

    def __init__(self, tmp, *extra, smp=2, append=None, kernel=None,
                 qmp=True, console=True, env=None, ready=True):
        self.tmp = tmp
        self.qmp = os.path.join(tmp, "qmp.sock")
        self.con = os.path.join(tmp, "console.sock")
        self.notify = Notify(os.path.join(tmp, "notify.sock"))
        args = [MMUD, "--kernel", kernel or FOREVER, "--smp", str(smp)]
        if qmp:
            args += ["--qmp", self.qmp]
        if console:
            args += ["--console", "socket:" + self.con]
        if append:
            args += ["--append", append]
        args += list(extra)
        e = dict(os.environ, NOTIFY_SOCKET=self.notify.path)
        e.update(env or {})
        self.stderr = open(os.path.join(tmp, "stderr.txt"), "w+")
        self.proc = popen(args, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=self.stderr,
                          env=e)
        if ready:
            self.ready = self.notify.wait("READY=1")

    def client(self, negotiate=True):
        return Client(self.qmp, negotiate)

    def wait(self):
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("mmud did not exit: " + self.log())

    def log(self):
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        self.stderr.close()

    def sockets_gone(self):
        assert not os.path.exists(self.qmp), "QMP socket left behind"
        assert not os.path.exists(self.con), "console socket left behind"


def read_console_until(path, needle, sock=None):
    """Connects (unless given a socket) and reads until needle appears.

    needle is a string, or a compiled regex over the decoded text (to wait
    for one of several complete lines, say a verdict "PASS\n" or "FAIL\n").
    """
    s = sock
    if s is None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(path)
    data = b""

    def found():
        if isinstance(needle, str):
            return needle.encode() in data
        return needle.search(data.decode(errors="replace")) is not None

    while not found():
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            raise TimeoutError("console: no %r within %d s; the last of "
                               "it: %r" % (needle, TIMEOUT, data[-300:]))
        if not chunk:
            raise EOFError("console closed before %r; got %r" %
                           (needle, data[-200:]))
        data += chunk
    return s, data.decode(errors="replace")


TESTS = {}


def test(group):
    def reg(fn):
        TESTS.setdefault(group, []).append(fn)
        return fn
    return reg


def assert_alive(d):
    c = d.client()
    r = c.cmd("query-status", id="alive")
    assert r["id"] == "alive" and "return" in r, r
    c.close()


# ---- protocol ------------------------------------------------------------

@test("protocol")
def test_greeting_and_negotiation(tmp):
    d = Daemon(tmp)
    for path in (d.qmp, d.con):
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode), path
        assert stat.S_IMODE(st.st_mode) == 0o600, (path, oct(st.st_mode))
    c = d.client(negotiate=False)
    g = c.greeting
    assert list(g) == ["QMP"], g
    assert g["QMP"]["capabilities"] == []
    assert g["QMP"]["version"]["qemu"] == \
        {"micro": 0, "minor": 1, "major": 0}
    assert g["QMP"]["version"]["package"].startswith("mmud ")
    error(c.cmd("query-status", id=7), "CommandNotFound",
          "Expecting capabilities negotiation with 'qmp_capabilities'")
    # Wrong types and unknown arguments are refused, changing nothing.
    error(c.cmd("qmp_capabilities", {"enable": "oob"}), "GenericError",
          "Invalid parameter type for 'enable', expected: array")
    error(c.cmd("qmp_capabilities", {"enable": [], "x": 1}),
          "GenericError", "Parameter 'x' is unexpected")
    error(c.cmd("query-status"), "CommandNotFound")
    assert c.cmd("qmp_capabilities", id="n") == {"return": {}, "id": "n"}
    error(c.cmd("qmp_capabilities"), "CommandNotFound",
          "Capabilities negotiation is already complete, command ignored")
    r = c.cmd("query-version")
    assert r["return"] == g["QMP"]["version"], r
    names = {x["name"] for x in c.cmd("query-commands")["return"]}
    for n in ["qmp_capabilities", "query-version", "query-commands",
              "query-name", "query-status", "stop", "cont", "quit",
              "system_reset", "query-cpus-fast", "x-query-memslots",
              "x-query-mmu-stats", "x-mmu-audit", "query-target",
              "query-kvm", "query-memory-size-summary"]:
        assert n in names, (n, names)
    assert c.cmd("query-name") == {"return": {}}
    # What the machine is, as QEMU says it: software vCPUs, no KVM, the
    # default 256 MiB of boot RAM and nothing plugged in.
    assert c.cmd("query-target") == {"return": {"arch": "x86_64"}}
    assert c.cmd("query-kvm") == {"return": {"enabled": False,
                                             "present": False}}
    assert c.cmd("query-memory-size-summary") == {
        "return": {"base-memory": 256 << 20, "plugged-memory": 0}}
    error(c.cmd("query-kvm", {"x": 1}), "GenericError",
          "Parameter 'x' is unexpected")
    c.close()
    d.kill()


@test("protocol")
def test_id_echo_and_bad_input(tmp):
    d = Daemon(tmp)
    c = d.client()
    for ident in ["libvirt-7", 42, 1.5, {"a": [1, None]}, [1, "x"], None,
                  True, ""]:
        r = c.cmd("query-status", id=ident)
        assert r["id"] == ident and r["return"]["status"] == "running", r
        r = c.cmd("nope", id=ident)
        assert r["id"] == ident, r
        error(r, "CommandNotFound", "The command nope has not been found")
    # Malformed JSON: an error without id, and the connection stays.
    c.send_raw(b'{ "execute": }')
    r = c.reply()
    assert r["error"]["desc"].startswith("JSON parse error, ") and \
        "id" not in r, r
    error(c.cmd("query-status", {"verbose": True}, id=3), "GenericError",
          "Parameter 'verbose' is unexpected")
    c.send_raw(b'{"execute": 5}')
    error(c.reply(), "GenericError",
          "QMP input member 'execute' must be a string")
    c.send_raw(b'{"execute": "stop", "arguments": [1]}')
    error(c.reply(), "GenericError",
          "QMP input member 'arguments' must be an object")
    c.send_raw(b'[1, 2]')
    error(c.reply(), "GenericError", "QMP input must be a JSON object")
    # Refused input changed nothing: still running, no event came.
    r = c.cmd("query-status")
    assert r["return"] == {"running": True, "status": "running"}, r
    assert not c.events, c.events
    c.close()
    assert_alive(d)
    d.kill()


@test("protocol")
def test_oversized_and_deep_input_close_only_that_client(tmp):
    d = Daemon(tmp)
    other = d.client()
    c = d.client()
    big = b'{"execute": "query-status", "id": "' + b"x" * (1 << 20) + \
        b'"}'
    try:
        c.send_raw(big)
    except (BrokenPipeError, ConnectionResetError):
        pass
    msgs = c.expect_closed()
    for m in msgs:
        error(m, "GenericError", "JSON message size limit exceeded")
    c = d.client()
    try:
        c.send_raw(b"[" * 5000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    msgs = c.expect_closed()
    assert msgs, "no error before close"
    error(msgs[0], "GenericError", "JSON nesting depth limit exceeded")
    assert other.cmd("query-status", id=1)["id"] == 1
    other.close()
    assert_alive(d)
    d.kill()


@test("protocol")
def test_many_clients_while_vcpus_run(tmp):
    d = Daemon(tmp)
    clients = [d.client() for _ in range(24)]
    for rnd in range(5):
        for i, c in enumerate(clients):
            c.send({"execute": "query-status", "id": [i, rnd]})
            c.send({"execute": "query-cpus-fast", "id": [i, rnd, 1]})
        for i, c in enumerate(clients):
            assert c.reply()["id"] == [i, rnd]
            r = c.reply()
            assert r["id"] == [i, rnd, 1] and len(r["return"]) == 2, r
    # Replies keep request order behind commands that finish on the
    # worker, even when one write carries them all.
    c = clients[2]
    batch = [("x-mmu-audit", 1), ("query-status", 2), ("stop", 3),
             ("query-status", 4), ("x-query-mmu-stats", 5), ("cont", 6),
             ("query-status", 7)]
    c.send_raw(b"".join(json.dumps({"execute": e, "id": i}).encode()
                        for e, i in batch))
    replies = [c.reply() for _ in batch]
    assert [r["id"] for r in replies] == [i for _, i in batch], replies
    assert replies[1]["return"]["status"] == "running", replies
    assert replies[3]["return"]["status"] == "paused", replies
    assert replies[6]["return"]["status"] == "running", replies
    for cl in clients:
        cl.event("STOP")
        cl.event("RESUME")
    # An event reaches every negotiated client, once.
    r = clients[0].cmd("stop")
    assert r == {"return": {}}, r
    for c in clients:
        c.event("STOP")
    assert clients[1].cmd("cont") == {"return": {}}
    for c in clients:
        c.event("RESUME")
    for c in clients:
        c.close()
    assert_alive(d)
    d.kill()


# ---- run states and events ----------------------------------------------

@test("runstate")
def test_stop_cont_reset_quit_sequences(tmp):
    d = Daemon(tmp)
    c = d.client()
    watcher = d.client()
    quiet = d.client(negotiate=False)
    assert c.cmd("stop", id=1) == {"return": {}, "id": 1}
    ev, before = c.event("STOP")
    assert "data" not in ev and not before, (ev, before)
    watcher.event("STOP")
    assert c.cmd("query-status")["return"] == \
        {"running": False, "status": "paused"}
    # stop again: succeeds, no event (the next message is the reply).
    assert c.cmd("stop") == {"return": {}}
    assert c.cmd("query-status")["return"]["status"] == "paused"
    assert not c.events
    # Paused vCPUs do not run: their instruction counts stand still.
    n1 = [v["instructions"] for v in c.cmd("query-cpus-fast")["return"]]
    assert all(v["state"] == "paused"
               for v in c.cmd("query-cpus-fast")["return"])
    assert c.cmd("x-mmu-audit") == {"return": {}}
    n2 = [v["instructions"] for v in c.cmd("query-cpus-fast")["return"]]
    assert n1 == n2, (n1, n2)
    assert c.cmd("cont") == {"return": {}}
    c.event("RESUME")
    assert c.cmd("cont") == {"return": {}}
    assert c.cmd("query-status")["return"] == \
        {"running": True, "status": "running"}
    # Reset while running: RESET, still running.
    assert c.cmd("system_reset") == {"return": {}}
    ev, before = c.event("RESET")
    assert ev["data"] == {"guest": False,
                          "reason": "host-qmp-system-reset"}, ev
    assert not before, before
    assert c.cmd("query-status")["return"]["status"] == "running"
    # Reset while paused: ends in prelaunch, cont starts it.
    c.cmd("stop")
    c.event("STOP")
    c.cmd("system_reset")
    c.event("RESET")
    assert c.cmd("query-status")["return"] == \
        {"running": False, "status": "prelaunch"}
    assert c.cmd("cont") == {"return": {}}
    c.event("RESUME")
    assert c.cmd("x-mmu-audit") == {"return": {}}
    # quit: the reply, SHUTDOWN, EOF, status 0, sockets gone.
    c.send({"execute": "quit", "id": "q"})
    msgs = c.expect_closed()
    assert msgs[0] == {"return": {}, "id": "q"}, msgs
    assert [m["event"] for m in msgs[1:]] == ["SHUTDOWN"], msgs
    assert msgs[1]["data"] == {"guest": False, "reason": "host-qmp-quit"}
    w = watcher.expect_closed()
    assert [m["event"] for m in w] == ["RESUME", "RESET", "STOP",
                                       "RESET", "RESUME", "SHUTDOWN"], w
    assert quiet.expect_closed() == []
    assert d.wait() == 0, d.log()
    d.notify.wait("STOPPING=1")
    d.sockets_gone()
    d.kill()


@test("runstate")
def test_control_plane_storm_while_vcpus_run(tmp):
    # Several clients pipeline stop, cont, reset, audits and queries in
    # a fixed pseudo-random mix while the vCPUs run; every reply comes,
    # in order, every audit is clean, and the guest runs on afterwards.
    d = Daemon(tmp, smp=3)
    clients = [d.client() for _ in range(4)]
    mix = ["stop", "cont", "system_reset", "x-mmu-audit", "query-cpus-fast",
           "x-query-mmu-stats", "query-status", "x-mmu-audit", "cont"]
    seed = 12345
    sent = []
    for c in clients:
        cmds = []
        for i in range(40):
            seed = (seed * 1103515245 + 12345) & 0x7fffffff
            cmds.append(mix[seed % len(mix)])
        c.send_raw(b"".join(json.dumps({"execute": e, "id": i}).encode()
                            for i, e in enumerate(cmds)))
        sent.append(cmds)
    for c, cmds in zip(clients, sent):
        for i, e in enumerate(cmds):
            r = c.reply()
            assert r["id"] == i, (i, e, r)
            if e == "cont" and "error" in r:
                continue
            assert "return" in r, (e, r)
    c = clients[0]
    assert c.cmd("cont") == {"return": {}}
    assert c.cmd("x-mmu-audit") == {"return": {}}
    assert c.cmd("query-status")["return"]["status"] == "running"
    # New output after the replay: the guest runs.
    s, _ = read_console_until(d.con, "forever: up")
    read_console_until(d.con, "tick", sock=s)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("runstate")
def test_sigterm_and_sigint_shut_down_cleanly(tmp):
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = Daemon(tmp)
        c = d.client()
        d.proc.send_signal(sig)
        msgs = c.expect_closed()
        assert [m.get("event") for m in msgs] == ["SHUTDOWN"], msgs
        assert msgs[0]["data"] == {"guest": False, "reason": "host-signal"}
        assert d.wait() == 0, d.log()
        d.sockets_gone()
        d.kill()


@test("runstate")
def test_paused_start_waits_for_cont(tmp):
    d = Daemon(tmp, "--paused")
    assert "STATUS=VM prelaunch" in d.ready.split("\n"), d.ready
    c = d.client()
    assert c.cmd("query-status")["return"] == \
        {"running": False, "status": "prelaunch"}
    cpus = c.cmd("query-cpus-fast")["return"]
    assert [v["instructions"] for v in cpus] == [0, 0], cpus
    con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    con.connect(d.con)
    # stop in prelaunch: nothing changes, no event.
    assert c.cmd("stop") == {"return": {}}
    assert c.cmd("query-status")["return"]["status"] == "prelaunch"
    assert c.cmd("cont") == {"return": {}}
    c.event("RESUME")
    d.notify.wait("STATUS=VM running")
    con.settimeout(TIMEOUT)
    _, text = read_console_until(d.con, "fresh\n", sock=con)
    assert text.startswith("forever: up, 2 vcpus, fresh\n"), text
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


# ---- how the guest ends --------------------------------------------------

def client_then_cont(d):
    """For a daemon started --paused: a negotiated client, then cont, so
    that no event the guest causes early can come before the client
    listens (events go only to negotiated clients)."""
    c = d.client()
    assert c.cmd("cont") == {"return": {}}
    c.event("RESUME")
    return c


@test("guest-end")
def test_guest_exit_ends_mmud_with_its_status(tmp):
    d = Daemon(tmp, "--paused", append="exit=5")
    c = client_then_cont(d)
    ev, _ = c.event("SHUTDOWN")
    assert ev["data"] == {"guest": True, "reason": "guest-shutdown"}, ev
    assert c.expect_closed() == []
    assert d.wait() == 11, d.log()  # ((5 << 1) | 1)
    d.sockets_gone()
    d.kill()


@test("guest-end")
def test_crash_pauses_in_guest_panicked_until_reset(tmp):
    for how in ("crash", "halt"):
        d = Daemon(tmp, "--paused", append=how)
        c = client_then_cont(d)
        ev, _ = c.event("GUEST_PANICKED")
        assert ev["data"] == {"action": "pause"}, ev
        c.event("STOP")
        assert c.cmd("query-status")["return"] == \
            {"running": False, "status": "guest-panicked"}
        error(c.cmd("cont"), "GenericError",
              "Resetting the Virtual Machine is required")
        states = {v["state"] for v in c.cmd("query-cpus-fast")["return"]}
        assert states & {"crashed", "halted"}, states
        assert c.cmd("system_reset") == {"return": {}}
        c.event("RESET")
        assert c.cmd("query-status")["return"]["status"] == "prelaunch"
        con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        con.settimeout(TIMEOUT)
        con.connect(d.con)
        assert c.cmd("cont") == {"return": {}}
        c.event("RESUME")
        # The guest boots again from reloaded memory and crashes again.
        ev, _ = c.event("GUEST_PANICKED")
        text = ""
        while text.count("forever: up") < 2 or "tick 3" not in \
                text[text.rfind("forever: up"):]:
            chunk = con.recv(65536)
            assert chunk, text
            text += chunk.decode()
        assert text.count("forever: up, 2 vcpus, fresh\n") == 2, text
        c.cmd("quit")
        assert d.wait() == 0, d.log()
        assert "guest crashed" in d.log(), d.log()
        d.kill()


@test("guest-end")
def test_crash_with_panic_exit(tmp):
    d = Daemon(tmp, "--panic", "exit", "--paused", append="crash")
    c = client_then_cont(d)
    ev, _ = c.event("GUEST_PANICKED")
    assert ev["data"] == {"action": "poweroff"}, ev
    ev, _ = c.event("SHUTDOWN")
    assert ev["data"] == {"guest": True, "reason": "guest-panic"}, ev
    assert d.wait() == 2, d.log()
    assert "triple fault" in d.log(), d.log()
    d.kill()
    # Without a QMP socket the default is to exit, as before.
    d = Daemon(tmp, qmp=False, append="crash")
    assert d.wait() == 2, d.log()
    d.kill()


# ---- console -------------------------------------------------------------

@test("console")
def test_console_streams_and_replays(tmp):
    d = Daemon(tmp)
    s1, text = read_console_until(d.con, "tick 2\n")
    assert text.startswith("forever: up, 2 vcpus, fresh\ntick 1\ntick 2"), text
    # A later client gets the replay first, then the live stream: it sees
    # ticks printed after it connected.
    s2, text2 = read_console_until(d.con, "tick 3\n")
    assert text2.startswith("forever: up, 2 vcpus, fresh\ntick 1\n"), text2
    _, more = read_console_until(d.con, re.compile(r"tick \d+\n"), sock=s2)
    # Clients that go away do not disturb the others or the daemon.
    s2.close()
    _, more = read_console_until(d.con, re.compile(r"tick \d+\n"), sock=s1)
    c = d.client()
    c.cmd("quit")
    # The daemon closes console clients when it ends.
    s1.settimeout(TIMEOUT)
    while s1.recv(65536):
        pass
    assert d.wait() == 0, d.log()
    d.sockets_gone()
    d.kill()


@test("console")
def test_console_replay_is_the_last_64k(tmp):
    d = Daemon(tmp, append="spam")
    s1, text = read_console_until(d.con, "tick 00002000 ")
    # s1 stops reading; another client waits for 6000 more lines (about
    # 360 KB, more than s1's socket and our 64 KiB buffer for it hold).
    s3, _ = read_console_until(d.con, "tick 00008000 ")
    s3.close()
    c = d.client()
    c.cmd("stop")
    # Paused: nothing more is printed. A new client gets exactly the last
    # 64 KiB; after quit both see EOF, and the replay is the tail of what
    # the first client read.
    s2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s2.settimeout(TIMEOUT)
    s2.connect(d.con)
    replay = b""
    while len(replay) < 65536:
        chunk = s2.recv(65536)
        assert chunk, len(replay)
        replay += chunk
    # The first client has not read since tick 2000: its socket and the
    # daemon's buffer for it are full. At quit the daemon gives each
    # client the rest before it closes it (both are read at once here:
    # the daemon waits a few seconds at most for a client that reads).
    got = {}

    def read_to_eof(name, sock, have):
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            have += chunk
        got[name] = have

    readers = [threading.Thread(target=read_to_eof, args=a)
               for a in (("s1", s1, text.encode()), ("s2", s2, replay))]
    c.cmd("quit")
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    replay, full = got["s2"], got["s1"]
    assert len(replay) == 65536, len(replay)
    assert len(full) > 65536 and full.endswith(replay), \
        (len(full), full[-80:], replay[-80:])
    assert d.wait() == 0, d.log()
    d.kill()


def guest_hash(data):
    """The echo guest's hash: h = h * 31 + byte, 64 bits."""
    h = 0
    for b in data:
        h = (h * 31 + b) & (2**64 - 1)
    return h


@test("console")
def test_console_input_reaches_the_guest_whole_and_in_order(tmp):
    assert ECHO, "test_daemon.py needs ECHO_ELF for the console group"
    d = Daemon(tmp, smp=1, kernel=ECHO)
    s, _ = read_console_until(d.con, "echo: ready\n")
    s.sendall(b"hello, guest\n")
    read_console_until(d.con, "echo: hello, guest\n", sock=s)
    # A paste far larger than COM1's receive queue (4 KiB): the daemon
    # stops reading this client while the guest is behind, so nothing is
    # lost or reordered. (The echoes overflow this client's backlog and
    # are partly dropped: output never waits for a client.)
    data = b"".join(b"line %05d %s\n" % (i, b"x" * 50) for i in range(2000))
    s.sendall(data + b"sum\n")
    want = "echo: %d bytes, hash %x\n" % (
        len(b"hello, guest\n") + len(data),
        guest_hash(b"hello, guest\n" + data))
    _, text = read_console_until(d.con, re.compile(r"bytes, hash \w+\n"),
                                 sock=s)
    assert want in text, (want, text[-200:])
    s.sendall(b"quit\n")
    read_console_until(d.con, "echo: bye\n", sock=s)
    assert d.wait() == 1, d.log()
    d.kill()


def ringbuf_read_until(c, needle):
    """ringbuf-read (utf8) until needle has come; returns all read."""
    got = ""
    deadline = time.monotonic() + TIMEOUT
    while needle not in got:
        args = {"device": "serial0", "size": 4096}
        r = c.cmd("ringbuf-read", args)
        assert "return" in r, r
        got += r["return"]
        assert time.monotonic() < deadline, ("no %r" % needle, got)
    return got


@test("console")
def test_qmp_ringbuf_reads_and_types_into_the_console(tmp):
    assert ECHO, "test_daemon.py needs ECHO_ELF for the console group"
    d = Daemon(tmp, smp=1, kernel=ECHO, console=False)
    c = d.client()
    ringbuf_read_until(c, "echo: ready\n")
    # Each read takes what it returns: nothing is left now.
    assert c.cmd("ringbuf-read", {"device": "serial0", "size": 100}) == \
        {"return": ""}
    # utf8 both ways, non-ASCII included.
    assert c.cmd("ringbuf-write", {"device": "serial0",
                                   "data": "h\u00e9llo\n"}) == {"return": {}}
    assert ringbuf_read_until(c, "\n") == "echo: h\u00e9llo\n"
    # A read whose size ends inside a character leaves it whole for the
    # next: "echo: h" is 7 bytes, "\u00e9" the 8th and 9th.
    c.cmd("ringbuf-write", {"device": "serial0", "data": "h\u00e9\n"})
    got = ""
    deadline = time.monotonic() + TIMEOUT
    while len(got) < len("echo: h"):
        r = c.cmd("ringbuf-read", {"device": "serial0",
                                   "size": 8 - len(got.encode())})
        got += r["return"]
        assert time.monotonic() < deadline, got
    assert got == "echo: h", got
    assert ringbuf_read_until(c, "\n") == "\u00e9\n"
    # A size that can never hold it gets U+FFFD for what it cuts.
    c.cmd("ringbuf-write", {"device": "serial0", "data": "\u00e9\n"})
    got = ""
    while "\ufffd" not in got:
        r = c.cmd("ringbuf-read", {"device": "serial0", "size": 1})
        got += r["return"]
        assert time.monotonic() < deadline, got
    assert got == "echo: \ufffd", got
    assert ringbuf_read_until(c, "\n") == "\ufffd\n"
    # base64 in: bytes that are not UTF-8 come back as U+FFFD in utf8,
    # and exactly in base64.
    b = base64.b64encode(b"\xff\xfe\n").decode()
    ok = c.cmd("ringbuf-write", {"device": "serial0", "data": b,
                                 "format": "base64"})
    assert ok == {"return": {}}, ok
    assert ringbuf_read_until(c, "\n") == "echo: \ufffd\ufffd\n"
    c.cmd("ringbuf-write", {"device": "serial0", "data": "Zg==\n",
                            "format": "utf8"})
    deadline = time.monotonic() + TIMEOUT
    raw = b""
    while not raw.endswith(b"\n"):
        r = c.cmd("ringbuf-read", {"device": "serial0", "size": 3,
                                   "format": "base64"})
        raw += base64.b64decode(r["return"])
        assert time.monotonic() < deadline, raw
    assert raw == b"echo: Zg==\n", raw
    # Final quanta with one, two and no padding characters.
    for data in ["Zgo=", "Zm8K", "Zm9vCg=="]:
        r = c.cmd("ringbuf-write", {"device": "serial0", "data": data,
                                    "format": "base64"})
        assert r == {"return": {}}, (data, r)
    got = ringbuf_read_until(c, "echo: foo\n")
    assert got == "echo: f\necho: fo\necho: foo\n", got
    # Bad arguments: an error naming what is wrong, nothing sent.
    bad = [
        ({"device": "serial1", "data": "x"}, "Device 'serial1' not found"),
        ({"device": "serial0", "data": "x", "format": "hex"},
         "Parameter 'format' does not accept value 'hex'"),
    ] + [({"device": "serial0", "data": v, "format": "base64"},
          "Parameter 'data' is not valid base64")
         for v in ["abc", "ab=c", "====", "Zg=", "Z===", "Zg==Zg==", "Z!=="]]
    for args, desc in bad:
        r = c.cmd("ringbuf-write", args)
        assert r == {"error": {"class": "GenericError", "desc": desc}}, \
            (args, r)
    for size in (0, -1):
        r = c.cmd("ringbuf-read", {"device": "serial0", "size": size})
        assert r["error"]["desc"] == \
            "Parameter 'size' must be greater than zero", r
    r = c.cmd("ringbuf-read", {"device": "serial0", "size": "1"})
    assert r["error"]["class"] == "GenericError", r
    c.cmd("ringbuf-write", {"device": "serial0", "data": "quit\n"})
    assert d.wait() == 1, d.log()
    d.kill()


@test("console")
def test_console_to_a_file(tmp):
    out = os.path.join(tmp, "console.txt")
    d = Daemon(tmp, "--console", out, append="exit=0", console=False)
    assert d.wait() == 1, d.log()
    text = open(out).read()
    assert text.startswith("forever: up, 2 vcpus, fresh\ntick 1\n"), text
    assert text.rstrip().endswith("tick 3"), text
    d.kill()


def chardevs(c):
    r = c.cmd("query-chardev")
    assert "return" in r, r
    return {d["label"]: d for d in r["return"]}


@test("console")
def test_query_chardev_names_the_console_as_qemu_would(tmp):
    d = Daemon(tmp)
    c = d.client()
    want_mon = {"label": "compat_monitor0", "frontend-open": True,
                "filename": "unix:%s,server=on" % d.qmp}
    cds = chardevs(c)
    assert set(cds) == {"serial0", "compat_monitor0"}, cds
    assert cds["compat_monitor0"] == want_mon, cds
    assert cds["serial0"]["filename"] == \
        "disconnected:unix:%s,server=on" % d.con, cds
    s, _ = read_console_until(d.con, "forever: up")
    assert chardevs(c)["serial0"]["filename"] == \
        "unix:%s,server=on" % d.con
    s.close()
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()
    for extra, want in [((), "stdio"),
                        (("--console", os.path.join(tmp, "con.txt")),
                         "file:" + os.path.join(tmp, "con.txt"))]:
        d = Daemon(tmp, *extra, console=False)
        c = d.client()
        assert chardevs(c)["serial0"]["filename"] == want, (extra, want)
        c.cmd("quit")
        assert d.wait() == 0, d.log()
        d.kill()


# ---- vCPUs, memslots, MMU ------------------------------------------------

@test("cpus")
def test_query_cpus_fast_threads_are_real(tmp):
    d = Daemon(tmp, smp=3)
    c = d.client()
    cpus = c.cmd("query-cpus-fast")["return"]
    assert [v["cpu-index"] for v in cpus] == [0, 1, 2], cpus
    tasks = set(int(t) for t in os.listdir("/proc/%d/task" % d.proc.pid))
    tids = [v["thread-id"] for v in cpus]
    assert len(set(tids)) == 3 and set(tids) <= tasks, (tids, tasks)
    assert d.proc.pid not in tids
    for v in cpus:
        assert v["target"] == "x86_64" and v["state"] == "running", v
        assert v["qom-path"] == "/machine/cpu[%d]" % v["cpu-index"], v
        assert set(v["exits"]) == {"total", "io", "mmio", "hlt",
                                   "page-fault"}, v
    later = c.cmd("query-cpus-fast")["return"]
    assert later[0]["exits"]["page-fault"] >= cpus[0]["exits"]["page-fault"]
    assert [v["thread-id"] for v in later] == tids
    c.cmd("quit")
    assert d.wait() == 0
    d.kill()


@test("cpus")
def test_memslots_stats_and_live_audit(tmp):
    d = Daemon(tmp, "--memory", "3584M")
    c = d.client()
    slots = c.cmd("x-query-memslots")["return"]
    assert slots == [
        {"slot": 0, "gpa": 0, "size": 3 << 30, "readonly": False,
         "log-dirty": False},
        {"slot": 1, "gpa": 4 << 30, "size": 512 << 20, "readonly": False,
         "log-dirty": False}], slots
    for _ in range(5):
        assert c.cmd("x-mmu-audit") == {"return": {}}
    st = c.cmd("x-query-mmu-stats")["return"]
    assert st["vm"]["shadow_pages"] > 0 and st["vm"]["pf_fixed"] > 0, st
    assert [v["cpu-index"] for v in st["vcpus"]] == [0, 1], st
    assert st["vcpus"][0]["pf_taken"] > 0, st
    # The audit left the guest running.
    assert c.cmd("query-status")["return"]["status"] == "running"
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


# ---- mmuctl --------------------------------------------------------------

def mmuctl(*args, sock=None):
    cmd = [MMUCTL] + (["--socket", sock] if sock else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    return p.returncode, p.stdout, p.stderr


@test("mmuctl")
def test_mmuctl_against_the_daemon(tmp):
    d = Daemon(tmp, "--name", "vm-test")
    s = d.qmp
    rc, out, _ = mmuctl("status", sock=s)
    assert rc == 0 and out == "status: running (running)\n", (rc, out)
    rc, out, _ = mmuctl("--json", "status", sock=s)
    assert rc == 0 and json.loads(out) == \
        {"running": True, "status": "running"}, out
    rc, out, _ = mmuctl("--json", "cpus", sock=s)
    cpus = json.loads(out)
    assert rc == 0 and [v["cpu-index"] for v in cpus] == [0, 1], out
    rc, out, _ = mmuctl("cpus", sock=s)
    assert rc == 0 and out.split()[0] == "cpu-index", out
    rc, out, _ = mmuctl("--json", "memslot", "list", sock=s)
    assert rc == 0 and json.loads(out)[0]["gpa"] == 0, out
    rc, out, _ = mmuctl("memory", sock=s)
    assert (rc, out) == (0, "base-memory: 268435456\nplugged-memory: 0\n"), \
        (rc, out)
    rc, out, _ = mmuctl("audit", sock=s)
    assert (rc, out) == (0, ""), (rc, out)
    rc, out, _ = mmuctl("--json", "stats", sock=s)
    assert rc == 0 and "vm" in json.loads(out), out
    rc, out, _ = mmuctl("--json", "qmp", '{"execute": "query-name"}',
                        sock=s)
    assert rc == 0 and json.loads(out) == {"return": {"name": "vm-test"}}
    rc, out, _ = mmuctl("stop", sock=s)
    assert (rc, out) == (0, ""), (rc, out)
    rc, out, _ = mmuctl("status", sock=s)
    assert out == "status: paused (not running)\n", out
    rc, out, _ = mmuctl("cont", sock=s)
    assert rc == 0
    rc, out, _ = mmuctl("reset", sock=s)
    assert rc == 0
    # Failures: 1 with the class and desc; 2 for usage and no connection.
    rc, out, err = mmuctl("qmp", '{"execute": "nope"}', sock=s)
    assert rc == 1 and "CommandNotFound" in err, (rc, err)
    rc, out, err = mmuctl("--json", "qmp", '{"execute": "stop", '
                          '"arguments": {"x": 1}}', sock=s)
    assert rc == 1 and json.loads(out)["error"]["desc"] == \
        "Parameter 'x' is unexpected", out
    rc, _, _ = mmuctl("frobnicate", sock=s)
    assert rc == 2
    rc, _, _ = mmuctl("memslot", "remove", "slot=x", sock=s)
    assert rc == 2
    rc, _, err = mmuctl("status", sock=os.path.join(tmp, "none.sock"))
    assert rc == 2, err
    for sub in (["status"], ["cpus"], ["memslot", "list"], ["stats"],
                ["audit"], ["console"], ["qmp"]):
        rc, out, _ = mmuctl(*sub, "--help")
        assert rc == 0 and out.startswith("usage: mmuctl"), (sub, out)
    rc, out, _ = mmuctl("quit", sock=s)
    assert rc == 0
    assert d.wait() == 0, d.log()
    d.kill()


@test("mmuctl")
def test_mmuctl_console_and_panicked_cont(tmp):
    d = Daemon(tmp, "--paused", append="crash")
    c = client_then_cont(d)
    c.event("GUEST_PANICKED")
    rc, out, err = mmuctl("cont", sock=d.qmp)
    assert rc == 1 and "GenericError: Resetting the Virtual Machine is " \
        "required" in err, (rc, err)
    rc, out, err = mmuctl("--json", "cont", sock=d.qmp)
    assert rc == 1 and json.loads(out)["error"]["class"] == \
        "GenericError", out
    # mmuctl console prints the replay and ends when the daemon goes.
    p = popen([MMUCTL, "--socket", d.qmp, "console"],
              stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line == "forever: up, 2 vcpus, fresh\n", line
    c.cmd("quit")
    rest = p.stdout.read()
    assert "tick 3" in rest, rest
    assert p.wait(TIMEOUT) == 0
    assert d.wait() == 0
    d.kill()


@test("mmuctl")
def test_mmuctl_console_types_stdin_into_the_guest(tmp):
    assert ECHO, "test_daemon.py needs ECHO_ELF for the mmuctl group"
    d = Daemon(tmp, smp=1, kernel=ECHO)
    p = popen([MMUCTL, "--socket", d.qmp, "console"],
              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    line = p.stdout.readline()
    assert line == b"echo: ready\n", line
    p.stdin.write(b"typed into mmuctl\nquit\n")
    p.stdin.close()
    # The end of stdin is not the end: output goes on until the daemon
    # closes the console (the guest quits, mmud exits).
    rest = p.stdout.read()
    assert b"echo: typed into mmuctl\necho: bye\n" in rest, rest
    assert p.wait(TIMEOUT) == 0
    assert d.wait() == 1, d.log()
    d.kill()


# ---- config --------------------------------------------------------------

def refused(tmp, text, *extra):
    path = os.path.join(tmp, "vm.conf")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([MMUD, "--config", path] + list(extra),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 4, (text, p.returncode, p.stderr)
    return p.stderr.replace(path, "FILE")


@test("config")
def test_config_errors_name_file_and_line(tmp):
    cases = [
        ("smp = 2\nbogus = 1\n", "FILE:2: unknown key 'bogus'"),
        ("# c\n\nmemory = lots\n",
         "FILE:3: memory: 'lots' is not a size (e.g. 512M, 2G)"),
        ("memory = 0G\n",
         "FILE:1: memory: '0G' is not a multiple of 4K from 2M to 1T"),
        ("smp = 0\n", "FILE:1: smp: '0' is not a vCPU count in 1..64"),
        ("smp 2\n", "FILE:1: expected 'key = value', got 'smp 2'"),
        ("smp = 1\nsmp = 2\n", "FILE:2: 'smp' given twice"),
        ("paused = maybe\n",
         "FILE:1: paused: 'maybe' is not a boolean (true/false)"),
        ("panic = reboot\n", "FILE:1: panic: 'reboot' is not pause or exit"),
        ("name = ../x\n", "FILE:1: name: '../x' is not a VM name"),
        ("kernel =\n", "FILE:1: kernel: an empty value"),
        ("smp = 1\n# " + "x" * (1 << 20), "FILE:2: line longer than 4096"),
        ("smp = 1\0\n", "FILE:1: NUL byte"),
    ]
    for text, want in cases:
        err = refused(tmp, text)
        assert want in err and err.startswith("<3>mmud: "), (want, err)
    # A bad value is refused even where a flag overrides the key.
    err = refused(tmp, "smp = x\n", "--smp", "1")
    assert "FILE:1: smp:" in err, err
    p = subprocess.run([MMUD, "--config", os.path.join(tmp, "missing")],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 4 and "missing: No such file" in p.stderr
    # One endless line: refused at its 4097th byte, not read to the end.
    p = subprocess.run([MMUD, "--config", "/dev/zero"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 4 and \
        "/dev/zero:1: line longer than 4096 bytes" in p.stderr, p.stderr
    p = subprocess.run([MMUD, "--config", tmp], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert p.returncode == 4 and "Is a directory" in p.stderr, p.stderr
    for args, want in [(["--smp", "x"], "--smp: 'x' is not a vCPU count"),
                       (["--memory", "1Q"], "--memory: '1Q' is not a size"),
                       (["--memory", "2049K"], "--memory: '2049K' is not "
                        "a multiple of 4K from 2M to 1T"),
                       (["--memory", "2048G"], "--memory: '2048G' is not "
                        "a multiple of 4K from 2M to 1T"),
                       (["--bogus"], "unknown option '--bogus'"),
                       (["--console", "socket:"], "--console: an empty")]:
        p = subprocess.run([MMUD] + args, capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert p.returncode == 4 and want in p.stderr, (args, p.stderr)


@test("config")
def test_config_file_applies_and_flags_win(tmp):
    path = os.path.join(tmp, "vm.conf")
    with open(path, "w") as f:
        f.write("# a VM\nkernel = %s\nsmp = 3\nmemory = 64M\n"
                "paused = yes\nappend = \"  spaced \"\nqmp = %s\n"
                % (FOREVER, os.path.join(tmp, "qmp.sock")))
    d = Daemon(tmp, "--config", path, "--smp", "1", "--kernel", FOREVER,
               qmp=False)
    c = d.client()
    assert len(c.cmd("query-cpus-fast")["return"]) == 1
    assert c.cmd("query-status")["return"]["status"] == "prelaunch"
    assert c.cmd("x-query-memslots")["return"][0]["size"] == 64 << 20
    c.cmd("quit")
    assert d.wait() == 0
    d.kill()


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


# Every process a test starts, killed after it whatever happened, so a
# failing test leaves no guest spinning the host's CPUs under the next.
LIVE = []


def popen(*args, **kw):
    p = subprocess.Popen(*args, **kw)
    LIVE.append(p)
    return p


def kill_live():
    while LIVE:
        p = LIVE.pop()
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    global MMUD, MMUCTL, FOREVER, ECHO
    group, MMUD, MMUCTL, FOREVER = sys.argv[1:5]
    ECHO = sys.argv[5] if len(sys.argv) > 5 else None
    groups = sorted(TESTS) if group == "all" else [group]
    failed = 0
    for g in groups:
        for fn in TESTS[g]:
            with tempfile.TemporaryDirectory(prefix="mmud-test-") as tmp:
                t0 = time.monotonic()
                try:
                    fn(tmp)
                    print("ok   %s (%.1fs)" % (fn.__name__,
                                               time.monotonic() - t0))
                except Exception as e:  # noqa: BLE001
                    import traceback
                    traceback.print_exc()
                    print("FAIL %s: %r" % (fn.__name__, e))
                    failed += 1
                finally:
                    kill_live()
                sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
