#!/usr/bin/env python3
"""QMP over a real socket against qmp_test_server (tests/unit/rpc).

Speaks the wire protocol byte for byte: greeting, negotiation gate, id
echo, malformed and oversized input, argument validation, framing across
writes, many clients, reply order behind asynchronous commands, events,
CRLF and ASCII output; then drives mmuctl against the same server.
Every wait is a read with a timeout, never a sleep.
Usage: test_qmp.py QMP_TEST_SERVER MMUCTL
"""
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "lib"))
import qmpclient  # noqa: E402

TIMEOUT = 10


class Client(qmpclient.Client):
    def __init__(self, path, negotiate=False):
        super().__init__(path, negotiate, TIMEOUT)


def error(resp, cls, desc):
    assert "error" in resp, resp
    assert resp["error"] == {"class": cls, "desc": desc}, resp


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def test_greeting_shape_and_crlf(path):
    c = Client(path)
    g = c.greeting
    assert list(g) == ["QMP"], g
    assert g["QMP"]["capabilities"] == []
    v = g["QMP"]["version"]
    assert set(v) == {"qemu", "package"}
    assert v["qemu"] == {"micro": 0, "minor": 1, "major": 0}
    c.close()


@test
def test_negotiation_gate(path):
    c = Client(path)
    error(c.cmd("query-version", id="x"), "CommandNotFound",
          "Expecting capabilities negotiation with 'qmp_capabilities'")
    error(c.cmd("nope"), "CommandNotFound",
          "Expecting capabilities negotiation with 'qmp_capabilities'")
    r = c.cmd("query-version", id="x")
    assert r["id"] == "x"
    error(c.cmd("qmp_capabilities", {"enable": ["oob"]}), "GenericError",
          "Capability oob not available")
    error(c.cmd("qmp_capabilities", {"enable": ["bogus"]}), "GenericError",
          "Parameter 'enable[0]' does not accept value 'bogus'")
    error(c.cmd("qmp_capabilities", {"enable": "oob"}), "GenericError",
          "Invalid parameter type for 'enable', expected: array")
    assert c.cmd("qmp_capabilities", {"enable": []}, id=1) == \
        {"return": {}, "id": 1}
    error(c.cmd("qmp_capabilities"), "CommandNotFound",
          "Capabilities negotiation is already complete, command ignored")
    r = c.cmd("query-version")
    assert r["return"]["qemu"]["minor"] == 1
    c.close()


@test
def test_id_echoed_verbatim(path):
    c = Client(path, negotiate=True)
    for ident in ["libvirt-7", 42, -1, 1.5, {"a": [1, {"b": None}]},
                  [1, "x"], None, True, ""]:
        r = c.cmd("echo", id=ident)
        assert r == {"return": {}, "id": ident}, r
        r = c.cmd("nope", id=ident)
        assert r["id"] == ident and "error" in r
    c.close()


@test
def test_void_and_return_values(path):
    c = Client(path, negotiate=True)
    assert c.cmd("echo") == {"return": {}}
    assert c.cmd("echo", {"value": [1, "two"]}) == \
        {"return": {"value": [1, "two"]}}
    names = [x["name"] for x in c.cmd("query-commands")["return"]]
    for n in ["qmp_capabilities", "query-commands", "query-version", "echo",
              "typed", "async-sleep"]:
        assert n in names, names
    assert len(names) == len(set(names))
    c.close()


@test
def test_malformed_json_answered_and_connection_kept(path):
    c = Client(path, negotiate=True)
    c.send_raw(b'{ "execute": }')
    r = c.recv()
    assert r["error"]["class"] == "GenericError"
    assert r["error"]["desc"].startswith("JSON parse error, "), r
    assert "id" not in r
    c.send_raw(b'{"execute": "echo", "id": 1, "id": 2}')
    assert c.recv()["error"]["desc"].startswith("JSON parse error, ")
    c.send_raw(b'}')
    assert c.recv()["error"]["desc"].startswith("JSON parse error, ")
    assert c.cmd("echo", id="after") == {"return": {}, "id": "after"}
    c.close()


