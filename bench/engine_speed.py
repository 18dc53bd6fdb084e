#!/usr/bin/env python3
"""Training-step and view-rendering speed of the engine, eager against CUDA-graph replay.

On one scene (the seed's split, every training view a keyframe, 50 % pixel
label noise, depth given), for the hash field at ``--rays`` rays per step:

1. **Same numbers.** Two Mappers from the same seed, one stepping eagerly and one
   replaying the captured step, train ``--check-steps`` steps on identical
   batches; the largest relative difference of their losses is reported.
2. **Training rate.** Each mode trains ``--steps`` steps back to back (after
   warm-up and capture) the way the background thread does (no read-back per
   step); it/s, and with ``--profile`` the GPU kernel time and kernel launches
   per step (torch.profiler).
3. **Views.** A test view is rendered at 1x and 2x (all outputs: colour, depth,
   labels, entropy) through :meth:`Mapper.render`, eager and graphed; median ms
   and the largest difference between the two.

Writes JSON (``--out``); prints a table last.  GPU only (the CPU has no graphs)::

    python bench/engine_speed.py --scene-npz scene.npz --out engine_speed.json
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

from semnerf_ros import tasks  # noqa: E402
from semnerf_ros.engine.config import load_config, overrides_from_items  # noqa: E402
from semnerf_ros.engine.frame import Frame  # noqa: E402
from semnerf_ros.engine.geometry import Intrinsics  # noqa: E402
from semnerf_ros.engine.mapper import Mapper  # noqa: E402


def load(path):
    z = np.load(path)
    k = z["intrinsics"]
    intr = Intrinsics(*[float(v) for v in k[:4]], int(k[4]), int(k[5]))
    return z, intr, [str(c) for c in z["class_names"]]


def make_mapper(args, z, intr, names, graph: bool) -> Mapper:
    sets = {"experiment": {"seed": 0}, "train": {"cuda_graph": graph, "wgt_depth": args.wgt_depth},
            "render": {"N_rays": args.rays}, "mapper": {"keyframe_policy": "all", "max_keyframes": 200}}
    cfg = load_config(args.config, overrides_from_items(args.set, sets))
    m = Mapper(cfg, len(names), names)
    noisy, _ = tasks.pixel_noise(z["train_labels"].astype(np.int32), 0.5, len(names), np.random.default_rng(0))
    for i in range(len(z["train_poses"])):
        m.add_frame(Frame(rgb=z["train_rgb"][i], pose=z["train_poses"][i], intrinsics=intr, labels=noisy[i],
                          depth=z["train_depth"][i].astype(np.float32) if "train_depth" in z.files else None))
    return m


def train_rate(m: Mapper, steps: int) -> float:
    for _ in range(50):  # warm-up, capture, occupancy warm-up out of the timing
        m.step(sync=False)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        m.step(sync=False)
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def profile_steps(m: Mapper, steps: int = 20) -> dict:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            m.step(sync=False)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_us = sum(e.device_time for e in kernels)
    return {"wall_ms_per_step": wall * 1000 / steps, "gpu_kernel_ms_per_step": gpu_us / 1000 / steps,
            "kernels_per_step": len(kernels) / steps}


def render_ms(m: Mapper, pose, intr, repeats: int = 20) -> tuple[float, object]:
    r = None
    for _ in range(3):
        r = m.render(pose, intr)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        r = m.render(pose, intr)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene-npz", required=True)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "config" / "replica_hash.yaml"))
    ap.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--rays", type=int, default=4096)
    ap.add_argument("--wgt-depth", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--check-steps", type=int, default=30)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", default="engine_speed.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("engine_speed needs a CUDA GPU", file=sys.stderr)
        return 2
    z, intr, names = load(args.scene_npz)
    res = {"benchmark": "engine_speed", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "rays": args.rays, "config": args.config, "set": args.set}

    # 1. same numbers
    a, b = make_mapper(args, z, intr, names, False), make_mapper(args, z, intr, names, True)
    diffs = []
    for _ in range(args.check_steps):
        la, lb = a.step(), b.step()
        diffs.append(max(abs(la[k] - lb[k]) / max(abs(la[k]), 1e-6) for k in ("loss", "loss_rgb", "loss_semantic")))
    res["check"] = {"steps": args.check_steps, "max_rel_loss_diff": float(max(diffs)),
                    "rel_loss_diff_per_step": [float(x) for x in diffs], "graph_active": b.trainer.graph_active,
                    "graph_error": b.trainer.graph_error}
    print(f"eager vs graph, {args.check_steps} steps: largest relative loss difference {max(diffs):.2e} "
          f"(graph active: {b.trainer.graph_active}, error: {b.trainer.graph_error})", flush=True)
    del a, b
    torch.cuda.empty_cache()

    # 2. training rate, 3. views
    pose = z["test_poses"][0]
    renders = {}
    for mode, graph in (("eager", False), ("graph", True)):
        m = make_mapper(args, z, intr, names, graph)
        rate = train_rate(m, args.steps)
        entry = {"it_per_s": rate, "graph_active": m.trainer.graph_active}
        if args.profile:
            entry["profile"] = profile_steps(m)
        m._view_renderer.use_graph = graph
        for name, k in (("1x", intr), ("2x", intr.scaled(2.0))):
            ms, r = render_ms(m, pose, k)
            entry[f"render_ms_{name}_{k.width}x{k.height}"] = ms
            renders[(mode, name)] = r
        entry["view_graph_error"] = m._view_renderer.graph_error
        res[mode] = entry
        print(mode, json.dumps(entry), flush=True)
        del m
        torch.cuda.empty_cache()
    # graphed and eager views of the two maps differ (they trained separately); compare a graphed and an
    # eager render of one map instead
    m = make_mapper(args, z, intr, names, True)
    train_rate(m, 200)
    m._view_renderer.use_graph = False
    r_e = m.render(pose, intr)
    m._view_renderer.use_graph = True
    m._view_renderer._graphs = {}
    r_g = m.render(pose, intr)
    res["view_equivalence"] = {"rgb_max_abs": float(np.abs(r_e.rgb - r_g.rgb).max()),
                               "depth_max_abs_m": float(np.abs(r_e.depth - r_g.depth).max()),
                               "probs_max_abs": float(np.abs(r_e.probs - r_g.probs).max()),
                               "labels_agree": float((r_e.labels == r_g.labels).mean())}
    print("view eager vs graph:", res["view_equivalence"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"\n| mode | it/s @ {args.rays} rays | view 1x ms | view 2x ms |\n|---|---|---|---|")
    for mode in ("eager", "graph"):
        e = res[mode]
        v = [val for key, val in e.items() if key.startswith("render_ms")]
        print(f"| {mode} | {e['it_per_s']:.1f} | {v[0]:.1f} | {v[1]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
