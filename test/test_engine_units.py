"""Engine pieces tested directly: the occupancy grid's update, the semantic and
depth losses, the paper's full-size MLP, and keyframe replay / eviction inside a
running Mapper (the buffer alone is covered by test_keyframes.py)."""
import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from boxroom import NUM_CLASSES, box_frames

from semnerf_ros.engine.config import make_config
from semnerf_ros.engine.mapper import Mapper
from semnerf_ros.engine.models import NeRFSemanticModel, build_model, semantic_loss
from semnerf_ros.engine.occupancy import OccupancyGrid

BOX = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


# --------------------------------------------------------------------------- OccupancyGrid.update
def cell_centres(res):
    """(res^3, 3) cell centres in the flat order of OccupancyGrid ((i * r + j) * r + k, i along x)."""
    c = (np.arange(res) + 0.5) / res * 2.0 - 1.0
    i, j, k = np.meshgrid(c, c, c, indexing="ij")
    return np.stack([i, j, k], -1).reshape(-1, 3)


def test_occupancy_update_marks_cells_by_density():
    res, half_cell = 8, 0.125
    grid = OccupancyGrid(BOX, resolution=res, threshold=0.01)
    assert bool(grid.occupied.all()) and bool((grid.density < 0).all())   # unknown = occupied

    def ball(p):                          # sigma 100 /m inside a ball of radius 0.5 m, 0 outside
        return 100.0 * (p.norm(dim=-1) < 0.5).float()

    g = torch.Generator().manual_seed(0)
    grid.update(ball, step_size=0.05, warmup=True, generator=g)
    assert grid.updates == 1 and bool((grid.density >= 0).all())          # warm-up visits every cell
    occ = grid.occupied.numpy()
    centre_dist = np.linalg.norm(cell_centres(res), axis=1)
    reach = half_cell * math.sqrt(3)
    inside = centre_dist + reach < 0.5     # every point of the cell is in the ball
    outside = centre_dist - reach > 0.5    # no point of the cell is
    assert inside.sum() == 8 and outside.sum() > 300
    assert occ[inside].all() and not occ[outside].any()
    # the flat index is the one query() reads: the ball's centre is occupied, a corner is not
    q = grid.query(torch.tensor([[0.01, 0.02, -0.03], [0.9, -0.9, 0.9], [1.5, 0.0, 0.0]]))
    assert q.tolist() == [True, False, False]                              # outside the box: never

    # exponential moving maximum: a field gone empty decays by ema_decay per visit
    before = grid.density.clone()
    grid.update(lambda p: torch.zeros(p.shape[0]), step_size=0.05, warmup=True, generator=g)
    torch.testing.assert_close(grid.density, before * 0.95)
    assert grid.occupied.numpy()[inside].all()                             # 95 /m: still occupied


def test_occupancy_threshold_follows_the_march_step_and_the_mean():
    """A cell is empty when one march step through it is more transparent than ``threshold``
    (sigma < -ln(1 - 0.01) / step) -- or below the mean density when that is lower."""

    def field(p):   # 0.15 /m in the ball; 1000 /m in the slab x > 0.75 keeps the mean high
        return 0.15 * (p.norm(dim=-1) < 0.5).float() + 1000.0 * (p[:, 0] > 0.75).float()

    inside = np.linalg.norm(cell_centres(8), axis=1) + 0.125 * math.sqrt(3) < 0.5
    for step, occupied in ((0.05, False), (0.1, True)):      # thresholds 0.201 and 0.1005 /m
        grid = OccupancyGrid(BOX, resolution=8, threshold=0.01)
        grid.update(field, step_size=step, warmup=True, generator=torch.Generator().manual_seed(1))
        assert grid.occupied.numpy()[inside].all() == occupied and grid.occupied.numpy()[inside].any() == occupied
    # a nearly empty scene: the mean (0.15 * 8 / 512 /m) is the threshold, the ball stays
    grid = OccupancyGrid(BOX, resolution=8, threshold=0.01)
    grid.update(lambda p: 0.15 * (p.norm(dim=-1) < 0.5).float(), step_size=0.05, warmup=True,
                generator=torch.Generator().manual_seed(1))
    assert grid.occupied.numpy()[inside].all()


