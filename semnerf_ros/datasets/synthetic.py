"""The built-in demo scene: a procedurally furnished room rendered to the Replica layout.

No download needed.  A 6 x 5 x 2.7 m living/dining room is built from Open3D
primitives (boxes, cylinders, spheres) merged into furniture — a dining table
with six chairs, a desk with a monitor and an office chair, a sofa with
cushions, a bookshelf full of books, a cabinet, lamps, plants, pictures, a rug,
a door and two windows — giving 17 semantic classes (plus void for a few small
"misc" items) and many instances (7 chairs, dozens of books, 3 pictures, ...).
Every surface has a procedural albedo evaluated at the 3D hit point (wood grain,
floor planks, checker rug, wallpaper stripes, fabric and plaster noise,
paintings, sky behind the windows) with Lambertian shading from a ceiling
point light and a window fill light, so colour is view-consistent and
informative.

A camera (hfov 90 degrees, as the seed's Replica renders) follows a smooth
closed loop through the room at 1.2-1.7 m height, looking inwards with slow
yaw/pitch swings and a little roll, like a handheld scan; each frame is
ray-cast with ``open3d.t.geometry.RaycastingScene``.

Outputs (``make_scene``), the layout ``replica.load_replica`` reads::

    rgb/rgb_<i>.png, depth/depth_<i>.png (uint16 mm), semantic_class/semantic_class_<i>.png
    (uint8, 0 = void), semantic_instance/semantic_instance_<i>.png (uint16, 0 = nothing),
    traj_w_c.txt (camera-to-world, OpenCV axes, world z up, metres), intrinsics.json,
    mesh_gt.ply (per-vertex colour and integer ``label`` = class id), scene.json
    (completion marker: arguments and statistics).

The output is a deterministic function of the arguments (same bytes on the same
machine).  CLI: ``semnerf-make-scene OUT [--frames 300] [--width 320] [--height 240]
[--seed 0] [--bag PATH ...]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from tqdm import tqdm

from ..geometry import Intrinsics

GENERATOR_VERSION = 1
HFOV_DEG = 90.0
DEPTH_SCALE = 1000.0  # depth PNG units per metre (mm)
FPS = 30.0
ROOM_SIZE = (6.0, 5.0, 2.7)  # x, y, z extent in metres; the room spans [-3, 3] x [-2.5, 2.5] x [0, 2.7]
COMPLETION_MARKER = "scene.json"
_IN_PROGRESS_MARKER = ".generating"

CLASS_NAMES = [
    "void", "wall", "floor", "ceiling", "door", "window", "table", "chair", "sofa", "cushion",
    "cabinet", "shelf", "book", "lamp", "plant", "picture", "rug", "monitor",
]
CLASS_ID = {name: i for i, name in enumerate(CLASS_NAMES)}

# Materials (procedural albedo functions, see _Shader).
(M_PLAIN, M_PLASTER, M_WALLPAPER, M_WOOD, M_PLANKS, M_CHECKER, M_FABRIC, M_PAINTING,
 M_WINDOW, M_SCREEN, M_LEAF, M_BOOK, M_DOOR, M_CABINET, M_SHADE, M_METAL) = range(16)
_EMISSIVE = {M_WINDOW, M_SCREEN, M_SHADE}
# Primitive shapes (for smooth shading normals).
S_BOX, S_CYLINDER, S_SPHERE = range(3)


# --------------------------------------------------------------------------- scene building

def _yaw(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class _Obj:
    """An object's frame in the world: rotation about z by ``yaw`` then translation."""

    def __init__(self, pos=(0.0, 0.0, 0.0), yaw: float = 0.0):
        self.R = _yaw(yaw)
        self.t = np.asarray(pos, dtype=np.float64)


_WORLD = _Obj()


class SceneGeometry:
    """All triangles of the room plus per-triangle part index and per-part tables.

    Attributes (numpy): ``vertices`` (V,3) float64 world metres, ``triangles`` (F,3) int32,
    ``tri_part`` (F,) part of each triangle; per part: ``part_class``, ``part_instance``,
    ``part_material``, ``part_shape``, ``part_color1``/``part_color2`` (P,3) albedo in [0,1],
    ``part_param`` (P,), ``part_seed`` (P,), ``part_R`` (P,3,3) local-to-world rotation,
    ``part_t`` (P,3) local origin, ``part_size`` (P,3) local extents;
    ``instance_class`` (I,) class of each instance id (0 = nothing hit), ``instance_names``.
    """

    def __init__(self):
        self._verts: list = []
        self._tris: list = []
        self._tri_part: list = []
        self._nv = 0
        self._parts: list = []
        self.instance_class = [0]
        self.instance_names = ["none"]

    # -- construction
    def instance(self, class_name: str, name: Optional[str] = None) -> int:
        cls = CLASS_ID[class_name] if class_name != "misc" else 0
        self.instance_class.append(cls)
        k = sum(1 for c in self.instance_class[1:] if c == cls)
        self.instance_names.append(name or f"{class_name}_{k}")
        return len(self.instance_class) - 1

    def _add(self, v_local, tris, shape, obj: _Obj, origin, size, inst, material, c1, c2=None,
             param=0.0, seed=0.0):
        R = obj.R
        t = obj.R @ np.asarray(origin, dtype=np.float64) + obj.t
        vw = np.asarray(v_local, dtype=np.float64) @ R.T + t
        part = len(self._parts)
        self._verts.append(vw)
        self._tris.append(np.asarray(tris, dtype=np.int64) + self._nv)
        self._tri_part.append(np.full(len(tris), part, dtype=np.int32))
        self._nv += len(vw)
        c1 = np.asarray(c1, dtype=np.float64)
        self._parts.append(dict(cls=self.instance_class[inst], inst=inst, mat=material, shape=shape,
                                c1=c1, c2=c1 * 0.6 if c2 is None else np.asarray(c2, float),
                                param=float(param), seed=float(seed), R=R, t=t,
                                size=np.asarray(size, dtype=np.float64)))
        return part

    def box(self, obj: _Obj, lo, size, inst, material, c1, c2=None, param=0.0, seed=0.0):
        """Axis-aligned box (in the object frame) with min corner ``lo`` and extents ``size`` (m)."""
        import open3d as o3d
        m = o3d.geometry.TriangleMesh.create_box(*[float(s) for s in size])
        return self._add(np.asarray(m.vertices), np.asarray(m.triangles), S_BOX, obj, lo, size,
                         inst, material, c1, c2, param, seed)

    def cylinder(self, obj: _Obj, base, radius, height, inst, material, c1, c2=None,
                 resolution=20, param=0.0, seed=0.0):
        """Vertical cylinder standing on ``base`` (centre of its bottom cap)."""
        import open3d as o3d
        m = o3d.geometry.TriangleMesh.create_cylinder(float(radius), float(height), int(resolution), 1)
        v = np.asarray(m.vertices) + [0.0, 0.0, height / 2.0]
        return self._add(v, np.asarray(m.triangles), S_CYLINDER, obj, base,
                         (radius, radius, height), inst, material, c1, c2, param, seed)

    def sphere(self, obj: _Obj, centre, radius, inst, material, c1, c2=None, resolution=10,
               param=0.0, seed=0.0):
        import open3d as o3d
        m = o3d.geometry.TriangleMesh.create_sphere(float(radius), int(resolution))
        return self._add(np.asarray(m.vertices), np.asarray(m.triangles), S_SPHERE, obj, centre,
                         (radius, radius, radius), inst, material, c1, c2, param, seed)

    def finish(self) -> "SceneGeometry":
        self.vertices = np.concatenate(self._verts)
        self.triangles = np.concatenate(self._tris).astype(np.int32)
        # Number parts material-major so hits sorted by part are also grouped by material.
        order = sorted(range(len(self._parts)), key=lambda k: (self._parts[k]["mat"], k))
        new_id = np.empty(len(order), dtype=np.int32)
        new_id[order] = np.arange(len(order), dtype=np.int32)
        self.tri_part = new_id[np.concatenate(self._tri_part)]
        P = [self._parts[k] for k in order]
        self.part_class = np.array([p["cls"] for p in P], dtype=np.int32)
        self.part_instance = np.array([p["inst"] for p in P], dtype=np.int32)
        self.part_material = np.array([p["mat"] for p in P], dtype=np.int32)
        self.part_shape = np.array([p["shape"] for p in P], dtype=np.int32)
        self.part_color1 = np.array([p["c1"] for p in P], dtype=np.float32)
        self.part_color2 = np.array([p["c2"] for p in P], dtype=np.float32)
        self.part_param = np.array([p["param"] for p in P], dtype=np.float32)
        self.part_seed = np.array([p["seed"] for p in P], dtype=np.float32)
        self.part_R = np.array([p["R"] for p in P], dtype=np.float64)
        self.part_t = np.array([p["t"] for p in P], dtype=np.float64)
        self.part_size = np.array([p["size"] for p in P], dtype=np.float32)
        self.instance_class = np.asarray(self.instance_class, dtype=np.int32)
        self.tri_class = self.part_class[self.tri_part]
        self.tri_instance = self.part_instance[self.tri_part]
        del self._verts, self._tris, self._tri_part, self._parts
        return self

    @property
    def vertex_part(self) -> np.ndarray:
        vp = np.empty(len(self.vertices), dtype=np.int32)
        vp[self.triangles.reshape(-1)] = np.repeat(self.tri_part, 3)
        return vp


