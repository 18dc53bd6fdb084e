"""The ROS node's parameters: one table (name, type, default, unit, range,
choices, whether it may change at run time) used to declare them with
descriptors, to validate values at start-up and at run time, to build the
engine configuration, to document them (:func:`markdown_table`) and to write the parameter
files (:func:`params_yaml`; config/semnerf.yaml and config/semnerf_cpu.yaml are generated:
``python -m semnerf_ros.cli.params_files``).  Defaults are written once: here, or -- for the
parameters that set engine keys -- in ``semnerf_ros/engine/config.py``.  No rclpy import here.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..engine.config import DEFAULTS
from ..engine.geometry import Intrinsics, IntrinsicsError

#: the engine's defaults for the parameters that set engine keys (engine_overrides): written once,
#: in semnerf_ros/engine/config.py
_MAPPER = DEFAULTS["mapper"]


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter.

    ``kind`` is ``bool | int | double | string | string_array``; ``low``/``high``
    bound numbers (inclusive); ``choices`` lists the allowed strings;
    ``read_only`` parameters are fixed once the node runs.
    """

    name: str
    kind: str
    default: Any
    description: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[tuple] = None
    read_only: bool = True


PARAMS: tuple[ParamSpec, ...] = (
    # -- map / engine (fixed at start-up)
    ParamSpec("num_classes", "int", 0, "class ids in the map, void (0) included; 0 = len(class_names)",
              0, 65536),
    ParamSpec("class_names", "string_array", [], "class names by id (index 0 = void); optional"),
    ParamSpec("world_frame", "string", "map", "frame of the input poses (with pose_source tf: the fixed "
              "frame camera poses are looked up in) and of the mesh markers"),
    ParamSpec("engine_config", "string", "", "engine YAML (seed layout) merged onto the defaults; "
              "the parameters below override its keys; a relative name not found in the working "
              "directory is looked up in the package's config/ folder; empty = the defaults for the "
              "device (on a CPU: config/engine_cpu.yaml, the CPU profile)"),
    ParamSpec("model_type", "string", "hash", "field: hash (fast, online) or nerf (the paper's MLPs)",
              choices=("hash", "nerf")),
    ParamSpec("device", "string", DEFAULTS["experiment"]["device"], "training device: auto, cpu, cuda or cuda:N"),
    ParamSpec("engine_location", "string", "auto", "where the engine (training, views, meshes) runs: node (in "
              "the node's process), process (in a process of its own, so the ROS threads do not share the "
              "interpreter lock with training) or auto (its own process on a GPU, the node's on a CPU); see "
              "docs/architecture.md", choices=("node", "process", "auto")),
    ParamSpec("max_keyframes", "int", _MAPPER["max_keyframes"], "replay buffer bound (keyframes)", 1, 100000),
    ParamSpec("keyframe_min_translation", "double", _MAPPER["min_translation"],
              "metres from every buffered keyframe that make a frame a new view (with the turn and overlap "
              "tests)", 0.0, 100.0),
    ParamSpec("keyframe_min_rotation_deg", "double", _MAPPER["min_rotation_deg"],
              "degrees turned from every buffered keyframe that make a frame a new view", 0.0, 180.0),
    ParamSpec("keyframe_max_overlap", "double", _MAPPER["max_overlap"],
              "view overlap with a nearby buffered keyframe from which a frame counts as a revisit (not "
              "kept)", 0.0, 1.0),
    ParamSpec("max_steps_per_second", "double", _MAPPER["max_steps_per_second"],
              "training-thread throttle in steps/s (0 = as fast as possible)", 0.0, 100000.0),
    ParamSpec("load_on_start", "bool", False, "load map_path at start-up (fails start-up if unreadable)"),
    # -- inputs (fixed)
    ParamSpec("use_camera_info", "bool", True,
              "intrinsics from the camera_info topic (false: from fx, fy, cx, cy, width, height)"),
    ParamSpec("fx", "double", 0.0, "focal length x (px) when use_camera_info is false", 0.0, 1e6),
    ParamSpec("fy", "double", 0.0, "focal length y (px) when use_camera_info is false", 0.0, 1e6),
    ParamSpec("cx", "double", 0.0, "principal point x (px) when use_camera_info is false", -1e6, 1e6),
    ParamSpec("cy", "double", 0.0, "principal point y (px) when use_camera_info is false", -1e6, 1e6),
    ParamSpec("width", "int", 0, "image width (px) when use_camera_info is false", 0, 100000),
    ParamSpec("height", "int", 0, "image height (px) when use_camera_info is false", 0, 100000),
    ParamSpec("pose_type", "string", "pose_stamped",
              "pose topic type: pose_stamped (geometry_msgs/PoseStamped) or odometry (nav_msgs/Odometry)",
              choices=("pose_stamped", "odometry")),
    ParamSpec("pose_source", "string", "topic",
              "where camera poses come from: topic (the pose input, pose_type) or tf (world_frame -> "
              "camera_frame looked up in /tf and /tf_static at each image's stamp, interpolated)",
              choices=("topic", "tf")),
    ParamSpec("camera_frame", "string", "",
              "pose_source tf: the camera frame looked up in TF; empty = each image's header.frame_id"),
    ParamSpec("tf_timeout", "double", 0.5,
              "pose_source tf: seconds an image set waits for a transform that has not arrived yet "
              "before it is dropped (counted as tf_future or tf_missing); 0 = no waiting", 0.0, 60.0),
    ParamSpec("tf_cache_time", "double", 10.0,
              "pose_source tf: seconds of /tf history kept for lookups (older stamps: tf_past)", 0.1, 3600.0),
    ParamSpec("pose_convention", "string", "auto",
              "camera axes of the input pose: optical (x right, y down, z forward), body (REP 103: x "
              "forward, y left, z up) or auto (a pose topic: optical; a TF frame: optical when its name "
              "contains 'optical', as REP 105's *_optical_frame, else body)",
              choices=("auto", "optical", "body")),
    ParamSpec("use_depth", "bool", False, "subscribe to depth (16UC1 mm or 32FC1 m) and sync it"),
    ParamSpec("qos", "string", "sensor_data", "input QoS: sensor_data (best effort) or reliable",
              choices=("sensor_data", "reliable")),
    ParamSpec("qos_depth", "int", 10, "input subscription queue depth", 1, 1000),
    ParamSpec("queue_size", "int", 10, "synchronizer queue per input (messages)", 1, 1000),
    ParamSpec("slop", "double", 0.02, "largest stamp spread of a synchronized set (s)", 0.0, 10.0),
    ParamSpec("max_stamp_age", "double", 0.0,
              "reject sets whose stamp is older than now minus this (s); 0 = off", 0.0, 1e9),
    ParamSpec("max_future", "double", 0.0,
              "reject sets whose stamp is ahead of now by more than this (s); 0 = off", 0.0, 1e9),
    ParamSpec("input_timeout", "double", 5.0,
              "seconds without a synchronized set after which the node names the inputs that have no "
              "publisher, send nothing, or never synchronize (with the stamp skew seen); 0 = off",
              0.0, 3600.0, read_only=False),
    ParamSpec("diagnostics_rate", "double", 1.0, "rate of /diagnostics (diagnostic_msgs/DiagnosticArray, Hz); "
              "0 = off", 0.0, 100.0, read_only=False),
    ParamSpec("diag_min_input_rate", "double", 1.0,
              "/diagnostics: an input slower than this (Hz) is a WARN; 0 = off", 0.0, 1000.0, read_only=False),
    ParamSpec("diag_max_drop_fraction", "double", 0.5,
              "/diagnostics: WARN when more than this fraction of a period's input is dropped or rejected "
              "(ERROR when every set is rejected)", 0.0, 1.0, read_only=False),
    ParamSpec("diag_min_training_rate", "double", 1.0,
              "/diagnostics: WARN when training runs slower than this (it/s) with keyframes; 0 = off",
              0.0, 100000.0, read_only=False),
    ParamSpec("diag_gpu_memory_warn_mb", "double", 0.0,
              "/diagnostics: WARN at this much peak GPU memory (MB); 0 = off", 0.0, 1e7, read_only=False),
    ParamSpec("diag_gpu_memory_error_mb", "double", 0.0,
              "/diagnostics: ERROR at this much peak GPU memory (MB); 0 = off", 0.0, 1e7, read_only=False),
    # -- outputs (may change at run time)
    ParamSpec("training_enabled", "bool", True, "run the background training thread (false pauses it)",
              read_only=False),
    ParamSpec("publish_rate", "double", 2.0,
              "rate (Hz) of the rendered images from the latest synced pose, on slots 1/rate apart: one set "
              "per new input stamp, never the same stamp twice, each started within 10 ms of its input's "
              "arrival (a due slot waits up to 50 ms for a new input); 0 = off", 0.0, 100.0,
              read_only=False),
    ParamSpec("render_scale", "double", 0.5, "resolution of the rendered images relative to the input",
              0.01, 4.0, read_only=False),
    ParamSpec("mesh_period", "double", 10.0, "seconds between ~/mesh marker updates; 0 = off", 0.0, 1e6,
              read_only=False),
    ParamSpec("mesh_resolution", "int", 128, "marching-cubes cells along the longest scene side", 8, 1024,
              read_only=False),
    ParamSpec("mesh_max_triangles", "int", 60000, "triangles per mesh marker (TRIANGLE_LIST chunk) at most",
              1, 10000000, read_only=False),
    ParamSpec("mesh_max_faces", "int", 100000,
              "decimate the marker mesh to at most this many triangles (0 = keep all)", 0, 100000000,
              read_only=False),
    ParamSpec("mesh_decimation", "string", "cluster",
              "how the marker mesh is decimated: cluster (vertex clustering: 0.24 s for 1 M faces on 2 cores), "
              "quadric (Open3D's quadric decimation: smoother shapes, 9 s), auto (quadric where Open3D imports)",
              choices=("cluster", "quadric", "auto"), read_only=False),
    ParamSpec("mesh_density_threshold", "double", 0.0, "iso-level on density (1/m); 0 = engine default",
              0.0, 1e6, read_only=False),
    ParamSpec("mesh_semantic_colors", "bool", True,
              "colour the mesh markers by class (false: by rendered colour)", read_only=False),
    ParamSpec("mesh_observed_only", "bool", True,
              "keep only the mesh faces a keyframe saw (on its depth; without depth, on a depth rendered "
              "from the map): removes floaters and unconstrained surfaces", read_only=False),
    ParamSpec("status_rate", "double", 1.0, "rate of ~/status (Hz); 0 = off", 0.0, 100.0, read_only=False),
    ParamSpec("log_period", "double", 10.0,
              "seconds between one-line progress logs (training rate, keyframes, messages received, "
              "frames synced/rejected, images published, intake queue, lock waits, label votes, GPU memory); "
              "0 = off", 0.0, 1e6,
              read_only=False),
    ParamSpec("export_path", "string", "semnerf_mesh.ply",
              "mesh file written by ~/export_mesh_default and by ~/export_mesh with an empty path",
              read_only=False),
    ParamSpec("map_path", "string", "semnerf_map.pt",
              "map file for ~/save_map and ~/load_map with an empty path, save_on_shutdown and "
              "load_on_start", read_only=False),
    ParamSpec("save_on_shutdown", "bool", False, "save the map to map_path when the node stops",
              read_only=False),
    ParamSpec("warn_period", "double", 5.0, "seconds between repeated warnings of one kind",
              0.0, 3600.0, read_only=False),
)

SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMS}

#: what to do when the class count is not given (there is no sane default: it is the
#: number of class ids of the user's segmentation)
NUM_CLASSES_HINT = (
    "parameter 'num_classes' is not set (0) and 'class_names' is empty: the node needs the number of "
    "class ids your segmentation publishes, void (0) included. For example: "
    "ros2 run semnerf_ros semnerf_node --ros-args -p num_classes:=18 "
    "(or --params-file config/semnerf.yaml, set for the built-in room and its demo bag; "
    "config/semnerf_cpu.yaml on a machine without a GPU)")


def package_config_dirs() -> list[Path]:
    """Where the package's config/ folder may be: beside the Python package (source
    checkout, editable install), in the ament share folder (colcon install), under
    ``sys.prefix/share`` (pip install)."""
    dirs = [Path(__file__).resolve().parents[2] / "config"]
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("semnerf_ros")) / "config")
    except Exception:  # noqa: BLE001 - no ament index (pip path) or the package is not in it
        pass
    dirs.append(Path(sys.prefix) / "share" / "semnerf_ros" / "config")
    return dirs


def find_config_file(name: str) -> Optional[Path]:
    """``name`` as given when it exists (absolute, or relative to the working
    directory), else the file of that name (or relative path, e.g.
    ``config/engine_cpu.yaml``) in the package's config folder; None if absent."""
    p = Path(os.path.expanduser(name))
    if p.is_file():
        return p.absolute()
    if p.is_absolute():
        return None
    for d in package_config_dirs():
        for candidate in (d / p, d / p.name):
            if candidate.is_file():
                return candidate
    return None


