#!/usr/bin/env python3
"""The execution engine's switch and counters: --cpu (interp, jit,
jit-verify; docs/JIT.md) with its fallback to the interpreter when
executable memory is refused, and x-query-cpu-stats (docs/QMP.md,
"x-query-cpu-stats (daemon)"), the run loop's block, decoded-block cache
and JIT counters of one vCPU, on the forever guest.

Usage: test_cpustats.py GROUP MMUD MMUCTL FOREVER_ELF
GROUP: cpustats (meson: daemon-cpustats). Shared parts:
tests/lib/daemonlib.py.
"""
import ctypes
import mmap
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, test, read_console_until, error  # noqa: E402

KEYS = {"cpu-index", "engine", "blocks", "cache-hits", "cache-misses",
        "cache-stale", "uncached", "mmio-fetches", "smc-breaks", "flushes",
        "budget-exits", "kick-exits", "pool-bytes", "generic-irq",
        "generic-budget", "chain-hits", "jit-blocks", "jit-ns", "jit-bytes",
        "verified", "unverified"}


def stats(c, index):
    r = c.cmd("x-query-cpu-stats", {"cpu-index": index})
    assert "return" in r, r
    return r["return"]


@test("cpustats")
def test_cpu_stats_count_blocks_and_cache_of_each_vcpu(tmp):
    d = Daemon(tmp, "--cpu", "interp", smp=2)
    read_console_until(d.con, "tick 1\n")
    c = d.client()
    for i in (0, 1):
        # The guest loops on every vCPU, but a loaded host may not have
        # run one of them much yet: wait for it (counters are published
        # at the end of each run of the loop).
        deadline = time.monotonic() + 10
        s = stats(c, i)
        while s["blocks"] <= 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
            s = stats(c, i)
        assert set(s) == KEYS, s
        assert s["cpu-index"] == i and s["engine"] == "interp", s
        # The guest loops: blocks are run, most found decoded.
        assert s["blocks"] > 1000, s
        assert 0 < s["cache-misses"] < s["cache-hits"] <= s["blocks"], s
        # A loop's blocks are found as each other's successors.
        assert 0 < s["chain-hits"] <= s["cache-hits"], s
        assert s["blocks"] <= (s["cache-hits"] + s["cache-misses"] +
                               s["cache-stale"]), s
        assert 0 < s["pool-bytes"] <= 16 << 20, s
        assert s["flushes"] == 0 and s["mmio-fetches"] == 0, s
        # Most blocks run on the specialised handlers (fast.c).
        assert s["generic-irq"] + s["generic-budget"] < s["blocks"] / 2, s
        # The interpreter translates nothing.
        assert s["jit-blocks"] == s["jit-bytes"] == s["verified"] == 0, s
    # Counters only grow while the guest runs.
    a = stats(c, 0)
    deadline = time.time() + 10
    while stats(c, 0)["blocks"] == a["blocks"]:
        assert time.time() < deadline, "blocks of vCPU 0 stuck: %r" % a
        time.sleep(0.01)
    b = stats(c, 0)
    for k in KEYS - {"cpu-index", "engine", "pool-bytes"}:
        assert b[k] >= a[k], (k, a, b)
    # Bad cpu-index values: refused, named, nothing else happens.
    for bad in (2, -1, 1 << 40):
        error(c.cmd("x-query-cpu-stats", {"cpu-index": bad}),
              "GenericError",
              "Parameter 'cpu-index' expects a vCPU index from 0 to 1")
    for args in ({"cpu-index": "1"}, None, {"cpu-index": 0, "x": 1}):
        r = c.cmd("x-query-cpu-stats", args) if args is not None else \
            c.cmd("x-query-cpu-stats")
        assert r["error"]["class"] == "GenericError", r
    assert c.cmd("query-status")["return"]["status"] == "running"
    c.cmd("quit")
    assert d.wait() == 0
    d.kill()


REFUSED = "executable memory refused"


def engine_runs(d, engine):
    """Every vCPU reports engine and translates blocks (or not)."""
    read_console_until(d.con, "tick 1\n")
    c = d.client()
    for i in (0, 1):
        # A loaded host may not have run this vCPU much yet: wait for
        # its third entry of a block (the JIT translates it then) and a
        # verified block (counters are published after each run).
        deadline = time.monotonic() + 10
        s = stats(c, i)
        while engine != "interp" and time.monotonic() < deadline and \
                (s["jit-blocks"] == 0 or
                 (engine == "jit-verify" and s["verified"] == 0)):
            time.sleep(0.05)
            s = stats(c, i)
        assert s["engine"] == engine, s
        if engine == "interp":
            assert s["jit-blocks"] == 0 and s["jit-bytes"] == 0, s
        else:
            # Every decoded block gets host code; the buffer holds it.
            assert 0 < s["jit-blocks"] <= s["cache-misses"] + \
                s["cache-stale"], s
            assert 0 < s["jit-bytes"] <= 16 << 20 and s["jit-ns"] > 0, s
        if engine == "jit-verify":
            assert s["verified"] > 0, s
    c.cmd("quit")
    assert d.wait() == 0
    return d.log()


