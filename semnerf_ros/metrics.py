"""Evaluation metrics: semantic segmentation, image quality, depth.

Segmentation follows the seed's ``calculate_segmentation_metrics``
(``SSR/training/training_utils.py``), written in this package's label
convention (void = 0 instead of the seed's shifted -1):

* pixels whose ground truth is void are ignored;
* a class's IoU is ``TP / (TP + FP + FN)``; classes absent from both ground
  truth and prediction have no IoU (NaN) and are left out of the mean, the
  void class is always left out;
* ``miou`` averages over classes present in ground truth *or* prediction (the
  seed's ``nanmean(ious)``), ``miou_valid_class`` over classes present in
  ground truth (the seed's ``miou_valid_class``);
* ``total_accuracy`` = correct / valid pixels; ``class_average_accuracy``
  averages per-class recall over classes present in ground truth.

A prediction of void on a valid pixel counts as an error.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from skimage.metrics import structural_similarity


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore: Optional[int] = 0) -> np.ndarray:
    """``(C, C)`` int64 counts, rows = ground truth, columns = prediction.

    ``gt`` and ``pred`` are integer arrays of the same shape (one image or a
    stack) holding ids in ``0..num_classes-1``; pixels whose ``gt == ignore``
    are skipped (``ignore=None`` keeps all).
    """
    g = np.asarray(gt)
    p = np.asarray(pred)
    if g.shape != p.shape:
        raise ValueError(f"ground truth {g.shape} and prediction {p.shape} differ in shape")
    for name, a in (("ground truth", g), ("prediction", p)):
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name} must hold integer class ids, got {a.dtype}")
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    g = g.ravel().astype(np.int64)
    p = p.ravel().astype(np.int64)
    if ignore is not None:
        keep = g != int(ignore)
        g, p = g[keep], p[keep]
    for name, a in (("ground truth", g), ("prediction", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            bad = int(a.min()) if a.min() < 0 else int(a.max())
            raise ValueError(f"{name} holds class id {bad}, outside 0..{num_classes - 1}")
    counts = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def segmentation_scores(conf: np.ndarray, ignore: Optional[int] = 0) -> dict:
    """Scores from a confusion matrix (see the module docstring).

    Returns a dict with ``miou``, ``miou_valid_class``, ``total_accuracy``,
    ``class_average_accuracy`` (floats, NaN when there is no valid pixel),
    ``per_class_iou`` and ``per_class_accuracy`` (lists of length C, NaN for
    classes absent from both / from ground truth, and for the void class),
    ``valid_classes`` (ids present in ground truth or prediction, void
    excluded) and ``num_pixels`` (valid pixels counted).
    """
    c = np.asarray(conf, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got {c.shape}")
    n = c.shape[0]
    classes = np.ones(n, dtype=bool)
    if ignore is not None and 0 <= int(ignore) < n:
        classes[int(ignore)] = False
        c = c.copy()
        c[int(ignore), :] = 0.0                      # void ground truth never counts
    tp = np.diag(c)
    gt_count = c.sum(axis=1)
    pred_count = c.sum(axis=0)
    union = gt_count + pred_count - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_count > 0, tp / gt_count, np.nan)
    iou[~classes] = np.nan
    acc[~classes] = np.nan
    present = classes & (union > 0)
    in_gt = classes & (gt_count > 0)
    total = float(gt_count.sum())
    return {
        "miou": float(np.mean(iou[present])) if present.any() else math.nan,
        "miou_valid_class": float(np.mean(iou[in_gt])) if in_gt.any() else math.nan,
        "total_accuracy": float(tp[classes].sum() / total) if total > 0 else math.nan,
        "class_average_accuracy": float(np.mean(acc[in_gt])) if in_gt.any() else math.nan,
        "per_class_iou": [float(v) for v in iou],
        "per_class_accuracy": [float(v) for v in acc],
        "valid_classes": [int(i) for i in np.flatnonzero(present)],
        "num_pixels": int(total),
    }


class SegmentationEvaluator:
    """Accumulates a confusion matrix over many images, scores the total.

    >>> ev = SegmentationEvaluator(num_classes)
    >>> for gt, pred in pairs: ev.add(gt, pred)
    >>> ev.scores()["miou"]
    """

    def __init__(self, num_classes: int, ignore: Optional[int] = 0):
        self.num_classes = int(num_classes)
        self.ignore = ignore
        self.conf = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.num_images = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Add one image (H, W) or a stack (N, H, W); returns its own confusion matrix."""
        conf = confusion_matrix(gt, pred, self.num_classes, self.ignore)
        self.conf += conf
        g = np.asarray(gt)
        self.num_images += int(g.shape[0]) if g.ndim == 3 else 1
        return conf

    def scores(self) -> dict:
        out = segmentation_scores(self.conf, self.ignore)
        out["num_images"] = self.num_images
        return out

    def reset(self) -> None:
        self.conf[:] = 0
        self.num_images = 0


