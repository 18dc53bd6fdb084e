"""``semnerf-play``: a small pure-Python rosbag2 player (:mod:`semnerf_ros.ros.bag_player`)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from ..bags.reader import split_ros_args
from ..ros import bag_player


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semnerf-play", description=bag_player.__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", help="rosbag2 folder (or a single .mcap / .db3 file)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    p.add_argument("--loop", action="store_true", help="play again from the start when done")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO",
                   help="rename topics, e.g. /camera/pose:=/pose")
    p.add_argument("--topics", nargs="+", default=None, metavar="TOPIC",
                   help="play only these topics (names in the bag)")
    p.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                   help="skip the first S seconds of the bag")
    p.add_argument("--qos", choices=("sensor_data", "reliable"), default="reliable",
                   help="publisher QoS (reliable reaches both reliable and best-effort subscribers)")
    p.add_argument("--qos-depth", type=int, default=10, help="publisher queue depth (default 10)")
    p.add_argument("--clock", action="store_true",
                   help="publish /clock (rosgraph_msgs/Clock) with the bag time, with every message and "
                        "at --clock-rate in between")
    p.add_argument("--clock-rate", type=float, default=40.0, metavar="HZ",
                   help="/clock rate between messages (default 40)")
    p.add_argument("--delay", type=float, default=0.0, metavar="S",
                   help="wait S seconds before playing (lets subscribers connect)")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                   help="before playing, wait up to S seconds until every topic has a subscriber, or "
                        "until the subscribed topics stayed the same for 2 s (topics nobody reads do "
                        "not hold playback back)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def main(argv: Optional[list] = None) -> int:
    """Entry point; returns 0 when done or interrupted, 1 on an error."""
    own, ros = split_ros_args(sys.argv[1:] if argv is None else list(argv))
    return bag_player.play(build_parser().parse_args(own), ros)


if __name__ == "__main__":
    sys.exit(main())
