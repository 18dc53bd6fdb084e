"""The in-memory form every dataset loader returns, and the helpers loaders share
(class remapping, train/test split, image resampling, natural file ordering)."""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ..engine.frame import Frame
from ..engine.geometry import Intrinsics


class DatasetError(ValueError):
    """A dataset folder that is missing, incomplete or inconsistent."""


@dataclass
class SceneData:
    """A loaded posed RGB-D sequence with semantic labels.

    Attributes:
        rgb: (N, H, W, 3) uint8 RGB.
        labels: (N, H, W) int32 class ids remapped to ``0..num_classes-1``; 0 = void.
        instances: (N, H, W) int32 instance ids as in the files, or None.
        depth: (N, H, W) float32 z-depth in metres, 0 = invalid, or None.
        poses: (N, 4, 4) float64 camera-to-world, metres, OpenCV optical axes.
        intrinsics: pinhole intrinsics at the loaded resolution.
        class_names: names indexed by remapped id; ``class_names[0] == "void"``.
        class_ids_original: (num_classes,) int64; remapped id -> id in the files.
        frame_indices: (N,) int64 frame numbers of the files.
        train_ids, test_ids: positions into the arrays (not file numbers).
        fps: frame rate used for :meth:`frame` stamps (30 unless the data says otherwise).
        path: the folder it came from; kind: "replica" | "scannet".
        meta: extra facts from the files (e.g. ``instance_to_class``, ``depth_scale``).
        predicted_labels: (N, H, W) int32 labels a network predicted (``replica_nyu_cnn``: the
            CNN's), remapped like ``labels``; the trainer trains on them and scores against
            ``labels`` (the ground truth).  None for the other datasets.
    """

    rgb: np.ndarray
    labels: np.ndarray
    instances: Optional[np.ndarray]
    depth: Optional[np.ndarray]
    poses: np.ndarray
    intrinsics: Intrinsics
    class_names: list
    class_ids_original: np.ndarray
    frame_indices: np.ndarray
    train_ids: np.ndarray
    test_ids: np.ndarray
    fps: float = 30.0
    path: Optional[Path] = None
    kind: str = ""
    frame_id: str = "camera"
    meta: dict = field(default_factory=dict)
    predicted_labels: Optional[np.ndarray] = None

    @property
    def num_classes(self) -> int:
        """Number of class ids, void included."""
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    def frame(self, i: int) -> Frame:
        """The i-th loaded image (a position into the arrays) as a :class:`Frame`.

        ``stamp`` is the file frame number / ``fps`` seconds, so subsampled
        sequences keep their true timing; ``index`` is the file frame number.
        The image arrays are views into this scene's arrays (copy before editing).
        """
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range for a scene of {n} frames")
        idx = int(self.frame_indices[i])
        return Frame(
            rgb=self.rgb[i],
            pose=self.poses[i].copy(),
            intrinsics=self.intrinsics,
            labels=self.labels[i],
            depth=None if self.depth is None else self.depth[i],
            stamp=idx / float(self.fps),
            frame_id=self.frame_id,
            index=idx,
            meta={"position": int(i % n)},
        )

    def summary(self) -> str:
        h, w = self.intrinsics.shape
        return (f"{self.kind or 'scene'} {self.path}: {len(self)} frames {w}x{h}, "
                f"{len(self.train_ids)} train / {len(self.test_ids)} test, "
                f"{self.num_classes} classes (void included), "
                f"depth {'yes' if self.depth is not None else 'no'}, "
                f"instances {'yes' if self.instances is not None else 'no'}")


# --------------------------------------------------------------------------- shared helpers

_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def file_number(path: Path) -> int:
    """The last run of digits in a file's stem (``rgb_12.png`` -> 12)."""
    m = _NUMBER.search(Path(path).stem)
    if m is None:
        raise DatasetError(f"file name {Path(path).name!r} carries no frame number")
    return int(m.group(1))


def numbered_files(folder: Path, pattern: str) -> dict:
    """``{frame number: path}`` for files in ``folder`` matching a glob ``pattern``,
    in natural (numeric) order.  Raises :class:`DatasetError` on duplicates."""
    out: dict = {}
    for p in sorted(Path(folder).glob(pattern)):
        n = file_number(p)
        if n in out:
            raise DatasetError(f"two files carry frame number {n} in {folder}: "
                               f"{out[n].name} and {p.name}")
        out[n] = p
    return dict(sorted(out.items()))


def split_ids(total: int, train_step: int = 5, test_offset: int = 2) -> tuple:
    """The seed's split over ``total`` frames: train = range(0, total, step),
    test = train + offset (ids past the end dropped).  ``test_offset`` 0 makes
    the test set equal the training set (as the seed's ``step // 2`` does for step 1)."""
    if train_step < 1:
        raise DatasetError(f"train_step must be >= 1, got {train_step}")
    if not 0 <= test_offset < train_step:
        raise DatasetError(f"test_offset must satisfy 0 <= test_offset < train_step "
                           f"({train_step}), got {test_offset}")
    train = np.arange(0, total, train_step, dtype=np.int64)
    test = train + test_offset
    test = test[test < total]
    return train, test


