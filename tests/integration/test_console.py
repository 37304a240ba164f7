#!/usr/bin/env python3
"""The console of the real mmud: socket streaming and replay, input,
QEMU's ringbuf commands and query-chardev, a console file.

Usage: test_console.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
GROUP: console (meson: daemon-GROUP). Shared parts: tests/lib/daemonlib.py.
"""
import base64
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import (  # noqa: E402
    TIMEOUT, Daemon, assert_alive, test, read_console_until)


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
    assert dl.ECHO, "test_console.py needs ECHO_ELF for the console group"
    d = Daemon(tmp, smp=1, kernel=dl.ECHO)
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
    assert dl.ECHO, "test_console.py needs ECHO_ELF for the console group"
    d = Daemon(tmp, smp=1, kernel=dl.ECHO, console=False)
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


@test("console")
def test_console_file_write_failure_is_logged_once(tmp):
    # A console file on a full disk (a 16 KiB tmpfs): the failed write is
    # logged once, with its reason, when it happens; the VM runs on and
    # answers; at the end the bytes lost are counted. Needs root for the
    # mount; said and skipped otherwise.
    disk = os.path.join(tmp, "disk")
    os.mkdir(disk)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs",
                        disk], capture_output=True, text=True)
    if m.returncode != 0:
        print("skip test_console_file_write_failure_is_logged_once: "
              "cannot mount a tmpfs: " + m.stderr.strip())
        return
    try:
        full_disk_run(tmp, os.path.join(disk, "console.txt"))
    finally:
        dl.kill_live()
        subprocess.run(["umount", disk])


def full_disk_run(tmp, out):
    notify = dl.Notify(os.path.join(tmp, "notify.sock"))
    qmp = os.path.join(tmp, "qmp.sock")
    log = open(os.path.join(tmp, "stderr.txt"), "w+")
    proc = dl.popen([dl.MMUD, "--kernel", dl.FOREVER, "--smp", "2",
                     "--qmp", qmp, "--console", out, "--append", "spam"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=log,
                    env=dict(os.environ, NOTIFY_SOCKET=notify.path))
    notify.wait("READY=1")
    deadline = time.monotonic() + TIMEOUT
    while True:
        log.seek(0)
        text = log.read()
        if "writing to" in text:
            break
        assert proc.poll() is None, ("mmud died", proc.returncode, text)
        assert time.monotonic() < deadline, ("no failure logged", text)
        time.sleep(0.05)
    c = dl.Client(qmp)
    assert c.cmd("query-status")["return"]["status"] == "running"
    time.sleep(0.3)  # more output after the failure: not logged again
    assert c.cmd("quit") == {"return": {}}
    text = exits(proc, 0, log)
    failed = [ln for ln in text.splitlines() if "writing to" in ln]
    assert len(failed) == 1, text
    assert "file:" + out in failed[0], failed
    assert "No space left on device" in failed[0], failed
    assert re.search(r"\d+ bytes of guest output were dropped: file:.* "
                     r"had failed", text), text
    notify.close()


@test("console")
def test_seventeenth_reader_replaces_the_oldest(tmp):
    # 16 readers that never leave used to lock the 17th out (EOF at
    # once). Now the newest gets the stream and the oldest is closed, and
    # the daemon says so once.
    d = Daemon(tmp)
    readers = []
    for _ in range(16):
        s, _ = read_console_until(d.con, "forever: up")
        readers.append(s)
    s17, text = read_console_until(d.con, "forever: up")
    assert "forever: up" in text
    oldest = readers[0]
    oldest.settimeout(TIMEOUT)
    while True:
        chunk = oldest.recv(65536)
        if not chunk:
            break  # closed: EOF
    for r in readers[1:]:
        r.setblocking(False)
        try:
            assert r.recv(1) != b"", "a newer reader was closed"
        except BlockingIOError:
            pass
    assert d.log().count("closing the oldest to let a new one in") == 1, \
        d.log()
    assert_alive(d)
    d.kill()


@test("console")
def test_console_socket_out_of_descriptors_backs_off(tmp):
    # Under a low descriptor limit, accept() failing with EMFILE on the
    # console socket must not flood the log: one line when it starts,
    # one when it recovers; the waiting readers are served after.
    d, limit = dl.daemon_short_of_descriptors(tmp)
    extra = []
    while dl.fds_of(d) < limit:
        s, _ = read_console_until(d.con, "forever: up")
        extra.append(s)
    waiting = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
               for _ in range(3)]
    for w in waiting:
        w.connect(d.con)
    time.sleep(2)
    log = d.log()
    assert log.count("cannot accept a client: Too many open files") == 1, \
        log[-2000:]
    assert log.count("\n") < 20, log[-2000:]
    for e in extra:
        e.close()
    for w in waiting:
        w.settimeout(TIMEOUT)
        assert w.recv(4096), "a waiting reader got nothing"
        w.close()
    assert "accepting clients again" in d.log(), d.log()[-2000:]
    d.kill()


