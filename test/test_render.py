"""Volume rendering and sampling maths against hand-computed values."""
import math

import numpy as np
import torch

from semnerf_ros.engine.occupancy import OccupancyGrid, march_rays
from semnerf_ros.engine.render import (
    nerf_deltas,
    sample_pdf,
    semantic_entropy,
    semantic_probabilities,
    stratified_samples,
    volume_render,
)


def test_volume_render_two_samples_by_hand():
    # Two samples at t = 1, 2 with sigma 1 and 2, deltas 0.5 and 1.0.
    sigma = torch.tensor([[1.0, 2.0]])
    deltas = torch.tensor([[0.5, 1.0]])
    t = torch.tensor([[1.0, 2.0]])
    rgb = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    sem = torch.tensor([[[2.0, 0.0], [0.0, 4.0]]])
    out = volume_render(sigma, deltas, t, rgb, sem)
    a1 = 1 - math.exp(-0.5)
    a2 = 1 - math.exp(-2.0)
    w1 = a1
    w2 = (1 - a1) * a2
    np.testing.assert_allclose(out["weights"][0].numpy(), [w1, w2], rtol=1e-5)
    np.testing.assert_allclose(out["rgb"][0].numpy(), [w1, w2, 0.0], rtol=1e-5)
    np.testing.assert_allclose(out["depth"][0].item(), w1 * 1 + w2 * 2, rtol=1e-5)
    np.testing.assert_allclose(out["acc"][0].item(), w1 + w2, rtol=1e-5)
    # Logits are accumulated before the softmax (the paper), not probabilities.
    np.testing.assert_allclose(out["semantic"][0].numpy(), [2 * w1, 4 * w2], rtol=1e-5)


def test_nerf_deltas_scale_with_direction_norm_and_last_is_infinite():
    t = torch.tensor([[1.0, 1.5, 3.0]])
    d = torch.tensor([[0.0, 3.0, 4.0]])  # norm 5
    dl = nerf_deltas(t, d)[0]
    np.testing.assert_allclose(dl[:2].numpy(), [2.5, 7.5])
    assert dl[2] > 1e9


def test_opaque_first_sample_takes_all_weight():
    sigma = torch.tensor([[1e4, 5.0, 5.0]])
    out = volume_render(sigma, torch.ones(1, 3), torch.tensor([[1.0, 2.0, 3.0]]), torch.rand(1, 3, 3))
    np.testing.assert_allclose(out["weights"][0].numpy(), [1.0, 0.0, 0.0], atol=1e-6)


def test_stratified_samples_stay_in_their_bins():
    g = torch.Generator().manual_seed(0)
    t = stratified_samples(1.0, 3.0, 100, 8, perturb=True, generator=g)
    edges = torch.linspace(1.0, 3.0, 8)
    mids = 0.5 * (edges[1:] + edges[:-1])
    lower = torch.cat([edges[:1], mids])
    upper = torch.cat([mids, edges[-1:]])
    assert torch.all(t >= lower) and torch.all(t <= upper)
    assert torch.all(t[:, 1:] >= t[:, :-1])
    t0 = stratified_samples(1.0, 3.0, 2, 8, perturb=False)
    torch.testing.assert_close(t0[0], edges)


def test_sample_pdf_follows_the_weights():
    bins = torch.linspace(0.0, 4.0, 5)[None]  # 4 bins of width 1
    w = torch.tensor([[0.0, 0.0, 1.0, 0.0]])  # all mass in [2, 3]
    s = sample_pdf(bins, w, 1000, deterministic=False, generator=torch.Generator().manual_seed(0))
    frac = ((s >= 2.0) & (s <= 3.0)).float().mean().item()
    assert frac > 0.99
    s_det = sample_pdf(bins, torch.ones(1, 4), 5, deterministic=True)
    torch.testing.assert_close(s_det[0], torch.linspace(0, 4, 5), atol=1e-3, rtol=0)


def test_semantic_probabilities_and_entropy():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    p = semantic_probabilities(logits)
    assert p.shape == (2, 5) and torch.all(p[:, 0] == 0)  # void column
    e = semantic_entropy(p)
    np.testing.assert_allclose(e.numpy(), [math.log(4), 0.0], atol=1e-5)


def test_march_rays_skips_empty_cells_and_bounds_samples():
    grid = OccupancyGrid([[-1, -1, -1], [1, 1, 1]], resolution=4)
    grid.occupied[:] = False
    # occupy the cells with x in [0.5, 1): index i = 3
    r = grid.resolution
    for j in range(r):
        for k in range(r):
            grid.occupied[(3 * r + j) * r + k] = True
    o = torch.tensor([[-0.99, 0.1, 0.1], [-0.99, 0.1, 0.1]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    near, far = torch.zeros(2), torch.full((2,), 2.0)
    m = march_rays(o, d, near, far, grid, n_steps=200, max_samples=1000, perturb=False)
    pts_x = (o[m["ray"]] + m["t"][:, None] * d[m["ray"]])[:, 0]
    assert torch.all((pts_x >= 0.5) & (pts_x < 1.0))
    assert m["ray"].numel() == 2 * 50  # 0.5 m of occupied path at 0.01 m steps, per ray
    # With a cap, exactly max_samples survive per ray and each stands for more length.
    m2 = march_rays(o, d, near, far, grid, n_steps=200, max_samples=10, perturb=False)
    counts = torch.bincount(m2["ray"], minlength=2)
    assert counts.tolist() == [10, 10]
    assert set(m2["slot"].tolist()) == set(range(10))
    np.testing.assert_allclose(m2["delta"].sum().item() / 2, 0.5, rtol=1e-5)  # covered length kept
