"""Label noise that looks like a segmentation network's output, not like independent pixels.

:func:`segmentation_noise` corrupts a stack of label maps ``(N, H, W)`` given in
trajectory order, with one ``strength`` in [0, 1] (0 = clean) scaling five error
modes a real segmenter makes:

* **missed small and thin objects** -- regions below an area, and the parts of
  any region thinner than a few pixels (legs, poles, frames), are absorbed into
  the class around them;
* **class confusion** -- whole objects (instances, or classes when no instance
  maps are given) are taken for a similar class (:func:`class_confusion`:
  cabinet/shelf, rug/floor, table/desk, chair/sofa, picture/window/monitor, ...,
  by class *name*, with a fallback to the classes a class borders in the
  images), fully or in part;
* **boundary errors** -- labels bleed across object edges: the map is warped by
  a smooth random displacement of a few pixels, which erodes one side of an
  edge and dilates the other, and nothing away from edges;
* **blob-shaped false regions** -- smooth blobs take the label of a class the
  underlying one is confused with;
* **persistence along the trajectory** -- every random field and every object's
  error state evolves slowly from frame to frame (first-order autoregressive,
  ``correlation_frames`` e-folding time), so a mistake repeats over consecutive
  frames, as a network's does, instead of being drawn anew.

Void (0) stays void and no valid pixel becomes void.  Deterministic for a given
``numpy.random.Generator``; never modifies its input.  :mod:`semnerf_ros.tasks`
exposes it as ``corrupt_labels(..., kind="segmentation")``.

Calibration (input mIoU of the 60 training views, 320x240, mean of synthetic houses
1, 4, 9 and 13; ``python -m semnerf_ros.segmentation_noise --seeds 1 4 9 13 --strengths
0.2 0.25 0.3 0.5 0.75 1``): strength 0.2 -> 0.68, 0.25 -> 0.64, 0.3 -> 0.60, 0.5 -> 0.49,
0.75 -> 0.40, 1.0 -> 0.33 (50 % pixel noise: 0.22).
"""
from __future__ import annotations

import math
import re
from typing import Optional, Sequence

import cv2
import numpy as np
from scipy import ndimage
from scipy.special import ndtr, ndtri

#: Groups of classes a segmentation network confuses, by name (lower case; a class
#: matches a group when one of its words or its whole name is listed).
SIMILAR_CLASS_GROUPS: tuple = (
    ("cabinet", "shelf", "shelves", "bookshelf", "bookcase", "dresser", "wardrobe", "cupboard", "drawer",
     "nightstand", "counter", "sideboard"),
    ("rug", "floor", "carpet", "mat", "floormat"),
    ("table", "desk", "counter", "nightstand", "stand"),
    ("chair", "sofa", "couch", "stool", "bench", "armchair", "seat"),
    ("picture", "window", "mirror", "painting", "poster", "frame", "whiteboard", "board", "blinds", "curtain"),
    ("monitor", "tv", "television", "screen", "computer", "picture"),
    ("cushion", "pillow", "sofa", "couch", "bed", "blanket", "cloth", "clothes"),
    ("wall", "door", "panel", "column", "pillar"),
    ("ceiling", "wall"),
    ("ceiling", "lamp", "light", "vent"),
    ("book", "books", "shelf", "bookshelf", "box", "paper"),
    ("lamp", "light", "chandelier", "lampshade"),
    ("plant", "vase", "flower", "pot"),
    ("door", "cabinet", "wardrobe", "refrigerator"),
    ("window", "wall", "blinds", "curtain"),
)

#: How far (in standard deviations) an object's error state must fall below the threshold that
#: started a confusion before the confusion ends.
HYSTERESIS = 0.5

#: The error modes, in the order they are applied.
MODES = ("missed", "confused", "boundary", "blobs")

#: What strength 1 means for each error mode (scaled linearly by the strength).
FULL = {
    "region_error_fraction": 0.35,   # share of the time an object (up to 5 % of the image) is misclassified
    "thin_radius": 0.006,            # opening radius, fraction of the image width
    "small_area": 0.002,             # regions below this fraction of the image vanish
    "boundary_shift": 0.012,         # displacement (std), fraction of the image width
    "blob_coverage": 0.10,           # fraction of the image in false blobs
}


def _words(name: str) -> set:
    n = str(name).strip().lower()
    return {n} | set(w for w in re.split(r"[\s_\-/.,]+", n) if w)


