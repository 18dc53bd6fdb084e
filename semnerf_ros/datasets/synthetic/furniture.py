"""Furniture of the synthetic rooms, and where it goes in a room.

Pieces are built from boxes, cylinders and spheres with one instance id each
(a chair, a book, a lamp, ...).  A piece that stands against a wall is built in a
*wall frame* (:meth:`RoomFurnisher.wall_frame`): origin on the wall's inner face,
local x along the wall, local +y into the room, z up.  :class:`RoomFurnisher`
places the pieces of one room without overlaps, keeps doorways clear, and records
every footprint in the floor plan's ``obstacles`` for the camera planner.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .appearance import (
    M_BOOK,
    M_CABINET,
    M_CARPET,
    M_CHECKER,
    M_FABRIC,
    M_LEAF,
    M_METAL,
    M_PAINTING,
    M_PLAIN,
    M_SCREEN,
    M_SHADE,
    M_WOOD,
)
from .geometry import Placement, SceneGeometry
from .plan import FloorPlan


def jitter(rng, scale):
    return float(rng.uniform(-scale, scale))


def pick(rng, options):
    return options[int(rng.integers(len(options)))]


def vary(rng, colour, amount=0.06):
    c = np.asarray(colour, dtype=np.float64) * (1.0 + rng.uniform(-amount, amount, 3))
    return np.clip(c, 0.0, 1.0)


def chair(g: SceneGeometry, obj: Placement, frame_c, seat_c, rng, name=None) -> None:
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


def plant(g: SceneGeometry, obj: Placement, base, height, rng, s) -> None:
    """A potted plant of about ``height`` metres standing on ``base``."""
    inst = g.instance("plant")
    base = np.asarray(base, dtype=np.float64)
    pr = 0.09 + 0.08 * height
    ph = 0.12 + 0.22 * height
    pot_c = pick(rng, [(0.70, 0.38, 0.25), (0.85, 0.85, 0.82), (0.25, 0.25, 0.27)])
    g.cylinder(obj, base, pr, ph, inst, M_PLAIN, pot_c, resolution=20, seed=s())
    leaf_c = pick(rng, [(0.22, 0.45, 0.18), (0.30, 0.52, 0.22), (0.18, 0.38, 0.20)])
    n = 5 + int(rng.integers(3))
    for k in range(n):
        a = 2 * math.pi * k / n + jitter(rng, 0.4)
        r = float(rng.uniform(0.0, 0.6)) * pr
        z = ph + float(rng.uniform(0.15, 0.85)) * (height - ph)
        rad = float(rng.uniform(0.45, 0.8)) * (0.1 + 0.14 * height)
        g.sphere(obj, base + [r * math.cos(a), r * math.sin(a), z], rad, inst, M_LEAF,
                 vary(rng, leaf_c, 0.15), resolution=10, seed=s())




def plant_radius(height: float) -> float:
    """Horizontal reach (m) of :func:`plant` of ``height`` around its base."""
    pr = 0.09 + 0.08 * height
    return max(pr, 0.6 * pr + 0.8 * (0.1 + 0.14 * height))


# ----------------------------------------------------------------------------- palettes

WOOD_LIGHT = ((0.72, 0.55, 0.36), (0.58, 0.42, 0.26))
WOOD_DARK = ((0.42, 0.27, 0.16), (0.30, 0.18, 0.10))
WOOD_RED = ((0.55, 0.30, 0.20), (0.42, 0.22, 0.14))
WHITE_PAINT = ((0.88, 0.88, 0.86), (0.78, 0.78, 0.76))
GREY_PAINT = ((0.35, 0.37, 0.40), (0.25, 0.27, 0.30))
WOODS = [WOOD_LIGHT, WOOD_DARK, WOOD_RED, WHITE_PAINT, GREY_PAINT]
FABRICS = [(0.35, 0.38, 0.45), (0.55, 0.50, 0.45), (0.30, 0.42, 0.40), (0.60, 0.30, 0.25),
           (0.75, 0.70, 0.60), (0.25, 0.30, 0.50), (0.50, 0.55, 0.35), (0.45, 0.30, 0.45)]
CUSHIONS = [(0.85, 0.70, 0.30), (0.80, 0.80, 0.78), (0.55, 0.25, 0.35), (0.25, 0.50, 0.60),
            (0.90, 0.50, 0.30), (0.40, 0.60, 0.40)]
BOOKS = [(0.60, 0.12, 0.12), (0.12, 0.25, 0.55), (0.15, 0.45, 0.25), (0.85, 0.70, 0.20),
         (0.90, 0.88, 0.82), (0.15, 0.15, 0.17), (0.55, 0.30, 0.55), (0.85, 0.45, 0.15),
         (0.30, 0.60, 0.70)]
RUGS = [((0.70, 0.25, 0.22), (0.85, 0.78, 0.62)), ((0.22, 0.32, 0.55), (0.80, 0.80, 0.75)),
        ((0.35, 0.45, 0.30), (0.85, 0.75, 0.55)), ((0.55, 0.50, 0.45), (0.30, 0.28, 0.26)),
        ((0.80, 0.72, 0.55), (0.55, 0.35, 0.25))]
LAMP_SHADES = [(0.95, 0.88, 0.70), (0.92, 0.92, 0.90), (0.90, 0.80, 0.60)]
METAL = (0.2, 0.2, 0.2)


class Builder:
    """What every piece needs: the geometry, the random generator and the texture-seed
    draw ``s()``, plus the house's wood / fabric choices."""

    def __init__(self, g: SceneGeometry, rng: np.random.Generator):
        self.g = g
        self.rng = rng
        self.wood = pick(rng, WOODS)
        self.wood2 = pick(rng, WOODS)
        self.fabric = pick(rng, FABRICS)

    def s(self) -> float:
        return float(self.rng.uniform(0.0, 100.0))

    def u(self, a: float, b: float) -> float:
        return float(self.rng.uniform(a, b))