@test
def test_envelope_errors_qemu_texts(path):
    c = Client(path, negotiate=True)
    cases = [
        (b'[1, 2]', "QMP input must be a JSON object"),
        (b'"execute"', "QMP input must be a JSON object"),
        (b'{"execute": 1}', "QMP input member 'execute' must be a string"),
        (b'{"execute": "echo", "arguments": []}',
         "QMP input member 'arguments' must be an object"),
        (b'{"execute": "echo", "foo": 1}',
         "QMP input member 'foo' is unexpected"),
        (b'{"exec-oob": "echo"}', "QMP input member 'exec-oob' is unexpected"),
        (b'{"arguments": {}}', "QMP input lacks member 'execute'"),
        (b'{}', "QMP input lacks member 'execute'"),
    ]
    for raw, desc in cases:
        c.send_raw(raw)
        error(c.recv(), "GenericError", desc)
    c.send_raw(b'{"execute": 1, "id": "keep"}')
    assert c.recv()["id"] == "keep"
    c.close()


@test
def test_unknown_command(path):
    c = Client(path, negotiate=True)
    r = c.cmd("no-such-command", id=5)
    assert r == {"error": {"class": "CommandNotFound",
                           "desc": "The command no-such-command has not "
                                   "been found"}, "id": 5}
    c.close()


@test
def test_argument_validation_without_side_effects(path):
    c = Client(path, negotiate=True)
    before = c.cmd("typed", {"s": "a", "i": 1})["return"]["calls"]
    error(c.cmd("typed", {"s": "a", "i": 1, "bogus": 2}), "GenericError",
          "Parameter 'bogus' is unexpected")
    error(c.cmd("typed", {"s": "a"}), "GenericError",
          "Parameter 'i' is missing")
    error(c.cmd("typed", {"i": 1}), "GenericError",
          "Parameter 's' is missing")
    error(c.cmd("typed", {"s": 1, "i": 1}), "GenericError",
          "Invalid parameter type for 's', expected: string")
    error(c.cmd("typed", {"s": "a", "i": "1"}), "GenericError",
          "Invalid parameter type for 'i', expected: integer")
    error(c.cmd("typed", {"s": "a", "i": 1.0}), "GenericError",
          "Invalid parameter type for 'i', expected: integer")
    error(c.cmd("typed", {"s": "a", "i": 1, "b": "true"}), "GenericError",
          "Invalid parameter type for 'b', expected: boolean")
    error(c.cmd("typed", {"s": "a", "i": 1, "n": None}), "GenericError",
          "Invalid parameter type for 'n', expected: number")
    error(c.cmd("typed", {"s": "a", "i": 1, "o": []}), "GenericError",
          "Invalid parameter type for 'o', expected: object")
    error(c.cmd("typed", {"s": "a", "i": 1, "a": {}}), "GenericError",
          "Invalid parameter type for 'a', expected: array")
    error(c.cmd("echo", {"x": 1}), "GenericError",
          "Parameter 'x' is unexpected")
    error(c.cmd("nr-clients", {"x": 1}), "GenericError",
          "Parameter 'x' is unexpected")
    error(c.cmd("async-sleep", {"ms": -1}), "GenericError",
          "Parameter 'ms' expects a value in [0, 10000]")
    r = c.cmd("typed", {"s": "a", "i": 2, "b": True, "n": 2.5, "o": {},
                        "a": []})
    assert r["return"]["calls"] == before + 1, r
    assert r["return"]["n"] == 2.5
    c.close()


def assert_alive(path):
    c = Client(path, negotiate=True)
    assert c.cmd("echo", {"value": "alive"}) == {"return": {"value": "alive"}}
    c.close()


