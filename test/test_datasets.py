"""Replica and ScanNet loaders, the shared split / remap / resize helpers, and load_dataset."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from semnerf_ros.datasets import (
    DatasetError,
    SceneData,
    detect_kind,
    load_dataset,
    load_replica,
    load_scannet,
    remap_classes,
    select_frames,
    split_ids,
)
from semnerf_ros.datasets.scannet import NYU40_CLASSES
from semnerf_ros.datasets.scene_data import resize_depth, resize_nearest
from semnerf_ros.datasets.synthetic import make_scene
from semnerf_ros.engine.frame import Frame
from semnerf_ros.engine.geometry import Intrinsics

FRAMES, W, H = 8, 64, 48


@pytest.fixture(scope="module")
def replica_dir(tmp_path_factory) -> Path:
    return make_scene(tmp_path_factory.mktemp("rep") / "scene", FRAMES, W, H, seed=0, progress=False)


# --------------------------------------------------------------------------- helpers

def test_split_matches_the_seed():
    train, test = split_ids(20, 5, 2)
    assert train.tolist() == [0, 5, 10, 15] and test.tolist() == [2, 7, 12, 17]
    train, test = split_ids(16, 5, 2)
    assert train.tolist() == [0, 5, 10, 15] and test.tolist() == [2, 7, 12]  # 17 dropped
    load, tr, te = select_frames(16, 5, 2, 0)
    assert load.tolist() == [0, 2, 5, 7, 10, 12, 15]
    assert load[tr].tolist() == [0, 5, 10, 15] and load[te].tolist() == [2, 7, 12]
    load, tr, te = select_frames(100, 5, 2, 10)  # total_num: first 10 frames only
    assert load.tolist() == [0, 2, 5, 7]
    load, tr, te = select_frames(4, 1, 0, 0)  # every frame, test = train
    assert load.tolist() == [0, 1, 2, 3] and tr.tolist() == te.tolist() == [0, 1, 2, 3]
    with pytest.raises(DatasetError, match="test_offset"):
        split_ids(10, 5, 5)
    with pytest.raises(DatasetError, match="train_step"):
        split_ids(10, 0, 0)


def test_remap_keeps_void_zero():
    raw = np.array([[0, 3, 3], [7, 40, 3]], np.uint16)
    lab, ids = remap_classes(raw)
    assert ids.tolist() == [0, 3, 7, 40]
    assert lab.dtype == np.int32 and np.array_equal(ids[lab], raw)
    lab, ids = remap_classes(np.array([[5, 9]], np.uint8))  # void absent: still id 0
    assert ids.tolist() == [0, 5, 9] and lab.tolist() == [[1, 2]]
    lab, ids = remap_classes(raw, class_ids=[3, 40, 12])  # 7 not listed -> void
    assert ids.tolist() == [0, 3, 40, 12] and lab.tolist() == [[0, 1, 1], [0, 2, 1]]


def test_resize_nearest_and_depth_ignore_invalid():
    lab = np.arange(12, dtype=np.int32).reshape(3, 4) * 7
    for w, h in ((2, 1), (8, 6), (5, 7)):
        out = resize_nearest(lab, w, h)
        assert out.shape == (h, w) and set(np.unique(out)) <= set(np.unique(lab))
    d = np.full((4, 4), 2.0, np.float32)
    d[:, :2] = 0.0  # left half invalid
    out = resize_depth(d, 2, 2)
    assert out[:, 0].tolist() == [0.0, 0.0] and np.allclose(out[:, 1], 2.0)
    d[:, :2] = 4.0
    d[0, 0] = 0.0  # one invalid reading does not drag its block towards 0
    out = resize_depth(d, 2, 2)
    assert np.isclose(out[0, 0], 4.0) and np.isclose(out[0, 1], 2.0)


# --------------------------------------------------------------------------- Replica

def test_replica_reads_back_what_was_written(replica_dir):
    sd = load_replica(replica_dir, width=None, height=None, train_step=1, test_offset=0, progress=False)
    assert isinstance(sd, SceneData) and sd.kind == "replica"
    assert len(sd) == FRAMES and sd.frame_indices.tolist() == list(range(FRAMES))
    info = json.loads((replica_dir / "intrinsics.json").read_text())
    assert sd.intrinsics == Intrinsics.from_dict(info)
    traj = np.loadtxt(replica_dir / "traj_w_c.txt").reshape(-1, 4, 4)
    assert sd.poses.dtype == np.float64 and np.array_equal(sd.poses, traj)
    assert sd.rgb.dtype == np.uint8 and sd.labels.dtype == np.int32 and sd.depth.dtype == np.float32
    assert sd.instances.dtype == np.int32
    for i in range(FRAMES):
        bgr = cv2.imread(str(replica_dir / "rgb" / f"rgb_{i}.png"))
        assert np.array_equal(sd.rgb[i], bgr[:, :, ::-1])
        d = cv2.imread(str(replica_dir / "depth" / f"depth_{i}.png"), cv2.IMREAD_UNCHANGED)
        assert np.allclose(sd.depth[i], d / 1000.0, atol=1e-6)
        s = cv2.imread(str(replica_dir / "semantic_class" / f"semantic_class_{i}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(sd.class_ids_original[sd.labels[i]], s)
        ins = cv2.imread(str(replica_dir / "semantic_instance" / f"semantic_instance_{i}.png"),
                         cv2.IMREAD_UNCHANGED)
        assert np.array_equal(sd.instances[i], ins)
    # names come from intrinsics.json, indexed by the remapped ids
    assert sd.class_names[0] == "void"
    assert sd.class_names == [info["class_names"][k] for k in sd.class_ids_original]
    assert sd.num_classes == len(sd.class_ids_original) == int(sd.labels.max()) + 1
    assert sd.meta["instance_to_class"][int(sd.instances.max())] >= 0


def test_replica_split_and_frames(replica_dir):
    sd = load_dataset(replica_dir, width=W, height=H, train_step=5, test_offset=2, progress=False)
    assert sd.frame_indices.tolist() == [0, 2, 5, 7]
    assert sd.frame_indices[sd.train_ids].tolist() == [0, 5]
    assert sd.frame_indices[sd.test_ids].tolist() == [2, 7]
    f = sd.frame(2)
    assert isinstance(f, Frame) and f.index == 5 and f.stamp == pytest.approx(5 / 30.0)
    f.validate(sd.num_classes)
    assert f.depth is not None and f.labels is not None
    with pytest.raises(IndexError):
        sd.frame(4)


def test_replica_resize_scales_intrinsics_and_keeps_label_set(replica_dir):
    full = load_replica(replica_dir, width=None, height=None, train_step=1, test_offset=0, progress=False)
    for w, h in ((32, 24), (96, 72)):
        sd = load_replica(replica_dir, width=w, height=h, train_step=1, test_offset=0, progress=False)
        assert sd.rgb.shape == (FRAMES, h, w, 3) and sd.labels.shape == (FRAMES, h, w)
        assert sd.depth.shape == (FRAMES, h, w) and sd.instances.shape == (FRAMES, h, w)
        assert sd.intrinsics == full.intrinsics.resized(w, h)
        assert sd.intrinsics.fx == pytest.approx(full.intrinsics.fx * w / W)
        orig = set(full.class_ids_original[full.labels].ravel().tolist())
        assert set(sd.class_ids_original[sd.labels].ravel().tolist()) <= orig
        assert set(np.unique(sd.instances).tolist()) <= set(np.unique(full.instances).tolist())
        assert np.all(sd.depth > 0)  # closed room: no invalid depth created by resizing


def test_replica_without_intrinsics_uses_hfov_90(replica_dir, tmp_path):
    copy = tmp_path / "noint"
    shutil.copytree(replica_dir, copy)
    (copy / "intrinsics.json").unlink()
    shutil.rmtree(copy / "semantic_instance")
    sd = load_replica(copy, width=W, height=H, train_step=1, test_offset=0, progress=False)
    assert sd.intrinsics == Intrinsics.from_hfov(W, H, 90.0)
    assert sd.instances is None
    assert sd.class_names[1].startswith("class_")


def test_replica_errors_name_the_problem(replica_dir, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_replica(tmp_path / "nope")
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="cannot tell the dataset layout"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        load_dataset(replica_dir, kind="kitti")

    broken = tmp_path / "broken"
    shutil.copytree(replica_dir, broken)
    (broken / "depth" / "depth_3.png").unlink()
    with pytest.raises(DatasetError, match=r"depth/ does not match rgb/.*missing frames \[3\]"):
        load_replica(broken, progress=False)

    short = tmp_path / "short"
    shutil.copytree(replica_dir, short)
    lines = (short / "traj_w_c.txt").read_text().splitlines()
    (short / "traj_w_c.txt").write_text("\n".join(lines[:5]) + "\n")
    with pytest.raises(DatasetError, match="5 poses"):
        load_replica(short, progress=False)

    bad = tmp_path / "bad"
    shutil.copytree(replica_dir, bad)
    (bad / "traj_w_c.txt").write_text("1 2 3\n")
    with pytest.raises(DatasetError, match="16 numbers"):
        load_replica(bad, progress=False)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(replica_dir, corrupt)
    (corrupt / "rgb" / "rgb_5.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="rgb_5.png"):
        load_replica(corrupt, train_step=1, test_offset=0, progress=False)


# --------------------------------------------------------------------------- ScanNet

def _write_scannet(root: Path, n=6, bad_pose=2, depth_cx_shift=0.0) -> dict:
    """A tiny ScanNet export: colour 80x60, depth 40x30 (own intrinsics), ScanNet label ids."""
    for sub in ("color", "depth", "pose", "label-filt", "instance-filt", "intrinsic"):
        (root / sub).mkdir(parents=True)
    kc = np.array([[70.0, 0, 39.5], [0, 70.0, 29.5], [0, 0, 1]])
    kd = np.array([[35.0, 0, 19.5 + depth_cx_shift], [0, 35.0, 14.5], [0, 0, 1]])
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", np.pad(kc, ((0, 1), (0, 1))) + np.diag([0, 0, 0, 1]))
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", np.pad(kd, ((0, 1), (0, 1))) + np.diag([0, 0, 0, 1]))
    rng = np.random.default_rng(0)
    poses = {}
    for i in range(n):
        img = np.zeros((60, 80, 3), np.uint8)
        img[:, :40] = (200, 30, 30)
        img[:, 40:] = (30, 30, 200)
        cv2.imwrite(str(root / "color" / f"{i}.jpg"), img[:, :, ::-1])
        ud = np.arange(40)
        depth_mm = np.tile(1000 + 10 * ud, (30, 1)).astype(np.uint16)  # encodes the depth column
        depth_mm[0, 0] = 0  # an invalid reading
        cv2.imwrite(str(root / "depth" / f"{i}.png"), depth_mm)
        lab = np.zeros((60, 80), np.uint16)
        lab[:, :40] = 1      # ScanNet id 1 (wall) -> NYU40 1
        lab[:30, 40:] = 2    # ScanNet id 2 (chair) -> NYU40 5
        lab[30:, 40:] = 22   # ScanNet id 22 (books) -> NYU40 23
        cv2.imwrite(str(root / "label-filt" / f"{i}.png"), lab)
        cv2.imwrite(str(root / "instance-filt" / f"{i}.png"), (lab > 0).astype(np.uint8) * (i + 1))
        T = np.eye(4)
        T[:3, 3] = rng.normal(size=3)
        if i == bad_pose:
            T[:] = -np.inf
        np.savetxt(root / "pose" / f"{i}.txt", T)
        poses[i] = T
    tsv = root.parent / "scannetv2-labels.combined.tsv"
    tsv.write_text("id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\n"
                   "1\twall\twall\t100\t1\t12\twall\n"
                   "2\tchair\tchair\t50\t5\t4\tchair\n"
                   "22\tbook\tbooks\t10\t23\t2\tbooks\n")
    return {"poses": poses, "kc": kc, "kd": kd}


def test_scannet_loader_skips_invalid_poses_and_maps_nyu40(tmp_path):
    root = tmp_path / "scans" / "scene0000_00"
    truth = _write_scannet(root)
    assert detect_kind(root) == "scannet"
    with pytest.warns(UserWarning, match="non-finite"):
        sd = load_dataset(root, width=40, height=30, train_step=1, test_offset=0, progress=False)
    assert sd.kind == "scannet" and sd.frame_indices.tolist() == [0, 1, 3, 4, 5]  # frame 2 skipped
    assert sd.meta["skipped_invalid_poses"] == 1
    for k, idx in enumerate(sd.frame_indices):
        assert np.array_equal(sd.poses[k], truth["poses"][int(idx)])
    assert sd.class_ids_original.tolist() == [0, 1, 5, 23]
    assert sd.class_names == [NYU40_CLASSES[i] for i in sd.class_ids_original]
    assert "chair" in sd.class_names and "books" in sd.class_names and sd.class_names[0] == "void"
    assert sd.intrinsics == Intrinsics.from_K(truth["kc"], 80, 60).resized(40, 30)
    assert sd.rgb.shape == (5, 30, 40, 3) and sd.rgb[0, 10, 5, 0] > 150  # RGB order, not BGR
    # same field of view: the plain resize path; depth column encodes itself
    assert sd.depth.shape == (5, 30, 40) and sd.depth.dtype == np.float32
    assert np.isclose(sd.depth[0, 10, 20], (1000 + 10 * 20) / 1000.0, atol=1e-3)
    assert sd.instances is not None and sd.instances.shape == (5, 30, 40)
    lab = sd.class_ids_original[sd.labels[0]]
    assert lab[5, 5] == 1 and lab[5, 35] == 5 and lab[25, 35] == 23
    # the seed's split over valid frames
    with pytest.warns(UserWarning, match="non-finite"):
        sd = load_scannet(root, width=40, height=30, sample_step=2, test_offset=1, progress=False)
    assert sd.frame_indices[sd.train_ids].tolist() == [0, 3, 5] and sd.frame_indices[sd.test_ids].tolist() == [1, 4]


def test_scannet_depth_with_its_own_intrinsics(tmp_path):
    root = tmp_path / "scene0001_00"
    truth = _write_scannet(root, bad_pose=-1, depth_cx_shift=6.0)
    sd = load_scannet(root, width=80, height=60, train_step=1, test_offset=0, label_mode="raw",
                      progress=False)
    assert sd.class_ids_original.tolist() == [0, 1, 2, 22]  # raw ids kept
    kd, intr = truth["kd"], sd.intrinsics
    for u in (10, 40, 60):  # bilinear lookup at the reprojected depth column
        ud = kd[0, 0] * (u - intr.cx) / intr.fx + kd[0, 2]
        assert np.isclose(sd.depth[0, 30, u], (1000 + 10 * ud) / 1000.0, atol=1e-3)
    assert sd.depth[0, 30, 79] == 0.0  # beyond the depth camera's view: invalid


def test_scannet_seed_layout_and_errors(tmp_path):
    root = tmp_path / "scene0002_00"
    _write_scannet(root / "renders", bad_pose=-1)
    (root / "scene0002_00_2d-label-filt").mkdir()
    shutil.move(str(root / "renders" / "label-filt"), str(root / "scene0002_00_2d-label-filt" / "label-filt"))
    shutil.rmtree(root / "renders" / "intrinsic")
    (root / "scene0002_00.txt").write_text(
        "colorHeight = 60\ncolorWidth = 80\nfx_color = 70.0\nfy_color = 70.0\nmx_color = 39.5\n"
        "my_color = 29.5\nfx_depth = 35.0\nfy_depth = 35.0\nmx_depth = 19.5\nmy_depth = 14.5\n")
    sd = load_dataset(root, kind="scannet", width=40, height=30, train_step=1, test_offset=0,
                      label_mode="nyu13", progress=False)
    assert len(sd) == 6 and sd.intrinsics.fx == pytest.approx(35.0)
    assert sd.class_ids_original.tolist() == [0, 2, 4, 12]  # eigen13 ids of books, chair, wall
    assert sd.class_names == ["void", "books", "chair", "wall"]

    (root / "renders" / "pose" / "4.txt").unlink()
    with pytest.raises(DatasetError, match="no pose file"):
        load_scannet(root, progress=False)
    with pytest.raises(DatasetError, match="label_mode"):
        load_scannet(root, label_mode="nyu99", progress=False)
    other = tmp_path / "scene0003_00"
    _write_scannet(other, bad_pose=-1)
    (tmp_path / "scannetv2-labels.combined.tsv").unlink()
    with pytest.raises(DatasetError, match="scannetv2-labels.combined.tsv"):
        load_scannet(other, label_mode="nyu40", progress=False)
    with pytest.warns(UserWarning, match="raw ScanNet ids"):
        load_scannet(other, width=40, height=30, progress=False)
