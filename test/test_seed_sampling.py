"""The seed's ray sampling (issue 18, gap 1): with ``render.no_batching: true`` every step's rays
come from one training image drawn uniformly (no bias to the newest frames), pixels drawn with
replacement, and a step on an unlabelled image has no semantic loss (the seed skips it)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from semnerf_ros.engine.config import make_config
from semnerf_ros.engine.frame import Frame
from semnerf_ros.engine.geometry import Intrinsics
from semnerf_ros.engine.keyframes import ReplayBuffer
from semnerf_ros.engine.mapper import Mapper

INTR = Intrinsics.from_hfov(8, 6, 90.0)


def _frame(i: int, labelled: bool = True) -> Frame:
    T = np.eye(4)
    T[:3, 3] = [0.1 * i, 0.0, 0.0]
    rgb = np.full((6, 8, 3), i, np.uint8)                      # the frame's index in every pixel
    lab = np.full((6, 8), 1 + i % 3, np.int32) if labelled else None
    return Frame(rgb=rgb, pose=T, intrinsics=INTR, labels=lab, stamp=float(i))


def _buffer(n=60) -> ReplayBuffer:
    buf = ReplayBuffer(n, "cpu")
    for i in range(n):
        buf.add(_frame(i))
    return buf


def test_one_image_per_step_uniform_over_frames_without_recent_bias():
    buf = _buffer(60)
    g = torch.Generator().manual_seed(0)
    picks = []
    for _ in range(3000):
        b = buf.sample_image(64, g)
        frame = (b.rgb[:, 0] * 255).round().long()
        assert bool((frame == frame[0]).all())                     # every ray from one image
        assert torch.allclose(b.origins, b.origins[:1].expand(64, 3))
        picks.append(int(frame[0]))
    counts = np.bincount(picks, minlength=60)
    assert counts.min() > 20 and counts.max() < 85                  # ~50 each
    recent = counts[-4:].sum() / counts.sum()
    assert recent == pytest.approx(4 / 60, abs=0.015)               # uniform: 6.7 %
    # the project's mixed sampling pins a quarter of the rays to the newest 4 frames
    mixed = buf.sample(6000, recent_fraction=0.25, generator=g)
    share = ((mixed.rgb[:, 0] * 255).round() >= 56).float().mean().item()
    assert share == pytest.approx(0.25 + 0.75 * 4 / 60, abs=0.02)


def test_pixels_are_drawn_with_replacement_over_the_whole_image():
    buf = _buffer(3)
    g = torch.Generator().manual_seed(1)
    b = buf.sample_image(4800, g)
    # recover each ray's pixel from its direction (camera z = 1, identity rotation)
    u = (b.dirs[:, 0] * INTR.fx + INTR.cx).round().long()
    v = (b.dirs[:, 1] * INTR.fy + INTR.cy).round().long()
    counts = torch.bincount(v * 8 + u, minlength=48).numpy()
    assert counts.min() > 60 and counts.max() < 140                 # ~100 per pixel, all 48 pixels
    b = buf.sample_image(100, g)                                      # more rays than the 48 pixels
    assert len(b) == 100


def _tiny_nerf_mapper(no_batching: bool) -> Mapper:
    cfg = make_config({
        "experiment": {"device": "cpu", "seed": 0},
        "model": {"netdepth": 2, "netwidth": 16, "netdepth_fine": 2, "netwidth_fine": 16},
        "render": {"N_rays": 32, "N_samples": 4, "N_importance": 4, "multires": 2, "multires_views": 1,
                   "no_batching": no_batching, "depth_range": [0.1, 2.0]},
        "mapper": {"keyframe_policy": "all", "max_keyframes": 10},
    })
    return Mapper(cfg, num_classes=4, device="cpu", bounds=np.array([[-2.0] * 3, [2.0] * 3]))


def test_a_step_on_an_unlabelled_image_has_no_semantic_loss():
    m = _tiny_nerf_mapper(no_batching=True)
    for i in range(4):
        m.add_frame(_frame(i, labelled=i % 2 == 0))
    drawn = []
    real = m.buffer.sample_image

    def spy(n, g=None):
        b = real(n, g)
        drawn.append(b)
        return b

    m.buffer.sample_image = spy
    sem_head = m.model.fine.semantic_linear[-1].weight
    seen = set()
    for _ in range(40):
        losses = m.step()
        labelled = bool((drawn[-1].labels != 0).any())
        seen.add(labelled)
        if labelled:
            assert losses["loss_semantic"] > 0
            assert float(sem_head.grad.abs().sum()) > 0
        else:   # skipped: nothing but the colour loss, no semantic gradient
            assert losses["loss_semantic"] == 0.0
            assert losses["loss"] == pytest.approx(losses["loss_rgb"])
            assert float(sem_head.grad.abs().sum()) == 0.0
    assert seen == {True, False}


def test_no_batching_false_keeps_the_mixed_sampling():
    m = _tiny_nerf_mapper(no_batching=False)
    for i in range(4):
        m.add_frame(_frame(i, labelled=i % 2 == 0))
    called = []
    m.buffer.sample_image = lambda *a, **k: called.append(1)
    assert m.step()["loss"] > 0 and not called


def test_a_loaded_map_keeps_the_running_mappers_ray_sampling(tmp_path):
    offline = _tiny_nerf_mapper(no_batching=True)        # trained under --protocol seed
    for i in range(3):
        offline.add_frame(_frame(i))
    offline.step()
    path = offline.save(tmp_path / "seed_map.pt")
    assert Mapper.load(path, device="cpu").cfg["render"]["no_batching"] is True   # --resume keeps it
    online = _tiny_nerf_mapper(no_batching=False)        # the node
    online.load_state(path)
    assert online.cfg["render"]["no_batching"] is False
    called = []
    online.buffer.sample_image = lambda *a, **k: called.append(1)
    assert online.step()["loss"] > 0 and not called
