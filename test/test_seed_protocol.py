"""``semnerf-train --protocol seed`` (issue 18): the default with the paper's MLPs; its presets under
the user's file; the seed's Replica split (first 900 frames) and ScanNet split (sample_step), its
evaluation at test_viz_factor (intrinsics and ground-truth downsampling), ``enable_semantic: false``
as a plain NeRF, ``replica_nyu_cnn`` scored against the ground truth and the CNN, the training views
on their own interval (logging.step_vis_train), ``experiment.gpu``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from boxroom import write_box_replica
from test_seed_datasets import _replica_nyu, write_seed_scannet

from semnerf_ros import train as tr
from semnerf_ros.datasets import load_dataset
from semnerf_ros.engine.geometry import Intrinsics

ROOT = Path(__file__).resolve().parents[1]
TINY_HASH = """
experiment: {width: 48, height: 36, train_step: 2, test_offset: 1, device: cpu, seed: 0}
model:
  type: hash
  hash: {n_levels: 3, log2_hashmap_size: 12, base_resolution: 8, finest_resolution: 32,
         hidden_dim: 32, hidden_dim_color: 32, hidden_dim_semantic: 32, backend: torch}
render: {N_rays: 256, march_steps: 48, max_samples_per_ray: 12, occupancy_resolution: 24,
         occupancy_warmup_steps: 32, depth_range: [0.1, 6.0], bounds_margin: 0.1}
