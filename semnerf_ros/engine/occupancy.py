"""Occupancy grid for empty-space skipping (instant-ngp / nerfacc style) and the
ray marcher that uses it.

The grid holds an exponential moving maximum of the field's density per cell
over the scene box.  Cells whose density would give an interval of one march
step less opacity than ``threshold`` are *empty* and skipped by the marcher.
All cells start occupied; during ``warmup_steps`` updates visit every cell,
later a random quarter plus the occupied ones (nerfacc's schedule).
"""
from __future__ import annotations

import math
import os
from typing import Optional

import torch
from torch import nn

from .march_triton import march_rays_dense_triton


class OccupancyGrid(nn.Module):
    """A ``resolution``^3 grid over ``bounds`` (2, 3), world metres."""

    def __init__(self, bounds, resolution: int = 128, threshold: float = 0.01, ema_decay: float = 0.95):
        super().__init__()
        b = torch.as_tensor(bounds, dtype=torch.float32).reshape(2, 3)
        self.register_buffer("bounds", b.clone())
        self.resolution = int(resolution)
        self.threshold = float(threshold)
        self.ema_decay = float(ema_decay)
        n = self.resolution ** 3
        self.register_buffer("density", torch.full((n,), -1.0))  # -1: never visited
        self.register_buffer("occupied", torch.ones(n, dtype=torch.bool))
        self.updates = 0

    @property
    def cell_size(self) -> torch.Tensor:
        return (self.bounds[1] - self.bounds[0]) / self.resolution

    def cell_index(self, points: torch.Tensor):
        """Flat cell index of each point and whether it lies inside the box."""
        rel = (points - self.bounds[0]) / (self.bounds[1] - self.bounds[0])
        inside = ((rel >= 0) & (rel < 1)).all(-1)
        ijk = (rel * self.resolution).long().clamp_(0, self.resolution - 1)
        r = self.resolution
        return (ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2], inside

    def query(self, points: torch.Tensor) -> torch.Tensor:
        """True where a point is inside the box and its cell is occupied."""
        idx, inside = self.cell_index(points)
        return self.occupied[idx] & inside

    def occupancy_fraction(self) -> float:
        return float(self.occupied.float().mean())

    @torch.no_grad()
    def update(self, density_fn, step_size: float, warmup: bool, chunk: int = 2 ** 20,
               generator: Optional[torch.Generator] = None) -> None:
        """Refresh cell densities with ``density_fn(points (N, 3)) -> (N,)`` at a
        random point of each visited cell; ``step_size`` (m) is the march step
        the opacity threshold refers to."""
        n = self.resolution ** 3
        dev = self.density.device
        if warmup:
            cells = torch.arange(n, device=dev)
        else:
            rand = torch.randint(0, n, (n // 4,), device=dev, generator=generator)
            cells = torch.cat([rand, self._occupied_sample(n // 4, generator)])
        r = self.resolution
        k = cells % r
        j = (cells // r) % r
        i = cells // (r * r)
        ijk = torch.stack([i, j, k], -1).float()
        jitter = torch.rand(ijk.shape, device=dev, generator=generator)
        pts = self.bounds[0] + (ijk + jitter) * self.cell_size
        sig = torch.cat([density_fn(pts[s:s + chunk]).float() for s in range(0, pts.shape[0], chunk)])
        old = self.density[cells]
        new = torch.where(old < 0, sig, torch.maximum(old * self.ema_decay, sig))
        self.density[cells] = new
        sigma_thresh = -math.log(1.0 - self.threshold) / max(step_size, 1e-6)
        visited = self.density >= 0
        # the visited cells' mean density (0 when none), kept on the device: no host sync
        mean = (self.density * visited).sum() / visited.sum().clamp_min(1)
        thr = mean.clamp(max=sigma_thresh)
        # in place: captured CUDA graphs hold this tensor's address
        self.occupied.copy_((self.density > thr) | ~visited)
        self.updates += 1

    def _occupied_sample(self, k: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        """``k`` flat indices of occupied cells, without a host sync (the update runs in the
        training thread under the map lock, where waiting for the GPU's queued steps would
        stall every reader of the map).  Strata of the occupied cells in index order: a random
        point in each where there are more occupied cells than ``k``, else each stratum's
        middle, which visits every occupied cell (nerfacc's schedule: a random ``k`` of them, or
        all).  With no cell occupied the last cell is visited (harmless: a visit only refreshes
        a density)."""
        dev = self.occupied.device
        counts = self.occupied.cumsum(0)                    # occupied cells up to each index
        total = counts[-1].float()
        step = total / k                                    # occupied cells a stratum holds
        r = torch.rand(k, device=dev, generator=generator)
        r = torch.where(step > 1, r, torch.full_like(r, 0.5))
        j = ((torch.arange(k, device=dev) + r) * step).long()   # 0-based rank among the occupied
        return torch.searchsorted(counts, j + 1).clamp_(max=self.occupied.numel() - 1)


def surface_sample_mass(occ: torch.Tensor, n_occ: torch.Tensor, tau: torch.Tensor, max_samples: int,
                        surface_fraction: float, spread_steps: int = 1) -> torch.Tensor:
    """How many of a ray's ``max_samples`` samples each march step should hold, as a fraction (R, S).

    A share ``surface_fraction`` follows the compositing weights that the occupancy grid's cell
    densities give along the ray (``tau`` (R, S): each step's optical depth from the grid, 0 on
    empty steps), so it lands where the grid puts the first visible surface.  A grid cell holds one
    density for its whole width, so the true surface may lie anywhere behind the cell's front
    face: each step's weight is spread evenly over it and the ``spread_steps - 1`` steps behind
    it (a cell's width in steps).  The rest is spread
    evenly over the occupied steps, so space behind surfaces keeps being sampled and trained (a
    march that stopped at the grid's surface would never correct a grid that is wrong there).
    No step gets more than one sample (mass <= 1 / max_samples): what a step cannot take is
    handed to the others in proportion to the room they have left. Rays whose grid holds no
    weight fall back to the even spread.
    """
    K = float(max_samples)
    occf = occ.float()
    even = occf / n_occ.clamp(min=1).float()[:, None]
    w = torch.exp(-(torch.cumsum(tau, -1) - tau)) * -torch.expm1(-tau)
    n = max(int(spread_steps), 1)
    if n > 1:  # causal moving sum over n steps, from the running total
        total = torch.cumsum(w, -1)
        w = total - torch.nn.functional.pad(total, (n, 0))[:, :-n]
    w = w * occf
    w_sum = w.sum(-1, keepdim=True)
    guided = torch.where(w_sum > 1e-6, w / w_sum.clamp(min=1e-12), even)
    mass = (1.0 - surface_fraction) * even + surface_fraction * guided
    cap = 1.0 / K
    spill = (mass - cap).clamp(min=0.0).sum(-1, keepdim=True)
    mass = mass.clamp(max=cap)
    room = (cap - mass) * occf
    share = (spill / room.sum(-1, keepdim=True).clamp(min=1e-12)).clamp(max=1.0)
    return (mass + room * share) * occf


def march_rays_dense(origins: torch.Tensor, dirs: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                     grid: OccupancyGrid, n_steps: int, max_samples: int,
                     jitter: Optional[torch.Tensor] = None, surface_fraction: float = 0.0,
                     surface_spread_steps: int = 1, backend: str = "torch") -> dict:
    """Sample rays through occupied cells only, into a fixed ``(R, max_samples)`` layout.

    Each ray is cut into ``n_steps`` equal z-depth steps over [near, far]
    (per-ray tensors (R,)); steps in empty cells are dropped.  When more than
    ``max_samples`` steps are occupied, an evenly spread subset of exactly
    ``max_samples`` is kept and each kept sample stands for ``n_occ /
    max_samples`` steps (its interval grows accordingly), so early in training,
    when every cell is occupied, samples still span the whole ray.

    ``surface_fraction`` > 0 places that share of the samples where the grid's
    densities put the first surface (:func:`surface_sample_mass`, spread over
    ``surface_spread_steps`` steps, a grid cell's width); each kept
    sample then stands for the occupied steps up to the next kept one.

    ``backend`` "triton" walks the steps in one kernel launch
    (:mod:`semnerf_ros.engine.march_triton`, render.march_backend) where the
    rays are on a CUDA device (or under ``TRITON_INTERPRET=1``); elsewhere, and
    for "torch", the whole-tensor code below runs: the reference.

    ``jitter`` (R, 2) uniform [0, 1) numbers perturb the step offset and the
    subset choice (training); None uses the cell centres (rendering).  Shapes
    depend on R only and nothing is read back to the host, so the marcher can
    run inside a captured CUDA graph.

    Returns ``t`` (R, K) z-depths (front to back, kept samples first),
    ``delta`` (R, K) interval lengths in metres (0 where no sample),
    ``valid`` (R, K) bool.
    """
    if backend == "triton" and (origins.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return march_rays_dense_triton(origins, dirs, near, far, grid, n_steps, max_samples, jitter,
                                       surface_fraction, surface_spread_steps)
    R = origins.shape[0]
    dev = origins.device
    K = int(max_samples)
    if jitter is None:
        jitter = torch.full((R, 2), 0.5, device=dev)
    # divisions by tensors, not Python numbers: PyTorch on CUDA multiplies by a scalar's reciprocal,
    # which rounds differently from the Triton marcher's IEEE division (and from the CPU's)
    dt = (far - near) / torch.full_like(far, float(n_steps))  # (R,)
    steps = torch.arange(n_steps, device=dev, dtype=torch.float32)
    t = near[:, None] + (steps[None, :] + jitter[:, :1]) * dt[:, None]  # (R, S)
    pts = origins[:, None, :] + t[..., None] * dirs[:, None, :]
    cell, inside = grid.cell_index(pts)
    occ = grid.occupied[cell] & inside  # (R, S)
    n_occ = occ.sum(-1, dtype=torch.int32)  # (R,)
    rank = torch.cumsum(occ, -1, dtype=torch.int32) - 1
    u = jitter[:, 1:]
    step_m = dt * dirs.norm(dim=-1)  # metres per step (R,)
    if surface_fraction > 0.0:
        tau = grid.density[cell].clamp(min=0.0) * occ * step_m[:, None]
        # samples per step, <= 1
        mass = surface_sample_mass(occ, n_occ, tau, K, surface_fraction, surface_spread_steps) * K
        filled = torch.cumsum(mass, -1)
        keep = occ & (torch.floor(filled + u) > torch.floor(filled - mass + u))
    else:
        ratio = (n_occ.float() / torch.full_like(near, float(K))).clamp(min=1.0)  # steps per kept sample
        r = rank.float()
        keep = occ & (torch.floor((r + 1) / ratio[:, None] + u) > torch.floor(r / ratio[:, None] + u))
    slot = torch.cumsum(keep, -1, dtype=torch.int32) - 1
    keep &= slot < K  # rounding can add one sample when u is near 1
    col = torch.where(keep, slot, K).long()  # dropped steps land in a spare column K
    t_out = torch.zeros(R, K + 1, device=dev).scatter_(1, col, t)[:, :K]
    valid = torch.zeros(R, K + 1, device=dev, dtype=torch.bool).scatter_(1, col, keep)[:, :K]
    if surface_fraction > 0.0:
        # each kept sample stands for the occupied steps from its own to the next kept one's (the
        # first also for those in front of it; the last for those to the end of the ray)
        kept_rank = torch.zeros(R, K + 1, device=dev, dtype=torch.int32).scatter_(1, col, rank)[:, :K]
        next_rank = torch.cat([kept_rank[:, 1:], n_occ[:, None]], 1)
        next_valid = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], 1)
        next_rank = torch.where(next_valid, next_rank, n_occ[:, None])
        start = torch.cat([torch.zeros_like(kept_rank[:, :1]), kept_rank[:, 1:]], 1)
        delta = (next_rank - start).float() * step_m[:, None] * valid
    else:
        delta = (dt * ratio * dirs.norm(dim=-1))[:, None] * valid  # (the even path's arithmetic, bit for bit)
    return {"t": t_out, "delta": delta, "valid": valid}


def march_rays(origins: torch.Tensor, dirs: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
               grid: OccupancyGrid, n_steps: int, max_samples: int, perturb: bool,
               generator: Optional[torch.Generator] = None, surface_fraction: float = 0.0,
               surface_spread_steps: int = 1, backend: str = "torch") -> dict:
    """:func:`march_rays_dense` with the samples packed (variable count, host
    sync): ``ray`` (P,) ray index, ``slot`` (P,) position along the ray in
    [0, max_samples), ``t`` (P,) z-depth, ``delta`` (P,) interval length in metres."""
    jitter = torch.rand(origins.shape[0], 2, device=origins.device, generator=generator) if perturb else None
    m = march_rays_dense(origins, dirs, near, far, grid, n_steps, max_samples, jitter, surface_fraction,
                         surface_spread_steps, backend)
    ray, slot = m["valid"].nonzero(as_tuple=True)
    return {"ray": ray, "slot": slot, "t": m["t"][ray, slot], "delta": m["delta"][ray, slot]}
