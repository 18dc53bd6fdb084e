"""The occupancy-grid ray marcher as one Triton kernel (render.march_backend: triton; auto, the
default, marches views with it on CUDA and training steps with the PyTorch passes).

:func:`semnerf_ros.engine.occupancy.march_rays_dense` materialises every ray's
``march_steps`` points, cell indices and masks as (R, S) tensors and walks them
with a few dozen whole-tensor passes: at a 320x240 view that is 39 M steps per
pass, about half of the view's time on an H200 (docs/benchmarks.md, fourth
session).  This kernel walks each ray's steps in registers instead, one program
per block of rays, reading only the grid (a few MB, cache-resident) and writing
only the kept samples: the same fixed ``(R, max_samples)`` layout, the same
keep rule, the same intervals, so training and views can use either and a CUDA
graph can capture it (nothing is read back to the host).

Passes over the steps of a block of rays (nerfacc's two-pass marching, with the
surface share of :func:`~semnerf_ros.engine.occupancy.surface_sample_mass`):
1. count the occupied steps; with a surface share, also the grid's compositing
   weights spread over ``spread`` steps (a running sum and the same sum lagging
   ``spread`` steps behind, recomputed, so no per-step storage);
2. with a surface share: what the one-sample-per-step cap spills and the room the
   other steps have for it;
3. the keep decisions, writing each kept step's depth and, once the next kept
   step is known, its interval.

:func:`march_rays_dense` stays the reference (and the path on CPUs);
``test/test_march_triton.py`` compares the two, under ``TRITON_INTERPRET=1`` on
a CPU as well.  Positions, cells and the even keep rule use the reference's
operations (IEEE division, no fused multiply-adds), so with even samples both
keep the same steps; with a surface share, float sums run in another order than
PyTorch's scans, so a step that sits exactly on a keep boundary can go the other
way: the comparison allows a few such steps.
"""
from __future__ import annotations

from typing import Optional

import torch

from .triton_runtime import available, tl, triton  # noqa: F401  (available: re-exported)

