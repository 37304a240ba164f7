#!/usr/bin/env python3
"""mmuctl's migration commands against real daemons: incoming URI (and
the port tcp:...:0 picked), migrate URI with its options turned into
QEMU's capabilities and parameters, --wait's exit status for completed,
failed and cancelled, --progress as a bar on a terminal and one line a
second otherwise, Ctrl-C and migrate cancel, and the usage errors.

Usage: test_mmuctl_migrate.py GROUP MMUD MMUCTL FOREVER_ELF MIGRATE_ELF
GROUP: mmuctl (meson: migration-mmuctl). Shared parts: tests/lib.
"""
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import TIMEOUT, Daemon, error, popen, test  # noqa: E402

MIGRATE = None
# A guest whose RAM is 16 MiB of pages that are not zero, so that a
# migration at a few MiB/s lasts seconds (docs: tests/guests/migrate.c).
MEM = "64M"
FILL = "fill=16"
LINE = re.compile(
    r"^(setup|active|device|pre-switchover|cancelling): +\d+% sent "
    r"[\d.]+ MiB, remaining [\d.]+ MiB, [\d.]+ MiB/s, dirty \d+ "
    r"pages/s, pass \d+, expected downtime \d+ ms$")
DONE = re.compile(r"^migration completed: \d+ ms, downtime \d+ ms, "
                  r"[\d.]+ MiB sent in \d+ passes$")


