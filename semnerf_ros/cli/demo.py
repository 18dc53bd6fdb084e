"""``semnerf-demo``: the whole product in one command, on the built-in room (:mod:`semnerf_ros.demo`)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from ..demo import NOISE_CHOICES, NOISE_MODEL, NOISE_RATIO, DemoError, make_settings, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="semnerf-demo",
        description="End-to-end demo: built-in room -> rosbag with noisy labels -> semnerf_node + "
                    "semnerf-play -> denoised semantic images scored live, semantic mesh, summary.")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of streaming (default 120 on CPU, 60 with CUDA); sets --rate")
    p.add_argument("--rate", type=float, default=None,
                   help="bag playback speed factor (default: bag length / --duration)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--width", type=int, default=None, help="image width (default 160 on CPU, 320 with CUDA)")
    p.add_argument("--height", type=int, default=None, help="image height (default 120 on CPU, 240 with CUDA)")
    p.add_argument("--frames", type=int, default=None, help="frames of the room (default 150 on CPU, 300 with CUDA)")
    p.add_argument("--mesh-resolution", type=int, default=None,
                   help="marching-cubes cells along the room's longest side (default 64 on CPU, 256 with CUDA)")
    p.add_argument("--noise", choices=NOISE_CHOICES, default=NOISE_MODEL,
                   help="label corruption in the bag: pixel (default; independent pixels), segmentation "
                        "(a segmentation network's errors: missed thin objects, confused classes, bleeding "
                        "edges, blobs, persistent over frames), region (whole objects) or none")
    p.add_argument("--noise-strength", type=float, default=NOISE_RATIO,
                   help=f"noise ratio / strength in [0, 1] (default {NOISE_RATIO}; segmentation: about 0.3 "
                        f"gives an input mIoU of 0.6)")
    p.add_argument("--pose-source", choices=("topic", "tf"), default="topic",
                   help="camera poses: topic (PoseStamped on /camera/pose, default) or tf (/tf and "
                        "/tf_static in the bag, the node looks them up: pose_source:=tf)")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID of the run (default: a random one in 1..100)")
    return p


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = make_settings(args)
    except DemoError as exc:
        print(f"semnerf-demo: {exc}", file=sys.stderr)
        return 2
    try:
        return run(settings)
    except KeyboardInterrupt:
        print("\nsemnerf-demo: interrupted", file=sys.stderr)
        return 130
    except DemoError as exc:
        print(f"semnerf-demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
