"""What ``semnerf-train`` logs besides ``metrics.json``, as the seed does: a TensorBoard log with the
seed's tags (``SSR/visualisation/tensorboard_vis.py`` and ``SSRTrainer.step``), mp4 videos of the
evaluated views (``test_render/step_*/rgb.mp4`` ...), and per-view disparity and entropy images.

Both optional packages are optional here: TensorBoard needs ``tensorboard`` (``pip install
tensorboard``, or the ``tensorboard`` extra of this package), the videos need ``imageio-ffmpeg``
(the ``video`` extra).  Without them the run goes on and says once, clearly, what is off.

The seed's scalar tags, so a user's dashboards keep working:

* every ``logging.step_log_tfb`` steps: ``Train/Loss/img_loss_coarse``, ``img_loss_fine``,
  ``total_img_loss``, ``semantic_loss_coarse``, ``semantic_loss_fine``, ``total_sem_loss``,
  ``weighted_total_sem_loss``, ``total_loss``; ``Train/Metric/psnr_coarse``, ``psnr_fine`` (the
  fast field has one level: its values go to the ``fine`` tags);
* at each evaluation, ``Test/...`` for the test views, ``Train/...`` for the training views
  against their clean labels: ``Metric/batch_PSNR``, ``batch_MSE``, the depth metrics
  ``AbsRel AbsDiff SqRel RMSE LogRMSE r1 r2 r3 complete``, ``mIoU``, ``mIoU_validclass``,
  ``total_acc``, ``avg_acc`` (``replica_nyu_cnn``: those against the CNN's labels, and
  ``mIoU_GT``, ``mIoU_GT_validclass``, ``total_acc_GT``, ``avg_acc_GT`` against the ground truth);
* images ``<Split>/rgb``, ``depth``, ``disps``, ``vis_sem_label``, ``vis_sem_uncertainty`` and the
  config as text ``Exp_args``.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import imageio.v2 as imageio
import numpy as np
import yaml

from .colormap import colorize_labels, colorize_scalar
from .visualize import write_image

log = logging.getLogger("semnerf_ros.train")

TENSORBOARD_MISSING = ("TensorBoard logging is off: the 'tensorboard' package is not installed "
                       "(pip install tensorboard); metrics.json holds the same scores")
VIDEO_MISSING = ("mp4 videos of the evaluated views are off: the 'imageio-ffmpeg' package is not installed "
                 "(pip install imageio-ffmpeg)")
LOG_DIR = "tfb_logs"   # the seed's folder name under save_dir

#: metrics.depth_errors key -> the seed's calculate_depth_metrics name
SEED_DEPTH_NAMES = {"abs_rel": "AbsRel", "mae": "AbsDiff", "sq_rel": "SqRel", "rmse": "RMSE",
                    "rmse_log": "LogRMSE", "a1": "r1", "a2": "r2", "a3": "r3", "complete": "complete"}
#: our segmentation score -> the seed's tag suffix
SEED_SEGMENTATION_NAMES = {"miou": "mIoU", "miou_valid_class": "mIoU_validclass", "total_accuracy": "total_acc",
                           "class_average_accuracy": "avg_acc"}


def _summary_writer_class():
    """torch's SummaryWriter, or None when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional dependency: the tensorboard package
    except ImportError:
        return None
    return SummaryWriter