def test_occupancy_update_after_warmup_visits_a_sample_and_keeps_unvisited_cells():
    grid = OccupancyGrid(BOX, resolution=8)
    grid.update(lambda p: torch.zeros(p.shape[0]), step_size=0.05, warmup=False,
                generator=torch.Generator().manual_seed(2))
    visited = grid.density >= 0
    n = 8 ** 3
    assert 0 < int(visited.sum()) <= n // 2                # a random quarter plus up to a quarter occupied
    assert bool(grid.occupied[~visited].all())              # never seen: still occupied
    assert not bool(grid.occupied[visited].any())           # seen empty: skipped


def test_occupancy_sample_of_occupied_cells_is_all_of_few_and_spread_over_many():
    """The update's sample of occupied cells (drawn without a host sync): every occupied cell
    when there are no more than the sample's size, else one random cell per stratum, never an
    empty cell."""
    grid = OccupancyGrid(BOX, resolution=8)
    g = torch.Generator().manual_seed(3)
    for n_occ in (1, 5, 64, 128):
        grid.occupied.zero_()
        ids = torch.randperm(512, generator=g)[:n_occ]
        grid.occupied[ids] = True
        got = grid._occupied_sample(128, g)
        assert got.shape == (128,) and set(got.tolist()) == set(ids.tolist()), n_occ
    grid.occupied.zero_()
    ids = torch.randperm(512, generator=g)[:400]
    grid.occupied[ids] = True
    got = grid._occupied_sample(100, g)
    assert bool(grid.occupied[got].all())
    ranks = torch.searchsorted(torch.sort(ids).values, got)        # rank among the occupied
    assert (ranks // 4).tolist() == list(range(100))               # one in each stratum of 4


# --------------------------------------------------------------------------- losses
def test_semantic_loss_ignores_void_and_maps_label_k_to_logit_k_minus_1():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 4, generator=g, requires_grad=True)      # 5 classes: void + 4
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 0, 4, 2, 1])
    loss = semantic_loss(logits, labels)
    valid = labels > 0
    logp = torch.log_softmax(logits.detach(), -1)
    want = -logp[valid.nonzero().squeeze(1), labels[valid] - 1].mean()
    torch.testing.assert_close(loss.detach(), want)
    loss.backward()
    assert torch.all(logits.grad[~valid] == 0) and torch.all(logits.grad[valid].abs().sum(-1) > 0)
    # void rays change nothing, whatever their logits
    other = logits.detach().clone()
    other[~valid] = 1000.0
    torch.testing.assert_close(semantic_loss(other, labels), want)
    # label k is logit column k - 1
    one = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    assert float(semantic_loss(one, torch.tensor([1]))) < 1e-3
    assert float(semantic_loss(one, torch.tensor([2]))) == pytest.approx(10.0 + math.log(1 + 3 * math.exp(-10)),
                                                                          abs=1e-3)
    # a batch of void only: zero, and it still backpropagates (zeros)
    lg = torch.randn(4, 4, requires_grad=True)
    z = semantic_loss(lg, torch.zeros(4, dtype=torch.long))
    z.backward()
    assert float(z.detach()) == 0.0 and torch.all(lg.grad == 0)


def tiny_hash_cfg(**train):
    return make_config({"experiment": {"device": "cpu"},
                        "model": {"type": "hash", "hash": {"n_levels": 2, "log2_hashmap_size": 8,
                                                           "finest_resolution": 8}},
                        "render": {"occupancy_resolution": 8},
                        "train": dict({"wgt_sem": 0.5, "wgt_depth": 0.25}, **train)})


