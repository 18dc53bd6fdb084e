"""Floor plans of the synthetic houses: rooms, the walls between them and their openings.

A plan is one to three rooms side by side, or a corridor with rooms off it, all
axis-aligned in the world x-y plane (z up, metres).  Every room owns the inner
half (``half_wall`` thick) of each of its four walls, so two rooms that share a
wall each see their own wall surface.  Openings cut through walls: doorways
between rooms (optionally with an open door leaf), an exterior door, and windows
that open to the outside (the rays that leave through them hit nothing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

SIDES = ("S", "N", "W", "E")
OPPOSITE = {"S": "N", "N": "S", "W": "E", "E": "W"}
#: Room kinds and what they are furnished as (see :mod:`.furniture`).
ROOM_KINDS = ("studio", "living", "dining", "office", "library", "corridor")


@dataclass
class Room:
    """Interior rectangle ``[x0, x1] x [y0, y1]`` (m, wall faces) of one room."""

    x0: float
    y0: float
    x1: float
    y1: float
    kind: str = "studio"
    name: str = ""

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def depth(self) -> float:
        return self.y1 - self.y0

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2])

    def contains(self, x, y, margin: float = 0.0):
        """Inside the interior shrunk by ``margin`` (vectorised over x, y)."""
        return ((x >= self.x0 + margin) & (x <= self.x1 - margin)
                & (y >= self.y0 + margin) & (y <= self.y1 - margin))

    def side_range(self, side: str) -> tuple:
        """Along-wall interval of the interior face of ``side`` (x for S/N, y for W/E)."""
        return (self.x0, self.x1) if side in ("S", "N") else (self.y0, self.y1)

    def face(self, side: str) -> float:
        """The coordinate of the interior wall face (y for S/N, x for W/E)."""
        return {"S": self.y0, "N": self.y1, "W": self.x0, "E": self.x1}[side]


@dataclass
class Opening:
    """A hole through a wall of ``room`` on ``side`` over ``[lo, hi]`` along the wall,
    from height ``z0`` to ``z1``.  ``kind``: ``doorway`` (to room ``other``), ``door``
    (exterior door) or ``window`` (to the outside).  ``leaf``: ``none``, ``open`` or
    ``closed`` door leaf; an open leaf hangs on the ``hinge`` end (``lo``/``hi``) and
    swings into ``swing_room`` by ``swing`` radians."""

    kind: str
    room: int
    side: str
    lo: float
    hi: float
    z0: float
    z1: float
    other: int = -1
    leaf: str = "none"
    hinge: str = "lo"
    swing_room: int = -1
    swing: float = math.pi / 2

    @property
    def width(self) -> float:
        return self.hi - self.lo

    @property
    def centre(self) -> float:
        return (self.lo + self.hi) / 2


@dataclass
class FloorPlan:
    """Rooms, openings and the ceiling ``height`` (m) of a house; ``half_wall`` is
    the thickness of each room's half of a wall (m).  ``obstacles`` (filled while
    furnishing) holds ``(x0, y0, x1, y1, top_z, name)`` footprints the camera keeps
    clear of."""

    rooms: list
    openings: list = field(default_factory=list)
    height: float = 2.7
    half_wall: float = 0.1
    kind: str = "single"
    obstacles: list = field(default_factory=list)

    @staticmethod
    def single_room(x0, y0, x1, y1, height, name="room", kind="studio") -> "FloorPlan":
        return FloorPlan(rooms=[Room(x0, y0, x1, y1, kind, name)], height=float(height), kind="single")

    # -- queries
    def openings_on(self, room: int, side: str) -> list:
        """Openings through the wall of ``room`` on ``side`` (both rooms of a doorway see it)."""
        out = []
        for o in self.openings:
            if o.room == room and o.side == side:
                out.append(o)
            elif o.other == room and OPPOSITE[o.side] == side:
                out.append(o)
        return out

    def neighbours(self, room: int) -> list:
        """``(other room, opening)`` for every doorway of ``room``."""
        out = []
        for o in self.openings:
            if o.kind != "doorway":
                continue
            if o.room == room:
                out.append((o.other, o))
            elif o.other == room:
                out.append((o.room, o))
        return out

    def shared_intervals(self, room: int, side: str) -> list:
        """Along-wall intervals of ``room``'s ``side`` that face another room."""
        r = self.rooms[room]
        gap = 2 * self.half_wall
        out = []
        for k, q in enumerate(self.rooms):
            if k == room:
                continue
            facing = {"S": abs(q.y1 + gap - r.y0), "N": abs(r.y1 + gap - q.y0),
                      "W": abs(q.x1 + gap - r.x0), "E": abs(r.x1 + gap - q.x0)}[side] < 1e-6
            if not facing:
                continue
            a, b = r.side_range(side)
            qa, qb = q.side_range(side)
            lo, hi = max(a, qa), min(b, qb)
            if hi > lo:
                out.append((lo, hi, k))
        return out

    def exterior_intervals(self, room: int, side: str) -> list:
        """Along-wall intervals of ``room``'s ``side`` with the outside behind them."""
        a, b = self.rooms[room].side_range(side)
        cuts = sorted((lo, hi) for lo, hi, _ in self.shared_intervals(room, side))
        out, cur = [], a
        for lo, hi in cuts:
            if lo > cur:
                out.append((cur, lo))
            cur = max(cur, hi)
        if b > cur:
            out.append((cur, b))
        return out

    def bounds(self) -> np.ndarray:
        """(2,2) xy box of the interiors."""
        lo = np.min([[r.x0, r.y0] for r in self.rooms], axis=0)
        hi = np.max([[r.x1, r.y1] for r in self.rooms], axis=0)
        return np.stack([lo, hi])

    def room_at(self, x: float, y: float) -> Optional[int]:
        for k, r in enumerate(self.rooms):
            if r.contains(x, y):
                return k
        return None

    def shift(self, dx: float, dy: float) -> None:
        for r in self.rooms:
            r.x0 += dx
            r.x1 += dx
            r.y0 += dy
            r.y1 += dy
        for o in self.openings:
            d = dx if o.side in ("S", "N") else dy
            o.lo += d
            o.hi += d

    def to_dict(self) -> dict:
        """JSON-friendly summary (scene.json)."""
        return {"kind": self.kind, "height": round(self.height, 4),
                "rooms": [{"name": r.name, "kind": r.kind,
                           "rect": [round(v, 4) for v in (r.x0, r.y0, r.x1, r.y1)]} for r in self.rooms],
                "openings": [{"kind": o.kind, "room": o.room, "other": o.other, "side": o.side,
                              "range": [round(o.lo, 4), round(o.hi, 4)], "z": [round(o.z0, 4), round(o.z1, 4)],
                              "leaf": o.leaf} for o in self.openings]}


