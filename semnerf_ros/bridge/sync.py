"""Approximate-time message synchronizer: the smallest faithful equivalent of
``message_filters.ApproximateTimeSynchronizer`` (ROS 2 Python), which is not
installable here.  Pure Python, no rclpy import.

Semantics follow message_filters' Python implementation:

* One queue per input, keyed by stamp (integer nanoseconds).  A message whose
  stamp already sits in its queue replaces the older one.  When a queue holds
  more than ``queue_size`` messages, the one with the *oldest stamp* is dropped.
* On every :meth:`add` of a message with stamp ``t`` to input ``i``, every other
  input's queue is searched for stamps within ``slop`` of ``t``, each sorted by
  closeness to ``t``; the candidate sets are tried in that order (message_filters
  takes ``itertools.product`` of the sorted candidates, first input slowest) and
  the first set of one message per input whose stamps span at most ``slop`` is
  handed to the callback and removed from the queues.  If some input has no
  candidate, nothing is emitted.  So messages may arrive in any order.

Differences, all deliberate and documented:

* the span test is ``max - min <= slop`` (message_filters' Python code uses a
  strict ``<``, which makes ``slop = 0`` never match even identical stamps);
* the product search is a depth-first walk in the same order that prunes any
  partial set already wider than ``slop``: it finds exactly the set
  message_filters finds, without enumerating ``queue_size ** (n - 1)`` sets;
* ``prune_older=True`` (off by default, used by the ROS node) also removes,
  after a set is emitted, every queued message not newer than the emitted
  message of its input, like the C++ ApproximateTime policy, so emitted sets
  come out in increasing stamp order;
* it keeps per-input counters: ``received`` and ``dropped`` (evicted without
  ever being emitted: queue overflow, replaced by a same-stamp message, pruned,
  or headerless while ``allow_headerless`` is off), and calls ``on_drop``.

Thread-safe: one lock guards the queues; the callback runs while the lock is
held (as in message_filters), so sets are delivered one at a time in order.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

NS_PER_S = 1_000_000_000


class HeaderlessMessageError(ValueError):
    """A message without ``header.stamp`` given where a stamp is required."""


def stamp_to_ns(stamp: Any) -> int:
    """Integer nanoseconds from a stamp: float/int seconds, a
    ``builtin_interfaces/Time``-like object (``sec``, ``nanosec``), or an
    ``rclpy.time.Time``-like object (``nanoseconds``)."""
    if isinstance(stamp, bool):
        raise TypeError(f"not a time stamp: {stamp!r}")
    if isinstance(stamp, (int, float)):
        return int(round(float(stamp) * NS_PER_S))
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)
    if hasattr(stamp, "nanoseconds"):
        return int(stamp.nanoseconds)
    raise TypeError(f"not a time stamp: {stamp!r}")


def header_stamp_ns(msg: Any) -> Optional[int]:
    """``msg.header.stamp`` in nanoseconds, or None for a headerless message."""
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None) if header is not None else None
    if stamp is None:
        return None
    return stamp_to_ns(stamp)


class ApproximateTimeSynchronizer:
    """Pair one message per input whose stamps lie within ``slop`` seconds.

    Args:
        queue_size: messages kept per input while waiting for partners (>= 1).
        slop: largest stamp spread of an emitted set, seconds (>= 0).
        num_inputs: number of inputs (>= 1); messages are added with
            :meth:`add` (``index`` in ``0..num_inputs-1``) or through the
            per-input callables of :meth:`input`.
        callback: called as ``callback(msg_0, ..., msg_{n-1})`` for each set.
        allow_headerless: a message without ``header.stamp`` (and no explicit
            stamp or ``stamp_key``) gets the current time from ``clock``
            instead of being dropped (discouraged, as in message_filters).
        stamp_key: optional ``msg -> stamp`` (seconds or Time-like); default
            reads ``msg.header.stamp``.
        prune_older: see the module docstring.
        on_drop: optional ``on_drop(index, msg, reason)`` called for every
            message dropped without being emitted; reasons: ``"queue_overflow"``,
            ``"duplicate_stamp"``, ``"pruned_older"``, ``"headerless"``.
        clock: ``() -> seconds`` used for headerless messages (default time.time).
    """

    def __init__(self, queue_size: int, slop: float, num_inputs: int,
                 callback: Optional[Callable[..., Any]] = None, allow_headerless: bool = False,
                 stamp_key: Optional[Callable[[Any], Any]] = None, prune_older: bool = False,
                 on_drop: Optional[Callable[[int, Any, str], Any]] = None,
                 clock: Callable[[], float] = time.time):
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not float(slop) >= 0.0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        if int(num_inputs) < 1:
            raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
        self.queue_size = int(queue_size)
        self.slop = float(slop)
        self.slop_ns = int(round(self.slop * NS_PER_S))
        self.num_inputs = int(num_inputs)
        self.allow_headerless = bool(allow_headerless)
        self.stamp_key = stamp_key
        self.prune_older = bool(prune_older)
        self.on_drop = on_drop
        self.clock = clock
        self._callbacks: list[Callable[..., Any]] = [callback] if callback is not None else []
        self._lock = threading.RLock()
        self._queues: list[dict[int, Any]] = [{} for _ in range(self.num_inputs)]
        self.received = [0] * self.num_inputs
        self.dropped = [0] * self.num_inputs
        self.emitted = 0

    # ------------------------------------------------------------------ API
    def register_callback(self, callback: Callable[..., Any]) -> int:
        """Add another output callback (message_filters' ``registerCallback``);
        returns its connection index."""
        with self._lock:
            self._callbacks.append(callback)
            return len(self._callbacks) - 1

    registerCallback = register_callback

    def input(self, index: int) -> Callable[[Any], None]:
        """A one-argument callable feeding input ``index`` (a subscription callback)."""
        self._check_index(index)
        return lambda msg: self.add(index, msg)

    def add(self, index: int, msg: Any, stamp: Any = None) -> bool:
        """Queue ``msg`` on input ``index`` and emit a set if one completes.

        ``stamp`` (seconds or Time-like) overrides the message's own stamp.
        Returns True when this call emitted a set.
        """
        self._check_index(index)
        with self._lock:
            self.received[index] += 1
            if stamp is not None:
                t = stamp_to_ns(stamp)
            elif self.stamp_key is not None:
                t = stamp_to_ns(self.stamp_key(msg))
            else:
                t = header_stamp_ns(msg)
                if t is None:
                    if not self.allow_headerless:
                        self._drop(index, msg, "headerless")
                        return False
                    t = stamp_to_ns(float(self.clock()))
            queue = self._queues[index]
            if t in queue:
                self._drop(index, queue[t], "duplicate_stamp")
            queue[t] = msg
            while len(queue) > self.queue_size:
                oldest = min(queue)
                self._drop(index, queue.pop(oldest), "queue_overflow")
            chosen = self._search(index, t)
            if chosen is None:
                return False
            msgs = [self._queues[i].pop(s) for i, s in enumerate(chosen)]
            if self.prune_older:
                for i, s in enumerate(chosen):
                    q = self._queues[i]
                    for old in [k for k in q if k <= s]:
                        self._drop(i, q.pop(old), "pruned_older")
            self.emitted += 1
            for cb in list(self._callbacks):
                cb(*msgs)
            return True

    def queue_lengths(self) -> list[int]:
        with self._lock:
            return [len(q) for q in self._queues]

    def queued_stamps(self, index: int) -> list[float]:
        """Stamps (seconds, ascending) waiting on input ``index``."""
        self._check_index(index)
        with self._lock:
            return [k / NS_PER_S for k in sorted(self._queues[index])]

    def stats(self) -> dict:
        """Counters: ``received``/``dropped`` per input, ``emitted`` sets, ``queued`` per input."""
        with self._lock:
            return {"received": list(self.received), "dropped": list(self.dropped),
                    "emitted": self.emitted, "queued": [len(q) for q in self._queues]}

    def clear(self, reset_counts: bool = False) -> None:
        """Empty the queues (queued messages are not counted as dropped)."""
        with self._lock:
            for q in self._queues:
                q.clear()
            if reset_counts:
                self.received = [0] * self.num_inputs
                self.dropped = [0] * self.num_inputs
                self.emitted = 0

    # ------------------------------------------------------------ internals
    def _check_index(self, index: int) -> None:
        if not 0 <= int(index) < self.num_inputs:
            raise IndexError(f"input index {index} outside 0..{self.num_inputs - 1}")

    def _drop(self, index: int, msg: Any, reason: str) -> None:
        self.dropped[index] += 1
        if self.on_drop is not None:
            self.on_drop(index, msg, reason)

    def _search(self, index: int, t: int) -> Optional[list[int]]:
        """The stamps (one per input, input order) of the set message_filters
        would emit for a new message at ``t`` on ``index``, or None."""
        others = [i for i in range(self.num_inputs) if i != index]
        candidates = []
        for i in others:
            near = [(abs(s - t), s) for s in self._queues[i] if abs(s - t) <= self.slop_ns]
            if not near:
                return None
            # stable sort on distance only keeps queue (insertion) order for ties,
            # as sorted(..., key=delta) does in message_filters
            near.sort(key=lambda x: x[0])
            candidates.append([s for _, s in near])
        chosen: list[int] = []

        def walk(depth: int, lo: int, hi: int) -> bool:
            if depth == len(candidates):
                return True
            for s in candidates[depth]:
                nlo, nhi = min(lo, s), max(hi, s)
                if nhi - nlo > self.slop_ns:
                    continue
                chosen.append(s)
                if walk(depth + 1, nlo, nhi):
                    return True
                chosen.pop()
            return False

        if not walk(0, t, t):
            return None
        out = list(chosen)
        out.insert(index, t)
        return out
