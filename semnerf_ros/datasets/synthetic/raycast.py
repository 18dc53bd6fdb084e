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

import math
from typing import Optional

import numpy as np
import torch

from .geometry import S_BOX, SceneGeometry

RAYCASTERS = ("auto", "open3d", "torch")


def open3d_available() -> bool:
    """True when ``open3d`` imports (the default caster)."""
    try:
        import open3d  # noqa: F401  (optional heavy dependency: Embree ray casting)
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
        import open3d as o3d  # optional heavy dependency: Embree ray casting

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
        import open3d as o3d  # optional heavy dependency: Embree ray casting

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
        # internal order: box parts first, then curved ones (contiguous column blocks)
        order = np.concatenate([np.flatnonzero(is_box), np.flatnonzero(~is_box)])
        self.nb = int(is_box.sum())
        self.order = torch.tensor(order, dtype=torch.long, device=self.device)  # internal -> part id
        Ro, to = R[order], t[order]
        # columns [x of all parts | y of all parts | z of all parts]: [j, k*P+p] = R[p, j, k]
        self.R_flat = torch.tensor(Ro.transpose(1, 2, 0).reshape(3, 3 * P), **f32)
        self.c = torch.tensor(np.einsum("pj,pjk->kp", to, Ro).reshape(-1), **f32)   # t_p in the part frame
        self.lo = torch.tensor(lo[order].T.copy(), **f32)                              # (3, P)
        self.hi = torch.tensor(hi[order].T.copy(), **f32)
        self.R = torch.tensor(Ro, **f32)
        # bounding spheres (internal order) for culling parts outside a bundle of rays
        mid = (lo + hi)[order] / 2
        self.sphere_c = torch.tensor(np.einsum("pjk,pk->pj", Ro, mid) + to, **f32)
        self.sphere_r = torch.tensor(np.linalg.norm((hi - lo)[order], axis=1) / 2 + 1e-4, **f32)
        curved = np.flatnonzero(~is_box)
        self.P = P
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

    #: pixels per side of the image tiles the renderer groups rays into (one culling cone each)
    @property
    def tile(self) -> int:
        return 64 if self.device.type == "cuda" else 16

    def cast(self, origins: np.ndarray, dirs: np.ndarray, groups=None) -> tuple:
        """Hits of rays ``origins`` / ``dirs`` (..., 3).  ``groups``: start indices of runs of
        rays (flattened order) that share an origin and point in similar directions (image
        tiles); each run is tested only against the parts inside its cone of directions."""
        torch = self.torch
        o = np.asarray(origins, np.float32).reshape(-1, 3)
        d = np.asarray(dirs, np.float32).reshape(-1, 3)
        n = len(o)
        t_out = np.empty(n, np.float32)
        part_out = np.empty(n, np.int32)
        nrm_out = np.empty((n, 3), np.float32)
        starts = [0] if groups is None else [int(g) for g in groups]
        bounds = []
        for a, b in zip(starts, starts[1:] + [n]):
            bounds += [(c, min(b, c + self.ray_chunk)) for c in range(a, b, self.ray_chunk)]
        with torch.no_grad():
            for a, b in bounds:
                ot = torch.from_numpy(o[a:b]).to(self.device)
                dt = torch.from_numpy(d[a:b]).to(self.device)
                t, p, nr = self._cast_chunk(ot, dt, self._cull(o[a:b], d[a:b]))
                t_out[a:b] = t.cpu().numpy()
                part_out[a:b] = p.cpu().numpy()
                nrm_out[a:b] = nr.cpu().numpy()
        shape = np.asarray(origins).shape[:-1]
        return t_out.reshape(shape), part_out.reshape(shape), nrm_out.reshape(*shape, 3)

    def _cull(self, o: np.ndarray, d: np.ndarray):
        """Internal indices of the parts whose bounding sphere meets the cone of the rays
        (which must share one origin), or None (no culling) when they do not."""
        if len(o) == 0 or float(np.abs(o - o[0]).max()) > 1e-6:
            return None
        torch = self.torch
        u = d / np.linalg.norm(d, axis=1, keepdims=True)
        axis = u.mean(0)
        axis /= np.linalg.norm(axis)
        cos_half = float(np.clip((u @ axis).min(), -1.0, 1.0))
        if cos_half <= 0.0:
            return None
        half = math.acos(cos_half)
        v = self.sphere_c - torch.from_numpy(o[0]).to(self.device)
        dist = v.norm(dim=1)
        ax = torch.from_numpy(axis.astype(np.float32)).to(self.device)
        cos_phi = ((v @ ax) / dist.clamp_min(1e-9)).clamp(-1, 1)
        spread = torch.asin((self.sphere_r / dist.clamp_min(1e-9)).clamp(max=1.0))
        keep = (dist <= self.sphere_r) | (torch.acos(cos_phi) <= half + spread + 1e-3)
        return torch.nonzero(keep, as_tuple=True)[0]

    def _cast_chunk(self, o, d, subset=None):
        torch = self.torch
        R = len(o)
        eps = self.EPS
        if subset is None:
            P, nb, idx = self.P, self.nb, None
            Rf, c, lo, hi = self.R_flat, self.c, self.lo, self.hi
        else:
            idx = subset
            P, nb = len(idx), int((idx < self.nb).sum())
            cols = torch.cat([idx + k * self.P for k in range(3)])
            Rf, c = self.R_flat[:, cols], self.c[cols]
            lo, hi = self.lo[:, idx], self.hi[:, idx]
        inf = float("inf")
        if P == 0:
            return (torch.full((R,), inf, device=o.device), torch.full((R,), -1, dtype=torch.int32, device=o.device),
                    torch.zeros((R, 3), device=o.device))
        # (R, 3P): rays in every part's frame (elementwise, not a matmul: TF32 must not touch it)
        o_l = o[:, 0:1] * Rf[0] + o[:, 1:2] * Rf[1] + o[:, 2:3] * Rf[2] - c
        d_l = d[:, 0:1] * Rf[0] + d[:, 1:2] * Rf[1] + d[:, 2:3] * Rf[2]
        d_l = torch.where(d_l == 0, torch.full_like(d_l, 1e-30), d_l)
        inv = torch.reciprocal(d_l)
        tnear = tfar = None
        for k in range(3):
            sl = slice(k * P, (k + 1) * P)
            t0 = (lo[k] - o_l[:, sl]) * inv[:, sl]
            t1 = (hi[k] - o_l[:, sl]) * inv[:, sl]
            lo_t, hi_t = torch.minimum(t0, t1), torch.maximum(t0, t1)
            tnear = lo_t if tnear is None else torch.maximum(tnear, lo_t)
            tfar = hi_t if tfar is None else torch.minimum(tfar, hi_t)
        hit = (tnear <= tfar) & (tfar > eps)
        rows = torch.arange(R, device=o.device)
        if nb:
            # nearest box part: its slab hit is exact
            tb = torch.where(tnear[:, :nb] > eps, tnear[:, :nb], tfar[:, :nb])
            tb = tb.masked_fill(~hit[:, :nb], inf)
            best_t, j = tb.min(dim=1)
            # the face hit: the axis whose slab bound equals the hit parameter
            inside = ~(tnear[rows, j] > eps)
            ts = []
            for k in range(3):
                col = k * P + j
                ok_, dk = o_l[rows, col], d_l[rows, col]
                t0, t1 = (lo[k, j] - ok_) / dk, (hi[k, j] - ok_) / dk
                ts.append(torch.where(inside, torch.maximum(t0, t1), torch.minimum(t0, t1)))
            ts = torch.stack(ts, 1)
            axis = torch.where(inside[:, None], -ts, ts).argmax(dim=1)
            jj = j if idx is None else idx[j]
            normal = self.R[jj, :, axis]
            best_part = torch.where(torch.isfinite(best_t), self.order[jj], torch.full_like(jj, -1))
        else:
            best_t = torch.full((R,), inf, device=o.device)
            best_part = torch.full((R,), -1, dtype=torch.long, device=o.device)
            normal = torch.zeros((R, 3), device=o.device)
        # curved parts whose box is entered before the nearest box hit: test their triangles
        if P > nb:
            cand = hit[:, nb:] & (tnear[:, nb:] < best_t[:, None])
            ray_idx, cpart = torch.nonzero(cand, as_tuple=True)
            if idx is not None:
                cpart = idx[nb + cpart] - self.nb
            for a in range(0, len(ray_idx), self.pair_chunk):
                ri = ray_idx[a:a + self.pair_chunk]
                ci = cpart[a:a + self.pair_chunk]
                t_pair, k = self._triangles(o[ri], d[ri], ci)
                # per ray, keep the nearest pair hit
                cur = torch.full((R,), inf, device=o.device)
                cur = cur.scatter_reduce(0, ri, t_pair, reduce="amin")
                win = (t_pair < best_t[ri]) & (t_pair <= cur[ri])
                ri_w, ci_w, k_w, t_w = ri[win], ci[win], k[win], t_pair[win]
                best_t[ri_w] = t_w
                best_part[ri_w] = self.order[self.nb + ci_w]
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
