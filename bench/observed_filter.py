#!/usr/bin/env python3
"""The observed-face filter of ``Mapper.extract_mesh(observed_only=True)``: the NumPy entry
(``geometry.points_seen_by_views``: the rule on the CPU, view by view) against the batched tensor
call the mapper makes on the keyframes' device (``geometry.points_seen_by_views_torch``), on
mesh-sized vertex sets and a keyframe buffer of depth images (synthetic: cameras on a circle,
random depth), with the agreement of the two.  (Until commit 9e600ba the NumPy entry had its own
NumPy implementation: 0.92 s against 0.70 s for the tensor rule,
bench/results/observed_filter_cpu_9e600ba.json.)::

    python bench/observed_filter.py --vertices 500000 --views 60 --device cpu
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semnerf_ros.io.jsonio import write_json  # noqa: E402  (the package's atomic JSON writer)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vertices", type=int, default=500000)
    ap.add_argument("--views", type=int, default=60)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)

    from semnerf_ros.engine.geometry import Intrinsics, points_seen_by_views, points_seen_by_views_torch

    rng = np.random.default_rng(0)
    w, h = args.width, args.height
    K = Intrinsics(0.866 * w, 0.866 * w, (w - 1) / 2, (h - 1) / 2, w, h)
    poses = []
    for i in range(args.views):
        T = np.eye(4)
        a = 2 * np.pi * i / args.views
        T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        poses.append(T)
    depths = [2.0 + rng.random((h, w)).astype(np.float32) for _ in range(args.views)]
    pts = rng.normal(0, 2.0, (args.vertices, 3)).astype(np.float32)
    t0 = time.perf_counter()
    ref = points_seen_by_views(pts, poses, K, depths, tol=0.08, max_depth=10.0)
    per_view_s = time.perf_counter() - t0
    dev = torch.device(args.device)
    P = torch.tensor(np.stack(poses))
    KK = torch.tensor([[K.fx, K.fy, K.cx, K.cy]] * args.views)
    D = torch.from_numpy(np.stack(depths)).to(dev)
    has = torch.ones(args.views, dtype=torch.bool, device=dev)
    x = torch.from_numpy(pts).to(dev)
    points_seen_by_views_torch(x[:1000], P, KK, D, has)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    got = points_seen_by_views_torch(x, P, KK, D, has, tol=0.08, max_depth=10.0)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    torch_s = time.perf_counter() - t0
    out = {"benchmark": "observed_filter", "vertices": args.vertices, "views": args.views, "image": [w, h],
           "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
           "numpy_entry_cpu_seconds": per_view_s, "batched_seconds": torch_s,
           "equal": bool(np.array_equal(ref, got.cpu().numpy())), "seen_fraction": float(ref.mean())}
    print(json.dumps(out))
    if args.out:
        write_json(args.out, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
