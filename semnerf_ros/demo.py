"""``semnerf-demo``: the whole product in one command, on the built-in room.

    semnerf-demo [--out runs/demo] [--duration S] [--rate X] [--device auto|cpu|cuda[:N]]
                 [--width W --height H --frames N] [--mesh-resolution R] [--domain-id D]

Stages (each prints its progress):

1. **scene** -- the built-in synthetic room (:func:`datasets.synthetic.ensure_scene`,
   cached in ``~/.cache/semnerf_ros``): 160x120 px, 150 frames on a CPU; the paper's
   320x240 px, 300 frames with CUDA.
2. **bag** -- the scene as a rosbag2 (:func:`bags.writer.write_scene_bag`) with 50 %
   pixel label noise (``--noise segmentation --noise-strength S``: a segmentation
   network's errors instead) on ``/segmentation/labels`` and the clean labels on
   ``/segmentation/labels_gt``; written once into the output folder and reused.
3. **node + player** -- ``python -m semnerf_ros.ros.node --ros-args --params-file
   config/semnerf.yaml -p ... -r rgb:=... `` and ``python -m semnerf_ros.ros.bag_player``
   as subprocesses, exactly as a user runs them, on a private ``ROS_DOMAIN_ID``
   (discovery limited to this machine).  The bag (30 Hz) is played once, slowed down
   (``--rate``, default: bag length / ``--duration``) so that training keeps up.
4. **monitor** (this process, rclpy) -- subscribes to ``/semnerf_node/semantic``, to the
   bag's ``/segmentation/labels_gt``, ``/segmentation/labels`` and
   ``/camera/color/image_raw`` and to ``/semnerf_node/status``; pairs every published
   semantic image with the ground truth of the same header stamp (the node stamps its
   renders with the input image's stamp) and with the noisy labels of that frame, and
   scores both against the ground truth (mIoU, accuracy; ground truth and noisy labels
   are shrunk with nearest-neighbour sampling to the published size).
5. **results** -- ``~/export_mesh`` writes ``mesh_semantic.ply``; comparison strips
   (RGB | noisy input | published | ground truth) as PNGs; ``summary.json``; a printed
   summary; the node is stopped with SIGINT and its shutdown time reported.

Exit code 0 only when every stage ran and the published images' mIoU (final quarter of
the stream) beats that of the noisy input labels on the same frames; 1 otherwise, with
the reasons printed; 130 when interrupted.

The stages run here; the ROS side of stage 4 (rclpy) is :class:`semnerf_ros.ros.monitor.Monitor`;
the command line is :mod:`semnerf_ros.cli.demo`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from semnerf_ros.srv import ExportMesh, GetStatus  # generated interfaces (built at install)

from .bags.reader import bag_custom_data
from .bags.writer import write_scene_bag
from .datasets.synthetic import CLASS_NAMES, default_scene_dir, ensure_scene, scene_is_complete
from .io.jsonio import write_json
from .ros.monitor import NODE_NAME, TOPIC_SEMANTIC, Monitor, MonitorError, Scored
from .visualize import make_comparison_strip, write_image

BAG_RATE_HZ = 30.0          # frame rate the bag is recorded at (the scene's)
NOISE_MODEL, NOISE_RATIO = "pixel", 0.5   # defaults of --noise / --noise-strength
NOISE_CHOICES = ("pixel", "segmentation", "region", "none")
BAG_MARKER = "demo_bag.json"


class DemoError(RuntimeError):
    """A stage of the demo that could not run (the message says which and why)."""


# ============================================================================ settings
@dataclass
class Settings:
    """Everything the run depends on, after device-dependent defaults are filled in."""

    out: Path
    device: str                 # cpu | cuda | cuda:N
    width: int
    height: int
    frames: int
    duration: float             # seconds of streaming (wall clock)
    rate: float                 # bag playback speed factor
    publish_rate: float         # Hz of the node's rendered images
    render_scale: float
    mesh_resolution: int
    domain_id: int
    report_every: float
    engine_yaml: str = ""       # text of the engine config written for the node
    params_file: Optional[Path] = None
    noise: str = NOISE_MODEL    # label corruption of the bag (semnerf_ros.tasks.corrupt_labels)
    noise_strength: float = NOISE_RATIO
    pose_source: str = "topic"  # camera poses in the bag and for the node: topic (PoseStamped) or tf

    @property
    def bag_seconds(self) -> float:
        return self.frames / BAG_RATE_HZ


def _cuda_available() -> bool:
    try:
        import torch  # heavy: imported only to see whether a GPU is there
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(spec: str) -> str:
    """``auto`` -> ``cuda`` if torch sees a GPU, else ``cpu``; others pass through (checked)."""
    spec = spec.strip().lower()
    if spec == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if spec == "cpu" or spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if spec.startswith("cuda") and not _cuda_available():
            raise DemoError(f"--device {spec}: torch sees no CUDA device here (use --device cpu)")
        return spec
    raise DemoError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")


def default_domain_id() -> int:
    """A ROS domain for this run only, 1..100 (valid on Linux with room for many
    participants), from the process id and the clock."""
    return 1 + random.Random(os.getpid() * 1_000_003 + time.time_ns()).randrange(100)


def find_params_file() -> Optional[Path]:
    """The node's ``config/semnerf.yaml``: beside the package in a source checkout or
    editable install, else in the ament share folder of a colcon install; None if absent."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "config" / "semnerf.yaml"]
    try:
        # optional: only in a colcon / ament install
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("semnerf_ros")) / "config" / "semnerf.yaml")
    except Exception:  # noqa: BLE001 - no ament index (pip path) or package not in it
        pass
    candidates.append(Path(sys.prefix) / "share" / "semnerf_ros" / "config" / "semnerf.yaml")
    for c in candidates:
        if c.is_file():
            return c
    return None