def _jitter(rng, scale):
    return float(rng.uniform(-scale, scale))


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _vary(rng, colour, amount=0.06):
    c = np.asarray(colour, dtype=np.float64) * (1.0 + rng.uniform(-amount, amount, 3))
    return np.clip(c, 0.0, 1.0)


def build_room(seed: int = 0) -> SceneGeometry:
    """The furnished room for ``seed`` (layout jitter, colours and textures vary with it)."""
    rng = np.random.default_rng(seed)
    g = SceneGeometry()
    X, Y, Z = ROOM_SIZE[0] / 2, ROOM_SIZE[1] / 2, ROOM_SIZE[2]
    s = lambda: float(rng.uniform(0.0, 100.0))  # noqa: E731  per-part texture offset

    # ---- structure
    wall_c = _pick(rng, [(0.86, 0.84, 0.80), (0.78, 0.82, 0.85), (0.86, 0.80, 0.70), (0.76, 0.81, 0.74)])
    accent_c = _pick(rng, [(0.55, 0.63, 0.70), (0.70, 0.55, 0.50), (0.55, 0.65, 0.55), (0.72, 0.66, 0.50)])
    floor_c1, floor_c2 = _pick(rng, [((0.66, 0.48, 0.30), (0.50, 0.34, 0.20)),
                                     ((0.45, 0.30, 0.19), (0.33, 0.21, 0.13)),
                                     ((0.78, 0.65, 0.48), (0.64, 0.50, 0.34))])
    inst = g.instance("floor")
    g.box(_WORLD, (-X, -Y, -0.1), (2 * X, 2 * Y, 0.1), inst, M_PLANKS, floor_c1, floor_c2, seed=s())
    inst = g.instance("ceiling")
    g.box(_WORLD, (-X, -Y, Z), (2 * X, 2 * Y, 0.1), inst, M_PLASTER, (0.93, 0.92, 0.90), seed=s())
    accent_wall = int(rng.integers(4))
    walls = [((-X - 0.1, -Y - 0.1, -0.1), (2 * X + 0.2, 0.1, Z + 0.2)),   # south (y = -Y)
             ((-X - 0.1, Y, -0.1), (2 * X + 0.2, 0.1, Z + 0.2)),         # north (y = +Y)
             ((X, -Y - 0.1, -0.1), (0.1, 2 * Y + 0.2, Z + 0.2)),         # east (x = +X)
             ((-X - 0.1, -Y - 0.1, -0.1), (0.1, 2 * Y + 0.2, Z + 0.2))]  # west (x = -X)
    for k, (lo, size) in enumerate(walls):
        inst = g.instance("wall")
        if k == accent_wall:
            g.box(_WORLD, lo, size, inst, M_WALLPAPER, accent_c, _vary(rng, accent_c, 0.0) * 0.85,
                  param=float(rng.uniform(0.12, 0.2)), seed=s())
        else:
            g.box(_WORLD, lo, size, inst, M_PLASTER, wall_c, seed=s())

    wood_light = ((0.72, 0.55, 0.36), (0.58, 0.42, 0.26))
    wood_dark = ((0.42, 0.27, 0.16), (0.30, 0.18, 0.10))
    white = (0.90, 0.90, 0.88)

    # ---- door (south wall, east end) with casing and a knob
    dx0 = 1.25 + _jitter(rng, 0.1)
    door_c = _pick(rng, [wood_light, wood_dark, ((0.85, 0.85, 0.83), (0.75, 0.75, 0.72))])
    inst = g.instance("door")
    g.box(_WORLD, (dx0, -Y, 0.0), (0.9, 0.035, 2.05), inst, M_DOOR, *door_c, seed=s())
    for lo, size in (((dx0 - 0.07, -Y, 0.0), (0.07, 0.045, 2.12)),
                     ((dx0 + 0.9, -Y, 0.0), (0.07, 0.045, 2.12)),
                     ((dx0 - 0.07, -Y, 2.05), (1.04, 0.045, 0.07))):
        g.box(_WORLD, lo, size, inst, M_PLAIN, white, seed=s())
    g.sphere(_WORLD, (dx0 + 0.8, -Y + 0.09, 1.0), 0.035, inst, M_METAL, (0.75, 0.70, 0.55))

    # ---- windows (east wall above the desk, west wall)
    for lo, size in (((X - 0.035, -0.75 + _jitter(rng, 0.05), 0.95), (0.035, 1.4, 1.25)),
                     ((-X, -0.6 + _jitter(rng, 0.1), 1.0), (0.035, 1.2, 1.2))):
        inst = g.instance("window")
        g.box(_WORLD, lo, size, inst, M_WINDOW, white, (0.60, 0.75, 0.92), seed=s())

    # ---- rug and dining table with six chairs
    tx, ty = _jitter(rng, 0.1), _jitter(rng, 0.1)
    rug_c = _pick(rng, [((0.70, 0.25, 0.22), (0.85, 0.78, 0.62)), ((0.22, 0.32, 0.55), (0.80, 0.80, 0.75)),
                        ((0.35, 0.45, 0.30), (0.85, 0.75, 0.55))])
    inst = g.instance("rug")
    g.box(_WORLD, (tx - 1.45, ty - 1.05, 0.0), (2.9, 2.1, 0.012), inst, M_CHECKER, *rug_c,
          param=float(rng.uniform(0.25, 0.35)), seed=s())
    table_c = _pick(rng, [wood_light, wood_dark])
    table = _Obj((tx, ty, 0.0), _jitter(rng, 0.05))
    inst = g.instance("table", "dining_table")
    g.box(table, (-0.7, -0.425, 0.72), (1.4, 0.85, 0.04), inst, M_WOOD, *table_c, seed=s())
    for lx in (-0.62, 0.56):
        for ly in (-0.36, 0.30):
            g.box(table, (lx, ly, 0.0), (0.06, 0.06, 0.72), inst, M_WOOD, *table_c, seed=s())
    chair_c = _pick(rng, [wood_dark, wood_light, ((0.25, 0.25, 0.27), (0.18, 0.18, 0.20))])
    seat_c = _pick(rng, [(0.65, 0.20, 0.18), (0.20, 0.35, 0.55), (0.80, 0.72, 0.55), (0.30, 0.45, 0.30)])
    chair_spots = [(-0.32, -0.72, math.pi / 2), (0.32, -0.72, math.pi / 2),
                   (-0.32, 0.72, -math.pi / 2), (0.32, 0.72, -math.pi / 2),
                   (-1.02, 0.0, 0.0), (1.02, 0.0, math.pi)]
    for cx, cy, yaw in chair_spots:
        p = table.R @ np.array([cx, cy, 0.0]) + table.t
        _chair(g, _Obj((p[0] + _jitter(rng, 0.04), p[1] + _jitter(rng, 0.04), 0.0),
                       yaw + _jitter(rng, 0.12)), chair_c, _vary(rng, seat_c), rng)
    # misc on the table: a cup and a bowl (void)
    g.cylinder(table, (0.25, 0.1, 0.76), 0.04, 0.1, g.instance("misc", "cup"), M_PLAIN, (0.92, 0.92, 0.95))
    g.cylinder(table, (-0.2, -0.1, 0.76), 0.11, 0.06, g.instance("misc", "bowl"), M_PLAIN, (0.75, 0.35, 0.20))

    # ---- pendant lamp over the table, floor lamp by the sofa
    lamp_c = (0.95, 0.88, 0.70)
    inst = g.instance("lamp", "pendant_lamp")
    g.cylinder(table, (0.0, 0.0, 2.02), 0.012, Z - 2.02, inst, M_METAL, (0.2, 0.2, 0.2), resolution=8)
    g.cylinder(table, (0.0, 0.0, 1.84), 0.24, 0.18, inst, M_SHADE, lamp_c, resolution=28)

    # ---- sofa with cushions (north wall)
    sx = -0.5 + _jitter(rng, 0.15)
    sofa_c = _pick(rng, [(0.35, 0.38, 0.45), (0.55, 0.50, 0.45), (0.30, 0.42, 0.40), (0.60, 0.30, 0.25)])
    sofa = _Obj((sx, Y, 0.0), math.pi)  # yaw pi: local +y points into the room (world -y)
    inst = g.instance("sofa")
    W2 = 1.05
    g.box(sofa, (-W2 + 0.18, 0.02, 0.08), (2 * W2 - 0.36, 0.88, 0.34), inst, M_FABRIC, sofa_c, seed=s())
    g.box(sofa, (-W2, 0.02, 0.08), (0.18, 0.92, 0.56), inst, M_FABRIC, sofa_c, seed=s())
    g.box(sofa, (W2 - 0.18, 0.02, 0.08), (0.18, 0.92, 0.56), inst, M_FABRIC, sofa_c, seed=s())
    g.box(sofa, (-W2 + 0.18, 0.02, 0.42), (2 * W2 - 0.36, 0.22, 0.46), inst, M_FABRIC, sofa_c, seed=s())
    for lx in (-W2 + 0.05, W2 - 0.09):
        for ly in (0.05, 0.86):
            g.box(sofa, (lx, ly, 0.0), (0.04, 0.04, 0.08), inst, M_WOOD, *wood_dark, seed=s())
    cush_cols = [(0.85, 0.70, 0.30), (0.80, 0.80, 0.78), (0.55, 0.25, 0.35), (0.25, 0.50, 0.60)]
    for cxl in (-0.62, 0.0, 0.58):
        inst = g.instance("cushion")
        g.box(sofa, (cxl - 0.2 + _jitter(rng, 0.05), 0.24, 0.42), (0.40, 0.14, 0.38), inst, M_FABRIC,
              _vary(rng, cush_cols[int(rng.integers(len(cush_cols)))]), seed=s())
    # floor lamp beside the sofa (north-west corner)
    inst = g.instance("lamp", "floor_lamp")
    fl = _Obj((-X + 0.35, Y - 0.35, 0.0))
    g.cylinder(fl, (0, 0, 0), 0.16, 0.03, inst, M_METAL, (0.2, 0.2, 0.2), resolution=20)
    g.cylinder(fl, (0, 0, 0.03), 0.016, 1.45, inst, M_METAL, (0.25, 0.25, 0.25), resolution=8)
    g.cylinder(fl, (0, 0, 1.42), 0.21, 0.32, inst, M_SHADE, lamp_c, resolution=28)

    # ---- bookshelf with books (south wall, west end)
    shelf_c = _pick(rng, [wood_light, wood_dark, ((0.88, 0.88, 0.86), (0.78, 0.78, 0.76))])
    shelf = _Obj((-X + 0.65, -Y, 0.0), 0.0)  # local +y points into the room
    inst = g.instance("shelf", "bookshelf")
    SW, SD, SH = 1.0, 0.36, 2.0
    g.box(shelf, (-SW / 2, 0.0, 0.0), (0.03, SD, SH), inst, M_WOOD, *shelf_c, seed=s())
    g.box(shelf, (SW / 2 - 0.03, 0.0, 0.0), (0.03, SD, SH), inst, M_WOOD, *shelf_c, seed=s())
    g.box(shelf, (-SW / 2, 0.0, 0.0), (SW, 0.015, SH), inst, M_WOOD, *shelf_c, seed=s())
    boards = [0.0, 0.45, 0.9, 1.35, SH - 0.03]
    for bz in boards:
        g.box(shelf, (-SW / 2 + 0.03, 0.015, bz), (SW - 0.06, SD - 0.015, 0.03), inst, M_WOOD,
              *shelf_c, seed=s())
    book_cols = [(0.60, 0.12, 0.12), (0.12, 0.25, 0.55), (0.15, 0.45, 0.25), (0.85, 0.70, 0.20),
                 (0.90, 0.88, 0.82), (0.15, 0.15, 0.17), (0.55, 0.30, 0.55), (0.85, 0.45, 0.15),
                 (0.30, 0.60, 0.70)]
    for level, bz in enumerate(boards[:-1]):
        x = -SW / 2 + 0.03 + float(rng.uniform(0.0, 0.05))
        x_end = SW / 2 - 0.03
        misc_at = float(rng.uniform(0.25, 0.75)) if level % 2 == 1 else None
        while True:
            if misc_at is not None and x > -SW / 2 + misc_at * SW:
                # a small box or vase (misc, void) in a gap between books
                w = 0.14
                if x + w > x_end:
                    break
                m_inst = g.instance("misc")
                if level == 1:
                    g.sphere(shelf, (x + 0.07, SD / 2, bz + 0.03 + 0.065), 0.065, m_inst, M_PLAIN,
                             _vary(rng, (0.3, 0.5, 0.7)))
                else:
                    g.box(shelf, (x + 0.01, 0.08, bz + 0.03), (0.12, 0.16, 0.1), m_inst, M_PLAIN,
                          _vary(rng, (0.75, 0.62, 0.45)), seed=s())
                x += w + 0.02
                misc_at = None
                continue
            w = float(rng.uniform(0.025, 0.06))
            if x + w > x_end:
                break
            h = float(rng.uniform(0.2, 0.33))
            d = float(rng.uniform(0.15, 0.24))
            c = _vary(rng, book_cols[int(rng.integers(len(book_cols)))], 0.1)
            g.box(shelf, (x, SD - d - 0.01, bz + 0.03), (w, d, h), g.instance("book"), M_BOOK, c,
                  (0.85, 0.72, 0.35), seed=s())
            x += w + (float(rng.uniform(0.03, 0.12)) if rng.uniform() < 0.08 else 0.002)

    # ---- cabinet (south wall, middle) with a small plant and a vase on top
    cab_c = _pick(rng, [(0.85, 0.85, 0.82), (0.30, 0.35, 0.40), (0.60, 0.45, 0.30), (0.55, 0.62, 0.58)])
    cab = _Obj((-0.75 + _jitter(rng, 0.1), -Y, 0.0))
    inst = g.instance("cabinet")
    CW, CD, CH = 1.4, 0.45, 0.85
    g.box(cab, (-CW / 2, 0.0, 0.08), (CW, CD, CH - 0.08), inst, M_CABINET, cab_c, param=3.0, seed=s())
    g.box(cab, (-CW / 2 + 0.03, 0.03, 0.0), (CW - 0.06, CD - 0.06, 0.08), inst, M_PLAIN,
          np.asarray(cab_c) * 0.5, seed=s())
    for k in range(3):  # door handles
        hx = -CW / 2 + CW * (k + 0.5) / 3 - 0.06
        g.box(cab, (hx, CD, CH - 0.18), (0.12, 0.025, 0.02), inst, M_METAL, (0.7, 0.7, 0.7))
    _plant(g, cab, (CW / 2 - 0.25, CD / 2, CH), 0.6, rng, s)
    g.sphere(cab, (-CW / 2 + 0.3, CD / 2, CH + 0.09), 0.09, g.instance("misc", "vase"), M_PLAIN,
             _vary(rng, (0.8, 0.75, 0.65)))

    # ---- desk with monitor, keyboard and office chair (east wall)
    desk_c = _pick(rng, [wood_light, ((0.90, 0.90, 0.88), (0.80, 0.80, 0.78)), wood_dark])
    desk = _Obj((X, 0.0 + _jitter(rng, 0.1), 0.0), math.pi / 2)  # local +y -> world -x (into the room)
    inst = g.instance("table", "desk")
    DW, DD = 1.4, 0.65
    g.box(desk, (-DW / 2, 0.0, 0.72), (DW, DD, 0.035), inst, M_WOOD, *desk_c, seed=s())
    g.box(desk, (-DW / 2, 0.03, 0.0), (0.04, DD - 0.06, 0.72), inst, M_WOOD, *desk_c, seed=s())
    g.box(desk, (DW / 2 - 0.04, 0.03, 0.0), (0.04, DD - 0.06, 0.72), inst, M_WOOD, *desk_c, seed=s())
    inst = g.instance("monitor")
    g.box(desk, (-0.09, 0.12, 0.755), (0.18, 0.16, 0.015), inst, M_METAL, (0.15, 0.15, 0.16))
    g.box(desk, (-0.025, 0.14, 0.77), (0.05, 0.03, 0.17), inst, M_METAL, (0.15, 0.15, 0.16))
    g.box(desk, (-0.30, 0.17, 0.90), (0.60, 0.03, 0.36), inst, M_SCREEN, (0.10, 0.16, 0.28),
          (0.05, 0.05, 0.06), seed=s())
    g.box(desk, (-0.22, 0.38, 0.755), (0.44, 0.14, 0.02), g.instance("misc", "keyboard"), M_PLAIN,
          (0.22, 0.22, 0.24))
    _chair(g, _Obj(desk.R @ np.array([0.05, 0.85, 0.0]) + desk.t, _jitter(rng, 0.15)),  # faces +x
           ((0.18, 0.18, 0.2), (0.12, 0.12, 0.14)), (0.15, 0.15, 0.17), rng, name="office_chair")

    # ---- plants in two corners
    _plant(g, _WORLD, (X - 0.38, Y - 0.38, 0.0), 1.3, rng, s)
    _plant(g, _WORLD, (X - 0.35, -Y + 0.35, 0.0), 1.0, rng, s)

    # ---- pictures: above the sofa, above the cabinet, west wall beside the window
    for lo, size in (((sx - 0.55, Y - 0.03, 1.35), (1.1, 0.03, 0.7)),
                     ((cab.t[0] - 0.35, -Y, 1.3), (0.7, 0.03, 0.5)),
                     ((-X, 1.05 + _jitter(rng, 0.05), 1.25), (0.03, 0.6, 0.8))):
        inst = g.instance("picture")
        g.box(_WORLD, lo, size, inst, M_PAINTING, _vary(rng, (0.8, 0.5, 0.3), 0.3), (0.22, 0.15, 0.1),
              param=float(rng.uniform(1.5, 4.0)), seed=s())
    return g.finish()


