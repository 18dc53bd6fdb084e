"""Camera poses from TF without ``tf2_ros``: a transform buffer with interpolation, and the queue
of input sets that wait for their transform.  No ROS imports.

``tf2_ros`` is not installable from PyPI, so this is the smallest faithful equivalent of the
parts of tf2's ``BufferCore`` the node needs (the node uses ``tf2_ros`` itself wherever it is
importable, e.g. in a colcon workspace; :mod:`semnerf_ros.ros.tf_input`):

* one parent per child frame; dynamic transforms kept for ``cache_time`` s behind the newest,
  looked up at a stamp by linear interpolation of the translation and spherical-linear (slerp)
  of the rotation between the two samples around it, as tf2 does; static transforms (``/tf_static``)
  are valid at every time and never expire;
* ``lookup(target, source, stamp)`` walks both frames up to their common ancestor and
  composes the edges; stamp 0 means "the latest time every edge of the chain has" (tf2's rule);
* the errors tf2 raises, each a :class:`TfError` of one ``kind``: ``missing`` (a frame is
  unknown, or the two are not connected), ``future`` (extrapolation into the future: the
  stamp is newer than the newest sample of an edge), ``past`` (older than the oldest kept
  sample), ``loop`` (the parents form a cycle: the tree is invalid).  Every message names the
  frames.

Frames follow REP 103/105: the pose of a camera frame named ``*_optical_frame`` is in optical
axes (x right, y down, z forward); a body frame (``camera_link``: x forward, y left, z up) is
rotated into optical axes by :func:`camera_pose_from_transform`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ..engine.geometry import (
    PoseError,
    optical_from_body_pose,
    pose_from_position_quaternion,
    validate_pose,
)

#: error kind -> the reject reason the node counts it under
TF_REASONS = {"missing": "tf_missing", "future": "tf_future", "past": "tf_past", "loop": "tf_loop"}
#: frames walked at most from a frame to its root (tf2's MAX_GRAPH_DEPTH)
MAX_DEPTH = 1000


class TfError(Exception):
    """A transform that cannot be looked up: ``kind`` (``missing``, ``future``, ``past``, ``loop``),
    ``target`` and ``source`` frames, and a message naming the frames at fault."""

    def __init__(self, kind: str, target: str, source: str, detail: str):
        super().__init__(detail)
        self.kind, self.target, self.source, self.detail = kind, target, source, detail

    @property
    def reason(self) -> str:
        return TF_REASONS[self.kind]


def strip_frame(frame: str) -> str:
    """tf2 ignores a leading slash of a frame id."""
    return str(frame).lstrip("/")


def is_optical_frame(frame: str) -> bool:
    """REP 105 naming: optical frames carry ``optical`` in their name (``*_optical_frame``)."""
    return "optical" in strip_frame(frame).lower()


def camera_convention(frame: str, convention: str) -> str:
    """``optical`` or ``body`` for the pose of ``frame``: ``convention`` when it says so, else
    (``auto``) from the frame's name (REP 103/105)."""
    if convention in ("optical", "body"):
        return convention
    return "optical" if is_optical_frame(frame) else "body"


def camera_pose_from_transform(T_world_frame: np.ndarray, frame: str, convention: str = "auto") -> np.ndarray:
    """Camera-to-world pose in optical axes from the TF transform world <- ``frame``."""
    T = validate_pose(T_world_frame)
    return optical_from_body_pose(T) if camera_convention(frame, convention) == "body" else T


def _slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Spherical-linear interpolation of unit quaternions (x, y, z, w), shortest arc."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    s = np.sin(theta)
    return (np.sin((1.0 - a) * theta) * q0 + np.sin(a * theta) * q1) / s


@dataclass
class _Edge:
    """The transform parent <- child: static (one sample, any time) or samples sorted by stamp."""

    parent: str
    static: bool
    stamps: list = field(default_factory=list)
    samples: list = field(default_factory=list)   # (translation (3,), quaternion xyzw (4,))

    def at(self, stamp: float, child: str) -> np.ndarray:
        """4x4 parent <- child at ``stamp`` (0: the newest); raises :class:`TfError`."""
        if self.static:
            t, q = self.samples[0]
            return pose_from_position_quaternion(t, q)
        if stamp == 0.0:
            t, q = self.samples[-1]
            return pose_from_position_quaternion(t, q)
        first, last = self.stamps[0], self.stamps[-1]
        if stamp > last:
            raise TfError("future", self.parent, child, (
                f"extrapolation into the future: the transform {self.parent} -> {child} is needed at "
                f"{stamp:.6f} s but its newest sample is at {last:.6f} s ({stamp - last:.3f} s older)"))
        if stamp < first:
            raise TfError("past", self.parent, child, (
                f"extrapolation into the past: the transform {self.parent} -> {child} is needed at "
                f"{stamp:.6f} s but its oldest kept sample is at {first:.6f} s ({first - stamp:.3f} s newer)"))
        i = int(np.searchsorted(self.stamps, stamp, side="left"))
        if self.stamps[i] == stamp:
            t, q = self.samples[i]
            return pose_from_position_quaternion(t, q)
        (t0, q0), (t1, q1) = self.samples[i - 1], self.samples[i]
        a = (stamp - self.stamps[i - 1]) / (self.stamps[i] - self.stamps[i - 1])
        return pose_from_position_quaternion(t0 + a * (t1 - t0), _slerp(q0, q1, a))


