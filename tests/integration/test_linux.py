#!/usr/bin/env python3
"""Debian's own cloud kernel on mmud (README.md, "Run Linux"): the
bzImage and the initramfs of scripts/linux-guest, 1 vCPU, 256 MiB.

boot:  the kernel reads mmud's e820 map and ACPI tables, runs /init
       with mmud.check, which prints its banner, uname -a,
       /proc/cpuinfo (flags checked against CPUID_FLAGS and
       SYNTHETIC_FLAGS), /proc/interrupts (LOC ticks, ttyS0 on IO-APIC
       pin 4), dmesg (none of FORBIDDEN) and dmesg -r (every err/warn
       record in linux_dmesg_allow.txt), and powers off (poweroff -f,
       ACPI S5): SHUTDOWN (guest-shutdown), status 0.
shell-reset: rdinit=/bin/sh; the test types commands on the console
       socket and reads their output; system_reset over QMP boots Linux
       again to the same shell, which answers again.
workload: /bin/mmud-workload (scripts/linux-guest): 200 fork/exec/exit
       rounds, a pipeline of 20 processes, a 64 MiB tmpfs file
       md5sum'd twice, dd buffer churn; x-mmu-audit clean during and
       after, and the shadow MMU's counters show the work: leaf
       tables unsynced and synced, tables write-protected.
panic: /init crashes the kernel (mmud.panic: echo c >
       /proc/sysrq-trigger); with panic=-1 and --no-reboot, Linux's
       reset through the ACPI reset register ends mmud with SHUTDOWN
       (guest-reset) and status 0, never a hang.

In CI: the packages are fetched through scripts/linux-guest (apt-get
download) if they are not cached. Under a sanitizer build only the boot
group runs (ASan), and none under TSan; the others exit 77 there.
Usage: test_linux.py GROUP MMUD MMUCTL FOREVER_ELF SOURCE_ROOT
"""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import daemonlib as dl  # noqa: E402
from daemonlib import Daemon, test, client_then_cont  # noqa: E402

BOOT_TIMEOUT = float(os.environ.get("MMUD_LINUX_TIMEOUT", "300"))
# README.md, "Run Linux": reboot=acpi, or Linux on hardware-reduced ACPI
# tries EFI's reset, then real mode. MMUD_LINUX_APPEND adds to it.
CMDLINE = ("console=ttyS0 panic=-1 reboot=acpi nokaslr "
           "earlyprintk=serial,ttyS0 " +
           os.environ.get("MMUD_LINUX_APPEND", "")).strip()
BANNER = "mmud-linux-guest: /init running"
# Lines that must never appear (the list).
FORBIDDEN = ["Marking TSC unstable", "rcu_sched self-detected stall",
             "rcu: INFO", "MADT or MP tables are not detected",
             "nobody cared", "BUG:", "WARNING:", "Call Trace"]
GUEST = {}


def guest_files():
    if not GUEST:
        script = os.path.join(dl.ECHO, "scripts", "linux-guest")
        out = ""
        for args in (["--offline"], []):
            p = subprocess.run([sys.executable, script] + args,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=900)
            if p.returncode == 0:
                out = p.stdout.decode()
                break
        assert out, "scripts/linux-guest failed: " + p.stderr.decode()
        for line in out.splitlines():
            k, _, v = line.partition(" ")
            GUEST[k] = v
    return GUEST["kernel"], GUEST["initrd"]


def linux(tmp, extra_cmdline="", *flags):
    kernel, initrd = guest_files()
    d = Daemon(tmp, "--paused", "--initrd", initrd, "--memory", "256M",
               "--no-reboot", *flags, smp=1, kernel=kernel,
               append=(CMDLINE + " " + extra_cmdline).strip())
    con = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    con.settimeout(1)
    con.connect(d.con)
    c = client_then_cont(d)
    c.sock.settimeout(BOOT_TIMEOUT)  # events come after a boot
    return d, c, con


class Console:
    def __init__(self, sock):
        self.sock, self.text = sock, ""

    def until(self, needle, timeout=BOOT_TIMEOUT, count=1):
        end = time.monotonic() + timeout
        while self.text.count(needle) < count:
            if time.monotonic() > end:
                raise TimeoutError("no %r in %.0f s; the console's last "
                                   "lines:\n%s" % (needle, timeout,
                                                   self.text[-3000:]))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise EOFError("console closed before %r; last lines:\n%s"
                               % (needle, self.text[-3000:]))
            self.text += chunk.decode(errors="replace")


