#!/usr/bin/env python3
"""mmud-blkload (bench/blkload.c), the load generator of
bench/virtio_blk.py --qemu, run on the host against a small file: each
phase prints a parsable result whose bytes are its requests times their
size over about the time asked for; sequential writes land on the file;
bad arguments and a device smaller than one request are refused with a
message naming them and exit status 1 (docs/BENCHMARKS.md, "Block I/O —
bench/virtio_blk.py").

    test_blkload.py BUILD/bench/mmud-blkload
"""
import os
import re
import subprocess
import sys
import tempfile

RESULT = re.compile(r"^blkload: result (\S+) ops (\d+) bytes (\d+) ns (\d+)$",
                    re.M)


def run(blkload, *args):
    p = subprocess.run([blkload] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def refused(blkload, args, want):
    rc, out = run(blkload, *args)
    if rc != 1 or want not in out or "blkload: error" not in out:
        fail("%s: want exit 1 and an error naming %r; got %d: %s" %
             (" ".join(args), want, rc, out))


def main():
    blkload = sys.argv[1]
    # Under the build directory: tmpfs may refuse O_DIRECT.
    with tempfile.TemporaryDirectory(
            dir=os.path.dirname(os.path.abspath(blkload))) as tmp:
        img = os.path.join(tmp, "img")
        with open(img, "wb") as f:
            f.write(os.urandom(8 << 20))
        rc, out = run(blkload, img, "1", "randread:4096:1")
        if rc == 1 and "Invalid argument" in out:
            print("SKIP: O_DIRECT refused here: " + out)
            sys.exit(77)

        refused(blkload, [], "usage")
        refused(blkload, [img, "0"], "SECONDS")
        refused(blkload, [img, "1", "randread:4000:1"], "randread:4000:1")
        refused(blkload, [img, "1", "randread:4096:0"], "randread:4096:0")
        refused(blkload, [img, "1", "randread:4096:257"],
                "randread:4096:257")
        refused(blkload, [img, "1", "scan:4096:1"], "scan:4096:1")
        refused(blkload, [os.path.join(tmp, "missing"), "1"], "missing")
        small = os.path.join(tmp, "small")
        with open(small, "wb") as f:
            f.write(bytes(4096))
        refused(blkload, [small, "1", "seqread:8192:1"], "smaller than one")

        phases = ["randread:4096:1", "randread:4096:8", "seqwrite:1048576:4"]
        rc, out = run(blkload, img, "1", *phases)
        if rc != 0 or not out.rstrip().endswith("blkload: done"):
            fail("three 1 s phases: exit %d: %s" % (rc, out))
        got = RESULT.findall(out)
        want = ["randread-4096-qd1", "randread-4096-qd8",
                "seqwrite-1048576-qd4"]
        if [g[0] for g in got] != want:
            fail("result lines %s, want %s: %s" % (got, want, out))
        for name, ops, nbytes, ns in got:
            ops, nbytes, ns = int(ops), int(nbytes), int(ns)
            size = int(name.split("-")[1])
            if ops == 0 or nbytes != ops * size:
                fail("%s: %d ops and %d bytes of %d each" %
                     (name, ops, nbytes, size))
            if not 1e9 <= ns < 5e9:
                fail("%s: %d ns for a 1 s phase" % (name, ns))
        # The writes' buffers hold 0x5a: the first MiB, written first,
        # must be that now instead of random bytes.
        with open(img, "rb") as f:
            head = f.read(1 << 20)
        if head != b"\x5a" * (1 << 20):
            fail("after seqwrite the first MiB is not the written 0x5a "
                 "(first bytes %s)" % head[:16].hex())
    print("ok: results parsed, writes landed, bad arguments refused")


if __name__ == "__main__":
    main()
