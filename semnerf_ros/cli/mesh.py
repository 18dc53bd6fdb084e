"""``semnerf-mesh``: a coloured or semantic mesh from a saved map or a seed checkpoint (the seed's
``SSR/extract_colour_mesh.py``); extraction in :mod:`semnerf_ros.engine.mesh`.

``--protocol seed`` (the default for the paper's MLPs) meshes as the seed: its iso-level (occupancy
0.45 at ``(far - near) / N_importance``, 7.7 /m by default), components under 400 faces dropped,
vertex normals from the mesh faces, colours and classes rendered along full rays (0.1 to 10 m,
from ``0.1 * near_t`` m outside each vertex), the uncoloured ``mesh_canonical.ply`` beside the
coloured mesh, and the seed's file names.  ``--mesh_dir`` takes the grid from the ground-truth
mesh's oriented box (``<mesh_dir>/mesh.ply``), as the seed."""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from .. import train as train_mod
from ..bridge.progress import EXPORT_STAGES, StageProgress
from ..engine.config import PROTOCOLS, default_protocol, load_config
from ..engine.mapper import Mapper
from ..engine.mesh import (
    _FORMATS,
    DEFAULT_NORMAL_OFFSET,
    SEED_MIN_COMPONENT_FACES,
    SEED_NORMAL_OFFSET,
    SEED_RAY_NEAR_FAR,
    NoSurfaceError,
    _face_components,
    _resolve_format,
    oriented_box,
    seed_box_bounds,
    seed_density_threshold,
    write_mesh,
)
from ..engine.seed_checkpoint import SeedCheckpointError, import_seed_checkpoint
from ..io.ply import write_ply


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="semnerf-mesh",
        description="Extract a coloured or semantic mesh from a saved semnerf map or a Semantic-NeRF (seed) "
                    "checkpoint (the seed's SSR/extract_colour_mesh.py; docs/seed_parity.md).")
    p.add_argument("--map", default=None,
                   help="map file written by Mapper.save, or the seed's .ckpt; default: <save_dir>/checkpoints/"
                        "latest.pt, else the newest <save_dir>/checkpoints/*.ckpt (the seed reads 200000.ckpt)")
    p.add_argument("--sem", action="store_true", help="colour vertices by class (palette) instead of RGB")
    p.add_argument("--resolution", "--grid_dim", dest="resolution", type=int, default=256,
                   help="voxels along the longest side of the bounds (seed: --grid_dim 256)")
    p.add_argument("--threshold", type=float, default=None,
                   help="density iso-level sigma in 1/m (default: the seed's 7.7 under --protocol seed, else 10)")
    p.add_argument("--bounds", type=float, nargs=6, metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                   help="world box in metres (default: --mesh_dir's oriented box, else the map's scene bounds)")
    p.add_argument("--mesh_dir", default=None,
                   help="the ground-truth scene (the seed's: <mesh_dir>/mesh.ply, e.g. Replica/room_0/; or a mesh "
                        "file): the grid spans its oriented bounding box, grown by 1/0.9, as the seed")
    p.add_argument("--training_data_dir", default=None,
                   help="the training sequence: class names and colours (and, for a seed checkpoint, the class "
                        "count and the scene bounds)")
    p.add_argument("--config_file", default=None,
                   help="the training config (read for a seed checkpoint; a map file carries its own)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="seed: the seed's iso-level, 400-face cleaning, full-ray colouring along vertex normals, "
                        "mesh_canonical.ply and file names; semnerf: this package's. Default: seed for the paper's "
                        "MLPs, semnerf for the hash field")
    p.add_argument("--use_vertex_normal", action="store_true",
                   help="colour along full rays against the mesh's vertex normals (the seed's method; always "
                        "on under --protocol seed)")
    p.add_argument("--canonical", action="store_true",
                   help="also write the uncoloured marching-cubes mesh mesh_canonical.ply (on under --protocol seed)")
    p.add_argument("--save_dir", default=None,
                   help="output folder; the mesh goes to SAVE_DIR/mesh_reconstruction/ (default: beside the map)")
    p.add_argument("--output", "-o", default=None, help="output file (overrides --save_dir)")
    p.add_argument("--format", choices=_FORMATS, default=None, help="mesh format (default: from --output or ply)")
    p.add_argument("--clean", type=int, nargs="?", const=400, default=None, metavar="MIN_FACES",
                   help="drop connected components under MIN_FACES faces (flag alone: 400, the seed's; default: "
                        "400 under --protocol seed, else 0)")
    p.add_argument("--near_t", type=float, default=None,
                   help="colour rays start 0.1*near_t m outside the surface (seed's option; default: 2.0, the "
                        "seed's, under --protocol seed, else 0.5: 5 cm, which labels thin objects right)")
    p.add_argument("--device", default=None, help="torch device for the map, e.g. cuda, cuda:1, cpu")
    p.add_argument("--gpu", default="", help="GPU IDs (sets CUDA_VISIBLE_DEVICES, the seed's flag)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def _load_map(path: str, device):
    return Mapper.load(path, device=device)


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind == p.VAR_KEYWORD for p in params)


