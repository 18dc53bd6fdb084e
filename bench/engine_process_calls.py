#!/usr/bin/env python3
"""What a call into the engine's own process costs (``engine_location: process``), on the CPU.

Starts :class:`~semnerf_ros.bridge.engine_process.EngineProcess` with a tiny CPU field (the test
box room, six keyframes), then times the node's calls as the node makes them:

- ``add_frame`` of a 320x240 frame with depth that is not a keyframe (the 30 Hz path: the frame
  crosses to the child, which decides and returns),
- ``stats`` (the progress and status timers),
- ``render`` of a 64x48 view (all outputs, without probabilities),

each ``--calls`` times, with the child in three states: ``idle``; ``busy`` -- a thread of the child
spinning in Python with the GPU engine's 0.5 ms switch interval, as the graphed training loop holds
the interpreter lock on a GPU; and ``training`` -- the child's own CPU training thread.  Writes
JSON (median and p90 milliseconds per call and state)::

    python bench/engine_process_calls.py --out bench/results/engine_process_calls_cpu.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from boxroom import NUM_CLASSES, TINY_ENGINE, box_frames  # noqa: E402

from semnerf_ros.bridge.engine_process import EngineProcess  # noqa: E402
from semnerf_ros.bridge.engine_setup import make_mapper  # noqa: E402
from semnerf_ros.bridge.params import PARAMS  # noqa: E402
from semnerf_ros.engine.frame import Frame  # noqa: E402
from semnerf_ros.io.jsonio import write_json  # noqa: E402

#: the switch interval the engine sets on a GPU (mapper.switch_interval_ms)
BUSY_SWITCH_INTERVAL_S = 0.0005


def busy_mapper(values, num_classes, class_names, info):
    """``make_mapper`` plus a thread that keeps the child's interpreter lock busy (the ``busy``
    state; module level so the child process can import it)."""
    mapper = make_mapper(values, num_classes, class_names, info)
    sys.setswitchinterval(BUSY_SWITCH_INTERVAL_S)

    def spin() -> None:
        x = 0
        while True:
            x += 1

    threading.Thread(target=spin, name="busy", daemon=True).start()
    return mapper


def time_calls(fn, n: int) -> dict:
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ms.append(1000.0 * (time.perf_counter() - t0))
    return {"p50": float(np.median(ms)), "p90": float(np.percentile(ms, 90)), "max": float(np.max(ms))}


def measure(engine: EngineProcess, frame: Frame, view_pose, view_intr, n: int) -> dict:
    return {"add_frame_320x240": time_calls(lambda: engine.add_frame(frame), n),
            "stats": time_calls(engine.stats, n),
            "render_64x48": time_calls(lambda: engine.render(view_pose, view_intr), max(n // 3, 3))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=60, help="calls timed per kind and state")
    ap.add_argument("--out", default="engine_process_calls.json")
    args = ap.parse_args(argv)

    work = Path(args.out).resolve().parent
    work.mkdir(parents=True, exist_ok=True)
    engine_yaml = work / "engine_process_calls.engine.yaml"
    engine_yaml.write_text(TINY_ENGINE)
    values = {p.name: p.default for p in PARAMS}
    values.update(num_classes=NUM_CLASSES, engine_config=str(engine_yaml), device="cpu")
    frames = box_frames(6, 64, 48)
    big = Frame(rgb=np.zeros((240, 320, 3), np.uint8), pose=frames[0].pose, intrinsics=frames[0].intrinsics.scaled(5.0),
                labels=np.ones((240, 320), np.int32), depth=np.ones((240, 320), np.float32))
    results = {}
    try:
        for state, factory in (("idle", make_mapper), ("busy", busy_mapper), ("training", make_mapper)):
            engine = EngineProcess(factory, values, NUM_CLASSES, None, lambda s: None)
            try:
                for f in frames:
                    engine.add_frame(f)
                if engine.add_frame(big).keyframe:   # the timed frame repeats frame 0's view: not a keyframe
                    raise SystemExit("the timed frame became a keyframe; the benchmark times the other path")
                if state == "training":
                    engine.start()
                    time.sleep(1.0)
                results[state] = measure(engine, big, frames[1].pose, frames[1].intrinsics, args.calls)
                print(state, {k: round(v["p50"], 2) for k, v in results[state].items()}, flush=True)
            finally:
                engine.close(timeout=2.0)
    finally:
        engine_yaml.unlink(missing_ok=True)
    write_json(args.out, {"benchmark": "engine_process_calls", "machine": platform.processor() or "cpu",
                          "python": platform.python_version(), "calls": args.calls, "ms": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
