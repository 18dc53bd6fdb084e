"""numpy <-> ROS message conversions, without cv_bridge (not installable here).

A small faithful equivalent of the parts of ``cv_bridge`` this package needs:
``image_to_numpy`` honours ``step`` row padding and ``is_bigendian`` like
``CvBridge.imgmsg_to_cv2`` does for the encodings listed in :data:`ENCODINGS`,
and ``numpy_to_image`` writes tightly packed, native-endian images like
``cv2_to_imgmsg``.  Readers are duck-typed: they accept rclpy messages and the
message objects of ``rosbags`` alike.  No rclpy import; message classes
(``sensor_msgs`` ...) are imported only by the functions that build messages.

Units and frames: depth in metres (16UC1 images hold millimetres), poses are
4x4 camera-to-world transforms of the OpenCV optical frame (x right, y down,
z forward); ``convention='body'`` reads a REP-103 (x forward, y left, z up)
camera pose and converts it.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..engine.geometry import (
    Intrinsics,
    IntrinsicsError,
    body_from_optical_pose,
    optical_from_body_pose,
    pose_from_position_quaternion,
    position_quaternion_from_pose,
    validate_pose,
)


class UnsupportedEncodingError(ValueError):
    """An image encoding this package does not read (or not for this purpose)."""


class ImageFormatError(ValueError):
    """An image message whose size fields and data do not fit together."""


# encoding -> (numpy dtype char, channels)
ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "mono8": ("u1", 1), "8UC1": ("u1", 1),
    "mono16": ("u2", 1), "16UC1": ("u2", 1),
    "32SC1": ("i4", 1), "32FC1": ("f4", 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1")
LABEL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1", "32SC1")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
POSE_CONVENTIONS = ("optical", "body")


# --------------------------------------------------------------------- time
def stamp_to_sec(stamp: Any) -> float:
    """Seconds (float) from a ``builtin_interfaces/Time`` (``sec``, ``nanosec``),
    an object with ``nanoseconds``, or a number."""
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        return float(stamp)
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return int(stamp.sec) + int(stamp.nanosec) * 1e-9
    if hasattr(stamp, "nanoseconds"):
        return int(stamp.nanoseconds) * 1e-9
    raise TypeError(f"not a time stamp: {stamp!r}")


def sec_to_stamp(sec: float, msg_class=None):
    """``builtin_interfaces/msg/Time`` for ``sec`` seconds (>= 0), rounded to
    the nanosecond.  ``msg_class`` builds another Time class (e.g. rosbags')."""
    sec = float(sec)
    if not np.isfinite(sec) or sec < 0:
        raise ValueError(f"stamp must be finite and >= 0 seconds, got {sec}")
    total_ns = int(round(sec * 1e9))
    s, ns = divmod(total_ns, 1_000_000_000)
    if msg_class is None:
        from builtin_interfaces.msg import Time as msg_class  # optional: ROS message classes, only to build messages
    return msg_class(sec=int(s), nanosec=int(ns))


def make_header(stamp: Any = 0.0, frame_id: str = ""):
    """``std_msgs/msg/Header`` from a stamp (seconds or a Time message) and a frame."""
    from std_msgs.msg import Header  # optional: ROS message classes, only to build messages

    if not (hasattr(stamp, "sec") and hasattr(stamp, "nanosec")):
        stamp = sec_to_stamp(stamp)
    return Header(stamp=stamp, frame_id=str(frame_id))


# ------------------------------------------------------------------- images
def _layout(encoding: str) -> tuple[str, int]:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise UnsupportedEncodingError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}") from None


