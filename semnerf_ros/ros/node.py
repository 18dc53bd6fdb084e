"""``semnerf_node``: the ROS 2 adapter around :class:`semnerf_ros.engine.mapper.Mapper`.

Run (docs/node.md; README "Using it"): ``semnerf_node --ros-args --params-file config/semnerf.yaml
-r rgb:=/camera/color/image_raw -r camera_info:=/camera/color/camera_info -r pose:=/camera/pose
-r labels:=/segmentation/labels -r depth:=/camera/depth/image_raw`` (``ros2 run semnerf_ros
semnerf_node ...`` in a workspace, or ``python -m semnerf_ros.ros.node ...``).  On a CPU with no
``engine_config`` the node takes the CPU profile's engine (config/engine_cpu.yaml) and logs it.

Inputs (relative names, remap them): ``rgb`` (sensor_msgs/Image: rgb8, bgr8, rgba8,
bgra8, mono8), ``labels`` (Image: mono8, 8UC1, mono16, 16UC1, 32SC1 class ids),
``pose`` (geometry_msgs/PoseStamped, or nav_msgs/Odometry with ``pose_type:
odometry``; camera-to-world in ``world_frame``), optional ``depth`` (16UC1 mm or
32FC1 m, ``use_depth``), ``camera_info`` (or intrinsics from parameters).
RGB, labels, pose (and depth) are paired by an approximate-time synchronizer
(:mod:`semnerf_ros.bridge.sync`); camera_info is the latest one received.  When no
set synchronizes for ``input_timeout`` s the node names the inputs without
publisher (and what to set), those that send nothing, and the stamp skew of
inputs that never pair.

Outputs, rendered (at most ``publish_rate``, once per new input stamp) from the
latest synced pose, each with that input's header stamp and frame_id:
``~/semantic`` (mono8, mono16 above 256 classes), ``~/semantic_color`` (rgb8),
``~/rgb`` (rgb8), ``~/depth`` (32FC1 m), ``~/uncertainty`` (32FC1 entropy, nats),
``~/camera_info`` (their intrinsics); transient local, so a late subscriber gets
the last set.  ``~/mesh`` (visualization_msgs/MarkerArray in ``world_frame``,
every ``mesh_period`` s); ``~/status`` (semnerf_ros/MapStatus).  Every timer runs
on the steady clock (they go on when /clock stops under ``use_sim_time``).

Services: ``~/export_mesh``, ``~/save_map``, ``~/load_map``, ``~/render_view``,
``~/get_status`` (package interfaces), ``~/reset_map``, ``~/export_mesh_default``
(std_srvs/Trigger).  Failures answer ``success=false`` with the reason; an
export's target is checked before the extraction starts.

Threads: the Mapper trains in its own thread; a MultiThreadedExecutor runs
subscriptions, rendering, meshing, status and the long services in separate
callback groups; validated frames go through a 2-deep queue to an intake thread
that calls ``Mapper.add_frame`` (which waits for the mapper's lock during a
training step), so no subscription callback ever waits for training (a frame
pushed out of the full queue is counted as ``mapper_busy``).

Every rejected input is counted by reason (MapStatus ``reject_reasons`` /
``reject_counts``) with a warning at most every ``warn_period`` s per reason,
topic and kind of problem (:func:`warning_kind`):
unsupported_encoding, bad_image, size_mismatch, label_out_of_range,
invalid_pose, pose_frame_mismatch, invalid_frame, out_of_order,
duplicate_stamp, stale_stamp, future_stamp, no_camera_info,
invalid_camera_info, mapper_busy, mapper_error, internal_error.  Warnings say
how many like them were suppressed in between.  A size mismatch is counted on
the input whose size disagrees with the others (:func:`size_mismatch`).
A stream whose stamps go back for ``STAMP_REBASE_SETS`` consecutive sets (a
restarted source, a looped bag, or one bogus far-future stamp accepted earlier)
is taken as a new time base, with a warning, instead of being rejected forever.
Training faults of the engine (``oom_events`` / ``step_errors`` of
``Mapper.stats()``) are logged and reported in ``reject_reasons`` as
``training_oom`` / ``training_error`` (counted in steps, not frames).
Shutdown (SIGINT / SIGTERM, :class:`ShutdownSignals`, :func:`main`): running mesh
extractions are cancelled within about a second, then training stops and
``save_on_shutdown`` saves; a second signal cuts it short (docs/node.md).
See docs/reliability.md for the behaviour under each fault.
"""
from __future__ import annotations

import collections
import contextlib
import difflib
import inspect
import math
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from ..bridge import convert
from ..bridge.params import (
    PARAMS,
    SPECS,
    ParameterValueError,
    check_value,
    check_values,
    engine_overrides,
    find_config_file,
    num_classes_of,
)
from ..bridge.sync import ApproximateTimeSynchronizer
from ..engine.frame import Frame, FrameError
from ..engine.geometry import Intrinsics, IntrinsicsError, PoseError

NODE_NAME = "semnerf_node"
_PARAM_TYPES = {"bool": Parameter.Type.BOOL, "int": Parameter.Type.INTEGER,
                "double": Parameter.Type.DOUBLE, "string": Parameter.Type.STRING,
                "string_array": Parameter.Type.STRING_ARRAY}
# rclpy's own parameters, not in our table
_ROS_PARAMS = {"use_sim_time", "start_type_description_service"}
#: synchronized sets in a row (since the last accepted one) older than the last
#: accepted frame after which their time base is accepted (see the module docstring)
STAMP_REBASE_SETS = 10
#: engine file the node takes on a CPU when ``engine_config`` is empty (config/, next to
#: semnerf_cpu.yaml; see docs/node.md "CPU profile")
CPU_ENGINE_FILE = "engine_cpu.yaml"
#: frame_id of ``~/render_view`` images when neither the request's camera_info nor any
#: input so far named a camera frame
RENDER_FRAME_FALLBACK = "semnerf_render_optical_frame"
#: seconds the shutdown waits for running services / mesh extraction (which are
#: cancelled first and normally end within a second) before leaving them behind
SHUTDOWN_WAIT_S = 4.0
#: field queries per chunk of a mesh extraction on a CPU: small enough that a cancel
#: (polled between chunks) takes effect within about a second on a busy 2-core machine
CPU_MESH_CHUNK_POINTS = 32768
#: period (s, steady clock) of the check that names silent or unsynchronized inputs
INPUT_CHECK_PERIOD_S = 1.0
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def warning_kind(text: str) -> str:
    """The text of a warning with its numbers blanked: warnings are throttled per
    kind, so 'norm 2.0000' and 'NaN' (two problems of one reason) are both logged,
    while the same problem with other numbers is throttled together."""
    return _NUMBER.sub("#", text)


def _join(words: list) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def size_mismatch(shapes: dict, camera_shape: Optional[tuple] = None) -> Optional[tuple]:
    """Which input of a synchronized set has the wrong image size.

    ``shapes``: input name (``rgb``, ``labels``, ``depth``) -> (H, W) of its image;
    ``camera_shape``: (H, W) of the latest camera_info, or None.  None when the
    images agree (the camera is checked afterwards, allowing the same camera at
    another resolution).  Otherwise ``(inputs to blame, message)``: the size most
    inputs (camera_info included) share is taken as right and the others are blamed;
    on a tie rgb is the reference.  E.g. a 100x100 rgb with 160x120 labels and
    camera_info: ``rgb is 100x100 but labels and camera_info are 160x120``."""
    sizes = {t: (int(sh[0]), int(sh[1])) for t, sh in shapes.items()}
    if len(set(sizes.values())) == 1:
        return None
    votes = collections.Counter(sizes.values())
    cam = (int(camera_shape[0]), int(camera_shape[1])) if camera_shape is not None else None
    if cam is not None:
        votes[cam] += 1
    ranked = votes.most_common()
    best = ranked[0][0]
    if len(ranked) > 1 and ranked[1][1] == ranked[0][1]:
        best = sizes["rgb"]
    blamed = [t for t in sizes if sizes[t] != best]
    agree = [t for t in sizes if sizes[t] == best] + (["camera_info"] if cam == best else [])
    ref = ["rgb"] if "rgb" in agree else agree

    def verb(names):
        return "are" if len(names) > 1 or names[0] == "labels" else "is"

    def wh(hw):
        return f"{hw[1]}x{hw[0]}"

    text = ", ".join(f"{t} {verb([t])} {wh(sizes[t])}" for t in blamed)
    return blamed, f"{text} but {_join(ref)} {verb(ref)} {wh(best)}"


