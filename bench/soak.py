"""Soak test: stream >= 10 000 frames through the whole intake path and watch resident memory.

What runs (``--path node``, the default): an in-process ``semnerf_node`` with the real
Mapper (a tiny hash field on the CPU), its background training thread, its render
(``~/semantic`` ... at ``publish_rate``, a subscriber in the same process makes it
render) and status timers on a MultiThreadedExecutor.  Each frame is a fresh set of
messages (rgb8 image, mono8 labels, PoseStamped, optional 32FC1 depth) handed to the
node's subscription callbacks, so every frame goes through the synchronizer, the
conversions and checks, the 2-deep intake queue and ``Mapper.add_frame`` (keyframe
policy, bounded replay buffer with eviction) while training runs — the whole intake
path without the DDS transport, whose queues are bounded by the subscription depth
anyway.  ``--path mapper`` drives ``Mapper.add_frame`` + ``Mapper.step`` directly
(engine only, deterministic steps per frame).

The scene is the analytic box room of the tests (``test/boxroom.py``): ``--poses``
views on a circle, streamed in a loop with increasing stamps, so the keyframe buffer
(``--max-keyframes``) fills within the first few hundred frames and then evicts.

Resident memory (VmRSS) is sampled every ``--sample-every`` frames; the JSON written
to ``--out`` holds the curve and the figures: RSS at the start (node ready, before the
first frame), after the buffer filled, at the end, the growth from buffer-full to the
end, and least-squares slopes (MB per 1000 frames) over the samples after the buffer
filled and over the second half of the run.  Python objects are counted too (a leak of
Python objects shows there first).  With glibc's default of one malloc arena per
thread (the executor, intake and training threads all allocate), RSS climbs some tens
of MB over the first thousands of frames and then plateaus: freed memory kept in the
arenas, not a leak; ``MALLOC_ARENA_MAX=2`` removes most of it (docs/reliability.md).

Mesh extraction (issue 19, bug 12: RSS grew over a run with repeated extractions):
``--export-every N`` writes the mesh (``SemNerfNode.export_mesh``, or ``Mapper.extract_mesh``
+ ``write_mesh`` on the mapper path) every N frames at ``--mesh-resolution``; on the node
path ``--mesh-period S`` also turns on the ``~/mesh`` markers (a subscriber in the process
makes the node extract, decimate and publish them every S seconds).  The meshes made are
counted in the JSON and in the curve.

    OMP_NUM_THREADS=1 python bench/soak.py --frames 10000 --out runs/soak.json
    OMP_NUM_THREADS=1 MALLOC_ARENA_MAX=2 python bench/soak.py --out runs/soak_arena2.json
    OMP_NUM_THREADS=1 python bench/soak.py --frames 4000 --export-every 20 --mesh-period 2 \
        --out runs/soak_mesh.json
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)



def rss_mb() -> float:
    """Resident set size of this process (MB), from /proc (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found in /proc/self/status")


def scene_frames(n_poses: int, width: int, height: int, with_depth: bool):
    from boxroom import box_frames

    return box_frames(n_poses, width, height, radius=0.6, with_depth=with_depth)


class NodeStream:
    """The node in-process with an executor; ``feed(frame, stamp)`` delivers one set."""

    def __init__(self, args, engine_path: Path):
        import rclpy
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from semnerf_ros.bridge import convert
        from semnerf_ros.ros.executor import NodeExecutor
        from semnerf_ros.ros.node import SemNerfNode

        self.convert = convert
        self.rclpy = rclpy
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=args.domain)
        params = dict(num_classes=7, engine_config=str(engine_path), device="cpu", use_depth=args.depth,
                      max_keyframes=args.max_keyframes, keyframe_min_translation=0.05,
                      keyframe_min_rotation_deg=5.0, max_steps_per_second=args.max_steps_per_second,
                      training_enabled=not args.no_training,
                      publish_rate=args.publish_rate, render_scale=1.0, status_rate=1.0,
                      mesh_period=float(args.mesh_period), mesh_resolution=args.mesh_resolution,
                      warn_period=30.0, slop=0.01, qos="reliable", input_timeout=0.0)
        self.node = SemNerfNode(context=self.ctx, parameter_overrides=[Parameter(k, value=v)
                                                                       for k, v in params.items()])
        self.io = rclpy.create_node("soak_probe", context=self.ctx)
        self.outputs = 0
        self.marker_sets = 0
        self.exports = 0
        self.export_path = engine_path.parent / "soak_mesh.ply"

        def count(_msg):
            self.outputs += 1

        def count_markers(_msg):
            self.marker_sets += 1

        self.io.create_subscription(Image, "/semnerf_node/semantic", count,
                                    QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        if args.mesh_period > 0:
            from rclpy.qos import DurabilityPolicy
            from visualization_msgs.msg import MarkerArray

            self.io.create_subscription(MarkerArray, "/semnerf_node/mesh", count_markers,
                                        QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                                   durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.ex = NodeExecutor(num_threads=3, context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.io)
        self.thread = threading.Thread(target=self.ex.spin, daemon=True)
        self.thread.start()
        self.mapper = self.node.mapper
        self.cb = {t: self.node._subs[t].callback for t in self.node.topic_names}
        self.info = None

    def feed(self, frame, stamp: float) -> None:
        c = self.convert
        if self.info is None:
            self.info = c.camera_info_from_intrinsics(frame.intrinsics)
        self.cb["camera_info"](self.info)
        self.cb["pose"](c.pose_stamped_from_pose(frame.pose, "map", stamp))
        self.cb["labels"](c.numpy_to_image(frame.labels.astype(np.uint8), "mono8", c.make_header(stamp, "cam")))
        if "depth" in self.cb:
            self.cb["depth"](c.numpy_to_image(frame.depth, "32FC1", c.make_header(stamp, "cam")))
        self.cb["rgb"](c.numpy_to_image(frame.rgb, "rgb8", c.make_header(stamp, "cam")))

    def export(self, resolution: int) -> None:
        """One mesh export through the node (what ~/export_mesh runs)."""
        self.node.ops.export_mesh(str(self.export_path), resolution=resolution)
        self.exports += 1

    def meshes(self) -> int:
        return self.marker_sets + self.exports

    def counters(self) -> dict:
        n = self.node
        return {"frames_accepted": n.ledger.frames_synced, "frames_rejected": n.ledger.frames_rejected,
                "keyframes_added": n.ledger.keyframes_added, "reject_counts": dict(n.ledger.reject_counts),
                "rendered_outputs": self.outputs, "mesh_marker_sets": self.marker_sets,
                "mesh_exports": self.exports}

    def close(self) -> None:
        self.node.close()
        self.ex.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.io.destroy_node()
        self.rclpy.shutdown(context=self.ctx)


class MapperStream:
    """The engine alone: ``add_frame`` then ``--steps-per-frame`` steps."""

    def __init__(self, args, engine_path: Path):
        from semnerf_ros.engine.config import load_config
        from semnerf_ros.engine.mapper import Mapper

        cfg = load_config(engine_path, {"mapper": {"max_keyframes": args.max_keyframes, "min_translation": 0.05,
                                                   "min_rotation_deg": 5.0}})
        self.mapper = Mapper(cfg, 7, device="cpu")
        self.steps = args.steps_per_frame
        self.accepted = self.keyframes = 0
        self.exports = 0
        self.export_path = engine_path.parent / "soak_mesh.ply"

    def feed(self, frame, stamp: float) -> None:
        frame.stamp = stamp
        d = self.mapper.add_frame(frame)
        self.accepted += 1
        self.keyframes += int(d.keyframe)
        if self.steps:
            self.mapper.step(self.steps)

    def export(self, resolution: int) -> None:
        from semnerf_ros.engine.mesh import write_mesh

        write_mesh(self.mapper.extract_mesh(resolution=resolution), self.export_path)
        self.exports += 1

    def meshes(self) -> int:
        return self.exports

    def counters(self) -> dict:
        return {"frames_accepted": self.accepted, "keyframes_added": self.keyframes,
                "mesh_exports": self.exports}

    def close(self) -> None:
        pass


def slope_per_1000(points) -> float:
    """Least-squares slope of (frame, MB) points, in MB per 1000 frames."""
    if len(points) < 3:
        return float("nan")
    x = np.array([p[0] for p in points], dtype=np.float64)
    y = np.array([p[1] for p in points], dtype=np.float64)
    return float(np.polyfit(x, y, 1)[0] * 1000.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=10000, help="frames to stream (default 10000)")
    ap.add_argument("--path", choices=("node", "mapper"), default="node",
                    help="node: the ROS node in-process (whole intake path); mapper: the engine API")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--height", type=int, default=24)
    ap.add_argument("--poses", type=int, default=240, help="views on the circle, streamed in a loop")
    ap.add_argument("--depth", action="store_true", help="stream depth too")
    ap.add_argument("--max-keyframes", type=int, default=32)
    ap.add_argument("--rate", type=float, default=100.0, help="frames per second offered (node path)")
    ap.add_argument("--max-steps-per-second", type=float, default=5.0,
                    help="training-thread throttle (node path; 0 = as fast as possible)")
    ap.add_argument("--no-training", action="store_true", help="node path: training thread paused")
    ap.add_argument("--publish-rate", type=float, default=2.0, help="rendered outputs per second (node path)")
    ap.add_argument("--steps-per-frame", type=int, default=1, help="training steps per frame (mapper path)")
    ap.add_argument("--sample-every", type=int, default=100, help="frames between RSS samples")
    ap.add_argument("--export-every", type=int, default=0,
                    help="write the mesh every N frames (0 = never; node path: SemNerfNode.export_mesh)")
    ap.add_argument("--mesh-period", type=float, default=0.0,
                    help="node path: ~/mesh markers every S seconds, with a subscriber (0 = off)")
    ap.add_argument("--mesh-resolution", type=int, default=48, help="marching-cubes resolution of the meshes")
    ap.add_argument("--domain", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "0") or 0) or 77)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "soak.json")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    work = args.out.parent
    work.mkdir(parents=True, exist_ok=True)
    engine_path = work / "soak_engine.yaml"
    from boxroom import TINY_ENGINE

    engine_path.write_text(TINY_ENGINE)
    frames = scene_frames(args.poses, args.width, args.height, args.depth)
    stream = NodeStream(args, engine_path) if args.path == "node" else MapperStream(args, engine_path)
    mapper = stream.mapper
    gc.collect()
    start_rss = rss_mb()
    curve = [[0, round(start_rss, 2), 0, 0, 0]]
    export_errors: dict = {}
    fill_frame = fill_rss = None
    fill_objects = None
    t0 = time.perf_counter()
    stamp0 = time.time()
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    next_t = time.perf_counter()
    for i in tqdm(range(1, args.frames + 1), desc="soak", unit="frame", mininterval=2.0):
        frame = frames[(i - 1) % len(frames)]
        stamp = stamp0 + i * max(period, 1e-3)
        stream.feed(frame, stamp)
        if args.export_every and i % args.export_every == 0 and mapper.stats()["keyframes"] > 0:
            try:
                stream.export(args.mesh_resolution)
            except Exception as exc:  # noqa: BLE001 - e.g. no surface yet in an untrained map
                export_errors[type(exc).__name__] = export_errors.get(type(exc).__name__, 0) + 1
        if period:
            next_t += period
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.perf_counter()
        if i % args.sample_every == 0:
            st = mapper.stats()
            rss = rss_mb()
            curve.append([i, round(rss, 2), int(st["keyframes"]), int(st["step"]), stream.meshes()])
            if fill_frame is None and st["keyframes"] >= args.max_keyframes:
                gc.collect()
                fill_frame, fill_rss = i, rss_mb()
                fill_objects = len(gc.get_objects())
    elapsed = time.perf_counter() - t0
    if args.path == "node":   # let the intake drain before the last look
        time.sleep(0.5)
    gc.collect()
    end_rss = rss_mb()
    end_objects = len(gc.get_objects())
    st = mapper.stats()
    counters = stream.counters()
    stream.close()
    after = [p for p in curve if fill_frame is not None and p[0] >= fill_frame]
    result = {
        "path": args.path,
        "frames_streamed": args.frames,
        **counters,
        "training_steps": int(st["step"]),
        "keyframes_in_buffer": int(st["keyframes"]),
        "keyframes_evicted": int(st["keyframes_evicted"]),
        "seconds": round(elapsed, 1),
        "frames_per_second": round(args.frames / elapsed, 1),
        "rss_mb": {"start": round(start_rss, 1),
                   "after_buffer_fill": None if fill_rss is None else round(fill_rss, 1),
                   "end": round(end_rss, 1),
                   "max_after_fill": None if not after else round(max(p[1] for p in after), 1)},
        "buffer_full_at_frame": fill_frame,
        "growth_after_fill_mb": None if fill_rss is None else round(end_rss - fill_rss, 1),
        "slope_after_fill_mb_per_1000_frames": round(slope_per_1000(after), 3),
        "slope_second_half_mb_per_1000_frames": round(slope_per_1000([p for p in curve if p[0] >= args.frames / 2]), 3),
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX", "default"),
        "python_objects": {"after_buffer_fill": fill_objects, "end": end_objects},
        "meshes": {"resolution": args.mesh_resolution, "export_every_frames": args.export_every,
                   "marker_period_s": args.mesh_period, "made": stream.meshes(),
                   "export_errors": export_errors},
        "curve_columns": ["frame", "rss_mb", "keyframes", "training_steps", "meshes"],
        "curve": curve,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "command": " ".join(["python", "bench/soak.py"] + (list(argv) if argv is not None else sys.argv[1:])),
    }
    args.out.write_text(json.dumps(result, indent=1))
    summary = {k: result[k] for k in ("frames_streamed", "frames_accepted", "training_steps", "seconds",
                                      "rss_mb", "growth_after_fill_mb", "slope_after_fill_mb_per_1000_frames",
                                      "slope_second_half_mb_per_1000_frames", "python_objects", "meshes")}
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