def videos_available() -> bool:
    """True when imageio can write mp4 (its ffmpeg plugin, imageio-ffmpeg, is installed)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def _psnr(mse: float) -> float:
    return -10.0 * math.log10(mse) if mse and mse > 0 else float("inf")


class TensorBoardLog:
    """The seed's TensorBoard log; see the module docstring.  ``writer``: a SummaryWriter (or any
    object with its ``add_scalar`` / ``add_image`` / ``add_text`` / ``flush`` / ``close``)."""

    def __init__(self, writer, cfg: dict):
        self.writer = writer
        self.wgt_sem = float(cfg["train"]["wgt_sem"])
        writer.add_text("Exp_args", yaml.dump(cfg, sort_keys=False, indent=4), 0)

    @classmethod
    def open(cls, save_dir, cfg: dict, mode: str = "auto",
             writer_class: Optional[Callable] = None) -> Optional["TensorBoardLog"]:
        """A log in ``save_dir/tfb_logs``; ``mode``: ``auto`` (None with a warning when the
        tensorboard package is missing), ``on`` (``RuntimeError`` then), ``off`` (None)."""
        if mode == "off":
            return None
        writer_class = writer_class or _summary_writer_class()
        if writer_class is None:
            if mode == "on":
                raise RuntimeError("TensorBoard logging was asked for (--tensorboard on) but the 'tensorboard' "
                                   "package is not installed (pip install tensorboard)")
            log.warning(TENSORBOARD_MISSING)
            return None
        log_dir = Path(save_dir) / LOG_DIR
        log_dir.mkdir(parents=True, exist_ok=True)
        return cls(writer_class(log_dir=str(log_dir)), cfg)

    def _scalars(self, step: int, values: dict) -> None:
        for tag, value in values.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(tag, float(value), step)

    def losses(self, step: int, losses: dict) -> None:
        """``Train/Loss/*`` and ``Train/Metric/psnr_*`` of one step (:meth:`Mapper.step`'s losses)."""
        coarse = "loss_rgb_coarse" in losses
        img_f = losses.get("loss_rgb_fine", losses.get("loss_rgb")) if coarse else losses.get("loss_rgb")
        sem_f = losses.get("loss_semantic_fine") if coarse else losses.get("loss_semantic")
        sem = losses.get("loss_semantic")
        values = {
            "Train/Loss/img_loss_coarse": losses.get("loss_rgb_coarse"),
            "Train/Loss/img_loss_fine": img_f,
            "Train/Loss/total_img_loss": losses.get("loss_rgb"),
            "Train/Loss/semantic_loss_coarse": losses.get("loss_semantic_coarse"),
            "Train/Loss/semantic_loss_fine": sem_f,
            "Train/Loss/total_sem_loss": sem,
            "Train/Loss/weighted_total_sem_loss": None if sem is None else sem * self.wgt_sem,
            "Train/Loss/total_loss": losses.get("loss"),
            "Train/Metric/psnr_coarse": _psnr(losses["loss_rgb_coarse"]) if coarse else None,
            "Train/Metric/psnr_fine": _psnr(img_f) if img_f is not None else losses.get("psnr"),
        }
        self._scalars(step, values)

    def scores(self, step: int, split: str, scores: Optional[dict]) -> None:
        """``<split>/Metric/*`` of :func:`semnerf_ros.train.evaluate_views` scores; ``split`` is
        ``Test`` or ``Train``."""
        if not scores:
            return
        psnr = scores.get("psnr")
        values = {f"{split}/Metric/batch_PSNR": psnr,
                  f"{split}/Metric/batch_MSE": 10.0 ** (-psnr / 10.0) if psnr is not None and math.isfinite(psnr)
                  else None}
        for ours, theirs in SEED_DEPTH_NAMES.items():
            values[f"{split}/Metric/{theirs}"] = (scores.get("depth") or {}).get(ours)
        cnn = scores.get("vs_cnn")
        main, gt_suffix = (cnn, "_GT") if cnn is not None else (scores, None)
        for ours, theirs in SEED_SEGMENTATION_NAMES.items():
            values[f"{split}/Metric/{theirs}"] = main.get(ours)
            if gt_suffix:   # the seed's replica_nyu_cnn: mIoU_GT, mIoU_GT_validclass, total_acc_GT, avg_acc_GT
                tag = theirs.replace("mIoU", "mIoU_GT") if theirs.startswith("mIoU") else theirs + "_GT"
                values[f"{split}/Metric/{tag}"] = scores.get(ours)
        self._scalars(step, values)

    def images(self, step: int, split: str, frames: dict) -> None:
        """``<split>/<name>`` image stacks (N, H, W, 3) uint8 of :class:`ViewFrames`."""
        names = {"rgb": "rgb", "depth": "depth", "disps": "disps", "sem": "vis_sem_label",
                 "sem_uncertainty": "vis_sem_uncertainty"}
        for key, tag in names.items():
            stack = frames.get(key)
            if stack is not None and len(stack):
                self.writer.add_image(f"{split}/{tag}", np.stack(stack), step, dataformats="NHWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def disparity(depth: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """The seed's disparity ``1 / max(1e-10, depth / acc)`` (1/m); 0 where nothing was hit."""
    d = np.asarray(depth, np.float64)
    acc = np.asarray(opacity, np.float64)
    ok = acc > 1e-10
    out = np.zeros_like(d)
    out[ok] = 1.0 / np.maximum(1e-10, d[ok] / acc[ok])
    return out.astype(np.float32)


def save_disparity_entropy(out_dir, name: str, disp: np.ndarray, entropy: Optional[np.ndarray],
                           depth_range: Sequence[float]) -> None:
    """``disp_<name>.png`` (disparity x 1000, uint16: 1/km), ``vis_disp_<name>.png`` (colours over
    ``[1/far, 1/near]``) and, with ``entropy``, ``entropy_<name>.png`` (nats x 1000, uint16)."""
    out = Path(out_dir)
    near, far = float(depth_range[0]), float(depth_range[1])
    write_image(out / f"disp_{name}.png", np.clip(np.round(disp * 1000.0), 0, 65535).astype(np.uint16))
    write_image(out / f"vis_disp_{name}.png", colorize_scalar(disp, 1.0 / far, 1.0 / max(near, 1e-6),
                                                              valid=disp > 0))
    if entropy is not None:
        write_image(out / f"entropy_{name}.png",
                    np.clip(np.round(np.asarray(entropy) * 1000.0), 0, 65535).astype(np.uint16))


class ViewFrames:
    """Colour images of the evaluated views, collected for the videos and TensorBoard (the seed's
    ``render_path`` outputs): ``rgb``, ``depth`` (colourised over ``depth_range``), ``disps``,
    ``sem`` (class colours, black where the ground truth is void) and ``sem_uncertainty``."""

    def __init__(self, palette, depth_range: Sequence[float], num_classes: int):
        self.palette = palette
        self.near, self.far = float(depth_range[0]), float(depth_range[1])
        self.max_entropy = math.log(num_classes - 1) if num_classes > 2 else None
        self.frames: dict = {"rgb": [], "depth": [], "disps": [], "sem": [], "sem_uncertainty": []}

    def add(self, rgb, depth, disp, labels=None, entropy=None, gt_labels=None) -> None:
        f = self.frames
        f["rgb"].append((np.clip(np.asarray(rgb), 0, 1) * 255 + 0.5).astype(np.uint8))
        f["depth"].append(colorize_scalar(depth, self.near, self.far, valid=np.asarray(depth) > 0))
        f["disps"].append(colorize_scalar(disp, 1.0 / self.far, 1.0 / max(self.near, 1e-6), valid=disp > 0))
        if labels is not None:
            vis = colorize_labels(np.asarray(labels), self.palette)
            if gt_labels is not None:
                vis[np.asarray(gt_labels) == 0] = 0
            f["sem"].append(vis)
            f["sem_uncertainty"].append(colorize_scalar(entropy, 0.0 if self.max_entropy else None,
                                                        self.max_entropy))

    def write_videos(self, out_dir, tag: str, fps: int = 30) -> list:
        """``<tag>_rgb.mp4``, ``<tag>_dep.mp4``, ``<tag>_disps.mp4``, ``<tag>_sem.mp4``,
        ``<tag>_sem_uncertainty.mp4`` (the seed's names, prefixed by the split); returns the paths."""
        written = []
        names = {"rgb": "rgb", "depth": "dep", "disps": "disps", "sem": "sem", "sem_uncertainty": "sem_uncertainty"}
        for key, stem in names.items():
            stack = self.frames[key]
            if stack:
                written.append(write_video(Path(out_dir) / f"{tag}_{stem}.mp4", stack, fps))
        return written


def write_video(path, frames: Sequence[np.ndarray], fps: int = 30) -> Path:
    """An mp4 of uint8 RGB frames (imageio's ffmpeg writer, the seed's ``quality=8``), written to a
    temporary file beside ``path`` and moved into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.mp4")
    try:
        imageio.mimwrite(str(tmp), [np.ascontiguousarray(f) for f in frames], fps=fps, quality=8)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