def table(b: Builder, obj: Placement, length: float, width: float, height: float, colours,
          name: Optional[str] = None, top: float = 0.04, leg: float = 0.06) -> int:
    """A four-legged table centred on the frame's origin (x along its length)."""
    g = b.g
    inst = g.instance("table", name)
    g.box(obj, (-length / 2, -width / 2, height - top), (length, width, top), inst, M_WOOD, *colours, seed=b.s())
    for lx in (-length / 2 + 0.04, length / 2 - 0.04 - leg):
        for ly in (-width / 2 + 0.04, width / 2 - 0.04 - leg):
            g.box(obj, (lx, ly, 0.0), (leg, leg, height - top), inst, M_WOOD, *colours, seed=b.s())
    return inst


def misc_items(b: Builder, obj: Placement, z: float, xs, ys) -> None:
    """A few unlabelled objects (cup, bowl, vase; class void) on a surface at height ``z``."""
    g, rng = b.g, b.rng
    for x, y in zip(xs, ys):
        kind = int(rng.integers(3))
        if kind == 0:
            g.cylinder(obj, (x, y, z), 0.04, 0.1, g.instance("misc", "cup"), M_PLAIN, vary(rng, (0.92, 0.92, 0.95)))
        elif kind == 1:
            g.cylinder(obj, (x, y, z), 0.11, 0.06, g.instance("misc", "bowl"), M_PLAIN,
                       vary(rng, (0.75, 0.35, 0.2), 0.2))
        else:
            g.sphere(obj, (x, y, z + 0.09), 0.09, g.instance("misc", "vase"), M_PLAIN,
                     vary(rng, (0.8, 0.75, 0.65), 0.2))


def pendant_lamp(b: Builder, obj: Placement, ceiling: float, bottom: float) -> None:
    """A shade hanging on a cord from the ceiling; its lower rim at ``bottom`` m."""
    g = b.g
    inst = g.instance("lamp", "pendant_lamp")
    g.cylinder(obj, (0.0, 0.0, bottom + 0.18), 0.012, ceiling - bottom - 0.18, inst, M_METAL, METAL, resolution=8)
    g.cylinder(obj, (0.0, 0.0, bottom), b.u(0.18, 0.26), 0.18, inst, M_SHADE, pick(b.rng, LAMP_SHADES), resolution=28)


def ceiling_lamp(b: Builder, x: float, y: float, ceiling: float) -> None:
    """A flush ceiling light (class lamp)."""
    g = b.g
    inst = g.instance("lamp", "ceiling_lamp")
    r = b.u(0.16, 0.25)
    g.cylinder(Placement((x, y, 0.0)), (0.0, 0.0, ceiling - 0.09), r, 0.09, inst, M_SHADE,
               pick(b.rng, LAMP_SHADES), resolution=24)


def floor_lamp(b: Builder, obj: Placement) -> None:
    g = b.g
    inst = g.instance("lamp", "floor_lamp")
    h = b.u(1.35, 1.6)
    g.cylinder(obj, (0, 0, 0), 0.16, 0.03, inst, M_METAL, METAL, resolution=20)
    g.cylinder(obj, (0, 0, 0.03), 0.016, h, inst, M_METAL, (0.25, 0.25, 0.25), resolution=8)
    g.cylinder(obj, (0, 0, h - 0.03), 0.21, 0.32, inst, M_SHADE, pick(b.rng, LAMP_SHADES), resolution=28)


def table_lamp(b: Builder, obj: Placement, base) -> None:
    g = b.g
    inst = g.instance("lamp", "table_lamp")
    x, y, z = base
    g.cylinder(obj, (x, y, z), 0.07, 0.02, inst, M_METAL, METAL, resolution=16)
    g.cylinder(obj, (x, y, z + 0.02), 0.012, 0.3, inst, M_METAL, METAL, resolution=8)
    g.cylinder(obj, (x, y, z + 0.26), 0.13, 0.18, inst, M_SHADE, pick(b.rng, LAMP_SHADES), resolution=24)


