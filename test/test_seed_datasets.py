"""The seed's datasets on tiny fake scenes in the seed's layouts (issue 18, gap 3): ScanNet with its
sample_step split, NYU40 / NYU13, unknown ids kept, the 4:3 padding; the replica_nyu_cnn dataset;
OpenGL poses (experiment.convention); class names from experiment.scene_file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from semnerf_ros.datasets import (
    NYU13_CLASSES,
    NYU34_CLASSES,
    NYU40_CLASSES,
    OPENGL_TO_OPENCV,
    DatasetError,
    detect_kind,
    frame_count,
    load_dataset,
    load_scannet,
)
from semnerf_ros.datasets.synthetic import make_scene

# ScanNet ids of the fake tsv: id, raw_category, category, count, nyu40id, eigen13id (the columns
# the seed's scannet_utils reads: line[4] and line[5])
TSV = ("id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\n"
       "1\twall\twall\t100\t1\t12\twall\n"
       "2\tchair\tchair\t50\t5\t4\tchair\n"
       "22\tbook\tbooks\t10\t23\t2\tbooks\n")
N_SCANNET = 13
CW, CH = 80, 56          # colour 80x56: the seed pads it to 80x60 (4:3), as 1296x968 -> 1296x972


def write_seed_scannet(root: Path, bad_pose: int = 3) -> Path:
    """A scene as the seed's ScanNet_Dataset reads it: renders/{color,depth,pose}/<N>.*,
    <scene>_2d-label-filt/label-filt/<N>.png, <scene>_2d-instance-filt/instance-filt/<N>.png,
    <scene>.txt (fx_color = ...), scannetv2-labels.combined.tsv in the scene folder."""
    name = root.name
    dirs = {k: root / "renders" / k for k in ("color", "depth", "pose")}
    dirs["label"] = root / f"{name}_2d-label-filt" / "label-filt"
    dirs["instance"] = root / f"{name}_2d-instance-filt" / "instance-filt"
    for d in dirs.values():
        d.mkdir(parents=True)
    for i in range(N_SCANNET):
        img = np.full((CH, CW, 3), 200, np.uint8)
        cv2.imwrite(str(dirs["color"] / f"{i}.jpg"), img)
        cv2.imwrite(str(dirs["depth"] / f"{i}.png"), np.full((30, 40), 1500, np.uint16))
        lab = np.zeros((CH, CW), np.uint16)
        lab[:, :30] = 1          # wall
        lab[:, 30:50] = 2        # chair
        lab[:, 50:70] = 22       # books
        lab[:, 70:] = 999        # an id the tsv does not list
        cv2.imwrite(str(dirs["label"] / f"{i}.png"), lab)
        cv2.imwrite(str(dirs["instance"] / f"{i}.png"), (lab > 0).astype(np.uint16))
        T = np.eye(4)
        T[0, 3] = 0.1 * i
        if i == bad_pose:
            T[:] = -np.inf
        np.savetxt(dirs["pose"] / f"{i}.txt", T)
    (root / f"{name}.txt").write_text(
        f"colorHeight = {CH}\ncolorWidth = {CW}\nfx_color = 60.0\nfy_color = 60.0\nmx_color = 39.5\n"
        f"my_color = 27.5\ndepthHeight = 30\ndepthWidth = 40\nfx_depth = 30.0\nfy_depth = 30.0\n"
        f"mx_depth = 19.5\nmy_depth = 14.5\n")
    (root / "scannetv2-labels.combined.tsv").write_text(TSV)
    return root


@pytest.fixture(scope="module")
def scannet(tmp_path_factory) -> Path:
    return write_seed_scannet(tmp_path_factory.mktemp("scans") / "scene0010_00")


def test_scannet_sample_step_split_over_valid_frames(scannet):
    assert detect_kind(scannet) == "scannet" and frame_count(scannet) == N_SCANNET - 1
    with pytest.warns(UserWarning):
        sd = load_scannet(scannet, width=40, height=30, sample_step=4, test_offset=2, progress=False)
    # the seed: valid frames (3 dropped) ranged [::4], test = train + 4 // 2, past the end dropped
    valid = [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert sd.frame_indices[sd.train_ids].tolist() == [valid[0], valid[4], valid[8]]
    assert sd.frame_indices[sd.test_ids].tolist() == [valid[2], valid[6], valid[10]]


def test_scannet_nyu40_and_nyu13_with_unknown_ids_kept(scannet):
    with pytest.warns(UserWarning, match=r"keep their value.*999: "):
        sd = load_scannet(scannet, width=40, height=30, train_step=4, test_offset=2, label_mode="nyu40",
                          progress=False)
    assert sd.class_ids_original.tolist() == [0, 1, 5, 23, 999]      # the seed keeps unknown ids
    assert sd.class_names == ["void", "wall", "chair", "books", "scannet_999"]
    assert NYU40_CLASSES[5] == "chair"
    lab = sd.class_ids_original[sd.labels[0]]
    assert lab[10, 5] == 1 and lab[10, 20] == 5 and lab[10, 30] == 23 and lab[10, 38] == 999
    with pytest.warns(UserWarning, match="999"):
        sd13 = load_scannet(scannet, width=40, height=30, train_step=4, test_offset=2, label_mode="nyu13",
                            progress=False)
    assert sd13.class_ids_original.tolist() == [0, 2, 4, 12, 999]     # eigen13 ids
    assert sd13.class_names[:4] == ["void", NYU13_CLASSES[2], NYU13_CLASSES[4], NYU13_CLASSES[12]]


def test_scannet_padding_to_4_3_as_the_seed(scannet):
    with pytest.warns(UserWarning):
        plain = load_scannet(scannet, width=40, height=30, train_step=4, test_offset=2, progress=False)
    with pytest.warns(UserWarning):
        pad = load_scannet(scannet, width=40, height=30, train_step=4, test_offset=2, pad_to_4_3=True,
                           progress=False)
    assert pad.meta["padded_rows"] == [2, 2]
    # 56 rows padded by 2 + 2 black ones to 60, then halved: the first output row is black
    assert pad.rgb[0, 0].max() == 0 and pad.rgb[0, -1].max() == 0 and pad.rgb[0, 15].min() > 150
    assert plain.rgb[0, 0].min() > 150
    # the seed's intrinsics: cy + 2 for the padding, then scaled by 40 / 80 on both axes
    assert pad.intrinsics.fy == pytest.approx(30.0) and pad.intrinsics.cy == pytest.approx((27.5 + 2 + 0.5) / 2 - 0.5)
    assert plain.intrinsics.fy == pytest.approx(60.0 * 30 / 56)
    # labels are padded with void like the colour images
    assert pad.labels[0, 0].max() == 0 and plain.labels[0, 0].min() > 0


def _replica_nyu(root: Path, frames: int = 10) -> Path:
    make_scene(root, frames, 32, 24, seed=0, progress=False)
    for cnn, gt in (("CNN_semantic_class_nyu13", "semantic_class_nyu13_remap"),
                    ("CNN_semantic_class_nyu34", "semantic_class_nyu40_remap_nyu34")):
        (root / cnn).mkdir(exist_ok=True)
        (root / gt).mkdir(exist_ok=True)
        n_cls = 14 if "13" in cnn else 35
        for i in range(frames):
            truth = np.zeros((24, 32), np.uint8)
            truth[:, :16] = 3
            truth[:, 16:] = n_cls - 1
            cnn_lab = truth.copy()
            cnn_lab[:4] = 1                # the CNN gets the top rows wrong
            cv2.imwrite(str(root / gt / f"semantic_class_{i}.png"), truth)
            cv2.imwrite(str(root / cnn / f"semantic_class_{i}.png"), cnn_lab)
    return root


def test_replica_nyu_cnn_trains_on_the_cnn_and_scores_on_the_truth(tmp_path):
    root = _replica_nyu(tmp_path / "room0")
    assert detect_kind(root) == "replica"           # a Replica folder too; the type is chosen explicitly
    sd = load_dataset(root, kind="replica_nyu_cnn", width=32, height=24, train_step=2, test_offset=1,
                      progress=False)
    assert sd.kind == "replica_nyu_cnn" and sd.meta["nyu_mode"] == "nyu13"
    assert sd.class_names == NYU13_CLASSES and sd.num_classes == 14          # the whole set, as the seed
    assert sd.class_ids_original.tolist() == list(range(14))
    assert np.all(sd.labels[:, :, :16] == 3) and np.all(sd.labels[:, 4:, 16:] == 13)
    assert sd.predicted_labels.shape == sd.labels.shape
    assert np.all(sd.predicted_labels[:, :4] == 1) and np.array_equal(sd.predicted_labels[:, 4:], sd.labels[:, 4:])
    sd34 = load_dataset(root, kind="replica_nyu_cnn", nyu_mode="nyu34", width=32, height=24, progress=False)
    assert sd34.class_names == NYU34_CLASSES and sd34.num_classes == 35 and sd34.labels.max() == 34
    gt = load_dataset(root, kind="replica_nyu_cnn", nyu_mode="gt_nyu13", width=32, height=24, progress=False)
    assert np.array_equal(gt.predicted_labels, gt.labels)
    with pytest.raises(DatasetError, match="nyu_mode"):
        load_dataset(root, kind="replica_nyu_cnn", nyu_mode="nyu40", progress=False)
    shutil.rmtree(root / "CNN_semantic_class_nyu13")
    with pytest.raises(DatasetError, match="CNN_semantic_class_nyu13"):
        load_dataset(root, kind="replica_nyu_cnn", progress=False)


def test_opengl_poses_are_converted_to_opencv(tmp_path):
    root = make_scene(tmp_path / "gl", 6, 32, 24, seed=0, progress=False)
    cv_scene = load_dataset(root, width=32, height=24, train_step=1, test_offset=0, progress=False)
    gl_root = tmp_path / "gl_copy"
    shutil.copytree(root, gl_root)
    gl_poses = cv_scene.poses @ OPENGL_TO_OPENCV          # the same cameras with OpenGL axes
    np.savetxt(gl_root / "traj_w_c.txt", gl_poses.reshape(-1, 16))
    gl_scene = load_dataset(gl_root, width=32, height=24, train_step=1, test_offset=0, convention="opengl",
                            progress=False)
    np.testing.assert_allclose(gl_scene.poses, cv_scene.poses, atol=1e-12)
    # the camera looks down its -z axis in OpenGL: the optical axis (+z here) is the same direction
    np.testing.assert_allclose(gl_scene.poses[:, :3, 2], -gl_poses[:, :3, 2])
    with pytest.raises(DatasetError, match="convention"):
        load_dataset(root, convention="blender", progress=False)


def test_scene_file_names_the_classes_from_info_semantic(tmp_path):
    root = make_scene(tmp_path / "named", 4, 32, 24, seed=0, progress=False)
    habitat = tmp_path / "Replica" / "room_0" / "habitat"
    habitat.mkdir(parents=True)
    classes = [{"id": i, "name": f"replica_class_{i}"} for i in range(1, 101)]
    (habitat / "info_semantic.json").write_text(json.dumps({"classes": classes, "id_to_label": []}))
    sd = load_dataset(root, width=32, height=24, scene_file=str(habitat), progress=False)
    assert sd.class_names[0] == "void"
    assert sd.class_names[1:] == [f"replica_class_{i}" for i in sd.class_ids_original[1:]]
    with pytest.warns(UserWarning, match="scene_file"):
        sd = load_dataset(root, width=32, height=24, scene_file=str(tmp_path / "missing"), progress=False)
    assert not sd.class_names[1].startswith("replica_class")


def test_seed_resize_takes_opencvs_nearest_and_bilinear(tmp_path):
    import cv2 as cv

    root = make_scene(tmp_path / "big", 4, 64, 48, seed=0, progress=False)
    native = load_dataset(root, width=None, height=None, train_step=1, test_offset=0, progress=False)
    seed = load_dataset(root, width=32, height=24, train_step=1, test_offset=0, seed_resize=True, progress=False)
    ours = load_dataset(root, width=32, height=24, train_step=1, test_offset=0, progress=False)
    raw = native.class_ids_original[native.labels]
    # the seed's cv2 INTER_NEAREST at factor 2 keeps the top-left pixel of each block; ours the pixel-centre one
    np.testing.assert_array_equal(seed.class_ids_original[seed.labels], raw[:, ::2, ::2])
    np.testing.assert_array_equal(ours.class_ids_original[ours.labels], raw[:, 1::2, 1::2])
    ref = cv.resize(native.rgb[0].astype(np.float32) / 255, (32, 24), interpolation=cv.INTER_LINEAR)
    np.testing.assert_array_equal(seed.rgb[0], np.clip(np.round(ref * 255), 0, 255).astype(np.uint8))
