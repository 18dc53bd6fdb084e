"""``semnerf-play``: a small pure-Python rosbag2 player (``ros2 bag play`` /
``rosbag2_py`` are not installable here).

Reads MCAP or SQLite3 bags with ``rosbags`` and publishes each message's
stored CDR bytes unchanged through rclpy (``Publisher.publish(bytes)``), so
the published messages are exactly the recorded ones; only the message class
(e.g. ``sensor_msgs/msg/Image`` -> ``sensor_msgs.msg.Image``) is needed to
create the publisher.  Messages go out in log-time order with the recorded
gaps scaled by ``1 / rate``.

    semnerf-play BAG [--rate 1.0] [--loop] [--remap /a:=/b ...] [--topics T ...]
                 [--start-offset S] [--qos sensor_data|reliable] [--clock [--clock-rate HZ]]
                 [--delay S] [--wait-for-subscribers S] [--quiet] [--ros-args ...]

``--clock`` publishes ``/clock`` (rosgraph_msgs/Clock) with the bag's time, for
nodes run with ``use_sim_time:=true``.  ``/tf_static`` is published reliable and transient
local, as tf2_ros's static broadcaster does (a TF listener subscribes to it that way, and a
volatile publisher would not match it).  Ctrl-C / SIGTERM stop it cleanly.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import rclpy
from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock

from ..bags.reader import PlayerError, message_class, parse_remaps


class BagPlayer:
    """Plays one bag on an rclpy node (created by :func:`play`)."""

    def __init__(self, node, bag: str, rate: float = 1.0, topics: Optional[list] = None,
                 remaps: Optional[dict] = None, start_offset: float = 0.0, qos: str = "reliable",
                 qos_depth: int = 10, clock_hz: Optional[float] = None):
        if not rate > 0:
            raise PlayerError(f"--rate must be positive, got {rate}")
        if start_offset < 0:
            raise PlayerError(f"--start-offset must be >= 0, got {start_offset}")
        if clock_hz is not None and not clock_hz > 0:
            raise PlayerError(f"--clock rate must be positive, got {clock_hz}")
        self.node, self.path, self.rate = node, Path(bag), float(rate)
        self.start_offset, self.clock_hz = float(start_offset), clock_hz
        if not self.path.exists():
            raise PlayerError(f"bag not found: {self.path}")
        remaps = remaps or {}
        if qos == "sensor_data":
            profile = QoSProfile(depth=qos_depth)
            profile.reliability = qos_profile_sensor_data.reliability
            profile.history = qos_profile_sensor_data.history
        else:
            profile = QoSProfile(depth=qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        self.reader = Reader(self.path)
        self.reader.open()
        conns = self.reader.connections
        available = sorted({c.topic for c in conns})
        if topics:
            missing = [t for t in topics if t not in available]
            if missing:
                raise PlayerError(f"topics {missing} are not in the bag (it has {available})")
            conns = [c for c in conns if c.topic in topics]
        if not conns:
            raise PlayerError(f"no topics to play in {self.path}")
        self.connections = []
        self.publishers = {}
        for c in conns:
            fmt = getattr(getattr(c, "ext", None), "serialization_format", "cdr")
            if fmt != "cdr":
                raise PlayerError(f"{c.topic}: serialization format {fmt!r} is not CDR")
            name = remaps.get(c.topic, c.topic)
            if name not in self.publishers:
                qos = profile
                if c.topic == "/tf_static":   # latched, as tf2_ros's StaticTransformBroadcaster
                    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
                self.publishers[name] = node.create_publisher(message_class(c.msgtype), name, qos)
            self.connections.append(c)
        self._topic_out = {c.id: remaps.get(c.topic, c.topic) for c in self.connections}
        self.clock_pub = None
        if clock_hz is not None:
            self._Clock = Clock
            self.clock_pub = node.create_publisher(Clock, "/clock", 10)
        self.start_ns = self.reader.start_time + int(self.start_offset * 1e9)
        self.end_ns = self.reader.end_time
        self.published = 0

    def close(self) -> None:
        self.reader.close()

    def wait_for_delivery(self, timeout: float = 2.0) -> bool:
        """Wait up to ``timeout`` s until every reliable subscriber acknowledged every message
        (a player that exits right after its last publish destroys its writers, and DDS drops
        what was not delivered yet: the last frames of a bag went missing).  True when all were
        acknowledged; best-effort publishers count as delivered."""
        deadline = time.monotonic() + max(timeout, 0.0)
        done = True
        for pub in self.publishers.values():
            left = max(deadline - time.monotonic(), 0.0)
            done = pub.wait_for_all_acked(Duration(seconds=left)) and done
        return done

    def wait_for_subscribers(self, timeout: float, ok=lambda: True, settle: float = 2.0) -> bool:
        """Wait up to ``timeout`` s until every publisher has a subscriber, or, once
        some have, until the set of subscribed topics stayed the same for ``settle``
        s (a topic nobody reads, e.g. the bag's ground-truth labels, must not hold
        playback back for the whole timeout); then 0.3 s more, so that the
        subscribers have matched the publishers too.  True when some topic has a
        subscriber."""
        end = time.monotonic() + timeout
        seen, since = frozenset(), time.monotonic()
        while ok() and time.monotonic() < end:
            now = frozenset(t for t, p in self.publishers.items() if p.get_subscription_count() > 0)
            if now != seen:
                seen, since = now, time.monotonic()
            if len(seen) == len(self.publishers) or (seen and time.monotonic() - since >= settle):
                time.sleep(0.3)
                return True
            time.sleep(0.02)
        return False

    def _publish_clock(self, bag_ns: int) -> None:
        self.clock_pub.publish(self._Clock(clock=Time(sec=bag_ns // 1_000_000_000,
                                                      nanosec=bag_ns % 1_000_000_000)))

    def _progress(self, bag_ns: int, final: bool = False) -> None:
        total = max(0.0, (self.end_ns - self.start_ns) / 1e9)
        done = max(0.0, (bag_ns - self.start_ns) / 1e9)
        sys.stderr.write(f"\r[semnerf-play] {done:7.2f} / {total:.2f} s  {self.published} messages"
                         f"  x{self.rate:g}" + ("\n" if final else ""))
        sys.stderr.flush()

    def play_once(self, ok=lambda: True, progress: bool = True) -> None:
        """Publish the bag once; returns early when ``ok()`` turns false."""
        wall0 = time.monotonic()
        clock_period = 1.0 / self.clock_hz if self.clock_hz else None
        next_clock = wall0
        last_progress = 0.0
        bag_ns = self.start_ns
        for conn, t, raw in self.reader.messages(connections=self.connections, start=self.start_ns):
            target = wall0 + (t - self.start_ns) / 1e9 / self.rate
            while True:
                if not ok():
                    return
                now = time.monotonic()
                if clock_period is not None and now >= next_clock:
                    cur = self.start_ns + int((now - wall0) * self.rate * 1e9)
                    self._publish_clock(min(cur, t))
                    next_clock = now + clock_period
                if now >= target:
                    break
                wait = target - now
                if clock_period is not None:
                    wait = min(wait, max(0.0, next_clock - now))
                time.sleep(min(wait, 0.05))
            if self.clock_pub is not None:
                self._publish_clock(t)
            self.publishers[self._topic_out[conn.id]].publish(bytes(raw))
            self.published += 1
            bag_ns = t
            if progress and time.monotonic() - last_progress > 0.5:
                self._progress(bag_ns)
                last_progress = time.monotonic()
        if progress:
            self._progress(bag_ns, final=True)


def play(args: argparse.Namespace, ros_args: list) -> int:
    """Play ``args.bag`` with the options of :func:`semnerf_ros.cli.play.build_parser`;
    ``ros_args``: the ``--ros-args ...`` part of the command line (only that goes to rcl: it
    would take ``--remap A:=B`` as a legacy remap rule).  Returns 0 when done or interrupted,
    1 on an error."""
    rclpy.init(args=[sys.argv[0]] + ros_args)
    node = rclpy.create_node("semnerf_play")
    player = None
    code = 0
    try:
        remaps = parse_remaps(args.remap)
        player = BagPlayer(node, args.bag, rate=args.rate, topics=args.topics, remaps=remaps,
                           start_offset=args.start_offset, qos=args.qos, qos_depth=args.qos_depth,
                           clock_hz=args.clock_rate if args.clock else None)
        node.get_logger().info(
            f"playing {args.bag}: " + ", ".join(
                f"{c.topic}" + (f" -> {player._topic_out[c.id]}" if player._topic_out[c.id] != c.topic else "")
                for c in player.connections) + f" at x{args.rate:g}" + (" (loop)" if args.loop else ""))
        ok = rclpy.ok
        if args.wait_for_subscribers > 0 and not player.wait_for_subscribers(args.wait_for_subscribers, ok):
            missing = [t for t, p in player.publishers.items() if p.get_subscription_count() == 0]
            node.get_logger().warning(f"no subscriber after {args.wait_for_subscribers} s on {missing}; "
                                      f"playing anyway")
        deadline = time.monotonic() + args.delay
        while ok() and time.monotonic() < deadline:
            time.sleep(0.02)
        while ok():
            player.play_once(ok=ok, progress=not args.quiet)
            if not args.loop:
                break
        if ok() and not player.wait_for_delivery(2.0):
            node.get_logger().warning("some messages were not acknowledged by every subscriber within 2 s")
    except PlayerError as exc:
        node.get_logger().error(str(exc))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        if not args.quiet:
            sys.stderr.write("\n")
        node.get_logger().info("interrupted")
    finally:
        if player is not None:
            player.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":  # python -m semnerf_ros.ros.bag_player: the same as semnerf-play
    from ..cli.play import main
    raise SystemExit(main())