def _chair(g: SceneGeometry, obj: _Obj, frame_c, seat_c, rng, name=None) -> None:
    """A chair facing local +x (its back at local -x); seat 0.44 m square at 0.45 m."""
    inst = g.instance("chair", name)
    c1, c2 = frame_c
    S = 0.44
    for lx in (-S / 2, S / 2 - 0.04):
        for ly in (-S / 2, S / 2 - 0.04):
            g.box(obj, (lx, ly, 0.0), (0.04, 0.04, 0.43), inst, M_WOOD, c1, c2,
                  seed=float(rng.uniform(0, 100)))
    g.box(obj, (-S / 2, -S / 2, 0.43), (S, S, 0.05), inst, M_FABRIC, seat_c,
          seed=float(rng.uniform(0, 100)))
    for ly in (-S / 2, S / 2 - 0.04):
        g.box(obj, (-S / 2, ly, 0.48), (0.04, 0.04, 0.45), inst, M_WOOD, c1, c2,
              seed=float(rng.uniform(0, 100)))
    g.box(obj, (-S / 2, -S / 2 + 0.04, 0.68), (0.035, S - 0.08, 0.25), inst, M_WOOD, c1, c2,
          seed=float(rng.uniform(0, 100)))


def _plant(g: SceneGeometry, obj: _Obj, base, height, rng, s) -> None:
    """A potted plant of about ``height`` metres standing on ``base``."""
    inst = g.instance("plant")
    base = np.asarray(base, dtype=np.float64)
    pr = 0.09 + 0.08 * height
    ph = 0.12 + 0.22 * height
    pot_c = _pick(rng, [(0.70, 0.38, 0.25), (0.85, 0.85, 0.82), (0.25, 0.25, 0.27)])
    g.cylinder(obj, base, pr, ph, inst, M_PLAIN, pot_c, resolution=20, seed=s())
    leaf_c = _pick(rng, [(0.22, 0.45, 0.18), (0.30, 0.52, 0.22), (0.18, 0.38, 0.20)])
    n = 5 + int(rng.integers(3))
    for k in range(n):
        a = 2 * math.pi * k / n + _jitter(rng, 0.4)
        r = float(rng.uniform(0.0, 0.6)) * pr
        z = ph + float(rng.uniform(0.15, 0.85)) * (height - ph)
        rad = float(rng.uniform(0.45, 0.8)) * (0.1 + 0.14 * height)
        g.sphere(obj, base + [r * math.cos(a), r * math.sin(a), z], rad, inst, M_LEAF,
                 _vary(rng, leaf_c, 0.15), resolution=10, seed=s())


