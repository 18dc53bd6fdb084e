"""``semnerf_node``: the ROS 2 adapter around the engine (:class:`~semnerf_ros.bridge.mapper_api.MapperAPI`,
implemented by :class:`semnerf_ros.engine.mapper.Mapper`).

Run (docs/node.md; README "Using it"): ``semnerf_node --ros-args --params-file config/semnerf.yaml
-r rgb:=/camera/color/image_raw -r camera_info:=/camera/color/camera_info -r pose:=/camera/pose
-r labels:=/segmentation/labels -r depth:=/camera/depth/image_raw`` (``ros2 run semnerf_ros
semnerf_node ...`` in a workspace, or ``python -m semnerf_ros.ros.node ...``).  On a CPU with no
``engine_config`` the node takes the CPU profile's engine (config/engine_cpu.yaml) and logs it.

Inputs (relative names, remap them): ``rgb`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8),
``labels`` (Image: mono8, 8UC1, mono16, 16UC1, 32SC1 class ids), the camera pose -- ``pose``
(geometry_msgs/PoseStamped, or nav_msgs/Odometry with ``pose_type: odometry``; camera-to-world in
``world_frame``) or, with ``pose_source: tf``, world_frame <- camera frame from ``/tf`` and
``/tf_static`` at each image's stamp (:mod:`.tf_input`) --, optional ``depth`` (16UC1 mm or 32FC1 m,
``use_depth``), ``camera_info`` (or intrinsics from parameters).  RGB, labels (pose, depth) are
paired by an approximate-time synchronizer (:mod:`semnerf_ros.bridge.sync`); camera_info is the
latest one received.  When no set synchronizes for ``input_timeout`` s the node says why.

Outputs (:mod:`.outputs`), rendered at most ``publish_rate`` from the latest synced pose, once per
new input stamp, each with that input's stamp and frame_id: ``~/semantic``, ``~/semantic_color``,
``~/rgb``, ``~/depth``, ``~/uncertainty``, ``~/camera_info`` (transient local); ``~/mesh`` markers every
``mesh_period`` s; ``~/status``; ``/diagnostics``.  Timers run on the steady clock (they must go on
when a bag's /clock stops); stamps come from the node's clock (``use_sim_time`` follows /clock).
Services: :mod:`.services`; actions with progress: :mod:`.actions`; process and shutdown:
:mod:`.process`; the managed variant: :mod:`.lifecycle`; behaviour under each fault: docs/reliability.md.

Phases (the lifecycle node runs them as transitions; this plain node runs configure + activate
at construction): *configure* reads the parameters, builds the engine (GPU warm-up), publishers,
services and actions; *activate* subscribes, starts the output timers and training; *deactivate*
unsubscribes, pauses training and the outputs; *cleanup* stops the engine and frees the GPU.

Threads: the Mapper trains in its own thread; a MultiThreadedExecutor runs subscriptions,
rendering, meshing, status and the long services in separate callback groups; validated frames
that the keyframe policy does not turn away go through the short queue of
:class:`~semnerf_ros.bridge.intake.FrameIntake` to a thread that calls ``add_frame``, so no
subscription callback ever waits for training.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

import rclpy
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ..bridge import convert, diagnostics
from ..bridge.engine_setup import make_engine, release_engine_memory
from ..bridge.frames import InputRules, frame_from_messages
from ..bridge.intake import FrameIntake, StampGate
from ..bridge.ledger import InputLedger, Rejected
from ..bridge.map_ops import MapOperations
from ..bridge.params import ParameterValueError, camera_from_values, check_values, num_classes_of
from ..bridge.status import EngineFaults
from ..bridge.sync import ApproximateTimeSynchronizer
from ..bridge.tf_buffer import TfOutcome
from ..engine.geometry import Intrinsics, IntrinsicsError, PoseError
from . import parameters
from .actions import MapActions
from .outputs import TIMED_WORK, NodeOutputs
from .services import MapServices, load_interfaces
from .tf_input import TfPoses

NODE_NAME = "semnerf_node"


class SemNerfNode(Node):
    """The mapping node.  ``mapper``: the engine (made from the parameters when None).
    Raises :class:`ParameterValueError` naming the parameter when a value cannot be used."""

    #: True in the lifecycle variant: the transitions run the phases
    MANAGED = False

    def __init__(self, mapper: Optional[Any] = None, node_name: str = NODE_NAME, on_ready=None, **node_kwargs):
        """``on_ready``: called once everything is set up, just before the "ready" line
        (``process.run`` uses it to switch signals from "abort the start" to "shut down")."""
        super().__init__(node_name, **{**parameters.NODE_OPTIONS, **node_kwargs})
        self._closed = False
        self._state_lock = threading.Lock()     # the state shared between callbacks (below)
        self._finish_lock = threading.Lock()    # stamp gate and frame building, one set at a time
        self._given_mapper = mapper
        self.state = "unconfigured"             # unconfigured | inactive | active (lifecycle primary states)
        self.mapper: Any = None
        self.tf: Optional[TfPoses] = None
        self._subs: dict = {}
        self._periodic: dict[str, Any] = {}
        self._training_started = False
        self._latest: Optional[tuple] = None    # (pose, intrinsics, header) of the latest synced frame
        self._latest_arrival = 0.0              # time.monotonic() when it arrived
        self._camera_frame_id = ""              # latest input camera frame (kept across reset/load)
        self._render_group = MutuallyExclusiveCallbackGroup()   # ~/render_view (published renders: own thread)
        self._status_group = MutuallyExclusiveCallbackGroup()   # status, reports, ~/get_status
        self.values = parameters.declare_parameters(self)
        self.add_pre_set_parameters_callback(parameters.coerce_types)
        self.add_on_set_parameters_callback(parameters.validate_change)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        if self.MANAGED:
            return
        self.configure()
        self.activate()
        if on_ready is not None:
            on_ready()
        self.get_logger().info(
            f"semnerf_node ready: {self.num_classes} classes, model {self.values['model_type']}, device "
            f"{self.mapper.device}, inputs " + ", ".join(self.names[t] for t in self.topic_names))

    # ================================================================ phases
    def configure(self) -> None:
        """Parameters, engine (built and warmed up), publishers, services, actions."""
        v = self.values       # declared at construction, kept current by _after_set_parameters
        errors = check_values(v)
        if errors:
            raise ParameterValueError("; ".join(errors))
        self.num_classes = num_classes_of(v)
        self.class_names = list(v["class_names"]) or None
        self._camera_intrinsics: Optional[Intrinsics] = camera_from_values(v)  # latest valid camera
        self.pose_input = "tf" if v["pose_source"] == "tf" else "pose"
        self.synced_topics = ["rgb", "labels"] + (["pose"] if self.pose_input == "pose" else []) + \
            (["depth"] if v["use_depth"] else [])
        self.topic_names = self.synced_topics + (["tf"] if self.pose_input == "tf" else []) + ["camera_info"]
        self.names = {t: self.resolve_topic_name("/tf" if t == "tf" else t) for t in self.topic_names}
        self.ledger = InputLedger(self.topic_names, lambda text: self._node_log().warning(text),
                                  lambda: float(self.values["warn_period"]))
        self.engine_faults = EngineFaults(self.ledger.warn)
        self.mapper = self._given_mapper if self._given_mapper is not None else \
            make_engine(v, self.num_classes, self.class_names, self.get_logger().info, self.get_logger().warning)
        self.ops = MapOperations(self.mapper, self.values, lambda text: self._node_log().info(text))
        if v["load_on_start"]:
            self.ops.load_at_start()
        self.gate = StampGate()
        self.intake = FrameIntake(self.mapper, self.ledger, self.synced_topics, pose_input=self.pose_input)
        self.sync = ApproximateTimeSynchronizer(
            queue_size=v["queue_size"], slop=v["slop"], num_inputs=len(self.synced_topics),
            callback=self._on_synced, prune_older=True, on_drop=self._on_sync_drop)
        self._rules = InputRules(self.num_classes, v["world_frame"], v["pose_type"], v["pose_convention"],
                                 self.names["camera_info"], self.pose_input)
        self._iface = load_interfaces()
        self.outputs = NodeOutputs(self, self._iface)
        self.map_services = MapServices(self, self._iface, self._render_group, self._status_group)
        self.actions = MapActions(self, self._iface)
        self.tf = TfPoses(self, self._on_tf_outcome, int(v["queue_size"])) if self.pose_input == "tf" else None
        self.state = "inactive"
        self._reset_timers()
        if self.get_parameter("use_sim_time").value:
            self.get_logger().info("use_sim_time is true: outputs are stamped with /clock time; timers "
                                   "(renders, mesh, status, progress) run on the wall clock so they go on "
                                   "when /clock stops")

    def activate(self) -> None:
        """Subscribe to the inputs (and TF), start the output timers and training."""
        qos = parameters.input_qos(self.values["qos"], int(self.values["qos_depth"]))
        types = {"rgb": Image, "labels": Image, "depth": Image,
                 "pose": Odometry if self.values["pose_type"] == "odometry" else PoseStamped}
        self._subs = {t: self.create_subscription(types[t], t, self._input_callback(t, i), qos,
                                                  callback_group=MutuallyExclusiveCallbackGroup())
                      for i, t in enumerate(self.synced_topics)}
        self._subs["camera_info"] = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos,
                                                             callback_group=MutuallyExclusiveCallbackGroup())
        if self.tf is not None:
            self.tf.start()
            self.get_logger().info(self.tf.describe())
        self.ledger.synchronized()   # the input check counts from now
        self.state = "active"
        self._reset_timers()
        self._apply_training_enabled()

    def deactivate(self) -> None:
        """Unsubscribe, pause training and the outputs; the map, services and reports stay."""
        self.state = "inactive"
        for sub in self._subs.values():
            self.destroy_subscription(sub)
        self._subs = {}
        if self.tf is not None:
            self.tf.stop()
        self.forget_input(stream=True)
        self._reset_timers()
        self._apply_training_enabled()

    def cleanup(self) -> None:
        """Stop the engine and free its memory (GPU included); back to unconfigured."""
        self.state = "unconfigured"
        self._reset_timers()
        self.actions.destroy()
        self.map_services.destroy()
        self.outputs.destroy()
        self.intake.stop()
        self.mapper.stop(timeout=3.0)
        self.intake.join(timeout=1.0)
        self._close_engine()
        self.mapper = self.ops = self.intake = self.map_services = self.actions = self.outputs = self.tf = None
        self._training_started = False
        release_engine_memory()

    # ================================================================ parameters
    def _after_set_parameters(self, params: list) -> None:
        changed = {p.name for p in params if p.name in self.values}
        for p in params:
            if p.name in changed:
                self.values[p.name] = p.value
        if changed & set(TIMED_WORK):
            self._reset_timers()
        if "training_enabled" in changed:
            self._apply_training_enabled()

    def _apply_training_enabled(self) -> None:
        if self.state == "active" and self.values["training_enabled"]:
            if self._training_started:
                self.mapper.resume()
            else:
                self.mapper.start()
                self._training_started = True
        elif self._training_started:
            self.mapper.pause()

    # ================================================================ inputs
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
            return int(self.count_publishers(self.names[topic]))
        except Exception:  # noqa: BLE001 - a graph query during shutdown
            return -1

    def _on_sync_drop(self, index: int, msg: Any, reason: str) -> None:
        # called by the synchronizer with its (re-entrant) lock held: its queues are stable
        topic = self.synced_topics[index]
        self.ledger.sync_dropped(reason)
        why = diagnostics.sync_drop_reason(topic, reason, self.synced_topics, self.names, self.values["slop"],
                                           self.sync.queue_lengths(), self._publisher_count)
        self.ledger.warn(f"unmatched:{topic}:{reason}",
                         f"dropped a {self.names[topic]} message ({reason.replace('_', ' ')}): {why}")

    def _check_inputs(self) -> None:
        """Steady-clock timer: when no set has synchronized for ``input_timeout`` s, say why."""
        timeout = float(self.values["input_timeout"])
        if self._closed or timeout <= 0:
            return
        topics = list(self.synced_topics) + (["camera_info"] if self.values["use_camera_info"] else [])
        quiet, problems = diagnostics.input_problems(topics, self.synced_topics, self.names, self.ledger, timeout,
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

    def _on_synced(self, rgb_msg, labels_msg, *rest) -> None:
        """One synchronized set: stamp rules, then (with TF: once its transform is there)
        conversion and checks, then the intake queue."""
        self.ledger.synchronized()
        pose_msg = rest[0] if self.pose_input == "pose" else None
        depth_msg = rest[-1] if self.values["use_depth"] else None
        v = self.values
        with self._finish_lock:
            try:
                stamp = convert.stamp_to_sec(rgb_msg.header.stamp)
                now = self.get_clock().now().nanoseconds * 1e-9
                rebase = self.gate.check(stamp, now, v["max_stamp_age"], v["max_future"], self.synced_topics)
            except Rejected as exc:
                self.ledger.rejected(exc)
                return
            if rebase:
                self.ledger.warn("stamp_rebase", rebase)
        if self.tf is not None:
            self.tf.submit((rgb_msg, labels_msg, depth_msg), stamp, rgb_msg.header.frame_id)
        else:
            self._finish(rgb_msg, labels_msg, pose_msg, depth_msg)

    def _on_tf_outcome(self, outcome: TfOutcome) -> None:
        rgb_msg, labels_msg, depth_msg = outcome.item
        if outcome.error is not None:
            self.ledger.reject(outcome.error.reason, ["tf"], outcome.error.detail)
            return
        try:
            pose = self.tf.camera_pose(outcome.pose, self.tf.frame_of(rgb_msg.header.frame_id))
        except PoseError as exc:
            self.ledger.reject("invalid_pose", ["tf"], str(exc))
            return
        self._finish(rgb_msg, labels_msg, pose, depth_msg)

    def _finish(self, rgb_msg, labels_msg, pose, depth_msg) -> None:
        """Messages (and the pose message or a TF pose) -> a Frame -> the intake queue."""
        with self._finish_lock:
            with self._state_lock:
                intr = self._camera_intrinsics
            try:
                frame = frame_from_messages(rgb_msg, labels_msg, pose, depth_msg, intr, self._rules,
                                            self.synced_topics)
            except Rejected as exc:
                self.ledger.rejected(exc)
                return
            self.gate.accept(frame.stamp)
        header = Header(stamp=rgb_msg.header.stamp, frame_id=rgb_msg.header.frame_id)
        with self._state_lock:
            self._latest = (frame.pose, frame.intrinsics, header)
            self._latest_arrival = time.monotonic()
            if header.frame_id:
                self._camera_frame_id = header.frame_id
        self.intake.put(frame)

    def _node_log(self):
        """The node's logger (also to /rosout); once closing or without a context: one without /rosout."""
        if self._closed or not self.context.ok():
            return rclpy.logging.get_logger(f"{self.get_name()}.shutdown")
        return self.get_logger()

    # ================================================================ outputs and reports (.outputs)
    def _reset_timers(self) -> None:
        self.outputs.reset_timers() if self.state != "unconfigured" else self.outputs.stop_timers()

    def latest(self) -> Optional[tuple]:
        """(pose, intrinsics, header) of the latest synchronized input, or None."""
        with self._state_lock:
            return self._latest

    def latest_age(self) -> Optional[float]:
        """Seconds (monotonic) since the latest synchronized input arrived, or None."""
        with self._state_lock:
            return None if self._latest is None else time.monotonic() - self._latest_arrival

    def _stats(self) -> Optional[dict]:
        try:
            return {**self.mapper.stats(), **self.intake.depth()}
        except Exception as exc:  # noqa: BLE001
            self.ledger.warn("stats_error", f"mapper.stats() failed: {exc}")
            return None

    def status_message(self):
        """The MapStatus message of now (needs the built interfaces)."""
        return self.outputs.status_message(self._stats() or {})

    def _log_progress(self) -> None:
        self.outputs.report("log_period")

    # ================================================================ map changes and shutdown
    def forget_input(self, stream: bool = False) -> None:
        """After the map was replaced: no render of the old input pose from it; ``stream``
        (a reset): also drop queued frames, synchronizer queues and the stamp history."""
        if stream:
            self.intake.clear()
            self.sync.clear()
            with self._finish_lock:
                self.gate.reset()
        with self._state_lock:
            self._latest = None
        self.outputs.forget()

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
        if self.ops is None:
            return []
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
        return self.ops.wait_idle(timeout) if self.ops is not None else []

    def close(self, stop_timeout: float = 3.0, log=None) -> None:
        """Stop training (waiting at most ``stop_timeout`` s) and, with ``save_on_shutdown``,
        save the map to ``map_path``.  Idempotent.  ``log``: the logger (default the node's)."""
        if self._closed:
            return
        self._closed = True
        if self.mapper is None:   # a lifecycle node cleaned up (or never configured)
            return
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
        self._close_engine()

    def _close_engine(self) -> None:
        """End the engine's own process (parameter ``engine_location: process``); nothing for an in-process one."""
        close = getattr(self.mapper, "close", None)
        if close is not None and self._given_mapper is None:
            close()


if __name__ == "__main__":  # python -m semnerf_ros.ros.node: the process semnerf_node runs
    from .process import run
    raise SystemExit(run())
