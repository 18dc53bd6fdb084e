#!/usr/bin/env python3
"""Parity run: the original Semantic-NeRF code and ``semnerf-train --protocol seed`` on the same scene.

Pixel-wise denoising at a noise ratio of 0.5 (the paper's task) with the paper's MLPs, the same
steps, evaluation interval and evaluation resolution; test mIoU per step of both, and the
difference, into one JSON file.  Needs a GPU (the seed's code calls ``.cuda()`` throughout).

The original code runs unmodified, from a copy of its repository, with what it needs on a current
Python (DESIGN.md): ``imgviz`` 1.7.6 (its ``label_colormap`` / ``depth2rgb``; the newest imgviz no
longer fits), numpy's removed aliases ``np.float`` / ``np.int`` / ``np.bool`` restored, and
``total_num`` in ``train_SSR_main.py`` set to the scene's frame count (it is 900, Replica's).  The
runner (``run_seed.py``, written into the work folder) also stands in for what does not change the
training: its TensorBoard writer records the scalars to ``scalars.jsonl`` (no tensorboard package
needed), its mp4 writer is a no-op when imageio-ffmpeg is missing, and an empty ``open3d`` module
stands in when Open3D is missing (the seed imports it at the top of ``SSR/visualisation`` for viewers
that training never calls; the GPU machine has no Open3D).  It
times each training step, less the evaluation renders inside it (the protocol pauses the clock).

Preparation on a machine with internet (the GPU machine has none)::

    # the seed's code and the wheels of its imports the GPU machine may lack, carried in shared/
    git clone https://github.com/Harry-Zhi/semantic_nerf shared/semantic_nerf
    pip download imgviz==1.7.6 matplotlib scikit-learn -d shared/wheels \
        --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64

(the seed imports imgviz, matplotlib, scikit-learn, scikit-image, imageio, opencv, pyyaml, tqdm; the
script installs the missing ones from ``--wheels`` with ``pip --no-index`` and names any it cannot).

On the GPU machine (the device tool runs this from the repository root)::

    python bench/seed_parity.py --seed_repo shared/semantic_nerf --wheels shared/wheels \\
        --steps 1500 --eval_every 250 --out bench/results/seed_parity_h200.json

``--scene`` takes a Replica-layout folder (default: the built-in synthetic room, 300 frames at
320x240, generated once into the user's cache and reused by later runs); ``--only seed|ours``
runs one side; ``--prepare_only`` writes the work folder (patched seed copy, runner, configs, the
101-class ``info_semantic.json`` the seed asserts) and prints the two commands without running
them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SEED_TOTAL_NUM = re.compile(r"^(\s*)total_num\s*=\s*900\s*$", re.M)
#: the seed asserts Replica's 101 semantic classes in <scene_file>/info_semantic.json
SEED_NUM_CLASSES = 101

RUNNER = '''"""Runs the seed's train_SSR_main.py as it is, with: numpy's removed aliases restored; a
TensorBoard writer that records scalars to scalars.jsonl; mp4 writing skipped without
imageio-ffmpeg; per-step timing without the evaluation renders (written by bench/seed_parity.py)."""
import importlib.util
import json
import os
import runpy
import sys
import time
import types

import numpy as np

for name, alias in (("float", float), ("int", int), ("bool", bool)):
    if not hasattr(np, name):
        setattr(np, name, alias)

SCALARS = open(os.environ["SEED_PARITY_SCALARS"], "a")


class RecordingWriter:
    def __init__(self, log_dir=None, **kwargs):
        self.log_dir = log_dir

    def add_scalar(self, tag, value, step):
        value = float(value.item() if hasattr(value, "item") else value)
        SCALARS.write(json.dumps({"tag": tag, "step": int(step), "value": value,
                                  "train_seconds": TIMER["train"]}) + "\\n")
        SCALARS.flush()

    def add_image(self, *a, **k):
        pass

    def add_text(self, *a, **k):
        pass

    def add_histogram(self, *a, **k):
        pass

    def flush(self):
        pass

    def close(self):
        pass


shim = types.ModuleType("torch.utils.tensorboard")
shim.SummaryWriter = RecordingWriter
sys.modules["torch.utils.tensorboard"] = shim
import torch.utils  # noqa: E402

torch.utils.tensorboard = shim
import imageio  # noqa: E402

if importlib.util.find_spec("imageio_ffmpeg") is None:
    imageio.mimwrite = lambda *a, **k: None
if importlib.util.find_spec("open3d") is None:
    # SSR/visualisation imports open3d at the top for its mesh and point-cloud viewers, which
    # training and evaluation never call; an empty module lets the trainer import without it
    sys.modules["open3d"] = types.ModuleType("open3d")

from SSR.training import trainer  # noqa: E402

TIMER = {"train": 0.0, "render": 0.0}
_step, _render = trainer.SSRTrainer.step, trainer.SSRTrainer.render_path


def sync():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def step(self, global_step):
    sync()
    t0, r0 = time.perf_counter(), TIMER["render"]
    out = _step(self, global_step)
    sync()
    TIMER["train"] += time.perf_counter() - t0 - (TIMER["render"] - r0)
    return out


def render_path(self, *a, **k):
    t0 = time.perf_counter()
    try:
        return _render(self, *a, **k)
    finally:
        TIMER["render"] += time.perf_counter() - t0


trainer.SSRTrainer.step = step
trainer.SSRTrainer.render_path = render_path
sys.argv = ["train_SSR_main.py"] + sys.argv[1:]
runpy.run_path("train_SSR_main.py", run_name="__main__")
'''


def scene_frames(scene: Path) -> int:
    return len(list((scene / "rgb").glob("rgb_*.png")))


def check_scene(scene: Path) -> dict:
    """What the seed needs of a Replica folder: numbered rgb/depth/semantic_class images, poses, the
    seed's camera (hfov 90, centred) and class ids below 101.  Returns facts; raises SystemExit."""
    import cv2

    for sub in ("rgb", "depth", "semantic_class"):
        if not (scene / sub).is_dir():
            raise SystemExit(f"{scene}: not a Replica folder (no {sub}/)")
    n = scene_frames(scene)
    if n == 0 or not (scene / "traj_w_c.txt").is_file():
        raise SystemExit(f"{scene}: no frames or no traj_w_c.txt")
    info = json.loads((scene / "intrinsics.json").read_text()) if (scene / "intrinsics.json").is_file() else {}
    first = cv2.imread(str(scene / "rgb" / "rgb_0.png"))
    h, w = first.shape[:2]
    if info and ("fx" in info):
        f = w / 2.0
        if abs(info["fx"] - f) > 1e-3 * f or abs(info["cx"] - (w - 1) / 2) > 1e-3:
            raise SystemExit(f"{scene}: the seed assumes hfov 90 and a centred principal point; this camera is "
                             f"fx {info['fx']}, cx {info['cx']}")
    top = 0
    for p in sorted((scene / "semantic_class").glob("*.png"))[:: max(1, n // 30)]:
        top = max(top, int(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).max()))
    if top >= SEED_NUM_CLASSES:
        raise SystemExit(f"{scene}: class id {top}: the seed colours classes with a {SEED_NUM_CLASSES}-entry table")
    return {"frames": n, "width": w, "height": h, "class_names": info.get("class_names")}


def write_info_semantic(folder: Path, class_names) -> Path:
    """``info_semantic.json`` with the 101 classes the seed asserts (names from the scene where known)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(class_names or [])
    classes = [{"id": i, "name": names[i] if i < len(names) else f"class_{i}"} for i in range(1, SEED_NUM_CLASSES + 1)]
    path = folder / "info_semantic.json"
    path.write_text(json.dumps({"classes": classes, "id_to_label": list(range(SEED_NUM_CLASSES + 1))}))
    return path


def prepare_seed(seed_repo: Path, work: Path, n_frames: int) -> Path:
    """A copy of the seed's repository with ``total_num = <n_frames>`` and the runner."""
    dst = work / "semantic_nerf"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(seed_repo, dst, ignore=shutil.ignore_patterns(".git", "imgs"))
    main = dst / "train_SSR_main.py"
    text = main.read_text()
    patched, count = SEED_TOTAL_NUM.subn(lambda m: f"{m.group(1)}total_num = {n_frames}", text)
    if count == 0:
        raise SystemExit(f"{main}: no 'total_num = 900' line to set to the scene's {n_frames} frames")
    main.write_text(patched)
    (dst / "run_seed.py").write_text(RUNNER)
    return dst


def seed_config(seed_repo: Path, work: Path, scene: Path, info_dir: Path, a, facts: dict) -> Path:
    cfg = yaml.safe_load((seed_repo / "SSR" / "configs" / "SSR_room0_config.yaml").read_text())
    cfg["experiment"].update(scene_file=str(info_dir), save_dir=str(work / "seed_run"), dataset_dir=str(scene),
                             width=facts["width"], height=facts["height"], gpu=a.gpu)
    cfg["train"]["N_iters"] = a.steps
    cfg["render"]["test_viz_factor"] = a.test_viz_factor
    cfg["logging"].update(step_val=a.eval_every, step_log_tfb=a.eval_every, step_vis_train=10 ** 9,
                          step_save_ckpt=10 ** 9, step_log_print=10 ** 9)
    path = work / "seed_config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def commands(a, work: Path, seed_dir: Path, seed_cfg: Path, scene: Path, facts: dict) -> dict:
    task = ["--pixel_denoising", "--pixel_noise_ratio", str(a.noise_ratio)]
    ours = [sys.executable, "-m", "semnerf_ros.cli.train", "--config_file", str(ROOT / "config/SSR_room0_config.yaml"),
            "--dataset_dir", str(scene), "--save_dir", str(work / "ours_run"), "--protocol", "seed",
            "--iters", str(a.steps), "--eval_every", str(a.eval_every), "--render_views", "0", "--quiet",
            "--tensorboard", "off", "--videos", "off", "--seed", str(a.seed),
            "--set", f"render.test_viz_factor={a.test_viz_factor}", "--set", f"experiment.total_num={facts['frames']}",
            "--set", f"experiment.width={facts['width']}", "--set", f"experiment.height={facts['height']}",
            "--set", "logging.step_save_ckpt=1000000000"] + task
    seed = [sys.executable, "run_seed.py", "--config_file", str(seed_cfg), "--dataset_type", "replica"] + task
    return {"ours": ours, "seed": seed, "seed_cwd": str(seed_dir)}


def run(cmd, cwd, env, log_path: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    with open(log_path, "w") as fh:
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            # what the run logged before the limit (scalars, log) is still read and written
            return {"returncode": None, "timed_out_after_s": timeout, "wall_seconds": time.perf_counter() - t0,
                    "log": str(log_path)}
    return {"returncode": proc.returncode, "wall_seconds": time.perf_counter() - t0, "log": str(log_path)}


def read_seed(scalars: Path) -> dict:
    """Test mIoU per evaluation from the runner's scalars (global_step k = k + 1 updates)."""
    rows = [json.loads(line) for line in scalars.read_text().splitlines()] if scalars.is_file() else []
    out = {"updates": [], "test_miou": [], "test_total_acc": [], "test_psnr": [], "train_seconds": []}
    for r in rows:
        if r["tag"] == "Test/Metric/mIoU":
            out["updates"].append(r["step"] + 1)
            out["test_miou"].append(r["value"])
            out["train_seconds"].append(r["train_seconds"])
    acc = {r["step"] + 1: r["value"] for r in rows if r["tag"] == "Test/Metric/total_acc"}
    psnr = {r["step"] + 1: r["value"] for r in rows if r["tag"] == "Test/Metric/batch_PSNR"}
    out["test_total_acc"] = [acc.get(u) for u in out["updates"]]
    out["test_psnr"] = [psnr.get(u) for u in out["updates"]]
    return out


def read_ours(metrics: Path) -> dict:
    recs = json.loads(metrics.read_text()) if metrics.is_file() else []
    recs = [r for r in recs if r.get("test")]
    return {"updates": [r["step"] for r in recs], "test_miou": [r["test"]["miou"] for r in recs],
            "test_total_acc": [r["test"]["total_accuracy"] for r in recs],
            "test_psnr": [r["test"]["psnr"] for r in recs], "train_seconds": [r["train_seconds"] for r in recs],
            "input_miou": recs[-1]["input_labels"]["miou"] if recs else None}


def compare(seed: dict, ours: dict) -> list:
    """Per evaluation both ran at (matched by updates: the seed's global_step k is k + 1 updates and
    evaluates at step_val multiples, ours at multiples of the step count; the nearest seed
    evaluation within 2 % of the updates, or 2 updates, else the evaluation is not compared)."""
    rows = []
    for u, m in zip(ours["updates"], ours["test_miou"]):
        if not seed["updates"]:
            break
        j = int(np.argmin([abs(s - u) for s in seed["updates"]]))
        if abs(seed["updates"][j] - u) > max(2.0, 0.02 * u):
            continue
        rows.append({"updates_ours": u, "updates_seed": seed["updates"][j], "test_miou_ours": m,
                     "test_miou_seed": seed["test_miou"][j], "difference": m - seed["test_miou"][j]})
    return rows


#: the seed's imports -> the package that provides each (imgviz pinned: DESIGN.md)
SEED_IMPORTS = {"imgviz": "imgviz==1.7.6", "matplotlib": "matplotlib", "sklearn": "scikit-learn",
                "skimage": "scikit-image", "imageio": "imageio", "cv2": "opencv-python-headless", "yaml": "pyyaml",
                "tqdm": "tqdm"}


def ensure_seed_imports(wheels: Path) -> None:
    """Install the seed's missing imports from the carried wheels (no index); SystemExit naming
    the packages still missing."""
    import importlib.metadata
    import importlib.util

    def absent():
        out = [pkg for mod, pkg in SEED_IMPORTS.items() if importlib.util.find_spec(mod) is None]
        if "imgviz==1.7.6" not in out and importlib.metadata.version("imgviz") != "1.7.6":
            out.append("imgviz==1.7.6")
        return out

    missing = absent()
    if missing and wheels.is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), *missing],
                       check=False)
        importlib.invalidate_caches()
        missing = absent()
    if missing:
        raise SystemExit(f"the seed's code needs {', '.join(missing)}: carry their wheels in {wheels} "
                         f"(pip download {' '.join(missing)} -d {wheels} ...)")