# ----------------------------------------------------------------------------- generation

MAX_EXTENT = 12.0  # metres: no plan is longer than this along x or y


def _u(rng, a, b) -> float:
    return float(rng.uniform(a, b))


def _adjacent_east(a: Room, w: float, d: float, rng, gap: float, min_overlap: float = 1.8) -> Room:
    """A room of ``w`` x ``d`` east of ``a`` sharing at least ``min_overlap`` m of wall."""
    lo = a.y0 - (d - min_overlap)
    hi = a.y1 - min_overlap
    y0 = _u(rng, lo, hi) if hi > lo else a.y0
    x0 = a.x1 + gap
    return Room(x0, y0, x0 + w, y0 + d)


def _adjacent_north(a: Room, w: float, d: float, rng, gap: float, min_overlap: float = 1.8) -> Room:
    lo = a.x0 - (w - min_overlap)
    hi = a.x1 - min_overlap
    x0 = _u(rng, lo, hi) if hi > lo else a.x0
    y0 = a.y1 + gap
    return Room(x0, y0, x0 + w, y0 + d)


def _add_doorway(plan: FloorPlan, a: int, b: int, rng) -> bool:
    """A doorway in the wall ``a`` shares with ``b`` (1.0-1.4 m wide)."""
    for side in SIDES:
        for lo, hi, k in plan.shared_intervals(a, side):
            if k != b:
                continue
            lo, hi = lo + 0.3, hi - 0.3
            if hi - lo < 1.0:
                return False
            w = min(_u(rng, 1.0, 1.4), hi - lo)
            c = _u(rng, lo + w / 2, hi - w / 2)
            top = min(_u(rng, 2.05, 2.25), plan.height - 0.25)
            leaf = "open" if rng.uniform() < 0.5 else "none"
            swing_room = a if rng.uniform() < 0.5 else b
            if plan.rooms[swing_room].kind == "corridor":
                swing_room = b if swing_room == a else a
            o = Opening("doorway", a, side, c - w / 2, c + w / 2, 0.0, top, other=b, leaf=leaf,
                        hinge="lo" if rng.uniform() < 0.5 else "hi", swing_room=swing_room)
            o.swing = _swing(plan, o, rng)
            plan.openings.append(o)
            return True
    return False


