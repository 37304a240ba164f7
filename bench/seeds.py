#!/usr/bin/env python3
"""The MMU's switches measured side by side on real page-table churn
(docs/SEEDS.md; docs/MMU.md, "Switches").

unsync: Debian's kernel and scripts/linux-guest's initramfs with
  mmud.workload (200 fork/exec/exit rounds, a pipeline, tmpfs and dd:
  the guest page-table churn of tests/integration/test_linux.py) booted
  once per value of `unsync` (reachable, off, all), the values
  alternating round by round. Per run: seconds to /init's banner and for
  the workload (as the host sees the console), and the MMU's counters
  at the end (x-query-mmu-stats): exits, emulated page-table writes
  (pf_emulate, mmu_pte_write), unsyncs and syncs, remote flushes.
zap: the same boot with unsync at its default; while the workload runs
  (a booted Linux's shadow pages in place, a vCPU faulting them back),
  x-mmu-zap-all N times, the modes of `zap-all` alternating 0.2 s apart:
  the command's latency as QMP sees it, and the pages each zap found.
  (mmio-wrap is not measured here: a wrap takes 2^15 memslot updates;
  tests/unit/mmu and the explorer check both of its values.)
memslots: bench/exits.c on 1, 2, 4 and 8 vCPUs, every vCPU exiting by
  OUT at once (each exit leaves and re-enters the memslot read side, as
  KVM's entry does), once per value of `memslots` (rcu, rwlock), the
  values alternating: TSC cycles per exit, the median of the vCPUs' and
  their spread. Where vCPUs outnumber host CPUs the figure includes the
  time a vCPU waits for one.

Usage: bench/seeds.py MMUD [--rounds N] [--zaps N]
                           [--only unsync|zap|memslots]
One JSON line per run on stdout, then tables.
"""
import argparse
import importlib.machinery
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import daemonlib as dl  # noqa: E402

linux = importlib.machinery.SourceFileLoader(
    "bench_linux", os.path.join(HERE, "linux.py")).load_module()

UNSYNC = ["reachable", "off", "all"]
ZAP = ["fast", "slow"]
MEMSLOTS = ["rcu", "rwlock"]
EXIT_VCPUS = [1, 2, 4, 8]
COUNTERS = ["pf_emulate", "mmu_pte_write", "mmu_unsync", "mmu_sync",
            "remote_tlb_flush", "pf_fixed", "shadow_pages",
            "mmu_shadow_zapped"]


def boot(mmud, kernel, initrd, options, zaps):
    """One boot with --mmu-option options; returns its figures."""
    dl.MMUD = mmud
    dl.TIMEOUT = 120
    extra = []
    for o in options:
        extra += ["--mmu-option", o]
    with tempfile.TemporaryDirectory(prefix="mmud-seeds-") as tmp:
        t0 = time.monotonic()
        d = dl.Daemon(tmp, "--paused", "--initrd", initrd, "--memory",
                      "512M", "--no-reboot", *extra, smp=1, kernel=kernel,
                      append=linux.MMUD_APPEND + " mmud.workload")
        con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        con.connect(d.con)
        c = dl.client_then_cont(d)
        c.sock.settimeout(linux.TIMEOUT)

        def read():
            return con.recv(65536)
        seen, _ = linux.watch(read, t0, linux.MARKS[:2])
        zapped = []
        for i in range(zaps):
            mode = ZAP[i % 2]
            ok = c.cmd("x-mmu-set-option", {"name": "zap-all",
                                            "value": mode})
            assert "return" in ok, ok
            time.sleep(0.2)
            t = time.monotonic()
            r = c.cmd("x-mmu-zap-all")["return"]
            zapped.append({"mode": r["mode"],
                           "ms": round((time.monotonic() - t) * 1e3, 3),
                           "pages": r["shadow-pages"],
                           "freed": r["zapped-pages"]})
        more, _ = linux.watch(read, t0, linux.MARKS[2:3])
        seen.update(more)
        st = c.cmd("x-query-mmu-stats")["return"]
        res = {"options": options,
               "to_init_s": round(seen[linux.BANNER], 2),
               "workload_s": round(seen[linux.MARKS[2]] -
                                   seen[linux.MARKS[1]], 2),
               "instructions": st["vcpus"][0]["instructions"],
               "exits": st["vcpus"][0]["exits"]}
        res.update({k: st["vm"][k] for k in COUNTERS})
        res["zaps"] = zapped
        d.kill()
    return res