def environment() -> dict:
    env = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import torch
        env["torch"] = torch.__version__
        env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        env["torch"] = None
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip() or None
    except OSError:
        env["commit"] = None
    return env


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed_repo", type=Path, default=ROOT / "shared" / "semantic_nerf",
                   help="a checkout of github.com/Harry-Zhi/semantic_nerf")
    p.add_argument("--wheels", type=Path, default=ROOT / "shared" / "wheels",
                   help="folder with the imgviz 1.7.6 wheel, installed with pip --no-index when imgviz is missing")
    p.add_argument("--scene", type=Path, default=None,
                   help="Replica-layout scene (default: the built-in room, from the cache in ~/.cache/semnerf_ros)")
    p.add_argument("--work", type=Path, default=Path("/tmp/seed_parity"), help="work folder")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--eval_every", type=int, default=250)
    p.add_argument("--test_viz_factor", type=int, default=1)
    p.add_argument("--noise_ratio", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0, help="our RNG seed (the seed's code draws from numpy's global RNG)")
    p.add_argument("--gpu", default="",
                   help="the seed's experiment.gpu (its select_gpus sets CUDA_VISIBLE_DEVICES to it); empty = "
                        "leave CUDA_VISIBLE_DEVICES as the caller set it (a '0' here moved the seed's run onto "
                        "physical GPU 0 whatever the caller chose)")
    p.add_argument("--only", choices=["seed", "ours"], default=None)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    p.add_argument("--prepare_only", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "seed_parity.json")
    a = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from semnerf_ros.datasets import synthetic

    work = a.work.expanduser().absolute()
    work.mkdir(parents=True, exist_ok=True)
    if a.scene:
        scene = a.scene.expanduser().absolute()
    else:   # the built-in room in the user's cache: generated once for every run (minutes on a machine
        # without Open3D), not once per --work folder
        t0 = time.perf_counter()
        scene = synthetic.ensure_scene(progress=False)
        print(f"scene {scene} ready in {time.perf_counter() - t0:.1f} s", flush=True)
    facts = check_scene(scene)
    info_dir = work / "habitat"
    write_info_semantic(info_dir, facts["class_names"])
    run_seed = a.only != "ours"
    seed_dir = prepare_seed(a.seed_repo, work, facts["frames"]) if run_seed else work / "semantic_nerf"
    seed_cfg = seed_config(a.seed_repo, work, scene, info_dir, a, facts) if run_seed else work / "seed_config.yaml"
    cmds = commands(a, work, seed_dir, seed_cfg, scene, facts)
    if a.prepare_only:
        print("ours:", " ".join(cmds["ours"]))
        print(f"seed (in {cmds['seed_cwd']}):", " ".join(cmds["seed"]))
        return 0
    if run_seed:
        ensure_seed_imports(a.wheels)
    result = {"task": f"pixel_denoising ratio {a.noise_ratio}", "scene": str(scene), "frames": facts["frames"],
              "resolution": [facts["width"], facts["height"]], "steps": a.steps, "eval_every": a.eval_every,
              "test_viz_factor": a.test_viz_factor, "environment": environment(), "commands": cmds}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if a.only != "seed":
        result["ours_run"] = run(cmds["ours"], ROOT, env, work / "ours.log", a.timeout)
        result["ours"] = read_ours(work / "ours_run" / "metrics.json")
    if run_seed:
        scalars = work / "scalars.jsonl"
        scalars.unlink(missing_ok=True)
        seed_env = dict(os.environ, SEED_PARITY_SCALARS=str(scalars))
        result["seed_run"] = run(cmds["seed"], seed_dir, seed_env, work / "seed.log", a.timeout)
        result["seed"] = read_seed(scalars)
    if "ours" in result and "seed" in result:
        result["per_evaluation"] = compare(result["seed"], result["ours"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result.get(k) for k in ("per_evaluation", "ours_run", "seed_run")}, indent=2))
    print(f"wrote {a.out}")
    return 0 if all(result.get(f"{k}_run", {"returncode": 0})["returncode"] == 0 for k in ("ours", "seed")) else 1


if __name__ == "__main__":
    sys.exit(main())
