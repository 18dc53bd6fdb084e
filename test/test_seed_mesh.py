"""semnerf-mesh as the seed's extract_colour_mesh.py (issue 18, gap 5): the grid over a ground-truth
mesh's oriented box (--mesh_dir), the seed's iso-level and 400-face cleaning under --protocol seed,
full-ray colouring along vertex normals (--use_vertex_normal), the uncoloured mesh_canonical.ply."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from semnerf_ros.cli import mesh as mesh_cli
from semnerf_ros.engine.mesh import (
    SEED_MIN_COMPONENT_FACES,
    extract_mesh,
    oriented_box,
    read_mesh,
    seed_box_bounds,
    seed_density_threshold,
    vertex_normals,
)
from semnerf_ros.io.ply import write_ply

CENTRE = np.array([0.3, -0.2, 0.5])
R = 0.5


def sphere_density(points):
    c = torch.as_tensor(CENTRE, dtype=points.dtype, device=points.device)
    return torch.relu(10.0 + 200.0 * (R - (points - c).norm(dim=-1)))


def box_mesh(T: np.ndarray, extents) -> tuple:
    """The 8 corners and 12 triangles of a box of ``extents`` placed by ``T``."""
    half = np.asarray(extents) / 2
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * half
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return corners @ T[:3, :3].T + T[:3, 3], faces


def rotated_pose() -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    T[:3, 3] = CENTRE
    return T


def test_the_seeds_iso_level():
    # occupancy 0.45 at delta (10 - 0.1) / 128: sigma = -ln(0.55) / 0.0773 = 7.73 /m
    assert seed_density_threshold((0.1, 10.0), 128) == pytest.approx(-math.log(0.55) / (9.9 / 128))
    assert seed_density_threshold((0.1, 10.0), 128) == pytest.approx(7.73, abs=0.01)


def test_oriented_box_of_a_ground_truth_mesh(tmp_path):
    T = rotated_pose()
    v, f = box_mesh(T, [3.0, 2.0, 1.0])
    write_ply(tmp_path / "mesh.ply", v, f)
    T_box, ext = oriented_box(tmp_path / "mesh.ply")
    assert sorted(ext) == pytest.approx([1.0, 2.0, 3.0], abs=1e-6)
    # every ground-truth vertex is a corner of the recovered box
    local = (v - T_box[:3, 3]) @ T_box[:3, :3]
    np.testing.assert_allclose(np.abs(local), np.broadcast_to(ext / 2, local.shape), atol=1e-6)
    np.testing.assert_allclose(seed_box_bounds(ext), np.stack([-ext / 1.8, ext / 1.8]))


def test_extraction_in_an_oriented_box_gives_world_vertices():
    T = rotated_pose()
    bounds = seed_box_bounds([1.2, 1.2, 1.2])
    raw = {}
    mesh = extract_mesh(sphere_density, bounds, resolution=40, density_threshold=10.0, transform=T,
                        normal_source="faces", on_raw_mesh=lambda v, f, n: raw.update(v=v, f=f, n=n))
    radii = np.linalg.norm(mesh.vertices - CENTRE, axis=1)
    assert np.abs(radii - R).max() < 0.02                      # the sphere where it is, in the world
    np.testing.assert_allclose(raw["n"], vertex_normals(raw["v"], raw["f"]), atol=1e-6)
    outward = np.einsum("ij,ij->i", raw["n"], raw["v"] - CENTRE)
    assert (outward > 0).mean() > 0.99


def test_full_ray_colouring_renders_the_seeds_rays():
    seen = {}

    def render_fn(origins, dirs, near, far):
        seen.update(o=origins.numpy(), d=dirs.numpy(), near=near, far=far)
        n = origins.shape[0]
        logits = torch.zeros(n, 3)
        logits[:, 0] = -1e9
        logits[:, 2] = 1.0
        return torch.full((n, 3), 0.5), logits

    raw = {}
    mesh = extract_mesh(sphere_density, np.stack([CENTRE - 1, CENTRE + 1]), resolution=24, density_threshold=10.0,
                        sample_mode="full_ray", render_fn=render_fn, normal_offset=0.2, normal_source="faces",
                        render_chunk=10 ** 6, on_raw_mesh=lambda v, f, n: raw.update(v=v, n=n))
    assert (seen["near"], seen["far"]) == (0.1, 10.0)
    np.testing.assert_allclose(seen["o"], raw["v"] + 0.2 * raw["n"], atol=1e-5)   # 0.1 * near_t outside
    np.testing.assert_allclose(seen["d"], -raw["n"], atol=1e-6)                     # into the surface
    assert np.all(mesh.vertex_labels == 2) and np.all(mesh.vertex_colors == 128)
    with pytest.raises(ValueError, match="render_fn"):
        extract_mesh(sphere_density, np.stack([CENTRE - 1, CENTRE + 1]), resolution=8, sample_mode="full_ray")


class SeedishMapper:
    """A map for the CLI: the paper's MLPs in its config, the sphere as its field."""

    calls: list = []

    def __init__(self):
        from semnerf_ros.engine.config import make_config

        self.cfg = make_config({})
        self.class_names = ["void", "a", "b"]

    def snapshot_model(self):
        class Model:
            def render_chunked(self, o, d, near, far, chunk):
                return {"rgb": torch.full((o.shape[0], 3), 0.25), "semantic": torch.tensor([[0.0, 1.0]]).expand(
                    o.shape[0], 2)}
        return Model()

    def extract_mesh(self, resolution=256, density_threshold=None, bounds=None, min_component_faces=0,
                     progress=False, **shading):
        SeedishMapper.calls.append(dict(resolution=resolution, density_threshold=density_threshold, bounds=bounds,
                                        min_component_faces=min_component_faces, **shading))
        b = np.stack([CENTRE - 1, CENTRE + 1]) if bounds is None else bounds
        if shading.get("sample_mode") == "full_ray":   # as Mapper.extract_mesh: the map's own renderer
            model = self.snapshot_model()

            def render_fn(o, d, near, far):
                out = model.render_chunked(o, d, near, far, o.shape[0])
                return out["rgb"], torch.nn.functional.pad(out["semantic"], (1, 0), value=float("-inf"))
            shading.setdefault("render_fn", render_fn)
        return extract_mesh(sphere_density, b, resolution, 10.0, min_component_faces=min_component_faces,
                            class_names=self.class_names, **shading)


