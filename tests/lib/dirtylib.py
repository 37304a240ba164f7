"""What the dirty-logging tests share (tests/integration/test_dirty.py,
test_dirty_ring.py): where their guests' data and doorbells go, and the
doorbell itself. The guests (tests/guests/dirty.c, dirtyring.c,
dirtyrate.c) start round r when a memslot appears at BELLS[r % 2]
(docs/QMP.md, "x-memslot-add (daemon #8)"); the slot of round r - 1
goes first, so the two alternate."""
import time

GiB = 1 << 30
DATA_GPA = 8 * GiB
BELLS = [12 * GiB, 12 * GiB + (2 << 20)]


def _ok(r):
    assert "return" in r, r
    return r["return"]


class Bells:
    """The doorbell slots of one VM, through its QMP client c."""

    def __init__(self, c):
        self.c = c
        self.slots = [None, None]
        self.round = 0

    def ring(self, r=None):
        """Starts round r (the next one by default)."""
        r = self.round + 1 if r is None else r
        self.round = r
        if self.slots[(r + 1) % 2] is not None:
            _ok(self.c.cmd("x-memslot-remove",
                           {"slot": self.slots[(r + 1) % 2]}))
            self.slots[(r + 1) % 2] = None
        self.slots[r % 2] = _ok(self.c.cmd(
            "x-memslot-add", {"gpa": BELLS[r % 2], "size": 4096}))["slot"]


def burst_rounds(c, con, burst):
    """The dirtyrate guest's rounds of burst MiB: a function that rings
    the next one and returns when the guest says it wrote it (the
    monotonic time then)."""
    bells = Bells(c)

    def ring():
        bells.ring()
        con.wait(r"dirtyrate: round %d wrote %d MiB\n" % (bells.round,
                                                           burst))
        return time.monotonic()
    return ring


def window(ring, factor):
    """Two rounds outside any measurement (every page of the region
    mapped after them); the measurement's window in seconds: factor
    times the first round, 2 to 20."""
    t = time.monotonic()
    first = ring() - t
    ring()
    return max(2, min(20, int(factor * first) + 1))
