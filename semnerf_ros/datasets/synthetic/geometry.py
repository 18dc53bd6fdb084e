"""Scene geometry of the synthetic rooms: the class list, primitive meshes and the
triangle soup with its per-part tables.

The primitive meshes (:func:`box_mesh`, :func:`cylinder_mesh`, :func:`sphere_mesh`)
reproduce Open3D's ``TriangleMesh.create_box / create_cylinder / create_sphere``
vertex for vertex and triangle for triangle (same formulas, same order, the C
library's ``sin``/``cos`` through :mod:`math`), so the rooms are built with numpy
alone and stay identical to the ones earlier versions built with Open3D.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

CLASS_NAMES = [
    "void", "wall", "floor", "ceiling", "door", "window", "table", "chair", "sofa", "cushion",
    "cabinet", "shelf", "book", "lamp", "plant", "picture", "rug", "monitor",
]
CLASS_ID = {name: i for i, name in enumerate(CLASS_NAMES)}

# Primitive shapes (for smooth shading normals and the ray casters' bounding boxes).
S_BOX, S_CYLINDER, S_SPHERE = range(3)

_BOX_TRIANGLES = np.array([[4, 7, 5], [4, 6, 7], [0, 2, 4], [2, 6, 4], [0, 1, 2], [1, 3, 2],
                           [1, 5, 7], [1, 7, 3], [2, 3, 7], [2, 7, 6], [0, 4, 1], [1, 4, 5]],
                          dtype=np.int64)


def box_mesh(width: float, height: float, depth: float) -> tuple:
    """``(vertices (8,3) float64, triangles (12,3))`` of the box ``[0,w] x [0,h] x [0,d]``
    (Open3D's ``create_box(width, height, depth)``)."""
    i = np.arange(8)
    v = np.stack([(i & 1) * float(width), ((i >> 2) & 1) * float(height), ((i >> 1) & 1) * float(depth)],
                 axis=1).astype(np.float64)
    return v, _BOX_TRIANGLES.copy()


def cylinder_mesh(radius: float, height: float, resolution: int = 20, split: int = 1) -> tuple:
    """Open3D's ``create_cylinder``: axis z, centred on the origin (z in [-h/2, h/2])."""
    radius, height = float(radius), float(height)
    res, split = int(resolution), int(split)
    v = np.empty((res * (split + 1) + 2, 3), dtype=np.float64)
    v[0] = (0.0, 0.0, height * 0.5)
    v[1] = (0.0, 0.0, -height * 0.5)
    step = math.pi * 2.0 / float(res)
    h_step = height / float(split)
    for i in range(split + 1):
        for j in range(res):
            theta = step * j
            v[2 + res * i + j] = (math.cos(theta) * radius, math.sin(theta) * radius,
                                  height * 0.5 - h_step * i)
    tris = []
    for j in range(res):
        j1 = (j + 1) % res
        tris.append((0, 2 + j, 2 + j1))
        base = 2 + res * split
        tris.append((1, base + j1, base + j))
    for i in range(split):
        b1 = 2 + res * i
        b2 = b1 + res
        for j in range(res):
            j1 = (j + 1) % res
            tris.append((b2 + j, b1 + j1, b1 + j))
            tris.append((b2 + j, b2 + j1, b1 + j1))
    return v, np.asarray(tris, dtype=np.int64)


def sphere_mesh(radius: float, resolution: int = 20) -> tuple:
    """Open3D's ``create_sphere`` (UV sphere, poles on the z axis)."""
    radius, res = float(radius), int(resolution)
    v = np.empty((2 * res * (res - 1) + 2, 3), dtype=np.float64)
    v[0] = (0.0, 0.0, radius)
    v[1] = (0.0, 0.0, -radius)
    step = math.pi / float(res)
    for i in range(1, res):
        alpha = step * i
        base = 2 + 2 * res * (i - 1)
        for j in range(2 * res):
            theta = step * j
            v[base + j] = (math.sin(alpha) * math.cos(theta) * radius,
                           math.sin(alpha) * math.sin(theta) * radius, math.cos(alpha) * radius)
    tris = []
    for j in range(2 * res):
        j1 = (j + 1) % (2 * res)
        tris.append((0, 2 + j, 2 + j1))
        base = 2 + 2 * res * (res - 2)
        tris.append((1, base + j1, base + j))
    for i in range(1, res - 1):
        b1 = 2 + 2 * res * (i - 1)
        b2 = b1 + 2 * res
        for j in range(2 * res):
            j1 = (j + 1) % (2 * res)
            tris.append((b2 + j, b1 + j1, b1 + j))
            tris.append((b2 + j, b2 + j1, b1 + j1))
    return v, np.asarray(tris, dtype=np.int64)


def yaw_matrix(theta: float) -> np.ndarray:
    """Rotation about world z by ``theta`` radians."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class Placement:
    """An object's frame in the world: rotation about z by ``yaw`` (rad), then
    translation to ``pos`` (m)."""

    def __init__(self, pos=(0.0, 0.0, 0.0), yaw: float = 0.0):
        self.R = yaw_matrix(yaw)
        self.t = np.asarray(pos, dtype=np.float64)
        self.yaw = float(yaw)

    def to_world(self, p) -> np.ndarray:
        """A point of the object frame in world coordinates."""
        return self.R @ np.asarray(p, dtype=np.float64) + self.t


WORLD = Placement()


class SceneGeometry:
    """All triangles of a scene plus per-triangle part index and per-part tables.

    Attributes (numpy, after :meth:`finish`): ``vertices`` (V,3) float64 world metres,
    ``triangles`` (F,3) int32, ``tri_part`` (F,) part of each triangle; per part:
    ``part_class``, ``part_instance``, ``part_material``, ``part_shape``,
    ``part_color1``/``part_color2`` (P,3) albedo in [0,1], ``part_param`` (P,),
    ``part_seed`` (P,), ``part_R`` (P,3,3) local-to-world rotation, ``part_t`` (P,3)
    local origin, ``part_size`` (P,3) local extents; ``instance_class`` (I,) class of
    each instance id (0 = nothing hit), ``instance_names``.  ``plan`` (a
    :class:`~.layout.FloorPlan`) and ``lighting`` (an :class:`~.appearance.Lighting`)
    are set by the layout.
    """

    def __init__(self):
        self._verts: list = []
        self._tris: list = []
        self._tri_part: list = []
        self._nv = 0
        self._parts: list = []
        self.instance_class = [0]
        self.instance_names = ["none"]
        self.plan = None
        self.lighting = None

    # -- construction
    def instance(self, class_name: str, name: Optional[str] = None) -> int:
        """A new instance id of ``class_name`` (``"misc"``: an unlabelled object, class 0)."""
        cls = CLASS_ID[class_name] if class_name != "misc" else 0
        self.instance_class.append(cls)
        k = sum(1 for c in self.instance_class[1:] if c == cls)
        self.instance_names.append(name or f"{class_name}_{k}")
        return len(self.instance_class) - 1

    def _add(self, v_local, tris, shape, obj: Placement, origin, size, inst, material, c1, c2=None,
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

    def box(self, obj: Placement, lo, size, inst, material, c1, c2=None, param=0.0, seed=0.0):
        """Axis-aligned box (in the object frame) with min corner ``lo`` and extents ``size`` (m)."""
        v, f = box_mesh(*[float(s) for s in size])
        return self._add(v, f, S_BOX, obj, lo, size, inst, material, c1, c2, param, seed)

    def cylinder(self, obj: Placement, base, radius, height, inst, material, c1, c2=None,
                 resolution=20, param=0.0, seed=0.0):
        """Vertical cylinder standing on ``base`` (centre of its bottom cap)."""
        v, f = cylinder_mesh(float(radius), float(height), int(resolution), 1)
        v = v + [0.0, 0.0, height / 2.0]
        return self._add(v, f, S_CYLINDER, obj, base, (radius, radius, height), inst, material,
                         c1, c2, param, seed)

    def sphere(self, obj: Placement, centre, radius, inst, material, c1, c2=None, resolution=10,
               param=0.0, seed=0.0):
        """Sphere (a UV mesh of ``resolution`` rings) around ``centre``."""
        v, f = sphere_mesh(float(radius), int(resolution))
        return self._add(v, f, S_SPHERE, obj, centre, (radius, radius, radius), inst, material,
                         c1, c2, param, seed)

    def finish(self) -> "SceneGeometry":
        """Freeze the lists into arrays; parts are numbered material-major, so hits
        sorted by part are also grouped by material."""
        self.vertices = np.concatenate(self._verts)
        self.triangles = np.concatenate(self._tris).astype(np.int32)
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
        """(V,) part of every vertex."""
        vp = np.empty(len(self.vertices), dtype=np.int32)
        vp[self.triangles.reshape(-1)] = np.repeat(self.tri_part, 3)
        return vp

    @property
    def num_parts(self) -> int:
        return int(len(self.part_class))

    def bounds(self) -> np.ndarray:
        """(2,3) axis-aligned bounding box of all vertices (m)."""
        return np.stack([self.vertices.min(0), self.vertices.max(0)])