def engine_config_text(device: str, bounds: list) -> str:
    """The engine YAML the node gets (``-p engine_config:=``): on a CPU a small hash
    field (8 levels, 2^14 entries, 512 rays a step, learning rate 0.02) that beats the
    label noise within about a minute on two cores; with CUDA the full hash field
    (16 levels, 2^19 entries, 4096 rays, learning rate 0.01).  ``bounds``: the room box
    [xmin, ymin, zmin, xmax, ymax, zmax] in metres."""
    b = ", ".join(f"{v:.2f}" for v in bounds)
    if device == "cpu":
        model = ("model:\n  type: hash\n  hash: {n_levels: 8, log2_hashmap_size: 14, finest_resolution: 128,\n"
                 "         hidden_dim: 32, hidden_dim_color: 32, hidden_dim_semantic: 32}\n")
        render = ("render:\n  N_rays: 512\n  march_steps: 128\n  max_samples_per_ray: 24\n"
                  "  occupancy_resolution: 32\n")
    else:
        model = "model:\n  type: hash\n  chunk: 32768\n"
        render = "render:\n  N_rays: 4096\n"
    return (f"# semnerf-demo engine config for {device} (written by semnerf_ros/demo.py; keys not\n"
            f"# listed keep the defaults of semnerf_ros/config.py)\n"
            + model + render
            + f"  depth_range: [0.1, 8.0]\n  scene_bounds: [{b}]   # the room, 0.3 m margin\n"
            + f"train:\n  lrate: {'2.0e-2' if device == 'cpu' else '1.0e-2'}\n  lrate_decay: 100e3\n"
            + "  wgt_sem: 0.5\n  wgt_depth: 0.1\n")


def make_settings(args: argparse.Namespace) -> Settings:
    device = resolve_device(args.device)
    cpu = device == "cpu"
    width = args.width or (160 if cpu else 320)
    height = args.height or (120 if cpu else 240)
    frames = args.frames or (150 if cpu else 300)
    duration = args.duration or (120.0 if cpu else 60.0)
    for name, v in (("width", width), ("height", height)):
        if v < 16:
            raise DemoError(f"--{name} must be >= 16 px, got {v}")
    if frames < 10:
        raise DemoError(f"--frames must be >= 10, got {frames}")
    if not duration >= 10:
        raise DemoError(f"--duration must be >= 10 s, got {duration}")
    rate = args.rate or (frames / BAG_RATE_HZ) / duration
    if not rate > 0:
        raise DemoError(f"--rate must be positive, got {rate}")
    duration = (frames / BAG_RATE_HZ) / rate
    # rendering competes with training for the map's lock: keep it cheap on a CPU
    render_scale = 0.5 if (not cpu or width * height <= 10000) else 0.25
    mesh_res = args.mesh_resolution or (64 if cpu else 256)
    noise = getattr(args, "noise", None) or NOISE_MODEL
    strength = getattr(args, "noise_strength", None)
    strength = NOISE_RATIO if strength is None else float(strength)
    if noise not in NOISE_CHOICES:
        raise DemoError(f"--noise must be one of {', '.join(NOISE_CHOICES)}, got {noise!r}")
    if not 0.0 <= strength <= 1.0:
        raise DemoError(f"--noise-strength must lie in [0, 1], got {strength}")
    pose_source = getattr(args, "pose_source", None) or "topic"
    if pose_source not in ("topic", "tf"):
        raise DemoError(f"--pose-source must be topic or tf, got {pose_source!r}")
    domain = args.domain_id if args.domain_id is not None else default_domain_id()
    if not 0 <= domain <= 232:
        raise DemoError(f"--domain-id must lie in 0..232, got {domain}")
    return Settings(out=Path(args.out).expanduser().absolute(), device=device, width=width, height=height,
                    frames=frames, duration=duration, rate=rate, publish_rate=1.0 if cpu else 2.0,
                    render_scale=render_scale, mesh_resolution=mesh_res, domain_id=domain,
                    report_every=10.0 if duration >= 60 else 5.0, noise=noise, noise_strength=strength,
                    pose_source=pose_source)


