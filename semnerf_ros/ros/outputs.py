"""What the node publishes: the rendered image set (``~/semantic``, ``~/semantic_color``, ``~/rgb``,
``~/depth``, ``~/uncertainty``, ``~/camera_info``, transient local), the mesh markers (``~/mesh``),
``~/status`` (the package's MapStatus), ``/diagnostics`` (diagnostic_msgs/DiagnosticArray from
:mod:`semnerf_ros.bridge.health`) and the one-line progress log.  The ROS-free work is in the
bridge (outputs, markers, status, health); this module owns the publishers and the timing rules
(once per input stamp, only with subscribers)."""
from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..bridge import marker_cdr
from ..bridge.health import HealthMonitor, Thresholds
from ..bridge.markers import mesh_marker_array
from ..bridge.outputs import IMAGE_OUTPUTS, PolledLoop, RenderPacer, image_messages
from ..bridge.status import fill_status, progress_line
from ..engine.geometry import Intrinsics
from ..engine.mesh import ExtractionCancelled

#: period (s, steady clock) of the check that names silent or unsynchronized inputs
INPUT_CHECK_PERIOD_S = 1.0
#: the periodic work: parameter -> (method of NodeOutputs, whether the parameter is a rate in Hz,
#: whether it runs only in the active state)
TIMED_WORK = {"publish_rate": ("publish_renders", True, True), "mesh_period": ("publish_mesh", False, True),
              "status_rate": ("publish_status", True, False), "log_period": ("log_progress", False, False),
              "diagnostics_rate": ("publish_diagnostics", True, False)}
#: DiagnosticStatus level bytes by bridge level (OK, WARN, ERROR)
LEVELS = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}


def latched() -> QoSProfile:
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def no_qos_events() -> PublisherEventCallbacks:
    """For :func:`latched` publishers: no QoS event handlers.  They offer the strongest reliability
    and durability, so no subscriber's request is incompatible with them, and each handler is one
    more entity that rclpy's executor rebuilds into its wait set, in Python, on every turn (two a
    publisher; the node's 7 latched publishers had 14 of its 31 waitables)."""
    return PublisherEventCallbacks(use_default_callbacks=False)


