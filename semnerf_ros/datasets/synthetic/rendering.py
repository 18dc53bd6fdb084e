"""Rendering a synthetic scene from camera poses: rays, ray casting, shading.

``Renderer(geom, intrinsics, seed, raycaster="auto").render(poses)`` returns rgb
(N,H,W,3) uint8, depth (N,H,W) float32 z-depth in metres (0 = no hit: the
outside), labels (N,H,W) uint8 class ids (0 = void: misc objects and the outside)
and instances (N,H,W) uint16 (0 = nothing).  Pixels that look out of a window or
an open door show the :meth:`.appearance.Shader.environment` colour.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...engine.geometry import Intrinsics
from .appearance import Shader
from .geometry import SceneGeometry
from .raycast import make_raycaster


class Renderer:
    """Ray-casts ``geom`` with the chosen caster (:func:`.raycast.make_raycaster`) and
    shades the hits with :class:`.appearance.Shader`."""

    def __init__(self, geom: SceneGeometry, intrinsics: Intrinsics, seed: int = 0, raycaster: str = "auto",
                 device=None):
        self.g = geom
        self.intr = intrinsics
        self.shader = Shader(geom, seed)
        self.caster = make_raycaster(geom, raycaster, device)
        h, w = intrinsics.shape
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        self.dirs_cam = np.stack([(u - intrinsics.cx) / intrinsics.fx,
                                  (v - intrinsics.cy) / intrinsics.fy, np.ones_like(u)],
                                 -1).reshape(-1, 3).astype(np.float32)

    @property
    def raycaster(self) -> str:
        return self.caster.name

    def rays(self, poses: np.ndarray) -> np.ndarray:
        """(N, H*W, 6) float32 ``[origin, direction]`` (direction with camera z = 1)."""
        n = len(poses)
        hw = len(self.dirs_cam)
        R = poses[:, :3, :3].astype(np.float32)
        rays = np.empty((n, hw, 6), dtype=np.float32)
        rays[:, :, :3] = poses[:, None, :3, 3].astype(np.float32)
        # world direction = R @ d_cam, written out (3x3 products through BLAS are slow here)
        dx, dy = self.dirs_cam[:, 0:1], self.dirs_cam[:, 1:2]
        for i in range(n):
            rays[i, :, 3:] = dx * R[i, :, 0] + dy * R[i, :, 1] + R[i, :, 2]
        return rays

    def cast(self, poses: np.ndarray) -> dict:
        """Hits of every pixel ray: ``t`` (N, H*W) (inf = none), ``part``, ``normals``, ``rays``."""
        rays = self.rays(poses)
        if hasattr(self.caster, "cast_packed"):
            t, part, normals = self.caster.cast_packed(rays)
        else:  # torch: rays grouped by image tiles, so each group is culled to its cone
            perm, starts = self._tiles(self.caster.tile)
            n, hw = rays.shape[:2]
            tiled = rays[:, perm].reshape(-1, 6)
            groups = (np.arange(n)[:, None] * hw + starts[None, :]).reshape(-1)
            t_, p_, n_ = self.caster.cast(tiled[:, :3], tiled[:, 3:], groups=groups)
            inv = np.empty_like(perm)
            inv[perm] = np.arange(len(perm))
            t = t_.reshape(n, hw)[:, inv]
            part = p_.reshape(n, hw)[:, inv]
            normals = n_.reshape(n, hw, 3)[:, inv]
        return {"t": t, "part": part, "normals": normals, "rays": rays, "n": len(poses)}

    def _tiles(self, tile: int) -> tuple:
        """Pixel order that walks the image tile by tile, and where each tile starts."""
        h, w = self.intr.shape
        v, u = np.mgrid[0:h, 0:w]
        key = (v // tile) * ((w + tile - 1) // tile) + (u // tile)
        perm = np.argsort(key.reshape(-1), kind="stable")
        sizes = np.bincount(key.reshape(-1))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return perm, starts

    def render(self, poses: np.ndarray) -> dict:
        h, w = self.intr.shape
        c = self.cast(np.asarray(poses, dtype=np.float64))
        n = c["n"]
        t = c["t"].reshape(-1)
        idx = np.flatnonzero(np.isfinite(t))
        part = c["part"].reshape(-1)[idx]
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
        if len(idx) < n * h * w and not self.shader.lighting.is_classic:
            miss = np.flatnonzero(~np.isfinite(t))
            env = self.shader.environment(c["rays"].reshape(-1, 6)[miss, 3:])
            rgb[miss] = (env * 255.0 + 0.5).astype(np.uint8)
        depth = np.zeros(n * h * w, np.float32)
        depth[idx] = th
        labels = np.zeros(n * h * w, np.uint8)
        labels[idx] = self.g.part_class[part]
        inst = np.zeros(n * h * w, np.uint16)
        inst[idx] = self.g.part_instance[part]
        return {"rgb": rgb.reshape(n, h, w, 3), "depth": depth.reshape(n, h, w),
                "labels": labels.reshape(n, h, w), "instances": inst.reshape(n, h, w)}


def iter_batches(renderer: Renderer, poses: np.ndarray, frame_ids, batch: int = 8, threads: int = 2):
    """Render the frames ``frame_ids`` (indices into ``poses``) in batches of ``batch`` on
    ``threads`` threads (numpy, Open3D and torch release the GIL); yields
    ``(ids, result)`` in order, so consumers are deterministic."""

    ids = [int(i) for i in frame_ids]
    chunks = iter([ids[a:a + batch] for a in range(0, len(ids), batch)])
    in_flight: deque = deque()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        def submit_next() -> None:
            chunk = next(chunks, None)
            if chunk is not None:
                in_flight.append((chunk, pool.submit(renderer.render, poses[chunk])))

        for _ in range(max(1, threads)):
            submit_next()
        while in_flight:
            chunk, job = in_flight.popleft()
            result = job.result()
            submit_next()
            yield chunk, result
