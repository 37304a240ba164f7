#!/usr/bin/env python3
"""Migration over tcp: between two network namespaces joined by a veth
pair, as between two hosts: each hop's source runs in one namespace and
its destination in the other, listening on its own veth address (IPv4,
then IPv6), so the stream crosses a real link and no loopback. Every
hop makes the checks of tests/integration/test_migration.py's round
trips (its hop(): events in QEMU's order on both sides, the guest's own
memory checks, numbered heartbeats with their checksums, the console
stream whole, the MMU audit on both sides, the source postmigrate).

QMP, console and notify sockets are files, which every namespace
reaches; only TCP sees the namespaces. Creating them needs root and
ip(8) (iproute2): without either the test is skipped (exit 77) with
the reason printed.

Usage: test_migration_netns.py GROUP MMUD MMUCTL FOREVER_ELF MIGRATE_ELF
GROUP: netns (meson: migration-netns). Shared parts: tests/lib.
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
import daemonlib as dl  # noqa: E402
from daemonlib import test  # noqa: E402
import test_migration as tm  # noqa: E402

SKIP = 77
# Sanitizer builds (meson sets MMUD_SLOW) make one short round trip.
SLOW = bool(os.environ.get("MMUD_SLOW"))
TAG = "mmud%d" % os.getpid()
NS = (TAG + "a", TAG + "b")
VETH = (TAG + "va", TAG + "vb")
# A subnet of 10/8 and a ULA prefix from the pid: runs never collide.
V4 = ("10.%d.%d.1" % (os.getpid() >> 8 & 255, os.getpid() & 255),
      "10.%d.%d.2" % (os.getpid() >> 8 & 255, os.getpid() & 255))
V6 = ("fd6d:%x::1" % (os.getpid() & 0xffff),
      "fd6d:%x::2" % (os.getpid() & 0xffff))
REAL_MMUD = None


def ip(*args, ns=None):
    cmd = (["ip", "netns", "exec", ns, "ip"] if ns else ["ip"]) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise OSError("%s: %s" % (" ".join(cmd), p.stderr.strip()))


def make_namespaces():
    """The two namespaces and the link; an OSError says why not."""
    if os.geteuid() != 0:
        raise OSError("not root: network namespaces need CAP_SYS_ADMIN")
    if not shutil.which("ip"):
        raise OSError("no ip(8): install iproute2 (scripts/install-deps)")
    for ns in NS:
        ip("netns", "add", ns)
    ip("link", "add", VETH[0], "netns", NS[0], "type", "veth", "peer",
       "name", VETH[1], "netns", NS[1])
    for i, ns in enumerate(NS):
        ip("link", "set", "lo", "up", ns=ns)
        ip("addr", "add", V4[i] + "/24", "dev", VETH[i], ns=ns)
        ip("addr", "add", V6[i] + "/64", "dev", VETH[i], "nodad", ns=ns)
        ip("link", "set", VETH[i], "up", ns=ns)


def remove_namespaces():
    for ns in NS:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def wrapper(tmp, i):
    """A program that is mmud run in namespace i (Daemon runs dl.MMUD;
    ip netns exec execs, so the process is mmud itself)."""
    path = os.path.join(tmp, "mmud-in-" + NS[i])
    with open(path, "w") as f:
        f.write('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' %
                (NS[i], REAL_MMUD))
    os.chmod(path, 0o755)
    return path


def in_turns(tmp, hops_uri):
    """test_migration's vm() with hop hK in namespace K % 2, and a
    uri_of() giving the destination's own address there, port 0."""
    wrappers = (wrapper(tmp, 0), wrapper(tmp, 1))
    original = tm.vm

    def vm(tmp_, name, smp, *extra):
        dl.MMUD = wrappers[int(name[1:]) % 2]
        try:
            return original(tmp_, name, smp, *extra)
        finally:
            dl.MMUD = REAL_MMUD

    def uri_of(tmp_, name):
        return hops_uri[int(name[1:]) % 2]

    return vm, original, uri_of


def round_trips(tmp, smp, uris, hops):
    os.makedirs(tmp, exist_ok=True)
    vm, original, uri_of = in_turns(tmp, uris)
    tm.vm = vm
    try:
        tm.round_trips(tmp, smp, uri_of, hops)
    finally:
        tm.vm = original


@test("netns")
def test_tcp4_across_namespaces_1_2_4_vcpus_round_trips(tmp):
    # As many hops as test_migration.py's own round trips make.
    hops = 2 if SLOW else getattr(tm, "HOPS", 2)
    for smp in (2,) if SLOW else (1, 2, 4):
        round_trips(os.path.join(tmp, str(smp)), smp,
                    ["tcp:%s:0" % a for a in V4], hops)


@test("netns")
def test_tcp6_across_namespaces_2_vcpus_there_and_back(tmp):
    if SLOW:
        print("skipped under a sanitizer build: the IPv4 round trip is "
              "the short one")
        return
    round_trips(tmp, 2, ["tcp:[%s]:0" % a for a in V6], 2)


def main():
    global REAL_MMUD
    REAL_MMUD = os.path.abspath(sys.argv[2])
    tm.MIGRATE = sys.argv[5]
    try:
        make_namespaces()
    except OSError as e:
        remove_namespaces()
        print("skipped: cannot make network namespaces: %s" % e)
        return SKIP
    try:
        return dl.main()
    finally:
        remove_namespaces()


if __name__ == "__main__":
    sys.exit(main())