def _free_intervals(plan: FloorPlan, room: int, side: str, margin: float) -> list:
    """Exterior intervals of a wall minus its openings (``margin`` m kept around each)."""
    out = []
    taken = sorted((o.lo - margin, o.hi + margin) for o in plan.openings_on(room, side))
    for a, b in plan.exterior_intervals(room, side):
        a, b = a + 0.25, b - 0.25
        cur = a
        for lo, hi in taken:
            if hi <= cur or lo >= b:
                continue
            if lo > cur:
                out.append((cur, lo))
            cur = max(cur, hi)
        if b > cur:
            out.append((cur, b))
    return [(a, b) for a, b in out if b - a > 0.05]


def _place_on_wall(plan: FloorPlan, room: int, width: float, rng, sides=SIDES, margin: float = 0.3):
    """(side, lo, hi) of a free exterior stretch for an opening of ``width``, or None."""
    cands = []
    for side in sides:
        for a, b in _free_intervals(plan, room, side, margin):
            if b - a >= width:
                cands.append((side, a, b))
    if not cands:
        return None
    side, a, b = cands[int(rng.integers(len(cands)))]
    c = _u(rng, a + width / 2, b - width / 2)
    return side, c - width / 2, c + width / 2


def _add_windows(plan: FloorPlan, room: int, count: int, rng) -> None:
    for _ in range(count):
        width = _u(rng, 0.8, 1.8)
        spot = _place_on_wall(plan, room, width, rng)
        if spot is None:
            spot = _place_on_wall(plan, room, 0.8, rng)
            if spot is None:
                return
        side, lo, hi = spot
        sill = _u(rng, 0.75, 1.0)
        top = min(_u(rng, 1.95, 2.3), plan.height - 0.25)
        plan.openings.append(Opening("window", room, side, lo, hi, sill, top))


def _add_exterior_door(plan: FloorPlan, room: int, rng) -> bool:
    width = _u(rng, 0.9, 1.0)
    spot = _place_on_wall(plan, room, width, rng, margin=0.4)
    if spot is None:
        return False
    side, lo, hi = spot
    top = min(_u(rng, 2.05, 2.12), plan.height - 0.25)
    leaf = "open" if rng.uniform() < 0.6 else "closed"
    o = Opening("door", room, side, lo, hi, 0.0, top, leaf=leaf, hinge="lo" if rng.uniform() < 0.5 else "hi",
                swing_room=room)
    o.swing = _swing(plan, o, rng)
    plan.openings.append(o)
    return True


def _swing(plan: FloorPlan, o: Opening, rng) -> float:
    """How far an open leaf turns into its room (rad): about 90 degrees where the room is
    deep enough to walk round it, else nearly flat against the wall (corridors)."""
    r = plan.rooms[o.swing_room]
    room_depth = r.depth if o.side in ("S", "N") else r.width
    if room_depth < o.width + 1.6 or r.kind == "corridor" or rng.uniform() < 0.3:
        return _u(rng, 2.9, 3.05)
    return _u(rng, 1.62, 2.0)   # past 90 degrees: the leaf stays out of the way through the door


