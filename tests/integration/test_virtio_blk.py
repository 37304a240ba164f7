#!/usr/bin/env python3
"""The virtio-blk device driven by a guest of our own (tests/guests/
virtio_blk.c; docs/GUEST-ABI.md, "Virtio-mmio devices"), on a 4 MiB raw
image whose byte i is (i * 7 + (i >> 9)) & 0xff.

poll:    the guest polls the used ring: negotiation, reads through
         direct and indirect descriptors, writes at pseudo-random
         offsets read back, flush, GET_ID, discard, every malformed
         request refused (IOERR, UNSUPP or DEVICE_NEEDS_RESET), a reset
         with a request in flight. Afterwards the image file holds
         exactly what the guest says it wrote (and zeros where it
         discarded), the rest of the pattern intact; query-blockstats
         counted the requests.
irq:     the same, waiting in HLT for the device's interrupt (IOAPIC
         pin 5, EVENT_IDX negotiated).
threads: the same with MMUD_TEST_NO_IO_URING: mmud says at start that
         a thread pool does the drive's I/O, and the results are the
         same.
dirty:   dirty logging of boot RAM on, the guest reads a sector into a
         page it never touches itself: that page is in the next
         x-dirty-log-harvest.
errors:  the image shrinks behind mmud's back: the guest's first read
         fails with VIRTIO_BLK_S_IOERR, BLOCK_IO_ERROR says so
         (operation read, action report), query-block's io-status is
         failed; a --drive with a bad key or a missing file is refused
         at start, naming it.
stop:    werror=stop with writes that fail (mmud's file-size limit
         lowered under the guest's first write, EFBIG, as a full disk
         would): BLOCK_IO_ERROR (operation write, action stop), then
         STOP, query-status io-error, io-status failed, the guest held;
         the limit raised again, cont: RESUME, io-status ok, the kept
         write completes and the guest finishes with the image holding
         what it wrote.

Usage: test_virtio_blk.py GROUP MMUD MMUCTL FOREVER_ELF VIRTIO_BLK_ELF
"""
import base64
import os
import re
import resource
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, read_console_until, test  # noqa: E402

IMAGE = 4 << 20
SECTOR = 512


def make_image(tmp):
    path = os.path.join(tmp, "disk.raw")
    with open(path, "wb") as f:
        f.write(bytes(((i * 7 + (i >> 9)) & 0xff) for i in range(IMAGE)))
    return path


def expected_image(text):
    """The pattern, with what the guest's transcript says it wrote and
    discarded."""
    data = bytearray(((i * 7 + (i >> 9)) & 0xff) for i in range(IMAGE))
    for s, n in re.findall(r"virtio_blk: wrote (\d+) (\d+)\n", text):
        s, n = int(s), int(n)
        for k in range(n * SECTOR):
            sec = s + k // SECTOR
            data[s * SECTOR + k] = (sec * 13 + k % SECTOR + 0x5a) & 0xff
    m = re.search(r"virtio_blk: discarded (\d+) sectors at (\d+)", text)
    if m:
        n, at = int(m.group(1)), int(m.group(2))
        data[at * SECTOR:(at + n) * SECTOR] = bytes(n * SECTOR)
    return bytes(data)


def check_file(path, text):
    with open(path, "rb") as f:
        now = f.read()
    want = expected_image(text)
    assert len(now) == IMAGE, len(now)
    if now != want:
        i = next(i for i in range(IMAGE) if now[i] != want[i])
        raise AssertionError("the image differs at byte %d (sector %d): "
                             "%r, expected %r" % (i, i // SECTOR,
                                                  now[i:i + 8], want[i:i + 8]))


LINES = [
    "no FEATURES_OK without VERSION_1",
    "64 sectors read match the image",
    "indirect read of 8 sectors matches the image",
    "flush",
    "serial mmud-0",
    "read into a read-only buffer: IOERR",
    "read past the end: IOERR",
    "unknown type: UNSUPP",
    "a loop: DEVICE_NEEDS_RESET",
    "a buffer in MMIO: DEVICE_NEEDS_RESET",
    "a buffer outside RAM: DEVICE_NEEDS_RESET",
    "a next index out of range: DEVICE_NEEDS_RESET",
    "no status byte: DEVICE_NEEDS_RESET",
    "an indirect table of 56 bytes: DEVICE_NEEDS_RESET",
    "reset with a request in flight, then a read",
]


