#!/usr/bin/env python3
"""Online mapping benchmark: label quality versus wall time, render latency, memory.

Streams the training views of a Replica-layout scene (default: the built-in
scene; every ``train_step``-th frame trains, the frame ``test_offset`` after
it tests, as the seed) into a :class:`semnerf_ros.mapper.Mapper` on a
simulated clock: frame ``i`` arrives at ``i / rate`` seconds, training steps
run back to back in between, and at each checkpoint time the clock stops
while the test views are rendered and scored (mIoU, total accuracy, PSNR)
against clean labels, and the training views against their clean labels
(the denoising measure).  Training labels carry the seed's corruption
(default: pixel noise, ratio 0.5).  ``--mode offline`` adds every frame at
t = 0 (the paper's setting).  After the timeline it measures render latency
at 1x and 2x resolution and, with ``--memory-test N``, streams N more
keyframes through the bounded buffer recording GPU memory.

Writes one JSON file (``--out``).  Example (GPU)::

    python bench/online.py --config config/replica_hash.yaml --out results/online_hash.json
"""
from __future__ import annotations

import argparse
import json
import platform
import signal
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
from semnerf_ros.metrics import SegmentationEvaluator, psnr  # noqa: E402


def load_scene(args):
    """(arrays dict, class_names) from a scene npz (see --export-npz) or a Replica folder."""
    if args.scene_npz:
        z = np.load(args.scene_npz, allow_pickle=False)
        d = {k: z[k] for k in z.files}
        d["intrinsics"] = Intrinsics(*[float(v) for v in d["intrinsics"][:4]], int(d["intrinsics"][4]),
                                     int(d["intrinsics"][5]))
        return d, [str(c) for c in d["class_names"]]
    from semnerf_ros.datasets import load_dataset
    from semnerf_ros.datasets.synthetic import ensure_scene

    scene = args.scene or ensure_scene()
    data = load_dataset(scene, width=args.width, height=args.height, train_step=args.train_step,
                        test_offset=args.test_offset)
    tr, te = np.asarray(data.train_ids), np.asarray(data.test_ids)
    d = {
        "train_rgb": data.rgb[tr], "train_labels": data.labels[tr], "train_poses": data.poses[tr],
        "test_rgb": data.rgb[te], "test_labels": data.labels[te], "test_poses": data.poses[te],
        "intrinsics": data.intrinsics,
    }
    if data.depth is not None:
        d["train_depth"], d["test_depth"] = data.depth[tr], data.depth[te]
    if data.instances is not None:
        d["train_instances"] = data.instances[tr]
    return d, list(data.class_names)


def export_npz(d, class_names, path):
    """Save the arrays the benchmark needs (for machines without OpenCV/Open3D)."""
    k = d["intrinsics"]
    out = {key: v for key, v in d.items() if key != "intrinsics"}
    out["intrinsics"] = np.array([k.fx, k.fy, k.cx, k.cy, k.width, k.height], dtype=np.float64)
    out["class_names"] = np.array(class_names)
    np.savez_compressed(path, **out)


def evaluate(m: Mapper, d, num_classes, which: str, labels_gt, max_views: int, views=None) -> dict:
    """Scores of up to ``max_views`` views of ``which`` (test / train), evenly spread over all of
    them or over the indices ``views``."""
    ev = SegmentationEvaluator(num_classes)
    ps, depth_err = [], []
    poses = d[f"{which}_poses"]
    gt_depth = d.get(f"{which}_depth")
    pool = np.arange(len(poses)) if views is None else np.asarray(views)
    idx = pool[np.linspace(0, len(pool) - 1, min(max_views, len(pool))).round().astype(int)]
    for i in idx:
        r = m.render(poses[i], d["intrinsics"])
        ev.add(labels_gt[i], r.labels)
        ps.append(psnr(r.rgb, d[f"{which}_rgb"][i].astype(np.float32) / 255.0))
        if gt_depth is not None:
            g = gt_depth[i].astype(np.float32)
            ok = np.isfinite(g) & (g > 0)
            if ok.any():
                depth_err.append(float(np.mean(np.abs(r.depth[ok] - g[ok]))))
    s = ev.scores()
    return {"miou": s["miou"], "total_accuracy": s["total_accuracy"],
            "class_average_accuracy": s["class_average_accuracy"], "psnr": float(np.mean(ps)), "views": len(idx),
            # rendered z-depth against the ground truth (m), where the ground truth has depth
            "depth_abs_error_m": float(np.mean(depth_err)) if depth_err else None,
            "per_class_iou": [None if not np.isfinite(v) else round(v, 4) for v in s["per_class_iou"]]}