class TransformBuffer:
    """Transforms by child frame (thread-safe).  ``cache_time``: seconds of dynamic samples kept
    behind each edge's newest one."""

    def __init__(self, cache_time: float = 10.0):
        if not cache_time > 0:
            raise ValueError(f"cache_time must be > 0 s, got {cache_time}")
        self.cache_time = float(cache_time)
        self._edges: dict[str, _Edge] = {}
        self._lock = threading.Lock()

    def set_transform(self, parent: str, child: str, stamp: float, translation, quaternion_xyzw,
                      static: bool = False) -> None:
        """Add the transform parent <- child (a point in ``child`` mapped into ``parent``).
        Raises ``ValueError`` naming the frames for an unusable one (empty or equal frames, NaN,
        a non-unit quaternion); a new parent of a child replaces its history (tf2 keeps one
        parent per child at a time)."""
        parent, child = strip_frame(parent), strip_frame(child)
        if not parent or not child:
            raise ValueError(f"transform with an empty frame id (parent '{parent}', child '{child}')")
        if parent == child:
            raise ValueError(f"transform from frame '{child}' to itself")
        t = np.asarray(translation, dtype=np.float64).reshape(3)
        q = np.asarray(quaternion_xyzw, dtype=np.float64).reshape(4)
        try:
            pose_from_position_quaternion(t, q)
        except PoseError as exc:
            raise ValueError(f"transform {parent} -> {child}: {exc}") from None
        q = q / np.linalg.norm(q)
        stamp = float(stamp)
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                edge = self._edges[child] = _Edge(parent, static)
            if static:
                edge.stamps, edge.samples = [stamp], [(t, q)]
                return
            i = int(np.searchsorted(edge.stamps, stamp, side="left"))
            if i < len(edge.stamps) and edge.stamps[i] == stamp:
                edge.samples[i] = (t, q)
            else:
                edge.stamps.insert(i, stamp)
                edge.samples.insert(i, (t, q))
            oldest = edge.stamps[-1] - self.cache_time
            k = int(np.searchsorted(edge.stamps, oldest, side="left"))
            if k:
                del edge.stamps[:k], edge.samples[:k]

    def set_transform_message(self, msg: Any, static: bool = False) -> None:
        """Add a ``geometry_msgs/TransformStamped`` (rclpy or rosbags message)."""
        tr, rot = msg.transform.translation, msg.transform.rotation
        stamp = int(msg.header.stamp.sec) + int(msg.header.stamp.nanosec) * 1e-9
        self.set_transform(msg.header.frame_id, msg.child_frame_id, stamp, [tr.x, tr.y, tr.z],
                           [rot.x, rot.y, rot.z, rot.w], static)

    def frames(self) -> list:
        with self._lock:
            return sorted(set(self._edges) | {e.parent for e in self._edges.values()})

    def clear(self) -> None:
        with self._lock:
            self._edges.clear()

    def _chain(self, frame: str, target: str, source: str) -> list:
        """[frame, parent, grandparent, ..., root]; raises TfError(loop)."""
        chain, seen = [frame], {frame}
        while frame in self._edges:
            frame = self._edges[frame].parent
            if frame in seen or len(chain) > MAX_DEPTH:
                loop = " -> ".join(chain[chain.index(frame):] + [frame]) if frame in seen else " -> ".join(chain)
                raise TfError("loop", target, source, f"the TF tree has a loop ({loop}): cannot look up "
                              f"{target} -> {source} (a frame has two parents over /tf and /tf_static?)")
            chain.append(frame)
            seen.add(frame)
        return chain

    def lookup(self, target: str, source: str, stamp: float = 0.0) -> np.ndarray:
        """4x4 transform target <- source at ``stamp`` (s; 0 = the latest common time); for a
        camera, ``lookup(world, camera, t)`` is the camera-to-world pose.  Raises :class:`TfError`."""
        target, source = strip_frame(target), strip_frame(source)
        if target == source:
            return np.eye(4)
        with self._lock:
            known = set(self._edges) | {e.parent for e in self._edges.values()}
            for f in (source, target):
                if f not in known:
                    frames = ", ".join(sorted(known)) or "none yet"
                    raise TfError("missing", target, source, f"frame '{f}' does not exist (looking up {target} -> "
                                  f"{source}; frames in the buffer: {frames})")
            up_source = self._chain(source, target, source)
            up_target = self._chain(target, target, source)
            common = next((f for f in up_target if f in set(up_source)), None)
            if common is None:
                raise TfError("missing", target, source, (
                    f"{target} and {source} are not connected: {source} leads up to '{up_source[-1]}', "
                    f"{target} to '{up_target[-1]}' (is a transform between the two trees missing?)"))
            edges = [(f, self._edges[f]) for f in up_source[:up_source.index(common)]] + \
                    [(f, self._edges[f]) for f in up_target[:up_target.index(common)]]
            if stamp == 0.0:
                dynamic = [e.stamps[-1] for _, e in edges if not e.static]
                stamp = min(dynamic) if dynamic else 0.0

            def to_common(chain):
                T = np.eye(4)
                for f in chain[:chain.index(common)]:
                    T = self._edges[f].at(float(stamp), f) @ T
                return T

            try:
                T_common_source = to_common(up_source)
                T_common_target = to_common(up_target)
            except TfError as exc:
                raise TfError(exc.kind, target, source, f"looking up {target} -> {source}: {exc.detail}") from None
        return np.linalg.inv(T_common_target) @ T_common_source


