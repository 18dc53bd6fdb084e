#!/usr/bin/env python3
"""Where a view's time goes: stage timings, kernel profile and what early termination would skip.

Trains a map of one room as ``bench/render_speed.py`` does, then, for one test view:

- ``wall_ms``: :meth:`Mapper.render` end to end (median; all outputs copied to the host), and
  ``renderer_ms``: the view renderer alone (the rays' colour, depth, opacity and logits on the
  device);
- ``dense_stages_ms``: the dense view's stages run one by one on the live model (CUDA events, median):
  the march, the field's density pass over every sample, the weights and the heaviest-sample
  choice, the colour and semantic heads, the compositing, and the class probabilities, labels and
  entropy;
- ``termination``: how many samples lie in front of the point where a ray's transmittance drops
  below 1e-4 (what a renderer that stops there must still evaluate), and the share of rays still
  open after each slot;
- ``kernels``: on CUDA, a ``torch.profiler`` trace of ``--profile-views`` renders: kernel launches
  per view and the kernels with the most device time.

``--save-map`` keeps the trained map for ``bench/mesh.py``.  Writes one JSON file::

    python bench/view_profile.py --scene-npz rooms/room_s5.npz --train-seconds 20 --out bench/results/view_profile.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from online import write_result  # noqa: E402
from render_speed import add_map_arguments, train_map  # noqa: E402

from semnerf_ros.engine.geometry import camera_rays  # noqa: E402
from semnerf_ros.engine.occupancy import march_rays_dense  # noqa: E402
from semnerf_ros.engine.render import accumulate, semantic_entropy, semantic_probabilities, weights_from_density  # noqa: E402,E501

TERMINATION_TRANSMITTANCE = 1e-4
OPEN_AFTER_SLOTS = (4, 8, 12, 16, 24, 32, 40)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, repeats: int) -> float:
    """Median wall milliseconds of ``fn()`` (device synchronised before and after), after two
    untimed calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times))


def dense_stages(model, origins, dirs, near: float, far: float) -> dict:
    """The dense view (``HashSemanticModel.render_dense`` without gradients) cut into its stages;
    each entry a function of the previous stages' outputs, kept in ``state``."""
    r = model.cfg["render"]
    R = origins.shape[0]
    K = int(model.view_samples)
    heads = int(model.view_head_samples) or K
    dev = origins.device
    amp = bool(model.amp) and dev.type == "cuda"
    near_t = torch.full((R,), float(near), device=dev)
    far_t = torch.full((R,), float(far), device=dev)
    state: dict = {}

    def march():
        state["m"] = march_rays_dense(origins, dirs, near_t, far_t, model.grid, int(r["march_steps"]), K, None,
                                      model.surface_fraction, model.surface_spread_steps, model.marcher(origins))
        state["pts"] = (origins[:, None, :] + state["m"]["t"][..., None] * dirs[:, None, :]).reshape(-1, 3)

    def density():
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
            state["enc"], sigma, state["geo"] = model.field.features(state["pts"])
        state["sigma"] = torch.where(state["m"]["valid"], sigma.float().reshape(R, K), 0.0)

    def weights():
        w = weights_from_density(state["sigma"], state["m"]["delta"])
        acc = w.sum(-1)
        w_head, slot = w.topk(min(heads, K), dim=-1)
        state["w"], state["acc"] = w, acc
        state["w_head"] = w_head * (acc / w_head.sum(-1).clamp_min(1e-10))[:, None]
        state["at"] = (slot + torch.arange(R, device=dev)[:, None] * K).reshape(-1)

    vd_all = F.normalize(dirs, dim=-1)

    def run_heads():
        at = state["at"]
        vd = vd_all[:, None, :].expand(R, K, 3).reshape(-1, 3)[at]
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
            state["rgb"] = model.field.color_head(state["geo"][at], vd)
            state["logits"] = model.field.semantic_head(state["enc"][at], state["pts"][at])

    def composite():
        n = state["w_head"].shape[1]
        state["out"] = {"rgb": accumulate(state["w_head"], state["rgb"].float().reshape(R, n, 3)),
                        "depth": accumulate(state["w"], state["m"]["t"]),
                        "semantic": accumulate(state["w_head"], state["logits"].reshape(R, n, -1))}

    def labels():
        probs = semantic_probabilities(state["out"]["semantic"])
        state["labels"] = probs.argmax(-1)
        state["entropy"] = semantic_entropy(probs)

    return {"march": march, "density": density, "weights_topk": weights, "heads": run_heads,
            "composite": composite, "labels_entropy": labels}, state


