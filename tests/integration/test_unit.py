#!/usr/bin/env python3
"""systemd/mmud@.service: systemd-analyze verify, then the unit's own
command line under a notify socket this test owns.

The copy of the unit under test (mmud@.service.build-tree) runs the mmud
of the build tree. It is verified as an instance, then its ExecStart is
run the way systemd would (instance name substituted, $NOTIFY_SOCKET and
$WATCHDOG_USEC set, the config file swapped for one in a temporary
folder that keeps the sockets there): READY=1 with a STATUS= line,
WATCHDOG=1, then SIGTERM (systemctl stop) gives STOPPING=1 and status 0.
Skips (77) without systemd-analyze.
Usage: test_unit.py UNIT FOREVER_ELF
"""
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

TIMEOUT = 30
REQUIRED = [
    "Type=notify", "RuntimeDirectory=mmud/%i", "DynamicUser=yes",
    "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
    "PrivateTmp=yes", "PrivateDevices=yes", "CapabilityBoundingSet=",
    "RestrictAddressFamilies=AF_UNIX", "SystemCallFilter=@system-service",
    "MemoryDenyWriteExecute=yes", "WatchdogSec=30s",
]


def wait_for(sock, line):
    while True:
        msg = sock.recv(4096).decode()
        if line in msg.split("\n"):
            return msg


def main():
    unit, forever = sys.argv[1:3]
    if not shutil.which("systemd-analyze"):
        print("systemd-analyze missing")
        return 77
    text = open(unit).read()
    lines = [ln.strip() for ln in text.splitlines()]
    for want in REQUIRED:
        assert want in lines, "unit lacks " + want
    assert "ExecStart=/usr" not in text, "the copy must run the build tree"

    with tempfile.TemporaryDirectory(prefix="mmud-unit-") as tmp:
        inst = os.path.join(tmp, "mmud@unit-test.service")
        shutil.copy(unit, inst)
        p = subprocess.run(["systemd-analyze", "verify", "--man=no", inst],
                           capture_output=True, text=True, timeout=120)
        ours = [ln for ln in (p.stdout + p.stderr).splitlines()
                if "mmud@" in ln]
        assert p.returncode == 0 and not ours, (p.returncode, p.stdout,
                                                p.stderr)

        execstart = [ln for ln in lines if ln.startswith("ExecStart=")]
        assert len(execstart) == 1, execstart
        argv = shlex.split(execstart[0][len("ExecStart="):]
                           .replace("%i", "unit-test"))
        assert os.access(argv[0], os.X_OK), argv
        conf = os.path.join(tmp, "unit-test.conf")
        assert "/etc/mmud/unit-test.conf" in argv, argv
        argv[argv.index("/etc/mmud/unit-test.conf")] = conf
        with open(conf, "w") as f:
            f.write("kernel = %s\nsmp = 2\nqmp = %s/qmp.sock\n"
                    "console = socket:%s/console.sock\n"
                    % (forever, tmp, tmp))
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(os.path.join(tmp, "notify"))
        ns.settimeout(TIMEOUT)
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(tmp, "notify"),
                   WATCHDOG_USEC="400000")
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL)
        try:
            ready = wait_for(ns, "READY=1")
            assert any(ln.startswith("STATUS=") for ln in
                       ready.split("\n")), ready
            assert os.path.exists(os.path.join(tmp, "qmp.sock"))
            wait_for(ns, "WATCHDOG=1")
            proc.send_signal(signal.SIGTERM)
            wait_for(ns, "STOPPING=1")
            assert proc.wait(TIMEOUT) == 0
            assert not os.path.exists(os.path.join(tmp, "qmp.sock"))
        finally:
            if proc.poll() is None:
                proc.kill()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
