#!/usr/bin/env python3
"""View-rendering paths of the hash field compared on a trained map: time, quality, agreement.

Trains a map of one room (every training view given at t = 0 with the seed's pixel noise, depth
given unless ``--no-depth``) for ``--train-seconds`` of training, then renders the test views
through :meth:`Mapper.render` with each view path:

- ``dense``: every marched sample in the fixed ``(rays, max_samples_per_ray)`` layout, chunks
  replayed from CUDA graphs (the GPU default before this benchmark);
- ``packed``: the same marched layout with densities evaluated front to back in blocks of slots,
  only for the rays still open (early ray termination at transmittance 1e-4), the colour and
  semantic heads only on samples of weight > 1e-4 (the CPU's renderer);

each with every ``--view-samples`` budget (samples kept per ray in views, render.view_max_samples:
the view's cost is about proportional to it, its quality is the question) and, for ``dense``, every
``--view-head-samples`` count (the colour and semantic heads on each ray's heaviest samples only,
render.view_head_samples; 0 = all).

For each path: median milliseconds per view at 1x and 2x (colour, depth, labels, probabilities,
entropy, opacity on the host; CUDA synchronised; ``_without_probs``: without the probabilities, as
the node renders), test mIoU / PSNR / depth error over ``--views`` test views, and the
largest difference to ``dense`` on one view.  Writes one JSON file::

    python bench/render_speed.py --scene-npz rooms/room_s2.npz --out bench/results/render_speed_h200.json
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from online import evaluate, load_scene, render_latency, write_result  # noqa: E402

from semnerf_ros import tasks  # noqa: E402
from semnerf_ros.engine.config import load_config, overrides_from_items  # noqa: E402
from semnerf_ros.engine.frame import Frame  # noqa: E402
from semnerf_ros.engine.mapper import Mapper  # noqa: E402

PATHS = ("dense", "packed")


def set_view(m: Mapper, path: str, samples: int, heads: int = 0) -> None:
    """Switch the mapper's view path, samples per ray and head samples (live model and the
    renderer's snapshot)."""
    for model in (m.model, m._view_renderer._model):
        if model is not None:
            model.view_path = path
            model.view_samples = samples
            model.view_head_samples = heads


def train_map(args):
    """A map of one room trained for ``args.train_seconds``: every training view given at t = 0 with
    the seed's pixel noise (0.5), depth unless ``args.no_depth``.  Returns (mapper, scene arrays,
    number of classes, config, stats)."""
    d, class_names = load_scene(args)
    nc = len(class_names)
    cfg = load_config(args.config, overrides_from_items(args.set, {"experiment": {"device": args.device,
                                                                                   "seed": args.seed}}))
    cfg["mapper"]["keyframe_policy"] = "all"
    cfg["mapper"]["max_keyframes"] = max(cfg["mapper"]["max_keyframes"], len(d["train_poses"]))
    rng = np.random.default_rng(args.seed)
    noisy, _ = tasks.pixel_noise(d["train_labels"].astype(np.int32), 0.5, nc, rng)
    intr = d["intrinsics"]
    m = Mapper(cfg, nc, class_names, device=args.device)
    m.warmup()
    for i in range(len(d["train_poses"])):
        depth = None if args.no_depth or "train_depth" not in d else d["train_depth"][i].astype(np.float32)
        m.add_frame(Frame(rgb=d["train_rgb"][i], pose=d["train_poses"][i], intrinsics=intr, labels=noisy[i],
                          depth=depth, stamp=float(i), index=i))
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.train_seconds:
        m.step(20)
    st = m.stats()
    print(f"trained {st['step']} steps in {time.perf_counter() - t0:.1f} s; samples/ray {st.get('samples_per_ray')}",
          flush=True)
    return m, d, nc, cfg, st


def add_map_arguments(ap: argparse.ArgumentParser) -> None:
    """The room, config and training arguments of :func:`train_map`."""
    ap.add_argument("--scene", default="")
    ap.add_argument("--scene-npz", default="")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--train-step", type=int, default=5)
    ap.add_argument("--test-offset", type=int, default=2)
    ap.add_argument("--config", default=str(ROOT / "config" / "replica_hash.yaml"))
    ap.add_argument("--set", nargs="*", default=["train.wgt_depth=0.05"])
    ap.add_argument("--no-depth", action="store_true")
    ap.add_argument("--train-seconds", type=float, default=30.0, help="training time before rendering (s)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_map_arguments(ap)
    ap.add_argument("--views", type=int, default=30, help="test views scored per path")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    ap.add_argument("--view-samples", type=int, nargs="+", default=[0],
                    help="samples kept per ray in views (render.view_max_samples; 0 = max_samples_per_ray)")
    ap.add_argument("--view-head-samples", type=int, nargs="+", default=[0],
                    help="dense path: heads on each ray's this many heaviest samples (render.view_head_samples; "
                         "0 = all)")
    ap.add_argument("--out", default="render_speed.json")
    args = ap.parse_args(argv)
    m, d, nc, cfg, st = train_map(args)
    intr = d["intrinsics"]

    pose = d["test_poses"][0]
    results, ref, ref_name = {}, None, ""
    runs = [(p, k, h) for k in args.view_samples for p in args.paths
            for h in (args.view_head_samples if p == "dense" else [0])]
    for path, k, heads in runs:
        samples = k or int(cfg["render"]["max_samples_per_ray"])
        set_view(m, path, samples, heads)
        entry = {"ms_1x": render_latency(m, pose, intr, args.repeats),
                 "ms_2x": render_latency(m, pose, intr.scaled(2.0), max(args.repeats // 2, 3)),
                 # as the node renders: no class probabilities copied to the host
                 "ms_1x_without_probs": render_latency(m, pose, intr, args.repeats, with_probs=False),
                 "ms_2x_without_probs": render_latency(m, pose, intr.scaled(2.0), max(args.repeats // 2, 3),
                                                       with_probs=False)}
        entry["test"] = evaluate(m, d, nc, "test", d["test_labels"], args.views)
        entry["test"].pop("per_class_iou", None)
        r = m.render(pose, intr)
        name = path if len(args.view_samples) == 1 else f"{path}_{samples}"
        name += f"_heads{heads}" if heads else ""
        if ref is None:
            ref, ref_name = r, name
        else:
            entry["vs_" + ref_name] = {
                "rgb_max_abs": float(np.abs(r.rgb - ref.rgb).max()),
                "depth_max_abs_m": float(np.abs(r.depth - ref.depth).max()),
                "depth_mean_abs_m": float(np.abs(r.depth - ref.depth).mean()),
                "probs_max_abs": float(np.abs(r.probs - ref.probs).max()),
                "labels_agree": float((r.labels == ref.labels).mean())}
        entry["graph_error"] = m._view_renderer.graph_error
        entry["view_samples"] = samples
        entry["view_head_samples"] = heads
        results[name] = entry
        print(name, json.dumps(entry), flush=True)

    out = {"benchmark": "render_speed", "scene": args.scene_npz or args.scene or "built-in",
           "device": torch.cuda.get_device_name() if m.device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "config": args.config, "set": args.set, "depth_given": not args.no_depth,
           "train_seconds": args.train_seconds, "steps": st["step"], "samples_per_ray": st.get("samples_per_ray"),
           "resolution": [intr.width, intr.height], "paths": results}
    write_result(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
