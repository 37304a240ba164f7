#!/usr/bin/env python3
"""Run states and events of the real mmud (stop, cont, reset, quit,
signals, --paused) and how the guest ends it (exit, crash, panic).

Usage: test_runstate.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
GROUP: runstate, guest-end (meson: daemon-GROUP). Shared parts: tests/lib/daemonlib.py.
"""
import json
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import (  # noqa: E402
    TIMEOUT, Daemon, error, test, read_console_until,
    client_then_cont)


# ---- run states and events ----------------------------------------------

@test("runstate")
def test_stop_cont_reset_quit_sequences(tmp):
    d = Daemon(tmp)
    c = d.client()
    watcher = d.client()
    quiet = d.client(negotiate=False)
    assert c.cmd("stop", id=1) == {"return": {}, "id": 1}
    # QEMU's order: the event came before the reply (reply() kept it).
    assert [m["event"] for m in c.events] == ["STOP"], c.events
    ev, before = c.event("STOP")
    assert "data" not in ev and not before, (ev, before)
    watcher.event("STOP")
    assert c.cmd("query-status")["return"] == \
        {"running": False, "singlestep": False, "status": "paused"}
    # stop again: succeeds, no event (the next message is the reply).
    assert c.cmd("stop") == {"return": {}}
    assert c.cmd("query-status")["return"]["status"] == "paused"
    assert not c.events
    # Paused vCPUs do not run: their instruction counts stand still.
    n1 = [v["instructions"] for v in c.cmd("query-cpus-fast")["return"]]
    assert all(v["state"] == "paused"
               for v in c.cmd("query-cpus-fast")["return"])
    assert c.cmd("x-mmu-audit") == {"return": {}}
    n2 = [v["instructions"] for v in c.cmd("query-cpus-fast")["return"]]
    assert n1 == n2, (n1, n2)
    assert c.cmd("cont") == {"return": {}}
    assert [m["event"] for m in c.events] == ["RESUME"], c.events
    c.event("RESUME")
    assert c.cmd("cont") == {"return": {}}
    assert c.cmd("query-status")["return"] == \
        {"running": True, "singlestep": False, "status": "running"}
    # Reset while running: RESET, still running.
    assert c.cmd("system_reset") == {"return": {}}
    assert [m["event"] for m in c.events] == ["RESET"], c.events
    ev, before = c.event("RESET")
    assert ev["data"] == {"guest": False,
                          "reason": "host-qmp-system-reset"}, ev
    assert not before, before
    assert c.cmd("query-status")["return"]["status"] == "running"
    # Reset while paused: ends in prelaunch, cont starts it.
    c.cmd("stop")
    c.event("STOP")
    c.cmd("system_reset")
    c.event("RESET")
    assert c.cmd("query-status")["return"] == \
        {"running": False, "singlestep": False, "status": "prelaunch"}
    assert c.cmd("cont") == {"return": {}}
    c.event("RESUME")
    assert c.cmd("x-mmu-audit") == {"return": {}}
    # quit: SHUTDOWN, the reply (QEMU's order), EOF, status 0, sockets
    # gone.
    c.send({"execute": "quit", "id": "q"})
    msgs = c.expect_closed()
    assert [m.get("event") for m in msgs] == ["SHUTDOWN", None], msgs
    assert msgs[0]["data"] == {"guest": False, "reason": "host-qmp-quit"}
    assert msgs[1] == {"return": {}, "id": "q"}, msgs
    w = watcher.expect_closed()
    assert [m["event"] for m in w] == ["RESUME", "RESET", "STOP",
                                       "RESET", "RESUME", "SHUTDOWN"], w
    assert quiet.expect_closed() == []
    assert d.wait() == 0, d.log()
    d.notify.wait("STOPPING=1")
    d.sockets_gone()
    d.kill()


@test("runstate")
def test_control_plane_storm_while_vcpus_run(tmp):
    # Several clients pipeline stop, cont, reset, audits and queries in
    # a fixed pseudo-random mix while the vCPUs run; every reply comes,
    # in order, every audit is clean, and the guest runs on afterwards.
    d = Daemon(tmp, smp=3)
    clients = [d.client() for _ in range(4)]
    mix = ["stop", "cont", "system_reset", "x-mmu-audit", "query-cpus-fast",
           "x-query-mmu-stats", "query-status", "x-mmu-audit", "cont"]
    seed = 12345
    sent = []
    for c in clients:
        cmds = []
        for i in range(40):
            seed = (seed * 1103515245 + 12345) & 0x7fffffff
            cmds.append(mix[seed % len(mix)])
        c.send_raw(b"".join(json.dumps({"execute": e, "id": i}).encode()
                            for i, e in enumerate(cmds)))
        sent.append(cmds)
    for c, cmds in zip(clients, sent):
        for i, e in enumerate(cmds):
            r = c.reply()
            assert r["id"] == i, (i, e, r)
            if e == "cont" and "error" in r:
                continue
            assert "return" in r, (e, r)
    c = clients[0]
    assert c.cmd("cont") == {"return": {}}
    assert c.cmd("x-mmu-audit") == {"return": {}}
    assert c.cmd("query-status")["return"]["status"] == "running"
    # New output after the replay: the guest runs.
    s, _ = read_console_until(d.con, "forever: up")
    read_console_until(d.con, "tick", sock=s)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("runstate")
