"""engine/marching_cubes.py, the marching cubes that runs on the field's device (issue 14), against
scikit-image's on the CPU: the same mesh as its classic method, closed, wound and oriented like
the mesh the package exported before, slab by slab as in one piece; and extract_mesh with either
backend."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes as sk_marching_cubes

from semnerf_ros.engine.marching_cubes import EDGES, case_table, marching_cubes
from semnerf_ros.engine.mesh import extract_mesh


def _field(seed=0, shape=(40, 34, 37), smooth=2.0):
    g = gaussian_filter(np.random.default_rng(seed).standard_normal(shape), smooth).astype(np.float32)
    g /= g.std()
    for a in range(3):  # low at the border: every surface is closed inside the grid
        idx = [slice(None)] * 3
        idx[a] = [0, -1]
        g[tuple(idx)] = -5.0
    return g


def _boundary_edges(faces):
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    return int((counts == 1).sum()), int((counts > 2).sum())


def _area(v, f):
    return 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()


def test_case_table_is_a_marching_cubes_table():
    tris, counts = case_table()
    assert tris.shape == (256, 5, 3) and counts[0] == counts[255] == 0
    assert len(EDGES) == 12 and counts[1:255].min() >= 1 and counts.max() <= 5
    for case in range(256):
        used = tris[case, :counts[case]]
        assert (tris[case, counts[case]:] == -1).all()
        assert ((used >= 0) & (used < 12)).all()
        assert all(len(set(t)) == 3 for t in used.tolist())
        # a triangle's edges are crossed edges: one end above the level, the other not
        for e in set(used.ravel().tolist()):
            a, b = EDGES[e]
            assert ((case >> a) & 1) != ((case >> b) & 1)


@pytest.mark.parametrize("smooth", [2.5, 1.2])
def test_same_mesh_as_scikit_image_classic_method_and_closed(smooth):
    g = _field(smooth=smooth)
    v, f, n, _ = sk_marching_cubes(g, 0.3, gradient_direction="ascent", allow_degenerate=False, method="lorensen")
    V, F, N = (a.numpy() for a in marching_cubes(torch.from_numpy(g), 0.3))
    assert len(V) == len(v) and len(F) == len(f)
    d, idx = cKDTree(V).query(v)
    assert d.max() < 1e-4  # the same vertices
    assert _area(V, F) == pytest.approx(_area(v, f), rel=1e-5)
    assert _boundary_edges(F) == (0, 0)  # closed and manifold
    assert np.mean(np.sum(n * N[idx], axis=1)) > 0.9  # normals: the same direction (down the density)
    # the winding agrees with the normals as scikit-image's does
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    assert np.mean(np.sum(fn * N[F[:, 0]], axis=1) > 0) > 0.95


def test_default_method_differs_only_in_ambiguous_cubes():
    g = _field(seed=1, smooth=1.2)
    v, f, _, _ = sk_marching_cubes(g, 0.0, gradient_direction="ascent", allow_degenerate=False)  # Lewiner
    V, F, _ = (a.numpy() for a in marching_cubes(torch.from_numpy(g), 0.0))
    assert abs(len(F) - len(f)) < 0.01 * len(f)
    assert _area(V, F) == pytest.approx(_area(v, f), rel=0.01)


def test_slabs_give_the_same_mesh_and_spacing_scales_it():
    g = torch.from_numpy(_field(seed=2))
    V1, F1, _ = marching_cubes(g, 0.2, slab=64)
    V2, F2, _ = marching_cubes(g, 0.2, spacing=0.5, slab=3)
    assert torch.allclose(V1 * 0.5, V2)
    key = lambda F: sorted(map(tuple, np.sort(F.numpy(), axis=1).tolist()))  # noqa: E731
    assert key(F1) == key(F2)


def test_sphere_normals_point_out_and_empty_grid_gives_nothing():
    x = torch.linspace(-1, 1, 33)
    X, Y, Z = torch.meshgrid(x, x, x, indexing="ij")
    dens = 100.0 * (X ** 2 + Y ** 2 + Z ** 2 < 0.5 ** 2).float()  # solid ball: high density inside
    V, F, N = marching_cubes(dens, 10.0, spacing=2.0 / 32)
    centre = torch.tensor([1.0, 1.0, 1.0])
    assert ((V - centre) * N).sum(1).gt(0).float().mean() > 0.99
    assert (V - centre).norm(dim=1).sub(0.5).abs().max() < 2.0 / 32
    V0, F0, N0 = marching_cubes(torch.zeros(5, 6, 7), 1.0)
    assert V0.shape == (0, 3) and F0.shape == (0, 3) and N0.shape == (0, 3)
    with pytest.raises(ValueError, match="every side >= 2"):
        marching_cubes(torch.zeros(1, 4, 4), 0.5)


def test_extract_mesh_backends_agree():
    def density(p):
        return 200.0 * torch.exp(-((p - 0.1).norm(dim=1) / 0.4) ** 4)

    bounds = [[-1, -1, -1], [1, 1, 1]]
    raw = {}
    a = extract_mesh(density, bounds, resolution=48, density_threshold=10.0, mc_backend="skimage",
                     on_raw_mesh=lambda v, f, n: raw.__setitem__("skimage", n))
    b = extract_mesh(density, bounds, resolution=48, density_threshold=10.0, mc_backend="torch",
                     on_raw_mesh=lambda v, f, n: raw.__setitem__("torch", n))
    auto = extract_mesh(density, bounds, resolution=24, density_threshold=10.0)
    assert a.stats["marching_cubes"] == "skimage" and b.stats["marching_cubes"] == "torch"
    assert auto.stats["marching_cubes"] == "skimage"  # on the CPU
    assert abs(b.num_faces - a.num_faces) <= 0.01 * a.num_faces
    d, idx = cKDTree(b.vertices).query(a.vertices)
    assert d.max() < 1e-4
    assert np.mean(np.sum(raw["skimage"] * raw["torch"][idx], axis=1)) > 0.95
    with pytest.raises(ValueError, match="mc_backend"):
        extract_mesh(density, bounds, resolution=16, mc_backend="gpu")


def test_auto_falls_back_to_scikit_image_when_the_gpu_is_full(monkeypatch, caplog):
    import semnerf_ros.engine.mesh as mesh_mod

    def density(p):
        return 200.0 * torch.exp(-((p - 0.1).norm(dim=1) / 0.4) ** 4)

    def full(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(mesh_mod, "_auto_mc_backend", lambda device: "torch")  # as on CUDA
    monkeypatch.setattr(mesh_mod, "torch_marching_cubes", full)
    bounds = [[-1, -1, -1], [1, 1, 1]]
    ref = extract_mesh(density, bounds, resolution=24, density_threshold=10.0, mc_backend="skimage")
    with caplog.at_level("WARNING", logger="semnerf_ros.mesh"):
        m = extract_mesh(density, bounds, resolution=24, density_threshold=10.0)
    assert m.stats["marching_cubes"] == "skimage (GPU out of memory)" and "out of GPU memory" in caplog.text
    assert m.num_faces == ref.num_faces
    with pytest.raises(torch.cuda.OutOfMemoryError):   # asked for by name: the error is the caller's
        extract_mesh(density, bounds, resolution=24, density_threshold=10.0, mc_backend="torch")
