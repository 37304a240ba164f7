#!/usr/bin/env python3
"""mmud and mmuctl agree on VM names (rpc/vm_paths.h): every name one
accepts the other accepts, every name one refuses the other refuses.

usage: test_names.py MMUD MMUCTL
"""
import subprocess
import sys
import tempfile

GOOD = ["vm1", "a", "A.b-c_d", "x" * 63, "9lives", "web.prod-01"]
BAD = ["", ".", "..", ".hidden", "-rf", "a/b", "x" * 64, "sp ace",
       "semi;colon", "caf\u00e9", "new\nline", "*"]


def mmud_refuses(mmud, name, tmp):
    # A kernel that does not exist: a good name gets as far as that.
    r = subprocess.run([mmud, "--name", name, "--kernel", f"{tmp}/none.elf",
                        "--qmp", f"{tmp}/q.sock", "--console", "stdout"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 4:
        raise AssertionError(f"mmud --name {name!r}: status {r.returncode}, "
                             f"expected 4; stderr: {r.stderr!r}")
    return "not a VM name" in r.stderr


def mmuctl_refuses(mmuctl, name):
    r = subprocess.run([mmuctl, "--name", name, "status"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 2:
        raise AssertionError(f"mmuctl --name {name!r}: status {r.returncode}, "
                             f"expected 2; stderr: {r.stderr!r}")
    return "bad VM name" in r.stderr


def main():
    mmud, mmuctl = sys.argv[1], sys.argv[2]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, want in [(n, False) for n in GOOD] + [(n, True) for n in BAD]:
            d = mmud_refuses(mmud, name, tmp)
            c = mmuctl_refuses(mmuctl, name)
            if d != want or c != want:
                failures.append(f"{name!r}: mmud {'refuses' if d else 'accepts'}, "
                                f"mmuctl {'refuses' if c else 'accepts'}, "
                                f"expected both to {'refuse' if want else 'accept'}")
    for f in failures:
        print(f)
    print(f"{len(GOOD) + len(BAD)} names, {len(failures)} disagreement(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
