"""A rendered view as the node's five output images and their camera_info (messages built
through :mod:`.convert`; no rclpy)."""
from __future__ import annotations

import threading
from typing import Any, Callable

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
    rgb8 = np.asarray(res.rgb, dtype=np.float32) * np.float32(255.0)   # in float32 throughout, in place:
    rgb8 += np.float32(0.5)                                           # 640x480 in 0.3 ms, not 3.8
    rgb8 = np.clip(rgb8, 0, 255, out=rgb8).astype(np.uint8)
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
#: how long (s) a due render waits for an input that has just arrived (see :class:`RenderPacer`)
FRESH_WAIT_S = 0.05


class PolledLoop:
    """``work()`` every ``period_s()`` seconds on a daemon thread of its own (monotonic clock) until
    :meth:`stop`.  The node's render poll (every :data:`RENDER_POLL_S`) runs here and not on an
    executor timer: each timer fire costs a turn of rclpy's executor loop, which rebuilds its wait
    set in Python while holding the interpreter lock (on the CPU, py-spy found that loop holding
    the lock 95 % of the time the node's process held it; a third of the loop's turns were the
    render poll), where this thread's wake-up costs microseconds.  An exception in ``work`` goes to
    ``on_error`` and the loop goes on."""

    def __init__(self, work: Callable[[], Any], period_s: Callable[[], float], name: str,
                 on_error: Callable[[BaseException], Any]):
        self._work, self._period, self._on_error = work, period_s, on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "PolledLoop":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the loop to end and wait up to ``timeout`` s for a ``work()`` in progress; True once
        it has ended (at once when called from the loop's own thread, which ends on its return)."""
        self._stop.set()
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.wait(max(float(self._period()), 1e-4)):
            try:
                self._work()
            except Exception as exc:  # noqa: BLE001 - a failing render must not end the outputs
                self._on_error(exc)


class RenderPacer:
    """When the node renders: as soon as a new input has come (polled every :data:`RENDER_POLL_S`),
    at most ``rate_hz`` times a second, on slots 1/rate_hz apart.  A timer at ``publish_rate``
    itself lets a new frame wait up to a whole period when frames come slower than that (6 Hz
    frames, 10 Hz publishing: 50 ms on average); polled, its render starts within 10 ms.

    Frames faster than ``rate_hz`` (a 30 Hz camera): when a slot comes, the newest frame is on
    average half a camera period old (17 ms), and that age is part of every published image's
    latency.  So a due render waits up to :data:`FRESH_WAIT_S` for a frame that arrived within the
    last poll, and the next slot stays on the grid (the rate is kept).  A stream that stops still
    gets its last frame rendered, at most :data:`FRESH_WAIT_S` after its slot.  Times on a
    monotonic clock, seconds."""

    #: a render due within this much (s) of its slot counts as due (timer jitter)
    TOLERANCE_S = 0.002

    def __init__(self):
        self._slot: "float | None" = None   # when the next render may start

    @staticmethod
    def poll_period(rate_hz: float) -> float:
        """The render timer's period (s) for a largest rate of ``rate_hz`` (> 0)."""
        return min(1.0 / rate_hz, RENDER_POLL_S)

    def due(self, now: float, rate_hz: float, input_age: "float | None" = None) -> bool:
        """Whether a render may start at ``now``: its slot has come and the newest input is fresh
        (``input_age``, seconds since it arrived, at most one poll), or the slot has waited
        :data:`FRESH_WAIT_S` for one.  ``input_age`` None: as soon as the slot has come."""
        if self._slot is None:
            return True
        late = now - self._slot
        if late < -self.TOLERANCE_S:
            return False
        fresh = self.poll_period(rate_hz) + self.TOLERANCE_S
        return input_age is None or input_age <= fresh or late >= FRESH_WAIT_S

    def started(self, now: float, rate_hz: float) -> None:
        """A render started at ``now``: the next slot is one period after this one's (after ``now``
        when this render came more than a period late: no burst to catch up)."""
        period = 1.0 / rate_hz
        if self._slot is None or now - self._slot >= period:
            self._slot = now + period
        else:
            self._slot += period

    def forget(self) -> None:
        self._slot = None
