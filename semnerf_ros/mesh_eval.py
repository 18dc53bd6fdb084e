"""Accuracy of a reconstructed semantic mesh against a ground-truth mesh (metres).

Distances are **point-to-surface**: a point's distance to a mesh is the distance to the
closest point of its closest triangle (:func:`point_to_mesh_distance`), not to the nearest
of a finite set of samples, whose spacing (about 2.7 cm for 200 000 samples over a
150 m^2 room) would otherwise be added to every figure.  ``distance="samples"`` keeps the
sample-to-sample variant (as in the NICE-SLAM evaluation scripts) for comparison.

Completion can only be asked of surface the cameras saw: :func:`visible_mask` marks the
ground-truth points seen by a set of depth views (inside a view's frustum and within
``tol`` of its depth map), and :func:`mesh_accuracy` reports the completion / recall over
those points as ``*_observed`` (the culled-GT protocol of NICE-SLAM and Co-SLAM), beside
the figures over the whole ground truth.

Frames: every array in world metres; poses are camera-to-world 4x4, optical axes
(x right, y down, z forward), depth maps z-depth in metres (0 or non-finite = no data).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy.spatial import cKDTree

from .engine.geometry import points_seen_by_views

__all__ = ["sample_surface", "closest_point_on_triangles", "point_to_mesh_distance", "visible_mask",
           "mesh_accuracy"]


def sample_surface(vertices, faces, n: int, rng: np.random.Generator):
    """``n`` points uniformly on the surface (area-weighted). Returns (points (n,3),
    face index (n,), barycentric weights (n,3))."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    t = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    if faces.shape[0] == 0 or area.sum() <= 0:
        raise ValueError("cannot sample a surface with no area")
    fi = rng.choice(faces.shape[0], size=int(n), p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    bary = np.stack([1 - u - v, u, v], axis=1)
    pts = np.einsum("nk,nkd->nd", bary, t[fi])
    return pts, fi, bary


def closest_point_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest point to each ``p[i]`` on triangle ``(a[i], b[i], c[i])`` (all (N,3)); the
    Voronoi-region method of Ericson, *Real-Time Collision Detection*, 5.1.5, vectorised.
    Degenerate triangles give a point on one of their edges."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    bp, cp = p - b, p - c
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        # interior (the default), then edges, then vertices: later assignments win
        denom = va + vb + vc
        v = np.where(denom != 0, vb / denom, 0.0)
        w = np.where(denom != 0, vc / denom, 0.0)
        out = a + ab * v[:, None] + ac * w[:, None]
        m = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)      # edge bc
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        out[m] = b[m] + (c[m] - b[m]) * t[m, None]
        m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)                 # edge ac
        t = d2 / (d2 - d6)
        out[m] = a[m] + ac[m] * t[m, None]
        m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)                 # edge ab
        t = d1 / (d1 - d3)
        out[m] = a[m] + ab[m] * t[m, None]
    m = (d6 >= 0) & (d5 <= d6)
    out[m] = c[m]
    m = (d3 >= 0) & (d4 <= d3)
    out[m] = b[m]
    m = (d1 <= 0) & (d2 <= 0)
    out[m] = a[m]
    bad = ~np.isfinite(out).all(1)
    if bad.any():  # degenerate triangle: fall back to the nearest corner
        corners = np.stack([a[bad], b[bad], c[bad]], 1)
        k = np.argmin(np.linalg.norm(corners - p[bad, None], axis=2), axis=1)
        out[bad] = corners[np.arange(k.size), k]
    return out


