"""The label tasks under ``protocol="seed"`` draw what the seed's code draws (issue 18, gap 2):
pixel noise on ``int(H*W*ratio)`` pixels of the whole image with classes from all ids including
void; region flips to any id, void and the region's own included; the seed's truncation, its
label-propagation growth and its sparse super-resolution grid."""
from __future__ import annotations

import numpy as np
import pytest

from semnerf_ros import tasks
from semnerf_ros.tasks import (
    TaskError,
    apply_task,
    label_propagation,
    pixel_noise,
    ratio_count,
    region_flip,
    seed_count,
    sparse_views,
    super_resolution_labels,
)

C = 6


class SpyRng:
    """A numpy Generator that records the draws the tasks ask it for."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.calls: list = []

    def permutation(self, n):
        self.calls.append(("permutation", int(n)))
        return self.rng.permutation(n)

    def integers(self, low, high=None, size=None):
        self.calls.append(("integers", low, high, size))
        return self.rng.integers(low, high, size=size)

    def choice(self, *a, **k):
        self.calls.append(("choice",))
        return self.rng.choice(*a, **k)


def _labels(n=4, h=30, w=40):
    lab = np.ones((n, h, w), np.int32)
    lab[:, :, :10] = 0          # a void band: a quarter of every image
    lab[:, 20:, 10:] = 3
    return lab


def test_seed_count_truncates_like_python_int():
    assert seed_count(100, 0.29) == 28 and ratio_count(100, 0.29) == 29   # 0.29 * 100 = 28.999...
    assert seed_count(320 * 240, 0.5) == 38400
    assert sparse_views(100, 0.29, False, protocol="seed").sum() == 72
    assert sparse_views(100, 0.29, False).sum() == 71
    with pytest.raises(TaskError, match="protocol"):
        sparse_views(10, 0.5, False, protocol="paper")


def test_seed_pixel_noise_draws_int_hw_ratio_positions_and_classes_from_all_ids():
    lab = _labels()
    n, h, w = lab.shape
    spy = SpyRng(3)
    noisy, info = pixel_noise(lab, 0.5, C, spy, protocol="seed")
    k = int(h * w * 0.5)
    # per frame: one permutation of all H*W pixels, then k classes from 0..C-1 (void included)
    assert spy.calls == [("permutation", h * w), ("integers", 0, C, k)] * n
    assert info["perturbed_pixels"] == n * k and info["valid_pixels"] == n * h * w
    assert info["perturbed_ratio"] == pytest.approx(0.5)
    # void pixels are perturbed too, and valid pixels become void
    void = lab == 0
    assert (noisy[void] != 0).mean() == pytest.approx(0.5 * (1 - 1 / C), abs=0.03)
    assert (noisy[~void] == 0).mean() == pytest.approx(0.5 / C, abs=0.02)
    # a drawn class equals the original with probability 1/C: changed ~ k (1 - 1/C)
    assert info["changed_pixels"] == int((noisy != lab).sum())
    assert info["changed_ratio"] == pytest.approx(0.5 * (1 - 1 / C), abs=0.01)
    with pytest.raises(TaskError, match="exclude_original"):
        pixel_noise(lab, 0.5, C, np.random.default_rng(0), exclude_original=True, protocol="seed")


def test_seed_pixel_noise_class_distribution_is_uniform_over_all_ids():
    lab = np.full((20, 24, 32), 2, np.int32)
    noisy, _ = pixel_noise(lab, 1.0, C, np.random.default_rng(4), protocol="seed")
    counts = np.bincount(noisy.ravel(), minlength=C) / noisy.size
    np.testing.assert_allclose(counts, 1.0 / C, atol=0.01)        # every id, void 0 included


def test_semnerf_pixel_noise_keeps_void_for_contrast():
    lab = _labels()
    noisy, info = pixel_noise(lab, 0.5, C, np.random.default_rng(3))
    assert np.all(noisy[lab == 0] == 0) and noisy[lab != 0].min() >= 1
    assert info["perturbed_pixels"] == lab.shape[0] * ratio_count(int((lab[0] != 0).sum()), 0.5)


def _instance_scene(n=50, h=24, w=24):
    lab = np.ones((n, h, w), np.int32)
    inst = np.zeros((n, h, w), np.int32)
    for i in range(n):
        r = 2 + i % 7
        lab[i, 4:4 + r, 4:4 + r] = 3
        inst[i, 4:4 + r, 4:4 + r] = 7
    return lab, inst


def test_seed_region_flips_draw_any_id_including_void_and_the_own_class():
    lab, inst = _instance_scene()
    drawn = []
    for seed in range(12):
        out, info = region_flip(lab, inst, [7], 1.0, False, C, np.random.default_rng(seed), protocol="seed")
        assert info["flipped_frames"] == [50]
        for f in info["flips"]:
            region = inst[f["frame"]] == 7
            assert np.all(out[f["frame"]][region] == f["to"])        # the whole region, one id
            drawn.append(f["to"])
    counts = np.bincount(drawn, minlength=C)
    assert counts.sum() == 600
    assert counts[0] > 0 and counts[3] > 0                           # void and the region's own class
    assert np.all(np.abs(counts - 100) < 45), counts                 # uniform over the 6 ids
    # the project's draws: never void, never the own class
    out, info = region_flip(lab, inst, [7], 1.0, False, C, np.random.default_rng(0))
    assert {f["to"] for f in info["flips"]} <= {1, 2, 4, 5}


def test_seed_region_flip_counts_truncate_like_the_seed():
    lab, inst = _instance_scene(n=100)
    _, info = region_flip(lab, inst, [7], 0.29, True, C, np.random.default_rng(0), protocol="seed")
    assert info["flipped_frames"] == [28]
    _, info = region_flip(lab, inst, [7], 0.29, True, C, np.random.default_rng(0))
    assert info["flipped_frames"] == [29]


def test_seed_label_propagation_keeps_the_whole_last_ring():
    lab = np.zeros((1, 60, 60), np.int32)
    lab[0, 5:55, 5:55] = 2                         # one 50 x 50 region of 2500 pixels
    out, info = label_propagation(lab, np.random.default_rng(1), partial_perc=5, progress=False, protocol="seed")
    kept = out[0] == 2
    target = int(2500 * 0.05)
    assert kept.sum() >= target
    # the region cut by a square of half-side 2k around the seed pixel, k the first dilation count
    # (5 x 5 kernel) that reaches the target: the seed keeps the whole last ring
    region = lab[0] == 2
    yy, xx = np.mgrid[:60, :60]

    def ring(cy, cx, k):
        return region & (np.abs(yy - cy) <= 2 * k) & (np.abs(xx - cx) <= 2 * k)

    found = [(cy, cx, k) for cy, cx in zip(*np.nonzero(region)) for k in range(1, 8)
             if np.array_equal(ring(cy, cx, k), kept)]
    assert len(found) == 1, found
    cy, cx, k = found[0]
    assert ring(cy, cx, k - 1).sum() < target <= kept.sum()
    out2, _ = label_propagation(lab, np.random.default_rng(1), partial_perc=5, progress=False)
    assert (out2[0] == 2).sum() == target          # the project trims to the exact count
    assert info["kept_pixels"] == kept.sum()


def test_seed_sparse_super_resolution_grid_is_every_fth_pixel():
    lab = np.arange(1, 1 + 10 * 10).reshape(1, 10, 10).astype(np.int32) % 5 + 1
    out, valid = super_resolution_labels(lab, 4, dense=False, protocol="seed")
    assert np.flatnonzero(valid[0].any(0)).tolist() == [0, 4, 8]   # ceil(10 / 4) columns, as [::4]
    np.testing.assert_array_equal(out[0][::4, ::4], lab[0][::4, ::4])
    _, valid = super_resolution_labels(lab, 4, dense=False)
    assert valid[0].any(0).sum() == 2                               # W // f columns


def test_apply_task_threads_the_protocol_and_records_it(tmp_path):
    lab = _labels()
    args = dict(tasks.TASK_DEFAULTS, pixel_denoising=True, pixel_noise_ratio=0.5, protocol="seed",
                visualise_save=True)
    noisy, keep, desc = apply_task(args, lab, None, None, np.random.default_rng(0), C,
                                   saved_path=tmp_path / "l.npz", progress=False)
    assert "seed's draws" in desc and keep.all()
    assert (noisy[lab == 0] != 0).any()                              # void perturbed: the seed's draws
    with pytest.raises(TaskError, match="protocol"):                 # saved under another protocol
        apply_task(dict(args, protocol="semnerf", visualise_save=False, load_saved=True), lab, None, None,
                   np.random.default_rng(0), C, saved_path=tmp_path / "l.npz", progress=False)
    with pytest.raises(TaskError, match="protocol"):
        apply_task(dict(args, protocol="paper", visualise_save=False), lab, None, None,
                   np.random.default_rng(0), C, progress=False)