def check_dmesg(text):
    bad = [line for line in text.splitlines()
           if any(f in line for f in FORBIDDEN)]
    assert not bad, "forbidden lines:\n" + "\n".join(bad[:20])


# Every CPUID feature core/vcpu/x86/cpuid.c reports, as (leaf, register,
# bit) -> the name Linux 6.1 gives it in /proc/cpuinfo's flags
# (arch/x86/include/asm/cpufeatures.h's names, lower case).
CPUID_FLAGS = {
    (1, "edx", 0): "fpu", (1, "edx", 3): "pse", (1, "edx", 4): "tsc",
    (1, "edx", 5): "msr",
    (1, "edx", 6): "pae", (1, "edx", 8): "cx8", (1, "edx", 9): "apic",
    (1, "edx", 13): "pge", (1, "edx", 15): "cmov", (1, "edx", 16): "pat",
    (1, "edx", 24): "fxsr", (1, "edx", 25): "sse", (1, "edx", 26): "sse2",
    (1, "ecx", 13): "cx16", (1, "ecx", 17): "pcid", (1, "ecx", 21): "x2apic",
    (1, "ecx", 22): "movbe", (1, "ecx", 23): "popcnt",
    (1, "ecx", 24): "tsc_deadline_timer", (1, "ecx", 31): "hypervisor",
    (6, "eax", 2): "arat",
    (7, "ebx", 3): "bmi1", (7, "ebx", 7): "smep", (7, "ebx", 8): "bmi2",
    (7, "ebx", 10): "invpcid", (7, "ebx", 19): "adx", (7, "ebx", 20): "smap",
    (0x80000001, "ecx", 0): "lahf_lm", (0x80000001, "ecx", 5): "abm",
    (0x80000001, "ecx", 8): "3dnowprefetch",
    (0x80000001, "edx", 11): "syscall", (0x80000001, "edx", 20): "nx",
    (0x80000001, "edx", 26): "pdpe1gb", (0x80000001, "edx", 27): "rdtscp",
    (0x80000001, "edx", 29): "lm",
}
# Flags Linux sets by itself, from no CPUID bit of its own; each with
# what it follows from. Any flag in neither table is one Linux derived
# from a feature we do not report, and fails the test.
SYNTHETIC_FLAGS = {
    "cpuid": "the CPUID instruction exists",
    "nopl": "set for every x86-64 CPU",
    "pti": "page-table isolation: no vendor code says Meltdown-immune",
    "invpcid_single": "PCID and INVPCID together",
    "tsc_known_freq": "kvmclock gives the TSC frequency",
}
# Not listed, though CPUID reports the invariant TSC (leaf 0x80000007
# EDX bit 8): Linux sets constant_tsc and nonstop_tsc from it only in its
# Intel, AMD and other vendors' code, and our vendor string is none.
BEGIN, END = "mmud-linux-guest: begin ", "mmud-linux-guest: end "
ALLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     "linux_dmesg_allow.txt")


def section(text, cmd):
    """The output /init printed for cmd (mmud.check), \r stripped."""
    text = text.replace("\r", "")
    b = text.index(BEGIN + cmd + "\n") + len(BEGIN + cmd + "\n")
    return text[b:text.index(END + cmd + "\n", b)]


def message(line):
    """A dmesg line without its "[   12.345678] " time stamp."""
    line = line.strip()
    if line.startswith("[") and "]" in line:
        line = line[line.index("]") + 1:]
    return line.strip()


def allow_list():
    """linux_dmesg_allow.txt: one allowed err/warn message per line, then
    " # " and why it is harmless; '*' in a message matches any text."""
    pats = []
    with open(ALLOW) as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            msg, sep, why = line.rstrip("\n").partition(" # ")
            assert sep and why.strip(), "%s:%d has no reason: %r" % (
                ALLOW, n, line)
            pats.append(msg.strip())
    return pats


def allowed(msg, pats):
    import fnmatch
    return any(fnmatch.fnmatchcase(msg, p) for p in pats)


def check_cpuinfo(text):
    flags = None
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
    assert flags is not None, "no flags line in /proc/cpuinfo:\n" + text
    print("cpuinfo flags: " + " ".join(sorted(flags)))
    missing = sorted(n for n in CPUID_FLAGS.values() if n not in flags)
    assert not missing, ("CPUID reports these but Linux does not list "
                         "them: %s\nflags: %s" % (missing, sorted(flags)))
    extra = sorted(flags - set(CPUID_FLAGS.values()) -
                   set(SYNTHETIC_FLAGS))
    assert not extra, ("Linux lists flags of features CPUID does not "
                       "report: %s\nflags: %s" % (extra, sorted(flags)))


