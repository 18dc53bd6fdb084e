"""Segmentation-like label noise: each error mode's statistics, persistence along the
trajectory, the confusion matrix by class name, determinism, and the tasks / train entry points."""
import numpy as np
import pytest
from scipy import ndimage

from semnerf_ros import tasks
from semnerf_ros.metrics import confusion_matrix, segmentation_scores
from semnerf_ros.segmentation_noise import FULL, MODES, class_adjacency, class_confusion, segmentation_noise

NAMES = ["void", "wall", "floor", "cabinet", "shelf", "rug", "chair", "sofa", "book", "gizmo"]
C = len(NAMES)
H, W = 60, 80


def room(n=12, drift=1, width=W):
    """A camera panning over a wall/floor scene: a cabinet and a shelf (large), a rug on the
    floor, a chair, a sofa, a thin 'book' column (2 px), a tiny 'gizmo' (9 px) and a void
    border; instances: one id per object."""
    labels = np.zeros((n, H, width), np.int32)
    inst = np.zeros((n, H, width), np.int32)
    for t in range(n):
        lab = np.ones((H, width), np.int32)    # wall
        ins = np.ones((H, width), np.int32)
        lab[35:], ins[35:] = 2, 2              # floor
        x = t * drift
        objs = [(3, 10, 15, 36, 22 + x), (4, 11, 8, 36, 50 + x), (5, 12, 42, 55, 20 + x),
                (6, 13, 25, 40, 60 + x), (7, 14, 28, 44, 5 + x)]
        for cls, iid, y0, y1, x0 in objs:
            w = {3: 14, 4: 10, 5: 30, 6: 8, 7: 12}[cls]
            lab[y0:y1, x0:x0 + w], ins[y0:y1, x0:x0 + w] = cls, iid
        lab[5:30, 40 + x:42 + x], ins[5:30, 40 + x:42 + x] = 8, 15          # thin book spine
        lab[20:23, 70 + x:73 + x], ins[20:23, 70 + x:73 + x] = 9, 16         # tiny gizmo
        lab[:2], ins[:2] = 0, 0
        labels[t], inst[t] = lab, ins
    return labels, inst


def miou(clean, noisy):
    return segmentation_scores(confusion_matrix(clean, noisy, C))["miou"]


def test_strength_zero_void_and_input_untouched():
    labels, inst = room()
    before = labels.copy()
    out, info = segmentation_noise(labels, 0.0, C, np.random.default_rng(0), NAMES, inst)
    assert np.array_equal(out, labels) and info["changed_pixels"] == 0
    out, info = segmentation_noise(labels, 1.0, C, np.random.default_rng(0), NAMES, inst)
    assert np.array_equal(labels, before)
    assert out.dtype == np.int32 and out.shape == labels.shape
    assert np.all(out[labels == 0] == 0) and np.all(out[labels > 0] > 0)     # void stays, nothing becomes void
    assert out.max() < C
    assert info["changed_ratio"] == pytest.approx(np.mean(out[labels > 0] != labels[labels > 0]))
    with pytest.raises(ValueError, match="strength"):
        segmentation_noise(labels, 1.5, C, np.random.default_rng(0), NAMES)
    with pytest.raises(ValueError, match="modes"):
        segmentation_noise(labels, 0.5, C, np.random.default_rng(0), NAMES, modes=["pixels"])


