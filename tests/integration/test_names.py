#!/usr/bin/env python3
"""mmud and mmuctl agree on VM names (rpc/vm_paths.h): every name one
accepts the other accepts, every name one refuses the other refuses.
And a named VM's runtime folder /run/mmud/NAME: both refuse one that is
not ours or that others may write to; mmud says why it cannot make one,
refuses a name already running with the pid that runs it, and leaves no
folder behind. The folder checks need root (to give a folder to nobody)
and are skipped, said so, without it.

usage: test_names.py MMUD MMUCTL
"""
import os
import pwd
import shutil
import socket
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


RUN = "/run/mmud"


def ready(tmp):
    """A notify socket for mmud; its READY=1 means the sockets listen."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(os.path.join(tmp, "notify.sock"))
    s.settimeout(30)
    return s


def start_named(mmud, name, tmp):
    """mmud --name name, paused (the embedded guest), once it is READY."""
    n = ready(tmp)
    p = subprocess.Popen([mmud, "--name", name, "--paused"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, NOTIFY_SOCKET=n.getsockname()))
    try:
        while "READY=1" not in n.recv(4096).decode().split("\n"):
            pass
    except socket.timeout:
        p.kill()
        raise AssertionError("mmud --name %s: not READY: %s" %
                             (name, p.communicate()[1]))
    n.close()
    return p


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=30,
                          **kw)


def check_run_dirs(mmud, mmuctl, tmp):
    """The runtime folder checks; a list of what went wrong."""
    bad = []
    name = "names-test-%d" % os.getpid()
    d = os.path.join(RUN, name)
    nobody = pwd.getpwnam("nobody").pw_uid

    def expect(what, r, status, text):
        if r.returncode != status or text not in r.stderr:
            bad.append("%s: status %d, expected %d with %r; stderr %r" %
                       (what, r.returncode, status, text, r.stderr))

    # A folder made in advance by another user, open to all: mmud makes
    # no socket in it, mmuctl does not connect into it.
    os.makedirs(RUN, exist_ok=True)
    for mode, owner, want_d, want_c in [
            (0o777, nobody, "belongs to uid %d, not to us" % nobody,
             "is writable by others (mode 0777)"),
            (0o700, nobody, "belongs to uid %d, not to us" % nobody, None),
            (0o770, 0, "is writable by its group (mode 0770)",
             "is writable by its group (mode 0770)")]:
        os.mkdir(d)
        try:
            os.chown(d, owner, -1)
            os.chmod(d, mode)
            what = "folder %o of uid %d" % (mode, owner)
            expect("mmud, " + what, run([mmud, "--name", name]), 4,
                   "<3>mmud: --name %s: refused: %s %s" % (name, d, want_d))
            if os.listdir(d):
                bad.append("mmud, %s: made %r" % (what, os.listdir(d)))
            if want_c:
                expect("mmuctl, " + what,
                       run([mmuctl, "--name", name, "status"]), 2,
                       "mmuctl: not connecting: %s %s" % (d, want_c))
        finally:
            shutil.rmtree(d)
    # A symbolic link in its place.
    os.symlink(tmp, d)
    try:
        for what, args, status in [("mmud", [mmud, "--name", name], 4),
                                   ("mmuctl", [mmuctl, "--name", name,
                                               "status"], 2)]:
            expect(what + ", symbolic link", run(args), status,
                   "%s is not a folder (a symbolic link)" % d)
    finally:
        os.unlink(d)
    # Not root: the reason is the folder, not a socket.
    if shutil.which("setpriv"):
        expect("mmud as nobody",
               run(["setpriv", "--reuid=%d" % nobody, "--regid=%d" % nobody,
                    "--clear-groups", mmud, "--name", name]), 4,
               "<3>mmud: --name %s: cannot create %s: Permission denied" %
               (name, d))
    # A name already running: refused with the pid; quit removes the
    # folder.
    p = start_named(mmud, name, tmp)
    try:
        expect("a second mmud", run([mmud, "--name", name]), 4,
               "<3>mmud: VM %s is already running (pid %d)" % (name, p.pid))
        r = run([mmuctl, "--name", name, "quit"])
        if r.returncode != 0:
            bad.append("mmuctl quit: %d %r" % (r.returncode, r.stderr))
        if p.wait(30) != 0:
            bad.append("mmud after quit: status %d" % p.returncode)
        if os.path.lexists(d):
            bad.append("quit left %s behind: %r" % (d, os.listdir(d)))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return bad


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
    if os.geteuid() != 0:
        print("runtime folder checks skipped: they need root")
        return 1 if failures else 0
    with tempfile.TemporaryDirectory() as tmp:
        bad = check_run_dirs(mmud, mmuctl, tmp)
    for f in bad:
        print("FAIL " + f)
    print(f"runtime folder: {len(bad)} failure(s)")
    return 1 if failures or bad else 0


if __name__ == "__main__":
    sys.exit(main())