def _default_map(save_dir: Optional[str]) -> Optional[Path]:
    """<save_dir>/checkpoints/latest.pt, else the seed's newest <save_dir>/checkpoints/<step>.ckpt."""
    if not save_dir:
        return None
    ckpt_dir = Path(save_dir) / "checkpoints"
    if (ckpt_dir / "latest.pt").is_file():
        return ckpt_dir / "latest.pt"
    seeds = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: (len(p.stem), p.stem))
    return seeds[-1] if seeds else None


def _gt_mesh(mesh_dir: str) -> Path:
    p = Path(mesh_dir)
    return p if p.is_file() else p / "mesh.ply"


def _training_scene(args, cfg):
    """The training sequence (for class names, colours and bounds), loaded as the trainer does."""
    cfg = dict(cfg, experiment=dict(cfg["experiment"], dataset_dir=args.training_data_dir))
    return train_mod._load_scene(cfg, args.progress, "seed")


def _palette(map_path: Path, mapper, scene) -> Optional[np.ndarray]:
    """The seed's class colours (the VOC row of each class's id in the files): from the training
    data, else from the run_info.json that semnerf-train wrote beside the map's checkpoints."""
    if scene is not None and list(scene.class_names) == list(mapper.class_names):
        return train_mod.class_palette(scene)
    for folder in (map_path.parent, map_path.parent.parent):
        info = folder / "run_info.json"
        if info.is_file():
            try:
                data = json.loads(info.read_text())
            except (OSError, ValueError):
                return None
            ids = data.get("class_ids_original")
            if data.get("class_names") == list(mapper.class_names) and ids:
                return train_mod.class_palette(type("S", (), {"class_ids_original": np.asarray(ids),
                                                              "num_classes": len(ids)})())
    return None


def _progress_bar():
    """One bar for the whole export (stages weighted as the node's export action reports them):
    (bar, ``progress(stage, done, total)`` for the extraction, the StageProgress)."""
    bar = tqdm(total=100, desc="mesh", unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} "
                                                            "[{elapsed}<{remaining}]", file=sys.stderr)

    def show(stage, stage_fraction, fraction):
        bar.n = round(100 * fraction, 1)
        bar.set_postfix_str(stage.replace("_", " "), refresh=False)
        bar.refresh()

    tracker = StageProgress(EXPORT_STAGES, show, min_interval=0.1)
    return bar, tracker.engine_callback(), tracker


