"""The Mapper: online learning, background thread, rendering, persistence, faults."""
import threading
import time

import numpy as np
import pytest
import torch
from boxroom import HALF, NUM_CLASSES, box_frames

from semnerf_ros.engine.config import make_config
from semnerf_ros.engine.frame import FrameError
from semnerf_ros.engine.geometry import PoseError
from semnerf_ros.engine.mapper import MapFileError, MapNotReadyError, Mapper
from semnerf_ros.metrics import confusion_matrix, segmentation_scores


def tiny_cfg(**over):
    base = {
        "experiment": {"device": "cpu", "seed": 0},
        "model": {"type": "hash", "hash": {"n_levels": 6, "log2_hashmap_size": 14, "base_resolution": 4,
                                           "finest_resolution": 32, "hidden_dim": 32, "hidden_dim_color": 32,
                                           "hidden_dim_semantic": 32}},
        "render": {"N_rays": 256, "depth_range": [0.05, 6.0], "occupancy_resolution": 24, "march_steps": 96,
                   "max_samples_per_ray": 24, "occupancy_warmup_steps": 50},
        "train": {"lrate": 1e-2, "lrate_decay": 1e6, "wgt_sem": 0.1, "wgt_depth": 0.1},
        "mapper": {"max_keyframes": 16, "min_translation": 0.05, "min_rotation_deg": 5.0},
    }
    for k, v in over.items():
        base.setdefault(k, {}).update(v)
    return make_config(base)


def noisy(frames, ratio, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        lab = f.labels.copy()
        m = rng.random(lab.shape) < ratio
        lab[m] = rng.integers(1, NUM_CLASSES, int(m.sum()))
        out.append(lab)
    return out


def miou(gts, preds):
    conf = sum(confusion_matrix(g, p, NUM_CLASSES) for g, p in zip(gts, preds))
    return segmentation_scores(conf)["miou"]


@pytest.fixture(scope="module")
def trained():
    """A map trained online on every other frame of the box room with 50 % label noise."""
    frames = box_frames(24, 32, 24)
    train, test = frames[::2], frames[1::2]
    clean = [f.labels for f in train]
    labels = noisy(train, 0.5)
    m = Mapper(tiny_cfg(), NUM_CLASSES, device="cpu")
    for f, lab in zip(train, labels):
        f.labels = lab
        m.add_frame(f)
        m.step(5)  # online: a few steps per arriving frame
    m.step(100)
    return m, train, test, clean, labels


def test_online_run_denoises_labels(trained):
    m, train, test, clean, noisy_labels = trained
    noisy_miou = miou(clean, noisy_labels)
    pred_test = [m.render(f.pose, f.intrinsics).labels for f in test]
    pred_train = [m.render(f.pose, f.intrinsics).labels for f in train]
    test_miou = miou([f.labels for f in test], pred_test)
    train_miou = miou(clean, pred_train)
    assert noisy_miou < 0.5
    assert test_miou > noisy_miou + 0.25, (test_miou, noisy_miou)
    assert train_miou > noisy_miou + 0.25, (train_miou, noisy_miou)


def test_render_outputs_are_consistent(trained):
    m = trained[0]
    f = trained[1][0]
    r = m.render(f.pose, f.intrinsics)
    assert r.rgb.shape == (24, 32, 3) and r.rgb.dtype == np.float32
    assert r.labels.min() >= 1 and r.labels.max() < NUM_CLASSES
    np.testing.assert_allclose(r.probs.sum(-1), 1.0, atol=1e-4)
    assert np.all(r.probs[..., 0] == 0)
    assert np.all(r.entropy >= -1e-6) and np.all(r.entropy <= np.log(NUM_CLASSES - 1) + 1e-4)
    assert np.array_equal(r.labels, r.probs.argmax(-1))
    half = m.render(f.pose, f.intrinsics, scale=0.5)
    assert half.labels.shape == (12, 16)
    assert np.abs(r.depth - f.depth).mean() < 0.5


def test_save_load_renders_the_same_image(trained, tmp_path):
    m, train = trained[0], trained[1]
    path = m.save(tmp_path / "map.pt")
    m2 = Mapper.load(path, device="cpu")
    f = train[2]
    a, b = m.render(f.pose, f.intrinsics), m2.render(f.pose, f.intrinsics)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.rgb, b.rgb, atol=1e-6)
    assert m2.stats()["keyframes"] == m.stats()["keyframes"]
    assert m2.step_count == m.step_count
    assert [p.name for p in tmp_path.iterdir()] == ["map.pt"]  # no temp file left