def mmuctl(sock, *args, timeout=TIMEOUT):
    p = subprocess.run([dl.MMUCTL, "--socket", sock] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def ok(r):
    assert "return" in r, r
    return r["return"]


def vm(tmp, name, *extra):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    return Daemon(d, "--memory", MEM, *extra, smp=1, kernel=MIGRATE,
                  append=FILL)


def pair(tmp):
    """A source running the guest, its region filled (pages in memory
    the guest never wrote are not read, so they take no time to send),
    and a destination started --incoming defer."""
    src = vm(tmp, "src")
    dl.read_console_until(src.con, "migrate: ready")
    return src, vm(tmp, "dst", "--incoming", "defer")


def incoming_tcp(dst):
    """mmuctl incoming tcp:127.0.0.1:0; returns the URI to migrate to."""
    rc, out, err = mmuctl(dst.qmp, "incoming", "tcp:127.0.0.1:0")
    assert rc == 0, (rc, out, err)
    m = re.fullmatch(r"listening on tcp:127\.0\.0\.1:(\d+)\n", out)
    assert m and int(m.group(1)) > 0, out
    return "tcp:127.0.0.1:" + m.group(1)


def status_of(d):
    return ok(d.client().cmd("query-status"))["status"]


def wait_running(d):
    """The destination runs once its stream has loaded, which may be a
    moment after the source says completed."""
    c = d.client()
    deadline = time.monotonic() + TIMEOUT
    while True:
        st = ok(c.cmd("query-status"))["status"]
        if st == "running":
            return
        assert st == "inmigrate" and time.monotonic() < deadline, st
        time.sleep(0.05)


def wait_status(d, want):
    c = d.client()
    deadline = time.monotonic() + TIMEOUT
    while True:
        info = ok(c.cmd("query-migrate"))
        if info.get("status") in want:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


@test("mmuctl")
def test_migrate_wait_progress_lines_then_completed(tmp):
    src, dst = pair(tmp)
    uri = incoming_tcp(dst)
    # Four MiB/s over 16 MiB of pages: seconds, a line each.
    rc, out, err = mmuctl(src.qmp, "migrate", uri, "--bandwidth", "4M",
                          "--downtime", "500", "--progress")
    assert rc == 0, (rc, out, err)
    lines = out.splitlines()
    assert len(lines) >= 3, out
    for line in lines[:-1]:
        assert LINE.match(line), "progress line %r" % line
    assert DONE.match(lines[-1]), lines[-1]
    assert status_of(src) == "postmigrate"
    wait_running(dst)
    c = src.client()
    params = ok(c.cmd("query-migrate-parameters"))
    assert params["max-bandwidth"] == 4 << 20, params
    assert params["downtime-limit"] == 500, params
    # migrate status is query-migrate, flattened or as JSON.
    rc, out, _ = mmuctl(src.qmp, "migrate", "status")
    assert rc == 0 and "status: completed\n" in out, out
    assert re.search(r"^ram\.transferred: \d+$", out, re.M), out
    rc, out, _ = mmuctl(src.qmp, "--json", "migrate", "status")
    info = json.loads(out)
    assert info["status"] == "completed" and info["ram"]["remaining"] == 0
    src.kill()
    dst.kill()


@test("mmuctl")
def test_migrate_progress_bar_on_a_terminal(tmp):
    src, dst = pair(tmp)
    uri = incoming_tcp(dst)
    master, slave = pty.openpty()
    p = popen([dl.MMUCTL, "--socket", src.qmp, "migrate", uri,
               "--bandwidth", "8M", "--progress"],
              stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break  # the terminal closed: mmuctl is gone
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    assert p.wait(TIMEOUT) == 0, (out, p.stderr.read())
    os.close(master)
    text = out.decode()
    # Redrawn in place: carriage return, erase the line, the bar.
    bars = re.findall(r"\r\x1b\[K\[[=> ]{20}\] +(\d+)% [\d.]+/[\d.]+ MiB "
                      r"rem [\d.]+ MiB [\d.]+ MiB/s dirty \d+ p/s pass "
                      r"\d+ downtime ~\d+ ms (\w+)", text)
    assert len(bars) >= 2, text
    assert all(0 <= int(pct) <= 100 for pct, _ in bars), bars
    assert "\nmigration completed" in text.replace("\r\x1b[K", "\n"), text
    src.kill()
    dst.kill()


@test("mmuctl")
def test_migrate_to_joins_both_ends_with_a_socket_pair(tmp):
    # No URI: mmuctl hands each daemon one end of a socket pair with
    # getfd, as libvirt does; neither needs a network or a shared folder.
    src, dst = pair(tmp)
    rc, out, err = mmuctl(src.qmp, "migrate", "--to", dst.qmp, "--wait")
    assert rc == 0, (rc, out, err)
    assert DONE.match(out.strip()), out
    assert status_of(src) == "postmigrate"
    wait_running(dst)
    # The names were taken by the migration: nothing is left named.
    for d in (src, dst):
        error(d.client().cmd("closefd", {"fdname": "mmuctl-migrate"}),
              "GenericError",
              "File descriptor named 'mmuctl-migrate' not found")
    # A destination that is not waiting for a migration: refused before
    # the source is touched.
    rc, _, err = mmuctl(dst.qmp, "migrate", "--to", src.qmp, "--wait")
    assert rc == 1 and "migrate-incoming" in err, err
    assert status_of(dst) == "running"
    # ... and the refusing end keeps no descriptor named by mmuctl.
    error(src.client().cmd("closefd", {"fdname": "mmuctl-migrate"}),
          "GenericError", "File descriptor named 'mmuctl-migrate' not found")
    src.kill()
    dst.kill()


@test("mmuctl")
def test_migrate_wait_exits_1_when_it_fails(tmp):
    src = vm(tmp, "src")
    nowhere = os.path.join(tmp, "nobody-listens")
    rc, out, err = mmuctl(src.qmp, "migrate", "unix:" + nowhere, "--wait")
    assert rc == 1, (rc, out, err)
    assert "migration failed: " in err and nowhere in err, err
    assert status_of(src) == "running"
    # Refused at once: the daemon's error, named.
    rc, out, err = mmuctl(src.qmp, "migrate", "exec:cat", "--wait")
    assert rc == 1, (rc, out, err)
    assert "GenericError" in err and "'exec:cat'" in err, err
    assert status_of(src) == "running"
    src.kill()


@test("mmuctl")
def test_migrate_options_set_capabilities_and_parameters(tmp):
    src = vm(tmp, "src")
    bad = "unix:" + os.path.join(tmp, "nobody")
    c = src.client()
    rc, _, err = mmuctl(src.qmp, "migrate", bad, "--bandwidth", "1G",
                        "--downtime", "100", "--wait")
    assert rc == 1 and "migration failed" in err, err
    params = ok(c.cmd("query-migrate-parameters"))
    assert params["max-bandwidth"] == 1 << 30, params
    assert params["downtime-limit"] == 100, params
    # --bandwidth 0: no limit, as QEMU's max-bandwidth 0.
    rc, _, err = mmuctl(src.qmp, "migrate", bad, "--bandwidth", "0",
                        "--wait")
    assert rc == 1, err
    assert ok(c.cmd("query-migrate-parameters"))["max-bandwidth"] == 0
    # A value the daemon refuses: its error, and nothing started.
    rc, _, err = mmuctl(src.qmp, "migrate", bad, "--downtime", "9999999")
    assert rc == 1 and "migrate-set-parameters" in err and \
        "2000000" in err, err
    assert ok(c.cmd("query-migrate"))["status"] == "failed"
    # --dirty-limit sets the capability (auto-converge off) and
    # vcpu-dirty-limit; --auto-converge the other way round.
    for opts, on, off in [(["--dirty-limit", "50"], "dirty-limit",
                           "auto-converge"),
                          (["--auto-converge"], "auto-converge",
                           "dirty-limit")]:
        rc, _, err = mmuctl(src.qmp, "migrate", bad, *opts, "--wait")
        assert rc == 1, err
        if "is not supported by mmud yet" in err:
            print("skipped %s: the daemon refuses it: %s" % (on, err.strip()))
            continue
        caps = {x["capability"]: x["state"]
                for x in ok(c.cmd("query-migrate-capabilities"))}
        assert caps[on] and not caps[off], caps
        if on == "dirty-limit":
            params = ok(c.cmd("query-migrate-parameters"))
            assert params["vcpu-dirty-limit"] == 50, params
    src.kill()


@test("mmuctl")
def test_migrate_cancel_and_ctrl_c_leave_the_source_running(tmp):
    src, dst = pair(tmp)
    uri = incoming_tcp(dst)
    p = popen([dl.MMUCTL, "--socket", src.qmp, "migrate", uri,
               "--bandwidth", "1M", "--wait"],
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_status(src, ("active",))
    rc, out, err = mmuctl(src.qmp, "migrate", "cancel")
    assert rc == 0, (rc, out, err)
    out, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 1, (p.returncode, out, err)
    assert "migration cancelled" in err, err
    assert status_of(src) == "running"
    dst.kill()
    # Ctrl-C while waiting: migrate_cancel, then the wait ends the same.
    dst = vm(tmp, "dst2", "--incoming", "defer")
    uri = incoming_tcp(dst)
    p = popen([dl.MMUCTL, "--socket", src.qmp, "migrate", uri,
               "--bandwidth", "1M", "--wait"],
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_status(src, ("active",))
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 1, (p.returncode, out, err)
    assert "cancelling the migration" in err, err
    assert "migration cancelled" in err, err
    assert status_of(src) == "running"
    src.kill()
    dst.kill()


@test("mmuctl")
def test_migrate_usage_errors_send_nothing(tmp):
    src = vm(tmp, "src")
    for args, why in [
            (["migrate"], "usage: mmuctl"),
            (["migrate", "unix:/x", "unix:/y"], "usage: mmuctl"),
            (["migrate", "unix:/x", "--auto-converge", "--dirty-limit",
              "5"], "exclude each other"),
            (["migrate", "unix:/x", "--bandwidth", "12Q"], "--bandwidth"),
            (["migrate", "unix:/x", "--downtime", "-1"], "--downtime"),
            (["migrate", "unix:/x", "--dirty-limit", "0"], "--dirty-limit"),
            (["status", "--wait"], "go with migrate"),
            (["incoming", "unix:/x", "--wait"], "usage: mmuctl"),
            (["incoming"], "usage: mmuctl"),
            (["migrate", "unix:/x", "--to", "vm2"], "usage: mmuctl"),
            (["migrate", "--to", "bad name!"], "bad VM name")]:
        rc, out, err = mmuctl(src.qmp, *args)
        assert rc == 2 and why in err, (args, rc, out, err)
    c = src.client()
    assert ok(c.cmd("query-migrate")) == {}
    assert status_of(src) == "running"
    rc, out, _ = mmuctl(src.qmp, "help", "migrate")
    assert rc == 0 and "--dirty-limit MBPS" in out, out
    # incoming on a VM that is not waiting for one: the daemon's error.
    rc, _, err = mmuctl(src.qmp, "incoming", "unix:" + tmp + "/in.sock")
    assert rc == 1 and "GenericError" in err, err
    error(c.cmd("migrate-incoming", {"uri": "unix:/x"}), "GenericError")
    src.kill()


def main():
    global MIGRATE
    MIGRATE = sys.argv[5]
    return dl.main()


if __name__ == "__main__":
    sys.exit(main())