def select_frames(total: int, train_step: int, test_offset: int, total_num: int) -> tuple:
    """Which of ``total`` frames to load and where train/test sit among them.

    Returns ``(load, train_pos, test_pos)``: sorted frame positions to load and
    positions of the train and test frames in that loaded list."""
    if total_num < 0:
        raise DatasetError(f"total_num must be >= 0 (0 = all), got {total_num}")
    if total_num:
        if total_num > total:
            warnings.warn(f"total_num={total_num} but only {total} frames exist; using {total}",
                          stacklevel=3)
        total = min(total, total_num)
    train, test = split_ids(total, train_step, test_offset)
    load = np.union1d(train, test)
    if load.size == 0:
        raise DatasetError("no frames selected (empty sequence?)")
    return load, np.searchsorted(load, train), np.searchsorted(load, test)


def remap_classes(raw_labels: np.ndarray, class_ids: Optional[Sequence[int]] = None) -> tuple:
    """Map file class ids onto ``0..C-1`` keeping 0 = void.

    ``class_ids``: the original ids to keep, in order (void 0 is put first if
    missing); default: every id present in ``raw_labels`` (the seed's rule).
    Ids not in ``class_ids`` become void.  Returns ``(labels int32, class_ids_original int64)``.
    """
    raw = np.asarray(raw_labels)
    if raw.size and int(raw.min()) < 0:
        raise DatasetError(f"negative class id {int(raw.min())} in the label images")
    present = np.unique(raw).astype(np.int64)
    if class_ids is None:
        ids = present
    else:
        ids = np.asarray(list(class_ids), dtype=np.int64)
        if len(np.unique(ids)) != len(ids):
            raise DatasetError("class id list has duplicates")
    ids = np.concatenate([[0], ids[ids != 0]])
    top = int(max(int(raw.max()) if raw.size else 0, int(ids.max())))
    lut = np.zeros(top + 1, dtype=np.int32)  # unknown ids -> void
    lut[ids] = np.arange(len(ids), dtype=np.int32)
    return lut[raw], ids


def resize_rgb(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area averaging when shrinking, bilinear when enlarging."""
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    interp = cv2.INTER_AREA if width <= w and height <= h else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


def resize_nearest(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resampling (labels, instances): never invents ids."""
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    # Pixel-centre sampling (cv2's INTER_NEAREST floors, shifting by half a pixel).
    ys = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return img[ys[:, None], xs[None, :]]


def resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resampling that ignores invalid (0) readings: each output is the
    validity-weighted mean of its bilinear neighbours, 0 where fewer than half
    the weight is valid.  Input/output float32 metres."""
    h, w = depth.shape[:2]
    d = np.asarray(depth, dtype=np.float32)
    if (w, h) == (width, height):
        return d
    valid = (np.isfinite(d) & (d > 0)).astype(np.float32)
    dz = np.where(valid > 0, d, 0.0).astype(np.float32)
    interp = cv2.INTER_AREA if width <= w and height <= h else cv2.INTER_LINEAR
    num = cv2.resize(dz, (width, height), interpolation=interp)
    den = cv2.resize(valid, (width, height), interpolation=interp)
    out = np.zeros_like(num)
    ok = den >= 0.5
    out[ok] = num[ok] / den[ok]
    return out


def read_image(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """cv2.imread that raises :class:`DatasetError` naming the file instead of returning None."""
    img = cv2.imread(str(path), flags)
    if img is None:
        raise DatasetError(f"cannot read image {path} (missing or corrupt)")
    return img


def read_rgb(path: Path) -> np.ndarray:
    """An 8-bit colour image as (H, W, 3) uint8 RGB (cv2 reads BGR)."""
    img = read_image(path, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(img[:, :, ::-1])


def read_label_image(path: Path) -> np.ndarray:
    """A single-channel integer label / instance image, as stored."""
    img = read_image(path, cv2.IMREAD_UNCHANGED)
    if img.ndim != 2:
        raise DatasetError(f"{path}: expected a single-channel integer label image, got shape "
                           f"{img.shape} (colour-coded label images are not supported)")
    if not np.issubdtype(img.dtype, np.integer):
        raise DatasetError(f"{path}: label image must hold integers, got {img.dtype}")
    return img


def default_class_names(ids: np.ndarray, table: Optional[dict] = None) -> list:
    """Names for original class ids: ``table[id]`` where known, else ``class_<id>``; id 0 -> 'void'."""
    table = table or {}
    names = []
    for i in ids:
        i = int(i)
        if i == 0:
            names.append("void")
        else:
            names.append(str(table.get(i, f"class_{i}")))
    return names
