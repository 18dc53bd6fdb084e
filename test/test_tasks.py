import argparse
import json

import cv2
import numpy as np
import pytest
from scipy import ndimage

from semnerf_ros import tasks
from semnerf_ros.tasks import (
    TaskError,
    apply_task,
    evenly_spaced,
    label_propagation,
    load_corrupted,
    pixel_noise,
    ratio_count,
    region_flip,
    save_corrupted,
    select_label_frames,
    sparse_views,
    sr_sampling_grid,
    super_resolution_labels,
)

C = 6  # void + wall, floor, chair, table, lamp


def make_scene(n=10, h=64, w=64):
    """Labels and instances: void border, wall (1) / floor (2), two chairs (class 3,
    instances 3 and 6) of growing / shrinking size, a table (class 4, instance 9)
    visible in some frames, and a lamp (5) split in two blobs."""
    yy, xx = np.mgrid[:h, :w]
    labels = np.zeros((n, h, w), np.int32)
    inst = np.zeros((n, h, w), np.int32)
    for i in range(n):
        lab = np.where(yy < 40, 1, 2).astype(np.int32)
        ins = np.where(yy < 40, 1, 2).astype(np.int32)
        r1 = 2 + i                              # chair 3 grows
        c1 = (yy - 20) ** 2 + (xx - 16) ** 2 <= r1 ** 2
        r2 = 12 - i                             # chair 6 shrinks (absent when r2 < 0)
        c2 = (yy - 44) ** 2 + (xx - 44) ** 2 <= r2 ** 2 if r2 >= 0 else np.zeros_like(c1)
        lab[c1], ins[c1] = 3, 3
        lab[c2], ins[c2] = 3, 6
        if i % 3 != 1:
            tb = (yy >= 5) & (yy < 12) & (xx >= 40) & (xx < 60)
            lab[tb], ins[tb] = 4, 9
        for cx in (4, 58):
            lamp = (yy >= 54) & (yy < 58) & (xx >= cx - 2) & (xx < cx + 2)
            lab[lamp], ins[lamp] = 5, 20 + cx
        lab[:2], lab[:, :2] = 0, 0              # void border
        ins[:2], ins[:, :2] = 0, 0
        labels[i], inst[i] = lab, ins
    return labels, inst


@pytest.fixture(scope="module")
def scene():
    return make_scene()


def test_ratio_count_and_evenly_spaced():
    assert ratio_count(100, 0.29) == 29 and ratio_count(10, 0.25) == 2 and ratio_count(7, 0.5) == 3
    assert ratio_count(180, 0.97) == 174            # the seed truncates
    assert evenly_spaced(10, 3) == [0, 4, 7]
    assert evenly_spaced(5, 5) == [0, 1, 2, 3, 4] and evenly_spaced(5, 0) == []
    with pytest.raises(TaskError):
        evenly_spaced(3, 4)


# --------------------------------------------------------------------------- pixel noise

@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.7])
def test_pixel_noise_statistics(scene, ratio):
    labels, _ = scene
    before = labels.copy()
    noisy, info = pixel_noise(labels, ratio, C, np.random.default_rng(0), exclude_original=True)
    np.testing.assert_array_equal(labels, before)               # input untouched
    assert noisy.dtype == np.int32 and noisy.shape == labels.shape
    void = labels == 0
    assert np.all(noisy[void] == 0)                              # void untouched
    assert noisy[~void].min() >= 1 and noisy.max() <= C - 1      # only valid classes
    for i in range(len(labels)):
        valid = int((~void[i]).sum())
        assert int((noisy[i] != labels[i]).sum()) == ratio_count(valid, ratio)   # exact, per image
    measured = (noisy != labels).sum() / (~void).sum()
    assert abs(measured - ratio) < 0.01
    assert info["changed_ratio"] == pytest.approx(measured)
    assert info["perturbed_ratio"] == pytest.approx(measured)


