"""One posed observation: what the mapper consumes, from a dataset or from ROS."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .geometry import Intrinsics, validate_pose


class FrameError(ValueError):
    """A frame whose arrays do not fit together or hold invalid values."""


@dataclass
class Frame:
    """A posed RGB image with optional semantic labels and depth.

    Attributes:
        rgb: (H, W, 3) uint8 RGB, or float32 in [0, 1].
        pose: (4, 4) camera-to-world, metres, OpenCV optical camera axes.
        intrinsics: pinhole intrinsics matching the image size.
        labels: (H, W) integer class ids, 0 = void (ignored); ``None`` when this
            frame carries no labels (sparse-view supervision).
        depth: (H, W) float32 z-depth in metres, 0 or non-finite = invalid; optional.
        stamp: capture time in seconds (ROS header stamp or frame index / fps).
        frame_id: the camera frame's name (ROS ``header.frame_id``), carried to outputs.
        index: position in the source sequence (dataset frame number), -1 if unknown.
    """

    rgb: np.ndarray
    pose: np.ndarray
    intrinsics: Intrinsics
    labels: Optional[np.ndarray] = None
    depth: Optional[np.ndarray] = None
    stamp: float = 0.0
    frame_id: str = ""
    index: int = -1
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.intrinsics.shape

    def validate(self, num_classes: Optional[int] = None) -> "Frame":
        """Check shapes, dtypes and values; raise :class:`FrameError` (or
        ``PoseError``) with a message naming the problem.  Returns self."""
        h, w = self.intrinsics.shape
        rgb = np.asarray(self.rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise FrameError(f"rgb must be (H, W, 3), got {rgb.shape}")
        if rgb.shape[:2] != (h, w):
            raise FrameError(f"rgb is {rgb.shape[1]}x{rgb.shape[0]} but intrinsics say {w}x{h}")
        if rgb.dtype != np.uint8:
            if not np.issubdtype(rgb.dtype, np.floating):
                raise FrameError(f"rgb must be uint8 or float, got {rgb.dtype}")
            if not np.all(np.isfinite(rgb)):
                raise FrameError("rgb contains NaN or Inf")
        self.pose = validate_pose(self.pose)
        if self.labels is not None:
            lab = np.asarray(self.labels)
            if lab.shape != (h, w):
                raise FrameError(f"labels are {lab.shape[1] if lab.ndim > 1 else '?'}x{lab.shape[0]} "
                                 f"but rgb is {w}x{h}")
            if not np.issubdtype(lab.dtype, np.integer):
                raise FrameError(f"labels must be integer class ids, got {lab.dtype}")
            if lab.size and int(lab.min()) < 0:
                raise FrameError(f"labels contain negative class id {int(lab.min())}")
            if num_classes is not None and lab.size and int(lab.max()) >= num_classes:
                raise FrameError(f"labels contain class id {int(lab.max())} but the map has "
                                 f"{num_classes} classes (0..{num_classes - 1})")
        if self.depth is not None:
            d = np.asarray(self.depth)
            if d.shape != (h, w):
                raise FrameError(f"depth is {d.shape} but rgb is {(h, w)}")
            if not np.issubdtype(d.dtype, np.floating):
                raise FrameError(f"depth must be float metres, got {d.dtype}")
        if not np.isfinite(self.stamp):
            raise FrameError("stamp is not finite")
        return self

    def rgb_float(self) -> np.ndarray:
        """RGB as float32 in [0, 1]."""
        if self.rgb.dtype == np.uint8:
            return self.rgb.astype(np.float32) / 255.0
        return np.clip(self.rgb.astype(np.float32), 0.0, 1.0)

    def depth_valid(self) -> Optional[np.ndarray]:
        """Depth with invalid readings (<= 0, NaN, Inf) set to 0, or None."""
        if self.depth is None:
            return None
        d = np.asarray(self.depth, dtype=np.float32)
        return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)
