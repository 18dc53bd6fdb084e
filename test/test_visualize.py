import math

import cv2
import numpy as np
import pytest

from semnerf_ros.colormap import colorize_labels, label_palette
from semnerf_ros.visualize import make_comparison_strip, save_render_images, write_image

NAMES = ["void", "wall", "floor", "chair", "table"]


def _read_rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img[..., ::-1] if img.ndim == 3 else img


def _toy(h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    gt = np.ones((h, w), np.int32)
    gt[h // 2:] = 2
    gt[4:10, 4:12] = 3
    gt[:2] = 0
    pred = gt.copy()
    pred[4:10, 4:8] = 4
    pred[:2] = 1
    rgb = rng.random((h, w, 3)).astype(np.float32)
    depth = np.linspace(0.5, 4.0, h * w, dtype=np.float32).reshape(h, w)
    depth[0, 0] = 0.0
    entropy = rng.random((h, w)).astype(np.float32) * math.log(len(NAMES) - 1)
    return gt, pred, rgb, depth, entropy


def test_save_render_images_round_trip(tmp_path):
    gt, pred, rgb, depth, entropy = _toy()
    files = save_render_images(tmp_path, "007", rgb, pred, depth, entropy, NAMES, gt_labels=gt)
    assert set(files) == {"rgb", "label", "vis_label", "vis_gt_label", "depth", "vis_depth", "vis_entropy"}
    assert files["rgb"].name == "rgb_007.png" and files["depth"].name == "depth_007.png"
    np.testing.assert_array_equal(_read_rgb(files["rgb"]), (rgb * 255 + 0.5).astype(np.uint8))
    lab = _read_rgb(files["label"])
    assert lab.dtype == np.uint8
    np.testing.assert_array_equal(lab, pred)
    mm = _read_rgb(files["depth"])
    assert mm.dtype == np.uint16 and mm[0, 0] == 0
    np.testing.assert_allclose(mm[1:] / 1000.0, depth[1:], atol=6e-4)
    vis = _read_rgb(files["vis_label"])
    h, w = gt.shape
    assert vis.shape[0] == h and vis.shape[1] > w                      # legend strip on the right
    expected = colorize_labels(pred, len(NAMES))
    expected[gt == 0] = 0                                               # void ground truth blanked
    np.testing.assert_array_equal(vis[:, :w], expected)
    gt_vis = _read_rgb(files["vis_gt_label"])
    np.testing.assert_array_equal(gt_vis[:, :w], colorize_labels(gt, len(NAMES)))
    vd = _read_rgb(files["vis_depth"])
    assert vd.shape == (h, w, 3) and tuple(vd[0, 0]) == (0, 0, 0) and vd[5, 5].any()
    assert _read_rgb(files["vis_entropy"]).shape == (h, w, 3)
    assert not list(tmp_path.glob(".*"))                                # no temp files left


def test_save_render_images_partial_inputs_and_wide_labels(tmp_path):
    lab = np.array([[0, 300], [5, 1]], np.int32)
    files = save_render_images(tmp_path, "x", labels=lab)
    assert set(files) == {"label", "vis_label"}
    back = _read_rgb(files["label"])
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, lab)
    files = save_render_images(tmp_path, "y", depth=np.full((4, 4), 2.0), depth_range=(0.1, 10.0))
    assert set(files) == {"depth", "vis_depth"}


def test_comparison_strip_layout():
    gt, pred, rgb, _, _ = _toy()
    noisy = gt.copy()
    noisy[12:, ::3] = 4
    strip = make_comparison_strip(noisy, pred, gt, len(NAMES), NAMES)
    h, w = gt.shape
    assert strip.dtype == np.uint8 and strip.shape[0] == h + 20
    panels = [colorize_labels(noisy, 5), colorize_labels(pred, 5), colorize_labels(gt, 5)]
    panels[1][gt == 0] = 0
    for k, panel in enumerate(panels):
        x0 = k * (w + 4)
        np.testing.assert_array_equal(strip[20:, x0:x0 + w], panel)
    assert strip.shape[1] > 3 * w + 8                                   # legend appended
    with_rgb = make_comparison_strip(noisy, pred, gt, label_palette(5), NAMES, rgb=rgb, legend=False)
    assert with_rgb.shape == (h + 20, 4 * w + 3 * 4, 3)
    np.testing.assert_array_equal(with_rgb[20:, :w], (rgb * 255 + 0.5).astype(np.uint8))
    with pytest.raises(ValueError, match="equal"):
        make_comparison_strip(noisy, pred[:, :5], gt, 5)
    with pytest.raises(ValueError, match="titles"):
        make_comparison_strip(noisy, pred, gt, 5, titles=["a", "b"])


def test_write_image_overwrites_and_checks_types(tmp_path):
    p = tmp_path / "a" / "img.png"
    write_image(p, np.zeros((3, 3, 3), np.uint8))
    write_image(p, np.full((3, 3, 3), [10, 20, 30], np.uint8))
    np.testing.assert_array_equal(_read_rgb(p)[0, 0], [10, 20, 30])
    with pytest.raises(TypeError):
        write_image(p, np.zeros((3, 3, 3), np.float32))
    with pytest.raises(TypeError):
        write_image(p, np.zeros((3, 3), np.int32))
    assert [f.name for f in p.parent.iterdir()] == ["img.png"]
