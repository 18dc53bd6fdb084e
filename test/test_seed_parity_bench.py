"""bench/seed_parity.py, the prepared GPU comparison with the original code (issue 18, "Done when"),
checked on a CPU with a stand-in for the seed's repository: the copy with total_num set to the
scene's frame count, the runner's shims (numpy's removed aliases, the recording TensorBoard writer,
per-step timing without the evaluation renders), the 101-class info_semantic.json the seed asserts,
and the JSON it writes."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from semnerf_ros.datasets.synthetic import make_scene

ROOT = Path(__file__).resolve().parents[1]

FAKE_MAIN = '''import argparse
import numpy as np
import yaml
from SSR.training import trainer


def train():
    p = argparse.ArgumentParser()
    p.add_argument("--config_file")
    p.add_argument("--dataset_type")
    p.add_argument("--pixel_denoising", action="store_true")
    p.add_argument("--pixel_noise_ratio", type=float)
    args = p.parse_args()
    config = yaml.safe_load(open(args.config_file))
    if args.dataset_type == "replica":
        total_num = 900
        assert np.float is float and np.int is int      # the removed aliases, restored by the runner
        open("total_num.txt", "w").write(str(total_num))
    t = trainer.SSRTrainer(config)
    for i in range(int(config["train"]["N_iters"]) + 1):
        t.step(i)


if __name__ == "__main__":
    train()
'''
FAKE_TRAINER = '''import time
from torch.utils.tensorboard import SummaryWriter


class SSRTrainer:
    def __init__(self, config):
        self.config = config
        self.writer = SummaryWriter("logs")

    def render_path(self, rays):
        time.sleep(0.2)            # an evaluation: must not count as training time

    def step(self, global_step):
        time.sleep(0.01)
        if global_step % self.config["logging"]["step_val"] == 0 and global_step > 0:
            self.render_path(None)
            self.writer.add_scalar("Test/Metric/mIoU", 0.1 * global_step, global_step)
            self.writer.add_scalar("Test/Metric/total_acc", 0.5, global_step)
'''


def _bench():
    spec = importlib.util.spec_from_file_location("seed_parity", ROOT / "bench" / "seed_parity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def fake_seed(tmp_path):
    repo = tmp_path / "semantic_nerf"
    (repo / "SSR" / "training").mkdir(parents=True)
    (repo / "SSR" / "configs").mkdir()
    (repo / "SSR" / "__init__.py").write_text("")
    (repo / "SSR" / "training" / "__init__.py").write_text("")
    (repo / "SSR" / "training" / "trainer.py").write_text(FAKE_TRAINER)
    (repo / "train_SSR_main.py").write_text(FAKE_MAIN)
    (repo / "SSR" / "configs" / "SSR_room0_config.yaml").write_text(
        (ROOT / "config" / "SSR_room0_config.yaml").read_text())
    return repo


def test_the_seed_side_runs_through_the_runner(fake_seed, tmp_path, monkeypatch, capsys):
    bench = _bench()
    scene = make_scene(tmp_path / "scene", 6, 32, 24, seed=0, progress=False)
    monkeypatch.setattr(bench, "ensure_seed_imports", lambda wheels: None)
    out = tmp_path / "parity.json"
    rc = bench.main(["--seed_repo", str(fake_seed), "--scene", str(scene), "--work", str(tmp_path / "work"),
                     "--steps", "4", "--eval_every", "2", "--only", "seed", "--out", str(out)])
    assert rc == 0, (tmp_path / "work" / "seed.log").read_text()
    work_copy = tmp_path / "work" / "semantic_nerf"
    assert "total_num = 6" in (work_copy / "train_SSR_main.py").read_text()
    assert (work_copy / "total_num.txt").read_text() == "6"
    assert "total_num = 900" in (fake_seed / "train_SSR_main.py").read_text()     # the original is untouched
    res = json.loads(out.read_text())
    assert res["frames"] == 6 and res["seed_run"]["returncode"] == 0
    seed = res["seed"]
    assert seed["updates"] == [3, 5] and seed["test_miou"] == pytest.approx([0.2, 0.4])
    assert seed["test_total_acc"] == [0.5, 0.5]
    # 5 steps of ~10 ms each, the two 0.2 s evaluation renders excluded
    assert 0.02 < seed["train_seconds"][-1] < 0.2
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "work" / "seed_config.yaml").read_text())))
    assert cfg["experiment"]["dataset_dir"] == str(scene) and cfg["train"]["N_iters"] == 4
    info = json.loads((tmp_path / "work" / "habitat" / "info_semantic.json").read_text())
    assert len(info["classes"]) == 101 and cfg["experiment"]["scene_file"] == str(tmp_path / "work" / "habitat")


def test_prepare_only_prints_both_commands(fake_seed, tmp_path, capsys):
    bench = _bench()
    scene = make_scene(tmp_path / "scene", 6, 32, 24, seed=0, progress=False)
    assert bench.main(["--seed_repo", str(fake_seed), "--scene", str(scene), "--work", str(tmp_path / "w"),
                       "--prepare_only"]) == 0
    text = capsys.readouterr().out
    assert "--protocol seed" in text and "--pixel_noise_ratio 0.5" in text and "run_seed.py" in text
    assert "experiment.total_num=6" in text


def test_matching_of_evaluations_and_bad_scenes(tmp_path):
    bench = _bench()
    rows = bench.compare({"updates": [251, 501], "test_miou": [0.5, 0.6]},
                         {"updates": [250, 500], "test_miou": [0.52, 0.58]})
    assert [r["updates_seed"] for r in rows] == [251, 501]
    assert [round(r["difference"], 6) for r in rows] == [0.02, -0.02]
    # an evaluation the other side never made is not compared with its nearest one
    rows = bench.compare({"updates": [751], "test_miou": [0.47]},
                         {"updates": [250, 500, 750, 1000], "test_miou": [0.1, 0.3, 0.5, 0.6]})
    assert [(r["updates_ours"], r["updates_seed"]) for r in rows] == [(750, 751)]
    with pytest.raises(SystemExit, match="Replica"):
        bench.check_scene(tmp_path)