def test_depth_loss_uses_only_rays_with_a_measurement():
    model = build_model(tiny_hash_cfg(), 3, np.array(BOX))
    n = 6
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], requires_grad=True)
    gt = torch.tensor([1.5, 0.0, 2.0, float("nan"), 5.25, 0.0])          # 0 and NaN: no depth
    out = {"rgb": torch.full((n, 3), 0.5), "semantic": torch.zeros(n, 2), "depth": pred}
    batch = SimpleNamespace(rgb=torch.full((n, 3), 0.5), labels=torch.zeros(n, dtype=torch.long), depth=gt)
    res = model.losses(out, batch)
    assert res["loss_depth"] == pytest.approx((0.5 + 1.0 + 0.25) / 3)     # rays 0, 2, 4 only
    assert float(res["loss"]) == pytest.approx(0.25 * res["loss_depth"])   # rgb exact, semantics all void
    res["loss"].backward()
    g = pred.grad
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, torch.tensor([-1.0, 0.0, 1.0, 0.0, -1.0, 0.0]) * 0.25 / 3)
    # no valid depth at all, no depth in the batch, or weight 0: no depth term
    for depth, m in ((torch.zeros(n), model), (None, model),
                     (gt, build_model(tiny_hash_cfg(wgt_depth=0.0), 3, np.array(BOX)))):
        res = m.losses(out, SimpleNamespace(rgb=batch.rgb, labels=batch.labels, depth=depth))
        assert res["loss_depth"] == 0.0 and float(res["loss"]) == 0.0