def sofa(b: Builder, obj: Placement, width: float, colour, cushions: int, name: Optional[str] = None) -> None:
    """A sofa in a wall frame (back against the wall), ``width`` m wide, 0.94 m deep."""
    g, rng = b.g, b.rng
    inst = g.instance("sofa", name)
    W2 = width / 2
    arm = 0.18 if width > 1.2 else 0.14
    g.box(obj, (-W2 + arm, 0.02, 0.08), (2 * W2 - 2 * arm, 0.88, 0.34), inst, M_FABRIC, colour, seed=b.s())
    g.box(obj, (-W2, 0.02, 0.08), (arm, 0.92, 0.56), inst, M_FABRIC, colour, seed=b.s())
    g.box(obj, (W2 - arm, 0.02, 0.08), (arm, 0.92, 0.56), inst, M_FABRIC, colour, seed=b.s())
    g.box(obj, (-W2 + arm, 0.02, 0.42), (2 * W2 - 2 * arm, 0.22, 0.46), inst, M_FABRIC, colour, seed=b.s())
    for lx in (-W2 + 0.05, W2 - 0.09):
        for ly in (0.05, 0.86):
            g.box(obj, (lx, ly, 0.0), (0.04, 0.04, 0.08), inst, M_WOOD, *WOOD_DARK, seed=b.s())
    inner = 2 * W2 - 2 * arm
    for k in range(cushions):
        cx = -inner / 2 + inner * (k + 0.5) / cushions
        cw = min(0.42, inner / cushions - 0.04)
        g.box(obj, (cx - cw / 2 + jitter(rng, 0.03), 0.24, 0.42), (cw, 0.14, 0.38), g.instance("cushion"),
              M_FABRIC, vary(rng, pick(rng, CUSHIONS)), seed=b.s())


def bookshelf(b: Builder, obj: Placement, width: float, height: float, depth: float, colours) -> None:
    """A shelf (class shelf) in a wall frame, its boards full of books (class book)
    with an unlabelled ornament here and there."""
    g, rng = b.g, b.rng
    inst = g.instance("shelf", "bookshelf")
    SW, SD, SH = width, depth, height
    g.box(obj, (-SW / 2, 0.0, 0.0), (0.03, SD, SH), inst, M_WOOD, *colours, seed=b.s())
    g.box(obj, (SW / 2 - 0.03, 0.0, 0.0), (0.03, SD, SH), inst, M_WOOD, *colours, seed=b.s())
    g.box(obj, (-SW / 2, 0.0, 0.0), (SW, 0.015, SH), inst, M_WOOD, *colours, seed=b.s())
    n_levels = max(2, int(round((SH - 0.1) / b.u(0.36, 0.45))))
    boards = [k * (SH - 0.03) / n_levels for k in range(n_levels)] + [SH - 0.03]
    for bz in boards:
        g.box(obj, (-SW / 2 + 0.03, 0.015, bz), (SW - 0.06, SD - 0.015, 0.03), inst, M_WOOD, *colours, seed=b.s())
    fill = b.u(0.6, 1.0)
    for level, bz in enumerate(boards[:-1]):
        gap_h = boards[level + 1] - bz - 0.03
        x = -SW / 2 + 0.03 + b.u(0.0, 0.05)
        x_end = -SW / 2 + 0.03 + (SW - 0.06) * (fill if level % 2 else 1.0)
        misc_at = b.u(0.2, 0.8) if rng.uniform() < 0.4 else None
        while True:
            if misc_at is not None and x > -SW / 2 + misc_at * SW:
                if x + 0.14 > x_end:
                    break
                g.box(obj, (x + 0.01, 0.06, bz + 0.03), (0.12, min(0.16, SD - 0.1), min(0.1, gap_h - 0.02)),
                      g.instance("misc"), M_PLAIN, vary(rng, (0.75, 0.62, 0.45), 0.2), seed=b.s())
                x += 0.16
                misc_at = None
                continue
            w = b.u(0.025, 0.06)
            if x + w > x_end:
                break
            h = min(b.u(0.18, 0.33), gap_h - 0.01)
            d = min(b.u(0.15, 0.24), SD - 0.03)
            g.box(obj, (x, SD - d - 0.01, bz + 0.03), (w, d, h), g.instance("book"), M_BOOK,
                  vary(rng, pick(rng, BOOKS), 0.1), (0.85, 0.72, 0.35), seed=b.s())
            x += w + (b.u(0.03, 0.12) if rng.uniform() < 0.08 else 0.002)


def cabinet(b: Builder, obj: Placement, width: float, depth: float, height: float, colour,
            doors: int, name: Optional[str] = None) -> None:
    """A cabinet with ``doors`` front doors and handles, on a recessed plinth (wall frame)."""
    g = b.g
    inst = g.instance("cabinet", name)
    g.box(obj, (-width / 2, 0.0, 0.08), (width, depth, height - 0.08), inst, M_CABINET, colour,
          param=float(doors), seed=b.s())
    g.box(obj, (-width / 2 + 0.03, 0.03, 0.0), (width - 0.06, depth - 0.06, 0.08), inst, M_PLAIN,
          np.asarray(colour) * 0.5, seed=b.s())
    for k in range(doors):
        hx = -width / 2 + width * (k + 0.5) / doors - 0.06
        g.box(obj, (hx, depth, height - 0.18), (0.12, 0.025, 0.02), inst, M_METAL, (0.7, 0.7, 0.7))