train: {lrate: 5e-2, lrate_decay: 1e5, wgt_sem: 1.0}
logging: {step_save_ckpt: 1000}
"""
TINY_NERF = ["model.netdepth=2", "model.netwidth=16", "model.netdepth_fine=2", "model.netwidth_fine=16",
             "render.N_samples=4", "render.N_importance=4", "render.N_rays=32", "render.multires=2",
             "render.multires_views=1", "experiment.device=cpu"]


@pytest.fixture(scope="module")
def box_dir(tmp_path_factory):
    return write_box_replica(tmp_path_factory.mktemp("box") / "box", n=8)


@pytest.fixture(scope="module")
def tiny_hash(tmp_path_factory):
    f = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    f.write_text(TINY_HASH)
    return f


def _sets(items):
    return [x for s in items for x in ("--set", s)]


# ----------------------------------------------------------------------------- protocol and presets


def test_the_protocol_defaults_to_seed_with_the_papers_mlps(tmp_path):
    nerf = tr.config_from_args(tr.parse_args([]))
    assert tr.resolve_protocol(tr.parse_args([]), nerf) == "seed" and nerf["render"]["no_batching"] is True
    hash_ = tr.config_from_args(tr.parse_args(["--model", "hash"]))
    assert tr.resolve_protocol(tr.parse_args(["--model", "hash"]), hash_) == "semnerf"
    assert hash_["render"]["no_batching"] is False
    a = tr.parse_args(["--protocol", "semnerf"])
    assert tr.config_from_args(a)["render"]["no_batching"] is False
    # the user's file wins over the protocol's preset
    f = tmp_path / "c.yaml"
    f.write_text("render: {no_batching: false}\n")
    assert tr.config_from_args(tr.parse_args(["--config_file", str(f)]))["render"]["no_batching"] is False


def test_the_seeds_splits():
    cfg = tr.config_from_args(tr.parse_args([]))
    notes = []
    # Replica under the seed: the first 900 frames, step 5, test + 2
    assert tr.dataset_split(cfg, "replica", "seed", n_frames=1200) == \
        {"train_step": 5, "test_offset": 2, "total_num": 900}
    assert tr.dataset_split(cfg, "replica", "seed", n_frames=300, say=notes.append)["total_num"] == 0
    assert "900" in notes[0] and "300" in notes[0]
    assert tr.dataset_split(cfg, "replica", "semnerf", n_frames=1200)["total_num"] == 0
    assert tr.dataset_split(cfg, "replica", "seed", {"experiment.total_num"}, 1200)["total_num"] == 0
    assert tr.dataset_split(cfg, "scannet", "seed", n_frames=5000)["total_num"] == 0   # ScanNet: all frames
    scannet_cfg = tr.config_from_args(tr.parse_args(["--config_file", str(ROOT / "config/SSR_ScanNet_config.yaml")]))
    assert tr.dataset_split(scannet_cfg, "scannet", "seed", n_frames=5000) == \
        {"train_step": 100, "test_offset": 50, "total_num": 0}


def test_the_seed_scannet_config_loads_unchanged_and_splits_100_50(tmp_path, monkeypatch):
    import test_seed_datasets as tsd

    monkeypatch.setattr(tsd, "N_SCANNET", 140)
    root = tsd.write_seed_scannet(tmp_path / "scans" / "scene0010_00", bad_pose=3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    a = tr.parse_args(["--config_file", str(ROOT / "config/SSR_ScanNet_config.yaml"), "--dataset_dir", str(root),
                       "--dataset_type", "scannet", "--set", "experiment.width=40", "--set", "experiment.height=30"])
    cfg = tr.config_from_args(a)
    with pytest.warns(UserWarning):
        scene = tr._load_scene(cfg, False, "seed")
    valid = [i for i in range(140) if i != 3]
    assert scene.frame_indices[scene.train_ids].tolist() == [valid[0], valid[100]]
    assert scene.frame_indices[scene.test_ids].tolist() == [valid[50]]     # valid[150] is past the end
    assert scene.meta["padded_rows"] == [2, 2]                              # the seed's 4:3 padding
    assert tr.config_gpu(a) == "0"                                          # the file's experiment.gpu
    assert tr.config_gpu(tr.parse_args(["--config_file", str(ROOT / "config/SSR_ScanNet_config.yaml"),
                                        "--gpu", "1"])) == "1"


def test_the_seed_scannet_config_trains_end_to_end(tmp_path, monkeypatch):
    root = write_seed_scannet(tmp_path / "scans" / "scene0011_00")
    monkeypatch.setattr(tr, "select_gpus", lambda g: None)    # experiment.gpu "0": leave this process alone
    out = tmp_path / "run"
    argv = ["--config_file", str(ROOT / "config/SSR_ScanNet_config.yaml"), "--dataset_dir", str(root),
            "--save_dir", str(out), "--iters", "2", "--quiet", "--set", "experiment.sample_step=4",
            "--set", "experiment.width=40", "--set", "experiment.height=30", "--nyu_mode", "nyu13"] + _sets(TINY_NERF)
    with pytest.warns(UserWarning):
        res = tr.train(None, tr.parse_args(argv))
    info = json.loads((out / "run_info.json").read_text())
    assert info["protocol"] == "seed" and info["split"] == {"train_step": 4, "test_offset": 2, "total_num": 0}
    assert "books" in info["class_names"] and res["step"] == 2


# ----------------------------------------------------------------------------- evaluation


def test_seed_evaluation_intrinsics():
    intr = Intrinsics.from_hfov(320, 240, 90.0)
    k2 = tr.seed_eval_intrinsics(intr, 2)
    # set_params_replica: fx from the hfov at W // 2, square pixels, centred at (W' - 1) / 2
    assert (k2.width, k2.height) == (160, 120)
    assert k2.fx == pytest.approx(80.0) and k2.fy == pytest.approx(80.0)
    assert k2.cx == pytest.approx(79.5) and k2.cy == pytest.approx(59.5)
    assert tr.seed_eval_intrinsics(intr, 1) == intr
    sc = Intrinsics(290.0, 288.0, 161.2, 119.7, 320, 240)
    s1 = tr.seed_eval_intrinsics(sc, 1, "scannet")      # set_params_scannet's principal point, even at 1
    assert (s1.fx, s1.fy, s1.cx, s1.cy) == (290.0, 288.0, 159.75, 119.75)
    s3 = tr.seed_eval_intrinsics(sc, 3, "scannet")
    assert (s3.width, s3.height) == (106, 80) and s3.fx == pytest.approx(290 / 3) and s3.cx == 52.75


def test_seed_downsampling_of_the_ground_truth():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 9, (24, 32)).astype(np.int32)
    out = tr.seed_downsample(lab, 2, "nearest")
    np.testing.assert_array_equal(out, lab[::2, ::2])        # rows and columns 0, f, 2f, ...
    assert out.dtype == np.int32
    rgb = rng.random((24, 32, 3)).astype(np.float32)
    half = tr.seed_downsample(rgb, 2, "bilinear")
    np.testing.assert_allclose(half, rgb.reshape(12, 2, 16, 2, 3).mean((1, 3)), atol=1e-6)   # 2x2 means
    q = tr.seed_downsample(rgb, 4, "bilinear")               # not an area average at f = 4
    ref = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None], scale_factor=0.25, mode="bilinear")
    np.testing.assert_allclose(q, ref[0].permute(1, 2, 0).numpy(), atol=1e-6)
    assert not np.allclose(q, rgb.reshape(6, 4, 8, 4, 3).mean((1, 3)), atol=1e-3)


class _FakeMapper:
    """Renders the seed's downsampled ground truth exactly, and records the cameras asked for."""

    def __init__(self, scene, factor):
        self.scene, self.factor, self.cameras = scene, factor, []
        self.cfg = {"render": {"depth_range": [0.1, 10.0]}}

    def render(self, pose, intr, scale=1.0, with_probs=True):
        i = int(np.argmin(np.abs(self.scene.poses - pose).sum((1, 2))))
        intr = intr.scaled(scale) if scale != 1.0 else intr
        self.cameras.append(intr)
        lab = tr.seed_downsample(self.scene.labels[i], self.factor, "nearest")[:intr.height, :intr.width]
        h, w = intr.shape
        return SimpleNamespace(labels=lab, rgb=np.zeros((h, w, 3), np.float32), depth=np.ones((h, w), np.float32),
                               entropy=np.zeros((h, w), np.float32), intrinsics=intr)


