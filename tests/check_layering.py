#!/usr/bin/env python3
"""The module graph the build promises (docs/ARCHITECTURE.md): core/ uses
neither libevent nor jansson (nor liburing outside core/dev's block
backend), mmuctl links rpc's client half only, so no libevent, and a
module's private header is included only by the module itself, its
tests, bench/ and the explorer ("Private headers with outside
includers").

usage: check_layering.py SOURCE_ROOT BUILD_ROOT
Fails naming each file that includes what its module may not, and what
mmuctl's link line (build.ninja) pulls in that it should not.
"""
import re
import sys
from pathlib import Path

FORBIDDEN_IN_CORE = re.compile(
    r'^\s*#\s*include\s*[<"](jansson\.h|event2/[^>"]+|event\.h|liburing\.h)[>"]')


def core_includes(root):
    bad = []
    for path in sorted((root / "core").rglob("*.[ch]")):
        rel = path.relative_to(root)
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = FORBIDDEN_IN_CORE.match(line)
            if not m:
                continue
            if m.group(1) == "liburing.h" and rel.parts[:2] == ("core", "dev"):
                continue
            bad.append(f"{rel}:{n}: core/ includes {m.group(1)}")
    return bad


# Private header: (the module's folder, other places allowed to include it).
PRIVATE = {
    "mmu_int.h": ("core/mmu/", ("tests/", "bench/")),
    "x86_int.h": ("core/vcpu/x86/", ("tests/",)),
    "vcpu_int.h": ("core/vcpu/", ("tests/explorer/",)),
    "rpc_int.h": ("rpc/", ("tests/unit/rpc/",)),
    "memops_args.h": ("daemon/", ("tests/unit/rpc/",)),
    "migrate_int.h": ("core/migrate/", ("tests/unit/migrate/", "tests/fuzz/")),
}
PRIVATE_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+_int\.h|memops_args\.h)"')


def private_includes(root):
    bad = []
    for path in sorted(root.rglob("*.[ch]")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("build"):
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = PRIVATE_INCLUDE.match(line)
            if not m or m.group(1) not in PRIVATE:
                continue
            home, others = PRIVATE[m.group(1)]
            if rel.startswith(home) or rel.startswith(others):
                continue
            bad.append(f"{rel}:{n}: includes {m.group(1)}, private to "
                       f"{home} (allowed too: {', '.join(others)})")
    return bad


def mmuctl_link(build):
    """The inputs and arguments of mmuctl's link step in build.ninja."""
    lines = (build / "build.ninja").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("build cli/mmuctl:"):
            return line + " " + " ".join(lines[i + 1:i + 3])
    raise SystemExit("no link step for cli/mmuctl in build.ninja")


def main():
    root, build = Path(sys.argv[1]), Path(sys.argv[2])
    problems = core_includes(root) + private_includes(root)
    link = mmuctl_link(build)
    for bad in ("libevent", "rpc/librpc.a"):
        if bad in link:
            problems.append(f"mmuctl links {bad}: it must link rpc's client "
                            "half only (rpc_client_dep)")
    if "librpc_client.a" not in link:
        problems.append(f"mmuctl does not link librpc_client.a: {link}")
    for p in problems:
        print(p)
    print(f"{len(problems)} layering problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