def check_interrupts(text):
    loc = [line for line in text.splitlines()
           if line.strip().startswith("LOC:")]
    assert loc and int(loc[0].split()[1]) > 0, (
        "no LOC ticks in /proc/interrupts:\n" + text)
    tty = [line.split() for line in text.splitlines()
           if line.strip().endswith("ttyS0")]
    # The Linux IRQ number is 24 (no legacy PIC: nr_legacy_irqs() is 0,
    # so GSIs are not identity-mapped); the chip and pin must be right.
    assert tty and tty[0][-3:-1] == ["IO-APIC", "4-edge"], (
        "ttyS0 is not on IO-APIC pin 4:\n" + text)


def check_dmesg_levels(text):
    """dmesg -r (busybox has no -l): "<N>" starts each record, N its
    level (the kernel's facility is 0); 0-4 are emerg to warn."""
    pats = allow_list()
    bad = [message(line[3:]) for line in text.splitlines()
           if len(line) > 3 and line[0] == "<" and line[2] == ">" and
           line[1] in "01234"]
    bad = [m for m in bad if not allowed(m, pats)]
    assert not bad, ("err/warn lines not in %s:\n%s"
                     % (ALLOW, "\n".join(bad)))


@test("boot")
def test_boots_to_init_and_powers_off(tmp):
    """(1): /init's banner, uname -a, /proc/cpuinfo against CPUID_FLAGS,
    /proc/interrupts, dmesg, then poweroff -f: SHUTDOWN, status 0."""
    d, c, con = linux(tmp, "mmud.check")
    out = Console(con)
    out.until("Linux version")
    out.until("ACPI: RSDP 0x00000000000E0000")
    out.until("BIOS-e820: [mem 0x00000000000e0000-0x00000000000fffff] "
              "reserved")
    out.until("Run /init as init process")
    out.until(BANNER)
    out.until("mmud-linux-guest: powering off")
    ev, _ = c.event("SHUTDOWN")
    assert ev["data"] == {"guest": True, "reason": "guest-shutdown"}, ev
    assert d.wait() == 0, d.log()
    text = out.text.replace("\r", "")
    after = text[text.index(BANNER):]
    assert "Linux version 6." in after.splitlines()[1] or \
        after.splitlines()[1].startswith("Linux "), (
            "no uname -a after the banner:\n" + after[:500])
    check_dmesg(out.text)
    check_cpuinfo(section(out.text, "cat /proc/cpuinfo"))
    check_interrupts(section(out.text, "cat /proc/interrupts"))
    check_dmesg(section(out.text, "dmesg"))
    check_dmesg_levels(section(out.text, "dmesg -r"))


def prompt(out, timeout=60):
    """Waits for ash's prompt ("/ # ", then its cursor-position query
    ESC [6n): typing earlier is lost, as the shell flushes the terminal's
    input when it sets its modes."""
    end = time.monotonic() + timeout
    while not out.text.replace("\x1b[6n", "").endswith("# "):
        assert time.monotonic() < end, (
            "no shell prompt in %d s; the console's last lines:\n%s"
            % (timeout, out.text[-2000:]))
        try:
            out.until("\x00never", timeout=0.5)
        except TimeoutError:
            pass


def shell_cmd(out, con, cmd, n):
    """Types cmd into the shell at its prompt and returns what it
    printed, between two markers the shell computes (so the echo of the
    typed line does not match them)."""
    prompt(out)
    con.sendall(("echo M$((%d+1))A; %s; echo M$((%d+1))B\n"
                 % (n, cmd, n)).encode())
    a, b = "M%dA\n" % (n + 1), "M%dB\n" % (n + 1)
    out.until(b.replace("\n", "\r\n"))  # the line is whole
    text = out.text.replace("\r", "")
    i = text.rindex(a)
    return text[i + len(a):text.rindex(b)]


def shell_session(out, con, base):
    """(2): commands typed into rdinit=/bin/sh, their output read back."""
    out.until("Run /bin/sh as init process")
    shell_cmd(out, con, "mount -t proc proc /proc", base - 1)
    got = shell_cmd(out, con, "echo $((6*7))", base)
    assert got.strip() == "42", "echo $((6*7)) printed %r" % got
    got = shell_cmd(out, con, "cat /proc/cmdline", base + 1)
    assert "rdinit=/bin/sh" in got, "/proc/cmdline printed %r" % got
    got = shell_cmd(out, con, "ls /bin/busybox /init", base + 2)
    assert got.split() == ["/bin/busybox", "/init"], "ls printed %r" % got