def test_evaluation_under_the_seed_protocol_scores_the_seeds_ground_truth(box_dir):
    scene = load_dataset(box_dir, width=48, height=36, train_step=2, test_offset=1, progress=False)
    ids = scene.test_ids
    m = _FakeMapper(scene, 2)
    seed = tr.evaluate_views(m, scene, ids, scene.labels[ids], 2, protocol="seed")
    assert seed["miou"] == pytest.approx(1.0) and seed["total_accuracy"] == 1.0
    assert m.cameras[0] == tr.seed_eval_intrinsics(scene.intrinsics, 2)
    m = _FakeMapper(scene, 2)
    ours = tr.evaluate_views(m, scene, ids, scene.labels[ids], 2)   # pixel-centre sampling: other pixels
    assert ours["total_accuracy"] < 1.0


# ----------------------------------------------------------------------------- end to end


def test_enable_semantic_false_trains_a_plain_nerf(box_dir, tiny_hash, tmp_path, caplog):
    out = tmp_path / "plain"
    with caplog.at_level("WARNING", logger="semnerf_ros.train"):
        res = tr.train(None, tr.parse_args([
            "--config_file", str(tiny_hash), "--dataset_dir", str(box_dir), "--save_dir", str(out), "--model",
            "hash", "--iters", "6", "--render_views", "1", "--pixel_denoising", "--pixel_noise_ratio", "0.5",
            "--quiet", "--set", "experiment.enable_semantic=false"]))
    assert "no effect" in caplog.text and "pixel_denoising" in caplog.text
    assert res["test"]["miou"] is None and res["input_labels"] is None and res["test"]["psnr"] > 0
    assert "plain NeRF" in res["task"]
    step_dir = out / "render" / "step_000006"
    assert list(step_dir.glob("rgb_*.png")) and not list(step_dir.glob("*label*.png"))
    from semnerf_ros.engine.mapper import Mapper

    m = Mapper.load(out / "checkpoints" / "latest.pt", device="cpu")
    assert not bool(m.buffer.labels.any())                      # no labels reached the map
    assert "test views" in (out / "summary.txt").read_text()


def test_replica_nyu_cnn_scores_against_the_truth_and_the_cnn(tmp_path, tiny_hash):
    root = _replica_nyu(tmp_path / "room", frames=8)
    out = tmp_path / "run"
    res = tr.train(None, tr.parse_args([
        "--config_file", str(tiny_hash), "--dataset_dir", str(root), "--dataset_type", "replica_nyu_cnn",
        "--save_dir", str(out), "--model", "hash", "--iters", "4", "--render_views", "0", "--quiet",
        "--set", "experiment.width=32", "--set", "experiment.height=24"]))
    # the input is the CNN's labels: wrong in the top 4 of 24 rows, scored against the ground truth
    assert res["input_labels"]["total_accuracy"] == pytest.approx(20 / 24, abs=0.01)
    assert "vs_cnn" in res["test"] and "vs_cnn" in res["train"]
    assert res["test"]["vs_cnn"]["num_pixels"] == res["test"]["num_pixels"]
    assert json.loads((out / "run_info.json").read_text())["class_names"][13] == "window"


def test_training_views_on_their_own_interval(box_dir, tiny_hash, tmp_path):
    out = tmp_path / "vis"
    tr.train(None, tr.parse_args([
        "--config_file", str(tiny_hash), "--dataset_dir", str(box_dir), "--save_dir", str(out), "--model", "hash",
        "--iters", "6", "--render_views", "0", "--quiet", "--set", "logging.step_val=2",
        "--set", "logging.step_vis_train=3"]))
    recs = json.loads((out / "metrics.json").read_text())
    assert [(r["step"], r["test"] is not None, r["train"] is not None) for r in recs] == [
        (2, True, False), (3, False, True), (4, True, False), (6, True, True)]


def test_experiment_gpu_selects_the_visible_devices(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    f = tmp_path / "c.yaml"
    f.write_text("experiment: {gpu: 2}\n")
    assert tr.config_gpu(tr.parse_args(["--config_file", str(f)])) == "2"
    assert tr.config_gpu(tr.parse_args(["--config_file", str(f), "--set", "experiment.gpu=3"])) == "3"
    assert tr.config_gpu(tr.parse_args([])) == ""
    tr.select_gpus("2")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
