"""Fault injection: the real ``semnerf_node`` and ``Mapper`` under bad input and faults.

Each test builds an in-process :class:`SemNerfNode` whose real :class:`Mapper`
(a tiny hash field on the CPU) loads a map trained once for this module
(``load_on_start``), with training paused so that renders are deterministic.
Inputs are delivered by calling the node's own subscription callbacks (what the
executor calls for each message), so topic order is deterministic and the whole
intake path runs: synchronizer, conversions, checks, intake thread,
``Mapper.add_frame``.  Outputs go over real DDS to a subscriber node in the same
process.  For every fault the test checks that the node keeps running and keeps
publishing for good input that follows, that the rejection is counted in
``~/status`` (``reject_reasons``/``reject_counts``, per-topic ``dropped``), that
a clear warning was logged once (throttled), that every message is accounted for
(used, dropped with a reason, or still queued) and that the map is intact (the
same render from a fixed pose before and after, the same keyframes).
Subprocesses only where needed: Ctrl-C during an export, start-up errors.
The behaviour observed here is tabulated in docs/reliability.md.
"""
from __future__ import annotations

import errno
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy  # a hard dependency: test/test_install.py names it when missing
import torch
from boxroom import NUM_CLASSES, TINY_ENGINE, box_frames  # noqa: E402
from dds_rig import DdsRig, closing_factory, next_domain, wait
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from semnerf_ros.bridge import convert  # noqa: E402
from semnerf_ros.bridge.intake import STAMP_REBASE_SETS  # noqa: E402
from semnerf_ros.bridge.params import ParameterValueError  # noqa: E402
from semnerf_ros.engine.config import load_config  # noqa: E402
from semnerf_ros.engine.frame import Frame  # noqa: E402
from semnerf_ros.engine.geometry import PoseError  # noqa: E402
from semnerf_ros.engine.mapper import Mapper  # noqa: E402
from semnerf_ros.engine.mesh import read_mesh, write_mesh  # noqa: E402
from semnerf_ros.io import atomic as atomic_io  # noqa: E402
from semnerf_ros.ros.node import SemNerfNode  # noqa: E402
from semnerf_ros.ros.services import load_interfaces as _interfaces  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IFACE = _interfaces()
# ~/status (MapStatus) and the map services are what these tests read; they are part of every
# install, so their absence fails this module (test/test_install.py says what is missing)
assert IFACE is not None, "semnerf_ros.msg / semnerf_ros.srv do not import: run scripts/build_interfaces.py"
W, H = 32, 24
TOPICS = ("rgb", "labels", "pose", "depth")
#: steps of the module's map; not a multiple of render.occupancy_update_every (16), so a
#: skipped step at this count does not fall on an occupancy-grid update
PREP_STEPS = 40


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The box room (24 frames, 32x24, depth) and a map trained on it, saved to a file."""
    d = tmp_path_factory.mktemp("faults")
    engine = d / "tiny.yaml"
    engine.write_text(TINY_ENGINE)
    frames = box_frames(24, W, H)
    m = Mapper(load_config(engine), NUM_CLASSES, device="cpu")
    for f in frames:
        m.add_frame(f)
    m.step(PREP_STEPS)
    path = m.save(d / "trained.pt")
    return {"engine": engine, "map": path, "frames": frames, "dir": d}


# --------------------------------------------------------------------------- the rig


class LogRecorder:
    """Stands in for the node's rclpy logger: records every line, then forwards it
    (one call site per severity: rclpy's logger insists on that)."""

    def __init__(self, real):
        self.real, self.lines, self.lock = real, [], threading.Lock()

    def _rec(self, level, text):
        with self.lock:
            self.lines.append((level, str(text)))

    def warning(self, text, **kw):
        self._rec("warning", text)
        return self.real.warning(text)

    warn = warning

    def info(self, text, **kw):
        self._rec("info", text)
        return self.real.info(text)

    def error(self, text, **kw):
        self._rec("error", text)
        return self.real.error(text)

    def debug(self, text, **kw):
        self._rec("debug", text)
        return self.real.debug(text)

    def warnings(self, needle=""):
        with self.lock:
            return [t for lvl, t in self.lines if lvl == "warning" and needle in t]


class Rig(DdsRig):
    """An in-process node with the real Mapper, a DDS subscriber for its outputs,
    and helpers to feed (possibly broken) frames and check the invariants."""

    def __init__(self, scene, no_camera_info=False, **params):
        self.scene = scene
        self.frames = scene["frames"]
        self.intr = self.frames[0].intrinsics
        self.open_context()
        p = dict(num_classes=NUM_CLASSES, engine_config=str(scene["engine"]), device="cpu",
                 load_on_start=True, map_path=str(scene["map"]), training_enabled=False,
                 publish_rate=10.0, render_scale=1.0, status_rate=0.0, mesh_period=0.0,
                 mesh_resolution=12, mesh_density_threshold=2.0, warn_period=60.0, qos="reliable",
                 max_keyframes=16, keyframe_min_translation=0.05, keyframe_min_rotation_deg=5.0,
                 slop=0.01, max_stamp_age=60.0, max_future=5.0)
        p.update(params)
        self.node = SemNerfNode(context=self.ctx,
                                parameter_overrides=[Parameter(k, value=v) for k, v in p.items()])
        self.log = LogRecorder(self.node.get_logger())
        self.node.get_logger = lambda: self.log
        self.mapper = self.node.mapper
        self.io = rclpy.create_node("fault_probe", context=self.ctx)
        self.semantic = []
        self.io.create_subscription(Image, "/semnerf_node/semantic", self.semantic.append,
                                    QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.spin(threads=3)
        assert wait(lambda: self.node.outputs.images["semantic"].get_subscription_count() > 0, 10), "no DDS match"
        self.k = 0                         # next scene frame
        self.injected = 0                  # frames put straight into the intake (not from the synchronizer)
        self.last_stamp = time.time() - 5.0
        if not no_camera_info:
            self.camera_info(convert.camera_info_from_intrinsics(self.intr))

    # -- input
    def camera_info(self, msg):
        self.node._subs["camera_info"].callback(msg)

    def next_stamp(self):
        self.last_stamp = max(self.last_stamp + 0.002, time.time())
        return self.last_stamp

    def messages(self, stamp=None, frame=None, frame_id="cam"):
        """Messages of the next scene frame (rgb8, mono8 labels, PoseStamped, 32FC1 depth)."""
        f = frame if frame is not None else self.frames[self.k % len(self.frames)]
        self.k += 1
        stamp = self.next_stamp() if stamp is None else stamp
        hdr = lambda: convert.make_header(stamp, frame_id)  # noqa: E731
        return {"rgb": convert.numpy_to_image(f.rgb, "rgb8", hdr()),
                "labels": convert.numpy_to_image(f.labels.astype(np.uint8), "mono8", hdr()),
                "pose": convert.pose_stamped_from_pose(f.pose, "map", stamp),
                "depth": convert.numpy_to_image(f.depth.astype(np.float32), "32FC1", hdr())}, stamp

    def deliver(self, msgs, skip=()):
        for t in ("pose", "labels", "depth", "rgb"):
            if t in self.node._subs and t not in skip:
                self.node._subs[t].callback(msgs[t])

    def send(self, mutate=None, stamp=None, skip=()):
        """One set of the next scene frame, ``mutate(msgs)`` applied first; returns its stamp."""
        msgs, stamp = self.messages(stamp)
        if mutate is not None:
            mutate(msgs)
        self.deliver(msgs, skip)
        return stamp

    def settle(self, timeout=10.0):
        """Wait until every synchronized set is accounted for (accepted or rejected)."""
        n = self.node
        ok = wait(lambda: n.ledger.frames_synced + n.ledger.frames_rejected == n.sync.emitted + self.injected
                  and not n.intake.queue, timeout)
        assert ok, (n.ledger.frames_synced, n.ledger.frames_rejected, n.sync.emitted, self.injected,
                    n.ledger.reject_counts)

    # -- checks
    def status(self):
        st = self.node.status_message()
        return (dict(zip(st.reject_reasons, st.reject_counts)),
                dict(zip([t.lstrip("/") for t in st.topics], st.dropped)), st)

    def assert_accounted(self):
        """Nothing is lost silently: per synced topic, received = emitted + dropped + queued;
        every emitted set was accepted or rejected with a reason."""
        self.settle()
        s = self.node.sync.stats()
        for i, t in enumerate(self.node.synced_topics):
            assert s["received"][i] == s["emitted"] + s["dropped"][i] + s["queued"][i], (t, s)
            assert self.node.ledger.received[t] == s["received"][i]
        assert s["emitted"] + self.injected == self.node.ledger.frames_synced + self.node.ledger.frames_rejected
        assert self.node.ledger.frames_rejected == sum(v for k, v in self.node.ledger.reject_counts.items()
                                                if k != "invalid_camera_info")

    def map_state(self):
        """A render from a fixed pose (training is paused) and the keyframes held."""
        r = self.mapper.render(self.frames[5].pose, self.intr)
        return {"rgb": r.rgb, "depth": r.depth, "labels": r.labels, "keyframes": list(self.mapper.buffer.keyframe_ids)}

    def assert_map_intact(self, before, keyframes_may_grow=False):
        after = self.map_state()
        for k in ("rgb", "depth", "labels"):
            np.testing.assert_array_equal(after[k], before[k], err_msg=f"render {k} changed")
        if not keyframes_may_grow:
            assert after["keyframes"] == before["keyframes"], "rejected input reached the keyframe buffer"

    def assert_recovers(self, n=2):
        """Good input that follows is accepted and rendered outputs carrying its stamp are published."""
        self.settle()
        synced = self.node.ledger.frames_synced
        stamps = []
        for _ in range(n):                 # at the nominal rate: each set is taken before the next
            stamps.append(self.send())
            self.settle()
        assert self.node.ledger.frames_synced == synced + n, self.node.ledger.reject_counts
        want = stamps[-1]
        assert wait(lambda: self.published_at(want), 15), \
            f"no ~/semantic output for the good frame at {want} ({len(self.semantic)} outputs)"

    def output_stamps(self) -> list:
        """The input stamps (s) of the ~/semantic outputs received so far."""
        return [convert.stamp_to_sec(m.header.stamp) for m in list(self.semantic)]

    def published_at(self, stamp: float) -> bool:
        """Whether a ~/semantic output carrying input stamp ``stamp`` (s) has been received."""
        return any(abs(s - stamp) < 1e-6 for s in self.output_stamps())


@pytest.fixture
def rig(scene):
    yield from closing_factory(lambda **params: Rig(scene, **params))


def image(arr, enc, like):
    return convert.numpy_to_image(arr, enc, like.header)


def new_view(k):
    """A mutation moving the camera 0.3 m per ``k`` along x: a view the buffer does not have. The
    rig loops over its scene frames, whose views the buffer already holds, and the keyframe policy
    turns revisits away before the intake queue (Mapper.screen_frame)."""
    def mutate(msgs):
        msgs["pose"].pose.position.x += 0.3 * (k + 1)
    return mutate


def set_msg(topic, fn):
    """A mutation replacing ``msgs[topic]`` by ``fn(msgs[topic])``."""
    def mutate(msgs):
        msgs[topic] = fn(msgs[topic])
    return mutate


def run_faults(r, faults):
    """Send each (mutation, reason, topic, text) fault; check counts, per-topic dropped and
    that each fault's warning text was logged (waiting out ``warn_period`` when a
    warning of the same reason and topic was just logged)."""
    reasons0, dropped0, _ = r.status()
    expect, drop, last = {}, {}, {}
    for mutate, reason, topic, _text in faults:
        if (reason, topic) in last:
            time.sleep(max(0.0, last[(reason, topic)] + r.node.values["warn_period"] + 0.05 - time.monotonic()))
        r.send(mutate)
        last[(reason, topic)] = time.monotonic()
        expect[reason] = expect.get(reason, 0) + 1
        drop[topic] = drop.get(topic, 0) + 1
    r.settle()
    reasons, dropped, st = r.status()
    for reason, n in expect.items():
        assert reasons.get(reason, 0) - reasons0.get(reason, 0) == n, (reason, reasons)
    for topic, n in drop.items():
        assert dropped[topic] - dropped0[topic] == n, (topic, dropped)
    for _m, reason, _topic, text in faults:
        assert any(text in w and f"({reason})" in w for w in r.log.warnings()), \
            (reason, text, r.log.warnings())
    return reasons


# =========================================================================== 1..9: bad input


def test_01_unsupported_encodings(rig):
    r = rig(use_depth=True, warn_period=0.3)
    before = r.map_state()
    faults = [
        (set_msg("rgb", lambda m: (setattr(m, "encoding", "yuv422"), m)[1]), "unsupported_encoding", "rgb",
         "image encoding 'yuv422' is not a colour encoding; expected one of rgb8"),
        (set_msg("rgb", lambda m: image(np.zeros((H, W), np.float32), "32FC1", m)), "unsupported_encoding",
         "rgb", "'32FC1' is not a colour encoding"),
        (set_msg("labels", lambda m: image(np.ones((H, W), np.float32), "32FC1", m)), "unsupported_encoding",
         "labels", "'32FC1' cannot hold class ids"),
        (set_msg("depth", lambda m: image(np.zeros((H, W, 3), np.uint8), "rgb8", m)), "unsupported_encoding",
         "depth", "'rgb8' is not a depth encoding"),
        (set_msg("rgb", lambda m: (setattr(m, "data", bytes(m.data)[: len(m.data) // 2]), m)[1]), "bad_image",
         "rgb", "image data holds"),
        (set_msg("labels", lambda m: (setattr(m, "step", W - 1), m)[1]), "bad_image", "labels",
         "step 31 is less than width"),
    ]
    run_faults(r, faults)
    # throttled: one warning per warn_period (0.3 s) per reason and topic; the faults in
    # between are counted, and the next warning says how many were not logged
    time.sleep(0.35)
    n_logged = len(r.log.warnings("rejected (unsupported_encoding): rgb"))
    for _ in range(5):
        r.send(faults[0][0])
    r.settle()
    assert len(r.log.warnings("rejected (unsupported_encoding): rgb")) == n_logged + 1
    assert r.status()[0]["unsupported_encoding"] == 4 + 5
    time.sleep(0.35)
    r.send(faults[0][0])
    r.settle()
    last = r.log.warnings("rejected (unsupported_encoding): rgb")[-1]
    assert "yuv422" in last and "[4 more like this in the last 0." in last, last
    r.assert_accounted()
    r.assert_map_intact(before)
    r.assert_recovers()


def test_02_image_size_mismatch(rig):
    r = rig(use_depth=True, warn_period=0.2)
    before = r.map_state()

    def half(m, enc):
        return image(convert.image_to_numpy(m)[::2, ::2], enc, m)

    faults = [
        (set_msg("labels", lambda m: half(m, "mono8")), "size_mismatch", "labels", "labels are 16x12 but rgb is 32x24"),
        (set_msg("depth", lambda m: half(m, "32FC1")), "size_mismatch", "depth", "depth is 16x12 but rgb is 32x24"),
    ]
    run_faults(r, faults)
    # a camera_info for another image shape (aspect ratio differs): frames no longer fit it
    other = convert.camera_info_from_intrinsics(r.intr.resized(40, 24))
    r.camera_info(other)
    run_faults(r, [(None, "size_mismatch", "rgb", "rgb is 32x24 but the camera intrinsics are for 40x24")])
    r.assert_map_intact(before)
    r.camera_info(convert.camera_info_from_intrinsics(r.intr))
    # the same camera at half resolution (same aspect ratio) is accepted with scaled intrinsics
    synced = r.node.ledger.frames_synced

    def all_half(msgs):
        for t, enc in (("rgb", "rgb8"), ("labels", "mono8"), ("depth", "32FC1")):
            msgs[t] = half(msgs[t], enc)

    r.send(all_half)
    r.settle()
    assert r.node.ledger.frames_synced == synced + 1 and r.node._latest[1] == r.intr.resized(16, 12)
    r.assert_accounted()
    r.assert_map_intact(before, keyframes_may_grow=True)
    r.assert_recovers()


def test_03_label_ids_outside_class_set(rig):
    r = rig(warn_period=0.2)
    before = r.map_state()
    full = lambda v, dt, enc: set_msg("labels", lambda m: image(np.full((H, W), v, dt), enc, m))  # noqa: E731
    faults = [
        (full(NUM_CLASSES, np.uint8, "mono8"), "label_out_of_range", "labels",
         f"label id {NUM_CLASSES} outside 0..{NUM_CLASSES - 1}"),
        (full(255, np.uint8, "mono8"), "label_out_of_range", "labels", "label id 255"),
        (full(1000, np.uint16, "16UC1"), "label_out_of_range", "labels", "label id 1000"),
        (full(-1, np.int32, "32SC1"), "label_out_of_range", "labels", "label id -1"),
    ]
    run_faults(r, faults)
    r.assert_accounted()
    r.assert_map_intact(before)
    r.assert_recovers()


def test_04_invalid_and_non_rigid_pose(rig):
    r = rig(warn_period=0.2)
    before = r.map_state()

    def pose(fn):
        def mutate(msgs):
            fn(msgs["pose"].pose)
        return mutate

    def scaled_quat(k):
        def fn(p):
            o = p.orientation
            o.x, o.y, o.z, o.w = o.x * k, o.y * k, o.z * k, o.w * k
        return fn

    faults = [
        (pose(lambda p: setattr(p.position, "x", float("nan"))), "invalid_pose", "pose", "NaN or Inf"),
        (pose(lambda p: setattr(p.orientation, "w", float("inf"))), "invalid_pose", "pose", "NaN or Inf"),
        (pose(scaled_quat(2.0)), "invalid_pose", "pose", "quaternion has norm 2.0000"),
        (pose(scaled_quat(0.5)), "invalid_pose", "pose", "quaternion has norm 0.5000"),
        (pose(scaled_quat(0.0)), "invalid_pose", "pose", "quaternion has norm 0.0000"),
    ]
    run_faults(r, faults)
    # a 4x4 that is not rigid (scaled, sheared) cannot come from a PoseStamped; one reaching the
    # engine another way is refused there too (the node's intake catches it)
    f = r.frames[3]
    for bad in (np.diag([2.0, 2.0, 2.0, 1.0]) @ f.pose, f.pose @ np.array(
            [[1, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])):
        with pytest.raises(PoseError, match="orthonormal"):
            r.mapper.add_frame(Frame(rgb=f.rgb, pose=bad, intrinsics=f.intrinsics, labels=f.labels))
        r.node.intake.put(Frame(rgb=f.rgb, pose=bad, intrinsics=f.intrinsics, labels=f.labels))
        r.injected += 1
    assert wait(lambda: r.node.ledger.reject_counts["invalid_pose"] == len(faults) + 2, 5), r.node.ledger.reject_counts
    r.assert_map_intact(before)
    # a quaternion a little off unit length (float noise, |q| = 1.05) is normalised, not rejected
    synced = r.node.ledger.frames_synced
    r.send(pose(scaled_quat(1.05)))
    r.settle()
    assert r.node.ledger.frames_synced == synced + 1
    np.testing.assert_allclose(r.node._latest[0][:3, :3].T @ r.node._latest[0][:3, :3], np.eye(3), atol=1e-9)
    r.assert_recovers()


def test_05_invalid_depth_pixels_are_ignored_frame_kept(rig):
    r = rig(use_depth=True)
    before = r.map_state()

    def holes(msgs):
        d = convert.image_to_numpy(msgs["depth"]).copy()
        d[:4] = np.nan
        d[4:8] = np.inf
        d[8:12] = -1.0
        d[12:16] = 0.0
        msgs["depth"] = image(d, "32FC1", msgs["depth"])

    kf = r.node.ledger.keyframes_added
    r.send(lambda m: (holes(m), new_view(0)(m)))
    r.settle()
    assert r.node.ledger.frames_rejected == 0 and r.node.ledger.keyframes_added == kf + 1, r.node.ledger.reject_counts
    buf = r.mapper.buffer
    stored = buf.depth[buf.order[-1]].float().numpy()
    truth = r.frames[(r.k - 1) % len(r.frames)].depth
    assert np.all(stored[:16] == 0.0)                        # invalid pixels: no depth supervision
    np.testing.assert_allclose(stored[16:], truth[16:], rtol=2e-3)   # float16 storage
    # all invalid (NaN) and 16UC1 zeros: frames kept, no depth from them
    r.send(lambda m: (set_msg("depth", lambda d: image(np.full((H, W), np.nan, np.float32), "32FC1", d))(m),
                      new_view(1)(m)))
    r.send(lambda m: (set_msg("depth", lambda d: image(np.zeros((H, W), np.uint16), "16UC1", d))(m),
                      new_view(2)(m)))
    r.settle()
    assert r.node.ledger.frames_rejected == 0 and r.node.ledger.keyframes_added == kf + 3
    assert float(buf.depth[buf.order[-1]].float().abs().max()) == 0.0
    r.assert_map_intact(before, keyframes_may_grow=True)    # adding frames does not change the field
    out = r.mapper.step(3)                                   # training on them stays finite
    assert np.isfinite(out["loss"]) and np.isfinite(out["loss_depth"])
    assert all(torch.isfinite(p).all() for p in r.mapper.model.parameters())
    r.assert_accounted()
    r.assert_recovers()


def test_06_stamps_out_of_order_duplicate_future_stale(rig):
    r = rig(max_stamp_age=30.0, max_future=2.0)
    before = r.map_state()
    now = time.time()
    faults = [
        (None, now - 100.0, "stale_stamp", "s old (max_stamp_age 30.0 s)"),
        (None, now + 100.0, "future_stamp", "s ahead of now (max_future 2.0 s)"),
    ]
    for _m, stamp, _reason, _text in faults:
        r.send(stamp=stamp)
    good = r.send()
    r.send(stamp=good - 0.5)               # out of order
    r.send(stamp=good)                     # the stamp of an accepted frame again
    r.settle()
    reasons, dropped, _ = r.status()
    assert reasons == {"stale_stamp": 1, "future_stamp": 1, "out_of_order": 1, "duplicate_stamp": 1}, reasons
    assert dropped == {"rgb": 4, "labels": 4, "pose": 4, "camera_info": 0}
    for text in ("s old (max_stamp_age 30.0 s)", "s ahead of now (max_future 2.0 s)",
                 f"is older than the last frame's {good:.6f} s", f"stamp {good:.9f} s was already used"):
        assert any(text in w for w in r.log.warnings()), (text, r.log.warnings())
    r.assert_map_intact(before, keyframes_may_grow=True)
    r.assert_accounted()
    r.assert_recovers()


def test_06b_far_future_stamp_without_bound_does_not_lock_out(rig):
    """With max_future off (0, the default) one far-future stamp is accepted; the sets that
    follow are out of order until STAMP_REBASE_SETS in a row re-base the time: then accepted."""
    r = rig(max_future=0.0)
    r.send()
    r.send(stamp=time.time() + 1e6)
    r.settle()
    synced = r.node.ledger.frames_synced
    for _ in range(STAMP_REBASE_SETS + 2):
        r.send()
        r.settle()                         # at the nominal rate (no mapper_busy drops)
    assert r.node.ledger.reject_counts == {"out_of_order": STAMP_REBASE_SETS - 1}
    assert r.node.ledger.frames_synced == synced + 3
    assert any("taking their stamps as the new time base" in w for w in r.log.warnings()), r.log.warnings()
    r.assert_accounted()
    r.assert_recovers()


def test_07_camera_info_missing_or_zero_focal(rig):
    r = rig(no_camera_info=True, warn_period=0.2)
    before = r.map_state()
    run_faults(r, [(None, "no_camera_info", "rgb", "no valid camera_info received yet on /camera_info")])
    bad = []
    for edit in (lambda m: m.k.__setitem__(0, 0.0), lambda m: m.k.__setitem__(4, 0.0),
                 lambda m: m.k.__setitem__(0, float("nan")), lambda m: setattr(m, "width", 0)):
        m = convert.camera_info_from_intrinsics(r.intr)
        edit(m)
        bad.append(m)
    for m in bad:
        r.camera_info(m)
    reasons, dropped, _ = r.status()
    assert reasons["invalid_camera_info"] == 4 and dropped["camera_info"] == 4
    assert r.node.ledger.frames_rejected == 1                          # a bad camera_info is not a frame
    assert any("focal length fx=0.0" in w for w in r.log.warnings("invalid_camera_info"))
    run_faults(r, [(None, "no_camera_info", "rgb", "no valid camera_info")])   # still none valid
    r.assert_map_intact(before)
    r.camera_info(convert.camera_info_from_intrinsics(r.intr))
    r.assert_recovers()
    # a bad camera_info after a good one: the last valid camera stays in use
    r.camera_info(bad[0])
    assert r.node._camera_intrinsics == r.intr
    r.assert_recovers()
    r.assert_accounted()


def test_08_burst_of_ten_times_the_rate_is_dropped_not_queued(rig):
    """Nominal 10 Hz; 150 sets of new views at 100 Hz while a training step holds the mapper
    (simulated by holding its lock for the burst): the node drops the oldest waiting frames
    (mapper_busy) instead of queueing them; queues and live frames stay bounded.  Then the same
    burst of views the map already has: the keyframe policy turns each away before the queue,
    so nothing is dropped as busy."""
    r = rig(queue_size=10)
    before = r.map_state()
    n_sets = 150
    live_max, intake_max, sync_max = 0, 0, 0
    gc.collect()
    # Frames alive before the burst: the scene's, and any an earlier test in this process left
    live_before = sum(type(o) is Frame for o in gc.get_objects())
    with r.mapper._lock:
        for i in range(n_sets):
            r.send(new_view(i % 20))
            if i % 30 == 29:
                live_max = max(live_max, sum(type(o) is Frame for o in gc.get_objects()))
                intake_max = max(intake_max, len(r.node.intake.queue))
                sync_max = max(sync_max, max(r.node.sync.queue_lengths()))
            time.sleep(0.01)
    r.settle()
    reasons, dropped, _ = r.status()
    busy = reasons["mapper_busy"]
    print(f"\nburst: {n_sets} sets at 100 Hz, mapper_busy drops {busy}, accepted "
          f"{r.node.ledger.frames_synced}, live Frame objects <= {live_max}, intake <= {intake_max}, "
          f"sync queue <= {sync_max}")
    cap = r.node.intake.capacity
    assert busy >= n_sets - cap - 2 and r.node.ledger.frames_synced + busy == n_sets, reasons
    assert intake_max <= cap and sync_max <= 1
    # those alive before (the scene's 24 frames, at least) + the intake queue + the one add_frame waits with
    assert live_before >= len(r.frames) and live_max <= live_before + cap + 1, (live_before, live_max)
    assert dropped["rgb"] == dropped["labels"] == dropped["pose"] == busy
    assert len(r.log.warnings("mapper_busy")) == 1 and "still busy" in r.log.warnings("mapper_busy")[0]
    r.assert_accounted()
    r.assert_map_intact(before, keyframes_may_grow=True)
    # the same burst at a view the buffer holds (its newest keyframe): screened, nothing queued
    buf = r.mapper.buffer
    kf_pose = buf.poses_host[buf.order[-1]].astype(np.float64)

    def revisit(msgs):
        msgs["pose"] = convert.pose_stamped_from_pose(kf_pose, "map", convert.stamp_to_sec(msgs["rgb"].header.stamp))

    synced, kf = r.node.ledger.frames_synced, len(buf)
    with r.mapper._lock:
        for _ in range(n_sets):
            r.send(revisit)
            intake_max = max(intake_max, len(r.node.intake.queue))
            time.sleep(0.01)
    r.settle()
    assert r.status()[0]["mapper_busy"] == busy and r.node.ledger.frames_synced == synced + n_sets
    assert len(buf) == kf and r.mapper.stats()["frames_screened"] >= n_sets
    r.assert_accounted()
    r.assert_recovers()


def test_09_pose_topic_stops_and_comes_back(rig):
    r = rig(queue_size=5)
    last_pose = r.send()
    r.settle()
    # the last set with a pose is rendered and published once (outputs are once per input stamp;
    # waiting for it here keeps the checks below from racing that render)
    assert wait(lambda: r.published_at(last_pose), 15), "no ~/semantic output for the last set with a pose"
    before = r.map_state()
    for _ in range(12):                    # the pose topic is silent: rgb + labels only
        r.send(skip=("pose",))
        time.sleep(0.02)
    r.settle()
    _, dropped, _ = r.status()
    assert dropped["rgb"] == dropped["labels"] == 12 - 5 and dropped["pose"] == 0
    assert r.node.sync.queue_lengths() == [5, 5, 0]           # bounded by queue_size
    assert any("nothing is waiting on /pose (has it stopped?)" in w for w in r.log.warnings()), r.log.warnings()
    time.sleep(0.3)                        # three publish periods: nothing without a pose is rendered
    assert all(abs(t - last_pose) < 1e-6 for t in r.output_stamps()), \
        "an output was published for a set that has no pose"
    assert r.node.latest() is not None     # the last pose is kept: ~/render_view and a late subscriber use it
    r.assert_map_intact(before)
    r.assert_recovers(3)                   # pose is back: sets sync again
    _, dropped, _ = r.status()
    assert dropped["rgb"] == dropped["labels"] == 12 and r.node.sync.queue_lengths() == [0, 0, 0]
    r.assert_accounted()


# =========================================================================== 10..14: files, engine


class FullDisk:
    """A file object that writes about half of what it is given, then fails with ENOSPC."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def write(self, data):
        self.calls += 1
        mv = memoryview(data.encode() if isinstance(data, str) else data).cast("B")
        self.f.write(mv[: len(mv) // 2].tobytes().decode() if isinstance(data, str) else mv[: len(mv) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.f, name)


def export(r, path, fmt=""):
    """``~/export_mesh`` (its service callback)."""
    req = IFACE["ExportMesh"].Request(path=str(path), format=fmt)
    return r.node.map_services.export(req, IFACE["ExportMesh"].Response())


def test_10_export_to_bad_places_and_full_disk(rig, tmp_path, monkeypatch):
    r = rig()
    before = r.map_state()
    good = export(r, tmp_path / "mesh.ply")
    assert good.success, good.message
    old = (tmp_path / "mesh.ply").read_bytes()
    (tmp_path / "a_file").write_text("x")
    cases = [(tmp_path / "missing" / "m.ply", "does not exist"),
             (tmp_path / "a_file" / "m.ply", "is not a directory")]
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cases.append((ro / "m.ply", "not writable"))
    elif Path("/sys").is_dir():                   # root may write anywhere but in sysfs
        cases.append((Path("/sys/semnerf_mesh.ply"), "cannot"))
    for path, text in cases:
        resp = export(r, path)
        assert not resp.success and text in resp.message and str(path.parent) in resp.message, resp.message
    # disk full in the middle of the write (binary PLY and text OBJ): no partial file, old file kept
    real_open = atomic_io._open_temp_file
    monkeypatch.setattr(atomic_io, "_open_temp_file", lambda fd, mode, **kw: FullDisk(real_open(fd, mode, **kw)))
    for name in ("mesh.ply", "mesh.obj"):
        resp = export(r, tmp_path / name)
        assert not resp.success and "No space left on device" in resp.message, resp.message
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "mesh.ply"] + (["ro"] if os.geteuid() else [])
    assert (tmp_path / "mesh.ply").read_bytes() == old
    # the same for the map file (one write of the whole map: half of it lands, then ENOSPC)
    real_fdopen = os.fdopen

    def fdopen(fd, *a, **kw):
        f = real_fdopen(fd, *a, **kw)
        return FullDisk(f) if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)) else f

    monkeypatch.setattr(os, "fdopen", fdopen)
    resp = r.node.map_services.save(IFACE["SaveMap"].Request(path=str(tmp_path / "map.pt")),
                                    IFACE["SaveMap"].Response())
    monkeypatch.undo()
    assert not resp.success and "No space left on device" in resp.message, resp.message
    resp = r.node.map_services.save(IFACE["SaveMap"].Request(path=str(tmp_path / "no" / "map.pt")),
                            IFACE["SaveMap"].Response())
    assert not resp.success and "does not exist" in resp.message
    assert not (tmp_path / "map.pt").exists() and len(list(tmp_path.iterdir())) == (3 if os.geteuid() else 2)
    assert any("export failed" in t for lvl, t in r.log.lines if lvl == "error")
    r.assert_map_intact(before)
    assert export(r, tmp_path / "again.ply").success
    assert read_mesh(tmp_path / "again.ply").num_faces > 0
    r.assert_recovers()


def test_11_export_and_save_while_training(rig, tmp_path):
    r = rig(training_enabled=True)
    step0 = r.mapper.step_count
    assert wait(lambda: r.mapper.step_count >= step0 + 2, 30), "training did not start"
    results = {}

    def save():
        results["save"] = r.node.map_services.save(IFACE["SaveMap"].Request(path=str(tmp_path / "live.pt")),
                                           IFACE["SaveMap"].Response())

    def export_mesh():
        results["export"] = export(r, tmp_path / "live.ply")

    streamer = threading.Thread(target=lambda: [(r.send(), time.sleep(0.05)) for _ in range(10)])
    threads = [threading.Thread(target=save), threading.Thread(target=export_mesh), streamer]
    s0 = r.mapper.step_count
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    s1 = r.mapper.step_count
    assert results["save"].success and results["export"].success, results
    assert s1 > s0, "training stalled while saving / exporting"
    # consistent snapshot: model, optimiser, keyframes and counters from one instant
    state = Mapper.read_state(tmp_path / "live.pt")
    adam_steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {state["counters"]["step"]}, (adam_steps, state["counters"])
    assert len(state["buffer"]["ids"]) == state["buffer"]["count"]
    loaded = Mapper.load(tmp_path / "live.pt", device="cpu")
    assert loaded.render(r.frames[5].pose, r.intr).labels.shape == (H, W)
    mesh = read_mesh(tmp_path / "live.ply")
    assert mesh.num_faces == results["export"].face_count > 0 and mesh.vertex_labels.max() < NUM_CLASSES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.ply", "live.pt"]
    r.assert_recovers()


SLOW_WRITE_NODE = """\
import sys, time
from semnerf_ros.io import atomic as atomic_io
real = atomic_io._open_temp_file


class Slow:
    def __init__(self, f): self.f = f
    def write(self, data):
        print("EXPORT_WRITING", flush=True)
        mv = memoryview(data).cast("B"); step = max(1, len(mv) // 10)
        for i in range(0, len(mv), step):
            self.f.write(mv[i:i + step]); time.sleep(0.1)
        return len(mv)
    def __enter__(self): return self
    def __exit__(self, *exc): return self.f.__exit__(*exc)
    def __getattr__(self, name): return getattr(self.f, name)
atomic_io._open_temp_file = lambda fd, mode, **kw: Slow(real(fd, mode, **kw))
from semnerf_ros.cli.node import main
main(sys.argv[1:])
"""


def test_12_ctrl_c_during_export(scene, tmp_path):
    """SIGINT while ~/export_mesh_default is writing the file (a slowed-down write): the node
    finishes the export (a complete file, atomically replacing the old one), then exits 0;
    no temporary file is left."""
    from rclpy.executors import SingleThreadedExecutor

    out = tmp_path / "out"
    out.mkdir()
    write_mesh(Mapper.load(scene["map"], device="cpu").extract_mesh(resolution=8, density_threshold=2.0),
               out / "mesh.ply")
    old = (out / "mesh.ply").read_bytes()
    domain = next_domain()
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    args = ["--ros-args", "-p", f"num_classes:={NUM_CLASSES}", "-p", f"engine_config:={scene['engine']}",
            "-p", "device:=cpu", "-p", "load_on_start:=true", "-p", f"map_path:={scene['map']}",
            "-p", f"export_path:={out / 'mesh.ply'}", "-p", "mesh_resolution:=16",
            "-p", "mesh_density_threshold:=2.0", "-p", "publish_rate:=0.0", "-p", "max_keyframes:=16",
            "-p", "training_enabled:=false"]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITE_NODE] + args, env=env, cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, writing = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if "EXPORT_WRITING" in line:
                writing.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    io = rclpy.create_node("ctrl_c", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(io)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    try:
        cli = io.create_client(Trigger, "/semnerf_node/export_mesh_default")
        assert cli.wait_for_service(timeout_sec=60), "".join(lines)
        for _ in range(3):                 # a request sent before the server's reader matched is lost
            time.sleep(0.5)
            cli.call_async(Trigger.Request())
            if writing.wait(20):
                break
        assert writing.is_set(), "the export never started writing\n" + "".join(lines)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(5)
        log = "".join(lines)
        assert proc.returncode == 0, log
        assert "export_mesh_default: wrote" in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ex.shutdown(timeout_sec=2)
        io.destroy_node()
        rclpy.shutdown(context=ctx)
    assert [p.name for p in out.iterdir()] == ["mesh.ply"]         # no temporary file left
    new = (out / "mesh.ply").read_bytes()
    assert new != old and read_mesh(out / "mesh.ply").num_faces > 0   # complete, readable


def test_12b_keyboard_interrupt_inside_a_write_leaves_no_partial_file(scene, tmp_path, monkeypatch):
    """Offline tools (semnerf-mesh, semnerf-train) get Ctrl-C as KeyboardInterrupt in the
    writing thread: the temporary file is removed and the old file kept."""
    m = Mapper.load(scene["map"], device="cpu")
    mesh = m.extract_mesh(resolution=8, density_threshold=2.0)
    write_mesh(mesh, tmp_path / "mesh.ply")
    m.save(tmp_path / "map.pt")
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    class Interrupted(FullDisk):
        def write(self, data):
            self.f.write(memoryview(data).cast("B")[: len(data) // 2])
            raise KeyboardInterrupt

    real_open = atomic_io._open_temp_file
    monkeypatch.setattr(atomic_io, "_open_temp_file", lambda fd, mode, **kw: Interrupted(real_open(fd, mode, **kw)))
    with pytest.raises(KeyboardInterrupt):
        write_mesh(mesh, tmp_path / "mesh.ply")
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **kw: Interrupted(real_fdopen(fd, *a, **kw)))
    with pytest.raises(KeyboardInterrupt):
        m.save(tmp_path / "map.pt")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old


def test_13_gpu_out_of_memory_during_a_step(rig):
    r = rig()
    m = r.mapper
    real = m.model.render_rays
    fail = {"n": 0}

    def flaky(*a, **kw):
        if kw.get("training") and fail["n"] > 0:
            fail["n"] -= 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real(*a, **kw)

    m.model.render_rays = flaky
    # a skipped step leaves the map exactly as it was (training paused, one manual step)
    before = r.map_state()
    params = [p.detach().clone() for p in m.model.parameters()]
    step, rays = m.step_count, m.n_rays
    fail["n"] = 1
    assert m.step() == {}
    assert m.step_count == step and m.oom_events == 1 and m.n_rays == rays // 2
    assert all(torch.equal(a, b) for a, b in zip(params, m.model.parameters()))
    r.assert_map_intact(before)
    # in the training thread: three OOMs in a row, the batch shrinks, training goes on
    fail["n"] = 3
    assert r.node.set_parameters([Parameter("training_enabled", value=True)])[0].successful
    assert wait(lambda: fail["n"] == 0 and m.step_count >= step + 3, 60), (fail, m.step_count)
    assert m.oom_events == 4 and m.n_rays == 64 and m.step_errors == 0
    reasons, _, st = r.status()
    assert reasons["training_oom"] == 4 and st.frames_rejected == 0 and st.training
    assert len(r.log.warnings("out of GPU memory")) == 1          # throttled
    assert "training continues" in r.log.warnings("out of GPU memory")[0]
    assert all(torch.isfinite(p).all() for p in m.model.parameters())
    # out of memory while rendering an output: that output is skipped, later ones are published
    view = m._view_renderer  # views render from a snapshot of the model (semnerf_ros.engine.view_renderer)
    real_render = view.render
    once = {"n": 1}

    def flaky_render(*a, **kw):
        if once["n"]:
            once["n"] = 0
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated, render)")
        return real_render(*a, **kw)

    view.render = flaky_render
    r.assert_recovers()
    assert once["n"] == 0 and any("rendering failed: OutOfMemoryError" in w for w in r.log.warnings())


def test_14_corrupt_or_truncated_checkpoint(rig, scene, tmp_path):
    r = rig()
    before = r.map_state()
    good = scene["map"].read_bytes()
    files = {
        "truncated.pt": (good[: len(good) // 2], "cannot read map file"),
        "garbage.pt": (b"this is not a map" * 10, "truncated, corrupt or not a map file"),
        "empty.pt": (b"", "is empty (0 bytes)"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    files["other.pt"] = (None, "is not a semnerf_ros map file")
    state = torch.load(scene["map"], weights_only=True)
    state["model"] = {k: v[..., :1] if v.ndim else v for k, v in state["model"].items()}
    torch.save(state, tmp_path / "wrong_shapes.pt")
    files["wrong_shapes.pt"] = (None, "does not fit this package")
    five = Mapper(load_config(scene["engine"]), 5, device="cpu")
    five.add_frame(Frame(rgb=r.frames[0].rgb, pose=r.frames[0].pose, intrinsics=r.intr))
    five.save(tmp_path / "five_classes.pt")
    files["five_classes.pt"] = (None, "has 5 classes, this map 7")
    files["missing.pt"] = (None, "map file not found")
    (tmp_path / "a_dir.pt").mkdir()
    files["a_dir.pt"] = (None, "map file not found")
    for name, (_, text) in files.items():
        resp = r.node.map_services.load(IFACE["LoadMap"].Request(path=str(tmp_path / name)),
                                        IFACE["LoadMap"].Response())
        assert not resp.success and "live map unchanged" in resp.message and text in resp.message, (name, resp.message)
        assert name in resp.message
    r.assert_map_intact(before)
    r.assert_recovers()
    resp = r.node.map_services.load(IFACE["LoadMap"].Request(path=str(scene["map"])), IFACE["LoadMap"].Response())
    assert resp.success, resp.message
    # at start-up (load_on_start) a corrupt map is a clear start-up error
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=next_domain())
    try:
        with pytest.raises(ParameterValueError, match="load_on_start.*truncated.pt.*cannot read map file"):
            SemNerfNode(context=ctx, parameter_overrides=[
                Parameter(k, value=v) for k, v in dict(
                    num_classes=NUM_CLASSES, engine_config=str(scene["engine"]), device="cpu", load_on_start=True,
                    map_path=str(tmp_path / "truncated.pt"), training_enabled=False).items()])
    finally:
        rclpy.shutdown(context=ctx)


# =========================================================================== 15: start-up


def test_15_malformed_yaml_and_wrong_parameter_types(tmp_path):
    """Each bad start-up configuration ends the node with exit code 2 and one clear message."""
    cases = {
        "params_syntax.yaml": ("/**:\n  ros__parameters:\n    num_classes: 7\n    publish_rate: [1, 2\n",
                               ["invalid arguments or parameter file", "params_syntax.yaml"]),
        "params_type.yaml": ("/**:\n  ros__parameters:\n    num_classes: 7\n    publish_rate: \"fast\"\n",
                             ["invalid parameters", "'publish_rate'", "expecting type 'DOUBLE'"]),
        "params_int.yaml": ("/**:\n  ros__parameters:\n    num_classes: seven\n",
                            ["invalid parameters", "'num_classes'", "expecting type 'INTEGER'"]),
        "params_range.yaml": ("/**:\n  ros__parameters:\n    num_classes: 7\n    render_scale: -1.0\n",
                              ["invalid parameters", "render_scale"]),
    }
    engine_cases = {   # the engine config is read by the node's constructor: checked in-process
        "engine_syntax.yaml": ("render: {N_rays: [1,\n", "not valid YAML"),
        "engine_type.yaml": ("render: {N_rays: many}\n", "render.N_rays: expected a number, got 'many'"),
        "engine_key.yaml": ("render: {N_ray: 64}\n", "unknown config key 'render.N_ray'"),
    }
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    procs = {}
    for name, (text, _) in cases.items():
        (tmp_path / name).write_text(text)
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "semnerf_ros.ros.node", "--ros-args", "--params-file", str(tmp_path / name)],
            env=dict(env, ROS_DOMAIN_ID=str(next_domain())), cwd=str(tmp_path),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, (text, message) in engine_cases.items():
        (tmp_path / name).write_text(text)
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=next_domain())
        try:
            with pytest.raises(ParameterValueError) as err:
                SemNerfNode(context=ctx, parameter_overrides=[
                    Parameter("num_classes", value=NUM_CLASSES), Parameter("device", value="cpu"),
                    Parameter("engine_config", value=str(tmp_path / name))])
        finally:
            rclpy.shutdown(context=ctx)
        assert "parameter 'engine_config'" in str(err.value) and name in str(err.value), str(err.value)
        assert message in str(err.value), str(err.value)
    for name, proc in procs.items():
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 2, (name, out)
        assert "Traceback" not in out, (name, out)
        for text in cases[name][1]:
            assert text in out, (name, text, out)
