#!/usr/bin/env python3
"""mmuctl against the real mmud: every command, the console.

Usage: test_mmuctl.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
GROUP: mmuctl (meson: daemon-GROUP). Shared parts: tests/lib/daemonlib.py.
"""
import base64
import json
import os
import re
import select
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import (  # noqa: E402
    TIMEOUT, client_then_cont, Daemon, test, popen)


# ---- mmuctl --------------------------------------------------------------

def mmuctl(*args, sock=None):
    cmd = [dl.MMUCTL] + (["--socket", sock] if sock else []) + list(args)
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
        {"running": True, "singlestep": False, "status": "running"}, out
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
def test_mmuctl_options_anywhere_version_and_no_internal_id(tmp):
    d = Daemon(tmp, "--paused")
    s = d.qmp
    # Global options after COMMAND, as git takes them.
    rc, out, err = mmuctl("status", "--json", "--socket", s)
    assert rc == 0 and json.loads(out)["status"] == "prelaunch", \
        (rc, out, err)
    rc, out, err = mmuctl("memslot", "list", "-j", "-s", s)
    assert rc == 0 and json.loads(out)[0]["gpa"] == 0, (rc, out, err)
    rc, out, err = mmuctl("status", "--help", sock=s)
    assert rc == 0 and out.startswith("usage: mmuctl [OPTIONS] status"), out
    # A command mmuctl cannot send is a usage error whatever the socket.
    env_sock = os.environ.pop("QMP_SOCKET", None)
    try:
        rc, out, err = mmuctl("frobnicate")
        assert rc == 2 and "unknown command 'frobnicate'" in err, (rc, err)
        rc, out, err = mmuctl("memslot", "remove", "slot=x")
        assert rc == 2 and "'slot' must be integer" in err, (rc, err)
    finally:
        if env_sock is not None:
            os.environ["QMP_SOCKET"] = env_sock
    # Its own version, and mmud's as QEMU's "info version" prints it.
    for flag in ("--version", "-V"):
        rc, out, err = mmuctl(flag)
        assert rc == 0 and re.fullmatch(r"mmuctl \d+\.\d+\.\d+\n", out), \
            (flag, rc, out, err)
    version = out.split()[1]
    rc, out, err = mmuctl("version", sock=s)
    assert (rc, out) == (0, "%s (mmud %s)\n" % (version, version)), \
        (rc, out, err)
    # An error with --json is QMP's error object alone: the id is the one
    # mmuctl picked, nothing the user sent.
    rc, out, err = mmuctl("memslot", "remove", "slot=99", "--json", sock=s)
    assert rc == 1 and list(json.loads(out)) == ["error"], (rc, out)
    rc, out, err = mmuctl("--json", "qmp", '{"execute": "nope", "id": 7}',
                          sock=s)
    assert rc == 1 and json.loads(out)["id"] == 7, out  # the user's own
    c = d.client()
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("mmuctl")
def test_mmuctl_dirty_harvest_prints_a_count_unless_asked(tmp):
    d = Daemon(tmp, "--paused")
    s = d.qmp
    rc, out, err = mmuctl("memslot", "add", "gpa=8G", "size=512M",
                          "log-dirty=true", sock=s)
    assert rc == 0, (rc, out, err)
    slot = re.search(r"^slot: (\d+)$", out, re.M).group(1)
    # 512 MiB is 131072 pages: a 16 KiB bitmap, 22 KB of base64.
    rc, out, err = mmuctl("dirty", "harvest", "slot=" + slot, sock=s)
    assert rc == 0 and re.fullmatch(r"slot: %s\ndirty-pages: \d+\n" % slot,
                                    out), (rc, out[:200], err)
    rc, out, err = mmuctl("--json", "dirty", "harvest", "slot=" + slot,
                          sock=s)
    assert rc == 0 and set(json.loads(out)) == {"slot", "dirty-pages"}, \
        out[:200]
    rc, out, err = mmuctl("dirty", "harvest", "slot=" + slot, "bitmap=true",
                          sock=s)
    bitmap = re.search(r"^bitmap: (\S+)$", out, re.M)
    assert rc == 0 and bitmap and len(bitmap.group(1)) > 20000, out[:200]
    rc, out, err = mmuctl("dirty", "harvest", "slot=" + slot, "bitmap=maybe",
                          sock=s)
    assert rc == 2 and "'bitmap' must be true|false" in err, (rc, err)
    c = d.client()
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("mmuctl")
def test_mmuctl_dirty_harvest_of_a_big_slot_in_parts(tmp):
    # 2 GiB is 524288 pages: more than one reply may carry (QMP.md,
    # x-dirty-log-harvest), which the daemon refuses whole.
    d = Daemon(tmp, "--paused")
    s = d.qmp
    rc, out, err = mmuctl("memslot", "add", "gpa=8G", "size=2G",
                          "log-dirty=true", sock=s)
    assert rc == 0, (rc, out, err)
    slot = int(re.search(r"^slot: (\d+)$", out, re.M).group(1))
    rc, out, err = mmuctl("qmp", json.dumps(
        {"execute": "x-dirty-log-harvest", "arguments": {"slot": slot}}),
        sock=s)
    assert rc == 1 and "pass first-page and num-pages" in err, (rc, err)
    rc, out, err = mmuctl("--json", "dirty", "harvest", "slot=%d" % slot,
                          "bitmap=true", sock=s)
    assert rc == 0, (rc, out[:200], err)
    r = json.loads(out)
    bitmap = base64.b64decode(r["bitmap"])
    assert len(bitmap) == (2 << 30) // 4096 // 8, len(bitmap)
    assert r["slot"] == slot and r["dirty-pages"] == \
        sum(bin(b).count("1") for b in bitmap), r["dirty-pages"]
    rc, out, err = mmuctl("dirty", "harvest", "slot=%d" % slot, sock=s)
    assert rc == 0 and re.fullmatch(
        r"slot: %d\ndirty-pages: \d+\n" % slot, out), (rc, out, err)
    # A range asked for goes as it is, in one call.
    rc, out, err = mmuctl("--json", "dirty", "harvest", "slot=%d" % slot,
                          "first-page=64", "num-pages=128", sock=s)
    assert rc == 0 and json.loads(out)["num-pages"] == 128, (rc, out, err)
    c = d.client()
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("mmuctl")
def test_mmuctl_names_a_daemon_that_is_not_running(tmp):
    stale = os.path.join(tmp, "stale.sock")
    # What a killed mmud leaves: the socket file, nobody listening.
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(stale)
    ls.close()
    for sub in (["status"], ["console"]):
        rc, out, err = mmuctl(*sub, sock=stale)
        assert rc == 2 and err.startswith(
            "mmuctl: mmud is not running at %s (nothing listens" % stale), \
            (sub, rc, err)
    missing = os.path.join(tmp, "none.sock")
    rc, out, err = mmuctl("status", sock=missing)
    assert rc == 2 and err == "mmuctl: mmud is not running at %s (no such " \
        "socket)\n" % missing, (rc, err)


