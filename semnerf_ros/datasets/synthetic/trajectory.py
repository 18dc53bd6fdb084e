"""Camera trajectories through the synthetic houses: a handheld scan that visits every room.

Seed 0 keeps the demo room's loop around the dining table (:func:`classic_path`).
For the other houses, :class:`FreeSpace` rasterises the floor plan (5 cm cells:
room interiors and doorway passages, minus furniture footprints and door leaves)
and its clearance map; :func:`planned_path` then walks the rooms in a tour of the
plan's doorway graph, sweeping an arc around each room's middle while looking
inwards, and passing doorways looking ahead.  Legs between waypoints are
least-cost grid routes (``skimage.graph.MCP_Geometric``) that keep at least
:data:`CLEARANCE` m from walls and furniture; the route is smoothed, given slow
yaw / pitch / roll / height swings, and sampled so that neither the step between
frames nor the rotation between frames gets large (the walker slows down in turns).
Geometry is a function of the seed only; ``frames`` only sets the sampling.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric

from .plan import FloorPlan

CELL = 0.05              # m, grid cell of the free-space map
CLEARANCE = 0.4          # m the camera centre keeps from walls and furniture footprints
EFFORT_PER_RAD = 0.9     # m of walking that one radian of turning is worth when pacing frames
EFFORT_BUDGET = 20.0     # pacing budget (m-equivalents) of a whole path: about 6.7 cm / frame at 300 frames
CAMERA_HEIGHT = (1.2, 1.7)


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


def classic_path(frames: int, seed: int = 0) -> np.ndarray:
    """The demo room's path: (frames, 4, 4) camera-to-world poses on a smooth closed loop.

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


