"""The paper's Semantic-NeRF MLP (Zhi et al. 2021, built on NeRF's architecture).

Positional encoding of xyz (``multires`` frequencies, input included) and of the
unit view direction (``multires_views``); an ``netdepth`` x ``netwidth`` ReLU
trunk with the encoded input concatenated again after layer 4; density and
**semantic logits from the trunk before view conditioning** (labels are
view-invariant); colour from a view-conditioned ``netwidth // 2`` branch.
The semantic head (W -> W/2 -> classes) predicts the valid classes only (void
excluded, as the seed's ``num_valid_semantic_class``).
"""
from __future__ import annotations

import torch
from torch import nn

from .encodings import PositionalEncoding

# The seed divides world metres by 10 before the positional encoding.
POSITION_SCALE = 10.0


class SemanticNeRFMLP(nn.Module):
    """Raw outputs of one NeRF MLP: sigma before activation, rgb logits, semantic logits."""

    def __init__(self, num_valid_classes: int, depth: int = 8, width: int = 256, multires: int = 10,
                 multires_views: int = 4, skips=(4,), use_viewdirs: bool = True):
        super().__init__()
        self.embed_xyz = PositionalEncoding(multires, scale=POSITION_SCALE)
        self.embed_dir = PositionalEncoding(multires_views)
        self.skips = tuple(skips)
        self.use_viewdirs = use_viewdirs
        in_ch = self.embed_xyz.out_dim
        layers = [nn.Linear(in_ch, width)]
        for i in range(depth - 1):
            layers.append(nn.Linear(width + (in_ch if i in self.skips else 0), width))
        self.pts_linears = nn.ModuleList(layers)
        self.alpha_linear = nn.Linear(width, 1)
        self.semantic_linear = nn.Sequential(nn.Linear(width, width // 2), nn.ReLU(),
                                             nn.Linear(width // 2, num_valid_classes))
        if use_viewdirs:
            self.feature_linear = nn.Linear(width, width)
            self.views_linear = nn.Linear(width + self.embed_dir.out_dim, width // 2)
            self.rgb_linear = nn.Linear(width // 2, 3)
        else:
            self.rgb_linear = nn.Linear(width, 3)

    def trunk(self, points: torch.Tensor) -> torch.Tensor:
        x = self.embed_xyz(points)
        h = x
        for i, layer in enumerate(self.pts_linears):
            h = torch.relu(layer(h))
            if i in self.skips:
                h = torch.cat([x, h], dim=-1)
        return h

    def forward(self, points: torch.Tensor, viewdirs: torch.Tensor) -> dict:
        """points (N, 3) world metres, viewdirs (N, 3) unit -> raw outputs
        ``sigma_raw`` (N,), ``rgb_raw`` (N, 3), ``semantic`` (N, C-1)."""
        h = self.trunk(points)
        sigma = self.alpha_linear(h)[..., 0]
        sem = self.semantic_linear(h)
        if self.use_viewdirs:
            f = self.feature_linear(h)
            hv = torch.relu(self.views_linear(torch.cat([f, self.embed_dir(viewdirs)], dim=-1)))
            rgb = self.rgb_linear(hv)
        else:
            rgb = self.rgb_linear(h)
        return {"sigma_raw": sigma, "rgb_raw": rgb, "semantic": sem}

    def density_raw(self, points: torch.Tensor) -> torch.Tensor:
        return self.alpha_linear(self.trunk(points))[..., 0]

    def semantic_logits(self, points: torch.Tensor) -> torch.Tensor:
        return self.semantic_linear(self.trunk(points))
