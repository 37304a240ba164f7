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


def judge_rate(what, burst, secs, attempt, tries=3):
    """calc-dirty-rate against a guest that writes burst MiB inside the
    window: within 10% of the rate the guest achieved over the window.

    The daemon divides what it found by the window it measured, which
    its timer makes at least secs long and which a loaded host stretches
    (the worker or the loop late): then the guest's rate over the window
    is lower than burst / secs, and so, rightly, is the measurement. The
    test cannot see the window, but brackets it: at most span, from
    calc-dirty-rate sent to the result seen. So the guest's rate lies in
    [burst / span, burst / secs] and the measurement must be within 10%
    of that range. A measurement the host's load makes unjudgeable is
    taken again, saying why: the burst outlasted the window (the guest
    could not reach its rate: took >= secs), or the window ran so long
    that the bracket is wider than the tolerance (span over 5% past
    secs) and the measurement is not within 10% of burst / secs itself. attempt() measures once: (took, span, the query-dirty-rate
    reply)."""
    loaded = []
    for _ in range(tries):
        took, span, q = attempt()
        rate = q["dirty-rate"]
        lo, hi = burst / span, burst / secs
        print("%s: the guest wrote %d MiB in %.2f s; window %d s, at most "
              "%.2f s: %d MiB/s measured, the guest's %.1f to %.1f"
              % (what, burst, took, secs, span, rate, lo, hi))
        if took >= secs:
            loaded.append("the burst took %.2f s of a %d s window: the "
                          "guest could not reach its rate" % (took, secs))
            continue
        # Within 10% of burst / secs: right whatever the window was
        # (the strictest reading of the bracket).
        if 0.9 * hi <= rate <= 1.1 * hi:
            return q
        if span > 1.05 * secs:
            loaded.append("the window ran up to %.2f s for %d s asked: "
                          "the host is loaded" % (span, secs))
            continue
        assert 0.9 * lo <= rate <= 1.1 * hi, (
            "%s: %d MiB/s measured, not within 10%% of the guest's %.1f "
            "to %.1f MiB/s (%d MiB in a window of %d to %.2f s)"
            % (what, rate, lo, hi, burst, secs, span), q)
        return q
    raise AssertionError("%s: the host was too loaded to judge in %d "
                         "tries: %s" % (what, tries, "; ".join(loaded)))