@test
def test_oversized_message_closes_only_that_client(path):
    other = Client(path, negotiate=True)
    c = Client(path, negotiate=True)
    big = b'{"execute": "echo", "arguments": {"value": "' + \
        b"x" * (1 << 20) + b'"}}'
    try:
        c.send_raw(big)
    except (BrokenPipeError, ConnectionResetError):
        pass
    msgs = c.expect_closed()
    for m in msgs:
        error(m, "GenericError", "JSON message size limit exceeded")
    # Just under the limit still works.
    ok = b'{"execute": "echo", "arguments": {"value": "' + \
        b"y" * ((1 << 20) - 100) + b'"}}'
    other.send_raw(ok)
    assert len(other.recv()["return"]["value"]) == (1 << 20) - 100
    assert other.cmd("echo", id=1) == {"return": {}, "id": 1}
    other.close()
    assert_alive(path)


@test
def test_deep_nesting_closes_only_that_client(path):
    other = Client(path, negotiate=True)
    c = Client(path, negotiate=True)
    try:
        c.send_raw(b"[" * 5000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    msgs = c.expect_closed()
    assert msgs, "no error before close"
    error(msgs[0], "GenericError", "JSON nesting depth limit exceeded")
    # 1000 levels are fine (an error about the envelope, not a close).
    other.send_raw(b"[" * 1000 + b"]" * 1000)
    error(other.recv(), "GenericError", "QMP input must be a JSON object")
    assert other.cmd("echo") == {"return": {}}
    other.close()


@test
def test_two_objects_in_one_write(path):
    c = Client(path, negotiate=True)
    c.send_raw(b'{"execute": "echo", "id": 1}{"execute": "echo", "id": 2}\n'
               b'  {"execute":\n"echo",\n"id": 3}')
    assert [c.recv()["id"] for _ in range(3)] == [1, 2, 3]
    c.close()


@test
def test_one_object_split_across_writes(path):
    c = Client(path, negotiate=True)
    probe = Client(path, negotiate=True)
    msg = b'{"execute": "echo", "arguments": {"value": "a}b\\"{"}, "id": 9}'
    for i in range(0, len(msg), 7):
        c.send_raw(msg[i:i + 7])
        # A round trip on another connection lets the server's loop
        # take in the piece on its own.
        assert probe.cmd("echo") == {"return": {}}
    assert c.recv() == {"return": {"value": 'a}b"{'}, "id": 9}
    probe.close()
    c.close()


@test
def test_control_character_resets_parser(path):
    c = Client(path, negotiate=True)
    c.send_raw(b'{"execute": "echo", "arguments": {\x1b')
    r = c.recv()
    assert r["error"]["desc"].startswith("JSON parse error"), r
    c.send_raw(b'\x01{"execute": "echo", "id": 2}')
    assert c.recv() == {"return": {}, "id": 2}
    c.close()


@test
def test_many_clients_at_once(path):
    clients = [Client(path) for _ in range(40)]
    for i, c in enumerate(clients):
        c.send_raw(json.dumps({"execute": "qmp_capabilities"}).encode() +
                   json.dumps({"execute": "echo", "arguments": {"value": i},
                               "id": i}).encode())
    for i, c in enumerate(clients):
        assert c.recv() == {"return": {}}
        assert c.recv() == {"return": {"value": i}, "id": i}
    n = clients[0].cmd("nr-clients")["return"]
    assert n >= 40, n
    for c in clients[1:]:
        c.close()
    deadline = time.monotonic() + TIMEOUT
    while clients[0].cmd("nr-clients")["return"] != 1:
        assert time.monotonic() < deadline, "closed clients linger"
    clients[0].close()


@test
def test_replies_in_order_behind_async_commands(path):
    c = Client(path, negotiate=True)
    c.send_raw(b'{"execute": "async-sleep", "arguments": {"ms": 300},'
               b' "id": 1}'
               b'{"execute": "echo", "id": 2}'
               b'{"execute": "thread-work", "arguments": {"value": 21},'
               b' "id": 3}'
               b'{ bad json }'
               b'{"execute": "nope", "id": 5}'
               b'{"execute": "async-sleep", "arguments": {"ms": 0},'
               b' "id": 6}'
               b'{"execute": "echo", "id": 7}')
    got = [c.recv() for _ in range(7)]
    assert got[0] == {"return": {"slept": 300}, "id": 1}, got
    assert got[1] == {"return": {}, "id": 2}
    assert got[2] == {"return": {"value": 42}, "id": 3}
    assert "id" not in got[3] and "error" in got[3]
    assert got[4]["id"] == 5 and "error" in got[4]
    assert got[5] == {"return": {"slept": 0}, "id": 6}
    assert got[6] == {"return": {}, "id": 7}
    # Another client is not held up by this one's pending command.
    c.send(dict(execute="async-sleep", arguments={"ms": 2000}, id="slow"))
    other = Client(path, negotiate=True)
    assert other.cmd("echo", id="fast") == {"return": {}, "id": "fast"}
    assert c.recv() == {"return": {"slept": 2000}, "id": "slow"}
    other.close()
    c.close()


@test
def test_client_gone_while_command_pending(path):
    # Its answers come when nobody is left to read them: the server
    # drops them and carries on (the orphan path, under ASan in CI).
    for cmd, args in (("async-sleep", {"ms": 100}),
                      ("thread-work", {"value": 1})):
        c = Client(path, negotiate=True)
        c.send(dict(execute=cmd, arguments=args, id=1))
        c.send(dict(execute="echo", id=2))
        c.close()
    other = Client(path, negotiate=True)
    # A longer timer of our own fires after the orphan's.
    assert other.cmd("async-sleep", {"ms": 200}) == {"return": {"slept": 200}}
    assert other.cmd("echo") == {"return": {}}
    other.close()


@test
def test_client_limit(path):
    first = Client(path, negotiate=True)
    deadline = time.monotonic() + TIMEOUT
    while first.cmd("nr-clients")["return"] != 1:
        assert time.monotonic() < deadline, "closed clients linger"
    clients = [Client(path) for _ in range(63)]
    # At the limit, the oldest idle client that has not negotiated makes
    # room for a new one, which is served.
    extra = Client(path, negotiate=True)
    assert clients[0].expect_closed() == [], "oldest un-negotiated stayed"
    assert extra.cmd("nr-clients")["return"] >= 64
    for c in clients[1:]:
        assert c.cmd("qmp_capabilities") == {"return": {}}
    # Every client negotiated: the 65th connection is refused.
    refused = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    refused.settimeout(TIMEOUT)
    refused.connect(path)
    assert refused.recv(100) == b"", "65th client was served"
    refused.close()
    extra.close()
    for c in clients:
        c.close()
    deadline = time.monotonic() + TIMEOUT
    while first.cmd("nr-clients")["return"] != 1:
        assert time.monotonic() < deadline, "closed clients linger"
    first.close()
    assert_alive(path)


@test
def test_backlog_beyond_queue_limit_is_served_in_order(path):
    c = Client(path, negotiate=True)
    msgs = [{"execute": "async-sleep", "arguments": {"ms": 100}, "id": 0}]
    msgs += [{"execute": "echo", "arguments": {"value": i}, "id": i}
             for i in range(1, 300)]
    c.send_raw("".join(json.dumps(m) for m in msgs).encode())
    for i in range(300):
        assert c.recv()["id"] == i
    c.close()


@test
def test_total_queue_limit_pauses_and_resumes_every_client(path):
    # 12 clients each queue ~1.4 MiB of text behind a pending request
    # (more than a client's 1 MiB; 16.8 MiB in all, more than the 16 MiB
    # total). Once their sends are done (the server has read them), 4 more
    # clients send a text each: with nothing of their own queued, only
    # requests of others finishing can let them in. Every request is
    # answered, in order.
    value = "v" * (700 << 10)
    early = [Client(path, negotiate=True) for _ in range(12)]
    late = [Client(path, negotiate=True) for _ in range(4)]
    errors = []
    sent = threading.Barrier(len(early) + 1)

    def run(i, c, msgs):
        try:
            c.send_raw("".join(json.dumps(m) for m in msgs).encode())
            if i < len(early):
                sent.wait(TIMEOUT)
            for k in range(len(msgs)):
                r = c.recv()
                assert r["id"] == k, (i, k, str(r)[:200])
                if msgs[k]["execute"] == "echo":
                    assert r["return"] == {"value": value}, (i, k)
        except Exception as e:  # noqa: BLE001
            errors.append((i, repr(e)[:300]))

    def echo(k):
        return {"execute": "echo", "arguments": {"value": value}, "id": k}

    threads = []
    for i, c in enumerate(early):
        msgs = [{"execute": "async-sleep", "arguments": {"ms": 1000},
                 "id": 0}, echo(1), echo(2)]
        threads.append(threading.Thread(target=run, args=(i, c, msgs),
                                        daemon=True))
        threads[-1].start()
    sent.wait(TIMEOUT)
    for i, c in enumerate(late):
        threads.append(threading.Thread(
            target=run, args=(len(early) + i, c, [echo(0)]), daemon=True))
        threads[-1].start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive(), "a client was never served"
    assert not errors, errors
    for c in early + late:
        c.close()
    assert_alive(path)


@test
def test_events_only_to_negotiated_clients(path):
    a = Client(path, negotiate=True)
    b = Client(path)
    r = a.cmd("emit", {"name": "TEST_EVENT", "data": {"k": "v"}})
    assert r == {"return": {}}
    ev = a.recv()
    assert ev["event"] == "TEST_EVENT"
    assert ev["data"] == {"k": "v"}
    ts = ev["timestamp"]
    assert set(ts) == {"seconds", "microseconds"}
    assert abs(ts["seconds"] - time.time()) < 60
    assert 0 <= ts["microseconds"] < 1000000
    assert a.cmd("emit", {"name": "BARE"}) == {"return": {}}
    ev = a.recv()
    assert ev["event"] == "BARE" and "data" not in ev, ev
    # b was not negotiated when both went out: its first message now is
    # the reply to qmp_capabilities.
    assert b.cmd("qmp_capabilities") == {"return": {}}
    assert b.cmd("emit", {"name": "AFTER"}) == {"return": {}}
    assert b.recv()["event"] == "AFTER"
    assert a.recv()["event"] == "AFTER"
    a.close()
    b.close()


@test
def test_ascii_output_for_unicode_input(path):
    c = Client(path, negotiate=True)
    c.send_raw('{"execute": "echo", "arguments": {"value": "caf\u00e9 '
               '\u2603"}}'.encode())
    c.buf = b""
    data = b""
    while not data.endswith(b"\r\n"):
        data += c.sock.recv(4096)
    assert data.lower() == \
        b'{"return": {"value": "caf\\u00e9 \\u2603"}}\r\n', data
    c.close()


@test
def test_eof_after_request_still_answered(path):
    c = Client(path, negotiate=True)
    c.send(dict(execute="async-sleep", arguments={"ms": 50}, id="x"))
    c.sock.shutdown(socket.SHUT_WR)
    assert c.recv() == {"return": {"slept": 50}, "id": "x"}
    assert c.expect_closed() == []
    c.close()


@test
def test_unread_output_is_bounded(path):
    slow = Client(path, negotiate=True)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c = Client(path, negotiate=True)
    data = {"blob": "z" * 65536}
    # 16 MiB of events to a client that does not read gets it dropped.
    for _ in range(300):
        c.send(dict(execute="emit", arguments={"name": "BIG", "data": data}))
        r = c.recv()
        while "event" in r:
            r = c.recv()
        assert r == {"return": {}}, r
    slow.buf = b""
    got = b""
    try:
        while True:
            d = slow.sock.recv(1 << 20)
            if not d:
                break
            got += d
    except ConnectionResetError:
        pass
    assert len(got) < 300 * 65536, len(got)
    slow.close()
    c.close()


def mmuctl(exe, path, *args, env=None):
    p = subprocess.run([exe, "--socket", path] + list(args),
                       capture_output=True, text=True, timeout=TIMEOUT,
                       env=env)
    return p.returncode, p.stdout, p.stderr


@test
def test_mmuctl_exit_statuses(path, exe):
    rc, out, err = mmuctl(exe, path, "status")
    assert rc == 0, (rc, out, err)
    assert "running" in out, out
    rc, out, err = mmuctl(exe, path, "audit")
    assert rc == 1 and "CommandNotFound" in err, (rc, err)
    assert "x-mmu-audit" in err
    rc, out, err = mmuctl(exe, path, "no-such-subcommand")
    assert rc == 2, (rc, err)
    rc, out, err = mmuctl(exe, path, "memslot", "remove")
    assert rc == 2 and "slot" in err, (rc, err)
    rc, out, err = mmuctl(exe, path, "memslot", "remove", "slot=x")
    assert rc == 2, (rc, err)
    rc, out, err = mmuctl(exe, path, "memslot", "remove", "bogus=1")
    assert rc == 2, (rc, err)
    rc, out, err = mmuctl(exe, path + ".missing", "status")
    assert rc == 2 and err, (rc, err)
    p = subprocess.run([exe, "status"], capture_output=True, text=True,
                       timeout=TIMEOUT, env={"PATH": os.environ["PATH"]})
    assert p.returncode == 2, p
    p = subprocess.run([exe, "--name", "no-such-vm", "status"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 2 and "/run/mmud/no-such-vm/qmp.sock" in \
        p.stderr, p
    p = subprocess.run([exe, "--name", "../x", "status"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 2, p
    p = subprocess.run([exe, "status"], capture_output=True, text=True,
                       timeout=TIMEOUT,
                       env={"PATH": os.environ["PATH"], "QMP_SOCKET": path})
    assert p.returncode == 0 and "running" in p.stdout, p
    rc, out, err = mmuctl(exe, path, "qmp", '{"execute": "fail"}')
    assert rc == 1 and "failed on purpose" in err, (rc, out, err)
    rc, out, err = mmuctl(exe, path, "qmp", '{"execute": ')
    assert rc == 2, (rc, err)


@test
def test_mmuctl_json_output(path, exe):
    rc, out, err = mmuctl(exe, path, "--json", "status")
    assert rc == 0, err
    assert json.loads(out) == {"running": True, "status": "running"}
    rc, out, err = mmuctl(exe, path, "--json", "cpus")
    assert json.loads(out)[1]["thread-id"] == 1235
    rc, out, err = mmuctl(exe, path, "--json", "stop")
    assert rc == 0 and json.loads(out) == {}, (out, err)
    rc, out, err = mmuctl(exe, path, "--json", "status")
    assert json.loads(out)["status"] == "paused"
    rc, out, err = mmuctl(exe, path, "cont")
    assert rc == 0 and out == "", (out, err)
    rc, out, err = mmuctl(exe, path, "qmp",
                          '{"execute": "echo", "arguments": {"value": 3},'
                          ' "id": "raw"}')
    assert rc == 0
    assert json.loads(out) == {"return": {"value": 3}, "id": "raw"}, out
    rc, out, err = mmuctl(exe, path, "--json", "qmp", '{"execute": "fail"}')
    assert rc == 1 and json.loads(out)["error"]["desc"] == \
        "failed on purpose", out


@test
def test_mmuctl_key_value_typing(path, exe):
    rc, out, err = mmuctl(exe, path, "--json", "memslot", "add",
                          "gpa=4G", "size=0x200000", "readonly=true",
                          "log-dirty=false")
    assert rc == 0, err
    args = json.loads(out)["args"]
    assert args == {"gpa": 4 << 30, "size": 0x200000, "readonly": True,
                    "log-dirty": False}, args
    rc, out, err = mmuctl(exe, path, "--json", "memslot", "add",
                          "gpa=0x100000000", "size=2M")
    assert json.loads(out)["args"] == {"gpa": 1 << 32, "size": 2 << 20}
    rc, out, err = mmuctl(exe, path, "--json", "dirty", "harvest", "slot=3",
                          "clear=false")
    assert json.loads(out)["args"] == {"slot": 3, "clear": False}, out
    rc, out, err = mmuctl(exe, path, "memslot", "add", "gpa=1", "size=1",
                          "readonly=maybe")
    assert rc == 2 and "readonly" in err, err
    rc, out, err = mmuctl(exe, path, "memslot", "add", "gpa=1Q", "size=1")
    assert rc == 2 and "gpa" in err, err


@test
def test_mmuctl_tables(path, exe):
    rc, out, err = mmuctl(exe, path, "cpus")
    assert rc == 0, err
    lines = out.splitlines()
    assert "cpu-index" in lines[0] and "thread-id" in lines[0], out
    assert "1235" in lines[2], out
    rc, out, err = mmuctl(exe, path, "memslot", "list")
    assert rc == 0 and "log-dirty" in out and "268435456" in out, out
    rc, out, err = mmuctl(exe, path, "stats")
    assert rc == 0 and "vm.mmu_shadow_zapped" in out, out
    assert "vcpus[0].pf_fixed" in out, out


@test
def test_mmuctl_help(path, exe):
    for args in (["--help"], ["help"]):
        p = subprocess.run([exe] + args, capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert p.returncode == 0 and "memslot" in p.stdout, p
        assert "console" in p.stdout
    for sub in (["status"], ["memslot", "add"], ["dirty", "harvest"],
                ["console"], ["qmp"]):
        p = subprocess.run([exe] + sub + ["--help"], capture_output=True,
                           text=True, timeout=TIMEOUT)
        assert p.returncode == 0 and p.stdout, (sub, p)
    p = subprocess.run([exe, "memslot", "add", "--help"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert "gpa" in p.stdout and "x-memslot-add" in p.stdout, p.stdout
    p = subprocess.run([exe, "--bogus"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 2


@test
def test_mmuctl_console_copies_stream(path, exe):
    d = tempfile.mkdtemp()
    cpath = os.path.join(d, "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(cpath)
    srv.listen(1)
    p = subprocess.Popen([exe, "--console-socket", cpath, "console"],
                         stdout=subprocess.PIPE)
    srv.settimeout(TIMEOUT)
    conn, _ = srv.accept()
    conn.sendall(b"hello from the guest\r\n" + bytes(range(256)))
    conn.close()
    out, _ = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0
    assert out == b"hello from the guest\r\n" + bytes(range(256))
    srv.close()
    os.unlink(cpath)
    os.rmdir(d)


def start_server(exe, path, stderr=None):
    p = subprocess.Popen([exe, path], stdout=subprocess.PIPE, text=True,
                         stderr=stderr)
    line = p.stdout.readline()
    if line != "ready\n":
        p.wait(timeout=TIMEOUT)
        return p, False
    return p, True


def main():
    server_exe, mmuctl_exe = sys.argv[1], sys.argv[2]
    signal.alarm(300)
    d = tempfile.mkdtemp()
    path = os.path.join(d, "qmp.sock")

    # A stale socket file (nobody listening) is replaced.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    srv, ok = start_server(server_exe, path)
    assert ok, "server did not start over a stale socket"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # A live socket is not taken over.
    second, ok = start_server(server_exe, path, stderr=subprocess.PIPE)
    assert not ok and second.returncode != 0
    assert "Address already in use" in second.stderr.read()
    second.stderr.close()
    assert_alive(path)

    failed = 0
    for t in TESTS:
        try:
            if t.__code__.co_argcount == 2:
                t(path, mmuctl_exe)
            else:
                t(path)
            print("ok", t.__name__)
        except Exception as e:  # report every failure, then fail
            import traceback
            traceback.print_exc()
            print("FAIL", t.__name__, repr(e))
            failed += 1
        sys.stdout.flush()

    # quit: the reply, then SHUTDOWN, then EOF; the socket file goes.
    c = Client(path, negotiate=True)
    other = Client(path, negotiate=True)
    assert c.cmd("quit", id="q") == {"return": {}, "id": "q"}
    ev = c.recv()
    assert ev["event"] == "SHUTDOWN"
    assert ev["data"] == {"guest": False, "reason": "host-qmp-quit"}
    assert c.expect_closed() == []
    assert other.recv()["event"] == "SHUTDOWN"
    assert srv.wait(timeout=TIMEOUT) == 0
    assert not os.path.exists(path)
    os.rmdir(d)
    if failed:
        print(failed, "failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