def test_pixel_noise_seed_mode_may_keep_original_class(scene):
    labels, _ = scene
    noisy, info = pixel_noise(labels, 0.5, C, np.random.default_rng(1))
    assert abs(info["perturbed_ratio"] - 0.5) < 0.01
    # a random valid class equals the original with probability 1 / (C - 1)
    assert info["changed_ratio"] == pytest.approx(0.5 * (1 - 1 / (C - 1)), abs=0.01)
    assert np.all(noisy[labels == 0] == 0)


def test_pixel_noise_reproducible_frame_mask_and_errors(scene):
    labels, _ = scene
    a, _ = pixel_noise(labels, 0.2, C, np.random.default_rng(5))
    b, _ = pixel_noise(labels, 0.2, C, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    mask = np.zeros(len(labels), bool)
    mask[[1, 4]] = True
    m, info = pixel_noise(labels, 0.2, C, np.random.default_rng(5), frame_mask=mask)
    changed = (m != labels).any(axis=(1, 2))
    assert not changed[~mask].any() and changed[mask].all() and info["frames"] == 2
    with pytest.raises(TaskError, match="num_classes"):
        pixel_noise(labels, 0.2, 4, np.random.default_rng(0))
    with pytest.raises(TaskError, match="ratio"):
        pixel_noise(labels, 1.5, C, np.random.default_rng(0))
    with pytest.raises(TaskError, match="stack"):
        pixel_noise(labels[0], 0.2, C, np.random.default_rng(0))


# --------------------------------------------------------------------------- sparse views

@pytest.mark.parametrize("n", [7, 10, 180])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0])
@pytest.mark.parametrize("random_sample", [False, True])
def test_sparse_views_drop_exact_count(n, ratio, random_sample):
    keep = sparse_views(n, ratio, random_sample, np.random.default_rng(3))
    assert keep.dtype == bool and keep.shape == (n,)
    assert int((~keep).sum()) == ratio_count(n, ratio)


def test_sparse_views_evenly_spaced_like_the_seed():
    keep = sparse_views(10, 0.3, False)
    np.testing.assert_array_equal(np.flatnonzero(~keep), [0, 4, 7])      # dropped spread out
    keep = sparse_views(10, 0.7, False)
    np.testing.assert_array_equal(np.flatnonzero(keep), [0, 4, 7])       # kept spread out
    keep = sparse_views(180, 0.9, False)
    gaps = np.diff(np.flatnonzero(keep))
    assert gaps.min() == gaps.max() == 10
    r1 = sparse_views(50, 0.4, True, np.random.default_rng(0))
    r2 = sparse_views(50, 0.4, True, np.random.default_rng(1))
    assert not np.array_equal(r1, r2)
    with pytest.raises(TaskError):
        sparse_views(10, 0.3, True, None)


def test_select_label_frames():
    keep = select_label_frames([0, 5, 10, 15], [15, 5])
    np.testing.assert_array_equal(keep, [False, True, False, True])
    assert not select_label_frames([0, 5], [None]).any()
    with pytest.raises(TaskError, match=r"\[7\]"):
        select_label_frames([0, 5], [5, 7])


# --------------------------------------------------------------------------- region flips

@pytest.mark.parametrize("uniform", [False, True])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.8])
def test_region_flip_whole_instances_and_fraction(scene, uniform, ratio):
    labels, inst = scene
    ids = [3, 6, 9]
    before = labels.copy()
    out, info = region_flip(labels, inst, ids, ratio, uniform, C, np.random.default_rng(2))
    np.testing.assert_array_equal(labels, before)
    changed = out != labels
    # changes only inside the chosen instances, and always the whole region to one class
    assert not changed[~np.isin(inst, ids)].any()
    flipped = {(f["instance"], f["frame"]) for f in info["flips"]}
    for iid in ids:
        areas = (inst == iid).sum(axis=(1, 2))
        visible = [m for m in np.argsort(areas, kind="stable") if areas[m] > 0]
        mine = [m for (j, m) in flipped if j == iid]
        assert len(mine) == ratio_count(len(visible), ratio)
        k = len(mine)
        if not uniform:                                          # the smallest areas
            assert sorted(mine) == sorted(visible[:k])
        for m in range(len(labels)):
            region = inst[m] == iid
            if (iid, m) in flipped:
                vals = np.unique(out[m][region])
                assert vals.size == 1 and 1 <= vals[0] < C
                assert vals[0] != np.bincount(labels[m][region]).argmax()   # another class
            else:
                np.testing.assert_array_equal(out[m][region], labels[m][region])
    assert info["flipped_frames"] == [len([1 for (j, _) in flipped if j == iid]) for iid in ids]