def test_corrupt_map_file_is_rejected_and_live_map_untouched(trained, tmp_path):
    m, train = trained[0], trained[1]
    f = train[1]
    before = m.render(f.pose, f.intrinsics).labels
    good = m.save(tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a map")
    for bad in (truncated, garbage, tmp_path / "missing.pt"):
        with pytest.raises(MapFileError):
            m.load_state(bad)
    np.testing.assert_array_equal(m.render(f.pose, f.intrinsics).labels, before)


def test_save_to_unwritable_place_raises_clear_error(trained, tmp_path):
    with pytest.raises(MapFileError, match="does not exist"):
        trained[0].save(tmp_path / "no" / "such" / "dir" / "map.pt")


def test_invalid_frames_are_rejected_and_map_unchanged():
    frames = box_frames(4, 32, 24)
    m = Mapper(tiny_cfg(), NUM_CLASSES, device="cpu")
    m.add_frame(frames[0])
    bad_pose = frames[1]
    bad_pose.pose = bad_pose.pose.copy()
    bad_pose.pose[0, 0] = np.nan
    with pytest.raises(PoseError):
        m.add_frame(bad_pose)
    scaled = frames[2]
    scaled.pose = scaled.pose.copy()
    scaled.pose[:3, :3] *= 2.0
    with pytest.raises(PoseError):
        m.add_frame(scaled)
    f = frames[3]
    f.labels = f.labels.copy()
    f.labels[0, 0] = NUM_CLASSES  # out of the class set
    with pytest.raises(FrameError, match="class id"):
        m.add_frame(f)
    assert len(m.buffer) == 1


def test_render_before_any_frame_says_why():
    m = Mapper(tiny_cfg(), NUM_CLASSES, device="cpu")
    f = box_frames(1, 32, 24)[0]
    with pytest.raises(MapNotReadyError):
        m.render(f.pose, f.intrinsics)


def test_background_thread_trains_renders_and_stops():
    frames = box_frames(6, 32, 24)
    m = Mapper(tiny_cfg(), NUM_CLASSES, device="cpu")
    for f in frames:
        m.add_frame(f)
    m.start()
    try:
        deadline = time.time() + 20
        while m.step_count < 5 and time.time() < deadline:
            time.sleep(0.05)
        assert m.step_count >= 5 and m.is_training
        r = m.render(frames[0].pose, frames[0].intrinsics)  # concurrent with training
        assert r.labels.shape == (24, 32)
        m.pause()
        time.sleep(0.3)
        n = m.step_count
        time.sleep(0.3)
        assert m.step_count == n and not m.is_training
        m.resume()
        deadline = time.time() + 20
        while m.step_count <= n and time.time() < deadline:
            time.sleep(0.05)
        assert m.step_count > n
    finally:
        t0 = time.time()
        assert m.stop(timeout=5.0)
        assert time.time() - t0 < 5.0
    tm = m.stats()["timing_ms"]
    assert {"step", "add_frame", "add_frame_wait", "render", "render_wait", "view"} <= set(tm)
    assert tm["add_frame"]["n"] == len(frames) and tm["render"]["n"] == 1 and tm["view"]["n"] == 1
    assert tm["view"]["p50"] >= tm["render"]["p50"]   # the whole view holds the map lock for part of it
    assert all(0 <= t["p50"] <= t["max"] for t in tm.values())


@pytest.mark.parametrize("pause", [False, True])
def test_views_pause_training_launches_no_step_while_a_view_renders(pause, monkeypatch):
    """mapper.views_pause_training: no training step starts between a view's start and its images
    while views take a sixth of the time; without it, steps go on during a view (the control: a view
    here lasts 0.1-0.15 s, steps a few).  Views back to back never stop training (the pause's share)."""
    import semnerf_ros.engine.mapper as mapper_module
    monkeypatch.setattr(mapper_module, "VIEW_PAUSE_CREDIT_S", 0.5)   # a CPU view takes 0.1-0.15 s
    frames = box_frames(4, 32, 24)
    m = Mapper(tiny_cfg(mapper={"views_pause_training": pause}), NUM_CLASSES, device="cpu")
    for f in frames:
        m.add_frame(f)
    step_starts, view_spans = [], []
    real_step, real_render = m.step, m._view_renderer.render

    def step(*a, **k):
        step_starts.append(time.perf_counter())
        return real_step(*a, **k)

    def render(*a, **k):
        t0 = time.perf_counter()
        time.sleep(0.03)
        out = real_render(*a, **k)
        view_spans.append((t0, time.perf_counter()))
        return out

    m.step, m._view_renderer.render = step, render
    m.start()
    try:
        deadline = time.time() + 20
        while m.step_count < 3 and time.time() < deadline:
            time.sleep(0.02)
        for _ in range(4):   # views of 0.1-0.15 s 0.7 s apart: within the pause's share of the time
            m.render(frames[0].pose, frames[0].intrinsics)
            time.sleep(0.7)
        n_spaced = len(view_spans)
        t_busy = time.perf_counter()
        while time.perf_counter() - t_busy < 1.5:   # then views back to back
            m.render(frames[0].pose, frames[0].intrinsics)
    finally:
        assert m.stop(timeout=5.0)

    def started_inside(spans):
        return [t for t in step_starts for a, b in spans if a < t < b]

    assert n_spaced == 4
    per_view = [len(started_inside([span])) for span in view_spans[:4]]
    print("steps started in each spaced view:", per_view)
    if pause:   # at most the step that had passed the loop's check when the view began
        assert max(per_view) <= 1, f"steps started during spaced views: {per_view}"
    else:
        assert sum(per_view) >= 6, f"the control: training goes on during views {per_view}"
    # back to back, views may hold training for at most a quarter of the time: it goes on
    busy = view_spans[4:]
    assert len(started_inside(busy)) >= 5
    assert not m._views_rendering


def test_switch_interval_is_set_only_for_gpu_training(monkeypatch):
    import sys
    calls = []
    monkeypatch.setattr(sys, "setswitchinterval", calls.append)
    frames = box_frames(2, 32, 24)
    m = Mapper(tiny_cfg(mapper={"switch_interval_ms": 0.5}), NUM_CLASSES, device="cpu")
    m.add_frame(frames[0])
    m.start()
    assert m.stop(timeout=5.0)
    assert calls == []                      # the CPU: Python's interval left alone
    m.device = torch.device("cuda")         # only start() reads it; the loop is not run
    monkeypatch.setattr(threading.Thread, "start", lambda self: None)
    m.start()
    m._thread = None
    assert calls == [0.0005]


def test_simulated_gpu_oom_skips_step_and_shrinks_batch(monkeypatch):
    frames = box_frames(3, 32, 24)
    m = Mapper(tiny_cfg(), NUM_CLASSES, device="cpu")
    for f in frames:
        m.add_frame(f)
    m.step(2)
    real = m.model.render_rays
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*a, **k)

    monkeypatch.setattr(m.model, "render_rays", flaky)
    assert m.step() == {}
    assert m.oom_events == 1 and m.n_rays == 128 and m.step_count == 2  # 256 halved
    assert m.step()["loss"] > 0
    assert m.step_count == 3


