"""ApproximateTimeSynchronizer against message_filters' documented behaviour
(and its test_approxsync.py scenarios): pairing within slop, queue overflow
dropping the oldest stamp, out-of-order arrival, no set when the span exceeds
slop, counters, thread safety."""
import random
import threading
from types import SimpleNamespace

import pytest

from semnerf_ros.bridge.sync import ApproximateTimeSynchronizer, header_stamp_ns, stamp_to_ns


class Msg:
    """A message with header.stamp as a builtin_interfaces-like Time (hashable by identity)."""

    def __init__(self, t, data=None):
        sec = int(t)
        self.header = SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=int(round((t - sec) * 1e9))))
        self.data = data if data is not None else t


msg = Msg


class Collector:
    def __init__(self):
        self.sets = []

    def __call__(self, *msgs):
        self.sets.append(tuple(msgs))


def test_stamp_conversions():
    assert stamp_to_ns(1.5) == 1_500_000_000
    assert stamp_to_ns(SimpleNamespace(sec=2, nanosec=5)) == 2_000_000_005
    assert stamp_to_ns(SimpleNamespace(nanoseconds=7)) == 7
    assert header_stamp_ns(SimpleNamespace(data=1)) is None
    with pytest.raises(TypeError):
        stamp_to_ns("1.0")


def test_pairs_exact_stamps_like_message_filters():
    col = Collector()
    sync = ApproximateTimeSynchronizer(1, 0.1, 2, col)
    for t in range(10):
        a, b = msg(t, "a"), msg(t, "b")
        sync.add(0, a)
        assert len(col.sets) == t        # a alone completes no set
        sync.add(1, b)
        assert len(col.sets) == t + 1 and col.sets[-1] == (a, b)
    assert sync.stats()["emitted"] == 10
    assert sync.stats()["dropped"] == [0, 0]


@pytest.mark.parametrize("n", range(1, 10))
def test_scrambled_arrival_recombines_all(n):
    """message_filters' test_approx: shuffled sequences of length N with queue N."""
    rng = random.Random(n)
    seq0 = [msg(t, rng.random()) for t in range(n)]
    seq1 = [msg(t, rng.random()) for t in range(n)]
    col = Collector()
    sync = ApproximateTimeSynchronizer(n, 0.1, 2, col)
    for m in rng.sample(seq0, n):
        sync.add(0, m)
    assert col.sets == []
    for m in rng.sample(seq1, n):
        sync.add(1, m)
    assert set(col.sets) == set(zip(seq0, seq1))
    assert sync.stats()["dropped"] == [0, 0]


def test_jittered_three_inputs_within_slop():
    rng = random.Random(0)
    col = Collector()
    sync = ApproximateTimeSynchronizer(10, 0.01, 3, col)
    events = []
    for k in range(50):
        base = 100.0 + k / 30.0
        for i in range(3):
            t = base + rng.uniform(-0.004, 0.004)
            events.append((t + rng.uniform(0, 0.02), i, msg(t, (k, i))))
    for _, i, m in sorted(events, key=lambda e: e[0]):
        sync.add(i, m)
    assert len(col.sets) == 50
    for s in col.sets:
        ks = {m.data[0] for m in s}
        assert len(ks) == 1  # the three messages of one frame
        stamps = [stamp_to_ns(m.header.stamp) for m in s]
        assert max(stamps) - min(stamps) <= 10_000_000


def test_span_above_slop_emits_nothing():
    col = Collector()
    sync = ApproximateTimeSynchronizer(5, 0.05, 3, col)
    sync.add(0, msg(1.00))
    sync.add(1, msg(1.04))   # within slop of 1.00
    sync.add(2, msg(1.08))   # within slop of 1.04 but the set would span 0.08 > 0.05
    assert col.sets == []
    sync.add(2, msg(1.03))   # now 1.00, 1.04, 1.03 spans 0.04
    assert len(col.sets) == 1
    assert [stamp_to_ns(m.header.stamp) for m in col.sets[0]] == [1_000_000_000, 1_040_000_000,
                                                                   1_030_000_000]


def test_slop_bound_is_inclusive_and_zero_slop_matches_identical():
    col = Collector()
    sync = ApproximateTimeSynchronizer(5, 0.0, 2, col)
    sync.add(0, msg(3.0))
    sync.add(1, msg(3.0))
    assert len(col.sets) == 1
    sync = ApproximateTimeSynchronizer(5, 0.25, 2, col)
    sync.add(0, msg(1.0))
    sync.add(1, msg(1.25))
    assert len(col.sets) == 2
    sync.add(0, msg(2.0))
    sync.add(1, msg(2.2500001))
    assert len(col.sets) == 2


