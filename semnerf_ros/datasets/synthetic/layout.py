"""The family of synthetic houses: ``build_room(seed)``.

Seed 0 is the built-in demo room (:mod:`.classic`, unchanged).  Every other seed
draws a floor plan (:func:`.plan.make_plan`: one to three rooms of 3-8 m or a
corridor with rooms, doorways, an exterior door, windows that open to the
outside), builds floors, ceilings and walls with the openings cut out, window
frames and door leaves, furnishes each room by its kind (:mod:`.furniture`),
and picks the lights (:class:`.appearance.Lighting`): one or two ceiling lights
per room, a fill light from a window, colour temperature and the outside's colours.
Same 17 classes as the demo room.
"""
from __future__ import annotations

import math

import numpy as np

from .appearance import (
    M_BRICK,
    M_CARPET,
    M_DOOR,
    M_METAL,
    M_PLAIN,
    M_PLANKS,
    M_PLASTER,
    M_TILES,
    M_WALLPAPER,
    M_WOOD,
    Lighting,
)
from .classic import classic_room
from .furniture import WHITE_PAINT, WOOD_DARK, WOOD_LIGHT, WOOD_RED, Builder, furnish_room, pick, vary
from .geometry import WORLD, Placement, SceneGeometry
from .plan import OPPOSITE, FloorPlan, Opening, make_plan
from .trajectory import FreeSpace, classic_path, planned_path

WALL_COLOURS = [(0.86, 0.84, 0.80), (0.78, 0.82, 0.85), (0.86, 0.80, 0.70), (0.76, 0.81, 0.74),
                (0.90, 0.90, 0.88), (0.82, 0.76, 0.74), (0.70, 0.74, 0.80), (0.88, 0.85, 0.72)]
ACCENT_COLOURS = [(0.55, 0.63, 0.70), (0.70, 0.55, 0.50), (0.55, 0.65, 0.55), (0.72, 0.66, 0.50),
                  (0.45, 0.50, 0.62), (0.62, 0.45, 0.48)]
FLOORS = [("planks", (0.66, 0.48, 0.30), (0.50, 0.34, 0.20)), ("planks", (0.45, 0.30, 0.19), (0.33, 0.21, 0.13)),
          ("planks", (0.78, 0.65, 0.48), (0.64, 0.50, 0.34)), ("tiles", (0.82, 0.80, 0.76), (0.55, 0.53, 0.50)),
          ("tiles", (0.40, 0.42, 0.45), (0.25, 0.26, 0.28)), ("tiles", (0.75, 0.62, 0.50), (0.50, 0.40, 0.32)),
          ("carpet", (0.55, 0.52, 0.48), (0.40, 0.38, 0.35)), ("carpet", (0.35, 0.40, 0.50), (0.25, 0.28, 0.35))]
TINTS = [(1.0, 1.0, 1.0), (1.0, 0.95, 0.87), (0.93, 0.97, 1.0), (1.0, 0.91, 0.80)]
SKIES = [(0.62, 0.76, 0.95), (0.78, 0.82, 0.88), (0.55, 0.70, 0.92), (0.85, 0.80, 0.75)]
GROUNDS = [(0.42, 0.48, 0.34), (0.50, 0.50, 0.48), (0.55, 0.50, 0.40)]


def build_room(seed: int = 0) -> SceneGeometry:
    """The furnished house for ``seed`` (seed 0: the built-in demo room).

    The result's ``plan`` holds rooms, openings and furniture footprints (the camera
    path planner's input) and ``lighting`` the lights; deterministic for the seed."""
    seed = int(seed)
    if seed == 0:
        return classic_room(0)
    rng = np.random.default_rng([seed, 13])
    plan = None
    for _ in range(50):
        plan = make_plan(rng)
        if _connected(plan):
            break
    else:  # pragma: no cover - make_plan practically always connects its rooms
        raise RuntimeError(f"seed {seed}: no connected floor plan")
    # furnish; where furniture would cut a room off from the camera's way, furnish that room
    # more sparsely (the same draws otherwise, so the other rooms stay as they were)
    start = rng.bit_generator.state
    sparse: dict = {}
    for _ in range(8):
        rng.bit_generator.state = start
        plan.obstacles = []
        g = _build(plan, rng, sparse)
        blocked = FreeSpace(plan).blocked_rooms()
        if not blocked or all(sparse.get(k, 0) >= 3 for k in blocked):
            break
        for k in blocked:
            sparse[k] = min(3, sparse.get(k, 0) + 1)
    g.plan = plan
    g.lighting = _lighting(plan, rng)
    return g


