#!/usr/bin/env python3
"""mmud boots a bzImage through Linux's 64-bit boot protocol and refuses
bad ones before any vCPU starts (docs/GUEST-ABI.md, "Platform v2 boot").

Builds a minimal bzImage whose protected-mode part, entered at its
offset 0x200 in 64-bit mode, checks what the boot protocol promises
(CS 0x10, DS/SS 0x18, RSI = the zero page at 0x7000, type_of_loader,
the command line's pointer and text, acpi_rsdp_addr and the RSDP, the
initrd's size and first byte) and writes 0 to the debug-exit port (mmud
exits 1) or the number of the first check that failed; asked to (append
"LR..."), it first spoils what the loader wrote and resets the VM through
the ACPI reset register, and must then pass the same checks. Then one
defective variant per refusal: mmud must exit with status 4 and a
message naming it. With --smp 2 only vCPU 0 runs; vCPU 1 waits for a
SIPI.
Usage: bad_bzimage.py MMUD
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

# The entry's checks, assembled (GNU as): see the docstring; exits with
# 2 (CS), 3 (DS/SS), 4 (RSI), 5 (type_of_loader), 6 (command line), 7
# (RSDP), 8 (initrd). When the command line's second byte is 'R' and the
# byte at 32 MiB is not yet 0x42, it sets that byte, zeroes
# cmd_line_ptr, the RSDP's first word and the command line's first byte,
# and writes the reset value 1 to port 0x600: the checks pass on the
# next boot only if the reset loaded everything again.
ENTRY = bytes.fromhex(
    "668cc86683f8100f85c6000000668cd86683f8180f85bd000000668cd06683f8"
    "180f85b00000004881fe007000000f85a700000080be10020000ff0f859e0000"
    "0081be28020000008000000f8592000000803c25008000004c0f858400000048"
    "817e7000000e00757e813c2500000e0052534420757181be1c02000000100000"
    "75698b861802000080385a755e803c2501800000527537803c25000000024274"
    "2dc604250000000242c7862802000000000000c7042500000e0000000000c604"
    "25008000000066ba0006b001eef4b000e6f4f4b002e6f4b003e6f4b004e6f4b0"
    "05e6f4b006e6f4b007e6f4b008e6f4f4")
SETUP_SECTS = 3
PM_LEN = 0x1000


def bzimage(version=0x020F, xloadflags=0x7F, magic=b"HdrS",
            boot_flag=0xAA55, truncate=None, init_size=0x100000,
            relocatable=1, pref=0x1000000):
    setup = bytearray((SETUP_SECTS + 1) * 512)
    setup[0x1F1] = SETUP_SECTS
    struct.pack_into("<I", setup, 0x1F4, PM_LEN // 16)
    struct.pack_into("<H", setup, 0x1FE, boot_flag)
    setup[0x200:0x202] = bytes([0xEB, 0x66])
    setup[0x202:0x206] = magic
    struct.pack_into("<H", setup, 0x206, version)
    setup[0x211] = 1
    struct.pack_into("<I", setup, 0x22C, 0x7FFFFFFF)
    struct.pack_into("<I", setup, 0x230, 0x200000)
    setup[0x234] = relocatable
    setup[0x236] = xloadflags
    struct.pack_into("<I", setup, 0x238, 0x7FF)
    struct.pack_into("<Q", setup, 0x258, pref)
    struct.pack_into("<I", setup, 0x260, init_size)
    pm = bytearray(PM_LEN)
    pm[0x200:0x200 + len(ENTRY)] = ENTRY
    image = bytes(setup) + bytes(pm)
    return image[:truncate] if truncate is not None else image


def run(mmud, tmp, image, initrd=None, memory="64M", append="Linux"):
    kernel = os.path.join(tmp, "bzImage")
    with open(kernel, "wb") as f:
        f.write(image)
    args = [mmud, "--kernel", kernel, "--memory", memory, "--append",
            append]
    if initrd is not None:
        path = os.path.join(tmp, "initrd")
        with open(path, "wb") as f:
            f.write(initrd)
        args += ["--initrd", path]
    p = subprocess.run(args, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=60)
    return p.returncode, p.stderr.decode(errors="replace")


def only_vcpu0_starts(mmud, tmp, rd):
    """--smp 2 --paused: vCPU 1 waits for a SIPI (an INIT at start) and
    has run nothing, vCPU 0 does not wait; after cont the guest passes.
    Returns an error or None."""
    kernel, initrd = os.path.join(tmp, "bzImage"), os.path.join(tmp, "rd")
    qmp = os.path.join(tmp, "qmp.sock")
    with open(kernel, "wb") as f:
        f.write(bzimage())
    with open(initrd, "wb") as f:
        f.write(rd)
    p = subprocess.Popen([mmud, "--kernel", kernel, "--initrd", initrd,
                          "--smp", "2", "--paused", "--qmp", qmp,
                          "--append", "Linux"],
                         stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 30
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                s.connect(qmp)
                break
            except OSError:
                if time.monotonic() > end:
                    return "no QMP socket"
                time.sleep(0.05)
        s.settimeout(30)
        f = s.makefile("rw")
        f.readline()
        f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
        f.flush()
        f.readline()
        # The INIT is taken on vCPU 1's thread, soon after it starts.
        while True:
            f.write(json.dumps({"execute": "query-cpus-fast"}) + "\n")
            f.flush()
            cpus = json.loads(f.readline())["return"]
            waits = [c.get("x-wait-for-sipi") for c in cpus]
            if waits == [False, True] or time.monotonic() > end:
                break
            time.sleep(0.05)
        if waits != [False, True] or cpus[1]["instructions"] != 0:
            return "vCPUs %r: want only vCPU 1 waiting for a SIPI" % cpus
        f.write(json.dumps({"execute": "cont"}) + "\n")
        f.flush()
        status = p.wait(60)
        if status != 1:
            return "status %d: %s" % (status, p.stderr.read().decode())
        return None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    mmud = sys.argv[1]
    rd = b"\x5a" + bytes(4095)
    cases = [
        ("good bzImage", bzimage(), rd, 1, None),
        ("guest reset reloads everything", bzimage(), rd, 1,
         "guest reset (ACPI reset register)", "LReset"),
        ("good bzImage, relocated", bzimage(pref=0x8000000), rd, 1, None),
        ("no initrd", bzimage(), None, 17, None),
        ("truncated header", bzimage(truncate=0x240), rd, 4, "truncated"),
        ("truncated payload", bzimage(truncate=0xA00), rd, 4,
         "truncated"),
        ("wrong magic", bzimage(magic=b"HdrX"), rd, 4, "bad magic"),
        ("wrong boot flag", bzimage(boot_flag=0x1234), rd, 4, "bad magic"),
        ("protocol too old", bzimage(version=0x020B), rd, 4,
         "older than 2.12"),
        ("no 64-bit entry", bzimage(xloadflags=0x7E), rd, 4,
         "no 64-bit entry point"),
        ("initrd too big", bzimage(), bytes(70 << 20), 4,
         "does not fit"),
        ("kernel does not fit", bzimage(init_size=0x7000000), rd, 4,
         "init_size"),
    ]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="mmud-bz-") as tmp:
        for name, image, initrd, want, words, *append in cases:
            status, err = run(mmud, tmp, image, initrd, append=(
                append or ["Linux"])[0])
            ok = status == want and (words is None or words in err)
            print("%s %s: status %d%s" % ("ok  " if ok else "FAIL", name,
                                          status,
                                          "" if ok else "\n" + err))
            failed += not ok
        err = only_vcpu0_starts(mmud, tmp, rd)
        print("%s only vCPU 0 runs%s" % ("ok  " if err is None else "FAIL",
                                           "" if err is None else
                                           ": " + err))
        failed += err is not None
        # An ELF kernel (the embedded sample guest) takes no initrd.
        path = os.path.join(tmp, "initrd")
        p = subprocess.run([mmud, "--initrd", path],
                           stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=60)
        err = p.stderr.decode(errors="replace")
        ok = p.returncode == 4 and "an initrd needs a bzImage" in err
        print("%s initrd with an ELF kernel: status %d%s" %
              ("ok  " if ok else "FAIL", p.returncode,
               "" if ok else "\n" + err))
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
