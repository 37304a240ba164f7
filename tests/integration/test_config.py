#!/usr/bin/env python3
"""mmud's config file: errors naming file and line, values applied,
flags winning over the file.

Usage: test_config.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
GROUP: config (meson: daemon-GROUP). Shared parts: tests/lib/daemonlib.py.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import (  # noqa: E402
    TIMEOUT, Daemon, test)


# ---- config --------------------------------------------------------------

def refused(tmp, text, *extra):
    path = os.path.join(tmp, "vm.conf")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([dl.MMUD, "--config", path] + list(extra),
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
    p = subprocess.run([dl.MMUD, "--config", os.path.join(tmp, "missing")],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 4 and "missing: No such file" in p.stderr
    # One endless line: refused at its 4097th byte, not read to the end.
    p = subprocess.run([dl.MMUD, "--config", "/dev/zero"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 4 and \
        "/dev/zero:1: line longer than 4096 bytes" in p.stderr, p.stderr
    p = subprocess.run([dl.MMUD, "--config", tmp], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert p.returncode == 4 and "Is a directory" in p.stderr, p.stderr
    for args, want in [(["--smp", "x"], "--smp: 'x' is not a vCPU count"),
                       (["--memory", "1Q"], "--memory: '1Q' is not a size"),
                       (["--memory", "2049K"], "--memory: '2049K' is not "
                        "a multiple of 4K from 2M to 1T"),
                       (["--memory", "2048G"], "--memory: '2048G' is not "
                        "a multiple of 4K from 2M to 1T"),
                       # 2^24 + 1 TiB is 1 TiB modulo 2^64: too big, not
                       # wrapped into range.
                       (["--memory", "16777217T"], "--memory: '16777217T' "
                        "is not a size"),
                       (["--dirty-ring", "200"], "--dirty-ring: '200' is "
                        "not 0 or a power of two from 128 to 65536"),
                       (["--smp", " 3"], "--smp: ' 3' is not a vCPU count"),
                       (["--bogus"], "unknown option '--bogus'"),
                       (["--console", "socket:"], "--console: an empty")]:
        p = subprocess.run([dl.MMUD] + args, capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert p.returncode == 4 and want in p.stderr, (args, p.stderr)


def mmud_run(*args):
    return subprocess.run([dl.MMUD] + list(args), capture_output=True,
                          text=True, timeout=TIMEOUT)


@test("config")
def test_qemu_spellings_of_qmp_and_options(tmp):
    # QEMU's one-dash options are named, with the long option meant.
    p = mmud_run("-qmp", "x.sock")
    assert p.returncode == 4 and "unknown option '-qmp' (mmud's options " \
        "start with two dashes: --qmp)" in p.stderr, p.stderr
    p = mmud_run("--smp", "1", "-x")
    assert p.returncode == 4 and "unknown option '-x'" in p.stderr, p.stderr
    # unix:PATH and unix:PATH,server=on,wait=off are the socket PATH.
    for spec in ["unix:%s", "unix:%s,server=on,wait=off",
                 "unix:%s,wait=off,server=on"]:
        path = os.path.join(tmp, "q.sock")
        d = Daemon(tmp, "--qmp", spec % path, qmp=False)
        c = dl.Client(path)
        assert c.cmd("query-status")["return"]["status"] == "running"
        c.cmd("quit")
        assert d.wait() == 0, d.log()
        d.kill()
        assert not os.path.exists(path), spec
        assert not [f for f in os.listdir(tmp) if f.startswith("unix:")], \
            (spec, os.listdir(tmp))
    # Anything else is refused by name, and nothing is created.
    tmp = os.path.join(tmp, "refused")
    os.mkdir(tmp)
    for spec, want in [
            ("unix:%s/q.sock,server=off", "--qmp: unix: option "
             "'server=off' is not supported (only server=on and wait=off"),
            ("unix:%s/q.sock,wait=on", "option 'wait=on' is not supported"),
            ("unix:%s/q.sock,server=on,server=on",
             "option 'server=on' is not supported"),
            ("unix:%s/q.sock,nowait", "option 'nowait' is not supported"),
            ("unix:", "--qmp: an empty path"),
            ("tcp:localhost:4444", "--qmp: 'tcp' sockets are not "
             "supported: QMP is served on a Unix socket")]:
        arg = spec % tmp if "%s" in spec else spec
        p = mmud_run("--kernel", dl.FOREVER, "--qmp", arg)
        assert p.returncode == 4 and want in p.stderr, (spec, p.stderr)
        assert os.listdir(tmp) == [], os.listdir(tmp)


@test("config")
def test_paused_without_qmp_is_refused(tmp):
    # Nothing could ever resume it: refused at start, status 4.
    p = mmud_run("--kernel", dl.FOREVER, "--paused")
    assert p.returncode == 4 and "--paused: a paused VM without a QMP " \
        "socket could never be resumed: give --qmp PATH or --name NAME" \
        in p.stderr, p.stderr
    err = refused(tmp, "smp = 1\npaused = yes\n")
    assert "FILE:2: paused: a paused VM without a QMP socket" in err, err
    # With a socket it is fine (the runstate tests cover the rest).
    d = Daemon(tmp, "--paused")
    assert d.client().cmd("query-status")["return"]["status"] == "prelaunch"
    d.kill()


@test("config")
def test_sizes_kernels_comments_and_quotes(tmp):
    # 1T, the documented maximum, with the T suffix: accepted (mmud goes
    # on to the kernel, which is missing here, so that no test allocates
    # the page tracking of 1T; booting 1T is slow, not different).
    conf = os.path.join(tmp, "vm.conf")
    missing = os.path.join(tmp, "none.elf")
    with open(conf, "w") as f:
        f.write("memory = 1T   # the most there is\n")
    for args in (["--memory", "1T"], ["--memory", "1t"],
                 ["--config", conf]):
        p = mmud_run(*args, "--kernel", missing)
        assert p.returncode == 4 and "<3>mmud: --kernel: %s: No such " \
            "file" % missing in p.stderr, (args, p.stderr)
    p = mmud_run("--memory", "2T")
    assert p.returncode == 4 and "'2T' is not a multiple of 4K from 2M " \
        "to 1T" in p.stderr, p.stderr
    # A kernel that is a folder, or not there, named as such; from a
    # config file with FILE:LINE.
    p = mmud_run("--kernel", tmp)
    assert p.returncode == 4 and \
        "<3>mmud: --kernel: %s: Is a directory" % tmp in p.stderr, p.stderr
    p = mmud_run("--kernel", "/dev/null")
    assert p.returncode == 4 and \
        "--kernel: /dev/null: not a regular file" in p.stderr, p.stderr
    err = refused(tmp, "smp = 1\n\nkernel = %s\n" % missing)
    assert "<3>mmud: FILE:3: kernel: %s: No such file or directory" % \
        missing in err, err
    err = refused(tmp, "kernel = \"%s\" # where\n" % tmp)
    assert "FILE:1: kernel: %s: Is a directory" % tmp in err, err
    # Comments after values; quotes keep '#' and blanks; a quote that is
    # not closed, or text after it, is an error naming the line.
    for text, want in [
            ("append = \"open\n", "FILE:1: append: unterminated quote"),
            ("smp = 1\nappend = \"a\" b\n",
             "FILE:2: append: 'b' after the closing quote"),
            ("smp = 2 # two\nsmp = 3\n", "FILE:2: 'smp' given twice"),
            ("paused = yes# no blank before\n",
             "'yes# no blank before' is not a boolean")]:
        err = refused(tmp, text)
        assert want in err, (text, err)
    with open(conf, "w") as f:
        f.write("smp = 2   # two vCPUs\npaused = yes #\n"
                "append = \" x # y \"  # the guest's\nkernel = %s\n"
                "qmp = unix:%s,server=on,wait=off # as in QEMU\n"
                % (dl.FOREVER, os.path.join(tmp, "qmp.sock")))
    d = Daemon(tmp, "--config", conf, qmp=False)
    c = d.client()
    assert len(c.cmd("query-cpus-fast")["return"]) == 2
    assert c.cmd("query-status")["return"]["status"] == "prelaunch"
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("config")
def test_run_sample_exits_0_when_the_guest_passes(tmp):
    # README's first command: scripts/install-deps && scripts/run-sample
    # must read a pass as success, while mmud keeps the debug-exit status.
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "..", "..", "scripts", "run-sample")
    p = mmud_run("--smp", "2", "--append", "console=ttyS0 sample")
    assert p.returncode == 1 and "hello: PASS" in p.stdout, (p.returncode,
                                                             p.stdout)
    p = subprocess.run([script], capture_output=True, text=True,
                       timeout=TIMEOUT, env=dict(os.environ, MMUD=dl.MMUD))
    assert p.returncode == 0 and "hello: PASS" in p.stdout, \
        (p.returncode, p.stdout, p.stderr)
    # Anything but the pass is a failure, with mmud's status named.
    for status, want in [(3, "mmud exit status 3"), (2, "mmud exit status 2"),
                         (0, "before the guest's verdict")]:
        fake = os.path.join(tmp, "mmud-%d" % status)
        with open(fake, "w") as f:
            f.write("#!/bin/sh\nexit %d\n" % status)
        os.chmod(fake, 0o755)
        p = subprocess.run([script], capture_output=True, text=True,
                           timeout=TIMEOUT, env=dict(os.environ, MMUD=fake))
        assert p.returncode == 1 and want in p.stderr, (status, p.stderr)


@test("config")
def test_config_file_applies_and_flags_win(tmp):
    path = os.path.join(tmp, "vm.conf")
    with open(path, "w") as f:
        f.write("# a VM\nkernel = %s\nsmp = 3\nmemory = 64M\n"
                "paused = yes\nappend = \"  spaced \"\nqmp = %s\n"
                % (dl.FOREVER, os.path.join(tmp, "qmp.sock")))
    d = Daemon(tmp, "--config", path, "--smp", "1", "--kernel", dl.FOREVER,
               qmp=False)
    c = d.client()
    assert len(c.cmd("query-cpus-fast")["return"]) == 1
    assert c.cmd("query-status")["return"]["status"] == "prelaunch"
    assert c.cmd("x-query-memslots")["return"][0]["size"] == 64 << 20
    c.cmd("quit")
    assert d.wait() == 0
    d.kill()


if __name__ == "__main__":
    sys.exit(dl.main())