def _byte_view(data: Any) -> np.ndarray:
    """The bytes of ``Image.data`` (array.array, bytes, numpy array or list) as uint8."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def image_to_numpy(msg: Any) -> np.ndarray:
    """A native-endian copy of an Image's pixels: (H, W) for one channel,
    (H, W, C) otherwise, dtype from the encoding (uint8, uint16, int32, float32).

    Raises :class:`UnsupportedEncodingError` naming the encoding, and
    :class:`ImageFormatError` when ``step``/``data`` do not fit ``width``/``height``.
    """
    encoding = str(msg.encoding)
    kind, channels = _layout(encoding)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = w * channels * dtype.itemsize
    if h <= 0 or w <= 0:
        raise ImageFormatError(f"{encoding} image has size {w}x{h}")
    if step < row_bytes:
        raise ImageFormatError(f"{encoding} image step {step} is less than width * bytes per pixel "
                               f"= {row_bytes}")
    buf = _byte_view(msg.data)
    if buf.size < step * h:
        raise ImageFormatError(f"{encoding} image data holds {buf.size} bytes, expected step * height "
                               f"= {step} * {h} = {step * h}")
    rows = buf[: step * h].reshape(h, step)[:, :row_bytes]
    arr = np.ascontiguousarray(rows).view(dtype).reshape((h, w, channels) if channels > 1 else (h, w))
    return arr.astype(dtype.newbyteorder("="), copy=True)


def numpy_to_image(arr: np.ndarray, encoding: str, header: Any = None, msg_class=None):
    """A ``sensor_msgs/msg/Image`` holding ``arr`` (tightly packed, native byte
    order).  ``arr`` must be (H, W) or (H, W, C) with the encoding's channel
    count; values are cast to the encoding's dtype (integers must fit).
    ``header`` is a Header message (or None for an empty one); ``msg_class``
    builds another Image class (e.g. rosbags' ``sensor_msgs__msg__Image``,
    in which case ``header`` is required)."""
    kind, channels = _layout(encoding)
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1 and channels == 1:
        a = a[:, :, 0]
    expected = 2 if channels == 1 else 3
    if a.ndim != expected or (channels > 1 and a.shape[2] != channels):
        raise ImageFormatError(f"{encoding} needs an array of shape "
                               f"{'(H, W)' if channels == 1 else f'(H, W, {channels})'}, got {a.shape}")
    dtype = np.dtype(kind)
    if a.dtype != dtype:
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            if a.size and (np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a))):
                raise ImageFormatError(f"{encoding} cannot hold NaN/Inf values")
            if a.size and (a.min() < info.min or a.max() > info.max):
                raise ImageFormatError(f"values {a.min()}..{a.max()} do not fit {encoding} ({dtype})")
        a = a.astype(dtype)
    a = np.ascontiguousarray(a)
    h, w = a.shape[:2]
    big = sys.byteorder == "big"
    if msg_class is None:
        from sensor_msgs.msg import Image as msg_class  # optional: ROS message classes, only to build messages
        if header is None:
            from std_msgs.msg import Header  # optional: ROS message classes, only to build messages
            header = Header()
        return msg_class(header=header, height=h, width=w, encoding=encoding, is_bigendian=int(big),
                         step=w * channels * dtype.itemsize, data=a.tobytes())
    return msg_class(header=header, height=h, width=w, encoding=encoding, is_bigendian=int(big),
                     step=w * channels * dtype.itemsize, data=a.reshape(-1).view(np.uint8))


def _require_encoding(msg: Any, allowed, what: str) -> str:
    """The message's encoding, or :class:`UnsupportedEncodingError` naming it
    and the ``allowed`` ones (``what``: 'is not a colour encoding', ...)."""
    enc = str(msg.encoding)
    if enc not in allowed:
        raise UnsupportedEncodingError(f"image encoding {enc!r} {what}; expected one of {', '.join(allowed)}")
    return enc


def rgb_from_image_msg(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB from rgb8, bgr8, rgba8, bgra8 (alpha dropped) or
    mono8/8UC1 (grey replicated)."""
    enc = _require_encoding(msg, COLOR_ENCODINGS, "is not a colour encoding")
    a = image_to_numpy(msg)
    if enc == "rgb8":
        return a
    if enc == "bgr8":
        return np.ascontiguousarray(a[:, :, ::-1])
    if enc == "rgba8":
        return np.ascontiguousarray(a[:, :, :3])
    if enc == "bgra8":
        return np.ascontiguousarray(a[:, :, 2::-1])
    return np.repeat(a[:, :, None], 3, axis=2)


def labels_from_image_msg(msg: Any) -> np.ndarray:
    """(H, W) int32 class ids from mono8/8UC1/mono16/16UC1/32SC1."""
    _require_encoding(msg, LABEL_ENCODINGS, "cannot hold class ids")
    return image_to_numpy(msg).astype(np.int32)


def depth_from_image_msg(msg: Any) -> np.ndarray:
    """(H, W) float32 depth in metres from 16UC1/mono16 (millimetres) or 32FC1
    (metres); invalid readings (0, negative, NaN, Inf) become 0."""
    enc = _require_encoding(msg, DEPTH_ENCODINGS, "is not a depth encoding")
    a = image_to_numpy(msg)
    if enc == "32FC1":
        d = a.astype(np.float32)
    else:
        d = a.astype(np.float32) * np.float32(0.001)
    return np.where(np.isfinite(d) & (d > 0), d, np.float32(0.0)).astype(np.float32)