def test_reset_forgets_map():
    frames = box_frames(3, 32, 24)
    m = Mapper(tiny_cfg(), NUM_CLASSES, device="cpu")
    for f in frames:
        m.add_frame(f)
    m.step(2)
    m.reset()
    assert len(m.buffer) == 0 and m.step_count == 0 and m.model is None
    assert m.step() == {}


def test_explicit_bounds_and_nerf_model_train_on_cpu():
    frames = box_frames(3, 16, 12)
    cfg = tiny_cfg(model={"type": "nerf", "netdepth": 2, "netwidth": 32, "netdepth_fine": 2, "netwidth_fine": 32},
                   render={"N_samples": 8, "N_importance": 8, "N_rays": 64})
    m = Mapper(cfg, NUM_CLASSES, device="cpu", bounds=np.stack([-HALF, HALF]))
    for f in frames:
        m.add_frame(f)
    out = m.step(3)
    assert np.isfinite(out["loss"]) and m.step_count == 3
    r = m.render(frames[0].pose, frames[0].intrinsics)
    assert r.labels.shape == (12, 16)


def test_explicit_bounds_map_is_empty_until_a_keyframe_and_again_after_reset():
    """With explicit scene bounds the field exists from the start (and again right after a reset):
    it still renders nothing until a keyframe arrives, instead of its initialisation's noise."""
    frames = box_frames(2, 16, 12)
    m = Mapper(tiny_cfg(), NUM_CLASSES, device="cpu", bounds=np.stack([-HALF, HALF]))
    assert m.model is not None
    with pytest.raises(MapNotReadyError, match="empty"):
        m.render(frames[0].pose, frames[0].intrinsics)
    with pytest.raises(MapNotReadyError):
        m.extract_mesh(resolution=8)
    m.add_frame(frames[0])
    assert m.render(frames[0].pose, frames[0].intrinsics).labels.shape == (12, 16)
    m.step(2)
    m.reset()
    assert m.model is not None and len(m.buffer) == 0
    with pytest.raises(MapNotReadyError):
        m.render(frames[0].pose, frames[0].intrinsics)


def test_revisited_views_are_screened_out_before_any_queue_and_not_added_again():
    """A looping camera: the second pass over the same poses adds no keyframe, and
    ``screen_frame`` (no map lock) says so before a frame is queued for ``add_frame``."""
    frames = box_frames(8, width=32, height=24)
    m = Mapper(tiny_cfg(), NUM_CLASSES)
    first = [m.add_frame(f).keyframe for f in frames]
    assert all(first) and len(m.buffer) == 8
    for f in frames:
        reason = m.screen_frame(f)
        assert reason is not None and reason.startswith("revisits keyframe"), reason
        d = m.add_frame(f)
        assert not d.keyframe and d.reason.startswith("revisits keyframe")
    assert len(m.buffer) == 8 and m.stats()["frames_screened"] == 8
    # a view the map does not have yet passes the screen (None: add_frame decides)
    far = box_frames(9, width=32, height=24)[-1]
    far.pose = far.pose.copy()
    far.pose[:3, 3] += np.array([0.3, 0.0, 0.0])
    assert m.screen_frame(far) is None
    # a frame that cannot be judged is left to add_frame, which reports it
    bad = box_frames(1, width=32, height=24)[0]
    bad.pose = np.full((4, 4), np.nan)
    assert m.screen_frame(bad) is None
    with pytest.raises(PoseError):
        m.add_frame(bad)