def class_confusion(class_names: Sequence[str], adjacency: Optional[np.ndarray] = None) -> np.ndarray:
    """Row-stochastic ``(C, C)`` matrix: which class a network takes class ``a`` for.

    Classes that share a group of :data:`SIMILAR_CLASS_GROUPS` (matched by name) are
    confused with each other; a class with no named partner falls back to the classes
    it borders (``adjacency``, counts of touching pixels, e.g. from
    :func:`class_adjacency`), else to every other class.  Void (0) rows and columns
    are zero; the diagonal is zero."""
    names = [str(c) for c in class_names]
    C = len(names)
    words = [_words(n) for n in names]
    M = np.zeros((C, C), np.float64)
    for a in range(1, C):
        for grp in SIMILAR_CLASS_GROUPS:
            g = set(grp)
            if words[a] & g:
                for b in range(1, C):
                    if b != a and words[b] & g:
                        M[a, b] += 1.0
    for a in range(1, C):
        if M[a].sum() > 0:
            continue
        if adjacency is not None and np.asarray(adjacency)[a, 1:].sum() > 0:
            row = np.asarray(adjacency, np.float64)[a].copy()
            row[0] = 0.0
            row[a] = 0.0
            M[a] = row
        if M[a].sum() == 0 and C > 2:
            M[a, 1:] = 1.0
            M[a, a] = 0.0
    s = M.sum(1, keepdims=True)
    return np.divide(M, s, out=np.zeros_like(M), where=s > 0)