# ============================================================================ stage 1 + 2
def _stage(i: int, text: str) -> None:
    print(f"\n[{i}/5] {text}", flush=True)


def ensure_bag(scene_dir: Path, s: Settings) -> tuple[Path, dict]:
    """The scene's bag in the output folder, written unless one with the same
    arguments is there (marker ``demo_bag.json`` beside ``metadata.yaml``)."""

    want = {"scene": str(scene_dir), "width": s.width, "height": s.height, "frames": s.frames,
            "rate_hz": BAG_RATE_HZ, "noise": s.noise, "noise_ratio": s.noise_strength, "seed": 0,
            "storage": "mcap", "pose_source": s.pose_source}
    bag = s.out / (f"bag_{s.width}x{s.height}_f{s.frames}_{s.noise}{s.noise_strength:g}"
                   + ("_tf" if s.pose_source == "tf" else ""))
    marker = bag / BAG_MARKER
    if marker.is_file() and (bag / "metadata.yaml").is_file():
        try:
            have = json.loads(marker.read_text())
        except ValueError:
            have = {}
        if have.get("args") == want:
            return bag, dict(have.get("summary", {}), reused=True)
    if bag.exists():
        if not (bag / "metadata.yaml").is_file():
            raise DemoError(f"{bag} exists and is not a bag; remove it or choose another --out")
        shutil.rmtree(bag)   # a bag this demo wrote with other arguments
    # written aside and moved into place by the writer (its data file named after the folder);
    # a bag without the marker (interrupted here) is rewritten next time
    summary = write_scene_bag(scene_dir, bag, storage="mcap", rate_hz=BAG_RATE_HZ, noise=s.noise,
                              noise_ratio=s.noise_strength, seed=0, progress=True, pose_source=s.pose_source)
    keep = {"frames": summary["frames"], "topics": summary["topics"], "num_classes": summary["num_classes"],
            "changed_ratio": summary["noise_info"].get("changed_ratio")}
    write_json(marker, {"args": want, "summary": keep})
    return bag, dict(keep, reused=False)


# ============================================================================ subprocesses
class Child:
    """A subprocess whose merged stdout/stderr goes to a log file; remembers the
    last lines, sets ``ready`` when a line contains ``ready_text`` and echoes
    warnings/errors with a prefix."""

    def __init__(self, name: str, cmd: list, env: dict, cwd: Path, log_path: Path,
                 ready_text: Optional[str] = None, echo_warnings: bool = True):
        self.name, self.cmd, self.log_path = name, cmd, log_path
        self.ready = threading.Event()
        self.ready_text = ready_text
        self.echo = echo_warnings
        self.lines: list[str] = []
        self._log = open(log_path, "w", buffering=1)
        self._log.write("$ " + " ".join(cmd) + "\n")
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(cwd), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name=f"{name}-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._log.write(line)
            for part in line.replace("\r", "\n").splitlines():
                if not part.strip():
                    continue
                self.lines = (self.lines + [part])[-200:]
                if self.ready_text and self.ready_text in part:
                    self.ready.set()
                if self.echo and ("[WARN]" in part or "[ERROR]" in part or "[FATAL]" in part):
                    print(f"    [{self.name}] {part.strip()}", flush=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.lines[-n:])

    def stop(self, sig=signal.SIGINT, timeout: float = 20.0) -> tuple[Optional[int], float, bool]:
        """Send ``sig``, wait up to ``timeout`` s (then kill).  Returns (exit code,
        seconds from the signal to the exit, whether it had to be killed)."""
        killed = False
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        took = time.monotonic() - t0
        self._reader.join(timeout=5.0)
        self._log.close()
        return self.proc.returncode, took, killed


