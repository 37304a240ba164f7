#!/usr/bin/env python3
"""systemd/mmud@.service: systemd-analyze verify, then the unit's own
command line under a notify socket this test owns.

The copy of the unit under test (mmud@.service.build-tree) runs the mmud
of the build tree. It is verified as an instance, then its ExecStart is
run the way systemd would (instance name substituted, $NOTIFY_SOCKET and
$WATCHDOG_USEC set, the config file swapped for one in a temporary
folder that keeps the sockets there): READY=1 with a STATUS= line,
WATCHDOG=1, then SIGTERM (systemctl stop) gives STOPPING=1 and status 0.
The watchdog must prove the worker thread and the vCPUs alive, not only
the event loop: with one vCPU thread, then the worker, stopped under
ptrace, no WATCHDOG=1 may come, and the pings come back once it runs.
The hardening: `systemd-analyze security` must rate the unit below 1.0
(it was 1.6 with SystemCallFilter=@system-service and no ProtectProc,
ProcSubset, PrivateIPC, PrivateMounts, PrivateUsers, IPAddressDeny);
mmud runs with its own seccomp filter (execve denied); and where strace
is installed, every system call a run of mmud makes (boot, QMP commands
of every kind, the console, SIGTERM) is in the unit's SystemCallFilter.
mmud-generator writes each VM's MemoryHigh=/MemoryMax= from its size or
its memory-max key, and mmud accepts that key and refuses a bad one.
Skips (77) without systemd-analyze.
Usage: test_unit.py UNIT FOREVER_ELF GENERATOR
"""
import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import qmpclient  # noqa: E402

TIMEOUT = 30
REQUIRED = [
    "Type=notify", "RuntimeDirectory=mmud/%i", "DynamicUser=yes",
    "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
    "PrivateTmp=yes", "PrivateDevices=yes", "CapabilityBoundingSet=",
    "RestrictAddressFamilies=AF_UNIX", "MemoryDenyWriteExecute=yes",
    "WatchdogSec=30s", "LimitNOFILE=512", "LimitCORE=0",
    "ProtectProc=invisible", "ProcSubset=pid", "PrivateIPC=yes",
    "PrivateMounts=yes", "PrivateUsers=yes", "IPAddressDeny=any",
]
# What the unit's exposure must stay below (systemd-analyze security).
MAX_EXPOSURE = 1.0


def wait_for(sock, line):
    while True:
        msg = sock.recv(4096).decode()
        if line in msg.split("\n"):
            return msg


def pings_within(sock, seconds):
    """How many WATCHDOG=1 arrive within seconds."""
    n = 0
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return n
        sock.settimeout(left)
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            return n
        finally:
            sock.settimeout(TIMEOUT)
        n += "WATCHDOG=1" in msg.split("\n")


# One thread of another process stopped without stopping the others:
# PTRACE_SEIZE then PTRACE_INTERRUPT (a SIGSTOP would stop them all).
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
WALL = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                        ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def freeze(tid):
    """Stops thread tid; False (with the reason printed) if ptrace is not
    allowed here."""
    if libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0:
        print("ptrace(PTRACE_SEIZE, %d): %s: watchdog part skipped"
              % (tid, os.strerror(ctypes.get_errno())))
        return False
    assert libc.ptrace(PTRACE_INTERRUPT, tid, None, None) == 0
    os.waitpid(tid, WALL)
    return True


def thaw(tid):
    assert libc.ptrace(PTRACE_DETACH, tid, None, None) == 0, \
        os.strerror(ctypes.get_errno())


def check_watchdog_needs(ns, proc, qmp_path, stderr_path):
    """No WATCHDOG=1 while a vCPU thread or the worker is stopped; the
    pings resume when it runs again."""
    c = qmpclient.Client(qmp_path, negotiate=True, timeout=TIMEOUT)
    vcpus = [v["thread-id"] for v in c.cmd("query-cpus-fast")["return"]]
    c.sock.close()
    tasks = [int(t) for t in os.listdir("/proc/%d/task" % proc.pid)]
    others = [t for t in tasks if t != proc.pid and t not in vcpus]
    assert len(others) == 1, ("expected one worker thread", tasks, vcpus)
    for what, tid in (("vCPU 1", vcpus[1]), ("the worker", others[0])):
        if not freeze(tid):
            return
        try:
            pings_within(ns, 0.5)  # a probe that finished before
            n = pings_within(ns, 1.5)
            assert n == 0, "%d WATCHDOG=1 with %s stopped" % (n, what)
        finally:
            thaw(tid)
        wait_for(ns, "WATCHDOG=1")
    with open(stderr_path) as f:
        log = f.read()
    # vCPU 1 is named; vCPU 0 may be too (waiting for vCPU 1 to leave
    # guest mode for a remote TLB flush, it takes no request either).
    assert re.search(r"watchdog: vCPU\(s\) (0 )?1 did not take a request",
                     log), log


