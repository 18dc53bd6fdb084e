"""A synthetic house as in-memory arrays, without writing files.

:func:`scene_arrays` renders only the frames of the seed's train/test split and
returns what a benchmark needs, exactly as loading the folder ``make_scene``
writes would give it (depth quantised to millimetres, poses through the
trajectory text, class ids of the files).  Without Open3D it ray-casts with
torch (:class:`.raycast.TorchRayCaster`, on CUDA when available), so a GPU machine
with only numpy, OpenCV and torch makes the rooms itself.
"""
from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from ...engine.geometry import Intrinsics
from ..scene_data import split_ids
from .geometry import CLASS_NAMES
from .layout import build_room, camera_path
from .output import DEPTH_SCALE, HFOV_DEG, SceneStats, check_args, depth_to_mm, roundtrip_poses
from .rendering import Renderer, iter_batches
from .trajectory import path_report


def scene_arrays(seed: int, frames: int = 300, width: int = 320, height: int = 240, train_step: int = 5,
                 test_offset: int = 2, raycaster: str = "auto", device=None, mesh: bool = True,
                 progress: bool = False, batch: int = 8, render_threads: int = 2) -> dict:
    """The seed's split of house ``seed`` as arrays (the seed's protocol: every
    ``train_step``-th frame trains, the frame ``test_offset`` after it tests).

    Returns a dict:

    * ``train_rgb`` / ``test_rgb`` (N,H,W,3) uint8; ``train_labels`` / ``test_labels``
      (N,H,W) int32 class ids (0 = void; ids index ``class_names``, all 18 kept);
      ``train_depth`` / ``test_depth`` (N,H,W) float32 metres (0 = no depth: windows
      and open doors); ``train_poses`` / ``test_poses`` (N,4,4) float64
      camera-to-world (OpenCV axes, z up); ``train_instances`` / ``test_instances``
      (N,H,W) int32 (0 = none); ``train_ids`` / ``test_ids`` frame numbers;
    * ``intrinsics`` (:class:`~semnerf_ros.engine.geometry.Intrinsics`), ``class_names``
      (list, ``[0] == "void"``), ``num_classes``, ``instance_to_class`` (dict);
    * with ``mesh``: ``mesh_vertices`` (V,3) float32, ``mesh_faces`` (F,3) int32,
      ``mesh_labels`` (V,) int32, ``mesh_colors`` (V,3) uint8 -- the ground truth that
      ``mesh_gt.ply`` holds;
    * ``stats``: the rendered frames' statistics, the floor plan, path facts,
      ``raycaster`` and ``seconds``.

    ``raycaster``: ``auto`` (Open3D when it imports, else torch), ``open3d``,
    ``torch``; ``device``: the torch caster's device (None: CUDA when available).
    """
    check_args(frames, width, height)
    t0 = time.perf_counter()
    geom = build_room(seed)
    intr = Intrinsics.from_hfov(width, height, HFOV_DEG)
    renderer = Renderer(geom, intr, seed, raycaster=raycaster, device=device)
    _, poses = roundtrip_poses(camera_path(frames, seed, geometry=geom))
    train, test = split_ids(frames, train_step, test_offset)
    wanted = np.union1d(train, test)
    slot = {int(f): k for k, f in enumerate(wanted)}
    h, w = intr.shape
    n = len(wanted)
    rgb = np.empty((n, h, w, 3), np.uint8)
    labels = np.empty((n, h, w), np.int32)
    depth = np.empty((n, h, w), np.float32)
    instances = np.empty((n, h, w), np.int32)
    stats = SceneStats()
    with tqdm(total=n, desc=f"rendering house {seed}", unit="frame", disable=not progress) as bar:
        for ids, r in iter_batches(renderer, poses, wanted, batch, render_threads):
            for j, i in enumerate(ids):
                k = slot[i]
                rgb[k] = r["rgb"][j]
                labels[k] = r["labels"][j]
                depth[k] = depth_to_mm(r["depth"][j]).astype(np.float32) / DEPTH_SCALE
                instances[k] = r["instances"][j]
            stats.add(r)
            bar.update(len(ids))
    tr = np.array([slot[int(i)] for i in train], dtype=np.int64)
    te = np.array([slot[int(i)] for i in test], dtype=np.int64)
    out = {
        "train_rgb": rgb[tr], "train_labels": labels[tr], "train_depth": depth[tr], "train_poses": poses[train],
        "train_instances": instances[tr], "train_ids": train,
        "test_rgb": rgb[te], "test_labels": labels[te], "test_depth": depth[te], "test_poses": poses[test],
        "test_instances": instances[te], "test_ids": test,
        "intrinsics": intr, "class_names": list(CLASS_NAMES), "num_classes": len(CLASS_NAMES),
        "instance_to_class": {int(i): int(c) for i, c in enumerate(geom.instance_class) if i > 0},
    }
    if mesh:
        out["mesh_vertices"] = geom.vertices.astype(np.float32)
        out["mesh_faces"] = geom.triangles.astype(np.int32)
        out["mesh_labels"] = geom.part_class[geom.vertex_part].astype(np.int32)
        out["mesh_colors"] = renderer.shader.vertex_colors()
    info = stats.to_dict(geom, {"frames": frames, "width": width, "height": height, "seed": seed,
                                "train_step": train_step, "test_offset": test_offset}, extra=True)
    info.update(raycaster=renderer.raycaster, plan=geom.plan.to_dict(), path=path_report(poses, geom.plan),
                seconds=round(time.perf_counter() - t0, 2), rendered_frames=int(n))
    out["stats"] = info
    return out

