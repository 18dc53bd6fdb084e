#!/usr/bin/env python3
"""Marching cubes: scikit-image on the CPU against engine/marching_cubes.py on a device.

The grid is a room-like density field (walls of a box, furniture-sized blocks and balls, a smooth
noise that crosses the level in places, 1/m, level 10), ``--resolutions`` points a side.  For each:
seconds of scikit-image's Lewiner and classic (Lorensen) methods on the grid in host memory, and
of the torch marching cubes on ``--device`` with the grid already there (as in
``extract_mesh(mc_backend="torch")``, where the density grid is never downloaded), including the
download of the mesh; faces of each, and the peak device memory on CUDA.  Writes JSON::

    python bench/marching_cubes.py --device cuda --resolutions 256 512 --out bench/results/marching_cubes_h200.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.measure import marching_cubes as sk_marching_cubes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semnerf_ros.engine.marching_cubes import marching_cubes  # noqa: E402
from semnerf_ros.io.jsonio import write_json  # noqa: E402  (the package's atomic JSON writer)

LEVEL = 10.0


def room_grid(n: int, seed: int = 0) -> np.ndarray:
    x = np.linspace(-1, 1, n, dtype=np.float32)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    box = np.maximum(np.maximum(np.abs(X), np.abs(Y)), np.abs(Z))
    g = np.where(box > 0.92, 200.0, 0.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    for _ in range(12):  # furniture: boxes and balls
        c = rng.uniform(-0.7, 0.7, 3).astype(np.float32)
        s = rng.uniform(0.05, 0.25, 3).astype(np.float32)
        if rng.random() < 0.5:
            inside = (np.abs(X - c[0]) < s[0]) & (np.abs(Y - c[1]) < s[1]) & (np.abs(Z - c[2]) < s[2])
        else:
            inside = (X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 < s[0] ** 2
        g[inside] = 200.0
    noise = gaussian_filter(rng.standard_normal((n // 4,) * 3).astype(np.float32), 1.5)
    noise = np.kron(noise / noise.std(), np.ones((4, 4, 4), np.float32))[:n, :n, :n]
    return gaussian_filter(g, 1.0) + 4.0 * noise


def timed(fn, sync):
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-skimage-above", type=int, default=512, help="no scikit-image runs above this size")
    ap.add_argument("--out", default="bench_marching_cubes.json")
    args = ap.parse_args(argv)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    rows = []
    for n in args.resolutions:
        grid = room_grid(n)
        row = {"resolution": n}
        if n <= args.skip_skimage_above:
            for method in ("lewiner", "lorensen"):
                ts = []
                for _ in range(args.repeats):
                    t, (v, f, _, _) = timed(lambda g=grid, m=method: sk_marching_cubes(
                        g, LEVEL, gradient_direction="ascent", allow_degenerate=False, method=m), sync)
                    ts.append(t)
                row[f"skimage_{method}"] = {"seconds": float(np.median(ts)), "faces": int(len(f))}
        g = torch.from_numpy(grid).to(dev)

        def run(g=g):
            V, F, N = marching_cubes(g, LEVEL)
            return V.cpu().numpy(), F.cpu().numpy(), N.cpu().numpy()

        run()  # warm-up (the case table, kernels)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        ts = []
        for _ in range(args.repeats):
            t, (V, F, _) = timed(run, sync)
            ts.append(t)
        row["torch"] = {"seconds": float(np.median(ts)), "faces": int(len(F)), "device": str(dev)}
        if dev.type == "cuda":
            row["torch"]["peak_extra_memory_mb"] = (torch.cuda.max_memory_allocated(dev) - base) / 2 ** 20
        if "skimage_lewiner" in row:
            row["skimage_lewiner_over_torch"] = row["skimage_lewiner"]["seconds"] / row["torch"]["seconds"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {"benchmark": "marching_cubes", "device": torch.cuda.get_device_name(dev) if dev.type == "cuda"
           else platform.processor() or "cpu", "torch": torch.__version__, "level": LEVEL, "results": rows}
    write_json(args.out, out, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
