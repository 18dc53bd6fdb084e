"""The paper's label tasks trained end to end (``semnerf-train`` with the seed's flags) on a
tiny scene, each beating its corrupted input: region-wise denoising, label propagation,
super-resolution.  (Pixel-wise denoising: test_train.py.)

The scene is the analytic box room written as a Replica folder (one instance per face),
48 frames at 48x36 on a slow turn: 24 training views, 24 test views, so that every surface
point is seen by several training views -- the multi-view redundancy the tasks rely on (with 8
views 45 degrees apart, a point is seen by about 2, and a flipped face is a tie that no field
can resolve).  Scores are the seed's mIoU against the clean labels: "train" on the training
views (the ones whose labels were corrupted), "test" on the unseen ones; "input" is the
corrupted training labels scored on the same training views.
"""
import pytest
from boxroom import write_box_replica

from semnerf_ros import tasks
from semnerf_ros import train as tr

N_FRAMES, W, H = 48, 48, 36
TINY = """
experiment: {width: 48, height: 36, train_step: 2, test_offset: 1, device: cpu, seed: 0}
model:
  type: hash
  hash: {n_levels: 3, log2_hashmap_size: 12, base_resolution: 8, finest_resolution: 32,
         hidden_dim: 32, hidden_dim_color: 32, hidden_dim_semantic: 32, backend: torch}
render: {N_rays: 512, march_steps: 64, max_samples_per_ray: 16, occupancy_resolution: 32,
         occupancy_warmup_steps: 32, depth_range: [0.1, 6.0], bounds_margin: 0.1}
train: {lrate: 5e-2, lrate_decay: 1e5, wgt_sem: 1.0, wgt_depth: 1.0}
logging: {step_save_ckpt: 100000, step_log_print: 50}
"""


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    d = tmp_path_factory.mktemp("tasks")
    (d / "tiny.yaml").write_text(TINY)
    return write_box_replica(d / "box", n=N_FRAMES, width=W, height=H, instances=True), d / "tiny.yaml"


def run(room, tmp_path, iters, *flags):
    folder, cfg = room
    return tr.train(None, tr.parse_args(
        ["--config_file", str(cfg), "--dataset_dir", str(folder), "--save_dir", str(tmp_path / "run"),
         "--model", "hash", "--iters", str(iters), "--eval_every", str(iters), "--n_test_views", "24",
         "--render_views", "0", "--quiet"] + list(flags)))


def test_region_denoising_beats_the_flipped_labels(room, tmp_path):
    # 40 % of each face's views (evenly over its area-sorted views) get the whole face flipped to
    # another class: the correct class stays the plurality of every face's views
    res = run(room, tmp_path, 100, "--region_denoising", "--region_noise_ratio", "0.4", "--uniform_flip",
              "--instance_id", "10", "20", "30", "40", "50", "60")
    inp = res["input_labels"]
    print(f"\nregion denoising: input mIoU {inp['miou']:.3f}, train views {res['train']['miou']:.3f}, "
          f"test views {res['test']['miou']:.3f}")
    assert "instance regions flipped" in res["task"] and inp["miou"] < 0.5
    assert res["train"]["miou"] > inp["miou"] + 0.15          # measured 0.451 -> 0.639
    assert res["test"]["miou"] > inp["miou"] + 0.15
    assert res["train"]["total_accuracy"] > inp["total_accuracy"] + 0.1


def test_label_propagation_fills_the_rooms_from_partial_annotations(room, tmp_path):
    # 5 % of each class region of each view annotated (the seed's --partial_perc), the rest void
    res = run(room, tmp_path, 100, "--label_propagation", "--partial_perc", "5")
    inp = res["input_labels"]
    print(f"\nlabel propagation: input mIoU {inp['miou']:.3f} ({inp['total_accuracy']:.3f} of pixels labelled "
          f"right), train views {res['train']['miou']:.3f}, test views {res['test']['miou']:.3f}")
    assert "5% patches" in res["task"] and inp["total_accuracy"] < 0.06
    assert res["train"]["miou"] > inp["miou"] + 0.3           # measured 0.049 -> 0.584
    assert res["test"]["miou"] > inp["miou"] + 0.3
    assert res["test"]["total_accuracy"] > 0.6


def test_super_resolution_beats_nearest_neighbour_upsampling(room, tmp_path):
    """x8 sparse labels (one labelled pixel per 8x8 block, the seed's default SR mode): the field
    beats both its input and what the same samples give without a field (nearest-neighbour
    up-sampling, the seed's dense SR labels).  With 24 labelled pixels per view, about 7 rays of a
    512-ray batch carry a label: the field needs 300-400 steps to pull clearly ahead of the
    up-sampling.  The margin is small and moves with any change of rounding: measured in the fourth
    session with one thread (as the tests run), the test views scored 0.665-0.689 at 400 steps and
    0.674-0.694 at 600 over seeds 0-2 against the up-sampling's 0.651 (at 900 steps one seed fell
    to 0.564: with ~7 labelled rays a batch the tiny field is not stable for long; the training
    views 0.676-0.696 at 600).  So the test runs 600 steps and asks for +0.01 on both.  Dense SR
    (the up-sampled labels as input) is not asserted: its blocks are shifted down-right by half a
    block in every view alike, a bias multi-view fusion cannot average out (the field reproduces
    it: 0.627 vs 0.651)."""
    factor = 8
    res = run(room, tmp_path, 600, "--super_resolution", "--sr_factor", str(factor))
    inp = res["input_labels"]
    from semnerf_ros.datasets import load_dataset

    scene = load_dataset(room[0], width=W, height=H, train_step=2, test_offset=1, progress=False)
    clean = scene.labels[scene.train_ids]
    upsampled, _ = tasks.super_resolution_labels(clean, factor, dense=True)
    nn = tr.score_labels(clean, upsampled, scene.num_classes)
    print(f"\nsuper-resolution x{factor}: sparse input mIoU {inp['miou']:.3f}, nearest-neighbour up-sampling "
          f"{nn['miou']:.3f}, train views {res['train']['miou']:.3f}, test views {res['test']['miou']:.3f}")
    assert "x8 sparse" in res["task"] and inp["miou"] < 0.05
    assert res["train"]["num_views"] == len(clean) == 24
    assert res["train"]["miou"] > inp["miou"] + 0.5
    assert res["train"]["miou"] > nn["miou"] + 0.01
    assert res["test"]["miou"] > nn["miou"] + 0.01
