#!/usr/bin/env python3
"""The occupancy-grid marcher alone: the PyTorch reference against the Triton kernel
(``render.march_backend``), on a room-like grid, for a view's rays and a training batch.

The grid holds a box room's walls and some furniture as dense cells, the rest occupied by faint
density (as the never-seen space behind walls stays): so rays have many occupied steps and a first
surface, as in a trained map.  Both marchers get the same rays; the JSON has the time of each (CUDA
synchronised, median of ``--repeats``) and how many rays agree::

    python bench/march_speed.py --device cuda --rays 76800 4096 --out bench/results/march_speed_h200.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from hash_encoding import timed  # noqa: E402  (the benchmarks' one CUDA-synchronised timer)

from semnerf_ros.io.jsonio import write_json  # noqa: E402  (the package's atomic JSON writer)


def room_grid(res: int, device) -> "OccupancyGrid":  # noqa: F821 - imported in main
    from semnerf_ros.engine.occupancy import OccupancyGrid

    grid = OccupancyGrid([[-10.0, -10.0, -10.0], [10.0, 10.0, 10.0]], resolution=res).to(device)
    c = (torch.arange(res, device=device) + 0.5) / res * 20.0 - 10.0
    x, y, z = torch.meshgrid(c, c, c, indexing="ij")
    wall = (x.abs().sub(3.0).abs() < 0.1) | (y.abs().sub(2.5).abs() < 0.1) | (z.abs().sub(1.5).abs() < 0.1)
    inside = (x.abs() < 3.1) & (y.abs() < 2.6) & (z.abs() < 1.6)
    g = torch.Generator(device="cpu").manual_seed(0)
    furniture = (torch.rand(res, res, res, generator=g).to(device) < 0.002) & inside
    density = torch.where(wall | furniture, 200.0, 0.5)
    outside = ~inside & (torch.rand(res, res, res, generator=g).to(device) < 0.3)
    grid.density.copy_(torch.where(outside, 0.0, density).reshape(-1))
    grid.occupied.copy_(grid.density > 0.1)
    return grid


def graphed_ms(fn, repeats: int) -> float:
    """Median ms of one replay of ``fn`` captured in a CUDA graph (warmed up on a side stream first)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return timed(graph.replay, repeats, torch.device("cuda"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rays", type=int, nargs="+", default=[76800, 4096])
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--grid", type=int, default=128)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--shapes", nargs="*", default=["32x1", "64x2", "128x4"],
                    help="Triton launch shapes to time besides the automatic one: RAYSxWARPS per program")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)

    from semnerf_ros.engine.march_triton import launch_shape, march_rays_dense_triton
    from semnerf_ros.engine.occupancy import march_rays_dense

    dev = torch.device(args.device)
    grid = room_grid(args.grid, dev)
    spread = max(1, int(-(-(20.0 / args.grid) // ((10.0 - 0.1) / args.steps))))
    out = {"benchmark": "march_speed", "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
           "torch": torch.__version__, "steps": args.steps, "samples": args.samples, "grid": args.grid,
           "spread_steps": spread, "runs": []}
    for R in args.rays:
        g = torch.Generator(device="cpu").manual_seed(R)
        d = torch.randn(R, 3, generator=g)
        o = (torch.rand(R, 3, generator=g) - 0.5) * torch.tensor([4.0, 3.0, 2.0])
        o, d = o.to(dev), (d / d.norm(dim=-1, keepdim=True)).to(dev)
        near, far = torch.full((R,), 0.1, device=dev), torch.full((R,), 10.0, device=dev)
        for f in args.fractions:
            row = {"rays": R, "surface_fraction": f}
            res = {}
            for backend in ("torch", "triton"):
                def run(b=backend, out=res, rays=(o, d, near, far), frac=f):
                    out[b] = march_rays_dense(*rays, grid, args.steps, args.samples, None, frac, spread, backend=b)
                try:
                    # hash_encoding.timed: warm-up calls (Triton compiles in the first), then the median ms
                    row[f"{backend}_ms"] = timed(run, args.repeats, dev)
                except Exception as exc:  # noqa: BLE001 - report, keep the other backend's figure
                    row[f"{backend}_error"] = f"{type(exc).__name__}: {exc}"[:500]
            if dev.type == "cuda":
                # as inside the training step: both replayed from a captured CUDA graph
                for backend in ("torch", "triton"):
                    try:
                        row[f"{backend}_graph_ms"] = graphed_ms(
                            lambda b=backend, frac=f, rays=(o, d, near, far): march_rays_dense(
                                *rays, grid, args.steps, args.samples, None, frac, spread, backend=b),
                            args.repeats)
                    except Exception as exc:  # noqa: BLE001 - report, keep the other figures
                        row[f"{backend}_graph_error"] = f"{type(exc).__name__}: {exc}"[:500]
                row["triton_auto_shape"] = "%dx%d" % launch_shape(R)
                for shape in args.shapes:
                    block, warps = (int(x) for x in shape.split("x"))
                    try:
                        row[f"triton_{shape}_ms"] = timed(
                            lambda sh=(block, warps), frac=f, rays=(o, d, near, far): march_rays_dense_triton(
                                *rays, grid, args.steps, args.samples, None, frac, spread, shape=sh),
                            args.repeats, dev)
                    except Exception as exc:  # noqa: BLE001
                        row[f"triton_{shape}_error"] = f"{type(exc).__name__}: {exc}"[:500]
            if "torch" in res and "triton" in res:
                a, b = res["torch"], res["triton"]
                same = (a["valid"] == b["valid"]).all(1) & ((a["t"] - b["t"]).abs() < 1e-4).all(1)
                row["rays_identical"] = float(same.float().mean())
                close = ((a["t"][:, :, None] - b["t"][:, None, :]).abs() < 1e-4) & b["valid"][:, None, :]
                row["samples_matched"] = float((close.any(2) & a["valid"]).sum()) / max(float(a["valid"].sum()), 1.0)
                row["sample_counts_equal"] = float((a["valid"].sum(1) == b["valid"].sum(1)).float().mean())
                row["samples_per_ray"] = float(a["valid"].sum(1).float().mean())
            out["runs"].append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        write_json(args.out, out, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
