#!/usr/bin/env python3
"""The RViz mesh: decimation and MarkerArray building on the CPU (issue 14: a decimated marker mesh of
<= 200 k triangles built and published in <= 100 ms).

A room-like marching-cubes mesh (``bench/marching_cubes.py``'s grid, scikit-image, about 1 M faces
at 256^3) is decimated to each ``--targets`` face count by vertex clustering and (where Open3D
imports) quadric decimation, then turned into the node's ``visualization_msgs/MarkerArray``: as
message objects (``bridge.markers.mesh_marker_array``) and as serialized CDR bytes
(``bridge.marker_cdr``, what ``Publisher.publish`` takes as a raw message), each timed; where rclpy
imports, the bytes are read back with ``deserialize_message`` and compared with the objects::

    python bench/marker_mesh.py --resolution 256 --targets 100000 200000 --out marker_mesh.json
    python bench/marker_mesh.py --device cuda --skip-objects --out marker_mesh_h200.json   # as a GPU node
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from semnerf_ros.io.jsonio import write_json  # noqa: E402  (the package's atomic JSON writer)


def best_of(fn, repeats: int):
    out, best = None, float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def time_publish(raw: bytes, repeats: int) -> dict:
    """Best time of ``Publisher.publish(raw)`` on a transient-local, reliable topic (the node's ~/mesh QoS)
    with a subscriber in the same process; and whether the subscriber got it whole."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from visualization_msgs.msg import MarkerArray

    rclpy.init()
    try:
        node = rclpy.create_node("marker_mesh_bench")
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pub = node.create_publisher(MarkerArray, "mesh_bench", qos)
        got = []
        node.create_subscription(MarkerArray, "mesh_bench", got.append, qos)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            pub.publish(raw)
            best = min(best, time.perf_counter() - t0)
        deadline = time.time() + 10
        while not got and time.time() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        n = sum(len(m.points) for m in got[-1].markers) if got else 0
        node.destroy_node()
        return {"seconds": best, "received": bool(got), "points_received": n}
    finally:
        rclpy.shutdown()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--targets", type=int, nargs="+", default=[100000, 200000])
    ap.add_argument("--max-triangles", type=int, default=60000, help="triangles per marker (node mesh_max_triangles)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-objects", action="store_true", help="do not time the message-object path (slow)")
    ap.add_argument("--publish", action="store_true",
                    help="also time Publisher.publish of the bytes on a latched ~/mesh-like topic with one "
                         "subscriber in the same process (rclpy; the node's QoS)")
    ap.add_argument("--device", default="cpu",
                    help="where vertex clustering runs (the node: the map's device, e.g. cuda); the markers' "
                         "bytes are always written on the CPU")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "marker_mesh_cpu.json"))
    args = ap.parse_args(argv)

    from marching_cubes import room_grid
    from skimage.measure import marching_cubes

    from semnerf_ros.engine.mesh import SemanticMesh, decimate

    grid = room_grid(args.resolution)
    verts, faces, _, _ = marching_cubes(grid, level=10.0, method="lorensen")
    verts = (verts / args.resolution * 6.0).astype(np.float32)  # a 6 m room
    n = verts.shape[0]
    rng = np.random.default_rng(0)
    mesh = SemanticMesh(verts, faces.astype(np.int32), rng.integers(0, 255, (n, 3), dtype=np.uint8),
                        rng.integers(1, 17, n).astype(np.int32), [f"c{i}" for i in range(17)])
    print(f"mesh: {mesh.num_vertices} vertices, {mesh.num_faces} faces", flush=True)
    result = {"benchmark": "marker_mesh", "machine": platform.processor() or platform.machine(),
              "cpu_count": __import__("os").cpu_count(), "resolution": args.resolution,
              "faces": mesh.num_faces, "vertices": mesh.num_vertices, "max_triangles": args.max_triangles,
              "decimation_device": args.device,
              "targets": []}
    try:
        from std_msgs.msg import Header

        from semnerf_ros.bridge import marker_cdr
        from semnerf_ros.bridge.markers import mesh_marker_array
    except ImportError as exc:  # no ROS message packages
        print(f"ROS message packages missing ({exc}): decimation only", flush=True)
        marker_cdr = None
    try:
        from rclpy.serialization import deserialize_message, serialize_message
        from visualization_msgs.msg import MarkerArray
    except ImportError:
        serialize_message = None
    for target in args.targets:
        row = {"target_faces": target}
        for method in ("cluster", "quadric"):
            try:
                dec, sec = best_of(lambda t=target, m=method: decimate(mesh, t, method=m, device=args.device),
                                   args.repeats)
            except ImportError as exc:
                row[method] = {"error": str(exc)}
                continue
            row[method] = {"seconds": sec, "faces": dec.num_faces}
            print(f"{target}: {method} {sec * 1000:.0f} ms -> {dec.num_faces} faces", flush=True)
        dec = decimate(mesh, target, method="cluster", device=args.device)
        if marker_cdr is not None:
            header = Header(frame_id="map")
            raw, sec = best_of(lambda d=dec, h=header: marker_cdr.mesh_marker_array_cdr(d, h, args.max_triangles),
                               args.repeats)
            row["cdr_bytes"] = {"seconds": sec, "bytes": len(raw)}
            print(f"{target}: CDR bytes {sec * 1000:.0f} ms, {len(raw) / 1e6:.1f} MB", flush=True)
            if not args.skip_objects:
                msg, sec = best_of(lambda d=dec, h=header: mesh_marker_array(d, h, args.max_triangles), 1)
                row["message_objects"] = {"seconds": sec}
                print(f"{target}: message objects {sec * 1000:.0f} ms", flush=True)
                if serialize_message is not None:
                    ref, sec = best_of(lambda m=msg: serialize_message(m), 1)
                    row["rclpy_serialize_of_objects"] = {"seconds": sec}
                    same = len(ref) == len(raw) and deserialize_message(raw, MarkerArray) == msg
                    row["cdr_reads_back_equal"] = bool(same)
                    print(f"{target}: rclpy serialize {sec * 1000:.0f} ms; reads back equal: {same}", flush=True)
        if args.publish and marker_cdr is not None:
            row["publish"] = time_publish(raw, args.repeats)
            print(f"{target}: publish {row['publish']['seconds'] * 1000:.0f} ms, received "
                  f"{row['publish']['received']}", flush=True)
        result["targets"].append(row)
    write_json(args.out, result, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