def test_sigterm_and_sigint_shut_down_cleanly(tmp):
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = Daemon(tmp)
        c = d.client()
        d.proc.send_signal(sig)
        msgs = c.expect_closed()
        assert [m.get("event") for m in msgs] == ["SHUTDOWN"], msgs
        assert msgs[0]["data"] == {"guest": False, "reason": "host-signal"}
        assert d.wait() == 0, d.log()
        d.sockets_gone()
        d.kill()


@test("runstate")
def test_paused_start_waits_for_cont(tmp):
    d = Daemon(tmp, "--paused")
    assert "STATUS=VM prelaunch" in d.ready.split("\n"), d.ready
    c = d.client()
    assert c.cmd("query-status")["return"] == \
        {"running": False, "singlestep": False, "status": "prelaunch"}
    cpus = c.cmd("query-cpus-fast")["return"]
    assert [v["instructions"] for v in cpus] == [0, 0], cpus
    con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    con.connect(d.con)
    # stop in prelaunch: nothing changes, no event.
    assert c.cmd("stop") == {"return": {}}
    assert c.cmd("query-status")["return"]["status"] == "prelaunch"
    assert c.cmd("cont") == {"return": {}}
    c.event("RESUME")
    d.notify.wait("STATUS=VM running")
    con.settimeout(TIMEOUT)
    _, text = read_console_until(d.con, "fresh\n", sock=con)
    assert text.startswith("forever: up, 2 vcpus, fresh\n"), text
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


# ---- how the guest ends --------------------------------------------------

@test("guest-end")
def test_guest_exit_ends_mmud_with_its_status(tmp):
    d = Daemon(tmp, "--paused", append="exit=5")
    c = client_then_cont(d)
    ev, _ = c.event("SHUTDOWN")
    assert ev["data"] == {"guest": True, "reason": "guest-shutdown"}, ev
    assert c.expect_closed() == []
    assert d.wait() == 11, d.log()  # ((5 << 1) | 1)
    d.sockets_gone()
    d.kill()


@test("guest-end")
def test_crash_pauses_in_guest_panicked_until_reset(tmp):
    for how in ("crash", "halt"):
        d = Daemon(tmp, "--paused", append=how)
        c = client_then_cont(d)
        ev, _ = c.event("GUEST_PANICKED")
        assert ev["data"] == {"action": "pause"}, ev
        c.event("STOP")
        assert c.cmd("query-status")["return"] == \
            {"running": False, "singlestep": False, "status": "guest-panicked"}
        error(c.cmd("cont"), "GenericError",
              "Resetting the Virtual Machine is required")
        states = {v["state"] for v in c.cmd("query-cpus-fast")["return"]}
        assert states & {"crashed", "halted"}, states
        assert c.cmd("system_reset") == {"return": {}}
        c.event("RESET")
        assert c.cmd("query-status")["return"]["status"] == "prelaunch"
        con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        con.settimeout(TIMEOUT)
        con.connect(d.con)
        assert c.cmd("cont") == {"return": {}}
        c.event("RESUME")
        # The guest boots again from reloaded memory and crashes again.
        ev, _ = c.event("GUEST_PANICKED")
        text = ""
        while text.count("forever: up") < 2 or "tick 3" not in \
                text[text.rfind("forever: up"):]:
            chunk = con.recv(65536)
            assert chunk, text
            text += chunk.decode()
        assert text.count("forever: up, 2 vcpus, fresh\n") == 2, text
        c.cmd("quit")
        assert d.wait() == 0, d.log()
        assert "guest crashed" in d.log(), d.log()
        d.kill()


@test("guest-end")
def test_crash_with_panic_exit(tmp):
    d = Daemon(tmp, "--panic", "exit", "--paused", append="crash")
    c = client_then_cont(d)
    ev, _ = c.event("GUEST_PANICKED")
    assert ev["data"] == {"action": "poweroff"}, ev
    ev, _ = c.event("SHUTDOWN")
    assert ev["data"] == {"guest": True, "reason": "guest-panic"}, ev
    assert d.wait() == 2, d.log()
    assert "triple fault" in d.log(), d.log()
    d.kill()
    # Without a QMP socket the default is to exit, as before.
    d = Daemon(tmp, qmp=False, append="crash")
    assert d.wait() == 2, d.log()
    d.kill()


if __name__ == "__main__":
    sys.exit(dl.main())