def start_with_stdout(tmp, stdout, *extra, stderr=None):
    """mmud (forever, spam, 2 vCPUs, QMP) with the console on stdout, fd
    stdout; READY awaited. stderr: an fd, or the daemon's log file."""
    notify = dl.Notify(os.path.join(tmp, "notify.sock"))
    qmp = os.path.join(tmp, "qmp.sock")
    log = open(os.path.join(tmp, "stderr.txt"), "w+")
    proc = dl.popen([dl.MMUD, "--kernel", dl.FOREVER, "--smp", "2",
                     "--qmp", qmp, "--append", "spam"] + list(extra),
                    stdin=subprocess.DEVNULL, stdout=stdout,
                    stderr=log if stderr is None else stderr,
                    env=dict(os.environ, NOTIFY_SOCKET=notify.path))
    notify.wait("READY=1")
    return proc, notify, qmp, log


def exits(proc, want, log):
    try:
        status = proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("mmud hangs at the end with a console "
                             "nobody reads")
    log.seek(0)
    text = log.read()
    assert status == want, (status, text)
    return text


@test("console")
def test_stdout_nobody_reads_blocks_neither_vcpus_nor_qmp(tmp):
    # stdout is a pipe that is never read: it fills at once (64 KiB) and
    # the guest prints on. Output is dropped, never waited for: stop
    # replies and really stops both vCPUs, commands queued behind it
    # answer, cont runs them again, and quit and SIGTERM end mmud.
    r, w = os.pipe()
    try:
        proc, notify, qmp, log = start_with_stdout(tmp, w)
        c = dl.Client(qmp)
        deadline = time.monotonic() + TIMEOUT
        while True:  # until the guest has printed well past the pipe
            cpus = c.cmd("query-cpus-fast")["return"]
            if min(v["instructions"] for v in cpus) > 5000000:
                break
            assert time.monotonic() < deadline, cpus
        c.send({"execute": "stop", "id": "s"})
        c.send({"execute": "query-status", "id": "q"})
        assert c.reply() == {"return": {}, "id": "s"}
        assert c.reply()["return"]["status"] == "paused"
        n1 = [v["instructions"] for v in c.cmd("query-cpus-fast")["return"]]
        n2 = [v["instructions"] for v in c.cmd("query-cpus-fast")["return"]]
        assert n1 == n2, ("paused vCPUs ran on", n1, n2)
        assert c.cmd("cont") == {"return": {}}
        n3 = [v["instructions"] for v in c.cmd("query-cpus-fast")["return"]]
        while True:
            n4 = [v["instructions"] for v in
                  c.cmd("query-cpus-fast")["return"]]
            if all(b > a for a, b in zip(n3, n4)):
                break
            assert time.monotonic() < deadline, ("not every vCPU runs",
                                                 n3, n4)
        c.send({"execute": "quit"})
        text = exits(proc, 0, log)
        assert re.search(r"<4>mmud: console: \d+ bytes of guest output "
                         r"were dropped", text), text
        notify.close()
        log.close()
        # SIGTERM likewise.
        proc, notify, qmp, log = start_with_stdout(tmp, w)
        dl.Client(qmp)  # serving
        proc.send_signal(signal.SIGTERM)
        exits(proc, 0, log)
        notify.close()
        log.close()
    finally:
        os.close(r)
        os.close(w)


