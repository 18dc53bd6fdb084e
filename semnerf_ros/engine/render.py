"""Ray samplers and volume rendering.

Ray parameters ``t`` are z-depths (ray directions have camera z = 1, see
:mod:`semnerf_ros.geometry`); interval lengths in metres are ``dt * |d|``.
Semantic logits are accumulated with the same weights as colour **before** the
softmax, as in Semantic-NeRF.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F


def stratified_samples(near, far, n_rays: int, n_samples: int, perturb: bool, device=None,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(R, S) sample depths evenly spaced in [near, far] (scalars or (R,) tensors);
    with ``perturb`` each lies uniformly in its bin (NeRF's stratified sampling)."""
    u = torch.linspace(0.0, 1.0, n_samples, device=device)
    near = torch.as_tensor(near, dtype=torch.float32, device=device).reshape(-1, 1)
    far = torch.as_tensor(far, dtype=torch.float32, device=device).reshape(-1, 1)
    t = (near * (1.0 - u) + far * u).expand(n_rays, n_samples)
    if perturb:
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        upper = torch.cat([mids, t[:, -1:]], -1)
        lower = torch.cat([t[:, :1], mids], -1)
        r = torch.rand(t.shape, device=device, generator=generator)
        t = lower + (upper - lower) * r
    return t.contiguous()


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n_samples: int, deterministic: bool,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Inverse-transform sampling of ``n_samples`` depths per ray from the
    piecewise-constant PDF ``weights`` (R, B) over bin edges ``bins`` (R, B+1)
    (NeRF's hierarchical sampling)."""
    weights = weights + 1e-5
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    if deterministic:
        u = torch.linspace(0.0, 1.0, n_samples, device=bins.device).expand(cdf.shape[0], n_samples)
    else:
        u = torch.rand(cdf.shape[0], n_samples, device=bins.device, generator=generator)
    u = u.contiguous()
    inds = torch.searchsorted(cdf, u, right=True)
    below = (inds - 1).clamp(min=0)
    above = inds.clamp(max=cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = torch.gather(cdf, 1, below), torch.gather(cdf, 1, above)
    bin_lo, bin_hi = torch.gather(bins, 1, below), torch.gather(bins, 1, above)
    denom = cdf_hi - cdf_lo
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    return bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)


def alpha_from_density(sigma: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Opacity of intervals of length ``deltas`` (m) with density ``sigma`` (1/m)."""
    return 1.0 - torch.exp(-sigma * deltas)


def weights_from_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """w_i = alpha_i * prod_{j<i} (1 - alpha_j), along the last axis."""
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha + 1e-10], -1), -1)[..., :-1]
    return alpha * trans


def weights_from_density(sigma: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """w_i = (1 - exp(-tau_i)) exp(-sum_{j<i} tau_j), tau = sigma * delta, along the
    last axis: :func:`weights_from_alpha` of the same opacities with the
    transmittance summed in log space (nerfacc's form).  No cumulative product, whose
    backward reads a value back to the host (``cumprod`` checks for zeros), so a
    training step built on it can be captured in a CUDA graph."""
    tau = sigma * deltas
    # exclusive sum by shifting (not cumsum - tau: an infinite tau would give inf - inf)
    before = torch.cumsum(torch.cat([torch.zeros_like(tau[..., :1]), tau[..., :-1]], -1), -1)
    return (1.0 - torch.exp(-tau)) * torch.exp(-before)


#: optical depth above which :func:`weights_from_density_by_matmul` counts a sample as opaque (exp(-1e4) is 0)
_TAU_OPAQUE = 1e4


def weights_from_density_by_matmul(sigma: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """:func:`weights_from_density` with the optical depth in front of each sample summed by a
    product with a strictly upper-triangular matrix of ones instead of a scan (for views: on an
    H200 the scan over a 320x240 view's (R, 48) samples was a 0.45 ms kernel, docs/benchmarks.md
    ninth session; the product is one small matrix multiply).
    Optical depths are capped at 1e4 first (an infinite one times a zero of the matrix would give
    NaN; beyond 1e4 the weights are the same)."""
    tau = (sigma * deltas).clamp(max=_TAU_OPAQUE)
    K = tau.shape[-1]
    upper = torch.ones(K, K, device=tau.device, dtype=tau.dtype).triu_(1)
    before = tau @ upper
    return (1.0 - torch.exp(-tau)) * torch.exp(-before)


def accumulate(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_i w_i v_i for weights (R, S) and values (R, S) or (R, S, K)."""
    if values.dim() == weights.dim():
        return (weights * values).sum(-1)
    return (weights[..., None] * values).sum(-2)


def nerf_deltas(t: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """NeRF's interval lengths in metres: successive differences, the last one
    1e10 (infinite), scaled by the ray direction norm."""
    d = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], 1e10)], -1)
    return d * dirs.norm(dim=-1, keepdim=True)


def volume_render(sigma: torch.Tensor, deltas: torch.Tensor, t: torch.Tensor, rgb: torch.Tensor,
                  semantic: Optional[torch.Tensor] = None, white_background: bool = False) -> dict:
    """Composite per-sample outputs along rays.

    Args:
        sigma: (R, S) density >= 0 (1/m); deltas: (R, S) interval lengths (m);
        t: (R, S) sample z-depths; rgb: (R, S, 3); semantic: (R, S, C) logits.
    Returns: ``weights`` (R, S), ``rgb`` (R, 3), ``depth`` (R,) expected
    z-depth, ``acc`` (R,) opacity, ``semantic`` (R, C) accumulated logits.
    """
    alpha = alpha_from_density(sigma, deltas)
    w = weights_from_alpha(alpha)
    acc = w.sum(-1)
    out = {"weights": w, "rgb": accumulate(w, rgb), "depth": accumulate(w, t), "acc": acc}
    if white_background:
        out["rgb"] = out["rgb"] + (1.0 - acc[..., None])
    if semantic is not None:
        out["semantic"] = accumulate(w, semantic)
    return out


def semantic_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the valid classes of accumulated logits (..., C-1), returned
    with a zero void column prepended: (..., C), indexable by class id."""
    p = torch.softmax(logits.float(), dim=-1)
    return F.pad(p, (1, 0))


def semantic_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of class distributions along the last axis."""
    p = probs.clamp_min(1e-12)
    return -(probs * p.log()).sum(-1)


def max_entropy(num_valid_classes: int) -> float:
    return math.log(max(num_valid_classes, 1))
