"""What the migration tests share (tests/integration/test_migration.py,
test_blk_migration.py, test_blk_werror_migration.py): a QMP reply's
return, waiting for a migration's status, and a destination listening
on a unix: socket of its own (docs/MIGRATION.md, "The migration
commands")."""
import os
import time

from daemonlib import TIMEOUT


def ok(r):
    """A reply's return; a reply that is an error fails, naming it."""
    assert "return" in r, r
    return r["return"]


def wait_status(c, want):
    """Polls query-migrate until its status is in want (QMP answers at
    once while the migration thread works); returns that reply."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        info = ok(c.cmd("query-migrate"))
        if info.get("status") in want:
            return info
        assert time.monotonic() < deadline, ("status", want, info)
        time.sleep(0.01)


def unix_uri(tmp, name):
    return "unix:" + os.path.join(tmp, name + ".mig")


def listen(dst, tmp, name):
    """dst, started with --incoming defer, listening on unix_uri(tmp,
    name) (before the reply): its QMP client and the URI."""
    dc = dst.client()
    uri = unix_uri(tmp, name)
    ok(dc.cmd("migrate-incoming", {"uri": uri}))
    return dc, uri