@test("console")
def test_console_file_refuses_links_fifos_and_devices(tmp):
    victim = os.path.join(tmp, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    link = os.path.join(tmp, "console.log")
    os.symlink(victim, link)
    hard = os.path.join(tmp, "hard.log")
    os.link(victim, hard)
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)
    for path, why in [(link, "a symbolic link"),
                      (hard, "a file with other hard links"),
                      (fifo, "not a regular file"),
                      ("/dev/null", "not a regular file"),
                      (tmp, "Is a directory")]:
        # A FIFO nobody reads is refused at once, not waited on.
        p = subprocess.run([dl.MMUD, "--kernel", dl.FOREVER, "--console",
                            path], capture_output=True, text=True,
                           timeout=TIMEOUT)
        want = "<3>mmud: --console %s: %s" % (path, why)
        assert p.returncode == 4 and want in p.stderr, (path, p.stderr)
    assert open(victim).read() == "precious\n"
    # A new file is created 0600; an existing one is truncated.
    new = os.path.join(tmp, "new.log")
    d = Daemon(tmp, "--console", new, append="exit=0", console=False)
    assert d.wait() == 1, d.log()
    d.kill()
    assert os.stat(new).st_mode & 0o777 == 0o600, oct(os.stat(new).st_mode)
    assert open(new).read().startswith("forever: up")
    with open(new, "w") as f:
        f.write("x" * 100000)
    d = Daemon(tmp, "--console", new, append="exit=0", console=False)
    assert d.wait() == 1, d.log()
    d.kill()
    assert open(new).read().startswith("forever: up"), "not truncated"


@test("console")
def test_logs_fall_between_console_lines_on_one_terminal(tmp):
    # stdout and stderr the same terminal, the guest printing lines as
    # fast as it can: every log line mmud writes (booted; the signal;
    # the exit) starts a line of its own, never inside the guest's.
    for _ in range(3):
        master, slave = pty.openpty()
        proc, notify, qmp, log = start_with_stdout(tmp, slave, stderr=slave)
        os.close(slave)
        out = b""
        start = time.monotonic()
        deadline = start + TIMEOUT
        signalled = False
        while True:
            assert time.monotonic() < deadline, out[-300:]
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer has gone
                    break
                if not chunk:
                    break
                out += chunk
            # Well after the first log line's wait for a line end.
            if not signalled and len(out) > 100000 and \
                    time.monotonic() > start + 1:
                proc.send_signal(signal.SIGTERM)
                signalled = True
        os.close(master)
        assert proc.wait(TIMEOUT) == 0
        notify.close()
        log.close()
        text = out.decode(errors="replace")
        logs = [m.start() for m in re.finditer(r"<\d>mmud: ", text)]
        assert len(logs) >= 2, text[-500:]
        for at in logs:
            assert at == 0 or text[at - 1] == "\n", \
                ("a log line inside the guest's", text[at - 80:at + 60])
        assert "<6>mmud: signal received, shutting down\r\n" in text, \
            text[-500:]
        # And the guest's lines stay whole: they complete at once here,
        # so no log line had to break one (only the last may be cut,
        # where the vCPUs stopped), unless the terminal fell behind and
        # output was dropped (then lines run together; logged).
        if "bytes of guest output were dropped" in text:
            continue
        lines = [ln for ln in text.split("\r\n")
                 if ln and not re.match(r"<\d>mmud: ", ln)]
        guest = re.compile(r"forever: up, 2 vcpus, fresh$|tick \d{8} \.{56}$")
        for ln in lines[:-1]:
            assert guest.match(ln), ("a guest line broken", ln, text[-300:])


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


if __name__ == "__main__":
    sys.exit(dl.main())
