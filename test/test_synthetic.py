"""The built-in synthetic room (seed 0): determinism, file formats, the pose convention,
and that it stays the room earlier versions made.  The family of other seeds:
test_synthetic_family.py."""
import json
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from semnerf_ros.cli import make_scene as make_scene_cli
from semnerf_ros.datasets import synthetic
from semnerf_ros.engine.geometry import Intrinsics, project_points
from semnerf_ros.io.ply import read_ply

FRAMES, W, H = 8, 64, 48


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return synthetic.make_scene(tmp_path_factory.mktemp("syn") / "scene", FRAMES, W, H, seed=0,
                                progress=False)


def _all_files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(scene, tmp_path):
    again = synthetic.make_scene(tmp_path / "again", FRAMES, W, H, seed=0, progress=False)
    a, b = _all_files(scene), _all_files(again)
    assert sorted(a) == sorted(b)
    differing = [k for k in a if a[k] != b[k]]
    assert differing == []
    other = synthetic.make_scene(tmp_path / "seed1", FRAMES, W, H, seed=1, progress=False)
    c = _all_files(other)
    assert c["rgb/rgb_0.png"] != a["rgb/rgb_0.png"]  # the seed matters


def test_layout_and_formats(scene):
    for i in range(FRAMES):
        rgb = cv2.imread(str(scene / "rgb" / f"rgb_{i}.png"), cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(str(scene / "depth" / f"depth_{i}.png"), cv2.IMREAD_UNCHANGED)
        sem = cv2.imread(str(scene / "semantic_class" / f"semantic_class_{i}.png"), cv2.IMREAD_UNCHANGED)
        ins = cv2.imread(str(scene / "semantic_instance" / f"semantic_instance_{i}.png"), cv2.IMREAD_UNCHANGED)
        assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
        assert depth.shape == (H, W) and depth.dtype == np.uint16
        assert sem.shape == (H, W) and sem.dtype == np.uint8
        assert ins.shape == (H, W) and ins.dtype == np.uint16
        # a closed room: every pixel hits something, depth in (0.1 m, 10 m)
        assert depth.min() > 100 and depth.max() < 10000
        assert rgb.std() > 10  # textured, not flat
        assert len(np.unique(sem)) >= 4
    traj = np.loadtxt(scene / "traj_w_c.txt")
    assert traj.shape == (FRAMES, 16)
    info = json.loads((scene / "intrinsics.json").read_text())
    for key in ("fx", "fy", "cx", "cy", "width", "height", "hfov", "depth_scale", "class_names",
                "instance_to_class"):
        assert key in info
    assert (info["width"], info["height"]) == (W, H) and info["depth_scale"] == 1000
    assert info["class_names"][0] == "void"
    assert len(info["class_names"]) - 1 >= 12
    assert (scene / synthetic.COMPLETION_MARKER).is_file()
    assert not (scene / ".generating").exists()


def test_class_table_and_instances():
    geom = synthetic.build_room(0)
    classes = set(geom.part_class.tolist()) - {0}
    assert len(classes) >= 12
    assert classes == set(range(1, len(synthetic.CLASS_NAMES)))  # every class is built
    counts = np.bincount(geom.instance_class[1:], minlength=len(synthetic.CLASS_NAMES))
    assert counts[synthetic.CLASS_ID["chair"]] >= 4
    assert counts[synthetic.CLASS_ID["book"]] >= 10
    assert (counts >= 3).sum() >= 3  # several classes with several instances
    # each instance belongs to exactly one class
    for inst in np.unique(geom.part_instance):
        assert len(np.unique(geom.part_class[geom.part_instance == inst])) == 1


def test_instance_images_agree_with_class_images(scene):
    info = json.loads((scene / "intrinsics.json").read_text())
    inst_to_class = {int(k): v for k, v in info["instance_to_class"].items()}
    seen_chairs = set()
    for i in range(FRAMES):
        sem = cv2.imread(str(scene / "semantic_class" / f"semantic_class_{i}.png"), cv2.IMREAD_UNCHANGED)
        ins = cv2.imread(str(scene / "semantic_instance" / f"semantic_instance_{i}.png"), cv2.IMREAD_UNCHANGED)
        lut = np.zeros(ins.max() + 1, np.int64)
        for k, c in inst_to_class.items():
            if k <= ins.max():
                lut[k] = c
        assert np.array_equal(lut[ins], sem)
        seen_chairs |= {k for k in np.unique(ins).tolist() if inst_to_class.get(k) == synthetic.CLASS_ID["chair"]}
    assert len(seen_chairs) >= 3  # several chair instances visible in the tiny sequence


def test_ground_truth_mesh(scene):
    mesh = read_ply(scene / "mesh_gt.ply")
    assert mesh["faces"] is not None and len(mesh["faces"]) > 1000
    assert mesh["labels"] is not None and mesh["colors"] is not None
    labels = set(np.unique(mesh["labels"]).tolist())
    assert labels - {0} == set(range(1, len(synthetic.CLASS_NAMES)))
    v = mesh["vertices"]
    assert v.min(0)[2] >= -0.11 and v.max(0)[2] <= 2.81  # room-scale, metres


def test_camera_path_is_smooth_and_clear():
    poses = synthetic.camera_path(300, 0)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 0.08  # < 8 cm between consecutive frames
    angles = [np.degrees(np.arccos(np.clip((np.trace(poses[k, :3, :3].T @ poses[k + 1, :3, :3]) - 1) / 2, -1, 1)))
              for k in range(299)]
    assert max(angles) < 5.0
    for T in poses:
        R = T[:3, :3]
        assert np.allclose(R.T @ R, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(R), 1.0)
    x, y, z = poses[:, 0, 3], poses[:, 1, 3], poses[:, 2, 3]
    assert np.all(np.abs(x) < 2.5) and np.all(np.abs(y) < 2.0) and np.all((z > 1.1) & (z < 1.8))


def test_pose_convention_projects_mesh_points_onto_depth_and_labels(scene):
    """A ray-cast hit on the ground-truth mesh, projected with geometry.project_points
    into two frames, lands where the depth and class images say it is."""
    import open3d as o3d

    info = json.loads((scene / "intrinsics.json").read_text())
    intr = Intrinsics.from_dict(info)
    poses = np.loadtxt(scene / "traj_w_c.txt").reshape(-1, 4, 4)
    mesh = read_ply(scene / "mesh_gt.ply")
    rc = o3d.t.geometry.RaycastingScene()
    tm = o3d.t.geometry.TriangleMesh()
    tm.vertex.positions = o3d.core.Tensor(mesh["vertices"])
    tm.triangle.indices = o3d.core.Tensor(mesh["faces"])
    rc.add_triangles(tm)
    face_label = mesh["labels"][mesh["faces"][:, 0]]

    def load(i):
        d = cv2.imread(str(scene / "depth" / f"depth_{i}.png"), cv2.IMREAD_UNCHANGED) / 1000.0
        s = cv2.imread(str(scene / "semantic_class" / f"semantic_class_{i}.png"), cv2.IMREAD_UNCHANGED)
        return d, s

    a, b = 0, 1
    # Points: hits of rays through frame a's pixel centres, built from K^-1 here.
    v, u = np.mgrid[0:H:3, 0:W:3]
    u, v = u.ravel().astype(float), v.ravel().astype(float)
    d_cam = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], 1)
    d_world = d_cam @ poses[a][:3, :3].T
    o = np.broadcast_to(poses[a][:3, 3], d_world.shape)
    hit = rc.cast_rays(o3d.core.Tensor(np.concatenate([o, d_world], 1).astype(np.float32)))
    t = hit["t_hit"].numpy()
    assert np.all(np.isfinite(t))
    points = o + t[:, None] * d_world
    cls = face_label[hit["primitive_ids"].numpy().astype(np.int64)]

    # Frame a: exact pixel centres.
    depth_a, sem_a = load(a)
    uv, z = project_points(points, poses[a], intr)
    assert np.allclose(uv, np.stack([u, v], 1), atol=1e-3)
    ui, vi = np.round(uv).astype(int).T
    assert np.allclose(depth_a[vi, ui], z, atol=0.0015)
    assert np.mean(sem_a[vi, ui] == cls) > 0.97

    # Frame b: the points visible there (not occluded, inside the image, away from depth edges).
    depth_b, sem_b = load(b)
    uv, z = project_points(points, poses[b], intr)
    inside = (z > 0.1) & (uv[:, 0] > 0.5) & (uv[:, 0] < W - 1.5) & (uv[:, 1] > 0.5) & (uv[:, 1] < H - 1.5)
    c_b = poses[b][:3, 3]
    to_p = points - c_b
    dist = np.linalg.norm(to_p, axis=1)
    vis = rc.cast_rays(o3d.core.Tensor(np.concatenate(
        [np.broadcast_to(c_b, to_p.shape), to_p / dist[:, None]], 1).astype(np.float32)))["t_hit"].numpy()
    ok = inside & (np.abs(vis - dist) < 1e-3 * (1 + dist))
    assert ok.sum() >= 30, "frames 0 and 1 should share many visible points"
    ui, vi = np.round(uv[ok]).astype(int).T
    patch = np.stack([depth_b[vi + dy, ui + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 1)
    smooth = patch.max(1) - patch.min(1) < 0.15
    assert smooth.sum() >= 20
    err = np.abs(depth_b[vi, ui] - z[ok])[smooth]
    assert np.median(err) < 0.02 and np.mean(err < 0.05) > 0.9
    lab_patch = np.stack([sem_b[vi + dy, ui + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 1)
    interior = smooth & np.all(lab_patch == lab_patch[:, :1], axis=1)  # away from label edges
    assert interior.sum() >= 15
    assert np.mean(sem_b[vi, ui][interior] == cls[ok][interior]) > 0.97

    # The wrong convention (poses taken as world-to-camera) must not fit: far fewer of the points
    # land on a pixel whose depth agrees (points projected outside the image agree with nothing).
    agree_right = int(np.sum(np.abs(depth_b[vi, ui] - z[ok]) < 0.05))
    uv_wrong, z_wrong = project_points(points, np.linalg.inv(poses[b]), intr)
    in_wrong = (z_wrong > 0.1) & (uv_wrong[:, 0] > 0) & (uv_wrong[:, 0] < W - 1) & \
        (uv_wrong[:, 1] > 0) & (uv_wrong[:, 1] < H - 1)
    uw, vw = np.round(uv_wrong[in_wrong]).astype(int).T
    agree_wrong = int(np.sum(np.abs(depth_b[vw, uw] - z_wrong[in_wrong]) < 0.05))
    assert agree_right >= 30 and agree_wrong < 0.25 * agree_right, (agree_right, agree_wrong)


#: scene.json statistics of seed 0 (8 frames, 64x48) as generator v1 wrote them: the demo
#: room must not change when the generator grows (images/labels/depth are byte-identical).
SEED0_V1 = {
    "class_pixel_fraction": {"book": 0.006266, "cabinet": 0.016357, "ceiling": 0.046346, "chair": 0.115763,
                             "cushion": 0.008219, "door": 0.013387, "floor": 0.119181, "lamp": 0.017537,
                             "monitor": 0.001994, "picture": 0.019531, "plant": 0.011434, "rug": 0.089111,
                             "shelf": 0.010417, "sofa": 0.035034, "table": 0.096924, "void": 0.006307,
                             "wall": 0.359782, "window": 0.026408},
    "instances_per_class": {"book": 67, "cabinet": 1, "ceiling": 1, "chair": 7, "cushion": 3, "door": 1, "floor": 1,
                            "lamp": 2, "monitor": 1, "picture": 3, "plant": 3, "rug": 1, "shelf": 1, "sofa": 1,
                            "table": 2, "void": 6, "wall": 4, "window": 2},
    "instances_seen": 94, "max_depth_m": 5.5301, "mean_depth_m": 2.5748, "near_fraction_below_0.4m": 0.001424,
    "hit_fraction": 1.0,
}


def test_seed0_is_the_room_of_generator_v1(scene):
    stats = json.loads((scene / synthetic.COMPLETION_MARKER).read_text())
    for key, want in SEED0_V1.items():
        if isinstance(want, dict):
            assert set(stats[key]) == set(want), key
            for k, v in want.items():
                assert stats[key][k] == pytest.approx(v, abs=2e-6), (key, k)
        else:
            assert stats[key] == pytest.approx(want, abs=2e-4), key
    assert stats["raycaster"] in ("open3d", "torch")
    assert stats["plan"]["kind"] == "single" and len(stats["plan"]["rooms"]) == 1


def test_scene_statistics_are_plausible(scene):
    stats = json.loads((scene / synthetic.COMPLETION_MARKER).read_text())
    assert stats["args"] == {"frames": FRAMES, "width": W, "height": H, "seed": 0}
    assert 1.0 < stats["mean_depth_m"] < 5.0
    assert stats["max_depth_m"] < 10.0
    assert stats["near_fraction_below_0.4m"] < 0.02
    assert stats["hit_fraction"] == 1.0


def test_ensure_scene_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMNERF_CACHE_DIR", str(tmp_path / "cache"))
    first = synthetic.ensure_scene(frames=2, width=32, height=24, seed=3, progress=False)
    assert first == synthetic.default_scene_dir(2, 32, 24, 3)
    assert first.parent == tmp_path / "cache"
    assert synthetic.scene_is_complete(first, 2, 32, 24, 3)
    marker_mtime = (first / synthetic.COMPLETION_MARKER).stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(synthetic.output, "make_scene", lambda *a, **k: calls.append(a))
    assert synthetic.ensure_scene(frames=2, width=32, height=24, seed=3, progress=False) == first
    assert calls == [] and (first / synthetic.COMPLETION_MARKER).stat().st_mtime_ns == marker_mtime
    assert not list((tmp_path / "cache").glob(".*tmp*"))


def test_refuses_foreign_non_empty_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        synthetic.make_scene(tmp_path, 2, 32, 24, progress=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="frames"):
        synthetic.make_scene(tmp_path / "x", 0, 32, 24, progress=False)


def test_cli_writes_scene_and_passes_bag_options(tmp_path, monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("semnerf_ros.bags.writer")
    fake.write_scene_bag = lambda scene_dir, bag_path, **opts: (calls.append((scene_dir, bag_path, opts))
                                                                or {"frames": 2})
    monkeypatch.setitem(sys.modules, "semnerf_ros.bags.writer", fake)
    rc = make_scene_cli.main([str(tmp_path / "s"), "--frames", "2", "--width", "32", "--height", "24",
                         "--quiet", "--bag", str(tmp_path / "b.mcap"), "--noise", "region",
                         "--noise-ratio", "0.3", "--rate", "15", "--bag-format", "sqlite3"])
    assert rc == 0
    assert calls == [(tmp_path / "s", str(tmp_path / "b.mcap"),
                      {"storage": "sqlite3", "noise": "region", "noise_ratio": 0.3, "rate_hz": 15.0,
                       "seed": 0, "progress": False, "pose_source": "topic"})]
    out = capsys.readouterr().out
    assert "chair" in out and "mean depth" in out and "2 frames" in out


def test_cli_writes_a_real_bag(tmp_path):
    rc = make_scene_cli.main([str(tmp_path / "s"), "--frames", "3", "--width", "32", "--height", "24",
                         "--quiet", "--bag", str(tmp_path / "bag"), "--noise", "pixel",
                         "--noise-ratio", "0.2"])
    assert rc == 0
    assert (tmp_path / "bag" / "metadata.yaml").is_file()


def test_cli_bag_without_writer_fails_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "semnerf_ros.bags.writer", None)  # import raises ImportError
    rc = make_scene_cli.main([str(tmp_path / "s"), "--frames", "1", "--width", "16", "--height", "12",
                         "--quiet", "--bag", str(tmp_path / "b.mcap")])
    assert rc == 2
    assert "bags.writer" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # failed before rendering