@test("cpustats")
def test_cpu_jit_and_jit_verify_run_and_report_their_engine(tmp):
    for engine in ("jit", "jit-verify"):
        sub = os.path.join(tmp, engine)
        os.mkdir(sub)
        log = engine_runs(Daemon(sub, "--cpu", engine, smp=2), engine)
        assert REFUSED not in log and "DIVERGENCE" not in log, log
    # The config file's line does the same.
    conf = os.path.join(tmp, "vm.conf")
    with open(conf, "w") as f:
        f.write("cpu = jit\n")
    sub = os.path.join(tmp, "conf")
    os.mkdir(sub)
    engine_runs(Daemon(sub, "--config", conf, smp=2), "jit")


@test("cpustats")
def test_cpu_jit_without_executable_memory_interprets_and_says_so_once(tmp):
    # As a policy refusing an executable mapping would (docs/JIT.md,
    # "Executable memory"): the VM still runs, on the interpreter, and
    # one line says why.
    d = Daemon(tmp, "--cpu", "jit", smp=2,
               env={"MMUD_TEST_JIT_NO_EXEC": "1"})
    log = engine_runs(d, "interp")
    assert log.count(REFUSED) == 1, log
    assert "--cpu jit: " + REFUSED + " (mmap RX: Permission denied): " \
        "running the interpreter" in log, log


PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def deny_write_execute():
    """In the child before exec: what MemoryDenyWriteExecute=yes in the
    systemd unit applies (the kernel's MDWE, Linux 6.3+), checked to
    refuse a writable and executable mapping."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_MDWE")
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE |
                  mmap.PROT_EXEC)
    except PermissionError:
        return
    raise OSError(0, "MDWE left an RWX mapping allowed")


@test("cpustats")
def test_cpu_jit_runs_under_memory_deny_write_execute(tmp):
    # The unit's policy (docs/JIT.md, "Executable memory"): the code
    # buffer's two views of a memfd are allowed, so the JIT runs.
    sock = os.path.join(tmp, "qmp.sock")
    log = open(os.path.join(tmp, "stderr.txt"), "w+")
    try:
        p = subprocess.Popen([dl.MMUD, "--kernel", dl.FOREVER, "--cpu", "jit",
                              "--qmp", sock], stdout=subprocess.DEVNULL,
                             stderr=log, preexec_fn=deny_write_execute)
    except (OSError, subprocess.SubprocessError) as e:
        print("skipped: no MDWE on this kernel (%s)" % e)
        return
    try:
        deadline = time.time() + dl.TIMEOUT
        while not os.path.exists(sock):
            assert p.poll() is None and time.time() < deadline, \
                "mmud under MDWE did not start: %r" % p.returncode
            time.sleep(0.02)
        c = dl.qmpclient.Client(sock, negotiate=True)
        s = stats(c, 0)
        assert s["engine"] == "jit", s
        deadline = time.time() + dl.TIMEOUT
        while stats(c, 0)["jit-blocks"] == 0:
            assert time.time() < deadline, "nothing translated: %r" % s
            time.sleep(0.01)
        c.cmd("quit")
        assert p.wait(dl.TIMEOUT) == 0
        log.seek(0)
        assert REFUSED not in log.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@test("cpustats")
def test_cpu_engine_unknown_refused_by_name(tmp):
    for value in ("fast", "JIT", ""):
        p = subprocess.run([dl.MMUD, "--kernel", dl.FOREVER, "--cpu", value],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 4, (value, p.returncode, p.stderr)
        assert "--cpu: '%s' is not interp, jit or jit-verify" % value \
            in p.stderr, (value, p.stderr)
    conf = os.path.join(tmp, "vm.conf")
    with open(conf, "w") as f:
        f.write("cpu = turbo\n")
    p = subprocess.run([dl.MMUD, "--kernel", dl.FOREVER, "--config", conf],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert "'turbo' is not interp, jit or jit-verify" in p.stderr, p.stderr
    help_text = subprocess.run([dl.MMUD, "--help"], capture_output=True,
                               text=True).stdout
    assert "--cpu" in help_text and "jit-verify" in help_text


if __name__ == "__main__":
    sys.exit(dl.main())
