"""Input encodings: NeRF's positional encoding and instant-ngp's multiresolution hash grid.

The hash grid has two interchangeable backends with the same parameters and
results: a vectorised pure-PyTorch one (any device) and a fused Triton kernel
(:mod:`semnerf_ros.fields.hash_triton`, CUDA only) picked automatically when
Triton imports and the tensors are on a GPU.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# instant-ngp's spatial hash primes (Teschner et al. 2003); the first is 1 so
# that coarse levels stay coherent in memory.
HASH_PRIMES = (1, 2654435761, 805459861)



class PositionalEncoding(nn.Module):
    """NeRF's frequency encoding: ``[x, sin(2^k x), cos(2^k x)]`` for k < ``num_freqs``.

    ``scale`` divides the input first (the seed divides world metres by 10 so a
    room fits the encoding's useful range).  Output order matches the seed:
    input, then for each frequency sin then cos.
    """

    def __init__(self, num_freqs: int, include_input: bool = True, scale: float = 1.0, in_dim: int = 3):
        super().__init__()
        self.num_freqs = int(num_freqs)
        self.include_input = include_input
        self.scale = float(scale)
        self.in_dim = in_dim
        self.register_buffer("freqs", 2.0 ** torch.arange(self.num_freqs, dtype=torch.float32), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (int(self.include_input) + 2 * self.num_freqs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / self.scale
        parts = [x] if self.include_input else []
        if self.num_freqs:
            xf = x[..., None, :] * self.freqs[:, None]  # (..., F, D)
            sc = torch.stack([torch.sin(xf), torch.cos(xf)], dim=-2)  # (..., F, 2, D)
            parts.append(sc.flatten(-3))
        return torch.cat(parts, dim=-1)


def level_resolutions(n_levels: int, base_resolution: int, finest_resolution: int) -> list[int]:
    """Grid resolution of each level (geometric progression, instant-ngp eq. 2-3)."""
    if n_levels == 1:
        return [int(base_resolution)]
    growth = math.exp((math.log(finest_resolution) - math.log(base_resolution)) / (n_levels - 1))
    return [int(math.floor(base_resolution * growth ** lvl)) for lvl in range(n_levels)]


class HashEncoding(nn.Module):
    """Multiresolution hash encoding (Müller et al. 2022) of points in [0, 1]^3.

    Level ``l`` has a grid of ``res_l`` cells per side; its (res_l + 1)^3
    vertices index a table of ``2**log2_hashmap_size`` rows directly when they
    fit, else through the spatial hash.  Features of the 8 surrounding vertices
    are trilinearly interpolated.  Output: (N, n_levels * n_features_per_level),
    level-major.  Inputs outside [0, 1] are clamped.

    Gradients flow to the table only (not to the input positions), which is all
    training needs.
    """

    def __init__(self, n_levels: int = 16, n_features_per_level: int = 2, log2_hashmap_size: int = 19,
                 base_resolution: int = 16, finest_resolution: int = 1024, backend: str = "auto",
                 init_scale: float = 1e-4):
        super().__init__()
        self.n_levels = int(n_levels)
        self.n_features = int(n_features_per_level)
        self.table_size = 2 ** int(log2_hashmap_size)
        self.resolutions = level_resolutions(self.n_levels, int(base_resolution), int(finest_resolution))
        # Per level: rows used (dense levels need fewer) and whether the level is hashed.
        rows, hashed = [], []
        for res in self.resolutions:
            dense = (res + 1) ** 3
            rows.append(min(dense, self.table_size))
            hashed.append(dense > self.table_size)
        offsets = [0]
        for r in rows:
            offsets.append(offsets[-1] + r)
        self.register_buffer("level_res", torch.tensor(self.resolutions, dtype=torch.int64), persistent=False)
        self.register_buffer("level_rows", torch.tensor(rows, dtype=torch.int64), persistent=False)
        self.register_buffer("level_hashed", torch.tensor(hashed, dtype=torch.bool), persistent=False)
        self.register_buffer("level_offsets", torch.tensor(offsets[:-1], dtype=torch.int64), persistent=False)
        self.table = nn.Parameter(torch.empty(offsets[-1], self.n_features).uniform_(-init_scale, init_scale))
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"hash encoding backend must be auto, torch or triton, got {backend!r}")
        self.backend = backend

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.n_features

    def vertex_indices(self, x: torch.Tensor):
        """Table rows (N, L, 8) and trilinear weights (N, L, 8) of points x (N, 3) in [0, 1].

        Corner ``i`` has offsets (i & 1, (i >> 1) & 1, (i >> 2) & 1) in x, y, z.
        """
        x = x.clamp(0.0, 1.0)
        n, L = x.shape[0], self.n_levels
        pos = x[:, None, :] * self.level_res.to(x.dtype)[None, :, None]  # (N, L, 3)
        base = torch.minimum(torch.floor(pos).long(), (self.level_res - 1)[None, :, None])  # x == 1 -> last cell
        frac = pos - base.to(pos.dtype)
        off = torch.arange(2, device=x.device)
        ax = base[..., 0, None] + off  # (N, L, 2) vertex coordinate per axis
        ay = base[..., 1, None] + off
        az = base[..., 2, None] + off
        stride = (self.level_res + 1)[None, :, None, None, None]
        dense_idx = (az[..., :, None, None] * stride + ay[..., None, :, None]) * stride + ax[..., None, None, :]
        hashed_idx = ((az * HASH_PRIMES[2])[..., :, None, None] ^ (ay * HASH_PRIMES[1])[..., None, :, None]
                      ^ (ax * HASH_PRIMES[0])[..., None, None, :]) & (self.table_size - 1)
        idx = torch.where(self.level_hashed[None, :, None, None, None], hashed_idx, dense_idx).reshape(n, L, 8)
        idx = idx % self.level_rows[None, :, None] + self.level_offsets[None, :, None]
        fx, fy, fz = frac.unbind(-1)
        wx = torch.stack([1 - fx, fx], -1)
        wy = torch.stack([1 - fy, fy], -1)
        wz = torch.stack([1 - fz, fz], -1)
        w = (wz[..., :, None, None] * wy[..., None, :, None] * wx[..., None, None, :]).reshape(n, L, 8)
        return idx, w

    def _use_triton(self, x: torch.Tensor) -> bool:
        if self.backend == "torch" or not x.is_cuda:
            return False
        from . import hash_triton

        if not hash_triton.available():
            if self.backend == "triton":
                raise RuntimeError("hash encoding backend 'triton' requested but Triton is not importable")
            return False
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_triton(x):
            from . import hash_triton

            return hash_triton.hash_encode(x, self.table, self.level_res, self.level_rows,
                                           self.level_hashed, self.level_offsets, self.table_size)
        return _HashGather.apply(x, self.table, self)


class _HashGather(torch.autograd.Function):
    """Gather-and-interpolate with a scatter-add backward (faster than the
    sort-based backward of advanced indexing)."""

    @staticmethod
    def forward(ctx, x, table, enc: HashEncoding):
        with torch.no_grad():
            idx, w = enc.vertex_indices(x)
            feats = table[idx]  # (N, L, 8, F)
            out = (feats * w[..., None].to(table.dtype)).sum(dim=2)  # (N, L, F)
        ctx.save_for_backward(idx, w)
        ctx.table_shape = table.shape
        return out.reshape(x.shape[0], -1)

    @staticmethod
    def backward(ctx, grad_out):
        idx, w = ctx.saved_tensors
        n, L = idx.shape[:2]
        g = grad_out.reshape(n, L, 1, -1) * w[..., None].to(grad_out.dtype)  # (N, L, 8, F)
        grad_table = torch.zeros(ctx.table_shape, device=grad_out.device, dtype=grad_out.dtype)
        grad_table.index_add_(0, idx.reshape(-1), g.reshape(-1, ctx.table_shape[1]))
        return None, grad_table, None


class SHEncoding(nn.Module):
    """Real spherical harmonics of unit directions up to degree 3 (16 outputs),
    the view-direction encoding of instant-ngp / nerfacto."""

    out_dim = 16

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        x, y, z = d.unbind(-1)
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        return torch.stack([
            torch.full_like(x, 0.28209479177387814),
            -0.48860251190291987 * y,
            0.48860251190291987 * z,
            -0.48860251190291987 * x,
            1.0925484305920792 * xy,
            -1.0925484305920792 * yz,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * xz,
            0.54627421529603959 * (xx - yy),
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * xy * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ], dim=-1)