@test("mmuctl")
def test_mmuctl_console_asks_the_daemon_where_it_is(tmp):
    # A console socket not called console.sock and not beside the QMP
    # socket: mmuctl finds it through query-chardev.
    os.mkdir(os.path.join(tmp, "elsewhere"))
    con = os.path.join(tmp, "elsewhere", "com1")
    d = Daemon(tmp, "--console", "socket:" + con, console=False)
    p = popen([dl.MMUCTL, "console", "--socket", d.qmp],
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line == "forever: up, 2 vcpus, fresh\n", (line, p.stderr.read()
                                                     if not line else "")
    p.kill()
    p.wait()
    c = d.client()
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()
    # A VM whose console is not a socket: say so, do not guess a file.
    d = Daemon(tmp, console=False)
    rc, out, err = mmuctl("console", sock=d.qmp)
    assert rc == 2 and "has its console on 'stdio', not on a socket" in err, \
        (rc, err)
    c = d.client()
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


def pty_read_until(fd, needle, got=b""):
    deadline = time.monotonic() + TIMEOUT
    while needle not in got:
        left = deadline - time.monotonic()
        assert left > 0, "console: no %r within %d s; got %r" % (
            needle, TIMEOUT, got[-300:])
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side is gone
                chunk = b""
            assert chunk, "console ended before %r; got %r" % (needle, got)
            got += chunk
    return got


@test("mmuctl")
def test_mmuctl_console_on_a_terminal_enter_is_cr_ctrl_c_stays(tmp):
    assert dl.ECHO, "test_mmuctl.py needs ECHO_ELF for the mmuctl group"
    d = Daemon(tmp, smp=1, kernel=dl.ECHO)
    master, slave = os.openpty()
    p = popen([dl.MMUCTL, "--socket", d.qmp, "console"], stdin=slave,
              stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    got = pty_read_until(master, b"echo: ready")
    # Raw mode: Enter is CR (0x0d), as on any terminal; the guest must
    # take it as the end of the line.
    os.write(master, b"typed at a terminal\r")
    got = pty_read_until(master, b"echo: typed at a terminal", got)
    # Ctrl-C is a byte for the guest, not the end of mmuctl.
    os.write(master, b"\x03\r")
    got = pty_read_until(master, b"echo: \x03", got)
    assert p.poll() is None, "Ctrl-C ended mmuctl console"
    os.write(master, b"\x1d")  # Ctrl-]
    assert p.wait(TIMEOUT) == 0
    assert b"Ctrl-] leaves" in p.stderr.read()
    os.close(master)
    c = d.client()
    c.cmd("quit")
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
    p = popen([dl.MMUCTL, "--socket", d.qmp, "console"],
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
    assert dl.ECHO, "test_mmuctl.py needs ECHO_ELF for the mmuctl group"
    d = Daemon(tmp, smp=1, kernel=dl.ECHO)
    p = popen([dl.MMUCTL, "--socket", d.qmp, "console"],
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


if __name__ == "__main__":
    sys.exit(dl.main())