@torch.no_grad()
def termination_stats(model, origins, dirs, near: float, far: float) -> dict:
    """Samples in front of each ray's termination point (transmittance < 1e-4) and rays still
    open after each slot, from the dense march of the view."""
    stages, state = dense_stages(model, origins, dirs, near, far)
    stages["march"]()
    stages["density"]()
    valid = state["m"]["valid"]
    tau = state["sigma"] * state["m"]["delta"]
    through = torch.cumsum(tau, -1)  # optical depth up to and including each sample
    needed = valid & (torch.exp(-(through - tau)) > TERMINATION_TRANSMITTANCE)
    K = valid.shape[1]
    open_after = {str(s): float((torch.exp(-through[:, s - 1]) > TERMINATION_TRANSMITTANCE).float().mean())
                  for s in OPEN_AFTER_SLOTS if s < K}
    n_valid = float(valid.sum())
    return {"samples_per_ray": n_valid / valid.shape[0],
            "needed_samples_per_ray": float(needed.sum()) / valid.shape[0],
            "needed_share": float(needed.sum()) / max(n_valid, 1.0),
            "open_rays_after_slot": open_after,
            "last_needed_slot_mean": float(((needed.float() * torch.arange(1, K + 1, device=valid.device))
                                            .amax(-1)).mean())}


def kernel_profile(fn, device: torch.device, views: int, top: int) -> dict:
    """Kernel launches per view and the ``top`` kernels by device time (CUDA only)."""
    if device.type != "cuda":
        return {"skipped": "no CUDA device"}
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    fn()
    _sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(views):
            fn()
        _sync(device)
    per_name: dict = defaultdict(lambda: [0, 0.0])
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            per_name[e.name][0] += 1
            per_name[e.name][1] += e.time_range.elapsed_us() / 1000.0
    total_ms = sum(v[1] for v in per_name.values()) / views
    launches = sum(v[0] for v in per_name.values()) / views
    rows = sorted(per_name.items(), key=lambda kv: -kv[1][1])[:top]
    return {"kernel_ms_per_view": total_ms, "kernels_per_view": launches,
            "top": [{"name": k[:160], "per_view": v[0] / views, "ms_per_view": v[1] / views} for k, v in rows]}


def profile_view(m, cfg, pose, intr, args) -> dict:
    """All the figures of one view size (see the module docstring)."""
    near, far = cfg["render"]["depth_range"]
    view = m._view_renderer
    m.render(pose, intr)  # the snapshot taken, graphs captured
    model = view._model
    o, dr = camera_rays(pose, intr, m.device)
    chunk = int(cfg["model"]["chunk"])
    entry = {"rays": int(o.shape[0]), "view_path": model.view_path,
             "wall_ms": median_ms(lambda: m.render(pose, intr), m.device, args.repeats),
             "wall_ms_without_probs": median_ms(lambda: m.render(pose, intr, with_probs=False), m.device,
                                                args.repeats),
             "renderer_ms": median_ms(lambda: view.render(o, dr, near, far, chunk), m.device, args.repeats)}
    stages, _ = dense_stages(model, o, dr, near, far)
    with torch.no_grad():
        entry["dense_stages_ms"] = {name: median_ms(fn, m.device, args.repeats) for name, fn in stages.items()}
    entry["dense_stages_sum_ms"] = sum(entry["dense_stages_ms"].values())
    entry["termination"] = termination_stats(model, o, dr, near, far)
    with torch.no_grad():
        entry["kernels"] = kernel_profile(lambda: m.render(pose, intr), m.device, args.profile_views, args.top)
    return entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_map_arguments(ap)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0], help="view sizes (x --width/--height)")
    ap.add_argument("--profile-views", type=int, default=5)
    ap.add_argument("--top", type=int, default=25, help="kernels listed")
    ap.add_argument("--view-path", choices=("", "dense", "packed"), default="",
                    help="render.view_path for the views timed (default: the config's)")
    ap.add_argument("--save-map", default="", help="save the trained map here (for bench/mesh.py)")
    ap.add_argument("--out", default="view_profile.json")
    args = ap.parse_args(argv)
    m, d, _, cfg, st = train_map(args)
    if args.save_map:
        m.save(args.save_map)
    pose = d["test_poses"][0]
    if args.view_path:
        for model in (m.model, m._view_renderer._model):
            if model is not None:
                model.view_path = args.view_path
    results = {}
    for scale in args.scales:
        intr = d["intrinsics"].scaled(scale) if scale != 1.0 else d["intrinsics"]
        entry = profile_view(m, cfg, pose, intr, args)
        results[f"{intr.width}x{intr.height}"] = entry
        print(f"{intr.width}x{intr.height} ({entry['view_path']}): wall {entry['wall_ms']:.2f} ms "
              f"({entry['wall_ms_without_probs']:.2f} without probabilities), renderer {entry['renderer_ms']:.2f} "
              f"ms, dense stages {entry['dense_stages_ms']}, termination {entry['termination']}", flush=True)
    out = {"benchmark": "view_profile", "scene": args.scene_npz or args.scene or "built-in",
           "device": torch.cuda.get_device_name() if m.device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "config": args.config, "set": args.set, "depth_given": not args.no_depth,
           "train_seconds": args.train_seconds, "steps": st["step"], "views": results}
    write_result(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