# --------------------------------------------------------------------------- the paper's MLP
def seed_semantic_nerf_parameter_count(num_valid_classes, D=8, W=256, multires=10, multires_views=4, skips=(4,)):
    """Parameters of the seed's ``Semantic_NeRF`` (SSR/models/semantic_nerf.py, use_viewdirs=True,
    enable_semantic=True), counted by hand from its layer list: ``pts_linears`` = Linear(in, W) then
    D-1 layers Linear(W, W), the one after a skip index Linear(W + in, W); ``views_linears`` =
    [Linear(views + W, W/2)]; ``feature_linear`` W->W; ``alpha_linear`` W->1;
    ``semantic_linear`` = fc_block(W, W/2) + Linear(W/2, classes); ``rgb_linear`` W/2->3."""
    lin = lambda i, o: i * o + o  # noqa: E731  weights + biases
    in_xyz = 3 + 3 * 2 * multires              # 63: input included, sin and cos per frequency
    in_views = 3 + 3 * 2 * multires_views      # 27
    pts = lin(in_xyz, W) + sum(lin(W + in_xyz, W) if i in skips else lin(W, W) for i in range(D - 1))
    return (pts + lin(in_views + W, W // 2) + lin(W, W) + lin(W, 1)
            + lin(W, W // 2) + lin(W // 2, num_valid_classes) + lin(W // 2, 3))


def test_papers_full_size_mlp_matches_the_seed_and_trains_one_step():
    assert seed_semantic_nerf_parameter_count(17) == 630933        # worked out by hand, 17 valid classes
    cfg = make_config({"experiment": {"device": "cpu", "seed": 0}, "model": {"type": "nerf"},
                       "render": {"N_rays": 32, "depth_range": [0.05, 6.0]}, "mapper": {"keyframe_policy": "all"}})
    assert (cfg["model"]["netdepth"], cfg["model"]["netwidth"], cfg["render"]["multires"],
            cfg["render"]["multires_views"], cfg["render"]["N_samples"], cfg["render"]["N_importance"]) == \
        (8, 256, 10, 4, 64, 128)                                    # the paper's defaults
    num_classes = 18                                                # void + 17
    m = Mapper(cfg, num_classes, device="cpu", bounds=np.array([[-2.0, -1.5, -1.25], [2.0, 1.5, 1.25]]))
    assert isinstance(m.model, NeRFSemanticModel)
    for net in (m.model.coarse, m.model.fine):
        assert sum(p.numel() for p in net.parameters()) == seed_semantic_nerf_parameter_count(17)
        assert len(net.pts_linears) == 8
        assert [lay.in_features for lay in net.pts_linears] == [63] + [256] * 4 + [256 + 63] + [256] * 2
    # the skip: the encoded input is concatenated to the output of layer 4 (index 4)
    seen = {}
    net = m.model.fine
    net.pts_linears[5].register_forward_hook(lambda mod, inp, out: seen.update(in5=inp[0]))
    pts = torch.randn(5, 3)
    net.trunk(pts)
    torch.testing.assert_close(seen["in5"][:, :63], net.embed_xyz(pts))
    # one optimisation step at full size on the CPU
    for f in box_frames(2, 16, 12):
        m.add_frame(f)
    before = [p.detach().clone() for p in m.model.parameters()]
    losses = m.step()
    assert m.step_count == 1 and math.isfinite(losses["loss"]) and losses["loss"] > 0
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, m.model.parameters())]
    assert all(changed), "every layer of both MLPs takes part in the step"


# --------------------------------------------------------------------------- replay inside a running Mapper
def test_running_mapper_replays_old_keyframes_and_evicts_at_its_bound():
    """The background thread trains on rays from every keyframe in the buffer (not only the
    newest), with about recent_fraction extra from the recent window; keyframes added while it
    runs evict at max_keyframes, and an evicted keyframe is never sampled again."""
    cfg = make_config({"experiment": {"device": "cpu", "seed": 0},
                       "model": {"type": "hash", "hash": {"n_levels": 4, "log2_hashmap_size": 12,
                                                          "base_resolution": 4, "finest_resolution": 16,
                                                          "hidden_dim": 16, "hidden_dim_color": 16,
                                                          "hidden_dim_semantic": 16}},
                       "render": {"N_rays": 400, "depth_range": [0.05, 6.0], "occupancy_resolution": 16,
                                  "march_steps": 48, "max_samples_per_ray": 12},
                       "mapper": {"keyframe_policy": "all", "max_keyframes": 5, "eviction": "fifo",
                                  "recent_window": 2, "recent_fraction": 0.5}})
    frames = box_frames(8, 16, 12)
    m = Mapper(cfg, NUM_CLASSES, device="cpu")
    centres = {}                                # keyframe id -> camera centre
    batches, lock = [], threading.Lock()
    real_sample = m.buffer.sample

    def recording_sample(*a, **k):
        b = real_sample(*a, **k)
        with lock:
            batches.append((tuple(m.buffer.keyframe_ids), b.origins.cpu().numpy()))
        return b

    m.buffer.sample = recording_sample
    decisions = []
    for f in frames[:4]:
        d = m.add_frame(f)
        centres[d.keyframe_id] = f.pose[:3, 3]
    m.start()
    try:
        for f in frames[4:]:
            n = len(batches)
            end = time.monotonic() + 30
            while len(batches) < n + 3 and time.monotonic() < end:   # a few steps between frames
                time.sleep(0.01)
            d = m.add_frame(f)
            decisions.append(d)
            centres[d.keyframe_id] = f.pose[:3, 3]
        n = len(batches)
        end = time.monotonic() + 30
        while len(batches) < n + 4 and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        assert m.stop(timeout=5.0)
    # eviction at the bound, while training: fifo evicts the oldest
    assert [d.evicted_id for d in decisions] == [None, 0, 1, 2]
    assert m.buffer.keyframe_ids == [3, 4, 5, 6, 7] and m.stats()["keyframes_evicted"] == 3
    # replay: the rays of each batch come from every keyframe held at that moment, and only those
    kid = np.array(sorted(centres))
    cen = np.stack([centres[k] for k in kid])

    def source(origins):              # keyframe id of each ray (camera centres are 0.3 m apart)
        d = np.linalg.norm(origins[:, None, :] - cen[None], axis=-1)
        assert d.min(1).max() < 1e-5
        return kid[d.argmin(1)]

    last_full = None
    for held, origins in batches:
        assert set(source(origins).tolist()) == set(held), held
        if len(held) == 5:
            last_full = (held, origins)
    held, origins = last_full
    src = source(origins)
    counts = np.array([np.sum(src == k) for k in held])
    # 50 % of the rays from the newest 2, the rest uniform over the 5: expected 40, 40, 40, 140, 140
    assert counts[:3].sum() == pytest.approx(0.5 * 400 * 3 / 5, rel=0.3)
    assert counts[3:].sum() == pytest.approx(400 - 0.5 * 400 * 3 / 5, rel=0.2)
    assert m.step_count >= len(batches) - 1 > 10
