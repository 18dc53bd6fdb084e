"""The one loader skeleton every dataset format shares.

A format parser (:mod:`.replica`, :mod:`.scannet`) reads only what is particular to its layout
-- which files, the poses, the camera, how depth and label ids are stored -- into a
:class:`FrameSequence`; :func:`load_sequence` does the rest the same way for all: frames with
non-finite poses skipped (warned), the seed's train/test split, resizing to the output
resolution, the threaded image loading with size checks, the class remapping (void 0)."""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from typing import Sequence as Seq

import cv2
import numpy as np
from tqdm import tqdm

from ..engine.geometry import Intrinsics
from .scene_data import (
    DatasetError,
    SceneData,
    default_class_names,
    read_label_image,
    read_rgb,
    remap_classes,
    resize_nearest,
    resize_rgb,
    select_frames,
)

#: ``depth_reader(output intrinsics, native intrinsics, first frame number)`` -> a function that reads
#: one depth file as float32 metres at the output resolution (0 = invalid)
DepthReader = Callable[[Intrinsics, Intrinsics, int], Callable[[Path], np.ndarray]]


@dataclass
class FrameSequence:
    """What a format parser found in a folder.

    ``numbers``: the frame numbers in order, ``poses`` (len(numbers), 4, 4) camera-to-world
    (non-finite = lost tracking); ``rgb`` / ``labels`` / ``depth`` / ``instances``: frame number
    -> file; ``camera(w, h)``: the native intrinsics for colour images of that size;
    ``label_map``: file label ids -> class ids (before remapping to ``0..C-1``);
    ``class_table``: class id -> name; ``labels_match_rgb``: label and instance images must have
    the colour images' size; ``extra_labels``: more label stacks (name -> frame number -> file),
    loaded and remapped like ``labels`` into ``SceneData.predicted_labels`` (name ``predicted``);
    ``pad_rows``: black rows added above and below the colour images (and colour-sized label and
    instance images) before resizing, as the seed pads ScanNet's 1296x968 to 4:3; ``camera``
    then describes the padded image; ``seed_resize``: resize colour, label and instance images as
    the seed does (``cv2.resize``, bilinear on colours in [0, 1], OpenCV's nearest on labels: the
    top-left pixel of each block at factor 2) instead of area averaging and pixel-centre nearest."""

    folder: Path
    kind: str
    numbers: list
    poses: np.ndarray
    rgb: dict
    labels: dict
    camera: Callable[[int, int], Intrinsics]
    depth: Optional[dict] = None
    instances: Optional[dict] = None
    depth_reader: Optional[DepthReader] = None
    label_map: Optional[Callable[[np.ndarray], np.ndarray]] = None
    class_table: dict = field(default_factory=dict)
    labels_match_rgb: bool = True
    fps: float = 30.0
    meta: dict = field(default_factory=dict)
    extra_labels: dict = field(default_factory=dict)
    pad_rows: tuple = (0, 0)
    seed_resize: bool = False


def _seed_resize_rgb(img: np.ndarray, w: int, h: int) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    out = cv2.resize(img.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def _seed_resize_labels(img: np.ndarray, w: int, h: int) -> np.ndarray:
    return img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)


def _pad_rows(img: np.ndarray, rows: tuple, height: Optional[int] = None) -> np.ndarray:
    """``img`` with ``rows[0]`` zero rows above and ``rows[1]`` below (only when its height is
    ``height``, the unpadded colour height, if given)."""
    top, bottom = int(rows[0]), int(rows[1])
    if not (top or bottom) or (height is not None and img.shape[0] != height):
        return img
    return cv2.copyMakeBorder(img, top, bottom, 0, 0, cv2.BORDER_CONSTANT, value=0)


def check_size(path: Path, img: np.ndarray, w: int, h: int) -> None:
    if img.shape[:2] != (h, w):
        raise DatasetError(f"{path} is {img.shape[1]}x{img.shape[0]} but the colour images are {w}x{h}")