@test("shell-reset")
def test_shell_then_system_reset_boots_linux_again(tmp):
    """(2) and (4): an interactive shell on the console socket, then
    system_reset over QMP boots Linux again to the same shell."""
    d, c, con = linux(tmp, "rdinit=/bin/sh")
    out = Console(con)
    shell_session(out, con, 10)
    assert c.cmd("system_reset") == {"return": {}}
    out.until("Linux version", count=2)
    out.text = out.text[out.text.rindex("Linux version"):]
    shell_session(out, con, 20)
    assert c.cmd("quit") == {"return": {}}
    assert d.wait() == 0, d.log()
    check_dmesg(out.text)


@test("workload")
def test_mmu_workload(tmp):
    """(3): /bin/mmud-workload (scripts/linux-guest) with x-mmu-audit
    clean while it runs and after; the shadow MMU unsynced, synced and
    write-protected guest page tables."""
    d, c, con = linux(tmp, "mmud.workload mmud.shell")
    out = Console(con)
    out.until("mmud-workload: start")
    audits = 0
    while "mmud-workload: done" not in out.text:
        r = c.cmd("x-mmu-audit")
        assert r == {"return": {}}, "audit during the workload: %r" % r
        audits += 1
        try:
            out.until("mmud-workload: done", timeout=5)
        except TimeoutError:
            pass
    prompt(out)  # the "done" line is whole; mmud.shell's ash waits
    r = c.cmd("x-mmu-audit")
    assert r == {"return": {}}, "audit after the workload: %r" % r
    stats = c.cmd("x-query-mmu-stats")["return"]
    text = out.text.replace("\r", "")
    assert "mmud-workload: forks 200" in text, text[-2000:]
    assert "child" not in text.split("mmud-workload: forks")[0].split(
        "mmud-workload: start")[1], text[-3000:]
    assert "mmud-workload: pipeline 20 " in text, text[-2000:]
    md5 = text.split("mmud-workload: md5 ")[1].split("\n")[0].split()
    assert len(md5) == 3 and md5[0] == md5[1] and len(md5[0]) == 32 \
        and md5[2] == str(64 << 20), "md5sum lines: %r" % md5
    assert "mmud-workload: dd 40" in text, text[-2000:]
    print("workload: %d audits; stats %s %s" % (audits, stats["vm"],
                                                stats["vcpus"]))
    vm = stats["vm"]
    # Linux's leaf tables went unsync and were synced at its TLB flushes,
    # its tables were write-protected and written (docs/QMP.md,
    # x-query-mmu-stats).
    for k in ("mmu_unsync", "mmu_sync", "write_protects",
              "pf_write_tracked", "mmu_shadow_zapped"):
        assert vm[k] > 0, "x-query-mmu-stats: %s is 0: %r" % (k, vm)
    done = text.split("mmud-workload: done ")[1].split("\n")[0]
    t0, t1 = (float(t) for t in done.split()[:2])
    print("workload: /proc/uptime %.2f -> %.2f: %.1f s of guest time"
          % (t0, t1, t1 - t0))
    assert c.cmd("quit") == {"return": {}}
    assert d.wait() == 0, d.log()
    check_dmesg(out.text)


@test("panic")
def test_panic_ends_with_guest_reset(tmp):
    d, c, con = linux(tmp, "mmud.panic")
    out = Console(con)
    out.until("Kernel panic")
    ev, _ = c.event("SHUTDOWN")
    assert ev["data"] == {"guest": True, "reason": "guest-reset"}, ev
    assert d.wait() == 0, d.log()


if __name__ == "__main__":
    # Sanitizer builds (meson sets MMUD_SANITIZE): one boot under ASan,
    # none under TSan (the CI budget of README.md, "Run Linux").
    san = os.environ.get("MMUD_SANITIZE", "none")
    if san not in ("", "none") and (sys.argv[1] != "boot" or
                                    "thread" in san):
        print("skipped under -Db_sanitize=%s: only the boot group runs "
              "under ASan, nothing under TSan" % san)
        sys.exit(77)
    dl.TIMEOUT = BOOT_TIMEOUT
    sys.exit(dl.main())
