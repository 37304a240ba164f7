#!/usr/bin/env python3
"""A write held by werror=stop migrates with the VM (docs/MIGRATION.md,
"virtio-blk"), as QEMU carries it: the guest of tests/guests/virtio_blk.c
("poll hold") writes on a drive whose writes fail on the source (the
source mmud's file-size limit lowered under the guest's first write,
EFBIG, as a full disk would; the way tests/integration/test_virtio_blk.py's
stop group fails them): BLOCK_IO_ERROR (action stop), STOP, io-error.
The VM migrates while so stopped; the source never answers the write.
The destination (no limit: the fault is cleared on its side) arrives in
the source's run state, io-error, as QEMU's global state brings it
(docs/MIGRATION.md, "run state"): without --paused it does not run on
its own. It shows io-status failed with the request in flight; at cont
it walks the request's chain again from guest memory and resubmits it:
the guest sees the write complete with OK, goes on and finishes, and
the image holds exactly what the guest wrote.

unix:  the stream over a unix: socket to a destination started without
       --paused (it would run a running source's guest); before it, a
       switchover that fails leaves the source in io-error.
file:  saved to a file: URI, restored by a new process with --paused.

Usage: test_blk_werror_migration.py GROUP MMUD MMUCTL FOREVER_ELF ECHO_ELF
"""
import os
import re
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import TIMEOUT, Daemon, read_console_until, test  # noqa: E402
from miglib import ok, wait_status  # noqa: E402
import test_virtio_blk as vb  # noqa: E402  the image and its check

END = re.compile(r"virtio_blk: (done|FAIL.*)\n|FAIL: .*\n")


def vm(tmp, name, *extra):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    return Daemon(d, *extra, smp=1, kernel=dl.ECHO, append="poll hold")


