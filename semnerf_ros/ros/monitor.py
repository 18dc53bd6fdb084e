"""The demo's ROS side (``semnerf-demo`` stage 4): subscriptions to the node's output and the
bag's ground truth, pairing by header stamp, live scoring, service calls and parameter sets."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np
import rclpy
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from semnerf_ros.msg import MapStatus

from ..bridge import convert
from ..metrics import confusion_matrix, segmentation_scores

NODE_NAME = "semnerf_node"
TOPIC_SEMANTIC = f"/{NODE_NAME}/semantic"
TOPIC_STATUS = f"/{NODE_NAME}/status"
PAIR_SLOP_S = 0.02          # noisy labels pair with the ground truth within this (the node's slop)
MATCH_TIMEOUT_S = 10.0      # a published image whose ground truth has not come by then is unmatched


class MonitorError(RuntimeError):
    """A service the demo needs did not answer (the message says which and why)."""


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class _Bounded(OrderedDict):
    """A dict that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def put(self, key, value) -> None:
        self[key] = value
        while len(self) > self.limit:
            self.popitem(last=False)


@dataclass
class Scored:
    """One published semantic image, scored."""

    t: float                    # receive time, seconds since the stream started
    stamp_ns: int
    conf_published: np.ndarray  # (C, C) confusion vs ground truth
    conf_noisy: np.ndarray      # the noisy input labels of the same frame, same pixels
    images: Optional[dict] = field(default=None, repr=False)   # small arrays for the PNGs


