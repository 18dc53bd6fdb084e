"""The paper's label-corruption tasks, on label stacks.

Each function takes a stack of label maps ``(N, H, W)`` of integer class ids
(``0`` = void), an explicit ``numpy.random.Generator`` where randomness is
involved, never modifies its input, and returns new ``int32`` labels (plus
masks / statistics where relevant).  Semantics follow the seed's
``SSR/datasets/replica/replica_datasets.py`` and ``train_SSR_main.py``;
where this module deviates, the docstring says so.

Counts derived from ratios use the seed's truncation ``int(n * ratio)``
(:func:`ratio_count`), made robust to float error (``0.29 * 100`` gives 29,
not 28).

Two protocols (``protocol=``, the trainer's ``--protocol``): ``"semnerf"``
keeps this package's documented choices (void pixels never perturbed, flips
always to another valid class, exact patch sizes, one sampling grid for any
image size); ``"seed"`` draws exactly what the seed's code draws: pixel noise
on ``int(H*W*ratio)`` pixels of the whole image with classes from all ids
including void, region flips to any id including void and the region's own,
the seed's label-propagation growth (it may overshoot the target) and its
sparse super-resolution grid ``[::f, ::f]``; counts truncate as Python's
``int(n * ratio)`` does.

Tasks:

* :func:`pixel_noise` -- pixel-wise denoising (``--pixel_denoising``)
* :func:`sparse_views`, :func:`select_label_frames` -- sparse label frames
  (``--sparse_views``, ``--label_map_ids``)
* :func:`region_flip` -- region-wise denoising of chosen instances
  (``--region_denoising``)
* :func:`super_resolution_labels` -- label super-resolution (``--super_resolution``)
* :func:`label_propagation` -- single clicks / partial regions (``--label_propagation``)
* :func:`segmentation_noise` -- not a seed task: errors like a segmentation
  network's (missed thin / small objects, confused similar classes, bleeding
  boundaries, false blobs, all persistent along the trajectory; one strength in
  [0, 1]; module :mod:`semnerf_ros.segmentation_noise`), ``--segmentation_denoising``
* :func:`corrupt_labels` -- one entry point for the label streams of bags, demos
  and benchmarks: ``kind`` = ``pixel`` | ``region`` | ``segmentation`` | ``none``
* :func:`apply_task` -- the seed's flag dispatch; :func:`save_corrupted` /
  :func:`load_corrupted` for ``--visualise_save`` / ``--load_saved``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import cv2
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from .colormap import colorize_labels
from .io import jsonio
from .io.atomic import atomic_output, atomic_write_text
from .segmentation_noise import SIMILAR_CLASS_GROUPS, class_confusion  # noqa: F401  (re-exported)
from .segmentation_noise import segmentation_noise as _segmentation_noise
from .visualize import write_image

#: The seed's ``train_SSR_main.py`` task flags and their defaults.
TASK_DEFAULTS: dict[str, Any] = {
    "sparse_views": False,
    "sparse_ratio": 0.0,
    "label_map_ids": [],
    "random_sample": False,
    "pixel_denoising": False,
    "pixel_noise_ratio": 0.0,
    "region_denoising": False,
    "region_noise_ratio": 0.0,
    "uniform_flip": False,
    "instance_id": [3, 6, 7, 9, 11, 12, 13, 48],   # the 8 chairs of Replica room_2
    "super_resolution": False,
    "sr_factor": 8,
    "dense_sr": False,
    "label_propagation": False,
    "partial_perc": 0.0,
    "visualise_save": False,
    "load_saved": False,
}

#: Extensions of this package (not seed flags), read from the same args when present.
EXTRA_DEFAULTS: dict[str, Any] = {
    "protocol": "semnerf",            # seed: the seed's exact draws | semnerf: this package's (module docstring)
    "propagation_regions": "class",   # class (seed) | instance | component
    "segmentation_denoising": False,  # labels corrupted like a segmentation network's output
    "segmentation_noise_strength": 0.0,
}

#: Label corruptions of :func:`corrupt_labels`.
NOISE_KINDS = ("pixel", "region", "segmentation", "none")

PROPAGATION_REGIONS = ("class", "instance", "component")
#: How the label tasks draw (module docstring).
PROTOCOLS = ("seed", "semnerf")
CORRUPTED_FORMAT = "semnerf_ros.corrupted_labels/1"


class TaskError(ValueError):
    """Task arguments or inputs that cannot produce training labels."""


# ----------------------------------------------------------------------------- helpers


def ratio_count(n: int, ratio: float) -> int:
    """``int(n * ratio)`` as the seed computes counts, without float truncation
    errors (``ratio_count(100, 0.29) == 29``)."""
    return int(math.floor(round(float(n) * float(ratio), 9)))


def seed_count(n: int, ratio: float) -> int:
    """``int(n * ratio)`` exactly as the seed computes it (float error included:
    ``seed_count(100, 0.29) == 28``); the counts of ``protocol="seed"``."""
    return int(n * ratio)


def _count_fn(protocol: str):
    if protocol not in PROTOCOLS:
        raise TaskError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return seed_count if protocol == "seed" else ratio_count


def evenly_spaced(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (the seed's
    ``q * i + min(i, r)`` with ``q, r = divmod(n, k)``)."""
    if k <= 0:
        return []
    if k > n:
        raise TaskError(f"cannot pick {k} evenly spaced items out of {n}")
    q, r = divmod(n, k)
    return [q * i + min(i, r) for i in range(k)]


