"""One optimisation step of a model on a ray batch, optionally replayed from a CUDA graph.

A step is: march and render the batch's rays, compute the losses, back-propagate,
update with Adam.  :class:`Trainer` owns the optimiser and runs that step the
same way everywhere (the Mapper's training thread, its GPU warm-up, offline
training).

On CUDA, for the hash field, the step is captured once in a CUDA graph and then
replayed: the ~400 small kernels of a step, each launched from Python, become
one graph launch.  A step of the hash field spends most of its wall time
launching kernels (measured on an H200: 14.6 ms of wall time for 3.5 ms of GPU
kernel time), so replay both multiplies the training rate and frees the
interpreter lock for the node's other threads.  What makes the step
capturable: fixed shapes (a fixed ray batch; samples in a fixed ``(rays,
max_samples_per_ray)`` layout, :func:`semnerf_ros.occupancy.march_rays_dense`),
no value read back to the host inside the step (losses stay tensors), random
numbers drawn outside the graph into its input buffers, a tensor learning rate
(Adam with ``capturable=True``), and buffers updated in place (the occupancy
grid).  The captured graph is dropped (and captured again on a later step)
whenever something it refers to changes: the batch size, the optimiser's state
(a loaded map), the model.  Where capture fails, the trainer logs why and keeps
stepping eagerly: same numbers, slower.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch

from .keyframes import RayBatch
from .models import SemanticModel

log = logging.getLogger("semnerf_ros.trainer")

#: eager steps (on a side stream) before a capture: Adam's state and the
#: libraries' workspaces must exist before the graph records their addresses
WARMUP_STEPS = 3


def make_optimizer(model: SemanticModel, cfg: dict, capturable: bool = False) -> torch.optim.Adam:
    """Adam as the seed (betas 0.9/0.999) for the paper's MLPs, instant-ngp's
    (0.9/0.99, eps ``train.eps_adam``) for the hash field.  ``capturable``: a
    tensor learning rate and state that a CUDA graph can replay (CUDA only)."""
    groups = model.param_groups()
    dev = next(model.parameters()).device
    fused = dev.type == "cuda"
    if capturable:
        for g in groups:
            g["lr"] = torch.tensor(float(g["lr"]), device=dev)
    if cfg["model"]["type"] == "hash":
        kwargs = {"betas": (0.9, 0.99), "eps": float(cfg["train"]["eps_adam"])}
    else:
        kwargs = {"betas": (0.9, 0.999)}
    return torch.optim.Adam(groups, fused=fused, capturable=capturable, **kwargs)


def wants_cuda_graph(cfg: dict, device: torch.device) -> bool:
    """``train.cuda_graph``: auto (on for the hash field on CUDA), true, false."""
    mode = cfg["train"]["cuda_graph"]
    if device.type != "cuda" or mode in (False, "false"):
        return False
    return cfg["model"]["type"] == "hash" or mode in (True, "true")


class Trainer:
    """The optimiser of ``model`` and its training step (see the module docstring).

    Args:
        model: the model, already on ``device``.
        cfg: the full config (``train`` and ``render`` sections are read).
        device: the training device.
        use_graph: capture the step in a CUDA graph (None = :func:`wants_cuda_graph`).
    """

    def __init__(self, model: SemanticModel, cfg: dict, device: torch.device, use_graph: Optional[bool] = None):
        self.model = model
        self.cfg = cfg
        self.device = torch.device(device)
        self.use_graph = wants_cuda_graph(cfg, self.device) if use_graph is None else bool(use_graph)
        self.optimizer = make_optimizer(model, cfg, capturable=self.use_graph)
        near, far = cfg["render"]["depth_range"]
        self.near, self.far = float(near), float(far)
        self.captures = 0  # graphs captured so far (stats)
        self.graph_error: Optional[str] = None
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._static: Optional[dict] = None
        self._static_out: Optional[dict] = None
        self._eager_steps = 0
        self._stream: Optional[torch.cuda.Stream] = None

    # ------------------------------------------------------------------ state
    def invalidate(self) -> None:
        """Forget the captured graph (the next steps warm up and capture again)."""
        self._graph = None
        self._static = None
        self._static_out = None
        self._eager_steps = 0

    def set_learning_rate(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            if isinstance(g["lr"], torch.Tensor):
                g["lr"].fill_(lr)
            else:
                g["lr"] = lr

    def state_dict(self) -> dict:
        """The optimiser's state with plain-float learning rates (a map file
        loads the same on a CPU, where the step is not captured)."""
        state = self.optimizer.state_dict()
        for g in state["param_groups"]:
            if isinstance(g.get("lr"), torch.Tensor):
                g["lr"] = float(g["lr"])
        return state

    def load_state_dict(self, state: dict) -> None:
        """Load optimiser state (a saved map); its learning rates stay tensors
        when the step is captured."""
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state)
        for g, lr in zip(self.optimizer.param_groups, lrs):
            if isinstance(lr, torch.Tensor):
                lr.fill_(float(g["lr"]))
                g["lr"] = lr
        if self.use_graph:
            for st in self.optimizer.state.values():  # capturable Adam keeps its step count on the device
                if "step" in st and st["step"].device != self.device:
                    st["step"] = st["step"].to(self.device)
        self.invalidate()

    @property
    def graph_active(self) -> bool:
        return self._graph is not None

    # ------------------------------------------------------------------ the step
    def _forward_backward(self, b: dict, generator: Optional[torch.Generator] = None) -> dict:
        """Render, losses, backward, Adam; returns the loss tensors (no host sync)."""
        batch = RayBatch(b["origins"], b["dirs"], b["rgb"], b["labels"], b["depth"])
        out = self.model.render_rays(b["origins"], b["dirs"], b["near"], b["far"], training=True,
                                     depth=b["depth"], generator=generator, jitter=b.get("jitter"))
        losses = self.model.losses(out, batch)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        result = {k: v.detach() for k, v in losses.items()}
        if "samples_per_ray" in out:
            spr = out["samples_per_ray"]
            result["samples_per_ray"] = spr if isinstance(spr, torch.Tensor) else \
                torch.tensor(float(spr), device=self.device)
        return result

    def _inputs(self, batch: RayBatch, generator: Optional[torch.Generator]) -> dict:
        n = len(batch)
        dev = self.device
        b = {"origins": batch.origins, "dirs": batch.dirs, "rgb": batch.rgb, "labels": batch.labels,
             "depth": batch.depth if batch.depth is not None else torch.zeros(n, device=dev),
             "near": torch.full((n,), self.near, device=dev), "far": torch.full((n,), self.far, device=dev)}
        if self.use_graph:  # the graph cannot draw from a generator: its random numbers are inputs
            b["jitter"] = torch.rand(n, 2, device=dev, generator=generator)
        return b

    def step(self, batch: RayBatch, lr: float, generator: Optional[torch.Generator] = None) -> dict:
        """One step on ``batch`` at learning rate ``lr``; returns the loss tensors
        (``loss``, ``loss_rgb``, ``loss_semantic``, ``loss_depth``, ``psnr``,
        ``samples_per_ray`` where the model reports it), valid until the next step."""
        self.set_learning_rate(lr)
        b = self._inputs(batch, generator)
        if not self.use_graph:
            return self._forward_backward(b, generator)
        if self._graph is not None:
            if b["origins"].shape != self._static["origins"].shape:
                self.invalidate()
            else:
                for k, v in b.items():
                    self._static[k].copy_(v)
                self._graph.replay()
                return self._static_out
        return self._warm_or_capture(b, generator)

    def _warm_or_capture(self, b: dict, generator) -> dict:
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        cur = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(cur)
        if self._eager_steps < WARMUP_STEPS:
            with torch.cuda.stream(self._stream):
                out = self._forward_backward(b, generator)
            cur.wait_stream(self._stream)
            self._eager_steps += 1
            return out
        static = {k: v.clone() for k, v in b.items()}
        graph = torch.cuda.CUDAGraph()
        try:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
                static_out = self._forward_backward(static, generator)
        except Exception as exc:  # keep training eagerly: same numbers, slower
            cur.wait_stream(self._stream)
            self.use_graph = False
            self.graph_error = f"{type(exc).__name__}: {exc}"
            log.warning("CUDA graph capture of the training step failed (%s); training continues without it",
                        self.graph_error)
            self.invalidate()
            self._rebuild_optimizer_uncapturable()
            return self._forward_backward(b, generator)
        cur.wait_stream(self._stream)
        self._graph, self._static, self._static_out = graph, static, static_out
        self.captures += 1
        graph.replay()  # the capture recorded the step without running it
        return static_out

    def _rebuild_optimizer_uncapturable(self) -> None:
        state = self.optimizer.state_dict()
        self.optimizer = make_optimizer(self.model, self.cfg, capturable=False)
        try:
            self.optimizer.load_state_dict(state)
        except Exception:  # pragma: no cover - fresh state is a safe fallback
            log.warning("optimiser state could not be carried over after the failed capture; restarting it")
