"""Semantic mesh: marching cubes on analytic fields, export, RViz chunks, accuracy, CLI."""
import math
import os
import sys

import numpy as np
import pytest
import torch

from semnerf_ros.bridge.markers import marker_chunks
from semnerf_ros.cli import mesh as mesh_cli
from semnerf_ros.engine import mesh as mesh_mod
from semnerf_ros.engine.mesh import (
    MeshExportError,
    NoSurfaceError,
    SemanticMesh,
    decimate,
    extract_mesh,
    read_mesh,
    sigma_from_occupancy,
    write_mesh,
)
from semnerf_ros.mesh_eval import mesh_accuracy

R = 0.5
BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def sphere_density(points, centre=(0.0, 0.0, 0.0), radius=R):
    """Sigma (1/m) equal to the threshold 10 exactly on the sphere, rising inside."""
    c = torch.as_tensor(centre, dtype=points.dtype, device=points.device)
    return torch.relu(10.0 + 200.0 * (radius - (points - c).norm(dim=-1)))


def sign_x_logits(points):
    """Class 1 for x < 0, class 2 for x >= 0; void (0) has the largest logit everywhere."""
    x = points[:, 0]
    return torch.stack([torch.full_like(x, 100.0), -50.0 * x, 50.0 * x], dim=1)


def view_colour(points, viewdirs):
    """RGB encoding the direction the surface is seen from (-viewdir)."""
    return (1.0 - viewdirs) / 2.0


@pytest.fixture(scope="module")
def sphere():
    return extract_mesh(sphere_density, BOX, resolution=64, density_threshold=10.0,
                        semantic_fn=sign_x_logits, color_fn=view_colour,
                        class_names=["void", "left", "right"])


def test_sphere_area_volume_and_orientation(sphere):
    m = sphere
    assert m.vertices.dtype == np.float32 and m.faces.dtype == np.int32
    assert m.vertex_colors.dtype == np.uint8 and m.vertex_labels.dtype == np.int32
    area, vol = m.surface_area(), m.enclosed_volume()
    assert area == pytest.approx(4 * math.pi * R ** 2, rel=0.02)
    assert vol == pytest.approx(4 / 3 * math.pi * R ** 3, rel=0.02)   # positive: faces wind outward
    radii = np.linalg.norm(m.vertices, axis=1)
    assert np.abs(radii - R).max() < 0.1 * m.stats["voxel_size_m"] + 2e-3
    for key in ("seconds_density_grid", "seconds_marching_cubes", "seconds_shading", "seconds_total"):
        assert m.stats[key] >= 0
    assert m.stats["grid_shape"] == [65, 65, 65] and m.stats["voxel_size_m"] == pytest.approx(2 / 64)


@pytest.mark.parametrize("mode", ["ray", "point"])
def test_labels_and_colours_land_on_the_right_vertices(sphere, mode):
    m = sphere if mode == "ray" else extract_mesh(
        sphere_density, BOX, 64, 10.0, sign_x_logits, view_colour, sample_mode="point",
        class_names=["void", "left", "right"])
    x = m.vertices[:, 0]
    away = np.abs(x) > 0.03
    assert np.array_equal(m.vertex_labels[away], np.where(x[away] < 0, 1, 2))
    assert not np.any(m.vertex_labels == 0)                       # void never predicted
    outward = m.vertices / np.linalg.norm(m.vertices, axis=1, keepdims=True)
    expected = (outward + 1.0) / 2.0 * 255.0                     # viewed along -normal
    assert np.abs(m.vertex_colors.astype(float) - expected).max() < 6
    assert np.array_equal(m.semantic_colors(), m.palette[m.vertex_labels])
    assert m.class_names == ["void", "left", "right"]