def _interfaces():
    """The package's generated interfaces (msg/MapStatus, srv/*), or None when
    they are not built; the node then runs without those services/topics."""
    try:
        from semnerf_ros.msg import MapStatus
        from semnerf_ros.srv import ExportMesh, GetStatus, LoadMap, RenderView, SaveMap
    except ImportError:
        return None
    return {"MapStatus": MapStatus, "ExportMesh": ExportMesh, "GetStatus": GetStatus,
            "LoadMap": LoadMap, "RenderView": RenderView, "SaveMap": SaveMap}


class SemNerfNode(Node):
    """The mapping node.  ``mapper``: an object with the Mapper interface (made
    from the parameters when None).  Raises :class:`ParameterValueError` naming
    the parameter when a parameter value cannot be used."""

    def __init__(self, mapper: Any = None, node_name: str = NODE_NAME, on_ready=None, **node_kwargs):
        """``on_ready``: called once everything is set up, just before the "ready" line
        (``main`` uses it to switch signals from "abort the start" to "shut down")."""
        super().__init__(node_name, **node_kwargs)
        self._closed = False
        self._state_lock = threading.Lock()
        self._started = time.monotonic()
        # set on shutdown: running mesh extractions stop at their next chunk
        self._cancel = threading.Event()
        self._shutdown_reason = ""
        self._long_ops: dict[int, tuple] = {}   # id -> (name, detail, monotonic start)
        self._long_ops_lock = threading.Lock()
        self._export_seconds = 0.0
        self._warn_times: dict[str, float] = {}
        self._warn_suppressed: dict[str, int] = {}
        self._engine_faults_seen = (0, 0)   # (oom_events, step_errors) of the mapper last reported
        self.values = self._declare_parameters()
        errors = check_values(self.values)
        if errors:
            raise ParameterValueError("; ".join(errors))
        self.num_classes = num_classes_of(self.values)
        # accept an integer for a double parameter at run time too (`ros2 param set
        # ... publish_rate 2` sends an INTEGER); registered before any set can happen
        self.add_pre_set_parameters_callback(self._coerce_parameter_types)
        self.class_names = list(self.values["class_names"]) or None
        self._warn_unknown_overrides()
        self._camera_intrinsics: Optional[Intrinsics] = None   # latest valid camera (or from parameters)
        if not self.values["use_camera_info"]:
            v = self.values
            try:
                self._camera_intrinsics = Intrinsics(v["fx"], v["fy"], v["cx"], v["cy"],
                                                     v["width"], v["height"])
            except IntrinsicsError as exc:
                raise ParameterValueError(f"parameters fx, fy, cx, cy, width, height: {exc}") from exc

        self.mapper = mapper if mapper is not None else self._make_mapper()
        if self.values["load_on_start"]:
            try:
                self.mapper.load_state(self.values["map_path"])
            except Exception as exc:  # noqa: BLE001 - any failure is a start-up error
                raise ParameterValueError(f"parameter 'load_on_start': cannot load map_path "
                                          f"{self.values['map_path']!r}: {exc}") from exc
            self.get_logger().info(f"loaded map {self.values['map_path']}")

        # -- state shared between callbacks (guarded by _state_lock)
        self._latest: Optional[tuple] = None    # (pose, intrinsics, header) of the latest synced frame
        self._last_published_ns: Optional[int] = None  # input stamp of the last render set published
        self._camera_frame_id = ""              # latest input camera frame (kept across reset/load)
        self._last_sync_time = time.monotonic()  # when a set last synchronized (or the node started)
        self._latest_stamp_by_topic: dict[str, float] = {}
        self._last_received_time: dict[str, float] = {}
        self._last_stamp: Optional[float] = None
        self._stamps_back = 0                  # consecutive sets older than _last_stamp
        self.topic_names = ["rgb", "labels", "pose"] + (["depth"] if self.values["use_depth"] else []) \
            + ["camera_info"]
        self._received = {t: 0 for t in self.topic_names}
        self._rejected_by_topic = {t: 0 for t in self.topic_names}
        self.reject_counts: dict[str, int] = {}
        self.frames_synced = 0      # sets the mapper accepted
        self.frames_rejected = 0
        self.images_published = 0   # render sets published on the image topics
        self.keyframes_added = 0
        self._intake: collections.deque = collections.deque(maxlen=2)
        self._intake_cond = threading.Condition()
        self._intake_stop = False
        self._intake_thread = threading.Thread(target=self._intake_loop, name="semnerf-intake", daemon=True)
        self._intake_thread.start()

        # -- callback groups: inputs never wait for rendering, meshing or services
        self._input_group = ReentrantCallbackGroup()
        self._render_group = MutuallyExclusiveCallbackGroup()
        self._mesh_group = MutuallyExclusiveCallbackGroup()
        self._status_group = MutuallyExclusiveCallbackGroup()
        self._long_service_group = MutuallyExclusiveCallbackGroup()

        self._make_sync_and_subscriptions()
        self._make_publishers()
        self._make_services()
        self._periodic: dict[str, Any] = {}
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._reset_timers()
        if self.get_parameter("use_sim_time").value:
            self.get_logger().info("use_sim_time is true: outputs are stamped with /clock time; timers "
                                   "(renders, mesh, status, progress) run on the wall clock so they go on "
                                   "when /clock stops")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)

        self._training_started = False
        self._apply_training_enabled()
        if on_ready is not None:
            on_ready()
        self.get_logger().info(
            f"semnerf_node ready: {self.num_classes} classes, model {self.values['model_type']}, "
            f"device {getattr(self.mapper, 'device', '?')}, inputs "
            + ", ".join(self._subs[t].topic_name for t in self.topic_names))

    # ================================================================ parameters
    def _declare_parameters(self) -> dict:
        overrides = dict(getattr(self, "_parameter_overrides", {}) or {})
        values = {}
        for spec in PARAMS:
            desc = ParameterDescriptor(name=spec.name, description=spec.description,
                                       read_only=spec.read_only)
            desc.type = _PARAM_TYPES[spec.kind].value
            if spec.choices:
                desc.additional_constraints = "one of: " + ", ".join(spec.choices)
            if spec.kind == "double" and spec.low is not None:
                desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low),
                                                                to_value=float(spec.high), step=0.0)]
            if spec.kind == "int" and spec.low is not None:
                desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high),
                                                   step=0)]
            override = overrides.get(spec.name)
            if spec.kind == "double" and override is not None \
                    and override.type_ == Parameter.Type.INTEGER:
                # accept `-p publish_rate:=2` (an integer) for a double parameter
                self._parameter_overrides[spec.name] = Parameter(
                    spec.name, Parameter.Type.DOUBLE, float(override.value))
            try:
                if spec.kind == "string_array" and not spec.default:
                    self.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, desc)
                    try:
                        value = list(self.get_parameter(spec.name).value or [])
                    except ParameterException:
                        value = []
                else:
                    value = self.declare_parameter(spec.name, spec.default, desc).value
            except ParameterException as exc:
                raise ParameterValueError(f"parameter '{spec.name}': {exc}") from exc
            if spec.kind == "string_array":
                value = list(value or [])
            err = check_value(spec, value)
            if err:
                raise ParameterValueError(err)
            values[spec.name] = value
        return values

    def _warn_unknown_overrides(self) -> None:
        names = list(getattr(self, "_parameter_overrides", {}) or {})
        for name in names:
            if name in SPECS or name in _ROS_PARAMS or name.startswith("qos_overrides."):
                continue
            close = difflib.get_close_matches(name, list(SPECS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.get_logger().warning(f"ignoring unknown parameter '{name}'{hint}")

    def _coerce_parameter_types(self, params: list) -> list:
        """Pre-set callback: an INTEGER given for a double parameter becomes a DOUBLE."""
        out = []
        for p in params:
            spec = SPECS.get(p.name)
            if spec is not None and spec.kind == "double" and p.type_ == Parameter.Type.INTEGER:
                p = Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            out.append(p)
        return out

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        for p in params:
            spec = SPECS.get(p.name)
            if spec is None:
                continue
            value = p.value
            if spec.kind == "double" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            err = check_value(spec, value)
            if err:
                return SetParametersResult(successful=False, reason=err)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params: list) -> None:
        changed = set()
        for p in params:
            if p.name in SPECS:
                self.values[p.name] = p.value
                changed.add(p.name)
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

    # ================================================================ engine
    def _make_mapper(self):
        from ..engine.config import ConfigError, load_config
        from ..engine.mapper import Mapper

        path, profile = self._engine_profile()
        try:
            cfg = load_config(path, engine_overrides(self.values))
        except ConfigError as exc:
            raise ParameterValueError(f"parameter 'engine_config' ({path or 'defaults'}): {exc}") from exc
        self.get_logger().info(f"engine profile: {profile}")
        device = None if self.values["device"] in ("", "auto") else self.values["device"]
        try:
            mapper = Mapper(cfg, self.num_classes, class_names=self.class_names, device=device)
        except (ValueError, RuntimeError) as exc:
            raise ParameterValueError(f"cannot create the mapper (parameters 'engine_config', "
                                      f"'model_type', 'device'): {exc}") from exc
        # Compile the GPU kernels now, in the main thread, before any frame arrives:
        # otherwise the first training step compiles them (~10 s) while holding the map.
        seconds = mapper.warmup()
        if seconds:
            self.get_logger().info(f"GPU kernels compiled and initialised in {seconds:.1f} s")
        return mapper

    def _engine_profile(self) -> tuple:
        """(engine YAML path or None, a sentence saying which engine settings the node
        takes and why).  ``engine_config`` set: that file (a relative name that is not
        found from the working directory is looked up in the package's config/).  Empty:
        on a CPU the CPU profile :data:`CPU_ENGINE_FILE`, else the engine defaults for
        the device (semnerf_ros/config.py)."""
        from ..engine.mapper import resolve_device

        given = self.values["engine_config"]
        if given:
            path = find_config_file(given)
            if path is None:
                raise ParameterValueError(
                    f"parameter 'engine_config': file {given!r} not found (relative names are looked up "
                    f"in the working directory {os.getcwd()} and in the package's config/ folder)")
            return str(path), f"{path} (parameter engine_config)"
        try:
            device = resolve_device(None if self.values["device"] in ("", "auto") else self.values["device"])
        except (RuntimeError, ValueError) as exc:
            raise ParameterValueError(f"parameter 'device': {exc}") from exc
        if device.type == "cpu" and self.values["model_type"] == "hash":
            path = find_config_file(CPU_ENGINE_FILE)
            if path is not None:
                return str(path), (f"CPU profile {path} (no engine_config given and the node runs on the CPU; "
                                   f"set engine_config to choose another)")
            return None, (f"CPU defaults of semnerf_ros/config.py (CPU_HASH_PRESET; {CPU_ENGINE_FILE} "
                          f"was not found in the package's config/)")
        return None, f"engine defaults for {device} (semnerf_ros/config.py; no engine_config given)"

    # ================================================================ inputs
    def _input_qos(self) -> QoSProfile:
        depth = int(self.values["qos_depth"])
        if self.values["qos"] == "sensor_data":
            q = QoSProfile(depth=depth)
            q.history = qos_profile_sensor_data.history
            q.reliability = qos_profile_sensor_data.reliability
            q.durability = qos_profile_sensor_data.durability
            return q
        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

    def _make_sync_and_subscriptions(self) -> None:
        from geometry_msgs.msg import PoseStamped
        from nav_msgs.msg import Odometry

        self._synced_topics = [t for t in self.topic_names if t != "camera_info"]
        self.sync = ApproximateTimeSynchronizer(
            queue_size=self.values["queue_size"], slop=self.values["slop"],
            num_inputs=len(self._synced_topics), callback=self._on_synced,
            prune_older=True, on_drop=self._on_sync_drop)
        qos = self._input_qos()
        types = {"rgb": Image, "labels": Image, "depth": Image,
                 "pose": Odometry if self.values["pose_type"] == "odometry" else PoseStamped}
        self._subs = {}
        for i, topic in enumerate(self._synced_topics):
            self._subs[topic] = self.create_subscription(
                types[topic], topic, self._input_callback(topic, i), qos,
                callback_group=self._input_group)
        self._subs["camera_info"] = self.create_subscription(
            CameraInfo, "camera_info", self._on_camera_info, qos, callback_group=self._input_group)

    def _input_callback(self, topic: str, index: int):
        def callback(msg):
            try:
                stamp = convert.stamp_to_sec(msg.header.stamp)
            except (AttributeError, TypeError):
                stamp = None
            with self._state_lock:
                self._received[topic] += 1
                self._last_received_time[topic] = time.monotonic()
                if stamp is not None:
                    self._latest_stamp_by_topic[topic] = stamp
            try:
                self.sync.add(index, msg)
            except Exception as exc:  # noqa: BLE001 - a bad message must never kill the node
                self._reject("internal_error", [topic], f"{type(exc).__name__}: {exc}")
        return callback

    def _on_sync_drop(self, index: int, msg: Any, reason: str) -> None:
        topic = self._synced_topics[index]
        name = self._subs[topic].topic_name
        slop = self.values["slop"]
        if reason == "duplicate_stamp":
            why = f"another {name} message with the same stamp replaced it"
        elif reason == "pruned_older":
            why = f"it is older than the set just synchronized (no partner came within slop={slop} s)"
        elif reason == "headerless":
            why = "it has no header stamp"
        else:
            # called by the synchronizer with its (re-entrant) lock held: its queues are stable
            waiting = self.sync.queue_lengths()
            silent = [t for i, t in enumerate(self._synced_topics) if i != index and waiting[i] == 0]
            no_pub = [t for t in silent if self._publisher_count(t) == 0]
            if silent:
                why = (f"nothing is waiting on {', '.join(self._subs[t].topic_name for t in silent)} "
                       f"(has it stopped?)")
                if no_pub:
                    why += "; " + "; ".join(f"no publisher on {self._subs[t].topic_name} ({self._input_hint(t)})"
                                            for t in no_pub)
            else:
                why = (f"no partner within slop={slop} s on the other inputs ("
                       + ", ".join(self._subs[t].topic_name for t in self._synced_topics if t != topic) + ")")
        self._warn(f"unmatched:{topic}:{reason}", f"dropped a {name} message ({reason.replace('_', ' ')}): {why}")

    def _publisher_count(self, topic: str) -> int:
        try:
            return int(self.count_publishers(self._subs[topic].topic_name))
        except Exception:  # noqa: BLE001 - a graph query during shutdown
            return -1

    def _input_hint(self, topic: str) -> str:
        """What to do about an input without a publisher."""
        if topic == "depth":
            return "remap depth:=<your depth topic> or set use_depth:=false"
        if topic == "camera_info":
            return ("remap camera_info:=<your camera_info topic> or set use_camera_info:=false with fx, fy, "
                    "cx, cy, width, height")
        return f"remap {topic}:=<your topic>"

    def _check_inputs(self) -> None:
        """Steady-clock timer: when no set has synchronized for ``input_timeout`` s, say
        why, naming the inputs that have no publisher, those with publishers that
        sent nothing, and (when every input sends) the stamp skew that keeps the
        synchronizer from pairing them."""
        timeout = float(self.values["input_timeout"])
        if self._closed or timeout <= 0:
            return
        now = time.monotonic()
        with self._state_lock:
            quiet = now - self._last_sync_time
            received = dict(self._received)
            last_rx = dict(self._last_received_time)
            stamps = dict(self._latest_stamp_by_topic)
        if quiet < timeout:
            return
        topics = list(self._synced_topics) + (["camera_info"] if self.values["use_camera_info"] else [])
        problems, stopped = [], []
        for t in topics:
            name = self._subs[t].topic_name
            n_pub = self._publisher_count(t)
            if n_pub == 0:
                problems.append(f"no publisher on {name} ({self._input_hint(t)})")
            elif received[t] == 0:
                problems.append(f"{name} has {n_pub} publisher(s) but nothing arrived (not publishing yet, "
                                f"or a QoS that does not match: this node subscribes with qos "
                                f"'{self.values['qos']}')")
            elif now - last_rx.get(t, now) >= timeout:
                stopped.append(t)
        if not problems and all(t in stamps for t in self._synced_topics):
            ref = stamps["rgb"]
            values = [stamps[t] for t in self._synced_topics]
            spread = max(values) - min(values)
            if spread > float(self.values["slop"]):
                offsets = ", ".join(f"{self._subs[t].topic_name} {stamps[t] - ref:+.3f} s"
                                    for t in self._synced_topics if t != "rgb")
                problems.append(f"the inputs publish but never synchronize: their latest stamps differ by "
                                f"{spread:.3f} s ({offsets} relative to {self._subs['rgb'].topic_name}) "
                                f"and slop is {self.values['slop']} s; stamp them from one clock or raise "
                                f"slop")
        if not problems and stopped and len(stopped) < len(topics):
            # some inputs stopped while others go on (all stopped: the source ended; quiet)
            problems.append(", ".join(self._subs[t].topic_name for t in stopped)
                            + f" sent nothing for {timeout:g} s or more (stopped?)")
        if not problems:
            return
        ever = self.sync.emitted > 0
        what = (f"no frame synchronized in the last {quiet:.0f} s" if ever
                else f"no frame synchronized {quiet:.0f} s after start")
        self._warn("inputs", f"{what}: " + "; ".join(problems),
                   period=max(float(self.values["warn_period"]), 6.0 * timeout))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._state_lock:
            self._received["camera_info"] += 1
            self._last_received_time["camera_info"] = time.monotonic()
            if msg.header.frame_id:
                self._camera_frame_id = msg.header.frame_id
        if not self.values["use_camera_info"]:
            return
        try:
            intr = convert.intrinsics_from_camera_info(msg)
        except (IntrinsicsError, ValueError) as exc:
            self._reject("invalid_camera_info", ["camera_info"], str(exc), count_frame=False)
            return
        with self._state_lock:
            self._camera_intrinsics = intr

    def _on_synced(self, rgb_msg, labels_msg, pose_msg, depth_msg=None) -> None:
        """One synchronized set: validate, convert, queue for the mapper."""
        topics = self._synced_topics
        with self._state_lock:
            self._last_sync_time = time.monotonic()
        stamp = convert.stamp_to_sec(rgb_msg.header.stamp)
        # -- stamps
        with self._state_lock:
            last = self._last_stamp
        if last is not None and stamp == last:
            return self._reject("duplicate_stamp", topics, f"stamp {stamp:.9f} s was already used")
        if last is not None and stamp < last:
            with self._state_lock:
                self._stamps_back += 1
                back = self._stamps_back
            if back < STAMP_REBASE_SETS:
                return self._reject("out_of_order", topics,
                                    f"stamp {stamp:.6f} s is older than the last frame's {last:.6f} s")
            self._warn("stamp_rebase",
                       f"{back} frames in a row were older than the last accepted one ({last:.6f} s, "
                       f"now {stamp:.6f} s): taking their stamps as the new time base (a restarted "
                       f"source, a looped bag, or a bogus stamp accepted earlier; set max_future to "
                       f"reject far-future stamps)")
        now = self.get_clock().now().nanoseconds * 1e-9
        if self.values["max_stamp_age"] > 0 and now - stamp > self.values["max_stamp_age"]:
            return self._reject("stale_stamp", topics,
                                f"stamp is {now - stamp:.3f} s old (max_stamp_age "
                                f"{self.values['max_stamp_age']} s)")
        if self.values["max_future"] > 0 and stamp - now > self.values["max_future"]:
            return self._reject("future_stamp", topics,
                                f"stamp is {stamp - now:.3f} s ahead of now (max_future "
                                f"{self.values['max_future']} s)")
        # -- pose
        world = self.values["world_frame"]
        pose_frame = pose_msg.header.frame_id
        if pose_frame and pose_frame.lstrip("/") != world.lstrip("/"):
            return self._reject("pose_frame_mismatch", ["pose"],
                                f"pose is in frame '{pose_frame}' but world_frame is '{world}' "
                                f"(set -p world_frame:={pose_frame})")
        try:
            if self.values["pose_type"] == "odometry":
                pose = convert.pose_from_odometry(pose_msg, self.values["pose_convention"])
            else:
                pose = convert.pose_from_pose_stamped(pose_msg, self.values["pose_convention"])
        except PoseError as exc:
            return self._reject("invalid_pose", ["pose"], str(exc))
        # -- images
        try:
            rgb = convert.rgb_from_image_msg(rgb_msg)
        except convert.UnsupportedEncodingError as exc:
            return self._reject("unsupported_encoding", ["rgb"], f"rgb: {exc}")
        except convert.ImageFormatError as exc:
            return self._reject("bad_image", ["rgb"], f"rgb: {exc}")
        try:
            labels = convert.labels_from_image_msg(labels_msg)
        except convert.UnsupportedEncodingError as exc:
            return self._reject("unsupported_encoding", ["labels"], f"labels: {exc}")
        except convert.ImageFormatError as exc:
            return self._reject("bad_image", ["labels"], f"labels: {exc}")
        depth = None
        if depth_msg is not None:
            try:
                depth = convert.depth_from_image_msg(depth_msg)
            except convert.UnsupportedEncodingError as exc:
                return self._reject("unsupported_encoding", ["depth"], f"depth: {exc}")
            except convert.ImageFormatError as exc:
                return self._reject("bad_image", ["depth"], f"depth: {exc}")
        h, w = rgb.shape[:2]
        with self._state_lock:
            intr = self._camera_intrinsics
        mismatch = size_mismatch({"rgb": rgb.shape[:2], "labels": labels.shape,
                                  **({"depth": depth.shape} if depth is not None else {})},
                                 intr.shape if intr is not None else None)
        if mismatch is not None:
            return self._reject("size_mismatch", mismatch[0], mismatch[1])
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            bad = int(labels.max()) if labels.max() >= self.num_classes else int(labels.min())
            return self._reject("label_out_of_range", ["labels"],
                                f"label id {bad} outside 0..{self.num_classes - 1} (num_classes "
                                f"{self.num_classes})")
        # -- intrinsics
        if intr is None:
            return self._reject("no_camera_info", ["rgb"],
                                f"no valid camera_info received yet on "
                                f"{self._subs['camera_info'].topic_name}")
        if intr.shape != (h, w):
            if abs(intr.width / intr.height - w / h) > 0.01:
                return self._reject("size_mismatch", ["rgb"],
                                    f"rgb is {w}x{h} but the camera intrinsics are for "
                                    f"{intr.width}x{intr.height}")
            intr = intr.resized(w, h)  # same camera at another resolution
        frame = Frame(rgb=rgb, pose=pose, intrinsics=intr, labels=labels, depth=depth, stamp=stamp,
                      frame_id=rgb_msg.header.frame_id)
        try:
            frame.validate(self.num_classes)
        except PoseError as exc:
            return self._reject("invalid_pose", ["pose"], str(exc))
        except FrameError as exc:
            return self._reject("invalid_frame", topics, str(exc))
        header = Header(stamp=rgb_msg.header.stamp, frame_id=rgb_msg.header.frame_id)
        with self._state_lock:
            self._last_stamp = stamp
            self._stamps_back = 0
            self._latest = (frame.pose, intr, header)
            if header.frame_id:
                self._camera_frame_id = header.frame_id
        self._enqueue_frame(frame)

    # -- frame intake: add_frame waits for the mapper's lock (held during a training
    # step), so it runs in its own thread and never blocks an executor thread.
    def _enqueue_frame(self, frame: Frame) -> None:
        with self._intake_cond:
            if len(self._intake) == self._intake.maxlen:
                self._intake.popleft()
                dropped = True
            else:
                dropped = False
            self._intake.append(frame)
            self._intake_cond.notify()
        if dropped:
            self._reject("mapper_busy", self._synced_topics,
                         "the mapper is still busy with earlier frames; the oldest waiting frame "
                         "was dropped", count_frame=True)

    def _intake_loop(self) -> None:
        while True:
            with self._intake_cond:
                while not self._intake and not self._intake_stop:
                    self._intake_cond.wait(0.5)
                if self._intake_stop:
                    return
                frame = self._intake.popleft()
            try:
                decision = self.mapper.add_frame(frame)
            except PoseError as exc:
                self._reject("invalid_pose", ["pose"], str(exc))
                continue
            except FrameError as exc:
                self._reject("invalid_frame", self._synced_topics, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - the engine must not kill the node
                self._reject("mapper_error", self._synced_topics, f"{type(exc).__name__}: {exc}")
                continue
            with self._state_lock:
                self.frames_synced += 1
                if getattr(decision, "keyframe", False):
                    self.keyframes_added += 1

    def _reject(self, reason: str, topics: list, detail: str, count_frame: bool = True) -> None:
        with self._state_lock:
            self.reject_counts[reason] = self.reject_counts.get(reason, 0) + 1
            for t in topics:
                self._rejected_by_topic[t] += 1
            if count_frame:
                self.frames_rejected += 1
        self._warn(f"{reason}:{','.join(topics)}", f"rejected ({reason}): {detail}")

    def _warn(self, key: str, text: str, period: Optional[float] = None) -> None:
        """A warning at most once per ``warn_period`` (or ``period``) seconds per
        ``key`` *and kind of text* (:func:`warning_kind`: two different problems
        under one reason are both logged); the next one of that kind says how many
        were suppressed in between."""
        key = f"{key}|{warning_kind(text)}"
        now = time.monotonic()
        period = float(self.values["warn_period"]) if period is None else float(period)
        with self._state_lock:
            last = self._warn_times.get(key)
            if last is not None and now - last < period:
                self._warn_suppressed[key] = self._warn_suppressed.get(key, 0) + 1
                return
            if len(self._warn_times) > 4096:   # bounded: forget kinds not seen for a period
                for k in [k for k, t in self._warn_times.items() if now - t >= period]:
                    self._warn_times.pop(k)
            self._warn_times[key] = now
            suppressed = self._warn_suppressed.pop(key, 0)
        if suppressed:
            text += f" [{suppressed} more like this in the last {now - last:.1f} s]"
        self._node_log().warning(text)

    def _node_log(self):
        """The node's logger (it also publishes to /rosout); once the node is being
        destroyed or its context is gone, a child logger without /rosout, so that
        nothing logs through a publisher whose context is invalid."""
        if self._closed or not self.context.ok():
            return rclpy.logging.get_logger(f"{self.get_name()}.shutdown")
        return self.get_logger()

    def _check_engine_faults(self, st: dict) -> dict:
        """Warn (throttled) about training steps the engine skipped since the last
        look; returns the engine fault counters for ``reject_reasons``."""
        oom, errors = int(st.get("oom_events", 0) or 0), int(st.get("step_errors", 0) or 0)
        with self._state_lock:
            seen_oom, seen_errors = self._engine_faults_seen
            self._engine_faults_seen = (oom, errors)
        if oom > seen_oom:
            self._warn("training_oom", f"out of GPU memory in {oom - seen_oom} training step(s) ({oom} in "
                                       f"all): those steps were skipped and the ray batch shrunk to "
                                       f"{st.get('ray_batch', '?')} rays; training continues")
        if errors > seen_errors:
            self._warn("training_error", f"{errors - seen_errors} training step(s) failed ({errors} in all; "
                                         f"see the semnerf_ros.mapper log); training continues")
        return {k: v for k, v in (("training_oom", oom), ("training_error", errors)) if v > 0}

    # ================================================================ outputs
    def _make_publishers(self) -> None:
        # Each render set is published once (one per input stamp); transient-local keeps the
        # latest for a subscriber that comes later (it also serves volatile subscribers).
        images = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_semantic = self.create_publisher(Image, "~/semantic", images)
        self.pub_semantic_color = self.create_publisher(Image, "~/semantic_color", images)
        self.pub_rgb = self.create_publisher(Image, "~/rgb", images)
        self.pub_depth = self.create_publisher(Image, "~/depth", images)
        self.pub_uncertainty = self.create_publisher(Image, "~/uncertainty", images)
        # image_transport's convention: the camera_info of image topic <ns>/<name> is
        # <ns>/camera_info, so this one serves all five image streams (same stamp, frame,
        # intrinsics): depth_image_proc, RViz's DepthCloud / Camera, image_view use it
        self.pub_camera_info = self.create_publisher(CameraInfo, "~/camera_info", images)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_mesh = self.create_publisher(MarkerArray, "~/mesh", latched)
        self._iface = _interfaces()
        self.pub_status = None
        if self._iface is None:
            self.get_logger().error("semnerf_ros interfaces (semnerf_ros.msg / semnerf_ros.srv) are not "
                                    "built: ~/status, ~/export_mesh, ~/save_map, ~/load_map, "
                                    "~/render_view and ~/get_status are unavailable")
        else:
            self.pub_status = self.create_publisher(self._iface["MapStatus"], "~/status", 10)

    def _image_publishers(self) -> list:
        return [self.pub_semantic, self.pub_semantic_color, self.pub_rgb, self.pub_depth,
                self.pub_uncertainty]

    def _reset_timers(self) -> None:
        """(Re)create the periodic work.  Every timer runs on the steady (wall) clock,
        also under ``use_sim_time``: status, progress, renders of new input and mesh
        markers must not stop when /clock stops (a bag that ended); the messages
        themselves are still stamped with the node's clock (sim time then)."""
        for t in self._periodic.values():
            self.destroy_timer(t)
        self._periodic = {}
        steady = self._steady_clock
        specs = (("publish_rate", self._publish_renders, self._render_group, True),
                 ("mesh_period", self._publish_mesh, self._mesh_group, False),
                 ("status_rate", self._publish_status, self._status_group, True),
                 ("log_period", self._log_progress, self._status_group, False))
        for name, fn, group, is_rate in specs:
            v = float(self.values[name])
            if v <= 0 or (name == "status_rate" and self.pub_status is None):
                continue
            self._periodic[name] = self.create_timer(1.0 / v if is_rate else v, fn, callback_group=group,
                                                     clock=steady)
        self._periodic["input_check"] = self.create_timer(INPUT_CHECK_PERIOD_S, self._check_inputs,
                                                          callback_group=self._status_group, clock=steady)

    def _mapper_has_keyframes(self) -> bool:
        try:
            return int(self.mapper.stats().get("keyframes", 0)) > 0
        except Exception:  # noqa: BLE001
            return False

    def render_images(self, pose: np.ndarray, intr: Intrinsics, header: Header, scale: float) -> dict:
        """Render the map from ``pose`` and pack the five output images (messages)."""
        res = self.mapper.render(pose, intr, scale=scale)
        labels = np.asarray(res.labels)
        from ..colormap import colorize_labels

        rgb8 = np.clip(np.asarray(res.rgb, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return {
            "semantic": convert.labels_to_image(labels, self.num_classes, header),
            "semantic_color": convert.numpy_to_image(colorize_labels(labels, self.num_classes), "rgb8",
                                                     header),
            "rgb": convert.numpy_to_image(rgb8, "rgb8", header),
            "depth": convert.numpy_to_image(np.asarray(res.depth, dtype=np.float32), "32FC1", header),
            "uncertainty": convert.numpy_to_image(np.asarray(res.entropy, dtype=np.float32), "32FC1",
                                                  header),
            "camera_info": convert.camera_info_from_intrinsics(
                getattr(res, "intrinsics", None) or intr.scaled(scale), header),
        }

    def _publish_renders(self) -> None:
        """Render the latest synchronized input pose, once per input stamp: a stamp
        already published is never published again (when input stops, the outputs
        stop; a later subscriber gets the last set from the transient-local
        publishers, and ~/render_view renders the improved map on request)."""
        if self._closed:
            return
        with self._state_lock:
            latest = self._latest
            published = self._last_published_ns
        if latest is None or not any(p.get_subscription_count() for p in self._image_publishers()):
            return
        pose, intr, header = latest
        stamp_ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        if stamp_ns == published:
            return
        if not self._mapper_has_keyframes():
            return
        try:
            imgs = self.render_images(pose, intr, header, float(self.values["render_scale"]))
        except Exception as exc:  # noqa: BLE001
            self._warn("render_error", f"rendering failed: {type(exc).__name__}: {exc}")
            return
        self.pub_semantic.publish(imgs["semantic"])
        self.pub_semantic_color.publish(imgs["semantic_color"])
        self.pub_rgb.publish(imgs["rgb"])
        self.pub_depth.publish(imgs["depth"])
        self.pub_uncertainty.publish(imgs["uncertainty"])
        self.pub_camera_info.publish(imgs["camera_info"])
        with self._state_lock:
            self.images_published += 1
            self._last_published_ns = stamp_ns

    def _extract_mesh(self, resolution: int = 0, density_threshold: float = 0.0):
        """The mapper's mesh; cancelled (:class:`~semnerf_ros.engine.mesh.ExtractionCancelled`)
        at the next chunk once the node shuts down (when the mapper takes ``cancel``)."""
        res = int(resolution) or int(self.values["mesh_resolution"])
        thr = float(density_threshold) or float(self.values["mesh_density_threshold"]) or None
        kwargs = {}
        if _accepts(self.mapper.extract_mesh, "cancel"):
            kwargs["cancel"] = self._cancel.is_set
            if str(getattr(self.mapper, "device", "")).startswith("cpu"):
                kwargs["chunk"] = CPU_MESH_CHUNK_POINTS
        return self.mapper.extract_mesh(resolution=res, density_threshold=thr, **kwargs)

    @contextlib.contextmanager
    def _long_op(self, name: str, detail: str = ""):
        """Mark a piece of long work (service, mesh extraction) as running, so that
        the shutdown can say what it cancels or waits for."""
        key = object()
        with self._long_ops_lock:
            self._long_ops[id(key)] = (name, detail, time.monotonic())
        try:
            yield
        finally:
            with self._long_ops_lock:
                self._long_ops.pop(id(key), None)

    def running_work(self) -> list:
        """[(name, detail, seconds running)] of the long work in progress."""
        now = time.monotonic()
        with self._long_ops_lock:
            return [(n, d, now - t0) for n, d, t0 in self._long_ops.values()]

    def mesh_markers(self, mesh, stamp=None) -> MarkerArray:
        """MarkerArray: DELETEALL, then TRIANGLE_LIST chunks with per-vertex colours."""
        from ..engine.mesh import marker_chunks

        header = Header(stamp=stamp if stamp is not None else self.get_clock().now().to_msg(),
                        frame_id=self.values["world_frame"])
        out = MarkerArray()
        out.markers.append(Marker(header=header, ns="semnerf_mesh", action=Marker.DELETEALL))
        max_faces = int(self.values["mesh_max_faces"])
        chunks = marker_chunks(mesh, int(self.values["mesh_max_triangles"]),
                               semantic_colors=bool(self.values["mesh_semantic_colors"]),
                               decimate_to=max_faces if max_faces > 0 else None)
        for i, (points, colors) in enumerate(chunks):
            m = Marker(header=header, ns="semnerf_mesh", id=i, type=Marker.TRIANGLE_LIST,
                       action=Marker.ADD, frame_locked=False)
            m.pose.orientation.w = 1.0
            m.scale.x = m.scale.y = m.scale.z = 1.0
            m.color.r = m.color.g = m.color.b = m.color.a = 1.0
            m.points = _points(points)
            m.colors = _colors(colors)
            out.markers.append(m)
        return out

    def _publish_mesh(self) -> None:
        if self._closed or self.pub_mesh.get_subscription_count() == 0:
            return
        if not self._mapper_has_keyframes():
            return
        from ..engine.mesh import ExtractionCancelled

        try:
            with self._long_op("mesh markers", f"resolution {int(self.values['mesh_resolution'])}"):
                markers = self.mesh_markers(self._extract_mesh())
        except ExtractionCancelled:
            self._node_log().info("mesh markers: extraction cancelled (shutting down)")
            return
        except Exception as exc:  # noqa: BLE001
            self._warn("mesh_error", f"mesh extraction failed: {type(exc).__name__}: {exc}")
            return
        if self._closed or self._cancel.is_set():
            return
        self.pub_mesh.publish(markers)

    def status_message(self):
        """The MapStatus message of now (needs the built interfaces)."""
        MapStatus = self._iface["MapStatus"]
        try:
            st = dict(self.mapper.stats())
        except Exception as exc:  # noqa: BLE001
            st = {}
            self._warn("stats_error", f"mapper.stats() failed: {exc}")
        engine_faults = self._check_engine_faults(st)
        sync = self.sync.stats()
        msg = MapStatus()
        msg.header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.values["world_frame"])
        msg.step = int(st.get("step", 0))
        msg.keyframes = int(st.get("keyframes", 0))
        msg.max_keyframes = int(st.get("max_keyframes", self.values["max_keyframes"]))
        msg.training = bool(st.get("training", False))
        msg.device = str(st.get("device", getattr(self.mapper, "device", "")))
        for key in ("loss", "loss_rgb", "loss_semantic", "loss_depth", "psnr",
                    "iterations_per_second", "gpu_memory_mb"):
            v = st.get(key, 0.0)
            setattr(msg, key, float(v) if v is not None and math.isfinite(float(v)) else 0.0)
        with self._state_lock:
            msg.topics = [self._subs[t].topic_name for t in self.topic_names]
            msg.received = [int(self._received[t]) for t in self.topic_names]
            dropped = []
            for t in self.topic_names:
                n = self._rejected_by_topic[t]
                if t in self._synced_topics:
                    n += sync["dropped"][self._synced_topics.index(t)]
                dropped.append(int(n))
            msg.dropped = dropped
            msg.frames_synced = int(self.frames_synced)
            msg.frames_rejected = int(self.frames_rejected)
            msg.keyframes_added = int(self.keyframes_added)
            counts = {**self.reject_counts, **engine_faults}
            reasons = sorted(counts)
            msg.reject_reasons = reasons
            msg.reject_counts = [int(counts[r]) for r in reasons]
        return msg

    def _log_progress(self) -> None:
        """One INFO line: training, keyframes, frames, lock waits and images since start."""
        if self._closed:
            return
        try:
            st = dict(self.mapper.stats())
        except Exception:  # noqa: BLE001
            return
        tm = st.get("timing_ms", {})

        def ms(name):
            t = tm.get(name)
            return f"{t['p50']:.0f}/{t['max']:.0f}" if t else "-"

        with self._state_lock:
            rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.reject_counts.items())) or "none"
            rate = (f"{st.get('iterations_per_second', 0.0):.0f} it/s" if st.get("training", True)
                    else "paused" if not self.values["training_enabled"] else "not training")
            line = (f"step {st.get('step', 0)} ({rate}), keyframes "
                    f"{st.get('keyframes', 0)}/{st.get('max_keyframes', 0)}; frames synced {self.frames_synced}, "
                    f"rejected {self.frames_rejected} ({rejected}); images published {self.images_published}; "
                    f"ms p50/max: step {ms('step')}, add_frame {ms('add_frame')} (wait {ms('add_frame_wait')}), "
                    f"render {ms('render')} (wait {ms('render_wait')})")
        self.get_logger().info(line)

    def _publish_status(self) -> None:
        if self._closed or self.pub_status is None:
            return
        self.pub_status.publish(self.status_message())

    # ================================================================ services
    def _make_services(self) -> None:
        g = self._long_service_group
        self.create_service(Trigger, "~/reset_map", self._srv_reset, callback_group=g)
        self.create_service(Trigger, "~/export_mesh_default", self._srv_export_default, callback_group=g)
        if self._iface is None:
            return
        i = self._iface
        self.create_service(i["ExportMesh"], "~/export_mesh", self._srv_export, callback_group=g)
        self.create_service(i["SaveMap"], "~/save_map", self._srv_save, callback_group=g)
        self.create_service(i["LoadMap"], "~/load_map", self._srv_load, callback_group=g)
        self.create_service(i["RenderView"], "~/render_view", self._srv_render,
                            callback_group=self._render_group)
        self.create_service(i["GetStatus"], "~/get_status", self._srv_status,
                            callback_group=self._status_group)

    def export_mesh(self, path: str = "", fmt: str = "", semantic_colors: bool = False,
                    resolution: int = 0, density_threshold: float = 0.0) -> tuple:
        """Extract and write the mesh; returns (absolute path, vertex count, face count).

        The target is checked first (known format with its writer installed, an
        existing directory where a file can be created), so a bad path fails at
        once instead of after the extraction.  On shutdown the extraction is
        cancelled (:class:`~semnerf_ros.engine.mesh.ExtractionCancelled`); the write is
        atomic, so no partial file is ever left."""
        from ..engine.mesh import check_export_target, write_mesh

        target, fmt = check_export_target(path or self.values["export_path"], fmt or None)
        if not self._mapper_has_keyframes():
            raise RuntimeError("the map is empty (no keyframes yet)")
        res = int(resolution) or int(self.values["mesh_resolution"])
        with self._long_op("export_mesh", str(target)):
            t0 = time.monotonic()
            self._node_log().info(f"export_mesh: extracting the mesh at resolution {res} for {target}")
            mesh = self._extract_mesh(resolution, density_threshold)
            if self._cancel.is_set():
                from ..engine.mesh import ExtractionCancelled
                raise ExtractionCancelled("the node is shutting down")
            written = write_mesh(mesh, target, fmt=fmt, semantic_colors=semantic_colors)
            self._export_seconds = time.monotonic() - t0
        written = Path(written) if written is not None else target
        return str(written.absolute()), int(len(mesh.vertices)), int(len(mesh.faces))

    def _serve(self, name: str, resp, failure: str, action):
        """Run a service body: ``action()`` returns the success message (and
        fills ``resp``); any exception becomes ``success=false`` with
        ``failure`` and the error, never an exception that reaches rclpy.
        The outcome is logged (info / error) unless ``name`` is empty."""
        from ..engine.mesh import ExtractionCancelled

        try:
            resp.message = action()
            resp.success = True
        except ExtractionCancelled as exc:
            resp.success = False
            resp.message = f"cancelled, nothing written: the node is shutting down ({exc})"
        except Exception as exc:  # noqa: BLE001 - errors become success=false
            resp.success, resp.message = False, f"{failure}: {type(exc).__name__}: {exc}"
        if name:
            self._log_service(name, resp)
        return resp

    def _map_file(self, path: str) -> str:
        return str(Path(os.path.expanduser(path or self.values["map_path"])).absolute())

    def _srv_export(self, req, resp):
        def action():
            path, nv, nf = self.export_mesh(req.path, req.format, req.semantic_colors, req.resolution,
                                            req.density_threshold)
            resp.written_path, resp.vertex_count, resp.face_count = path, nv, nf
            return f"wrote {nv} vertices, {nf} faces to {path} ({self._export_seconds:.1f} s)"
        return self._serve("export_mesh", resp, "export failed", action)

    def _srv_export_default(self, req, resp):
        def action():
            path, nv, nf = self.export_mesh(semantic_colors=bool(self.values["mesh_semantic_colors"]))
            return f"wrote {nv} vertices, {nf} faces to {path} ({self._export_seconds:.1f} s)"
        return self._serve("export_mesh_default", resp, "export failed", action)

    def _srv_save(self, req, resp):
        target = self._map_file(req.path)

        def action():
            with self._long_op("save_map", target):
                self.mapper.save(target)
            resp.written_path = target
            return f"saved the map to {target}"
        return self._serve("save_map", resp, "save failed", action)

    def _srv_load(self, req, resp):
        source = self._map_file(req.path)

        def action():
            with self._long_op("load_map", source):
                self.mapper.load_state(source)
            self._forget_latest()
            return f"loaded the map from {source}"
        return self._serve("load_map", resp, "load failed (live map unchanged)", action)

    def _forget_latest(self) -> None:
        """After the map was replaced: no render of the old input pose from it."""
        with self._state_lock:
            self._latest = None

    def _srv_reset(self, req, resp):
        def action():
            with self._intake_cond:
                self._intake.clear()
            self.mapper.reset()
            self.sync.clear()
            with self._state_lock:
                self._last_stamp = None
                self._stamps_back = 0
            self._forget_latest()
            return "map reset"
        return self._serve("reset_map", resp, "reset failed", action)

    def _render_frame_id(self, requested: str) -> str:
        """frame_id of a ~/render_view image: the request's camera_info frame, else the
        latest input camera's (kept across reset_map / load_map), else
        :data:`RENDER_FRAME_FALLBACK`; never empty."""
        if requested:
            return requested
        with self._state_lock:
            return self._camera_frame_id or RENDER_FRAME_FALLBACK

    def _srv_render(self, req, resp):
        def action():
            if not self._mapper_has_keyframes():
                raise RuntimeError("map has no keyframes yet (nothing to render: stream input first, "
                                   "or ~/load_map a saved map)")
            world = self.values["world_frame"]
            frame = req.pose.header.frame_id
            if frame and frame.lstrip("/") != world.lstrip("/"):
                raise ValueError(f"pose is in frame '{frame}' but the map is in '{world}'")
            pose = convert.pose_from_pose_stamped(req.pose, "optical")
            info = req.camera_info
            if int(info.width) == 0 and int(info.height) == 0 and not any(info.k):
                with self._state_lock:
                    latest = self._latest
                    intr = latest[1] if latest is not None else self._camera_intrinsics
                if intr is None:
                    raise ValueError("camera_info is all zero and no input camera is known yet")
            else:
                intr = convert.intrinsics_from_camera_info(info)
            scale = float(req.scale) if req.scale > 0 else 1.0
            header = Header(stamp=req.pose.header.stamp, frame_id=self._render_frame_id(info.header.frame_id))
            imgs = self.render_images(pose, intr, header, scale)
            for key in ("semantic", "semantic_color", "rgb", "depth", "uncertainty"):
                setattr(resp, key, imgs[key])
            return f"rendered {imgs['semantic'].width}x{imgs['semantic'].height}"
        return self._serve("", resp, "render failed", action)  # frequent: not logged

    def _srv_status(self, req, resp):
        resp.status = self.status_message()
        return resp

    def _log_service(self, name: str, resp) -> None:
        if resp.success:
            self._node_log().info(f"{name}: {resp.message}")
        elif resp.message.startswith("cancelled"):
            self._node_log().warning(f"{name}: {resp.message}")
        else:
            self._node_log().error(f"{name}: {resp.message}")

    # ================================================================ shutdown
    def begin_shutdown(self, reason: str) -> list:
        """First step of a shutdown (a signal): cancel running mesh extractions
        (they stop within about a second), stop accepting frames, ask the
        training thread to stop, and log what is cancelled or waited for.
        Returns the long work that was running."""
        self._shutdown_reason = reason
        work = self.running_work()
        log = self._node_log()
        if not work:
            log.info(f"{reason}: shutting down")
        for name, detail, took in work:
            if name in ("export_mesh", "mesh markers"):
                what = f"{detail}: nothing will be written" if name == "export_mesh" else "no markers"
                log.warning(f"{reason}: shutting down; cancelling {name} (running {took:.1f} s; {what})")
            else:
                log.warning(f"{reason}: shutting down; waiting for {name} {detail} to finish "
                            f"(running {took:.1f} s)")
        self._cancel.set()
        with self._intake_cond:
            self._intake.clear()
        try:
            self.mapper.stop(timeout=0.0)   # ask now; close() waits for it
        except Exception:  # noqa: BLE001
            pass
        return work

    def wait_for_work(self, timeout: float) -> list:
        """Wait up to ``timeout`` s for the long work to end; returns what is still running."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            work = self.running_work()
            if not work:
                return []
            time.sleep(0.02)
        return self.running_work()

    def close(self, stop_timeout: float = 3.0, log=None) -> None:
        """Stop training (waiting at most ``stop_timeout`` s) and, with
        ``save_on_shutdown``, save the map to ``map_path``.  Idempotent.
        ``log``: the logger to use (default the node's)."""
        if self._closed:
            return
        self._closed = True
        log = log or self.get_logger()
        self._cancel.set()
        with self._intake_cond:
            self._intake_stop = True
            self._intake.clear()
            self._intake_cond.notify_all()
        t0 = time.monotonic()
        try:
            if not self.mapper.stop(timeout=stop_timeout):
                log.warning(f"the training thread did not stop within {stop_timeout} s")
            else:
                log.info(f"training stopped ({time.monotonic() - t0:.2f} s)")
        except Exception as exc:  # noqa: BLE001
            log.error(f"stopping the training thread failed: {exc}")
        self._intake_thread.join(timeout=1.0)
        if self.values.get("save_on_shutdown"):
            target = str(Path(os.path.expanduser(self.values["map_path"])).absolute())
            t0 = time.monotonic()
            try:
                self.mapper.save(target)
                log.info(f"saved the map to {target} ({time.monotonic() - t0:.2f} s)")
            except Exception as exc:  # noqa: BLE001
                log.error(f"saving the map to {target} on shutdown failed: {exc}")


def _accepts(fn, name: str) -> bool:
    """Whether callable ``fn`` takes a keyword argument ``name``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind == p.VAR_KEYWORD for p in params)


def _points(points: np.ndarray) -> list:
    from geometry_msgs.msg import Point

    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in p]


def _colors(colors: np.ndarray) -> list:
    from std_msgs.msg import ColorRGBA

    c = np.asarray(colors)
    if c.dtype == np.uint8 or (c.size and c.max() > 1.0):
        c = c.astype(np.float32) / 255.0
    c = c.reshape(len(c), -1)
    if c.shape[1] == 3:
        c = np.concatenate([c, np.ones((len(c), 1), np.float32)], axis=1)
    return [ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a)) for r, g, b, a in c]


class ShutdownSignals:
    """SIGINT / SIGTERM of the node process (rclpy's own handlers are not installed, so
    the context stays valid and every shutdown line still reaches /rosout):

    * while the node is starting, the first signal raises ``KeyboardInterrupt``
      (start-up abandoned, exit code 0);
    * once it runs, the first signal sets :attr:`requested`: the spin loop ends and the
      orderly shutdown begins (running mesh extractions are cancelled within about a
      second, training stops, ``save_on_shutdown`` saves);
    * a second signal is never ignored: it is logged and the shutdown skips what is
      left (no waiting, no save; inside a write it raises ``KeyboardInterrupt``, and the
      atomic writer removes its temporary file), exit code 130.  ``ros2 launch`` sends
      SIGINT, then SIGTERM 5 s later and SIGKILL 5 s after that.
    """

    def __init__(self):
        self.requested = threading.Event()
        self.first = ""
        self.count = 0
        self.running = False        # the node is up (first signal: orderly shutdown)
        self.shutting_down = False  # the shutdown sequence runs (another signal: interrupt it)
        self.forced = False
        self._previous: dict = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self.handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def handle(self, signum, _frame=None) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        if self.count == 1:
            self.first = name
            self.requested.set()
            if not self.running:
                raise KeyboardInterrupt
            return
        self.forced = True
        rclpy.logging.get_logger(f"{NODE_NAME}.shutdown").warning(
            f"{name} again (signal {self.count}): stopping now, without waiting for running work or "
            f"saving the map")
        if self.shutting_down or not self.running:
            raise KeyboardInterrupt


def main(argv: Optional[list] = None, fast_exit: bool = True) -> int:
    """Entry point (``ros2 run semnerf_ros semnerf_node``, ``python -m semnerf_ros.ros.node``).

    Exit code: 0 after a clean shutdown, 2 when a parameter value or the parameter
    file is rejected at start-up, 130 when a second signal cut the shutdown short.
    Shutdown (SIGINT / SIGTERM, see :class:`ShutdownSignals` and docs/node.md): a
    running mesh export or marker extraction is cancelled at its next chunk (about a
    second; the response says nothing was written, and the atomic writer leaves no
    partial file), ``save_map`` / ``load_map`` in progress get up to
    :data:`SHUTDOWN_WAIT_S` s, training stops (3 s at most), ``save_on_shutdown``
    saves; everything is logged through the live node (no rosout errors).  With
    ``fast_exit`` (default) the process then ends with ``os._exit`` once everything is
    stopped, saved and flushed, skipping the interpreter's teardown of torch (1-2 s on
    a busy CPU); ``fast_exit=False`` returns the code instead.
    """
    args = sys.argv if argv is None else [sys.argv[0]] + list(argv)
    quiet_log = rclpy.logging.get_logger(f"{NODE_NAME}.shutdown")
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # noqa: BLE001 - rcl's RCLError: unreadable --params-file, bad --ros-args
        rclpy.logging.get_logger(NODE_NAME).error(
            f"invalid arguments or parameter file: {exc} (check the YAML syntax of --params-file "
            f"and the --ros-args)")
        return _finish(2, fast_exit)
    signals = ShutdownSignals()
    signals.install()
    try:
        node = SemNerfNode(on_ready=lambda: setattr(signals, "running", True))
    except ParameterValueError as exc:
        rclpy.logging.get_logger(NODE_NAME).error(f"invalid parameters: {exc}")
        rclpy.try_shutdown()
        return _finish(2, fast_exit)
    except (ExternalShutdownException, KeyboardInterrupt):
        quiet_log.info(f"stopped while starting ({signals.first or 'interrupted'})")
        rclpy.try_shutdown()
        return _finish(0, fast_exit)
    executor = MultiThreadedExecutor(num_threads=6)
    executor.add_node(node)
    code = 0
    try:
        # spin in short slices so that the Python signal handler runs promptly
        while not signals.requested.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
    t0 = time.monotonic()
    signals.shutting_down = True
    log = node.get_logger() if rclpy.ok() else quiet_log
    try:
        node.begin_shutdown(signals.first or "shutdown")
        if not signals.forced:
            for name, detail, took in node.wait_for_work(SHUTDOWN_WAIT_S):
                log.warning(f"leaving {name} {detail} behind: still running {took:.1f} s after the signal")
        if signals.forced and node.values.get("save_on_shutdown"):
            node.values["save_on_shutdown"] = False
            log.warning("save_on_shutdown skipped: a second signal asked to stop now")
        node.close(log=log)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
    except KeyboardInterrupt:
        code = 130
        left = ", ".join(f"{n} {d}".strip() for n, d, _ in node.running_work()) or "nothing"
        quiet_log.warning(f"shutdown cut short by a second signal; left running: {left} (an atomic write "
                          f"in progress leaves no partial file)")
    finally:
        signals.restore()
        rclpy.try_shutdown()
        quiet_log.info(f"stopped in {time.monotonic() - t0:.2f} s")
    return _finish(code, fast_exit)


def _finish(code: int, fast_exit: bool) -> int:
    if not fast_exit:
        return code
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
