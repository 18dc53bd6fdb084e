"""Rendering views from a snapshot of the map, so that training never waits for a view.

:class:`ViewRenderer` keeps its own frozen copy of the model.  Before each view
it refreshes that copy in place from the live model (a device-to-device copy of
a few tens of megabytes, taken under the map lock: tens of microseconds on a
GPU), then renders outside the lock while training goes on.  On a GPU that copy
runs on the views' stream and, by default, does not wait for the training steps
already queued on the default stream (up to three, 8-12 ms of GPU work at full
rate): each weight is then that of the newest finished step or of one still in
flight, so a view may mix two consecutive steps' weights, which differ by one
optimiser update.  ``wait_for_training=True`` (``mapper.views_wait_for_training``)
waits for them and renders exactly one step's weights.  On a GPU it renders
on its own CUDA stream (:meth:`ViewRenderer.on_stream` lets the caller make the
rays and the images there too, so a view never queues behind training steps),
and copies the images to the host through a pinned buffer.  The hash field's
views (``render.view_path: packed``, the default, and every view on a CPU) go
front to back with early termination, eagerly, in passes of up to
:data:`KERNEL_VIEW_RAYS` rays (or the caller's chunk, if larger) where the
Triton kernel marches them; with
``dense`` each chunk of rays is replayed from a CUDA graph captured once per
chunk size, and a failed capture falls back to eager rendering with a logged
reason.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import threading
from typing import Optional

import numpy as np
import torch

from .models import SemanticModel

log = logging.getLogger("semnerf_ros.view_renderer")

_OUTPUTS = ("rgb", "depth", "acc", "semantic")
#: rays a pass of a view marched by the Triton kernel holds at least (a 320x240 view in one pass,
#: 640x480 in two): about 2 KB of samples and features a ray, so about 0.5 GB a pass
KERNEL_VIEW_RAYS = 2 ** 18
#: CUDA stream priority of the views by default (lower is higher; PyTorch maps it into the device's
#: range); ``mapper.view_stream_priority`` sets it
VIEW_STREAM_PRIORITY = -1


class ViewRenderer:
    """Renders rays from a snapshot of a live model (see the module docstring).

    Args:
        device: the model's device.
        use_graph: replay chunks from CUDA graphs (CUDA and a model with
            ``render_dense`` only; None = whenever that holds).
        priority: the views' CUDA stream priority (lower is higher; 0 = the default stream's).
        wait_for_training: on a GPU, snapshot the weights after the training steps already
            queued (exactly one step's weights; the view waits for those steps) instead of at
            once (see the module docstring).
    """

    def __init__(self, device: torch.device, use_graph: Optional[bool] = None,
                 priority: int = VIEW_STREAM_PRIORITY, wait_for_training: bool = False):
        self.device = torch.device(device)
        self.priority = int(priority)
        self.wait_for_training = bool(wait_for_training)
        self.use_graph = (self.device.type == "cuda") if use_graph is None else bool(use_graph)
        self.lock = threading.Lock()  # one view at a time: the snapshot and the graphs' buffers are shared
        self.graph_error: Optional[str] = None
        self._source: Optional[SemanticModel] = None
        self._model: Optional[SemanticModel] = None
        self._pairs: list = []  # (snapshot tensor, live tensor) of parameters and buffers
        self._graphs: dict = {}  # (chunk size, samples per ray) -> (graph, static inputs, static outputs)
        self._stream: Optional[torch.cuda.Stream] = None
        self._ready: Optional[torch.cuda.Event] = None
        self._host: Optional[torch.Tensor] = None  # pinned host buffer of :meth:`to_host`

    def refresh(self, live: SemanticModel) -> None:
        """Copy the live model's weights into the snapshot.  Call with ``lock``
        held and the map lock held (no training step is launched meanwhile).  On a GPU the
        in-place copy is queued on the views' stream, behind the queued training steps only
        with ``wait_for_training``."""
        cuda = self.device.type == "cuda"
        if live is not self._source:
            self._model = copy.deepcopy(live).eval()
            for p in self._model.parameters():
                p.requires_grad_(False)
            self._pairs = list(zip(list(self._model.parameters()) + list(self._model.buffers()),
                                   list(live.parameters()) + list(live.buffers())))
            self._source = live
            self._graphs = {}
        else:
            with torch.no_grad():
                dst = [a for a, b in self._pairs if a.shape == b.shape]
                src = [b for a, b in self._pairs if a.shape == b.shape]
                if len(dst) != len(self._pairs):  # a buffer was re-allocated with another shape
                    self._source = None
                    return self.refresh(live)
                if cuda and not self.wait_for_training:
                    # the live tensors persist (parameters and buffers updated in place), so reading
                    # them on another stream while queued steps write them is safe: only their values race
                    with torch.cuda.stream(self._view_stream()):
                        torch._foreach_copy_(dst, src)
                    self._ready = None
                else:
                    torch._foreach_copy_(dst, src)
                    self._mark_ready(cuda)
            grid = getattr(live, "grid", None)
            if grid is not None:
                self._model.grid.updates = grid.updates
            return
        self._mark_ready(cuda)   # a new snapshot, cloned on the current stream

    def _mark_ready(self, cuda: bool) -> None:
        """The views' stream waits for the current stream's work so far (the snapshot's copy)."""
        if cuda:
            self._ready = torch.cuda.Event()
            self._ready.record(torch.cuda.current_stream(self.device))

    def on_stream(self):
        """Context in which the caller's work runs on the views' CUDA stream (a no-op off CUDA):
        :class:`Mapper` makes the rays and turns the outputs into images there, so that neither
        waits for training steps queued on the default stream meanwhile.  Call with ``lock``
        held."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.cuda.stream(self._view_stream())

    def _view_stream(self) -> torch.cuda.Stream:
        """The views' CUDA stream, of priority :attr:`priority` (high by default: where a view's
        kernels and the training step's wait for the same free multiprocessors, the view's go first;
        beside full-rate training on an H200 that measured within a few ms of the default priority,
        docs/benchmarks.md tenth session)."""
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device, priority=self.priority)
        return self._stream

    def to_host(self, images: torch.Tensor) -> np.ndarray:
        """``images`` (a device tensor) copied to the host through a pinned buffer kept between
        views, waiting for the current stream only; the array returned is that buffer, valid until
        the next call (copy out what is kept).  Call with ``lock`` held."""
        if images.device.type != "cuda":
            return images.numpy()
        buf = self._host
        if buf is None or buf.shape != images.shape or buf.dtype != images.dtype:
            buf = self._host = torch.empty(images.shape, dtype=images.dtype, pin_memory=True)
        buf.copy_(images, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return buf.numpy()

    @torch.no_grad()
    def render(self, origins: torch.Tensor, dirs: torch.Tensor, near: float, far: float, chunk: int) -> dict:
        """Render rays (R, 3) with the snapshot; call with ``lock`` held, after
        :meth:`refresh`.  Returns ``rgb`` (R, 3), ``depth`` (R,), ``acc`` (R,),
        ``semantic`` (R, C-1) accumulated logits."""
        model = self._model
        if model is None:
            raise RuntimeError("ViewRenderer.render before refresh")
        if self.device.type != "cuda":
            return model.render_chunked(origins, dirs, near, far, chunk)
        stream = self._view_stream()
        if self._ready is not None:
            stream.wait_event(self._ready)
        stream.wait_stream(torch.cuda.current_stream(self.device))  # the rays were made there
        with torch.cuda.stream(stream):
            if self.use_graph and hasattr(model, "render_dense") and getattr(model, "view_path", "dense") == "dense":
                out = self._render_graphed(model, origins, dirs, near, far, chunk)
            else:
                marcher = getattr(model, "marcher", None)
                if marcher is not None and marcher(origins) == "triton":
                    # the kernel keeps no per-step tensors: larger passes, in equal pieces, keep
                    # more rays in flight and read the ray counts back fewer times
                    n = origins.shape[0]
                    pieces = -(-n // max(int(chunk), KERNEL_VIEW_RAYS))
                    chunk = -(-n // max(pieces, 1))
                out = model.render_chunked(origins, dirs, near, far, chunk)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        return out

    def _render_graphed(self, model, origins, dirs, near, far, chunk) -> dict:
        n = origins.shape[0]
        # equal chunks (a 320x240 view at most 32768 rays a chunk: 3 of 25600, not 32768 + 32768
        # + 11264 padded to 32768, which rendered a third more rays than the view has)
        pieces = -(-n // max(int(chunk), 1))
        chunk = -(-n // pieces)
        # a graph per chunk size, sample budget and head samples
        key = (chunk, getattr(model, "view_samples", None), getattr(model, "view_head_samples", 0))
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(model, origins[:chunk], dirs[:chunk], near, far)
            if entry is None:
                return model.render_chunked(origins, dirs, near, far, chunk)
            self._graphs[key] = entry
        graph, s_in, s_out = entry
        outs = []
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            s_in["origins"][:m].copy_(origins[s:s + m])
            s_in["dirs"][:m].copy_(dirs[s:s + m])
            if m < chunk:  # pad with the last ray: every slot holds a valid ray
                s_in["origins"][m:].copy_(origins[s + m - 1].expand(chunk - m, 3))
                s_in["dirs"][m:].copy_(dirs[s + m - 1].expand(chunk - m, 3))
            graph.replay()
            outs.append({k: s_out[k][:m].clone() for k in _OUTPUTS})
        return {k: torch.cat([o[k] for o in outs]) for k in _OUTPUTS}

    def _capture(self, model, origins, dirs, near, far):
        c = origins.shape[0]
        s_in = {"origins": origins.clone(), "dirs": dirs.clone(),
                "near": torch.full((c,), float(near), device=self.device),
                "far": torch.full((c,), float(far), device=self.device)}

        def run():
            r = model.render_dense(s_in["origins"], s_in["dirs"], s_in["near"], s_in["far"],
                                   max_samples=getattr(model, "view_samples", None))
            return {k: r[k] for k in _OUTPUTS}

        try:
            run()  # warm-up: kernels compiled and workspaces allocated outside the capture
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
                s_out = run()
        except Exception as exc:  # render eagerly instead: same images, slower
            self.use_graph = False
            self.graph_error = f"{type(exc).__name__}: {exc}"
            log.warning("CUDA graph capture of the view renderer failed (%s); rendering without it",
                        self.graph_error)
            return None
        return graph, s_in, s_out