# --------------------------------------------------------------------------- texturing

class _ValueNoise:
    """Smooth 3D value noise in [0, 1] from a periodic 64^3 lattice (deterministic)."""

    N = 64

    def __init__(self, seed: int):
        n = self.N
        lattice = np.random.default_rng(seed + 7919).random((n, n, n)).astype(np.float32)
        # pad by one so corner i + 1 needs no wrap-around; flat index = x + P*y + P*P*z
        self.table = np.pad(lattice, ((0, 1), (0, 1), (0, 1)), mode="wrap").transpose(2, 1, 0).ravel()
        P = n + 1
        self._offsets = [0, 1, P, P + 1, P * P, P * P + 1, P * P + P, P * P + P + 1]
        self._P = P

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float32)
        pf = np.floor(p)
        f = p - pf
        i = pf.astype(np.int32) & (self.N - 1)
        w = f * f * (3.0 - 2.0 * f)
        P = self._P
        base = i[:, 0] + P * i[:, 1] + (P * P) * i[:, 2]
        T = self.table
        c = [T[base + o] for o in self._offsets]
        wx, wy, wz = w[:, 0], w[:, 1], w[:, 2]
        c00 = c[0] + wx * (c[1] - c[0])
        c10 = c[2] + wx * (c[3] - c[2])
        c01 = c[4] + wx * (c[5] - c[4])
        c11 = c[6] + wx * (c[7] - c[6])
        c0 = c00 + wy * (c10 - c00)
        c1 = c01 + wy * (c11 - c01)
        return c0 + wz * (c1 - c0)

    def fbm(self, p: np.ndarray, octaves: int = 3) -> np.ndarray:
        out = np.zeros(len(p), dtype=np.float32)
        amp, norm = 1.0, 0.0
        for k in range(octaves):
            out += amp * self(p * (2.0 ** k) + 17.31 * k)
            norm += amp
            amp *= 0.5
        return out / norm


