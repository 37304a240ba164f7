#!/usr/bin/env python3
"""scripts/linux-guest: fetches Debian's cloud kernel and busybox-static
through apt and builds the initramfs; this checks what it produced.

The kernel must be a bzImage mmud accepts (docs/GUEST-ABI.md, "Platform
v2 boot": "HdrS", protocol >= 2.12, XLF_KERNEL_64). The initramfs,
listed by Debian's cpio(1) and parsed here, must hold /init (the
banner, the mounts, poweroff -f), /dev/console as character device 5:1,
bin/busybox with bin/sh linked to it, and the four virtio modules, each
after the modules its .modinfo depends on, in /lib/modules/order. A
second run --offline must rebuild the same initramfs from the cache.

Needs the machine's apt sources (the same network scripts/install-deps
needs); skipped (77) when apt-cache cannot resolve the metapackage.
Usage: test_linux_guest.py SOURCE_ROOT
"""
import os
import struct
import subprocess
import sys
import tempfile


def run_script(script, *args):
    p = subprocess.run([sys.executable, script] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=900)
    out = p.stdout.decode()
    assert p.returncode == 0, "linux-guest %s: status %d\n%s%s" % (
        " ".join(args), p.returncode, out, p.stderr.decode())
    paths = dict(line.split(" ", 1) for line in out.splitlines()
                 if line.startswith(("kernel ", "initrd ", "modules ")))
    return paths


def newc_entries(data):
    """{name: (mode, rdevmajor, rdevminor, bytes)} of a newc archive."""
    out, off = {}, 0
    while True:
        assert data[off:off + 6] == b"070701", "bad magic at %d" % off
        f = [int(data[off + 6 + 8 * i:off + 14 + 8 * i], 16)
             for i in range(13)]
        namesize, filesize = f[11], f[6]
        off += 110
        name = data[off:off + namesize - 1].decode()
        off = (off + namesize + 3) & ~3
        body = data[off:off + filesize]
        off = (off + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (f[1], f[9], f[10], body)


def depends(ko):
    for field in ko.split(b"\0"):
        if field.startswith(b"depends="):
            return [d for d in field[8:].decode().split(",") if d]
    return []


def main():
    root = sys.argv[1]
    script = os.path.join(root, "scripts", "linux-guest")
    p = subprocess.run(["apt-cache", "depends", "linux-image-cloud-amd64"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if p.returncode or b"Depends: linux-image-" not in p.stdout:
        print("skipped: apt-cache cannot resolve linux-image-cloud-amd64 "
              "(no apt lists: apt-get update)")
        return 77
    paths = run_script(script)
    kernel, initrd = paths["kernel"], paths["initrd"]

    with open(kernel, "rb") as f:
        k = f.read()
    assert k[0x202:0x206] == b"HdrS", "kernel is not a bzImage"
    version = struct.unpack_from("<H", k, 0x206)[0]
    assert version >= 0x020C, "boot protocol %#x" % version
    assert k[0x236] & 1, "no XLF_KERNEL_64"

    listing = subprocess.run(["cpio", "-itv"], stdin=open(initrd, "rb"),
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE).stdout.decode()
    assert any(line.startswith("crw") and "dev/console" in line
               for line in listing.splitlines()), listing[:2000]

    with open(initrd, "rb") as f:
        data = f.read()
    e = newc_entries(data)
    mode, maj, mi, _ = e["dev/console"]
    assert (mode & 0o170000, maj, mi) == (0o020000, 5, 1), e["dev/console"]
    init = e["init"][3].decode()
    assert e["init"][0] & 0o111, "init is not executable"
    for needle in ("mmud-linux-guest: /init running", "poweroff -f",
                   "mount -t proc"):
        assert needle in init, "init lacks %r" % needle
    assert e["bin/sh"][3] == b"busybox", e["bin/sh"]
    assert len(e["bin/busybox"][3]) > 1000000, "busybox too small"
    order = e["lib/modules/order"][3].decode().split()
    assert sorted(order) == sorted(["virtio_ring", "virtio", "virtio_mmio",
                                    "virtio_blk"]), order
    assert paths["modules"].split() == order, (paths["modules"], order)
    for i, m in enumerate(order):
        ko = e["lib/modules/%s.ko" % m][3]
        assert ko[:4] == b"\x7fELF", "%s.ko is not an ELF object" % m
        for d in depends(ko):
            assert d in order[:i], "%s depends on %s, loaded later" % (m, d)

    again = run_script(script, "--offline")
    assert again["initrd"] == initrd, again
    with open(initrd, "rb") as f:
        assert f.read() == data, "--offline built another initramfs"
    print("ok   linux-guest: %s, %s (%d entries, modules %s)" %
          (kernel, initrd, len(e), " ".join(order)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
