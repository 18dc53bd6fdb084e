"""Datasets: Replica- and ScanNet-layout loaders (and the seed's ``replica_nyu_cnn``), and the
built-in synthetic room.

``load_dataset(path)`` detects the layout and returns a :class:`SceneData`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .nyu import NYU13_CLASSES, NYU34_CLASSES, NYU40_CLASSES
from .replica import NYU_CNN_DIRS, is_replica_dir, is_replica_nyu_cnn_dir, load_replica, load_replica_nyu_cnn
from .scannet import is_scannet_dir, load_scannet, parse_scannet
from .scene_data import DatasetError, SceneData, numbered_files, remap_classes, select_frames, split_ids
from .synthetic import default_scene_dir, ensure_scene, make_scene, scene_arrays

__all__ = [
    "DatasetError", "SceneData", "load_dataset", "detect_kind", "frame_count", "load_replica", "load_scannet",
    "load_replica_nyu_cnn", "split_ids", "select_frames", "remap_classes", "NYU40_CLASSES", "NYU13_CLASSES",
    "NYU34_CLASSES", "NYU_CNN_DIRS", "make_scene", "ensure_scene", "default_scene_dir", "scene_arrays",
    "OPENGL_TO_OPENCV",
]

KINDS = ("replica", "replica_nyu_cnn", "scannet")

#: Right-multiplying an OpenGL camera-to-world pose (x right, y up, z back) by this gives the
#: OpenCV one (x right, y down, z forward) of the same camera (the seed's ``convention``).
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def detect_kind(path) -> str:
    """``"replica"`` or ``"scannet"`` from the files present; :class:`DatasetError` otherwise."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"dataset folder not found: {p}")
    if not p.is_dir():
        raise DatasetError(f"dataset path is not a folder: {p}")
    if is_replica_dir(p):
        if not (p / "semantic_class").is_dir() and is_replica_nyu_cnn_dir(p):
            return "replica_nyu_cnn"
        return "replica"
    if is_scannet_dir(p):
        return "scannet"
    raise DatasetError(
        f"cannot tell the dataset layout of {p}: expected Replica (traj_w_c.txt + rgb/ + "
        f"semantic_class/) or ScanNet (color/ + pose/ + label-filt/, or renders/color/ ...)")


def load_dataset(path, kind: str = "auto", width: Optional[int] = 320, height: Optional[int] = 240,
                 train_step: int = 5, test_offset: int = 2, total_num: int = 0, convention: str = "opencv",
                 **options) -> SceneData:
    """Load a dataset folder into a :class:`SceneData`.

    ``kind``: ``auto`` (detect), ``replica``, ``replica_nyu_cnn`` or ``scannet``.  ``options`` go
    to the loader (e.g. ``progress=False``, ``class_ids=[...]``, ``label_mode='nyu13'`` for ScanNet,
    ``nyu_mode='nyu34'`` for replica_nyu_cnn, ``scene_file=...`` for Replica).
    The split is the seed's: train = every ``train_step``-th frame, test = train +
    ``test_offset``; only those frames are loaded.  ``train_step=1, test_offset=0``
    loads every frame.  ``convention``: the camera axes of the files' poses, ``opencv`` or
    ``opengl`` (converted to OpenCV: :data:`OPENGL_TO_OPENCV`).
    """
    if convention not in ("opencv", "opengl"):
        raise DatasetError(f"pose convention must be 'opencv' or 'opengl', got {convention!r}")
    if kind in (None, "", "auto"):
        kind = detect_kind(path)
    loaders = {"replica": load_replica, "replica_nyu_cnn": load_replica_nyu_cnn, "scannet": load_scannet}
    if kind not in loaders:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected auto, {', '.join(KINDS)}")
    scene = loaders[kind](path, width=width, height=height, train_step=train_step,
                          test_offset=test_offset, total_num=total_num, **options)
    if convention == "opengl":
        scene.poses = scene.poses @ OPENGL_TO_OPENCV
        scene.meta["pose_convention_in_files"] = "opengl"
    return scene


def frame_count(path, kind: str = "auto") -> int:
    """Frames of a dataset folder (with valid poses, for ScanNet) without loading images."""
    if kind in (None, "", "auto"):
        kind = detect_kind(path)
    if kind == "scannet":
        seq = parse_scannet(path, label_mode="raw", load_depth=False, load_instances=False)
        return int(np.all(np.isfinite(seq.poses.reshape(len(seq.numbers), -1)), axis=1).sum())
    return len(numbered_files(Path(path).expanduser() / "rgb", "rgb_*.png"))
