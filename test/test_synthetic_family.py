"""The family of synthetic houses (seeds != 0): floor plans, furniture, the scan path,
windows and doors open to the outside, the torch ray caster, and generation without
Open3D (the GPU machine has none)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semnerf_ros.cli import make_scene as make_scene_cli
from semnerf_ros.datasets import synthetic
from semnerf_ros.datasets.synthetic import plan as plan_mod
from semnerf_ros.datasets.synthetic.trajectory import CLEARANCE, FreeSpace
from semnerf_ros.engine.geometry import Intrinsics

SEEDS = [1, 2, 4, 9, 13, 30, 46, 92]   # single, two, three rooms and corridors; 30/46/92 once had blocked rooms


@pytest.fixture(scope="module")
def houses():
    return {s: synthetic.build_room(s) for s in SEEDS}


def test_plans_vary_in_kind_size_and_rooms():
    kinds, counts, sizes = set(), set(), []
    for seed in range(1, 41):
        p = plan_mod.make_plan(np.random.default_rng([seed, 13]))
        kinds.add(p.kind)
        counts.add(len(p.rooms))
        for r in p.rooms:
            if r.kind == "corridor":
                assert 1.4 <= min(r.width, r.depth) <= 2.0
            else:
                sizes += [r.width, r.depth]
        extent = p.bounds()[1] - p.bounds()[0]
        assert extent.max() <= plan_mod.MAX_EXTENT + 1e-6
    assert kinds == {"single", "two", "three", "corridor"}
    assert {1, 2, 3} <= counts
    assert min(sizes) >= 3.0 - 1e-9 and max(sizes) <= 8.0 + 1e-9
    assert np.percentile(sizes, 10) < 3.8 and np.percentile(sizes, 90) > 5.0   # small and large rooms


def test_houses_are_connected_furnished_and_use_the_17_classes(houses):
    seen = set()
    for seed, g in houses.items():
        plan = g.plan
        classes = set(g.instance_class.tolist()) - {0}
        seen |= classes
        assert len(classes) >= 12, (seed, sorted(classes))
        assert {synthetic.CLASS_ID[c] for c in ("wall", "floor", "ceiling", "window")} <= classes
        assert g.part_class.max() < len(synthetic.CLASS_NAMES)
        # every room reachable through doorways, windows only on outside walls
        for k in range(1, len(plan.rooms)):
            assert plan.neighbours(k), (seed, k)
        for o in plan.openings:
            if o.kind == "window":
                assert any(a - 1e-6 <= o.lo and o.hi <= b + 1e-6 for a, b in plan.exterior_intervals(o.room, o.side))
        assert any(o.kind in ("window", "door") for o in plan.openings)
        assert FreeSpace(plan).blocked_rooms() == set(), seed
    assert seen == set(range(1, len(synthetic.CLASS_NAMES)))
    # the houses differ
    sizes = {len(g.triangles) for g in houses.values()}
    assert len(sizes) == len(houses)


def test_build_is_deterministic():
    a, b = synthetic.build_room(5), synthetic.build_room(5)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.part_class, b.part_class)
    assert np.array_equal(a.part_color1, b.part_color1)
    assert a.plan.to_dict() == b.plan.to_dict()


@pytest.mark.parametrize("seed", SEEDS)
def test_scan_path_visits_every_room_in_free_space(houses, seed):
    g = houses[seed]
    poses = synthetic.camera_path(300, seed, geometry=g)
    rep = synthetic.path_report(poses, g.plan)
    assert rep["rooms_visited"] == list(range(len(g.plan.rooms))), rep
    assert rep["min_clearance_m"] >= CLEARANCE - 0.01, rep          # never in furniture or walls
    assert rep["max_step_m"] < 0.08 and rep["max_rotation_deg"] < 5.0, rep   # handheld, smooth
    assert 0.015 < rep["mean_step_m"]
    lo, hi = rep["height_range_m"]
    assert 1.15 < lo and hi < 1.75
    for T in poses[::37]:
        R = T[:3, :3]
        assert np.allclose(R.T @ R, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(R), 1.0)
    # the path's geometry does not depend on the frame count: fewer frames sample it
    short = synthetic.camera_path(31, seed, geometry=g)
    assert np.allclose(short[0], poses[0]) and np.allclose(short[-1], poses[-1])


def _render(seed, g, frames=300, every=15, size=(64, 48), raycaster="auto"):
    poses = synthetic.camera_path(frames, seed, geometry=g)[::every]
    intr = Intrinsics.from_hfov(size[0], size[1], 90)
    return synthetic.Renderer(g, intr, seed, raycaster=raycaster).render(poses), poses, intr


@pytest.mark.parametrize("seed", [1, 9, 13])
def test_outside_is_void_without_depth_and_no_near_clipping(houses, seed):
    g = houses[seed]
    r, poses, _ = _render(seed, g)
    no_depth = r["depth"] == 0
    assert no_depth.any(), "windows / open doors should show the outside"
    assert np.all(r["labels"][no_depth] == 0) and np.all(r["instances"][no_depth] == 0)
    assert r["rgb"][no_depth].mean() > 60                              # sky / ground colour, not black
    hit = ~no_depth
    assert np.all(r["labels"][hit] < len(synthetic.CLASS_NAMES))
    assert r["depth"][hit].min() > 0.2                                  # nothing near the near plane
    assert np.mean(no_depth) < 0.3
    assert (r["labels"] == synthetic.CLASS_ID["window"]).any()
    # rays cast sideways from every camera centre find no surface within 0.3 m
    caster = synthetic.make_raycaster(g, "auto")
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    dirs = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], 1)
    dirs = np.concatenate([dirs, [[0, 0, 1.0], [0, 0, -1.0]]]).astype(np.float32)
    centres = synthetic.camera_path(300, seed, geometry=g)[:, :3, 3]
    o = np.repeat(centres, len(dirs), 0).astype(np.float32)
    d = np.tile(dirs, (len(centres), 1))
    t, _, _ = caster.cast(o, d)
    assert np.nanmin(np.where(np.isfinite(t), t, np.nan)) > 0.3


@pytest.mark.parametrize("seed", [0, 9])
def test_torch_caster_gives_open3d_hits(houses, seed):
    pytest.importorskip("open3d")
    pytest.importorskip("torch")
    g = houses[seed] if seed in houses else synthetic.build_room(seed)
    a, _, _ = _render(seed, g, frames=30, every=6, raycaster="open3d")
    b, _, _ = _render(seed, g, frames=30, every=6, raycaster="torch")
    assert np.mean(a["labels"] == b["labels"]) >= 0.999
    assert np.mean(a["instances"] == b["instances"]) >= 0.999
    assert np.mean((a["depth"] > 0) == (b["depth"] > 0)) >= 0.999
    both = (a["depth"] > 0) & (b["depth"] > 0) & (a["instances"] == b["instances"])
    assert np.abs(a["depth"] - b["depth"])[both].max() < 1e-4
    assert np.abs(a["rgb"].astype(int) - b["rgb"]).mean() < 1.0


def test_torch_caster_handles_rays_without_a_shared_origin():
    torch = pytest.importorskip("torch")
    g = synthetic.build_room(2)
    caster = synthetic.TorchRayCaster(g, device="cpu")
    rng = np.random.default_rng(0)
    o = rng.uniform(-1, 1, (500, 3)).astype(np.float32) + np.array([0, 0, 1.4], np.float32)
    d = rng.normal(size=(500, 3)).astype(np.float32)
    t, part, n = caster.cast(o, d)
    assert t.shape == (500,) and part.dtype == np.int32 and n.shape == (500, 3)
    hit = np.isfinite(t)
    assert hit.mean() > 0.5 and np.all(part[hit] >= 0) and np.all(part[~hit] == -1)
    assert np.allclose(np.linalg.norm(n[hit], axis=1), 1.0, atol=1e-4)
    if synthetic.open3d_available():
        t2, part2, _ = synthetic.make_raycaster(g, "open3d").cast(o, d)
        assert np.mean(part == part2) > 0.995
        both = hit & np.isfinite(t2) & (part == part2)
        assert np.abs(t[both] - t2[both]).max() < 1e-4
    del torch


def test_generation_without_open3d(tmp_path, monkeypatch):
    """open3d made unimportable: the generator imports, casts with torch, writes the files."""
    pytest.importorskip("torch")
    code = (
        "import sys, json; sys.modules['open3d'] = None\n"
        "import torch; torch.set_num_threads(1)\n"
        "from semnerf_ros.datasets import synthetic\n"
        f"out = synthetic.make_scene({str(tmp_path / 's')!r}, 3, 32, 24, seed=9, progress=False)\n"
        "a = synthetic.scene_arrays(9, frames=10, width=32, height=24)\n"
        "print(json.dumps({'rc': json.loads((out / 'scene.json').read_text())['raycaster'],"
        " 'ra': a['stats']['raycaster'], 'n': len(a['train_rgb']), 'o3d': 'open3d' in sys.modules"
        " and sys.modules['open3d'] is not None}))\n")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res == {"rc": "torch", "ra": "torch", "n": 2, "o3d": False}
    assert (tmp_path / "s" / "mesh_gt.ply").is_file() and len(list((tmp_path / "s" / "rgb").glob("*.png"))) == 3
    # asking for open3d explicitly says what is missing
    monkeypatch.setitem(sys.modules, "open3d", None)
    with pytest.raises(ImportError, match="torch"):
        synthetic.make_raycaster(synthetic.build_room(2), "open3d")
    assert synthetic.make_raycaster(synthetic.build_room(2), "auto").name == "torch"


def test_scene_arrays_equal_the_files(tmp_path):
    from semnerf_ros.datasets import load_dataset

    frames, w, h = 12, 32, 24
    arrays = synthetic.scene_arrays(4, frames=frames, width=w, height=h)
    folder = synthetic.make_scene(tmp_path / "s", frames, w, h, seed=4, progress=False)
    data = load_dataset(folder, width=w, height=h, train_step=5, test_offset=2, progress=False,
                        class_ids=list(range(len(synthetic.CLASS_NAMES))))
    tr, te = data.train_ids, data.test_ids
    assert list(arrays["train_ids"]) == [0, 5, 10] and list(arrays["test_ids"]) == [2, 7]
    for split, ids in (("train", tr), ("test", te)):
        assert np.array_equal(arrays[f"{split}_rgb"], data.rgb[ids])
        assert np.array_equal(arrays[f"{split}_labels"], data.labels[ids])
        assert np.array_equal(arrays[f"{split}_depth"], data.depth[ids])
        assert np.array_equal(arrays[f"{split}_instances"], data.instances[ids])
        assert np.array_equal(arrays[f"{split}_poses"], data.poses[ids])
    assert arrays["intrinsics"] == data.intrinsics
    assert arrays["class_names"] == list(data.class_names) == synthetic.CLASS_NAMES
    assert arrays["train_labels"].dtype == np.int32 and arrays["train_depth"].dtype == np.float32
    from semnerf_ros.io.ply import read_ply

    mesh = read_ply(folder / "mesh_gt.ply")
    assert np.array_equal(arrays["mesh_vertices"], mesh["vertices"])
    assert np.array_equal(arrays["mesh_faces"], mesh["faces"])
    assert np.array_equal(arrays["mesh_labels"], mesh["labels"])
    stats = json.loads((folder / "scene.json").read_text())
    assert arrays["stats"]["plan"] == stats["plan"]
    assert arrays["stats"]["rendered_frames"] == 5


def test_cli_picks_the_ray_caster(tmp_path, capsys):
    pytest.importorskip("torch")
    rc = make_scene_cli.main([str(tmp_path / "s"), "--frames", "2", "--width", "24", "--height", "16", "--seed", "3",
                         "--raycaster", "torch", "--device", "cpu", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ray casting: torch" in out and "house:" in out
    assert json.loads((tmp_path / "s" / "scene.json").read_text())["raycaster"] == "torch"


def test_cli_bag_with_segmentation_noise(tmp_path):
    pytest.importorskip("rosbags")
    from semnerf_ros.bags import reader as bag_reader

    rc = make_scene_cli.main([str(tmp_path / "s"), "--frames", "4", "--width", "32", "--height", "24", "--seed", "9",
                         "--quiet", "--bag", str(tmp_path / "bag"), "--noise", "segmentation",
                         "--noise-strength", "0.4"])
    assert rc == 0
    noise = json.loads(bag_reader.bag_custom_data(tmp_path / "bag")["semnerf.noise"])
    assert noise["model"] == "segmentation" and noise["ratio"] == 0.4
    assert (tmp_path / "bag" / "bag_0.mcap").is_file()