def _as_unit_float(img: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must be float in [0, 1] or uint8, got {a.dtype}")
    return a.astype(np.float64)


def psnr(pred: np.ndarray, gt: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (uint8 is scaled by 1/255).

    ``mask`` (same shape as the image, or its ``(H, W)`` without the channel
    axis) selects the pixels the mean squared error is taken over.
    ``-10 log10(MSE)``; ``inf`` for identical images, NaN for an empty mask.
    """
    p = _as_unit_float(pred, "prediction")
    g = _as_unit_float(gt, "ground truth")
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    sq = (p - g) ** 2
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != sq.shape:
            if m.shape == sq.shape[: m.ndim]:
                m = np.broadcast_to(m.reshape(m.shape + (1,) * (sq.ndim - m.ndim)), sq.shape)
            else:
                raise ValueError(f"mask {m.shape} does not fit image {sq.shape}")
        sq = sq[m]
    if sq.size == 0:
        return math.nan
    mse = float(np.mean(sq))
    return math.inf if mse == 0.0 else -10.0 * math.log10(mse)


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Structural similarity of two images in [0, 1] (``(H, W)`` or ``(H, W, 3)``),
    via ``skimage.metrics.structural_similarity`` with ``data_range=1``.

    skimage's default uniform 7 x 7 window shrinks to the largest odd size
    that fits images smaller than 7 pixels on a side.
    """

    p = _as_unit_float(pred, "prediction")
    g = _as_unit_float(gt, "ground truth")
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    if p.ndim not in (2, 3):
        raise ValueError(f"ssim takes (H, W) or (H, W, C) images, got {p.shape}")
    side = min(p.shape[:2])
    if side < 3:
        raise ValueError(f"image {p.shape[:2]} is too small for SSIM (needs >= 3 px a side)")
    win = min(7, side if side % 2 == 1 else side - 1)
    return float(structural_similarity(p, g, data_range=1.0, win_size=win,
                                       channel_axis=-1 if p.ndim == 3 else None))


def depth_errors(pred: np.ndarray, gt: np.ndarray, max_depth: Optional[float] = None) -> dict:
    """Standard depth errors (metres) over pixels with valid ground truth.

    Valid: finite ``gt > 0`` (and ``gt < max_depth`` when given; the seed uses
    10 m) and finite ``pred > 0`` (ratios and logs need a positive prediction;
    the seed skips ``pred == 0`` likewise).  Works on one image or a stack
    (pixel-weighted over the whole stack, as the seed evaluates a batch).

    Returns ``abs_rel``, ``sq_rel``, ``rmse``, ``rmse_log``, ``a1``/``a2``/``a3``
    (share of pixels with ``max(gt/pred, pred/gt) < 1.25**k``), ``mae``, plus
    ``complete`` (share of valid-gt pixels with a positive prediction) and
    ``num_pixels``.  Values are NaN when no pixel is valid.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"predicted depth {p.shape} and ground truth {g.shape} differ in shape")
    gt_ok = np.isfinite(g) & (g > 0)
    if max_depth is not None:
        gt_ok &= g < float(max_depth)
    pred_ok = np.isfinite(p) & (p > 0)
    m = gt_ok & pred_ok
    n_gt = int(gt_ok.sum())
    keys = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "mae")
    if not m.any():
        out = {k: math.nan for k in keys}
        out.update(complete=0.0 if n_gt else math.nan, num_pixels=0)
        return out
    p, g = p[m], g[m]
    diff = p - g
    ratio = np.maximum(g / p, p / g)
    return {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(diff ** 2 / g)),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "a1": float(np.mean(ratio < 1.25)),
        "a2": float(np.mean(ratio < 1.25 ** 2)),
        "a3": float(np.mean(ratio < 1.25 ** 3)),
        "mae": float(np.mean(np.abs(diff))),
        "complete": float(m.sum() / n_gt),
        "num_pixels": int(m.sum()),
    }
