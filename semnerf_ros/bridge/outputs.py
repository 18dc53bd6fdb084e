"""A rendered view as the node's five output images and their camera_info (messages built
through :mod:`.convert`; no rclpy)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..colormap import colorize_labels
from ..engine.geometry import Intrinsics
from . import convert
from .mapper_api import RenderedView

IMAGE_OUTPUTS = ("semantic", "semantic_color", "rgb", "depth", "uncertainty")


def image_messages(res: RenderedView, num_classes: int, header: Any, intr: Intrinsics, scale: float) -> dict:
    """``semantic`` (mono8, mono16 above 256 classes), ``semantic_color`` (rgb8), ``rgb``
    (rgb8), ``depth`` (32FC1 m), ``uncertainty`` (32FC1 entropy, nats) and ``camera_info``
    (the intrinsics rendered with), all with ``header``."""
    labels = np.asarray(res.labels)
    rgb8 = np.clip(np.asarray(res.rgb, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return {
        "semantic": convert.labels_to_image(labels, num_classes, header),
        "semantic_color": convert.numpy_to_image(colorize_labels(labels, num_classes), "rgb8", header),
        "rgb": convert.numpy_to_image(rgb8, "rgb8", header),
        "depth": convert.numpy_to_image(np.asarray(res.depth, dtype=np.float32), "32FC1", header),
        "uncertainty": convert.numpy_to_image(np.asarray(res.entropy, dtype=np.float32), "32FC1", header),
        "camera_info": convert.camera_info_from_intrinsics(res.intrinsics or intr.scaled(scale), header),
    }
