"""Offline trainer ``semnerf-train``: the paper's ``train_SSR_main.py`` on this package's engine.

Offline training is the online :class:`~semnerf_ros.engine.mapper.Mapper` fed every
training frame up front (``mapper.keyframe_policy: all``, ``max_keyframes`` >=
the number of training frames), then stepped in a loop.  Flags and their
meaning follow the seed (``--config_file``, ``--dataset_type``, the task
flags ``--sparse_views ... --partial_perc``, ``--visualise_save``,
``--load_saved``, ``--gpu``); the label corruption is
:func:`semnerf_ros.tasks.apply_task`.

Outputs in ``experiment.save_dir`` (``--save_dir``):

* ``exp_config.yaml`` -- the merged config (loadable with ``--config_file``);
  ``run_info.json`` -- flags, dataset, split and task description;
  ``semantic_class_Legend.png`` -- the class colours (the seed's legend).
* ``metrics.json`` -- a list with one record per evaluation (test views every
  ``logging.step_val`` steps, training views every ``logging.step_vis_train``, both at the
  end; a split not evaluated at a step is null), rewritten atomically:
  ``step``, ``train_seconds`` (optimisation time only), ``wall_seconds``
  (training-loop wall time including evaluations, summed over resumed runs),
  ``iterations_per_second``, ``loss``, ``train_batch_psnr``, ``failed_steps``,
  ``oom_events``, and ``test`` / ``train`` / ``input_labels`` score dicts (see
  :func:`evaluate_views`; ``replica_nyu_cnn`` adds ``vs_cnn``); ``summary.txt`` -- the final
  table.  ``train`` scores the rendered training views against the **clean** labels (the
  denoising measure);
  ``input_labels`` scores the corrupted training labels themselves against
  the clean ones (the baseline the field has to beat).
* ``render/step_XXXXXX/`` -- PNGs of a few test views (RGB, labels with legend,
  depth, disparity, entropy, ground truth) and ``train_compare_*.png`` strips
  (input | rendered | clean) of training views; with imageio-ffmpeg, mp4 videos of every
  evaluated view (``test_rgb.mp4``, ``test_sem.mp4``, ... the seed's names per split).
* ``tfb_logs/`` -- the seed's TensorBoard log (its tags), when tensorboard is installed
  (:mod:`semnerf_ros.train_log`).
* ``checkpoints/map_XXXXXX.pt`` and ``latest.pt`` (``Mapper.save``) every
  ``logging.step_save_ckpt`` steps and at the end, with ``trainer_state.json``;
  ``--resume`` continues from ``latest.pt``.
* the corrupted labels (``--visualise_save``) in ``corrupted_labels.npz``
  unless ``--saved_labels`` names another file; ``--load_saved`` reads them.

Protocols (``--protocol``; docs/seed_parity.md has the full table).  ``seed`` -- the default
with the paper's MLPs (``model.type: nerf``) -- reproduces the seed where the two differ: each
step's rays from one training image (``render.no_batching: true``, under the user's file), the
seed's label-task draws (:mod:`semnerf_ros.tasks`, ``protocol="seed"``), its Replica split over the
first 900 frames (``experiment.total_num`` unless set), its image resizing and ScanNet 4:3 padding,
and its evaluation at ``render.test_viz_factor`` (intrinsics recomputed as the seed does, ground
truth downsampled with ``torch.nn.functional.interpolate``).  ``semnerf`` -- the default with the hash field -- keeps
this package's choices.  ``experiment.sample_step`` (the seed's ScanNet key) sets the split to
``sample_step`` / ``sample_step // 2`` under both.

Deviations from the seed, on purpose: corrupted labels are stored in the run folder
(or ``--saved_labels``) rather than inside the dataset folder; checkpoints are map files
(:mod:`semnerf_ros.engine.seed_checkpoint` reads the seed's ``.ckpt``).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from . import tasks
from .colormap import label_palette, legend_image
from .datasets import detect_kind, frame_count, load_dataset, synthetic
from .datasets import scene_data as sdm
from .engine.config import (
    PROTOCOLS,
    SEED_PROTOCOL_PRESET,
    SEED_REPLICA_TOTAL_NUM,
    ConfigError,
    default_protocol,
    load_config,
    merge,
    read_config_file,
    save_config,
    user_keys,
    validate,
)
from .engine.geometry import Intrinsics
from .engine.mapper import Mapper, resolve_device
from .io.atomic import atomic_link_or_copy
from .io.jsonio import to_jsonable, write_json
from .metrics import SegmentationEvaluator, depth_errors, ssim
from .train_log import VIDEO_MISSING, TensorBoardLog, ViewFrames, disparity, save_disparity_entropy, videos_available
from .visualize import make_comparison_strip, save_render_images, write_image

log = logging.getLogger("semnerf_ros.train")

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"
TRAINER_STATE = "trainer_state.json"
METRICS_FILE = "metrics.json"
LEGEND_FILE = "semantic_class_Legend.png"
DEFAULT_LABELS_FILE = "corrupted_labels.npz"
#: Consecutive failed or skipped steps (errors, repeated out-of-memory) after which training gives up.
MAX_SKIPPED_STEPS = 50


class TrainError(RuntimeError):
    """Training cannot start or continue (bad resume state, no training frames, ...)."""


# ----------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    """The seed's ``train_SSR_main.py`` flags (same names, types and defaults) plus ours."""
    d = tasks.TASK_DEFAULTS
    p = argparse.ArgumentParser(
        prog="semnerf-train",
        description="Train a Semantic-NeRF offline on a Replica/ScanNet-layout sequence (or the built-in "
                    "synthetic room) with the paper's label tasks, and evaluate it "
                    "(flags of the paper's train_SSR_main.py).")
    p.add_argument("--config_file", type=str, default=None,
                   help="config file name (YAML, the seed's layout); default: built-in defaults")
    p.add_argument("--dataset_type", type=str, default="auto",
                   choices=["replica", "replica_nyu_cnn", "scannet", "auto"],
                   help="the dataset to be used; auto: detect from the files, or the config's "
                        "experiment.dataset_type (default auto)")
    g = p.add_argument_group("sparse views")
    g.add_argument("--sparse_views", action="store_true", help="use labels from a sparse set of frames")
    g.add_argument("--sparse_ratio", type=float, default=d["sparse_ratio"],
                   help="the portion of dropped labelling frames during training, which can be used along "
                        "with all working modes")
    g.add_argument("--label_map_ids", nargs="*", type=int, default=list(d["label_map_ids"]),
                   help="in sparse view mode, use selected frame ids from the sequence as supervision")
    g.add_argument("--random_sample", action="store_true",
                   help="whether to randomly/evenly sample frames from the sequence")
    g = p.add_argument_group("pixel-wise denoising")
    g.add_argument("--pixel_denoising", action="store_true", help="whether to work in pixel-denoising tasks")
    g.add_argument("--pixel_noise_ratio", type=float, default=d["pixel_noise_ratio"],
                   help="the fraction of (valid) pixels perturbed in each labelled frame")
    g = p.add_argument_group("segmentation-like denoising (semnerf_ros extension)")
    g.add_argument("--segmentation_denoising", action="store_true",
                   help="corrupt the training labels like a segmentation network's output: missed thin and "
                        "small objects, similar classes confused, bleeding boundaries, false blobs, errors "
                        "that persist over consecutive frames (semnerf_ros.tasks.segmentation_noise)")
    g.add_argument("--segmentation_noise_strength", type=float,
                   default=tasks.EXTRA_DEFAULTS["segmentation_noise_strength"],
                   help="strength of the segmentation-like noise in [0, 1] (about 0.3 gives an input mIoU "
                        "of 0.6 on the built-in houses)")
    g = p.add_argument_group("region-wise denoising")
    g.add_argument("--region_denoising", action="store_true",
                   help="whether to work in region-denoising tasks by flipping the class labels of instances "
                        "(the chairs of Replica room_2)")
    g.add_argument("--region_noise_ratio", type=float, default=d["region_noise_ratio"],
                   help="the fraction of frames in which each chosen instance is flipped")
    g.add_argument("--uniform_flip", action="store_true",
                   help="flip frames evenly spread over the area-sorted list instead of the smallest-area ones")
    g.add_argument("--instance_id", nargs="*", type=int, default=list(d["instance_id"]),
                   help="instance ids to perturb (default: the 8 chairs of Replica room_2)")
    g = p.add_argument_group("super-resolution")
    g.add_argument("--super_resolution", action="store_true", help="label super-resolution task")
    g.add_argument("--dense_sr", action="store_true",
                   help="use dense (down- then up-sampled) instead of sparse labels for SR")
    g.add_argument("--sr_factor", type=int, default=d["sr_factor"], help="scaling factor of super-resolution")
    g = p.add_argument_group("label propagation")
    g.add_argument("--label_propagation", action="store_true", help="label propagation from partial seed regions")
    g.add_argument("--partial_perc", type=float, default=d["partial_perc"],
                   help="0: single-click propagation; p > 0: p-percent sub-regions")
    g.add_argument("--propagation_regions", type=str, default=tasks.EXTRA_DEFAULTS["propagation_regions"],
                   choices=list(tasks.PROPAGATION_REGIONS),
                   help="what one click/patch covers: a class per frame (seed), an instance, or a connected component")
    g = p.add_argument_group("misc (seed)")
    g.add_argument("--visualise_save", action="store_true",
                   help="save the corrupted labels (and colour images of them) for later runs; also save "
                        "the renders of every evaluated view at the end")
    g.add_argument("--load_saved", action="store_true",
                   help="train on previously saved corrupted labels (consistency between experiments)")
    g.add_argument("--gpu", type=str, default="", help="GPU IDs (sets CUDA_VISIBLE_DEVICES)")
    g = p.add_argument_group("semnerf_ros")
    g.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="seed: reproduce train_SSR_main.py where the two differ (one training image per step, "
                        "the seed's label-noise draws, its Replica split of the first 900 frames, its evaluation "
                        "at render.test_viz_factor; docs/seed_parity.md); semnerf: this package's choices. "
                        "Default: seed with the paper's MLPs (model.type nerf), semnerf with the hash field")
    g.add_argument("--nyu_mode", choices=["nyu40", "nyu13", "nyu34", "gt_nyu13"], default=None,
                   help="label set (overrides experiment.nyu_mode): nyu40 / nyu13 for ScanNet, nyu13 / nyu34 / "
                        "gt_nyu13 for replica_nyu_cnn")
    g.add_argument("--dataset_dir", type=str, default=None,
                   help="dataset folder (overrides experiment.dataset_dir); empty: the built-in synthetic room")
    g.add_argument("--save_dir", type=str, default=None, help="output folder (overrides experiment.save_dir)")
    g.add_argument("--model", type=str, default=None, choices=["nerf", "hash"],
                   help="nerf: the paper's MLPs; hash: the fast hash-grid field (overrides model.type)")
    g.add_argument("--iters", type=int, default=None, help="training steps (overrides train.N_iters)")
    g.add_argument("--eval_every", type=int, default=None,
                   help="evaluate test and training views every N steps (overrides logging.step_val and "
                        "logging.step_vis_train)")
    g.add_argument("--max_seconds", type=float, default=None,
                   help="stop when the training loop has run this many wall-clock seconds")
    g.add_argument("--device", type=str, default=None,
                   help="auto | cpu | cuda | cuda:N (overrides experiment.device)")
    g.add_argument("--seed", type=int, default=None, help="RNG seed (overrides experiment.seed)")
    g.add_argument("--resume", action="store_true",
                   help="continue from <save_dir>/checkpoints/latest.pt when it exists")
    g.add_argument("--n_test_views", type=int, default=0,
                   help="evaluate on N evenly spaced test views and N training views (0 = all)")
    g.add_argument("--render_views", type=int, default=4,
                   help="test/training views written as PNGs at each evaluation (default 4)")
    g.add_argument("--saved_labels", type=str, default=None,
                   help=f"file for --visualise_save / --load_saved (default <save_dir>/{DEFAULT_LABELS_FILE})")
    g.add_argument("--keep_checkpoints", type=int, default=0,
                   help="keep only the newest N numbered checkpoints besides latest.pt (0 = keep all, as the seed)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config value, e.g. --set render.N_rays=4096 (repeatable)")
    g.add_argument("--tensorboard", choices=["auto", "on", "off"], default="auto",
                   help="the seed's TensorBoard log in <save_dir>/tfb_logs (its scalar tags; logging.step_log_tfb): "
                        "auto = when the tensorboard package is installed, on = fail without it")
    g.add_argument("--videos", choices=["auto", "off"], default="auto",
                   help="mp4 videos of the evaluated views (the seed's rgb / dep / disps / sem / sem_uncertainty) "
                        "when imageio-ffmpeg is installed")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def resolve_args(args=None) -> argparse.Namespace:
    """A complete Namespace: the parser defaults updated with ``args`` (a
    Namespace, a dict or None).  Raises ``TypeError`` naming unknown keys."""
    ns = build_parser().parse_args([])
    if args is None:
        return ns
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    unknown = sorted(set(given) - set(vars(ns)))
    if unknown:
        raise TypeError(f"unknown trainer arguments: {', '.join(unknown)}")
    for k, v in given.items():
        setattr(ns, k, v)
    return ns


