"""semnerf-train's monitoring as the seed's (issue 18, gap 4): a TensorBoard log with the seed's
tags when the tensorboard package is installed (a clear message when not), mp4 videos of the
evaluated views when imageio-ffmpeg is installed, disparity and entropy images."""
from __future__ import annotations

import logging
from collections import defaultdict

import cv2
import numpy as np
import pytest
from boxroom import write_box_replica

from semnerf_ros import train as tr
from semnerf_ros import train_log
from semnerf_ros.engine.config import make_config

TINY_NERF = ["model.netdepth=2", "model.netwidth=16", "model.netdepth_fine=2", "model.netwidth_fine=16",
             "render.N_samples=4", "render.N_importance=4", "render.N_rays=32", "render.multires=2",
             "render.multires_views=1", "experiment.device=cpu", "experiment.width=24", "experiment.height=18",
             "experiment.train_step=2", "experiment.test_offset=1", "logging.step_log_tfb=2",
             "logging.step_save_ckpt=1000"]
SEED_LOSS_TAGS = ["Train/Loss/img_loss_coarse", "Train/Loss/img_loss_fine", "Train/Loss/total_img_loss",
                  "Train/Loss/semantic_loss_coarse", "Train/Loss/semantic_loss_fine", "Train/Loss/total_sem_loss",
                  "Train/Loss/weighted_total_sem_loss", "Train/Loss/total_loss", "Train/Metric/psnr_coarse",
                  "Train/Metric/psnr_fine"]
SEED_EVAL_TAGS = ["Metric/batch_PSNR", "Metric/batch_MSE", "Metric/AbsRel", "Metric/AbsDiff", "Metric/SqRel",
                  "Metric/RMSE", "Metric/LogRMSE", "Metric/r1", "Metric/r2", "Metric/r3", "Metric/complete",
                  "Metric/mIoU", "Metric/mIoU_validclass", "Metric/total_acc", "Metric/avg_acc"]