class Monitor:
    """The demo's ROS side: subscriptions, stamp matching, scoring, service calls."""

    def __init__(self, domain_id: int, num_classes: int):

        self.rclpy = rclpy
        self.num_classes = num_classes
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain_id)
        self.node = rclpy.create_node("semnerf_demo", context=self.ctx)
        q = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        self._lock = threading.Lock()
        self.t0: Optional[float] = None           # monotonic time of the first streamed frame
        self._pending: list = []                  # (t_recv, msg) semantic images to score
        self.gt = _Bounded(512)                   # stamp ns -> Image
        self.noisy = _Bounded(512)
        self.rgb = _Bounded(512)                  # stamp ns -> (t_recv, Image)
        self.counts = {"semantic": 0, "labels_gt": 0, "labels": 0, "rgb": 0, "status": 0}
        self.status = None
        self.status_log: list = []                # (t, step, it/s, keyframes, frames_synced)
        self.scored: list[Scored] = []
        self.unmatched = 0
        self.latencies: list[float] = []
        self._seen_stamps: set = set()
        n = self.node
        n.create_subscription(Image, TOPIC_SEMANTIC, self._on_semantic, q)
        n.create_subscription(Image, "/segmentation/labels_gt", self._keep("labels_gt", self.gt), q)
        n.create_subscription(Image, "/segmentation/labels", self._keep("labels", self.noisy), q)
        n.create_subscription(Image, "/camera/color/image_raw", self._on_rgb, q)
        n.create_subscription(MapStatus, TOPIC_STATUS, self._on_status, 10)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(n)
        self._spin = threading.Thread(target=self._spin_loop, name="demo-spin", daemon=True)
        self._spin.start()

    def _spin_loop(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down while spinning
            pass

    # -- callbacks (executor thread): store only
    def _keep(self, name: str, store: _Bounded):
        def cb(msg):
            with self._lock:
                self.counts[name] += 1
                store.put(_stamp_ns(msg.header.stamp), msg)
        return cb

    def _on_rgb(self, msg) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts["rgb"] += 1
            if self.t0 is None:
                self.t0 = now
            self.rgb.put(_stamp_ns(msg.header.stamp), (now, msg))

    def _on_semantic(self, msg) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts["semantic"] += 1
            self._pending.append((now, msg))

    def _on_status(self, msg) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts["status"] += 1
            self.status = msg
            if self.t0 is not None:
                self.status_log.append((now - self.t0, int(msg.step), float(msg.iterations_per_second),
                                        int(msg.keyframes), int(msg.frames_synced)))

    # -- scoring (main thread)
    def elapsed(self) -> float:
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    def _nearest_noisy(self, key: int):
        best, best_d = None, PAIR_SLOP_S * 1e9
        for k, m in self.noisy.items():
            d = abs(k - key)
            if d <= best_d:
                best, best_d = m, d
        return best

    def process(self, flush: bool = False) -> None:
        """Score the published images whose ground truth (and noisy labels) arrived."""
        now = time.monotonic()
        with self._lock:
            pending, self._pending = self._pending, []
        keep = []
        for t_recv, msg in pending:
            key = _stamp_ns(msg.header.stamp)
            with self._lock:
                gt_msg = self.gt.get(key)
                noisy_msg = self._nearest_noisy(key)
                rgb_entry = self.rgb.get(key)
                t0 = self.t0
            if gt_msg is None or noisy_msg is None:
                if flush or now - t_recv > MATCH_TIMEOUT_S:
                    self.unmatched += 1
                else:
                    keep.append((t_recv, msg))
                continue
            if key not in self._seen_stamps:   # first render of this frame: its latency
                self._seen_stamps.add(key)
                if rgb_entry is not None:
                    self.latencies.append(t_recv - rgb_entry[0])
            pub = convert.labels_from_image_msg(msg)
            h, w = pub.shape
            gt = convert.labels_from_image_msg(gt_msg)
            noisy = convert.labels_from_image_msg(noisy_msg)
            if gt.shape != (h, w):
                gt = cv2.resize(gt.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
                noisy = cv2.resize(noisy.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
            pub = np.clip(pub, 0, self.num_classes - 1)   # ids from the node are < num_classes
            images = None
            if len(self.scored) < 5000:
                rgb = None
                if rgb_entry is not None:
                    rgb = convert.rgb_from_image_msg(rgb_entry[1])
                    if rgb.shape[:2] != (h, w):
                        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                images = {"published": pub.astype(np.int32), "gt": gt.astype(np.int32),
                          "noisy": noisy.astype(np.int32), "rgb": rgb}
            self.scored.append(Scored(
                t=(t_recv - t0) if t0 is not None else 0.0, stamp_ns=key,
                conf_published=confusion_matrix(gt, pub, self.num_classes),
                conf_noisy=confusion_matrix(gt, noisy, self.num_classes), images=images))
        with self._lock:
            self._pending = keep + self._pending

    def scores(self, items: list) -> dict:
        """mIoU / accuracy of the published images and of the noisy labels over ``items``."""
        if not items:
            return {"images": 0}
        cp = sum(i.conf_published for i in items)
        cn = sum(i.conf_noisy for i in items)
        sp, sn = segmentation_scores(cp), segmentation_scores(cn)
        return {"images": len(items), "published_miou": sp["miou"], "noisy_miou": sn["miou"],
                "published_accuracy": sp["total_accuracy"], "noisy_accuracy": sn["total_accuracy"]}

    # -- services
    def call(self, srv_type, name: str, request, timeout: float):
        cli = self.node.create_client(srv_type, name)
        try:
            if not cli.wait_for_service(timeout_sec=min(timeout, 30.0)):
                raise MonitorError(f"service {name} is not available")
            fut = cli.call_async(request)
            end = time.monotonic() + timeout
            while not fut.done() and time.monotonic() < end:
                time.sleep(0.05)
            if not fut.done():
                raise MonitorError(f"service {name} did not answer within {timeout:.0f} s")
            if fut.exception() is not None:
                raise MonitorError(f"service {name} failed: {fut.exception()}")
            return fut.result()
        finally:
            self.node.destroy_client(cli)

    def set_bool_parameter(self, name: str, value: bool, timeout: float = 20.0) -> tuple[bool, str]:
        p = Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value))
        res = self.call(SetParameters, f"/{NODE_NAME}/set_parameters", SetParameters.Request(parameters=[p]),
                        timeout)
        r = res.results[0]
        return bool(r.successful), str(r.reason)

    def publisher_seen(self, topic: str) -> bool:
        return self.node.count_publishers(topic) > 0

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=2.0)
        except Exception:  # noqa: BLE001
            pass
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.ctx)
        self._spin.join(timeout=2.0)
