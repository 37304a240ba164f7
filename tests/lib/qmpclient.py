"""A QMP client for the tests: speaks the wire protocol over a Unix socket
and checks the framing of every message it reads (one JSON object per
line, CRLF-terminated, ASCII only). Waits are socket reads with a
timeout, never sleeps.

Used by tests/unit/rpc (against qmp_test_server) and tests/integration
(against mmud, which subclasses it to keep the events that arrive
between replies).
"""
import json
import socket


class Client:
    def __init__(self, path, negotiate=False, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.greeting = self.recv()
        if negotiate:
            assert self.cmd("qmp_capabilities") == {"return": {}}

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw(json.dumps(obj).encode())

    def recv(self):
        """One server message; checks CRLF and ASCII on the way."""
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        assert line.endswith(b"\r"), line
        assert all(b < 0x80 for b in line), line
        assert b"\r" not in line[:-1], line
        return json.loads(line[:-1])

    def reply(self):
        """The answer to a command: here simply the next message."""
        return self.recv()

    def cmd(self, execute, args=None, **extra):
        """Sends {"execute", "arguments"?, **extra}; returns the reply."""
        msg = {"execute": execute}
        if args is not None:
            msg["arguments"] = args
        msg.update(extra)
        self.send(msg)
        return self.reply()

    def expect_closed(self):
        """Reads until EOF; returns the messages received before it."""
        msgs = []
        try:
            while True:
                msgs.append(self.recv())
        except (EOFError, ConnectionResetError):
            return msgs

    def close(self):
        self.sock.close()