def _hash01(*ints) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer tuple (vectorised)."""
    h = np.uint32(2166136261) * np.ones_like(np.asarray(ints[0]), dtype=np.uint32)
    for k, a in enumerate(ints):
        h = (h ^ (np.asarray(a).astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)) * np.uint32(16777619)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0x5BD1E995 + 2 * k)
        h ^= h >> np.uint32(15)
    return (h & np.uint32(0xFFFFFF)).astype(np.float32) / np.float32(16777216.0)


def _runs(values: np.ndarray):
    """(start, stop) of each run of equal consecutive values."""
    if len(values) == 0:
        return []
    cut = np.flatnonzero(values[1:] != values[:-1]) + 1
    bounds = np.concatenate([[0], cut, [len(values)]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _smooth(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class _Shader:
    """Procedural albedo and Lambertian shading for ray hits on a :class:`SceneGeometry`."""

    def __init__(self, geom: SceneGeometry, seed: int):
        self.g = geom
        self.noise = _ValueNoise(seed)
        self._R32 = geom.part_R.astype(np.float32)
        self._emissive = np.isin(geom.part_material, list(_EMISSIVE))
        self._t32 = geom.part_t.astype(np.float32)
        self.light_pos = np.array([0.0, 0.0, ROOM_SIZE[2] - 0.3], dtype=np.float32)
        fill = np.array([-1.0, 0.35, -0.45])  # from the east window towards the room
        self.fill_dir = (-fill / np.linalg.norm(fill)).astype(np.float32)  # towards the light
        self._funcs = {M_PLAIN: self._plain, M_PLASTER: self._plaster, M_WALLPAPER: self._wallpaper,
                       M_WOOD: self._wood, M_PLANKS: self._planks, M_CHECKER: self._checker,
                       M_FABRIC: self._fabric, M_PAINTING: self._painting, M_WINDOW: self._window,
                       M_SCREEN: self._screen, M_LEAF: self._leaf, M_BOOK: self._book,
                       M_DOOR: self._door, M_CABINET: self._cabinet, M_SHADE: self._plain,
                       M_METAL: self._metal}

    # -- per-material albedo; pl: local coords (M,3) in metres, part: (M,) part ids
    def _n(self, p, part, scale, octaves=1):
        q = p * np.asarray(scale, np.float32) + self.g.part_seed[part][:, None]
        return self.noise.fbm(q, octaves) if octaves > 1 else self.noise(q)

    def _plain(self, pl, part):
        return self.g.part_color1[part] * (0.95 + 0.1 * self._n(pl, part, 3.0))[:, None]

    def _plaster(self, pl, part):
        n = self._n(pl, part, 2.5, 2)
        return self.g.part_color1[part] * (0.93 + 0.12 * n)[:, None]

    def _along(self, pl, part):
        """Coordinate along the longer horizontal extent and across it."""
        sz = self.g.part_size[part]
        use_x = sz[:, 0] >= sz[:, 1]
        return np.where(use_x, pl[:, 0], pl[:, 1]), np.where(use_x, pl[:, 1], pl[:, 0])

    def _wallpaper(self, pl, part):
        u, _ = self._along(pl, part)
        period = self.g.part_param[part]
        stripe = _smooth(0.35, 0.45, np.abs(np.modf(u / period)[0] - 0.5) * 2)
        c = self.g.part_color1[part] * (1 - stripe)[:, None] + self.g.part_color2[part] * stripe[:, None]
        return c * (0.95 + 0.08 * self._n(pl, part, 4.0))[:, None]

    def _wood(self, pl, part):
        sz = self.g.part_size[part]
        axis = np.argmax(sz, axis=1)
        a = np.take_along_axis(pl, axis[:, None], 1)[:, 0]
        b = np.take_along_axis(pl, ((axis + 1) % 3)[:, None], 1)[:, 0]
        c = np.take_along_axis(pl, ((axis + 2) % 3)[:, None], 1)[:, 0]
        warp = self._n(np.stack([a * 0.8, b * 6.0, c * 6.0], 1), part, 1.0, 2)
        g = np.modf(np.abs(b * 9.0 + c * 5.0 + 2.2 * warp) + 100.0)[0]
        t = _smooth(0.25, 0.75, np.abs(g - 0.5) * 2)
        col = self.g.part_color1[part] * (1 - t)[:, None] + self.g.part_color2[part] * t[:, None]
        return col * (0.93 + 0.12 * self._n(pl, part, (2.0, 2.0, 2.0)))[:, None]

    def _planks(self, pl, part):
        W, L = 0.19, 1.6
        row = np.floor(pl[:, 1] / W)
        x = pl[:, 0] + _hash01(row.astype(np.int64), 11) * L
        col = np.floor(x / L)
        r = _hash01(row.astype(np.int64), col.astype(np.int64))
        base = self.g.part_color1[part] * (1 - r * 0.7)[:, None] + self.g.part_color2[part] * (r * 0.7)[:, None]
        grain = self._n(np.stack([x * 1.5, pl[:, 1] * 14.0, pl[:, 2] * 14.0], 1), part, 1.0, 2)
        fy = np.modf(pl[:, 1] / W)[0]
        fx = np.modf(x / L)[0]
        seam = (fy < 0.04) | (fx < 0.006)
        shade = (0.88 + 0.22 * grain) * np.where(seam, 0.55, 1.0)
        return base * shade[:, None]

    def _checker(self, pl, part):
        sz = self.g.part_size[part]
        cell = self.g.part_param[part]
        u, v = pl[:, 0], pl[:, 1]
        border = np.minimum(np.minimum(u, sz[:, 0] - u), np.minimum(v, sz[:, 1] - v))
        parity = (np.floor(u / cell) + np.floor(v / cell)) % 2
        c1, c2 = self.g.part_color1[part], self.g.part_color2[part]
        col = np.where(parity[:, None] > 0, c1, c2)
        col = np.where((border < 0.12)[:, None], c1 * 0.55, col)
        return col * (0.9 + 0.15 * self._n(pl, part, 6.0, 2))[:, None]

    def _fabric(self, pl, part):
        return self.g.part_color1[part] * (0.82 + 0.28 * self._n(pl, part, 9.0, 2))[:, None]

    def _plane_uv(self, pl, part):
        """(u, v, su, sv) on the largest face of a thin box: u horizontal, v up."""
        sz = self.g.part_size[part]
        use_x = sz[:, 0] >= sz[:, 1]
        u = np.where(use_x, pl[:, 0], pl[:, 1])
        su = np.where(use_x, sz[:, 0], sz[:, 1])
        return u, pl[:, 2], su, sz[:, 2]

    def _painting(self, pl, part):
        u, v, su, sv = self._plane_uv(pl, part)
        border = np.minimum(np.minimum(u, su - u), np.minimum(v, sv - v))
        f = self.g.part_param[part]
        sd = self.g.part_seed[part]
        x, y = u / su, v / sv
        base = self.g.part_color1[part]
        col = np.stack([
            0.5 + 0.45 * np.sin(2 * np.pi * (f * x + 0.7 * y) + sd),
            0.5 + 0.45 * np.sin(2 * np.pi * (0.6 * x - f * 0.8 * y) + 2.1 * sd),
            0.5 + 0.45 * np.sin(2 * np.pi * (f * 0.5 * (x + y)) + 0.3 * sd + 1.0)], 1)
        blob = self.noise(np.stack([x * 3, y * 3, sd], 1)) > 0.55
        col = np.where(blob[:, None], base, col * 0.6 + base * 0.4)
        return np.where((border < 0.05)[:, None], self.g.part_color2[part], col)

    def _window(self, pl, part):
        u, v, su, sv = self._plane_uv(pl, part)
        border = np.minimum(np.minimum(u, su - u), np.minimum(v, sv - v))
        mullion = (np.abs(u - su / 2) < 0.025) | (np.abs(v - sv * 0.62) < 0.025)
        frame = (border < 0.06) | mullion
        h = v / sv
        sky = np.stack([0.55 + 0.30 * (1 - h), 0.72 + 0.18 * (1 - h), 0.95 + 0.0 * h], 1)
        cloud = _smooth(0.55, 0.75, self.noise.fbm(np.stack([u * 2.0, v * 4.0, self.g.part_seed[part]], 1), 3))
        glass = sky * (1 - cloud)[:, None] + 0.97 * cloud[:, None]
        return np.where(frame[:, None], self.g.part_color1[part], glass)

    def _screen(self, pl, part):
        u, v, su, sv = self._plane_uv(pl, part)
        border = np.minimum(np.minimum(u, su - u), np.minimum(v, sv - v))
        x, y = u / su, v / sv
        col = np.broadcast_to(self.g.part_color1[part], (len(u), 3)).copy()
        win1 = (x > 0.1) & (x < 0.55) & (y > 0.3) & (y < 0.85)
        win2 = (x > 0.6) & (x < 0.92) & (y > 0.15) & (y < 0.6)
        bar = y > 0.92
        col[win1] = (0.92, 0.92, 0.9)
        col[win1 & (y > 0.78)] = (0.3, 0.5, 0.8)
        col[win2] = (0.85, 0.55, 0.3)
        col[bar] = (0.2, 0.2, 0.22)
        return np.where((border < 0.015)[:, None], self.g.part_color2[part], col)

    def _leaf(self, pl, part):
        n = self._n(pl, part, 14.0, 2)
        c = self.g.part_color1[part] * (0.55 + 0.8 * n)[:, None]
        return np.clip(c + np.stack([0.1 * n, 0.05 * n, 0 * n], 1) * (n > 0.6)[:, None], 0, 1)

    def _book(self, pl, part):
        h = pl[:, 2]
        sh = self.g.part_size[part][:, 2]
        band = ((h > 0.025) & (h < 0.04)) | ((h > sh - 0.045) & (h < sh - 0.03))
        col = self.g.part_color1[part] * (0.9 + 0.15 * self._n(pl, part, 8.0))[:, None]
        return np.where(band[:, None], self.g.part_color2[part], col)

    def _door(self, pl, part):
        col = self._wood(pl, part)
        u, v, su, sv = self._plane_uv(pl, part)
        groove = np.zeros(len(u), bool)
        for lo_u, hi_u, lo_v, hi_v in ((0.12, su - 0.12, 0.15, 0.95), (0.12, su - 0.12, 1.1, sv - 0.15)):
            inside = (u > lo_u) & (u < hi_u) & (v > lo_v) & (v < hi_v)
            edge = np.minimum(np.minimum(u - lo_u, hi_u - u), np.minimum(v - lo_v, hi_v - v))
            groove |= inside & (edge < 0.03)
        return col * np.where(groove, 0.7, 1.0)[:, None]

    def _cabinet(self, pl, part):
        u, v, su, sv = self._plane_uv(pl, part)
        n_doors = self.g.part_param[part]
        du = np.modf(u / su * n_doors)[0] * su / n_doors
        front = pl[:, 1] > self.g.part_size[part][:, 1] - 0.005  # seams on the front face only
        seam = front & ((np.minimum(du, su / n_doors - du) < 0.006) | (np.abs(v - sv * 0.78) < 0.006))
        col = self.g.part_color1[part] * (0.95 + 0.08 * self._n(pl, part, 3.0))[:, None]
        return col * np.where(seam, 0.55, 1.0)[:, None]

    def _metal(self, pl, part):
        return self.g.part_color1[part] * (0.9 + 0.2 * self._n(pl, part, (2.0, 2.0, 30.0)))[:, None]

    # -- shading
    def local_coords(self, p_world, part):
        """R_part^T (p - t_part): hit points in each part's local frame (metres).
        Works on runs of equal part (fast when the hits are sorted by part)."""
        p_world = np.asarray(p_world, dtype=np.float32)
        out = np.empty_like(p_world)
        for a, b in _runs(part):
            k = int(part[a])
            R, d = self._R32[k], p_world[a:b] - self._t32[k]
            out[a:b] = d[:, 0:1] * R[0] + d[:, 1:2] * R[1] + d[:, 2:3] * R[2]
        return out

    def albedo(self, p_world, part):
        """Albedo (M, 3) in [0, 1] and local coordinates.  Works on runs of equal
        material, so callers that sort hits by material get a few large slices."""
        pl = self.local_coords(p_world, part)
        out = np.empty((len(part), 3), dtype=np.float32)
        mat = self.g.part_material[part]
        for a, b in _runs(mat):
            out[a:b] = self._funcs[int(mat[a])](pl[a:b], part[a:b])
        return np.clip(out, 0.0, 1.0, out=out), pl

    def shading_normals(self, pl, part, face_normals):
        """Smooth normals for cylinder sides and spheres, face normals elsewhere."""
        n = np.array(face_normals, dtype=np.float32)
        shape = self.g.part_shape[part]
        curved = shape != S_BOX
        if not curved.any():
            return n
        idx = np.flatnonzero(curved)
        R = self._R32[part[idx]]
        nl = pl[idx].copy()
        cyl = shape[idx] == S_CYLINDER
        axis = R[:, :, 2]
        cap = cyl & (np.abs(np.sum(n[idx] * axis, axis=1)) >= 0.7)
        nl[cyl, 2] = 0.0  # cylinder side: radial; sphere: from the centre
        sm = R[:, :, 0] * nl[:, 0:1] + R[:, :, 1] * nl[:, 1:2] + R[:, :, 2] * nl[:, 2:3]
        sm /= np.maximum(np.linalg.norm(sm, axis=1, keepdims=True), 1e-9)
        keep = ~cap
        n[idx[keep]] = sm[keep]
        return n

    def shade(self, p_world, part, face_normals, ray_dirs):
        """RGB in [0, 1] (M, 3) for hits at ``p_world`` on ``part``."""
        alb, pl = self.albedo(p_world, part)
        n = self.shading_normals(pl, part, face_normals)
        flip = (n[:, 0] * ray_dirs[:, 0] + n[:, 1] * ray_dirs[:, 1] + n[:, 2] * ray_dirs[:, 2]) > 0
        n[flip] *= -1.0  # two-sided: face the camera
        lx, ly, lz = (self.light_pos[k] - p_world[:, k] for k in range(3))
        dist2 = lx * lx + ly * ly + lz * lz
        key = np.clip((n[:, 0] * lx + n[:, 1] * ly + n[:, 2] * lz) / np.sqrt(dist2), 0, None) \
            * (2.2 / (1.0 + 0.25 * dist2))
        fill = np.clip(n[:, 0] * self.fill_dir[0] + n[:, 1] * self.fill_dir[1]
                       + n[:, 2] * self.fill_dir[2], 0, None)
        bounce = np.clip(-n[:, 2], 0, None)  # light reflected up from the floor
        light = 0.32 + 0.55 * key + 0.22 * fill + 0.25 * bounce
        light = np.where(self._emissive[part], 1.0, np.clip(light, 0.0, 1.25))
        return np.clip(alb * light[:, None].astype(np.float32), 0.0, 1.0)

    def vertex_colors(self) -> np.ndarray:
        """Unshaded albedo at every mesh vertex, uint8 (for ``mesh_gt.ply``)."""
        vp = self.g.vertex_part
        alb, _ = self.albedo(self.g.vertices, vp)
        return np.round(alb * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------- camera path

def look_rotation(forward, up=(0.0, 0.0, 1.0), roll: float = 0.0) -> np.ndarray:
    """Camera-to-world rotation (OpenCV axes: x right, y down, z forward) looking
    along ``forward`` with world ``up`` (z) and an extra ``roll`` (rad) about forward."""
    f = np.asarray(forward, dtype=np.float64)
    f = f / np.linalg.norm(f)
    r = np.cross(f, np.asarray(up, dtype=np.float64))
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    c, s = math.cos(roll), math.sin(roll)
    r, d = c * r + s * d, -s * r + c * d
    return np.stack([r, d, f], axis=1)


def camera_path(frames: int, seed: int = 0) -> np.ndarray:
    """(frames, 4, 4) camera-to-world poses on a smooth closed loop inside the room.

    The eye circles the dining table on an ellipse (semi-axes about 1.85 x 1.45 m)
    at 1.2-1.7 m height, looking inwards with slow yaw (+-40 deg), pitch and roll swings,
    one loop over the whole sequence (consecutive frames overlap strongly)."""
    rng = np.random.default_rng(seed + 1)
    ph = rng.uniform(0, 2 * np.pi, 8)
    theta0 = rng.uniform(0, 2 * np.pi)
    poses = np.empty((frames, 4, 4))
    for k in range(frames):
        th = theta0 + 2 * np.pi * k / frames
        ex = 1.85 * math.cos(th) + 0.12 * math.sin(2 * th + ph[0])
        ey = 1.45 * math.sin(th) + 0.10 * math.sin(3 * th + ph[1])
        ez = 1.45 + 0.18 * math.sin(2 * th + ph[2]) + 0.05 * math.sin(5 * th + ph[3])
        yaw = th + math.pi + 0.70 * math.sin(2 * th + ph[4]) + 0.12 * math.sin(5 * th + ph[7])
        pitch = -0.30 + 0.13 * math.sin(3 * th + ph[5])
        roll = 0.05 * math.sin(4 * th + ph[6])
        fwd = (math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch))
        T = np.eye(4)
        T[:3, :3] = look_rotation(fwd, roll=roll)
        T[:3, 3] = (ex, ey, ez)
        poses[k] = T
    return poses


def _roundtrip_poses(poses: np.ndarray) -> tuple:
    """The trajectory text and the poses parsed back from it (what the files hold)."""
    lines = [" ".join(f"{v:.17g}" for v in T.reshape(-1)) for T in poses]
    text = "\n".join(lines) + "\n"
    back = np.array([[float(v) for v in ln.split()] for ln in lines]).reshape(-1, 4, 4)
    return text, back


# --------------------------------------------------------------------------- rendering

class Renderer:
    """Ray-casts the room with Open3D and shades the hits.

    ``render(poses)`` returns rgb (N,H,W,3) uint8, depth (N,H,W) float32 z-depth (m, 0 = no hit),
    labels (N,H,W) uint8 class ids, instances (N,H,W) uint16."""

    def __init__(self, geom: SceneGeometry, intrinsics: Intrinsics, seed: int = 0):
        import open3d as o3d

        self.g = geom
        self.intr = intrinsics
        self.shader = _Shader(geom, seed)
        self.scene = o3d.t.geometry.RaycastingScene()
        mesh = o3d.t.geometry.TriangleMesh()
        mesh.vertex.positions = o3d.core.Tensor(geom.vertices.astype(np.float32))
        mesh.triangle.indices = o3d.core.Tensor(geom.triangles.astype(np.int32))
        self.scene.add_triangles(mesh)
        # Build the BVH now (Open3D commits lazily on the first cast), so that
        # concurrent render() calls only read the scene.
        self.scene.cast_rays(o3d.core.Tensor(np.array([[0, 0, 1, 1, 0, 0]], dtype=np.float32)))
        h, w = intrinsics.shape
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        self.dirs_cam = np.stack([(u - intrinsics.cx) / intrinsics.fx,
                                  (v - intrinsics.cy) / intrinsics.fy, np.ones_like(u)],
                                 -1).reshape(-1, 3).astype(np.float32)

    def cast(self, poses: np.ndarray) -> dict:
        import open3d as o3d

        n = len(poses)
        hw = len(self.dirs_cam)
        R = poses[:, :3, :3].astype(np.float32)
        rays = np.empty((n, hw, 6), dtype=np.float32)
        rays[:, :, :3] = poses[:, None, :3, 3].astype(np.float32)
        # world direction = R @ d_cam, written out (3x3 products through BLAS are slow here)
        dx, dy = self.dirs_cam[:, 0:1], self.dirs_cam[:, 1:2]
        for i in range(n):
            rays[i, :, 3:] = dx * R[i, :, 0] + dy * R[i, :, 1] + R[i, :, 2]
        out = self.scene.cast_rays(o3d.core.Tensor(rays))
        return {"t": out["t_hit"].numpy(), "prim": out["primitive_ids"].numpy(),
                "normals": out["primitive_normals"].numpy(), "rays": rays, "n": n}

    def render(self, poses: np.ndarray) -> dict:
        h, w = self.intr.shape
        c = self.cast(np.asarray(poses, dtype=np.float64))
        n = c["n"]
        t = c["t"].reshape(-1)
        idx = np.flatnonzero(np.isfinite(t))
        part = self.g.tri_part[c["prim"].reshape(-1)[idx]]
        # shade in part order (parts are numbered material-major): contiguous slices
        order = np.argsort(part.astype(np.int16 if len(self.g.part_class) < 32767 else np.int32),
                           kind="stable")
        idx, part = idx[order], part[order]
        th = t[idx]
        ray = c["rays"].reshape(-1, 6)[idx]
        dirs = ray[:, 3:]
        p_world = ray[:, :3] + th[:, None] * dirs
        rgb_hit = self.shader.shade(p_world, part, c["normals"].reshape(-1, 3)[idx], dirs)
        rgb = np.zeros((n * h * w, 3), np.uint8)
        rgb[idx] = (rgb_hit * 255.0 + 0.5).astype(np.uint8)
        depth = np.zeros(n * h * w, np.float32)
        depth[idx] = th
        labels = np.zeros(n * h * w, np.uint8)
        labels[idx] = self.g.part_class[part]
        inst = np.zeros(n * h * w, np.uint16)
        inst[idx] = self.g.part_instance[part]
        return {"rgb": rgb.reshape(n, h, w, 3), "depth": depth.reshape(n, h, w),
                "labels": labels.reshape(n, h, w), "instances": inst.reshape(n, h, w)}


# --------------------------------------------------------------------------- writing

def _write_png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")


def _prepare_out_dir(out: Path) -> None:
    """Create ``out``, or clear a previous generator output in it.  A non-empty
    folder that the generator did not write is refused."""
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"output path exists and is not a folder: {out}")
        entries = list(out.iterdir())
        ours = (out / COMPLETION_MARKER).is_file() or (out / _IN_PROGRESS_MARKER).is_file()
        if entries and not ours:
            raise FileExistsError(f"output folder {out} is not empty and was not written by "
                                  f"semnerf-make-scene; choose another folder")
        for sub in ("rgb", "depth", "semantic_class", "semantic_instance"):
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
        for f in ("traj_w_c.txt", "intrinsics.json", "mesh_gt.ply", COMPLETION_MARKER):
            if (out / f).exists():
                (out / f).unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / _IN_PROGRESS_MARKER).write_text("generation in progress\n")
    for sub in ("rgb", "depth", "semantic_class", "semantic_instance"):
        (out / sub).mkdir()


def make_scene(out_dir, frames: int = 300, width: int = 320, height: int = 240, seed: int = 0,
               progress: bool = True, batch: int = 8, render_threads: int = 2) -> Path:
    """Generate the synthetic room sequence into ``out_dir`` (Replica layout) and return it.

    Frames are rendered in batches of ``batch`` by ``render_threads`` threads (numpy
    and Open3D release the GIL) and written by two PNG threads.
    Deterministic for the arguments.  Raises ``ValueError`` for bad arguments and
    ``FileExistsError`` if ``out_dir`` holds unrelated files.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if width < 8 or height < 8:
        raise ValueError(f"image size must be at least 8x8, got {width}x{height}")
    from ..plyio import write_ply

    t_start = time.perf_counter()
    out = Path(out_dir).expanduser()
    _prepare_out_dir(out)
    geom = build_room(seed)
    intr = Intrinsics.from_hfov(width, height, HFOV_DEG)
    renderer = Renderer(geom, intr, seed)
    traj_text, poses = _roundtrip_poses(camera_path(frames, seed))
    (out / "traj_w_c.txt").write_text(traj_text)

    class_pixels = np.zeros(len(CLASS_NAMES), np.int64)
    seen_instances: set = set()
    depth_sum, depth_count, near_count = 0.0, 0, 0
    max_depth = 0.0
    pending = []
    starts = iter(range(0, frames, batch))
    in_flight: deque = deque()
    with ThreadPoolExecutor(max_workers=max(1, render_threads)) as render_pool, \
            ThreadPoolExecutor(max_workers=2) as pool, \
            tqdm(total=frames, desc="rendering scene", unit="frame", disable=not progress) as bar:

        def submit_next() -> None:
            start = next(starts, None)
            if start is not None:
                ids = range(start, min(frames, start + batch))
                in_flight.append((ids, render_pool.submit(renderer.render, poses[ids.start:ids.stop])))

        for _ in range(max(1, render_threads)):
            submit_next()
        while in_flight:  # batches are consumed in order, so the output is deterministic
            ids, job = in_flight.popleft()
            r = job.result()
            submit_next()
            for j, i in enumerate(ids):
                d = r["depth"][j]
                mm = np.clip(np.round(d * DEPTH_SCALE), 0, 65535).astype(np.uint16)
                pending += [
                    pool.submit(_write_png, out / "rgb" / f"rgb_{i}.png",
                                np.ascontiguousarray(r["rgb"][j][:, :, ::-1])),
                    pool.submit(_write_png, out / "depth" / f"depth_{i}.png", mm),
                    pool.submit(_write_png, out / "semantic_class" / f"semantic_class_{i}.png", r["labels"][j]),
                    pool.submit(_write_png, out / "semantic_instance" / f"semantic_instance_{i}.png",
                                r["instances"][j]),
                ]
            valid = r["depth"] > 0
            depth_sum += float(r["depth"][valid].sum(dtype=np.float64))
            depth_count += int(valid.sum())
            near_count += int((valid & (r["depth"] < 0.4)).sum())
            max_depth = max(max_depth, float(r["depth"].max()))
            class_pixels += np.bincount(r["labels"].reshape(-1), minlength=len(CLASS_NAMES))
            seen_instances.update(np.unique(r["instances"]).tolist())
            # bound memory: wait for older writes
            if len(pending) > 64:
                for f in pending[:-32]:
                    f.result()
                pending = pending[-32:]
            bar.update(len(ids))
        for f in pending:
            f.result()

    instance_to_class = {int(i): int(c) for i, c in enumerate(geom.instance_class) if i > 0}
    info = dict(intr.to_dict(), hfov=HFOV_DEG, depth_scale=DEPTH_SCALE, fps=FPS,
                class_names=CLASS_NAMES, instance_to_class=instance_to_class,
                instance_names=list(geom.instance_names), world_up=[0.0, 0.0, 1.0],
                room_bounds=[[-ROOM_SIZE[0] / 2, -ROOM_SIZE[1] / 2, 0.0],
                             [ROOM_SIZE[0] / 2, ROOM_SIZE[1] / 2, ROOM_SIZE[2]]])
    (out / "intrinsics.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")

    vcol = renderer.shader.vertex_colors()
    vlab = geom.part_class[geom.vertex_part]
    write_ply(out / "mesh_gt.ply", geom.vertices.astype(np.float32), geom.triangles, vcol, vlab)

    per_class_instances = {}
    for i, c in instance_to_class.items():
        per_class_instances[CLASS_NAMES[c]] = per_class_instances.get(CLASS_NAMES[c], 0) + 1
    stats = {
        "generator_version": GENERATOR_VERSION,
        "args": {"frames": frames, "width": width, "height": height, "seed": seed},
        "classes": CLASS_NAMES,
        "instances_per_class": per_class_instances,
        "class_pixel_fraction": {CLASS_NAMES[k]: round(float(v) / max(1, class_pixels.sum()), 6)
                                 for k, v in enumerate(class_pixels)},
        "instances_seen": int(len(seen_instances - {0})),
        "mean_depth_m": round(depth_sum / max(1, depth_count), 4),
        "max_depth_m": round(max_depth, 4),
        "near_fraction_below_0.4m": round(near_count / max(1, depth_count), 6),
        "hit_fraction": round(depth_count / float(frames * width * height), 6),
    }
    (out / COMPLETION_MARKER).write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")
    (out / _IN_PROGRESS_MARKER).unlink()
    if progress:
        print(f"wrote {frames} frames {width}x{height} to {out} in "
              f"{time.perf_counter() - t_start:.1f} s", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- cache

def _cache_root() -> Path:
    env = os.environ.get("SEMNERF_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "semnerf_ros"


def default_scene_dir(frames: int = 300, width: int = 320, height: int = 240, seed: int = 0) -> Path:
    """The cache folder for a scene with these arguments
    (``$SEMNERF_CACHE_DIR`` or ``~/.cache/semnerf_ros``)."""
    return _cache_root() / f"scene_v{GENERATOR_VERSION}_f{frames}_{width}x{height}_s{seed}"


def scene_is_complete(path, frames=None, width=None, height=None, seed=None) -> bool:
    """True if ``path`` holds a finished scene (matching the given arguments, if any)."""
    marker = Path(path) / COMPLETION_MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if info.get("generator_version") != GENERATOR_VERSION:
        return False
    want = {"frames": frames, "width": width, "height": height, "seed": seed}
    return all(v is None or info.get("args", {}).get(k) == v for k, v in want.items())


def ensure_scene(frames: int = 300, width: int = 320, height: int = 240, seed: int = 0,
                 path=None, progress: bool = True) -> Path:
    """Return a finished scene folder, generating it once (into a temporary
    sibling folder renamed into place, so concurrent callers are safe)."""
    target = Path(path).expanduser() if path is not None else default_scene_dir(frames, width, height, seed)
    if scene_is_complete(target, frames, width, height, seed):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not (target / _IN_PROGRESS_MARKER).exists() and \
            not (target / COMPLETION_MARKER).exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and does not hold a generated scene")
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        make_scene(tmp, frames, width, height, seed, progress=progress)
        if scene_is_complete(target, frames, width, height, seed):
            return target  # someone else finished first
        if target.exists():
            shutil.rmtree(target)  # stale or outdated scene
        try:
            os.rename(tmp, target)
        except OSError:
            if not scene_is_complete(target, frames, width, height, seed):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="semnerf-make-scene",
        description="Render the built-in synthetic room (Replica layout: rgb, depth, semantic "
                    "class/instance images, traj_w_c.txt, intrinsics.json, mesh_gt.ply).")
    p.add_argument("out", help="output folder (created; a previous scene in it is replaced)")
    p.add_argument("--frames", type=int, default=300, help="number of frames (default 300)")
    p.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    p.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    p.add_argument("--seed", type=int, default=0, help="layout/colour/path seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    b = p.add_argument_group("rosbag output (needs semnerf_ros.ros.bag_writer)")
    b.add_argument("--bag", metavar="PATH", help="also write the sequence as a ROS 2 bag")
    b.add_argument("--bag-format", choices=("mcap", "sqlite3"), default="mcap",
                   help="bag storage format (default mcap)")
    b.add_argument("--noise", choices=("pixel", "region", "none"), default="pixel",
                   help="label corruption of the bag's segmentation topic (default pixel; the "
                        "ground truth goes on its own topic)")
    b.add_argument("--noise-ratio", type=float, default=0.5,
                   help="fraction of pixels / instances corrupted (default 0.5)")
    b.add_argument("--rate", type=float, default=30.0, help="frame rate of the bag in Hz (default 30)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.frames < 1:
        _parser().error("--frames must be >= 1")
    if not 0.0 <= args.noise_ratio <= 1.0:
        _parser().error("--noise-ratio must lie in [0, 1]")
    if args.rate <= 0:
        _parser().error("--rate must be positive")
    write_scene_bag = None
    if args.bag:
        try:
            from ..ros.bag_writer import write_scene_bag
        except ImportError as exc:
            print(f"semnerf-make-scene: --bag needs semnerf_ros.ros.bag_writer, which cannot be "
                  f"imported: {exc}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    try:
        out = make_scene(args.out, args.frames, args.width, args.height, args.seed,
                         progress=not args.quiet)
    except (ValueError, FileExistsError) as exc:
        print(f"semnerf-make-scene: {exc}", file=sys.stderr)
        return 2
    stats = json.loads((out / COMPLETION_MARKER).read_text())
    print(f"scene: {out}  ({time.perf_counter() - t0:.1f} s)\n"
          f"  classes ({len(CLASS_NAMES)} incl. void): {', '.join(CLASS_NAMES)}\n"
          f"  instances per class: {stats['instances_per_class']}\n"
          f"  mean depth {stats['mean_depth_m']:.2f} m, max {stats['max_depth_m']:.2f} m, "
          f"pixels nearer than 0.4 m: {100 * stats['near_fraction_below_0.4m']:.2f} %")
    if write_scene_bag is not None:
        try:
            summary = write_scene_bag(out, args.bag, storage=args.bag_format, rate_hz=args.rate,
                                      noise=args.noise, noise_ratio=args.noise_ratio, seed=args.seed,
                                      progress=not args.quiet)
        except (ValueError, OSError) as exc:
            print(f"semnerf-make-scene: cannot write the bag {args.bag}: {exc}", file=sys.stderr)
            return 2
        frames_written = summary.get("frames") if isinstance(summary, dict) else None
        print(f"bag: {args.bag} ({args.bag_format}, {frames_written} frames, noise {args.noise} "
              f"{args.noise_ratio if args.noise != 'none' else ''})".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