def screen(b: Builder, obj: Placement, x: float, y: float, z: float, width: float, name: str) -> None:
    """A monitor / TV (class monitor) on a stand at (x, y, z) of the frame, facing +y."""
    g = b.g
    inst = g.instance("monitor", name)
    h = width * 0.6
    g.box(obj, (x - 0.09 * width / 0.6, y - 0.08, z), (0.18 * width / 0.6, 0.16, 0.015), inst, M_METAL,
          (0.15, 0.15, 0.16))
    g.box(obj, (x - 0.025, y - 0.06, z + 0.015), (0.05, 0.03, 0.15), inst, M_METAL, (0.15, 0.15, 0.16))
    g.box(obj, (x - width / 2, y - 0.03, z + 0.12), (width, 0.03, h), inst, M_SCREEN, (0.10, 0.16, 0.28),
          (0.05, 0.05, 0.06), seed=b.s())


def picture(b: Builder, obj: Placement, width: float, height: float, z0: float) -> None:
    """A painting hung on the wall (wall frame; its centre at local x = 0)."""
    g, rng = b.g, b.rng
    g.box(obj, (-width / 2, 0.0, z0), (width, 0.03, height), g.instance("picture"), M_PAINTING,
          vary(rng, (0.8, 0.5, 0.3), 0.3), pick(rng, [(0.22, 0.15, 0.1), (0.85, 0.82, 0.75), (0.1, 0.1, 0.1)]),
          param=b.u(1.5, 4.0), seed=b.s())


def rug(b: Builder, obj: Placement, width: float, depth: float) -> None:
    """A rug centred on the frame's origin: a bordered checker or a plain carpet."""
    g, rng = b.g, b.rng
    c1, c2 = pick(rng, RUGS)
    if rng.uniform() < 0.6:
        g.box(obj, (-width / 2, -depth / 2, 0.0), (width, depth, 0.012), g.instance("rug"), M_CHECKER,
              vary(rng, c1), vary(rng, c2), param=b.u(0.2, 0.4), seed=b.s())
    else:
        g.box(obj, (-width / 2, -depth / 2, 0.0), (width, depth, 0.012), g.instance("rug"), M_CARPET,
              vary(rng, c1), vary(rng, c2), seed=b.s())


# ----------------------------------------------------------------------------- placement

WALKWAY = 0.85  # metres kept free between a free-standing group and anything else


