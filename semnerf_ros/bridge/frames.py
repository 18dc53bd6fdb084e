"""One synchronized set of messages -> a validated :class:`~semnerf_ros.engine.frame.Frame`,
or :class:`~.ledger.Rejected` naming the reason and the input to blame.  No ROS imports
(messages are read duck-typed through :mod:`.convert`)."""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..engine.frame import Frame, FrameError
from ..engine.geometry import Intrinsics, PoseError
from . import convert
from .ledger import Rejected


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


@dataclass(frozen=True)
class InputRules:
    """The parameters that decide whether a set becomes a frame."""

    num_classes: int
    world_frame: str
    pose_type: str = "pose_stamped"      # pose_stamped | odometry
    pose_convention: str = "optical"     # auto | optical | body (auto: a pose topic is optical)
    camera_info_topic: str = "camera_info"
    pose_input: str = "pose"             # the input blamed for a bad pose: pose, or tf (pose_source tf)


def _image(kind: str, read, msg):
    try:
        return read(msg)
    except convert.UnsupportedEncodingError as exc:
        raise Rejected("unsupported_encoding", [kind], f"{kind}: {exc}") from None
    except convert.ImageFormatError as exc:
        raise Rejected("bad_image", [kind], f"{kind}: {exc}") from None


def pose_from_message(pose_msg: Any, rules: InputRules) -> np.ndarray:
    """Camera-to-world (optical axes) from the pose input; raises :class:`Rejected`."""
    world, pose_frame = rules.world_frame, pose_msg.header.frame_id
    if pose_frame and pose_frame.lstrip("/") != world.lstrip("/"):
        raise Rejected("pose_frame_mismatch", ["pose"], f"pose is in frame '{pose_frame}' but world_frame is "
                       f"'{world}' (set -p world_frame:={pose_frame})")
    convention = "optical" if rules.pose_convention == "auto" else rules.pose_convention
    try:
        if rules.pose_type == "odometry":
            return convert.pose_from_odometry(pose_msg, convention)
        return convert.pose_from_pose_stamped(pose_msg, convention)
    except PoseError as exc:
        raise Rejected("invalid_pose", ["pose"], str(exc)) from None


def frame_from_messages(rgb_msg: Any, labels_msg: Any, pose: Any, depth_msg: Any,
                        intrinsics: Optional[Intrinsics], rules: InputRules, topics: list) -> Frame:
    """Convert and check a synchronized set: pose frame and validity, image encodings and
    sizes, label range, intrinsics (the same camera at another resolution is rescaled).
    ``pose``: the pose message, or a 4x4 camera-to-world optical pose (from TF).
    ``topics``: the synchronized inputs (blamed together for frame-wide problems).
    Raises :class:`Rejected`."""
    pose = np.asarray(pose, dtype=np.float64) if isinstance(pose, np.ndarray) else pose_from_message(pose, rules)
    rgb = _image("rgb", convert.rgb_from_image_msg, rgb_msg)
    labels = _image("labels", convert.labels_from_image_msg, labels_msg)
    depth = None if depth_msg is None else _image("depth", convert.depth_from_image_msg, depth_msg)
    h, w = rgb.shape[:2]
    mismatch = size_mismatch({"rgb": rgb.shape[:2], "labels": labels.shape,
                              **({"depth": depth.shape} if depth is not None else {})},
                             intrinsics.shape if intrinsics is not None else None)
    if mismatch is not None:
        raise Rejected("size_mismatch", mismatch[0], mismatch[1])
    n = rules.num_classes
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        bad = int(labels.max()) if labels.max() >= n else int(labels.min())
        raise Rejected("label_out_of_range", ["labels"], f"label id {bad} outside 0..{n - 1} (num_classes {n})")
    if intrinsics is None:
        raise Rejected("no_camera_info", ["rgb"], f"no valid camera_info received yet on {rules.camera_info_topic}")
    if intrinsics.shape != (h, w):
        if abs(intrinsics.width / intrinsics.height - w / h) > 0.01:
            raise Rejected("size_mismatch", ["rgb"], f"rgb is {w}x{h} but the camera intrinsics are for "
                           f"{intrinsics.width}x{intrinsics.height}")
        intrinsics = intrinsics.resized(w, h)  # same camera at another resolution
    frame = Frame(rgb=rgb, pose=pose, intrinsics=intrinsics, labels=labels, depth=depth,
                  stamp=convert.stamp_to_sec(rgb_msg.header.stamp), frame_id=rgb_msg.header.frame_id)
    try:
        frame.validate(n)
    except PoseError as exc:
        raise Rejected("invalid_pose", [rules.pose_input], str(exc)) from None
    except FrameError as exc:
        raise Rejected("invalid_frame", topics, str(exc)) from None
    return frame