class _SurfaceIndex:
    """Nearest-triangle queries on a mesh: a k-d tree over area-weighted samples plus every
    face centroid proposes ``k`` candidate faces per query; the exact distance to each
    candidate is taken and the smallest kept.  The result is exact unless the closest face
    has no sample among the ``k`` nearest, and then off by less than the sample spacing."""
    def __init__(self, vertices, faces, n_samples: int, rng: np.random.Generator, k: int = 8):
        self.tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
        pts, fi, _ = sample_surface(vertices, faces, n_samples, rng)
        self.owner = np.concatenate([fi, np.arange(self.tri.shape[0])])
        self.tree = cKDTree(np.concatenate([pts, self.tri.mean(1)]))
        self.k = min(int(k), self.owner.size)

    def query(self, points: np.ndarray, chunk: int = 200000):
        """(distance (N,), closest face (N,), closest point (N,3)) for points (N,3)."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        dist = np.empty(points.shape[0])
        face = np.empty(points.shape[0], np.int64)
        closest = np.empty((points.shape[0], 3))
        for s in range(0, points.shape[0], chunk):
            p = points[s:s + chunk]
            _, idx = self.tree.query(p, k=self.k, workers=-1)
            cand = self.owner[idx.reshape(p.shape[0], -1)]                   # (n,k)
            t = self.tri[cand.reshape(-1)]
            q = closest_point_on_triangles(np.repeat(p, cand.shape[1], axis=0), t[:, 0], t[:, 1], t[:, 2])
            d = np.linalg.norm(q - np.repeat(p, cand.shape[1], axis=0), axis=1).reshape(p.shape[0], -1)
            j = np.argmin(d, axis=1)
            r = np.arange(p.shape[0])
            dist[s:s + chunk] = d[r, j]
            face[s:s + chunk] = cand[r, j]
            closest[s:s + chunk] = q.reshape(p.shape[0], -1, 3)[r, j]
        return dist, face, closest


def point_to_mesh_distance(points, vertices, faces, n_index_samples: int = 500000,
                           rng: Optional[np.random.Generator] = None):
    """Distance (m) from each point to the surface of a triangle mesh, and the index of
    the closest face.  See :class:`_SurfaceIndex` for the (tight) approximation."""
    rng = np.random.default_rng(0) if rng is None else rng
    return _SurfaceIndex(vertices, faces, n_index_samples, rng).query(points)[:2]


def visible_mask(points, poses: Sequence[np.ndarray], intrinsics, depths: Sequence[np.ndarray],
                 tol: float = 0.03, min_depth: float = 0.05) -> np.ndarray:
    """True for the points seen by at least one view: in front of the camera, projecting
    inside the image, and within ``tol`` m of the view's depth at that pixel (nearest pixel).
    ``intrinsics``: one :class:`~semnerf_ros.engine.geometry.Intrinsics` or one per view.
    (:func:`semnerf_ros.engine.geometry.points_seen_by_views`, every view with a depth image.)"""
    return points_seen_by_views(points, poses, intrinsics, [np.asarray(D) for D in depths], tol, min_depth)


def mesh_accuracy(pred, gt_vertices, gt_faces, gt_labels=None, n_samples: int = 200000,
                  rng: Optional[np.random.Generator] = None, threshold_m: float = 0.05,
                  gt_visible=None, distance: str = "surface") -> dict:
    """Geometric and semantic accuracy of a predicted :class:`~semnerf_ros.engine.mesh.SemanticMesh`.

    ``n_samples`` points are drawn on each mesh (area-weighted).
    accuracy_m: mean distance from the prediction's points to the GT surface;
    completion_m: GT points to the predicted surface; chamfer_m: their mean (Chamfer-L1);
    precision@5cm / recall@5cm: fractions under ``threshold_m``; fscore@5cm.
    ``gt_visible``: a callable ``points (N,3) -> bool (N,)`` (e.g. :func:`visible_mask` bound to
    the training views) adding ``completion_m_observed``, ``recall@5cm_observed``,
    ``chamfer_m_observed``, ``fscore@5cm_observed`` and ``observed_fraction`` (of the GT surface).
    ``distance``: "surface" (point-to-triangle) or "samples" (nearest sample of the other mesh).

    semantic_vertex_accuracy: fraction of predicted vertices whose class equals that of the
    closest GT surface point (the label of the nearest corner of its triangle; void (0) GT
    excluded); ``semantic_vertex_accuracy@5cm`` counts only vertices within ``threshold_m``
    of the GT surface (a vertex of a phantom surface has no true class), and
    ``semantic_vertex_accuracy_observed`` (with ``gt_visible``) only vertices the views saw.
    """
    if distance not in ("surface", "samples"):
        raise ValueError(f"distance must be 'surface' or 'samples', got {distance!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    gt_vertices = np.asarray(gt_vertices, np.float64).reshape(-1, 3)
    gt_faces = np.asarray(gt_faces, np.int64).reshape(-1, 3)
    if pred.num_faces == 0:
        raise ValueError("mesh_accuracy: the predicted mesh has no faces")
    if gt_faces.shape[0] == 0:
        raise ValueError("mesh_accuracy: the ground-truth mesh has no faces")
    p_pts, _, _ = sample_surface(pred.vertices, pred.faces, n_samples, rng)
    g_pts, _, _ = sample_surface(gt_vertices, gt_faces, n_samples, rng)
    gt_index = _SurfaceIndex(gt_vertices, gt_faces, max(n_samples, 4 * gt_faces.shape[0]), rng)
    if distance == "surface":
        pred_index = _SurfaceIndex(pred.vertices, pred.faces, n_samples, rng)
        d_pred = gt_index.query(p_pts)[0]
        d_gt = pred_index.query(g_pts)[0]
    else:
        d_pred = cKDTree(g_pts).query(p_pts, workers=-1)[0]
        d_gt = cKDTree(p_pts).query(g_pts, workers=-1)[0]
    cm = int(round(threshold_m * 100))

    def fscore(p, r):
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    acc, comp = float(d_pred.mean()), float(d_gt.mean())
    prec, rec = float((d_pred < threshold_m).mean()), float((d_gt < threshold_m).mean())
    out = {"distance": distance, "accuracy_m": acc, "completion_m": comp, "chamfer_m": 0.5 * (acc + comp),
           f"precision@{cm}cm": prec, f"recall@{cm}cm": rec, f"fscore@{cm}cm": fscore(prec, rec),
           "semantic_vertex_accuracy": float("nan"), f"semantic_vertex_accuracy@{cm}cm": float("nan")}
    if gt_visible is not None:
        seen = np.asarray(gt_visible(g_pts), bool).reshape(-1)
        if seen.shape[0] != g_pts.shape[0]:
            raise ValueError("gt_visible must return one flag per point")
        out["observed_fraction"] = float(seen.mean())
        if seen.any():
            comp_o, rec_o = float(d_gt[seen].mean()), float((d_gt[seen] < threshold_m).mean())
            out.update({"completion_m_observed": comp_o, "chamfer_m_observed": 0.5 * (acc + comp_o),
                        f"recall@{cm}cm_observed": rec_o, f"fscore@{cm}cm_observed": fscore(prec, rec_o)})
    if gt_labels is not None:
        gt_labels = np.asarray(gt_labels).reshape(-1)
        if gt_labels.shape[0] != gt_vertices.shape[0]:
            raise ValueError(f"gt_labels has {gt_labels.shape[0]} entries for {gt_vertices.shape[0]} GT vertices")
        d_v, f_v, q_v = gt_index.query(pred.vertices)
        corners = gt_faces[f_v]                                               # (V,3)
        k = np.argmin(np.linalg.norm(gt_vertices[corners] - q_v[:, None], axis=2), axis=1)
        target = gt_labels[corners[np.arange(k.size), k]]
        labels = np.asarray(pred.vertex_labels).reshape(-1)
        valid = target != 0
        if valid.any():
            out["semantic_vertex_accuracy"] = float((labels[valid] == target[valid]).mean())
        near = valid & (d_v < threshold_m)
        if near.any():
            out[f"semantic_vertex_accuracy@{cm}cm"] = float((labels[near] == target[near]).mean())
            out[f"vertices_within_{cm}cm"] = float(near.sum() / max(1, valid.sum()))
        if gt_visible is not None:
            seen_v = valid & np.asarray(gt_visible(pred.vertices), bool).reshape(-1)
            if seen_v.any():
                out["semantic_vertex_accuracy_observed"] = float((labels[seen_v] == target[seen_v]).mean())
                out["vertices_observed"] = float(seen_v.sum() / max(1, valid.sum()))
    return out
