"""The node's input ledger: what arrived, what was rejected and why, what the map took.

Every rejected input is counted by reason (``MapStatus.reject_reasons`` / ``reject_counts``)
and on the topics to blame (``MapStatus.dropped``), with a warning at most every
``warn_period`` s per reason, topic and kind of problem (:func:`semnerf_ros.logs.warning_kind`).
Thread-safe; no ROS imports.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from ..logs import ThrottledLog, warning_kind

#: reasons an input set (or message) is rejected, as reported in MapStatus.reject_reasons
REJECT_REASONS = (
    "unsupported_encoding", "bad_image", "size_mismatch", "label_out_of_range", "invalid_pose",
    "pose_frame_mismatch", "invalid_frame", "out_of_order", "duplicate_stamp", "stale_stamp",
    "future_stamp", "no_camera_info", "invalid_camera_info", "mapper_busy", "mapper_error",
    "internal_error",
    # pose_source tf (bridge/tf_buffer.py): no transform / one that arrived too late / a stamp older
    # than the TF cache / a TF tree with a loop
    "tf_missing", "tf_future", "tf_past", "tf_loop")


class Rejected(Exception):
    """An input set that cannot go to the map: ``reason`` (one of :data:`REJECT_REASONS`),
    ``topics`` to blame, ``detail`` for the warning."""

    def __init__(self, reason: str, topics: list, detail: str, count_frame: bool = True):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.topics, self.detail, self.count_frame = reason, list(topics), detail, count_frame


class InputLedger:
    """Counters of the node's inputs and outputs, and the throttled warnings about them.

    ``topics``: the input names (``rgb``, ``labels``, ``pose``, [``depth``], ``camera_info``);
    ``warn``: ``warn(text)`` logs a warning; ``warn_period``: seconds (or a callable) between
    warnings of one kind.
    """

    def __init__(self, topics: list, warn: Callable[[str], object], warn_period=5.0):
        self.topics = list(topics)
        self.lock = threading.Lock()
        self._warn_out = warn
        self.throttle = ThrottledLog(warn_period)
        self.received = {t: 0 for t in self.topics}
        self.rejected_by_topic = {t: 0 for t in self.topics}
        self.last_received_time: dict[str, float] = {}
        self.latest_stamp: dict[str, float] = {}
        self.reject_counts: dict[str, int] = {}
        self.sync_drops: dict[str, int] = {}   # messages the synchronizer dropped, by its reason
        self.frames_synced = 0        # sets the mapper accepted
        self.frames_rejected = 0
        self.keyframes_added = 0
        self.images_published = 0     # render sets published on the image topics
        self.last_sync_time = time.monotonic()   # when a set last synchronized (or the start)

    def warn(self, key: str, text: str, period: Optional[float] = None) -> None:
        """A warning at most once per period per ``key`` and kind of text."""
        self.throttle(f"{key}|{warning_kind(text)}", text, self._warn_out, period)

    def arrived(self, topic: str, stamp: Optional[float] = None) -> None:
        with self.lock:
            self.received[topic] += 1
            self.last_received_time[topic] = time.monotonic()
            if stamp is not None:
                self.latest_stamp[topic] = stamp

    def sync_dropped(self, reason: str) -> None:
        """The synchronizer dropped a message (``reason`` as it reports it)."""
        with self.lock:
            self.sync_drops[reason] = self.sync_drops.get(reason, 0) + 1

    def synchronized(self) -> None:
        with self.lock:
            self.last_sync_time = time.monotonic()

    def reject(self, reason: str, topics: list, detail: str, count_frame: bool = True) -> None:
        with self.lock:
            self.reject_counts[reason] = self.reject_counts.get(reason, 0) + 1
            for t in topics:
                self.rejected_by_topic[t] += 1
            if count_frame:
                self.frames_rejected += 1
        self.warn(f"{reason}:{','.join(topics)}", f"rejected ({reason}): {detail}")

    def rejected(self, exc: Rejected) -> None:
        self.reject(exc.reason, exc.topics, exc.detail, exc.count_frame)

    def accepted(self, keyframe: bool) -> None:
        with self.lock:
            self.frames_synced += 1
            if keyframe:
                self.keyframes_added += 1

    def published(self) -> None:
        with self.lock:
            self.images_published += 1