class ParameterValueError(ValueError):
    """A parameter value the node cannot run with (the message names it)."""


def check_value(spec: ParamSpec, value: Any) -> Optional[str]:
    """None if ``value`` suits ``spec``, else a message naming the parameter."""
    k = spec.kind
    if k == "bool":
        ok = isinstance(value, bool)
    elif k == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif k == "double":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif k == "string":
        ok = isinstance(value, str)
    elif k == "string_array":
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    else:  # pragma: no cover - table error
        raise AssertionError(f"unknown parameter kind {k}")
    if not ok:
        return f"parameter '{spec.name}' must be a {k}, got {value!r}"
    if k in ("int", "double"):
        if not math.isfinite(float(value)):
            return f"parameter '{spec.name}' must be finite, got {value!r}"
        if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
            return f"parameter '{spec.name}' = {value!r} is outside [{spec.low}, {spec.high}]"
    if spec.choices is not None and value not in spec.choices:
        return f"parameter '{spec.name}' = {value!r} must be one of {', '.join(spec.choices)}"
    return None


def check_values(values: dict) -> list[str]:
    """All problems of a full set of values (single values and combinations)."""
    errors = [e for name, v in values.items() if name in SPECS
              for e in [check_value(SPECS[name], v)] if e]
    if errors:
        return errors
    names = list(values.get("class_names") or [])
    n = int(values.get("num_classes", 0))
    if n == 0 and not names:
        errors.append(NUM_CLASSES_HINT)
    elif n and names and len(names) != n:
        errors.append(f"parameter 'class_names' has {len(names)} names but 'num_classes' is {n}")
    elif (n or len(names)) < 2:
        errors.append("parameter 'num_classes' must be >= 2 (void plus at least one class)")
    if not values.get("use_camera_info", True):
        for key in ("fx", "fy", "width", "height"):
            if not values.get(key, 0) > 0:
                errors.append(f"parameter '{key}' must be > 0 when use_camera_info is false")
    if not values.get("world_frame"):
        errors.append("parameter 'world_frame' must not be empty")
    return errors


