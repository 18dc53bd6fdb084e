"""Models: a field plus its sampler and renderer, with their training losses.

* :class:`NeRFSemanticModel` — the paper: coarse and fine Semantic-NeRF MLPs,
  64 stratified + 128 importance samples, raw density noise in training,
  losses on both the coarse and the fine outputs.
* :class:`HashSemanticModel` — the fast field: hash grid + small heads, an
  occupancy grid that skips empty space, optional depth supervision.

Both take rays in world metres (directions with camera z = 1, so ``t`` is
z-depth) and return ``rgb`` (R, 3), ``depth`` (R,), ``acc`` (R,) and
``semantic`` (R, C-1) accumulated logits over the valid classes.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import triton_runtime
from .fields.hash_field import HashSemanticField
from .fields.semantic_nerf import SemanticNeRFMLP
from .occupancy import OccupancyGrid, march_rays_dense
from .render import (
    accumulate,
    nerf_deltas,
    sample_pdf,
    stratified_samples,
    volume_render,
    weights_from_density,
    weights_from_density_by_matmul,
)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` (NaN elsewhere ignored); 0 when the mask is
    empty.  No host sync."""
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp_min(1).to(values.dtype)


def semantic_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "ce", q: float = 0.7) -> torch.Tensor:
    """Semantic loss over the valid classes, averaged over labelled rays; label 0
    (void) is ignored, and a batch with no labelled ray gives 0.  No host sync.

    ``kind``: ``ce`` cross-entropy (the paper); ``gce`` generalized cross-entropy
    (Zhang & Sabuncu 2018), ``(1 - p_y^q) / q``, which bounds the pull of a label
    the field disagrees with (robust to label noise; q -> 0 is CE, q = 1 is MAE);
    ``bootstrap`` soft bootstrapping (Reed et al. 2015), CE against
    ``q * one_hot + (1 - q) * p`` with the prediction detached."""
    target = labels.long() - 1  # void -> -1
    valid = target >= 0
    tg = target.clamp_min(0)
    lg = logits.float()
    if kind == "ce":
        per_ray = F.cross_entropy(lg, tg, reduction="none")
    elif kind == "gce":
        p_y = torch.softmax(lg, -1).gather(1, tg[:, None]).squeeze(1)
        per_ray = (1.0 - p_y.clamp_min(1e-6) ** q) / q
    elif kind == "bootstrap":
        logp = torch.log_softmax(lg, -1)
        soft = q * F.one_hot(tg, lg.shape[-1]).float() + (1.0 - q) * logp.detach().exp()
        per_ray = -(soft * logp).sum(-1)
    else:
        raise ValueError(f"unknown semantic loss {kind!r} (expected ce, gce or bootstrap)")
    return masked_mean(per_ray, valid)


def mse_to_psnr(mse: float) -> float:
    return float(-10.0 * math.log10(max(mse, 1e-10)))


def losses_to_floats(losses: dict) -> dict:
    """Tensor losses (:meth:`SemanticModel.losses`, plus ``samples_per_ray``) as
    floats, with one device sync."""
    keys = [k for k, v in losses.items() if isinstance(v, torch.Tensor)]
    vals = torch.stack([losses[k].detach().float().reshape(()) for k in keys]).tolist() if keys else []
    out = {k: v for k, v in losses.items() if not isinstance(v, torch.Tensor)}
    out.update(zip(keys, vals))
    return out


