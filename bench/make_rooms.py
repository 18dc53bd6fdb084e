#!/usr/bin/env python3
"""Generate rooms of the synthetic family as scene arrays for the benchmarks.

Each seed becomes ``OUT/room_s<seed>.npz`` in the layout ``bench/online.py
--scene-npz`` reads (the seed's split only: 60 train and 60 test views at
320x240 by default, depth, poses, GT mesh), generated with
:func:`semnerf_ros.datasets.synthetic.scene_arrays` (Open3D ray casting where it
imports, else torch on CUDA or the CPU), ``--jobs`` seeds at a time::

    python bench/make_rooms.py --seeds 1 2 3 4 5 6 7 8 --out rooms --jobs 4
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_room(seed: int, out: str, width: int, height: int, frames: int, raycaster: str, threads: int) -> str:
    from semnerf_ros.datasets.synthetic import scene_arrays

    t0 = time.perf_counter()
    d = scene_arrays(seed, frames=frames, width=width, height=height, raycaster=raycaster,
                     render_threads=threads)
    k = d["intrinsics"]
    arrays = {key: d[key] for key in ("train_rgb", "train_labels", "train_depth", "train_poses", "train_instances",
                                      "test_rgb", "test_labels", "test_depth", "test_poses")}
    arrays["intrinsics"] = np.array([k.fx, k.fy, k.cx, k.cy, k.width, k.height], dtype=np.float64)
    arrays["class_names"] = np.array(d["class_names"])
    for key in ("mesh_vertices", "mesh_faces", "mesh_labels"):
        if key in d:
            arrays[key] = d[key]
    path = Path(out) / f"room_s{seed}.npz"
    np.savez_compressed(path, **arrays)
    return f"{path}: {time.perf_counter() - t0:.1f} s ({d['stats'].get('raycaster', '?')})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--out", default="rooms")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--raycaster", default="auto", choices=("auto", "open3d", "torch"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="shading threads per room")
    args = ap.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.jobs) as ex:
        futs = [ex.submit(make_room, s, args.out, args.width, args.height, args.frames, args.raycaster,
                          args.threads) for s in args.seeds]
        for f in futs:
            print(f.result(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