def arrival_times(n: int, rate: float, join_at: float = 0.0, split: float = 0.5) -> np.ndarray:
    """When each of ``n`` training frames arrives (s): at ``rate`` per second from 0; with
    ``join_at`` > 0 the first ``split`` of them so, and the rest (the part of the house entered
    later) at ``rate`` from ``join_at`` on."""
    t = np.arange(n) / rate
    if join_at > 0:
        k = int(round(split * n))
        t[k:] = join_at + np.arange(n - k) / rate
    return t


def join_comparison(records: list, join_at: float) -> list:
    """For each checkpoint after ``join_at``: the part entered then, at its age, beside the first
    part at the same age (where a checkpoint was taken at that age)."""
    first = {round(r["t_nominal"], 3): r["test_first_part"]["miou"] for r in records}
    out = []
    for r in records:
        age = round(r["t_nominal"] - join_at, 3)
        if age > 0:
            out.append({"age_s": age, "second_part_miou": r["test_second_part"]["miou"],
                        "first_part_miou_at_same_age": first.get(age)})
    return out


def curve_summary(records: list) -> dict:
    """Peak, final value and largest drop (below the best so far) of the test mIoU curve."""
    curve = [r["test"]["miou"] for r in records]
    if not curve:
        return {}
    peak = int(np.argmax(curve))
    return {"peak_miou": curve[peak], "peak_t": records[peak]["t"], "final_miou": curve[-1],
            "final_t": records[-1]["t"],
            "largest_drop": float(max(max(curve[:i + 1]) - c for i, c in enumerate(curve))),
            "min_miou_after_first": float(min(curve[1:])) if len(curve) > 1 else curve[0]}


def write_result(path, result: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)