class FreeSpace:
    """The floor plan as a grid: where the camera may be, and how far from obstacles.

    ``free`` (rows = y, cols = x) marks room interiors and doorway passages outside
    every furniture footprint; ``clearance`` is each cell's distance (m) to the
    nearest non-free cell, less half a cell (a lower bound of the distance to the
    obstacle)."""

    def __init__(self, plan: FloorPlan, cell: float = CELL):
        self.plan = plan
        self.cell = cell
        lo = plan.bounds()[0] - 0.5
        hi = plan.bounds()[1] + 0.5
        self.origin = lo
        self.shape = (int(math.ceil((hi[1] - lo[1]) / cell)), int(math.ceil((hi[0] - lo[0]) / cell)))
        ys = lo[1] + (np.arange(self.shape[0]) + 0.5) * cell
        xs = lo[0] + (np.arange(self.shape[1]) + 0.5) * cell
        X, Y = np.meshgrid(xs, ys)
        self.room_id = np.full(self.shape, -1, np.int32)
        for k, r in enumerate(plan.rooms):
            self.room_id[r.contains(X, Y)] = k
        free = self.room_id >= 0
        h = plan.half_wall
        for o in plan.openings:
            if o.kind != "doorway":
                continue
            r = plan.rooms[o.room]
            face = r.face(o.side)
            out = {"S": -1, "N": 1, "W": -1, "E": 1}[o.side] * 2 * h
            a, b = sorted((face, face + out))
            if o.side in ("S", "N"):
                m = (X >= o.lo) & (X <= o.hi) & (Y >= a - 1e-6) & (Y <= b + 1e-6)
            else:
                m = (Y >= o.lo) & (Y <= o.hi) & (X >= a - 1e-6) & (X <= b + 1e-6)
            free |= m
        for x0, y0, x1, y1, *_ in plan.obstacles:
            m = (X >= x0 - cell / 2) & (X <= x1 + cell / 2) & (Y >= y0 - cell / 2) & (Y <= y1 + cell / 2)
            free &= ~m
        self.free = free
        self.clearance = np.maximum(ndimage.distance_transform_edt(free) * cell - cell / 2, 0.0)
        self.ok = self.clearance >= CLEARANCE
        labels, n = ndimage.label(self.ok, structure=np.ones((3, 3)))
        self.component = labels
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            self.main = int(np.argmax(sizes)) + 1
        else:
            self.main = 0

    # -- coordinates
    def cell_of(self, xy) -> tuple:
        xy = np.asarray(xy, dtype=np.float64)
        c = np.floor((xy - self.origin) / self.cell).astype(int)
        return int(np.clip(c[1], 0, self.shape[0] - 1)), int(np.clip(c[0], 0, self.shape[1] - 1))

    def xy_of(self, rc) -> np.ndarray:
        rc = np.asarray(rc, dtype=np.float64)
        return self.origin + (rc[..., ::-1] + 0.5) * self.cell

    def clearance_at(self, xy) -> np.ndarray:
        """Clearance (m) at world points ``xy`` (M,2), bilinear between cell centres."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        c = (xy - self.origin) / self.cell - 0.5
        return ndimage.map_coordinates(self.clearance, [c[:, 1], c[:, 0]], order=1, mode="nearest")

    def doorway_point(self, o) -> np.ndarray:
        """The middle of a doorway (on the wall's mid-plane)."""
        r = self.plan.rooms[o.room]
        face = r.face(o.side) + {"S": -1, "N": 1, "W": -1, "E": 1}[o.side] * self.plan.half_wall
        return np.array([o.centre, face]) if o.side in ("S", "N") else np.array([face, o.centre])

    def snap(self, xy, room: Optional[int] = None, margin: float = 0.05) -> Optional[tuple]:
        """The nearest cell of the main free component (clearance >= CLEARANCE + margin;
        inside ``room`` if given) to ``xy``, as (row, col), or None."""
        mask = (self.component == self.main) & (self.clearance >= CLEARANCE + margin)
        if room is not None:
            mask &= self.room_id == room
        if not mask.any():
            mask = self.component == self.main
            if room is not None:
                mask &= self.room_id == room
            if not mask.any():
                return None
        rc = self.cell_of(xy)
        if mask[rc]:
            return rc
        _, idx = ndimage.distance_transform_edt(~mask, return_indices=True)
        return int(idx[0][rc]), int(idx[1][rc])

    def blocked_rooms(self) -> set:
        """Rooms the camera cannot sweep: no cell of the main free component inside, or a
        doorway of theirs outside that component."""
        bad = set()
        for k in range(len(self.plan.rooms)):
            if not np.any((self.component == self.main) & (self.room_id == k)):
                bad.add(k)
        for o in self.plan.openings:
            if o.kind == "doorway":
                rc = self.cell_of(self.doorway_point(o))
                if self.component[rc] != self.main:
                    bad |= {o.room, o.other}
        return bad


# ----------------------------------------------------------------------------- planning

def _room_tour(plan: FloorPlan, rng) -> list:
    """Rooms in visiting order as ``(room, doorway it is entered by or None)``: a
    depth-first tour of the doorway graph from a leaf room, without the final return."""
    degree = [len(plan.neighbours(k)) for k in range(len(plan.rooms))]
    leaves = [k for k in range(len(plan.rooms)) if degree[k] <= 1 and plan.rooms[k].kind != "corridor"]
    start = leaves[int(rng.integers(len(leaves)))] if leaves else 0
    tour: list = [(start, None)]
    seen = {start}

    def visit(k):
        for other, o in sorted(plan.neighbours(k), key=lambda t: t[0]):
            if other in seen:
                continue
            seen.add(other)
            tour.append((other, o))
            visit(other)
            tour.append((k, o))

    visit(start)
    while len(tour) > 1 and tour[-1][0] in [t[0] for t in tour[:-1]]:
        tour.pop()  # do not walk back at the end
    return tour


def _route(fs: FreeSpace, cost: np.ndarray, a: tuple, b: tuple) -> np.ndarray:

    if a == b:
        return np.array([a])
    mcp = MCP_Geometric(cost, fully_connected=True)
    mcp.find_costs([a], [b])
    path = np.asarray(mcp.traceback(b))
    return path


def _gauss(x: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    if sigma <= 0:
        return x
    return ndimage.gaussian_filter1d(x, sigma, axis=axis, mode="nearest")


def planned_path(plan: FloorPlan, frames: int, rng: np.random.Generator) -> np.ndarray:
    """(frames, 4, 4) poses of a scan through every room of ``plan`` (see the module doc)."""
    fs = FreeSpace(plan)
    # phases of the swings, drawn first so they do not depend on the arc search
    phases = rng.uniform(0, 2 * np.pi, 8)
    tour = _room_tour(plan, rng)
    direction = 1.0 if rng.uniform() < 0.5 else -1.0
    cost = np.where(fs.ok & (fs.component == fs.main),
                    1.0 + 3.0 * np.exp(-(fs.clearance - CLEARANCE) / 0.25), -1.0)
    arc_scale, size_scale = 1.0, 1.0
    best = None
    for _ in range(8):
        path = _dense_path(fs, plan, tour, cost, direction, arc_scale, size_scale)
        poses_dense, effort = _orient(path, phases)
        if best is None or effort[-1] < best[1][-1]:
            best = (poses_dense, effort)
        if effort[-1] <= EFFORT_BUDGET:
            break
        arc_scale *= max(0.7, EFFORT_BUDGET / effort[-1])
        size_scale *= 0.85
    poses_dense, effort = best
    return _sample(poses_dense, effort, frames)


def _dense_path(fs: FreeSpace, plan: FloorPlan, tour: list, cost: np.ndarray, direction: float,
                arc_scale: float, size_scale: float) -> dict:
    """Waypoints -> grid routes -> smoothed 2 cm polyline with per-sample look targets."""
    waypoints: list = []   # (row, col, loop centre or None)
    visited: set = set()
    for i, (k, entry) in enumerate(tour):
        r = plan.rooms[k]
        if entry is not None:
            door = fs.doorway_point(entry)
            out = np.array({"S": (0, -1), "N": (0, 1), "W": (-1, 0), "E": (1, 0)}[entry.side], float)
            into = out if k == entry.other else -out   # walking direction through the doorway
            for off in (-0.7, 0.0, 0.7):
                rc = fs.snap(door + into * off, margin=0.0)
                if rc is not None:
                    waypoints.append((*rc, None))
        if k in visited or r.kind == "corridor":
            # pass through: the next doorway is reached by the route; corridors get a waypoint
            # in their middle so the walk looks along them
            if r.kind == "corridor" and k not in visited:
                nxt = tour[i + 1][1] if i + 1 < len(tour) else None
                if nxt is None:
                    for t in np.linspace(0.15, 0.85, 3):
                        p = np.array([r.x0 + t * r.width, (r.y0 + r.y1) / 2]) if r.width >= r.depth else \
                            np.array([(r.x0 + r.x1) / 2, r.y0 + t * r.depth])
                        rc = fs.snap(p, room=k)
                        if rc is not None:
                            waypoints.append((*rc, None))
            visited.add(k)
            continue
        visited.add(k)
        c = r.centre
        ax = min(max(0.35 * r.width * size_scale, 0.7), 2.0)
        ay = min(max(0.35 * r.depth * size_scale, 0.7), 2.0)
        start_xy = fs.xy_of(np.array(waypoints[-1][:2])) if waypoints else c + np.array([ax, 0.0])
        a0 = math.atan2((start_xy[1] - c[1]) / ay, (start_xy[0] - c[0]) / ax)
        arc = min(2 * math.pi, max(0.3 * math.pi, 1.6 * math.pi * arc_scale))
        n = max(4, int(math.ceil(arc / (math.pi / 5))))
        for t in np.linspace(0.0, 1.0, n + 1):
            a = a0 + direction * arc * t
            rc = fs.snap(c + np.array([ax * math.cos(a), ay * math.sin(a)]), room=k, margin=0.1)
            if rc is not None:
                waypoints.append((*rc, (float(c[0]), float(c[1]))))
    # drop consecutive duplicates
    wp = [waypoints[0]]
    for w in waypoints[1:]:
        if w[:2] != wp[-1][:2]:
            wp.append(w)
    cells, targets = [np.array([wp[0][:2]])], [[wp[0][2]]]
    for a, b in zip(wp[:-1], wp[1:]):
        seg = _route(fs, cost, tuple(a[:2]), tuple(b[:2]))[1:]
        cells.append(seg)
        # a leg is part of a loop when both its ends are on the same loop
        tgt = a[2] if (a[2] is not None and a[2] == b[2]) else None
        targets.append([tgt] * len(seg))
    cells = np.concatenate(cells)
    targets = [t for ts in targets for t in ts]
    raw = fs.xy_of(cells)
    # resample at 2 cm along the arc length
    seg = np.linalg.norm(np.diff(raw, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    step = 0.02
    n = max(2, int(s[-1] / step) + 1)
    si = np.linspace(0.0, s[-1], n)
    xy_raw = np.stack([np.interp(si, s, raw[:, 0]), np.interp(si, s, raw[:, 1])], 1)
    nearest = np.clip(np.searchsorted(s, si), 0, len(targets) - 1)
    tgt = [targets[j] for j in nearest]
    # smooth, pulling back towards the raw route wherever the clearance would suffer
    xy = _gauss(xy_raw, 0.3 / step)
    for _ in range(12):
        bad = fs.clearance_at(xy) < CLEARANCE
        if not bad.any():
            break
        w = _gauss(bad.astype(float), 0.2 / step)
        w = np.clip(w * 4, 0, 1)[:, None]
        xy = w * xy_raw + (1 - w) * xy
        xy = np.where(bad[:, None], xy_raw, xy)
    # resample again at a uniform 2 cm on the smoothed curve
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    s2 = np.concatenate([[0.0], np.cumsum(seg)])
    n2 = max(2, int(s2[-1] / step) + 1)
    sj = np.linspace(0.0, s2[-1], n2)
    idx = np.clip(np.searchsorted(s2, sj), 0, len(xy) - 1)
    xy_u = np.stack([np.interp(sj, s2, xy[:, 0]), np.interp(sj, s2, xy[:, 1])], 1)
    return {"xy": xy_u, "s": sj, "target": [tgt[j] for j in idx], "fs": fs}


def _orient(path: dict, phases: np.ndarray) -> tuple:
    """Per-sample position, yaw, pitch, roll, height and the cumulative pacing effort."""
    xy, s = path["xy"], path["s"]
    n = len(xy)
    step = float(s[1] - s[0]) if n > 1 else 0.02
    tangent = np.gradient(_gauss(xy, 0.5 / step), axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    loop = np.array([t is not None for t in path["target"]], float)
    # every sample gets the nearest loop's centre (for blending in and out of loops)
    centres = np.full((n, 2), np.nan)
    for j, t in enumerate(path["target"]):
        if t is not None:
            centres[j] = t
    have = np.flatnonzero(loop > 0)
    if len(have):
        nearest = have[np.clip(np.searchsorted(have, np.arange(n)), 0, len(have) - 1)]
        prev = have[np.clip(np.searchsorted(have, np.arange(n)) - 1, 0, len(have) - 1)]
        use = np.where(np.abs(prev - np.arange(n)) < np.abs(nearest - np.arange(n)), prev, nearest)
        centres = centres[use]
        inward = centres - xy
        inward /= np.maximum(np.linalg.norm(inward, axis=1, keepdims=True), 1e-9)
    else:
        inward = tangent.copy()
    w = np.clip(_gauss(loop, 0.6 / step), 0, 1)[:, None]
    look = w * inward + (1 - w) * tangent
    bad = np.linalg.norm(look, axis=1) < 0.3
    look[bad] = tangent[bad]
    yaw = np.unwrap(np.arctan2(look[:, 1], look[:, 0]))
    yaw = _gauss(yaw, 0.35 / step)
    yaw = yaw + 0.15 * np.sin(2 * np.pi * s / 6.5 + phases[0]) + 0.03 * np.sin(2 * np.pi * s / 2.1 + phases[1])
    pitch = -0.27 + 0.11 * np.sin(2 * np.pi * s / 5.3 + phases[2])
    roll = 0.05 * np.sin(2 * np.pi * s / 4.1 + phases[3])
    height = 1.45 + 0.15 * np.sin(2 * np.pi * s / 6.7 + phases[4]) + 0.04 * np.sin(2 * np.pi * s / 2.3 + phases[5])
    ds = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    dturn = np.hypot(np.diff(yaw), np.diff(pitch))
    effort = np.concatenate([[0.0], np.cumsum(np.hypot(ds, EFFORT_PER_RAD * dturn))])
    dense = {"xy": xy, "yaw": yaw, "pitch": pitch, "roll": roll, "height": height}
    return dense, effort


def _sample(dense: dict, effort: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` poses spread evenly in pacing effort along the dense path."""
    at = np.linspace(0.0, effort[-1], frames) if frames > 1 else np.array([0.0])
    f = {k: np.interp(at, effort, v) if v.ndim == 1 else
         np.stack([np.interp(at, effort, v[:, j]) for j in range(v.shape[1])], 1)
         for k, v in dense.items()}
    poses = np.empty((frames, 4, 4))
    for i in range(frames):
        yaw, pitch = f["yaw"][i], f["pitch"][i]
        fwd = (math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch))
        T = np.eye(4)
        T[:3, :3] = look_rotation(fwd, roll=float(f["roll"][i]))
        T[:3, 3] = (f["xy"][i, 0], f["xy"][i, 1], f["height"][i])
        poses[i] = T
    return poses


def path_report(poses: np.ndarray, plan: FloorPlan) -> dict:
    """Facts a test or a user checks about a path: the largest step (m) and rotation
    (deg) between frames, the smallest clearance (m) to walls / furniture footprints,
    and which rooms the camera stood in."""
    fs = FreeSpace(plan)
    p = poses[:, :3, 3]
    steps = np.linalg.norm(np.diff(p, axis=0), axis=1) if len(p) > 1 else np.zeros(1)
    R = poses[:, :3, :3]
    cosang = (np.einsum("nij,nij->n", R[:-1], R[1:]) - 1) / 2 if len(p) > 1 else np.ones(1)
    rooms = sorted({plan.room_at(x, y) for x, y in p[:, :2]} - {None})
    return {"max_step_m": float(steps.max()), "mean_step_m": float(steps.mean()),
            "max_rotation_deg": float(np.degrees(np.arccos(np.clip(cosang, -1, 1))).max()),
            "min_clearance_m": float(fs.clearance_at(p[:, :2]).min()),
            "rooms_visited": rooms, "rooms": len(plan.rooms),
            "height_range_m": [float(p[:, 2].min()), float(p[:, 2].max())]}
