"""Benchmark plumbing that the GPU figures rely on, checked on a CPU at toy sizes:
bench/online.py's label corruption choice (issue 13: segmentation-like noise selectable in the
benchmarks, its input mIoU reported), its part of the house entered later (issue 12) and
bench/scenes.py's merge of runs made by several invocations (``--from-runs``: one variant's rooms split
over GPU calls)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from semnerf_ros.datasets.synthetic import make_scene

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TOY = ["render.N_rays=64", "render.march_steps=32", "render.max_samples_per_ray=8",
       "render.occupancy_resolution=16"]


@pytest.fixture(scope="module")
def toy_scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("bench") / "scene", 30, 40, 30, seed=3, progress=False)


@pytest.mark.parametrize("noise, strength", [("segmentation", 0.3), ("pixel", 0.5), ("none", 0.0)])
def test_online_label_corruption_is_selectable(toy_scene, tmp_path, noise, strength):
    out = tmp_path / "online.json"
    rc = _load("online").main(["--scene", str(toy_scene), "--width", "40", "--height", "30",
                               "--noise", noise, "--noise-strength", str(strength), "--times", "0.2",
                               "--clock", "steps", "--steps-per-second", "20", "--max-test-views", "2",
                               "--max-train-views", "2", "--device", "cpu", "--set", *TOY, "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["noise"] == noise and r["noise_ratio"] == strength
    miou = r["input_labels"]["miou"]
    if noise == "none":
        assert miou == pytest.approx(1.0)
    else:
        assert 0.0 < miou < 0.95  # the corruption changed the training labels, and it is reported
    if noise == "segmentation":
        assert r["noise_info"]["changed_pixels"] > 0
    assert len(r["checkpoints"]) == 1
    assert set(r["render_ms"]) == {"40x30", "80x60"} and all(v > 0 for v in r["render_ms"].values())


def test_a_part_of_the_house_entered_later_is_scored_beside_the_first_at_the_same_age(toy_scene, tmp_path):
    """--join-at (issue 12: a new room entered after N minutes must reach the quality the first had
    at the same age): the second half of the training frames arrives from that time on, and each
    checkpoint scores the two parts' test views apart."""
    online = _load("online")
    t = online.arrival_times(6, 2.0, join_at=10.0, split=0.5)
    assert t.tolist() == [0.0, 0.5, 1.0, 10.0, 10.5, 11.0]
    assert online.arrival_times(4, 2.0).tolist() == [0.0, 0.5, 1.0, 1.5]
    out = tmp_path / "join.json"
    rc = online.main(["--scene", str(toy_scene), "--width", "40", "--height", "30", "--times", "0.3", "0.6", "0.9",
                      "--join-at", "0.6", "--rate", "30", "--clock", "steps", "--steps-per-second", "20",
                      "--max-test-views", "2", "--max-train-views", "2", "--device", "cpu", "--set", *TOY,
                      "--latency-repeats", "0", "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["render_ms"] == {}                      # --latency-repeats 0: no latency renders
    n_train = r["train_views"]
    first, second, third = r["checkpoints"]
    assert first["frames_arrived"] == second["frames_arrived"] == n_train // 2   # the rest waits ...
    assert third["frames_arrived"] == n_train                                   # ... until 0.6 s
    for rec in r["checkpoints"]:
        assert rec["test_first_part"]["views"] == 2 and rec["test_second_part"]["views"] == 2
    join = r["summary"]["join"]
    assert [row["age_s"] for row in join] == [pytest.approx(0.3)]
    assert join[0]["first_part_miou_at_same_age"] == first["test_first_part"]["miou"]
    assert join[0]["second_part_miou"] == third["test_second_part"]["miou"]
    assert r["join_at"] == 0.6 and r["join_split"] == 0.5


def _fake_run(folder: Path, variant: str, room: str, mious: dict, depth: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints = [{"t": t, "t_nominal": t, "test": {"miou": m}} for t, m in mious.items()]
    (folder / f"{variant}__{room}.json").write_text(json.dumps({
        "checkpoints": checkpoints, "input_labels": {"miou": 0.25}, "depth_given": depth, "clock": "steps",
        "steps_per_second": 220.0, "overrides": ["train.wgt_depth=0.05"],
        "summary": {"peak_miou": max(mious.values())}}))


def test_scenes_from_runs_merges_invocations(tmp_path, capsys):
    _fake_run(tmp_path / "call1", "default", "room_s1", {10: 0.90, 30: 0.94})
    _fake_run(tmp_path / "call1", "default", "room_s2", {10: 0.80, 30: 0.92})
    _fake_run(tmp_path / "call2", "default", "room_s3", {10: 0.96})  # stopped by the budget before 30 s
    (tmp_path / "call2" / "summary.json").write_text("{}")  # an earlier summary is not a run
    out = tmp_path / "merged"
    assert _load("scenes").main(["--from-runs", str(tmp_path / "call1"), str(tmp_path / "call2"),
                                 "--out-dir", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["rooms"] == ["room_s1", "room_s2", "room_s3"] and s["times"] == [10, 30]
    assert len(s["merged_from"]) == 3
    table = {c["t"]: c for c in s["summary"]["default"]["checkpoints"]}
    assert table[10]["mean"] == pytest.approx((0.90 + 0.80 + 0.96) / 3)
    assert table[10]["worst"] == pytest.approx(0.80) and table[10]["worst_room"] == "room_s2"
    assert table[30]["rooms"] == {"room_s1": 0.94, "room_s2": 0.92}  # room 3 has no 30 s figure
    assert "| default | 0.887 / 0.800 | 0.930 / 0.920 |" in capsys.readouterr().out


def test_scenes_from_runs_refuses_an_empty_folder(tmp_path):
    with pytest.raises(SystemExit, match="no VARIANT__ROOM.json"):
        _load("scenes").main(["--from-runs", str(tmp_path), "--out-dir", str(tmp_path / "o")])


def test_scenes_refuses_its_own_flags_after_extra(tmp_path, capsys):
    """--extra takes the rest of the line; put before --times it would hand --times (and --out-dir ...)
    to every run, which fail at once (the fourth session lost a GPU run that way). Said before any run."""
    with pytest.raises(SystemExit):
        _load("scenes").main(["--scene-npz", "x.npz", "--extra", "--noise", "segmentation", "--times", "10", "30",
                              "--out-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert "--extra must come last" in err and "--times" in err and "--out-dir" in err
    assert not (tmp_path / "o").exists()


def test_node_progress_lines_parse_with_render_time_and_gpu_memory(tmp_path):
    log = tmp_path / "node.log"
    log.write_text(
        "[INFO] [1.0] [semnerf_node]: step 1205 (164 it/s), keyframes 60/200; messages received 298-300 per topic, "
        "frames synced 287, rejected 10 "
        "(mapper_busy 10); images published 94; intake queue 0/16 (peak 5); ms p50/max: step 2/33, add_frame "
        "11/318 (wait 2/83), render 7/12 (wait 2/277), label votes 2/8 (812 voxels); gpu 1479 MB\n"
        "[INFO] [2.0] [semnerf_node]: step 12 (4 it/s), keyframes 3/9; frames synced 1, rejected 0 (none); images "
        "published 0; intake queue 0/16 (peak 0); ms p50/max: step 10/30, add_frame - (wait -), render - (wait -)\n"
        "[WARN] [3.0] [semnerf_node]: something else\n"
        "[INFO] [4.0] [semnerf_node]: step 891 (220 it/s), keyframes 60/200; messages received 146 per topic, "
        "frames synced 146, rejected 0 (none); images published 47; intake queue 0/32 (peak 7); ms p50/max: step "
        "2/18, add_frame 9/138 (wait 1/151), view 9/21 (map lock 0/4, wait 2/12); gpu 2199 MB\n")
    rows = _load("node_latency").progress_from_log(log)
    assert len(rows) == 3
    # today's line: the whole view's time, not the map lock's part of it
    assert (rows[2]["render_ms_p50"], rows[2]["render_ms_max"]) == (9, 21)
    assert rows[0] == {"step": 1205, "it_per_s": 164, "keyframes": 60, "frames_synced": 287, "frames_rejected": 10,
                       "mapper_busy": 10, "intake_queue": 0, "intake_capacity": 16, "intake_peak": 5,
                       "render_ms_p50": 7, "render_ms_max": 12, "gpu_memory_mb": 1479, "messages_received_min": 298}
    # "rejected 0 (none)": no set dropped as mapper_busy (a count, not an unknown)
    assert rows[1]["mapper_busy"] == 0 and rows[1]["gpu_memory_mb"] is None and rows[1]["render_ms_p50"] is None


def test_node_summary_scores_each_finished_window_once(tmp_path):
    """A long node run writes partial summaries (``--partial-json``): windows that ended before
    the last image are kept and not scored again; the open window is scored from what came."""
    import argparse

    import numpy as np

    mod = _load("node_latency")
    args = argparse.Namespace(duration=30.0, window=10.0, rate=30.0, publish_rate=10.0, render_scale=1.0,
                              node_param=[], engine_set=[], out=str(tmp_path / "n.json"))
    clean = np.zeros((2, 4, 6), np.int32)
    clean[:, :, 3:] = 1
    noisy = clean.copy()
    noisy[:, 0] = 1 - noisy[:, 0]
    right, wrong = clean[0].copy(), 1 - clean[0]
    proc = argparse.Namespace(returncode=None)
    rec = [(1.0, 0.05, 0, right, "cam"), (12.0, 0.07, 1, right, "cam"), (15.0, 0.06, 0, wrong, "cam")]
    done = {}
    part = mod.summarize(args, rec, 100, clean, noisy, 2, {}, proc, None, done)
    assert [w["images"] for w in part["windows"]] == [1, 2]
    assert part["windows"][0]["published_miou"] == 1.0 and part["windows"][1]["published_miou"] == pytest.approx(0.5)
    assert list(done) == [0.0]            # 10-20 s is still open at 15 s
    done[0.0] = dict(done[0.0], published_miou=-1.0)   # a kept window is reused, not rescored
    rec.append((25.0, 0.05, 1, right, "cam"))
    full = mod.summarize(args, rec, 200, clean, noisy, 2, {}, proc, 1.0, done)
    assert [w["images"] for w in full["windows"]] == [1, 2, 1]
    assert full["windows"][0]["published_miou"] == -1.0 and sorted(done) == [0.0, 10.0]
    assert full["latency_ms"]["p50"] == pytest.approx(55.0) and full["frames_sent"] == 200