def test_closest_partner_is_chosen():
    col = Collector()
    sync = ApproximateTimeSynchronizer(10, 0.1, 2, col)
    for t in (1.00, 1.03, 1.06):
        sync.add(0, msg(t))
    sync.add(1, msg(1.05))
    assert len(col.sets) == 1
    assert stamp_to_ns(col.sets[0][0].header.stamp) == 1_060_000_000
    # the other two stay queued (message_filters does not prune them)
    assert sync.queued_stamps(0) == [1.00, 1.03]


def test_queue_overflow_drops_oldest_stamp_and_counts():
    dropped = []
    col = Collector()
    sync = ApproximateTimeSynchronizer(3, 0.01, 2, col, on_drop=lambda i, m, r: dropped.append((i, m.data, r)))
    for t in (5.0, 1.0, 3.0, 4.0, 2.0):   # arrival order differs from stamp order
        sync.add(0, msg(t))
    # queue_size 3 keeps the three newest stamps
    assert sync.queued_stamps(0) == [3.0, 4.0, 5.0]
    assert dropped == [(0, 1.0, "queue_overflow"), (0, 2.0, "queue_overflow")]
    st = sync.stats()
    assert st["received"] == [5, 0] and st["dropped"] == [2, 0] and st["queued"] == [3, 0]
    sync.add(1, msg(4.005))
    assert len(col.sets) == 1 and col.sets[0][0].data == 4.0
    assert sync.stats()["emitted"] == 1 and sync.stats()["received"] == [5, 1]


def test_duplicate_stamp_replaces_and_counts_drop():
    col = Collector()
    sync = ApproximateTimeSynchronizer(3, 0.01, 2, col)
    sync.add(0, msg(1.0, "first"))
    sync.add(0, msg(1.0, "second"))
    assert sync.stats()["dropped"] == [1, 0]
    sync.add(1, msg(1.0))
    assert col.sets[0][0].data == "second"


def test_prune_older_keeps_output_monotonic():
    col = Collector()
    sync = ApproximateTimeSynchronizer(10, 0.01, 2, col, prune_older=True)
    for t in (1.0, 2.0, 3.0):
        sync.add(0, msg(t))
    sync.add(1, msg(2.0))
    assert len(col.sets) == 1
    assert sync.queued_stamps(0) == [3.0]          # 1.0 pruned
    assert sync.stats()["dropped"] == [1, 0]
    sync.add(1, msg(1.0))                           # a late partner of a pruned message
    assert len(col.sets) == 1


def test_headerless_messages():
    col = Collector()
    sync = ApproximateTimeSynchronizer(3, 0.1, 2, col)
    sync.add(0, SimpleNamespace(data=1))
    assert sync.stats()["dropped"] == [1, 0] and col.sets == []
    clock = iter([10.0, 10.05])
    sync = ApproximateTimeSynchronizer(3, 0.1, 2, col, allow_headerless=True, clock=lambda: next(clock))
    sync.add(0, SimpleNamespace(data=1))
    sync.add(1, SimpleNamespace(data=2))
    assert len(col.sets) == 1


def test_stamp_key_and_explicit_stamp():
    col = Collector()
    sync = ApproximateTimeSynchronizer(3, 0.1, 2, col, stamp_key=lambda m: m["t"])
    sync.add(0, {"t": 1.0})
    sync.add(1, {"t": 1.05})
    assert len(col.sets) == 1
    sync2 = ApproximateTimeSynchronizer(3, 0.1, 2, col)
    sync2.add(0, "a", stamp=7.0)
    sync2.add(1, "b", stamp=7.0)
    assert col.sets[-1] == ("a", "b")


def test_bad_arguments():
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSynchronizer(0, 0.1, 2)
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimeSynchronizer(1, -0.1, 2)
    with pytest.raises(IndexError):
        ApproximateTimeSynchronizer(1, 0.1, 2).add(2, msg(0.0))


def test_thread_safe_concurrent_adds():
    col = Collector()
    n = 400
    sync = ApproximateTimeSynchronizer(n, 0.001, 3, col)

    def feed(i):
        for k in range(n):
            sync.add(i, msg(10.0 + k * 0.1))

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(col.sets) == n
    assert sync.stats()["received"] == [n, n, n]
    assert sync.queue_lengths() == [0, 0, 0]
