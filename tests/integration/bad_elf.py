#!/usr/bin/env python3
"""mmud refuses bad kernels before any vCPU starts.

Builds a valid minimal ELF64 kernel (it writes 0 to the debug-exit port:
mmud exits 1), checks that it boots, then one defective variant per kind
of defect the boot protocol names (docs/GUEST-ABI.md, "The kernel file")
and checks that
mmud exits with status 4 and a message naming the defect.
Usage: bad_elf.py MMUD
"""
import os
import struct
import subprocess
import sys
import tempfile

EHDR = "<16sHHIQQQIHHHHHH"
PHDR = "<IIQQQQQQ"
PT_LOAD, PF_X, PF_W, PF_R = 1, 1, 2, 4
CODE = bytes([0xB0, 0x00, 0xE6, 0xF4, 0xF4])  # mov al,0; out 0xf4,al; hlt


def elf(ident_class=2, data=1, etype=2, machine=62, segs=None, entry=0x100000,
        truncate=None):
    """segs: list of (flags, vaddr, paddr, filesz, memsz, payload)."""
    if segs is None:
        segs = [(PF_R | PF_X, 0x100000, 0x100000, len(CODE), len(CODE), CODE)]
    ident = b"\x7fELF" + bytes([ident_class, data, 1]) + bytes(9)
    phoff = 64
    off = 0x1000
    phdrs, payloads = b"", b""
    for flags, vaddr, paddr, filesz, memsz, payload in segs:
        phdrs += struct.pack(PHDR, PT_LOAD, flags, off + len(payloads),
                             vaddr, paddr, filesz, memsz, 0x1000)
        payloads += payload + bytes(-len(payload) % 16)
    hdr = struct.pack(EHDR, ident, etype, machine, 1, entry, phoff, 0, 0, 64,
                      56, len(segs), 64, 0, 0)
    image = hdr + phdrs
    image += bytes(off - len(image)) + payloads
    return image[:truncate] if truncate is not None else image


def main():
    mmud = sys.argv[1]
    big = bytes(0x2000)
    cases = [
        ("good kernel", elf(), 1, None),
        ("not ELF", b"\x7fEL" + bytes(100), 4, "not an ELF file"),
        ("32-bit class", elf(ident_class=1), 4, "is not ELFCLASS64"),
        ("big endian", elf(data=2), 4, "is not little endian"),
        ("wrong machine", elf(machine=3), 4, "is not x86-64"),
        ("wrong type", elf(etype=3), 4, "is not ET_EXEC"),
        ("truncated header", elf(truncate=40), 4, "shorter than an ELF64"),
        ("truncated segment", elf(truncate=0x1002), 4, "outside the"),
        ("segments overlap", elf(segs=[
            (PF_R | PF_X, 0x100000, 0x100000, len(CODE), 0x2000, CODE),
            (PF_R | PF_W, 0x101000, 0x101000, 16, 16, bytes(16))]),
         4, "overlaps segment"),
        ("outside RAM", elf(segs=[
            (PF_R | PF_X, 0x20000000, 0x20000000, len(CODE), len(CODE),
             CODE)], entry=0x20000000), 4, "is not inside guest RAM"),
        ("below 1 MiB", elf(segs=[
            (PF_R | PF_X, 0x80000, 0x80000, len(CODE), len(CODE), CODE)],
            entry=0x80000), 4, "is below 1 MiB"),
        ("vaddr != paddr", elf(segs=[
            (PF_R | PF_X, 0xffffffff80100000, 0x100000, len(CODE),
             len(CODE), CODE)]), 4, "!= p_paddr"),
        ("entry outside executable segment", elf(segs=[
            (PF_R | PF_X, 0x100000, 0x100000, len(CODE), len(CODE), CODE),
            (PF_R | PF_W, 0x200000, 0x200000, len(big), len(big), big)],
            entry=0x200000), 4, "not inside an executable segment"),
    ]
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        for name, image, want_status, want_msg in cases:
            path = os.path.join(d, name.replace(" ", "_") + ".elf")
            with open(path, "wb") as f:
                f.write(image)
            p = subprocess.run([mmud, "--kernel", path], capture_output=True,
                               text=True, timeout=60)
            ok = p.returncode == want_status and (
                want_msg is None or want_msg in p.stderr)
            if want_status == 4 and p.stdout:
                ok = False  # nothing may have run
            print(f"{'ok' if ok else 'FAIL'}: {name}: status {p.returncode}"
                  f" (want {want_status}), stderr: {p.stderr.strip()!r}")
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
