"""The Mapper: the engine's one entry point, online and offline.

Frames go in (:meth:`Mapper.add_frame`); keyframes are kept in a bounded
replay buffer on the training device; :meth:`Mapper.step` (or the background
thread from :meth:`Mapper.start`) optimises the model on ray batches mixing
the newest keyframes with replayed ones; :meth:`Mapper.render` and
:meth:`Mapper.extract_mesh` read the map at any time, thread-safely.
Offline training is the same Mapper with ``mapper.keyframe_policy: all`` and
every training frame added before the first step.

Thread safety: one re-entrant lock guards the model, optimiser and buffer; a
training step holds it while it is launched (on a GPU, one CUDA-graph replay:
see :mod:`semnerf_ros.trainer`), and a frame's intake while it is stored.  Views
(:mod:`semnerf_ros.view_renderer`), meshes and saved maps are made from
snapshots of the weights taken under the lock, so training goes on while they
are rendered, extracted or written.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import queue
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..io.atomic import AtomicWriteError
from ..io.atomic import atomic_write_bytes as write_bytes_atomically
from ..logs import ThrottledLog
from . import mesh as mesh_mod
from .config import EngineConfig, make_config
from .frame import Frame
from .geometry import Intrinsics, camera_rays, depth_points_world, points_seen_by_views_torch, validate_pose
from .keyframes import KeyframePolicy, RayBatch, ReplayBuffer
from .label_fusion import VoxelLabelFusion
from .models import SemanticModel, build_model, losses_to_floats
from .render import semantic_entropy, semantic_probabilities
from .trainer import WARMUP_STEPS, Trainer
from .view_renderer import ViewRenderer

log = logging.getLogger("semnerf_ros.mapper")

MAP_FORMAT = "semnerf_ros.map"
MAP_VERSION = 1
#: Config sections a map file brings when loaded into a running mapper (:meth:`Mapper.load_state`):
#: the field's architecture, its sampling / encoding / occupancy settings and its training schedule
#: and loss weights.  The running mapper keeps the others: ``mapper`` (buffer bound, keyframe
#: thresholds, eviction, rates, storage device), ``experiment`` (device, seed) and ``logging``.
MAP_FILE_SECTIONS = ("model", "render", "train")
#: longest a training step waits for a view to finish (mapper.views_pause_training), in seconds
MAX_VIEW_PAUSE_S = 0.25
#: share of the training loop's time that waits for views may take at most (views back to back,
#: e.g. 640x480 at 30 Hz, must not stop the map from learning) ...
VIEW_PAUSE_SHARE = 0.25
#: ... saved up to this many seconds while no view waits
VIEW_PAUSE_CREDIT_S = 0.1
#: seconds between repeated log lines of one kind (out-of-memory, failed steps)
LOG_PERIOD_S = 5.0
#: seconds of recent training steps over which ``stats()["iterations_per_second"]`` is measured
RATE_WINDOW_S = 3.0


class MapNotReadyError(RuntimeError):
    """The map has no model yet (no keyframe has arrived)."""


class MapFileError(RuntimeError):
    """A map file that cannot be written or read."""


#: ``Mapper.extract_mesh(observed_only=True)``: keyframes without depth are rendered at every this
#: many pixels (each direction) and their opaque pixels' depth decides what they saw
OBSERVED_RENDER_STRIDE = 2
#: opacity a rendered keyframe pixel needs for its depth to count
OBSERVED_RENDER_OPACITY = 0.9

@dataclass
class FrameDecision:
    """What :meth:`Mapper.add_frame` did with a frame."""

    keyframe: bool
    reason: str
    keyframe_id: Optional[int] = None
    evicted_id: Optional[int] = None


@dataclass
class RenderResult:
    """A rendered view (numpy, at the requested resolution).

    rgb (H, W, 3) float32 [0, 1]; depth (H, W) float32 z-depth metres;
    labels (H, W) int32 class ids (never 0/void); probs (H, W, C) float32 class
    probabilities indexed by class id (void column 0; None when not asked for); entropy (H, W) float32
    nats; opacity (H, W) float32 accumulated alpha; intrinsics used.
    """

    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray
    probs: Optional[np.ndarray]
    entropy: np.ndarray
    opacity: np.ndarray
    intrinsics: Intrinsics


def resolve_device(spec=None) -> torch.device:
    """'auto' (or None) -> CUDA when available, else CPU; otherwise torch.device(spec)."""
    if spec is None or str(spec) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
    return dev


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` with the package's atomic writer
    (:func:`semnerf_ros.io.atomic.atomic_write_bytes`: temporary file in the same
    directory, fsync, ``os.replace``); no partial file is left on failure.  Raises
    :class:`MapFileError` naming the problem."""
    try:
        return write_bytes_atomically(path, data)
    except AtomicWriteError as exc:
        raise MapFileError(str(exc)) from exc