def _parse_set(items: Sequence[str]) -> dict:
    """``["render.N_rays=4096", ...]`` -> nested override dict (values parsed as YAML)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        parts = [k for k in key.strip().split(".") if k]
        if len(parts) < 2:
            raise ConfigError(f"--set key must be SECTION.KEY (e.g. render.N_rays), got {key!r}")
        node = out
        for k in parts[:-1]:
            node = node.setdefault(k, {})
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
    return out


def arg_overrides(args) -> dict:
    """The config overrides that the command-line flags stand for."""
    a = resolve_args(args)
    ov: dict = _parse_set(a.overrides)
    exp, model, train_, logging_ = {}, {}, {}, {}
    if a.dataset_dir is not None:
        exp["dataset_dir"] = a.dataset_dir
    if a.dataset_type and a.dataset_type != "auto":
        exp["dataset_type"] = a.dataset_type
    if a.save_dir is not None:
        exp["save_dir"] = a.save_dir
    if a.device is not None:
        exp["device"] = a.device
    if a.seed is not None:
        exp["seed"] = a.seed
    if a.model is not None:
        model["type"] = a.model
    if a.iters is not None:
        train_["N_iters"] = a.iters
    if a.eval_every is not None:
        logging_["step_val"] = logging_["step_vis_train"] = a.eval_every
    if a.nyu_mode is not None:
        exp["nyu_mode"] = a.nyu_mode
    for name, sec in (("experiment", exp), ("model", model), ("train", train_), ("logging", logging_)):
        if sec:
            ov.setdefault(name, {}).update(sec)
    return ov


def resolve_protocol(args, cfg: dict) -> str:
    """``--protocol``, else :func:`~semnerf_ros.engine.config.default_protocol` of the model type."""
    a = resolve_args(args)
    return a.protocol if a.protocol else default_protocol(cfg["model"]["type"])


def config_from_args(args) -> dict:
    """``load_config(--config_file, overrides from the flags)``, with the protocol's preset
    (:data:`~semnerf_ros.engine.config.SEED_PROTOCOL_PRESET` for ``--protocol seed``) under both."""
    a = resolve_args(args)
    cfg = load_config(a.config_file, arg_overrides(a))
    if resolve_protocol(a, cfg) == "seed":
        cfg = load_config(a.config_file, arg_overrides(a), presets=SEED_PROTOCOL_PRESET)
    return cfg


def config_gpu(args) -> str:
    """The GPUs to make visible: ``--gpu``, else ``experiment.gpu`` of the overrides or the file
    (read without starting CUDA, which would fix the visible devices)."""
    a = resolve_args(args)
    if a.gpu:
        return a.gpu
    ov = arg_overrides(a).get("experiment", {})
    if "gpu" in ov:
        return str(ov["gpu"] if ov["gpu"] is not None else "")
    if a.config_file:
        try:
            exp = read_config_file(a.config_file).get("experiment") or {}
        except ConfigError:
            return ""   # load_config reports it
        if isinstance(exp, dict) and exp.get("gpu") not in (None, ""):
            return str(exp["gpu"])
    return ""


def select_gpus(gpus: str) -> None:
    """The seed's ``select_gpus``: make only ``gpus`` (e.g. ``"0,1"``) visible to CUDA.
    Must run before CUDA is initialised (a warning says so when it is too late)."""
    if gpus:
        if torch.cuda.is_initialized() and os.environ.get("CUDA_VISIBLE_DEVICES") != gpus:
            log.warning("GPUs %r requested after CUDA started in this process: the visible devices stay %r",
                        gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus


# ----------------------------------------------------------------------------- small helpers


def evenly_spaced_subset(ids: Sequence[int], n: int) -> np.ndarray:
    """``n`` items spread evenly over ``ids`` (all when ``n <= 0`` or ``n >= len``)."""
    ids = np.asarray(ids, dtype=np.int64)
    if n <= 0 or n >= len(ids):
        return ids
    return ids[np.unique(np.round(np.linspace(0, len(ids) - 1, n)).astype(np.int64))]


def scene_bounds_from_data(scene, ids: Sequence[int], depth_range: Sequence[float], margin: float,
                           max_points: int = 200_000) -> np.ndarray:
    """Scene box (2, 3) in world metres for the fast field.

    With depth: the training depth maps (pixels subsampled to about
    ``max_points`` in all, readings outside ``depth_range`` ignored)
    back-projected to the world, plus the camera centres.  Without depth: the
    camera centres +- half the far plane.  Grown by ``margin`` metres.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        raise TrainError("no training frames to derive the scene bounds from")
    near, far = float(depth_range[0]), float(depth_range[1])
    centres = scene.poses[ids, :3, 3]
    pts = [centres]
    if scene.depth is not None:
        intr = scene.intrinsics
        h, w = intr.shape
        per_frame = max(1, max_points // len(ids))
        stride = max(1, int(math.ceil(math.sqrt(h * w / per_frame))))
        vs, us = np.mgrid[0:h:stride, 0:w:stride]
        x = (us - intr.cx) / intr.fx
        y = (vs - intr.cy) / intr.fy
        for i in ids:
            z = scene.depth[i][::stride, ::stride]
            ok = np.isfinite(z) & (z >= near) & (z <= far)
            if not ok.any():
                continue
            pc = np.stack([x[ok] * z[ok], y[ok] * z[ok], z[ok]], -1)
            T = scene.poses[i]
            pts.append(pc @ T[:3, :3].T + T[:3, 3])
    allp = np.concatenate(pts, 0)
    lo, hi = allp.min(0), allp.max(0)
    if len(pts) == 1:  # no depth (or none valid): cameras +- half the far plane
        lo, hi = lo - far / 2, hi + far / 2
    return np.stack([lo - margin, hi + margin]).astype(np.float64)


def class_palette(scene) -> np.ndarray:
    """The seed's colours: the VOC palette row of each class's id in the files."""
    orig = np.asarray(getattr(scene, "class_ids_original", np.arange(scene.num_classes)), dtype=np.int64)
    if orig.shape != (scene.num_classes,) or orig.min() < 0:
        return label_palette(scene.num_classes)
    return label_palette(int(orig.max()) + 1)[orig]


def labels_digest(labels: np.ndarray, keep: np.ndarray) -> str:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(labels, dtype=np.int32).tobytes())
    h.update(np.ascontiguousarray(keep, dtype=bool).tobytes())
    return h.hexdigest()[:16]


