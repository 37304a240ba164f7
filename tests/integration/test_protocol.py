#!/usr/bin/env python3
"""The QMP protocol of the real mmud: greeting, negotiation, ids, bad
and oversized input, many clients while vCPUs run.

Usage: test_protocol.py GROUP MMUD MMUCTL FOREVER_ELF [ECHO_ELF]
GROUP: protocol (meson: daemon-GROUP). Shared parts: tests/lib/daemonlib.py.
"""
import json
import os
import socket
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
import qmpclient  # noqa: E402
from daemonlib import (  # noqa: E402
    Daemon, error, test, assert_alive)


# ---- protocol ------------------------------------------------------------

@test("protocol")
def test_greeting_and_negotiation(tmp):
    d = Daemon(tmp)
    for path in (d.qmp, d.con):
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode), path
        assert stat.S_IMODE(st.st_mode) == 0o600, (path, oct(st.st_mode))
    c = d.client(negotiate=False)
    g = c.greeting
    assert list(g) == ["QMP"], g
    assert g["QMP"]["capabilities"] == []
    assert g["QMP"]["version"]["qemu"] == \
        {"micro": 0, "minor": 1, "major": 0}
    assert g["QMP"]["version"]["package"].startswith("mmud ")
    error(c.cmd("query-status", id=7), "CommandNotFound",
          "Expecting capabilities negotiation with 'qmp_capabilities'")
    # Wrong types and unknown arguments are refused, changing nothing.
    error(c.cmd("qmp_capabilities", {"enable": "oob"}), "GenericError",
          "Invalid parameter type for 'enable', expected: array")
    error(c.cmd("qmp_capabilities", {"enable": [], "x": 1}),
          "GenericError", "Parameter 'x' is unexpected")
    error(c.cmd("query-status"), "CommandNotFound")
    assert c.cmd("qmp_capabilities", id="n") == {"return": {}, "id": "n"}
    error(c.cmd("qmp_capabilities"), "CommandNotFound",
          "Capabilities negotiation is already complete, command ignored")
    r = c.cmd("query-version")
    assert r["return"] == g["QMP"]["version"], r
    names = {x["name"] for x in c.cmd("query-commands")["return"]}
    for n in ["qmp_capabilities", "query-version", "query-commands",
              "query-name", "query-status", "stop", "cont", "quit",
              "system_reset", "query-cpus-fast", "x-query-memslots",
              "x-query-mmu-stats", "x-mmu-audit", "query-target",
              "query-kvm", "query-memory-size-summary"]:
        assert n in names, (n, names)
    assert c.cmd("query-name") == {"return": {}}
    # What the machine is, as QEMU says it: software vCPUs, no KVM, the
    # default 256 MiB of boot RAM and nothing plugged in.
    assert c.cmd("query-target") == {"return": {"arch": "x86_64"}}
    assert c.cmd("query-kvm") == {"return": {"enabled": False,
                                             "present": False}}
    assert c.cmd("query-memory-size-summary") == {
        "return": {"base-memory": 256 << 20, "plugged-memory": 0}}
    error(c.cmd("query-kvm", {"x": 1}), "GenericError",
          "Parameter 'x' is unexpected")
    c.close()
    d.kill()


@test("protocol")
def test_id_echo_and_bad_input(tmp):
    d = Daemon(tmp)
    c = d.client()
    for ident in ["libvirt-7", 42, 1.5, {"a": [1, None]}, [1, "x"], None,
                  True, ""]:
        r = c.cmd("query-status", id=ident)
        assert r["id"] == ident and r["return"]["status"] == "running", r
        r = c.cmd("nope", id=ident)
        assert r["id"] == ident, r
        error(r, "CommandNotFound", "The command nope has not been found")
    # Malformed JSON: an error without id, and the connection stays.
    c.send_raw(b'{ "execute": }')
    r = c.reply()
    assert r["error"]["desc"].startswith("JSON parse error, ") and \
        "id" not in r, r
    error(c.cmd("query-status", {"verbose": True}, id=3), "GenericError",
          "Parameter 'verbose' is unexpected")
    c.send_raw(b'{"execute": 5}')
    error(c.reply(), "GenericError",
          "QMP input member 'execute' must be a string")
    c.send_raw(b'{"execute": "stop", "arguments": [1]}')
    error(c.reply(), "GenericError",
          "QMP input member 'arguments' must be an object")
    c.send_raw(b'[1, 2]')
    error(c.reply(), "GenericError", "QMP input must be a JSON object")
    # Refused input changed nothing: still running, no event came.
    r = c.cmd("query-status")
    assert r["return"] == {"running": True, "singlestep": False, "status": "running"}, r
    assert not c.events, c.events
    c.close()
    assert_alive(d)
    d.kill()