def _connected(plan: FloorPlan) -> bool:
    seen, todo = {0}, [0]
    while todo:
        k = todo.pop()
        for other, _ in plan.neighbours(k):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return len(seen) == len(plan.rooms)


def _build(plan: FloorPlan, rng: np.random.Generator, sparse: dict) -> SceneGeometry:
    g = SceneGeometry()
    b = Builder(g, rng)
    _structure(b, plan)
    for k in range(len(plan.rooms)):
        furnish_room(b, plan, k, sparse=sparse.get(k, 0))
    return g.finish()


# ----------------------------------------------------------------------------- structure

def _wall_box(plan: FloorPlan, room: int, side: str, a: float, b: float, z0: float, z1: float,
              inset: float = 0.0, depth=None):
    """World (lo, size) of a box on ``side``'s half wall between along-coordinates a..b
    and heights z0..z1; ``inset``/``depth`` select a slab of the wall thickness
    measured from the inner face outwards."""
    r = plan.rooms[room]
    h = plan.half_wall
    d = h - inset if depth is None else depth
    if side == "S":
        return (a, r.y0 - inset - d, z0), (b - a, d, z1 - z0)
    if side == "N":
        return (a, r.y1 + inset, z0), (b - a, d, z1 - z0)
    if side == "W":
        return (r.x0 - inset - d, a, z0), (d, b - a, z1 - z0)
    return (r.x1 + inset, a, z0), (d, b - a, z1 - z0)


def _structure(b: Builder, plan: FloorPlan) -> None:
    """Floors, ceilings, walls with openings, window frames and door leaves."""
    g, rng = b.g, b.rng
    H, h = plan.height, plan.half_wall
    ceiling_c = vary(rng, (0.93, 0.92, 0.90), 0.03)
    house_wall = pick(rng, WALL_COLOURS)
    for k, r in enumerate(plan.rooms):
        floor_kind, c1, c2 = pick(rng, FLOORS)
        if r.kind == "corridor" and rng.uniform() < 0.5:
            floor_kind, c1, c2 = pick(rng, FLOORS[3:6])
        mat = {"planks": M_PLANKS, "tiles": M_TILES, "carpet": M_CARPET}[floor_kind]
        inst = g.instance("floor")
        g.box(WORLD, (r.x0 - h, r.y0 - h, -0.1), (r.width + 2 * h, r.depth + 2 * h, 0.1), inst, mat,
              vary(rng, c1, 0.05), vary(rng, c2, 0.05), param=b.u(0.3, 0.6), seed=b.s())
        inst = g.instance("ceiling")
        g.box(WORLD, (r.x0 - h, r.y0 - h, H), (r.width + 2 * h, r.depth + 2 * h, 0.1), inst, M_PLASTER,
              ceiling_c, seed=b.s())
        wall_c = vary(rng, house_wall if rng.uniform() < 0.6 else pick(rng, WALL_COLOURS), 0.03)
        accent = int(rng.integers(4)) if rng.uniform() < 0.6 else -1
        accent_mat = M_WALLPAPER if rng.uniform() < 0.6 else M_BRICK
        accent_c = pick(rng, ACCENT_COLOURS) if accent_mat == M_WALLPAPER else \
            pick(rng, [(0.62, 0.32, 0.24), (0.70, 0.45, 0.35), (0.55, 0.52, 0.50)])
        stripe = b.u(0.12, 0.22)
        for si, side in enumerate(("S", "N", "W", "E")):
            inst = g.instance("wall")
            a, c = r.side_range(side)
            if side in ("S", "N"):
                a, c = a - h, c + h
            if si == accent:
                mat, col1, col2 = accent_mat, vary(rng, accent_c, 0.04), None
                col2 = np.asarray(col1) * 0.85 if accent_mat == M_WALLPAPER else vary(rng, (0.80, 0.78, 0.74), 0.03)
            else:
                mat, col1, col2 = M_PLASTER, wall_c, None
            openings = sorted(plan.openings_on(k, side), key=lambda o: o.lo)
            cur = a
            for o in openings:
                if o.lo > cur:
                    lo, size = _wall_box(plan, k, side, cur, o.lo, -0.1, H + 0.1)
                    g.box(WORLD, lo, size, inst, mat, col1, col2, param=stripe, seed=b.s())
                if o.z0 > 0:
                    lo, size = _wall_box(plan, k, side, o.lo, o.hi, -0.1, o.z0)
                    g.box(WORLD, lo, size, inst, mat, col1, col2, param=stripe, seed=b.s())
                lo, size = _wall_box(plan, k, side, o.lo, o.hi, o.z1, H + 0.1)
                g.box(WORLD, lo, size, inst, mat, col1, col2, param=stripe, seed=b.s())
                cur = o.hi
            if c > cur:
                lo, size = _wall_box(plan, k, side, cur, c, -0.1, H + 0.1)
                g.box(WORLD, lo, size, inst, mat, col1, col2, param=stripe, seed=b.s())
    for o in plan.openings:
        if o.kind == "window":
            _window(b, plan, o)
        elif o.leaf != "none":
            _door(b, plan, o)


