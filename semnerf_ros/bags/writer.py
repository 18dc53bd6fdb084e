"""Write a Replica-layout scene as a rosbag2 (MCAP or SQLite3) with ``rosbags``.

No rclpy here (the scene generator CLI imports this module): messages are
built and CDR-serialised with rosbags' ROS 2 typestore.

Topics (one message each per frame, ``rate_hz`` frames per second)::

    /camera/color/image_raw     sensor_msgs/msg/Image         rgb8
    /camera/color/camera_info   sensor_msgs/msg/CameraInfo    same stamp as the image
    /camera/pose                geometry_msgs/msg/PoseStamped camera-to-world in world_frame, optical axes
                                (pose_source "topic", the default), or instead (pose_source "tf"):
    /tf                         tf2_msgs/msg/TFMessage        world_frame -> camera_link (REP 103 body axes)
    /tf_static                  tf2_msgs/msg/TFMessage        camera_link -> <frame_id> (the optical frame), once
    /segmentation/labels        sensor_msgs/msg/Image         mono8 (mono16 above 256 classes), noisy
    /camera/depth/image_raw     sensor_msgs/msg/Image         16UC1 millimetres (include_depth)
    /segmentation/labels_gt     sensor_msgs/msg/Image         ground truth, stamped like the image (include_gt)

Timing: frame ``i`` is captured at ``start_time + i / rate_hz``; every topic
except camera_info (which copies the image stamp, as drivers do) and the
ground truth (stamped like the image, so it pairs exactly with the node's
outputs) gets its own independent uniform stamp jitter in
``[-jitter_ms, +jitter_ms]``, so the streams need an approximate synchronizer.
The bag's log time of a message is its receive time: stamp plus a per-topic
latency (:data:`TOPIC_LATENCY_S`) plus up to 1 ms of random delay; messages are
written in receive-time order.  The bag's ``custom_data`` holds
``semnerf.class_names`` (JSON), ``semnerf.num_classes``, the noise model and seed.

The bag is written into a hidden temporary folder beside ``bag_path`` and moved
into place when complete (:func:`move_bag`), its data file named as ``ros2 bag
record`` names it: ``<bag folder name>_0.mcap`` (or ``.db3``).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from .. import tasks
from ..bridge.convert import numpy_to_image
from ..datasets import detect_kind, load_dataset
from ..datasets.replica import read_intrinsics_file
from ..engine.geometry import (
    BODY_FROM_OPTICAL,
    body_from_optical_pose,
    position_quaternion_from_pose,
    validate_pose,
)
from .reader import typestore

STORAGES = ("mcap", "sqlite3")
NOISE_MODELS = ("pixel", "region", "segmentation", "none")

TOPIC_RGB = "/camera/color/image_raw"
TOPIC_INFO = "/camera/color/camera_info"
TOPIC_POSE = "/camera/pose"
TOPIC_LABELS = "/segmentation/labels"
TOPIC_DEPTH = "/camera/depth/image_raw"
TOPIC_LABELS_GT = "/segmentation/labels_gt"
TOPIC_TF = "/tf"
TOPIC_TF_STATIC = "/tf_static"
#: the camera's body frame (REP 103: x forward, y left, z up) the bag's /tf moves (pose_source "tf")
CAMERA_BODY_FRAME = "camera_link"
POSE_SOURCES = ("topic", "tf")

#: Simulated transport + processing latency per topic (s): the segmentation
#: network is the slowest, the pose estimate the fastest.
TOPIC_LATENCY_S = {TOPIC_RGB: 0.004, TOPIC_INFO: 0.004, TOPIC_POSE: 0.002, TOPIC_LABELS: 0.020,
                   TOPIC_DEPTH: 0.006, TOPIC_LABELS_GT: 0.021, TOPIC_TF: 0.002, TOPIC_TF_STATIC: 0.0}
#: Default capture time of the first frame (seconds since the epoch, 2023-11-14).
DEFAULT_START_TIME = 1_700_000_000.0


class BagWriteError(ValueError):
    """Arguments or a scene that cannot be written as a bag."""


def _load_scene(scene_dir):
    """Every frame at the files' own resolution.  When a Replica-layout scene
    names all its classes (``intrinsics.json`` ``class_names``, as the built-in
    synthetic room does) the file ids are kept, so the bag's ids are the
    scene's class ids; otherwise they are remapped to the ids present (the
    seed's rule) and the bag's ``custom_data`` holds the names."""

    options = {"progress": False}
    if detect_kind(scene_dir) == "replica":
        names = read_intrinsics_file(Path(scene_dir) / "intrinsics.json").get("class_names")
        if isinstance(names, list) and names:
            options["class_ids"] = list(range(len(names)))
    return load_dataset(scene_dir, width=None, height=None, train_step=1, test_offset=0, **options)


def noisy_labels(labels: np.ndarray, instances: Optional[np.ndarray], num_classes: int, noise: str,
                 noise_ratio: float, rng: np.random.Generator,
                 class_names: Optional[list] = None) -> tuple[np.ndarray, dict]:
    """The label stream's corruption, :func:`semnerf_ros.tasks.corrupt_labels` (frames in
    bag order, i.e. along the trajectory):

    * ``pixel``: ``noise_ratio`` of the non-void pixels of every frame get a random
      valid class;
    * ``region``: every instance of the scene is flipped to a wrong class in
      ``noise_ratio`` of the frames showing it (spread evenly over its area-sorted views);
    * ``segmentation``: errors like a segmentation network's at strength
      ``noise_ratio`` (missed thin objects, confused similar classes by name,
      bleeding boundaries, false blobs, persistent over consecutive frames);
    * ``none``: the ground truth.
    """

    if noise not in NOISE_MODELS:
        raise BagWriteError(f"noise must be one of {NOISE_MODELS}, got {noise!r}")
    if noise == "region" and instances is None:
        raise BagWriteError("noise='region' needs instance images (semantic_instance/), "
                            "which this scene does not have")
    try:
        noisy, info = tasks.corrupt_labels(labels, noise, noise_ratio, num_classes, rng, instances=instances,
                                           class_names=class_names)
    except tasks.TaskError as exc:
        raise BagWriteError(str(exc)) from exc
    info.pop("confusion", None)
    return noisy, info


def move_bag(src, dst) -> Path:
    """Move the rosbag2 folder ``src`` to ``dst`` (must not exist), renaming its storage
    files after the new folder as ``ros2 bag record`` does (``<dst name>_<i>.<ext>``)
    and updating ``metadata.yaml`` to match.  Returns ``dst``."""

    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise BagWriteError(f"bag path already exists: {dst}")
    meta_path = src / "metadata.yaml"
    if not meta_path.is_file():
        raise BagWriteError(f"not a rosbag2 folder (no metadata.yaml): {src}")
    meta = yaml.safe_load(meta_path.read_text())
    info = meta["rosbag2_bagfile_information"]
    renames = {}
    for i, rel in enumerate(info.get("relative_file_paths") or []):
        name = Path(rel).name
        parts = Path(name).suffixes
        suffix = "".join(parts[-2:]) if parts and parts[-1] == ".zstd" else (parts[-1] if parts else "")
        new = f"{dst.name}_{i}{suffix}"
        if new != name:
            renames[name] = new
    for old, new in renames.items():
        os.replace(src / old, src / new)
    if renames:
        info["relative_file_paths"] = [renames.get(Path(r).name, r) for r in info["relative_file_paths"]]
        for f in info.get("files") or []:
            f["path"] = renames.get(Path(f["path"]).name, f["path"])
        tmp = meta_path.with_name(".metadata.yaml.tmp")
        tmp.write_text(yaml.safe_dump(meta, sort_keys=False, default_flow_style=False))
        os.replace(tmp, meta_path)
    os.replace(src, dst)
    return dst


def write_scene_bag(scene_dir, bag_path, storage: str = "mcap", rate_hz: float = 30.0,
                    noise: str = "pixel", noise_ratio: float = 0.5, seed: int = 0,
                    jitter_ms: float = 3.0, frame_id: str = "camera_color_optical_frame",
                    world_frame: str = "map", include_depth: bool = True, include_gt: bool = True,
                    start_time: float = DEFAULT_START_TIME, progress: bool = True,
                    pose_source: str = "topic") -> dict:
    """Write the scene in ``scene_dir`` (Replica layout) to a new rosbag2
    folder ``bag_path`` (must not exist; written aside and moved into place, its data
    file ``<folder name>_0.<ext>``).  ``noise``: ``pixel``, ``region``, ``segmentation``
    or ``none`` at ``noise_ratio`` (the strength, see :func:`noisy_labels`).  Returns a
    summary dict: ``path``, ``frames``, ``topics`` ({topic: count}), ``num_classes``,
    ``class_names``, ``noise_info`` (the tasks module's statistics).  ``pose_source``: ``topic``
    writes the camera pose as PoseStamped on /camera/pose; ``tf`` writes it as TF instead (a
    robot's way): /tf world_frame -> camera_link at each frame's pose stamp, /tf_static
    camera_link -> ``frame_id`` once, so that world_frame -> ``frame_id`` is the optical pose."""

    if pose_source not in POSE_SOURCES:
        raise BagWriteError(f"pose_source must be one of {POSE_SOURCES}, got {pose_source!r}")
    if storage not in STORAGES:
        raise BagWriteError(f"storage must be one of {STORAGES}, got {storage!r}")
    if noise not in NOISE_MODELS:
        raise BagWriteError(f"noise must be one of {NOISE_MODELS}, got {noise!r}")
    if not rate_hz > 0:
        raise BagWriteError(f"rate_hz must be positive, got {rate_hz}")
    if not 0.0 <= float(noise_ratio) <= 1.0:
        raise BagWriteError(f"noise_ratio must lie in [0, 1], got {noise_ratio}")
    if not 0 <= jitter_ms < 500.0 / rate_hz:
        raise BagWriteError(f"jitter_ms must lie in [0, half the frame period = {500.0 / rate_hz:.1f}), "
                            f"got {jitter_ms}")
    bag_path = Path(bag_path)
    if bag_path.exists():
        raise BagWriteError(f"bag path already exists: {bag_path}")

    scene = _load_scene(scene_dir)
    n = len(scene)
    num_classes = scene.num_classes
    rng = np.random.default_rng(seed)
    noisy, noise_info = noisy_labels(scene.labels, scene.instances, num_classes, noise, noise_ratio, rng,
                                     class_names=list(scene.class_names))
    label_enc = "mono8" if num_classes <= 256 else "mono16"
    depth = scene.depth if include_depth else None
    if include_depth and depth is None:
        raise BagWriteError(f"include_depth is set but the scene {scene_dir} has no depth images")

    ts = typestore()
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Image, CameraInfo = T["sensor_msgs/msg/Image"], T["sensor_msgs/msg/CameraInfo"]
    Roi = T["sensor_msgs/msg/RegionOfInterest"]
    PoseStamped, Pose = T["geometry_msgs/msg/PoseStamped"], T["geometry_msgs/msg/Pose"]
    Point, Quaternion = T["geometry_msgs/msg/Point"], T["geometry_msgs/msg/Quaternion"]
    TFMessage, TransformStamped = T["tf2_msgs/msg/TFMessage"], T["geometry_msgs/msg/TransformStamped"]
    Transform, Vector3 = T["geometry_msgs/msg/Transform"], T["geometry_msgs/msg/Vector3"]

    def transform(parent: str, child: str, t: float, T_parent_child: np.ndarray):
        p, q = position_quaternion_from_pose(T_parent_child)
        return TransformStamped(header=header(t, parent), child_frame_id=child, transform=Transform(
            translation=Vector3(x=float(p[0]), y=float(p[1]), z=float(p[2])),
            rotation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))

    # camera_link -> optical frame: the fixed REP 103 -> optical rotation
    T_body_optical = np.eye(4)
    T_body_optical[:3, :3] = BODY_FROM_OPTICAL


    def header(t: float, frame: str):
        total = int(round(t * 1e9))
        return Header(stamp=Time(sec=total // 1_000_000_000, nanosec=total % 1_000_000_000), frame_id=frame)

    intr = scene.intrinsics
    K = intr.K
    P = np.zeros((3, 4))
    P[:, :3] = K

    pose_topics = [(TOPIC_POSE, "geometry_msgs/msg/PoseStamped")] if pose_source == "topic" else \
        [(TOPIC_TF, "tf2_msgs/msg/TFMessage"), (TOPIC_TF_STATIC, "tf2_msgs/msg/TFMessage")]
    topics = [(TOPIC_RGB, "sensor_msgs/msg/Image"), (TOPIC_INFO, "sensor_msgs/msg/CameraInfo"),
              *pose_topics, (TOPIC_LABELS, "sensor_msgs/msg/Image")]
    if depth is not None:
        topics.append((TOPIC_DEPTH, "sensor_msgs/msg/Image"))
    if include_gt:
        topics.append((TOPIC_LABELS_GT, "sensor_msgs/msg/Image"))
    jittered = {TOPIC_RGB, TOPIC_POSE, TOPIC_LABELS, TOPIC_DEPTH}
    counts = {t: 0 for t, _ in topics}

    def frame_messages(i: int, base: float):
        """(topic, stamp, message) of frame i."""
        j = {t: (rng.uniform(-jitter_ms, jitter_ms) * 1e-3 if t in jittered else 0.0) for t, _ in topics}
        t_rgb = base + j[TOPIC_RGB]
        hdr = header(t_rgb, frame_id)
        yield TOPIC_RGB, t_rgb, numpy_to_image(scene.rgb[i], "rgb8", hdr, msg_class=Image)
        yield TOPIC_INFO, t_rgb, CameraInfo(
            header=hdr, height=intr.height, width=intr.width, distortion_model="plumb_bob",
            d=np.zeros(5), k=K.reshape(-1).copy(), r=np.eye(3).reshape(-1), p=P.reshape(-1).copy(),
            binning_x=0, binning_y=0, roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
        if pose_source == "tf":
            if i == 0:
                yield TOPIC_TF_STATIC, base - 1.0 / rate_hz, TFMessage(
                    transforms=[transform(CAMERA_BODY_FRAME, frame_id, 0.0, T_body_optical)])
            # the pose at the image's stamp: TF is looked up there (and interpolated between samples)
            T_world_body = body_from_optical_pose(validate_pose(scene.poses[i]))
            yield TOPIC_TF, t_rgb, TFMessage(transforms=[transform(world_frame, CAMERA_BODY_FRAME, t_rgb,
                                                                   T_world_body)])
        else:
            t_pose = base + j[TOPIC_POSE]
            p, q = position_quaternion_from_pose(validate_pose(scene.poses[i]))
            yield TOPIC_POSE, t_pose, PoseStamped(
                header=header(t_pose, world_frame),
                pose=Pose(position=Point(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                          orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))
        t_lab = base + j[TOPIC_LABELS]
        yield TOPIC_LABELS, t_lab, numpy_to_image(noisy[i], label_enc, header(t_lab, frame_id), msg_class=Image)
        if depth is not None:
            t_d = base + j[TOPIC_DEPTH]
            mm = np.clip(np.round(np.nan_to_num(depth[i], nan=0.0, posinf=0.0) * 1000.0), 0, 65535)
            yield TOPIC_DEPTH, t_d, numpy_to_image(mm.astype(np.uint16), "16UC1", header(t_d, frame_id),
                                                   msg_class=Image)
        if include_gt:
            yield TOPIC_LABELS_GT, t_rgb, numpy_to_image(scene.labels[i], label_enc, header(t_rgb, frame_id),
                                                         msg_class=Image)

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    bag_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = bag_path.with_name(f".{bag_path.name}.tmp-{os.getpid()}")
    if tmp_path.exists():
        shutil.rmtree(tmp_path)
    pending: list = []   # (receive time ns, order, topic, message) not yet written
    try:
        with Writer(tmp_path, version=9, storage_plugin=plugin) as writer:
            conns = {t: writer.add_connection(t, typ, typestore=ts) for t, typ in topics}
            writer.set_custom_data("semnerf.class_names", json.dumps(list(scene.class_names)))
            writer.set_custom_data("semnerf.num_classes", str(num_classes))
            writer.set_custom_data("semnerf.pose_source", pose_source)
            writer.set_custom_data("semnerf.noise", json.dumps({"model": noise, "ratio": noise_ratio,
                                                                "seed": seed, "jitter_ms": jitter_ms}))
            order = 0
            for i in tqdm(range(n), desc=f"writing {bag_path.name}", unit="frame", disable=not progress,
                          leave=False):
                base = start_time + i / rate_hz
                for topic, stamp, msg in frame_messages(i, base):
                    recv = stamp + TOPIC_LATENCY_S[topic] + rng.uniform(0.0, 1e-3)
                    pending.append((int(round(recv * 1e9)), order, topic, msg))
                    order += 1
                # everything received before the earliest possible receive time of the next frame
                horizon = int(round((start_time + (i + 1) / rate_hz - jitter_ms * 1e-3) * 1e9))
                pending.sort(key=lambda e: (e[0], e[1]))
                while pending and (pending[0][0] < horizon or i == n - 1):
                    recv_ns, _, topic, msg = pending.pop(0)
                    writer.write(conns[topic], recv_ns, ts.serialize_cdr(msg, msg.__msgtype__))
                    counts[topic] += 1
        move_bag(tmp_path, bag_path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path, ignore_errors=True)
    return {"path": str(bag_path), "frames": n, "topics": counts, "num_classes": num_classes,
            "class_names": list(scene.class_names), "noise_info": noise_info}