def render_latency(m: Mapper, pose, intr: Intrinsics, repeats: int = 10, with_probs: bool = True) -> float:
    """Median milliseconds to render one view (colour, depth, labels, entropy, opacity, and the
    class probabilities unless ``with_probs`` is False, as the node renders) onto the host."""
    for _ in range(3):
        m.render(pose, intr, with_probs=with_probs)
    times = []
    for _ in range(repeats):
        if m.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        m.render(pose, intr, with_probs=with_probs)
        if m.device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", default="", help="Replica-layout folder (default: the built-in scene)")
    ap.add_argument("--scene-npz", default="", help="arrays saved by --export-npz instead of a folder")
    ap.add_argument("--export-npz", default="", help="only write the scene arrays to this .npz and exit")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--train-step", type=int, default=5)
    ap.add_argument("--test-offset", type=int, default=2)
    ap.add_argument("--config", default="", help="engine YAML (default: package defaults with model.type hash)")
    ap.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                    help="config overrides, e.g. train.wgt_sem=0.1 render.N_rays=8192")
    ap.add_argument("--mode", choices=("online", "offline"), default="online")
    ap.add_argument("--rate", type=float, default=6.0,
                    help="training frames arriving per second (6 = a 30 Hz camera, every 5th frame)")
    ap.add_argument("--noise", choices=tasks.NOISE_KINDS, default="pixel",
                    help="training-label corruption (semnerf_ros.tasks.corrupt_labels): pixel (the seed's), "
                         "segmentation (errors like a segmentation network's, persistent over consecutive "
                         "training views), region or none")
    ap.add_argument("--noise-ratio", "--noise-strength", dest="noise_ratio", type=float, default=0.5,
                    help="its ratio / strength in [0, 1] (the input mIoU is reported)")
    ap.add_argument("--no-depth", action="store_true", help="do not give depth images to the mapper")
    ap.add_argument("--times", type=float, nargs="+", default=[5, 10, 20, 30, 60],
                    help="checkpoints (s on the benchmark clock), e.g. 10 30 60 120 300 600 1800 for long horizons")
    ap.add_argument("--clock", choices=("wall", "steps"), default="wall",
                    help="wall: the clock is wall time spent training (the protocol); steps: each training step "
                         "advances it by 1/--steps-per-second, so runs that share a GPU (or run on a CPU) "
                         "see the same frames at the same step as a standalone run at that rate")
    ap.add_argument("--steps-per-second", type=float, default=60.0,
                    help="training rate the steps clock assumes (measure it standalone with --clock wall)")
    ap.add_argument("--max-test-views", type=int, default=60)
    ap.add_argument("--max-train-views", type=int, default=20)
    ap.add_argument("--latency-repeats", type=int, default=10,
                    help="timed renders per resolution after the timeline (at 1x and 2x; median reported as "
                         "render_ms); 0 skips the measurement")
    ap.add_argument("--memory-test", type=int, default=0, help="keyframes to stream after the timeline")
    ap.add_argument("--save-map", default="", help="save the final map here")
    ap.add_argument("--join-at", type=float, default=0.0,
                    help="a new part of the house entered later: the last (1 - --join-split) of the training "
                         "frames arrive from this time (s) on; test views are also scored per part, and the new "
                         "part at each age is set beside the first part at the same age (0 = off)")
    ap.add_argument("--join-split", type=float, default=0.5,
                    help="share of the training frames (in trajectory order) that form the first part")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_online.json")
    ap.add_argument("--partial-json", action="store_true",
                    help="rewrite --out after every checkpoint, and on SIGTERM, so a stopped run keeps its figures")
    args = ap.parse_args(argv)

    d, class_names = load_scene(args)
    if args.export_npz:
        export_npz(d, class_names, args.export_npz)
        print(f"wrote {args.export_npz}")
        return 0
    num_classes = len(class_names)
    overrides = {"experiment": {"device": args.device, "seed": args.seed}}
    if not args.config:
        overrides["model"] = {"type": "hash"}
    cfg = load_config(args.config or None, overrides_from_items(args.set, overrides))
    n_train = len(d["train_poses"])
    if cfg["mapper"]["keyframe_policy"] == "all" or args.mode == "offline":
        cfg["mapper"]["keyframe_policy"] = "all"
        cfg["mapper"]["max_keyframes"] = max(cfg["mapper"]["max_keyframes"], n_train)

    rng = np.random.default_rng(args.seed)
    clean = d["train_labels"].astype(np.int32)
    noisy, info = tasks.corrupt_labels(clean, args.noise, args.noise_ratio, num_classes, rng,
                                       instances=d.get("train_instances"), class_names=class_names)
    ev = SegmentationEvaluator(num_classes)
    for a, b in zip(clean, noisy):
        ev.add(a, b)
    s_in = ev.scores()
    input_scores = {"miou": s_in["miou"], "total_accuracy": s_in["total_accuracy"]}
    print(f"input labels vs clean: mIoU {input_scores['miou']:.3f}, accuracy {input_scores['total_accuracy']:.3f}")

    intr = d["intrinsics"]
    frames = []
    for i in range(n_train):
        depth = None
        if "train_depth" in d and not args.no_depth:
            depth = d["train_depth"][i].astype(np.float32)
        frames.append(Frame(rgb=d["train_rgb"][i], pose=d["train_poses"][i], intrinsics=intr,
                            labels=noisy[i], depth=depth, stamp=i / args.rate, index=i))
    m = Mapper(cfg, num_classes, class_names, device=args.device)
    warmup_s = m.warmup()
    print(f"warm-up (kernel compilation, before the clock starts): {warmup_s:.1f} s")
    if m.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    checkpoints = sorted(args.times)
    arrive = arrival_times(len(frames), args.rate, args.join_at, args.join_split)
    n_test = len(d["test_poses"])
    k_test = int(round(args.join_split * n_test))   # the seed's split: test view j follows training frame j
    parts = (np.arange(k_test), np.arange(k_test, n_test))
    records = []
    header = {"benchmark": "online", "mode": args.mode, "rate_hz": args.rate, "noise": args.noise,
              "noise_ratio": args.noise_ratio, "depth_given": "train_depth" in d and not args.no_depth,
              "model": cfg["model"]["type"], "config": args.config or "defaults", "overrides": args.set,
              "clock": args.clock, "steps_per_second": args.steps_per_second if args.clock == "steps" else None,
              "join_at": args.join_at or None, "join_split": args.join_split if args.join_at else None,
              "input_labels": input_scores, "warmup_seconds": warmup_s}
    if args.partial_json:
        def on_term(signum, frame):
            write_result(args.out, {**header, "checkpoints": records, "complete": False,
                                    "summary": curve_summary(records)})
            sys.exit(0)

        signal.signal(signal.SIGTERM, on_term)
    sim = 0.0
    nxt = 0
    if args.mode == "offline":
        for f in frames:
            m.add_frame(f)
        nxt = len(frames)
    t_last = time.perf_counter()
    while checkpoints:
        while nxt < len(frames) and arrive[nxt] <= sim:
            m.add_frame(frames[nxt])
            nxt += 1
        if len(m.buffer):
            m.step()
        now = time.perf_counter()
        if args.clock == "wall" or not len(m.buffer):
            sim += now - t_last if args.clock == "wall" else 1.0 / args.rate
        else:
            sim += 1.0 / args.steps_per_second
        t_last = now
        if sim >= checkpoints[0]:
            st = m.stats()
            rec = {
                "t": round(sim, 3), "t_nominal": checkpoints[0], "step": st["step"], "frames_arrived": nxt, "keyframes": st["keyframes"],
                "iterations_per_second": st["step"] / max(sim, 1e-9),
                "test": evaluate(m, d, num_classes, "test", d["test_labels"], args.max_test_views),
                "train_vs_clean": evaluate(m, d, num_classes, "train", clean, args.max_train_views),
                "loss": st.get("loss"), "samples_per_ray": st.get("samples_per_ray"),
            }
            if args.join_at:
                for name, views in zip(("test_first_part", "test_second_part"), parts):
                    rec[name] = evaluate(m, d, num_classes, "test", d["test_labels"], args.max_test_views, views)
                print(f"t={sim:6.1f}s first part mIoU {rec['test_first_part']['miou']:.3f}, part entered at "
                      f"{args.join_at:g} s: {rec['test_second_part']['miou']:.3f}", flush=True)
            records.append(rec)
            print(f"t={sim:6.1f}s step {st['step']:6d} frames {nxt:3d}  test mIoU {rec['test']['miou']:.3f} "
                  f"acc {rec['test']['total_accuracy']:.3f} PSNR {rec['test']['psnr']:.2f}  "
                  f"train-denoised mIoU {rec['train_vs_clean']['miou']:.3f}", flush=True)
            checkpoints.pop(0)
            if args.partial_json:
                write_result(args.out, {**header, "checkpoints": records, "complete": False,
                                        "summary": curve_summary(records)})
            t_last = time.perf_counter()  # evaluation time is not on the clock

    summary = curve_summary(records)
    if args.join_at:
        summary["join"] = join_comparison(records, args.join_at)
        for row in summary["join"]:
            print(f"part entered at {args.join_at:g} s, {row['age_s']:g} s later: mIoU {row['second_part_miou']:.3f}"
                  + ("" if row["first_part_miou_at_same_age"] is None else
                     f" (first part at that age: {row['first_part_miou_at_same_age']:.3f})"))
    if summary:
        print("test mIoU: peak %.3f at %.0f s, final %.3f, largest drop %.3f" %
              (summary["peak_miou"], summary["peak_t"], summary["final_miou"], summary["largest_drop"]))
    latency = {}
    if args.latency_repeats > 0:
        pose = d["test_poses"][0]
        print(f"render latency: 3 warm-up and {args.latency_repeats} timed renders at {intr.width}x{intr.height} "
              f"and at {intr.width * 2}x{intr.height * 2} (--latency-repeats 0 skips this; on a CPU it takes "
              f"minutes)", flush=True)
        for res in (intr, intr.scaled(2.0)):
            latency[f"{res.width}x{res.height}"] = render_latency(m, pose, res, args.latency_repeats)
        print("render latency (ms):", latency)
    peak_mb = torch.cuda.max_memory_allocated() / 2 ** 20 if m.device.type == "cuda" else 0.0

    memory_curve = []
    if args.memory_test:
        m.policy.policy = "all"
        all_rgb = np.concatenate([d["train_rgb"], d["test_rgb"]])
        all_poses = np.concatenate([d["train_poses"], d["test_poses"]])
        all_labels = np.concatenate([noisy, d["test_labels"]])
        for k in range(args.memory_test):
            i = k % len(all_poses)
            m.add_frame(Frame(rgb=all_rgb[i], pose=all_poses[i], intrinsics=intr, labels=all_labels[i]))
            m.step()
            if k % 50 == 49 or k == args.memory_test - 1:
                memory_curve.append({
                    "keyframes_streamed": k + 1, "keyframes_in_buffer": len(m.buffer),
                    "gpu_allocated_mb": torch.cuda.memory_allocated() / 2 ** 20 if m.device.type == "cuda" else 0.0,
                    "buffer_mb": m.buffer.memory_bytes() / 2 ** 20})
        print("memory curve:", memory_curve)
    if args.save_map:
        m.save(args.save_map)

    result = {
        "benchmark": "online", "mode": args.mode, "rate_hz": args.rate, "noise": args.noise,
        "noise_ratio": args.noise_ratio, "depth_given": "train_depth" in d and not args.no_depth,
        "model": cfg["model"]["type"], "config": args.config or "defaults", "overrides": args.set,
        "resolution": [intr.width, intr.height], "train_views": n_train, "test_views": len(d["test_poses"]),
        "device": torch.cuda.get_device_name() if m.device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "input_labels": input_scores, "noise_info": {k: v for k, v in info.items()
                                                                              if isinstance(v, (int, float))},
        "clock": args.clock, "steps_per_second": args.steps_per_second if args.clock == "steps" else None,
        "join_at": args.join_at or None, "join_split": args.join_split if args.join_at else None,
        "warmup_seconds": warmup_s, "checkpoints": records, "summary": summary, "render_ms": latency, "peak_gpu_mb": peak_mb, "memory_curve": memory_curve,
        "final_stats": {k: v for k, v in m.stats().items() if isinstance(v, (int, float, str, bool))},
        "label_fusion": m.stats().get("label_fusion"),
    }
    write_result(args.out, {**result, "complete": True})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
