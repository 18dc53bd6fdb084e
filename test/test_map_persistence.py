"""The map-load rule (docs/architecture.md, "Mapper persistence").

A map file brings the field -- its architecture (config sections ``model``,
``render``, ``train``), weights, optimiser state -- its keyframes and its
counters.  A running mapper that loads it (``Mapper.load_state``: the node's
``~/load_map`` and ``load_on_start``) keeps its own run-time settings: buffer
bound (``max_keyframes``), keyframe thresholds, eviction, rates, storage
device, device and seed.  A file with more keyframes than the bound loads
with a warning and the surplus is evicted by the buffer's own rule.
"""
import copy
import logging

import numpy as np
import pytest
import torch
from boxroom import NUM_CLASSES, box_frames

from semnerf_ros.engine.config import make_config
from semnerf_ros.engine.keyframes import KeyframePolicy
from semnerf_ros.engine.mapper import MAP_FILE_SECTIONS, Mapper

N_FRAMES = 12


def cfg_with(mapper=None, hash_=None, seed=0):
    base = {
        "experiment": {"device": "cpu", "seed": seed},
        "model": {"type": "hash", "hash": {"n_levels": 6, "log2_hashmap_size": 14, "base_resolution": 4,
                                           "finest_resolution": 32, "hidden_dim": 32, "hidden_dim_color": 32,
                                           "hidden_dim_semantic": 32}},
        "render": {"N_rays": 256, "depth_range": [0.05, 6.0], "occupancy_resolution": 24, "march_steps": 96,
                   "max_samples_per_ray": 24, "occupancy_warmup_steps": 50},
        "train": {"lrate": 1e-2, "lrate_decay": 1e6, "wgt_sem": 0.1, "wgt_depth": 0.1},
        "mapper": {"max_keyframes": 16, "min_translation": 0.05, "min_rotation_deg": 5.0},
    }
    if mapper:
        base["mapper"].update(mapper)
    if hash_:
        base["model"]["hash"].update(hash_)
    return make_config(base)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A map of 12 keyframes (every frame kept), trained 12 steps, saved to a file."""
    frames = box_frames(N_FRAMES, 32, 24)
    src = Mapper(cfg_with({"keyframe_policy": "all"}), NUM_CLASSES, device="cpu")
    for f in frames:
        src.add_frame(f)
    src.step(12)
    path = src.save(tmp_path_factory.mktemp("map") / "map.pt")
    return src, path, frames


def running(**mapper):
    """A running mapper with its own run-time settings and a *different* field size."""
    return Mapper(cfg_with(mapper, hash_={"n_levels": 4, "hidden_dim": 16}, seed=5), NUM_CLASSES, device="cpu")


def test_load_keeps_the_running_mappers_settings_and_takes_the_field_from_the_file(saved, caplog):
    src, path, frames = saved
    live = running(max_keyframes=40, min_translation=0.3, min_rotation_deg=20.0, max_overlap=0.5,
                   max_steps_per_second=7.0, eviction="fifo", recent_window=2, recent_fraction=0.5)
    before = copy.deepcopy(live.cfg)
    with caplog.at_level(logging.WARNING, logger="semnerf_ros.mapper"):
        info = live.load_state(path)
    assert not [r for r in caplog.records if "max_keyframes" in r.getMessage()]   # 12 fit in 40
    # run-time settings: the running mapper's
    assert live.cfg["mapper"] == before["mapper"] and live.cfg["experiment"] == before["experiment"]
    assert live.buffer.capacity == 40 and live.stats()["max_keyframes"] == 40
    assert live.buffer.eviction == "fifo" and live.buffer.recent_window == 2
    p = live.policy
    assert (p.min_translation, p.min_rotation_deg, p.max_overlap, p.policy) == (0.3, 20.0, 0.5, "motion")
    # the field: the file's (architecture, weights, optimiser state, schedule)
    for section in MAP_FILE_SECTIONS:
        assert live.cfg[section] == src.cfg[section], section
    assert live.model.field.encoding.n_levels == 6
    for k, v in src.model.state_dict().items():
        torch.testing.assert_close(live.model.state_dict()[k], v, rtol=0, atol=0)
    assert live.optimizer.state_dict()["state"][0]["step"] == src.optimizer.state_dict()["state"][0]["step"]
    f = frames[3]
    a, b = src.render(f.pose, f.intrinsics), live.render(f.pose, f.intrinsics)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    # keyframes and counters: the file's
    assert live.buffer.keyframe_ids == src.buffer.keyframe_ids and live.step_count == src.step_count
    assert torch.equal(live.buffer.rgb[live.buffer.order], src.buffer.rgb[src.buffer.order])
    assert live.keyframes_added == src.keyframes_added == N_FRAMES
    np.testing.assert_array_equal(live.policy.last_pose, src.policy.last_pose)
    # ... and the running thresholds decide the next keyframe: 0.1 m on from the last keyframe is
    # a keyframe for the file's 0.05 m, not for this mapper's 0.3 m
    nxt = copy.copy(frames[-1])
    nxt.pose = frames[-1].pose.copy()
    nxt.pose[:3, 3] += nxt.pose[:3, 2] * 0.1
    file_policy = KeyframePolicy(0.05, 5.0, 0.9)
    file_policy.accept(frames[-1].pose, frames[-1].intrinsics)
    assert file_policy.decide(nxt.pose, nxt.intrinsics, nxt.depth)[0]
    assert not live.add_frame(nxt).keyframe
    assert live.step()["loss"] > 0 and live.step_count == 13
    assert info == {"keyframes": N_FRAMES, "keyframes_in_file": N_FRAMES, "evicted": 0, "step": 12}


def test_more_keyframes_than_the_bound_warns_and_evicts_as_usual(saved, caplog):
    src, path, frames = saved
    # fifo: the newest 5 survive
    fifo = running(max_keyframes=5, eviction="fifo")
    with caplog.at_level(logging.WARNING, logger="semnerf_ros.mapper"):
        info = fifo.load_state(path)
    msgs = [r.getMessage() for r in caplog.records if r.name == "semnerf_ros.mapper"]
    assert any("holds 12 keyframes but max_keyframes is 5" in m and "evicting 7" in m for m in msgs), msgs
    assert info == {"keyframes": 5, "keyframes_in_file": 12, "evicted": 7, "step": 12}
    assert fifo.buffer.capacity == 5 and fifo.buffer.keyframe_ids == src.buffer.keyframe_ids[-5:]
    assert fifo.stats()["keyframes_evicted"] == src.buffer.evicted + 7
    # the kept keyframes are the file's, pixel for pixel, pose for pose
    idx = [src.buffer.keyframe_ids.index(k) for k in fifo.buffer.keyframe_ids]
    s_slots = [src.buffer.order[i] for i in idx]
    for name in ("rgb", "labels", "depth", "poses", "K", "has_depth"):
        assert torch.equal(getattr(fifo.buffer, name)[fifo.buffer.order], getattr(src.buffer, name)[s_slots]), name
    assert [fifo.buffer.slot_stamps[s] for s in fifo.buffer.order] == [src.buffer.slot_stamps[s] for s in s_slots]
    assert fifo.buffer.next_id == src.buffer.next_id            # new keyframes get fresh ids
    kid = fifo.add_frame(frames[0]).keyframe_id
    assert kid == src.buffer.next_id and len(fifo.buffer) == 5
    assert fifo.step()["loss"] > 0

    # coverage eviction: the same keyframes as if the frames had arrived with this bound
    cov = running(max_keyframes=6, eviction="coverage", recent_window=2)
    cov.load_state(path)
    ref = Mapper(cfg_with({"keyframe_policy": "all", "max_keyframes": 6, "eviction": "coverage",
                           "recent_window": 2}), NUM_CLASSES, device="cpu")
    for f in frames:
        ref.add_frame(f)
    assert ref.buffer.evicted == 6
    assert cov.buffer.keyframe_ids == ref.buffer.keyframe_ids
    assert sorted(cov.buffer.keyframe_ids) != list(range(6, 12))   # coverage, not simply the newest
    torch.testing.assert_close(cov.buffer.poses[cov.buffer.order], ref.buffer.poses[ref.buffer.order])


def test_a_new_mapper_from_a_file_takes_everything_from_it(saved):
    src, path, _ = saved
    m = Mapper.load(path, device="cpu")
    assert m.cfg == src.cfg and m.buffer.capacity == 16 and m.policy.min_translation == 0.05


def test_failed_load_leaves_settings_and_map_untouched(saved, tmp_path):
    src, path, frames = saved
    live = running(max_keyframes=3)
    for f in frames[:2]:
        live.add_frame(f)
    live.step(2)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:1000])
    cfg = copy.deepcopy(live.cfg)
    with pytest.raises(Exception, match="cannot read map file"):
        live.load_state(bad)
    assert live.cfg == cfg and live.buffer.capacity == 3 and len(live.buffer) == 2 and live.step_count == 2
