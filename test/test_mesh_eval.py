"""Mesh evaluation: exact point-to-triangle distances, view visibility, observed-surface metrics."""
import numpy as np
import pytest

from semnerf_ros.engine.geometry import Intrinsics
from semnerf_ros.engine.mesh import SemanticMesh
from semnerf_ros.mesh_eval import closest_point_on_triangles, mesh_accuracy, point_to_mesh_distance, visible_mask


def _grid(n, x0, x1, y0, y1, z, label):
    """A square in the plane z = const, (n x n) vertices, two triangles per cell."""
    X, Y = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n), indexing="ij")
    v = np.stack([X.ravel(), Y.ravel(), np.full(X.size, z)], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return v, f, np.full(len(v), label)


def _merge(*parts):
    vs, fs, ls, off = [], [], [], 0
    for v, f, lab in parts:
        vs.append(v)
        fs.append(f + off)
        ls.append(lab)
        off += len(v)
    return np.concatenate(vs), np.concatenate(fs), np.concatenate(ls)


def test_closest_point_matches_brute_force_and_lies_on_the_triangle():
    rng = np.random.default_rng(0)
    n = 500
    a, b, c = rng.normal(size=(3, n, 3))
    p = rng.normal(size=(n, 3)) * 2
    q = closest_point_on_triangles(p, a, b, c)
    d = np.linalg.norm(q - p, axis=1)
    # q lies on its triangle: barycentric coordinates in [0, 1]
    for i in range(0, n, 25):
        M = np.stack([b[i] - a[i], c[i] - a[i]], 1)
        uv, *_ = np.linalg.lstsq(M, q[i] - a[i], rcond=None)
        assert np.allclose(M @ uv, q[i] - a[i], atol=1e-9)
        assert uv.min() > -1e-9 and uv.sum() < 1 + 1e-9
    # and no point of the triangle is nearer (dense barycentric sampling)
    g = np.linspace(0, 1, 61)
    U, V = np.meshgrid(g, g)
    keep = (U + V) <= 1
    U, V = U[keep], V[keep]
    best = np.full(n, np.inf)
    for u, v in zip(U, V):
        best = np.minimum(best, np.linalg.norm(a * (1 - u - v) + b * u + c * v - p, axis=1))
    assert np.all(d <= best + 1e-9)
    assert np.all(best - d < 0.1)


def test_closest_point_regions_and_degenerate_triangle():
    a, b, c = np.array([[0., 0, 0]]), np.array([[1., 0, 0]]), np.array([[0., 1, 0]])
    pts = np.array([[0.2, 0.2, 0.5], [-1, -1, 0], [2, -0.5, 0], [0.5, -1, 0], [1, 1, 0]])
    want = np.array([[0.2, 0.2, 0], [0, 0, 0], [1, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0]])
    got = closest_point_on_triangles(pts, *(np.repeat(x, len(pts), 0) for x in (a, b, c)))
    assert np.allclose(got, want)
    # a degenerate (zero-area) triangle still gives a finite point on it
    d = closest_point_on_triangles(np.array([[0.5, 1, 0]]), a, b, np.array([[2., 0, 0]]))
    assert np.allclose(d, [[0.5, 0, 0]])


def test_point_to_mesh_distance_on_a_plane_is_exact_not_sample_spacing():
    v, f, _ = _grid(3, 0, 4, 0, 4, 0.0, 1)          # 8 large triangles: samples would be far apart
    rng = np.random.default_rng(1)
    p = np.column_stack([rng.uniform(0.5, 3.5, 1000), rng.uniform(0.5, 3.5, 1000), rng.uniform(-0.3, 0.3, 1000)])
    dist, face = point_to_mesh_distance(p, v, f, n_index_samples=2000)
    assert np.allclose(dist, np.abs(p[:, 2]), atol=1e-9)
    assert face.min() >= 0 and face.max() < len(f)


def _camera_looking_down(height=2.0):
    T = np.eye(4)
    T[:3, :3] = np.diag([1.0, -1.0, -1.0])      # optical z points down the world -z
    T[:3, 3] = [2.0, 2.0, height]
    return T


def test_visible_mask_uses_frustum_and_depth():
    intr = Intrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)
    T = _camera_looking_down(2.0)
    depth = np.full((48, 64), 2.0)                 # a floor at z = 0 seen from 2 m
    pts = np.array([[2.0, 2.0, 0.0],               # on the floor, in view
                    [2.0, 2.0, -0.5],              # under the floor: occluded
                    [2.0, 2.0, 1.0],               # floating: depth disagrees
                    [9.0, 2.0, 0.0],               # outside the frustum
                    [2.0, 2.0, 3.0]])              # behind the camera
    assert visible_mask(pts, [T], intr, [depth]).tolist() == [True, False, False, False, False]
    # no depth (0 / NaN) sees nothing
    assert not visible_mask(pts, [T], intr, [np.zeros((48, 64))]).any()
    with pytest.raises(ValueError, match="intrinsics"):
        visible_mask(pts, [T], intr, [np.zeros((10, 10))])


