"""What the node needs of the engine: a typed interface instead of probing the mapper.

:class:`semnerf_ros.engine.mapper.Mapper` satisfies :class:`MapperAPI`; so does any test double
that implements these methods (the node's tests use one).  A future out-of-process trainer
(issue 11) or lifecycle variant (issue 15) plugs in behind the same interface.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import numpy as np

from ..engine.frame import Frame
from ..engine.geometry import Intrinsics


class FrameOutcome(Protocol):
    """What ``add_frame`` did (``Mapper.add_frame`` returns a ``FrameDecision``)."""

    keyframe: bool


class RenderedView(Protocol):
    """A rendered view (``Mapper.render`` returns a ``RenderResult``): rgb (H, W, 3) float [0, 1],
    depth (H, W) float32 m, labels (H, W) int class ids, entropy (H, W) float32 nats, and the
    intrinsics it was rendered with."""

    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray
    entropy: np.ndarray
    intrinsics: Intrinsics


@runtime_checkable
class MapperAPI(Protocol):
    """The engine as the node uses it (see ``Mapper`` for the semantics of each call).

    ``extract_mesh`` takes ``cancel`` (a callable polled between chunks; raises
    ``ExtractionCancelled``), ``chunk`` (field queries per chunk) and ``observed_only`` (only the
    faces some keyframe saw)."""

    device: Any

    def add_frame(self, frame: Frame) -> FrameOutcome: ...

    def screen_frame(self, frame: Frame) -> Optional[str]: ...

    def render(self, pose: np.ndarray, intrinsics: Intrinsics, scale: float = 1.0,
               with_probs: bool = True) -> RenderedView: ...

    def extract_mesh(self, resolution: int = 256, density_threshold: Optional[float] = None, *,
                     cancel: Optional[Callable[[], bool]] = None, chunk: Optional[int] = None,
                     progress: Any = False, observed_only: bool = False) -> Any: ...

    def stats(self) -> dict: ...

    def start(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> bool: ...

    def save(self, path) -> Path: ...

    def load_state(self, path) -> Any: ...

    def reset(self) -> None: ...