if triton is not None:

    @triton.jit
    def _lookup(o_x, o_y, o_z, d_x, d_y, d_z, near, dt, j0, s, b_ptr, occ_ptr, den_ptr, res, step_m, mask,
                WITH_DENSITY: tl.constexpr):
        """Step ``s`` of each ray: its depth, whether its cell is occupied, its optical depth."""
        t = near + (s + j0) * dt
        lo_x = tl.load(b_ptr + 0)
        lo_y = tl.load(b_ptr + 1)
        lo_z = tl.load(b_ptr + 2)
        hi_x = tl.load(b_ptr + 3)
        hi_y = tl.load(b_ptr + 4)
        hi_z = tl.load(b_ptr + 5)
        # IEEE division (Triton's `/` is approximate on CUDA) and no fused multiply-adds (the launch sets
        # enable_fp_fusion=False): a step's cell is then the reference's to the bit
        rx = tl.math.div_rn(o_x + t * d_x - lo_x, hi_x - lo_x)
        ry = tl.math.div_rn(o_y + t * d_y - lo_y, hi_y - lo_y)
        rz = tl.math.div_rn(o_z + t * d_z - lo_z, hi_z - lo_z)
        inside = (rx >= 0) & (rx < 1) & (ry >= 0) & (ry < 1) & (rz >= 0) & (rz < 1)
        ix = tl.minimum(tl.maximum((rx * res).to(tl.int32), 0), res - 1)
        iy = tl.minimum(tl.maximum((ry * res).to(tl.int32), 0), res - 1)
        iz = tl.minimum(tl.maximum((rz * res).to(tl.int32), 0), res - 1)
        cell = (ix * res + iy) * res + iz
        occ = (tl.load(occ_ptr + cell, mask=mask, other=0) != 0) & inside & mask
        if WITH_DENSITY:
            sig = tl.maximum(tl.load(den_ptr + cell, mask=mask, other=0.0), 0.0)
            tau = tl.where(occ, sig * step_m, 0.0)
        else:
            tau = tl.zeros_like(t)
        return t, occ, tau

    @triton.jit
    def _advance(acc, total, acc_lag, total_lag, tau, o_x, o_y, o_z, d_x, d_y, d_z, near, dt, j0, s, spread, b_ptr,
                 occ_ptr, den_ptr, res, step_m, mask):
        """Move the running surface weights on to step ``s``: optical depth in front of it and the
        sum of the weights up to it, and the same two ``spread`` steps back (recomputed there)."""
        # as the reference: the optical depth in front of a step is the running sum to it less its own
        acc += tau
        total += tl.exp(-(acc - tau)) * (1.0 - tl.exp(-tau))
        if s >= spread:
            t2, occ2, tau2 = _lookup(o_x, o_y, o_z, d_x, d_y, d_z, near, dt, j0, s - spread, b_ptr, occ_ptr, den_ptr,
                                     res, step_m, mask, True)
            acc_lag += tau2
            total_lag += tl.exp(-(acc_lag - tau2)) * (1.0 - tl.exp(-tau2))
        return acc, total, acc_lag, total_lag

    @triton.jit
    def _mixed_mass(occ, n_safe, has_w, spread_w, w_div, fraction):
        """A step's share of the ray's samples before the cap: even over the occupied steps, plus
        ``fraction`` by the spread surface weights (even where the grid holds no weight)."""
        even = tl.where(occ, 1.0 / n_safe, 0.0)
        guided = tl.where(has_w, tl.where(occ, spread_w, 0.0) / w_div, even)
        return (1.0 - fraction) * even + fraction * guided

    @triton.jit
    def _march_kernel(o_ptr, d_ptr, near_ptr, far_ptr, jit_ptr, b_ptr, occ_ptr, den_ptr,
                      t_out, delta_out, valid_out, R, K, res, fraction, spread,
                      S: tl.constexpr, SURFACE: tl.constexpr, BLOCK: tl.constexpr):
        rays = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = rays < R
        o_x = tl.load(o_ptr + rays * 3 + 0, mask=mask, other=0.0)
        o_y = tl.load(o_ptr + rays * 3 + 1, mask=mask, other=0.0)
        o_z = tl.load(o_ptr + rays * 3 + 2, mask=mask, other=0.0)
        d_x = tl.load(d_ptr + rays * 3 + 0, mask=mask, other=0.0)
        d_y = tl.load(d_ptr + rays * 3 + 1, mask=mask, other=0.0)
        d_z = tl.load(d_ptr + rays * 3 + 2, mask=mask, other=0.0)
        near = tl.load(near_ptr + rays, mask=mask, other=0.0)
        far = tl.load(far_ptr + rays, mask=mask, other=1.0)
        j0 = tl.load(jit_ptr + rays * 2 + 0, mask=mask, other=0.5)
        u = tl.load(jit_ptr + rays * 2 + 1, mask=mask, other=0.5)
        dt = tl.math.div_rn(far - near, S * 1.0)
        step_m = dt * tl.sqrt(d_x * d_x + d_y * d_y + d_z * d_z)
        Kf = K * 1.0
        zero = tl.zeros([BLOCK], dtype=tl.float32)

        # pass 1: occupied steps; spread surface weights (running sum minus the same sum `spread` steps back)
        n_occ = zero
        w_sum = zero
        acc = zero      # optical depth in front of step s
        total = zero    # running sum of the weights up to step s
        acc_lag = zero
        total_lag = zero
        for s in range(0, S):
            t, occ, tau = _lookup(o_x, o_y, o_z, d_x, d_y, d_z, near, dt, j0, s, b_ptr, occ_ptr, den_ptr, res,
                                  step_m, mask, SURFACE)
            n_occ += occ.to(tl.float32)
            if SURFACE:
                acc, total, acc_lag, total_lag = _advance(acc, total, acc_lag, total_lag, tau, o_x, o_y, o_z, d_x,
                                                          d_y, d_z, near, dt, j0, s, spread, b_ptr, occ_ptr, den_ptr,
                                                          res, step_m, mask)
                w_sum += tl.where(occ, total - total_lag, 0.0)

        n_safe = tl.maximum(n_occ, 1.0)
        cap = 1.0 / Kf
        has_w = w_sum > 1e-6
        w_div = tl.maximum(w_sum, 1e-12)

        # pass 2 (surface share): what the cap of one sample a step spills, and the room left for it
        spill = zero
        room = zero
        if SURFACE:
            acc = zero
            total = zero
            acc_lag = zero
            total_lag = zero
            for s in range(0, S):
                t, occ, tau = _lookup(o_x, o_y, o_z, d_x, d_y, d_z, near, dt, j0, s, b_ptr, occ_ptr, den_ptr, res,
                                      step_m, mask, SURFACE)
                acc, total, acc_lag, total_lag = _advance(acc, total, acc_lag, total_lag, tau, o_x, o_y, o_z, d_x,
                                                          d_y, d_z, near, dt, j0, s, spread, b_ptr, occ_ptr, den_ptr,
                                                          res, step_m, mask)
                m = _mixed_mass(occ, n_safe, has_w, total - total_lag, w_div, fraction)
                spill += tl.maximum(m - cap, 0.0)
                room += tl.where(occ, cap - tl.minimum(m, cap), 0.0)
        share = tl.minimum(spill / tl.maximum(room, 1e-12), 1.0)

        # pass 3: keep decisions and outputs
        ratio = tl.maximum(tl.math.div_rn(n_occ, Kf), 1.0)
        rank = zero      # occupied steps before step s
        filled = zero    # samples' worth of mass up to step s
        slot = tl.zeros([BLOCK], dtype=tl.int32)
        start = zero     # first occupied step the current kept sample stands for
        acc = zero
        total = zero
        acc_lag = zero
        total_lag = zero
        row = rays * K
        for s in range(0, S):
            t, occ, tau = _lookup(o_x, o_y, o_z, d_x, d_y, d_z, near, dt, j0, s, b_ptr, occ_ptr, den_ptr, res,
                                  step_m, mask, SURFACE)
            if SURFACE:
                acc, total, acc_lag, total_lag = _advance(acc, total, acc_lag, total_lag, tau, o_x, o_y, o_z, d_x,
                                                          d_y, d_z, near, dt, j0, s, spread, b_ptr, occ_ptr, den_ptr,
                                                          res, step_m, mask)
                m = tl.minimum(_mixed_mass(occ, n_safe, has_w, total - total_lag, w_div, fraction), cap)
                m = tl.where(occ, (m + (cap - m) * share) * Kf, 0.0)
                filled += m
                keep = occ & (tl.floor(filled + u) > tl.floor(filled - m + u))
            else:
                keep = occ & (tl.floor(tl.math.div_rn(rank + 1.0, ratio) + u)
                              > tl.floor(tl.math.div_rn(rank, ratio) + u))
            keep = keep & (slot < K)
            tl.store(t_out + row + slot, t, mask=keep)
            tl.store(valid_out + row + slot, tl.full([BLOCK], 1, tl.int8), mask=keep)
            if SURFACE:
                # the previous kept sample stands for the occupied steps up to this one
                prev = keep & (slot > 0)
                tl.store(delta_out + row + slot - 1, (rank - start) * step_m, mask=prev)
                start = tl.where(prev, rank, start)
            else:
                tl.store(delta_out + row + slot, ratio * step_m, mask=keep)
            slot += keep.to(tl.int32)
            rank += occ.to(tl.float32)
        if SURFACE:
            tl.store(delta_out + row + slot - 1, (n_occ - start) * step_m, mask=mask & (slot > 0))


