#!/usr/bin/env python3
"""The ROS 2 node end to end: published-image mIoU versus time and latency.

Starts ``semnerf_node`` as a subprocess (as a user would), streams a scene's
training frames to it over DDS from this process (RGB, CameraInfo,
PoseStamped, noisy labels, depth; each stamped with the wall time at which it
is sent plus a small per-topic jitter, looping over the frames with fresh
stamps like a robot revisiting a room), and subscribes to the node's
``~/semantic`` output.  Each published image is matched to its input frame by
header stamp and scored against that frame's clean labels; the noisy input
labels are scored the same way.  Latency = receive time of the published image
minus its header stamp (it includes waiting for the node's publish timer).
With ``--standalone S`` the same invocation then runs the node's engine alone
(the Mapper the node builds from the same parameters, its training thread, the
same frames at the same rate through ``screen_frame``/``add_frame``, nothing
rendered or published) for S seconds and reports its training rate, so the
node's rate can be compared with the engine's on one machine in one run.
Writes JSON (``--out``).

    python bench/node_latency.py --scene-npz scene.npz --duration 60 --out node.json
    python bench/node_latency.py --scene-npz scene.npz --rate 30 --duration 300 --standalone 60
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TOPICS = {"rgb": "/bench/rgb", "camera_info": "/bench/camera_info", "pose": "/bench/pose",
          "labels": "/bench/labels", "depth": "/bench/depth"}


def progress_from_log(path: Path) -> list:
    """The node's progress lines (every ``log_period`` s) as numbers: step, training it/s,
    keyframes, messages received (the least of the topics; None in logs before it was printed),
    frames synced / rejected, mapper_busy drops, intake queue now / capacity / peak,
    render ms p50 / max and GPU memory (MB, on a GPU), so the run has them over time (works
    without the package's interfaces, which ``~/status`` needs)."""
    import re

    # a view's whole time ("view p50/max"); logs before it had the map lock's part only ("render p50/max")
    extras = {"render_ms_p50": re.compile(r"(?:view|render) (\d+)/\d+"),
              "render_ms_max": re.compile(r"(?:view|render) \d+/(\d+)"),
              "gpu_memory_mb": re.compile(r"; gpu (\d+) MB"),
              "messages_received_min": re.compile(r"messages received (\d+)")}

    pat = re.compile(r"step (\d+) \((\d+) it/s\), keyframes (\d+)/\d+; (?:messages received [\d-]+ per topic, )?"
                     r"frames synced (\d+), rejected (\d+)"
                     r"(?:.*?mapper_busy (\d+))?(?:.*?intake queue (\d+)/(\d+) \(peak (\d+)\))?")
    out = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = pat.search(line)
        if m:
            v = [int(x) if x is not None else None for x in m.groups()]
            if v[5] is None:   # the rejected sets' reasons name no mapper_busy: none dropped so far
                v[5] = 0
            rec = dict(zip(("step", "it_per_s", "keyframes", "frames_synced", "frames_rejected", "mapper_busy",
                            "intake_queue", "intake_capacity", "intake_peak"), v))
            for key, rx in extras.items():
                x = rx.search(line)
                rec[key] = int(x.group(1)) if x else None
            out.append(rec)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene-npz", required=True, help="arrays from bench/online.py --export-npz")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of streaming")
    ap.add_argument("--rate", type=float, default=6.0, help="frames per second sent")
    ap.add_argument("--noise-ratio", type=float, default=0.5)
    ap.add_argument("--publish-rate", type=float, default=10.0, help="node parameter publish_rate (Hz)")
    ap.add_argument("--render-scale", type=float, default=1.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--window", type=float, default=10.0, help="seconds per reported mIoU window")
    ap.add_argument("--node-param", nargs="*", default=[], metavar="NAME:=VALUE",
                    help="extra node parameters (-p NAME:=VALUE)")
    ap.add_argument("--engine-set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                    help="engine settings, written to a YAML passed as the node's engine_config")
    ap.add_argument("--standalone", type=float, default=0.0, metavar="S",
                    help="then run the engine alone for S seconds on the same frames and rate (0 = skip)")
    ap.add_argument("--partial-json", type=float, default=0.0, metavar="S",
                    help="also write the figures so far to --out every S seconds while streaming (long runs)")
    ap.add_argument("--out", default="bench_node.json")
    args = ap.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)

    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from semnerf_ros import tasks
    from semnerf_ros.bridge.convert import (
        camera_info_from_intrinsics,
        image_to_numpy,
        numpy_to_image,
        pose_stamped_from_pose,
        sec_to_stamp,
        stamp_to_sec,
    )
    from semnerf_ros.engine.geometry import Intrinsics

    z = np.load(args.scene_npz)
    k = z["intrinsics"]
    intr = Intrinsics(*[float(v) for v in k[:4]], int(k[4]), int(k[5]))
    class_names = [str(c) for c in z["class_names"]]
    nc = len(class_names)
    rgb, clean, poses = z["train_rgb"], z["train_labels"].astype(np.int32), z["train_poses"]
    depth = z["train_depth"] if "train_depth" in z.files else None
    noisy, _ = tasks.pixel_noise(clean, args.noise_ratio, nc, np.random.default_rng(0))

    domain = str(100 + os.getpid() % 100)
    env = dict(os.environ, ROS_DOMAIN_ID=domain, PYTHONUNBUFFERED="1")
    os.environ["ROS_DOMAIN_ID"] = domain
    cmd = [sys.executable, "-m", "semnerf_ros.ros.node", "--ros-args",
           "--params-file", str(ROOT / "config" / "semnerf.yaml"),
           "-p", f"num_classes:={nc}", "-p", f"publish_rate:={args.publish_rate}",
           "-p", f"render_scale:={args.render_scale}", "-p", f"device:={args.device}",
           "-p", "mesh_period:=0.0", "-p", "log_period:=5.0",
           "-p", "slop:=0.02"]
    cmd += ["-p", "class_names:=[" + ",".join(f'"{c}"' for c in class_names) + "]"]
    for p in args.node_param:
        cmd += ["-p", p]
    engine_yaml = ""   # the node's engine_config, and the standalone run's
    if args.engine_set:
        import yaml

        from semnerf_ros.engine.config import overrides_from_items

        eng_path = Path(args.out).with_suffix(".engine.yaml")
        eng_path.write_text(yaml.safe_dump(overrides_from_items(args.engine_set)))
        engine_yaml = str(eng_path.resolve())
        cmd += ["-p", f"engine_config:={engine_yaml}"]
    for name, topic in TOPICS.items():
        cmd += ["-r", f"{name}:={topic}"]
    log = open(Path(args.out).with_suffix(".node.log"), "w")
    node_proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    rclpy.init()
    node = rclpy.create_node("semnerf_bench")
    pubs = {"rgb": node.create_publisher(Image, TOPICS["rgb"], qos_profile_sensor_data),
            "camera_info": node.create_publisher(CameraInfo, TOPICS["camera_info"], qos_profile_sensor_data),
            "pose": node.create_publisher(PoseStamped, TOPICS["pose"], qos_profile_sensor_data),
            "labels": node.create_publisher(Image, TOPICS["labels"], qos_profile_sensor_data),
            "depth": node.create_publisher(Image, TOPICS["depth"], qos_profile_sensor_data)}
    sent = {}  # stamp ns -> frame index
    received = []  # (t_since_start, latency_s, frame index, labels)
    lock = threading.Lock()
    t_start = [None]

    def on_semantic(msg):
        t = time.time()
        ns = msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec
        with lock:
            i = sent.get(ns)
            if i is None or t_start[0] is None:
                return
            received.append((t - t_start[0], t - stamp_to_sec(msg.header.stamp), i, image_to_numpy(msg).copy(),
                             msg.header.frame_id))

    node.create_subscription(Image, "/semnerf_node/semantic", on_semantic, 10)
    last_status = {}
    try:
        from semnerf_ros.msg import MapStatus

        def on_status(msg):
            last_status.update({
                "step": msg.step, "keyframes": msg.keyframes, "iterations_per_second": msg.iterations_per_second,
                "loss": msg.loss, "psnr": msg.psnr, "device": msg.device, "gpu_memory_mb": msg.gpu_memory_mb,
                "frames_synced": msg.frames_synced, "frames_rejected": msg.frames_rejected,
                "received": dict(zip(msg.topics, [int(v) for v in msg.received])),
                "dropped": dict(zip(msg.topics, [int(v) for v in msg.dropped])),
                "rejects": dict(zip(msg.reject_reasons, [int(v) for v in msg.reject_counts]))})

        node.create_subscription(MapStatus, "/semnerf_node/status", on_status, 10)
    except ImportError:
        print("semnerf_ros.msg not built: no ~/status figures", flush=True)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()

    # Wait for the node to subscribe to every input.
    deadline = time.time() + 120
    while time.time() < deadline and any(p.get_subscription_count() == 0 for p in pubs.values()):
        if node_proc.poll() is not None:
            raise SystemExit(f"the node exited with code {node_proc.returncode}; see {log.name}")
        time.sleep(0.2)
    print(f"node ready after {time.time() - (deadline - 120):.1f} s", flush=True)
    info = camera_info_from_intrinsics(intr)
    rng = np.random.default_rng(1)
    def received_snapshot():
        with lock:
            return list(received)

    windows_done = {}   # finished windows' scores, so a partial summary scores only the current one
    writer = None

    def write_partial(n):
        part = summarize(args, received_snapshot(), n, clean, noisy, nc, dict(last_status), node_proc, None,
                         windows_done)
        part["partial_after_s"] = time.time() - t_start[0]
        Path(args.out).write_text(json.dumps(part, indent=2))

    t_start[0] = time.time()
    n_sent = 0
    next_partial = t_start[0] + args.partial_json
    while time.time() - t_start[0] < args.duration:
        i = n_sent % len(poses)
        now = time.time()
        base = now
        jit = rng.uniform(-0.004, 0.004, size=4)
        hdr = lambda dt, base=base: (sec_to_stamp(base + dt), "camera_color_optical_frame")  # noqa: E731
        st, fid = hdr(0.0)
        with lock:
            sent[st.sec * 10 ** 9 + st.nanosec] = i
        m = numpy_to_image(rgb[i], "rgb8")
        m.header.stamp, m.header.frame_id = st, fid
        pubs["rgb"].publish(m)
        info.header.stamp, info.header.frame_id = st, fid
        pubs["camera_info"].publish(info)
        ps = pose_stamped_from_pose(poses[i], "map")
        ps.header.stamp = sec_to_stamp(base + jit[0])
        pubs["pose"].publish(ps)
        lm = numpy_to_image(noisy[i].astype(np.uint8), "mono8")
        lm.header.stamp, lm.header.frame_id = sec_to_stamp(base + jit[1]), fid
        pubs["labels"].publish(lm)
        if depth is not None:
            dm = numpy_to_image(depth[i].astype(np.float32), "32FC1")
            dm.header.stamp, dm.header.frame_id = sec_to_stamp(base + jit[2]), fid
            pubs["depth"].publish(dm)
        n_sent += 1
        if args.partial_json > 0 and time.time() >= next_partial and not (writer and writer.is_alive()):
            next_partial += args.partial_json
            writer = threading.Thread(target=write_partial, args=(n_sent,), daemon=True)
            writer.start()
        time.sleep(max(0.0, t_start[0] + n_sent / args.rate - time.time()))
    time.sleep(1.0)
    node_proc.send_signal(signal.SIGINT)
    t0 = time.time()
    try:
        node_proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        node_proc.kill()
    shutdown_s = time.time() - t0
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown()

    if writer is not None:
        writer.join()
    result = summarize(args, received_snapshot(), n_sent, clean, noisy, nc, last_status, node_proc, shutdown_s,
                       windows_done)
    windows = result["windows"]
    if args.standalone > 0:
        result["standalone"] = run_standalone(args, engine_yaml, rgb, noisy, depth, poses, intr, class_names)
        node_rate = result.get("node_training_it_per_s", {}).get("median")
        if node_rate:
            result["node_over_standalone"] = node_rate / result["standalone"]["it_per_s_median"]
    for w in windows:
        print(f"{w['t0']:5.0f}-{w['t1']:3.0f} s: {w['images']:3d} images  published mIoU {w['published_miou']:.3f} "
              f"(noisy input {w['input_miou']:.3f})", flush=True)
    print("node status:", json.dumps(last_status))
    its = [p["it_per_s"] for p in result["node_progress"][1:]]
    if its:
        print(f"training in the node: {min(its)}-{max(its)} it/s (progress log, start-up line left out)")
    if "standalone" in result:
        s = result["standalone"]
        print(f"engine alone: {s['it_per_s_median']:.0f} it/s median over {s['seconds']:.0f} s; node / alone "
              f"{result.get('node_over_standalone', float('nan')):.2f}")
    print(f"latency ms p50 {result['latency_ms']['p50']:.1f} p90 {result['latency_ms']['p90']:.1f} "
          f"p99 {result['latency_ms']['p99']:.1f}; "
          f"shutdown {shutdown_s:.1f} s, exit code {node_proc.returncode}")
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


def summarize(args, rec, n_sent, clean, noisy, nc, last_status, node_proc, shutdown_s, windows_done) -> dict:
    """The run's figures from the published images received so far (``rec``: (time since the
    first frame s, latency s, frame index, labels, frame_id)): mIoU per ``--window``, latency
    percentiles (ms), the node's progress log parsed, drops, intake peak and GPU memory.
    ``windows_done`` (window start s -> entry) keeps the windows that ended before the last
    image, so that repeated summaries of a long run score each image once."""
    import cv2

    from semnerf_ros.metrics import SegmentationEvaluator

    windows = []
    t_last = rec[-1][0] if rec else 0.0
    for w0 in np.arange(0.0, args.duration, args.window):
        if float(w0) in windows_done:
            windows.append(windows_done[float(w0)])
            continue
        ev_pub, ev_in = SegmentationEvaluator(nc), SegmentationEvaluator(nc)
        sel = [r for r in rec if w0 <= r[0] < w0 + args.window]
        for _, _, i, lab, _ in sel:
            gt = clean[i]
            if lab.shape != gt.shape:
                gt = cv2.resize(gt, (lab.shape[1], lab.shape[0]), interpolation=cv2.INTER_NEAREST)
                nz = cv2.resize(noisy[i], (lab.shape[1], lab.shape[0]), interpolation=cv2.INTER_NEAREST)
            else:
                nz = noisy[i]
            ev_pub.add(gt, lab.astype(np.int32))
            ev_in.add(gt, nz)
        if sel:
            sp, si = ev_pub.scores(), ev_in.scores()
            windows.append({"t0": float(w0), "t1": float(w0 + args.window), "images": len(sel),
                            "published_miou": sp["miou"], "published_accuracy": sp["total_accuracy"],
                            "input_miou": si["miou"], "input_accuracy": si["total_accuracy"]})
            if w0 + args.window <= t_last:
                windows_done[float(w0)] = windows[-1]
    lat = np.array([r[1] for r in rec]) * 1000 if rec else np.zeros(1)
    result = {
        "benchmark": "node", "frames_sent": n_sent, "images_received": len(rec), "rate_hz": args.rate,
        "publish_rate_hz": args.publish_rate, "render_scale": args.render_scale,
        "frame_ids_ok": all(r[4] == "camera_color_optical_frame" for r in rec),
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                       "p99": float(np.percentile(lat, 99)), "max": float(lat.max())},
        "node_progress": progress_from_log(Path(args.out).with_suffix(".node.log")),
        "node_params": args.node_param, "engine_set": args.engine_set,
        "windows": windows, "status": last_status, "shutdown_seconds": shutdown_s,
        "node_exit_code": node_proc.returncode,
    }
    progress = result["node_progress"][1:]
    if progress:
        peak = max(p["intake_peak"] or 0 for p in progress)
        busy = progress[-1]["mapper_busy"]
        result["node_training_it_per_s"] = {"median": float(np.median([p["it_per_s"] for p in progress])),
                                            "min": min(p["it_per_s"] for p in progress)}
        result["mapper_busy_dropped"] = busy
        result["intake_queue_peak"] = peak
        gpu = [p["gpu_memory_mb"] for p in progress if p.get("gpu_memory_mb") is not None]
        if gpu:   # flat after the buffer fills is the target
            result["node_gpu_memory_mb"] = {"first": gpu[0], "last": gpu[-1], "max": max(gpu),
                                            "last_half_range": max(gpu[len(gpu) // 2:]) - min(gpu[len(gpu) // 2:])}
    return result


def run_standalone(args, engine_yaml, rgb, noisy, depth, poses, intr, class_names) -> dict:
    """The node's engine without the node: the Mapper ``make_mapper`` builds from the node's
    default parameters and the node's ``engine_yaml`` (``--engine-set``; "" = none), trained
    by its own thread while this thread feeds the same frames at ``--rate`` as the node's
    intake does.  Returns the training rate (it/s) sampled every second, keyframes and GPU
    memory."""
    from train_with_views import feed_frames

    from semnerf_ros.bridge.engine_setup import make_mapper
    from semnerf_ros.bridge.params import PARAMS

    values = {p.name: p.default for p in PARAMS}
    values["device"] = args.device
    values["num_classes"] = len(class_names)
    values["engine_config"] = engine_yaml
    mapper = make_mapper(values, len(class_names), class_names, lambda s: print("standalone:", s, flush=True))
    mapper.start()
    n, rates = feed_frames(mapper, rgb, noisy, depth, poses, intr, args.rate, args.standalone)
    st = mapper.stats()
    mapper.stop()
    used = rates[2:] or rates
    out = {"seconds": args.standalone, "frames": n, "step": st["step"], "keyframes": st["keyframes"],
           "it_per_s_median": float(np.median(used)) if used else 0.0,
           "it_per_s_samples": rates, "gpu_memory_mb": st["gpu_memory_mb"]}
    print(f"engine alone: {out['it_per_s_median']:.0f} it/s (median), step {st['step']}", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