def test_mesh_accuracy_observed_metrics_ignore_surface_no_view_saw():
    floor = _grid(21, 0, 4, 0, 4, 0.0, 2)
    hidden = _grid(11, 1, 3, 1, 3, -1.0, 3)        # a surface under the floor, never seen
    gv, gf, gl = _merge(floor, hidden)
    pred = SemanticMesh(floor[0], floor[1], np.zeros((len(floor[0]), 3)), floor[2], ["void", "a", "b", "c"])
    intr = Intrinsics(20.0, 20.0, 31.5, 23.5, 64, 48)
    T = _camera_looking_down(2.0)
    depth = np.full((48, 64), 2.0)

    def seen(points):
        return visible_mask(points, [T], intr, [depth])

    acc = mesh_accuracy(pred, gv, gf, gl, n_samples=20000, rng=np.random.default_rng(0), gt_visible=seen)
    assert acc["distance"] == "surface"
    assert acc["accuracy_m"] < 1e-3                       # every predicted point lies on the GT
    assert acc["completion_m"] > 0.1                      # the hidden square is missing ...
    assert acc["completion_m_observed"] < 1e-3            # ... but no view saw it
    assert acc["recall@5cm_observed"] == 1.0 and acc["recall@5cm"] < 0.9
    assert 0.5 < acc["observed_fraction"] < 0.95
    assert acc["semantic_vertex_accuracy"] == 1.0 and acc["semantic_vertex_accuracy_observed"] == 1.0
    # the sample-to-sample variant adds the sample spacing to a perfect prediction
    samp = mesh_accuracy(pred, gv, gf, gl, n_samples=2000, rng=np.random.default_rng(0), distance="samples")
    surf = mesh_accuracy(pred, gv, gf, gl, n_samples=2000, rng=np.random.default_rng(0))
    assert samp["accuracy_m"] > 0.01 > surf["accuracy_m"]
    with pytest.raises(ValueError, match="distance"):
        mesh_accuracy(pred, gv, gf, gl, distance="nearest")


def test_semantic_accuracy_within_threshold_skips_phantom_vertices():
    floor = _grid(11, 0, 2, 0, 2, 0.0, 2)
    phantom = _grid(5, 0, 1, 0, 1, 0.5, 3)                # 0.5 m above the floor: nothing there
    v, f, lab = _merge(floor, phantom)
    pred = SemanticMesh(v, f, np.zeros((len(v), 3)), lab, ["void", "a", "b", "c"])
    acc = mesh_accuracy(pred, floor[0], floor[1], floor[2], n_samples=5000, rng=np.random.default_rng(0))
    n_floor, n_all = len(floor[0]), len(v)
    assert acc["semantic_vertex_accuracy"] == pytest.approx(n_floor / n_all)
    assert acc["semantic_vertex_accuracy@5cm"] == 1.0
    assert acc["vertices_within_5cm"] == pytest.approx(n_floor / n_all)


def _seen_rule(points, poses, K, depths, tol, min_depth=0.05, max_depth=np.inf):
    """The visibility rule written out point by view in NumPy: in front (min_depth < z < max_depth),
    inside the image at the nearest pixel, and within ``tol`` of that pixel's depth (None: frustum)."""
    seen = np.zeros(len(points), bool)
    for T, D in zip(poses, depths):
        q = (points - T[:3, 3]) @ T[:3, :3]
        z = q[:, 2]
        front = (z > min_depth) & (z < max_depth)
        zs = np.where(front, z, 1.0)
        u, v = np.rint(q[:, 0] / zs * K.fx + K.cx), np.rint(q[:, 1] / zs * K.fy + K.cy)
        idx = np.flatnonzero(front & (u >= 0) & (u < K.width) & (v >= 0) & (v < K.height))
        if D is None:
            seen[idx] = True
            continue
        d = D[v[idx].astype(np.int64), u[idx].astype(np.int64)]
        seen[idx[np.isfinite(d) & (d > 0) & (np.abs(d - z[idx]) < tol)]] = True
    return seen


def test_points_seen_by_views_on_tensors_matches_the_numpy_rule():
    """The mapper's observed-face filter runs on the keyframes' device
    (``points_seen_by_views_torch``), and ``points_seen_by_views`` (NumPy in and out) runs the same
    code on the CPU; both must pick the points of the rule written out here, with views that have
    depth (within ``tol``), views without (frustum), and points behind, outside and at the far plane."""
    import torch

    from semnerf_ros.engine.geometry import points_seen_by_views, points_seen_by_views_torch

    rng = np.random.default_rng(4)
    w, h = 32, 24
    K = Intrinsics(30.0, 30.0, 15.5, 11.5, w, h)
    poses, depths = [], []
    for i in range(5):
        T = np.eye(4)
        a = 0.4 * i
        T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        T[:3, 3] = rng.normal(0, 0.2, 3)
        poses.append(T)
        D = 2.0 + rng.random((h, w))
        D[rng.random((h, w)) < 0.1] = 0.0                        # holes
        depths.append(D)
    pts = rng.normal(0, 2.0, (4000, 3))
    # points on view 0's depth surface, so that the depth test matters
    v, u = rng.integers(0, h, 500), rng.integers(0, w, 500)
    z = depths[0][v, u] + rng.normal(0, 0.03, 500)
    cam = np.stack([(u - K.cx) / K.fx * z, (v - K.cy) / K.fy * z, z], -1)
    pts = np.concatenate([pts, cam @ poses[0][:3, :3].T + poses[0][:3, 3]])
    with_none = [depths[0], None, depths[2], depths[3], None]
    ref = _seen_rule(pts, poses, K, with_none, tol=0.04, max_depth=2.8)
    assert np.array_equal(points_seen_by_views(pts, poses, K, with_none, tol=0.04, max_depth=2.8), ref)
    has = torch.tensor([d is not None for d in with_none])
    D = torch.tensor(np.stack([d if d is not None else np.zeros((h, w)) for d in with_none]), dtype=torch.float32)
    got = points_seen_by_views_torch(torch.tensor(pts), torch.tensor(np.stack(poses)),
                                     torch.tensor([[K.fx, K.fy, K.cx, K.cy]] * 5), D, has, tol=0.04, max_depth=2.8)
    assert 0.05 < ref.mean() < 0.95                           # both outcomes occur
    assert np.array_equal(got.numpy(), ref)
