"""Image outputs: rendered views as PNG files and comparison strips.

File names follow the seed's ``render_path`` (``rgb_<name>.png``,
``depth_<name>.png`` in uint16 millimetres, ``vis_depth_<name>.png``,
``label_<name>.png``, ``vis_label_<name>.png``, ``vis_entropy_<name>.png``).
Every write is atomic (:func:`semnerf_ros.io.atomic.atomic_write_bytes`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from .colormap import PaletteLike, as_palette, colorize_labels, colorize_scalar, legend_image
from .io.atomic import atomic_write_bytes


def write_image(path, image: np.ndarray) -> Path:
    """Write a PNG (or any cv2 format by suffix) atomically.

    ``image``: ``(H, W, 3)`` uint8 **RGB** (converted to cv2's BGR here), or a
    single-channel ``(H, W)`` uint8 / uint16 image written as is.
    Raises ``OSError`` if OpenCV cannot write it.
    """
    p = Path(path)
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 3:
        if img.dtype != np.uint8:
            raise TypeError(f"colour images must be uint8, got {img.dtype} for {p.name}")
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    elif img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"cannot write {img.shape} {img.dtype} image to {p.name}: "
                        "expected (H, W, 3) uint8 RGB or (H, W) uint8/uint16")
    ok, data = cv2.imencode(p.suffix or ".png", np.ascontiguousarray(img))
    if not ok:
        raise OSError(f"OpenCV could not encode {p}")
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, data.tobytes())
    return p


def rgb_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """RGB float in [0, 1] (clipped) or uint8 -> uint8."""
    a = np.asarray(rgb)
    if a.dtype == np.uint8:
        return a
    return (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _pad_to_height(img: np.ndarray, h: int, value=0) -> np.ndarray:
    if img.shape[0] >= h:
        return img
    pad = np.full((h - img.shape[0],) + img.shape[1:], value, dtype=img.dtype)
    return np.concatenate([img, pad], axis=0)


def hstack_images(images: Sequence[np.ndarray], gap: int = 4, background=(0, 0, 0)) -> np.ndarray:
    """Side by side, top-aligned, heights padded with ``background``, ``gap`` px between."""
    h = max(im.shape[0] for im in images)
    bg = np.asarray(background, dtype=np.uint8)
    parts = []
    for k, im in enumerate(images):
        if k and gap > 0:
            parts.append(np.broadcast_to(bg, (h, gap, 3)).copy())
        parts.append(_pad_to_height(im, h, bg))
    return np.concatenate(parts, axis=1)


def _titled(img: np.ndarray, title: str, height: int = 20) -> np.ndarray:
    bar = np.zeros((height, img.shape[1], 3), dtype=np.uint8)
    scale = 0.45
    (tw, th), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = max(2, (img.shape[1] - tw) // 2)
    cv2.putText(bar, title, (x, (height + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def _class_names(class_names: Optional[Sequence[str]], n: int) -> list[str]:
    names = list(class_names) if class_names is not None else []
    return names + [f"class {i}" for i in range(len(names), n)]


def labels_with_legend(labels: np.ndarray, n_or_palette: PaletteLike, class_names: Optional[Sequence[str]] = None,
                       present_ids: Optional[Sequence[int]] = None, blank: Optional[np.ndarray] = None) -> np.ndarray:
    """Colourised labels with a legend strip (classes present, same height) on the right.

    ``blank``: bool mask of pixels drawn black (e.g. void ground truth, as the seed).
    """
    pal = as_palette(n_or_palette)
    vis = colorize_labels(labels, pal)
    if blank is not None:
        vis[np.asarray(blank, dtype=bool)] = 0
    ids = np.unique(labels) if present_ids is None else np.asarray(present_ids)
    legend = legend_image(_class_names(class_names, len(pal)), pal, present_ids=ids,
                          max_height=max(vis.shape[0], 24))
    return hstack_images([vis, legend], gap=2)


def save_render_images(out_dir, name: str, rgb: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
                       depth: Optional[np.ndarray] = None, entropy: Optional[np.ndarray] = None,
                       class_names: Optional[Sequence[str]] = None, gt_labels: Optional[np.ndarray] = None,
                       num_classes: Optional[int] = None, palette: Optional[PaletteLike] = None,
                       depth_range: Optional[Sequence[float]] = None) -> dict[str, Path]:
    """Write one rendered view as PNGs in ``out_dir``; inputs that are None are skipped.

    Args:
        name: file tag, e.g. ``"003"`` -> ``rgb_003.png``.
        rgb: ``(H, W, 3)`` float [0, 1] or uint8.
        labels: ``(H, W)`` predicted class ids -> ``label_<name>.png`` (uint8, or
            uint16 beyond 255 classes) and ``vis_label_<name>.png`` (colours +
            legend strip; pixels with void ground truth black when ``gt_labels``
            is given, as the seed).
        depth: ``(H, W)`` metres -> ``depth_<name>.png`` (uint16 mm, 0 invalid)
            and ``vis_depth_<name>.png`` (turbo over ``depth_range`` or the data range).
        entropy: ``(H, W)`` nats -> ``vis_entropy_<name>.png`` on ``[0, log(C - 1)]``
            (the largest entropy over the C - 1 valid classes).
        class_names: name per class id (defines C unless ``num_classes``).
        gt_labels: ``(H, W)`` ground truth -> also ``vis_gt_label_<name>.png``.
        palette: ``(C, 3)`` colours; default the VOC palette.
    Returns:
        ``{kind: path}`` of the files written.
    """
    out = Path(out_dir)
    written: dict[str, Path] = {}
    if num_classes is None:
        if class_names is not None:
            num_classes = len(class_names)
        elif palette is not None and not isinstance(palette, (int, np.integer)):
            num_classes = len(as_palette(palette))
        else:
            present = [int(np.max(x)) for x in (labels, gt_labels) if x is not None and np.size(x)]
            num_classes = max(present, default=1) + 1
    pal = as_palette(palette if palette is not None else int(num_classes))
    if rgb is not None:
        written["rgb"] = write_image(out / f"rgb_{name}.png", rgb_to_uint8(rgb))
    if labels is not None:
        lab = np.asarray(labels)
        if lab.size and int(lab.min()) < 0:
            raise ValueError(f"labels hold negative id {int(lab.min())}")
        dtype = np.uint8 if (not lab.size or int(lab.max()) < 256) else np.uint16
        written["label"] = write_image(out / f"label_{name}.png", lab.astype(dtype))
        present = np.unique(lab) if gt_labels is None else np.union1d(np.unique(lab), np.unique(gt_labels))
        present = present[present != 0] if gt_labels is not None else present
        blank = None if gt_labels is None else (np.asarray(gt_labels) == 0)
        written["vis_label"] = write_image(out / f"vis_label_{name}.png",
                                           labels_with_legend(lab, pal, class_names, present, blank))
    if gt_labels is not None:
        gt = np.asarray(gt_labels)
        written["vis_gt_label"] = write_image(out / f"vis_gt_label_{name}.png",
                                              labels_with_legend(gt, pal, class_names))
    if depth is not None:
        d = np.asarray(depth, dtype=np.float64)
        ok = np.isfinite(d) & (d > 0)
        mm = np.where(ok, np.clip(np.round(d * 1000.0), 0, 65535), 0).astype(np.uint16)
        written["depth"] = write_image(out / f"depth_{name}.png", mm)
        lo, hi = (depth_range if depth_range is not None else (None, None))
        written["vis_depth"] = write_image(out / f"vis_depth_{name}.png",
                                           colorize_scalar(d, lo, hi, valid=ok))
    if entropy is not None:
        hi = math.log(num_classes - 1) if num_classes and num_classes > 2 else None
        written["vis_entropy"] = write_image(out / f"vis_entropy_{name}.png",
                                             colorize_scalar(entropy, 0.0 if hi else None, hi))
    return written


def make_comparison_strip(noisy: np.ndarray, predicted: np.ndarray, gt: np.ndarray, n_or_palette: PaletteLike,
                          class_names: Optional[Sequence[str]] = None, rgb: Optional[np.ndarray] = None,
                          titles: Optional[Sequence[str]] = None, legend: bool = True,
                          mask_void: bool = True, gap: int = 4) -> np.ndarray:
    """``[rgb |] input (noisy) | predicted | ground truth [| legend]`` as one uint8 RGB image.

    The three label maps are ``(H, W)`` class ids coloured with the same
    palette; with ``mask_void`` the prediction is black where the ground truth
    is void (as the seed's visualisation).  Each panel gets a title bar.
    """
    maps = [np.asarray(noisy), np.asarray(predicted), np.asarray(gt)]
    if len({m.shape for m in maps}) != 1 or maps[0].ndim != 2:
        raise ValueError(f"noisy, predicted and ground-truth labels must be equal (H, W), "
                         f"got {[m.shape for m in maps]}")
    pal = as_palette(n_or_palette)
    names = list(titles) if titles is not None else ["input (noisy)", "Semantic-NeRF", "ground truth"]
    panels = [colorize_labels(m, pal) for m in maps]
    if mask_void:
        panels[1][maps[2] == 0] = 0
    if rgb is not None:
        img = rgb_to_uint8(rgb)
        if img.shape[:2] != maps[0].shape:
            raise ValueError(f"rgb is {img.shape[:2]} but the labels are {maps[0].shape}")
        panels.insert(0, img)
        if titles is None:
            names.insert(0, "RGB")
    if len(names) != len(panels):
        raise ValueError(f"{len(names)} titles for {len(panels)} panels")
    tiles = [_titled(p, t) for p, t in zip(panels, names)]
    if legend:
        ids = np.unique(np.concatenate([m.ravel() for m in maps]))
        ids = ids[ids != 0]
        tiles.append(legend_image(_class_names(class_names, len(pal)), pal, present_ids=ids,
                                  max_height=tiles[0].shape[0]))
    return hstack_images(tiles, gap=gap)
