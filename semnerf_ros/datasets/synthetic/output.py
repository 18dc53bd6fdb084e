"""Writing a synthetic scene to disk in the Replica layout, and the scene cache.

``make_scene(out, frames, width, height, seed)`` writes::

    rgb/rgb_<i>.png, depth/depth_<i>.png (uint16 mm, 0 = no depth), semantic_class/semantic_class_<i>.png
    (uint8, 0 = void), semantic_instance/semantic_instance_<i>.png (uint16, 0 = nothing),
    traj_w_c.txt (camera-to-world, OpenCV axes, world z up, metres), intrinsics.json,
    mesh_gt.ply (per-vertex colour and integer ``label`` = class id), scene.json
    (completion marker: arguments, statistics, floor plan, path facts).

``replica.load_replica`` reads it.  ``ensure_scene`` keeps one generated copy per
argument set in ``$SEMNERF_CACHE_DIR`` (default ``~/.cache/semnerf_ros``).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ...engine.geometry import Intrinsics
from ...io.ply import write_ply
from .geometry import CLASS_NAMES, SceneGeometry
from .layout import build_room, camera_path
from .rendering import Renderer, iter_batches
from .trajectory import path_report

#: Bumped whenever the output of some seed changes (v2: the family of houses for seeds != 0;
#: seed 0's images, depth, labels and mesh are unchanged since v1).
GENERATOR_VERSION = 2
HFOV_DEG = 90.0
DEPTH_SCALE = 1000.0  # depth PNG units per metre (mm)
FPS = 30.0
NEAR_DEPTH_M = 0.4    # depth below which pixels count as "near" in the statistics
COMPLETION_MARKER = "scene.json"
_IN_PROGRESS_MARKER = ".generating"


def roundtrip_poses(poses: np.ndarray) -> tuple:
    """The trajectory text and the poses parsed back from it (what the files hold)."""
    lines = [" ".join(f"{v:.17g}" for v in T.reshape(-1)) for T in poses]
    text = "\n".join(lines) + "\n"
    back = np.array([[float(v) for v in ln.split()] for ln in lines]).reshape(-1, 4, 4)
    return text, back


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """float32 metres -> uint16 millimetres as the depth PNGs store them (0 stays 0)."""
    return np.clip(np.round(depth * DEPTH_SCALE), 0, 65535).astype(np.uint16)


class SceneStats:
    """Running statistics of rendered frames (``scene.json``)."""

    def __init__(self):
        self.class_pixels = np.zeros(len(CLASS_NAMES), np.int64)
        self.seen_instances: set = set()
        self.depth_sum, self.depth_count, self.near_count = 0.0, 0, 0
        self.max_depth, self.min_depth = 0.0, float("inf")
        self.pixels = 0
        self.no_hit = 0

    def add(self, r: dict) -> None:
        valid = r["depth"] > 0
        self.pixels += int(valid.size)
        self.no_hit += int((~valid).sum())
        self.depth_sum += float(r["depth"][valid].sum(dtype=np.float64))
        self.depth_count += int(valid.sum())
        self.near_count += int((valid & (r["depth"] < NEAR_DEPTH_M)).sum())
        self.max_depth = max(self.max_depth, float(r["depth"].max()))
        if valid.any():
            self.min_depth = min(self.min_depth, float(r["depth"][valid].min()))
        self.class_pixels += np.bincount(r["labels"].reshape(-1), minlength=len(CLASS_NAMES))
        self.seen_instances.update(np.unique(r["instances"]).tolist())

    def to_dict(self, geom: SceneGeometry, args: dict, extra: bool) -> dict:
        instance_to_class = {int(i): int(c) for i, c in enumerate(geom.instance_class) if i > 0}
        per_class_instances: dict = {}
        for _, c in instance_to_class.items():
            per_class_instances[CLASS_NAMES[c]] = per_class_instances.get(CLASS_NAMES[c], 0) + 1
        out = {
            "generator_version": GENERATOR_VERSION,
            "args": args,
            "classes": CLASS_NAMES,
            "instances_per_class": per_class_instances,
            "class_pixel_fraction": {CLASS_NAMES[k]: round(float(v) / max(1, self.class_pixels.sum()), 6)
                                     for k, v in enumerate(self.class_pixels)},
            "instances_seen": int(len(self.seen_instances - {0})),
            "mean_depth_m": round(self.depth_sum / max(1, self.depth_count), 4),
            "max_depth_m": round(self.max_depth, 4),
            "near_fraction_below_0.4m": round(self.near_count / max(1, self.depth_count), 6),
            "hit_fraction": round(self.depth_count / float(max(1, self.pixels)), 6),
        }
        if extra:
            out["min_depth_m"] = round(self.min_depth, 4) if self.depth_count else 0.0
        return out


def scene_info(geom: SceneGeometry, intr: Intrinsics) -> dict:
    """The ``intrinsics.json`` content: camera, classes, instances, world facts."""
    instance_to_class = {int(i): int(c) for i, c in enumerate(geom.instance_class) if i > 0}
    lo, hi = geom.plan.bounds()
    return dict(intr.to_dict(), hfov=HFOV_DEG, depth_scale=DEPTH_SCALE, fps=FPS,
                class_names=CLASS_NAMES, instance_to_class=instance_to_class,
                instance_names=list(geom.instance_names), world_up=[0.0, 0.0, 1.0],
                room_bounds=[[float(lo[0]), float(lo[1]), 0.0], [float(hi[0]), float(hi[1]), float(geom.plan.height)]])


def _write_png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")


def _prepare_out_dir(out: Path) -> None:
    """Create ``out``, or clear a previous generator output in it.  A non-empty
    folder that the generator did not write is refused."""
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"output path exists and is not a folder: {out}")
        entries = list(out.iterdir())
        ours = (out / COMPLETION_MARKER).is_file() or (out / _IN_PROGRESS_MARKER).is_file()
        if entries and not ours:
            raise FileExistsError(f"output folder {out} is not empty and was not written by "
                                  f"semnerf-make-scene; choose another folder")
        for sub in ("rgb", "depth", "semantic_class", "semantic_instance"):
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
        for f in ("traj_w_c.txt", "intrinsics.json", "mesh_gt.ply", COMPLETION_MARKER):
            if (out / f).exists():
                (out / f).unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / _IN_PROGRESS_MARKER).write_text("generation in progress\n")
    for sub in ("rgb", "depth", "semantic_class", "semantic_instance"):
        (out / sub).mkdir()


def check_args(frames: int, width: int, height: int) -> None:
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if width < 8 or height < 8:
        raise ValueError(f"image size must be at least 8x8, got {width}x{height}")


def make_scene(out_dir, frames: int = 300, width: int = 320, height: int = 240, seed: int = 0,
               progress: bool = True, batch: int = 8, render_threads: int = 2, raycaster: str = "auto",
               device=None) -> Path:
    """Generate the synthetic house ``seed`` as a sequence into ``out_dir`` (Replica
    layout) and return it.

    Frames are rendered in batches of ``batch`` by ``render_threads`` threads and
    written by two PNG threads.  ``raycaster``: ``auto`` (Open3D when it imports,
    else torch), ``open3d`` or ``torch``; ``device`` for the torch caster.
    Deterministic for the arguments.  Raises ``ValueError`` for bad arguments and
    ``FileExistsError`` if ``out_dir`` holds unrelated files.
    """
    check_args(frames, width, height)

    t_start = time.perf_counter()
    out = Path(out_dir).expanduser()
    _prepare_out_dir(out)
    geom = build_room(seed)
    intr = Intrinsics.from_hfov(width, height, HFOV_DEG)
    renderer = Renderer(geom, intr, seed, raycaster=raycaster, device=device)
    traj_text, poses = roundtrip_poses(camera_path(frames, seed, geometry=geom))
    (out / "traj_w_c.txt").write_text(traj_text)

    stats = SceneStats()
    pending = []
    with ThreadPoolExecutor(max_workers=2) as pool, \
            tqdm(total=frames, desc=f"rendering scene (seed {seed})", unit="frame", disable=not progress) as bar:
        for ids, r in iter_batches(renderer, poses, range(frames), batch, render_threads):
            for j, i in enumerate(ids):
                pending += [
                    pool.submit(_write_png, out / "rgb" / f"rgb_{i}.png",
                                np.ascontiguousarray(r["rgb"][j][:, :, ::-1])),
                    pool.submit(_write_png, out / "depth" / f"depth_{i}.png", depth_to_mm(r["depth"][j])),
                    pool.submit(_write_png, out / "semantic_class" / f"semantic_class_{i}.png", r["labels"][j]),
                    pool.submit(_write_png, out / "semantic_instance" / f"semantic_instance_{i}.png",
                                r["instances"][j]),
                ]
            stats.add(r)
            if len(pending) > 64:  # bound memory: wait for older writes
                for f in pending[:-32]:
                    f.result()
                pending = pending[-32:]
            bar.update(len(ids))
        for f in pending:
            f.result()

    (out / "intrinsics.json").write_text(json.dumps(scene_info(geom, intr), indent=1, sort_keys=True) + "\n")
    vcol = renderer.shader.vertex_colors()
    vlab = geom.part_class[geom.vertex_part]
    write_ply(out / "mesh_gt.ply", geom.vertices.astype(np.float32), geom.triangles, vcol, vlab)

    info = stats.to_dict(geom, {"frames": frames, "width": width, "height": height, "seed": seed}, extra=True)
    info["raycaster"] = renderer.raycaster
    info["plan"] = geom.plan.to_dict()
    info["path"] = path_report(poses, geom.plan)
    (out / COMPLETION_MARKER).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    (out / _IN_PROGRESS_MARKER).unlink()
    if progress:
        print(f"wrote {frames} frames {width}x{height} to {out} in "
              f"{time.perf_counter() - t_start:.1f} s", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- cache

def _cache_root() -> Path:
    env = os.environ.get("SEMNERF_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "semnerf_ros"


def default_scene_dir(frames: int = 300, width: int = 320, height: int = 240, seed: int = 0) -> Path:
    """The cache folder for a scene with these arguments
    (``$SEMNERF_CACHE_DIR`` or ``~/.cache/semnerf_ros``)."""
    return _cache_root() / f"scene_v{GENERATOR_VERSION}_f{frames}_{width}x{height}_s{seed}"


def scene_is_complete(path, frames=None, width=None, height=None, seed=None) -> bool:
    """True if ``path`` holds a finished scene (matching the given arguments, if any)."""
    marker = Path(path) / COMPLETION_MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if info.get("generator_version") != GENERATOR_VERSION:
        return False
    want = {"frames": frames, "width": width, "height": height, "seed": seed}
    return all(v is None or info.get("args", {}).get(k) == v for k, v in want.items())


def ensure_scene(frames: int = 300, width: int = 320, height: int = 240, seed: int = 0,
                 path=None, progress: bool = True, raycaster: str = "auto", device=None) -> Path:
    """Return a finished scene folder, generating it once (into a temporary
    sibling folder renamed into place, so concurrent callers are safe)."""
    target = Path(path).expanduser() if path is not None else default_scene_dir(frames, width, height, seed)
    if scene_is_complete(target, frames, width, height, seed):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not (target / _IN_PROGRESS_MARKER).exists() and \
            not (target / COMPLETION_MARKER).exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and does not hold a generated scene")
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        make_scene(tmp, frames, width, height, seed, progress=progress, raycaster=raycaster, device=device)
        if scene_is_complete(target, frames, width, height, seed):
            return target  # someone else finished first
        if target.exists():
            shutil.rmtree(target)  # stale or outdated scene
        try:
            os.rename(tmp, target)
        except OSError:
            if not scene_is_complete(target, frames, width, height, seed):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