def _check_labels(labels, name: str = "labels") -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise TaskError(f"{name} must be a stack (N, H, W), got shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise TaskError(f"{name} must hold integer ids, got dtype {lab.dtype}")
    if lab.size and int(lab.min()) < 0:
        raise TaskError(f"{name} hold a negative id {int(lab.min())}")
    return lab


def _check_classes(lab: np.ndarray, num_classes: int) -> int:
    num_classes = int(num_classes)
    if num_classes < 2:
        raise TaskError(f"num_classes must be >= 2 (void plus one class), got {num_classes}")
    if lab.size and int(lab.max()) >= num_classes:
        raise TaskError(f"labels hold class id {int(lab.max())} but num_classes is {num_classes}")
    return num_classes


def _check_ratio(value: float, name: str) -> float:
    v = float(value)
    if not (0.0 <= v <= 1.0):
        raise TaskError(f"{name} must be in [0, 1], got {value}")
    return v


def _check_frame_mask(frame_mask, n: int) -> np.ndarray:
    if frame_mask is None:
        return np.ones(n, dtype=bool)
    m = np.asarray(frame_mask, dtype=bool).ravel()
    if m.shape != (n,):
        raise TaskError(f"frame mask has {m.size} entries for {n} frames")
    return m


def _draw_classes(orig: np.ndarray, num_classes: int, rng: np.random.Generator,
                  exclude_original: bool) -> np.ndarray:
    """Random valid classes (1..C-1), one per entry of ``orig``; with
    ``exclude_original`` never equal to the entry (void entries draw from all)."""
    orig = np.asarray(orig, dtype=np.int64)
    if not exclude_original:
        return rng.integers(1, num_classes, size=orig.shape)
    if num_classes < 3:
        raise TaskError("drawing a class other than the original needs >= 2 valid classes "
                        f"(num_classes >= 3), got num_classes={num_classes}")
    out = np.empty(orig.shape, dtype=np.int64)
    void = orig <= 0
    out[void] = rng.integers(1, num_classes, size=int(void.sum()))
    r = rng.integers(1, num_classes - 1, size=int((~void).sum()))
    o = orig[~void]
    out[~void] = r + (r >= o)          # skip the original: uniform over the others
    return out


# ----------------------------------------------------------------------------- pixel noise


def pixel_noise(labels, ratio: float, num_classes: int, rng: np.random.Generator,
                exclude_original: bool = False, frame_mask=None,
                protocol: str = "semnerf") -> tuple[np.ndarray, dict]:
    """Pixel-wise label noise (the seed's ``add_pixel_wise_noise_label``).

    In every frame (of ``frame_mask``, default all) exactly
    ``ratio_count(valid, ratio)`` of the non-void pixels, chosen uniformly
    without replacement, get a class drawn uniformly from the valid classes
    ``1..num_classes-1``.  As in the seed the drawn class may equal the
    original one (so slightly fewer pixels change than are perturbed);
    ``exclude_original=True`` always draws a different class.

    Deviations from the seed (on purpose, ``protocol="semnerf"``): the seed
    perturbs ``int(H*W*ratio)`` pixels of the whole image, void pixels
    included, and may draw the void class 0; here void pixels stay void and the
    count is of valid pixels.  ``protocol="seed"`` does exactly what the seed
    does: ``int(H*W*ratio)`` positions of the whole image (a uniform random
    subset), each given a class drawn uniformly from ``0..num_classes-1``
    (void and the original class included; ``exclude_original`` must be False).

    Returns ``(noisy (N,H,W) int32, info)`` with ``info`` holding
    ``perturbed_pixels``, ``changed_pixels``, ``valid_pixels`` (over the
    affected frames) and the measured ``perturbed_ratio`` / ``changed_ratio``
    (of the valid pixels; of all pixels under ``protocol="seed"``), ``protocol``.
    """
    lab = _check_labels(labels)
    num_classes = _check_classes(lab, num_classes)
    ratio = _check_ratio(ratio, "pixel noise ratio")
    frames = _check_frame_mask(frame_mask, lab.shape[0])
    count = _count_fn(protocol)
    seed = protocol == "seed"
    if seed and exclude_original:
        raise TaskError("the seed's pixel noise may draw the original class: exclude_original needs "
                        "protocol='semnerf'")
    out = lab.astype(np.int32, copy=True)
    perturbed = changed = valid_total = 0
    for i in np.flatnonzero(frames):
        flat = out[i].reshape(-1)
        if seed:   # the seed: np.random.permutation(H*W)[:k] and np.random.choice(C, k)
            valid_total += flat.size
            k = count(flat.size, ratio)
            idx = rng.permutation(flat.size)[:k]
            new = rng.integers(0, num_classes, size=k)
        else:
            valid = np.flatnonzero(flat != 0)
            valid_total += valid.size
            k = ratio_count(valid.size, ratio)
            if k == 0:
                continue
            idx = rng.choice(valid, size=k, replace=False)
            new = _draw_classes(flat[idx], num_classes, rng, exclude_original)
        changed += int(np.count_nonzero(new != flat[idx]))
        flat[idx] = new
        perturbed += k
    info = {
        "requested_ratio": ratio,
        "protocol": protocol,
        "frames": int(frames.sum()),
        "valid_pixels": int(valid_total),
        "perturbed_pixels": int(perturbed),
        "changed_pixels": int(changed),
        "perturbed_ratio": perturbed / valid_total if valid_total else 0.0,
        "changed_ratio": changed / valid_total if valid_total else 0.0,
    }
    return out, info


# ----------------------------------------------------------------------------- sparse views


def sparse_views(num_frames: int, sparse_ratio: float, random_sample: bool,
                 rng: Optional[np.random.Generator] = None, protocol: str = "semnerf") -> np.ndarray:
    """Which label frames to keep, ``(N,)`` bool (the seed's ``sample_label_maps``).

    ``sparse_ratio`` is the fraction of label frames **dropped**: exactly
    ``K = ratio_count(N, sparse_ratio)`` frames lose their labels.
    ``random_sample``: the K dropped frames are a uniform random subset
    (needs ``rng``).  Otherwise evenly spaced as the seed: for ratios <= 0.5
    the K dropped frames are spread evenly, above 0.5 the ``N - K`` kept
    frames are.  ``protocol="seed"`` counts with :func:`seed_count`.
    """
    n = int(num_frames)
    if n < 0:
        raise TaskError(f"number of frames must be >= 0, got {num_frames}")
    ratio = _check_ratio(sparse_ratio, "sparse_ratio")
    k = _count_fn(protocol)(n, ratio)
    keep = np.ones(n, dtype=bool)
    if k == 0:
        return keep
    if random_sample:
        if rng is None:
            raise TaskError("random_sample needs a numpy random Generator")
        keep[rng.permutation(n)[:k]] = False
    elif ratio <= 0.5:
        keep[evenly_spaced(n, k)] = False
    else:
        keep[:] = False
        keep[evenly_spaced(n, n - k)] = True
    return keep


def select_label_frames(frame_indices: Sequence[int], label_map_ids: Iterable[Optional[int]]) -> np.ndarray:
    """Keep labels only on the frames whose dataset index is in ``label_map_ids``
    (the seed's ``sample_specific_labels``); ``(N,)`` bool over ``frame_indices``.

    ``label_map_ids`` empty or ``[None]`` keeps none (no semantic supervision).
    Raises :class:`TaskError` for ids that are not training frames.
    """
    frames = [int(f) for f in frame_indices]
    keep = np.zeros(len(frames), dtype=bool)
    ids = [i for i in label_map_ids if i is not None]
    position = {f: k for k, f in enumerate(frames)}
    missing = [int(i) for i in ids if int(i) not in position]
    if missing:
        raise TaskError(f"label_map_ids {missing} are not training frames "
                        f"(training frames: {frames[:10]}{'...' if len(frames) > 10 else ''})")
    keep[[position[int(i)] for i in ids]] = True
    return keep


# ----------------------------------------------------------------------------- region flips


def region_flip(labels, instances, instance_ids: Sequence[int], flip_ratio: float, uniform_flip: bool,
                num_classes: int, rng: np.random.Generator, frame_mask=None,
                exclude_original: bool = True, protocol: str = "semnerf") -> tuple[np.ndarray, dict]:
    """Region-wise label noise on chosen instances (the seed's
    ``add_instance_wise_noise_label``, the chairs of Replica room_2).

    For every instance id: the frames (of ``frame_mask``) where it is visible
    are sorted by its area, ascending; ``ratio_count(visible, flip_ratio)`` of
    them are chosen -- ``uniform_flip=False``: the smallest-area ones (partial
    views, the likeliest to be wrong); ``uniform_flip=True``: evenly spaced
    along the area-sorted list, as the seed (deterministic).  In each chosen
    frame the **whole** instance region gets one random class.

    Deviation from the seed: the seed draws the new class from all ids
    including void 0 and the instance's own class; here it is drawn from the
    valid classes other than the region's current class (majority non-void
    label), so every flip is a real label error.  ``exclude_original=False``
    allows the original class again (void stays excluded).  ``protocol="seed"``
    draws as the seed, ``np.random.choice(num_classes)``: any id, void and the
    region's own class included (``exclude_original`` is not read), and counts
    with :func:`seed_count`.

    Returns ``(labels (N,H,W) int32, info)``; ``info["flips"]`` lists every flip
    as ``{"instance", "frame", "from", "to", "pixels"}``, ``info["visible_frames"]``
    and ``info["flipped_frames"]`` give per-instance counts (same order as
    ``instance_ids``).
    """
    lab = _check_labels(labels)
    inst = _check_labels(instances, "instances")
    if inst.shape != lab.shape:
        raise TaskError(f"instances {inst.shape} and labels {lab.shape} differ in shape")
    num_classes = _check_classes(lab, num_classes)
    flip_ratio = _check_ratio(flip_ratio, "region flip ratio")
    frames = _check_frame_mask(frame_mask, lab.shape[0])
    count = _count_fn(protocol)
    out = lab.astype(np.int32, copy=True)
    ids = [int(i) for i in instance_ids]
    # pixel area of every requested instance in every frame: one pass over the stack
    id_arr = np.asarray(ids, dtype=np.int64)
    area_table = np.zeros((len(ids), lab.shape[0]), dtype=np.int64)
    for m in range(lab.shape[0]):
        vals, counts = np.unique(inst[m], return_counts=True)
        pos = np.clip(np.searchsorted(vals, id_arr), 0, max(vals.size - 1, 0))
        hit = vals[pos] == id_arr if vals.size else np.zeros(len(ids), dtype=bool)
        area_table[hit, m] = counts[pos[hit]]
    flips, visible_counts, flipped_counts = [], [], []
    for row, iid in enumerate(ids):
        areas = area_table[row]
        visible = [int(m) for m in np.flatnonzero((areas > 0) & frames)]
        visible.sort(key=lambda m: areas[m])            # stable: ties keep frame order
        n, k = len(visible), count(len(visible), flip_ratio)
        if k == 0:
            chosen = []
        elif not uniform_flip:
            chosen = visible[:k]
        elif flip_ratio <= 0.5:
            chosen = [visible[j] for j in evenly_spaced(n, k)]
        else:
            not_flipped = set(evenly_spaced(n, n - k))
            chosen = [visible[j] for j in range(n) if j not in not_flipped]
        for m in chosen:
            region = inst[m] == iid
            vals = out[m][region]
            nonvoid = vals[vals > 0]
            orig = int(np.bincount(nonvoid).argmax()) if nonvoid.size else 0
            if protocol == "seed":
                new = int(rng.integers(0, num_classes))
            else:
                new = int(_draw_classes(np.array([orig]), num_classes, rng, exclude_original)[0])
            out[m][region] = new
            flips.append({"instance": iid, "frame": m, "from": orig, "to": new, "pixels": int(areas[m])})
        visible_counts.append(n)
        flipped_counts.append(len(chosen))
    info = {"instance_ids": ids, "visible_frames": visible_counts, "flipped_frames": flipped_counts,
            "flips": flips, "flip_ratio": flip_ratio, "uniform_flip": bool(uniform_flip), "protocol": protocol}
    return out, info


# ----------------------------------------------------------------------------- super-resolution


def sr_sampling_grid(height: int, width: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution rows and columns that a ``factor``-times down-sampling
    keeps: exactly what the seed's ``cv2.resize(..., (W // f, H // f),
    INTER_NEAREST)`` samples, i.e. ``0, f, 2f, ...`` (the top-left pixel of
    each f x f block; ``W // f`` columns) when the size divides by ``f``.
    """

    f = int(factor)
    if f < 1:
        raise TaskError(f"sr_factor must be a positive integer, got {factor}")
    h, w = int(height), int(width)
    if h // f < 1 or w // f < 1:
        raise TaskError(f"sr_factor {f} leaves no pixel of a {w}x{h} image")
    rows = cv2.resize(np.arange(h, dtype=np.int32).reshape(h, 1), (1, h // f),
                      interpolation=cv2.INTER_NEAREST).ravel()
    cols = cv2.resize(np.arange(w, dtype=np.int32).reshape(1, w), (w // f, 1),
                      interpolation=cv2.INTER_NEAREST).ravel()
    return rows.astype(np.int64), cols.astype(np.int64)


def super_resolution_labels(labels, factor: int, dense: bool,
                            protocol: str = "semnerf") -> tuple[np.ndarray, np.ndarray]:
    """Label super-resolution supervision (the seed's ``super_resolve_label``).

    The labels are down-sampled ``factor`` times with nearest neighbour
    (samples at :func:`sr_sampling_grid`).

    * ``dense=True``: the low-res labels are up-sampled back to full size with
      nearest neighbour (each f x f block takes its sample); every pixel is
      supervised, ``valid_mask`` all True.
    * ``dense=False`` (sparse): only the full-res pixels at the sampling grid
      keep their labels, all others become void; ``valid_mask`` is True
      exactly on the grid.

    The seed's sparse mode keeps ``[::f, ::f]``, the same grid when H and W
    divide by f; here both modes use one grid for any size (``protocol="seed"``:
    the sparse mode keeps ``[::f, ::f]`` as the seed, ``ceil(W / f)`` columns).
    ``factor == 1`` returns a copy, all valid.

    Returns ``(labels_train (N,H,W) int32, valid_mask (N,H,W) bool)``.
    """

    lab = _check_labels(labels)
    n, h, w = lab.shape
    f = int(factor)
    if f < 1:
        raise TaskError(f"sr_factor must be a positive integer, got {factor}")
    out = lab.astype(np.int32, copy=True)
    if f == 1:
        return out, np.ones(lab.shape, dtype=bool)
    rows, cols = sr_sampling_grid(h, w, f)
    if dense:
        # Which low-res row / column each full-res pixel takes: the seed's
        # cv2.resize(low, (W, H), INTER_NEAREST) applied to index images.
        up_r = cv2.resize(np.arange(rows.size, dtype=np.int32).reshape(-1, 1), (1, h),
                          interpolation=cv2.INTER_NEAREST).ravel()
        up_c = cv2.resize(np.arange(cols.size, dtype=np.int32).reshape(1, -1), (w, 1),
                          interpolation=cv2.INTER_NEAREST).ravel()
        low = lab[:, rows][:, :, cols]
        out = low[:, up_r][:, :, up_c].astype(np.int32)
        return out, np.ones(lab.shape, dtype=bool)
    _count_fn(protocol)
    grid = np.zeros((h, w), dtype=bool)
    if protocol == "seed":
        grid[::f, ::f] = True
    else:
        grid[np.ix_(rows, cols)] = True
    out[:, ~grid] = 0
    return out, np.broadcast_to(grid, lab.shape).copy()


# ----------------------------------------------------------------------------- label propagation


def _region_map(lab: np.ndarray, inst: Optional[np.ndarray], regions: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer map of the frame's regions (0 = void) and the class of each region id."""
    if regions == "class":
        return lab.astype(np.int64), np.arange(int(lab.max()) + 1 if lab.size else 1)
    if regions == "instance":
        base = int(inst.max()) + 1
        key = lab.astype(np.int64) * base + inst.astype(np.int64)
        valid = lab > 0
        uniq, inv = np.unique(key[valid], return_inverse=True)
        rmap = np.zeros(lab.shape, dtype=np.int64)
        rmap[valid] = inv.ravel() + 1
        return rmap, np.concatenate([[0], uniq // base])
    # connected components (8-connected) of every class
    rmap = np.zeros(lab.shape, dtype=np.int64)
    region_class = [0]
    for c in np.unique(lab):
        if c == 0:
            continue
        comp, k = ndimage.label(lab == c, structure=np.ones((3, 3), dtype=bool))
        rmap[comp > 0] = comp[comp > 0] + len(region_class) - 1
        region_class.extend([int(c)] * k)
    return rmap, np.asarray(region_class)


def _grow_patch(region: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """A compact patch of exactly ``target`` pixels of ``region`` (bool, cropped).

    The seed's growth: dilate (5 x 5) from a random seed pixel and keep what
    falls inside the region; if growth stalls (the seed's area is exhausted)
    start another random seed in the uncovered part.  The last ring is trimmed
    to the pixels nearest the latest seed so the count is exact.
    """

    ys, xs = np.nonzero(region)
    j = int(rng.integers(ys.size))
    sy, sx = int(ys[j]), int(xs[j])
    grown = np.zeros(region.shape, dtype=np.uint8)
    grown[sy, sx] = 1
    kept = np.zeros(region.shape, dtype=bool)
    kept[sy, sx] = True
    n_kept = 1
    kernel = np.ones((5, 5), dtype=np.uint8)
    while n_kept < target:
        grown = cv2.dilate(grown, kernel)
        cand = region & (grown > 0)
        n_cand = int(cand.sum())
        if n_cand == n_kept:                       # stalled: new seed elsewhere in the region
            uy, ux = np.nonzero(region & ~kept)
            j = int(rng.integers(uy.size))
            sy, sx = int(uy[j]), int(ux[j])
            grown[sy, sx] = 1
            kept[sy, sx] = True
            n_kept += 1
            continue
        if n_cand > target:                        # trim the last ring
            ny, nx = np.nonzero(cand & ~kept)
            order = np.argsort((ny - sy) ** 2 + (nx - sx) ** 2, kind="stable")[: target - n_kept]
            kept[ny[order], nx[order]] = True
            break
        kept, n_kept = cand, n_cand
    return kept


def _grow_patch_seed(region: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """The seed's growth, unchanged: dilate a one-pixel mask (5 x 5) from a random pixel of the
    region until the part inside the region holds at least ``target`` pixels (the last ring is
    kept whole, so it may overshoot); when growth stalls, one more random pixel of the region's
    uncovered part joins the mask (it counts from the next dilation on)."""
    ys, xs = np.nonzero(region)
    j = int(rng.integers(ys.size))
    mask = np.zeros(region.shape, dtype=np.uint8)
    mask[ys[j], xs[j]] = 1
    kept = mask.astype(bool)
    kernel = np.ones((5, 5), dtype=np.uint8)
    while int(kept.sum()) < target:
        before = int(kept.sum())
        mask = cv2.dilate(mask, kernel)
        kept = region & (mask > 0)
        if int(kept.sum()) == before:
            uy, ux = np.nonzero(region & ~kept)
            j = int(rng.integers(uy.size))
            mask[uy[j], ux[j]] = 1
    return kept


def label_propagation(labels, rng: np.random.Generator, partial_perc: float = 0.0, instances=None,
                      regions: str = "class", progress: bool = True,
                      protocol: str = "semnerf") -> tuple[np.ndarray, dict]:
    """Sparse user annotations for label propagation (the seed's
    ``simulate_user_click_partial``); everything not kept becomes void.

    Regions (``regions``): ``"class"`` -- each class of a frame is one region,
    as the seed; ``"instance"`` -- each (class, instance id) pair (needs
    ``instances``); ``"component"`` -- each 8-connected component of each class.

    * ``partial_perc == 0``: single click -- one random pixel per region.
    * ``partial_perc = p > 0`` (percent): a compact patch grown from a random
      seed pixel inside each region (the seed's 5x5 dilation growth, with new
      seeds when a part is exhausted), of exactly ``max(1, int(p/100 * area))``
      pixels (the seed stops at the first ring reaching the target, so it may
      overshoot; here the last ring is trimmed).  ``protocol="seed"`` grows exactly as the
      seed (:func:`_grow_patch_seed`, target ``int(p/100 * area)``, at least the seed pixel).

    Returns ``(labels (N,H,W) int32, info)`` with ``info`` holding ``regions``
    (count), ``kept_pixels``, ``valid_pixels`` and ``kept_ratio``.
    """
    lab = _check_labels(labels)
    perc = float(partial_perc)
    if not 0.0 <= perc <= 100.0:
        raise TaskError(f"partial_perc is a percentage in [0, 100], got {partial_perc}")
    if regions not in PROPAGATION_REGIONS:
        raise TaskError(f"regions must be one of {PROPAGATION_REGIONS}, got {regions!r}")
    inst = None
    if regions == "instance":
        if instances is None:
            raise TaskError("label propagation with regions='instance' needs instance maps")
        inst = _check_labels(instances, "instances")
        if inst.shape != lab.shape:
            raise TaskError(f"instances {inst.shape} and labels {lab.shape} differ in shape")
    count = _count_fn(protocol)
    out = np.zeros(lab.shape, dtype=np.int32)
    n_regions = 0
    for i in tqdm(range(lab.shape[0]), desc="label propagation", leave=False, disable=not progress):
        rmap, region_class = _region_map(lab[i], None if inst is None else inst[i], regions)
        for rid, sl in enumerate(ndimage.find_objects(rmap), start=1):
            if sl is None or region_class[rid] == 0:
                continue
            region = rmap[sl] == rid
            n_regions += 1
            if perc == 0.0:
                ys, xs = np.nonzero(region)
                j = int(rng.integers(ys.size))
                keep = np.zeros(region.shape, dtype=bool)
                keep[ys[j], xs[j]] = True
            else:
                target = max(1, count(int(region.sum()), perc / 100.0))
                keep = (_grow_patch_seed if protocol == "seed" else _grow_patch)(region, target, rng)
            out[i][sl][keep] = int(region_class[rid])
    valid = int(np.count_nonzero(lab))
    kept = int(np.count_nonzero(out))
    info = {"partial_perc": perc, "regions_mode": regions, "regions": n_regions,
            "kept_pixels": kept, "valid_pixels": valid, "kept_ratio": kept / valid if valid else 0.0}
    return out, info


# ----------------------------------------------------------------------------- segmentation-like noise


def segmentation_noise(labels, strength: float, num_classes: int, rng: np.random.Generator,
                       class_names: Optional[Sequence[str]] = None, instances=None, frame_mask=None,
                       correlation_frames: float = 8.0, modes: Optional[Sequence[str]] = None
                       ) -> tuple[np.ndarray, dict]:
    """Errors like a segmentation network's, frames in trajectory order (see
    :func:`semnerf_ros.segmentation_noise.segmentation_noise`); raises :class:`TaskError`
    for bad arguments.  Returns ``(noisy (N,H,W) int32, info)``."""
    lab = _check_labels(labels)
    num_classes = _check_classes(lab, num_classes)
    strength = _check_ratio(strength, "segmentation noise strength")
    inst = None if instances is None else _check_labels(instances, "instances")
    frames = _check_frame_mask(frame_mask, lab.shape[0])
    try:
        return _segmentation_noise(lab, strength, num_classes, rng, class_names=class_names, instances=inst,
                                   frame_mask=frames, correlation_frames=correlation_frames, modes=modes)
    except ValueError as exc:
        raise TaskError(str(exc)) from exc


def corrupt_labels(labels, kind: str, strength: float, num_classes: int, rng: np.random.Generator,
                   instances=None, class_names: Optional[Sequence[str]] = None,
                   frame_mask=None) -> tuple[np.ndarray, dict]:
    """The label corruption ``kind`` at ``strength`` in [0, 1]; frames in trajectory order.

    * ``pixel``: :func:`pixel_noise` (``strength`` = fraction of the valid pixels of
      every frame given a random class, the seed's ``--pixel_noise_ratio``);
    * ``region``: :func:`region_flip` of every instance (``strength`` = fraction of the
      frames showing an instance, spread over its area-sorted views, where the whole
      instance gets one wrong class); needs ``instances``;
    * ``segmentation``: :func:`segmentation_noise` (errors like a segmentation
      network's; ``class_names`` drive which classes are confused, ``instances``
      make objects the unit of error);
    * ``none``: the labels unchanged.

    Returns ``(noisy (N,H,W) int32, info)`` (``info["kind"]``, ``info["strength"]`` and
    the function's statistics)."""
    if kind not in NOISE_KINDS:
        raise TaskError(f"label noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    strength = _check_ratio(strength, f"{kind} noise strength")
    if kind == "none":
        out, info = _check_labels(labels).astype(np.int32, copy=True), {}
    elif kind == "pixel":
        out, info = pixel_noise(labels, strength, num_classes, rng, frame_mask=frame_mask)
    elif kind == "region":
        if instances is None:
            raise TaskError("region noise needs instance maps")
        ids = [int(i) for i in np.unique(np.asarray(instances)) if i != 0]
        out, info = region_flip(labels, instances, ids, strength, uniform_flip=True, num_classes=num_classes,
                                rng=rng, frame_mask=frame_mask)
    else:
        out, info = segmentation_noise(labels, strength, num_classes, rng, class_names=class_names,
                                       instances=instances, frame_mask=frame_mask)
    return out, dict(info, kind=kind, strength=strength)


# ----------------------------------------------------------------------------- save / load


def save_corrupted(path, labels, masks, meta: dict) -> Path:
    """Store corrupted training labels for reproducible runs (``--visualise_save``).

    Writes ``path`` (``.npz``: ``labels`` int32, ``masks`` bool, ``meta`` as a
    JSON string) atomically, and the same metadata beside it as readable
    ``<stem>.json``.  ``meta`` should hold the task args and the RNG seed.
    Returns the ``.npz`` path.
    """
    p = Path(path)
    if p.suffix != ".npz":
        p = p.with_name(p.name + ".npz")
    p.parent.mkdir(parents=True, exist_ok=True)
    lab = np.asarray(labels, dtype=np.int32)
    msk = np.asarray(masks, dtype=bool)
    meta_text = jsonio.dumps(dict(meta, format=CORRUPTED_FORMAT))
    with atomic_output(p, "wb") as fh:
        np.savez_compressed(fh, labels=lab, masks=msk, meta=np.array(meta_text))
    atomic_write_text(p.with_suffix(".json"), meta_text)
    return p


def load_corrupted(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read what :func:`save_corrupted` wrote: ``(labels int32, masks bool, meta)``."""
    p = Path(path)
    if not p.is_file() and p.with_name(p.name + ".npz").is_file():
        p = p.with_name(p.name + ".npz")
    if not p.is_file():
        raise TaskError(f"saved corrupted labels not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as data:
            labels = data["labels"].astype(np.int32)
            masks = data["masks"].astype(bool)
            meta = json.loads(str(data["meta"]))
    except (KeyError, ValueError, OSError) as exc:
        raise TaskError(f"{p}: not a corrupted-labels file ({exc})") from exc
    if meta.get("format") != CORRUPTED_FORMAT:
        raise TaskError(f"{p}: unknown format {meta.get('format')!r}, expected {CORRUPTED_FORMAT!r}")
    return labels, masks, meta


# ----------------------------------------------------------------------------- dispatch


def task_args(args=None) -> dict:
    """The seed's task flags (plus :data:`EXTRA_DEFAULTS`) from an
    ``argparse.Namespace``, a dict or None, defaults filled in, types checked."""
    if args is None:
        src = {}
    elif isinstance(args, argparse.Namespace):
        src = vars(args)
    elif isinstance(args, dict):
        src = args
    else:
        raise TaskError(f"task args must be a dict or argparse.Namespace, got {type(args).__name__}")
    out = {}
    for key, default in {**TASK_DEFAULTS, **EXTRA_DEFAULTS}.items():
        value = src.get(key, default)
        if value is None:
            value = default
        try:
            if isinstance(default, bool):
                if isinstance(value, str):
                    if value.strip().lower() not in ("true", "false", "yes", "no", "1", "0"):
                        raise ValueError("expected true/false")
                    value = value.strip().lower() in ("true", "yes", "1")
                value = bool(value)
            elif isinstance(default, int):
                if float(value) != int(float(value)):
                    raise ValueError("not an integer")
                value = int(float(value))
            elif isinstance(default, float):
                value = float(value)
            elif isinstance(default, list):
                value = [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])
                         if v is not None]
            else:
                value = str(value)
        except (TypeError, ValueError) as exc:
            raise TaskError(f"task flag {key}: bad value {value!r} ({exc})") from exc
        out[key] = value
    return out


_TASK_ORDER = ("super_resolution", "label_propagation", "pixel_denoising", "segmentation_denoising",
               "region_denoising", "sparse_views")
# Flags that decide the corrupted labels (compared on --load_saved).
_RESULT_KEYS = tuple(k for k in list(TASK_DEFAULTS) + list(EXTRA_DEFAULTS)
                     if k not in ("visualise_save", "load_saved"))


def _save_visualisation(npz_path: Path, labels: np.ndarray, keep: np.ndarray, num_classes: int,
                        progress: bool = True) -> Path:

    vis_dir = npz_path.with_name(npz_path.stem + "_vis")
    vis_dir.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(labels.shape[0]), desc="saving label images", leave=False,
                  disable=not progress):
        tag = "" if keep[i] else "_dropped"
        write_image(vis_dir / f"vis_sem_class_{i:03d}{tag}.png", colorize_labels(labels[i], num_classes))
    return vis_dir


def apply_task(args, labels, instances, train_ids: Optional[Sequence[int]], rng: np.random.Generator,
               num_classes: int, saved_path=None, seed: Optional[int] = None,
               progress: bool = True, class_names: Optional[Sequence[str]] = None
               ) -> tuple[np.ndarray, np.ndarray, str]:
    """Corrupt the training labels as the seed's ``train_SSR_main.py`` does.

    Precedence (one task runs): ``super_resolution``; else ``label_propagation``
    (then ``sparse_views`` frame dropping if set); else ``pixel_denoising``
    (on the frames kept by ``sparse_views`` if set); else ``segmentation_denoising``
    (an extension: :func:`segmentation_noise` at ``segmentation_noise_strength``,
    frames in the given order, likewise); else ``region_denoising``
    (likewise); else ``sparse_views`` (``label_map_ids`` if given, else
    ``sparse_ratio`` / ``random_sample``); else the clean labels.

    Args:
        args: ``argparse.Namespace`` or dict with the seed's flag names
            (:data:`TASK_DEFAULTS`); other entries are ignored.
        labels: clean training labels ``(N, H, W)``, void 0.
        instances: instance maps ``(N, H, W)`` or None (region_denoising needs them).
        train_ids: dataset frame index of each training frame (for
            ``label_map_ids``); default ``range(N)``.
        rng: the generator every random choice is drawn from.
        num_classes: class count including void.
        saved_path: ``.npz`` file for ``visualise_save`` (write labels, masks,
            metadata and colourised PNGs in ``<stem>_vis/``) and ``load_saved``
            (read them back instead of corrupting; the stored task flags must
            match ``args``).
        seed: the seed ``rng`` was made from, recorded in the saved metadata.
        class_names: names of the class ids (``segmentation_denoising`` confuses
            classes by name; default ``class_<i>``).

    Returns:
        ``(labels_train (N,H,W) int32, label_mask_per_frame (N,) bool,
        description)``; frames whose labels are dropped are all void with
        mask False.
    """
    a = task_args(args)
    lab = _check_labels(labels)
    num_classes = _check_classes(lab, num_classes)
    n = lab.shape[0]
    frame_ids = list(range(n)) if train_ids is None else [int(t) for t in train_ids]
    if len(frame_ids) != n:
        raise TaskError(f"{len(frame_ids)} train ids for {n} label frames")
    if (a["visualise_save"] or a["load_saved"]) and saved_path is None:
        raise TaskError("visualise_save / load_saved need saved_path (where corrupted labels are stored)")

    if a["load_saved"]:
        return _load_saved_task(saved_path, a, lab.shape, num_classes)
    out, keep, desc, stats = _corrupt(a, lab, instances, frame_ids, rng, num_classes, progress, class_names)
    if a["visualise_save"]:
        meta = {"task_args": {k: a[k] for k in _RESULT_KEYS}, "seed": seed, "num_classes": num_classes,
                "train_ids": frame_ids, "shape": list(lab.shape), "description": desc, "stats": stats}
        npz = save_corrupted(saved_path, out, keep, meta)
        _save_visualisation(npz, out, keep, num_classes, progress)
    return out, keep, desc


def _load_saved_task(saved_path, a: dict, shape: tuple, num_classes: int) -> tuple:
    """``load_saved``: the stored labels, checked against this run's task flags and shape."""
    n = shape[0]
    saved, masks, meta = load_corrupted(saved_path)
    if saved.shape != shape or masks.shape != (n,):
        raise TaskError(f"{saved_path}: saved labels are {saved.shape} (masks {masks.shape}) "
                        f"but the training labels are {shape}")
    stored = meta.get("task_args", {})
    differ = [k for k in _RESULT_KEYS if k in stored and stored[k] != a[k]]
    if differ:
        raise TaskError(f"{saved_path}: saved with different task flags: "
                        + ", ".join(f"{k}={stored[k]!r} (now {a[k]!r})" for k in differ))
    if int(meta.get("num_classes", num_classes)) != num_classes:
        raise TaskError(f"{saved_path}: saved for {meta['num_classes']} classes, now {num_classes}")
    return saved, masks, f"{meta.get('description', 'saved labels')} [loaded from {saved_path}]"


def _corrupt(a: dict, lab: np.ndarray, instances, frame_ids: list, rng: np.random.Generator, num_classes: int,
             progress: bool, class_names) -> tuple:
    """The seed's dispatch: ``(labels, label mask per frame, description, statistics)``."""
    n = lab.shape[0]
    chosen = next((t for t in _TASK_ORDER if a[t]), None)
    combines_sparse = chosen in ("label_propagation", "pixel_denoising", "segmentation_denoising",
                                 "region_denoising")
    ignored = [t for t in _TASK_ORDER
               if a[t] and t != chosen and not (t == "sparse_views" and combines_sparse)]
    keep = np.ones(n, dtype=bool)
    stats: dict = {}

    protocol = a["protocol"]
    _count_fn(protocol)

    def sparse_keep() -> np.ndarray:
        return sparse_views(n, a["sparse_ratio"], a["random_sample"], rng, protocol=protocol)

    if chosen == "super_resolution":
        out, valid = super_resolution_labels(lab, a["sr_factor"], a["dense_sr"], protocol=protocol)
        mode = "dense" if a["dense_sr"] else "sparse"
        stats = {"supervised_pixel_ratio": float(valid.mean()) if valid.size else 0.0}
        desc = f"super_resolution: x{a['sr_factor']} {mode} labels"
    elif chosen == "label_propagation":
        out, stats = label_propagation(lab, rng, a["partial_perc"], instances,
                                       regions=a["propagation_regions"], progress=progress, protocol=protocol)
        what = "single click" if a["partial_perc"] == 0 else f"{a['partial_perc']:g}% patches"
        desc = (f"label_propagation: {what} per {a['propagation_regions']} region "
                f"({stats['regions']} regions, {100 * stats['kept_ratio']:.3f}% of valid pixels kept)")
        if a["sparse_views"]:
            keep = sparse_keep()
    elif chosen == "pixel_denoising":
        if a["sparse_views"]:
            keep = sparse_keep()
        out, stats = pixel_noise(lab, a["pixel_noise_ratio"], num_classes, rng, frame_mask=keep,
                                 protocol=protocol)
        of = "of all pixels, the seed's draws" if protocol == "seed" else "of valid pixels"
        desc = (f"pixel_denoising: noise ratio {a['pixel_noise_ratio']:g} "
                f"(measured: {stats['perturbed_ratio']:.4f} perturbed, "
                f"{stats['changed_ratio']:.4f} changed, {of})")
    elif chosen == "segmentation_denoising":
        if a["sparse_views"]:
            keep = sparse_keep()
        out, stats = segmentation_noise(lab, a["segmentation_noise_strength"], num_classes, rng,
                                        class_names=class_names, instances=instances, frame_mask=keep)
        stats = {k: v for k, v in stats.items() if k != "confusion"}
        desc = (f"segmentation_denoising: strength {a['segmentation_noise_strength']:g} "
                f"(measured: {stats['changed_ratio']:.4f} of valid pixels changed)")
    elif chosen == "region_denoising":
        if instances is None:
            raise TaskError("region_denoising needs instance maps (the dataset has none)")
        if a["sparse_views"]:
            keep = sparse_keep()
        out, stats = region_flip(lab, instances, a["instance_id"], a["region_noise_ratio"], a["uniform_flip"],
                                 num_classes, rng, frame_mask=keep, protocol=protocol)
        desc = (f"region_denoising: flip ratio {a['region_noise_ratio']:g}, "
                f"{'uniform' if a['uniform_flip'] else 'smallest-area'} frames, "
                f"{len(stats['flips'])} instance regions flipped")
    elif chosen == "sparse_views":
        out = lab.astype(np.int32, copy=True)
        if a["label_map_ids"]:
            keep = select_label_frames(frame_ids, a["label_map_ids"])
            desc = f"sparse_views: labels only on frames {a['label_map_ids']}"
        else:
            keep = sparse_keep()
            desc = (f"sparse_views: sparse ratio {a['sparse_ratio']:g} "
                    f"({'random' if a['random_sample'] else 'evenly spaced'})")
    else:
        out = lab.astype(np.int32, copy=True)
        desc = "full dense supervision"
    if combines_sparse and a["sparse_views"]:
        desc += f" + sparse_views ratio {a['sparse_ratio']:g}"
    out[~keep] = 0
    desc += f"; labels on {int(keep.sum())}/{n} frames"
    if ignored:
        desc += f" (ignored by precedence: {', '.join(ignored)})"

    return out, keep, desc, stats
