#!/usr/bin/env python3
"""Memory operations on a running VM, with the real daemon.

hotplug: the hotplug guest polls a window above 4 GiB while QMP adds and
  removes slots there hundreds of times, runs fast and slow zap-all, and
  starts, harvests and stops dirty logging; x-mmu-audit is clean after
  every operation; removed slots' memory is unmapped in the daemon (its
  /proc/PID/maps); the guest reports how many slots it filled and never
  fails.
dirty: the dirty guest writes pages in rounds and prints which; every
  harvest must report exactly the pages written since the last one, and
  a second harvest with the vCPUs paused reports none.
badargs: every bad argument gets a GenericError naming the field and
  changes nothing (x-query-memslots before and after); a memslot
  command's reply comes before the X_MEMSLOT_CHANGED event it causes.
random: every command the daemon lists, with seeded random arguments of
  every type in and out of range: refusals change nothing, successes do
  what they say, the guest runs on and the audit is clean.

Usage: test_memops.py GROUP MMUD MMUCTL FOREVER_ELF HOTPLUG_ELF DIRTY_ELF
"""
import base64
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as td  # noqa: E402

GiB = 1 << 30
HOTPLUG_GPA, CONTROL_GPA = 8 * GiB, 12 * GiB
BELLS = [12 * GiB, 12 * GiB + (2 << 20)]
ROUNDS = 8
HOTPLUG = DIRTY = None
SLOW = bool(os.environ.get("MMUD_SLOW"))
test = td.test  # registers in daemonlib's TESTS, which td.main() runs


def ok(r):
    assert "return" in r, r
    return r["return"]


def audit(c):
    assert c.cmd("x-mmu-audit") == {"return": {}}, "audit failed"


def hotmem_mappings(pid):
    """The daemon's memfd mappings of hot-added memory."""
    with open("/proc/%d/maps" % pid) as f:
        return [l for l in f if "mmud-hotmem" in l]


