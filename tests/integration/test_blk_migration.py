#!/usr/bin/env python3
"""Migration of a VM with a drive (docs/MIGRATION.md, "virtio-blk"):
tests/guests/blk_migrate.c keeps eight requests in flight on the first
drive's queue, each write read back and compared, while the VM moves.

live:     over unix:, with requests in flight at the switchover: the
          guest goes on on the destination (same image, shared storage)
          without a lost, repeated or stale request; after it drained
          and flushed, the image is exactly what it wrote.
failure:  a switchover that fails after the drive was quiesced (the
          destination gone at pre-switchover, then migrate-continue):
          the source resumes and its guest I/O goes on to the same
          image check.
          And a cancel in the same place: the stream goes to an fd:
          socket the test holds, whose send buffer it fills at
          pre-switchover, so that the switchover's first write (after
          the quiesce) blocks; migrate_cancel ends it, cancelled, and
          the source's guest I/O goes on to the same check.
file:     save to a file: URI, restore in a new process whose own
          --drive opens the image; the guest goes on.
mismatch: a destination whose drive differs (size, readonly, none, one
          too many) refuses the stream before any page with the drive
          named, exits 6, its image untouched; the source runs on.

Usage: test_blk_migration.py GROUP MMUD MMUCTL FOREVER_ELF BLK_MIGRATE_ELF
"""
import json
import os
import re
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import TIMEOUT, Daemon, test  # noqa: E402
from miglib import listen, ok, wait_status  # noqa: E402

GUEST = None
MEM = "64M"
IMAGE = 8 << 20
CHUNK = 32 << 10
SECTOR = 512
WRITTEN = re.compile(r"blk_migrate: written (\d+)\n")
DONE = re.compile(r"blk_migrate: done (\d+) writes\n")


def make_image(path, size=IMAGE):
    with open(path, "wb") as f:
        f.truncate(size)


def expected_image(writes, size=IMAGE):
    """The image after writes 0..writes-1 (blk_migrate.c's layout)."""
    nr_chunks = size // CHUNK
    per = CHUNK // SECTOR
    img = bytearray(size)
    for c in range(nr_chunks):
        last = None
        n = c
        while n < writes:
            last = n
            n += nr_chunks
        if last is None:
            continue
        for i in range(per):
            s = c * per + i
            img[s * SECTOR:(s + 1) * SECTOR] = (
                struct.pack("<QQ", last, s) +
                bytes([(last ^ s) & 0xff]) * (SECTOR - 16))
    return bytes(img)


def check_image(path, writes):
    want = expected_image(writes)
    with open(path, "rb") as f:
        got = f.read()
    assert len(got) == len(want), (len(got), len(want))
    if got != want:
        first = next(i for i in range(len(got)) if got[i] != want[i])
        s = first // SECTOR
        raise AssertionError(
            "after %d writes the image differs at byte %d (sector %d): "
            "%r, expected %r" % (writes, first, s,
                                 got[s * SECTOR:s * SECTOR + 16],
                                 want[s * SECTOR:s * SECTOR + 16]))