def launch_shape(rays: int) -> tuple:
    """(rays per program, warps per program) for a launch over ``rays`` rays: one warp of 32 rays
    for training-size batches (128 programs for 4 096 rays), two warps of 64 for views.  Measured
    on an H200 (bench/march_speed.py), the shape matters little: 32x1, 64x2 and 128x4 lie within
    about 10 % of each other at 4 096 and at 76 800 rays."""
    return (32, 1) if rays <= 32768 else (64, 2)


def march_rays_dense_triton(origins: torch.Tensor, dirs: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                            grid, n_steps: int, max_samples: int, jitter: Optional[torch.Tensor] = None,
                            surface_fraction: float = 0.0, surface_spread_steps: int = 1,
                            shape: Optional[tuple] = None) -> dict:
    """:func:`semnerf_ros.engine.occupancy.march_rays_dense` in one kernel launch: the same
    arguments and the same ``t`` / ``delta`` / ``valid`` (R, max_samples) outputs.  ``shape``
    (rays per program, warps) overrides :func:`launch_shape` (bench/march_speed.py)."""
    if triton is None:
        raise RuntimeError("render.march_backend 'triton' needs Triton (it comes with CUDA builds of PyTorch)")
    R = origins.shape[0]
    dev = origins.device
    K = int(max_samples)
    if jitter is None:
        jitter = torch.full((R, 2), 0.5, device=dev)
    t_out = torch.zeros(R, K, device=dev)
    delta = torch.zeros(R, K, device=dev)
    valid = torch.zeros(R, K, device=dev, dtype=torch.int8)
    if R > 0:
        surface = surface_fraction > 0.0
        block, warps = shape or launch_shape(R)
        _march_kernel[(triton.cdiv(R, block),)](
            origins.contiguous().float(), dirs.contiguous().float(), near.contiguous().float(),
            far.contiguous().float(), jitter.contiguous().float(), grid.bounds.contiguous().float(),
            grid.occupied.view(torch.uint8), grid.density, t_out, delta, valid, R, K,
            int(grid.resolution), float(surface_fraction), max(int(surface_spread_steps), 1),
            S=int(n_steps), SURFACE=surface, BLOCK=block, num_warps=warps, enable_fp_fusion=False)
    return {"t": t_out, "delta": delta, "valid": valid.view(torch.bool)}
