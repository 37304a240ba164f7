#!/usr/bin/env python3
"""The sleep/reset register at port 0x600 and the i8042 reset at port
0x64 (docs/GUEST-ABI.md, "Sleep and reset registers"), driven by
tests/guests/power.c: S5 ends mmud with SHUTDOWN (guest-shutdown) and
status 0; the reset register and the i8042 reset reset the VM (RESET,
guest-reset) and the guest boots again, or with --no-reboot (or
no-reboot = true in the config file) end mmud with SHUTDOWN
(guest-reset) and status 0; other sleep types and reads change nothing.

Usage: test_power.py GROUP MMUD MMUCTL FOREVER_ELF POWER_ELF
GROUP: power (meson: daemon-power). Shared parts: tests/lib/daemonlib.py.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, test, client_then_cont  # noqa: E402


def power_daemon(tmp, actions, *extra):
    """A paused mmud running the power guest with the given actions, and
    a client that heard RESUME (so no guest event comes before it)."""
    d = Daemon(tmp, "--paused", *extra, smp=1, kernel=dl.ECHO,
               append=actions)
    return d, client_then_cont(d)


def console(d):
    """A console client, connected before the paused guest runs."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(dl.TIMEOUT)
    s.connect(d.con)
    return s


def ends_with_shutdown(d, c, reason):
    ev, before = c.event("SHUTDOWN")
    assert ev["data"] == {"guest": True, "reason": reason}, (ev, before)
    status = d.wait()
    assert status == 0, "exit status %d: %s" % (status, d.log())
    return before


@test("power")
def test_s5_powers_off_with_status_0(tmp):
    d, c = power_daemon(tmp, "poweroff")
    before = ends_with_shutdown(d, c, "guest-shutdown")
    assert not [m for m in before if m["event"] == "RESET"], before
    assert "powered off (S5)" in d.log(), d.log()
    d.sockets_gone()


@test("power")
def test_reset_register_reboots_the_guest(tmp):
    d, c = power_daemon(tmp, "reset poweroff")
    ev, _ = c.event("RESET")
    assert ev["data"] == {"guest": True, "reason": "guest-reset"}, ev
    ends_with_shutdown(d, c, "guest-shutdown")
    assert "guest reset (ACPI reset register)" in d.log(), d.log()


@test("power")
def test_i8042_reset_reboots_the_guest(tmp):
    d, c = power_daemon(tmp, "i8042 reset poweroff")
    for _ in range(2):
        ev, _ = c.event("RESET")
        assert ev["data"] == {"guest": True, "reason": "guest-reset"}, ev
    ends_with_shutdown(d, c, "guest-shutdown")
    log = d.log()
    assert "guest reset (i8042 reset)" in log, log
    assert "guest reset (ACPI reset register)" in log, log


@test("power")
def test_guest_boots_again_after_reset(tmp):
    d = Daemon(tmp, "--paused", smp=1, kernel=dl.ECHO,
               append="reset status poweroff")
    sock = console(d)
    c = client_then_cont(d)
    _, text = dl.read_console_until(d.con, "power: boot 2: poweroff",
                                    sock)
    ends_with_shutdown(d, c, "guest-shutdown")
    assert "reset did nothing" not in text, text
    assert "power: boot 2: status\npower: status 0x00\n" in text, text


@test("power")
def test_no_reboot_turns_reset_into_shutdown(tmp):
    d, c = power_daemon(tmp, "reset poweroff", "--no-reboot")
    before = ends_with_shutdown(d, c, "guest-reset")
    assert not [m for m in before if m["event"] == "RESET"], before
    assert "--no-reboot: shutting down" in d.log(), d.log()


@test("power")
def test_no_reboot_from_config_file(tmp):
    conf = os.path.join(tmp, "vm.conf")
    with open(conf, "w") as f:
        f.write("no-reboot = true\n")
    d, c = power_daemon(tmp, "i8042 poweroff", "--config", conf)
    ends_with_shutdown(d, c, "guest-reset")


@test("power")
def test_other_sleep_types_and_reads_change_nothing(tmp):
    d = Daemon(tmp, "--paused", smp=1, kernel=dl.ECHO,
               append="s3 status poweroff")
    sock = console(d)
    c = client_then_cont(d)
    _, text = dl.read_console_until(d.con, "power: boot 1: poweroff", sock)
    ends_with_shutdown(d, c, "guest-shutdown")
    assert "power: s3 did nothing" in text, text
    assert "power: status 0x00\npower: status did nothing" in text, text


@test("power")
def test_s5_without_qmp_exits_0(tmp):
    d = Daemon(tmp, smp=1, kernel=dl.ECHO, append="poweroff", qmp=False,
               console=False)
    status = d.wait()
    assert status == 0, "exit status %d: %s" % (status, d.log())


if __name__ == "__main__":
    sys.exit(dl.main())