def main(argv=None) -> int:
    """``semnerf-mesh``: exit 0 ok, 2 bad arguments or unreadable map, 1 other errors."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:       # argparse printed the problem on stderr
        return int(exc.code or 0)

    def fail(code, msg):
        print(f"semnerf-mesh: error: {msg}", file=sys.stderr)
        return code

    def note(msg):
        print(f"semnerf-mesh: {msg}", file=sys.stderr)

    if args.resolution < 2:
        return fail(2, f"--resolution must be >= 2, got {args.resolution}")
    if args.near_t is not None and args.near_t <= 0:
        return fail(2, f"--near_t must be > 0, got {args.near_t}")
    if args.bounds is not None and not all(args.bounds[i] < args.bounds[i + 3] for i in range(3)):
        return fail(2, f"--bounds min must be below max on every axis, got {args.bounds}")
    if args.bounds is not None and args.mesh_dir is not None:
        return fail(2, "--bounds and --mesh_dir both set the region: give one")
    train_mod.select_gpus(args.gpu)
    map_path = Path(args.map) if args.map else _default_map(args.save_dir)
    if map_path is None:
        return fail(2, "no map: give --map, or --save_dir holding checkpoints/latest.pt or the seed's *.ckpt")
    if not map_path.is_file():
        return fail(2, f"map file not found: {map_path}")
    if args.mesh_dir is not None and not _gt_mesh(args.mesh_dir).is_file():
        return fail(2, f"--mesh_dir: ground-truth mesh not found: {_gt_mesh(args.mesh_dir)}")
    if args.output is not None:
        out = Path(args.output)
        suffix = out.suffix.lower().lstrip(".")
        if args.format and suffix and suffix != args.format:
            return fail(2, f"--output {out} has extension .{suffix} but --format is {args.format}")
        try:
            out, fmt = _resolve_format(out, args.format)
        except ValueError as exc:
            return fail(2, str(exc))
    else:
        fmt = args.format or "ply"
        out = None
    t0 = time.perf_counter()
    scene = None
    try:
        if map_path.suffix == ".ckpt":    # the seed's checkpoint
            cfg = load_config(args.config_file)
            if args.training_data_dir is None and args.bounds is None and args.mesh_dir is None:
                return fail(2, "a seed checkpoint needs --training_data_dir (classes and bounds), or --bounds / "
                               "--mesh_dir for the region")
            if args.training_data_dir:
                scene = _training_scene(args, cfg)
                r = cfg["render"]
                bounds = train_mod.scene_bounds_from_data(scene, scene.train_ids, r["depth_range"], r["bounds_margin"])
                names = scene.class_names
            else:
                box = np.asarray(args.bounds, float).reshape(2, 3) if args.bounds is not None else None
                if box is None:
                    T, ext = oriented_box(_gt_mesh(args.mesh_dir))
                    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * ext / 2
                    w = corners @ T[:3, :3].T + T[:3, 3]
                    box = np.stack([w.min(0), w.max(0)])
                bounds, names = box, None
            mapper = import_seed_checkpoint(map_path, cfg, names, bounds, device=args.device or "auto")
            note(f"imported the seed checkpoint {map_path} (step {mapper.step_count})")
        else:
            if args.config_file:
                note("--config_file is read for seed checkpoints only: this map carries its own config")
            mapper = _load_map(str(map_path), args.device)
            if args.training_data_dir:
                scene = _training_scene(args, getattr(mapper, "cfg", None) or load_config(None))
    except ImportError as exc:
        return fail(1, f"cannot import the mapper: {exc}")
    except SeedCheckpointError as exc:
        return fail(2, str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure to read the map is the user's input
        return fail(2, f"cannot load map {map_path}: {type(exc).__name__}: {exc}")
    t_load = time.perf_counter() - t0

    cfg = getattr(mapper, "cfg", None)
    protocol = args.protocol or (default_protocol(cfg["model"]["type"]) if cfg else "semnerf")
    seed = protocol == "seed"
    full_ray = seed or args.use_vertex_normal
    near_t = args.near_t if args.near_t is not None else \
        (SEED_NORMAL_OFFSET if seed else DEFAULT_NORMAL_OFFSET) / SEED_RAY_NEAR_FAR[0]
    clean = args.clean if args.clean is not None else (SEED_MIN_COMPONENT_FACES if seed else 0)
    threshold = args.threshold
    if threshold is None and seed and cfg:
        threshold = seed_density_threshold(cfg["render"]["depth_range"], cfg["render"]["N_importance"])
    if out is None:
        base = (Path(args.save_dir) if args.save_dir else map_path.parent) / "mesh_reconstruction"
        kind = "semantic" if args.sem else "colour"
        if seed:   # the seed's names: use_vertex_normal/<kind>_mesh_canonical_dim256neart_2.0.ply
            out = base / "use_vertex_normal" / f"{kind}_mesh_canonical_dim{args.resolution}neart_{near_t}.{fmt}"
        else:
            out = base / f"{kind}_mesh_dim{args.resolution}_neart{near_t:g}.{fmt}"
    canonical = out.parent.parent / "mesh_canonical.ply" if (seed and args.output is None) else \
        out.with_name("mesh_canonical.ply")
    write_canonical = seed or args.canonical

    bar = tracker = None
    if args.progress:
        bar, progress, tracker = _progress_bar()
        tracker.update("checking", 1, 1)
    try:
        kwargs = {"resolution": args.resolution, "density_threshold": threshold,
                  "bounds": None if args.bounds is None else np.asarray(args.bounds).reshape(2, 3)}
        optional = {"min_component_faces": clean, "normal_offset": SEED_RAY_NEAR_FAR[0] * near_t,
                    "progress": progress if args.progress else False}
        if args.mesh_dir is not None:
            T, ext = oriented_box(_gt_mesh(args.mesh_dir))
            kwargs["bounds"] = seed_box_bounds(ext)
            optional["transform"] = T
        if full_ray:
            optional.update(sample_mode="full_ray", normal_source="faces")  # the map's renderer (Mapper)
        palette = _palette(map_path, mapper, scene) if hasattr(mapper, "class_names") else None
        if palette is not None:
            optional["palette"] = palette
        raw = {}
        if write_canonical:
            optional["on_raw_mesh"] = lambda v, f, n: raw.update(v=v, f=f)
        post_clean = False
        for key, value in optional.items():
            if _accepts(mapper.extract_mesh, key):
                kwargs[key] = value
            elif key == "min_component_faces" and value:
                post_clean = True
            elif key == "normal_offset" and args.near_t is not None:
                print("semnerf-mesh: warning: this map's extract_mesh does not take normal_offset; "
                      "--near_t ignored", file=sys.stderr)
        mesh = mapper.extract_mesh(**kwargs)
        if post_clean and mesh.num_faces:   # the mapper does not forward min_component_faces
            comp = _face_components(mesh.faces, mesh.num_vertices)
            mesh = mesh.submesh(np.bincount(comp)[comp] >= clean)
        if args.output is None:
            out.parent.mkdir(parents=True, exist_ok=True)
        if tracker is not None:
            tracker.update("writing", 0, 1)
        path = write_mesh(mesh, out, fmt=fmt, semantic_colors=args.sem)
        if write_canonical and "v" in raw:
            write_ply(canonical, raw["v"], raw["f"])
            note(f"wrote the uncoloured marching-cubes mesh {canonical}: {len(raw['v'])} vertices, "
                 f"{len(raw['f'])} faces")
        if tracker is not None:
            tracker.finish()
    except NoSurfaceError as exc:
        return fail(1, str(exc))
    except Exception as exc:  # noqa: BLE001 - reported, exit code 1
        return fail(1, f"{type(exc).__name__}: {exc}")
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    print(f"wrote {path}: {mesh.num_vertices} vertices, {mesh.num_faces} faces, "
          f"{'semantic' if args.sem else 'rendered'} colours, protocol {protocol}, {seconds:.2f} s "
          f"(load {t_load:.2f} s, extract {mesh.stats.get('seconds_total', float('nan')):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
