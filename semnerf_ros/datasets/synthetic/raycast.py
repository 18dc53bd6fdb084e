"""Ray casting against a scene's triangles: Open3D (Embree) or torch.

Both casters answer ``cast(origins, dirs) -> (t, part, normals)`` for rays in world
coordinates: ``t`` (R,) float32 ray parameter of the first hit (``inf`` = no hit),
``part`` (R,) int32 part index of the hit (-1 = none), ``normals`` (R,3) float32
geometric normal of the hit face (either orientation).

:class:`TorchRayCaster` needs only torch (CUDA when available, else CPU): every
part's triangles lie in a box of its own frame, so a ray is first tested against
all parts' boxes at once (slab test, one matrix product per chunk of rays).  A box
part *is* its box, so the slab test gives its exact hit; the triangles of curved
parts (cylinders, spheres) are then tested (Moller-Trumbore) only for the rays
that enter their box before the nearest box hit.  It gives the hits of Open3D up
to float32 rounding (tests compare the two).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .geometry import S_BOX, SceneGeometry

RAYCASTERS = ("auto", "open3d", "torch")


def open3d_available() -> bool:
    """True when ``open3d`` imports (the default caster)."""
    try:
        import open3d  # noqa: F401
    except ImportError:
        return False
    return True


def make_raycaster(geom: SceneGeometry, name: str = "auto", device=None):
    """The caster ``name`` (``auto``: Open3D when it imports, else torch) for ``geom``.
    ``device`` (torch caster only): ``cuda``, ``cpu`` or None (CUDA when available)."""
    if name not in RAYCASTERS:
        raise ValueError(f"raycaster must be one of {RAYCASTERS}, got {name!r}")
    if name == "auto":
        name = "open3d" if open3d_available() else "torch"
    if name == "open3d":
        if not open3d_available():
            raise ImportError("raycaster 'open3d' needs the open3d package; use raycaster='torch'")
        return Open3DRayCaster(geom)
    return TorchRayCaster(geom, device=device)


class Open3DRayCaster:
    """``open3d.t.geometry.RaycastingScene`` over all triangles (thread-safe after build)."""

    name = "open3d"

    def __init__(self, geom: SceneGeometry):
        import open3d as o3d

        self.g = geom
        self.scene = o3d.t.geometry.RaycastingScene()
        mesh = o3d.t.geometry.TriangleMesh()
        mesh.vertex.positions = o3d.core.Tensor(geom.vertices.astype(np.float32))
        mesh.triangle.indices = o3d.core.Tensor(geom.triangles.astype(np.int32))
        self.scene.add_triangles(mesh)
        # Build the BVH now (Open3D commits lazily on the first cast), so that
        # concurrent cast() calls only read the scene.
        self.scene.cast_rays(o3d.core.Tensor(np.array([[0, 0, 1, 1, 0, 0]], dtype=np.float32)))

    def cast_packed(self, rays: np.ndarray) -> tuple:
        """Rays packed as (..., 6) float32 ``[origin, direction]``; results keep the leading shape."""
        import open3d as o3d

        out = self.scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays, dtype=np.float32)))
        t = out["t_hit"].numpy()
        prim = out["primitive_ids"].numpy()
        hit = np.isfinite(t)
        part = np.full(t.shape, -1, np.int32)
        part[hit] = self.g.tri_part[prim[hit]]
        return t, part, out["primitive_normals"].numpy()

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple:
        rays = np.concatenate([np.asarray(origins, np.float32), np.asarray(dirs, np.float32)], axis=-1)
        return self.cast_packed(rays)


class TorchRayCaster:
    """Ray casting with torch (see the module docstring); ``device`` None = CUDA when
    available.  ``ray_chunk``: rays per slab-test batch (default: 32768 on CUDA, 1024
    on CPU, bounded so the (rays x parts x 3) tensors stay near 0.5 GB / 40 MB)."""

    name = "torch"
    EPS = 1e-6

    def __init__(self, geom: SceneGeometry, device=None, ray_chunk: Optional[int] = None):
        import torch

        self.torch = torch
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.g = geom
        P = geom.num_parts
        R = geom.part_R.astype(np.float64)
        t = geom.part_t.astype(np.float64)
        # every part's vertices in its own frame -> the part's box
        vp = geom.vertex_part
        local = np.einsum("vji,vj->vi", R[vp], geom.vertices - t[vp])
        lo = np.full((P, 3), np.inf)
        hi = np.full((P, 3), -np.inf)
        np.minimum.at(lo, vp, local)
        np.maximum.at(hi, vp, local)
        is_box = geom.part_shape == S_BOX
        pad = np.where(is_box[:, None], 0.0, 1e-5)   # curved parts: a hair of slack for the triangle test
        lo, hi = lo - pad, hi + pad
        f32 = dict(dtype=torch.float32, device=self.device)
        self.R_flat = torch.tensor(R.transpose(1, 0, 2).reshape(3, P * 3), **f32)   # [j, p*3+k] = R[p, j, k]
        self.c = torch.tensor(np.einsum("pj,pjk->pk", t, R), **f32)                 # t_p in the part frame
        self.lo = torch.tensor(lo, **f32)
        self.hi = torch.tensor(hi, **f32)
        self.R = torch.tensor(R, **f32)
        self.box_parts = torch.tensor(np.flatnonzero(is_box), dtype=torch.long, device=self.device)
        curved = np.flatnonzero(~is_box)
        self.curved_parts = torch.tensor(curved, dtype=torch.long, device=self.device)
        # curved parts' triangles, padded to the largest count (invalid ones degenerate)
        counts = np.bincount(geom.tri_part, minlength=P)
        tmax = int(counts[curved].max()) if len(curved) else 1
        v0 = np.zeros((len(curved), tmax, 3))
        e1 = np.zeros((len(curved), tmax, 3))
        e2 = np.zeros((len(curved), tmax, 3))
        order = np.argsort(geom.tri_part, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        V = geom.vertices
        for i, p in enumerate(curved):
            tris = geom.triangles[order[starts[p]:starts[p + 1]]]
            a, b, c = V[tris[:, 0]], V[tris[:, 1]], V[tris[:, 2]]
            v0[i, :len(tris)] = a
            e1[i, :len(tris)] = b - a
            e2[i, :len(tris)] = c - a
        self.v0, self.e1, self.e2 = (torch.tensor(x, **f32) for x in (v0, e1, e2))
        self.tmax = tmax
        if ray_chunk is None:
            budget = (1 << 27) if self.device.type == "cuda" else (1 << 21)   # floats per (R, P, 3) tensor
            ray_chunk = max(64, min(65536 if self.device.type == "cuda" else 4096, budget // max(1, 3 * P)))
        self.ray_chunk = int(ray_chunk)
        self.pair_chunk = max(256, ((1 << 25) if self.device.type == "cuda" else (1 << 20)) // (9 * tmax))

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple:
        torch = self.torch
        o = np.asarray(origins, np.float32).reshape(-1, 3)
        d = np.asarray(dirs, np.float32).reshape(-1, 3)
        n = len(o)
        t_out = np.empty(n, np.float32)
        part_out = np.empty(n, np.int32)
        nrm_out = np.empty((n, 3), np.float32)
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False   # the slab test needs full float32 products
        try:
            with torch.no_grad():
                for a in range(0, n, self.ray_chunk):
                    b = min(n, a + self.ray_chunk)
                    ot = torch.from_numpy(o[a:b]).to(self.device)
                    dt = torch.from_numpy(d[a:b]).to(self.device)
                    t, p, nr = self._cast_chunk(ot, dt)
                    t_out[a:b] = t.cpu().numpy()
                    part_out[a:b] = p.cpu().numpy()
                    nrm_out[a:b] = nr.cpu().numpy()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        shape = np.asarray(origins).shape[:-1]
        return t_out.reshape(shape), part_out.reshape(shape), nrm_out.reshape(*shape, 3)

    def _cast_chunk(self, o, d):
        torch = self.torch
        R = len(o)
        P = self.lo.shape[0]
        eps = self.EPS
        o_l = (o @ self.R_flat).view(R, P, 3) - self.c
        d_l = (d @ self.R_flat).view(R, P, 3)
        d_l = torch.where(d_l.abs() < 1e-12, torch.full_like(d_l, 1e-12), d_l)
        inv = 1.0 / d_l
        t0 = (self.lo - o_l) * inv
        t1 = (self.hi - o_l) * inv
        del o_l
        tmin = torch.minimum(t0, t1)
        tmax = torch.maximum(t0, t1)
        del t0, t1
        tnear, near_axis = tmin.max(dim=2)
        tfar, far_axis = tmax.min(dim=2)
        del tmin, tmax
        hit = (tnear <= tfar) & (tfar > eps)
        inf = torch.tensor(float("inf"), device=o.device)
        # nearest box part
        tb_near = tnear[:, self.box_parts]
        tb_far = tfar[:, self.box_parts]
        tb = torch.where(tb_near > eps, tb_near, tb_far)
        tb = torch.where(hit[:, self.box_parts], tb, inf)
        best_t, j = tb.min(dim=1)
        best_part = self.box_parts[j]
        rows = torch.arange(R, device=o.device)
        inside = ~(tb_near[rows, j] > eps)
        axis = torch.where(inside, far_axis[rows, best_part], near_axis[rows, best_part])
        normal = self.R[best_part, :, axis]                     # the hit face's axis in world
        best_part = torch.where(torch.isfinite(best_t), best_part, torch.full_like(best_part, -1))
        # curved parts whose box is entered before the nearest box hit: test their triangles
        if len(self.curved_parts):
            cand = hit[:, self.curved_parts] & (tnear[:, self.curved_parts] < best_t[:, None])
            ray_idx, cpart = torch.nonzero(cand, as_tuple=True)
            for a in range(0, len(ray_idx), self.pair_chunk):
                ri = ray_idx[a:a + self.pair_chunk]
                ci = cpart[a:a + self.pair_chunk]
                t_pair, k = self._triangles(o[ri], d[ri], ci)
                # per ray, keep the nearest pair hit
                cur = torch.full((R,), float("inf"), device=o.device)
                cur = cur.scatter_reduce(0, ri, t_pair, reduce="amin")
                better = t_pair < best_t[ri]
                win = better & (t_pair <= cur[ri])
                ri_w, ci_w, k_w, t_w = ri[win], ci[win], k[win], t_pair[win]
                best_t[ri_w] = t_w
                best_part[ri_w] = self.curved_parts[ci_w]
                nrm = torch.linalg.cross(self.e1[ci_w, k_w], self.e2[ci_w, k_w], dim=-1)
                normal[ri_w] = nrm / nrm.norm(dim=-1, keepdim=True).clamp_min(1e-20)
        return best_t, best_part.to(torch.int32), normal

    def _triangles(self, o, d, ci):
        """Moller-Trumbore of M rays against the triangles of curved part ``ci`` (M,):
        the nearest ``t`` (M,) (inf = none) and the triangle's slot (M,)."""
        torch = self.torch
        eps = self.EPS
        v0, e1, e2 = self.v0[ci], self.e1[ci], self.e2[ci]           # (M, T, 3)
        dd = d[:, None, :].expand_as(e2)
        pvec = torch.linalg.cross(dd, e2, dim=-1)
        det = (e1 * pvec).sum(-1)
        ok = det.abs() > 1e-12
        inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
        tvec = o[:, None, :] - v0
        u = (tvec * pvec).sum(-1) * inv
        qvec = torch.linalg.cross(tvec, e1, dim=-1)
        v = (dd * qvec).sum(-1) * inv
        t = (e2 * qvec).sum(-1) * inv
        ok &= (u >= 0) & (v >= 0) & (u + v <= 1) & (t > eps)
        t = torch.where(ok, t, torch.full_like(t, float("inf")))
        return t.min(dim=1)
