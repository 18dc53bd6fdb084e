"""The built-in demo room (seed 0): a 6 x 5 x 2.7 m living/dining room.

A dining table with six chairs, a desk with a monitor and an office chair, a sofa
with cushions, a bookshelf full of books, a cabinet, lamps, plants, pictures, a rug,
a door and two (sky-textured) windows: all 17 classes and many instances.  This is
the room every earlier version generated; its code and random draws are kept
unchanged so seed 0's files stay byte-identical (the demo and the tests rely on
it).  Other seeds use :mod:`.layout`'s family of houses.
"""
from __future__ import annotations

import math

import numpy as np

from .appearance import (
    M_BOOK,
    M_CABINET,
    M_CHECKER,
    M_DOOR,
    M_FABRIC,
    M_METAL,
    M_PAINTING,
    M_PLAIN,
    M_PLANKS,
    M_PLASTER,
    M_SCREEN,
    M_SHADE,
    M_WALLPAPER,
    M_WINDOW,
    M_WOOD,
    Lighting,
)
from .furniture import chair as _chair
from .furniture import jitter as _jitter
from .furniture import pick as _pick
from .furniture import plant as _plant
from .furniture import vary as _vary
from .geometry import WORLD as _WORLD
from .geometry import Placement as _Obj
from .geometry import SceneGeometry
from .plan import FloorPlan

ROOM_SIZE = (6.0, 5.0, 2.7)  # x, y, z extent in metres; the room spans [-3, 3] x [-2.5, 2.5] x [0, 2.7]


def classic_room(seed: int = 0) -> SceneGeometry:
    """The built-in furnished room (layout jitter, colours and textures vary with ``seed``;
    :func:`.layout.build_room` uses it for seed 0)."""
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
    g.finish()
    g.plan = FloorPlan.single_room(-X, -Y, X, Y, Z, name="classic")
    g.lighting = Lighting.classic(Z)
    return g