def load_sequence(seq: FrameSequence, width: Optional[int] = 320, height: Optional[int] = 240, train_step: int = 5,
                  test_offset: int = 2, total_num: int = 0, class_ids: Optional[Seq[int]] = None,
                  progress: bool = True, num_workers: Optional[int] = None) -> SceneData:
    """Load the train and test frames of ``seq`` (see the module docstring)."""
    folder, numbers = seq.folder, list(seq.numbers)
    finite = np.all(np.isfinite(np.asarray(seq.poses).reshape(len(numbers), -1)), axis=1)
    bad = [numbers[i] for i in np.flatnonzero(~finite)]
    if bad:
        warnings.warn(f"{folder}: skipping {len(bad)} of {len(numbers)} frames with non-finite poses (lost "
                      f"tracking): {bad[:10]}", stacklevel=3)
    valid = np.flatnonzero(finite)
    if valid.size == 0:
        raise DatasetError(f"{folder}: no frame has a finite pose")
    load, train_pos, test_pos = select_frames(len(valid), train_step, test_offset, total_num)
    chosen = [numbers[i] for i in valid[load]]
    poses = np.asarray(seq.poses)[valid[load]].astype(np.float64)

    first = read_rgb(seq.rgb[chosen[0]])
    h_file = first.shape[0]
    first = _pad_rows(first, seq.pad_rows)
    h0, w0 = first.shape[:2]
    native = seq.camera(w0, h0)
    out_w, out_h = int(width or w0), int(height or h0)
    intr = native if (out_w, out_h) == (w0, h0) else native.resized(out_w, out_h)
    read_depth = seq.depth_reader(intr, native, chosen[0]) if seq.depth is not None else None

    n = len(chosen)
    rgb = np.empty((n, out_h, out_w, 3), np.uint8)
    raw: list = [None] * n
    depth = np.empty((n, out_h, out_w), np.float32) if read_depth is not None else None
    instances = np.empty((n, out_h, out_w), np.int32) if seq.instances is not None else None
    extra_raw = {name: [None] * n for name in seq.extra_labels}

    def read_labels(path: Path) -> np.ndarray:
        lab = _pad_rows(read_label_image(path), seq.pad_rows, h_file)
        if seq.labels_match_rgb:
            check_size(path, lab, w0, h0)
        return (_seed_resize_labels if seq.seed_resize else resize_nearest)(lab, out_w, out_h)

    def load_one(k: int) -> None:
        num = chosen[k]
        img = first if k == 0 else _pad_rows(read_rgb(seq.rgb[num]), seq.pad_rows)
        if img.shape[:2] != (h0, w0):
            raise DatasetError(f"{seq.rgb[num]} is {img.shape[1]}x{img.shape[0]}, the sequence is {w0}x{h0}")
        rgb[k] = (_seed_resize_rgb if seq.seed_resize else resize_rgb)(img, out_w, out_h)
        raw[k] = read_labels(seq.labels[num])
        for name, files in seq.extra_labels.items():
            extra_raw[name][k] = read_labels(files[num])
        if depth is not None:
            depth[k] = read_depth(seq.depth[num])
        if instances is not None:
            instances[k] = read_labels(seq.instances[num])

    workers = num_workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in tqdm(pool.map(load_one, range(n)), total=n, desc=f"loading {folder.name}", unit="frame",
                      disable=not progress, leave=False):
            pass
    raw_labels = np.stack(raw)
    extras = {name: np.stack(v) for name, v in extra_raw.items()}
    if seq.label_map is not None:
        raw_labels = seq.label_map(raw_labels)
        extras = {name: seq.label_map(v) for name, v in extras.items()}
    if class_ids is None and extras:   # the ids present in any of the label stacks
        class_ids = np.unique(np.concatenate([np.unique(raw_labels)] + [np.unique(v) for v in extras.values()]))
    labels, ids = remap_classes(raw_labels, class_ids)
    predicted = remap_classes(extras["predicted"], ids)[0] if "predicted" in extras else None
    return SceneData(
        rgb=rgb, labels=labels, instances=instances, depth=depth, poses=poses, intrinsics=intr,
        class_names=default_class_names(ids, seq.class_table), class_ids_original=ids,
        frame_indices=np.asarray(chosen, dtype=np.int64), train_ids=train_pos.astype(np.int64),
        test_ids=test_pos.astype(np.int64), fps=seq.fps, path=folder, kind=seq.kind,
        meta=dict(seq.meta, native_intrinsics=native.to_dict(), skipped_invalid_poses=len(bad)),
        predicted_labels=predicted,
    )
