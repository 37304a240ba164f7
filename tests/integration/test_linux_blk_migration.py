#!/usr/bin/env python3
"""Linux migrates while it writes its disk (docs/MIGRATION.md,
"virtio-blk"): Debian's cloud kernel with the initramfs of
scripts/linux-guest (mmud.modules: virtio_blk; mmud.shell) and two
drives: /dev/vda, a 16 MiB raw image of zeros, and /dev/vdb, read-only,
16 MiB of random bytes the host made (so every block is unlike every
other). busybox dd copies vdb to vda, 4 KiB a request with O_DIRECT
both ways, in the background; while it runs, the VM migrates over unix:
to a destination started with the same --drive options. On the
destination dd finishes and the shell runs sync; the host checks the
image file against the pattern: nothing lost, nothing written twice
out of order, nothing stale (a read whose data missed the last RAM pass
would put the wrong bytes on vda). The dmesg has no forbidden line.

In CI: the packages come through scripts/linux-guest as for
test_linux.py. Under a sanitizer this exits 77 (boots take minutes).
Usage: test_linux_blk_migration.py GROUP MMUD MMUCTL FOREVER_ELF
                                   SOURCE_ROOT
"""
import hashlib
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, test  # noqa: E402
import test_linux as tl  # noqa: E402

IMAGE = 16 << 20


def ok(r):
    assert "return" in r, r
    return r["return"]


def wr_ops(c):
    return ok(c.cmd("query-blockstats"))[0]["stats"]["wr_operations"]


@test("migrate")
def test_linux_migrates_while_dd_writes_and_the_image_matches(tmp):
    img = os.path.join(tmp, "disk.raw")
    pat = os.path.join(tmp, "pattern.raw")
    with open(img, "wb") as f:
        f.truncate(IMAGE)
    want = os.urandom(IMAGE)
    with open(pat, "wb") as f:
        f.write(want)
    drive = ["--drive", "file=%s,format=raw" % img,
             "--drive", "file=%s,format=raw,readonly=on" % pat]
    src_dir = os.path.join(tmp, "src")
    os.makedirs(src_dir)
    t0 = time.monotonic()
    src, sc, scon = tl.linux(src_dir, "mmud.modules mmud.shell", *drive)
    out = tl.Console(scon)
    out.until("mmud-linux-guest: loaded virtio_blk")
    got = tl.shell_cmd(out, scon, "cat /sys/block/vdb/size", 200)
    assert got.strip() == str(IMAGE // 512), got
    boot_s = time.monotonic() - t0

    # The destination: the same machine and image, waiting.
    kernel, initrd = tl.guest_files()
    dst_dir = os.path.join(tmp, "dst")
    os.makedirs(dst_dir)
    dst = Daemon(dst_dir, "--initrd", initrd, "--memory", "256M",
                 "--no-reboot", *drive, "--incoming", "defer", smp=1,
                 kernel=kernel,
                 append=(tl.CMDLINE + " mmud.modules mmud.shell").strip())
    dc = dst.client()
    uri = "unix:" + os.path.join(tmp, "mig.sock")
    ok(dc.cmd("migrate-incoming", {"uri": uri}))

    # dd in the background, 4 KiB a request straight to the device.
    tl.prompt(out)
    # Beside it, fsync after fsync on vda: each a FLUSH request
    # (blkdev_fsync), the slow kind (the host's fdatasync), so the
    # switchover mostly finds one in flight and must drain it.
    scon.sendall(b"(while [ ! -e /tmp/dd-done ]; do dd if=/dev/null "
                 b"of=/dev/vda conv=notrunc,fsync 2>/dev/null; done) & "
                 b"(dd if=/dev/vdb of=/dev/vda bs=4k iflag=direct "
                 b"oflag=direct 2>/dev/null; echo DD-EXIT=$?; "
                 b"touch /tmp/dd-done) &\n")
    base = wr_ops(sc)
    deadline = time.monotonic() + 60
    while wr_ops(sc) < base + 256:
        assert time.monotonic() < deadline, "dd never wrote"
        time.sleep(0.01)
    ok(sc.cmd("migrate-set-parameters", {"max-bandwidth": 0}))
    t1 = time.monotonic()
    ok(sc.cmd("migrate", {"uri": uri}))
    deadline = time.monotonic() + 120
    while True:
        info = ok(sc.cmd("query-migrate"))
        if info["status"] in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.02)
    assert info["status"] == "completed", (info, src.log())
    mig_s = time.monotonic() - t1
    # dd was still writing when the vCPUs stopped.
    at_switch = wr_ops(sc) - base
    assert "DD-EXIT" not in out.text, \
        "dd ended before the switchover: the test proves nothing"
    ok(sc.cmd("quit"))
    sc.close()
    assert src.wait() == 0, src.log()
    scon.close()

    time.sleep(0.1)
    assert dst.proc.poll() is None, \
        "the destination exited %s: %s" % (dst.proc.returncode, dst.log())
    dcon = dl.socket.socket(dl.socket.AF_UNIX, dl.socket.SOCK_STREAM)
    dcon.settimeout(1)
    dcon.connect(dst.con)
    dout = tl.Console(dcon)
    dout.until("DD-EXIT=")
    # The status and its line end may come in a later read than the
    # name (the UART sends a byte at a time).
    while not re.search(r"DD-EXIT=\d+\r?\n", dout.text):
        dout.until("\n", timeout=30, count=dout.text.count("\n") + 1)
    assert "DD-EXIT=0" in dout.text, dout.text[-2000:]
    dcon.sendall(b"\n")  # a new prompt after dd's line
    got = tl.shell_cmd(dout, dcon, "sync; echo synced", 300)
    assert "synced" in got, got
    stats = ok(dc.cmd("query-blockstats"))[0]["stats"]
    assert stats["wr_operations"] > 0, stats
    with open(img, "rb") as f:
        now = f.read()
    if hashlib.md5(now).digest() != hashlib.md5(want).digest():
        first = next(i for i in range(IMAGE) if now[i] != want[i])
        raise AssertionError(
            "the image differs from what dd wrote at byte %d: %r, "
            "expected %r" % (first, now[first:first + 16],
                             want[first:first + 16]))
    tl.check_dmesg(out.text + dout.text)
    print("  boot %.1f s, migration %.1f s, %d of %d writes on the "
          "source" % (boot_s, mig_s, at_switch, IMAGE // 4096))
    dc.close()
    dcon.close()
    dst.kill()


if __name__ == "__main__":
    if os.environ.get("MMUD_SANITIZE", "none") not in ("", "none"):
        sys.exit(77)
    dl.TIMEOUT = tl.BOOT_TIMEOUT
    sys.exit(dl.main())