def child_env(s: Settings) -> dict:
    """The environment of the node and the player: private domain, discovery on this
    machine only, this package first on the path, one torch thread on a CPU."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(s.domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["PYTHONUNBUFFERED"] = "1"
    pkg_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                        if p and p != pkg_parent])
    if s.device == "cpu":
        # many OpenMP threads on a small, busy CPU slow a training step ~20x
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
    return env


def node_command(s: Settings, engine_path: Path, class_names: list) -> list:
    cmd = [sys.executable, "-m", "semnerf_ros.ros.node", "--ros-args"]
    if s.params_file is not None:
        cmd += ["--params-file", str(s.params_file)]
    else:  # no config/semnerf.yaml found: the values it would give for the built-in room
        cmd += ["-p", f"num_classes:={len(class_names)}",
                "-p", "class_names:=[" + ", ".join(f"'{c}'" for c in class_names) + "]",
                "-p", "use_depth:=true"]
    cmd += ["-p", f"device:={s.device}", "-p", f"engine_config:={engine_path}",
            "-p", f"publish_rate:={s.publish_rate}", "-p", f"render_scale:={s.render_scale}",
            "-p", f"export_path:={s.out / 'mesh_semantic.ply'}",
            "-p", f"map_path:={s.out / 'semnerf_map.pt'}",
            "-r", "rgb:=/camera/color/image_raw", "-r", "camera_info:=/camera/color/camera_info",
            "-r", "pose:=/camera/pose", "-r", "labels:=/segmentation/labels",
            "-r", "depth:=/camera/depth/image_raw"]
    if s.pose_source == "tf":   # poses from /tf + /tf_static at each image's stamp, not the pose topic
        cmd += ["-p", "pose_source:=tf"]
    return cmd


def player_command(s: Settings, bag: Path) -> list:
    return [sys.executable, "-m", "semnerf_ros.ros.bag_player", str(bag), "--rate", f"{s.rate:.6g}",
            "--wait-for-subscribers", "60"]


# ============================================================================ outputs
def _upscale(img: np.ndarray, f: int) -> np.ndarray:
    return img if f == 1 else np.repeat(np.repeat(img, f, axis=0), f, axis=1)


def save_strip(path: Path, item: Scored, num_classes: int, class_names: list) -> Path:
    """RGB | noisy input | published | ground truth, enlarged to >= 240 px wide panels."""

    im = item.images
    f = max(1, math.ceil(240 / im["published"].shape[1]))
    rgb = _upscale(im["rgb"], f) if im["rgb"] is not None else None
    strip = make_comparison_strip(_upscale(im["noisy"], f), _upscale(im["published"], f), _upscale(im["gt"], f),
                                  num_classes, class_names, rgb=rgb,
                                  titles=(["RGB"] if rgb is not None else [])
                                  + ["noisy input", "semnerf_node", "ground truth"])
    return write_image(path, strip)


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _percentiles(values: list) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=np.float64)
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "mean": float(a.mean())}


def _finite(v):
    return float(v) if v is not None and math.isfinite(float(v)) else None


# ============================================================================ the run
def run(s: Settings) -> int:
    """Run the five stages; returns the exit code (0 only when every stage ran and the
    published mIoU beats the noisy input's)."""
    return _DemoRun(s).run()


class _DemoRun:
    """The state of one demo run, one method per stage."""

    def __init__(self, s: Settings):
        self.s = s
        self.t_start = time.monotonic()
        self.stage_s: dict = {}
        self.failures: list[str] = []
        self.summary: dict = {"command": " ".join(["semnerf-demo"] + sys.argv[1:]), "device": s.device,
                              "out": str(s.out), "domain_id": s.domain_id}
        self.node: Optional[Child] = None
        self.player: Optional[Child] = None
        self.monitor: Optional[Monitor] = None
        self.shutdown = {"seconds": None, "exit_code": None, "killed": None}

    def run(self) -> int:
        s = self.s
        s.out.mkdir(parents=True, exist_ok=True)
        print(f"semnerf-demo: device {s.device}, output {s.out}, ROS_DOMAIN_ID={s.domain_id} "
              f"(discovery {os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')})", flush=True)
        scene_dir, bounds = self.scene()
        bag, class_names, num_classes = self.bag(scene_dir)
        engine_path = self.start_node(bounds, class_names)
        try:
            self.monitor = Monitor(s.domain_id, num_classes)
            self.wait_for_node()
            timeline = self.stream(bag)
            status, mesh = self.results()
            self.summary.update(self.scores(status, timeline, mesh, engine_path, num_classes, class_names))
        except (DemoError, MonitorError) as exc:
            self.failures.append(str(exc))
        finally:
            self.stop_all()
        sm = self.summary
        sm["wall_seconds"] = time.monotonic() - self.t_start
        sm["passed"] = not self.failures
        sm["failures"] = self.failures
        write_json(s.out / "summary.json", sm)
        _print_summary(sm)
        if self.failures:
            print("\nFAILED:\n  - " + "\n  - ".join(self.failures), file=sys.stderr, flush=True)
            return 1
        return 0

    # ---------------------------------------------------------------- 1. scene
    def scene(self) -> tuple:
        s = self.s
        _stage(1, f"scene: built-in room, {s.width}x{s.height} px, {s.frames} frames")
        t = time.monotonic()
        cached = scene_is_complete(default_scene_dir(s.frames, s.width, s.height, 0), s.frames, s.width, s.height, 0)
        scene_dir = ensure_scene(frames=s.frames, width=s.width, height=s.height, seed=0, progress=True)
        self.stage_s["scene"] = time.monotonic() - t
        info = json.loads((scene_dir / "intrinsics.json").read_text())
        room = np.asarray(info.get("room_bounds", [[-3.0, -2.5, 0.0], [3.0, 2.5, 2.7]]), dtype=np.float64)
        bounds = list(room[0] - 0.3) + list(room[1] + 0.3)
        print(f"      {scene_dir} ({'cached' if cached else 'generated'}, {self.stage_s['scene']:.1f} s)", flush=True)
        self.summary["scene"] = {"path": str(scene_dir), "width": s.width, "height": s.height, "frames": s.frames}
        return scene_dir, bounds

    # ---------------------------------------------------------------- 2. bag
    def bag(self, scene_dir: Path) -> tuple:
        s = self.s
        _stage(2, f"bag: {s.noise} label noise {s.noise_strength:g}, {BAG_RATE_HZ:g} Hz, ground truth on "
                  f"/segmentation/labels_gt")
        t = time.monotonic()
        bag, bag_info = ensure_bag(scene_dir, s)
        self.stage_s["bag"] = time.monotonic() - t
        custom = bag_custom_data(bag)
        class_names = json.loads(custom.get("semnerf.class_names", "null")) or list(CLASS_NAMES)
        num_classes = int(custom.get("semnerf.num_classes", len(class_names)))
        print(f"      {bag} ({'reused' if bag_info.get('reused') else 'written'}, {self.stage_s['bag']:.1f} s; "
              f"{num_classes} classes, {bag_info.get('frames', s.frames)} frames of {s.bag_seconds:.1f} s)",
              flush=True)
        self.summary["bag"] = {"path": str(bag), "rate_hz": BAG_RATE_HZ, "noise": s.noise,
                               "noise_ratio": s.noise_strength, "frames": bag_info.get("frames", s.frames),
                               "reused": bool(bag_info.get("reused"))}
        return bag, class_names, num_classes

    # ---------------------------------------------------------------- 3. node + player
    def start_node(self, bounds: list, class_names: list) -> Path:
        s = self.s
        engine_path = s.out / f"engine_{s.device.split(':')[0]}.yaml"
        s.engine_yaml = engine_config_text(s.device, bounds)
        engine_path.write_text(s.engine_yaml)
        s.params_file = find_params_file()
        _stage(3, "semnerf_node and semnerf-play")
        if s.params_file is None:
            print("      config/semnerf.yaml not found beside the package or in the ament index: passing the "
                  "room's classes with -p instead", flush=True)
        self.env = child_env(s)
        os.environ["ROS_DOMAIN_ID"] = str(s.domain_id)
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", self.env["ROS_AUTOMATIC_DISCOVERY_RANGE"])
        node_cmd = node_command(s, engine_path, class_names)
        print("      $ python " + " ".join(_short(a) for a in node_cmd[1:]), flush=True)
        self.t_node = time.monotonic()
        self.node = Child("node", node_cmd, self.env, s.out, s.out / "node.log", ready_text="semnerf_node ready")
        return engine_path

    def wait_for_node(self) -> None:
        node = self.node
        end = time.monotonic() + 180
        while not node.ready.is_set() and node.alive() and time.monotonic() < end:
            time.sleep(0.1)
        if not node.ready.is_set():
            raise DemoError("semnerf_node did not start " + (f"(exit code {node.proc.returncode})" if not node.alive()
                                                             else "within 180 s")
                            + f"; its log ({node.log_path}) ends:\n{node.tail()}")
        self.stage_s["node_start"] = time.monotonic() - self.t_node
        print(f"      node ready in {self.stage_s['node_start']:.1f} s (log: {node.log_path})", flush=True)

    # ---------------------------------------------------------------- 4. stream and score
    def stream(self, bag: Path) -> list:
        s, node, monitor = self.s, self.node, self.monitor
        pcmd = player_command(s, bag)
        print(f"      $ python {' '.join(_short(a) for a in pcmd[1:])}   (bag x{s.rate:.3g}: its {s.bag_seconds:.1f} s "
              f"play in {s.duration:.0f} s)", flush=True)
        player = self.player = Child("play", pcmd, self.env, s.out, s.out / "player.log")
        _stage(4, f"streaming for about {s.duration:.0f} s: published {TOPIC_SEMANTIC} vs noisy "
                  f"/segmentation/labels, both scored against /segmentation/labels_gt")
        print(f"      {'t[s]':>6} {'frames':>6} {'synced':>6} {'keyfr':>5} {'steps':>6} {'it/s':>5} "
              f"{'images':>6} {'mIoU pub':>8} {'mIoU noisy':>10} {'acc pub':>7} {'acc noisy':>9}", flush=True)
        timeline = []
        next_report = s.report_every
        last_cut = 0
        t_stream = time.monotonic()
        player_done_at = None
        hard_end = t_stream + s.duration * 1.5 + 90
        while True:
            time.sleep(0.25)
            monitor.process()
            if not node.alive():
                raise DemoError(f"semnerf_node exited (code {node.proc.returncode}) while streaming; its log "
                                f"ends:\n{node.tail()}")
            el = monitor.elapsed()
            if monitor.t0 is not None and el >= next_report:
                timeline.append(_report_row(monitor, last_cut, el))
                last_cut = len(monitor.scored)
                next_report += s.report_every
            if player_done_at is None and not player.alive():
                player_done_at = time.monotonic()
            if player_done_at is not None and time.monotonic() - player_done_at > 2.0 / s.publish_rate + 1.0:
                break
            if time.monotonic() > hard_end:
                self.failures.append(f"the player did not finish within {s.duration * 1.5 + 90:.0f} s")
                break
            if monitor.t0 is None and time.monotonic() - t_stream > 90:
                raise DemoError(f"no frame arrived from semnerf-play within 90 s; its log ({player.log_path}) "
                                f"ends:\n{player.tail()}")
        monitor.process(flush=True)
        if len(monitor.scored) > last_cut:
            timeline.append(_report_row(monitor, last_cut, monitor.elapsed()))
        player_rc, _, _ = player.stop(signal.SIGINT, timeout=10.0)
        if player_rc != 0:
            self.failures.append(f"semnerf-play exited with code {player_rc} (log {player.log_path}):\n"
                                 f"{player.tail()}")
        self.stage_s["stream"] = time.monotonic() - t_stream
        return timeline

    # ---------------------------------------------------------------- 5. results
    def results(self) -> tuple:
        """~/get_status, training paused, ~/export_mesh, the node stopped with SIGINT."""
        s, monitor, node = self.s, self.monitor, self.node
        _stage(5, "results: status, mesh, images, summary")
        status = monitor.call(GetStatus, f"/{NODE_NAME}/get_status", GetStatus.Request(), 30.0).status
        ok, reason = monitor.set_bool_parameter("training_enabled", False)
        print(f"      training paused for the export (training_enabled:=false): "
              f"{'ok' if ok else 'refused: ' + reason}", flush=True)
        t = time.monotonic()
        mesh_path = s.out / "mesh_semantic.ply"
        req = ExportMesh.Request(path=str(mesh_path), format="ply", semantic_colors=True,
                                 resolution=int(s.mesh_resolution))
        resp = monitor.call(ExportMesh, f"/{NODE_NAME}/export_mesh", req, timeout=600.0)
        self.stage_s["mesh"] = time.monotonic() - t
        mesh = {"path": str(resp.written_path or mesh_path), "success": bool(resp.success), "message": resp.message,
                "vertices": int(resp.vertex_count), "faces": int(resp.face_count),
                "resolution": int(s.mesh_resolution), "seconds": self.stage_s["mesh"]}
        if not resp.success or resp.face_count == 0:
            self.failures.append(f"~/export_mesh: {resp.message}")
        print(f"      ~/export_mesh: {resp.message}", flush=True)   # the node's message gives the time
        code, took, killed = node.stop(signal.SIGINT, timeout=20.0)
        self.shutdown = {"seconds": took, "exit_code": code, "killed": killed}
        if killed:
            self.failures.append("semnerf_node did not stop within 20 s of SIGINT and was killed")
        elif code != 0:
            self.failures.append(f"semnerf_node exited with code {code} after SIGINT; its log ends:\n{node.tail()}")
        print(f"      semnerf_node stopped {took:.2f} s after SIGINT (exit code {code})", flush=True)
        return status, mesh

    def scores(self, status, timeline: list, mesh: dict, engine_path: Path, num_classes: int,
               class_names: list) -> dict:
        """The summary's scores, training figures and images."""
        s, monitor = self.s, self.monitor
        scored = monitor.scored
        final_from = s.duration * 0.75
        final_items = [i for i in scored if i.t >= final_from] or scored[-max(1, len(scored) // 4):]
        final = monitor.scores(final_items)
        overall = monitor.scores(scored)
        pngs = []
        with_images = [i for i in scored if i.images is not None]
        if with_images:
            picks = {"early": with_images[0], "middle": with_images[len(with_images) // 2],
                     "final": with_images[-1]}
            for name, item in picks.items():
                pngs.append(str(save_strip(s.out / f"comparison_{name}.png", item, num_classes, class_names)))
        topics = [{"topic": str(name), "received": int(rec), "dropped": int(drop)}
                  for name, rec, drop in zip(status.topics, status.received, status.dropped)]
        reject = dict(zip([str(r) for r in status.reject_reasons], [int(c) for c in status.reject_counts]))
        steps = [r for r in monitor.status_log if r[1] > 0]
        mean_rate = None
        if len(steps) >= 2 and steps[-1][0] > steps[0][0]:
            mean_rate = (steps[-1][1] - steps[0][1]) / (steps[-1][0] - steps[0][0])
        rates = [r[2] for r in monitor.status_log if r[2] > 0]
        training = {"steps": int(status.step), "keyframes": int(status.keyframes),
                    "keyframes_added": int(status.keyframes_added), "frames_synced": int(status.frames_synced),
                    "frames_rejected": int(status.frames_rejected), "reject_reasons": reject,
                    "iterations_per_second_mean": mean_rate,
                    "iterations_per_second_median": float(np.median(rates)) if rates else None,
                    "loss": _finite(status.loss), "psnr": _finite(status.psnr)}
        if not scored:
            self.failures.append(f"no published semantic image could be paired with the ground truth "
                                 f"({monitor.counts['semantic']} received, {monitor.unmatched} unmatched)")
        elif not (final.get("published_miou", float("nan")) > final.get("noisy_miou", float("nan"))):
            self.failures.append(f"the published mIoU {_fmt(final.get('published_miou'))} does not beat the noisy "
                                 f"input's {_fmt(final.get('noisy_miou'))} (final {len(final_items)} images)")
        if status.frames_synced == 0:
            self.failures.append("the node synchronised no frame")
        return {
            "settings": {"width": s.width, "height": s.height, "frames": s.frames, "duration_s": s.duration,
                         "rate": s.rate, "publish_rate_hz": s.publish_rate, "render_scale": s.render_scale,
                         "mesh_resolution": s.mesh_resolution, "params_file": str(s.params_file or ""),
                         "engine_config": str(engine_path)},
            "timeline": timeline,
            "final": dict(final, from_t=final_from),
            "overall": overall,
            "unmatched_images": monitor.unmatched,
            "monitor_received": dict(monitor.counts),
            "topics": topics,
            "training": training,
            "latency_s": _percentiles(monitor.latencies),
            "mesh": mesh,
            "pngs": pngs,
            "node_shutdown": self.shutdown,
            "stage_seconds": self.stage_s,
            "logs": {"node": str(self.node.log_path), "player": str(self.player.log_path)},
        }

    def stop_all(self) -> None:
        if self.player is not None and self.player.alive():
            self.player.stop(signal.SIGINT, timeout=5.0)
        if self.node is not None and self.node.alive():
            code, took, killed = self.node.stop(signal.SIGINT, timeout=20.0)
            self.summary["node_shutdown"] = {"seconds": took, "exit_code": code, "killed": killed}
        if self.monitor is not None:
            self.monitor.close()


def _short(arg: str) -> str:
    """Command-line arguments as printed: the home folder as ~."""
    home = str(Path.home())
    return "~" + arg[len(home):] if arg.startswith(home + os.sep) else arg


def _report_row(monitor: Monitor, cut: int, t: float) -> dict:
    window = monitor.scored[cut:]
    sc = monitor.scores(window)
    st = monitor.status
    row = {"t": round(t, 1), "frames_received": monitor.counts["labels_gt"],
           "frames_synced": int(st.frames_synced) if st else 0, "keyframes": int(st.keyframes) if st else 0,
           "steps": int(st.step) if st else 0,
           "iterations_per_second": float(st.iterations_per_second) if st else 0.0, **sc}
    print(f"      {row['t']:6.1f} {row['frames_received']:6d} {row['frames_synced']:6d} {row['keyframes']:5d} "
          f"{row['steps']:6d} {row['iterations_per_second']:5.1f} {sc['images']:6d} "
          f"{_fmt(sc.get('published_miou')):>8} {_fmt(sc.get('noisy_miou')):>10} "
          f"{_fmt(sc.get('published_accuracy')):>7} {_fmt(sc.get('noisy_accuracy')):>9}", flush=True)
    return row


def _print_summary(sm: dict) -> None:
    print("\n" + "=" * 78)
    print("semnerf-demo summary")
    print("=" * 78)
    st = sm.get("settings", {})
    if st:
        print(f"device {sm['device']}; room {st['width']}x{st['height']} px, {st['frames']} frames; bag played "
              f"x{st['rate']:.3g} over {st['duration_s']:.0f} s; renders {st['publish_rate_hz']:g} Hz at scale "
              f"{st['render_scale']:g}; ROS_DOMAIN_ID {sm['domain_id']}")
    fin, ov = sm.get("final", {}), sm.get("overall", {})
    if fin.get("images"):
        print("\nlabel quality vs ground truth        mIoU   accuracy  images")
        print(f"  published, final quarter (t >= {fin['from_t']:.0f} s) {_fmt(fin['published_miou']):>6}   "
              f"{_fmt(fin['published_accuracy']):>6}  {fin['images']:6d}")
        print(f"  noisy input, same frames             {_fmt(fin['noisy_miou']):>6}   "
              f"{_fmt(fin['noisy_accuracy']):>6}  {fin['images']:6d}")
        print(f"  published, whole stream              {_fmt(ov['published_miou']):>6}   "
              f"{_fmt(ov['published_accuracy']):>6}  {ov['images']:6d}")
        print(f"  noisy input, same frames             {_fmt(ov['noisy_miou']):>6}   "
              f"{_fmt(ov['noisy_accuracy']):>6}  {ov['images']:6d}")
    tl = sm.get("timeline") or []
    if tl:
        print("\nmIoU over time (images received in each interval):")
        print("  " + "  ".join(f"{r['t']:>5.0f}s" for r in tl))
        print("  " + "  ".join(f"{_fmt(r.get('published_miou'), '.2f'):>6}" for r in tl) + "   published")
        print("  " + "  ".join(f"{_fmt(r.get('noisy_miou'), '.2f'):>6}" for r in tl) + "   noisy input")
    if sm.get("topics"):
        print("\nnode inputs (~/get_status)                 received  dropped")
        for tp in sm["topics"]:
            print(f"  {tp['topic']:<40} {tp['received']:8d} {tp['dropped']:8d}")
        tr = sm["training"]
        rej = ", ".join(f"{k} {v}" for k, v in tr["reject_reasons"].items()) or "none"
        print(f"  frames synced {tr['frames_synced']}, rejected {tr['frames_rejected']} ({rej}); "
              f"keyframes {tr['keyframes']}")
        print(f"  demo received: {sm['monitor_received']['semantic']} semantic images "
              f"({sm['unmatched_images']} unpaired), {sm['monitor_received']['labels_gt']} ground-truth frames")
        print(f"\ntraining: {tr['steps']} steps, {_fmt(tr['iterations_per_second_mean'], '.1f')} it/s mean "
              f"(median of ~/status {_fmt(tr['iterations_per_second_median'], '.1f')}), loss "
              f"{_fmt(tr['loss'])}, PSNR {_fmt(tr['psnr'], '.1f')} dB")
    lat = sm.get("latency_s", {})
    if lat.get("n"):
        print(f"latency (semantic image received - its RGB frame received, first render of each frame, "
              f"n={lat['n']}): p50 {lat['p50']:.2f} s, p90 {lat['p90']:.2f} s, p99 {lat['p99']:.2f} s, "
              f"max {lat['max']:.2f} s")
    mesh = sm.get("mesh")
    if mesh:
        print(f"mesh: {mesh['path']} ({mesh['vertices']} vertices, {mesh['faces']} faces, resolution "
              f"{mesh['resolution']}, {mesh['seconds']:.1f} s)")
    for p in sm.get("pngs", []):
        print(f"image: {p}")
    sd = sm.get("node_shutdown") or {}
    if sd.get("seconds") is not None:
        print(f"node shutdown after SIGINT: {sd['seconds']:.2f} s (exit code {sd['exit_code']})")
    stages = sm.get("stage_seconds", {})
    print(f"wall time {sm['wall_seconds']:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())
          + f"); summary: {Path(sm['out']) / 'summary.json'}")
    fin_ok = sm.get("passed")
    if fin_ok:
        print(f"RESULT: PASS - published mIoU {_fmt(fin['published_miou'])} > noisy input "
              f"{_fmt(fin['noisy_miou'])}")
    else:
        print("RESULT: FAIL")
    sys.stdout.flush()
