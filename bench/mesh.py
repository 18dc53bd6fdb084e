#!/usr/bin/env python3
"""Semantic mesh benchmark: extraction time and accuracy against the ground truth.

Loads a saved map (``Mapper.save``, e.g. from ``bench/online.py --save-map``),
extracts the mesh at each requested grid resolution (timing every stage), and
scores the finest one against a ground-truth mesh with per-vertex classes (the
built-in scene's ``mesh_gt.ply``): accuracy / completion / chamfer distance in
metres and the semantic vertex accuracy.  Writes JSON (``--out``).

    python bench/mesh.py --map results/map.pt --gt ~/.cache/semnerf_ros/scene_.../mesh_gt.ply
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semnerf_ros.engine.geometry import Intrinsics  # noqa: E402
from semnerf_ros.engine.mapper import Mapper  # noqa: E402
from semnerf_ros.engine.mesh import write_mesh  # noqa: E402
from semnerf_ros.io.ply import read_ply  # noqa: E402
from semnerf_ros.mesh_eval import mesh_accuracy, visible_mask  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--map", required=True)
    ap.add_argument("--gt", default="", help="ground-truth PLY with a per-vertex 'label' (default: the mesh "
                    "arrays of --scene-npz, as bench/make_rooms.py writes them, when it has them)")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--threshold", type=float, default=None, help="density iso-level (1/m)")
    ap.add_argument("--bounds-from-gt", action="store_true",
                    help="extract over the ground-truth mesh's box (plus 5 cm) instead of the map's")
    ap.add_argument("--samples", type=int, default=200000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--scene-npz", default="", help="training views (bench/online.py --export-npz) for the "
                    "observed-surface completion")
    ap.add_argument("--variants", nargs="*", default=[],
                    help="extra settings to score at the finest resolution, e.g. threshold=25 "
                         "normal_offset=0.05,sample_mode=point")
    ap.add_argument("--save-mesh", default="", help="write the finest mesh here (PLY)")
    ap.add_argument("--observed-only", action="store_true",
                    help="keep only the faces the map's keyframes saw (Mapper.extract_mesh(observed_only=True), "
                         "the node's default); variants inherit it and may set observed_only=0/1")
    ap.add_argument("--mc-backend", choices=("auto", "skimage", "torch"), default="auto",
                    help="marching cubes: scikit-image on the CPU, or engine/marching_cubes.py on the field's "
                         "device (auto: torch on CUDA)")
    ap.add_argument("--out", default="bench_mesh.json")
    args = ap.parse_args(argv)

    m = Mapper.load(args.map, device=args.device)
    gt = read_ply(args.gt) if args.gt else None
    if gt is None and args.scene_npz:
        z = np.load(args.scene_npz)
        if "mesh_vertices" in z.files:
            gt = {"vertices": z["mesh_vertices"].astype(np.float64), "faces": z["mesh_faces"].astype(np.int64),
                  "labels": z["mesh_labels"].astype(np.int64)}
    bounds = None
    if gt is not None and args.bounds_from_gt:
        v = gt["vertices"]
        bounds = np.stack([v.min(0) - 0.05, v.max(0) + 0.05])
    result = {"map": str(args.map), "device": str(m.device),
              "gpu": torch.cuda.get_device_name() if m.device.type == "cuda" else "", "extractions": []}
    # One untimed small extraction first: the first call compiles kernels and
    # initialises libraries (~1 s on a GPU), which no later extraction pays.
    t0 = time.perf_counter()
    first = m.extract_mesh(resolution=32, density_threshold=args.threshold, bounds=bounds, allow_empty=True)
    if first.num_faces == 0:   # an untrained map, or a threshold above its density: say so in the JSON
        result["error"] = first.stats.get("empty_reason", "no surface at 32^3")
        print(f"no mesh: {result['error']}", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        return 1
    result["warmup_seconds"] = time.perf_counter() - t0
    mesh = None
    for res in args.resolutions:
        mesh = None   # the previous mesh's tensors are not this extraction's memory
        if m.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(m.device)
            held = torch.cuda.memory_allocated(m.device)   # the map, its optimiser and the view snapshot
        t0 = time.perf_counter()
        mesh = m.extract_mesh(resolution=res, density_threshold=args.threshold, bounds=bounds,
                              observed_only=args.observed_only, mc_backend=args.mc_backend)
        if m.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        rec = {"resolution": res, "seconds": dt, "vertices": mesh.num_vertices, "faces": mesh.num_faces,
               "stages": {k: v for k, v in mesh.stats.items() if isinstance(v, (int, float))}}
        peak = ""
        if m.device.type == "cuda":
            # the whole extraction's peak (snapshot, grid, marching cubes, filter, shading), as allocated
            # by PyTorch: above the map's own memory and in total
            top = torch.cuda.max_memory_allocated(m.device)
            rec["peak_gpu_memory_mb"] = {"extra": (top - held) / 2 ** 20, "total": top / 2 ** 20,
                                         "map_before": held / 2 ** 20}
            peak = f", peak GPU memory +{(top - held) / 2 ** 20:.0f} MB ({top / 2 ** 20:.0f} MB in all)"
        result["extractions"].append(rec)
        print(f"{res}^3: {dt:.2f} s, {mesh.num_vertices} vertices, {mesh.num_faces} faces{peak}", flush=True)
    visible = None
    if args.scene_npz:
        z = np.load(args.scene_npz)
        k = z["intrinsics"]
        intr = Intrinsics(*[float(v) for v in k[:4]], int(k[4]), int(k[5]))
        poses, depths = z["train_poses"], z["train_depth"]

        def visible(points):
            return visible_mask(points, poses, intr, depths)

    def score(m_):
        acc = mesh_accuracy(m_, gt["vertices"], gt["faces"], gt["labels"], n_samples=args.samples,
                            rng=np.random.default_rng(0), gt_visible=visible)
        return {k: (v if isinstance(v, str) else float(v)) for k, v in acc.items()}

    if gt is not None and mesh is not None:
        result["accuracy"] = score(mesh)
        print("accuracy:", json.dumps(result["accuracy"], indent=1), flush=True)
        result["variants"] = []
        for spec in args.variants:
            kw = {}
            for item in spec.split(","):
                key, _, val = item.partition("=")
                kw[key.strip()] = val.strip() if key.strip() == "sample_mode" else float(val)
            if "threshold" in kw:
                kw["density_threshold"] = kw.pop("threshold")
            if "min_component_faces" in kw:
                kw["min_component_faces"] = int(kw["min_component_faces"])
            if "observed_only" in kw:
                kw["observed_only"] = bool(kw["observed_only"])
            kw.setdefault("density_threshold", args.threshold)
            # as the base extraction unless the variant says otherwise (the fifth session's variants
            # were extracted unfiltered beside a filtered base: only the observed-vertex scores compared)
            kw.setdefault("observed_only", args.observed_only)
            kw.setdefault("mc_backend", args.mc_backend)
            m_ = m.extract_mesh(resolution=args.resolutions[-1], bounds=bounds, **kw)
            rec = {"variant": spec, "vertices": m_.num_vertices, "faces": m_.num_faces, "accuracy": score(m_)}
            result["variants"].append(rec)
            a = rec["accuracy"]
            print(f"{spec}: chamfer {a['chamfer_m']:.4f} (observed {a.get('chamfer_m_observed', float('nan')):.4f}) "
                  f"acc {a['accuracy_m']:.4f} comp {a['completion_m']:.4f} sem {a['semantic_vertex_accuracy']:.4f} "
                  f"sem@5cm {a['semantic_vertex_accuracy@5cm']:.4f} "
                  f"sem observed {a.get('semantic_vertex_accuracy_observed', float('nan')):.4f}", flush=True)
    if args.save_mesh and mesh is not None:
        write_mesh(mesh, args.save_mesh, semantic_colors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
