"""A mesh extracted from a trained map is close to the true surface and labelled right.

The tiny hash field is trained on the analytic box room (24 views with depth and clean labels)
and meshed through ``Mapper.extract_mesh``; ``mesh_eval.mesh_accuracy`` compares it with the
room's exact surface (6 planar faces, one class each), over the whole room and over the part the
views saw (the cameras on their small circle, looking slightly down, never see the ceiling).
"""
import numpy as np
import pytest
import yaml
from boxroom import HALF, NUM_CLASSES, TINY_ENGINE, box_frames

from semnerf_ros.engine.config import make_config
from semnerf_ros.engine.mapper import Mapper
from semnerf_ros.mesh_eval import mesh_accuracy, visible_mask


def box_surface(n=8):
    """(vertices, faces, vertex labels) of the room's 6 faces, each an n x n grid of quads with its
    own vertices, so that every triangle's corners carry its face's class (1 + 2 * axis + side)."""
    verts, faces, labels = [], [], []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for side in (0, 1):
            base = len(verts)
            for i in range(n + 1):
                for j in range(n + 1):
                    p = np.zeros(3)
                    p[axis] = HALF[axis] if side else -HALF[axis]
                    p[u] = -HALF[u] + 2 * HALF[u] * i / n
                    p[v] = -HALF[v] + 2 * HALF[v] * j / n
                    verts.append(p)
                    labels.append(1 + 2 * axis + side)
            for i in range(n):
                for j in range(n):
                    a = base + i * (n + 1) + j
                    faces += [[a, a + 1, a + n + 1], [a + 1, a + n + 2, a + n + 1]]
    return np.array(verts), np.array(faces), np.array(labels)


@pytest.fixture(scope="module")
def trained_map():
    cfg = yaml.safe_load(TINY_ENGINE)
    cfg["mapper"] = {"keyframe_policy": "all"}
    cfg["train"]["wgt_depth"] = 1.0
    m = Mapper(make_config(cfg), NUM_CLASSES, device="cpu")
    frames = box_frames(24, 48, 36)
    for f in frames:
        m.add_frame(f)
    m.step(150)
    return m, frames


@pytest.fixture(scope="module")
def trained_mesh(trained_map):
    m, frames = trained_map
    return m.extract_mesh(resolution=40, density_threshold=10.0), frames


def test_mesh_of_a_trained_map_is_near_the_true_surface_with_the_right_classes(trained_mesh):
    mesh, frames = trained_mesh
    v, f, lab = box_surface()
    seen = lambda p: visible_mask(p, [fr.pose for fr in frames], frames[0].intrinsics,  # noqa: E731
                                  [fr.depth for fr in frames])
    acc = mesh_accuracy(mesh, v, f, lab, n_samples=20000, gt_visible=seen)
    print("\nmesh of the trained box room: " + ", ".join(
        f"{k} {val:.3f}" for k, val in acc.items() if isinstance(val, float)))
    assert mesh.num_faces > 1000 and mesh.class_names[0] == "void"
    # geometry (measured: completion 0.019 m and recall 0.975 over the seen surface; the whole
    # prediction 0.066 m from the surface, 0.68 of it within 5 cm -- floaters of a short run)
    assert acc["completion_m_observed"] < 0.05 and acc["recall@5cm_observed"] > 0.9
    assert acc["accuracy_m"] < 0.12 and acc["precision@5cm"] > 0.5
    assert 0.4 < acc["observed_fraction"] < 0.7
    # semantics (measured 0.949 of the vertices within 5 cm of the surface, 0.96 of the seen ones)
    assert acc["semantic_vertex_accuracy@5cm"] > 0.9
    assert acc["semantic_vertex_accuracy_observed"] > 0.9
    # the classes of the training labels (4 walls and the floor; the ceiling is never in view) and
    # only those are on the mesh; no void vertex
    seen_classes = set(np.unique(np.concatenate([fr.labels.ravel() for fr in frames])).tolist())
    assert seen_classes == {1, 2, 3, 4, 5}
    assert set(np.unique(mesh.vertex_labels).tolist()) == seen_classes


def test_mesh_accuracy_notices_wrong_classes_and_a_shifted_surface(trained_mesh):
    """The figures above can fail: the same mesh with its classes rotated, or moved 0.2 m."""
    mesh, _ = trained_mesh
    v, f, lab = box_surface()
    wrong = type(mesh)(mesh.vertices, mesh.faces, mesh.vertex_colors, mesh.vertex_labels % 6 + 1,
                       mesh.class_names)
    assert mesh_accuracy(wrong, v, f, lab, n_samples=5000)["semantic_vertex_accuracy@5cm"] < 0.3
    moved = type(mesh)(mesh.vertices + np.float32([0.2, 0.0, 0.0]), mesh.faces, mesh.vertex_colors,
                       mesh.vertex_labels, mesh.class_names)
    assert mesh_accuracy(moved, v, f, lab, n_samples=5000)["precision@5cm"] < 0.5