def _window(b: Builder, plan: FloorPlan, o: Opening) -> None:
    """Frame, mullion and transom (class window) set in the outer part of the opening;
    the panes are open: rays through them leave the house."""
    g, rng = b.g, b.rng
    inst = g.instance("window")
    wood = rng.uniform() < 0.4
    c1, c2 = pick(rng, [WOOD_LIGHT, WOOD_DARK, WOOD_RED]) if wood else (vary(rng, (0.92, 0.92, 0.90), 0.02), None)
    mat = M_WOOD if wood else M_PLAIN
    fw, depth = 0.05, 0.06
    inset = plan.half_wall - depth  # frame in the outer part of the wall
    pieces = [(o.lo, o.lo + fw, o.z0, o.z1), (o.hi - fw, o.hi, o.z0, o.z1),
              (o.lo + fw, o.hi - fw, o.z0, o.z0 + fw), (o.lo + fw, o.hi - fw, o.z1 - fw, o.z1)]
    if o.width > 1.0:
        m = o.centre
        pieces.append((m - 0.02, m + 0.02, o.z0 + fw, o.z1 - fw))
    if rng.uniform() < 0.5:
        zt = o.z0 + 0.62 * (o.z1 - o.z0)
        pieces.append((o.lo + fw, o.hi - fw, zt - 0.02, zt + 0.02))
    for a, c, z0, z1 in pieces:
        lo, size = _wall_box(plan, o.room, o.side, a, c, z0, z1, inset=inset, depth=depth)
        g.box(WORLD, lo, size, inst, mat, c1, c2, seed=b.s())
    # interior sill board (class window)
    lo, size = _wall_box(plan, o.room, o.side, o.lo - 0.05, o.hi + 0.05, o.z0 - 0.03, o.z0, inset=-0.04,
                         depth=plan.half_wall - depth + 0.04)
    g.box(WORLD, lo, size, inst, mat, c1, c2, seed=b.s())


def _wall_frame(plan: FloorPlan, room: int, side: str, u: float) -> Placement:
    r = plan.rooms[room]
    return {"S": Placement((u, r.y0, 0.0), 0.0), "N": Placement((u, r.y1, 0.0), math.pi),
            "W": Placement((r.x0, u, 0.0), -math.pi / 2), "E": Placement((r.x1, u, 0.0), math.pi / 2)}[side]


