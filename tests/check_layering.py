#!/usr/bin/env python3
"""The module graph the build promises (docs/ARCHITECTURE.md): core/ uses
neither libevent nor jansson (nor liburing outside core/dev's block
backend), and mmuctl links rpc's client half only, so no libevent.

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


def mmuctl_link(build):
    """The inputs and arguments of mmuctl's link step in build.ninja."""
    lines = (build / "build.ninja").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("build cli/mmuctl:"):
            return line + " " + " ".join(lines[i + 1:i + 3])
    raise SystemExit("no link step for cli/mmuctl in build.ninja")


def main():
    root, build = Path(sys.argv[1]), Path(sys.argv[2])
    problems = core_includes(root)
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