def run_guest(tmp, append, env=None):
    img = make_image(tmp)
    d = Daemon(tmp, "--drive", "file=%s,format=raw,discard=unmap" % img,
               smp=1, kernel=dl.ECHO, append=append + " hold", env=env)
    c = d.client()
    s, text = read_console_until(
        d.con, re.compile(r"virtio_blk: (done|FAIL.*)\n|FAIL: .*\n"))
    assert "virtio_blk: done\n" in text, text[-3000:]
    for line in LINES:
        assert "virtio_blk: %s\n" % line in text, (line, text[-3000:])
    assert len(re.findall(r"virtio_blk: wrote \d+ \d+\n", text)) == 12, text
    stats = c.cmd("query-blockstats")["return"][0]["stats"]
    # 64 + 8 sectors, 12 read-backs, the discard's, the reset's read...
    assert stats["rd_operations"] >= 16 and stats["wr_operations"] == 12, \
        stats
    assert stats["flush_operations"] == 1, stats
    s.sendall(b"q")  # the guest holds at "done" until then
    assert d.wait() == 1, d.log()
    s.close()
    check_file(img, text)
    log = d.log()
    d.kill()
    return text, log


@test("poll")
def test_polled_guest_and_the_image_file(tmp):
    text, log = run_guest(tmp, "poll")
    assert "virtio_blk: polled\n" in text
    assert "I/O through io_uring" in log, log


@test("irq")
def test_interrupt_driven_guest_and_the_image_file(tmp):
    text, _ = run_guest(tmp, "irq")
    assert "virtio_blk: woken by its interrupts\n" in text, text[-2000:]


@test("threads")
def test_thread_pool_fallback_same_results(tmp):
    _, log = run_guest(tmp, "poll", env={"MMUD_TEST_NO_IO_URING": "1"})
    assert ("io_uring unavailable (MMUD_TEST_NO_IO_URING is set): I/O "
            "through a thread pool") in log, log


