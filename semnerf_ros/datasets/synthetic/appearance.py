"""Appearance of the synthetic rooms: procedural materials evaluated at 3D hit points,
Lambertian lighting from ceiling lights, a window fill light and floor bounce, and
the view of the outside through open windows and doors.

Every surface colour is a function of the hit point in its part's local frame, so
it is the same from every view; lighting depends only on the point and its normal
(no shadows, no specular), hence view-consistent as NeRF assumes.  Rays that leave
the house see :meth:`Shader.environment`, a sky / ground colour that depends only on
the ray direction (the outside is at infinity).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .geometry import S_BOX, S_CYLINDER, SceneGeometry

# Materials (procedural albedo functions, see Shader).  Append new ones at the end:
# the ids order the parts (material-major) and seed 0's room must not change.
(M_PLAIN, M_PLASTER, M_WALLPAPER, M_WOOD, M_PLANKS, M_CHECKER, M_FABRIC, M_PAINTING,
 M_WINDOW, M_SCREEN, M_LEAF, M_BOOK, M_DOOR, M_CABINET, M_SHADE, M_METAL,
 M_TILES, M_BRICK, M_CARPET) = range(19)
EMISSIVE = {M_WINDOW, M_SCREEN, M_SHADE}


@dataclass
class Lighting:
    """The lights of a scene.

    ``lights`` (L,3) point-light positions (world m) with ``gains`` (L,) and the
    falloff ``gain / (1 + falloff * d^2)``; ``rooms`` (L,4) ``x0, y0, x1, y1`` the
    (wall-inclusive) rectangle each light shines in (None: every light everywhere);
    ``fill_dir`` (3,) unit vector towards a soft directional fill (the windows);
    ``ambient``, ``key``, ``fill``, ``bounce`` the weights of the terms;
    ``tint`` (3,) the lights' colour; ``sky`` / ``ground`` (3,) colours of the outside.
    """

    lights: np.ndarray
    gains: np.ndarray
    fill_dir: np.ndarray
    rooms: Optional[np.ndarray] = None
    falloff: float = 0.25
    ambient: float = 0.32
    key: float = 0.55
    fill: float = 0.22
    bounce: float = 0.25
    tint: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))
    sky: np.ndarray = field(default_factory=lambda: np.array([0.62, 0.76, 0.95], np.float32))
    ground: np.ndarray = field(default_factory=lambda: np.array([0.42, 0.48, 0.34], np.float32))

    @staticmethod
    def classic(room_height: float) -> "Lighting":
        """The built-in room's (seed 0) light: one ceiling lamp at the room centre,
        fill from the east window."""
        fill = np.array([-1.0, 0.35, -0.45])  # from the east window towards the room
        return Lighting(lights=np.array([[0.0, 0.0, room_height - 0.3]], dtype=np.float32),
                        gains=np.array([2.2], dtype=np.float32),
                        fill_dir=(-fill / np.linalg.norm(fill)).astype(np.float32))

    @property
    def is_classic(self) -> bool:
        return self.rooms is None and len(self.lights) == 1 and not np.any(self.tint != 1.0)


class ValueNoise:
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


def hash01(*ints) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer tuple (vectorised)."""
    h = np.uint32(2166136261) * np.ones_like(np.asarray(ints[0]), dtype=np.uint32)
    for k, a in enumerate(ints):
        h = (h ^ (np.asarray(a).astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)) * np.uint32(16777619)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0x5BD1E995 + 2 * k)
        h ^= h >> np.uint32(15)
    return (h & np.uint32(0xFFFFFF)).astype(np.float32) / np.float32(16777216.0)


