"""``semnerf-make-scene``: render a synthetic house (and optionally its rosbag)."""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..datasets.synthetic.geometry import CLASS_NAMES
from ..datasets.synthetic.output import COMPLETION_MARKER, make_scene
from ..datasets.synthetic.raycast import RAYCASTERS

NOISE_CHOICES = ("pixel", "region", "segmentation", "none")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="semnerf-make-scene",
        description="Render a synthetic house (Replica layout: rgb, depth, semantic class/instance "
                    "images, traj_w_c.txt, intrinsics.json, mesh_gt.ply, scene.json).  Seed 0 is the "
                    "built-in demo room; every other seed is a different house of one to three rooms "
                    "or a corridor with rooms, 17 classes, windows and doors open to the outside "
                    "(void, no depth).")
    p.add_argument("out", help="output folder (created; a previous scene in it is replaced)")
    p.add_argument("--frames", type=int, default=300, help="number of frames (default 300)")
    p.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    p.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    p.add_argument("--seed", type=int, default=0,
                   help="house seed: 0 = the demo room (default), others = the family of houses")
    p.add_argument("--raycaster", choices=RAYCASTERS, default="auto",
                   help="ray casting backend: open3d (Embree), torch (CUDA when available, else CPU), "
                        "auto = open3d when it imports (default)")
    p.add_argument("--device", default=None, help="torch caster device, e.g. cuda or cpu (default: CUDA if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    b = p.add_argument_group("rosbag output (needs semnerf_ros.bags.writer)")
    b.add_argument("--bag", metavar="PATH", help="also write the sequence as a ROS 2 bag")
    b.add_argument("--bag-format", choices=("mcap", "sqlite3"), default="mcap",
                   help="bag storage format (default mcap)")
    b.add_argument("--noise", choices=NOISE_CHOICES, default="pixel",
                   help="label corruption of the bag's segmentation topic: pixel (independent pixels), "
                        "region (whole instances), segmentation (a segmentation network's errors, "
                        "semnerf_ros.tasks.segmentation_noise) or none (default pixel; the ground truth "
                        "goes on its own topic)")
    b.add_argument("--noise-ratio", "--noise-strength", dest="noise_ratio", type=float, default=0.5,
                   help="fraction of pixels / instances corrupted, or the segmentation noise strength, "
                        "in [0, 1] (default 0.5)")
    b.add_argument("--rate", type=float, default=30.0, help="frame rate of the bag in Hz (default 30)")
    b.add_argument("--pose-source", choices=("topic", "tf"), default="topic",
                   help="camera poses as a PoseStamped on /camera/pose (topic, default) or as TF: /tf "
                        "map -> camera_link and /tf_static camera_link -> camera_color_optical_frame "
                        "(run the node with -p pose_source:=tf)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.frames < 1:
        _parser().error("--frames must be >= 1")
    if not 0.0 <= args.noise_ratio <= 1.0:
        _parser().error("--noise-ratio must lie in [0, 1]")
    if args.rate <= 0:
        _parser().error("--rate must be positive")
    write_scene_bag = None
    if args.bag:
        try:
            # optional at run time: only --bag needs it (rosbags); a clear error when it cannot load
            from ..bags.writer import write_scene_bag
        except ImportError as exc:
            print(f"semnerf-make-scene: --bag needs semnerf_ros.bags.writer, which cannot be "
                  f"imported: {exc}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    try:
        out = make_scene(args.out, args.frames, args.width, args.height, args.seed,
                         progress=not args.quiet, raycaster=args.raycaster, device=args.device)
    except (ValueError, FileExistsError, ImportError) as exc:
        print(f"semnerf-make-scene: {exc}", file=sys.stderr)
        return 2
    stats = json.loads((out / COMPLETION_MARKER).read_text())
    plan = stats.get("plan", {})
    rooms = ", ".join(f"{r['kind']} {r['rect'][2] - r['rect'][0]:.1f}x{r['rect'][3] - r['rect'][1]:.1f} m"
                      for r in plan.get("rooms", []))
    print(f"scene: {out}  ({time.perf_counter() - t0:.1f} s, ray casting: {stats.get('raycaster')})\n"
          f"  house: {plan.get('kind')} plan, {rooms}\n"
          f"  classes ({len(CLASS_NAMES)} incl. void): {', '.join(CLASS_NAMES)}\n"
          f"  instances per class: {stats['instances_per_class']}\n"
          f"  mean depth {stats['mean_depth_m']:.2f} m, min {stats.get('min_depth_m', 0):.2f} m, "
          f"max {stats['max_depth_m']:.2f} m, pixels nearer than 0.4 m: "
          f"{100 * stats['near_fraction_below_0.4m']:.2f} %, no depth (outside): "
          f"{100 * (1 - stats['hit_fraction']):.2f} %")
    if write_scene_bag is not None:
        try:
            summary = write_scene_bag(out, args.bag, storage=args.bag_format, rate_hz=args.rate,
                                      noise=args.noise, noise_ratio=args.noise_ratio, seed=args.seed,
                                      progress=not args.quiet, pose_source=args.pose_source)
        except (ValueError, OSError) as exc:
            print(f"semnerf-make-scene: cannot write the bag {args.bag}: {exc}", file=sys.stderr)
            return 2
        frames_written = summary.get("frames") if isinstance(summary, dict) else None
        print(f"bag: {args.bag} ({args.bag_format}, {frames_written} frames, poses as {args.pose_source}, "
              f"noise {args.noise} "
              f"{args.noise_ratio if args.noise != 'none' else ''})".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