def _resize_to(scene_data_mod, img: np.ndarray, kind: str, w: int, h: int) -> np.ndarray:
    if kind == "labels":
        return scene_data_mod.resize_nearest(img, w, h)
    if kind == "rgb":
        return scene_data_mod.resize_rgb(img, w, h)
    return scene_data_mod.resize_depth(img, w, h)


def seed_eval_intrinsics(intr: Intrinsics, factor: int, kind: str = "replica") -> Intrinsics:
    """The camera the seed renders evaluation views with at ``render.test_viz_factor``.

    Size ``(W // f, H // f)``.  Replica (``set_params_replica``): the focal length recomputed
    from the hfov at the new width, square pixels, the principal point scaled with the width
    (``(W' - 1) / 2`` for a centred one).  ScanNet (``set_params_scannet``): ``fx / f``, ``fy / f``
    and the principal point at ``((W' - 0.5) / 2, (H' - 0.5) / 2)`` whatever the camera's is
    (sic: the seed trains with the true one), also at ``f = 1``."""
    f = int(factor)
    w, h = intr.width // f, intr.height // f
    if kind == "scannet":
        return Intrinsics(intr.fx / f, intr.fy / f, (w - 0.5) / 2.0, (h - 0.5) / 2.0, w, h)
    s = w / intr.width
    return Intrinsics(intr.fx * s, intr.fx * s, (intr.cx + 0.5) * s - 0.5, (intr.cy + 0.5) * s - 0.5, w, h)


