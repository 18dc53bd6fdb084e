"""A tiny analytic scene for engine tests: the inside of an axis-aligned box room.

Each of the 6 faces is a class (1..6); colour is the class colour modulated by a
checkerboard of 0.5 m squares.  Rendering is exact ray-box intersection in numpy,
so tests need neither Open3D nor files.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from semnerf_ros.engine.frame import Frame
from semnerf_ros.engine.geometry import Intrinsics

HALF = np.array([2.0, 1.5, 1.25])  # room half-size (m)
CLASS_COLORS = np.array([[0, 0, 0], [200, 60, 60], [60, 200, 60], [60, 60, 200],
                         [200, 200, 60], [200, 60, 200], [60, 200, 200]], dtype=np.float32) / 255.0
NUM_CLASSES = 7  # void + 6 faces

#: A tiny engine YAML for a node on this room (its engine_config): a CPU hash field, box-room bounds.
TINY_ENGINE = """\
experiment: {device: cpu, seed: 0}
model:
  type: hash
  hash: {n_levels: 6, log2_hashmap_size: 14, base_resolution: 4, finest_resolution: 32,
         hidden_dim: 32, hidden_dim_color: 32, hidden_dim_semantic: 32}
render: {scene_bounds: [-2.2, -1.7, -1.45, 2.2, 1.7, 1.45], N_rays: 256, depth_range: [0.05, 6.0],
         occupancy_resolution: 24, march_steps: 96, max_samples_per_ray: 24, occupancy_warmup_steps: 50}
train: {lrate: 1.0e-2, lrate_decay: 1.0e6, wgt_sem: 0.1, wgt_depth: 0.1}
"""


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world pose (OpenCV optical axes) at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


def render_box(pose: np.ndarray, intr: Intrinsics):
    """(rgb uint8 (H,W,3), labels int32 (H,W), depth float32 (H,W)) of the room."""
    h, w = intr.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    d_cam = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], -1)
    d = d_cam @ pose[:3, :3].T
    o = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_pos = (HALF - o) / d
        t_neg = (-HALF - o) / d
    t_exit = np.where(d > 0, t_pos, t_neg)
    t_exit = np.where(np.isfinite(t_exit) & (t_exit > 0), t_exit, np.inf)
    axis = np.argmin(t_exit, -1)
    t = np.take_along_axis(t_exit, axis[..., None], -1)[..., 0]
    sign = np.take_along_axis(d, axis[..., None], -1)[..., 0] > 0
    labels = (1 + axis * 2 + sign.astype(int)).astype(np.int32)
    p = o + t[..., None] * d
    checker = (np.floor(p / 0.5).astype(int).sum(-1) % 2).astype(np.float32)
    rgb = CLASS_COLORS[labels] * (0.6 + 0.4 * checker[..., None])
    depth = t.astype(np.float32)  # t is z-depth because d_cam has z = 1
    return (rgb * 255 + 0.5).astype(np.uint8), labels, depth


def box_frames(n: int = 12, width: int = 32, height: int = 24, radius: float = 0.6, seed: int = 0,
               with_depth: bool = True) -> list[Frame]:
    """Frames on a circle around the room centre, looking outward with a slow turn."""
    intr = Intrinsics.from_hfov(width, height, 90.0)
    frames = []
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = np.array([radius * np.cos(a), radius * np.sin(a), 0.1 * np.sin(3 * a)])
        target = eye + np.array([np.cos(a + 0.6), np.sin(a + 0.6), -0.15])
        pose = look_at(eye, target)
        rgb, labels, depth = render_box(pose, intr)
        frames.append(Frame(rgb=rgb, pose=pose, intrinsics=intr, labels=labels,
                            depth=depth if with_depth else None, stamp=i / 10.0, frame_id="cam", index=i))
    return frames


CLASS_NAMES = ["void", "wall -x", "wall +x", "wall -y", "wall +y", "floor", "ceiling"]


def write_box_replica(out: Path, n: int = 16, width: int = 48, height: int = 36, instances: bool = False) -> Path:
    """The room as a Replica-layout folder (rgb, depth in mm, semantic_class, traj_w_c.txt,
    intrinsics.json); ``instances``: also semantic_instance/ with instance id 10 * class (one
    instance per face)."""
    import cv2

    subs = ["rgb", "depth", "semantic_class"] + (["semantic_instance"] if instances else [])
    for sub in subs:
        (out / sub).mkdir(parents=True, exist_ok=True)
    frames = box_frames(n, width, height)
    for i, f in enumerate(frames):
        cv2.imwrite(str(out / "rgb" / f"rgb_{i}.png"), f.rgb[:, :, ::-1])
        cv2.imwrite(str(out / "depth" / f"depth_{i}.png"), np.round(f.depth * 1000).astype(np.uint16))
        cv2.imwrite(str(out / "semantic_class" / f"semantic_class_{i}.png"), f.labels.astype(np.uint8))
        if instances:
            cv2.imwrite(str(out / "semantic_instance" / f"semantic_instance_{i}.png"),
                        (f.labels * 10).astype(np.uint16))
    np.savetxt(out / "traj_w_c.txt", np.stack([f.pose.reshape(-1) for f in frames]))
    (out / "intrinsics.json").write_text(json.dumps({"hfov": 90.0, "class_names": CLASS_NAMES}))
    return out