def test_observed_only_removes_floaters_and_keeps_the_seen_surface(trained_map):
    """``extract_mesh(observed_only=True)`` keeps the faces some keyframe saw (on its measured
    depth): the floaters of a short run go, the surface the views saw stays."""
    m, frames = trained_map
    v, f, lab = box_surface()
    seen = lambda p: visible_mask(p, [fr.pose for fr in frames], frames[0].intrinsics,  # noqa: E731
                                  [fr.depth for fr in frames])
    full = mesh_accuracy(m.extract_mesh(resolution=40, density_threshold=10.0), v, f, lab, n_samples=20000,
                         gt_visible=seen)
    mesh = m.extract_mesh(resolution=40, density_threshold=10.0, observed_only=True)
    obs = mesh_accuracy(mesh, v, f, lab, n_samples=20000, gt_visible=seen)
    # measured: precision@5cm 0.668 -> 0.970, accuracy 0.067 -> 0.021 m, observed chamfer 0.043 ->
    # 0.021 m, observed recall 0.970 -> 0.957, semantic vertex accuracy 0.845 -> 0.948
    assert mesh.stats["faces_unobserved_removed"] > 0.2 * (mesh.num_faces + mesh.stats["faces_unobserved_removed"])
    assert obs["precision@5cm"] > 0.95 > full["precision@5cm"]
    assert obs["accuracy_m"] < 0.5 * full["accuracy_m"]
    assert obs["recall@5cm_observed"] > 0.9 and obs["chamfer_m_observed"] < full["chamfer_m_observed"]
    assert obs["semantic_vertex_accuracy"] > full["semantic_vertex_accuracy"]
    # the ceiling, which no view saw, is gone; the walls and the floor stay
    assert set(np.unique(mesh.vertex_labels).tolist()) == {1, 2, 3, 4, 5}
    assert mesh.vertices[:, 2].max() < HALF[2] - 0.05


def test_observed_only_without_depth_judges_keyframes_by_their_rendered_depth(trained_map):
    """Keyframes without depth (RGB-only input) are rendered from the map and judged on that
    depth: the floaters go as with measured depth, where the old rule (the whole frustum,
    ``observed_render_stride=0``) kept everything in view."""
    m, frames = trained_map
    v, f, lab = box_surface()
    seen = lambda p: visible_mask(p, [fr.pose for fr in frames], frames[0].intrinsics,  # noqa: E731
                                  [fr.depth for fr in frames])
    has = m.buffer.has_depth.clone()
    m.buffer.has_depth[:] = False
    try:
        rendered = m.extract_mesh(resolution=40, density_threshold=10.0, observed_only=True)
        frustum = m.extract_mesh(resolution=40, density_threshold=10.0, observed_only=True,
                                 observed_render_stride=0)
    finally:
        m.buffer.has_depth.copy_(has)
    measured = m.extract_mesh(resolution=40, density_threshold=10.0, observed_only=True)
    acc = {name: mesh_accuracy(mesh, v, f, lab, n_samples=20000, gt_visible=seen)
           for name, mesh in (("rendered", rendered), ("frustum", frustum), ("measured", measured))}
    # measured: precision@5cm 0.740 (frustum) -> 0.953 (rendered), 0.974 with measured depth;
    # observed chamfer 0.041 -> 0.022 m (0.020); observed recall 0.963 -> 0.959 (0.963)
    assert rendered.stats["seconds_rendering_keyframe_depths"] > 0
    assert rendered.stats["faces_unobserved_removed"] > frustum.stats["faces_unobserved_removed"]
    assert acc["rendered"]["precision@5cm"] > 0.92 and acc["frustum"]["precision@5cm"] < 0.85
    assert acc["rendered"]["precision@5cm"] > acc["measured"]["precision@5cm"] - 0.05
    assert acc["rendered"]["chamfer_m_observed"] < 0.75 * acc["frustum"]["chamfer_m_observed"]
    assert acc["rendered"]["recall@5cm_observed"] > 0.9


def test_full_ray_colouring_uses_the_maps_own_renderer(trained_map):
    """``sample_mode="full_ray"`` (the seed's colouring) needs no renderer from the caller: the
    Mapper passes its own, so the node, the benchmarks and the CLI all get it."""
    m, frames = trained_map
    mesh = m.extract_mesh(resolution=32, density_threshold=10.0, sample_mode="full_ray", normal_offset=0.2)
    v, f, lab = box_surface()
    seen = lambda p: visible_mask(p, [fr.pose for fr in frames], frames[0].intrinsics,  # noqa: E731
                                  [fr.depth for fr in frames])
    acc = mesh_accuracy(mesh, v, f, lab, n_samples=20000, gt_visible=seen)
    assert mesh.num_faces > 500
    assert acc["semantic_vertex_accuracy_observed"] > 0.8


def test_bench_mesh_variants_are_extracted_as_the_base_mesh(trained_map, tmp_path):
    """bench/mesh.py --observed-only: a shading variant keeps the base extraction's face filter, so the
    two meshes have the same faces and differ only in their labels (the fifth session compared an
    unfiltered variant with a filtered base)."""
    import importlib.util
    import json
    from pathlib import Path

    m, frames = trained_map
    map_path = m.save(tmp_path / "box.map.pt")
    v, f, lab = box_surface()
    intr = frames[0].intrinsics
    np.savez(tmp_path / "box.npz", mesh_vertices=v, mesh_faces=f, mesh_labels=lab,
             intrinsics=np.array([intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height]),
             train_poses=np.stack([fr.pose for fr in frames]), train_depth=np.stack([fr.depth for fr in frames]))
    spec = importlib.util.spec_from_file_location(
        "bench_mesh", Path(__file__).resolve().parents[1] / "bench" / "mesh.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "mesh.json"
    assert bench.main(["--map", str(map_path), "--scene-npz", str(tmp_path / "box.npz"), "--resolutions", "24",
                       "--bounds-from-gt", "--observed-only", "--threshold", "10", "--samples", "5000",
                       "--device", "cpu", "--variants", "normal_offset=0.2", "observed_only=0",
                       "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    base, same, unfiltered = r["extractions"][0], r["variants"][0], r["variants"][1]
    assert base["stages"]["faces_unobserved_removed"] > 0
    assert same["faces"] == base["faces"] and same["vertices"] == base["vertices"]
    assert unfiltered["faces"] > base["faces"]