def runs(values: np.ndarray):
    """(start, stop) of each run of equal consecutive values."""
    if len(values) == 0:
        return []
    cut = np.flatnonzero(values[1:] != values[:-1]) + 1
    bounds = np.concatenate([[0], cut, [len(values)]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class Shader:
    """Procedural albedo and Lambertian shading for ray hits on a :class:`SceneGeometry`."""

    def __init__(self, geom: SceneGeometry, seed: int, lighting: Optional[Lighting] = None):
        self.g = geom
        self.noise = ValueNoise(seed)
        self._R32 = geom.part_R.astype(np.float32)
        self._emissive = np.isin(geom.part_material, list(EMISSIVE))
        self._t32 = geom.part_t.astype(np.float32)
        self.lighting = lighting or geom.lighting or Lighting.classic(2.7)
        self.fill_dir = np.asarray(self.lighting.fill_dir, dtype=np.float32)  # towards the light
        self._funcs = {M_PLAIN: self._plain, M_PLASTER: self._plaster, M_WALLPAPER: self._wallpaper,
                       M_WOOD: self._wood, M_PLANKS: self._planks, M_CHECKER: self._checker,
                       M_FABRIC: self._fabric, M_PAINTING: self._painting, M_WINDOW: self._window,
                       M_SCREEN: self._screen, M_LEAF: self._leaf, M_BOOK: self._book,
                       M_DOOR: self._door, M_CABINET: self._cabinet, M_SHADE: self._plain,
                       M_METAL: self._metal, M_TILES: self._tiles, M_BRICK: self._brick,
                       M_CARPET: self._carpet}

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
        stripe = smoothstep(0.35, 0.45, np.abs(np.modf(u / period)[0] - 0.5) * 2)
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
        t = smoothstep(0.25, 0.75, np.abs(g - 0.5) * 2)
        col = self.g.part_color1[part] * (1 - t)[:, None] + self.g.part_color2[part] * t[:, None]
        return col * (0.93 + 0.12 * self._n(pl, part, (2.0, 2.0, 2.0)))[:, None]

    def _planks(self, pl, part):
        W, L = 0.19, 1.6
        row = np.floor(pl[:, 1] / W)
        x = pl[:, 0] + hash01(row.astype(np.int64), 11) * L
        col = np.floor(x / L)
        r = hash01(row.astype(np.int64), col.astype(np.int64))
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
        cloud = smoothstep(0.55, 0.75, self.noise.fbm(np.stack([u * 2.0, v * 4.0, self.g.part_seed[part]], 1), 3))
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

    def _tiles(self, pl, part):
        """Square floor tiles (``param`` = tile size, m) with grout lines."""
        cell = self.g.part_param[part]
        u, v = pl[:, 0] / cell, pl[:, 1] / cell
        iu, iv = np.floor(u), np.floor(v)
        r = hash01(iu.astype(np.int64), iv.astype(np.int64) + 7)
        c1, c2 = self.g.part_color1[part], self.g.part_color2[part]
        col = c1 * (1 - 0.35 * r)[:, None] + c2 * (0.35 * r)[:, None]
        grout = (np.minimum(u - iu, 1 - (u - iu)) < 0.03) | (np.minimum(v - iv, 1 - (v - iv)) < 0.03)
        col = np.where(grout[:, None], c2 * 0.7, col)
        return col * (0.94 + 0.1 * self._n(pl, part, 5.0))[:, None]

    def _brick(self, pl, part):
        """Running-bond bricks on a wall (horizontal axis along the wall, z up)."""
        u, _ = self._along(pl, part)
        z = pl[:, 2]
        bh, bw = 0.075, 0.23
        row = np.floor(z / bh)
        x = u + 0.5 * bw * (row % 2)
        col_i = np.floor(x / bw)
        r = hash01(row.astype(np.int64), col_i.astype(np.int64) + 31)
        c1, c2 = self.g.part_color1[part], self.g.part_color2[part]
        col = c1 * (0.85 + 0.3 * r)[:, None]
        fz, fx = np.modf(z / bh)[0], np.modf(np.abs(x) / bw)[0]
        mortar = (fz < 0.12) | (fx < 0.04)
        col = np.where(mortar[:, None], c2, col)
        return col * (0.92 + 0.12 * self._n(pl, part, 8.0, 2))[:, None]

    def _carpet(self, pl, part):
        """Fine-grained carpet with a faint large-scale pattern."""
        fine = self._n(pl, part, 40.0)
        coarse = self._n(pl, part, 1.5, 2)
        c = self.g.part_color1[part] * (1 - 0.3 * coarse)[:, None] + self.g.part_color2[part] * (0.3 * coarse)[:, None]
        return c * (0.85 + 0.25 * fine)[:, None]

    # -- shading
    def local_coords(self, p_world, part):
        """R_part^T (p - t_part): hit points in each part's local frame (metres).
        Works on runs of equal part (fast when the hits are sorted by part)."""
        p_world = np.asarray(p_world, dtype=np.float32)
        out = np.empty_like(p_world)
        for a, b in runs(part):
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
        for a, b in runs(mat):
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
        L = self.lighting
        key = self._key_light(p_world, n)
        fill = np.clip(n[:, 0] * self.fill_dir[0] + n[:, 1] * self.fill_dir[1]
                       + n[:, 2] * self.fill_dir[2], 0, None)
        bounce = np.clip(-n[:, 2], 0, None)  # light reflected up from the floor
        light = L.ambient + L.key * key + L.fill * fill + L.bounce * bounce
        light = np.where(self._emissive[part], 1.0, np.clip(light, 0.0, 1.25))
        if L.is_classic:
            return np.clip(alb * light[:, None].astype(np.float32), 0.0, 1.0)
        tint = np.where(self._emissive[part][:, None], np.float32(1.0),
                        np.asarray(L.tint, np.float32)[None, :])
        return np.clip(alb * light[:, None].astype(np.float32) * tint, 0.0, 1.0)

    def _key_light(self, p_world, n):
        """Sum of the point lights' Lambert terms with distance falloff; a light
        shines in its room (soft room membership, 2 cm transition), so walls are not lit
        from the next room."""
        L = self.lighting
        if L.is_classic:
            lp = np.asarray(L.lights[0], dtype=np.float32)
            lx, ly, lz = (lp[k] - p_world[:, k] for k in range(3))
            dist2 = lx * lx + ly * ly + lz * lz
            return np.clip((n[:, 0] * lx + n[:, 1] * ly + n[:, 2] * lz) / np.sqrt(dist2), 0, None) \
                * (float(L.gains[0]) / (1.0 + L.falloff * dist2))
        p = np.asarray(p_world, dtype=np.float32)
        weights = self.room_weights(p)
        key = np.zeros(len(p), np.float32)
        for i, lp in enumerate(np.asarray(L.lights, np.float32)):
            lx, ly, lz = (lp[k] - p[:, k] for k in range(3))
            dist2 = lx * lx + ly * ly + lz * lz
            lam = np.clip((n[:, 0] * lx + n[:, 1] * ly + n[:, 2] * lz) / np.sqrt(dist2), 0, None)
            key += weights[:, i] * lam * (float(L.gains[i]) / (1.0 + L.falloff * dist2))
        return key

    def room_weights(self, p) -> np.ndarray:
        """(M, L) how much each light reaches each point: a soft inside-test of the
        light's room rectangle, normalised; points outside every room take the nearest."""
        L = self.lighting
        p = np.asarray(p, dtype=np.float32)
        if L.rooms is None:
            return np.ones((len(p), len(L.lights)), np.float32)
        r = np.asarray(L.rooms, np.float32)
        inside = np.minimum(np.minimum(p[:, None, 0] - r[None, :, 0], r[None, :, 2] - p[:, None, 0]),
                            np.minimum(p[:, None, 1] - r[None, :, 1], r[None, :, 3] - p[:, None, 1]))
        w = 1.0 / (1.0 + np.exp(-np.clip(inside / 0.02, -30.0, 30.0)))
        total = w.sum(1, keepdims=True)
        nearest = np.zeros_like(w)
        nearest[np.arange(len(p)), np.argmax(inside, axis=1)] = 1.0
        w = np.where(total > 1e-3, w / np.maximum(total, 1e-12), nearest)
        return w.astype(np.float32)

    def environment(self, dirs) -> np.ndarray:
        """RGB in [0, 1] (M, 3) of the outside seen along unit-ish ``dirs`` (world):
        a sky gradient with soft clouds above the horizon, ground below."""
        d = np.asarray(dirs, dtype=np.float32)
        d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        L = self.lighting
        up = d[:, 2]
        h = np.clip(up, 0.0, 1.0)
        sky = np.asarray(L.sky, np.float32)[None, :] * (1.0 - 0.35 * h[:, None]) + 0.35 * h[:, None] \
            * np.array([0.35, 0.55, 0.95], np.float32)
        # clouds: noise on the direction projected onto a plane above the house
        q = d[:, :2] / np.maximum(up[:, None], 0.08) * 0.6
        cloud = smoothstep(0.55, 0.8, self.noise.fbm(np.stack([q[:, 0], q[:, 1], np.full(len(d), 3.7,
                                                                                         np.float32)], 1), 3))
        sky = sky * (1.0 - 0.8 * cloud[:, None]) + 0.96 * 0.8 * cloud[:, None]
        g = np.clip(-up, 0.0, 1.0)
        ground = np.asarray(L.ground, np.float32)[None, :] * (0.8 + 0.25 * self.noise(
            np.stack([d[:, 0] * 9.0, d[:, 1] * 9.0, g * 5.0], 1)))[:, None]
        horizon = smoothstep(-0.02, 0.02, up)[:, None]
        return np.clip(ground * (1.0 - horizon) + sky * horizon, 0.0, 1.0).astype(np.float32)

    def vertex_colors(self) -> np.ndarray:
        """Unshaded albedo at every mesh vertex, uint8 (for ``mesh_gt.ply``)."""
        vp = self.g.vertex_part
        alb, _ = self.albedo(self.g.vertices, vp)
        return np.round(alb * 255.0).astype(np.uint8)

