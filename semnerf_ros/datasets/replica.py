"""Loader for the Replica sequences rendered for Semantic-NeRF (and the built-in
synthetic scene, which writes the same layout).

Folder layout (as the seed's ``ReplicaDatasetCache`` reads it)::

    rgb/rgb_<N>.png                         8-bit colour
    depth/depth_<N>.png                     uint16, metres * depth_scale (1000)
    semantic_class/semantic_class_<N>.png   uint8/uint16 class ids, 0 = void
    semantic_instance/semantic_instance_<N>.png   uint16 instance ids (optional)
    traj_w_c.txt                            one row-major 4x4 camera-to-world per line
    intrinsics.json                         optional: fx fy cx cy width height hfov
                                            depth_scale class_names [fps instance_to_class]
    info_semantic.json                      optional: Replica's {"classes": [{"id", "name"}]}

Without ``intrinsics.json`` the camera is the seed's: hfov 90 degrees, centred
principal point, square pixels.  Poses use OpenCV optical camera axes.

The seed's ``replica_nyu_cnn`` dataset (:func:`load_replica_nyu_cnn`) is the same layout with two
more label folders: labels a CNN predicted (``CNN_semantic_class_<nyu_mode>/``), which training
uses, and the ground truth mapped to the same NYU classes, which scores.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..engine.geometry import Intrinsics
from .loader import FrameSequence, check_size, load_sequence
from .nyu import NYU13_CLASSES, NYU34_CLASSES
from .scene_data import DatasetError, SceneData, numbered_files, read_image, resize_depth

DEFAULT_HFOV_DEG = 90.0
DEFAULT_DEPTH_SCALE = 1000.0


def is_replica_dir(path) -> bool:
    """True if ``path`` looks like a Replica-layout folder."""
    p = Path(path)
    return (p / "traj_w_c.txt").is_file() and (p / "rgb").is_dir()


def read_trajectory(path) -> np.ndarray:
    """``traj_w_c.txt`` as (N, 4, 4) float64 camera-to-world poses."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"trajectory file not found: {path}")
    try:
        rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DatasetError(f"{path}: cannot parse poses: {exc}") from exc
    if rows.size == 0:
        raise DatasetError(f"{path}: holds no poses")
    if rows.shape[1] != 16:
        raise DatasetError(f"{path}: each line must hold 16 numbers (a row-major 4x4), "
                           f"got {rows.shape[1]}")
    return rows.reshape(-1, 4, 4)


def read_intrinsics_file(path) -> dict:
    """The optional ``intrinsics.json`` as a dict ({} if absent)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        with open(path) as fh:
            info = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read intrinsics: {exc}") from exc
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return info


def _class_table(folder: Path, info: dict) -> dict:
    """Original class id -> name from intrinsics.json or Replica's info_semantic.json."""
    table: dict = {}
    names = info.get("class_names")
    if isinstance(names, list):
        table.update({i: str(n) for i, n in enumerate(names)})
    sem = folder / "info_semantic.json"
    if not table and sem.is_file():
        try:
            with open(sem) as fh:
                classes = json.load(fh).get("classes", [])
            table.update({int(c["id"]): str(c["name"]) for c in classes})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warnings.warn(f"ignoring unreadable {sem}: {exc}", stacklevel=3)
    return table


def _native_intrinsics(info: dict, width: int, height: int, source: Path) -> Intrinsics:
    """Intrinsics at the files' resolution ``width`` x ``height``."""
    if all(k in info for k in ("fx", "fy", "cx", "cy")):
        iw, ih = int(info.get("width", width)), int(info.get("height", height))
        K = Intrinsics(float(info["fx"]), float(info["fy"]), float(info["cx"]), float(info["cy"]), iw, ih)
        if (iw, ih) != (width, height):
            if abs(iw / ih - width / height) > 1e-3:
                raise DatasetError(f"{source}: intrinsics are for {iw}x{ih} but images are "
                                   f"{width}x{height} (different aspect ratio)")
            K = K.resized(width, height)
        return K
    hfov = float(info.get("hfov", DEFAULT_HFOV_DEG))
    if not 0 < hfov < 180:
        raise DatasetError(f"{source}: hfov must lie in (0, 180) degrees, got {hfov}")
    return Intrinsics.from_hfov(width, height, hfov)


