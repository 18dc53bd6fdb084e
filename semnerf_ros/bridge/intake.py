"""Frames on their way to the map: the stamp gate and the intake queue.  No ROS imports.

:class:`StampGate` rejects duplicate, out-of-order, stale and future stamps; a stream whose
stamps go back for :data:`STAMP_REBASE_SETS` consecutive sets (a restarted source, a looped
bag, or one bogus far-future stamp accepted earlier) is taken as a new time base, with a
warning, instead of being rejected forever.

:class:`FrameIntake`: ``Mapper.add_frame`` waits for the mapper's lock (held while a
training step is launched), so validated frames go through a short queue to a thread of their
own and no subscription callback ever waits for training.  Frames that the keyframe policy
turns away (``screen_frame``, no lock) never enter the queue, so at camera rate the queue
holds keyframe candidates only and the policy, not a full queue, decides what is kept; a frame
pushed out of a full queue is still counted as ``mapper_busy``.
"""
from __future__ import annotations

import collections
import threading
from typing import Optional

from ..engine.frame import Frame, FrameError
from ..engine.geometry import PoseError
from .ledger import InputLedger, Rejected
from .mapper_api import MapperAPI

#: frames the intake queue holds: at 30 Hz about a second of keyframe candidates, enough for the
#: first keyframes, which build the field and its kernels, while the next ones arrive.  On an H200 a
#: 5-minute 30 Hz run dropped 10 frames in its first 0.3 s with a queue of 4
#: (bench/results/node_30hz_5min_h200.node.log); with 16, the engine in the node's process still
#: filled it at start-up (add_frame up to 252 ms, waits up to 367 ms) and dropped 3
#: (bench/results/node_30hz_executor_room5_h200.json).  A frame is ~0.9 MB at 320x240.
INTAKE_DEPTH = 32

#: synchronized sets in a row (since the last accepted one) older than the last accepted
#: frame after which their time base is accepted
STAMP_REBASE_SETS = 10


class StampGate:
    """The order and age rules for input stamps (seconds).  Not thread-safe by itself: the
    node calls it from the synchronizer's callback, which is serialised."""

    def __init__(self):
        self.last: Optional[float] = None
        self.back = 0             # consecutive sets older than ``last``

    def check(self, stamp: float, now: float, max_stamp_age: float = 0.0, max_future: float = 0.0,
              topics: tuple = ()) -> Optional[str]:
        """Raise :class:`Rejected` for a stamp that must not reach the map; returns a warning
        when the stream is taken as a new time base, else None."""
        last, rebase = self.last, None
        if last is not None and stamp == last:
            raise Rejected("duplicate_stamp", topics, f"stamp {stamp:.9f} s was already used")
        if last is not None and stamp < last:
            self.back += 1
            if self.back < STAMP_REBASE_SETS:
                raise Rejected("out_of_order", topics,
                               f"stamp {stamp:.6f} s is older than the last frame's {last:.6f} s")
            rebase = (f"{self.back} frames in a row were older than the last accepted one ({last:.6f} s, "
                      f"now {stamp:.6f} s): taking their stamps as the new time base (a restarted "
                      f"source, a looped bag, or a bogus stamp accepted earlier; set max_future to "
                      f"reject far-future stamps)")
        if max_stamp_age > 0 and now - stamp > max_stamp_age:
            raise Rejected("stale_stamp", topics,
                           f"stamp is {now - stamp:.3f} s old (max_stamp_age {max_stamp_age} s)")
        if max_future > 0 and stamp - now > max_future:
            raise Rejected("future_stamp", topics,
                           f"stamp is {stamp - now:.3f} s ahead of now (max_future {max_future} s)")
        return rebase

    def accept(self, stamp: float) -> None:
        self.last, self.back = stamp, 0

    def reset(self) -> None:
        self.last, self.back = None, 0


class FrameIntake:
    """A bounded queue of validated frames served by one thread that calls
    ``mapper.add_frame``; outcomes and rejections go to ``ledger``.  ``topics``: the
    synchronized inputs (blamed for ``mapper_busy`` / ``mapper_error``); ``pose_input``: the
    input blamed for a pose the engine refuses."""

    def __init__(self, mapper: MapperAPI, ledger: InputLedger, topics: list, depth: int = INTAKE_DEPTH,
                 pose_input: str = "pose"):
        self.mapper = mapper
        self.ledger = ledger
        self.topics = list(topics)
        self.pose_input = pose_input     # blamed for a pose the engine refuses (pose, or tf)
        self.queue: collections.deque = collections.deque(maxlen=depth)
        self.capacity = int(depth)
        self.peak = 0  # the most frames that ever waited at once
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="semnerf-intake", daemon=True)
        self._thread.start()

    def put(self, frame: Frame) -> None:
        """Queue a frame unless the keyframe policy already turns it away (counted as a synced,
        non-key frame); a full queue drops its oldest frame (counted as ``mapper_busy``)."""
        if self.mapper.screen_frame(frame) is not None:
            self.ledger.accepted(False)
            return
        with self._cond:
            dropped = len(self.queue) == self.queue.maxlen
            if dropped:
                self.queue.popleft()
            self.queue.append(frame)
            self.peak = max(self.peak, len(self.queue))
            self._cond.notify()
        if dropped:
            self.ledger.reject("mapper_busy", self.topics, "the mapper is still busy with earlier frames; the "
                               "oldest waiting frame was dropped")

    def clear(self) -> None:
        with self._cond:
            self.queue.clear()

    def depth(self) -> dict:
        """``intake_queue`` (frames waiting now), ``intake_queue_peak`` (the most that ever
        waited at once) and ``intake_capacity``."""
        with self._cond:
            return {"intake_queue": len(self.queue), "intake_queue_peak": self.peak,
                    "intake_capacity": self.capacity}

    def stop(self) -> None:
        """Drop the queued frames and let the thread end (after a running ``add_frame``)."""
        with self._cond:
            self._stop = True
            self.queue.clear()
            self._cond.notify_all()

    def join(self, timeout: float = 1.0) -> None:
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self.queue and not self._stop:
                    self._cond.wait(0.5)
                if self._stop:
                    return
                frame = self.queue.popleft()
            try:
                decision = self.mapper.add_frame(frame)
            except PoseError as exc:
                self.ledger.reject("invalid_pose", [self.pose_input], str(exc))
            except FrameError as exc:
                self.ledger.reject("invalid_frame", self.topics, str(exc))
            except Exception as exc:  # noqa: BLE001 - the engine must not kill the node
                self.ledger.reject("mapper_error", self.topics, f"{type(exc).__name__}: {exc}")
            else:
                self.ledger.accepted(bool(decision.keyframe))
