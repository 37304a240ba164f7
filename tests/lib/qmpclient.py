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

# QEMU's Python library (qemu.qmp) reads with asyncio's StreamReader and
# its default limit: a message of more than 64 KiB ends the connection.
QEMU_READ_LIMIT = 64 * 1024


class MessageTooLarge(ConnectionError):
    """A server message exceeded the client's read limit; as QEMU's
    library does, the client has dropped the connection."""


class Client:
    # None: no limit; QEMU_READ_LIMIT behaves as QEMU's asyncio client
    # (set it on an instance to read what follows with that limit).
    limit = None

    def __init__(self, path, negotiate=False, timeout=10, limit=None):
        self.limit = limit
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
        """One server message; checks CRLF and ASCII on the way. With a
        limit, a message longer than it (CRLF included) closes the
        connection and raises MessageTooLarge."""
        while b"\n" not in self.buf:
            self._check_limit(len(self.buf))
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        self._check_limit(len(line) + 1)
        assert line.endswith(b"\r"), line
        assert line.isascii(), line
        assert b"\r" not in line[:-1], line
        return json.loads(line[:-1])

    def _check_limit(self, n):
        if self.limit is not None and n > self.limit:
            self.sock.close()
            raise MessageTooLarge("a message of more than %d bytes from "
                                  "the server (%d so far)" % (self.limit, n))

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
