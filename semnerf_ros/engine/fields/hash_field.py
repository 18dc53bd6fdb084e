"""The fast semantic field: an instant-ngp-style hash grid with small MLP heads.

Same outputs as the paper's MLP, with activations applied:
``sigma`` (1/m, truncated-exp activation), ``rgb`` in [0, 1] (view-dependent,
spherical-harmonics-encoded direction), and ``semantic`` logits over the
valid classes (view-independent: a function of position only, as the paper).

The hash grid covers the cube enclosing ``bounds`` (world metres), so its cells
are isotropic; density is zero outside ``bounds``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .encodings import HashEncoding, SHEncoding


class _TruncExp(torch.autograd.Function):
    """exp with a gradient clamped at exp(15), instant-ngp's density activation."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


def _mlp(in_dim: int, hidden: int, out_dim: int, n_hidden: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(n_hidden):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class HashSemanticField(nn.Module):
    """Hash-grid semantic radiance field over an axis-aligned box.

    Args:
        bounds: (2, 3) min and max corners of the scene box, world metres.
        num_valid_classes: semantic logits produced (void excluded).
        n_levels, n_features_per_level, log2_hashmap_size, base_resolution,
        finest_resolution: hash grid (resolutions in cells along the cube side).
        hidden_dim, geo_feat_dim: density MLP (one hidden layer) and the
            geometry feature it passes to the colour head.
        hidden_dim_color, hidden_dim_semantic: widths of the colour and semantic heads.
        backend: hash-encoding kernels (auto | torch | triton).
        semantic_branch: ``grid`` -- a semantic grid of its own, ``semantic_grid_levels``
            levels of ``semantic_grid_features`` features from ``semantic_grid_base`` cells
            along the cube side to cells ``semantic_grid_cell`` metres wide, dense up to
            ``2**semantic_grid_log2_hashmap_size`` rows a level; or ``shared`` -- the density
            grid's levels up to ``semantic_max_resolution`` cells (0 = all).
    The keywords are the ``model.hash`` config keys (``HashSemanticModel`` passes them).
    """

    def __init__(self, bounds, num_valid_classes: int, *, n_levels: int = 16, n_features_per_level: int = 2,
                 log2_hashmap_size: int = 19, base_resolution: int = 16, finest_resolution: int = 1024,
                 hidden_dim: int = 64, geo_feat_dim: int = 15, hidden_dim_color: int = 64,
                 hidden_dim_semantic: int = 64, backend: str = "auto", semantic_max_resolution: int = 0,
                 semantic_branch: str = "shared", semantic_grid_levels: int = 4, semantic_grid_base: int = 16,
                 semantic_grid_cell: float = 0.08, semantic_grid_features: int = 4,
                 semantic_grid_log2_hashmap_size: int = 21):
        super().__init__()
        b = torch.as_tensor(bounds, dtype=torch.float32).reshape(2, 3)
        self.register_buffer("bounds", b.clone())
        center = (b[0] + b[1]) / 2
        half = float((b[1] - b[0]).max()) / 2
        self.register_buffer("cube_min", center - half)
        self.cube_size = 2 * half
        self.encoding = HashEncoding(n_levels, n_features_per_level, log2_hashmap_size, base_resolution,
                                     finest_resolution, backend=backend)
        enc_dim = self.encoding.out_dim
        self.geo_feat_dim = geo_feat_dim
        self.density_net = _mlp(enc_dim, hidden_dim, 1 + geo_feat_dim, 1)
        self.dir_encoding = SHEncoding()
        self.color_net = _mlp(geo_feat_dim + SHEncoding.out_dim, hidden_dim_color, 3, 2)
        # Semantics read the multiresolution features directly (view-independent),
        # but only the levels up to ``semantic_max_resolution``: with the finest
        # levels the head memorises per-pixel label noise within a few thousand
        # steps, which is exactly what multi-view consistency should average out.
        if semantic_branch not in ("shared", "grid"):
            raise ValueError(f"semantic_branch must be 'shared' or 'grid', got {semantic_branch!r}")
        self.semantic_branch = semantic_branch
        if semantic_branch == "grid":
            # A semantic grid of its own, coarse in metres (its finest cells are
            # ``semantic_grid_cell`` wide, several pixels' footprints), so it has no
            # capacity for per-pixel label noise; levels that fit the table are dense.
            finest = max(int(semantic_grid_base) + 1, int(round(self.cube_size / float(semantic_grid_cell))))
            rows = (finest + 1) ** 3
            log2 = min(max(1, (rows - 1).bit_length()), int(semantic_grid_log2_hashmap_size))
            self.semantic_encoding = HashEncoding(int(semantic_grid_levels), int(semantic_grid_features), log2,
                                                  int(semantic_grid_base), finest, backend=backend)
            self.semantic_dims = self.semantic_encoding.out_dim
        else:
            self.semantic_encoding = None
            levels = self.encoding.resolutions
            n_sem = len(levels) if semantic_max_resolution <= 0 else \
                max(1, sum(1 for r in levels if r <= semantic_max_resolution))
            self.semantic_dims = n_sem * self.encoding.n_features
        self.semantic_net = _mlp(self.semantic_dims, hidden_dim_semantic, num_valid_classes, 2)
        self.num_valid_classes = num_valid_classes

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """World metres -> [0, 1]^3 coordinates of the encoding cube."""
        return (points - self.cube_min) / self.cube_size

    def inside(self, points: torch.Tensor) -> torch.Tensor:
        return ((points >= self.bounds[0]) & (points <= self.bounds[1])).all(dim=-1)

    def _features(self, points: torch.Tensor):
        enc = self.encoding(self.normalize(points))
        h = self.density_net(enc)
        sigma = trunc_exp(h[..., 0].float() - 1.0) * self.inside(points)
        return enc, sigma, h[..., 1:]

    def features(self, points: torch.Tensor):
        """(encoding (N, L*F), sigma (N,) 1/m, geometry feature (N, geo_feat_dim)):
        the density pass, whose outputs the heads below reuse."""
        return self._features(points)

    def color_head(self, geo: torch.Tensor, viewdirs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.color_net(torch.cat([geo, self.dir_encoding(viewdirs).to(geo.dtype)], -1))).float()

    def semantic_head(self, enc: torch.Tensor, points: Optional[torch.Tensor] = None,
                      detach_encoding: bool = False) -> torch.Tensor:
        """Logits at ``points`` from the semantic features: the coarse levels of the
        shared encoding ``enc`` (level-major, so they come first), or the
        semantic grid's own encoding of ``points``.  ``detach_encoding`` stops
        the semantic loss from moving the shared (density) features."""
        if self.semantic_encoding is not None:
            feats = self.semantic_encoding(self.normalize(points)).to(enc.dtype)
        else:
            feats = enc[..., :self.semantic_dims]
            if detach_encoding:
                feats = feats.detach()
        return self.semantic_net(feats).float()

    def forward(self, points: torch.Tensor, viewdirs: torch.Tensor, detach_semantic_encoding: bool = False) -> dict:
        """points (N, 3) world metres, viewdirs (N, 3) unit vectors ->
        ``sigma`` (N,) 1/m, ``rgb`` (N, 3) in [0, 1], ``semantic`` (N, C-1) logits."""
        enc, sigma, geo = self._features(points)
        return {"sigma": sigma, "rgb": self.color_head(geo, viewdirs),
                "semantic": self.semantic_head(enc, points, detach_semantic_encoding)}

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self._features(points)[1]

    def semantic_logits(self, points: torch.Tensor) -> torch.Tensor:
        if self.semantic_encoding is not None:
            return self.semantic_head(points.new_zeros(points.shape[0], 0), points)
        return self.semantic_head(self.encoding(self.normalize(points)), points)

    def color(self, points: torch.Tensor, viewdirs: torch.Tensor) -> torch.Tensor:
        _, _, geo = self._features(points)
        return torch.sigmoid(self.color_net(torch.cat([geo, self.dir_encoding(viewdirs).to(geo.dtype)], -1))).float()