def _door(b: Builder, plan: FloorPlan, o: Opening) -> None:
    """A door leaf (class door) in the opening, closed or swung open into ``swing_room``,
    with casing on that room's side and a knob.  Open leaves become obstacles."""
    g, rng = b.g, b.rng
    inst = g.instance("door")
    room = o.swing_room if o.swing_room >= 0 else o.room
    side = o.side if room == o.room else OPPOSITE[o.side]
    sign = 1.0 if side in ("S", "E") else -1.0  # local x of the wall frame along +u or -u
    colours = pick(rng, [WOOD_LIGHT, WOOD_DARK, WHITE_PAINT, WOOD_RED])
    width, top = o.width, o.z1
    hinge_u = o.lo if o.hinge == "lo" else o.hi
    towards = 1.0 if o.hinge == "lo" else -1.0   # from the hinge to the other jamb, along u
    sigma = towards * sign                           # ... in the wall frame's local x
    frame = _wall_frame(plan, room, side, hinge_u)
    phi = 0.0 if o.leaf == "closed" else o.swing
    yaw = frame.yaw + math.atan2(math.sin(phi), sigma * math.cos(phi))
    if o.leaf == "closed":  # the leaf sits in the opening, inside the wall thickness
        leaf = Placement(frame.to_world((0.0, -plan.half_wall / 2 - 0.02, 0.0)), yaw)
    else:
        leaf = Placement(frame.to_world((0.0, 0.01, 0.0)), yaw)
    g.box(leaf, (0.005, -0.02, 0.0), (width - 0.01, 0.04, top - 0.01), inst, M_DOOR, *colours, seed=b.s())
    knob_y = 0.05 if o.leaf == "closed" else -0.05
    for ky in (knob_y, -knob_y):
        g.sphere(leaf, (width - 0.1, ky, 1.0), 0.03, inst, M_METAL, (0.75, 0.70, 0.55))
    if o.leaf != "closed":
        pts = np.array([leaf.to_world((x, y, 0.0))[:2] for x in (0.0, width) for y in (-0.03, 0.03)])
        plan.obstacles.append((*pts.min(0).tolist(), *pts.max(0).tolist(), float(top), "door_leaf"))
    # casing on the swing room's face
    trim, proud = 0.07, 0.02
    casing = Placement(frame.t, frame.yaw)
    lo_x = min(0.0, sigma * width)
    for x0, w, z0, hgt in ((lo_x - trim, trim, 0.0, top + trim), (lo_x + width, trim, 0.0, top + trim),
                           (lo_x, width, top, trim)):
        g.box(casing, (x0, 0.0, z0), (w, proud, hgt), inst, M_PLAIN, vary(rng, (0.9, 0.9, 0.88), 0.02), seed=b.s())


# ----------------------------------------------------------------------------- lighting

def _lighting(plan: FloorPlan, rng: np.random.Generator) -> Lighting:
    h = plan.half_wall
    lights, gains, rooms = [], [], []
    for r in plan.rooms:
        n = max(1, int(round(max(r.width, r.depth) / 3.5)))
        gain = float(rng.uniform(1.6, 2.6))
        for k in range(n):
            a = (k + 0.5) / n
            if r.width >= r.depth:
                p = (r.x0 + a * r.width, (r.y0 + r.y1) / 2)
            else:
                p = ((r.x0 + r.x1) / 2, r.y0 + a * r.depth)
            lights.append((p[0], p[1], plan.height - 0.3))
            gains.append(gain / math.sqrt(n))
            rooms.append((r.x0 - h, r.y0 - h, r.x1 + h, r.y1 + h))
    windows = [o for o in plan.openings if o.kind == "window"]
    if windows:
        o = windows[int(rng.integers(len(windows)))]
        inward = {"S": (0.0, 1.0), "N": (0.0, -1.0), "W": (1.0, 0.0), "E": (-1.0, 0.0)}[o.side]
    else:
        a = float(rng.uniform(0, 2 * math.pi))
        inward = (math.cos(a), math.sin(a))
    lateral = float(rng.uniform(-0.4, 0.4))
    fill = np.array([inward[0] - lateral * inward[1], inward[1] + lateral * inward[0], -float(rng.uniform(0.3, 0.6))])
    return Lighting(lights=np.asarray(lights, np.float32), gains=np.asarray(gains, np.float32),
                    fill_dir=(-fill / np.linalg.norm(fill)).astype(np.float32),
                    rooms=np.asarray(rooms, np.float32), ambient=float(rng.uniform(0.26, 0.38)),
                    key=float(rng.uniform(0.45, 0.65)), fill=float(rng.uniform(0.12, 0.3)), bounce=0.25,
                    tint=np.asarray(pick(rng, TINTS), np.float32), sky=np.asarray(pick(rng, SKIES), np.float32),
                    ground=np.asarray(pick(rng, GROUNDS), np.float32))


def camera_path(frames: int, seed: int = 0, geometry=None) -> np.ndarray:
    """(frames, 4, 4) camera-to-world poses (OpenCV axes, world z up, metres) of the
    scan of house ``seed``; ``geometry``: its :func:`build_room` result, if
    already built (other seeds need the floor plan)."""
    if int(seed) == 0:
        return classic_path(frames, 0)
    if geometry is None:
        geometry = build_room(seed)
    return planned_path(geometry.plan, frames, np.random.default_rng([int(seed), 17]))


# ----------------------------------------------------------------------------- free space