def exits(mmud, elf, smp, value):
    """bench/exits.c on smp vCPUs with memslots=value: cycles per exit of
    each vCPU."""
    out = subprocess.run([mmud, "--kernel", elf, "--smp", str(smp),
                          "--mmu-option", "memslots=" + value],
                         stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=120)
    per = [json.loads(line) for line in out.stdout.splitlines()
           if line.startswith('{"figure":"exits"')]
    if len(per) != smp or "guest exited with value 0" not in out.stderr:
        raise RuntimeError("exits guest, smp %d, memslots=%s: exit %d, "
                           "%d figures; stderr: %s" % (
                               smp, value, out.returncode, len(per),
                               out.stderr[-300:]))
    return [p["cycles"] / p["count"] for p in per]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mmud")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--zaps", type=int, default=20)
    ap.add_argument("--only", choices=["unsync", "zap", "memslots"])
    ap.add_argument("--exits-elf", help="bench/exits.c's ELF (default: "
                    "bench/exits.elf in MMUD's build directory)")
    a = ap.parse_args()
    mmud = os.path.abspath(a.mmud)
    elf = a.exits_elf or os.path.join(os.path.dirname(mmud), "..", "bench",
                                      "exits.elf")
    kernel, initrd = linux.guest_files() if a.only != "memslots" else (
        None, None)
    runs, zap_runs, exit_runs = [], [], []
    for rnd in range(a.rounds):
        for smp in (EXIT_VCPUS if a.only in (None, "memslots") else []):
            for v in MEMSLOTS:
                r = {"memslots": v, "vcpus": smp, "round": rnd,
                     "cycles_per_exit": [round(c) for c in
                                         exits(mmud, elf, smp, v)]}
                print(json.dumps(r), flush=True)
                exit_runs.append(r)
        if a.only == "memslots":
            continue
        for v in (UNSYNC if a.only != "zap" else []):
            r = boot(mmud, kernel, initrd, ["unsync=" + v], 0)
            r["round"] = rnd
            print(json.dumps(r), flush=True)
            runs.append(r)
        if a.only != "unsync":
            r = boot(mmud, kernel, initrd, [], a.zaps)
            r["round"] = rnd
            print(json.dumps(r), flush=True)
            zap_runs.append(r)
    if runs:
        print()
        print("| unsync | to /init s | workload s | exits | pf_emulate | "
              "mmu_pte_write | mmu_unsync | mmu_sync | remote_tlb_flush |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in runs:
            print("| %s | %s | %s | %d | %d | %d | %d | %d | %d |" % (
                r["options"][0].split("=")[1], r["to_init_s"],
                r["workload_s"], r["exits"], r["pf_emulate"],
                r["mmu_pte_write"], r["mmu_unsync"], r["mmu_sync"],
                r["remote_tlb_flush"]))
    if exit_runs:
        print()
        print("| vCPUs | memslots | cycles per exit, median of the vCPUs "
              "(min-max), each round |")
        print("|---|---|---|")
        for smp in EXIT_VCPUS:
            for v in MEMSLOTS:
                rs = [r["cycles_per_exit"] for r in exit_runs
                      if r["vcpus"] == smp and r["memslots"] == v]
                if rs:
                    print("| %d | %s | %s |" % (smp, v, ", ".join(
                        "%d (%d-%d)" % (statistics.median(c), min(c),
                                        max(c)) for c in rs)))
    zaps = [z for r in zap_runs for z in r["zaps"]]
    if zaps:
        print()
        print("| zap-all | zaps | median ms | max ms | pages (median) |")
        print("|---|---|---|---|---|")
        for mode in ZAP:
            zs = [z for z in zaps if z["mode"] == mode]
            if zs:
                print("| %s | %d | %.2f | %.2f | %d |" % (
                    mode, len(zs), statistics.median(z["ms"] for z in zs),
                    max(z["ms"] for z in zs),
                    statistics.median(z["pages"] for z in zs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