@test("protocol")
def test_oversized_and_deep_input_close_only_that_client(tmp):
    d = Daemon(tmp)
    other = d.client()
    c = d.client()
    big = b'{"execute": "query-status", "id": "' + b"x" * (1 << 20) + \
        b'"}'
    try:
        c.send_raw(big)
    except (BrokenPipeError, ConnectionResetError):
        pass
    msgs = c.expect_closed()
    for m in msgs:
        error(m, "GenericError", "JSON message size limit exceeded")
    c = d.client()
    try:
        c.send_raw(b"[" * 5000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    msgs = c.expect_closed()
    assert msgs, "no error before close"
    error(msgs[0], "GenericError", "JSON nesting depth limit exceeded")
    assert other.cmd("query-status", id=1)["id"] == 1
    other.close()
    assert_alive(d)
    d.kill()


@test("protocol")
def test_many_clients_while_vcpus_run(tmp):
    d = Daemon(tmp)
    clients = [d.client() for _ in range(24)]
    for rnd in range(5):
        for i, c in enumerate(clients):
            c.send({"execute": "query-status", "id": [i, rnd]})
            c.send({"execute": "query-cpus-fast", "id": [i, rnd, 1]})
        for i, c in enumerate(clients):
            assert c.reply()["id"] == [i, rnd]
            r = c.reply()
            assert r["id"] == [i, rnd, 1] and len(r["return"]) == 2, r
    # Replies keep request order behind commands that finish on the
    # worker, even when one write carries them all.
    c = clients[2]
    batch = [("x-mmu-audit", 1), ("query-status", 2), ("stop", 3),
             ("query-status", 4), ("x-query-mmu-stats", 5), ("cont", 6),
             ("query-status", 7)]
    c.send_raw(b"".join(json.dumps({"execute": e, "id": i}).encode()
                        for e, i in batch))
    replies = [c.reply() for _ in batch]
    assert [r["id"] for r in replies] == [i for _, i in batch], replies
    assert replies[1]["return"]["status"] == "running", replies
    assert replies[3]["return"]["status"] == "paused", replies
    assert replies[6]["return"]["status"] == "running", replies
    for cl in clients:
        cl.event("STOP")
        cl.event("RESUME")
    # An event reaches every negotiated client, once.
    r = clients[0].cmd("stop")
    assert r == {"return": {}}, r
    for c in clients:
        c.event("STOP")
    assert clients[1].cmd("cont") == {"return": {}}
    for c in clients:
        c.event("RESUME")
    for c in clients:
        c.close()
    assert_alive(d)
    d.kill()


@test("protocol")
def test_integers_and_ids_read_and_echoed_as_qemu_does(tmp):
    # QEMU reads an integer as int64, else uint64, else a double, and
    # echoes an id exactly; its Python library drops a connection whose
    # server answers with an id-less error. Raw lines are checked, since
    # Python's json would hide 1500 vs 1500.0.
    d = Daemon(tmp)
    c = d.client()
    for text, echo in [(b"9223372036854775808", b"9223372036854775808"),
                       (b"18446744073709551615", b"18446744073709551615"),
                       (b"[9223372036854775807, 18446744073709551615]",
                        b"[9223372036854775807, 18446744073709551615]"),
                       (b"18446744073709551616", b"1.8446744073709552e19"),
                       (b"-9223372036854775809", b"-9.2233720368547758e18"),
                       (b"1.5e3", b"1500"), (b"[1.5e3, 2.5]", b"[1500, 2.5]"),
                       (b"-9223372036854775808", b"-9223372036854775808")]:
        c.send_raw(b'{"execute": "query-status", "id": ' + text + b"}")
        while True:
            line = c.sock.recv(65536) if b"\n" not in c.buf else b""
            c.buf += line
            if b"\n" in c.buf:
                break
        line, c.buf = c.buf.split(b"\n", 1)
        assert b'"return"' in line and line.endswith(b'"id": ' + echo +
                                                     b"}\r"), (text, line)
    # Range-checked per argument, with the id: gpa 2^63 is one past the
    # largest address, 2^64 - 1 too, and a u64 is not a string.
    for gpa in [2 ** 63, 2 ** 64 - 1]:
        r = c.cmd("x-memslot-add", {"gpa": gpa, "size": 4096}, id=gpa)
        assert r["id"] == gpa, r
        error(r, "GenericError", "Parameter 'gpa' expects a number from "
              "0 to 9223372036854775807")
    error(c.cmd("x-memslot-add", {"gpa": 2 ** 64, "size": 4096}, id=1),
          "GenericError", "Invalid parameter type for 'gpa', expected: "
          "integer")
    error(c.cmd("ringbuf-write", {"device": 2 ** 63, "data": ""}, id=2),
          "GenericError", "Invalid parameter type for 'device', expected: "
          "string")
    r = c.cmd(2 ** 63, id=3)
    error(r, "GenericError", "QMP input member 'execute' must be a string")
    assert r["id"] == 3, r
    # A NUL in a string stays refused.
    c.send_raw(b'{"execute": "query-status", "id": "a\\u0000"}')
    r = c.reply()
    assert r["error"]["desc"].startswith("JSON parse error, ") and \
        "id" not in r, r
    assert c.cmd("query-status", id=4)["id"] == 4
    c.close()
    d.kill()


@test("protocol")
def test_replies_fit_qemus_64k_read_limit(tmp):
    # QEMU's asyncio client drops a connection whose message exceeds
    # 64 KiB. Boot RAM of 2 GiB is slot 0 with 524288 pages: a whole-slot
    # harvest would be ~87 KiB. It is refused, naming the size and the
    # way out, without harvesting; ranges of at most 391680 pages fit.
    d = Daemon(tmp, "--paused", "--memory", "2G", smp=64)
    c = d.client()
    c.limit = qmpclient.QEMU_READ_LIMIT
    assert len(c.cmd("query-cpus-fast")["return"]) == 64
    assert len(c.cmd("x-query-mmu-stats")["return"]["vcpus"]) == 64
    c.cmd("query-commands")
    c.cmd("x-query-memslots")
    assert c.cmd("x-dirty-log-start", {"slot": 0}) == {"return": {}}
    # The loader's writes at reset are logged: known dirty pages.
    assert c.cmd("system_reset") == {"return": {}}
    n = 391680
    peek = c.cmd("x-dirty-log-harvest", {"slot": 0, "clear": False,
                                         "first-page": 0})["return"]
    assert peek["num-pages"] == n and peek["dirty-pages"] > 0, peek
    r = c.cmd("x-dirty-log-harvest", {"slot": 0}, id="whole")
    assert r["id"] == "whole", r
    desc = r["error"]["desc"]
    assert "524288 pages" in desc and "first-page" in desc and \
        "num-pages" in desc and "65536" in desc, desc
    # The second range, cleared: the first one's pages stay dirty.
    tail = c.cmd("x-dirty-log-harvest", {"slot": 0, "first-page": n,
                                         "num-pages": n})["return"]
    assert tail["first-page"] == n and tail["num-pages"] == 524288 - n, tail
    head = c.cmd("x-dirty-log-harvest", {"slot": 0, "first-page": 0,
                                         "num-pages": n})["return"]
    assert head["bitmap"] == peek["bitmap"] and \
        head["dirty-pages"] == peek["dirty-pages"], (head, peek)
    again = c.cmd("x-dirty-log-harvest", {"slot": 0, "num-pages": 64})
    assert again["return"]["dirty-pages"] == 0, again
    for args, field in [({"first-page": 100}, "first-page"),
                        ({"num-pages": 0}, "num-pages"),
                        ({"num-pages": n + 1}, "num-pages")]:
        args["slot"] = 0
        r = c.cmd("x-dirty-log-harvest", args)
        assert r["error"]["desc"].startswith("Parameter '%s' expects " %
                                             field), r
    error(c.cmd("x-dirty-log-harvest", {"slot": 0, "first-page": 524288}),
          "GenericError",
          "first-page: 524288 is not below the 524288 pages of slot 0")
    # A 1 GiB hot-added slot harvests whole.
    r = c.cmd("x-memslot-add", {"gpa": 1 << 33, "size": 1 << 30,
                                "log-dirty": True})
    s = r["return"]["slot"]
    r = c.cmd("x-dirty-log-harvest", {"slot": s})
    assert r["return"]["dirty-pages"] == 0, r
    assert_alive(d)
    d.kill()


def vm_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


@test("protocol")
def test_queued_input_costs_its_bytes_not_45_times_them(tmp):
    # A client's requests wait behind a pending one (its stop waits on the
    # worker, kept busy by another client's harvests of a 64 GiB slot).
    # Texts of ~1 MiB of nested empty arrays used to be parsed as they
    # arrived, ~45 MiB each in jansson: two clients queuing eight each
    # took ~700 MiB. Now a queue holds about 1 MiB of raw text, a text is
    # parsed only at its turn, and a parse may take at most 8 MiB.
    d = Daemon(tmp)
    busy = d.client()
    r = busy.cmd("x-memslot-add", {"gpa": 1 << 40, "size": 64 << 30,
                                   "log-dirty": True})
    slot = r["return"]["slot"]
    clients = [d.client() for _ in range(2)]
    base_rss = vm_kib(d.proc.pid, "VmRSS")
    base_hwm = vm_kib(d.proc.pid, "VmHWM")
    busy.send_raw(b"".join(json.dumps(
        {"execute": "x-dirty-log-harvest", "id": i,
         "arguments": {"slot": slot, "num-pages": 64}}).encode()
        for i in range(40)))
    text = b"[" + b"[]," * 349000 + b"[]]"
    assert len(text) <= 1 << 20
    n = 8
    senders = []
    for c in clients:
        c.send({"execute": "stop", "id": "s"})
        t = threading.Thread(target=c.send_raw, args=(text * n,),
                             daemon=True)
        t.start()
        senders.append(t)
    for i in range(40):
        assert busy.reply()["id"] == i
    for c in clients:
        assert c.reply() == {"return": {}, "id": "s"}
        for i in range(n):
            r = c.reply()
            assert r["error"]["desc"] == "JSON parse error, the message " \
                "takes more than 8 MiB once parsed" and "id" not in r, r
    for t in senders:
        t.join()
    rss = vm_kib(d.proc.pid, "VmRSS")
    hwm = vm_kib(d.proc.pid, "VmHWM")
    print("RSS %d -> %d KiB, peak %d -> %d KiB" % (base_rss, rss, base_hwm,
                                                   hwm))
    # Under a sanitizer freed memory sits in a quarantine (ASan's is
    # 256 MiB), so the peak says nothing there.
    if not os.environ.get("MMUD_SLOW"):
        assert hwm - base_hwm < 64 << 10, (base_hwm, hwm)
    # Still usable: a parsed message, and the VM resumes.
    assert clients[0].cmd("cont", id=1) == {"return": {}, "id": 1}
    assert_alive(d)
    d.kill()


@test("protocol")
def test_slow_clients_do_not_lock_the_operator_out(tmp):
    # 64 clients that connect and never negotiate used to hold every
    # slot for good: the 65th got EOF. Now a new client closes the oldest
    # idle un-negotiated one, and un-negotiated clients are closed after
    # 10 s; both are logged.
    d = Daemon(tmp)
    base_rss = vm_kib(d.proc.pid, "VmRSS")
    slow = [d.client(negotiate=False) for _ in range(64)]
    c = d.client()
    assert c.cmd("query-status", id=1)["id"] == 1
    assert slow[0].expect_closed() == []
    log = d.log()
    assert "closing the oldest one that has not negotiated" in log, log
    # The rest are closed by the negotiation timeout (the socket's own
    # timeout, dl.TIMEOUT, is longer).
    for s in slow[1:]:
        assert s.expect_closed() == []
    log = d.log()
    assert "did not send qmp_capabilities within 10000 ms" in log, log
    rss = vm_kib(d.proc.pid, "VmRSS")
    print("RSS %d -> %d KiB" % (base_rss, rss))
    # A negotiated client is not timed out.
    assert c.cmd("query-status", id=2)["id"] == 2
    c.close()
    assert_alive(d)
    d.kill()


@test("protocol")
def test_exit_unlinks_only_the_sockets_it_bound(tmp):
    # The sockets' directory is renamed after mmud bound them and a
    # symlink to another directory, holding files of the same names, put
    # in its place (a user who owns a directory on the path can do this
    # to root's mmud). At exit mmud used to unlink by path, deleting the
    # other directory's files. Now it removes its sockets from the
    # directory it bound them in, and only them.
    mine = os.path.join(tmp, "run")
    os.mkdir(mine)
    qmp = os.path.join(mine, "qmp.sock")
    con = os.path.join(mine, "console.sock")
    d = Daemon(tmp, "--qmp", qmp, "--console", "socket:" + con,
               qmp=False, console=False)
    for path in (qmp, con):
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode), path
        assert stat.S_IMODE(st.st_mode) == 0o600, (path, oct(st.st_mode))
    d.qmp = qmp
    c = d.client()
    os.rename(mine, mine + ".old")
    other = os.path.join(tmp, "other")
    os.mkdir(other)
    for name in ("qmp.sock", "console.sock"):
        with open(os.path.join(other, name), "w") as f:
            f.write("not mmud's\n")
    os.symlink(other, mine)
    c.send({"execute": "quit"})
    c.expect_closed()
    assert d.wait() == 0, d.log()
    for name in ("qmp.sock", "console.sock"):
        with open(os.path.join(other, name)) as f:
            assert f.read() == "not mmud's\n", name
        assert not os.path.exists(os.path.join(mine + ".old", name)), name
    d.kill()
    # A socket file replaced in place by another file is left alone too.
    os.unlink(mine)
    os.rename(mine + ".old", mine)
    d2 = Daemon(tmp, "--qmp", qmp, qmp=False)
    d2.qmp = qmp
    c = d2.client()
    os.unlink(qmp)
    with open(qmp, "w") as f:
        f.write("replaced\n")
    c.send({"execute": "quit"})
    c.expect_closed()
    assert d2.wait() == 0, d2.log()
    with open(qmp) as f:
        assert f.read() == "replaced\n"
    d2.kill()