class NodeOutputs:
    """The publishers of ``node`` (a :class:`~semnerf_ros.ros.node.SemNerfNode`) and the work of
    its output timers."""

    def __init__(self, node, iface: Optional[dict]):
        self.node = node
        self.iface = iface
        # Each render set is published once (one per input stamp); transient-local keeps the latest for a
        # subscriber that comes later.  image_transport's convention: <ns>/camera_info serves the five images.
        self.images = {k: node.create_publisher(Image, f"~/{k}", latched(), event_callbacks=no_qos_events())
                       for k in IMAGE_OUTPUTS}
        self.camera_info = node.create_publisher(CameraInfo, "~/camera_info", latched(),
                                                 event_callbacks=no_qos_events())
        self.mesh = node.create_publisher(MarkerArray, "~/mesh", latched(), event_callbacks=no_qos_events())
        # the mesh goes out as serialized bytes written from its arrays (bridge/marker_cdr.py: about
        # 200x faster than 600 k Point / ColorRGBA objects for 200 k triangles) once a small mesh
        # written that way reads back equal to the message objects
        why = marker_cdr.self_check(serialize_message, deserialize_message)
        self.mesh_as_bytes = why is None
        if why is not None:
            node.get_logger().warning(f"~/mesh is published from message objects (slower): the serialized-"
                                      f"bytes writer's check failed: {why}")
        self.diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.health = HealthMonitor()
        self.status = None
        if iface is None:
            node.get_logger().error("semnerf_ros interfaces (semnerf_ros.msg / srv / action) are not built: "
                                    "~/status, ~/export_mesh, ~/save_map, ~/load_map, ~/render_view, "
                                    "~/get_status and the actions are unavailable")
        else:
            self.status = node.create_publisher(iface["MapStatus"], "~/status", 10)
        self._last_published_ns: Optional[int] = None  # input stamp of the last render set published
        self._pacer = RenderPacer()   # renders start as soon as a new input is there, at most publish_rate
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._groups = {"mesh_period": MutuallyExclusiveCallbackGroup()}
        # the published renders poll on a thread of their own (PolledLoop: no executor turn 100 times
        # a second); the lock keeps them and ~/render_view from rendering at once
        self._render_loop: Optional[PolledLoop] = None
        self._render_lock = threading.Lock()

    # ---------------------------------------------------------------- timers
    def stop_timers(self) -> None:
        for t in self.node._periodic.values():
            self.node.destroy_timer(t)
        self.node._periodic = {}
        self.stop_render_loop()

    def stop_render_loop(self, timeout: float = 5.0) -> None:
        """End the published renders' loop, waiting up to ``timeout`` s for a render in progress."""
        loop, self._render_loop = self._render_loop, None
        if loop is not None and not loop.stop(timeout):
            self.node.get_logger().warning(f"a published render was still running {timeout:.0f} s after "
                                           f"the outputs stopped")

    def reset_timers(self) -> None:
        """(Re)create the periodic work of the node's state (outputs and the input check only when
        active), on the steady clock also under ``use_sim_time`` (status, progress, renders and
        markers must not stop when /clock stops); messages are still stamped with the node's clock."""
        node = self.node
        self.stop_timers()
        for name, (_, is_rate, active_only) in TIMED_WORK.items():
            v = float(node.values[name])
            if v <= 0 or (active_only and node.state != "active") or (name == "status_rate" and self.status is None):
                continue
            if name == "publish_rate":
                self._render_loop = PolledLoop(lambda: self.report("publish_rate"),
                                               lambda v=v: RenderPacer.poll_period(v), "semnerf-render",
                                               self._render_loop_failed).start()
                continue
            period = 1.0 / v if is_rate else v
            node._periodic[name] = node.create_timer(period, lambda n=name: self.report(n),
                                                     callback_group=self._groups.get(name, node._status_group),
                                                     clock=self._steady_clock)
        if node.state == "active":
            node._periodic["input_check"] = node.create_timer(INPUT_CHECK_PERIOD_S, node._check_inputs,
                                                              callback_group=node._status_group,
                                                              clock=self._steady_clock)

    def _render_loop_failed(self, exc: BaseException) -> None:
        self.node.ledger.warn("render_error", f"publishing renders failed: {type(exc).__name__}: {exc}")

    def report(self, name: str) -> None:
        """The periodic work of parameter ``name`` (nothing once the node is closing)."""
        if self.node._closed:
            if name == "publish_rate":   # the renders' own thread ends itself (no executor stops it)
                self.stop_render_loop()
            return
        method = getattr(self, TIMED_WORK[name][0])
        if name in ("publish_rate", "mesh_period"):
            method()
            return
        st = self.node._stats()
        if st is not None or name != "log_period":
            method(st or {})

    def destroy(self) -> None:
        for pub in [*self.images.values(), self.camera_info, self.mesh, self.diagnostics, self.status]:
            if pub is not None:
                self.node.destroy_publisher(pub)

    def forget(self) -> None:
        self._last_published_ns = None
        self._pacer.forget()

    # ---------------------------------------------------------------- renders
    def render_images(self, pose: np.ndarray, intr: Intrinsics, header: Header, scale: float) -> dict:
        """Render the map from ``pose`` and pack the output images (messages)."""
        with self._render_lock:   # the published renders' thread and ~/render_view
            view = self.node.mapper.render(pose, intr, scale=scale, with_probs=False)  # labels and entropy only
        return image_messages(view, self.node.num_classes, header, intr, scale)

    def publish_renders(self) -> None:
        """Render the latest synchronized input pose, once per input stamp (when input stops, the
        outputs stop; a later subscriber gets the last set, ~/render_view renders on request)."""
        node = self.node
        latest = node.latest()
        if latest is None or not any(p.get_subscription_count() for p in self.images.values()):
            return
        pose, intr, header = latest
        stamp_ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        if stamp_ns == self._last_published_ns:
            return
        now = time.monotonic()
        rate = float(node.values["publish_rate"])
        # the pacer first: it is a comparison, the keyframe count asks the engine (with
        # engine_location: process, a call into its process) and the render loop looks every 10 ms
        if not self._pacer.due(now, rate, node.latest_age()) or not node.ops.has_keyframes():
            return
        self._pacer.started(now, rate)
        try:
            imgs = self.render_images(pose, intr, header, float(node.values["render_scale"]))
        except Exception as exc:  # noqa: BLE001
            node.ledger.warn("render_error", f"rendering failed: {type(exc).__name__}: {exc}")
            return
        for key, pub in self.images.items():
            pub.publish(imgs[key])
        self.camera_info.publish(imgs["camera_info"])
        node.ledger.published()
        self._last_published_ns = stamp_ns

    # ---------------------------------------------------------------- mesh markers
    def _mesh_header(self, stamp=None) -> Header:
        return Header(stamp=stamp if stamp is not None else self.node.get_clock().now().to_msg(),
                      frame_id=self.node.values["world_frame"])

    def mesh_markers(self, mesh, stamp=None) -> MarkerArray:
        """The mesh as markers in ``world_frame`` (:func:`semnerf_ros.bridge.markers.mesh_marker_array`)."""
        v = self.node.values
        return mesh_marker_array(mesh, self._mesh_header(stamp), v["mesh_max_triangles"], v["mesh_semantic_colors"],
                                 int(v["mesh_max_faces"]), v["mesh_decimation"], self.node.mapper.device)

    def mesh_marker_bytes(self, mesh, stamp=None) -> bytes:
        """The same MarkerArray serialized (:func:`semnerf_ros.bridge.marker_cdr.mesh_marker_array_cdr`)."""
        v = self.node.values
        return marker_cdr.mesh_marker_array_cdr(mesh, self._mesh_header(stamp), v["mesh_max_triangles"],
                                                v["mesh_semantic_colors"], int(v["mesh_max_faces"]),
                                                v["mesh_decimation"], self.node.mapper.device)

    def publish_mesh(self) -> None:
        node = self.node
        if self.mesh.get_subscription_count() == 0 or not node.ops.has_keyframes():
            return
        try:
            with node.ops.long_op("mesh markers", f"resolution {int(node.values['mesh_resolution'])}"):
                mesh = node.ops.extract_mesh()
                markers = self.mesh_marker_bytes(mesh) if self.mesh_as_bytes else self.mesh_markers(mesh)
        except ExtractionCancelled:
            node._node_log().info("mesh markers: extraction cancelled (shutting down)")
            return
        except Exception as exc:  # noqa: BLE001
            node.ledger.warn("mesh_error", f"mesh extraction failed: {type(exc).__name__}: {exc}")
            return
        if not (node._closed or node.ops.cancel.is_set()):
            self.mesh.publish(markers)

    # ---------------------------------------------------------------- status, progress, diagnostics
    def status_message(self, st: dict):
        """The MapStatus message of now from the mapper's ``stats()`` ``st`` (needs the interfaces)."""
        node = self.node
        msg = self.iface["MapStatus"]()
        msg.header = Header(stamp=node.get_clock().now().to_msg(), frame_id=node.values["world_frame"])
        return fill_status(msg, st, node.ledger, node.sync.stats()["dropped"], node.synced_topics, node.names,
                           node.engine_faults.check(st), node.values["max_keyframes"], str(node.mapper.device))

    def publish_status(self, st: dict) -> None:
        if self.status is not None:
            self.status.publish(self.status_message(st))

    def log_progress(self, st: dict) -> None:
        self.node.get_logger().info(progress_line(st, self.node.ledger, bool(self.node.values["training_enabled"])))

    def diagnostic_array(self, st: dict) -> DiagnosticArray:
        """/diagnostics of now: one DiagnosticStatus per check, named ``<node>: <check>``."""
        node = self.node
        checks = self.health.checks(st, node.ledger, node.names, Thresholds.from_values(node.values),
                                     bool(node.values["training_enabled"]), node.ops.last_export, node.state)
        prefix = node.get_fully_qualified_name().lstrip("/")
        hardware = f"semnerf_ros {st.get('device', node.mapper.device)}"
        status = [DiagnosticStatus(level=LEVELS[c.level], name=f"{prefix}: {c.name}", message=c.message,
                                   hardware_id=hardware,
                                   values=[KeyValue(key=k, value=str(v)) for k, v in c.values.items()])
                  for c in checks]
        return DiagnosticArray(header=Header(stamp=node.get_clock().now().to_msg()), status=status)

    def publish_diagnostics(self, st: dict) -> None:
        self.diagnostics.publish(self.diagnostic_array(st))