def parse_replica(path, load_depth: bool = True, load_instances: bool = True, label_dir: str = "semantic_class",
                  extra_label_dirs: Optional[dict] = None, scene_file: Optional[str] = None) -> FrameSequence:
    """The files, poses and camera of a Replica-layout folder (see the module docstring).
    ``label_dir``: the folder of ``semantic_class_<N>.png`` label images; ``extra_label_dirs``:
    name -> folder of more label images (:attr:`FrameSequence.extra_labels`); ``scene_file``: the
    seed's ``experiment.scene_file``, a folder whose ``info_semantic.json`` names the classes."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"Replica folder not found: {folder}")
    for sub in ("rgb", label_dir, *(extra_label_dirs or {}).values()):
        if not (folder / sub).is_dir():
            raise DatasetError(f"{folder} is not a Replica-layout folder: missing {sub}/")
    rgb_files = numbered_files(folder / "rgb", "rgb_*.png")
    if not rgb_files:
        raise DatasetError(f"no rgb/rgb_<N>.png images in {folder}")
    sem_files = numbered_files(folder / label_dir, "semantic_class_*.png")
    numbers = list(rgb_files)
    _check_same_numbers(folder, label_dir, numbers, sem_files)
    extra = {}
    for name, sub in (extra_label_dirs or {}).items():
        extra[name] = numbered_files(folder / sub, "semantic_class_*.png")
        _check_same_numbers(folder, sub, numbers, extra[name])
    depth_files = None
    if load_depth and (folder / "depth").is_dir():
        depth_files = numbered_files(folder / "depth", "depth_*.png")
        _check_same_numbers(folder, "depth", numbers, depth_files)
    inst_files = None
    if load_instances and (folder / "semantic_instance").is_dir():
        inst_files = numbered_files(folder / "semantic_instance", "semantic_instance_*.png")
        _check_same_numbers(folder, "semantic_instance", numbers, inst_files)

    traj = read_trajectory(folder / "traj_w_c.txt")
    if numbers == list(range(len(numbers))) or len(traj) != len(numbers):
        if len(traj) <= numbers[-1]:
            raise DatasetError(f"{folder / 'traj_w_c.txt'} holds {len(traj)} poses but the "
                               f"images go up to frame {numbers[-1]}")
        poses = traj[numbers]
    else:  # numbering not starting at 0 and one pose per image: pair in order
        poses = traj
    info = read_intrinsics_file(folder / "intrinsics.json")
    depth_scale = float(info.get("depth_scale", DEFAULT_DEPTH_SCALE))
    if not (math.isfinite(depth_scale) and depth_scale > 0):
        raise DatasetError(f"{folder}: depth_scale must be positive, got {depth_scale}")

    def depth_reader(out: Intrinsics, native: Intrinsics, _first: int):
        def read(path: Path) -> np.ndarray:
            d = read_image(path)
            if d.ndim != 2:
                raise DatasetError(f"{path}: depth must be single-channel, got {d.shape}")
            check_size(path, d, native.width, native.height)
            return resize_depth(d.astype(np.float32) / depth_scale, out.width, out.height)
        return read

    meta = {"depth_scale": depth_scale}
    if "instance_to_class" in info:
        meta["instance_to_class"] = {int(k): int(v) for k, v in info["instance_to_class"].items()}
    table = _class_table(folder, info)
    if scene_file:
        scene_info = Path(scene_file).expanduser() / "info_semantic.json"
        if scene_info.is_file():
            table = _class_table(scene_info.parent, {})
            meta["class_names_from"] = str(scene_info)
        else:
            warnings.warn(f"experiment.scene_file: {scene_info} not found; class names from {folder}",
                          stacklevel=3)
    return FrameSequence(folder=folder, kind="replica", numbers=numbers, poses=poses, rgb=rgb_files, labels=sem_files,
                         camera=lambda w, h: _native_intrinsics(info, w, h, folder / "intrinsics.json"),
                         depth=depth_files, instances=inst_files, depth_reader=depth_reader,
                         class_table=table, fps=float(info.get("fps", 30.0)), meta=meta, extra_labels=extra)


def load_replica(path, width: Optional[int] = 320, height: Optional[int] = 240,
                 train_step: int = 5, test_offset: int = 2, total_num: int = 0,
                 class_ids: Optional[Sequence[int]] = None, load_depth: bool = True,
                 load_instances: bool = True, progress: bool = True,
                 num_workers: Optional[int] = None, scene_file: Optional[str] = None,
                 seed_resize: bool = False) -> SceneData:
    """Load a Replica-layout folder (:func:`parse_replica`, then :func:`~.loader.load_sequence`).

    Args:
        path: the sequence folder (holding ``rgb/``, ``traj_w_c.txt``, ...).
        width, height: output resolution in pixels (None = the files' own).
        train_step, test_offset, total_num: the seed's split — train frames are
            ``range(0, total, train_step)``, test frames ``train + test_offset``
            (dropped past the end), ``total`` = the first ``total_num`` frames (0 = all).
            Only train and test frames are loaded.
        class_ids: original class ids to keep, in order (others become void);
            default: the ids present in the loaded frames (the seed's rule).
        load_depth, load_instances: skip those images when False.
        scene_file: the seed's ``experiment.scene_file`` (class names from its info_semantic.json).
        seed_resize: resize as the seed (:class:`~.loader.FrameSequence`).
    Raises:
        DatasetError naming the missing or mismatched file.
    """
    seq = parse_replica(path, load_depth, load_instances, scene_file=scene_file)
    seq.seed_resize = seed_resize
    return load_sequence(seq, width, height, train_step, test_offset, total_num, class_ids, progress, num_workers)


#: the seed's replica_nyu_cnn label folders: nyu_mode -> (CNN predictions, ground truth)
NYU_CNN_DIRS = {
    "nyu13": ("CNN_semantic_class_nyu13", "semantic_class_nyu13_remap"),
    "nyu34": ("CNN_semantic_class_nyu34", "semantic_class_nyu40_remap_nyu34"),
    "gt_nyu13": ("semantic_class_nyu13_remap", "semantic_class_nyu13_remap"),
}


def is_replica_nyu_cnn_dir(path) -> bool:
    """True if ``path`` is a Replica-layout folder with the seed's CNN label folders."""
    p = Path(path)
    return is_replica_dir(p) and any((p / cnn).is_dir() for cnn, _ in NYU_CNN_DIRS.values())


def load_replica_nyu_cnn(path, nyu_mode: str = "nyu13", width: Optional[int] = 320, height: Optional[int] = 240,
                         train_step: int = 5, test_offset: int = 2, total_num: int = 0, load_depth: bool = True,
                         progress: bool = True, num_workers: Optional[int] = None,
                         seed_resize: bool = False) -> SceneData:
    """The seed's ``replica_nyu_cnn`` dataset (``Replica_CNN_NYU``): a Replica sequence whose
    training labels are a CNN's predictions of the NYUv2 classes.

    ``nyu_mode``: ``nyu13`` (13 classes; labels in ``CNN_semantic_class_nyu13/``, ground truth in
    ``semantic_class_nyu13_remap/``), ``nyu34`` (NYU40 without the 6 classes missing from
    Replica; ``CNN_semantic_class_nyu34/``, ``semantic_class_nyu40_remap_nyu34/``) or
    ``gt_nyu13`` (the ground truth as input).  The classes are the whole set, void 0 included
    (the seed does not drop absent ones).  ``SceneData.labels`` holds the ground truth,
    ``SceneData.predicted_labels`` the CNN's labels.
    """
    mode = "nyu13" if nyu_mode in (None, "", "auto") else nyu_mode
    if mode not in NYU_CNN_DIRS:
        raise DatasetError(f"replica_nyu_cnn: nyu_mode must be one of {', '.join(NYU_CNN_DIRS)}, got {nyu_mode!r}")
    cnn_dir, gt_dir = NYU_CNN_DIRS[mode]
    names = NYU34_CLASSES if mode == "nyu34" else NYU13_CLASSES
    seq = parse_replica(path, load_depth, load_instances=False, label_dir=gt_dir,
                        extra_label_dirs={"predicted": cnn_dir})
    seq.kind = "replica_nyu_cnn"
    seq.seed_resize = seed_resize
    seq.class_table = dict(enumerate(names))
    seq.meta["nyu_mode"] = mode
    return load_sequence(seq, width, height, train_step, test_offset, total_num, list(range(len(names))),
                         progress, num_workers)


def _check_same_numbers(folder: Path, sub: str, numbers: list, files: dict) -> None:
    if list(files) != numbers:
        missing = sorted(set(numbers) - set(files))
        extra = sorted(set(files) - set(numbers))
        raise DatasetError(
            f"{folder}: {sub}/ does not match rgb/ ({len(files)} vs {len(numbers)} images; "
            f"missing frames {missing[:10]}{'...' if len(missing) > 10 else ''}, "
            f"extra frames {extra[:10]}{'...' if len(extra) > 10 else ''})")
