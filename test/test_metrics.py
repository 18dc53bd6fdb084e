import math

import numpy as np
import pytest

from semnerf_ros.metrics import SegmentationEvaluator, confusion_matrix, depth_errors, psnr, segmentation_scores, ssim


def test_confusion_matrix_by_hand_ignores_void_gt():
    gt = np.array([[1, 1, 1, 2], [2, 0, 0, 3]])
    pred = np.array([[1, 1, 2, 2], [3, 1, 2, 0]])
    conf = confusion_matrix(gt, pred, num_classes=5)
    expected = np.zeros((5, 5), dtype=np.int64)
    expected[1, 1] = 2
    expected[1, 2] = 1
    expected[2, 2] = 1
    expected[2, 3] = 1
    expected[3, 0] = 1          # predicted void on a valid pixel: an error
    np.testing.assert_array_equal(conf, expected)
    assert conf.dtype == np.int64
    assert confusion_matrix(gt, pred, 5, ignore=None).sum() == gt.size


def test_segmentation_scores_by_hand():
    # gt:   1 1 1 2 2 | void void ; pred: 1 1 2 2 3 | anything
    gt = np.array([1, 1, 1, 2, 2, 0, 0])
    pred = np.array([1, 1, 2, 2, 3, 1, 2])
    s = segmentation_scores(confusion_matrix(gt, pred, 5))
    iou1 = 2 / (3 + 2 - 2)          # tp 2, gt 3, pred 2
    iou2 = 1 / (2 + 2 - 1)          # tp 1, gt 2, pred 2
    iou3 = 0 / (0 + 1 - 0)          # only predicted: counts as 0
    assert s["miou"] == pytest.approx((iou1 + iou2 + iou3) / 3)
    assert s["miou_valid_class"] == pytest.approx((iou1 + iou2) / 2)
    assert s["total_accuracy"] == pytest.approx(3 / 5)
    assert s["class_average_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert s["valid_classes"] == [1, 2, 3]
    assert s["num_pixels"] == 5
    assert math.isnan(s["per_class_iou"][0]) and math.isnan(s["per_class_iou"][4])
    assert s["per_class_iou"][1:4] == pytest.approx([iou1, iou2, iou3])


def test_segmentation_scores_perfect_and_empty():
    gt = np.array([[1, 2], [3, 0]])
    s = segmentation_scores(confusion_matrix(gt, np.where(gt == 0, 1, gt), 4))
    assert s["miou"] == 1.0 and s["total_accuracy"] == 1.0 and s["class_average_accuracy"] == 1.0
    empty = segmentation_scores(confusion_matrix(np.zeros((2, 2), int), np.ones((2, 2), int), 3))
    assert math.isnan(empty["miou"]) and math.isnan(empty["total_accuracy"]) and empty["valid_classes"] == []


def test_evaluator_accumulates_like_one_big_image():
    rng = np.random.default_rng(0)
    gts = rng.integers(0, 6, (4, 8, 9))
    preds = rng.integers(1, 6, (4, 8, 9))
    ev = SegmentationEvaluator(6)
    for g, p in zip(gts, preds):
        ev.add(g, p)
    whole = segmentation_scores(confusion_matrix(gts, preds, 6))
    got = ev.scores()
    assert got["num_images"] == 4
    assert got["miou"] == pytest.approx(whole["miou"])
    assert got["total_accuracy"] == pytest.approx(whole["total_accuracy"])
    ev.reset()
    assert ev.conf.sum() == 0 and ev.num_images == 0


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 3)
    with pytest.raises(ValueError, match="class id 5"):
        confusion_matrix(np.ones((2, 2), int), np.full((2, 2), 5), 3)
    with pytest.raises(TypeError):
        confusion_matrix(np.ones((2, 2)), np.ones((2, 2)), 3)


def test_psnr_of_known_mse():
    gt = np.full((4, 5, 3), 0.5, dtype=np.float32)
    assert psnr(gt + 0.1, gt) == pytest.approx(20.0, abs=1e-4)        # MSE 0.01
    assert psnr(gt, gt) == math.inf
    pred = gt.copy()
    pred[0] += 0.2
    mask = np.ones((4, 5), bool)
    mask[0] = False
    assert psnr(pred, gt, mask=mask) == math.inf
    assert psnr(pred, gt, mask=~mask) == pytest.approx(-10 * math.log10(0.04), abs=1e-4)
    a = np.zeros((2, 2, 3), np.uint8)
    assert psnr(a + 51, a) == pytest.approx(-10 * math.log10(0.2 ** 2))  # 51/255 = 0.2
    with pytest.raises(ValueError):
        psnr(gt, gt[:2])


def test_ssim():
    rng = np.random.default_rng(1)
    img = rng.random((16, 16, 3))
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert 0.0 < ssim(noisy, img) < 0.9
    assert ssim(img[:5, :5, 0], img[:5, :5, 0]) == pytest.approx(1.0)   # window shrinks
    with pytest.raises(ValueError):
        ssim(img[:2, :2], img[:2, :2])


def test_depth_errors_toy():
    gt = np.array([1.0, 2.0, 4.0, 0.0, 3.0])
    pred = np.array([1.1, 2.0, 2.0, 5.0, 0.0])   # pixel 3: void gt; pixel 4: no prediction
    e = depth_errors(pred, gt)
    p, g = np.array([1.1, 2.0, 2.0]), np.array([1.0, 2.0, 4.0])
    assert e["num_pixels"] == 3 and e["complete"] == pytest.approx(3 / 4)
    assert e["abs_rel"] == pytest.approx((0.1 / 1 + 0 + 2 / 4) / 3)
    assert e["sq_rel"] == pytest.approx((0.01 / 1 + 0 + 4 / 4) / 3)
    assert e["rmse"] == pytest.approx(math.sqrt((0.01 + 0 + 4) / 3))
    assert e["mae"] == pytest.approx((0.1 + 0 + 2) / 3)
    assert e["rmse_log"] == pytest.approx(math.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)))
    assert e["a1"] == pytest.approx(2 / 3)       # ratios 1.1, 1, 2
    assert e["a2"] == pytest.approx(2 / 3)       # 2 > 1.5625
    assert e["a3"] == pytest.approx(2 / 3)       # 2 > 1.25**3 = 1.953
    assert depth_errors(np.array([1.9]), np.array([1.0]))["a3"] == 1.0
    assert depth_errors(pred, gt, max_depth=3.5)["num_pixels"] == 2
    nothing = depth_errors(np.ones(3), np.zeros(3))
    assert math.isnan(nothing["rmse"]) and nothing["num_pixels"] == 0