class RoomFurnisher:
    """Places pieces in one room of a plan without overlaps.

    Footprints are world axis-aligned boxes ``(x0, y0, x1, y1)``; doorways and doors
    keep a 1.1 m deep clear zone in front of them; windows block tall pieces only.
    Every floor-standing piece is appended to ``plan.obstacles``."""

    def __init__(self, b: Builder, plan: FloorPlan, room: int, max_pieces: Optional[int] = None):
        self.b = b
        self.max_pieces = max_pieces   # floor pieces this room may get (None: no limit)
        self.pieces = 0
        self.plan = plan
        self.k = room
        self.room = plan.rooms[room]
        self.items: list = []      # (box, top, name, free_standing)
        self.reserved: list = []
        self.wall_items: list = []  # (side, lo, hi, z0, z1) of things hung on walls
        for side in ("S", "N", "W", "E"):
            for o in plan.openings_on(room, side):
                if o.kind in ("doorway", "door"):
                    self.reserved.append(self._wall_box(side, o.lo - 0.15, o.hi + 0.15, 0.95))
        for ob in plan.obstacles:  # door leaves built with the walls
            self.items.append((tuple(ob[:4]), ob[4], ob[5], False))

    # -- frames and boxes
    def wall_frame(self, side: str, u: float) -> Placement:
        """Frame on the inner face of ``side`` at along-wall coordinate ``u``."""
        r = self.room
        if side == "S":
            return Placement((u, r.y0, 0.0), 0.0)
        if side == "N":
            return Placement((u, r.y1, 0.0), math.pi)
        if side == "W":
            return Placement((r.x0, u, 0.0), -math.pi / 2)
        return Placement((r.x1, u, 0.0), math.pi / 2)

    def _wall_box(self, side: str, lo: float, hi: float, depth: float) -> tuple:
        r = self.room
        if side == "S":
            return (lo, r.y0, hi, r.y0 + depth)
        if side == "N":
            return (lo, r.y1 - depth, hi, r.y1)
        if side == "W":
            return (r.x0, lo, r.x0 + depth, hi)
        return (r.x1 - depth, lo, r.x1, hi)

    @staticmethod
    def local_box(obj: Placement, x0, y0, x1, y1) -> tuple:
        """World AABB of the local rectangle ``[x0,x1] x [y0,y1]`` of ``obj``."""
        pts = np.array([obj.to_world((x, y, 0.0))[:2] for x in (x0, x1) for y in (y0, y1)])
        lo, hi = pts.min(0), pts.max(0)
        return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    @staticmethod
    def _overlap(a, c, pad: float = 0.0) -> bool:
        return a[0] < c[2] + pad and c[0] < a[2] + pad and a[1] < c[3] + pad and c[1] < a[3] + pad

    def fits(self, box, pad: float = 0.05, walls: float = 0.0) -> bool:
        """Inside the room (``walls`` m from the wall faces), clear of the reserved zones and
        of other pieces (``pad`` m; free-standing groups keep a walkway around them)."""
        r = self.room
        if box[0] < r.x0 + walls - 1e-6 or box[2] > r.x1 - walls + 1e-6 or \
                box[1] < r.y0 + walls - 1e-6 or box[3] > r.y1 - walls + 1e-6:
            return False
        if any(self._overlap(box, z) for z in self.reserved):
            return False
        for other, _, _, free_standing in self.items:
            if self._overlap(box, other, WALKWAY if free_standing else pad):
                return False
        return True

    def add(self, box, top: float, name: str, free_standing: bool = False, obstacle: bool = True) -> None:
        self.items.append((box, top, name, free_standing))
        self.pieces += 1
        if obstacle:
            self.plan.obstacles.append((*box, float(top), name))

    def _blocked_along(self, side: str, lo: float, hi: float, top: float) -> bool:
        for o in self.plan.openings_on(self.k, side):
            if lo < o.hi + 0.12 and o.lo - 0.12 < hi:
                if o.kind != "window" or top > o.z0 - 0.05:
                    return True
        return False

    def wall_spot(self, width: float, depth: float, top: float, sides=None, tries: int = 40,
                  near_end: bool = False):
        """``(frame, side, u, box)`` for a piece ``width`` x ``depth`` m (``top`` m high)
        against a wall, or None.  ``near_end``: close to a corner (plants, lamps)."""
        r, rng = self.room, self.b.rng
        if self.max_pieces is not None and self.pieces >= self.max_pieces:
            return None
        sides = list(sides or ("S", "N", "W", "E"))
        for _ in range(tries):
            side = sides[int(rng.integers(len(sides)))]
            a, c = r.side_range(side)
            if c - a < width + 0.1:
                continue
            if near_end:
                u = a + 0.05 + width / 2 if rng.uniform() < 0.5 else c - 0.05 - width / 2
            else:
                u = float(rng.uniform(a + 0.05 + width / 2, c - 0.05 - width / 2))
            if self._blocked_along(side, u - width / 2, u + width / 2, top):
                continue
            frame = self.wall_frame(side, u)
            box = self.local_box(frame, -width / 2, 0.0, width / 2, depth)
            if self.fits(box):
                return frame, side, u, box
        return None

    def picture_spot(self, width: float, z0: float, z1: float, tries: int = 30):
        """A free stretch of wall for something hung between heights ``z0`` and ``z1``."""
        r, rng = self.room, self.b.rng
        for _ in range(tries):
            side = ("S", "N", "W", "E")[int(rng.integers(4))]
            a, c = r.side_range(side)
            if c - a < width + 0.6:
                continue
            u = float(rng.uniform(a + 0.3 + width / 2, c - 0.3 - width / 2))
            lo, hi = u - width / 2, u + width / 2
            if any(lo < o.hi + 0.15 and o.lo - 0.15 < hi and z0 < o.z1 + 0.1 and o.z0 - 0.1 < z1
                   for o in self.plan.openings_on(self.k, side)):
                continue
            if any(sd == side and lo < h + 0.1 and l_ - 0.1 < hi for sd, l_, h, _, _ in self.wall_items):
                continue
            strip = self._wall_box(side, lo, hi, 0.05)
            if any(self._overlap(strip, box) and top > z0 - 0.05 for box, top, _, _ in self.items):
                continue
            self.wall_items.append((side, lo, hi, z0, z1))
            return self.wall_frame(side, u)
        return None

    def centre_spot(self, width: float, depth: float):
        """(x, y) for a free-standing group of ``width`` x ``depth`` m (axis-aligned) as near
        the room centre as the walkways to walls, doorways and other pieces allow, or None."""
        r, rng = self.room, self.b.rng
        xs = np.arange(r.x0 + WALKWAY + width / 2, r.x1 - WALKWAY - width / 2 + 1e-9, 0.1)
        ys = np.arange(r.y0 + WALKWAY + depth / 2, r.y1 - WALKWAY - depth / 2 + 1e-9, 0.1)
        if len(xs) == 0 or len(ys) == 0:
            return None
        X, Y = np.meshgrid(xs, ys)
        cx, cy = r.centre
        d = np.hypot(X - cx, Y - cy).ravel() + rng.uniform(0, 0.15, X.size)
        for k in np.argsort(d, kind="stable")[:400]:
            x, y = float(X.ravel()[k]), float(Y.ravel()[k])
            box = (x - width / 2, y - depth / 2, x + width / 2, y + depth / 2)
            if self.fits(box, pad=WALKWAY, walls=WALKWAY - 0.05):
                return x, y
        return None

# ----------------------------------------------------------------------------- room recipes

def _long_sides(f: RoomFurnisher) -> tuple:
    r = f.room
    return ("S", "N") if r.width >= r.depth else ("W", "E")


def _inside(f: RoomFurnisher, box, margin: float = 0.05) -> bool:
    r = f.room
    return box[0] > r.x0 + margin and box[2] < r.x1 - margin and box[1] > r.y0 + margin and box[3] < r.y1 - margin