def test_face_filter_runs_before_shading_and_equals_filtering_after(sphere):
    """``face_filter`` keeps the faces it flags, shading only their vertices: the mesh equals the
    whole mesh cut afterwards, and the shading calls see the kept vertices only."""
    shaded = []

    def counting_colour(points, viewdirs):
        shaded.append(points.shape[0])
        return view_colour(points, viewdirs)

    def upper_half(vertices, faces):
        return (vertices[faces][:, :, 2] > 0.1).all(axis=1)

    cut = extract_mesh(sphere_density, BOX, resolution=64, density_threshold=10.0, semantic_fn=sign_x_logits,
                       color_fn=counting_colour, class_names=["void", "left", "right"], face_filter=upper_half)
    expected = sphere.submesh(upper_half(sphere.vertices, sphere.faces))
    assert 0 < cut.num_faces < sphere.num_faces
    assert cut.stats["faces_filtered_out"] == sphere.num_faces - cut.num_faces
    for a, b in ((cut.vertices, expected.vertices), (cut.faces, expected.faces),
                 (cut.vertex_labels, expected.vertex_labels), (cut.vertex_colors, expected.vertex_colors)):
        assert np.array_equal(a, b)
    assert sum(shaded) <= cut.num_vertices * 32     # ray mode: at most 32 samples a kept vertex
    with pytest.raises(ValueError, match="face_filter returned"):
        extract_mesh(sphere_density, BOX, resolution=32, density_threshold=10.0,
                     face_filter=lambda v, f: np.ones(3, bool))
    empty = extract_mesh(sphere_density, BOX, resolution=32, density_threshold=10.0, allow_empty=True,
                         face_filter=lambda v, f: np.zeros(f.shape[0], bool))
    assert empty.num_faces == 0 and "face filter" in empty.stats["empty_reason"]


def test_transparent_surface_falls_back_to_vertex_query():
    def faint(p):   # crosses the threshold, but a 0.4 m ray through it absorbs < 1e-4
        return 1e-4 * torch.relu(1.0 - p.norm(dim=-1))
    def mixed(p):   # opaque core behind the faint shell where x > 0.2: those rays do absorb
        return faint(p) + (p[:, 0] > 0.2) * 1000.0 * torch.relu(0.45 - p.norm(dim=-1))
    for field, chunk in ((faint, 4096), (mixed, 2 ** 18)):   # all rays empty; some rays empty
        ray = extract_mesh(field, BOX, 24, 5e-5, sign_x_logits, view_colour, chunk=chunk)
        point = extract_mesh(field, BOX, 24, 5e-5, sign_x_logits, view_colour, sample_mode="point")
        assert np.abs(ray.vertex_colors.astype(int) - point.vertex_colors).max() <= 1
        assert np.array_equal(ray.vertex_labels, point.vertex_labels)


def test_isotropic_voxels_bounds_and_chunking():
    bounds = np.array([[-0.7, -0.6, -0.55], [0.9, 0.6, 0.55]])   # longest side 1.6 m
    a = extract_mesh(sphere_density, bounds, resolution=40, chunk=2 ** 18)
    b = extract_mesh(sphere_density, bounds.reshape(-1), resolution=40, chunk=777)
    assert a.stats["voxel_size_m"] == pytest.approx(1.6 / 40)
    assert a.stats["grid_shape"] == [41, 31, 29]
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert np.all(a.vertex_labels == 0) and np.all(a.vertex_colors == 180)   # no heads: void, grey
    assert a.surface_area() == pytest.approx(4 * math.pi * R ** 2, rel=0.03)
    c = extract_mesh(sphere_density, bounds, resolution=40, density_threshold=None)   # None: default 10 /m
    assert np.array_equal(a.vertices, c.vertices)


