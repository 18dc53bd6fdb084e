"""``semnerf-mesh``: a coloured or semantic mesh from a saved map (the seed's
``SSR/extract_colour_mesh.py``); extraction in :mod:`semnerf_ros.engine.mesh`."""
from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..bridge.progress import EXPORT_STAGES, StageProgress
from ..engine.mapper import Mapper
from ..engine.mesh import _FORMATS, NoSurfaceError, _face_components, _resolve_format, write_mesh


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="semnerf-mesh",
        description="Extract a coloured or semantic mesh from a saved semnerf map "
                    "(the seed's SSR/extract_colour_mesh.py).")
    p.add_argument("--map", required=True, help="map file written by Mapper.save")
    p.add_argument("--sem", action="store_true", help="colour vertices by class (palette) instead of RGB")
    p.add_argument("--resolution", "--grid_dim", dest="resolution", type=int, default=256,
                   help="voxels along the longest side of the bounds (seed: --grid_dim 256)")
    p.add_argument("--threshold", type=float, default=None,
                   help="density iso-level sigma in 1/m (default: the map's default, else 10)")
    p.add_argument("--bounds", type=float, nargs=6, metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                   help="world box in metres (default: the map's scene bounds)")
    p.add_argument("--save_dir", default=None,
                   help="output folder; the mesh goes to SAVE_DIR/mesh_reconstruction/ (default: beside the map)")
    p.add_argument("--output", "-o", default=None, help="output file (overrides --save_dir)")
    p.add_argument("--format", choices=_FORMATS, default=None, help="mesh format (default: from --output or ply)")
    p.add_argument("--clean", type=int, nargs="?", const=400, default=0, metavar="MIN_FACES",
                   help="drop connected components under MIN_FACES faces (flag alone: 400, the seed's)")
    p.add_argument("--near_t", type=float, default=2.0,
                   help="colour rays start 0.1*near_t m outside the surface (seed's option)")
    p.add_argument("--device", default=None, help="torch device for the map, e.g. cuda, cuda:1, cpu")
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

    if args.resolution < 2:
        return fail(2, f"--resolution must be >= 2, got {args.resolution}")
    if args.near_t <= 0:
        return fail(2, f"--near_t must be > 0, got {args.near_t}")
    if args.bounds is not None and not all(args.bounds[i] < args.bounds[i + 3] for i in range(3)):
        return fail(2, f"--bounds min must be below max on every axis, got {args.bounds}")
    map_path = Path(args.map)
    if not map_path.is_file():
        return fail(2, f"map file not found: {map_path}")
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
        base = Path(args.save_dir) if args.save_dir else map_path.parent
        out = base / "mesh_reconstruction" / (f"{'semantic' if args.sem else 'colour'}_mesh_dim{args.resolution}"
                                              f"_neart{args.near_t:g}.{fmt}")
    t0 = time.perf_counter()
    try:
        mapper = _load_map(str(map_path), args.device)
    except ImportError as exc:
        return fail(1, f"cannot import the mapper: {exc}")
    except Exception as exc:  # noqa: BLE001 - any failure to read the map is the user's input
        return fail(2, f"cannot load map {map_path}: {type(exc).__name__}: {exc}")
    t_load = time.perf_counter() - t0
    bar = tracker = None
    if args.progress:
        bar, progress, tracker = _progress_bar()
        tracker.update("checking", 1, 1)
    try:
        kwargs = {"resolution": args.resolution, "density_threshold": args.threshold,
                  "bounds": None if args.bounds is None else np.asarray(args.bounds).reshape(2, 3)}
        optional = {"min_component_faces": args.clean, "normal_offset": 0.1 * args.near_t,
                    "progress": progress if args.progress else False}
        post_clean = False
        for key, value in optional.items():
            if _accepts(mapper.extract_mesh, key):
                kwargs[key] = value
            elif key == "min_component_faces" and value:
                post_clean = True
            elif key == "normal_offset" and args.near_t != 2.0:
                print("semnerf-mesh: warning: this map's extract_mesh does not take normal_offset; "
                      "--near_t ignored", file=sys.stderr)
        mesh = mapper.extract_mesh(**kwargs)
        if post_clean and mesh.num_faces:   # the mapper does not forward min_component_faces
            comp = _face_components(mesh.faces, mesh.num_vertices)
            mesh = mesh.submesh(np.bincount(comp)[comp] >= args.clean)
        if args.output is None:
            out.parent.mkdir(parents=True, exist_ok=True)
        if tracker is not None:
            tracker.update("writing", 0, 1)
        path = write_mesh(mesh, out, fmt=fmt, semantic_colors=args.sem)
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
          f"{'semantic' if args.sem else 'rendered'} colours, {seconds:.2f} s "
          f"(load {t_load:.2f} s, extract {mesh.stats.get('seconds_total', float('nan')):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
