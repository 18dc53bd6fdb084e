"""Datasets: Replica- and ScanNet-layout loaders, and the built-in synthetic room.

``load_dataset(path)`` detects the layout and returns a :class:`SceneData`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .replica import is_replica_dir, load_replica
from .scannet import NYU13_CLASSES, NYU40_CLASSES, is_scannet_dir, load_scannet
from .scene_data import DatasetError, SceneData, remap_classes, select_frames, split_ids
from .synthetic import default_scene_dir, ensure_scene, make_scene, scene_arrays

__all__ = [
    "DatasetError", "SceneData", "load_dataset", "detect_kind", "load_replica", "load_scannet",
    "split_ids", "select_frames", "remap_classes", "NYU40_CLASSES", "NYU13_CLASSES",
    "make_scene", "ensure_scene", "default_scene_dir", "scene_arrays",
]

KINDS = ("replica", "scannet")


def detect_kind(path) -> str:
    """``"replica"`` or ``"scannet"`` from the files present; :class:`DatasetError` otherwise."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"dataset folder not found: {p}")
    if not p.is_dir():
        raise DatasetError(f"dataset path is not a folder: {p}")
    if is_replica_dir(p):
        return "replica"
    if is_scannet_dir(p):
        return "scannet"
    raise DatasetError(
        f"cannot tell the dataset layout of {p}: expected Replica (traj_w_c.txt + rgb/ + "
        f"semantic_class/) or ScanNet (color/ + pose/ + label-filt/, or renders/color/ ...)")


def load_dataset(path, kind: str = "auto", width: Optional[int] = 320, height: Optional[int] = 240,
                 train_step: int = 5, test_offset: int = 2, total_num: int = 0,
                 **options) -> SceneData:
    """Load a dataset folder into a :class:`SceneData`.

    ``kind``: ``auto`` (detect), ``replica`` or ``scannet``.  ``options`` go to
    the loader (e.g. ``progress=False``, ``class_ids=[...]``, ``label_mode='nyu13'``).
    The split is the seed's: train = every ``train_step``-th frame, test = train +
    ``test_offset``; only those frames are loaded.  ``train_step=1, test_offset=0``
    loads every frame.
    """
    if kind in (None, "", "auto"):
        kind = detect_kind(path)
    if kind == "replica":
        loader = load_replica
    elif kind == "scannet":
        loader = load_scannet
    else:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected auto, replica or scannet")
    return loader(path, width=width, height=height, train_step=train_step,
                  test_offset=test_offset, total_num=total_num, **options)
