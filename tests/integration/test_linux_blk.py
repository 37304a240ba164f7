#!/usr/bin/env python3
"""Linux's own virtio drivers on mmud's virtio-blk (docs/GUEST-ABI.md,
"Virtio-mmio devices"): Debian's cloud kernel with the initramfs of
scripts/linux-guest, whose /init loads virtio_ring, virtio, virtio_mmio
and virtio_blk (mmud.modules) and then starts a shell (mmud.shell).

blk:   a 4 MiB raw image with a known pattern (byte i is
       (i * 7 + (i >> 9)) & 0xff): /dev/vda appears with the image's
       size; busybox dd + md5sum of the whole disk matches the file's
       md5; a write through the page cache (dd of 8 KiB at offset 1 MiB),
       then sync, is in the host file at once; dd with conv=fsync
       issues a flush; then poweroff -f right after another write with
       conv=fsync: mmud exits 0 and the file holds both writes, the rest
       of the pattern intact. query-blockstats counts reads, writes and
       flushes; the dmesg has no forbidden line.

In CI: the packages come through scripts/linux-guest as for
test_linux.py. Under a sanitizer this exits 77 (boots take minutes).
Usage: test_linux_blk.py GROUP MMUD MMUCTL FOREVER_ELF SOURCE_ROOT
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import test  # noqa: E402
import test_linux as tl  # noqa: E402

IMAGE = 4 << 20


def pattern(n):
    return bytes(((i * 7 + (i >> 9)) & 0xff) for i in range(n))


@test("blk")
def test_linux_reads_and_writes_the_disk(tmp):
    img = os.path.join(tmp, "disk.raw")
    data = bytearray(pattern(IMAGE))
    with open(img, "wb") as f:
        f.write(data)
    d, c, con = tl.linux(tmp, "mmud.modules mmud.shell", "--drive",
                         "file=%s,format=raw" % img)
    out = tl.Console(con)
    out.until("mmud-linux-guest: loaded virtio_blk")
    n = 100
    got = tl.shell_cmd(out, con, "cat /sys/block/vda/size", n)
    assert got.strip() == str(IMAGE // 512), \
        "/sys/block/vda/size printed %r" % got
    got = tl.shell_cmd(out, con, "dd if=/dev/vda bs=64k 2>/dev/null | "
                       "md5sum", n + 1)
    want = hashlib.md5(data).hexdigest()
    assert got.split()[0] == want, \
        "md5 of /dev/vda is %r, the file's %s" % (got, want)

    # A write through the page cache, then sync: in the file.
    got = tl.shell_cmd(out, con, "dd if=/dev/zero of=/dev/vda bs=4k "
                       "seek=256 count=2 2>&1; sync; echo synced", n + 2)
    assert "synced" in got, got
    with open(img, "rb") as f:
        f.seek(1 << 20)
        assert f.read(8192) == bytes(8192), \
            "8 KiB at 1 MiB are not zero in the file after sync"
    data[1 << 20:(1 << 20) + 8192] = bytes(8192)

    # A write with fsync, then poweroff -f at once.
    got = tl.shell_cmd(out, con, "echo -n mmud-blk-test | dd of=/dev/vda "
                       "bs=512 seek=4000 conv=fsync 2>&1; echo written",
                       n + 3)
    assert "written" in got, got
    stats = c.cmd("query-blockstats")["return"][0]["stats"]
    assert stats["rd_operations"] > 0 and stats["wr_operations"] > 0, stats
    assert stats["flush_operations"] > 0, stats
    assert stats["rd_bytes"] >= IMAGE, stats
    tl.prompt(out)
    con.sendall(b"poweroff -f\n")
    assert d.wait() == 0, d.log()
    rec = b"mmud-blk-test"
    data[4000 * 512:4000 * 512 + len(rec)] = rec
    with open(img, "rb") as f:
        now = f.read()
    assert len(now) == IMAGE, len(now)
    if now != bytes(data):
        first = next(i for i in range(IMAGE) if now[i] != data[i])
        raise AssertionError("the image differs from what the guest wrote "
                             "at byte %d: %r, expected %r" % (
                                 first, now[first:first + 16],
                                 bytes(data[first:first + 16])))
    tl.check_dmesg(out.text)


if __name__ == "__main__":
    if os.environ.get("MMUD_SANITIZE", "none") not in ("", "none"):
        sys.exit(77)
    dl.TIMEOUT = tl.BOOT_TIMEOUT
    sys.exit(dl.main())