class FakeWriter:
    """Records what a SummaryWriter is given."""
    instances: list = []

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.scalars = defaultdict(dict)
        self.images, self.texts, self.closed = {}, {}, False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars[tag][step] = value

    def add_image(self, tag, img, step, dataformats="CHW"):
        assert dataformats == "NHWC"
        self.images[(tag, step)] = img

    def add_text(self, tag, text, step):
        self.texts[tag] = text

    def flush(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def box_dir(tmp_path_factory):
    return write_box_replica(tmp_path_factory.mktemp("box") / "box", n=8, width=24, height=18)


def _run(box_dir, out, *extra):
    argv = ["--dataset_dir", str(box_dir), "--save_dir", str(out), "--iters", "4", "--eval_every", "4",
            "--render_views", "1", "--quiet"] + [x for s in TINY_NERF for x in ("--set", s)] + list(extra)
    return tr.train(None, tr.parse_args(argv))


def test_without_tensorboard_a_clear_message_and_the_run_goes_on(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(train_log, "_summary_writer_class", lambda: None)
    cfg = make_config({})
    with caplog.at_level(logging.WARNING, logger="semnerf_ros.train"):
        assert train_log.TensorBoardLog.open(tmp_path, cfg, "auto") is None
    assert "TensorBoard logging is off" in caplog.text and "pip install tensorboard" in caplog.text
    assert train_log.TensorBoardLog.open(tmp_path, cfg, "off") is None
    with pytest.raises(RuntimeError, match="pip install tensorboard"):
        train_log.TensorBoardLog.open(tmp_path, cfg, "on")


def test_the_seeds_tensorboard_tags(box_dir, tmp_path, monkeypatch):
    FakeWriter.instances = []
    monkeypatch.setattr(train_log, "_summary_writer_class", lambda: FakeWriter)
    monkeypatch.setattr(tr, "videos_available", lambda: False)
    _run(box_dir, tmp_path / "run", "--pixel_denoising", "--pixel_noise_ratio", "0.3")
    (w,) = FakeWriter.instances
    assert w.log_dir.endswith("tfb_logs") and w.closed
    assert "Exp_args" in w.texts and "N_importance" in w.texts["Exp_args"]
    for tag in SEED_LOSS_TAGS:
        assert set(w.scalars[tag]) == {2, 4}, tag                  # every logging.step_log_tfb steps
    s = {tag: v[4] for tag, v in w.scalars.items() if 4 in v}
    assert s["Train/Loss/total_img_loss"] == pytest.approx(s["Train/Loss/img_loss_coarse"]
                                                           + s["Train/Loss/img_loss_fine"], rel=1e-5)
    assert s["Train/Loss/total_sem_loss"] == pytest.approx(s["Train/Loss/semantic_loss_coarse"]
                                                           + s["Train/Loss/semantic_loss_fine"], rel=1e-5)
    assert s["Train/Loss/weighted_total_sem_loss"] == pytest.approx(0.04 * s["Train/Loss/total_sem_loss"])
    assert s["Train/Metric/psnr_fine"] == pytest.approx(-10 * np.log10(s["Train/Loss/img_loss_fine"]), rel=1e-5)
    for split in ("Test", "Train"):
        for tag in SEED_EVAL_TAGS:
            assert 4 in w.scalars[f"{split}/{tag}"], f"{split}/{tag}"
        for img in ("rgb", "depth", "disps", "vis_sem_label", "vis_sem_uncertainty"):
            stack = w.images[(f"{split}/{img}", 4)]
            assert stack.ndim == 4 and stack.shape[1:] == (18, 24, 3) and stack.dtype == np.uint8
    assert w.images[("Test/rgb", 4)].shape[0] == 4                   # every test view


def test_videos_of_the_evaluated_views(box_dir, tmp_path, monkeypatch, caplog):
    written = {}

    def fake_mimwrite(path, frames, fps, quality):
        written[path] = np.stack(frames)
        open(path, "wb").write(b"mp4")

    monkeypatch.setattr(tr, "videos_available", lambda: True)
    monkeypatch.setattr(train_log.imageio, "mimwrite", fake_mimwrite)
    monkeypatch.setattr(train_log, "_summary_writer_class", lambda: None)
    out = tmp_path / "run"
    _run(box_dir, out, "--tensorboard", "off")
    step = out / "render" / "step_000004"
    names = sorted(p.name for p in step.glob("*.mp4"))
    assert names == sorted(f"{t}_{v}.mp4" for t in ("test", "train")
                           for v in ("rgb", "dep", "disps", "sem", "sem_uncertainty"))
    by_name = {p.split("/")[-1].split(".tmp")[0].lstrip("."): v for p, v in written.items()}
    assert by_name["test_rgb"].shape == (4, 18, 24, 3) and by_name["train_sem"].shape == (4, 18, 24, 3)
    # disparity and entropy images of the saved view
    for stem in ("disp", "vis_disp", "entropy"):
        assert list(step.glob(f"{stem}_*.png")), stem
    disp = cv2.imread(str(sorted(step.glob("disp_0*.png"))[0]), cv2.IMREAD_UNCHANGED)
    assert disp.dtype == np.uint16 and disp.max() > 0
    # without imageio-ffmpeg: a clear message, no videos
    monkeypatch.setattr(tr, "videos_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="semnerf_ros.train"):
        _run(box_dir, tmp_path / "run2", "--tensorboard", "off")
    assert "imageio-ffmpeg" in caplog.text
    assert not list((tmp_path / "run2").rglob("*.mp4"))


def test_disparity_is_the_seeds():
    depth = np.array([[2.0, 4.0, 0.0]], np.float32)
    acc = np.array([[1.0, 0.5, 0.0]], np.float32)
    np.testing.assert_allclose(train_log.disparity(depth, acc), [[0.5, 0.125, 0.0]])