def test_cli_protocol_seed_settings_names_and_canonical_mesh(tmp_path, monkeypatch, capsys):
    map_file = tmp_path / "checkpoints" / "latest.pt"
    map_file.parent.mkdir()
    map_file.write_bytes(b"map")
    monkeypatch.setattr(mesh_cli, "_load_map", lambda path, device: SeedishMapper())
    v, f = box_mesh(rotated_pose(), [1.2, 1.1, 1.0])
    gt = tmp_path / "Replica" / "room_0"
    gt.mkdir(parents=True)
    write_ply(gt / "mesh.ply", v, f)
    assert mesh_cli.main(["--save_dir", str(tmp_path), "--mesh_dir", str(gt), "--grid_dim", "24", "--sem",
                          "--no-progress"]) == 0
    call = SeedishMapper.calls[-1]
    assert call["density_threshold"] == pytest.approx(seed_density_threshold((0.1, 10.0), 128))
    assert call["min_component_faces"] == SEED_MIN_COMPONENT_FACES
    assert call["sample_mode"] == "full_ray" and call["normal_source"] == "faces"
    assert call["normal_offset"] == pytest.approx(0.2)
    T, ext = oriented_box(gt / "mesh.ply")
    np.testing.assert_allclose(call["transform"], T)
    np.testing.assert_allclose(call["bounds"], seed_box_bounds(ext))
    out = tmp_path / "mesh_reconstruction" / "use_vertex_normal" / "semantic_mesh_canonical_dim24neart_2.0.ply"
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert read_mesh(out).vertex_labels.min() == 2                 # classes from the full rays
    assert (tmp_path / "mesh_reconstruction" / "mesh_canonical.ply").is_file()

    # --protocol semnerf: this package's defaults unless asked; --use_vertex_normal alone switches the colouring
    assert mesh_cli.main(["--map", str(map_file), "--protocol", "semnerf", "--grid_dim", "16", "--no-progress"]) == 0
    call = SeedishMapper.calls[-1]
    assert call["density_threshold"] is None and call["min_component_faces"] == 0 and "sample_mode" not in call
    assert call["normal_offset"] == pytest.approx(0.05)   # rays from 5 cm out, not the seed's 20 cm
    assert (map_file.parent / "mesh_reconstruction" / "colour_mesh_dim16_neart0.5.ply").is_file()
    assert mesh_cli.main(["--map", str(map_file), "--protocol", "semnerf", "--use_vertex_normal", "--grid_dim", "16",
                          "--no-progress", "--output", str(tmp_path / "v.ply")]) == 0
    assert SeedishMapper.calls[-1]["sample_mode"] == "full_ray"
    assert mesh_cli.main(["--map", str(map_file), "--mesh_dir", str(tmp_path / "nowhere")]) == 2
    assert "ground-truth mesh not found" in capsys.readouterr().err