def _sofa_group(f: RoomFurnisher, coffee_table: bool = True, width: Optional[float] = None,
                name: Optional[str] = None) -> Optional[tuple]:
    """Sofa against a wall with cushions, a coffee table and a rug in front and a floor
    lamp beside it; returns (side, u, width) of the sofa or None."""
    b = f.b
    spot = None
    for w in ((width,) if width else (b.u(1.7, 2.3), 1.5)):
        spot = f.wall_spot(w, 0.95, 0.9, sides=_long_sides(f)) or f.wall_spot(w, 0.95, 0.9)
        if spot is not None:
            width = w
            break
    if spot is None:
        return None
    frame, side, u, box = spot
    f.add(box, 0.9, name or "sofa")
    sofa(b, frame, width, vary(b.rng, b.fabric), 1 if width < 1.2 else int(b.rng.integers(2, 4)), name=name)
    if coffee_table:
        tw, td, th = min(1.2, width - 0.5), b.u(0.5, 0.65), b.u(0.38, 0.46)
        cy = 0.95 + 0.45 + td / 2
        tbox = f.local_box(frame, -tw / 2, cy - td / 2, tw / 2, cy + td / 2)
        if f.fits(tbox, pad=0.3):
            rw, rd = width + b.u(0.2, 0.6), b.u(1.5, 2.1)
            centre = Placement(frame.to_world((0.0, cy, 0.0)), frame.yaw)
            if _inside(f, f.local_box(frame, -rw / 2, cy - rd / 2, rw / 2, cy + rd / 2)):
                rug(b, centre, rw, rd)
            table(b, centre, tw, td, th, b.wood2, name="coffee_table", top=0.035, leg=0.05)
            for k in range(int(b.rng.integers(0, 3))):  # books lying on it
                b.g.box(centre, (-tw / 2 + 0.08 + 0.3 * k, -0.13, th), (0.2, 0.26, 0.03), b.g.instance("book"),
                        M_BOOK, vary(b.rng, pick(b.rng, BOOKS), 0.1), (0.85, 0.72, 0.35), seed=b.s())
            f.add(tbox, th, "coffee_table")
    for sx in (width / 2 + 0.3, -(width / 2 + 0.3)):
        lbox = f.local_box(frame, sx - 0.22, 0.08, sx + 0.22, 0.52)
        if f.fits(lbox):
            floor_lamp(b, Placement(frame.to_world((sx, 0.3, 0.0))))
            f.add(lbox, 1.8, "floor_lamp")
            break
    return side, u, width


def _tv_cabinet(f: RoomFurnisher, opposite: Optional[str] = None) -> bool:
    b = f.b
    w, d, h = b.u(1.2, 1.8), b.u(0.4, 0.5), b.u(0.45, 0.6)
    sides = (opposite,) if opposite else None
    spot = (f.wall_spot(w, d, h + 0.8, sides=sides) if sides else None) or f.wall_spot(w, d, h + 0.8)
    if spot is None:
        return False
    frame, _, _, box = spot
    cabinet(b, frame, w, d, h, vary(b.rng, pick(b.rng, [c[0] for c in WOODS])), int(b.rng.integers(2, 4)),
            name="tv_cabinet")
    screen(b, frame, 0.0, d / 2, h, min(w - 0.2, b.u(0.8, 1.2)), "tv")
    f.add(box, h + 0.8, "tv_cabinet")
    return True


def _bookshelf(f: RoomFurnisher, tall: bool = True) -> bool:
    b = f.b
    w = b.u(0.8, 1.4)
    h = min(b.u(1.6, 2.2) if tall else b.u(0.8, 1.2), f.plan.height - 0.3)
    d = b.u(0.3, 0.4)
    spot = f.wall_spot(w, d, h)
    if spot is None:
        return False
    frame, _, _, box = spot
    bookshelf(b, frame, w, h, d, pick(b.rng, WOODS))
    f.add(box, h, "bookshelf")
    return True


def _sideboard(f: RoomFurnisher) -> bool:
    """A cabinet against a wall with things on top (vase, plant, table lamp)."""
    b = f.b
    w, d, h = b.u(0.8, 1.6), b.u(0.4, 0.5), b.u(0.75, 0.95)
    spot = f.wall_spot(w, d, h + 0.6)
    if spot is None:
        return False
    frame, _, _, box = spot
    cabinet(b, frame, w, d, h, vary(b.rng, pick(b.rng, [c[0] for c in WOODS])), max(1, int(round(w / 0.45))))
    choice = b.rng.uniform()
    if choice < 0.4:
        plant(b.g, frame, (w / 2 - 0.25, d / 2, h), 0.55, b.rng, b.s)
    elif choice < 0.75:
        table_lamp(b, frame, (w / 2 - 0.2, d / 2, h))
    misc_items(b, frame, h, [-w / 2 + 0.25], [d / 2])
    f.add(box, h + 0.6, "sideboard")
    return True


def _plant(f: RoomFurnisher) -> bool:
    b = f.b
    height = b.u(0.7, 1.5)
    r = plant_radius(height)
    spot = f.wall_spot(2 * r, 2 * r, height, near_end=True) or f.wall_spot(2 * r, 2 * r, height)
    if spot is None:
        return False
    frame, _, _, box = spot
    plant(b.g, frame, (0.0, r, 0.0), height, b.rng, b.s)
    f.add(box, height, "plant")
    return True


def _pictures(f: RoomFurnisher, count: int) -> None:
    b = f.b
    for _ in range(count):
        w, h = b.u(0.4, 1.2), b.u(0.35, 0.8)
        z0 = b.u(1.15, 1.5)
        if z0 + h > f.plan.height - 0.2:
            h = f.plan.height - 0.2 - z0
        frame = f.picture_spot(w, z0, z0 + h)
        if frame is not None:
            picture(b, frame, w, h, z0)


