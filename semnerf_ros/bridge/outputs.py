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


#: how often (s) the node looks for a new synced input to render; a frame waits at most this long
RENDER_POLL_S = 0.01


class RenderPacer:
    """When the node renders: as soon as a new input has come (polled every :data:`RENDER_POLL_S`),
    at most ``rate_hz`` times a second.  A timer at ``publish_rate`` itself lets a new frame wait
    up to a whole period when frames come slower than that (6 Hz frames, 10 Hz publishing: 50 ms
    on average); polled, its render starts within 10 ms.  Frames faster than ``rate_hz`` get the
    timer's behaviour: each render takes the newest frame.  Times on a monotonic clock, seconds."""

    #: a render due within this much (s) of its slot counts as due (timer jitter)
    TOLERANCE_S = 0.002

    def __init__(self):
        self._last: "float | None" = None

    @staticmethod
    def poll_period(rate_hz: float) -> float:
        """The render timer's period (s) for a largest rate of ``rate_hz`` (> 0)."""
        return min(1.0 / rate_hz, RENDER_POLL_S)

    def due(self, now: float, rate_hz: float) -> bool:
        """Whether a render may start at ``now`` (the last one started at least 1/rate_hz ago)."""
        return self._last is None or now - self._last >= 1.0 / rate_hz - self.TOLERANCE_S

    def started(self, now: float) -> None:
        self._last = now

    def forget(self) -> None:
        self._last = None