def test_deterministic_for_a_generator():
    labels, inst = room()
    a, _ = segmentation_noise(labels, 0.6, C, np.random.default_rng(3), NAMES, inst)
    b, _ = segmentation_noise(labels, 0.6, C, np.random.default_rng(3), NAMES, inst)
    c, _ = segmentation_noise(labels, 0.6, C, np.random.default_rng(4), NAMES, inst)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_stronger_noise_lowers_input_miou():
    labels, inst = room(n=20)
    scores = [miou(labels, segmentation_noise(labels, s, C, np.random.default_rng(1), NAMES, inst)[0])
              for s in (0.1, 0.4, 0.7, 1.0)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert scores[0] > 0.8 and scores[-1] < 0.75


def test_confusion_matrix_by_class_name_with_fallback():
    adj = class_adjacency(room()[0], C)
    M = class_confusion(NAMES, adj)
    assert np.allclose(M[1:].sum(1), 1.0) and np.all(M[0] == 0) and np.all(M[:, 0] == 0)
    assert np.all(np.diag(M) == 0)
    assert M[3, 4] > 0 and M[4, 3] > 0          # cabinet <-> shelf
    assert M[5, 2] > 0 and M[2, 5] > 0          # rug <-> floor
    assert M[6, 7] > 0 and M[7, 6] > 0          # chair <-> sofa
    assert M[5, 3] == 0 and M[6, 2] == 0        # unrelated names are not confused
    # 'gizmo' matches no group: it is confused with what it touches (the wall) only
    touching = set(np.flatnonzero(adj[9, 1:]) + 1)
    assert set(np.flatnonzero(M[9])) == touching == {1}
    # any class list works, names normalised (case, separators), unknown lists fall back to uniform
    M2 = class_confusion(["void", "Kitchen-Cabinet", "book_shelf", "Floor", "floor mat"])
    assert M2[1, 2] > 0 and M2[3, 4] > 0
    M3 = class_confusion(["void", "a", "b", "c"])
    assert np.allclose(M3[1:, 1:][~np.eye(3, dtype=bool)], 0.5)


def test_confusions_follow_the_matrix_and_hit_whole_objects():
    labels, inst = room(n=30)
    out, info = segmentation_noise(labels, 1.0, C, np.random.default_rng(0), NAMES, inst, modes=["confused"])
    M = class_confusion(NAMES, class_adjacency(labels, C))
    changed = out != labels
    assert changed.any() and info["confused"] == changed.sum()
    pairs = set(zip(labels[changed].tolist(), out[changed].tolist()))
    assert all(M[a, b] > 0 for a, b in pairs), pairs
    assert (3, 4) in pairs or (4, 3) in pairs   # the cabinet / shelf confusion occurs
    # errors are per object: within an erroneous object and frame one wrong class only
    for t in range(len(labels)):
        for iid in np.unique(inst[t][changed[t]]):
            assert len(np.unique(out[t][changed[t] & (inst[t] == iid)])) == 1


def test_boundary_errors_concentrate_near_edges():
    labels, inst = room(n=10)
    out, info = segmentation_noise(labels, 1.0, C, np.random.default_rng(2), NAMES, inst, modes=["boundary"])
    changed = out != labels
    assert changed.mean() > 0.01
    shift = FULL["boundary_shift"] * W
    edges = np.zeros_like(changed)
    for t in range(len(labels)):
        lab = labels[t]
        e = np.zeros((H, W), bool)
        e[:, 1:] |= lab[:, 1:] != lab[:, :-1]
        e[:, :-1] |= lab[:, 1:] != lab[:, :-1]
        e[1:] |= lab[1:] != lab[:-1]
        e[:-1] |= lab[1:] != lab[:-1]
        edges[t] = e
    dist = np.stack([ndimage.distance_transform_edt(~e) for e in edges])
    near = dist <= 3 * shift
    assert changed[~near].sum() == 0                       # nothing changes far from an edge
    assert changed[dist <= 1].mean() > 5 * changed[(dist > 1) & near].mean() or changed[dist <= 1].mean() > 0.2
    # edges move both ways: classes grow in some places and shrink in others
    grown = sum(int(((out == c) & (labels != c)).sum()) > 0 for c in (1, 2, 3, 4, 7))
    shrunk = sum(int(((labels == c) & (out != c)).sum()) > 0 for c in (1, 2, 3, 4, 7))
    assert grown >= 3 and shrunk >= 3


def test_small_and_thin_objects_are_missed_into_their_surroundings():
    labels, inst = room(n=6, width=240)   # thin = under 0.6 % of the width at strength 1 (1.4 px here)
    out, _ = segmentation_noise(labels, 1.0, C, np.random.default_rng(0), NAMES, inst, modes=["missed"])
    assert not np.any(out == 9)                 # the 9-pixel gizmo vanished ...
    gizmo = labels == 9
    assert np.all(out[gizmo] == 1)              # ... into the wall around it
    assert not np.any(out == 8)                 # the 2-pixel-wide book spine too
    assert np.all(out[labels == 8] == 1)
    big = labels == 3
    assert np.mean(out[big] == 3) > 0.95        # large objects stay
    weak, _ = segmentation_noise(labels, 0.1, C, np.random.default_rng(0), NAMES, inst, modes=["missed"])
    assert np.any(weak == 8)                    # weak noise keeps the thin spine


def test_blobs_are_blob_shaped_and_cover_the_expected_area():
    labels, inst = room(n=20)
    out, _ = segmentation_noise(labels, 1.0, C, np.random.default_rng(5), NAMES, inst, modes=["blobs"])
    changed = out != labels
    frac = changed[labels > 0].mean()
    assert 0.3 * FULL["blob_coverage"] < frac < 1.5 * FULL["blob_coverage"]
    sizes = []
    for t in range(len(labels)):
        lab, k = ndimage.label(changed[t])
        sizes += np.bincount(lab.ravel())[1:].tolist()
    sizes = np.array(sizes)
    assert np.sum(sizes[sizes >= 20]) > 0.8 * sizes.sum()   # mostly large connected regions, not speckle


def _error_overlap(err, lag):
    a, b = err[:-lag], err[lag:]
    inter = (a & b).sum(axis=(1, 2))
    union = (a | b).sum(axis=(1, 2))
    ok = union > 0
    return float(np.mean(inter[ok] / union[ok]))


def test_errors_persist_over_consecutive_frames():
    labels, inst = room(n=60, drift=0)         # a still camera: a network's mistakes repeat
    out, _ = segmentation_noise(labels, 0.8, C, np.random.default_rng(0), NAMES, inst)
    err = out != labels
    lag1, lag30 = _error_overlap(err, 1), _error_overlap(err, 30)
    # the same amount of errors drawn independently per frame (what pixel noise does)
    pix, _ = tasks.pixel_noise(labels, float(err[labels > 0].mean()), C, np.random.default_rng(0),
                               exclude_original=True)
    indep = _error_overlap(pix != labels, 1)
    assert lag1 > 0.5, lag1
    assert lag1 > lag30 + 0.25 and lag1 > indep + 0.3, (lag1, lag30, indep)
    # an object's wrong class persists for several frames
    conf, _ = segmentation_noise(labels, 0.8, C, np.random.default_rng(0), NAMES, inst, modes=["confused"])
    runs = []
    for iid in (10, 11, 12, 13, 14):
        wrong = np.array([np.any((inst[t] == iid) & (conf[t] != labels[t])) for t in range(len(labels))])
        edges = np.flatnonzero(np.diff(np.concatenate([[0], wrong.astype(int), [0]])))
        runs += (edges[1::2] - edges[::2]).tolist()
    assert runs and np.mean(runs) >= 3


def test_frame_mask_and_trajectory_order():
    labels, inst = room(n=10)
    mask = np.zeros(10, bool)
    mask[::2] = True
    out, info = segmentation_noise(labels, 1.0, C, np.random.default_rng(0), NAMES, inst, frame_mask=mask)
    assert np.array_equal(out[~mask], labels[~mask]) and info["frames"] == 5


def test_corrupt_labels_entry_point_and_apply_task():
    labels, inst = room(n=10)
    for kind in tasks.NOISE_KINDS:
        out, info = tasks.corrupt_labels(labels, kind, 0.5, C, np.random.default_rng(0), instances=inst,
                                         class_names=NAMES)
        assert out.shape == labels.shape and info["kind"] == kind and info["strength"] == 0.5
        assert (kind == "none") == np.array_equal(out, labels)
    seg, _ = tasks.corrupt_labels(labels, "segmentation", 0.5, C, np.random.default_rng(0), instances=inst,
                                  class_names=NAMES)
    direct, _ = segmentation_noise(labels, 0.5, C, np.random.default_rng(0), NAMES, inst)
    assert np.array_equal(seg, direct)
    with pytest.raises(tasks.TaskError, match="kind"):
        tasks.corrupt_labels(labels, "gauss", 0.5, C, np.random.default_rng(0))
    with pytest.raises(tasks.TaskError, match="instance"):
        tasks.corrupt_labels(labels, "region", 0.5, C, np.random.default_rng(0))
    with pytest.raises(tasks.TaskError, match=r"\[0, 1\]"):
        tasks.corrupt_labels(labels, "segmentation", 2.0, C, np.random.default_rng(0))
    # the seed-style flags of semnerf-train
    args = {"segmentation_denoising": True, "segmentation_noise_strength": 0.5}
    out, keep, desc = tasks.apply_task(args, labels, inst, None, np.random.default_rng(0), C, class_names=NAMES)
    assert np.array_equal(out, direct) and keep.all() and desc.startswith("segmentation_denoising: strength 0.5")
    args["sparse_views"], args["sparse_ratio"] = True, 0.5
    out, keep, desc = tasks.apply_task(args, labels, inst, None, np.random.default_rng(0), C, class_names=NAMES)
    assert keep.sum() == 5 and np.all(out[~keep] == 0) and "sparse_views" in desc
    # precedence: pixel_denoising wins over segmentation_denoising, as documented
    out, keep, desc = tasks.apply_task({**args, "pixel_denoising": True, "pixel_noise_ratio": 0.1}, labels, inst,
                                       None, np.random.default_rng(0), C, class_names=NAMES)
    assert desc.startswith("pixel_denoising") and "segmentation_denoising" in desc


def test_train_cli_has_the_flags():
    from semnerf_ros import train

    a = train.build_parser().parse_args(["--segmentation_denoising", "--segmentation_noise_strength", "0.3"])
    t = tasks.task_args(a)
    assert t["segmentation_denoising"] is True and t["segmentation_noise_strength"] == 0.3
    assert set(MODES) == {"missed", "confused", "boundary", "blobs"}


def test_input_miou_table_on_a_synthetic_house(tmp_path):
    from semnerf_ros.cli import noise_table

    out = tmp_path / "t.json"
    assert noise_table.main(["--seeds", "2", "--strengths", "0", "0.5", "--frames", "10", "--width", "32",
                            "--height", "24",
                            "--out", str(out)]) == 0
    import json

    t = json.loads(out.read_text())
    row = t["per_seed"]["2"]["segmentation"]
    assert row["0.0"] == 1.0 and row["0.5"] < 0.95 and 0 < t["per_seed"]["2"]["pixel_0.5"] < 0.6