def test_no_surface_and_bad_arguments():
    with pytest.raises(NoSurfaceError, match="never crosses"):
        extract_mesh(sphere_density, BOX, 16, density_threshold=500.0)
    empty = extract_mesh(sphere_density, BOX, 16, density_threshold=500.0, allow_empty=True)
    assert empty.num_vertices == 0 and empty.num_faces == 0 and "empty_reason" in empty.stats
    assert marker_chunks(empty) == []
    with pytest.raises(ValueError, match="bounds"):
        extract_mesh(sphere_density, [[0, 0, 0], [1, -1, 1]], 16)
    with pytest.raises(ValueError, match="resolution"):
        extract_mesh(sphere_density, BOX, 1)
    with pytest.raises(ValueError, match="class_names"):
        extract_mesh(sphere_density, BOX, 16, semantic_fn=sign_x_logits, class_names=["a", "b"])
    assert sigma_from_occupancy(0.45, 9.9 / 128) == pytest.approx(7.73, abs=0.01)


def test_small_components_removed():
    def two_spheres(p):
        return torch.maximum(sphere_density(p, (-0.3, 0, 0), 0.4), sphere_density(p, (0.7, 0.5, 0.5), 0.12))
    raw = extract_mesh(two_spheres, BOX, 48)
    clean = extract_mesh(two_spheres, BOX, 48, min_component_faces=raw.num_faces // 4)
    assert clean.num_faces < raw.num_faces
    assert np.all(clean.vertices[:, 0] < 0.2)               # only the big sphere remains
    assert clean.enclosed_volume() == pytest.approx(4 / 3 * math.pi * 0.4 ** 3, rel=0.03)
    assert clean.faces.max() == clean.num_vertices - 1      # unreferenced vertices dropped


class TinyField(torch.nn.Module):
    """A small random MLP field (the device of its parameters is inferred)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1 + 4))

    def density(self, p):
        return sphere_density(p) + self.net(p)[:, 0]

    def semantic_logits(self, p):
        return self.net(p)[:, 1:]


def test_module_field_device_inference():
    f = TinyField()
    m = extract_mesh(f.density, BOX, 32, semantic_fn=f.semantic_logits)
    assert m.stats["device"] == "cpu" and m.num_faces > 0
    assert set(np.unique(m.vertex_labels)) <= {1, 2, 3} and len(m.class_names) == 4


def test_write_ply_obj_and_glb(tmp_path, sphere):
    import open3d as o3d
    p = write_mesh(sphere, tmp_path / "m.ply")
    assert p.is_absolute() and p.exists()
    back = read_mesh(p, class_names=sphere.class_names)
    assert np.array_equal(back.vertices, sphere.vertices) and np.array_equal(back.faces, sphere.faces)
    assert np.array_equal(back.vertex_labels, sphere.vertex_labels)
    assert np.array_equal(back.vertex_colors, sphere.vertex_colors)
    ps = write_mesh(sphere, tmp_path / "sem", fmt="ply", semantic_colors=True)
    assert ps.name == "sem.ply"
    o = o3d.io.read_triangle_mesh(str(ps))
    assert np.array_equal(np.round(np.asarray(o.vertex_colors) * 255).astype(np.uint8), sphere.semantic_colors())

    po = write_mesh(sphere, tmp_path / "m.obj")
    o = o3d.io.read_triangle_mesh(str(po))
    assert len(o.vertices) == sphere.num_vertices and len(o.triangles) == sphere.num_faces
    assert np.allclose(np.asarray(o.vertices), sphere.vertices, atol=1e-5)
    assert np.array_equal(np.asarray(o.triangles), sphere.faces)
    assert np.abs(np.asarray(o.vertex_colors) * 255 - sphere.vertex_colors).max() < 0.01

    written = ["m.obj", "m.ply", "sem.ply"]
    if "glb" in mesh_mod._FORMATS:           # glb is advertised: it holds the mesh, or is refused clearly
        try:
            import trimesh  # noqa: F401
        except ImportError:
            with pytest.raises(MeshExportError, match="glb export needs the 'trimesh' package"):
                write_mesh(sphere, tmp_path / "m.glb")
            assert not (tmp_path / "m.glb").exists()
        else:
            pg = write_mesh(sphere, tmp_path / "m.glb", semantic_colors=True)
            pos, tri, col = read_glb(pg)
            np.testing.assert_allclose(pos, sphere.vertices, atol=1e-6)
            np.testing.assert_array_equal(tri, sphere.faces)
            assert col is not None and col.shape == (sphere.num_vertices, 4)
            np.testing.assert_array_equal(col[:, :3], sphere.semantic_colors())
            written.append("m.glb")
    else:
        with pytest.raises(ValueError, match="format"):
            write_mesh(sphere, tmp_path / "m.glb")
    with pytest.raises(ValueError, match="format"):
        write_mesh(sphere, tmp_path / "m.stl")
    with pytest.raises(MeshExportError, match="does not exist"):
        write_mesh(sphere, tmp_path / "missing" / "m.obj")
    assert sorted(os.listdir(tmp_path)) == sorted(written)


def read_glb(path):
    """Positions (N, 3), triangles (M, 3) and vertex colours (N, 4) uint8 (or None) of the first
    mesh primitive of a binary glTF 2.0 file, read with the standard library (12-byte header,
    JSON chunk, BIN chunk, accessors), so the check does not trust the writer's own reader."""
    import json
    import struct

    data = open(path, "rb").read()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    chunks, off = {}, 12
    while off < length:
        size, kind = struct.unpack_from("<I4s", data, off)
        chunks[kind] = data[off + 8: off + 8 + size]
        off += 8 + size
    gltf, blob = json.loads(chunks[b"JSON"]), chunks[b"BIN\x00"]
    dtypes = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
    widths = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}

    def accessor(i):
        acc = gltf["accessors"][i]
        view = gltf["bufferViews"][acc["bufferView"]]
        dt, k = np.dtype(dtypes[acc["componentType"]]), widths[acc["type"]]
        assert view.get("byteStride", dt.itemsize * k) == dt.itemsize * k   # tightly packed
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        return np.frombuffer(blob, dt, acc["count"] * k, start).reshape(acc["count"], k)

    assert len(gltf["meshes"]) == 1 and len(gltf["meshes"][0]["primitives"]) == 1
    prim = gltf["meshes"][0]["primitives"][0]
    assert prim.get("mode", 4) == 4                                  # triangles
    for node in gltf.get("nodes", []):                               # no transform on the mesh
        assert node.get("matrix", np.eye(4).ravel().tolist()) == np.eye(4).ravel().tolist()
    attrs = prim["attributes"]
    colours = accessor(attrs["COLOR_0"]) if "COLOR_0" in attrs else None
    return accessor(attrs["POSITION"]), accessor(prim["indices"]).reshape(-1, 3), colours