def is_sanitized(path):
    """A sanitizer build of mmud: it keeps execve (daemon/sandbox.c) and
    its runtime makes system calls the release build never does."""
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def exposure(inst):
    """systemd-analyze security's overall exposure of the unit file, or
    None when this systemd cannot rate a file offline."""
    p = subprocess.run(["systemd-analyze", "security", "--offline=true",
                        "--no-pager", inst], capture_output=True, text=True,
                       timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
    if not m:
        print("systemd-analyze security --offline: %s: exposure part "
              "skipped" % (p.stderr.strip() or p.stdout[-200:]))
        return None
    return float(m.group(1))


def allowed_syscalls(lines):
    """Every system call the unit's SystemCallFilter= lines allow (they
    are allow lists), groups expanded by systemd-analyze."""
    words = []
    for ln in lines:
        if ln.startswith("SystemCallFilter="):
            value = ln[len("SystemCallFilter="):]
            assert not value.startswith("~"), ("allow lists only", ln)
            words += value.split()
    allowed = set()
    for w in words:
        if not w.startswith("@"):
            allowed.add(w)
            continue
        out = subprocess.run(["systemd-analyze", "syscall-filter", w],
                             capture_output=True, text=True,
                             check=True).stdout
        for ln in out.splitlines():
            ln = ln.strip()
            assert not ln.startswith("@") or ln == w, \
                ("a nested group: expand it here", w, ln)
            if ln and not ln.startswith(("#", "@")):
                allowed.add(ln)
    return allowed


def syscalls_of_a_run(argv, env, tmp, forever):
    """The system calls mmud makes under strace (None without strace):
    boot, every kind of QMP command, a console client, SIGTERM."""
    if not shutil.which("strace"):
        print("strace missing: system call part skipped")
        return None
    trace = os.path.join(tmp, "trace")
    proc = subprocess.Popen(["strace", "-f", "-qq", "-o", trace] + argv,
                            env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    mmud_pid = None
    try:
        qmp = os.path.join(tmp, "qmp.sock")
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(qmp):
            assert time.monotonic() < deadline and proc.poll() is None, \
                "mmud under strace did not come up"
            time.sleep(0.05)
        # Signals go to mmud, not to strace (which would detach and
        # leave it running).
        with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
            mmud_pid = int(f.read().split()[0])
        c = qmpclient.Client(qmp, negotiate=True, timeout=TIMEOUT)
        for cmd, args in [
                ("query-status", None), ("stop", None), ("cont", None),
                ("x-memslot-add", {"gpa": 8 << 30, "size": 2 << 20,
                                   "log-dirty": True}),
                ("x-dirty-log-harvest", {"slot": 16}),
                ("x-mmu-zap-all", None), ("x-mmu-audit", None),
                ("x-memslot-remove", {"slot": 16}),
                ("query-cpus-fast", None), ("x-query-mmu-stats", None),
                ("query-chardev", None), ("system_reset", None),
                ("ringbuf-read", {"device": "serial0", "size": 64})]:
            c.send({"execute": cmd, "arguments": args or {}})
            r = c.recv()
            while "event" in r:
                r = c.recv()
            assert "return" in r, (cmd, r)
        con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        con.connect(os.path.join(tmp, "console.sock"))
        con.sendall(b"typed\n")
        con.recv(4096)
        con.close()
        c.sock.close()
        os.kill(mmud_pid, signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            if mmud_pid:
                os.kill(mmud_pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
    names = set()
    first_exec = True
    with open(trace) as f:
        for ln in f:
            m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", ln)
            if not m:
                continue
            if m.group(1) == "execve" and first_exec:
                first_exec = False  # systemd's exec of mmud itself
                continue
            names.add(m.group(1))
    return names


def check_generator(generator, mmud, tmp):
    """The drop-ins mmud-generator writes for a folder of configs."""
    conf = os.path.join(tmp, "conf")
    out = os.path.join(tmp, "generated")
    os.mkdir(conf)
    configs = {
        # 1G + 64M + 2 * 2M + 1G / 32; MemoryMax a quarter more.
        "sized": ("memory = 1G\nsmp = 2\n", 1178599424, 1473249280),
        # maxmem (what hot-add may reach) wins over memory.
        "hotplug": ('memory = 1G\nmaxmem = "4G"  # room to grow\n',
                    4498391040, 5622988800),
        "capped": ("memory = 8G\nmemory-max = 3G\n",
                   3221225472 * 9 // 10, 3221225472),
        # 256M of RAM by default: 256M + 64M + 2M + 8M.
        "default": ("smp = 1\n", 346030080, 432537600),
        "bad": ("memory = lots\n", None, None),
    }
    for name, (text, _, _) in configs.items():
        with open(os.path.join(conf, name + ".conf"), "w") as f:
            f.write(text)
    p = subprocess.run([generator, out, out + ".early", out + ".late"],
                       env=dict(os.environ, MMUD_CONFIG_DIR=conf),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, (p.returncode, p.stderr)
    for name, (_, high, mx) in configs.items():
        path = os.path.join(out, "mmud@%s.service.d" % name,
                            "50-memory.conf")
        if high is None:
            assert not os.path.exists(path), name
            assert "%s.conf: memory: not a size" % name in p.stderr, \
                p.stderr
            continue
        with open(path) as f:
            got = f.read()
        assert "[Service]\nMemoryHigh=%d\nMemoryMax=%d\n" % (high, mx) \
            in got, (name, got)
    # mmud takes the key the generator reads, and refuses a bad one.
    bad = os.path.join(tmp, "bad-max.conf")
    with open(bad, "w") as f:
        f.write("memory-max = lots\n")
    p = subprocess.run([mmud, "--config", bad], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert p.returncode == 4 and "bad-max.conf:1: memory-max: 'lots' is " \
        "not a size" in p.stderr, (p.returncode, p.stderr)


def main():
    unit, forever, generator = sys.argv[1:4]
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
        score = exposure(inst)
        assert score is None or score < MAX_EXPOSURE, \
            "systemd-analyze security rates the unit %.1f" % score
        if score is not None:
            print("exposure %.1f" % score)

        execstart = [ln for ln in lines if ln.startswith("ExecStart=")]
        assert len(execstart) == 1, execstart
        argv = shlex.split(execstart[0][len("ExecStart="):]
                           .replace("%i", "unit-test"))
        assert os.access(argv[0], os.X_OK), argv
        sanitized = is_sanitized(argv[0])
        conf = os.path.join(tmp, "unit-test.conf")
        assert "/etc/mmud/unit-test.conf" in argv, argv
        argv[argv.index("/etc/mmud/unit-test.conf")] = conf
        with open(conf, "w") as f:
            f.write("kernel = %s\nsmp = 2\nqmp = %s/qmp.sock\n"
                    "console = socket:%s/console.sock\nmemory-max = 1G\n"
                    % (forever, tmp, tmp))
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(os.path.join(tmp, "notify"))
        ns.settimeout(TIMEOUT)
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(tmp, "notify"),
                   WATCHDOG_USEC="400000")
        errpath = os.path.join(tmp, "stderr")
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=open(errpath, "w"))
        try:
            ready = wait_for(ns, "READY=1")
            assert any(ln.startswith("STATUS=") for ln in
                       ready.split("\n")), ready
            assert os.path.exists(os.path.join(tmp, "qmp.sock"))
            wait_for(ns, "WATCHDOG=1")
            with open("/proc/%d/status" % proc.pid) as f:
                status = f.read()
            # mmud's own filter (daemon/sandbox.c): execve denied.
            assert sanitized or (
                re.search(r"^Seccomp:\s+2$", status, re.M) and
                re.search(r"^NoNewPrivs:\s+1$", status, re.M)), status
            check_watchdog_needs(ns, proc, os.path.join(tmp, "qmp.sock"),
                                 errpath)
            proc.send_signal(signal.SIGTERM)
            wait_for(ns, "STOPPING=1")
            assert proc.wait(TIMEOUT) == 0
            assert not os.path.exists(os.path.join(tmp, "qmp.sock"))
        finally:
            if proc.poll() is None:
                proc.kill()
        check_generator(generator, argv[0], tmp)
        if sanitized:
            print("sanitizer build: system call part skipped")
            print("ok")
            return 0
        used = syscalls_of_a_run(argv, dict(env, WATCHDOG_USEC="200000"),
                                 tmp, forever)
        if used is not None:
            missing = sorted(used - allowed_syscalls(lines))
            assert not missing, "SystemCallFilter= lacks %s" % missing
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
