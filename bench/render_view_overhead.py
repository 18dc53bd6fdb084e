#!/usr/bin/env python3
"""What ``~/render_view`` adds to a render: the service's own cost, with the render taken out.

The node runs in this process with an engine stand-in whose ``render`` returns a precomputed view
at once (the colour, depth, label and entropy arrays a real view has), so a call's round trip is
what the service adds to :meth:`Mapper.render`: the request's pose and camera checks, the five
output images built (labels, colourised labels, 8-bit colour, depth, entropy) and their transfer
over DDS to a client in the same process, answered by the node's executor.  The GPU's view times are
in docs/benchmarks.md; a round trip is about that plus this.  Needs the package's built interfaces.
Writes JSON (p50 / p90 ms per resolution)::

    python bench/render_view_overhead.py --out bench/results/render_view_overhead_cpu.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rclpy  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from semnerf_ros.bridge import convert  # noqa: E402
from semnerf_ros.engine.geometry import Intrinsics  # noqa: E402
from semnerf_ros.io.jsonio import write_json  # noqa: E402
from semnerf_ros.ros.executor import NodeExecutor  # noqa: E402
from semnerf_ros.ros.node import SemNerfNode  # noqa: E402
from semnerf_ros.ros.services import load_interfaces  # noqa: E402

NUM_CLASSES = 18


class InstantViews:
    """An engine stand-in: one keyframe, and views returned at once (random arrays of a real
    view's types, made once per resolution)."""

    device = "cpu"

    def __init__(self):
        self._views: dict = {}

    def render(self, pose, intr, scale=1.0):
        it = intr.scaled(scale)
        key = (it.width, it.height)
        if key not in self._views:
            rng = np.random.default_rng(0)
            shape = (it.height, it.width)
            self._views[key] = SimpleNamespace(
                rgb=rng.random((*shape, 3), dtype=np.float32), depth=rng.random(shape, dtype=np.float32) * 5,
                labels=rng.integers(1, NUM_CLASSES, shape).astype(np.int32),
                entropy=rng.random(shape, dtype=np.float32), intrinsics=it)
        return self._views[key]

    def stats(self):
        return {"keyframes": 1, "step": 1}

    def screen_frame(self, frame):
        return None

    def add_frame(self, frame):
        return SimpleNamespace(keyframe=False, reason="stand-in")

    def start(self):
        pass

    def pause(self):
        pass

    def resume(self):
        pass

    def stop(self, timeout=5.0):
        return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=40, help="timed calls per resolution (after 3 warm-up calls)")
    ap.add_argument("--sizes", nargs="+", default=["320x240", "640x480"], help="WIDTHxHEIGHT")
    ap.add_argument("--out", default="render_view_overhead.json")
    args = ap.parse_args(argv)
    iface = load_interfaces()
    if iface is None:
        raise SystemExit("the package's interfaces are not built (scripts/setup.sh builds them)")

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=77)
    params = dict(num_classes=NUM_CLASSES, device="cpu", publish_rate=0.0, status_rate=0.0, mesh_period=0.0,
                  log_period=0.0, training_enabled=False)
    node = SemNerfNode(mapper=InstantViews(), context=ctx,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    client_node = rclpy.create_node("render_view_probe", context=ctx)
    ex = NodeExecutor(num_threads=4, context=ctx)   # the node's own executor (ros/process.py)
    ex.add_node(node)
    ex.add_node(client_node)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    cli = client_node.create_client(iface["RenderView"], "/semnerf_node/render_view")
    if not cli.wait_for_service(timeout_sec=10.0):
        raise SystemExit("~/render_view did not appear")
    results = {}
    try:
        for size in args.sizes:
            w, h = (int(v) for v in size.lower().split("x"))
            intr = Intrinsics(w / 2.0, w / 2.0, w / 2.0, h / 2.0, w, h)
            req = iface["RenderView"].Request()
            req.pose = convert.pose_stamped_from_pose(np.eye(4), "map", 1.0)
            req.camera_info = convert.camera_info_from_intrinsics(intr, convert.make_header(1.0, "cam"))
            req.scale = 1.0
            ms = []
            for k in range(args.calls + 3):
                done = threading.Event()
                t0 = time.perf_counter()
                fut = cli.call_async(req)
                fut.add_done_callback(lambda _f, ev=done: ev.set())
                if not done.wait(30.0) or not fut.result().success:
                    raise SystemExit(f"~/render_view failed at {size}: "
                                     f"{fut.result().message if fut.done() else 'no answer'}")
                if k >= 3:
                    ms.append(1000.0 * (time.perf_counter() - t0))
            results[size] = {"p50": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
                             "max": float(np.max(ms)), "calls": len(ms)}
            print(size, {k: round(v, 2) for k, v in results[size].items()}, flush=True)
    finally:
        ex.shutdown(timeout_sec=2.0)
        node.close()
        node.destroy_node()
        client_node.destroy_node()
        rclpy.shutdown(context=ctx)
    write_json(args.out, {"benchmark": "render_view_overhead", "machine": platform.processor() or "cpu",
                          "python": platform.python_version(), "ms": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
