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
                       (["--bogus"], "unknown option '--bogus'"),
                       (["--console", "socket:"], "--console: an empty")]:
        p = subprocess.run([dl.MMUD] + args, capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert p.returncode == 4 and want in p.stderr, (args, p.stderr)


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