def pages_of(bitmap_b64, npages):
    raw = base64.b64decode(bitmap_b64)
    return {p for p in range(npages) if raw[p // 8] >> (p % 8) & 1}


@test("hotplug")
def test_hotplug_window_under_slot_churn(tmp):
    d = td.Daemon(tmp, smp=1, kernel=HOTPLUG)
    c = d.client()
    con, _ = td.read_console_until(d.con, "hotplug: polling")
    rounds = 60 if SLOW else 300
    filled = 0
    for i in range(rounds):
        size = [4096, 64 << 10, 1 << 20][i % 3]
        gpa = HOTPLUG_GPA + (i * 4096 % (1 << 20) if size == 4096 else 0)
        log = i % 4 == 0
        slot = ok(c.cmd("x-memslot-add", {"gpa": gpa, "size": size,
                                         "log-dirty": log}))["slot"]
        audit(c)
        if log:
            # Wait (bounded) until the guest has written the new slot:
            # its dirty log says so. Then read, harvest and stop.
            deadline = time.monotonic() + td.TIMEOUT
            while True:
                h = ok(c.cmd("x-dirty-log-harvest",
                             {"slot": slot, "clear": False}))
                if h["dirty-pages"]:
                    break
                assert time.monotonic() < deadline, "guest never wrote"
            filled += 1
            h2 = ok(c.cmd("x-dirty-log-harvest", {"slot": slot}))
            assert h2["dirty-pages"] >= h["dirty-pages"], (h, h2)
            ok(c.cmd("x-dirty-log-stop", {"slot": slot}))
            audit(c)
        elif i % 4 == 2:
            ok(c.cmd("x-dirty-log-start", {"slot": slot}))
            ok(c.cmd("x-dirty-log-harvest", {"slot": slot}))
            audit(c)
        if i % 5 == 0:
            z = ok(c.cmd("x-mmu-zap-all", {"slow": i % 10 == 0}))
            assert z["mode"] == ("slow" if i % 10 == 0 else "fast"), z
            audit(c)
        ok(c.cmd("x-memslot-remove", {"slot": slot}))
        audit(c)
        assert not hotmem_mappings(d.proc.pid), "removed slot still mapped"
    slots = ok(c.cmd("x-query-memslots"))
    assert all(s["gpa"] < 4 * GiB for s in slots), slots
    # The control slot tells the guest to report and exit.
    ok(c.cmd("x-memslot-add", {"gpa": CONTROL_GPA, "size": 4096}))
    _, out = td.read_console_until(d.con,
                                   re.compile(r"hotplug: (PASS|FAIL)\n"), con)
    m = re.search(r"hotplug: (\d+) slot fills, (\d+) page checks, "
                  r"(\d+) bad", out)
    assert m and int(m.group(1)) >= filled > 0 and m.group(3) == "0", out
    assert "hotplug: PASS" in out, out
    assert d.wait() == 1, d.log()
    d.kill()


class Console:
    """The console socket as a stream of lines to wait for."""

    def __init__(self, path):
        self.sock, self.buf = td.read_console_until(path, "")
        self.path = path

    def wait(self, pattern):
        """Reads until pattern matches; consumes through the match."""
        while True:
            m = re.search(pattern, self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("console closed waiting for %r" % pattern)
            self.buf += chunk.decode(errors="replace")


@test("dirty")
def test_dirty_log_reports_exactly_what_the_guest_wrote(tmp):
    d = td.Daemon(tmp, smp=2, kernel=DIRTY)
    c = d.client()
    con = Console(d.con)
    con.wait(r"dirty: waiting")
    data = ok(c.cmd("x-memslot-add", {"gpa": HOTPLUG_GPA, "size": 64 << 12,
                                      "log-dirty": True}))["slot"]
    bells = [None, None]
    for r in range(1, ROUNDS + 1):
        line = con.wait(r"dirty: round %d:([^\n]*)\n" % r)
        wrote = {int(p) for p in line.group(1).split()}
        h = ok(c.cmd("x-dirty-log-harvest", {"slot": data}))
        got = pages_of(h["bitmap"], 64)
        assert got == wrote, ("round", r, "missed", wrote - got,
                              "invented", got - wrote)
        assert h["dirty-pages"] == len(wrote), h
        # Paused, nothing can write: a second harvest finds nothing.
        ok(c.cmd("stop"))
        assert ok(c.cmd("x-dirty-log-harvest",
                        {"slot": data}))["dirty-pages"] == 0
        ok(c.cmd("cont"))
        audit(c)
        # Ring the doorbell of the next round's parity.
        nxt = (r + 1) % 2
        if bells[1 - nxt] is not None:
            ok(c.cmd("x-memslot-remove", {"slot": bells[1 - nxt]}))
            bells[1 - nxt] = None
        bells[nxt] = ok(c.cmd("x-memslot-add", {"gpa": BELLS[nxt],
                                                "size": 4096}))["slot"]
    con.wait(r"dirty: done")
    assert d.wait() == 1, d.log()
    d.kill()


@test("bootram")
def test_boot_ram_logs_and_reset_writes_are_dirty(tmp):
    d = td.Daemon(tmp, smp=1)
    c = d.client()
    ram = ok(c.cmd("x-query-memslots"))[0]
    assert ram["slot"] == 0 and ram["gpa"] == 0, ram
    npages = ram["size"] // 4096
    ok(c.cmd("x-dirty-log-start", {"slot": 0}))
    assert ok(c.cmd("x-query-memslots"))[0]["log-dirty"] is True
    ok(c.cmd("stop"))
    ok(c.cmd("x-dirty-log-harvest", {"slot": 0}))
    assert ok(c.cmd("x-dirty-log-harvest", {"slot": 0}))["dirty-pages"] == 0
    # system_reset rewrites the kernel and low memory behind the MMU:
    # those writes are the daemon's, and dirty-logged.
    ok(c.cmd("system_reset"))
    h = ok(c.cmd("x-dirty-log-harvest", {"slot": 0}))
    assert h["dirty-pages"] == npages, h["dirty-pages"]
    assert pages_of(h["bitmap"], npages) == set(range(npages))
    ok(c.cmd("x-dirty-log-stop", {"slot": 0}))
    audit(c)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("badargs")
def test_memslot_change_event_follows_the_reply(tmp):
    """docs/QMP.md: the client that sends x-memslot-add, -remove or
    x-dirty-log-start/-stop reads the reply first, then X_MEMSLOT_CHANGED
    (read off the wire in order, not through Client.reply(), which would
    set an early event aside); another client gets the events alone."""
    d = td.Daemon(tmp, smp=1)
    c = d.client()
    watcher = d.client()
    slot = None
    steps = [("x-memslot-add", {"gpa": HOTPLUG_GPA, "size": 1 << 20},
              "added"),
             ("x-dirty-log-start", None, "dirty-log-started"),
             ("x-dirty-log-stop", None, "dirty-log-stopped"),
             ("x-memslot-remove", None, "removed")]
    for i, (cmd, args, action) in enumerate(steps):
        c.send({"execute": cmd, "arguments": args or {"slot": slot},
                "id": i})
        first, second = c.recv(), c.recv()
        assert first.get("id") == i and "return" in first, (cmd, first)
        if slot is None:
            slot = first["return"]["slot"]
        assert second.get("event") == "X_MEMSLOT_CHANGED", (cmd, second)
        td.check_event_shape(second)
        assert second["data"] == {"slot": slot, "action": action}, second
    for _, _, action in steps:
        ev, before = watcher.event("X_MEMSLOT_CHANGED")
        assert ev["data"] == {"slot": slot, "action": action} and \
            not before, (ev, before)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("badargs")
def test_bad_arguments_refused_and_nothing_changes(tmp):
    d = td.Daemon(tmp, smp=1)
    c = d.client()
    mem = ok(c.cmd("query-memory-size-summary"))
    assert mem == {"base-memory": 256 << 20, "plugged-memory": 0}, mem
    good = ok(c.cmd("x-memslot-add", {"gpa": HOTPLUG_GPA, "size": 1 << 20}))
    before = ok(c.cmd("x-query-memslots"))
    cases = [
        ("x-memslot-add", {"gpa": 0, "size": 4096}, "RAM"),
        ("x-memslot-add", {"gpa": 3 * GiB, "size": 4096}, "MMIO hole"),
        ("x-memslot-add", {"gpa": HOTPLUG_GPA + 4096, "size": 4096},
         "overlaps slot"),
        ("x-memslot-add", {"gpa": 9 * GiB + 1, "size": 4096}, "gpa"),
        ("x-memslot-add", {"gpa": 9 * GiB, "size": 100}, "size"),
        ("x-memslot-add", {"gpa": 9 * GiB, "size": 0}, "size"),
        ("x-memslot-add", {"gpa": 9 * GiB, "size": 1 << 40}, "size"),
        ("x-memslot-add", {"gpa": 1 << 46, "size": 4096}, "gpa"),
        ("x-memslot-add", {"gpa": -4096, "size": 4096}, "gpa"),
        ("x-memslot-add", {"gpa": "9G", "size": 4096}, "gpa"),
        ("x-memslot-add", {"gpa": 9 * GiB, "size": 4096, "bogus": 1},
         "bogus"),
        ("x-memslot-add", {"size": 4096}, "gpa"),
        ("x-memslot-remove", {"slot": 999}, "slot"),
        ("x-memslot-remove", {"slot": 0}, "slot"),
        ("x-memslot-remove", {"slot": -1}, "slot"),
        ("x-memslot-remove", {"slot": "1"}, "slot"),
        ("x-dirty-log-start", {"slot": 999}, "slot"),
        ("x-dirty-log-stop", {"slot": 7}, "slot"),
        ("x-dirty-log-harvest", {"slot": good["slot"]}, "logging"),
        ("x-dirty-log-harvest", {"slot": good["slot"], "clear": 1},
         "clear"),
        ("x-mmu-zap-all", {"slow": "yes"}, "slow"),
        ("x-mmu-zap-all", {"fast": True}, "fast"),
    ]
    for cmd, args, field in cases:
        r = c.cmd(cmd, args)
        assert "error" in r and r["error"]["class"] == "GenericError", \
            (cmd, args, r)
        assert field in r["error"]["desc"], (cmd, args, r)
        assert ok(c.cmd("x-query-memslots")) == before, (cmd, args)
    # Hot-added memory counts as plugged, as QEMU's DIMMs do.
    mem = ok(c.cmd("query-memory-size-summary"))
    assert mem == {"base-memory": 256 << 20, "plugged-memory": 1 << 20}, mem
    ok(c.cmd("x-memslot-remove", {"slot": good["slot"]}))
    mem = ok(c.cmd("query-memory-size-summary"))
    assert mem["plugged-memory"] == 0, mem
    audit(c)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("badargs")
def test_maxmem_ceiling_refuses_and_summary_stays_honest(tmp):
    """--maxmem (QEMU's -m maxmem): boot RAM plus hot-added slots may not
    exceed it; the refusal names the numbers and changes nothing, and
    query-memory-size-summary adds up to what was plugged."""
    d = td.Daemon(tmp, "--memory", "3G", "--maxmem", "4G", smp=1)
    c = d.client()
    half = ok(c.cmd("x-memslot-add", {"gpa": 8 * GiB, "size": GiB // 2}))
    before = ok(c.cmd("x-query-memslots"))
    r = c.cmd("x-memslot-add", {"gpa": 16 * GiB, "size": GiB})
    assert "error" in r, r
    desc = r["error"]["desc"]
    for want in ("size", "0x40000000", "maxmem 0x100000000", "0xc0000000",
                 "0x20000000 left"):
        assert want in desc, (want, desc)
    assert ok(c.cmd("x-query-memslots")) == before
    assert ok(c.cmd("query-memory-size-summary")) == {
        "base-memory": 3 * GiB, "plugged-memory": GiB // 2}
    # What is left still fits, to the byte.
    ok(c.cmd("x-memslot-add", {"gpa": 16 * GiB, "size": GiB // 2}))
    r = c.cmd("x-memslot-add", {"gpa": 24 * GiB, "size": 4096})
    assert "maxmem" in r["error"]["desc"], r
    ok(c.cmd("x-memslot-remove", {"slot": half["slot"]}))
    ok(c.cmd("x-memslot-add", {"gpa": 8 * GiB, "size": GiB // 2}))
    mem = ok(c.cmd("query-memory-size-summary"))
    assert mem == {"base-memory": 3 * GiB, "plugged-memory": GiB}, mem
    audit(c)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()
    # Without --maxmem the ceiling is 1 TiB: a 3 GiB VM takes 15 slots of
    # 64 GiB (963 GiB), not the 61 (3.8 TiB "plugged") it once did.
    d = td.Daemon(tmp, "--memory", "3G", smp=1)
    c = d.client()
    n = 0
    while True:
        r = c.cmd("x-memslot-add", {"gpa": (n + 1) * (64 * GiB),
                                    "size": 64 * GiB})
        if "error" in r:
            break
        n += 1
    assert n == 15, (n, r)
    assert "maxmem 0x10000000000" in r["error"]["desc"], r
    mem = ok(c.cmd("query-memory-size-summary"))
    assert mem == {"base-memory": 3 * GiB, "plugged-memory": 15 * 64 * GiB}
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()
    # A ceiling below the boot RAM, or not a size, stops mmud (status 4).
    for bad, why in (("2G", "maxmem"), ("4097", "--maxmem"),
                     ("65T", "--maxmem")):
        p = td.popen([td.MMUD, "--memory", "3G", "--maxmem", bad],
                     stdout=td.subprocess.DEVNULL,
                     stderr=td.subprocess.PIPE, text=True)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 4 and why in err, (bad, p.returncode, err)
    # The config file's key.
    cfg = os.path.join(tmp, "vm.conf")
    with open(cfg, "w") as f:
        f.write("memory = 3G\nmaxmem = 3G\n")
    d = td.Daemon(tmp, "--config", cfg, smp=1)
    c = d.client()
    r = c.cmd("x-memslot-add", {"gpa": 8 * GiB, "size": 4096})
    assert "maxmem 0xc0000000 (0 left)" in r["error"]["desc"], r
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


def ram_vmflags(pid):
    """VmFlags of the daemon's guest-RAM mappings (boot and hot-added),
    from /proc/PID/smaps: [(name, set of flags)]."""
    out, name = [], None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = (line.split(None, 5)[5].strip()
                        if "memfd:mmud-" in line else None)
            elif line.startswith("VmFlags:") and name:
                out.append((name, set(line.split()[1:])))
    return out


@test("bootram")
def test_guest_ram_left_out_of_core_dumps_unless_asked(tmp):
    """QEMU's dump-guest-core: off by default, so every guest-RAM mapping
    is MADV_DONTDUMP ('dd' in smaps' VmFlags); --dump-guest-core keeps it
    in core dumps."""
    for extra, want_dd in (((), True), (("--dump-guest-core",), False)):
        d = td.Daemon(tmp, "--memory", "3584M", *extra, smp=1)
        c = d.client()
        ok(c.cmd("x-memslot-add", {"gpa": 8 * GiB, "size": 2 << 20}))
        flags = ram_vmflags(d.proc.pid)
        names = [n for n, _ in flags]
        # Boot RAM below and above the MMIO hole, and the hot slot.
        assert sum("mmud-ram" in n for n in names) == 2, flags
        assert sum("mmud-hotmem" in n for n in names) == 1, flags
        for n, f in flags:
            assert ("dd" in f) == want_dd, (extra, n, sorted(f))
        c.cmd("quit")
        assert d.wait() == 0, d.log()
        d.kill()


# Values of every JSON type, in and out of each argument's range.
ANY = [None, True, False, 0, 1, -1, 4096, 2**31, 2**53, 2**63 - 1, -2**63,
       1.5, "", "x", "serial0", [], [1], {}, {"a": 1}]
RANDOM_VALUES = {
    "gpa": [0, 4096, 3 * GiB, 4 * GiB, 8 * GiB, 8 * GiB + 1, 9 * GiB,
            12 * GiB, 1 << 45, 1 << 46, 2**63 - 4096, -4096],
    # (64 GiB, the largest slot, is left out: per-page MMU metadata of a
    # few such slots would cost this test gigabytes.)
    "size": [0, 1, 4096, 8192, 1 << 20, 2 << 20, 1 << 30,
             (64 << 30) + 4096, 2**63 - 4096, -4096],
    "slot": [-1, 0, 1, 15, 16, 16, 17, 17, 18, 19, 20, 40, 79, 80, 2**31,
             2**32 + 16],
    "readonly": [True, False], "log-dirty": [True, False],
    "clear": [True, False], "slow": [True, False],
    "device": ["serial0", "serial1", "compat_monitor0"],
    "size@ringbuf-read": [0, -1, 1, 3, 4096, 1 << 40],
    "data": ["hi\n", "Zg==", "Zg=", "\u00e9", "x" * 5000, "!!!!"],
    "format": ["utf8", "base64", "hex"],
    "cpu-index": [0, 1, 1, 2, -1, 64, 2**40],
    # MB/s; a cap only bites while a dirty log runs, and each sleep it
    # makes ends at the next request (docs/MIGRATION.md, "Dirty limit").
    "dirty-rate": [1, 1, 50, 0, -1, 2**40],
    # Only transports this test may not reach (a migration that starts
    # is the migration suite's business) and malformed URIs.
    "uri": ["bogus:x", "tcp:", "unix:", "fd:nosuch", "exec:true", ""],
    "capabilities": [[], [{"capability": "events", "state": True}],
                     [{"capability": "events", "state": False}],
                     [{"capability": "bogus", "state": True}],
                     [{"capability": "events"}], [1]],
    "fdname": ["nosuch", "", "fd0"],
    "path": ["/machine/peripheral/virtio0/virtio-backend", "", "x"],
    "queue": [0, 1, -1, 65536],
    "manual-protect": [True, True, False],
    "first-page": [0, 0, 0, 64, 3, 1 << 20, -64],
    "num-pages": [64, 64, 8, 1, 0, 391680, 391681],
    "bitmap": ["AAAAAAAAAAA=", "AA==", "/w==", "!!!!", ""],
    # x-dirty-log-clear succeeds only on a slot started with
    # manual-protect (the boot RAM's slot 0 here) and with a bitmap of
    # num-pages bits: drawn often enough to reach it.
    "slot@x-dirty-log-start": [0, 0, 0, 0, 1, 16, 17, -1],
    "slot@x-dirty-log-clear": [0, 0, 0, 0, 0, 1, 16, -1],
    # A harvest needs a slot whose log runs: mostly slot 0, which the
    # draw starts most often.
    "slot@x-dirty-log-harvest": [0, 0, 0, 0, 16, 17, -1],
    "first-page@x-dirty-log-clear": [0, 0, 0, 0, 3, 64],
    "num-pages@x-dirty-log-clear": [64, 64, 64, 64, 0, 391681],
    "bitmap@x-dirty-log-clear": ["AAAAAAAAAAA=", "AAAAAAAAAAA=",
                                 "AQAAAAAAAAA=", "AA==", "!!!!"],
    # Short measurements only: a dirty-bitmap one holds the x-dirty-log
    # commands off while it lasts.
    "calc-time": [1, 1, 1, 1, 1, 0, 61],
    "calc-time-unit": ["second"] * 5 + ["millisecond"],
    "sample-pages": [512] * 4 + [4096, 100],
    "mode": ["page-sampling"] * 6 + ["dirty-bitmap", "dirty-ring",
                                     "bogus"],
    # The MMU's switches, flipped under the running guest.
    "name@x-mmu-set-option": ["unsync", "zap-all", "mmio-wrap", "bogus"],
    "value@x-mmu-set-option": ["reachable", "off", "all", "fast", "slow",
                               "zap-all", "zap-mmio", "never"],
}
# The arguments each command takes (docs/QMP.md); others take none.
RANDOM_ARGS = {
    "x-memslot-add": ["gpa", "size", "readonly", "log-dirty"],
    "x-memslot-remove": ["slot"],
    "x-dirty-log-start": ["slot", "manual-protect"],
    "x-dirty-log-clear": ["slot", "first-page", "num-pages", "bitmap"],
    "calc-dirty-rate": ["calc-time", "calc-time-unit", "sample-pages",
                        "mode"],
    "query-dirty-rate": ["calc-time-unit"],
    "x-dirty-log-stop": ["slot"],
    "x-dirty-log-harvest": ["slot", "clear"],
    "x-mmu-zap-all": ["slow"],
    "x-mmu-set-option": ["name", "value"],
    "ringbuf-read": ["device", "size", "format"],
    "ringbuf-write": ["device", "data", "format"],
    "x-query-lapic": ["cpu-index"],
    "x-query-cpu-stats": ["cpu-index"],
    "set-vcpu-dirty-limit": ["cpu-index", "dirty-rate"],
    "cancel-vcpu-dirty-limit": ["cpu-index"],
    "migrate": ["uri"],
    "migrate-incoming": ["uri"],
    "migrate-set-capabilities": ["capabilities"],
    "getfd": ["fdname"],
    "closefd": ["fdname"],
    "x-query-virtio-queue-status": ["path", "queue"],
}
# Commands that end or reset the VM are left out: the run must go on
# (an NMI ends a guest with no handler for it, as forever.c has none).
RANDOM_SKIP = {"quit", "system_reset", "qmp_capabilities", "inject-nmi"}
# Commands this run cannot make succeed, called only to see that their
# refusals change nothing: why each cannot succeed here.
RANDOM_NEVER_OK = {
    "getfd": "needs a descriptor passed with SCM_RIGHTS",
    "closefd": "needs a name a getfd stored",
    "migrate": "only unreachable or malformed URIs are drawn",
    "migrate-incoming": "needs a daemon started with --incoming",
    "migrate-continue": "needs a migration paused before switchover",
    "x-query-virtio-queue-status": "needs a --drive, which this daemon "
    "has not",
}
if not os.environ.get("MMUD_TEST_DIRTY_RING"):
    for _c in ("x-dirty-ring-harvest", "x-dirty-ring-reset"):
        RANDOM_NEVER_OK[_c] = "needs mmud started with --dirty-ring"


@test("random")
def test_random_arguments_never_hurt_the_vm(tmp):
    """Every command the daemon lists, called 2500 times with arguments
    drawn (seeded: the same run every time) from values of every type,
    in and out of range, and with unknown extra keys: each reply is a
    return or a GenericError; what succeeds does what it says and what
    is refused changes nothing (the memslots are compared after every
    command); the guest keeps running and the audit is clean."""
    rng = random.Random(1128)
    d = td.Daemon(tmp, smp=2)
    c = d.client()
    cmds = sorted(x["name"] for x in ok(c.cmd("query-commands"))
                  if x["name"] not in RANDOM_SKIP)
    # Mostly a command's own arguments, each present or not; sometimes
    # any argument name of any command, or one nobody takes.
    names = sorted({k.split("@")[0] for k in RANDOM_VALUES}) + ["bogus"]
    slots = {m["slot"]: m for m in ok(c.cmd("x-query-memslots"))}
    counts = {"return": 0, "error": 0}
    accepted = {}
    for i in range(2500):
        cmd = rng.choice(cmds)
        keys = [k for k in RANDOM_ARGS.get(cmd, []) if rng.random() < 0.85]
        if rng.random() < 0.1:
            keys.append(rng.choice(names))
        args = {}
        for k in keys:
            pool = RANDOM_VALUES.get(k + "@" + cmd) or \
                RANDOM_VALUES.get(k, ANY)
            args[k] = rng.choice(ANY if rng.random() < 0.1 else pool)
        r = c.cmd(cmd, args) if args else c.cmd(cmd)
        assert "return" in r or ("error" in r and
                                 r["error"]["class"] == "GenericError"), \
            (i, cmd, args, r)
        counts["return" if "return" in r else "error"] += 1
        if "return" in r:
            accepted[cmd] = accepted.get(cmd, 0) + 1
        now = {m["slot"]: m for m in ok(c.cmd("x-query-memslots"))}
        if "error" in r:
            assert now == slots, ("refused, yet changed", cmd, args, r)
        elif cmd == "x-memslot-add":
            added = set(now) - set(slots)
            assert added == {r["return"]["slot"]}, (cmd, args, r, added)
            m = now[r["return"]["slot"]]
            assert (m["gpa"], m["size"]) == (args["gpa"], args["size"]), m
        elif cmd == "x-memslot-remove":
            assert set(slots) - set(now) == {args["slot"]}, (cmd, args)
        elif cmd in ("x-dirty-log-start", "x-dirty-log-stop"):
            assert now[args["slot"]]["log-dirty"] == \
                (cmd == "x-dirty-log-start"), (cmd, args, now)
        else:
            assert set(now) == set(slots), (cmd, args, r)
        slots = now
        if cmd == "stop" and "return" in r:
            assert ok(c.cmd("cont")) == {}
    print("random arguments: %(return)d accepted, %(error)d refused"
          % counts, sorted(accepted.items()))
    # The draw reaches every command's success and refusal paths.
    for name in cmds:
        if name in RANDOM_NEVER_OK:
            assert not accepted.get(name), ("accepted", name, accepted)
        else:
            assert accepted.get(name), ("never accepted", name, accepted)
    assert counts["error"] > 300, counts
    ok(c.cmd("cont"))
    assert ok(c.cmd("query-status"))["status"] == "running"
    audit(c)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


def main():
    global HOTPLUG, DIRTY
    HOTPLUG, DIRTY = sys.argv[5:7]
    return td.main()


if __name__ == "__main__":
    sys.exit(main())