def _dining_set(f: RoomFurnisher) -> bool:
    """A dining table with chairs around it (and a pendant lamp above it) near the centre."""
    b = f.b
    r = f.room
    along_x = r.width >= r.depth
    span = (r.width if along_x else r.depth) - 2 * WALKWAY - 1.04
    cross = (r.depth if along_x else r.width) - 2 * WALKWAY - 1.04
    if span < 0.8 or cross < 0.7:
        return False
    length = min(b.u(1.2, 2.2), span)
    width = min(b.u(0.8, 1.0), cross)
    ends = int(b.rng.integers(0, 3))
    spot = None
    for _ in range(4):
        per_side = max(1, int(length // 0.62))
        ends = ends if length >= 1.2 else 0
        gw, gd = length + (1.04 if ends else 0.2), width + 1.04
        if not along_x:
            gw, gd = gd, gw
        spot = f.centre_spot(gw, gd)
        if spot is not None:
            break
        length, ends = max(0.8, length - 0.3), max(0, ends - 1)
    if spot is None:
        return False
    x, y = spot
    yaw = (0.0 if along_x else math.pi / 2) + jitter(b.rng, 0.04)
    t = Placement((x, y, 0.0), yaw)
    top = b.u(0.72, 0.76)
    if b.rng.uniform() < 0.5:
        rw, rd = (gw + 0.5, gd + 0.5) if along_x else (gd + 0.5, gw + 0.5)
        box = (x - gw / 2 - 0.25, y - gd / 2 - 0.25, x + gw / 2 + 0.25, y + gd / 2 + 0.25)
        if _inside(f, box, 0.3):
            rug(b, t, rw, rd)
    table(b, t, length, width, top, b.wood, name="dining_table")
    chair_c = pick(b.rng, WOODS)
    seat_c = vary(b.rng, pick(b.rng, FABRICS))
    spots = []
    for k in range(per_side):
        cx = -length / 2 + length * (k + 0.5) / per_side
        spots += [(cx, -width / 2 - 0.3, math.pi / 2), (cx, width / 2 + 0.3, -math.pi / 2)]
    if ends >= 1:
        spots.append((-length / 2 - 0.3, 0.0, 0.0))
    if ends >= 2:
        spots.append((length / 2 + 0.3, 0.0, math.pi))
    for cx, cy, cyaw in spots:
        p = t.to_world((cx + jitter(b.rng, 0.04), cy + jitter(b.rng, 0.04), 0.0))
        chair(b.g, Placement(p, yaw + cyaw + jitter(b.rng, 0.12)), chair_c, seat_c, b.rng)
    misc_items(b, t, top, [length * 0.2, -length * 0.15], [0.1, -0.1])
    pendant_lamp(b, t, f.plan.height, b.u(1.85, 2.0))
    f.add((x - gw / 2, y - gd / 2, x + gw / 2, y + gd / 2), 1.0, "dining_set", free_standing=True)
    return True


def _desk_set(f: RoomFurnisher) -> bool:
    """A desk against a wall (under a window where possible) with one or two monitors,
    a keyboard, an office chair and maybe a table lamp."""
    b = f.b
    w, d = b.u(1.2, 1.8), b.u(0.6, 0.75)
    spot = f.wall_spot(w, d + 0.55, 0.8)
    if spot is None:
        return False
    frame, _, _, box = spot
    g = b.g
    inst = g.instance("table", "desk")
    c = pick(b.rng, WOODS)
    top = b.u(0.72, 0.75)
    g.box(frame, (-w / 2, 0.0, top), (w, d, 0.035), inst, M_WOOD, *c, seed=b.s())
    g.box(frame, (-w / 2, 0.03, 0.0), (0.04, d - 0.06, top), inst, M_WOOD, *c, seed=b.s())
    g.box(frame, (w / 2 - 0.04, 0.03, 0.0), (0.04, d - 0.06, top), inst, M_WOOD, *c, seed=b.s())
    n_screens = 2 if w > 1.45 and b.rng.uniform() < 0.5 else 1
    for k in range(n_screens):
        sx = 0.0 if n_screens == 1 else (-0.32 if k == 0 else 0.32)
        screen(b, frame, sx, 0.2, top + 0.035, b.u(0.5, 0.62), "monitor")
    g.box(frame, (-0.22, 0.38, top + 0.035), (0.44, 0.14, 0.02), g.instance("misc", "keyboard"), M_PLAIN,
          (0.22, 0.22, 0.24))
    if b.rng.uniform() < 0.5:
        table_lamp(b, frame, (w / 2 - 0.15, 0.15, top + 0.035))
    chair(g, Placement(frame.to_world((jitter(b.rng, 0.1), d + 0.25, 0.0)), frame.yaw - math.pi / 2
                       + jitter(b.rng, 0.3)), ((0.18, 0.18, 0.2), (0.12, 0.12, 0.14)), vary(b.rng, (0.15, 0.15, 0.17)),
          b.rng, name="office_chair")
    f.add(box, 0.95, "desk")
    return True


def _armchair(f: RoomFurnisher) -> bool:
    b = f.b
    width = b.u(0.85, 1.0)
    spot = f.wall_spot(width, 0.95, 0.9)
    if spot is None:
        return False
    frame, _, _, box = spot
    sofa(b, frame, width, vary(b.rng, pick(b.rng, FABRICS)), 1, name="armchair")
    f.add(box, 0.9, "armchair")
    if b.rng.uniform() < 0.6:  # a small side table beside it
        for sx in (width / 2 + 0.3, -(width / 2 + 0.3)):
            sbox = f.local_box(frame, sx - 0.25, 0.1, sx + 0.25, 0.6)
            if f.fits(sbox):
                st = Placement(frame.to_world((sx, 0.35, 0.0)), frame.yaw)
                table(b, st, 0.45, 0.45, 0.55, pick(b.rng, WOODS), name="side_table", top=0.03, leg=0.04)
                if b.rng.uniform() < 0.5:
                    table_lamp(b, st, (0.0, 0.0, 0.55))
                f.add(sbox, 0.9, "side_table")
                break
    return True


def _ceiling_lamps(f: RoomFurnisher) -> None:
    r = f.room
    n = max(1, int(round(max(r.width, r.depth) / 3.5)))
    for k in range(n):
        a = (k + 0.5) / n
        if r.width >= r.depth:
            ceiling_lamp(f.b, r.x0 + a * r.width, (r.y0 + r.y1) / 2, f.plan.height)
        else:
            ceiling_lamp(f.b, (r.x0 + r.x1) / 2, r.y0 + a * r.depth, f.plan.height)


def furnish_room(b: Builder, plan: FloorPlan, room: int, sparse: int = 0) -> None:
    """Furnish ``plan.rooms[room]`` according to its kind (see :data:`.plan.ROOM_KINDS`).
    ``sparse`` (retries when a room's furniture would block the way through it):
    1 leaves out free-standing groups, 2 also stops after three pieces, 3 after one."""
    f = RoomFurnisher(b, plan, room, max_pieces={0: None, 1: None, 2: 3}.get(sparse, 1))
    centre_pieces = sparse == 0
    rng = b.rng
    kind = plan.rooms[room].kind
    if kind == "corridor":
        r = f.room
        long_x = r.width >= r.depth
        length = max(r.width, r.depth)
        if rng.uniform() < 0.7:
            rug(b, Placement((*r.centre, 0.0), 0.0 if long_x else math.pi / 2),
                max(1.0, length - b.u(0.8, 1.6)), min(0.9, min(r.width, r.depth) - 0.4))
        if min(r.width, r.depth) >= 1.8 and rng.uniform() < 0.6:
            w, d, h = b.u(0.8, 1.2), 0.3, b.u(0.75, 0.9)
            spot = f.wall_spot(w, d, h + 0.6, sides=_long_sides(f))
            if spot is not None:
                frame, _, _, box = spot
                cabinet(b, frame, w, d, h, vary(rng, pick(rng, [c[0] for c in WOODS])), 2, name="console")
                misc_items(b, frame, h, [0.0], [d / 2])
                f.add(box, h + 0.3, "console")
        if min(r.width, r.depth) >= 1.6 and rng.uniform() < 0.6:
            _plant(f)
        _pictures(f, int(rng.integers(2, 5)))
        _ceiling_lamps(f)
        return
    if centre_pieces and (kind == "dining" or (kind == "studio" and f.room.width * f.room.depth > 18)):
        _dining_set(f)
    if kind in ("living", "studio"):
        sofa_at = _sofa_group(f)
        opposite = None
        if sofa_at is not None:
            opposite = {"S": "N", "N": "S", "W": "E", "E": "W"}[sofa_at[0]]
        if rng.uniform() < 0.85 or kind == "studio":
            _tv_cabinet(f, opposite)
    if kind == "dining" or (kind == "studio" and rng.uniform() < 0.5):
        _sideboard(f)
    if kind in ("office",) or (kind == "studio" and rng.uniform() < 0.6):
        _desk_set(f)
    shelves = {"library": int(rng.integers(2, 5)), "office": int(rng.integers(1, 3)),
               "living": int(rng.uniform() < 0.6), "studio": 1, "dining": int(rng.uniform() < 0.3)}[kind]
    for _ in range(shelves):
        _bookshelf(f, tall=rng.uniform() < 0.75)
    if kind == "library":
        for _ in range(int(rng.integers(1, 3))):
            _armchair(f)
        if centre_pieces and rng.uniform() < 0.6:
            r = f.room
            if f.centre_spot(1.6, 1.2) is not None:
                rug(b, Placement((*r.centre, 0.0), jitter(rng, 0.05)), b.u(1.6, 2.4), b.u(1.2, 1.8))
    if kind in ("living", "office") and rng.uniform() < 0.4:
        _armchair(f)
    if kind == "office" and rng.uniform() < 0.5:
        _sideboard(f)
    if kind in ("living", "studio") and rng.uniform() < 0.5:
        _sideboard(f)
    for _ in range(int(rng.integers(1, 3))):
        _plant(f)
    _pictures(f, int(rng.integers(1, 4)))
    if kind != "dining" or rng.uniform() < 0.5:
        _ceiling_lamps(f)