def seed_downsample(img: np.ndarray, factor: int, mode: str) -> np.ndarray:
    """The seed's ground truth at ``1/factor``: ``torch.nn.functional.interpolate`` with
    ``scale_factor=1/factor`` -- ``nearest`` for labels (rows and columns ``0, f, 2f, ...``),
    ``bilinear`` (``align_corners=False``, no antialiasing) for colour and depth.  Float out
    (labels cast back to the input's integer type)."""
    f = int(factor)
    a = np.asarray(img)
    if f == 1:
        return a
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = F.interpolate(t, scale_factor=1.0 / f, mode=mode)[0]
    out = out[0] if a.ndim == 2 else out.permute(1, 2, 0)
    res = out.numpy()
    return res.round().astype(a.dtype) if np.issubdtype(a.dtype, np.integer) and mode == "nearest" else res


# ----------------------------------------------------------------------------- evaluation


def score_labels(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> dict:
    """Segmentation scores of a label stack against ground truth (void ignored)."""
    ev = SegmentationEvaluator(num_classes)
    ev.add(np.asarray(gt), np.asarray(pred))
    s = ev.scores()
    return {k: s[k] for k in ("miou", "miou_valid_class", "total_accuracy", "class_average_accuracy",
                              "per_class_iou", "num_pixels", "num_images")}


def evaluate_views(mapper, scene, ids: Sequence[int], gt_labels: Optional[np.ndarray], factor: int,
                   out_dir: Optional[Path] = None, save_count: int = 0, tag: str = "test",
                   input_labels: Optional[np.ndarray] = None, palette=None, progress: bool = False,
                   protocol: str = "semnerf", extra_labels: Optional[dict] = None,
                   frames: Optional[ViewFrames] = None) -> dict:
    """Render the views ``ids`` (positions into ``scene``) at ``1/factor`` of the
    dataset resolution and score them.

    ``protocol="seed"``: rendered with :func:`seed_eval_intrinsics`, ground truth downsampled
    with :func:`seed_downsample` (the seed's); else the scaled intrinsics and area / nearest
    resizing.  ``gt_labels`` None: no semantic scores (``enable_semantic: false``; label and
    entropy images are not written).  ``extra_labels``: name -> label stack to score the same
    renders against as well (``replica_nyu_cnn``: the CNN's labels), as ``vs_<name>`` entries.
    ``frames``: collects every view's colour images (videos, TensorBoard).  Saved views also get
    disparity and entropy images (:func:`semnerf_ros.train_log.save_disparity_entropy`).

    ``gt_labels`` (len(ids), H, W) are the labels to score against (the test
    labels, or the clean training labels).  Returns ``miou``,
    ``miou_valid_class``, ``total_accuracy``, ``class_average_accuracy``,
    ``per_class_iou`` (index = class id, None for absent classes and void),
    ``psnr`` (dB, over all pixels of all views), ``ssim`` (mean over views),
    ``depth`` (:func:`metrics.depth_errors` against the dataset depth, or {}),
    ``num_views`` and ``frame_indices``.  The first ``save_count`` views are
    written as PNGs into ``out_dir``: the full set of :func:`save_render_images`
    or, given ``input_labels`` (the training labels as given to the field),
    comparison strips ``<tag>_compare_<frame>.png`` (RGB | input | rendered | clean).
    """

    ids = np.asarray(ids, dtype=np.int64)
    n_cls = scene.num_classes
    semantic = gt_labels is not None
    ev = SegmentationEvaluator(n_cls)
    extra_ev = {name: SegmentationEvaluator(n_cls) for name in (extra_labels or {})}
    sq_err, n_px, ssims = 0.0, 0, []
    depth_pred, depth_gt = [], []
    near, far = mapper.cfg["render"]["depth_range"]
    seed = protocol == "seed"
    kind = "scannet" if getattr(scene, "kind", "") == "scannet" else "replica"

    def gt_at(img, what, w, h):
        if seed:
            mode = "nearest" if what == "labels" else "bilinear"
            out = seed_downsample(img if what != "rgb" else np.asarray(img, np.float32) / 255.0, factor, mode)
            return out if what != "rgb" else out * 255.0
        return _resize_to(sdm, np.asarray(img), what, w, h)

    for k, i in enumerate(tqdm(ids, desc=f"rendering {tag} views", unit="view", leave=False,
                               disable=not progress)):
        if seed:
            r = mapper.render(scene.poses[i], seed_eval_intrinsics(scene.intrinsics, factor, kind))
        else:
            r = mapper.render(scene.poses[i], scene.intrinsics, scale=1.0 / factor)
        h, w = r.intrinsics.shape
        gt = gt_at(np.asarray(gt_labels[k]), "labels", w, h) if semantic else None
        if semantic:
            ev.add(gt, r.labels)
            for name, stack in (extra_labels or {}).items():
                extra_ev[name].add(gt_at(np.asarray(stack[k]), "labels", w, h), r.labels)
        rgb_gt = np.asarray(gt_at(scene.rgb[i], "rgb", w, h), np.float32) / 255.0
        sq_err += float(np.sum((np.clip(r.rgb, 0, 1) - rgb_gt) ** 2))
        n_px += rgb_gt.size
        ssims.append(ssim(np.clip(r.rgb, 0, 1), rgb_gt))
        if scene.depth is not None:
            depth_gt.append(gt_at(scene.depth[i], "depth", w, h))
            depth_pred.append(r.depth)
        opacity = getattr(r, "opacity", None)
        disp = disparity(r.depth, opacity if opacity is not None else np.ones_like(r.depth))
        if frames is not None:
            frames.add(r.rgb, r.depth, disp, r.labels if semantic else None, r.entropy if semantic else None, gt)
        if out_dir is not None and k < save_count:
            name = f"{int(scene.frame_indices[i]):03d}"
            save_disparity_entropy(out_dir, name if input_labels is None else f"{tag}_{name}", disp,
                                   r.entropy if semantic else None, (near, far))
            if input_labels is None or not semantic:
                save_render_images(out_dir, name, rgb=r.rgb, labels=r.labels if semantic else None, depth=r.depth,
                                   entropy=r.entropy if semantic else None,
                                   class_names=scene.class_names, gt_labels=gt, num_classes=n_cls,
                                   palette=palette, depth_range=(near, far))
            else:
                noisy = gt_at(np.asarray(input_labels[k]), "labels", w, h)
                strip = make_comparison_strip(noisy, r.labels, gt, palette if palette is not None else n_cls,
                                              scene.class_names, rgb=r.rgb,
                                              titles=["RGB", "input labels", "rendered", "clean"])
                write_image(Path(out_dir) / f"{tag}_compare_{name}.png", strip)
    keys = ("miou", "miou_valid_class", "total_accuracy", "class_average_accuracy", "per_class_iou", "num_pixels")
    mse = sq_err / max(n_px, 1)
    if semantic:
        s = ev.scores()
        out = {k: s[k] for k in keys}
        for name, e in extra_ev.items():
            se = e.scores()
            out[f"vs_{name}"] = {k: se[k] for k in keys}
    else:
        out = {k: None for k in keys}
    out.update({
        "psnr": (-10.0 * math.log10(mse)) if mse > 0 else math.inf,
        "ssim": float(np.mean(ssims)) if ssims else math.nan,
        "depth": depth_errors(np.stack(depth_pred), np.stack(depth_gt), max_depth=far) if depth_gt else {},
        "num_views": int(len(ids)),
        "frame_indices": [int(scene.frame_indices[i]) for i in ids],
    })
    return out


class MetricsLog:
    """``metrics.json``: a list of evaluation records, rewritten atomically on each append.
    On resume, records after the resumed step are dropped (they will be redone)."""

    def __init__(self, path, resume_step: Optional[int] = None):
        self.path = Path(path)
        self.records: list = []
        if resume_step is not None and self.path.is_file():
            try:
                old = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                log.warning("ignoring unreadable %s: %s", self.path, exc)
                old = []
            if isinstance(old, list):
                self.records = [r for r in old if isinstance(r, dict) and int(r.get("step", -1)) <= resume_step]
        write_json(self.path, self.records)

    def append(self, record: dict) -> None:
        """Add a record (one with the step of the last record replaces it: a fuller evaluation
        of the same step)."""
        rec = to_jsonable(record)
        if self.records and self.records[-1].get("step") == rec.get("step"):
            self.records[-1] = rec
        else:
            self.records.append(rec)
        write_json(self.path, self.records)


# ----------------------------------------------------------------------------- summary


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def summary_table(record: dict, class_names: Sequence[str]) -> str:
    """A text table of one metrics record: overall scores and per-class IoU."""
    cols = ["mIoU", "mIoU(gt)", "total acc", "class acc", "PSNR", "SSIM", "depth RMSE", "abs rel"]
    rows = [("test views", record.get("test")), ("train views vs clean", record.get("train")),
            ("input labels vs clean", record.get("input_labels"))]
    w0 = max(len(r[0]) for r in rows) + 2
    lines = [" " * w0 + "".join(f"{c:>12}" for c in cols)]
    for name, s in rows:
        if not s:
            continue
        dep = s.get("depth") or {}
        vals = [_fmt(s.get("miou")), _fmt(s.get("miou_valid_class")), _fmt(s.get("total_accuracy")),
                _fmt(s.get("class_average_accuracy")), _fmt(s.get("psnr"), 2), _fmt(s.get("ssim")),
                _fmt(dep.get("rmse")), _fmt(dep.get("abs_rel"))]
        lines.append(f"{name:<{w0}}" + "".join(f"{v:>12}" for v in vals))
    per = {k: (record.get(k) or {}).get("per_class_iou") or [] for k in ("test", "train", "input_labels")}
    n = max((len(v) for v in per.values()), default=0)
    if n > 1:
        wn = max([len(str(c)) for c in class_names] + [5]) + 6
        lines.append("")
        lines.append(f"{'class IoU':<{wn}}{'test':>10}{'train':>10}{'input':>10}")
        for c in range(1, n):
            vals = [per[k][c] if c < len(per[k]) else None for k in ("test", "train", "input_labels")]
            if all(v is None for v in vals):
                continue
            name = class_names[c] if c < len(class_names) else f"class {c}"
            lines.append(f"{f'{c:>3} {name}':<{wn}}" + "".join(f"{_fmt(v):>10}" for v in vals))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- training


def dataset_split(cfg: dict, kind: str, protocol: str, user_set=(), n_frames: Optional[int] = None,
                  say=None) -> dict:
    """``train_step``, ``test_offset``, ``total_num`` for a dataset of type ``kind``:
    ``experiment.sample_step`` (the seed's ScanNet key) > 0 gives ``sample_step`` / ``sample_step // 2``
    over every frame; else the config's, and under ``protocol="seed"`` a Replica-type sequence is
    split over its first :data:`~semnerf_ros.engine.config.SEED_REPLICA_TOTAL_NUM` frames (the
    seed's train_SSR_main.py) unless ``experiment.total_num`` is in ``user_set``."""
    exp = cfg["experiment"]
    if int(exp["sample_step"]) > 0:
        step = int(exp["sample_step"])
        return {"train_step": step, "test_offset": step // 2, "total_num": int(exp["total_num"])}
    split = {"train_step": int(exp["train_step"]), "test_offset": int(exp["test_offset"]),
             "total_num": int(exp["total_num"])}
    if protocol == "seed" and kind in ("replica", "replica_nyu_cnn") and "experiment.total_num" not in user_set:
        if n_frames is not None and n_frames < SEED_REPLICA_TOTAL_NUM:
            if say is not None:
                say(f"protocol seed: the seed splits Replica over its first {SEED_REPLICA_TOTAL_NUM} frames; "
                    f"this sequence has {n_frames}: all of them")
        else:
            split["total_num"] = SEED_REPLICA_TOTAL_NUM
    return split


def _load_scene(cfg: dict, progress: bool, protocol: str = "semnerf", user_set=(), say=None):
    exp = cfg["experiment"]
    path = str(exp["dataset_dir"]).strip()
    if not path:
        path = str(synthetic.ensure_scene(progress=progress))
        exp["dataset_dir"] = path
    kind = exp["dataset_type"]
    if kind == "auto":
        kind = detect_kind(path)
    split = dataset_split(cfg, kind, protocol, user_set, frame_count(path, kind), say)
    nyu = exp["nyu_mode"]
    options: dict = {"progress": progress, "seed_resize": protocol == "seed"}
    if kind == "scannet":
        if nyu not in ("auto", "nyu40", "nyu13"):
            raise TrainError(f"experiment.nyu_mode {nyu!r} is for replica_nyu_cnn; ScanNet takes nyu40 or nyu13")
        options.update(label_mode=nyu, pad_to_4_3=protocol == "seed")
    elif kind == "replica_nyu_cnn":
        if nyu == "nyu40":
            raise TrainError("experiment.nyu_mode nyu40 is for ScanNet; replica_nyu_cnn takes nyu13, nyu34 or gt_nyu13")
        options["nyu_mode"] = nyu
    elif kind == "replica":
        if nyu != "auto":
            raise TrainError(f"experiment.nyu_mode {nyu!r} needs --dataset_type replica_nyu_cnn or scannet")
        if str(exp["scene_file"]).strip():
            options["scene_file"] = str(exp["scene_file"]).strip()
    scene = load_dataset(path, kind=kind, width=exp["width"], height=exp["height"],
                         convention=exp["convention"], **split, **options)
    scene.meta["split"] = split
    if len(scene.train_ids) == 0:
        raise TrainError(f"{path}: the split leaves no training frames")
    return scene


def _checkpoint(mapper, save_dir: Path, step: int, state: dict, keep: int) -> Path:
    ckpt_dir = save_dir / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = mapper.save(ckpt_dir / f"map_{step:06d}.pt")
    atomic_link_or_copy(path, ckpt_dir / LATEST)   # no second copy of a large file where possible
    write_json(ckpt_dir / TRAINER_STATE, dict(state, step=step, checkpoint=path.name))
    if keep > 0:
        numbered = sorted(ckpt_dir.glob("map_*.pt"))
        for old in numbered[:-keep]:
            old.unlink(missing_ok=True)
    return path


def train(cfg: Optional[dict] = None, args=None) -> dict:
    """Train and evaluate; returns the final metrics record (see the module
    docstring) plus ``save_dir``, ``stopped`` (``"done"``, ``"max_seconds"``)
    and ``task``.

    ``cfg``: a full config (``config_from_args`` / ``load_config``); None =
    from ``args``.  ``args``: an ``argparse.Namespace`` or dict of the CLI
    flags (:func:`build_parser`), missing ones take their defaults; the flags
    that override config values are applied to ``cfg`` here as well.
    """
    return _TrainingRun(cfg, args).run()


class _TrainingRun:
    """One ``train()`` call, one method per stage: data and task labels, the map (resumed or
    new), the evaluation set-up, the training loop with evaluations and checkpoints, the summary."""

    def __init__(self, cfg: Optional[dict], args):
        a = self.a = resolve_args(args)
        select_gpus(config_gpu(a) if cfg is None else (a.gpu or str(cfg["experiment"].get("gpu") or "")))
        if cfg is None:
            cfg = config_from_args(a)
            file_data = read_config_file(a.config_file) if a.config_file else {}
            self.user_set = user_keys(file_data, arg_overrides(a))
        else:   # a complete config: nothing is left to a preset
            cfg = validate(merge(cfg, arg_overrides(a)))
            self.user_set = {f"{sec}.{k}" for sec, body in cfg.items() if isinstance(body, dict) for k in body}
        self.protocol = a.protocol = resolve_protocol(a, cfg)
        self.cfg = copy.deepcopy(cfg)
        self.progress = not a.quiet
        self.say = (lambda msg: tqdm.write(msg)) if self.progress else (lambda msg: log.info(msg))
        try:
            self.device = resolve_device(self.cfg["experiment"]["device"])
        except RuntimeError as exc:
            raise TrainError(str(exc)) from exc
        self.seed = int(self.cfg["experiment"]["seed"])
        self.save_dir = Path(self.cfg["experiment"]["save_dir"]).expanduser()
        self.save_dir.mkdir(parents=True, exist_ok=True)
        self.prior = {"train_seconds": 0.0, "wall_seconds": 0.0}
        self.last_losses: dict = {}
        self.step_errors = 0
        self.tb: Optional[TensorBoardLog] = None
        self.videos = False

    def run(self) -> dict:
        self.load_data()
        self.build_mapper()
        self.write_run_info()
        self.setup_evaluation()
        self.open_logs()
        try:
            record, stopped = self.loop()
        finally:
            if self.tb is not None:
                self.tb.close()
        return self.finish(record, stopped)

    def open_logs(self) -> None:
        """The seed's TensorBoard log and videos, where their optional packages are installed."""
        try:
            self.tb = TensorBoardLog.open(self.save_dir, self.cfg, self.a.tensorboard)
        except RuntimeError as exc:
            raise TrainError(str(exc)) from exc
        self.videos = self.a.videos != "off" and videos_available()
        if self.a.videos != "off" and not self.videos:
            log.warning(VIDEO_MISSING)

    # -- data and the task's training labels
    def load_data(self) -> None:
        a, scene = self.a, None
        scene = self.scene = _load_scene(self.cfg, self.progress, self.protocol, self.user_set, self.say)
        self.say(f"dataset: {scene.summary()}; protocol {self.protocol}")
        self.train_ids = np.asarray(scene.train_ids, dtype=np.int64)
        self.test_ids = np.asarray(scene.test_ids, dtype=np.int64)
        self.semantic = bool(self.cfg["experiment"]["enable_semantic"])
        # the truth the renders are scored against; the labels the task corrupts (replica_nyu_cnn: the CNN's)
        self.clean = scene.labels[self.train_ids]
        source = scene.predicted_labels[self.train_ids] if scene.predicted_labels is not None else self.clean
        instances = scene.instances[self.train_ids] if scene.instances is not None else None
        saved_path = Path(a.saved_labels).expanduser() if a.saved_labels else self.save_dir / DEFAULT_LABELS_FILE
        rng = np.random.default_rng(self.seed)
        if not self.semantic:
            chosen = [t for t in tasks.TASK_DEFAULTS if isinstance(tasks.TASK_DEFAULTS[t], bool)
                      and t not in ("visualise_save", "load_saved") and getattr(a, t, False)]
            if chosen:
                log.warning("experiment.enable_semantic is false: the task flags %s have no effect", chosen)
            self.noisy = np.zeros_like(source, dtype=np.int32)
            self.keep = np.zeros(len(source), dtype=bool)
            self.task_desc = "none: experiment.enable_semantic is false (a plain NeRF: no labels)"
        else:
            self.noisy, self.keep, self.task_desc = tasks.apply_task(
                a, source, instances, scene.frame_indices[self.train_ids], rng, scene.num_classes,
                saved_path=saved_path, seed=self.seed, progress=self.progress, class_names=scene.class_names)
        self.say(f"task: {self.task_desc}")
        self.digest = labels_digest(self.noisy, self.keep)
        # offline = every training frame is a keyframe
        mp = self.cfg["mapper"]
        mp["keyframe_policy"] = "all"
        mp["max_keyframes"] = max(int(mp["max_keyframes"]), len(self.train_ids))
        self.palette = class_palette(scene)
        write_image(self.save_dir / LEGEND_FILE, legend_image(scene.class_names, self.palette))

    # -- the map: resumed or new
    def build_mapper(self) -> None:
        latest = self.save_dir / CHECKPOINT_DIR / LATEST
        if self.a.resume and latest.is_file():
            self.mapper = self._resume(latest)
            return
        if self.a.resume:
            self.say(f"no checkpoint at {latest}: starting from scratch")
        cfg, scene = self.cfg, self.scene
        sb = cfg["render"]["scene_bounds"]
        bounds = np.asarray(sb, dtype=np.float64).reshape(2, 3) if isinstance(sb, (list, tuple)) else \
            scene_bounds_from_data(scene, self.train_ids, cfg["render"]["depth_range"], cfg["render"]["bounds_margin"])
        mapper = self.mapper = Mapper(cfg, scene.num_classes, scene.class_names, device=self.device, bounds=bounds)
        self.say(f"scene bounds (m): {np.round(bounds, 2).tolist()}; model {cfg['model']['type']} on {self.device}")
        use_sem = self.semantic
        use_depth = bool(cfg["experiment"]["enable_depth"])
        for k, i in enumerate(tqdm(self.train_ids, desc="adding frames", unit="frame", leave=False,
                                   disable=not self.progress)):
            f = scene.frame(int(i))
            f.labels = self.noisy[k] if (self.keep[k] and use_sem) else None
            if not use_depth:
                f.depth = None
            mapper.add_frame(f)

    def _resume(self, latest: Path):
        cfg, scene, say = self.cfg, self.scene, self.say
        mapper = Mapper.load(latest, device=self.device)
        if mapper.num_classes != scene.num_classes or len(mapper.buffer) != len(self.train_ids):
            raise TrainError(f"{latest} holds {len(mapper.buffer)} frames of {mapper.num_classes} classes, "
                             f"the dataset gives {len(self.train_ids)} training frames of {scene.num_classes}")
        state_file = self.save_dir / CHECKPOINT_DIR / TRAINER_STATE
        if state_file.is_file():
            try:
                st = json.loads(state_file.read_text())
                if int(st.get("step", -1)) == mapper.step_count:
                    self.prior = {k: float(st.get(k, 0.0)) for k in self.prior}
                if st.get("labels_digest") not in (None, self.digest):
                    log.warning("the checkpoint was trained on other labels than this run's task gives "
                                "(different task flags or seed?); continuing with the checkpoint's labels")
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable %s: %s", state_file, exc)
        mapper.train_seconds = self.prior["train_seconds"]
        # The map keeps the settings it was trained with; only the step budget comes from this run.
        n_iters_now = cfg["train"]["N_iters"]
        differ = [sec for sec in ("model", "render", "train", "mapper")
                  if {k: v for k, v in mapper.cfg[sec].items() if k != "N_iters"} !=
                  {k: v for k, v in cfg[sec].items() if k != "N_iters"}]
        if differ:
            say(f"note: resuming with the checkpoint's {', '.join(differ)} settings (this config differs)")
        for sec in ("model", "render", "train", "mapper"):
            cfg[sec] = copy.deepcopy(mapper.cfg[sec])
        cfg["train"]["N_iters"] = n_iters_now
        say(f"resumed from {latest} at step {mapper.step_count}")
        return mapper

    def write_run_info(self) -> None:
        scene, mapper = self.scene, self.mapper
        save_config(self.cfg, self.save_dir / "exp_config.yaml")
        write_json(self.save_dir / "run_info.json", {
            "args": vars(self.a), "dataset": scene.summary(), "dataset_dir": str(scene.path),
            "class_names": scene.class_names, "class_ids_original": scene.class_ids_original,
            "train_frames": scene.frame_indices[self.train_ids], "test_frames": scene.frame_indices[self.test_ids],
            "task": self.task_desc, "labelled_train_frames": int(self.keep.sum()), "labels_digest": self.digest,
            "protocol": self.protocol, "split": scene.meta.get("split"),
            "scene_bounds": mapper.scene_bounds, "device": str(self.device),
            "resumed_from_step": mapper.step_count if self.a.resume else None,
        })

    # -- evaluation
    def setup_evaluation(self) -> None:
        scene, cfg = self.scene, self.cfg
        self.factor = max(1, int(cfg["render"]["test_viz_factor"]))
        n_eval = max(0, int(self.a.n_test_views))
        self.test_eval = evenly_spaced_subset(np.arange(len(self.test_ids)), n_eval)
        self.train_eval = evenly_spaced_subset(np.arange(len(self.train_ids)), n_eval)
        h_eval, w_eval = scene.intrinsics.scaled(1.0 / self.factor).shape

        def at_eval(lab):
            if self.protocol == "seed":
                return seed_downsample(lab, self.factor, "nearest")
            return sdm.resize_nearest(lab, w_eval, h_eval)

        if self.semantic:
            self.input_scores = score_labels(np.stack([at_eval(self.clean[k]) for k in self.train_eval]),
                                             np.stack([at_eval(self.noisy[k]) for k in self.train_eval]),
                                             scene.num_classes)
            self.input_scores["labelled_frames"] = int(self.keep[self.train_eval].sum())
        else:
            self.input_scores = None
        if self.device.type == "cuda":   # compile GPU kernels first so train_seconds is training only
            self.say(f"GPU code paths ready in {self.mapper.warmup():.1f} s")

    def wall(self) -> float:
        return self.prior["wall_seconds"] + time.perf_counter() - self.t_loop

    def evaluate(self, step: int, final: bool, test: bool = True, train: bool = True) -> dict:
        """Scores (and images) of the test views (``logging.step_val``) and / or the training
        views against their clean labels (``logging.step_vis_train``); both at the end."""
        a, scene, mapper = self.a, self.scene, self.mapper
        rdir = self.save_dir / "render" / f"step_{step:06d}"
        n_save = len(self.test_eval) if (final and a.visualise_save) else max(0, int(a.render_views))
        test_ids = self.test_ids[self.test_eval]
        sem = self.semantic
        common = {"palette": self.palette, "progress": self.progress, "protocol": self.protocol}
        collect = self.videos or self.tb is not None

        def frames():
            return ViewFrames(self.palette, mapper.cfg["render"]["depth_range"], scene.num_classes) if collect \
                else None
        cnn = scene.predicted_labels
        test_scores = train_scores = None
        if test or final:
            views = frames()
            test_scores = evaluate_views(
                mapper, scene, test_ids, scene.labels[test_ids] if sem else None, self.factor, rdir, n_save, "test",
                extra_labels={"cnn": cnn[test_ids]} if (cnn is not None and sem) else None, frames=views, **common)
            self._log_views(step, "Test", test_scores, views, rdir, "test")
        if train or final:
            tr_ids = self.train_ids[self.train_eval]
            views = frames()
            train_scores = evaluate_views(
                mapper, scene, tr_ids, self.clean[self.train_eval] if sem else None, self.factor, rdir, n_save,
                "train", input_labels=self.noisy[self.train_eval],
                extra_labels={"cnn": cnn[tr_ids]} if (cnn is not None and sem) else None, frames=views, **common)
            self._log_views(step, "Train", train_scores, views, rdir, "train")
        st = mapper.stats()
        rec = {"step": step, "train_seconds": st["train_seconds"], "wall_seconds": self.wall(),
               "iterations_per_second": step / st["train_seconds"] if st["train_seconds"] > 0 else None,
               "loss": self.last_losses.get("loss"), "train_batch_psnr": self.last_losses.get("psnr"),
               "failed_steps": self.step_errors, "oom_events": st["oom_events"],
               "test": test_scores, "train": train_scores, "input_labels": self.input_scores}
        self.metrics_log.append(rec)
        parts = []
        if test_scores is not None:
            parts.append(f"test mIoU {_fmt(test_scores['miou'])} acc {_fmt(test_scores['total_accuracy'])} "
                         f"PSNR {_fmt(test_scores['psnr'], 2)}")
        if train_scores is not None:
            parts.append(f"train-vs-clean mIoU {_fmt(train_scores['miou'])} PSNR {_fmt(train_scores['psnr'], 2)}")
        if self.input_scores is not None:
            parts.append(f"input labels mIoU {_fmt(self.input_scores['miou'])}")
        self.say(f"[eval] step {step}: " + " | ".join(parts))
        return rec

    def _log_views(self, step: int, split: str, scores: dict, views: Optional[ViewFrames], rdir: Path,
                   tag: str) -> None:
        if self.tb is not None:
            self.tb.scores(step, split, scores)
            if views is not None:
                self.tb.images(step, split, views.frames)
            self.tb.flush()
        if self.videos and views is not None:
            views.write_videos(rdir, tag)

    def checkpoint(self, step: int) -> None:
        _checkpoint(self.mapper, self.save_dir, step, {"train_seconds": self.mapper.train_seconds,
                                                       "wall_seconds": self.wall(), "labels_digest": self.digest},
                    int(self.a.keep_checkpoints))

    # -- the loop
    def _step(self, skipped: int) -> dict:
        """One training step; {} when it failed or was skipped (nothing was updated).  As the
        mapper's own training thread does, one failed step does not end a long run; a persistent
        failure does (:data:`MAX_SKIPPED_STEPS`)."""
        mapper = self.mapper
        try:
            return mapper.step()
        except (RuntimeError, IndexError, ValueError) as exc:
            self.step_errors += 1
            log.warning("training step %d failed (%d so far): %s: %s", mapper.step_count + 1, self.step_errors,
                        type(exc).__name__, exc)
            if skipped + 1 >= MAX_SKIPPED_STEPS:
                raise TrainError(f"{MAX_SKIPPED_STEPS} training steps in a row failed; last error: "
                                 f"{type(exc).__name__}: {exc}") from exc
            return {}

    def loop(self) -> tuple:
        a, cfg, mapper = self.a, self.cfg, self.mapper
        n_iters = int(cfg["train"]["N_iters"])
        step_val = max(1, int(cfg["logging"]["step_val"]))
        step_vis = max(1, int(cfg["logging"]["step_vis_train"]))
        step_tfb = max(1, int(float(cfg["logging"]["step_log_tfb"])))
        step_ckpt = max(1, int(cfg["logging"]["step_save_ckpt"]))
        step_print = max(1, int(cfg["logging"]["step_log_print"]))
        start_step = mapper.step_count
        self.metrics_log = MetricsLog(self.save_dir / METRICS_FILE, resume_step=start_step if a.resume else None)
        self.t_loop = time.perf_counter()
        stopped = "done"
        last_eval = last_ckpt = None
        record: Optional[dict] = None
        if a.resume and start_step > 0:
            last_ckpt = start_step
            if self.metrics_log.records and int(self.metrics_log.records[-1]["step"]) == start_step:
                record, last_eval = self.metrics_log.records[-1], start_step
        skipped = 0
        bar = tqdm(total=n_iters, initial=min(start_step, n_iters), desc="training", unit="it", dynamic_ncols=True,
                   disable=not self.progress)
        try:
            while mapper.step_count < n_iters:
                if a.max_seconds is not None and time.perf_counter() - self.t_loop >= float(a.max_seconds):
                    stopped = "max_seconds"
                    break
                losses = self._step(skipped)
                if not losses:
                    skipped += 1
                    if skipped >= MAX_SKIPPED_STEPS:
                        raise TrainError(f"{skipped} training steps in a row were skipped (out of memory?); "
                                         "lower render.N_rays")
                    continue
                skipped = 0
                self.last_losses = losses
                step = mapper.step_count
                bar.update(1)
                if step % step_print == 0:
                    bar.set_postfix(loss=f"{losses['loss']:.4f}", psnr=f"{losses['psnr']:.2f}", refresh=False)
                if self.tb is not None and step % step_tfb == 0:
                    self.tb.losses(step, losses)
                if step % step_val == 0 or step % step_vis == 0:
                    final = step >= n_iters
                    record = self.evaluate(step, final=final, test=step % step_val == 0, train=step % step_vis == 0)
                    if final or (step % step_val == 0 and step % step_vis == 0):
                        last_eval = step
                if step % step_ckpt == 0:
                    self.checkpoint(step)
                    last_ckpt = step
        except KeyboardInterrupt:
            bar.close()
            self.say(f"interrupted at step {mapper.step_count}: saving a checkpoint")
            self.checkpoint(mapper.step_count)
            raise
        bar.close()
        step = mapper.step_count
        if stopped != "done":
            self.say(f"stopped at step {step}: --max_seconds {a.max_seconds:g} reached")
        if last_eval != step:
            record = self.evaluate(step, final=True)
        if last_ckpt != step:
            self.checkpoint(step)
        assert record is not None
        return record, stopped

    def finish(self, record: dict, stopped: str) -> dict:
        st = self.mapper.stats()
        text = (f"Semantic-NeRF ({self.cfg['model']['type']}, protocol {self.protocol}) on {self.scene.path}: "
                f"{self.mapper.step_count} steps, "
                f"{st['train_seconds']:.1f} s training, {self.wall():.1f} s wall ({stopped}); outputs in "
                f"{self.save_dir}\ntask: {self.task_desc}\n{summary_table(record, self.scene.class_names)}\n")
        (self.save_dir / "summary.txt").write_text(text)
        if self.progress:
            print("\n" + text, end="")
        return dict(record, save_dir=str(self.save_dir), stopped=stopped, task=self.task_desc)