@test("protocol")
def test_out_of_descriptors_backs_off_and_says_why(tmp):
    # Under a low descriptor limit, accept() failing with EMFILE left the
    # connection in the backlog and libevent logged every retry (91,527
    # lines in 5 s); x-memslot-add blamed its size. Now the listener
    # pauses with one log line, the command names the reason, and
    # accepting resumes once descriptors are free.
    d, limit = dl.daemon_short_of_descriptors(tmp, console=False)
    c = d.client()
    extra = []
    # Fill the table with negotiated clients (the negotiation timeout
    # must not free descriptors behind the test's back), then leave three
    # connections in the backlog: accept() fails for them.
    while dl.fds_of(d) < limit:
        extra.append(d.client())
    waiting = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
               for _ in range(3)]
    for w in waiting:
        w.connect(d.qmp)
    r = c.cmd("x-memslot-add", {"gpa": 1 << 33, "size": 2 << 20}, id=1)
    assert r["id"] == 1, r
    assert r["error"]["desc"] == "cannot create the slot's memory: Too " \
        "many open files (the daemon is out of file descriptors)", r
    # Two seconds of a full table: the loop keeps serving, and the log
    # has one line for it, not thousands.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert c.cmd("query-status")["return"]["status"] == "running"
    log = d.log()
    assert log.count("cannot accept a client: Too many open files") == 1, \
        log[-2000:]
    assert log.count("\n") < 20, log[-2000:]
    for e in extra:
        e.close()
    # The ones that waited are served once descriptors are free.
    for w in waiting:
        w.settimeout(dl.TIMEOUT)
        assert w.recv(4096).startswith(b'{"QMP"'), "no greeting"
        w.close()
    assert "accepting clients again" in d.log(), d.log()[-2000:]
    assert_alive(d)
    d.kill()


@test("protocol")
def test_commands_queued_behind_quit_are_all_answered(tmp):
    # quit, then commands that run on the worker, in one write: the ones
    # dispatched while the worker is being freed used to be queued on a
    # stopped worker, never answered, and leaked (LSan). Each must get a
    # reply (done, or refused because the VM is shutting down), in order,
    # before the connection closes; mmud exits 0.
    d = Daemon(tmp)
    c = d.client()
    n = 8
    c.send_raw(json.dumps({"execute": "quit", "id": "q"}).encode() +
               b"".join(json.dumps({"execute": e, "id": i}).encode()
                        for i, e in enumerate(["x-mmu-audit",
                                               "x-mmu-zap-all"] * (n // 2))))
    msgs = c.expect_closed()
    replies = [m for m in msgs if "event" not in m]
    assert [r.get("id") for r in replies] == ["q"] + list(range(n)), msgs
    for r in replies[1:]:
        assert "return" in r or r["error"]["desc"] == \
            "The VM is shutting down", r
    assert d.wait() == 0, d.log()
    d.sockets_gone()
    d.kill()


if __name__ == "__main__":
    sys.exit(dl.main())