def make_plan(rng: np.random.Generator) -> FloorPlan:
    """A random floor plan: 1-3 rooms of 3-8 m, or a corridor with 2-3 rooms off it,
    doorways between neighbours, windows and an exterior door on outside walls;
    centred on the origin."""
    gap = 0.2  # wall thickness between rooms (two half walls)
    height = _u(rng, 2.5, 3.0)
    kind = ["single", "two", "three", "corridor"][int(rng.choice(4, p=[0.25, 0.3, 0.2, 0.25]))]
    others = ["dining", "office", "library"]
    rng.shuffle(others)
    kinds = ["living"] + others      # every house has a living room
    if rng.uniform() < 0.5:
        kinds[0], kinds[1] = kinds[1], kinds[0]
    rooms: list = []
    links: list = []  # (a, b) pairs that get a doorway
    if kind == "single":
        rooms.append(Room(0.0, 0.0, _u(rng, 4.0, 8.0), _u(rng, 3.0, 7.0), "studio"))
    elif kind == "two":
        a = Room(0.0, 0.0, _u(rng, 3.5, 7.0), _u(rng, 3.0, 6.5), kinds[0])
        w = min(_u(rng, 3.0, 6.5), MAX_EXTENT - a.width - gap)
        b = _adjacent_east(a, max(3.0, w), _u(rng, 3.0, 6.0), rng, gap)
        b.kind = kinds[1]
        rooms += [a, b]
        links.append((0, 1))
    elif kind == "three":
        a = Room(0.0, 0.0, _u(rng, 3.0, 5.5), _u(rng, 3.0, 6.0), kinds[0])
        b = _adjacent_east(a, _u(rng, 3.0, 5.0), _u(rng, 3.0, 6.0), rng, gap)
        b.kind = kinds[1]
        rooms += [a, b]
        links.append((0, 1))
        if rng.uniform() < 0.5 and a.width + b.width + gap + 3.0 + gap <= MAX_EXTENT:
            c = _adjacent_east(b, min(_u(rng, 3.0, 5.0), MAX_EXTENT - a.width - b.width - 2 * gap),
                               _u(rng, 3.0, 6.0), rng, gap)
        else:
            c = _adjacent_north(b, _u(rng, 3.0, 5.5), _u(rng, 3.0, 5.0), rng, gap)
        c.kind = kinds[2]
        rooms.append(c)
        links.append((1, 2))
    else:  # corridor along x with rooms north and south of it
        length = _u(rng, 5.0, 9.0)
        cw = _u(rng, 1.4, 2.0)
        corridor = Room(0.0, 0.0, length, cw, "corridor")
        rooms.append(corridor)
        wn = min(_u(rng, 3.0, 5.5), length)
        xn = _u(rng, -0.5, length - wn + 0.5)
        north = Room(xn, cw + gap, xn + wn, cw + gap + _u(rng, 3.0, 5.5), kinds[0])
        ws = min(_u(rng, 3.0, 5.5), length)
        xs = _u(rng, -0.5, length - ws + 0.5)
        south = Room(xs, -gap - _u(rng, 3.0, 5.0), xs + ws, -gap, kinds[1])
        rooms += [north, south]
        links += [(0, 1), (0, 2)]
        if rng.uniform() < 0.4 and length + gap + 3.0 <= MAX_EXTENT:
            east = _adjacent_east(corridor, min(_u(rng, 3.0, 4.5), MAX_EXTENT - length - gap),
                                  _u(rng, 3.0, 4.5), rng, gap, min_overlap=cw)
            east.kind = kinds[2]
            rooms.append(east)
            links.append((0, 3))
    for k, r in enumerate(rooms):
        r.name = f"{r.kind}_{k}"
    rooms, links = _resolve_overlaps(rooms, links, gap)
    plan = FloorPlan(rooms=rooms, height=height, half_wall=gap / 2, kind=kind)
    for a, b in links:
        _add_doorway(plan, a, b, rng)
    # exterior door first (it needs the longest free stretch), then windows
    order = sorted(range(len(rooms)), key=lambda k: (rooms[k].kind != "corridor", rng.uniform()))
    if kind == "single" or rng.uniform() < 0.75:
        for k in order:
            if _add_exterior_door(plan, k, rng):
                break
    for k, r in enumerate(plan.rooms):
        n = int(rng.integers(0, 2)) if r.kind == "corridor" else int(rng.integers(1, 4))
        _add_windows(plan, k, n, rng)
    c = plan.bounds().mean(0)
    plan.shift(-float(c[0]), -float(c[1]))
    return plan


def _resolve_overlaps(rooms: list, links: list, gap: float) -> tuple:
    """A room attached to one neighbour may overlap another (an L of three rooms, a room
    at a corridor's end): cut the later room back along the axis of the smaller
    overlap, and drop a room that becomes smaller than 3 m (with its links)."""
    kept: list = []
    index = {}
    for k, r in enumerate(rooms):
        for q in kept:
            ox = min(r.x1, q.x1 + gap) - max(r.x0, q.x0 - gap)
            oy = min(r.y1, q.y1 + gap) - max(r.y0, q.y0 - gap)
            if ox > 1e-6 and oy > 1e-6:
                if ox < oy:
                    if r.x0 < q.x0:
                        r.x1 = q.x0 - gap
                    else:
                        r.x0 = q.x1 + gap
                elif r.y0 < q.y0:
                    r.y1 = q.y0 - gap
                else:
                    r.y0 = q.y1 + gap
        if r.width >= 3.0 and r.depth >= 3.0 or (r.kind == "corridor" and min(r.width, r.depth) >= 1.4):
            index[k] = len(kept)
            kept.append(r)
    links = [(index[a], index[b]) for a, b in links if a in index and b in index]
    return kept, links