def camera_from_values(values: dict) -> Optional[Intrinsics]:
    """The camera given by ``fx, fy, cx, cy, width, height`` when ``use_camera_info`` is false
    (else None: it comes from the camera_info topic)."""
    if values["use_camera_info"]:
        return None
    v = values
    try:
        return Intrinsics(v["fx"], v["fy"], v["cx"], v["cy"], v["width"], v["height"])
    except IntrinsicsError as exc:
        raise ParameterValueError(f"parameters fx, fy, cx, cy, width, height: {exc}") from exc


def num_classes_of(values: dict) -> int:
    return int(values.get("num_classes") or len(values.get("class_names") or []))


def engine_overrides(values: dict) -> dict:
    """The engine-config keys the node's parameters set (nested, for
    ``config.load_config(path, overrides)``)."""
    return {
        "experiment": {"device": values["device"]},
        "model": {"type": values["model_type"]},
        "mapper": {
            "max_keyframes": int(values["max_keyframes"]),
            "min_translation": float(values["keyframe_min_translation"]),
            "min_rotation_deg": float(values["keyframe_min_rotation_deg"]),
            "max_overlap": float(values["keyframe_max_overlap"]),
            "max_steps_per_second": float(values["max_steps_per_second"]),
        },
    }


def markdown_table() -> str:
    """The parameter table as Markdown (for the docs)."""
    rows = ["| name | type | default | range / choices | run-time | description |",
            "|---|---|---|---|---|---|"]
    for p in PARAMS:
        rng = ", ".join(p.choices) if p.choices else (
            f"[{p.low:g}, {p.high:g}]" if p.low is not None else "")
        rows.append(f"| `{p.name}` | {p.kind} | `{p.default!r}` | {rng} | "
                    f"{'no' if p.read_only else 'yes'} | {p.description} |")
    return "\n".join(rows)


#: headings of the parameter file, placed before the parameter they name
YAML_SECTIONS = {
    "num_classes": "Map and engine (fixed while the node runs)",
    "use_camera_info": "Inputs (fixed while the node runs)",
    "input_timeout": "Diagnostics (may be changed at run time)",
    "training_enabled": "Outputs and files (may be changed at run time: ros2 param set /semnerf_node NAME VALUE)",
}


def _yaml_value(spec: ParamSpec, value: Any) -> str:
    if spec.kind == "bool":
        return "true" if value else "false"
    if spec.kind == "double":
        return repr(float(value))
    if spec.kind == "int":
        return str(int(value))
    if spec.kind == "string_array":
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return f'"{value}"'


def params_yaml(values: dict, header: str, comments: Optional[dict] = None) -> str:
    """A ``--params-file`` for every parameter of the table: ``values`` where given, else the
    default, each with its description (or ``comments[name]``) as a comment; ``header``: the
    file's opening comment lines.  Applies whatever the node is named (``/**``)."""
    unknown = set(values) - set(SPECS)
    if unknown:
        raise ValueError(f"not node parameters: {sorted(unknown)}")
    lines = [header.rstrip("\n"), "/**:", "  ros__parameters:"]
    for spec in PARAMS:
        if spec.name in YAML_SECTIONS:
            lines.append(f"    # --- {YAML_SECTIONS[spec.name]}")
        value = values.get(spec.name, spec.default)
        err = check_value(spec, value)
        if err:
            raise ValueError(err)
        entry = f"    {spec.name}: {_yaml_value(spec, value)}"
        comment = (comments or {}).get(spec.name, spec.description)
        lines.append(f"{entry:<40}# {comment}" if len(entry) < 40 else f"{entry}  # {comment}")
    return "\n".join(lines) + "\n"
