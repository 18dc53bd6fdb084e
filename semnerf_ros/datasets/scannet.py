"""Loader for ScanNet scenes.

Two layouts are understood:

* the SensReader export (``reader.py --export_color_images --export_depth_images
  --export_poses --export_intrinsics``) with the 2D label archives unpacked
  next to it::

      color/<N>.jpg    depth/<N>.png (uint16 mm)    pose/<N>.txt (4x4 camera-to-world)
      label-filt/<N>.png (uint16 ScanNet ids)      instance-filt/<N>.png (optional)
      intrinsic/intrinsic_color.txt, intrinsic/intrinsic_depth.txt (4x4 or 3x3)

* the seed's (``SSR/datasets/scannet/scannet_datasets.py``)::

      renders/{color,depth,pose}/<N>.*   <scene>_2d-label-filt/label-filt/<N>.png
      <scene>_2d-instance-filt/instance-filt/<N>.png   <scene>.txt (fx_color, mx_color, ...)

Frames whose pose is not finite (ScanNet marks lost tracking with ``-inf``)
are skipped with a warning before the train/test split, as the seed does.
Depth may have its own resolution and intrinsics: it is resampled into the
colour camera at the output resolution.  Labels are mapped from ScanNet ids to
NYU40 (or the 13-class set) with ``scannetv2-labels.combined.tsv`` when it is
found in the scene folder or up to two folders above it; ids the table does not
list keep their value, as the seed keeps them (with a warning naming them).
``pad_to_4_3`` pads the colour and label images with black rows above and below
to a 4:3 aspect before resizing, as the seed pads ScanNet's 1296x968 to 1296x972.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ..engine.geometry import Intrinsics
from .loader import FrameSequence, load_sequence
from .nyu import NYU13_CLASSES, NYU40_CLASSES
from .scene_data import DatasetError, SceneData, numbered_files, read_image, resize_depth

LABEL_MAP_FILE = "scannetv2-labels.combined.tsv"
DEFAULT_DEPTH_SCALE = 1000.0


def is_scannet_dir(path) -> bool:
    """True if ``path`` looks like a ScanNet scene (either layout)."""
    p = Path(path)
    return ((p / "color").is_dir() and (p / "pose").is_dir()) or \
        ((p / "renders" / "color").is_dir() and (p / "renders" / "pose").is_dir())


def find_label_map(folder: Path) -> Optional[Path]:
    """``scannetv2-labels.combined.tsv`` in the scene folder or up to two levels above."""
    for d in (folder, folder.parent, folder.parent.parent):
        if (d / LABEL_MAP_FILE).is_file():
            return d / LABEL_MAP_FILE
    return None


def read_label_map(path, mode: str = "nyu40") -> dict:
    """ScanNet id -> NYU40 id (``mode='nyu40'``, column ``nyu40id``) or the
    13-class id (``mode='nyu13'``, column ``eigen13id``) from the ScanNet tsv."""
    column = {"nyu40": "nyu40id", "nyu13": "eigen13id"}[mode]
    fallback = {"nyu40": 4, "nyu13": 5}[mode]
    mapping = {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{path} is empty")
        col = header.index(column) if column in header else fallback
        for row in reader:
            if not row or not row[0].strip():
                continue
            try:
                mapping[int(row[0])] = int(row[col]) if row[col].strip() else 0
            except (ValueError, IndexError) as exc:
                raise DatasetError(f"{path}: malformed row {row[:6]}: {exc}") from exc
    return mapping


def _read_matrix(path: Path) -> np.ndarray:
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read matrix {path}: {exc}") from exc
    if m.shape not in ((4, 4), (3, 3), (3, 4)):
        raise DatasetError(f"{path}: expected a 3x3 or 4x4 matrix, got shape {m.shape}")
    return m[:3, :3]


def _read_scene_txt(path: Path) -> dict:
    info = {}
    with open(path) as fh:
        for line in fh:
            if "=" in line:
                k, v = line.split("=", 1)
                info[k.strip()] = v.strip()
    return info


def _resolve_layout(folder: Path) -> dict:
    name = folder.name
    base = folder if (folder / "color").is_dir() else folder / "renders"
    if not (base / "color").is_dir():
        raise DatasetError(f"{folder} is not a ScanNet scene: no color/ or renders/color/ folder")
    if not (base / "pose").is_dir():
        raise DatasetError(f"{folder}: missing pose/ folder next to {base / 'color'}")

    def first_dir(*cands):
        return next((c for c in cands if c.is_dir()), None)

    return {
        "color": base / "color",
        "depth": first_dir(base / "depth"),
        "pose": base / "pose",
        "label": first_dir(folder / "label-filt", folder / f"{name}_2d-label-filt" / "label-filt",
                           base / "label-filt", folder / "label", folder / f"{name}_2d-label" / "label"),
        "instance": first_dir(folder / "instance-filt",
                              folder / f"{name}_2d-instance-filt" / "instance-filt",
                              base / "instance-filt", folder / "instance"),
        "intrinsic": first_dir(folder / "intrinsic", base / "intrinsic"),
        "scene_txt": folder / f"{name}.txt" if (folder / f"{name}.txt").is_file() else None,
    }


def _camera_matrices(layout: dict, folder: Path):
    """(K_color, K_depth or None)."""
    if layout["intrinsic"] is not None and (layout["intrinsic"] / "intrinsic_color.txt").is_file():
        kc = _read_matrix(layout["intrinsic"] / "intrinsic_color.txt")
        kd_path = layout["intrinsic"] / "intrinsic_depth.txt"
        kd = _read_matrix(kd_path) if kd_path.is_file() else None
        return kc, kd
    if layout["scene_txt"] is not None:
        info = _read_scene_txt(layout["scene_txt"])
        try:
            kc = np.array([[float(info["fx_color"]), 0, float(info["mx_color"])],
                           [0, float(info["fy_color"]), float(info["my_color"])], [0, 0, 1]])
        except KeyError as exc:
            raise DatasetError(f"{layout['scene_txt']}: missing {exc.args[0]}") from None
        kd = None
        if all(k in info for k in ("fx_depth", "fy_depth", "mx_depth", "my_depth")):
            kd = np.array([[float(info["fx_depth"]), 0, float(info["mx_depth"])],
                           [0, float(info["fy_depth"]), float(info["my_depth"])], [0, 0, 1]])
        return kc, kd
    raise DatasetError(f"{folder}: no camera intrinsics (intrinsic/intrinsic_color.txt or "
                       f"{folder.name}.txt)")


class _DepthResampler:
    """Resamples a depth image of its own camera into the colour camera at the
    output resolution (same optical centre assumed, as ScanNet's registered
    depth).  When the two cameras differ only by scale (within half a pixel)
    this is the validity-aware resize; otherwise a validity-aware bilinear
    lookup at the reprojected coordinates (invalid readings never blend in)."""

    def __init__(self, target: Intrinsics, depth_intr: Intrinsics):
        h, w = target.shape
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        x = (u - target.cx) / target.fx
        y = (v - target.cy) / target.fy
        self.map_x = (depth_intr.fx * x + depth_intr.cx).astype(np.float32)
        self.map_y = (depth_intr.fy * y + depth_intr.cy).astype(np.float32)
        sx, sy = depth_intr.width / w, depth_intr.height / h
        plain_x = (u + 0.5) * sx - 0.5
        plain_y = (v + 0.5) * sy - 0.5
        dev = max(np.abs(self.map_x - plain_x).max(), np.abs(self.map_y - plain_y).max())
        self.plain = bool(dev <= 0.5)
        self.size = (w, h)
        self.depth_shape = depth_intr.shape

    def __call__(self, depth_m: np.ndarray) -> np.ndarray:
        if self.plain:
            return resize_depth(depth_m, *self.size)
        d = np.asarray(depth_m, dtype=np.float32)
        valid = (np.isfinite(d) & (d > 0)).astype(np.float32)
        dz = np.where(valid > 0, d, 0.0).astype(np.float32)
        num, den = (cv2.remap(a, self.map_x, self.map_y, interpolation=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.0) for a in (dz, valid))
        out = np.zeros_like(num)
        ok = den >= 0.5
        out[ok] = num[ok] / den[ok]
        return out


def parse_scannet(path, label_mode: str = "auto", load_depth: bool = True,
                  load_instances: bool = True, pad_to_4_3: bool = False) -> FrameSequence:
    """The files, poses, cameras and label mapping of a ScanNet scene (either layout);
    ``pad_to_4_3``: the seed's padding of the colour images (module docstring)."""
    if label_mode not in ("auto", "nyu40", "nyu13", "raw"):
        raise DatasetError(f"label_mode must be auto, nyu40, nyu13 or raw, got {label_mode!r}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"ScanNet folder not found: {folder}")
    layout = _resolve_layout(folder)
    if layout["label"] is None:
        raise DatasetError(f"{folder}: no label images (label-filt/ or "
                           f"{folder.name}_2d-label-filt/label-filt/)")
    colour = numbered_files(layout["color"], "*.jpg") or numbered_files(layout["color"], "*.png")
    if not colour:
        raise DatasetError(f"no colour images in {layout['color']}")
    poses_f = numbered_files(layout["pose"], "*.txt")
    labels_f = numbered_files(layout["label"], "*.png")
    depth_f = numbered_files(layout["depth"], "*.png") if (load_depth and layout["depth"]) else None
    inst_f = numbered_files(layout["instance"], "*.png") if (load_instances and layout["instance"]) else None
    numbers = list(colour)
    for what, files in (("pose", poses_f), ("label", labels_f), ("depth", depth_f), ("instance", inst_f)):
        if files is not None:
            missing = [n for n in numbers if n not in files]
            if missing:
                raise DatasetError(f"{folder}: {len(missing)} colour frames have no {what} file "
                                   f"(first: {missing[:5]})")
    poses = np.stack([_read_matrix_4x4(poses_f[n]) for n in numbers])   # -inf: lost tracking
    kc, kd = _camera_matrices(layout, folder)
    pad = (0, 0)
    if pad_to_4_3:
        h, w = read_image(colour[numbers[0]], cv2.IMREAD_COLOR).shape[:2]
        extra = int(round(w * 3 / 4)) - h
        if extra > 0:
            pad = (extra // 2, extra - extra // 2)
            kc = kc.copy()
            kc[1, 2] += pad[0]

    def depth_reader(out: Intrinsics, native: Intrinsics, first: int):
        d0 = read_image(depth_f[first])
        hd, wd = d0.shape[:2]
        depth_intr = native.resized(wd, hd) if kd is None else Intrinsics.from_K(kd, wd, hd)  # same FOV as colour
        resampler = _DepthResampler(out, depth_intr)

        def read(path: Path) -> np.ndarray:
            d = read_image(path)
            if d.shape[:2] != resampler.depth_shape:
                raise DatasetError(f"{path} is {d.shape[1]}x{d.shape[0]}, expected "
                                   f"{resampler.depth_shape[1]}x{resampler.depth_shape[0]}")
            return resampler(d.astype(np.float32) / DEFAULT_DEPTH_SCALE)
        return read

    mapping, names_table = _label_mapping(folder, label_mode)
    effective_mode = "raw" if mapping is None else ("nyu40" if label_mode == "auto" else label_mode)
    label_map = None
    if mapping is not None:
        def label_map(raw: np.ndarray) -> np.ndarray:
            raw = raw.astype(np.int64)
            lut = np.arange(max(int(raw.max()), max(mapping)) + 1, dtype=np.int64)  # unknown ids kept (seed)
            for sid, nid in mapping.items():
                lut[sid] = nid
            ids, counts = np.unique(raw, return_counts=True)
            unknown = [(int(i), int(c)) for i, c in zip(ids, counts) if i != 0 and int(i) not in mapping]
            if unknown:
                for i, _ in unknown:
                    names_table.setdefault(i, f"scannet_{i}")
                warnings.warn(f"{folder}: ScanNet label ids missing from {LABEL_MAP_FILE} keep their value as "
                              f"class ids, as the seed keeps them (id: pixels): "
                              + ", ".join(f"{i}: {c}" for i, c in unknown[:20]), stacklevel=2)
            return lut[raw]
    return FrameSequence(folder=folder, kind="scannet", numbers=numbers, poses=poses, rgb=colour, labels=labels_f,
                         camera=lambda w, h: Intrinsics.from_K(kc, w, h), depth=depth_f, instances=inst_f,
                         depth_reader=depth_reader, label_map=label_map, class_table=names_table,
                         labels_match_rgb=False, fps=30.0, pad_rows=pad,
                         meta={"label_mode": effective_mode, "depth_scale": DEFAULT_DEPTH_SCALE,
                               "padded_rows": list(pad)})


def load_scannet(path, width: Optional[int] = 320, height: Optional[int] = 240,
                 train_step: int = 5, test_offset: int = 2, total_num: int = 0,
                 label_mode: str = "auto", class_ids: Optional[Sequence[int]] = None,
                 load_depth: bool = True, load_instances: bool = True,
                 progress: bool = True, num_workers: Optional[int] = None,
                 sample_step: Optional[int] = None, pad_to_4_3: bool = False,
                 seed_resize: bool = False) -> SceneData:
    """Load a ScanNet scene folder (:func:`parse_scannet`, then :func:`~.loader.load_sequence`).

    Args:
        width, height: output resolution (None = the colour images' own).
        train_step (alias ``sample_step``, the seed's name), test_offset, total_num:
            the seed's split over the frames with valid poses.
        label_mode: ``nyu40`` / ``nyu13`` (map ScanNet ids with the tsv, which must
            exist), ``raw`` (keep the ids in the files), ``auto`` (nyu40 if the tsv
            is found, else raw with a warning).
        class_ids: ids (after the label mapping) to keep; default: those present.
        pad_to_4_3: pad the colour images to 4:3 first, as the seed (module docstring).
        seed_resize: resize colours and labels as the seed (:class:`~.loader.FrameSequence`).
    Raises:
        DatasetError naming the missing or mismatched file.
    """
    if sample_step is not None:
        train_step = int(sample_step)
    seq = parse_scannet(path, label_mode, load_depth, load_instances, pad_to_4_3)
    seq.seed_resize = seed_resize
    return load_sequence(seq, width, height, train_step, test_offset, total_num, class_ids, progress, num_workers)


def _read_matrix_4x4(path: Path) -> np.ndarray:
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read pose {path}: {exc}") from exc
    if m.size != 16:
        raise DatasetError(f"{path}: a pose must be a 4x4 matrix, got {m.size} numbers")
    return m.reshape(4, 4)


def _label_mapping(folder: Path, label_mode: str):
    """(ScanNet id -> target id dict or None, target id -> name dict)."""
    if label_mode not in ("auto", "nyu40", "nyu13", "raw"):
        raise DatasetError(f"label_mode must be auto, nyu40, nyu13 or raw, got {label_mode!r}")
    if label_mode == "raw":
        return None, {}
    tsv = find_label_map(folder)
    if tsv is None:
        if label_mode == "auto":
            warnings.warn(f"{folder}: {LABEL_MAP_FILE} not found; keeping the raw ScanNet ids "
                          f"(pass label_mode='raw' to silence)", stacklevel=3)
            return None, {}
        raise DatasetError(f"{folder}: label_mode={label_mode!r} needs {LABEL_MAP_FILE} in the "
                           f"scene folder or up to two folders above it")
    mode = "nyu40" if label_mode == "auto" else label_mode
    names = NYU40_CLASSES if mode == "nyu40" else NYU13_CLASSES
    return read_label_map(tsv, mode), dict(enumerate(names))
