"""What the daemon's integration tests share: one mmud started as
systemd would start it, QMP and console clients, the test registry and
the runner every tests/integration/test_*.py file's main() calls.

A test file registers its tests with @test(GROUP) and ends with
sys.exit(daemonlib.main()); it is run as
    test_FEATURE.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
(meson names each run daemon-GROUP)."""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import qmpclient

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
        # meson test --setup dirtyring: every daemon on the dirty ring
        # (docs/MMU.md, "The dirty ring"), unless the test chose a size.
        ring = os.environ.get("MMUD_TEST_DIRTY_RING")
        if ring and "--dirty-ring" not in args:
            args += ["--dirty-ring", ring]
        # meson test --setup mmuoptions: the MMU's switches off their
        # defaults (docs/MMU.md, "Switches"), unless the test set some.
        if "--mmu-option" not in args:
            for o in os.environ.get("MMUD_TEST_MMU_OPTIONS", "").split():
                args += ["--mmu-option", o]
        # meson test --setup jit / jitverify (docs/JIT.md), unless the
        # test chose an engine.
        engine = os.environ.get("MMUD_TEST_CPU")
        if engine and "--cpu" not in args:
            args += ["--cpu", engine]
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


def client_then_cont(d):
    """For a daemon started --paused: a negotiated client, then cont, so
    that no event the guest causes early can come before the client
    listens (events go only to negotiated clients)."""
    c = d.client()
    assert c.cmd("cont") == {"return": {}}
    c.event("RESUME")
    return c


def daemon_short_of_descriptors(tmp, **kw):
    """A Daemon(tmp, **kw) whose descriptor limit leaves it four more
    than it uses once up (measured on a first daemon), and that limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    d = Daemon(tmp, **kw)
    used = len(os.listdir("/proc/%d/fd" % d.proc.pid))
    d.kill()
    limit = used + 4
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        return Daemon(tmp, **kw), limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def fds_of(d):
    """How many descriptors the daemon has open."""
    return len(os.listdir("/proc/%d/fd" % d.proc.pid))


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