@test("dirty")
def test_device_writes_are_in_the_dirty_log(tmp):
    img = make_image(tmp)
    d = Daemon(tmp, "--drive", "file=%s" % img, smp=1, kernel=dl.ECHO,
               append="poll dirty hold")
    c = d.client()
    s, text = read_console_until(
        d.con, re.compile(r"virtio_blk: dirty page (0x[0-9a-f]+)\n|FAIL"))
    m = re.search(r"virtio_blk: dirty page (0x[0-9a-f]+)\n", text)
    assert m, text[-2000:]
    page = int(m.group(1), 16) // 4096
    slots = c.cmd("x-query-memslots")["return"]
    slot = next(x for x in slots if x["gpa"] <= page * 4096 <
                x["gpa"] + x["size"])
    npages = slot["size"] // 4096
    first = page - slot["gpa"] // 4096
    assert c.cmd("x-dirty-log-start", {"slot": slot["slot"]}) == \
        {"return": {}}
    h = c.cmd("x-dirty-log-harvest", {"slot": slot["slot"]})["return"]
    raw = base64.b64decode(h["bitmap"])
    assert not raw[first // 8] >> (first % 8) & 1, "dirty before the read"
    s.sendall(b"g")
    read_console_until(d.con, "virtio_blk: read into the dirty page\n",
                       sock=s)
    h = c.cmd("x-dirty-log-harvest", {"slot": slot["slot"]})["return"]
    raw = base64.b64decode(h["bitmap"])
    assert len(raw) * 8 >= npages
    assert raw[first // 8] >> (first % 8) & 1, \
        "page %#x, written only by the device, is not in the harvest (%d " \
        "dirty pages)" % (page * 4096, h["dirty-pages"])
    s.sendall(b"g")
    read_console_until(d.con, "virtio_blk: done\n", sock=s)
    s.sendall(b"q")
    assert d.wait() == 1, d.log()
    d.kill()


@test("errors")
def test_io_error_reported_as_block_io_error(tmp):
    img = make_image(tmp)
    d = Daemon(tmp, "--paused", "--drive", "file=%s,id=disk0" % img,
               smp=1, kernel=dl.ECHO, append="poll hold")
    c = d.client()
    con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    con.connect(d.con)  # before the guest can fail and mmud exit
    os.truncate(img, 4096)  # behind mmud's back: reads past it fail
    assert c.cmd("cont") == {"return": {}}
    ev, _ = c.event("BLOCK_IO_ERROR")
    data = ev["data"]
    assert data["device"] == "disk0" and data["operation"] == "read", ev
    assert data["action"] == "report" and data["nospace"] is False, ev
    read_console_until(d.con, "virtio_blk: first read failed: status 1\n",
                       sock=con)
    blk = c.cmd("query-block")["return"][0]
    assert blk["io-status"] == "failed", blk
    stats = c.cmd("query-blockstats")["return"][0]["stats"]
    assert stats["failed_rd_operations"] == 1, stats
    con.sendall(b"q")
    read_console_until(d.con, "FAIL: virtio_blk: read of 64 sectors: "
                       "status 1", sock=con)
    assert d.wait() == 3, d.log()  # the guest's rt_exit(1)
    d.kill()


@test("errors")
def test_bad_drive_options_refused_at_start(tmp):
    for arg, what in (("file=%s/nosuch.raw" % tmp, "cannot open"),
                      ("file=/dev/null,bogus=1", "unknown key 'bogus'"),
                      ("file=/dev/null,format=qcow2", "format=qcow2"),
                      ("cache=none", "no file=")):
        p = subprocess.run([dl.MMUD, "--kernel", dl.ECHO, "--drive", arg],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        err = p.stderr.decode()
        assert p.returncode == 4 and what in err, (arg, p.returncode, err)


@test("errors")
def test_config_file_drives_and_flags_winning(tmp):
    """drive lines of --config add up; --drive on the command line
    replaces them (the file's are still checked)."""
    a, b = make_image(tmp), os.path.join(tmp, "b.raw")
    with open(b, "wb") as f:
        f.write(bytes(1 << 20))
    conf = os.path.join(tmp, "vm.conf")
    with open(conf, "w") as f:
        f.write("drive = file=%s,id=first\ndrive = file=%s,readonly=on\n"
                % (a, b))
    d = Daemon(tmp, "--config", conf, "--paused", smp=1, kernel=dl.ECHO)
    c = d.client()
    blk = c.cmd("query-block")["return"]
    assert [(x["device"], x["inserted"]["file"], x["inserted"]["ro"])
            for x in blk] == [("first", a, False), ("virtio1", b, True)], blk
    c.cmd("quit")
    d.wait()
    d.kill()
    d = Daemon(tmp, "--config", conf, "--paused", "--drive",
               "file=%s,id=cli" % b, smp=1, kernel=dl.ECHO)
    c = d.client()
    blk = c.cmd("query-block")["return"]
    assert [x["device"] for x in blk] == ["cli"], blk
    c.cmd("quit")
    d.wait()
    d.kill()
    with open(conf, "a") as f:
        f.write("drive = file=%s,cache=bogus\n" % b)
    p = subprocess.run([dl.MMUD, "--kernel", dl.ECHO, "--config", conf],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    err = p.stderr.decode()
    assert p.returncode == 4 and "vm.conf:3: drive: drive: cache=bogus" \
        in err, (p.returncode, err)


@test("stop")
def test_werror_stop_pauses_in_io_error_and_cont_retries(tmp):
    img = make_image(tmp)
    d = Daemon(tmp, "--paused", "--drive",
               "file=%s,id=disk0,werror=stop,discard=unmap" % img,
               smp=1, kernel=dl.ECHO, append="poll hold")
    c = d.client()
    con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    con.connect(d.con)
    # The guest writes only at 2 MiB and beyond (WRITE_FIRST in
    # tests/guests/virtio_blk.c): at 1 MiB every write fails with EFBIG
    # (mmud ignores SIGXFSZ), its stderr log stays below it.
    hard = resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE)[1]
    resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (1 << 20, hard))
    assert c.cmd("cont") == {"return": {}}
    ev, before = c.event("BLOCK_IO_ERROR")
    assert not [e for e in before if e["event"] == "STOP"], \
        ("STOP came before BLOCK_IO_ERROR", before)
    data = ev["data"]
    assert data["device"] == "disk0" and data["operation"] == "write", ev
    assert data["action"] == "stop", ev
    c.event("STOP")
    st = c.cmd("query-status")["return"]
    assert st["status"] == "io-error" and st["running"] is False, st
    blk = c.cmd("query-block")["return"][0]
    assert blk["io-status"] == "failed", blk
    stats = c.cmd("query-blockstats")["return"][0]["stats"]
    assert stats["wr_operations"] == 0 and \
        stats["failed_wr_operations"] == 0, ("the kept write was "
                                             "completed", stats)
    # Paused: the guest's write is still outstanding.
    con.settimeout(0.5)
    seen = b""
    try:
        while True:
            chunk = con.recv(65536)
            if not chunk:
                break
            seen += chunk
    except socket.timeout:
        pass
    assert b"virtio_blk: wrote" not in seen and b"FAIL" not in seen, seen
    con.settimeout(dl.TIMEOUT)
    # The operator makes room, then cont.
    resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE,
                     (resource.RLIM_INFINITY, hard))
    assert c.cmd("cont") == {"return": {}}
    c.event("RESUME")
    _, text = read_console_until(
        d.con, re.compile(r"virtio_blk: (done|FAIL.*)\n|FAIL: .*\n"),
        sock=con)
    text = seen.decode(errors="replace") + text
    assert "virtio_blk: done\n" in text, text[-3000:]
    assert len(re.findall(r"virtio_blk: wrote \d+ \d+\n", text)) == 12, \
        text[-3000:]
    st = c.cmd("query-status")["return"]
    assert st["status"] == "running", st
    blk = c.cmd("query-block")["return"][0]
    assert blk["io-status"] == "ok", ("io-status after a successful "
                                      "retry", blk)
    stats = c.cmd("query-blockstats")["return"][0]["stats"]
    assert stats["wr_operations"] == 12 and \
        stats["failed_wr_operations"] == 0, stats
    assert not [e for e in c.events if e["event"] in
                ("BLOCK_IO_ERROR", "STOP")], c.events
    con.sendall(b"q")
    assert d.wait() == 1, d.log()
    check_file(img, text)
    d.kill()


if __name__ == "__main__":
    sys.exit(dl.main())
