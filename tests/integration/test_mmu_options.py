#!/usr/bin/env python3
"""The MMU's switches (docs/MMU.md, "Switches") on the real daemon.

start: --mmu-option and the config file's mmu-option lines set them
  before any vCPU runs (memslots=rwlock under memslot churn);
  x-query-mmu-options shows each value, default and the values it
  takes; x-mmu-zap-all without `slow` follows zap-all;
  bad flags and lines are refused with status 4 and the reason.
runtime: x-mmu-set-option flips each run-time switch through every value
  while a 2-vCPU guest runs and zap-all runs between flips: the audit stays
  clean and the guest keeps going; bad names and values are refused
  with a GenericError naming them, and change nothing.

Usage: test_mmu_options.py GROUP MMUD MMUCTL FOREVER_ELF
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as td  # noqa: E402

test = td.test
DEFAULTS = {"unsync": "reachable", "zap-all": "fast", "mmio-wrap": "zap-all",
            "memslots": "rcu", "wp": "lockless", "fast-pf": "on"}
VALUES = {"unsync": ["reachable", "off", "all"],
          "zap-all": ["fast", "slow"],
          "mmio-wrap": ["zap-all", "zap-mmio"],
          "memslots": ["rcu", "rwlock"],
          "wp": ["lockless", "locked"],
          "fast-pf": ["on", "off"]}
RUNTIME = {"unsync", "zap-all", "mmio-wrap", "wp", "fast-pf"}


def ok(r):
    assert "return" in r, r
    return r["return"]


def options(c):
    return {o["name"]: o for o in ok(c.cmd("x-query-mmu-options"))}


def audit(c):
    assert c.cmd("x-mmu-audit") == {"return": {}}, "audit failed"


@test("start")
def test_flags_and_config_lines_set_the_switches(tmp):
    """Flags set what they name and leave the rest at the default; the
    table lists every option with its values."""
    d = td.Daemon(tmp, "--mmu-option", "unsync=all", "--mmu-option",
                  "zap-all=slow", "--mmu-option", "memslots=rwlock")
    c = d.client()
    got = options(c)
    assert sorted(got) == sorted(VALUES), got
    for name, o in got.items():
        assert o["values"] == VALUES[name], o
        assert o["default"] == DEFAULTS[name], o
        assert o["runtime"] is (name in RUNTIME), o
    assert got["unsync"]["value"] == "all", got
    assert got["zap-all"]["value"] == "slow", got
    assert got["mmio-wrap"]["value"] == "zap-all", got
    assert got["memslots"]["value"] == "rwlock", got
    # Memslots churn under the reader-writer lock: add, log, harvest,
    # remove, while the vCPUs run.
    for i in range(20):
        s = ok(c.cmd("x-memslot-add", {"gpa": (8 << 30) + (i << 21),
                                       "size": 1 << 21,
                                       "log-dirty": True}))["slot"]
        ok(c.cmd("x-dirty-log-harvest", {"slot": s}))
        ok(c.cmd("x-memslot-remove", {"slot": s}))
    audit(c)
    # x-mmu-zap-all's default follows zap-all; an explicit slow=false
    # still wins.
    assert ok(c.cmd("x-mmu-zap-all"))["mode"] == "slow"
    assert ok(c.cmd("x-mmu-zap-all", {"slow": False}))["mode"] == "fast"
    audit(c)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("start")
def test_config_file_lines_set_the_switches(tmp):
    cfg = os.path.join(tmp, "vm.conf")
    with open(cfg, "w") as f:
        f.write("mmu-option = unsync=off\nmmu-option = mmio-wrap=zap-mmio\n")
    d = td.Daemon(tmp, "--config", cfg)
    c = d.client()
    got = options(c)
    assert got["unsync"]["value"] == "off", got
    assert got["mmio-wrap"]["value"] == "zap-mmio", got
    assert got["zap-all"]["value"] == "fast", got
    assert got["memslots"]["value"] == "rcu", got
    # The guest runs with unsync off: leaf table writes are emulated.
    audit(c)
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


@test("start")
def test_bad_flags_and_lines_are_refused(tmp):
    for args, want in [
        (["--mmu-option", "unsync=maybe"],
         "--mmu-option: MMU option 'unsync': 'maybe' is not one of "
         "reachable, off, all"),
        (["--mmu-option", "colour=blue"],
         "--mmu-option: unknown MMU option 'colour' (known: unsync, "
         "zap-all, mmio-wrap, memslots, wp, fast-pf)"),
        (["--mmu-option", "unsync"], "is not NAME=VALUE"),
        (["--mmu-option", "unsync=all", "--mmu-option", "unsync=off"],
         "--mmu-option: MMU option 'unsync' given twice"),
    ]:
        p = subprocess.run([td.MMUD, "--kernel", td.FOREVER] + args,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 4 and want in p.stderr, (args, p.returncode,
                                                        p.stderr)
    cfg = os.path.join(tmp, "bad.conf")
    with open(cfg, "w") as f:
        f.write("# switches\nmmu-option = zap-all=sometimes\n")
    p = subprocess.run([td.MMUD, "--kernel", td.FOREVER, "--config", cfg],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 4 and \
        "bad.conf:2: mmu-option: MMU option 'zap-all': 'sometimes' is " \
        "not one of fast, slow" in p.stderr, p.stderr


@test("runtime")
def test_switches_flip_while_the_guest_runs(tmp):
    """Every value of every switch, set while 2 vCPUs run, with a zap
    and an audit after each: nothing the MMU holds is wrong after a
    flip."""
    d = td.Daemon(tmp, smp=2)
    c = d.client()
    for rnd in range(3):
        for name in RUNTIME:
            values = VALUES[name]
            for v in values:
                assert ok(c.cmd("x-mmu-set-option",
                                {"name": name, "value": v})) == {}
                assert options(c)[name]["value"] == v
                audit(c)
                ok(c.cmd("x-mmu-zap-all"))
                audit(c)
    for name in RUNTIME:
        ok(c.cmd("x-mmu-set-option", {"name": name,
                                      "value": DEFAULTS[name]}))
    before = options(c)
    for args, want in [
        ({"name": "unsync", "value": "maybe"},
         "MMU option 'unsync': 'maybe' is not one of reachable, off, all"),
        ({"name": "colour", "value": "blue"},
         "unknown MMU option 'colour' (known: unsync, zap-all, "
         "mmio-wrap, memslots, wp, fast-pf)"),
        ({"name": "memslots", "value": "rwlock"},
         "MMU option 'memslots' is set at start only (--mmu-option)"),
        ({"name": "zap-all", "value": ""}, "'' is not one of fast, slow"),
    ]:
        r = c.cmd("x-mmu-set-option", args)
        assert r.get("error", {}).get("class") == "GenericError" and \
            want in r["error"]["desc"], (args, r)
        assert options(c) == before, (args, options(c))
    for args in [{}, {"name": "unsync"}, {"name": 1, "value": "all"},
                 {"name": "unsync", "value": "all", "extra": 1}]:
        r = c.cmd("x-mmu-set-option", args)
        assert r.get("error", {}).get("class") == "GenericError", (args, r)
        assert options(c) == before, (args, options(c))
    assert ok(c.cmd("query-status"))["status"] == "running"
    c.cmd("quit")
    assert d.wait() == 0, d.log()
    d.kill()


if __name__ == "__main__":
    sys.exit(td.main())