def console(d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(d.con)
    return s


def drain(sock):
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out.decode(errors="replace")
        out += chunk


def source_held_in_io_error(tmp, drive):
    src = vm(tmp, "src", "--paused", "--drive", drive)
    sc = src.client()
    scon = console(src)
    # The guest writes only at 2 MiB and beyond: at 1 MiB every write
    # of the source fails with EFBIG (mmud ignores SIGXFSZ).
    hard = resource.prlimit(src.proc.pid, resource.RLIMIT_FSIZE)[1]
    resource.prlimit(src.proc.pid, resource.RLIMIT_FSIZE, (1 << 20, hard))
    ok(sc.cmd("cont"))
    ev, _ = sc.event("BLOCK_IO_ERROR")
    assert ev["data"]["operation"] == "write" and \
        ev["data"]["action"] == "stop", ev
    sc.event("STOP")
    st = ok(sc.cmd("query-status"))
    assert st["status"] == "io-error", st
    return src, sc, scon


def source_after(src, sc, scon):
    """The source after completed: postmigrate, the write never answered
    there (neither done nor failed); it quits. Its console's text."""
    st = ok(sc.cmd("query-status"))
    assert st["status"] == "postmigrate", st
    stats = ok(sc.cmd("query-blockstats"))[0]["stats"]
    assert stats["wr_operations"] == 0 and \
        stats["failed_wr_operations"] == 0, ("the source answered the "
                                             "held write", stats)
    ok(sc.cmd("quit"))
    sc.close()
    assert src.wait() == 0, src.log()
    text = drain(scon)
    assert "virtio_blk: wrote" not in text and "FAIL" not in text, text
    return text


def destination_finishes(dst, img, before):
    dc = dst.client()
    dcon = console(dst)
    info = wait_status(dc, ["completed", "failed"])
    assert info["status"] == "completed", (info, dst.log())
    time.sleep(0.2)  # a RESUME, were one sent, would be here by now
    st = ok(dc.cmd("query-status"))
    assert st == {"status": "io-error", "running": False,
                  "singlestep": False}, \
        ("the destination of a source stopped in io-error", st)
    assert not [e for e in dc.events if e["event"] == "RESUME"], \
        ("the destination ran before cont", dc.events)
    blk = ok(dc.cmd("query-block"))[0]
    assert blk["io-status"] == "failed", ("the held write's io-status on "
                                          "the destination", blk)
    stats = ok(dc.cmd("query-blockstats"))[0]["stats"]
    assert stats["wr_operations"] == 0, stats
    q = ok(dc.cmd("x-query-virtio-queue-status",
                  {"path": "/machine/peripheral/disk0/virtio-backend",
                   "queue": 0}))
    assert q["inuse"] == 1, ("the held request is not in flight on the "
                             "destination", q)
    ok(dc.cmd("cont"))
    dc.event("RESUME")
    _, text = read_console_until(dst.con, END, sock=dcon)
    text = before + text
    assert "virtio_blk: done\n" in text, (text[-3000:], dst.log())
    assert len(re.findall(r"virtio_blk: wrote \d+ \d+\n", text)) == 12, \
        text[-3000:]
    blk = ok(dc.cmd("query-block"))[0]
    assert blk["io-status"] == "ok", blk
    stats = ok(dc.cmd("query-blockstats"))[0]["stats"]
    assert stats["wr_operations"] == 12 and \
        stats["failed_wr_operations"] == 0, ("the held write and the 11 "
                                             "after it", stats)
    assert not [e for e in dc.events if e["event"] == "BLOCK_IO_ERROR"], \
        dc.events
    dcon.sendall(b"q")
    assert dst.wait() == 1, dst.log()
    vb.check_file(img, text)
    dst.kill()


def switchover_fails_and_source_stays_in_io_error(tmp, sc, drive):
    """A switchover that fails (the destination gone at pre-switchover)
    gives the source back the state it began in, io-error, as QEMU's
    does: not paused, and the held write still held."""
    uri = "unix:" + os.path.join(tmp, "gone.sock")
    gone = vm(tmp, "gone", "--incoming", uri, "--drive", drive)
    ok(sc.cmd("migrate-set-capabilities", {"capabilities": [
        {"capability": "pause-before-switchover", "state": True}]}))
    ok(sc.cmd("migrate", {"uri": uri}))
    wait_status(sc, ["pre-switchover"])
    gone.kill()
    ok(sc.cmd("migrate-continue", {"state": "pre-switchover"}))
    info = wait_status(sc, ["failed", "completed"])
    assert info["status"] == "failed", info
    st = ok(sc.cmd("query-status"))
    assert st["status"] == "io-error" and not st["running"], \
        ("the source after a failed switchover from io-error", st)
    blk = ok(sc.cmd("query-block"))[0]
    assert blk["io-status"] == "failed", blk
    ok(sc.cmd("migrate-set-capabilities", {"capabilities": [
        {"capability": "pause-before-switchover", "state": False}]}))


@test("unix")
def test_held_write_migrates_over_unix_and_completes_at_cont(tmp):
    img = vb.make_image(tmp)
    drive = "file=%s,id=disk0,werror=stop,discard=unmap" % img
    src, sc, scon = source_held_in_io_error(tmp, drive)
    ok(sc.cmd("migrate-set-parameters", {"max-bandwidth": 0}))
    switchover_fails_and_source_stays_in_io_error(tmp, sc, drive)
    uri = "unix:" + os.path.join(tmp, "mig.sock")
    dst = vm(tmp, "dst", "--incoming", uri, "--drive", drive)
    ok(sc.cmd("migrate", {"uri": uri}))
    info = wait_status(sc, ["completed", "failed"])
    assert info["status"] == "completed", (info, src.log())
    before = source_after(src, sc, scon)
    destination_finishes(dst, img, before)


@test("file")
def test_held_write_migrates_through_a_file_and_completes_at_cont(tmp):
    img = vb.make_image(tmp)
    drive = "file=%s,id=disk0,werror=stop,discard=unmap" % img
    src, sc, scon = source_held_in_io_error(tmp, drive)
    uri = "file:" + os.path.join(tmp, "vm.state")
    ok(sc.cmd("migrate-set-parameters", {"max-bandwidth": 0}))
    ok(sc.cmd("migrate", {"uri": uri}))
    info = wait_status(sc, ["completed", "failed"])
    assert info["status"] == "completed", (info, src.log())
    before = source_after(src, sc, scon)
    dst = vm(tmp, "dst", "--paused", "--incoming", uri, "--drive", drive)
    destination_finishes(dst, img, before)


if __name__ == "__main__":
    sys.exit(dl.main())
