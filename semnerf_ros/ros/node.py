"""``semnerf_node``: the ROS 2 adapter around the engine (:class:`~semnerf_ros.bridge.mapper_api.MapperAPI`,
implemented by :class:`semnerf_ros.engine.mapper.Mapper`).

Run (docs/node.md; README "Using it"): ``semnerf_node --ros-args --params-file config/semnerf.yaml
-r rgb:=/camera/color/image_raw -r camera_info:=/camera/color/camera_info -r pose:=/camera/pose
-r labels:=/segmentation/labels -r depth:=/camera/depth/image_raw`` (``ros2 run semnerf_ros
semnerf_node ...`` in a workspace, or ``python -m semnerf_ros.ros.node ...``).  On a CPU with no
``engine_config`` the node takes the CPU profile's engine (config/engine_cpu.yaml) and logs it.

Inputs (relative names, remap them): ``rgb`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8),
``labels`` (Image: mono8, 8UC1, mono16, 16UC1, 32SC1 class ids), ``pose`` (geometry_msgs/PoseStamped,
or nav_msgs/Odometry with ``pose_type: odometry``; camera-to-world in ``world_frame``), optional
``depth`` (16UC1 mm or 32FC1 m, ``use_depth``), ``camera_info`` (or intrinsics from parameters).
RGB, labels, pose (and depth) are paired by an approximate-time synchronizer
(:mod:`semnerf_ros.bridge.sync`); camera_info is the latest one received.  When no set
synchronizes for ``input_timeout`` s the node says why (:mod:`semnerf_ros.bridge.diagnostics`).

Outputs, rendered at most ``publish_rate`` from the latest synced pose, once per new input
stamp, each with that input's stamp and frame_id: ``~/semantic``, ``~/semantic_color``, ``~/rgb``,
``~/depth``, ``~/uncertainty``, ``~/camera_info`` (transient local); ``~/mesh`` markers every
``mesh_period`` s; ``~/status``.  Timers run on the steady clock.  Services: :mod:`.services`;
process and shutdown: :mod:`.process`; behaviour under each fault: docs/reliability.md.

Threads: the Mapper trains in its own thread; a MultiThreadedExecutor runs subscriptions,
rendering, meshing, status and the long services in separate callback groups; validated frames
that the keyframe policy does not turn away go through the short queue of
:class:`~semnerf_ros.bridge.intake.FrameIntake` to a thread that calls ``add_frame``, so no
subscription callback ever waits for training.

The ROS-free work is in :mod:`semnerf_ros.bridge`: stamp gate and intake, messages to a frame,
the reject ledger, status and progress, mesh markers, mesh export and map files.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..bridge import convert, diagnostics
from ..bridge.engine_setup import make_mapper
from ..bridge.frames import InputRules, frame_from_messages
from ..bridge.intake import FrameIntake, StampGate
from ..bridge.ledger import InputLedger, Rejected
from ..bridge.map_ops import MapOperations
from ..bridge.mapper_api import MapperAPI
from ..bridge.markers import mesh_marker_array
from ..bridge.outputs import IMAGE_OUTPUTS, image_messages
from ..bridge.params import ParameterValueError, camera_from_values, check_values, num_classes_of
from ..bridge.status import EngineFaults, fill_status, progress_line
from ..bridge.sync import ApproximateTimeSynchronizer
from ..engine.geometry import Intrinsics, IntrinsicsError
from ..engine.mesh import ExtractionCancelled
from . import parameters
from .services import MapServices, load_interfaces

NODE_NAME = "semnerf_node"
#: period (s, steady clock) of the check that names silent or unsynchronized inputs
INPUT_CHECK_PERIOD_S = 1.0
#: (parameter, callback, whether the parameter is a rate in Hz) of the periodic work
TIMED_WORK = (("publish_rate", "_publish_renders", True), ("mesh_period", "_publish_mesh", False),
              ("status_rate", "_publish_status", True), ("log_period", "_log_progress", False))


class SemNerfNode(Node):
    """The mapping node.  ``mapper``: the engine (made from the parameters when None).
    Raises :class:`ParameterValueError` naming the parameter when a value cannot be used."""

    def __init__(self, mapper: Optional[MapperAPI] = None, node_name: str = NODE_NAME, on_ready=None,
                 **node_kwargs):
        """``on_ready``: called once everything is set up, just before the "ready" line
        (``process.run`` uses it to switch signals from "abort the start" to "shut down")."""
        super().__init__(node_name, **{**parameters.NODE_OPTIONS, **node_kwargs})
        self._closed = False
        self._state_lock = threading.Lock()
        self.values = parameters.declare_parameters(self)
        errors = check_values(self.values)
        if errors:
            raise ParameterValueError("; ".join(errors))
        v = self.values
        self.num_classes = num_classes_of(v)
        self.add_pre_set_parameters_callback(parameters.coerce_types)
        self.class_names = list(v["class_names"]) or None
        # latest valid camera (from the parameters when use_camera_info is false)
        self._camera_intrinsics: Optional[Intrinsics] = camera_from_values(v)
        self.topic_names = ["rgb", "labels", "pose"] + (["depth"] if v["use_depth"] else []) + ["camera_info"]
        self._synced_topics = [t for t in self.topic_names if t != "camera_info"]
        self.ledger = InputLedger(self.topic_names, lambda text: self._node_log().warning(text),
                                  lambda: float(self.values["warn_period"]))
        self.engine_faults = EngineFaults(self.ledger.warn)
        self.mapper: MapperAPI = mapper if mapper is not None else \
            make_mapper(v, self.num_classes, self.class_names, self.get_logger().info)
        self.ops = MapOperations(self.mapper, self.values, lambda text: self._node_log().info(text))
        if v["load_on_start"]:
            self.ops.load_at_start()
        self.gate = StampGate()
        self.intake = FrameIntake(self.mapper, self.ledger, self._synced_topics)
        # -- state shared between callbacks (guarded by _state_lock)
        self._latest: Optional[tuple] = None    # (pose, intrinsics, header) of the latest synced frame
        self._last_published_ns: Optional[int] = None  # input stamp of the last render set published
        self._camera_frame_id = ""              # latest input camera frame (kept across reset/load)
        # -- callback groups: inputs never wait for rendering, meshing or services; each input topic
        #    has a group of its own, so its messages are handled in arrival order (with one reentrant
        #    group two threads could hand a topic's newer message to the synchronizer first, which
        #    then pruned the older set as out of date)
        self._render_group = MutuallyExclusiveCallbackGroup()
        self._mesh_group = MutuallyExclusiveCallbackGroup()
        self._status_group = MutuallyExclusiveCallbackGroup()
        self._make_sync_and_subscriptions()
        self._iface = load_interfaces()
        self._make_publishers()
        self.map_services = MapServices(self, self._iface, self._render_group, self._status_group)
        self._periodic: dict[str, Any] = {}
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._reset_timers()
        if self.get_parameter("use_sim_time").value:
            self.get_logger().info("use_sim_time is true: outputs are stamped with /clock time; timers "
                                   "(renders, mesh, status, progress) run on the wall clock so they go on "
                                   "when /clock stops")
        self.add_on_set_parameters_callback(parameters.validate_change)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self._training_started = False
        self._apply_training_enabled()
        if on_ready is not None:
            on_ready()
        self.get_logger().info(
            f"semnerf_node ready: {self.num_classes} classes, model {v['model_type']}, device "
            f"{self.mapper.device}, inputs " + ", ".join(self._subs[t].topic_name for t in self.topic_names))

    # ================================================================ parameters
    def _after_set_parameters(self, params: list) -> None:
        changed = {p.name for p in params if p.name in self.values}
        for p in params:
            if p.name in changed:
                self.values[p.name] = p.value
        if changed & {"publish_rate", "mesh_period", "status_rate", "log_period"}:
            self._reset_timers()
        if "training_enabled" in changed:
            self._apply_training_enabled()

    def _apply_training_enabled(self) -> None:
        if self.values["training_enabled"]:
            if self._training_started:
                self.mapper.resume()
            else:
                self.mapper.start()
                self._training_started = True
        elif self._training_started:
            self.mapper.pause()

    # ================================================================ inputs
    def _make_sync_and_subscriptions(self) -> None:
        self.sync = ApproximateTimeSynchronizer(
            queue_size=self.values["queue_size"], slop=self.values["slop"], num_inputs=len(self._synced_topics),
            callback=self._on_synced, prune_older=True, on_drop=self._on_sync_drop)
        qos = parameters.input_qos(self.values["qos"], int(self.values["qos_depth"]))
        types = {"rgb": Image, "labels": Image, "depth": Image,
                 "pose": Odometry if self.values["pose_type"] == "odometry" else PoseStamped}
        self._subs = {t: self.create_subscription(types[t], t, self._input_callback(t, i), qos,
                                                  callback_group=MutuallyExclusiveCallbackGroup())
                      for i, t in enumerate(self._synced_topics)}
        self._subs["camera_info"] = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos,
                                                             callback_group=MutuallyExclusiveCallbackGroup())
        self._names = {t: s.topic_name for t, s in self._subs.items()}
        self._rules = InputRules(self.num_classes, self.values["world_frame"], self.values["pose_type"],
                                 self.values["pose_convention"], self._names["camera_info"])

    def _input_callback(self, topic: str, index: int):
        def callback(msg):
            try:
                stamp = convert.stamp_to_sec(msg.header.stamp)
            except (AttributeError, TypeError):
                stamp = None
            self.ledger.arrived(topic, stamp)
            try:
                self.sync.add(index, msg)
            except Exception as exc:  # noqa: BLE001 - a bad message must never kill the node
                self.ledger.reject("internal_error", [topic], f"{type(exc).__name__}: {exc}")
        return callback

    def _publisher_count(self, topic: str) -> int:
        try:
            return int(self.count_publishers(self._names[topic]))
        except Exception:  # noqa: BLE001 - a graph query during shutdown
            return -1

    def _on_sync_drop(self, index: int, msg: Any, reason: str) -> None:
        # called by the synchronizer with its (re-entrant) lock held: its queues are stable
        topic = self._synced_topics[index]
        why = diagnostics.sync_drop_reason(topic, reason, self._synced_topics, self._names, self.values["slop"],
                                           self.sync.queue_lengths(), self._publisher_count)
        self.ledger.warn(f"unmatched:{topic}:{reason}",
                         f"dropped a {self._names[topic]} message ({reason.replace('_', ' ')}): {why}")

    def _check_inputs(self) -> None:
        """Steady-clock timer: when no set has synchronized for ``input_timeout`` s, say why."""
        timeout = float(self.values["input_timeout"])
        if self._closed or timeout <= 0:
            return
        topics = list(self._synced_topics) + (["camera_info"] if self.values["use_camera_info"] else [])
        quiet, problems = diagnostics.input_problems(topics, self._synced_topics, self._names, self.ledger, timeout,
                                                     float(self.values["slop"]), self.values["qos"],
                                                     self._publisher_count)
        text = diagnostics.no_sync_summary(problems, quiet, self.sync.emitted > 0)
        if text:
            self.ledger.warn("inputs", text, period=max(float(self.values["warn_period"]), 6.0 * timeout))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.ledger.arrived("camera_info")
        if msg.header.frame_id:
            with self._state_lock:
                self._camera_frame_id = msg.header.frame_id
        if not self.values["use_camera_info"]:
            return
        try:
            intr = convert.intrinsics_from_camera_info(msg)
        except (IntrinsicsError, ValueError) as exc:
            self.ledger.reject("invalid_camera_info", ["camera_info"], str(exc), count_frame=False)
            return
        with self._state_lock:
            self._camera_intrinsics = intr

    def _on_synced(self, rgb_msg, labels_msg, pose_msg, depth_msg=None) -> None:
        """One synchronized set: stamp rules, conversion and checks, then the intake queue."""
        self.ledger.synchronized()
        v = self.values
        try:
            stamp = convert.stamp_to_sec(rgb_msg.header.stamp)
            now = self.get_clock().now().nanoseconds * 1e-9
            rebase = self.gate.check(stamp, now, v["max_stamp_age"], v["max_future"], self._synced_topics)
            if rebase:
                self.ledger.warn("stamp_rebase", rebase)
            with self._state_lock:
                intr = self._camera_intrinsics
            frame = frame_from_messages(rgb_msg, labels_msg, pose_msg, depth_msg, intr, self._rules,
                                        self._synced_topics)
        except Rejected as exc:
            self.ledger.rejected(exc)
            return
        self.gate.accept(stamp)
        header = Header(stamp=rgb_msg.header.stamp, frame_id=rgb_msg.header.frame_id)
        with self._state_lock:
            self._latest = (frame.pose, frame.intrinsics, header)
            if header.frame_id:
                self._camera_frame_id = header.frame_id
        self.intake.put(frame)

    def _node_log(self):
        """The node's logger (also to /rosout); once closing or without a context: one without /rosout."""
        if self._closed or not self.context.ok():
            return rclpy.logging.get_logger(f"{self.get_name()}.shutdown")
        return self.get_logger()

    # ================================================================ outputs
    def _make_publishers(self) -> None:
        # Each render set is published once (one per input stamp); transient-local keeps the latest for a
        # subscriber that comes later.  image_transport's convention: <ns>/camera_info serves the five images.
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.image_publishers = {k: self.create_publisher(Image, f"~/{k}", latched) for k in IMAGE_OUTPUTS}
        self.pub_semantic = self.image_publishers["semantic"]
        self.pub_camera_info = self.create_publisher(CameraInfo, "~/camera_info", latched)
        self.pub_mesh = self.create_publisher(MarkerArray, "~/mesh", latched)
        self.pub_status = None
        if self._iface is None:
            self.get_logger().error("semnerf_ros interfaces (semnerf_ros.msg / semnerf_ros.srv) are not built: "
                                    "~/status, ~/export_mesh, ~/save_map, ~/load_map, ~/render_view and "
                                    "~/get_status are unavailable")
        else:
            self.pub_status = self.create_publisher(self._iface["MapStatus"], "~/status", 10)

    def _reset_timers(self) -> None:
        """(Re)create the periodic work, on the steady clock also under ``use_sim_time`` (status,
        progress, renders and markers must not stop when /clock stops); messages are still
        stamped with the node's clock."""
        for t in self._periodic.values():
            self.destroy_timer(t)
        self._periodic = {}
        groups = {"publish_rate": self._render_group, "mesh_period": self._mesh_group}
        for name, method, is_rate in TIMED_WORK:
            v = float(self.values[name])
            if v <= 0 or (name == "status_rate" and self.pub_status is None):
                continue
            self._periodic[name] = self.create_timer(1.0 / v if is_rate else v, getattr(self, method),
                                                     callback_group=groups.get(name, self._status_group),
                                                     clock=self._steady_clock)
        self._periodic["input_check"] = self.create_timer(INPUT_CHECK_PERIOD_S, self._check_inputs,
                                                          callback_group=self._status_group, clock=self._steady_clock)

    def render_images(self, pose: np.ndarray, intr: Intrinsics, header: Header, scale: float) -> dict:
        """Render the map from ``pose`` and pack the output images (messages)."""
        return image_messages(self.mapper.render(pose, intr, scale=scale), self.num_classes, header, intr, scale)

    def _publish_renders(self) -> None:
        """Render the latest synchronized input pose, once per input stamp (when input stops, the
        outputs stop; a later subscriber gets the last set, ~/render_view renders on request)."""
        if self._closed:
            return
        with self._state_lock:
            latest, published = self._latest, self._last_published_ns
        if latest is None or not any(p.get_subscription_count() for p in self.image_publishers.values()):
            return
        pose, intr, header = latest
        stamp_ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        if stamp_ns == published or not self.ops.has_keyframes():
            return
        try:
            imgs = self.render_images(pose, intr, header, float(self.values["render_scale"]))
        except Exception as exc:  # noqa: BLE001
            self.ledger.warn("render_error", f"rendering failed: {type(exc).__name__}: {exc}")
            return
        for key, pub in self.image_publishers.items():
            pub.publish(imgs[key])
        self.pub_camera_info.publish(imgs["camera_info"])
        self.ledger.published()
        with self._state_lock:
            self._last_published_ns = stamp_ns

    def mesh_markers(self, mesh, stamp=None) -> MarkerArray:
        """The mesh as markers in ``world_frame`` (:func:`semnerf_ros.bridge.markers.mesh_marker_array`)."""
        header = Header(stamp=stamp if stamp is not None else self.get_clock().now().to_msg(),
                        frame_id=self.values["world_frame"])
        return mesh_marker_array(mesh, header, self.values["mesh_max_triangles"], self.values["mesh_semantic_colors"],
                                 int(self.values["mesh_max_faces"]))

    def _publish_mesh(self) -> None:
        if self._closed or self.pub_mesh.get_subscription_count() == 0 or not self.ops.has_keyframes():
            return
        try:
            with self.ops.long_op("mesh markers", f"resolution {int(self.values['mesh_resolution'])}"):
                markers = self.mesh_markers(self.ops.extract_mesh())
        except ExtractionCancelled:
            self._node_log().info("mesh markers: extraction cancelled (shutting down)")
            return
        except Exception as exc:  # noqa: BLE001
            self.ledger.warn("mesh_error", f"mesh extraction failed: {type(exc).__name__}: {exc}")
            return
        if not (self._closed or self.ops.cancel.is_set()):
            self.pub_mesh.publish(markers)

    def _stats(self) -> Optional[dict]:
        try:
            return {**self.mapper.stats(), **self.intake.depth()}
        except Exception as exc:  # noqa: BLE001
            self.ledger.warn("stats_error", f"mapper.stats() failed: {exc}")
            return None

    def status_message(self):
        """The MapStatus message of now (needs the built interfaces)."""
        st = self._stats() or {}
        msg = self._iface["MapStatus"]()
        msg.header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.values["world_frame"])
        return fill_status(msg, st, self.ledger, self.sync.stats()["dropped"], self._synced_topics, self._names,
                           self.engine_faults.check(st), self.values["max_keyframes"], str(self.mapper.device))

    def _log_progress(self) -> None:
        st = None if self._closed else self._stats()
        if st is not None:
            self.get_logger().info(progress_line(st, self.ledger, bool(self.values["training_enabled"])))

    def _publish_status(self) -> None:
        if not self._closed and self.pub_status is not None:
            self.pub_status.publish(self.status_message())

    # ================================================================ map changes and shutdown
    def forget_input(self, stream: bool = False) -> None:
        """After the map was replaced: no render of the old input pose from it; ``stream``
        (a reset): also drop queued frames, synchronizer queues and the stamp history."""
        if stream:
            self.intake.clear()
            self.sync.clear()
            self.gate.reset()
        with self._state_lock:
            self._latest = None

    def render_frame_id(self, requested: str) -> str:
        """frame_id of a ~/render_view image: the request's, else the latest input camera's
        (kept across reset_map / load_map), else a fixed fallback; never empty."""
        with self._state_lock:
            return requested or self._camera_frame_id or "semnerf_render_optical_frame"

    def latest_intrinsics(self) -> Optional[Intrinsics]:
        with self._state_lock:
            return self._latest[1] if self._latest is not None else self._camera_intrinsics

    def begin_shutdown(self, reason: str) -> list:
        """First step of a shutdown (a signal): cancel running mesh extractions (they stop within
        about a second), stop accepting frames, ask the training thread to stop, and log what is
        cancelled or waited for.  Returns the long work that was running."""
        work = self.ops.running_work()
        log = self._node_log()
        for level, text in self.ops.shutdown_lines(reason, work):
            getattr(log, level)(text)
        self.ops.cancel.set()
        self.intake.clear()
        try:
            self.mapper.stop(timeout=0.0)   # ask now; close() waits for it
        except Exception:  # noqa: BLE001
            pass
        return work

    def wait_for_work(self, timeout: float) -> list:
        """Wait up to ``timeout`` s for the long work to end; returns what is still running."""
        return self.ops.wait_idle(timeout)

    def close(self, stop_timeout: float = 3.0, log=None) -> None:
        """Stop training (waiting at most ``stop_timeout`` s) and, with ``save_on_shutdown``,
        save the map to ``map_path``.  Idempotent.  ``log``: the logger (default the node's)."""
        if self._closed:
            return
        self._closed = True
        log = log or self.get_logger()
        self.ops.cancel.set()
        self.intake.stop()
        t0 = time.monotonic()
        try:
            if not self.mapper.stop(timeout=stop_timeout):
                log.warning(f"the training thread did not stop within {stop_timeout} s")
            else:
                log.info(f"training stopped ({time.monotonic() - t0:.2f} s)")
        except Exception as exc:  # noqa: BLE001
            log.error(f"stopping the training thread failed: {exc}")
        self.intake.join(timeout=1.0)
        if self.values.get("save_on_shutdown"):
            t0 = time.monotonic()
            target = self.ops.map_file()
            try:
                self.mapper.save(target)
                log.info(f"saved the map to {target} ({time.monotonic() - t0:.2f} s)")
            except Exception as exc:  # noqa: BLE001
                log.error(f"saving the map to {target} on shutdown failed: {exc}")


if __name__ == "__main__":  # python -m semnerf_ros.ros.node: the process semnerf_node runs
    from .process import run
    raise SystemExit(run())