def labels_to_image(labels: np.ndarray, num_classes: int, header: Any = None, msg_class=None):
    """Class-id image: mono8 when every id fits (``num_classes <= 256``), else mono16."""
    enc = "mono8" if num_classes <= 256 else "mono16"
    return numpy_to_image(np.asarray(labels), enc, header, msg_class=msg_class)


# ------------------------------------------------------------- camera info
def intrinsics_from_camera_info(msg: Any) -> Intrinsics:
    """Pinhole intrinsics from ``CameraInfo.k`` (fx = k[0], fy = k[4],
    cx = k[2], cy = k[5]) and ``width``/``height``.  Distortion is ignored
    (images are assumed rectified).  Raises ``IntrinsicsError`` naming the
    problem for a zero focal length or a zero image size."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise IntrinsicsError(f"camera_info.k must hold 9 values, got {k.size}")
    w, h = int(msg.width), int(msg.height)
    if w <= 0 or h <= 0:
        raise IntrinsicsError(f"camera_info has image size {w}x{h}; width and height must be positive")
    if not (k[0] > 0 and k[4] > 0):
        raise IntrinsicsError(f"camera_info has focal length fx={k[0]}, fy={k[4]}; both must be positive "
                              f"(an uncalibrated camera?)")
    return Intrinsics(float(k[0]), float(k[4]), float(k[2]), float(k[5]), w, h)


def camera_info_from_intrinsics(intr: Intrinsics, header: Any = None):
    """``sensor_msgs/msg/CameraInfo`` for an undistorted pinhole camera:
    ``plumb_bob`` with zero distortion, R = I, P = [K | 0]."""
    from sensor_msgs.msg import CameraInfo  # optional: ROS message classes, only to build messages
    from std_msgs.msg import Header  # optional: ROS message classes, only to build messages

    K = intr.K
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(header=header if header is not None else Header(), height=int(intr.height),
                      width=int(intr.width), distortion_model="plumb_bob", d=[0.0] * 5,
                      k=K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1))


# -------------------------------------------------------------------- poses
def _matrix_from_pose_msg(pose: Any, convention: str) -> np.ndarray:
    if convention not in POSE_CONVENTIONS:
        raise ValueError(f"pose convention must be one of {POSE_CONVENTIONS}, got {convention!r}")
    p, q = pose.position, pose.orientation
    T = pose_from_position_quaternion([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])
    if convention == "body":
        T = optical_from_body_pose(T)
    return validate_pose(T)


def pose_from_pose_stamped(msg: Any, convention: str = "optical") -> np.ndarray:
    """4x4 camera-to-world (optical axes) from a ``PoseStamped`` (or a bare
    ``Pose``).  ``convention='body'``: the message gives a REP-103 body-axes
    camera frame, converted with ``geometry.optical_from_body_pose``.  Raises
    ``PoseError`` for NaN or a non-unit quaternion."""
    pose = msg.pose if hasattr(msg, "header") else msg
    return _matrix_from_pose_msg(pose, convention)


def pose_from_odometry(msg: Any, convention: str = "optical") -> np.ndarray:
    """4x4 camera-to-world from ``nav_msgs/Odometry.pose.pose`` (pose of
    ``child_frame_id`` in ``header.frame_id``); conventions as
    :func:`pose_from_pose_stamped`."""
    return _matrix_from_pose_msg(msg.pose.pose, convention)


def pose_stamped_from_pose(T: np.ndarray, frame_id: str = "map", stamp: Any = 0.0,
                           convention: str = "optical"):
    """``geometry_msgs/msg/PoseStamped`` from a 4x4 camera-to-world optical
    pose; ``convention='body'`` writes the REP-103 body-axes frame instead."""
    # optional: ROS message classes, only to build messages
    from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion

    if convention not in POSE_CONVENTIONS:
        raise ValueError(f"pose convention must be one of {POSE_CONVENTIONS}, got {convention!r}")
    T = validate_pose(T)
    if convention == "body":
        T = body_from_optical_pose(T)
    p, q = position_quaternion_from_pose(T)
    return PoseStamped(header=make_header(stamp, frame_id),
                       pose=Pose(position=Point(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                                 orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                        w=float(q[3]))))