class Mapper:
    """Incremental semantic field with keyframe replay; see the module docstring.

    Args:
        cfg: a full config (``config.make_config`` / ``load_config``); None = defaults.
        num_classes: class ids 0..num_classes-1, 0 = void.
        class_names: optional names, index = class id.
        device: 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device; None = cfg's.
        bounds: (2, 3) scene box (world metres); None = ``render.scene_bounds``
            or, when that is 'auto', derived from the first keyframe.
    """

    def __init__(self, cfg: Optional[dict] = None, num_classes: int = 2, class_names=None, device=None,
                 bounds=None):
        self.cfg = make_config(cfg)  # defaults filled in, types checked (idempotent on a full config)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (void + at least one class), got {num_classes}")
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else \
            ["void"] + [f"class_{i}" for i in range(1, self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        self.device = resolve_device(device if device is not None else self.cfg["experiment"]["device"])
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self._lock = threading.RLock()
        # views render from a snapshot of the weights, outside the map lock
        self._view_renderer = ViewRenderer(self.device, priority=int(self.cfg["mapper"]["view_stream_priority"]),
                                           wait_for_training=bool(self.cfg["mapper"]["views_wait_for_training"]))
        # views rendering now (mapper.views_pause_training): the training loop launches no step meanwhile
        self._views_rendering = 0
        self._views_done = threading.Condition(threading.Lock())
        # Readers and writers other than the training thread announce themselves
        # here; the training loop yields the lock to them between steps (Python
        # locks are not fair, and a busy loop re-acquiring it would starve them).
        self._waiters = 0
        self._waiters_lock = threading.Lock()
        # recent durations (s) of lock holders and their waits, for stats()
        self._timings: dict = defaultdict(lambda: deque(maxlen=200))
        seed = int(self.cfg["experiment"]["seed"])
        torch.manual_seed(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        mp = self.cfg["mapper"]
        self.policy = KeyframePolicy(mp["min_translation"], mp["min_rotation_deg"], mp["max_overlap"],
                                     mp["keyframe_policy"])
        self.buffer = ReplayBuffer(mp["max_keyframes"], self._storage_device(), mp["eviction"], mp["recent_window"])
        self.fusion = self._make_fusion()
        # votes cast from rendered depth, per keyframe id: {"points", "labels", "step"} (taken back
        # when that keyframe is rendered again)
        self._rendered_votes: dict = {}
        if bounds is None and isinstance(self.cfg["render"]["scene_bounds"], (list, tuple)):
            bounds = self.cfg["render"]["scene_bounds"]
        self._explicit_bounds = bounds is not None
        self.model: Optional[SemanticModel] = None
        self.trainer: Optional[Trainer] = None
        if bounds is not None:
            self._build_model(np.asarray(bounds, dtype=np.float64).reshape(2, 3))
        self.n_rays = int(self.cfg["render"]["N_rays"])
        self._reset_counters()
        self._throttled = ThrottledLog(LOG_PERIOD_S)
        # background thread
        self._thread: Optional[threading.Thread] = None
        self._stop_evt = threading.Event()
        self._pause_evt = threading.Event()
        # keyframes' label votes waiting for the vote thread (mapper.defer_label_votes)
        self._votes: "queue.Queue" = queue.Queue()
        self._vote_thread: Optional[threading.Thread] = None
        # held while the vote thread casts and while a reset or a load replaces the votes; queued
        # votes of an older generation (before the reset) are dropped
        self._vote_lock = threading.Lock()
        self._vote_generation = 0

    @contextlib.contextmanager
    def _priority_lock(self, name: str = "other"):
        """Take the map lock ahead of the background training loop; records how
        long the caller waited for it and held it (``stats()['timing_ms']``)."""
        t0 = time.perf_counter()
        with self._waiters_lock:
            self._waiters += 1
        try:
            self._lock.acquire()
        finally:
            with self._waiters_lock:
                self._waiters -= 1
        t1 = time.perf_counter()
        try:
            yield
        finally:
            self._lock.release()
            t2 = time.perf_counter()
            self._timings[name + "_wait"].append(t1 - t0)
            self._timings[name].append(t2 - t1)

    # ------------------------------------------------------------------ setup
    def _storage_device(self) -> torch.device:
        spec = self.cfg["mapper"]["storage_device"]
        return self.device if spec == "auto" else torch.device(spec)

    def _reset_counters(self) -> None:
        self.step_count = 0
        self.frames_added = 0
        self.frames_screened = 0  # frames screen_frame turned away before any queue
        self.keyframes_added = 0
        self.oom_events = 0
        self.step_errors = 0
        self.last_losses: dict = {}
        self._pending_losses = None
        self.train_seconds = 0.0
        self._step_times: deque = deque(maxlen=200)

    def _make_fusion(self) -> Optional[VoxelLabelFusion]:
        """The multi-view label votes (``train.label_fusion``), or None."""
        cfg = EngineConfig.from_dict(self.cfg)
        tr = cfg.train
        if not tr.label_fusion or not cfg.experiment.enable_semantic:
            return None
        return VoxelLabelFusion(self.num_classes, tr.label_fusion_cell, self.device, tr.label_fusion_min_count,
                                tr.label_fusion_margin, stride=tr.label_fusion_stride,
                                keep_share=tr.label_fusion_keep_share, noise_classes=tr.label_fusion_noise_classes)

    def _fuse(self, fusion: Optional[VoxelLabelFusion], depth: Optional[np.ndarray], labels: Optional[np.ndarray],
              intrinsics: Intrinsics, pose) -> None:
        """Cast a keyframe's label votes into ``fusion`` (no-op without fusion or depth).  Needs
        no map lock: the votes are swapped in whole (engine/label_fusion.py), so training
        goes on meanwhile."""
        if fusion is None or depth is None or labels is None:
            return
        t0 = time.perf_counter()
        was_full = fusion.full
        was_noise = fusion.noise
        fusion.integrate_depth(depth, labels, intrinsics, pose)
        if fusion.noise_classes and not torch.equal(was_noise, fusion.noise):
            names = [self.class_names[i] for i in fusion.noise_class_ids()]
            log.info("label fusion: classes judged noise (many votes, no voxel won): %s; their labels train "
                     "nothing", ", ".join(names) or "none")
        if fusion.full and not was_full:
            log.warning("label fusion holds %d voxels, its memory bound: new surface keeps its pixel labels "
                        "(raise train.label_fusion_cell)", len(fusion))
        self._timings["fuse"].append(time.perf_counter() - t0)

    def _render_label_depth(self) -> None:
        """Label fusion for a keyframe without depth (``train.label_fusion_rendered_depth``):
        render the least recently rendered one at every ``label_fusion_render_stride``-th pixel
        from the live map, take back the votes its previous rendering cast, cast votes at its
        opaque pixels and keep the depth as its rays' label depth.  Called under the map lock
        from the training step, every ``label_fusion_render_every`` steps (one host sync)."""
        tr = self.cfg["train"]
        buf = self.buffer
        by_id = {buf.slot_ids[s]: s for s in buf.order if not buf.has_depth_host[s]}
        for kid in [k for k in self._rendered_votes if k not in by_id]:
            del self._rendered_votes[kid]   # evicted: its votes stay, as measured ones do
        if not by_id:
            return
        kid = min(by_id, key=lambda k: (self._rendered_votes.get(k, {}).get("step", -1), k))
        slot = by_id[kid]
        t0 = time.perf_counter()
        s = int(tr["label_fusion_render_stride"])
        off = s // 2   # the centre of each s x s block of pixels
        model = self.model
        with torch.no_grad():
            model.eval()
            o, d, depth, opaque, sub = self._render_strided_depth(
                model, buf.poses_host[slot], buf.K_host[slot], buf.intrinsics.shape, s,
                float(tr["label_fusion_render_opacity"]), chunk=None)
            model.train()
        labels = buf.labels[slot, off::s, off::s].reshape(-1).to(self.device).long()
        keep = opaque & (labels > 0)
        points = (o + d * depth[:, None])[keep]
        old = self._rendered_votes.get(kid)
        if old is not None:
            self.fusion.integrate(old["points"], old["labels"], weight=-1.0)
        self.fusion.integrate(points, labels[keep])
        self._rendered_votes[kid] = {"points": points, "labels": labels[keep], "step": self.step_count}
        buf.set_label_depth(slot, torch.where(opaque, depth, 0.0).reshape(sub.height, sub.width), s, off)
        self._timings["render_label_depth"].append(time.perf_counter() - t0)

    def _recast_votes(self) -> None:
        """Rebuild the label votes from the buffered keyframes (a map file without them)."""
        if self.fusion is None:
            return
        self._rendered_votes = {}
        self.fusion.clear()
        buf = self.buffer
        for slot in buf.order:
            if not buf.has_depth_host[slot]:
                continue
            fx, fy, cx, cy = (float(v) for v in buf.K_host[slot])
            h, w = buf.intrinsics.shape
            self.fusion.integrate_depth(buf.depth[slot].float().cpu().numpy(), buf.labels[slot].cpu().numpy(),
                                        Intrinsics(fx, fy, cx, cy, w, h), buf.poses_host[slot])

    def _build_model(self, bounds: np.ndarray) -> None:
        self.model = build_model(self.cfg, self.num_classes, bounds).to(self.device)
        self.model.amp = self._amp()
        self.trainer = Trainer(self.model, self.cfg, self.device)

    def _amp(self) -> bool:
        mp = self.cfg["train"]["mixed_precision"]
        return self.device.type == "cuda" and ((mp in (True, "true")) or mp == "auto")

    @property
    def optimizer(self) -> Optional[torch.optim.Optimizer]:
        """The model's Adam (None before the first keyframe)."""
        return None if self.trainer is None else self.trainer.optimizer

    def _auto_bounds(self, frame: Frame) -> np.ndarray:
        """Scene box from the first keyframe: a cube reaching the far plane in
        every direction from the camera (room for the robot to explore a house:
        everything the first view can see, and as far again behind it), grown
        to hold every measured depth point plus ``render.bounds_margin``.  Set
        ``render.scene_bounds`` for larger or outdoor spaces."""
        far = float(self.cfg["render"]["depth_range"][1])
        margin = float(self.cfg["render"]["bounds_margin"])
        cam = frame.pose[:3, 3]
        lo, hi = cam - far, cam + far
        depth = frame.depth_valid()
        if depth is not None:
            h = frame.intrinsics.shape[0]
            pw = depth_points_world(depth, frame.intrinsics, frame.pose, stride=max(h // 32, 1))
            if len(pw):
                lo = np.minimum(lo, pw.min(0) - margin)
                hi = np.maximum(hi, pw.max(0) + margin)
        return np.stack([lo, hi])

    def warmup(self, steps: int = 2 + WARMUP_STEPS) -> float:
        """Compile and initialise the GPU code paths (Triton kernels, cuBLAS,
        fused Adam, autocast, the CUDA-graph capture of the training step) on a
        throwaway model with the training step itself, so the first real frames
        do not pay for it.  Call before data arrives (the node does at start-up).
        Returns the seconds it took (0 on the CPU, which compiles nothing)."""
        if self.device.type != "cuda":
            return 0.0
        t0 = time.perf_counter()
        bounds = self.scene_bounds if self.model is not None else np.array([[-1.0] * 3, [1.0] * 3])
        model = build_model(self.cfg, self.num_classes, bounds).to(self.device)
        model.amp = self._amp()
        trainer = Trainer(model, self.cfg, self.device)
        n = self.n_rays
        g = torch.Generator(device=self.device).manual_seed(0)
        d = torch.randn(n, 3, device=self.device, generator=g)
        batch = RayBatch(torch.zeros(n, 3, device=self.device), d / d[:, 2:].abs().clamp_min(0.2),
                         torch.rand(n, 3, device=self.device, generator=g),
                         torch.randint(0, self.num_classes, (n,), device=self.device, generator=g),
                         torch.full((n,), 2.0, device=self.device))
        lr = model.learning_rate(0)
        for i in range(steps):
            model.before_step(i, g)
            trainer.step(batch, lr, g)
        model.eval()
        near, far = self.cfg["render"]["depth_range"]
        model.render_chunked(batch.origins, batch.dirs, near, far, n)
        del model, trainer
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        return time.perf_counter() - t0

    @property
    def scene_bounds(self) -> Optional[np.ndarray]:
        return None if self.model is None else self.model.scene_bounds.cpu().numpy().astype(np.float64)

    # ------------------------------------------------------------------ input
    def add_frame(self, frame: Frame) -> FrameDecision:
        """Validate a frame and keep it if it is a keyframe.  Raises
        ``FrameError`` / ``PoseError`` for an invalid frame (the map is unchanged)."""
        frame.validate(self.num_classes)
        depth = frame.depth_valid()
        with self._priority_lock("add_frame"):
            self.frames_added += 1
            is_kf, reason = self.policy.decide(frame.pose, frame.intrinsics, depth, self.buffer.keyframe_set())
            if not is_kf:
                return FrameDecision(False, reason)
            if self.model is None:
                self._build_model(self._auto_bounds(frame))
                log.info("scene bounds set from the first keyframe: %s", np.round(self.scene_bounds, 2).tolist())
            kid, evicted = self.buffer.add(frame)
            self.policy.accept(frame.pose, frame.intrinsics)
            self.keyframes_added += 1
            fusion = self.fusion
        if fusion is not None and depth is not None and self._vote_thread is not None:
            # the vote thread casts them: a keyframe's votes took 51 ms on an H200 that trained (most
            # likely their host syncs waiting behind the queued steps), more than a 30 Hz camera leaves
            self._votes.put((self._vote_generation, (depth, frame.labels, frame.intrinsics, frame.pose)))
        else:
            self._fuse(fusion, depth, frame.labels, frame.intrinsics, frame.pose)
        return FrameDecision(True, reason, kid, evicted)

    def wait_for_votes(self, timeout: Optional[float] = None) -> bool:
        """Block until every queued keyframe's label votes are cast (True), or ``timeout`` s pass."""
        t_end = None if timeout is None else time.monotonic() + timeout
        while self._votes.unfinished_tasks:
            if t_end is not None and time.monotonic() >= t_end:
                return False
            time.sleep(0.005)
        return True

    def _vote_loop(self) -> None:
        """The vote thread: casts queued keyframes' votes in arrival order.  Votes queued before
        the map was reset or loaded are dropped."""
        while True:
            job = self._votes.get()
            try:
                if job is None:
                    return
                generation, args = job
                with self._vote_lock:   # a reset or a load bumps the generation (and replaces the votes)
                    if generation == self._vote_generation:
                        self._fuse(self.fusion, *args)
            except Exception:  # noqa: BLE001 - a bad keyframe must not end the votes of the next
                self._log_throttled("votes", logging.ERROR, "casting a keyframe's label votes failed",
                                    exc_info=True)
            finally:
                self._votes.task_done()

    def screen_frame(self, frame: Frame) -> Optional[str]:
        """Whether a frame can be a keyframe, decided without the map lock (a caller
        that queues frames for :meth:`add_frame` drops the others at once, so the
        keyframe policy, not a full queue, decides what is kept).  Returns the reason
        a frame is not a keyframe, or None when it may be one (or cannot be judged
        here: :meth:`add_frame` validates and decides again).  Counted in
        ``frames_added``/``frames_screened`` when it screens a frame out."""
        try:
            frame.validate(self.num_classes)  # an invalid frame is add_frame's to report
            depth = frame.depth_valid()
            is_kf, reason = self.policy.decide(frame.pose, frame.intrinsics, depth, self.buffer.keyframe_set())
        except Exception:  # noqa: BLE001
            return None
        if is_kf:
            return None
        self.frames_added += 1
        self.frames_screened += 1
        return reason

    # ------------------------------------------------------------------ training
    def step(self, n: int = 1, sync: bool = True) -> dict:
        """Run ``n`` optimisation steps; returns the last step's losses ({} when
        there is nothing to train on or the step was skipped, and with
        ``sync=False``, which lets a GPU run ahead; :meth:`stats` has them)."""
        out: dict = {}
        for _ in range(n):
            with self._lock:
                out = self._train_step(sync)
        return out

    def _train_step(self, sync: bool = True) -> dict:
        """One step under the lock.  ``sync``: return the losses as floats (one
        device sync); else keep them as tensors until :meth:`stats` reads them,
        so that a GPU step never waits for the GPU."""
        if self.model is None or len(self.buffer) == 0:
            return {}
        t0 = time.perf_counter()
        model = self.model
        model.train()
        try:
            model.before_step(self.step_count, self.generator)
            lr = model.learning_rate(self.step_count)
            if self.cfg["render"]["no_batching"]:   # the seed's sampling: one keyframe per step
                batch = self.buffer.sample_image(self.n_rays, self.generator)
            else:
                batch = self.buffer.sample(self.n_rays, self.cfg["mapper"]["recent_fraction"], self.generator)
            if batch.origins.device != self.device:
                batch = type(batch)(*(None if x is None else x.to(self.device) for x in
                                      (batch.origins, batch.dirs, batch.rgb, batch.labels, batch.depth,
                                       batch.label_depth)))
            if self.fusion is not None:
                tr = self.cfg["train"]
                if tr["label_fusion_rendered_depth"] and self.step_count >= int(tr["label_fusion_render_after"]) \
                        and self.step_count % int(tr["label_fusion_render_every"]) == 0:
                    self._render_label_depth()
                label_depth = batch.label_depth if batch.label_depth is not None else batch.depth
                batch.labels = self.fusion.relabel(batch.origins, batch.dirs, label_depth, batch.labels)
            losses = self.trainer.step(batch, lr, self.generator)
        except torch.cuda.OutOfMemoryError:
            self.trainer.optimizer.zero_grad(set_to_none=True)
            self.trainer.invalidate()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.oom_events += 1
            old = self.n_rays
            self.n_rays = max(64, self.n_rays // 2)
            self._log_throttled("oom", logging.WARNING, "out of GPU memory in a training step (%d so far): step "
                                "skipped, ray batch %d -> %d", self.oom_events, old, self.n_rays)
            return {}
        self.step_count += 1
        # a replayed graph rewrites its outputs at the next step: keep a copy
        self._pending_losses = ({k: v.clone() for k, v in losses.items()} if self.trainer.graph_active
                                else losses, lr)
        out = self._read_losses() if sync else {}
        now = time.perf_counter()
        self.train_seconds += now - t0
        self._step_times.append(now)
        self._timings["step"].append(now - t0)
        return out

    def _read_losses(self) -> dict:
        """The last step's losses as floats (one device sync), kept in ``last_losses``."""
        pending = self._pending_losses
        if pending is not None:
            losses, lr = pending
            self.last_losses = {**losses_to_floats(losses), "lr": lr}
            self._pending_losses = None
        return dict(self.last_losses)

    # background thread -------------------------------------------------
    def start(self) -> None:
        """Start (or resume) background training; returns immediately."""
        self._pause_evt.clear()
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_evt.clear()
        si = float(self.cfg["mapper"]["switch_interval_ms"])
        if si > 0 and self.device.type == "cuda":
            # Process-wide: a GPU step is Python launching kernels, and every thread
            # that wants the GIL back waits up to this long for the training thread.
            sys.setswitchinterval(si / 1000.0)
        self._thread = threading.Thread(target=self._loop, name="semnerf-train", daemon=True)
        self._thread.start()
        if bool(self.cfg["mapper"]["defer_label_votes"]) and self._vote_thread is None:
            self._vote_thread = threading.Thread(target=self._vote_loop, name="semnerf-votes", daemon=True)
            self._vote_thread.start()

    def pause(self) -> None:
        self._pause_evt.set()

    def resume(self) -> None:
        self._pause_evt.clear()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the background thread; True when it ended within ``timeout`` s."""
        self._stop_evt.set()
        v, self._vote_thread = self._vote_thread, None   # from now on add_frame casts its votes itself
        if v is not None:   # the votes already queued are cast first
            self._votes.put(None)
            v.join(timeout)
        t = self._thread
        if t is None:
            return True
        t.join(timeout)
        alive = t.is_alive()
        if not alive:
            self._thread = None
        return not alive

    def _log_throttled(self, key: str, level: int, msg: str, *args, exc_info: bool = False) -> None:
        """Log at most once per :data:`LOG_PERIOD_S` per ``key`` (:class:`semnerf_ros.logs.ThrottledLog`:
        the next line says how many were suppressed; a fault repeating every step must not flood the log)."""
        self._throttled(key, msg % args, lambda text: log.log(level, text, exc_info=exc_info))

    @property
    def is_training(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._pause_evt.is_set()

    def _loop(self) -> None:
        max_rate = float(self.cfg["mapper"]["max_steps_per_second"])
        yield_s = float(self.cfg["mapper"]["yield_ms"]) / 1000.0
        max_in_flight = max(int(self.cfg["mapper"]["max_steps_in_flight"]), 0)
        credit, credit_at = VIEW_PAUSE_CREDIT_S, time.perf_counter()   # seconds training may wait for views
        # GPU steps launched but not finished: the loop waits (without the GIL) for
        # the oldest before launching more, so the CPU never runs far ahead and a
        # frame's upload or a view queues behind at most this many steps
        inflight: deque = deque()
        while not self._stop_evt.is_set():
            if self._pause_evt.is_set() or len(self.buffer) == 0:
                self._stop_evt.wait(0.02)
                continue
            while self._waiters and not self._stop_evt.is_set():
                time.sleep(0.0005)  # let a waiting frame, render or save take the lock first
            now = time.perf_counter()   # the views' pause credit (mapper.views_pause_training)
            credit = min(VIEW_PAUSE_CREDIT_S, credit + (now - credit_at) * VIEW_PAUSE_SHARE)
            credit_at = now
            if self._views_rendering and credit > 0:
                with self._views_done:  # no new step until the view is done, within the credit
                    self._views_done.wait_for(lambda: not self._views_rendering or self._stop_evt.is_set(),
                                              timeout=min(MAX_VIEW_PAUSE_S, credit))
                credit_at = time.perf_counter()
                credit -= credit_at - now
            t0 = time.perf_counter()
            try:
                self.step(sync=False)
            except Exception:  # never let one bad step end training
                self.step_errors += 1
                self._log_throttled("step_error", logging.ERROR, "training step failed (%d so far); continuing",
                                    self.step_errors, exc_info=True)
                self._stop_evt.wait(0.1)
            if self.device.type == "cuda":
                ev = torch.cuda.Event()
                ev.record()
                inflight.append(ev)
                if len(inflight) > max_in_flight:
                    inflight.popleft().synchronize()  # releases the GIL while it waits
            if max_rate > 0:
                rest = 1.0 / max_rate - (time.perf_counter() - t0)
                if rest > 0:
                    self._stop_evt.wait(rest)
            elif yield_s > 0 and not (self.trainer is not None and self.trainer.graph_active):
                # An eager GPU step is Python launching hundreds of kernels, holding the
                # GIL; without a pause the ROS executor's threads starve.  A replayed
                # step launches a few dozen and then waits above, GIL released.
                self._stop_evt.wait(yield_s)
            else:
                time.sleep(0)

    # ------------------------------------------------------------------ output
    def render(self, pose, intrinsics: Intrinsics, scale: float = 1.0, chunk: Optional[int] = None,
               with_probs: bool = True) -> RenderResult:
        """Render the map from a camera-to-world ``pose`` (optical axes).  ``with_probs=False``
        leaves ``probs`` None (the node publishes labels and entropy only; the class
        probabilities of a 320x240 view are ~9 MB to copy off the GPU)."""
        t_start = time.perf_counter()
        T = validate_pose(pose)
        intr = intrinsics.scaled(scale) if scale != 1.0 else intrinsics
        self._require_content()
        near, far = self.cfg["render"]["depth_range"]
        chunk = chunk or (int(self.cfg["model"]["chunk"]) if self.cfg["model"]["type"] == "hash" else 4096 * 4)
        view = self._view_renderer
        h, w = intr.shape
        with view.lock, self._pausing_training():   # from the snapshot to the images on the host
            with self._priority_lock("render"):  # held only to snapshot the weights
                if self.model is None:
                    raise MapNotReadyError("the map is empty: no keyframe has been added yet")
                view.refresh(self.model)
            with view.on_stream():  # rays, render and images on the views' stream (CUDA)
                o, d = camera_rays(T, intr, self.device)
                out = view.render(o, d, near, far, chunk)
                probs = semantic_probabilities(out["semantic"])
                labels = probs.argmax(-1)
                ent = semantic_entropy(probs)
                # one copy to the host for the five images (each copy waits for the GPU): labels
                # travel as float32, exact for class ids below 2**24
                images = view.to_host(torch.cat([out["rgb"].float().clamp(0, 1), out["depth"].float()[:, None],
                                                 ent.float()[:, None], out["acc"].float()[:, None],
                                                 labels.float()[:, None]], 1))
                result = RenderResult(   # copies: the host buffer is the next view's
                    rgb=np.ascontiguousarray(images[:, 0:3]).reshape(h, w, 3),
                    depth=np.ascontiguousarray(images[:, 3]).reshape(h, w),
                    labels=images[:, 6].astype(np.int32).reshape(h, w),
                    probs=probs.float().reshape(h, w, -1).cpu().numpy() if with_probs else None,
                    entropy=np.ascontiguousarray(images[:, 4]).reshape(h, w),
                    opacity=np.ascontiguousarray(images[:, 5]).reshape(h, w),
                    intrinsics=intr,
                )
        # the whole view, images on the host (``render`` is the map lock's part of it)
        self._timings["view"].append(time.perf_counter() - t_start)
        return result

    @contextlib.contextmanager
    def _pausing_training(self):
        """While a view renders with ``mapper.views_pause_training``, the training loop launches
        no further step (it waits at most :data:`MAX_VIEW_PAUSE_S` a step, and at most
        :data:`VIEW_PAUSE_SHARE` of its time); otherwise a no-op."""
        if not bool(self.cfg["mapper"]["views_pause_training"]):
            yield
            return
        with self._views_done:
            self._views_rendering += 1
        try:
            yield
        finally:
            with self._views_done:
                self._views_rendering -= 1
                self._views_done.notify_all()

    def _require_content(self) -> None:
        """Raise :class:`MapNotReadyError` while the map holds nothing learnt: no model yet
        (automatic bounds), or -- with explicit bounds, where the model exists from the start
        and after :meth:`reset` -- no keyframe and no training step (its renders would be the
        initialisation's noise)."""
        if self.model is None or (len(self.buffer) == 0 and self.step_count == 0):
            raise MapNotReadyError("the map is empty: no keyframe has been added yet")

    def snapshot_model(self) -> SemanticModel:
        """A frozen copy of the model (taken under the lock) for slow readers."""
        self._require_content()
        with self._priority_lock("snapshot"):
            snap = copy.deepcopy(self.model)
        snap.eval()
        for p in snap.parameters():
            p.requires_grad_(False)
        return snap

    def extract_mesh(self, resolution: int = 256, density_threshold: Optional[float] = None, bounds=None,
                     min_component_faces: int = 0, progress: bool = False, observed_only: bool = False,
                     observed_tol: float = 0.05, observed_render_stride: int = OBSERVED_RENDER_STRIDE, **shading):
        """Marching-cubes mesh of the current map with per-vertex colours and
        classes (see :mod:`semnerf_ros.mesh`), from a consistent snapshot.
        ``observed_only``: keep only the faces whose vertices some keyframe saw
        (within ``observed_tol`` m plus one marching-cubes cell of its measured
        depth), which removes floaters in free space the cameras looked through and
        surfaces no view constrained.  A keyframe without depth (RGB-only input) is
        rendered from the same snapshot at every ``observed_render_stride``-th pixel and its
        opaque pixels' depth stands in for the measured one, so a floater the renders look
        through goes too; ``observed_render_stride`` 0 counts such a keyframe's whole frustum
        up to the far plane instead (the rule before).
        ``shading`` passes ``sample_mode``, ``normal_offset``, ``ray_samples``,
        ``chunk``, ``allow_empty``, ``cancel`` or ``mc_backend`` through to
        :func:`semnerf_ros.mesh.extract_mesh`; ``sample_mode="full_ray"`` (the seed's
        colouring) renders with this map's own renderer unless a ``render_fn`` is given."""
        views = self._keyframe_views() if observed_only else None
        snap = self.snapshot_model()
        b = np.asarray(bounds, dtype=np.float64).reshape(2, 3) if bounds is not None else \
            snap.scene_bounds.cpu().numpy().astype(np.float64)

        def semantic_fn(points):
            return F.pad(snap.semantic_fn(points).float(), (1, 0), value=float("-inf"))

        def render_fn(origins, dirs, near, far):
            """The seed's full-ray colouring: this map's renderer on the same snapshot, logits with
            the void column (never predicted) in front."""
            out = snap.render_chunked(origins, dirs, near, far, origins.shape[0])
            return out["rgb"], F.pad(out["semantic"].float(), (1, 0), value=float("-inf"))

        kwargs = dict(shading)
        if kwargs.get("sample_mode") == "full_ray":
            kwargs.setdefault("render_fn", render_fn)
        if density_threshold is not None:
            kwargs["density_threshold"] = density_threshold
        filter_stats: dict = {}
        if views is not None:
            # the observed-face test runs before shading: only the kept faces' vertices are shaded
            kwargs["face_filter"] = partial(self._observed_faces, snap, views, b, int(resolution), observed_tol,
                                            int(observed_render_stride), filter_stats)
        mesh = mesh_mod.extract_mesh(snap.density_fn, b, resolution=resolution, semantic_fn=semantic_fn,
                                     color_fn=snap.color_fn, device=self.device,
                                     min_component_faces=min_component_faces, class_names=self.class_names,
                                     progress=progress, **kwargs)
        if views is not None:
            mesh.stats["faces_unobserved_removed"] = int(mesh.stats.get("faces_filtered_out", 0))
            mesh.stats.update(filter_stats)
        return mesh

    def _observed_faces(self, snap: SemanticModel, views, b: np.ndarray, resolution: int, observed_tol: float,
                        observed_render_stride: int, stats: dict, vertices: np.ndarray,
                        faces: np.ndarray) -> np.ndarray:
        """(F,) bool: the faces whose three vertices some keyframe saw (:meth:`extract_mesh`'s
        ``observed_only``; ``views`` from :meth:`_keyframe_views`, ``b`` the extraction's bounds;
        the seconds spent rendering depth for keyframes without it go into ``stats``)."""
        poses, intrinsics, depths, has_depth = views
        far = float(self.cfg["render"]["depth_range"][1])
        # a vertex of marching cubes lies up to about a cell from the surface it stands for
        cell = float(np.max(b[1] - b[0])) / max(int(resolution), 1)
        tol = observed_tol + cell
        rendered = (~has_depth).cpu() if observed_render_stride > 0 else torch.zeros_like(has_depth, device="cpu")
        measured = ~rendered
        # on the keyframes' device: the depth images never leave it
        verts = torch.from_numpy(np.ascontiguousarray(vertices)).to(depths.device)
        seen = torch.zeros(verts.shape[0], dtype=torch.bool, device=verts.device)
        if bool(measured.any()):
            sel = measured.to(depths.device)
            seen |= points_seen_by_views_torch(verts, poses[measured], intrinsics[measured], depths[sel],
                                               has_depth[sel], tol=tol, max_depth=far)
        if bool(rendered.any()):
            t0 = time.perf_counter()
            r_depth, r_K = self._render_view_depths(snap, poses[rendered], intrinsics[rendered], depths.shape[1:],
                                                    int(observed_render_stride))
            seen |= points_seen_by_views_torch(verts, poses[rendered], r_K, r_depth.to(verts.device),
                                               torch.ones(r_depth.shape[0], dtype=torch.bool, device=verts.device),
                                               tol=tol, max_depth=far)
            stats["seconds_rendering_keyframe_depths"] = time.perf_counter() - t0
        faces_t = torch.from_numpy(np.ascontiguousarray(faces, dtype=np.int64)).to(verts.device)
        return seen[faces_t].all(dim=1).cpu().numpy()

    def _render_strided_depth(self, model: SemanticModel, pose, K, shape, stride: int, opacity: float,
                              chunk: Optional[int]):
        """``model`` (no gradients, as it is) rendered from camera-to-world ``pose`` at the centre of
        every ``stride`` x ``stride`` block of pixels of an image of ``shape`` (H, W) with ``K``
        (``fx, fy, cx, cy``): (origins, dirs with camera z = 1, z-depth (n,) metres, opaque (n,) --
        opacity >= ``opacity`` and a finite depth --, the smaller image's Intrinsics).  ``chunk``
        None renders every ray in one pass."""
        h, w = int(shape[0]), int(shape[1])
        off = stride // 2   # the centre of each stride x stride block of pixels
        fx, fy, cx, cy = (float(v) for v in K)
        sub = Intrinsics(fx / stride, fy / stride, (cx - off) / stride, (cy - off) / stride,
                         len(range(off, w, stride)), len(range(off, h, stride)))
        o, d = camera_rays(pose, sub, self.device)
        near, far = self.cfg["render"]["depth_range"]
        out = model.render_chunked(o, d, near, far, max(o.shape[0], 1) if chunk is None else chunk)
        depth = out["depth"]
        return o, d, depth, (out["acc"] >= opacity) & torch.isfinite(depth), sub

    def _render_view_depths(self, snap: SemanticModel, poses: torch.Tensor, intrinsics: torch.Tensor, shape,
                            stride: int):
        """Z-depths (V, h, w) metres of ``snap`` rendered from ``poses`` (V, 4, 4 camera-to-world) at
        every ``stride``-th pixel of an image of ``shape`` (H, W) with ``intrinsics`` (V, 4), and the
        intrinsics of those smaller images; 0 where the render is not opaque
        (:data:`OBSERVED_RENDER_OPACITY`)."""
        out_depth, out_K = [], []
        with torch.no_grad():
            for pose, k in zip(poses.numpy(), intrinsics.numpy()):
                _, _, depth, opaque, sub = self._render_strided_depth(
                    snap, pose, k, shape, stride, OBSERVED_RENDER_OPACITY, int(self.cfg["model"]["chunk"]))
                out_depth.append(torch.where(opaque, depth, torch.zeros_like(depth)).float()
                                 .reshape(sub.height, sub.width))
                out_K.append(torch.tensor([sub.fx, sub.fy, sub.cx, sub.cy], dtype=torch.float64))
        return torch.stack(out_depth), torch.stack(out_K)

    def _keyframe_views(self):
        """The buffered keyframes as tensors: poses (V, 4, 4) camera-to-world and intrinsics (V, 4)
        ``fx, fy, cx, cy`` (host), depths (V, H, W) metres and has_depth (V,) on the buffer's
        device (copies, taken under the lock)."""
        with self._priority_lock("snapshot"):
            buf = self.buffer
            order = list(buf.order)
            sel = torch.tensor(order, device=buf.depth.device, dtype=torch.long)
            depth = buf.depth[sel].float()
            has = buf.has_depth[sel].clone()
            poses = torch.from_numpy(buf.poses_host[order].copy())
            K = torch.from_numpy(buf.K_host[order].copy())
        return poses, K, depth, has

    def stats(self) -> dict:
        """Counters and rates for status displays."""
        times = list(self._step_times)
        rate = 0.0
        # steps in the last RATE_WINDOW_S seconds up to *now*: a paused or stalled
        # trainer reads 0 within that window instead of keeping its last rate
        now = time.perf_counter()
        recent = [t for t in times if t >= now - RATE_WINDOW_S]
        if len(recent) >= 2 and recent[-1] > recent[0]:
            rate = (len(recent) - 1) / (recent[-1] - recent[0])
        gpu_mb = 0.0
        if self.device.type == "cuda":
            gpu_mb = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return {
            "step": self.step_count,
            "keyframes": len(self.buffer),
            "max_keyframes": self.buffer.capacity,
            "frames_added": self.frames_added,
            "frames_screened": self.frames_screened,
            "keyframes_added": self.keyframes_added,
            "keyframes_evicted": self.buffer.evicted,
            "training": self.is_training,
            "device": str(self.device),
            "iterations_per_second": rate,
            "train_seconds": self.train_seconds,
            "gpu_memory_mb": gpu_mb,
            "buffer_memory_mb": self.buffer.memory_bytes() / 2 ** 20,
            "ray_batch": self.n_rays,
            "oom_events": self.oom_events,
            "step_errors": self.step_errors,
            "timing_ms": self.timing_summary(),
            "cuda_graph": bool(self.trainer is not None and self.trainer.graph_active),
            "label_fusion": None if self.fusion is None else dict(self.fusion.stats(),
                                                                  rendered_keyframes=len(self._rendered_votes),
                                                                  keyframes_waiting=self._votes.qsize()),
            **self._read_losses(),
        }

    def timing_summary(self) -> dict:
        """Median and largest of the last 200 durations (ms) of: training steps
        (``step``), and for ``add_frame`` / ``render`` / ``snapshot`` the time
        holding the map lock and (``*_wait``) waiting for it."""
        out = {}
        for name, q in list(self._timings.items()):
            v = list(q)
            if v:
                out[name] = {"p50": float(np.median(v)) * 1000.0, "max": float(max(v)) * 1000.0, "n": len(v)}
        return out

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """Everything needed to restore the map, as CPU tensors and plain types."""
        with self._priority_lock():
            return {
                "format": MAP_FORMAT,
                "version": MAP_VERSION,
                "config": copy.deepcopy(self.cfg),
                "num_classes": self.num_classes,
                "class_names": list(self.class_names),
                "bounds": None if self.model is None else self.model.scene_bounds.cpu().clone(),
                "model": None if self.model is None else {k: v.detach().cpu().clone()
                                                          for k, v in self.model.state_dict().items()},
                "optimizer": None if self.trainer is None else _to_cpu(self.trainer.state_dict()),
                "buffer": self.buffer.state_dict(),
                "policy": self.policy.state_dict(),
                "counters": {"step": self.step_count, "frames_added": self.frames_added,
                             "keyframes_added": self.keyframes_added, "n_rays": self.n_rays},
                "grid_updates": getattr(getattr(self.model, "grid", None), "updates", 0),
                "label_fusion": None if self.fusion is None else self.fusion.state_dict(),
                # votes of rendered depth, so that a loaded map can take them back when it re-renders
                "label_fusion_rendered": {int(k): {"points": v["points"].cpu(), "labels": v["labels"].cpu()}
                                          for k, v in self._rendered_votes.items()},
            }

    def save(self, path) -> Path:
        """Write the whole map (field, optimiser, keyframes, config) atomically, with the label
        votes of every keyframe taken in so far (those still queued are cast first, up to 30 s)."""
        if not self.wait_for_votes(30.0):
            log.warning("saving the map with %d keyframes' label votes still uncast", self._votes.qsize())
        state = self.state_dict()
        buf = io.BytesIO()
        torch.save(state, buf)
        written = atomic_write_bytes(path, buf.getvalue())
        log.info("map saved to %s (%.1f MB)", written, buf.tell() / 2 ** 20)
        return written

    @staticmethod
    def read_state(path) -> dict:
        """Read and check a map file; raises :class:`MapFileError` naming the problem."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise MapFileError(f"map file not found: {p}")
        if p.stat().st_size == 0:
            raise MapFileError(f"map file {p} is empty (0 bytes)")
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, corrupt, or not a torch file
            raise MapFileError(f"cannot read map file {p}: truncated, corrupt or not a map file "
                               f"({type(exc).__name__}: {exc})") from exc
        if not isinstance(state, dict) or state.get("format") != MAP_FORMAT:
            raise MapFileError(f"{p} is not a semnerf_ros map file")
        if int(state.get("version", -1)) > MAP_VERSION:
            raise MapFileError(f"{p} has map format version {state.get('version')}, newer than this "
                               f"package reads ({MAP_VERSION})")
        for key in ("config", "num_classes", "class_names", "buffer", "counters"):
            if key not in state:
                raise MapFileError(f"{p} is missing '{key}'")
        return state

    @classmethod
    def from_state(cls, state: dict, device=None, runtime_cfg: Optional[dict] = None) -> "Mapper":
        """A Mapper from :meth:`state_dict` output.  ``runtime_cfg``: the config of a
        running mapper whose run-time settings win over the file's (the load rule,
        :data:`MAP_FILE_SECTIONS`); None = everything from the file."""
        cfg = make_config(state["config"])
        if runtime_cfg is not None:
            cfg = _apply_load_rule(cfg, runtime_cfg)
        m = cls(cfg, int(state["num_classes"]), state["class_names"], device=device,
                bounds=None if state["bounds"] is None else state["bounds"].numpy())
        if state["model"] is not None:
            m.model.load_state_dict(state["model"])
            if state.get("optimizer") is not None:
                m.trainer.load_state_dict(state["optimizer"])
            grid = getattr(m.model, "grid", None)
            if grid is not None:
                grid.updates = int(state.get("grid_updates", 0))
        m._load_keyframes(state["buffer"])
        saved = state.get("label_fusion")
        if m.fusion is not None and not (saved is not None and m.fusion.load_state_dict(saved)):
            m._recast_votes()   # no votes in the file, or cast with another voxel size
        elif m.fusion is not None:   # the loaded votes include these; they go first when rendering resumes
            m._rendered_votes = {int(k): {"points": v["points"].to(m.device), "labels": v["labels"].to(m.device),
                                          "step": -1} for k, v in (state.get("label_fusion_rendered") or {}).items()}
        m.policy.load_state_dict(state["policy"])
        c = state["counters"]
        m.step_count = int(c["step"])
        m.frames_added = int(c["frames_added"])
        m.keyframes_added = int(c["keyframes_added"])
        m.n_rays = int(c.get("n_rays", m.n_rays))
        return m

    def _load_keyframes(self, buf: dict) -> None:
        """Fill the (empty) replay buffer with a map file's keyframes.  More of them
        than ``mapper.max_keyframes``: a warning, and the surplus is evicted by the
        buffer's own rule, as if they had arrived in order with this bound."""
        n = int(buf.get("count", 0))
        cap = self.buffer.capacity
        if n <= cap:
            self.buffer.load_state_dict(buf)
            return
        log.warning("the map file holds %d keyframes but max_keyframes is %d: evicting %d of them "
                    "(mapper.eviction '%s')", n, cap, n - cap, self.buffer.eviction)
        intr = Intrinsics.from_dict(buf["intrinsics"])
        ids = buf["ids"].tolist()
        for i in range(n):
            fx, fy, cx, cy = (float(v) for v in buf["K"][i])
            depth = buf["depth"][i].float().numpy() if bool(buf["has_depth"][i]) else None
            frame = Frame(rgb=buf["rgb"][i].numpy(), pose=buf["poses"][i].double().numpy(),
                          intrinsics=Intrinsics(fx, fy, cx, cy, intr.width, intr.height),
                          labels=buf["labels"][i].numpy().astype(np.int32), depth=depth,
                          stamp=float(buf["stamps"][i]))
            self.buffer.add(frame)
            self.buffer.slot_ids[self.buffer.order[-1]] = int(ids[i])   # keep the file's keyframe ids
        self.buffer.next_id = int(buf["next_id"])
        self.buffer.evicted += int(buf["evicted"])
        self.buffer.publish_snapshot()  # with the file's keyframe ids

    @classmethod
    def _read_and_build(cls, path, device=None, runtime_cfg: Optional[dict] = None):
        """(Mapper, its file's state) -- errors as :class:`MapFileError`."""
        state = cls.read_state(path)
        try:
            return cls.from_state(state, device=device, runtime_cfg=runtime_cfg), state
        except MapFileError:
            raise
        except Exception as exc:
            raise MapFileError(f"map file {path} does not fit this package: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def load(cls, path, device=None, runtime_cfg: Optional[dict] = None) -> "Mapper":
        """A new Mapper from a map file (see :meth:`save`); ``runtime_cfg`` as in
        :meth:`from_state`."""
        return cls._read_and_build(path, device, runtime_cfg)[0]

    def load_state(self, path) -> dict:
        """Replace this map by a saved one, in place, following the load rule
        (docs/architecture.md, "Mapper persistence"): the file brings the field
        (config sections :data:`MAP_FILE_SECTIONS`, weights, optimiser state), its
        keyframes and its counters; this mapper keeps its run-time settings (the
        ``mapper`` section -- buffer bound, keyframe thresholds, rates, storage
        device -- and ``experiment``: device, seed).  A file with more keyframes
        than ``mapper.max_keyframes`` loads with a warning, the surplus evicted.
        The file is read and a new map built first; on any error the live map is
        untouched.  Returns ``keyframes`` (kept), ``keyframes_in_file``,
        ``evicted`` (beyond the bound) and ``step``."""
        other, state = Mapper._read_and_build(path, device=self.device, runtime_cfg=self.cfg)
        with self._priority_lock(), self._vote_lock:
            if other.num_classes != self.num_classes:
                raise MapFileError(f"map file {path} has {other.num_classes} classes, this map {self.num_classes}")
            self._vote_generation += 1
            for name in ("cfg", "class_names", "policy", "buffer", "fusion", "_rendered_votes", "model", "trainer",
                         "n_rays", "step_count", "frames_added", "keyframes_added", "_explicit_bounds"):
                setattr(self, name, getattr(other, name))
            self.last_losses = {}
            self._step_times.clear()
        in_file = int(state["buffer"].get("count", 0))
        return {"keyframes": len(self.buffer), "keyframes_in_file": in_file,
                "evicted": in_file - len(self.buffer), "step": self.step_count}

    def reset(self) -> None:
        """Forget everything learnt and every keyframe (configuration kept)."""
        with self._priority_lock(), self._vote_lock:
            self._vote_generation += 1
            self.buffer.clear()
            if self.fusion is not None:
                self.fusion.clear()
            self._rendered_votes = {}
            self.policy.reset()
            bounds = self.scene_bounds if self._explicit_bounds else None
            self.model = None
            self.trainer = None
            if bounds is not None:
                self._build_model(bounds)
            self.n_rays = int(self.cfg["render"]["N_rays"])
            self._reset_counters()


def _apply_load_rule(file_cfg: dict, runtime_cfg: dict) -> dict:
    """The config a map file is loaded with into a running mapper: the file's
    :data:`MAP_FILE_SECTIONS`, the running config's other sections."""
    cfg = copy.deepcopy(make_config(runtime_cfg))
    sampling = cfg["render"]["no_batching"]
    for section in MAP_FILE_SECTIONS:
        cfg[section] = copy.deepcopy(file_cfg[section])
    cfg["render"]["no_batching"] = sampling   # ray sampling is the running mapper's, as recent_fraction
    return make_config(cfg)


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