def _triangle_keys(points):
    tri = points.reshape(-1, 3, 3)
    return [tuple(map(tuple, t)) for t in tri]


@pytest.mark.parametrize("max_triangles", [1, 7, 1000, 9512, 100000])
def test_marker_chunks_cover_every_triangle_once(sphere, max_triangles):
    if max_triangles == 1:
        small = sphere.submesh(np.arange(sphere.num_faces) < 50)
    else:
        small = sphere
    chunks = marker_chunks(small, max_triangles=max_triangles, semantic_colors=True)
    assert len(chunks) == math.ceil(small.num_faces / max_triangles)
    seen = []
    for pts, cols in chunks:
        assert pts.dtype == np.float32 and cols.dtype == np.float32
        assert pts.shape[1] == 3 and cols.shape == (pts.shape[0], 4) and pts.shape[0] % 3 == 0
        assert 0 < pts.shape[0] // 3 <= max_triangles
        assert np.all(cols[:, 3] == 1.0) and cols.min() >= 0 and cols.max() <= 1
        seen += _triangle_keys(pts)
    expected = _triangle_keys(small.vertices[small.faces.reshape(-1)])
    assert sorted(seen) == sorted(expected) and len(set(seen)) == len(seen)
    pts, cols = chunks[0]
    first = small.faces[0]
    assert np.allclose(cols[:3, :3] * 255, small.semantic_colors()[first])


