"""Camera poses from TF (``pose_source: tf``): world_frame <- camera frame at each image's stamp.

Backend: ``tf2_ros`` (``Buffer`` + ``TransformListener``) wherever it is importable (a full ROS 2
install, colcon); otherwise -- the pip path, where neither tf2_ros nor tf2_msgs is on PyPI --
subscriptions to ``/tf`` and ``/tf_static`` with ``tf2_msgs/msg/TFMessage`` (built from its
upstream definition by scripts/build_interfaces.py when no tf2_msgs is installed) feeding the
small interpolating :class:`~semnerf_ros.bridge.tf_buffer.TransformBuffer`.  ``/tf_static`` is
subscribed transient-local like tf2_ros does: each static transform is taken once and kept
without expiry.  Sets whose transform is late wait in a
:class:`~semnerf_ros.bridge.tf_buffer.TfWaitQueue` (up to ``tf_timeout`` s, retried when TF
arrives and at 50 Hz); every failure is counted by reason (``tf_missing``, ``tf_future``,
``tf_past``, ``tf_loop``) with a rate-limited warning naming the frames."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from ..bridge.tf_buffer import TfError, TfOutcome, TfWaitQueue, TransformBuffer, camera_pose_from_transform
from ..engine.geometry import pose_from_position_quaternion

#: how often waiting sets are retried (s, steady clock), besides on every /tf message
POLL_PERIOD_S = 0.02
#: tf2_ros's listener QoS: /tf reliable depth 100; /tf_static reliable, transient local
TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _tf2_ros():
    try:
        import tf2_ros  # optional: a full ROS 2 install (not on PyPI); the pip path uses bridge/tf_buffer
    except ImportError:
        return None
    return tf2_ros


class TfPoses:
    """TF for ``node`` (a :class:`~semnerf_ros.ros.node.SemNerfNode`); ``on_outcome(TfOutcome)``
    receives each set's pose or error once it is final (from the thread that resolved it)."""

    def __init__(self, node, on_outcome: Callable[[TfOutcome], None], max_pending: int = 10):
        v = node.values
        self.node, self.on_outcome = node, on_outcome
        self.world, self.camera_frame, self.convention = v["world_frame"], v["camera_frame"], v["pose_convention"]
        self.tf2 = _tf2_ros()
        cache = float(v["tf_cache_time"])
        if self.tf2 is not None:
            self.buffer = self.tf2.Buffer(cache_time=Duration(seconds=cache), node=node)
            self.backend = "tf2_ros"
        else:
            self.buffer = TransformBuffer(cache)
            self.backend = "semnerf_ros.bridge.tf_buffer (no tf2_ros installed)"
        self.queue = TfWaitQueue(self._lookup, float(v["tf_timeout"]), max_pending)
        self._group = MutuallyExclusiveCallbackGroup()
        self._entities: list = []
        self._listener = None
        self._timer = None
        self.static_received = 0

    def frame_of(self, image_frame: str) -> str:
        return self.camera_frame or image_frame

    # ---------------------------------------------------------------- subscriptions
    def start(self) -> None:
        """Subscribe (activate): the listener, or /tf and /tf_static into our buffer; the retry timer."""
        node = self.node
        if self.tf2 is not None:
            self._listener = self.tf2.TransformListener(self.buffer, node, spin_thread=False)
            self._entities.append(node.create_subscription(self._tf_message_class(), "/tf", self._count, TF_QOS,
                                                           callback_group=self._group))
        else:
            cls = self._tf_message_class()
            self._entities.append(node.create_subscription(cls, "/tf", lambda m: self._on_tf(m, False), TF_QOS,
                                                           callback_group=self._group))
            self._entities.append(node.create_subscription(cls, "/tf_static", lambda m: self._on_tf(m, True),
                                                           TF_STATIC_QOS, callback_group=self._group))
        self._timer = node.create_timer(POLL_PERIOD_S, self.poll, callback_group=self._group,
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))

    def stop(self) -> None:
        """Unsubscribe (deactivate); sets still waiting are forgotten."""
        for sub in self._entities:
            self.node.destroy_subscription(sub)
        self._entities = []
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        if self._listener is not None:
            self._listener.unregister()
            self._listener = None
        self.queue.clear()

    @staticmethod
    def _tf_message_class():
        # optional: generated by scripts/build_interfaces.py (pip) or a ROS 2 install's tf2_msgs
        from tf2_msgs.msg import TFMessage

        return TFMessage

    def _count(self, msg) -> None:
        self.node.ledger.arrived("tf")

    def _on_tf(self, msg, static: bool) -> None:
        if static:
            self.static_received += 1
        else:
            self.node.ledger.arrived("tf")
        for t in msg.transforms:
            try:
                self.buffer.set_transform_message(t, static)
            except ValueError as exc:
                self.node.ledger.warn("tf_invalid", f"ignored a transform on {'/tf_static' if static else '/tf'}: "
                                                    f"{exc}")
        self.poll()

    # ---------------------------------------------------------------- lookups
    def _lookup(self, stamp: float, frame: str) -> np.ndarray:
        if self.tf2 is None:
            return self.buffer.lookup(self.world, frame, stamp)
        try:
            ts = self.buffer.lookup_transform(self.world, frame, Time(nanoseconds=int(round(stamp * 1e9))))
        except self.tf2.ExtrapolationException as exc:
            kind = "future" if "future" in str(exc) else "past"
            raise TfError(kind, self.world, frame, f"looking up {self.world} -> {frame}: {exc}") from None
        except (self.tf2.LookupException, self.tf2.ConnectivityException, self.tf2.InvalidArgumentException) as exc:
            kind = "loop" if "loop" in str(exc) else "missing"
            raise TfError(kind, self.world, frame, f"looking up {self.world} -> {frame}: {exc}") from None
        tr, rot = ts.transform.translation, ts.transform.rotation
        return pose_from_position_quaternion([tr.x, tr.y, tr.z], [rot.x, rot.y, rot.z, rot.w])

    def camera_pose(self, T_world_frame: np.ndarray, frame: str) -> np.ndarray:
        """The camera-to-world optical pose from the transform world <- ``frame`` (REP 103/105)."""
        return camera_pose_from_transform(T_world_frame, frame, self.convention)

    def submit(self, item, stamp: float, image_frame: str) -> None:
        """Look up the pose of one synchronized set (``item``); its outcome goes to ``on_outcome``
        now or once the transform arrives (or the wait ends)."""
        for outcome in self.queue.submit(item, stamp, self.frame_of(image_frame)):
            self.on_outcome(outcome)

    def poll(self) -> None:
        if len(self.queue):
            for outcome in self.queue.poll():
                self.on_outcome(outcome)

    def describe(self) -> Optional[str]:
        frame = self.camera_frame or "each image's header.frame_id"
        return (f"camera poses from TF: {self.world} -> {frame} at each image's stamp (backend {self.backend}, "
                f"tf_timeout {self.queue.timeout:g} s, pose_convention {self.convention})")