# ------------------------------------------------------------------ sets waiting for their transform
@dataclass
class TfOutcome:
    """What became of one waiting set: ``pose`` (4x4, the lookup's result) or ``error``."""

    item: Any
    pose: Optional[np.ndarray] = None
    error: Optional[TfError] = None
    waited_s: float = 0.0


class TfWaitQueue:
    """Input sets waiting for the transform at their stamp, as tf2_ros's MessageFilter: a set
    whose transform is not there yet (``missing`` or ``future``) waits up to ``timeout`` s and is
    retried by :meth:`poll` (call it when transforms arrive and on a timer); a ``past`` or
    ``loop`` error, a timeout, or a full queue (``max_pending``, the oldest leaves) ends it.

    ``lookup(stamp, frame) -> 4x4`` (world <- ``frame`` at ``stamp``) raises :class:`TfError`;
    ``clock()``: monotonic seconds."""

    def __init__(self, lookup: Callable[[float, str], np.ndarray], timeout: float = 0.5, max_pending: int = 10,
                 clock: Callable[[], float] = time.monotonic):
        self.lookup, self.timeout, self.max_pending, self.clock = lookup, float(timeout), int(max_pending), clock
        self._pending: list = []     # [item, stamp, frame, submitted, last error]
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def _try(self, stamp: float, frame: str) -> tuple:
        try:
            return self.lookup(stamp, frame), None
        except TfError as exc:
            return None, exc

    def submit(self, item: Any, stamp: float, frame: str = "") -> list:
        """Look up ``item``'s transform (world <- ``frame`` at ``stamp``) now; returns the outcomes
        that are final (this one's, or an older one pushed out of a full queue)."""
        now = self.clock()
        pose, err = self._try(stamp, frame)
        if err is None:
            return [TfOutcome(item, pose=pose)]
        if err.kind not in ("missing", "future") or self.timeout <= 0:
            return [TfOutcome(item, error=err)]
        out = []
        with self._lock:
            self._pending.append([item, stamp, frame, now, err])
            while len(self._pending) > self.max_pending:
                old, _, _, t0, old_err = self._pending.pop(0)
                out.append(TfOutcome(old, error=TfError(old_err.kind, old_err.target, old_err.source,
                                                        old_err.detail + f"; dropped after {now - t0:.3f} s: "
                                                        f"{self.max_pending} sets already waited for TF"),
                                     waited_s=now - t0))
        return out

    def poll(self) -> list:
        """Retry every waiting set; returns the outcomes that are final now (resolved, or timed
        out with their last error, whose message then says how long they waited)."""
        now = self.clock()
        with self._lock:
            pending, self._pending = self._pending, []
        out, keep = [], []
        for entry in pending:
            item, stamp, frame, t0, _ = entry
            pose, err = self._try(stamp, frame)
            if err is None:
                out.append(TfOutcome(item, pose=pose, waited_s=now - t0))
            elif err.kind in ("missing", "future") and now - t0 < self.timeout:
                entry[4] = err
                keep.append(entry)
            else:
                if err.kind in ("missing", "future"):
                    err = TfError(err.kind, err.target, err.source,
                                  err.detail + f" (waited {now - t0:.2f} s, tf_timeout {self.timeout:g} s)")
                out.append(TfOutcome(item, error=err, waited_s=now - t0))
        with self._lock:
            self._pending = keep + self._pending
        return out

    def clear(self) -> None:
        with self._lock:
            self._pending = []