class SemanticModel(nn.Module):
    """Common interface of the models (see module docstring)."""

    def __init__(self, cfg: dict, num_classes: int, bounds):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a semantic map needs at least one class besides void, got num_classes={num_classes}")
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.num_valid = self.num_classes - 1
        self.register_buffer("scene_bounds", torch.as_tensor(bounds, dtype=torch.float32).reshape(2, 3).clone())

    # -- to implement
    def render_rays(self, origins, dirs, near, far, training: bool = False, depth=None,
                    generator: Optional[torch.Generator] = None, jitter: Optional[torch.Tensor] = None) -> dict:
        """Render rays (R,) from ``origins``/``dirs`` (R, 3) between ``near``/``far`` (R,).
        ``jitter`` (R, 2) uniform numbers replace the generator's draws for the
        sample positions where the model supports it (CUDA-graph training)."""
        raise NotImplementedError

    def density_fn(self, points: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def semantic_fn(self, points: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def color_fn(self, points: torch.Tensor, viewdirs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def param_groups(self) -> list:
        raise NotImplementedError

    def learning_rate(self, step: int) -> float:
        t = self.cfg["train"]
        return float(t["lrate"]) * 0.1 ** (step / max(float(t["lrate_decay"]), 1.0))

    def before_step(self, step: int, generator=None) -> None:
        """Hook run before each training step (occupancy updates)."""

    # -- shared
    def losses(self, out: dict, batch) -> dict:
        """Total loss and its parts for a ray batch, all tensors (``loss`` with its
        graph; ``loss_rgb``, ``loss_semantic``, ``loss_depth``, ``psnr`` detached).
        Nothing is read back to the host, so a training step can be captured in a
        CUDA graph; :func:`losses_to_floats` converts for logging."""
        t = self.cfg["train"]
        mse = F.mse_loss(out["rgb"], batch.rgb)
        loss_rgb = mse
        kind, q = t["semantic_loss"], float(t["semantic_loss_q"])
        loss_sem = semantic_loss(out["semantic"], batch.labels, kind, q)
        parts = {}
        if "rgb_coarse" in out:
            rgb_c = F.mse_loss(out["rgb_coarse"], batch.rgb)
            sem_c = semantic_loss(out["semantic_coarse"], batch.labels, kind, q)
            # the parts by level, for the seed's TensorBoard scalars (issue 18)
            parts = {"loss_rgb_fine": mse.detach(), "loss_rgb_coarse": rgb_c.detach(),
                     "loss_semantic_fine": loss_sem.detach(), "loss_semantic_coarse": sem_c.detach()}
            loss_rgb = loss_rgb + rgb_c
            loss_sem = loss_sem + sem_c
        total = loss_rgb + float(t["wgt_sem"]) * loss_sem
        loss_depth = torch.zeros((), device=mse.device)
        if float(t["wgt_depth"]) > 0 and batch.depth is not None:
            loss_depth = masked_mean((out["depth"] - batch.depth).abs(), batch.depth > 0)  # NaN > 0 is False
            total = total + float(t["wgt_depth"]) * loss_depth
        psnr = -10.0 * torch.log10(mse.detach().float().clamp_min(1e-10))
        return {"loss": total, "loss_rgb": loss_rgb.detach(), "loss_semantic": loss_sem.detach(),
                "loss_depth": loss_depth.detach(), "psnr": psnr, **parts}

    @torch.no_grad()
    def render_chunked(self, origins, dirs, near: float, far: float, chunk: int) -> dict:
        """Render many rays without gradients, ``chunk`` rays at a time."""
        outs = []
        for s in range(0, origins.shape[0], chunk):
            o, d = origins[s:s + chunk], dirs[s:s + chunk]
            n = torch.full((o.shape[0],), float(near), device=o.device)
            f = torch.full((o.shape[0],), float(far), device=o.device)
            r = self.render_rays(o, d, n, f, training=False)
            outs.append({k: r[k] for k in ("rgb", "depth", "acc", "semantic")})
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


class NeRFSemanticModel(SemanticModel):
    """The paper's coarse-to-fine Semantic-NeRF."""

    def __init__(self, cfg: dict, num_classes: int, bounds):
        super().__init__(cfg, num_classes, bounds)
        m, r = cfg["model"], cfg["render"]
        self.coarse = SemanticNeRFMLP(self.num_valid, m["netdepth"], m["netwidth"], r["multires"],
                                      r["multires_views"], use_viewdirs=r["use_viewdirs"])
        self.fine = SemanticNeRFMLP(self.num_valid, m["netdepth_fine"], m["netwidth_fine"], r["multires"],
                                    r["multires_views"], use_viewdirs=r["use_viewdirs"]) \
            if r["N_importance"] > 0 else None

    def _run(self, net: SemanticNeRFMLP, t, origins, dirs, training: bool, generator=None) -> dict:
        R, S = t.shape
        pts = origins[:, None, :] + t[..., None] * dirs[:, None, :]
        vd = F.normalize(dirs, dim=-1)[:, None, :].expand(R, S, 3)
        chunk = int(self.cfg["model"]["netchunk"])
        flat_p, flat_d = pts.reshape(-1, 3), vd.reshape(-1, 3)
        parts = [net(flat_p[s:s + chunk], flat_d[s:s + chunk]) for s in range(0, flat_p.shape[0], chunk)]
        raw = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        sigma_raw = raw["sigma_raw"].reshape(R, S)
        noise_std = float(self.cfg["render"]["raw_noise_std"])
        if training and noise_std > 0:
            sigma_raw = sigma_raw + torch.randn(sigma_raw.shape, device=t.device, generator=generator) * noise_std
        sigma = torch.relu(sigma_raw)
        rgb = torch.sigmoid(raw["rgb_raw"]).reshape(R, S, 3)
        sem = raw["semantic"].reshape(R, S, -1)
        return volume_render(sigma, nerf_deltas(t, dirs), t, rgb, sem, self.cfg["render"]["white_bkgd"])

    def render_rays(self, origins, dirs, near, far, training: bool = False, depth=None, generator=None,
                    jitter=None) -> dict:
        r = self.cfg["render"]
        perturb = training and bool(r["perturb"])
        t = stratified_samples(near, far, origins.shape[0], r["N_samples"], perturb, origins.device, generator)
        coarse = self._run(self.coarse, t, origins, dirs, training, generator)
        if self.fine is None:
            return coarse
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        t_fine = sample_pdf(mids, coarse["weights"][:, 1:-1].detach(), r["N_importance"], not perturb, generator)
        t_all, _ = torch.sort(torch.cat([t, t_fine.detach()], -1), -1)
        fine = self._run(self.fine, t_all, origins, dirs, training, generator)
        fine.update({"rgb_coarse": coarse["rgb"], "semantic_coarse": coarse["semantic"],
                     "depth_coarse": coarse["depth"]})
        return fine

    def _net(self):
        return self.fine if self.fine is not None else self.coarse

    def density_fn(self, points):
        return torch.relu(self._net().density_raw(points))

    def semantic_fn(self, points):
        return self._net().semantic_logits(points)

    def color_fn(self, points, viewdirs):
        return torch.sigmoid(self._net()(points, viewdirs)["rgb_raw"])

    def param_groups(self) -> list:
        return [{"params": list(self.parameters()), "lr": float(self.cfg["train"]["lrate"])}]


def _joined(parts: list) -> torch.Tensor:
    """``torch.cat(parts)`` without the copy when there is one part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class HashSemanticModel(SemanticModel):
    """Hash-grid field with occupancy-grid ray marching."""

    def __init__(self, cfg: dict, num_classes: int, bounds):
        super().__init__(cfg, num_classes, bounds)
        h, r = cfg["model"]["hash"], cfg["render"]
        self.field = HashSemanticField(bounds, self.num_valid, **h)  # model.hash keys are its keywords
        # False: the semantic loss trains only the semantic branch (no gradient into
        # density, the compositing weights or the shared encoding), so the field
        # cannot bend its geometry per ray to fit a pixel's noisy label.
        self.semantic_geometry_grad = bool(cfg["train"]["semantic_geometry_grad"])
        self.grid = OccupancyGrid(bounds, r["occupancy_resolution"], r["occupancy_threshold"])
        near, far = r["depth_range"]
        self.step_size = (far - near) / r["march_steps"]
        self.amp = False  # set by the mapper (bf16 autocast on CUDA)
        # how a CUDA view is rendered without gradients: "packed" (the CPU's front-to-back blocks with
        # early termination, heads only where visible) or "dense" (every marched sample in the fixed
        # layout, one CUDA graph per chunk); render.view_path
        self.view_path = str(r["view_path"])
        # samples kept per ray when rendering without gradients (views, meshes' shading rays);
        # render.view_max_samples, 0 = max_samples_per_ray (what training uses)
        self.view_samples = int(r["view_max_samples"]) or int(r["max_samples_per_ray"])
        # dense views without gradients: the heads run on each ray's this many heaviest samples
        # (render.view_head_samples, 0 = every sample)
        self.view_head_samples = int(r["view_head_samples"])
        # share of the samples placed at the grid's first surface (render.surface_sample_fraction)
        self.surface_fraction = float(r["surface_sample_fraction"])
        # a grid cell's width in march steps: how far behind a cell's front face its surface may be
        cell = float(self.grid.cell_size.max())  # the grid is still on the CPU here
        self.surface_spread_steps = max(1, math.ceil(cell / self.step_size))
        # torch (whole-tensor passes, the reference), triton (one kernel, CUDA) or auto (the kernel for
        # renders without gradients where Triton and CUDA are there): render.march_backend
        self.march_backend = str(r["march_backend"])

    def marcher(self, origins: torch.Tensor) -> str:
        """The ray marcher for this call (render.march_backend).  ``auto``: the Triton kernel for
        renders without gradients on CUDA (views, mesh shading: 19 ms against 29 ms for a 320x240
        view on an H200), the PyTorch passes inside training steps, where the captured graph
        replays them faster than the kernel walks a 4096-ray batch (docs/benchmarks.md)."""
        if self.march_backend != "auto":
            return self.march_backend
        use_kernel = origins.is_cuda and not torch.is_grad_enabled() and triton_runtime.available()
        return "triton" if use_kernel else "torch"

    def before_step(self, step: int, generator=None) -> None:
        r = self.cfg["render"]
        if step % max(int(r["occupancy_update_every"]), 1) == 0:
            self.grid.update(self.field.density, self.step_size,
                             warmup=step < int(r["occupancy_warmup_steps"]), generator=generator)

    def render_rays(self, origins, dirs, near, far, training: bool = False, depth=None, generator=None,
                    jitter=None) -> dict:
        """Training (or any call with gradients): every marched sample in the
        fixed layout.  Rendering without gradients: the same samples composited
        front to back with early termination (:meth:`_render_inference`; the CPU,
        and ``render.view_path: packed`` on a GPU), or all of them at once on a GPU
        (``dense``: :meth:`render_dense`, which a CUDA graph can replay)."""
        if not training and not torch.is_grad_enabled():
            if origins.is_cuda and self.view_path == "dense":
                return self.render_dense(origins, dirs, near, far, max_samples=self.view_samples)
            return self._render_inference(origins, dirs, near, far)
        if jitter is None and training and bool(self.cfg["render"]["perturb"]):
            jitter = torch.rand(origins.shape[0], 2, device=origins.device, generator=generator)
        return self.render_dense(origins, dirs, near, far, jitter)

    def render_dense(self, origins, dirs, near, far, jitter: Optional[torch.Tensor] = None,
                     max_samples: Optional[int] = None) -> dict:
        """Render rays from every marched sample in the fixed ``(R, max_samples_per_ray)``
        layout (:func:`march_rays_dense`): shapes depend on R only and nothing is
        read back to the host, so training steps and views can be captured in
        CUDA graphs.  ``jitter`` (R, 2) perturbs the samples (training); ``max_samples``
        overrides ``render.max_samples_per_ray`` (views: ``render.view_max_samples``)."""
        r = self.cfg["render"]
        R = origins.shape[0]
        K = int(max_samples or r["max_samples_per_ray"])
        m = march_rays_dense(origins, dirs, near, far, self.grid, int(r["march_steps"]), K, jitter,
                             self.surface_fraction, self.surface_spread_steps, self.marcher(origins))
        pts = (origins[:, None, :] + m["t"][..., None] * dirs[:, None, :]).reshape(-1, 3)
        vd = F.normalize(dirs, dim=-1)[:, None, :].expand(R, K, 3).reshape(-1, 3)
        heads = self.view_head_samples
        top = max_samples is not None and 0 < heads < K and not torch.is_grad_enabled()
        amp = self.amp and origins.is_cuda
        # cache_enabled=False: autocast's weight-cast cache must not outlive a CUDA graph capture
        with torch.autocast(device_type=origins.device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
            enc, sigma, geo = self.field.features(pts)
        sigma = torch.where(m["valid"], sigma.float().reshape(R, K), 0.0)
        w = weights_from_density(sigma, m["delta"])
        acc = w.sum(-1)
        if top:
            # views (render.view_head_samples): the colour and semantic heads only on each ray's
            # ``heads`` samples of largest weight; the weight left out (behind or in front of the
            # surface, a small share once it is opaque) takes their weighted mean.  Density,
            # opacity and depth keep every sample; shapes stay static for the CUDA graph.
            w_head, slot = w.topk(heads, dim=-1)
            w_head = w_head * (acc / w_head.sum(-1).clamp_min(1e-10))[:, None]
            at = (slot + torch.arange(R, device=pts.device)[:, None] * K).reshape(-1)
            enc, geo, pts, vd = enc[at], geo[at], pts[at], vd[at]
            w_sem = w_head
        else:
            w_head = w
            w_sem = w if self.semantic_geometry_grad else w.detach()
        with torch.autocast(device_type=origins.device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
            rgb = self.field.color_head(geo, vd)
            logits = self.field.semantic_head(enc, pts, not self.semantic_geometry_grad)
        n = w_head.shape[1]
        res = {"rgb": accumulate(w_head, rgb.float().reshape(R, n, 3)), "depth": accumulate(w, m["t"]),
               "acc": acc, "semantic": accumulate(w_sem, logits.reshape(R, n, -1)),
               "samples_per_ray": m["valid"].sum(dtype=torch.float32) / max(R, 1)}
        if r["white_bkgd"]:
            res["rgb"] = res["rgb"] + (1.0 - res["acc"][:, None])
        return res

    # Inference: front-to-back blocks of slots with early ray termination, heads only where visible.
    TERMINATION_TRANSMITTANCE = 1e-4
    MIN_WEIGHT = 1e-4
    SLOT_BLOCKS = (8, 16)  # density evaluated for slots [0, 8), then [8, 16), then the rest

    @torch.no_grad()
    def _render_inference(self, origins, dirs, near, far) -> dict:
        """Rendering without gradients, front to back (``render.view_path: packed``, and every view
        on a CPU).  The rays are marched into the training renderer's fixed layout; densities are
        evaluated for a block of slots of every ray (slots [0, 8)), then for the next block of the
        rays still open only, and so on (nerfacc's early termination): a ray closes once its
        transmittance drops below 1e-4 (so samples behind an opaque surface are never evaluated:
        on a trained room about 80 % of them) or its samples end.  The colour and semantic heads then run only on
        samples of weight > 1e-4, and the weight left out of a ray goes to them in proportion
        (as :meth:`render_dense`'s heaviest samples).  Matches :meth:`render_dense` of every
        sample up to that cut-off; the ray counts are read back to the host once a block."""
        r = self.cfg["render"]
        R, dev = origins.shape[0], origins.device
        K = self.view_samples
        m = march_rays_dense(origins, dirs, near, far, self.grid, int(r["march_steps"]), K, None,
                             self.surface_fraction, self.surface_spread_steps, self.marcher(origins))
        t, delta = m["t"], m["delta"]
        chunk = max(int(self.cfg["model"]["netchunk"]), 1)
        amp = self.amp and origins.is_cuda
        shared = self.field.semantic_encoding is None  # the semantic head reads the density grid's features
        sigma = torch.zeros(R, K, device=dev)
        geo = enc = None
        tau = torch.zeros(R, device=dev)  # optical depth of the slots evaluated so far
        open_rays = torch.arange(R, device=dev)
        tau_stop = -math.log(self.TERMINATION_TRANSMITTANCE)
        edges = [0, *[b for b in self.SLOT_BLOCKS if b < K], K]
        evaluated = 0
        for s0, s1 in zip(edges[:-1], edges[1:]):
            n = open_rays.numel()
            if n == 0:
                break
            rows = slice(None) if n == R else open_rays  # every ray: plain slices, no gather
            pts = (origins[rows][:, None, :] + t[rows, s0:s1][..., None] * dirs[rows][:, None, :]).reshape(-1, 3)
            sig, g, e = [], [], []
            for c0 in range(0, pts.shape[0], chunk):
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                    enc_c, sig_c, geo_c = self.field.features(pts[c0:c0 + chunk])
                sig.append(sig_c.float())
                g.append(geo_c)
                if shared:
                    e.append(enc_c)
            if geo is None:
                geo = torch.zeros(R, K, g[0].shape[-1], device=dev, dtype=g[0].dtype)
                if shared:
                    enc = torch.zeros(R, K, e[0].shape[-1], device=dev, dtype=e[0].dtype)
            sig_b = torch.where(m["valid"][rows, s0:s1], _joined(sig).reshape(n, s1 - s0), 0.0)
            sigma[rows, s0:s1] = sig_b
            geo[rows, s0:s1] = _joined(g).reshape(n, s1 - s0, -1)
            if shared:
                enc[rows, s0:s1] = _joined(e).reshape(n, s1 - s0, -1)
            tau[rows] += (sig_b * delta[rows, s0:s1]).sum(-1)
            evaluated += n * (s1 - s0)
            # open: not yet opaque, and samples left (kept samples come first on each ray)
            if s1 < K:
                open_rays = open_rays[(tau[open_rays] < tau_stop) & m["valid"][open_rays, s1]]
        w = weights_from_density_by_matmul(sigma, delta)  # the training renderer's compositing
        acc = w.sum(-1)
        dep = (w * t).sum(-1)
        ray, slot = (w > self.MIN_WEIGHT).nonzero(as_tuple=True)
        w_vis = w[ray, slot]
        kept = torch.zeros(R, device=dev).index_add_(0, ray, w_vis)
        w_vis = w_vis * (acc / kept.clamp_min(1e-10))[ray]
        rgb = torch.zeros(R, 3, device=dev)
        sem = torch.zeros(R, self.num_valid, device=dev)
        vd = F.normalize(dirs, dim=-1)
        for c0 in range(0, ray.numel(), chunk):
            rc, sc = ray[c0:c0 + chunk], slot[c0:c0 + chunk]
            pts = origins[rc] + t[rc, sc, None] * dirs[rc]
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                col = self.field.color_head(geo[rc, sc], vd[rc])
                lg = self.field.semantic_head(enc[rc, sc] if shared else geo.new_zeros(rc.shape[0], 0), pts)
            wc = w_vis[c0:c0 + chunk, None]
            rgb.index_add_(0, rc, wc * col.float())
            sem.index_add_(0, rc, wc * lg.float())
        if r["white_bkgd"]:
            rgb = rgb + (1.0 - acc[:, None])
        return {"rgb": rgb, "depth": dep, "acc": acc, "semantic": sem,
                "samples_per_ray": m["valid"].sum(dtype=torch.float32) / max(R, 1),
                "evaluated_per_ray": evaluated / max(R, 1)}

    def density_fn(self, points):
        return self.field.density(points)

    def semantic_fn(self, points):
        return self.field.semantic_logits(points)

    def color_fn(self, points, viewdirs):
        return self.field.color(points, viewdirs)

    def param_groups(self) -> list:
        lr = float(self.cfg["train"]["lrate"])
        enc = list(self.field.encoding.parameters())
        enc_ids = {id(p) for p in enc}
        mlp = [p for p in self.parameters() if id(p) not in enc_ids]
        return [{"params": enc, "lr": lr, "weight_decay": 0.0},
                {"params": mlp, "lr": lr, "weight_decay": 1e-6}]


def build_model(cfg: dict, num_classes: int, bounds) -> SemanticModel:
    kind = cfg["model"]["type"]
    if kind == "nerf":
        return NeRFSemanticModel(cfg, num_classes, bounds)
    if kind == "hash":
        return HashSemanticModel(cfg, num_classes, bounds)
    raise ValueError(f"unknown model.type {kind!r} (expected 'nerf' or 'hash')")