@pytest.mark.parametrize("use_open3d", [True, False])
def test_marker_decimation(sphere, monkeypatch, use_open3d):
    if use_open3d:
        import open3d  # noqa: F401
    else:
        monkeypatch.setitem(sys.modules, "open3d", None)   # import open3d -> ImportError
    chunks = marker_chunks(sphere, max_triangles=500, decimate_to=2000)
    n = sum(p.shape[0] // 3 for p, _ in chunks)
    assert 500 <= n <= 2000
    if not use_open3d:
        with pytest.raises(ImportError, match="open3d"):
            marker_chunks(sphere, decimate_to=2000, decimation="quadric")
    else:
        fast = marker_chunks(sphere, max_triangles=5000, decimate_to=2000, decimation="cluster")
        assert 500 <= sum(p.shape[0] // 3 for p, _ in fast) <= 2000
    pts = np.concatenate([p for p, _ in chunks])
    assert np.abs(np.linalg.norm(pts, axis=1) - R).max() < 0.05      # still the sphere
    cols = np.round(np.concatenate([c for _, c in chunks])[:, :3] * 255).astype(np.uint8)
    pal = {tuple(c) for c in sphere.palette[1:3]}
    assert {tuple(c) for c in cols} <= pal                           # crisp class colours


@pytest.mark.parametrize("target", [2000, 500, 50])
def test_cluster_decimation_with_torch_equals_the_numpy_reference(sphere, target):
    """decimate(method='cluster') runs with torch (on the field's device in the node); it must give
    what the NumPy reference gives: the same cells grown the same way, the same vertices, faces and
    source vertices, at targets that need one, a few and many growth steps."""
    from semnerf_ros.engine.mesh import _cluster_decimate, _cluster_decimate_torch

    v = sphere.vertices.astype(np.float64)
    ref = _cluster_decimate(v, sphere.faces, target)
    got = _cluster_decimate_torch(sphere.vertices, sphere.faces, target, "cpu")
    assert 0 < ref[1].shape[0] <= target
    assert np.array_equal(ref[1], got[1]) and np.array_equal(ref[2], got[2])
    assert np.allclose(ref[0], got[0], atol=1e-6)
    dec = decimate(sphere, target, method="cluster")
    assert np.array_equal(dec.faces, ref[1]) and np.array_equal(dec.vertex_labels, sphere.vertex_labels[ref[2]])


def _plane(size=1.0, n=21, z=0.0):
    g = np.linspace(0, size, n)
    X, Y = np.meshgrid(g, g, indexing="ij")
    v = np.stack([X.ravel(), Y.ravel(), np.full(X.size, z)], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    labels = np.where(v[:, 0] < size / 2, 3, 5)
    return v, f, labels


def test_mesh_accuracy_self_and_shifted():
    v, f, lab = _plane()
    pred = SemanticMesh(v, f, np.zeros((len(v), 3)), lab, ["void"] + [f"c{i}" for i in range(1, 6)])
    rng = np.random.default_rng(1)
    same = mesh_accuracy(pred, v, f, lab, n_samples=50000, rng=rng)
    assert same["accuracy_m"] < 0.005 and same["completion_m"] < 0.005 and same["chamfer_m"] < 0.005
    assert same["precision@5cm"] == 1.0 and same["recall@5cm"] == 1.0
    assert same["semantic_vertex_accuracy"] == 1.0
    shift = 0.03
    moved = SemanticMesh(v + [0, 0, shift], f, pred.vertex_colors, lab, pred.class_names)
    off = mesh_accuracy(moved, v, f, lab, n_samples=50000, rng=rng)
    assert off["accuracy_m"] == pytest.approx(shift, abs=0.002)
    assert off["completion_m"] == pytest.approx(shift, abs=0.002)
    assert off["semantic_vertex_accuracy"] > 0.9
    # a finer prediction: its vertices lie between GT vertices and carry the nearest GT vertex's label
    fv, ff, _ = _plane(n=101)
    from scipy.spatial import cKDTree
    flab = lab[cKDTree(v).query(fv)[1]]
    fine = SemanticMesh(fv, ff, np.zeros((len(fv), 3)), flab, pred.class_names)
    assert mesh_accuracy(fine, v, f, lab, n_samples=50000, rng=rng)["semantic_vertex_accuracy"] > 0.995
    wrong = SemanticMesh(v, f, pred.vertex_colors, np.where(lab == 3, 5, 3), pred.class_names)
    assert mesh_accuracy(wrong, v, f, lab, n_samples=20000, rng=rng)["semantic_vertex_accuracy"] == 0.0
    far = mesh_accuracy(SemanticMesh(v + [0, 0, 0.2], f, pred.vertex_colors, lab, pred.class_names),
                        v, f, lab, n_samples=20000, rng=rng)
    assert far["precision@5cm"] == 0.0 and far["recall@5cm"] == 0.0


class FakeMapper:
    """Stands in for semnerf_ros.engine.mapper.Mapper: the CLI only needs load + extract_mesh."""

    calls = []

    def extract_mesh(self, resolution=256, density_threshold=None, bounds=None, **kwargs):
        self.calls.append(dict(resolution=resolution, density_threshold=density_threshold, bounds=bounds, **kwargs))
        return extract_mesh(sphere_density, BOX if bounds is None else bounds, resolution,
                            10.0 if density_threshold is None else density_threshold,
                            semantic_fn=sign_x_logits, color_fn=view_colour, **kwargs)


def test_cli(tmp_path, monkeypatch, capsys):
    map_file = tmp_path / "map.pt"
    map_file.write_bytes(b"fake")
    loaded = []

    def fake_load(path, device):
        if path.endswith("bad.pt"):
            raise ValueError("not a semnerf map")
        loaded.append((path, device))
        return FakeMapper()

    monkeypatch.setattr(mesh_cli, "_load_map", fake_load)
    rc = mesh_cli.main(["--map", str(map_file), "--sem", "--resolution", "32", "--clean", "--device", "cpu",
                        "--no-progress"])
    assert rc == 0
    out = tmp_path / "mesh_reconstruction" / "semantic_mesh_dim32_neart0.5.ply"
    assert out.exists() and str(out) in capsys.readouterr().out
    assert loaded == [(str(map_file), "cpu")]
    call = FakeMapper.calls[-1]
    assert call["resolution"] == 32 and call["min_component_faces"] == 400
    assert call["normal_offset"] == pytest.approx(0.05)   # this package's default (the seed's 0.2: --near_t 2)
    back = read_mesh(out)
    assert set(np.unique(back.vertex_labels)) == {1, 2}

    rc = mesh_cli.main(["--map", str(map_file), "--output", str(tmp_path / "o.obj"), "--resolution", "24",
                        "--bounds", "-1", "-1", "-1", "1", "1", "1", "--threshold", "10"])
    assert rc == 0 and (tmp_path / "o.obj").exists()
    assert np.allclose(FakeMapper.calls[-1]["bounds"], BOX)

    (tmp_path / "bad.pt").write_bytes(b"junk")
    cases = [
        (["--map", str(tmp_path / "missing.pt")], 2, "not found"),
        (["--map", str(tmp_path / "bad.pt")], 2, "cannot load map"),
        (["--map", str(map_file), "--bounds", "1", "0", "0", "0", "1", "1"], 2, "bounds"),
        (["--map", str(map_file), "--resolution", "abc"], 2, "invalid int"),
        (["--map", str(map_file), "--output", str(tmp_path / "x.ply"), "--format", "obj"], 2, "extension"),
        (["--map", str(map_file), "--resolution", "16", "--threshold", "1e6"], 1, "never crosses"),
        (["--map", str(map_file), "--resolution", "16", "--output", str(tmp_path / "nodir" / "m.ply")], 1,
         "does not exist"),
    ]
    for argv, code, msg in cases:
        capsys.readouterr()
        assert mesh_cli.main(argv) == code, argv
        assert msg in capsys.readouterr().err