def class_adjacency(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` counts of horizontally / vertically touching pixel pairs of two classes."""
    lab = np.asarray(labels)
    A = np.zeros((num_classes, num_classes), np.int64)
    for a, b in ((lab[..., :, 1:], lab[..., :, :-1]), (lab[..., 1:, :], lab[..., :-1, :])):
        m = a != b
        np.add.at(A, (a[m].astype(np.int64), b[m].astype(np.int64)), 1)
    return A + A.T


class _Fields:
    """Smooth random fields (unit variance, correlation length ``cell`` px) that evolve
    from frame to frame as ``f_t = rho f_{t-1} + sqrt(1 - rho^2) e_t``."""

    def __init__(self, rng: np.random.Generator, shape: tuple, channels: int, cell: float, rho: float):

        self._cv2 = cv2
        h, w = shape
        self.shape = shape
        self.grid = (int(math.ceil(h / cell)) + 3, int(math.ceil(w / cell)) + 3)
        self.rho = rho
        self.rng = rng
        self.state = rng.standard_normal((channels, *self.grid)).astype(np.float32)
        # interpolation shrinks the variance; measure the factor once on a large sample
        probe = rng.standard_normal((32, 32)).astype(np.float32)
        up = cv2.resize(probe, (int(32 * cell), int(32 * cell)), interpolation=cv2.INTER_CUBIC)
        self.gain = np.float32(1.0 / max(float(up.std()), 1e-6))
        self.cell = cell

    def step(self) -> np.ndarray:
        self.state = (self.rho * self.state + math.sqrt(1 - self.rho ** 2)
                      * self.rng.standard_normal(self.state.shape).astype(np.float32))
        h, w = self.shape
        gh, gw = self.grid
        out = np.empty((len(self.state), h, w), np.float32)
        for c, s in enumerate(self.state):
            up = self._cv2.resize(s, (int(gw * self.cell), int(gh * self.cell)), interpolation=self._cv2.INTER_CUBIC)
            o = self.cell_offset()
            out[c] = up[o:o + h, o:o + w] * self.gain
        return out

    def cell_offset(self) -> int:
        return int(self.cell)


def _fill_from_neighbours(lab: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Pixels in ``removed`` take the label of the nearest kept non-void pixel."""
    keep = ~removed & (lab > 0)
    if not removed.any() or not keep.any():
        return lab
    _, (iy, ix) = ndimage.distance_transform_edt(~keep, return_indices=True)
    out = lab.copy()
    out[removed] = lab[iy[removed], ix[removed]]
    return out


def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= r * r + r).astype(np.uint8)


def segmentation_noise(labels, strength: float, num_classes: int, rng: np.random.Generator,
                       class_names: Optional[Sequence[str]] = None, instances=None, frame_mask=None,
                       correlation_frames: float = 8.0, modes: Optional[Sequence[str]] = None) -> tuple:
    """Corrupt ``labels`` (N, H, W) -- frames in trajectory order -- like a segmentation
    network at ``strength`` in [0, 1] (see the module docstring).

    ``class_names`` (default ``class_<i>``) drive the confusion matrix; ``instances``
    (N, H, W), when given, make objects the unit of confusion and of missing small
    objects (else each class region is); ``frame_mask`` selects the frames to corrupt
    (the others pass through clean, but the error states still evolve over them);
    ``correlation_frames``: e-folding time (in frames) of the errors' persistence;
    ``modes``: a subset of :data:`MODES` to apply (default all; for ablations and tests).

    Returns ``(noisy (N,H,W) int32, info)``; ``info`` has the changed pixel ratio, the
    pixels changed by each mode (``missed``, ``confused``, ``boundary``, ``blobs``) and
    the confusion matrix used.
    """
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"labels must be a stack (N, H, W), got shape {lab.shape}")
    s = float(strength)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"segmentation noise strength must be in [0, 1], got {strength}")
    n, h, w = lab.shape
    names = list(class_names) if class_names is not None else ["void"] + [f"class_{i}" for i in range(1, num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    inst = None if instances is None else np.asarray(instances)
    if inst is not None and inst.shape != lab.shape:
        raise ValueError(f"instances {inst.shape} and labels {lab.shape} differ in shape")
    use = set(MODES if modes is None else modes)
    if use - set(MODES):
        raise ValueError(f"unknown segmentation noise modes {sorted(use - set(MODES))}; known: {MODES}")
    frames = np.ones(n, bool) if frame_mask is None else np.asarray(frame_mask, bool).ravel()
    if frames.shape != (n,):
        raise ValueError(f"frame mask has {frames.size} entries for {n} frames")
    out = lab.astype(np.int32, copy=True)
    conf = class_confusion(names, class_adjacency(lab, num_classes))
    info = {"strength": s, "frames": int(frames.sum()), "missed": 0, "confused": 0, "boundary": 0, "blobs": 0,
            "changed_pixels": 0, "valid_pixels": int(np.count_nonzero(lab[frames])), "changed_ratio": 0.0,
            "confusion": conf.round(4).tolist()}
    if s == 0.0 or n == 0:
        return out, info

    rho = math.exp(-1.0 / max(float(correlation_frames), 1e-3))
    # -- per-object error states, all drawn up front (deterministic, independent of the images)
    if inst is not None:
        ids = np.unique(inst)
        ids = ids[ids > 0]
    else:
        ids = np.arange(1, num_classes)
    K = len(ids)
    z = np.empty((K, n), np.float32)
    z[:, 0] = rng.standard_normal(K)
    e = rng.standard_normal((K, n)).astype(np.float32)
    for t in range(1, n):
        z[:, t] = rho * z[:, t - 1] + math.sqrt(1 - rho ** 2) * e[:, t]
    # large objects (walls, floors) are mistaken less often than small ones: an object's
    # error rate falls with the square root of its mean visible area beyond 5 % of the image
    region_map_all = inst if inst is not None else lab
    area = np.zeros(K)
    for i, k in enumerate(ids):
        m = region_map_all == k
        seen = m.any(axis=(1, 2))
        area[i] = m.sum() / max(1, seen.sum()) / float(h * w) if seen.any() else 0.0
    p_err = FULL["region_error_fraction"] * s * np.minimum(1.0, np.sqrt(0.05 / np.maximum(area, 1e-9)))
    tau = ndtri(1.0 - np.clip(p_err, 1e-9, 1.0 - 1e-9)).astype(np.float32)       # per object
    # ... and then only in part (a patch of a wall taken for a window, not the whole wall)
    max_cover = np.clip(np.sqrt(0.05 / np.maximum(area, 1e-9)), 0.25, 1.0)
    episode_u = rng.random((K, n))                      # draws of the wrong class, one per episode
    offsets = rng.normal(0.0, 0.6, K).astype(np.float32)  # where in the object its error shows first
    index_of = {int(k): i for i, k in enumerate(ids)}
    target = np.zeros(K, np.int64)                       # current wrong class of each object (0 = none)

    cell = max(4.0, 0.08 * w)
    fields = _Fields(rng, (h, w), 5, cell, rho)          # coverage, flow x, flow y, blobs, blob class
    r_thin = int(round(FULL["thin_radius"] * s * w)) if "missed" in use else 0
    small = FULL["small_area"] * s * h * w if "missed" in use else 0.0
    shift = FULL["boundary_shift"] * s * w if "boundary" in use else 0.0
    blob_q = float(ndtri(1.0 - FULL["blob_coverage"] * s)) if "blobs" in use else np.inf
    # a network mostly takes an object for something that looks alike *and* is around:
    # partners that occur in these images are 30x likelier than absent ones
    present = np.bincount(lab.reshape(-1), minlength=num_classes)[:num_classes] > 0
    pick = conf * np.where(present, 1.0, 1.0 / 30)[None, :]
    partners = [np.flatnonzero(pick[c] > 0) for c in range(num_classes)]
    cum = [np.cumsum(pick[c][p]) for c, p in enumerate(partners)]
    yy, xx = np.mgrid[0:h, 0:w]

    def draw(c: int, u) -> np.ndarray:
        p = partners[c]
        if len(p) == 0:
            return np.full(np.shape(u), c)
        return p[np.minimum(np.searchsorted(cum[c], np.asarray(u) * cum[c][-1], side="right"), len(p) - 1)]

    for t in range(n):
        F = fields.step()
        # the objects' states evolve on every frame; an episode starts when the state rises above
        # tau and lasts until it falls HYSTERESIS below (a mistake is not dropped at once)
        active = (z[:, t] > tau) | ((target != 0) & (z[:, t] > tau - HYSTERESIS))
        starting = active & (target == 0)
        target[~active] = 0
        if not frames[t]:
            continue
        clean = lab[t].astype(np.int32)
        cur = clean.copy()
        # -- missed small and thin objects
        removed = np.zeros((h, w), bool)
        if r_thin >= 1:

            kern = _disk(r_thin)
            for c in np.unique(cur):
                if c == 0:
                    continue
                m = (cur == c).astype(np.uint8)
                opened = cv2.morphologyEx(m, cv2.MORPH_OPEN, kern)
                removed |= (m > 0) & (opened == 0)
        region_map = inst[t] if inst is not None else cur
        ids_t, areas = np.unique(region_map, return_counts=True)
        for rid, area in zip(ids_t, areas):
            if rid != 0 and area < small:
                removed |= (region_map == rid) & (cur > 0)
        if removed.all() or (removed & (cur > 0)).sum() >= (cur > 0).sum():
            removed[:] = False
        before = cur
        cur = _fill_from_neighbours(cur, removed)
        info["missed"] += int(np.count_nonzero(cur != before))
        # -- confused objects (whole or partly, the part growing with the error)
        before = cur.copy()
        for rid in (ids_t if "confused" in use else ()):
            if rid == 0 or int(rid) not in index_of:
                continue
            k = index_of[int(rid)]
            if not active[k]:
                continue
            region = (region_map == rid) & (clean > 0)
            if not region.any():
                continue
            cls = int(np.bincount(clean[region]).argmax())
            if starting[k] or target[k] == 0:
                target[k] = int(draw(cls, episode_u[k, t]))
            if target[k] == cls or target[k] == 0:
                continue
            cover = float(np.clip(0.5 + 0.6 * (z[k, t] - tau[k] + HYSTERESIS), 0.5, 1.0)) * float(max_cover[k])
            part = region & (F[0] + offsets[k] < ndtri(cover)) if cover < 0.999 else region
            if not part.any():
                part = region
            cur[part] = target[k]
        info["confused"] += int(np.count_nonzero(cur != before))
        # -- boundary errors: warp by a smooth displacement (moves edges, not interiors)
        before = cur
        if shift > 0:
            sy = np.clip(np.rint(yy + shift * F[2]), 0, h - 1).astype(np.int64)
            sx = np.clip(np.rint(xx + shift * F[1]), 0, w - 1).astype(np.int64)
            warped = cur[sy, sx]
            cur = np.where(warped > 0, warped, cur)
        info["boundary"] += int(np.count_nonzero(cur != before))
        # -- blob-shaped false regions, their class smooth in space and time
        before = cur
        blob = (F[3] > blob_q) & (clean > 0)
        if blob.any():
            u = ndtr(F[4][blob])
            new = np.empty(int(blob.sum()), np.int64)
            under = cur[blob]
            for c in np.unique(under):
                m = under == c
                new[m] = draw(int(c), u[m])
            cur = cur.copy()
            cur[blob] = new
        info["blobs"] += int(np.count_nonzero(cur != before))
        cur[clean == 0] = 0
        out[t] = cur
    changed = int(np.count_nonzero(out != lab))
    info["changed_pixels"] = changed
    info["changed_ratio"] = changed / info["valid_pixels"] if info["valid_pixels"] else 0.0
    return out, info
