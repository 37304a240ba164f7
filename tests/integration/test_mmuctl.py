#!/usr/bin/env python3
"""mmuctl against the real mmud: every command, the console.

Usage: test_mmuctl.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
GROUP: mmuctl (meson: daemon-GROUP). Shared parts: tests/lib/daemonlib.py.
"""
import json
import os
import subprocess
import sys

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