def test_region_flip_uniform_spacing_and_frame_mask(scene):
    labels, inst = scene
    areas = (inst == 3).sum(axis=(1, 2))
    order = list(np.argsort(areas, kind="stable"))           # chair 3 visible in all 10
    _, info = region_flip(labels, inst, [3], 0.3, True, C, np.random.default_rng(0))
    assert sorted(f["frame"] for f in info["flips"]) == sorted(order[j] for j in [0, 4, 7])
    mask = np.zeros(10, bool)
    mask[5:] = True
    _, info = region_flip(labels, inst, [3], 1.0, False, C, np.random.default_rng(0), frame_mask=mask)
    assert sorted(f["frame"] for f in info["flips"]) == [5, 6, 7, 8, 9]
    with pytest.raises(TaskError, match="shape"):
        region_flip(labels, inst[:3], [3], 0.5, False, C, np.random.default_rng(0))


# --------------------------------------------------------------------------- super-resolution

def test_sr_grid_is_the_seeds_nearest_sampling():
    rows, cols = sr_sampling_grid(48, 64, 8)
    np.testing.assert_array_equal(rows, np.arange(0, 48, 8))
    np.testing.assert_array_equal(cols, np.arange(0, 64, 8))
    # non-divisible size: exactly what cv2.resize(INTER_NEAREST) picks
    img = np.arange(50 * 70, dtype=np.int32).reshape(50, 70)
    rows, cols = sr_sampling_grid(50, 70, 8)
    low = cv2.resize(img, (70 // 8, 50 // 8), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(img[np.ix_(rows, cols)], low)
    with pytest.raises(TaskError):
        sr_sampling_grid(4, 4, 8)


def test_sr_dense_equals_nearest_upsampling(scene):
    labels, _ = scene
    for f in (2, 4, 8):
        out, valid = super_resolution_labels(labels, f, dense=True)
        assert valid.all() and out.dtype == np.int32
        low = labels[:, ::f, ::f]
        np.testing.assert_array_equal(out, np.repeat(np.repeat(low, f, axis=1), f, axis=2))
        seed = np.stack([cv2.resize(cv2.resize(lab, (64 // f, 64 // f), interpolation=cv2.INTER_NEAREST),
                                    (64, 64), interpolation=cv2.INTER_NEAREST) for lab in labels])
        np.testing.assert_array_equal(out, seed)


def test_sr_sparse_keeps_only_grid_pixels(scene):
    labels, _ = scene
    before = labels.copy()
    out, valid = super_resolution_labels(labels, 8, dense=False)
    np.testing.assert_array_equal(labels, before)
    grid = np.zeros((64, 64), bool)
    grid[::8, ::8] = True
    assert np.array_equal(valid, np.broadcast_to(grid, labels.shape))
    np.testing.assert_array_equal(out[:, grid], labels[:, grid])
    assert not out[:, ~grid].any()
    same, valid1 = super_resolution_labels(labels, 1, dense=False)
    np.testing.assert_array_equal(same, labels)
    assert valid1.all()


# --------------------------------------------------------------------------- label propagation

def test_single_click_one_pixel_per_class_region(scene):
    labels, inst = scene
    out, info = label_propagation(labels, np.random.default_rng(0), 0, progress=False)
    assert np.all((out == 0) | (out == labels))               # kept pixels keep their class
    n_regions = 0
    for i in range(len(labels)):
        for c in np.unique(labels[i]):
            if c == 0:
                continue
            n_regions += 1
            assert int((out[i] == c).sum()) == 1
    assert info["regions"] == n_regions == info["kept_pixels"]


def test_single_click_per_component_and_instance(scene):
    labels, inst = scene
    out, info = label_propagation(labels, np.random.default_rng(0), 0, regions="component", progress=False)
    for i in range(len(labels)):
        for c in range(1, C):
            comp, k = ndimage.label(labels[i] == c, structure=np.ones((3, 3)))
            for j in range(1, k + 1):
                assert int((out[i][comp == j] == c).sum()) == 1
    lamps = (out == 5).sum(axis=(1, 2))
    assert np.all(lamps == 2)                                 # two blobs -> two clicks
    out_i, _ = label_propagation(labels, np.random.default_rng(0), 0, instances=inst, regions="instance",
                                 progress=False)
    for iid in (3, 6, 9, 24, 62):
        for i in range(len(labels)):
            if (inst[i] == iid).any():
                assert int((out_i[i][inst[i] == iid] != 0).sum()) == 1
    with pytest.raises(TaskError, match="instance"):
        label_propagation(labels, np.random.default_rng(0), 0, regions="instance")


@pytest.mark.parametrize("perc", [1, 5, 20])
def test_partial_patches_hold_p_percent(scene, perc):
    labels, _ = scene
    out, info = label_propagation(labels, np.random.default_rng(4), perc, progress=False)
    assert np.all((out == 0) | (out == labels))
    for i in range(len(labels)):
        for c in np.unique(labels[i]):
            if c == 0:
                continue
            area = int((labels[i] == c).sum())
            assert int((out[i] == c).sum()) == max(1, ratio_count(area, perc / 100))
    assert info["kept_ratio"] == pytest.approx(perc / 100, abs=0.01 + 0.5 * perc / 100)


def test_partial_patch_is_compact():
    lab = np.ones((1, 60, 60), np.int32)
    out, _ = label_propagation(lab, np.random.default_rng(0), 10, progress=False)
    ys, xs = np.nonzero(out[0])
    assert ys.size == 360
    bbox = (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
    assert bbox <= 2.0 * ys.size                              # one blob, not scattered pixels


# --------------------------------------------------------------------------- save / load / dispatch

def test_save_load_round_trip(tmp_path, scene):
    labels, _ = scene
    masks = np.arange(10) % 2 == 0
    meta = {"task_args": {"pixel_denoising": True}, "seed": 7, "stats": {"x": np.float32(0.5)}}
    path = save_corrupted(tmp_path / "run" / "noisy", labels, masks, meta)
    assert path.suffix == ".npz" and path.with_suffix(".json").is_file()
    lab2, masks2, meta2 = load_corrupted(path)
    np.testing.assert_array_equal(lab2, labels)
    np.testing.assert_array_equal(masks2, masks)
    assert meta2["seed"] == 7 and meta2["stats"]["x"] == 0.5
    assert json.loads(path.with_suffix(".json").read_text())["seed"] == 7
    assert not list(tmp_path.glob("run/.*tmp"))
    with pytest.raises(TaskError, match="not found"):
        load_corrupted(tmp_path / "missing.npz")


def test_apply_task_precedence_and_outputs(scene):
    labels, inst = scene
    rng = lambda: np.random.default_rng(11)  # noqa: E731
    ids = list(range(0, 50, 5))
    out, keep, desc = apply_task({}, labels, inst, ids, rng(), C)
    np.testing.assert_array_equal(out, labels)
    assert keep.all()
    assert "full dense" in desc
    args = argparse.Namespace(super_resolution=True, sr_factor=4, dense_sr=False, pixel_denoising=True,
                              pixel_noise_ratio=0.5, sparse_views=True, sparse_ratio=0.5, config_file="x")
    out, keep, desc = apply_task(args, labels, inst, ids, rng(), C)
    assert keep.all() and "super_resolution" in desc and "pixel_denoising" in desc   # noted as ignored
    np.testing.assert_array_equal(out, super_resolution_labels(labels, 4, False)[0])
    out, keep, desc = apply_task(dict(pixel_denoising=True, pixel_noise_ratio=0.3, sparse_views=True,
                                      sparse_ratio=0.3), labels, inst, ids, rng(), C)
    assert int((~keep).sum()) == 3 and not out[~keep].any()
    kept_noise = (out[keep] != labels[keep]).sum() / (labels[keep] != 0).sum()
    assert abs(kept_noise - 0.3 * (1 - 1 / (C - 1))) < 0.02 and "measured" in desc
    out, keep, desc = apply_task(dict(label_propagation=True, partial_perc=0, sparse_views=True,
                                      sparse_ratio=0.5, random_sample=True), labels, inst, ids, rng(), C)
    assert int(keep.sum()) == 5 and not out[~keep].any() and "single click" in desc
    out, keep, _ = apply_task(dict(region_denoising=True, region_noise_ratio=0.5, instance_id=[3, 6]),
                              labels, inst, ids, rng(), C)
    assert keep.all() and not (out != labels)[~np.isin(inst, [3, 6])].any() and (out != labels).any()
    out, keep, desc = apply_task(dict(sparse_views=True, label_map_ids=[10, 45]), labels, inst, ids, rng(), C)
    np.testing.assert_array_equal(np.flatnonzero(keep), [2, 9])
    np.testing.assert_array_equal(out[keep], labels[keep])
    with pytest.raises(TaskError, match="instance"):
        apply_task(dict(region_denoising=True, region_noise_ratio=0.5), labels, None, ids, rng(), C)
    with pytest.raises(TaskError, match="saved_path"):
        apply_task(dict(load_saved=True), labels, inst, ids, rng(), C)


def test_apply_task_visualise_save_then_load_saved(tmp_path, scene):
    labels, inst = scene
    args = dict(pixel_denoising=True, pixel_noise_ratio=0.4, sparse_views=True, sparse_ratio=0.2,
                visualise_save=True)
    path = tmp_path / "labels.npz"
    out, keep, desc = apply_task(args, labels, inst, None, np.random.default_rng(3), C, saved_path=path, seed=3)
    assert path.is_file() and len(list((tmp_path / "labels_vis").glob("*.png"))) == len(labels)
    meta = load_corrupted(path)[2]
    assert meta["seed"] == 3 and meta["task_args"]["pixel_noise_ratio"] == 0.4
    # loading ignores the generator and returns exactly what was saved
    out2, keep2, desc2 = apply_task(dict(args, visualise_save=False, load_saved=True), labels, inst, None,
                                    np.random.default_rng(99), C, saved_path=path)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(keep2, keep)
    assert "loaded" in desc2
    with pytest.raises(TaskError, match="pixel_noise_ratio"):
        apply_task(dict(args, pixel_noise_ratio=0.1, visualise_save=False, load_saved=True), labels, inst,
                   None, np.random.default_rng(0), C, saved_path=path)


def test_task_args_defaults_and_bad_values():
    a = tasks.task_args(None)
    assert a["sr_factor"] == 8 and a["instance_id"] == [3, 6, 7, 9, 11, 12, 13, 48] and a["label_map_ids"] == []
    assert set(tasks.TASK_DEFAULTS) <= set(a)
    with pytest.raises(TaskError, match="sr_factor"):
        tasks.task_args({"sr_factor": "big"})
    with pytest.raises(TaskError, match="sr_factor"):
        tasks.task_args({"sr_factor": 2.5})
    assert tasks.task_args({"dense_sr": "false", "sparse_views": "True"})["dense_sr"] is False
    with pytest.raises(TaskError, match="dense_sr"):
        tasks.task_args({"dense_sr": "maybe"})


def test_partial_growth_reseeds_when_a_part_is_exhausted():
    lab = np.zeros((1, 16, 16), np.int32)
    lab[0, ::4, ::4] = 1                                      # 16 isolated dots, 3-pixel gaps
    out, _ = label_propagation(lab, np.random.default_rng(0), 50, progress=False)
    assert int(out.sum()) == 8 and np.all(out[lab == 0] == 0)