class Console:
    """The guest's lines across processes: each process's console in
    turn, checked for a failure line as it comes."""

    def __init__(self, path):
        self.text = ""
        self.connect(path)

    def connect(self, path):
        self.use(self.open(path))

    @staticmethod
    def open(path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(path)
        return sock

    def use(self, sock):
        """The next process's console (connected before it ran, so a
        failure line of its guest is read too)."""
        self.sock = sock
        self.mark = len(self.text)

    def _read(self):
        chunk = self.sock.recv(65536)
        assert chunk, "console closed; last output: %r" % self.text[-300:]
        self.text += chunk.decode(errors="replace")
        assert "FAIL" not in self.text, \
            "the guest failed: %r" % self.text[-400:]

    def written(self):
        """The highest "written N" this process printed."""
        ns = [int(m.group(1)) for m in
              WRITTEN.finditer(self.text, self.mark)]
        return max(ns) if ns else 0

    def until_written(self, n):
        """Reads until this process printed "written M", M >= n."""
        deadline = time.monotonic() + TIMEOUT
        while self.written() < n:
            assert time.monotonic() < deadline, self.text[-300:]
            self._read()
        return self.written()

    def drain(self):
        """The rest of a process that has ended."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            self.text += chunk.decode(errors="replace")

    def done(self):
        deadline = time.monotonic() + TIMEOUT
        while not DONE.search(self.text):
            assert time.monotonic() < deadline, self.text[-300:]
            self._read()
        return int(DONE.search(self.text).group(1))

    def stop_guest(self):
        """A byte on COM1: the guest drains, flushes and says how many
        writes it made."""
        self.sock.sendall(b"x")
        return self.done()


def alive(d, what):
    """d still runs; else its log says why not."""
    time.sleep(0.05)
    assert d.proc.poll() is None, "%s exited %s: %s" % (
        what, d.proc.returncode, d.log())


def vm(tmp, name, *extra):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    return Daemon(d, "--memory", MEM, *extra, smp=1, kernel=GUEST)


def drive(img, *opts):
    return ["--drive", ",".join(["file=" + img] + list(opts))]


def start(tmp, img):
    make_image(img)
    src = vm(tmp, "src", *drive(img))
    con = Console(src.con)
    con.until_written(128)
    sc = src.client()
    return src, sc, con


@test("live")
def test_live_migration_with_requests_in_flight_keeps_every_write(tmp):
    img = os.path.join(tmp, "disk.img")
    src, sc, con = start(tmp, img)
    dst = vm(tmp, "dst", *drive(img), "--incoming", "defer")
    dsock = Console.open(dst.con)
    dc, uri = listen(dst, tmp, "dst")
    # 4 MiB/s: the passes take some 0.5 s, in which every slot reads
    # back after the first pass sent its buffer (a read whose bytes are
    # not in the dirty log then arrives stale).
    ok(sc.cmd("migrate-set-parameters", {"max-bandwidth": 4 << 20}))
    ok(sc.cmd("migrate", {"uri": uri}))
    info = wait_status(sc, ["completed", "failed"])
    assert info["status"] == "completed", (info, src.log())
    print("  migration: %d ms, %d passes, downtime %d ms" % (
        info["total-time"], info["ram"]["dirty-sync-count"],
        info["downtime"]))
    assert ok(sc.cmd("query-status"))["status"] == "postmigrate"
    ok(sc.cmd("quit"))
    sc.close()
    assert src.wait() == 0, src.log()
    con.drain()
    last = con.written()
    # The destination's guest goes on from where the source's stopped.
    con.use(dsock)
    try:
        con.until_written(last + 128)
    except AssertionError:
        raise AssertionError("%s\nthe destination: %s" % (
            con.text[-400:], dst.log()))
    at = time.monotonic()
    con.until_written(256)
    st = ok(dc.cmd("query-status"))
    assert st["status"] == "running", st
    blk = ok(dc.cmd("query-block"))
    assert blk[0]["device"] == "virtio0", blk
    stats = ok(dc.cmd("query-blockstats"))[0]["stats"]
    assert stats["wr_operations"] > 0 and stats["flush_operations"] > 0, \
        stats
    dc.close()
    # The guest drains, flushes and ends: mmud exits with it.
    n = con.stop_guest()
    assert n >= last + 128, (n, last)
    print("  %d writes, %.1f s on the destination" % (
        n, time.monotonic() - at))
    dst.kill()
    check_image(img, n)


def source_io_goes_on(src, sc, con, img, end):
    """A switchover that ended (end: failed or cancelled) after the
    quiesce: the source runs, its guest's I/O goes on, drains, and the
    image holds what it wrote."""
    info = wait_status(sc, ["cancelled", "failed", "completed"])
    assert info["status"] == end, info
    st = ok(sc.cmd("query-status"))
    assert st["status"] == "running" and st["running"], st
    before = con.written()
    con.until_written(before + 256)
    n = con.stop_guest()
    sc.close()
    src.kill()
    check_image(img, n)


@test("failure")
def test_switchover_failing_after_quiesce_resumes_source_io(tmp):
    img = os.path.join(tmp, "disk.img")
    src, sc, con = start(tmp, img)
    dst = vm(tmp, "dst", *drive(img), "--incoming", "defer")
    dc, uri = listen(dst, tmp, "dst")
    ok(sc.cmd("migrate-set-capabilities", {"capabilities": [
        {"capability": "pause-before-switchover", "state": True}]}))
    ok(sc.cmd("migrate-set-parameters", {"max-bandwidth": 0}))
    ok(sc.cmd("migrate", {"uri": uri}))
    wait_status(sc, ["pre-switchover"])
    # The destination goes before the device state: the switchover
    # quiesces the drive, then its writes fail.
    dc.close()
    dst.kill()
    ok(sc.cmd("migrate-continue", {"state": "pre-switchover"}))
    source_io_goes_on(src, sc, con, img, "failed")


class Sink(threading.Thread):
    """Reads and drops a stream from sock until stopped: a destination
    that takes every byte, then none."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock
        self.stop = threading.Event()
        self.bytes = 0

    def run(self):
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not chunk:
                return
            self.bytes += len(chunk)


@test("failure")
def test_cancel_after_quiesce_resumes_source_io(tmp):
    img = os.path.join(tmp, "disk.img")
    src, sc, con = start(tmp, img)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # The smallest send buffer: what the source writes waits on us.
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    n = socket.send_fds(sc.sock, [json.dumps(
        {"execute": "getfd", "arguments": {"fdname": "mig"}}).encode()],
        [theirs.fileno()])
    assert n > 0
    assert sc.reply() == {"return": {}}
    sink = Sink(ours)
    sink.start()
    ok(sc.cmd("migrate-set-capabilities", {"capabilities": [
        {"capability": "pause-before-switchover", "state": True}]}))
    ok(sc.cmd("migrate-set-parameters", {"max-bandwidth": 0}))
    ok(sc.cmd("migrate", {"uri": "fd:mig"}))
    wait_status(sc, ["pre-switchover"])
    sink.stop.set()
    sink.join()
    # The source's socket full (our copy of it writes to the same
    # buffer): the switchover quiesces the drive, then its first write
    # blocks.
    theirs.setblocking(False)
    try:
        while True:
            theirs.send(b"\0" * 4096)
    except BlockingIOError:
        pass
    theirs.close()
    sent = ok(sc.cmd("query-migrate"))["ram"]["transferred"]
    ok(sc.cmd("migrate-continue", {"state": "pre-switchover"}))
    time.sleep(0.3)
    info = ok(sc.cmd("query-migrate"))
    assert info["status"] == "device", ("the switchover did not wait on "
                                        "its stream", info)
    assert info["ram"]["transferred"] - sent < 64 << 10, (sent, info)
    ok(sc.cmd("migrate_cancel"))
    source_io_goes_on(src, sc, con, img, "cancelled")
    ours.close()


@test("file")
def test_file_save_and_restore_opens_the_destinations_drive(tmp):
    img = os.path.join(tmp, "disk.img")
    src, sc, con = start(tmp, img)
    path = os.path.join(tmp, "vm.mig")
    ok(sc.cmd("migrate-set-parameters", {"max-bandwidth": 0}))
    ok(sc.cmd("migrate", {"uri": "file:" + path}))
    info = wait_status(sc, ["completed", "failed"])
    assert info["status"] == "completed", (info, src.log())
    ok(sc.cmd("quit"))
    sc.close()
    assert src.wait() == 0, src.log()
    # The image moves: the destination's --drive names it.
    moved = os.path.join(tmp, "moved.img")
    os.rename(img, moved)
    dst = vm(tmp, "dst", *drive(moved), "--incoming", "file:" + path)
    alive(dst, "the restored VM")
    con.connect(dst.con)
    con.until_written(256)
    n = con.stop_guest()
    dst.kill()
    check_image(moved, n)


@test("mismatch")
def test_mismatched_drives_refused_before_any_page(tmp):
    img = os.path.join(tmp, "disk.img")
    src, sc, con = start(tmp, img)
    ok(sc.cmd("migrate-set-parameters", {"max-bandwidth": 0}))
    other = os.path.join(tmp, "other.img")
    cases = [
        ("size", drive(other), IMAGE * 2,
         "drive 0 ('virtio0'): the stream's image is %d bytes, this VM's "
         "%d" % (IMAGE, IMAGE * 2)),
        ("readonly", drive(other, "readonly=on"), IMAGE,
         "drive 0 ('virtio0'): readonly=off in the stream, readonly=on "
         "in this VM"),
        ("none", [], None, "drive count: the stream has 1, this VM has 0"),
        ("two", drive(other) + drive(img), IMAGE,
         "drive count: the stream has 1, this VM has 2"),
    ]
    for name, args, size, want in cases:
        if size is not None:
            with open(other, "wb") as f:
                f.write(b"\x5a" * size)
        uri = "unix:" + os.path.join(tmp, name + ".sock")
        # Listening before the reply (--incoming URI listens after
        # READY=1): the source cannot come too early.
        dst = vm(tmp, name, *args, "--incoming", "defer")
        dc = dst.client()
        ok(dc.cmd("migrate-incoming", {"uri": uri}))
        dc.close()
        ok(sc.cmd("migrate", {"uri": uri}))
        info = wait_status(sc, ["failed", "completed"])
        assert info["status"] == "failed", (name, info)
        try:
            rc = dst.wait()
        except AssertionError as e:
            raise AssertionError("%s: the source said %r; %s" % (
                name, info.get("error-desc"), e))
        log = dst.log()
        assert rc == 6, (name, rc, log)
        assert "incoming migration failed" in log and want in log, \
            (name, want, log)
        dst.kill()
        if size is not None:
            with open(other, "rb") as f:
                assert f.read() == b"\x5a" * size, \
                    "%s: the destination's image changed" % name
        # The source runs on, its guest writing.
        st = ok(sc.cmd("query-status"))
        assert st["status"] == "running", (name, st)
        con.until_written(con.written() + 64)
    n = con.stop_guest()
    sc.close()
    src.kill()
    check_image(img, n)


def main():
    global GUEST
    GUEST = sys.argv[5]
    return dl.main()


if __name__ == "__main__":
    sys.exit(main())
