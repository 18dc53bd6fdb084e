#!/usr/bin/env python3
"""What views cost the training thread, without ROS: the node's engine, frames at camera rate,
views rendered at a publish rate by a second thread, in phases.

Each phase builds the Mapper the node builds from its default parameters
(``bridge.engine_setup.make_mapper``, the engine defaults for the device), starts its training
thread, feeds one room's training frames at ``--rate`` Hz through ``screen_frame`` / ``add_frame``
as the node's intake does, and, when the phase asks for views, renders a 320x240 view (all
outputs the node publishes, through :meth:`Mapper.render`, from the room's test poses in turn) at the phase's rate
from a thread of its own, as the node's render timer does.  Per phase: the training rate
(it/s sampled every second; the median after the first ``--skip`` seconds), the views' wall time
(p50 / p90 ms) and the rate against the first phase.  So the node's rate in ``bench/node_latency.py``
can be split into what the views cost (here) and what ROS costs (the rest).

Phases are ``NAME=HZ`` or ``NAME=HZ:SECTION.KEY=VALUE,SECTION.KEY=VALUE`` (engine settings of that
phase only)::

    python bench/train_with_views.py --scene-npz rooms/room_s5.npz --seconds 40 \\
        --phases alone=0 views10=10 heads8=10:render.view_head_samples=8 --out train_with_views.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semnerf_ros import tasks  # noqa: E402
from semnerf_ros.bridge.engine_setup import make_mapper  # noqa: E402
from semnerf_ros.bridge.params import PARAMS  # noqa: E402
from semnerf_ros.engine.config import overrides_from_items  # noqa: E402
from semnerf_ros.engine.frame import Frame  # noqa: E402
from semnerf_ros.engine.geometry import Intrinsics  # noqa: E402
from semnerf_ros.engine.mapper import MapNotReadyError  # noqa: E402
from semnerf_ros.io.jsonio import write_json  # noqa: E402


def parse_phase(spec: str) -> tuple:
    """``NAME=HZ[:SECTION.KEY=VALUE,...]`` -> (name, views per second, engine overrides)."""
    name, _, rest = spec.partition("=")
    hz, _, sets = rest.partition(":")
    if not name or not hz:
        raise argparse.ArgumentTypeError(f"phase {spec!r}: expected NAME=HZ[:SECTION.KEY=VALUE,...]")
    try:
        rate = float(hz)
    except ValueError:
        raise argparse.ArgumentTypeError(f"phase {spec!r}: {hz!r} is not a rate in Hz") from None
    items = [s for s in sets.split(",") if s]
    return name, rate, overrides_from_items(items) if items else {}


def feed_frames(mapper, rgb, noisy, depth, poses, intrinsics, rate: float, seconds: float) -> tuple:
    """Feed the frames in a loop at ``rate`` Hz for ``seconds``, stamped with the wall time, through
    ``screen_frame`` / ``add_frame`` as the node's intake does; returns (frames fed, the training rate
    sampled every second).  Shared with ``bench/node_latency.py --standalone``."""
    rates, t0, n = [], time.time(), 0
    next_sample = t0 + 1.0
    while time.time() - t0 < seconds:
        i = n % len(poses)
        frame = Frame(rgb=rgb[i], pose=poses[i].astype(np.float64), intrinsics=intrinsics, labels=noisy[i],
                      depth=None if depth is None else depth[i].astype(np.float32), stamp=time.time())
        if mapper.screen_frame(frame) is None:
            mapper.add_frame(frame)
        n += 1
        if time.time() >= next_sample:
            rates.append(mapper.stats()["iterations_per_second"])
            next_sample += 1.0
        time.sleep(max(0.0, t0 + n / rate - time.time()))
    return n, rates


def run_phase(name: str, views_hz: float, overrides: dict, scene: dict, args) -> dict:
    """One phase (see the module docstring); returns its figures."""
    values = {p.name: p.default for p in PARAMS}
    values.update(device=args.device, num_classes=len(scene["class_names"]), engine_config="")
    with tempfile.TemporaryDirectory() as tmp:
        if overrides:
            path = Path(tmp) / "engine.yaml"
            path.write_text(yaml.safe_dump(overrides))
            values["engine_config"] = str(path)
        mapper = make_mapper(values, len(scene["class_names"]), scene["class_names"],
                             lambda s: print(f"[{name}]", s, flush=True))
    mapper.start()
    stop = threading.Event()
    view_ms: list = []

    def views() -> None:
        poses, k = scene["test_poses"], 0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                mapper.render(poses[k % len(poses)], scene["intrinsics"], with_probs=False)  # as the node
                view_ms.append(1000.0 * (time.perf_counter() - t0))
                k += 1
            except MapNotReadyError:
                pass
            stop.wait(max(0.0, 1.0 / views_hz - (time.perf_counter() - t0)))

    viewer = threading.Thread(target=views, name="views", daemon=True) if views_hz > 0 else None
    if viewer is not None:
        viewer.start()
    n, rates = feed_frames(mapper, scene["rgb"], scene["noisy"], scene["depth"], scene["poses"],
                           scene["intrinsics"], args.rate, args.seconds)
    stop.set()
    if viewer is not None:
        viewer.join(5.0)
    st = mapper.stats()
    mapper.stop()
    used = rates[args.skip:] or rates
    out = {"views_hz": views_hz, "engine_set": overrides, "seconds": args.seconds, "frames": n,
           "step": st["step"], "keyframes": st["keyframes"],
           "it_per_s_median": float(np.median(used)) if used else 0.0, "it_per_s_samples": rates,
           "views": len(view_ms),
           # the engine's own timings (ms): a view's whole time, the map lock's part, and its wait for the lock
           "timing_ms": {k: v for k, v in st.get("timing_ms", {}).items() if k in ("view", "render", "render_wait",
                                                                                    "step")}}
    if view_ms:
        out["view_ms"] = {"p50": float(np.percentile(view_ms, 50)), "p90": float(np.percentile(view_ms, 90)),
                          "max": float(np.max(view_ms))}
    mapper = None   # the next phase starts from free GPU memory
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene-npz", required=True, help="arrays from bench/online.py --export-npz "
                                                       "(or bench/make_rooms.py)")
    ap.add_argument("--phases", nargs="+", type=parse_phase, default=[parse_phase("alone=0"), parse_phase("views=10")],
                    help="NAME=HZ[:SECTION.KEY=VALUE,...] per phase (views per second; 0 = none)")
    ap.add_argument("--seconds", type=float, default=40.0, help="seconds per phase")
    ap.add_argument("--skip", type=int, default=5, help="first seconds of each phase left out of the median")
    ap.add_argument("--rate", type=float, default=30.0, help="frames per second fed")
    ap.add_argument("--noise-ratio", type=float, default=0.5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="train_with_views.json")
    args = ap.parse_args(argv)

    z = np.load(args.scene_npz)
    k = z["intrinsics"]
    names = [str(c) for c in z["class_names"]]
    clean = z["train_labels"].astype(np.int32)
    scene = {"intrinsics": Intrinsics(*[float(v) for v in k[:4]], int(k[4]), int(k[5])), "class_names": names,
             "rgb": z["train_rgb"], "poses": z["train_poses"], "test_poses": z["test_poses"],
             "depth": z["train_depth"] if "train_depth" in z.files else None,
             "noisy": tasks.pixel_noise(clean, args.noise_ratio, len(names), np.random.default_rng(0))[0]}
    phases = {}
    for name, hz, overrides in args.phases:
        phases[name] = run_phase(name, hz, overrides, scene, args)
        first = next(iter(phases.values()))["it_per_s_median"]
        phases[name]["over_first_phase"] = phases[name]["it_per_s_median"] / first if first else None
        p = phases[name]
        views = f", views p50 {p['view_ms']['p50']:.1f} ms ({p['views']})" if "view_ms" in p else ""
        if "render_wait" in p["timing_ms"]:
            views += f", map lock wait p50 {p['timing_ms']['render_wait']['p50']:.1f} ms"
        print(f"{name}: {p['it_per_s_median']:.0f} it/s ({p['over_first_phase']:.2f} of the first phase){views}",
              flush=True)
        write_json(args.out, {"benchmark": "train_with_views", "scene": args.scene_npz, "rate_hz": args.rate,
                              "device": torch.cuda.get_device_name() if torch.cuda.is_available()
                              else platform.processor() or "cpu", "torch": torch.__version__, "phases": phases})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
