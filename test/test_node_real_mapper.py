"""``semnerf_node`` paths run with the real Mapper (a tiny hash field on the CPU), in process,
services over real DDS: ``~/render_view`` at two poses, ``~/save_map`` / ``~/load_map`` and the
load rule, ``pose_type: odometry`` with ``pose_convention: body``, ``use_sim_time``, and
``~/reset_map``.  (test_node.py drives the same services with a fake mapper that ignores the
pose; this file is where the pose and the map matter.)  Inputs are handed to the node's own
subscription callbacks, so their order is deterministic; training is paused (``training_enabled:
false``) so that renders are reproducible.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from boxroom import NUM_CLASSES, TINY_ENGINE, box_frames
from builtin_interfaces.msg import Time
from dds_rig import DdsRig, closing_factory, wait
from nav_msgs.msg import Odometry
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from std_srvs.srv import Trigger

from semnerf_ros.bridge import convert
from semnerf_ros.engine.config import load_config
from semnerf_ros.engine.mapper import Mapper
from semnerf_ros.ros.node import SemNerfNode
from semnerf_ros.ros.services import load_interfaces as _interfaces

W, H = 32, 24


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The box room (12 views, 32x24, depth) and a map of all 12 as keyframes, saved."""
    d = tmp_path_factory.mktemp("real_mapper")
    engine = d / "tiny.yaml"
    engine.write_text(TINY_ENGINE)
    frames = box_frames(12, W, H)
    cfg = load_config(engine)
    cfg["mapper"]["keyframe_policy"] = "all"
    m = Mapper(cfg, NUM_CLASSES, device="cpu")
    for f in frames:
        m.add_frame(f)
    m.step(60)
    return {"engine": engine, "map": m.save(d / "trained.pt"), "frames": frames, "dir": d}


class Rig(DdsRig):
    """An in-process node with the real Mapper, a client node, a spinning executor."""

    def __init__(self, scene, **params):
        self.iface = _interfaces()
        assert self.iface is not None, "semnerf_ros interfaces are not built (test_install.py)"
        self.open_context()
        p = dict(num_classes=NUM_CLASSES, engine_config=str(scene["engine"]), device="cpu", training_enabled=False,
                 publish_rate=0.0, status_rate=0.0, mesh_period=0.0, log_period=0.0, qos="reliable",
                 keyframe_min_translation=0.05, keyframe_min_rotation_deg=5.0, slop=0.01)
        p.update(params)
        self.node = SemNerfNode(context=self.ctx, parameter_overrides=[Parameter(k, value=v) for k, v in p.items()])
        self.mapper = self.node.mapper
        self.io = rclpy.create_node("real_mapper_probe", context=self.ctx)
        self.spin(threads=3)
        self.intr = scene["frames"][0].intrinsics
        self.node._subs["camera_info"].callback(convert.camera_info_from_intrinsics(self.intr))

    call_timeout, service_timeout = 30.0, 10.0

    def call(self, srv_type, name, request, timeout=None):
        return super().call(srv_type, f"/semnerf_node/{name}", request, timeout)

    def render_view(self, pose, scale=1.0, frame="map"):
        req = self.iface["RenderView"].Request()
        req.pose = convert.pose_stamped_from_pose(pose, frame, 7.25)
        req.camera_info = convert.camera_info_from_intrinsics(self.intr, convert.make_header(7.25, "cam"))
        req.scale = scale
        return self.call(self.iface["RenderView"], "render_view", req)

    def deliver(self, rgb, labels, pose_msg):
        for topic, msg in (("pose", pose_msg), ("labels", labels), ("rgb", rgb)):
            self.node._subs[topic].callback(msg)

    def send_frame(self, f, stamp, pose_msg=None):
        """One synchronized set; returns once the node has taken or rejected it (at the nominal
        rate: a burst would overflow the 2-deep intake queue, counted as mapper_busy)."""
        n = self.node
        done = n.ledger.frames_synced + n.ledger.frames_rejected
        hdr = convert.make_header(stamp, "cam")
        pose_msg = pose_msg if pose_msg is not None else convert.pose_stamped_from_pose(f.pose, "map", stamp)
        self.deliver(convert.numpy_to_image(f.rgb, "rgb8", hdr),
                     convert.numpy_to_image(f.labels.astype(np.uint8), "mono8", hdr), pose_msg)
        self.settle(done + 1)

    def settle(self, n_sets, timeout=20.0):
        n = self.node
        assert wait(lambda: n.ledger.frames_synced + n.ledger.frames_rejected >= n_sets and not n.intake.queue,
                    timeout), \
            (n.ledger.frames_synced, n.ledger.frames_rejected, n.ledger.reject_counts)


@pytest.fixture
def rig(scene):
    yield from closing_factory(lambda **params: Rig(scene, **params))


def images(resp):
    return {"labels": convert.labels_from_image_msg(resp.semantic), "rgb": convert.rgb_from_image_msg(resp.rgb),
            "depth": convert.depth_from_image_msg(resp.depth),
            "entropy": convert.image_to_numpy(resp.uncertainty)}


def assert_is_render(got, r):
    """A ~/render_view answer equals Mapper.render of the same pose (rgb as 8-bit)."""
    np.testing.assert_array_equal(got["labels"], r.labels)
    np.testing.assert_array_equal(got["rgb"], np.clip(r.rgb * 255.0 + 0.5, 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(got["depth"], r.depth)
    np.testing.assert_array_equal(got["entropy"], r.entropy)


# =========================================================================== render_view, save_map, load_map


def test_render_view_save_and_load_through_the_real_mapper(rig, scene, tmp_path):
    r = rig(load_on_start=True, map_path=str(scene["map"]))
    a_pose, b_pose = scene["frames"][0].pose, scene["frames"][6].pose     # 3 classes each
    resp_a, resp_b = r.render_view(a_pose), r.render_view(b_pose)
    assert resp_a.success and resp_b.success, (resp_a.message, resp_b.message)
    assert resp_a.semantic.header.frame_id == "cam" and resp_a.semantic.header.stamp.sec == 7
    a, b = images(resp_a), images(resp_b)
    # each is the map seen from its pose ...
    ref_a, ref_b = r.mapper.render(a_pose, r.intr), r.mapper.render(b_pose, r.intr)
    assert_is_render(a, ref_a)
    assert_is_render(b, ref_b)
    # ... and the two poses see different things (opposite corners of the room)
    assert np.mean(a["labels"] != b["labels"]) > 0.5 and np.abs(a["rgb"].astype(int) - b["rgb"]).mean() > 20
    # the map has learnt the room: its labels are mostly the true ones at both poses
    assert np.mean(a["labels"] == scene["frames"][0].labels) > 0.8
    assert np.mean(b["labels"] == scene["frames"][6].labels) > 0.8
    half = images(r.render_view(a_pose, scale=0.5))
    assert half["labels"].shape == (H // 2, W // 2)
    assert_is_render(half, r.mapper.render(a_pose, r.intr, scale=0.5))

    # ~/save_map, then the file renders the same images
    saved = tmp_path / "saved.pt"
    resp = r.call(r.iface["SaveMap"], "save_map", r.iface["SaveMap"].Request(path=str(saved)))
    assert resp.success and resp.written_path == str(saved), resp.message
    reloaded = Mapper.load(saved, device="cpu")
    assert_is_render(a, reloaded.render(a_pose, r.intr))
    assert_is_render(b, reloaded.render(b_pose, r.intr))

    # train the live map on: its renders change; ~/load_map brings the saved ones back
    r.mapper.step(15)
    assert not np.array_equal(images(r.render_view(a_pose))["rgb"], a["rgb"])
    resp = r.call(r.iface["LoadMap"], "load_map", r.iface["LoadMap"].Request(path=str(saved)))
    assert resp.success, resp.message
    for pose, want in ((a_pose, a), (b_pose, b)):
        got = images(r.render_view(pose))
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_the_load_rule_through_the_node(rig, scene, caplog):
    """load_on_start and ~/load_map keep the node's max_keyframes and keyframe thresholds (the
    map file, saved with max_keyframes 200 and every frame a keyframe, holds 12 keyframes)."""
    import logging

    with caplog.at_level(logging.WARNING, logger="semnerf_ros.mapper"):
        r = rig(load_on_start=True, map_path=str(scene["map"]), max_keyframes=5, keyframe_min_translation=0.4,
                keyframe_min_rotation_deg=25.0, keyframe_max_overlap=0.5, max_steps_per_second=3.0)
    assert any("holds 12 keyframes but max_keyframes is 5" in rec.getMessage() for rec in caplog.records)
    m = r.mapper
    assert m.buffer.capacity == 5 and len(m.buffer) == 5
    assert (m.policy.min_translation, m.policy.min_rotation_deg, m.policy.max_overlap, m.policy.policy) == \
        (0.4, 25.0, 0.5, "motion")
    assert m.cfg["mapper"]["max_steps_per_second"] == 3.0 and m.step_count == 60
    st = r.node.status_message()
    assert (st.max_keyframes, st.keyframes, st.step) == (5, 5, 60)
    # ~/load_map follows the same rule
    m.reset()
    resp = r.call(r.iface["LoadMap"], "load_map", r.iface["LoadMap"].Request(path=str(scene["map"])))
    assert resp.success, resp.message
    assert r.mapper.buffer.capacity == 5 and len(r.mapper.buffer) == 5 and r.mapper.step_count == 60
    assert r.mapper.policy.min_translation == 0.4
    st = r.call(r.iface["GetStatus"], "get_status", r.iface["GetStatus"].Request()).status
    assert (st.max_keyframes, st.keyframes) == (5, 5)


# =========================================================================== input paths


def body_pose(T_optical):
    """The same camera as a REP-103 body frame (x forward, y left, z up), built by hand:
    forward = optical z, left = -optical x, up = -optical y."""
    R = T_optical[:3, :3]
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2] = R[:, 2], -R[:, 0], -R[:, 1]
    T[:3, 3] = T_optical[:3, 3]
    return T


def test_odometry_pose_in_body_axes_reaches_the_map_as_the_optical_pose(rig, scene):
    r = rig(pose_type="odometry", pose_convention="body")
    assert r.node._subs["pose"].msg_type is Odometry
    frames = scene["frames"][:4]
    t0 = time.time()
    for i, f in enumerate(frames):
        stamp = t0 + 0.1 * i
        odom = Odometry()
        odom.header = convert.make_header(stamp, "map")
        odom.child_frame_id = "camera_link"
        odom.pose.pose = convert.pose_stamped_from_pose(body_pose(f.pose), "map", stamp).pose
        r.send_frame(f, stamp, pose_msg=odom)
    r.settle(4)
    assert r.node.ledger.frames_synced == 4 and r.node.ledger.frames_rejected == 0, r.node.ledger.reject_counts
    buf = r.mapper.buffer
    assert len(buf) == 4
    for slot, f in zip(buf.order, frames):
        np.testing.assert_allclose(buf.poses[slot].numpy(), f.pose, atol=1e-6)
    # the map is built from the right poses: a few steps and the first view is recognisable
    r.mapper.step(40)
    got = images(r.render_view(frames[0].pose))
    assert np.mean(got["labels"] == frames[0].labels) > 0.5


def test_use_sim_time_judges_stamps_by_the_clock_topic(rig, scene):
    r = rig(use_sim_time=True, max_stamp_age=2.0, max_future=2.0)
    clock = r.io.create_publisher(Clock, "/clock", 10)
    sim = 1000.0

    def tick():
        clock.publish(Clock(clock=Time(sec=int(sim), nanosec=int(round((sim % 1) * 1e9)))))

    assert wait(lambda: (tick(), r.node.get_clock().now().nanoseconds == int(sim * 1e9))[1], 10), \
        "the node's clock did not follow /clock"
    f = scene["frames"]
    r.send_frame(f[1], sim - 5.0 + 0.6)    # by /clock 4.4 s old: stale
    r.send_frame(f[0], sim + 0.5)          # current by /clock (wall-clock time: 56 years stale)
    r.send_frame(f[2], sim + 10.0)         # 10 s ahead of /clock: future
    r.settle(3)
    assert r.node.ledger.frames_synced == 1, r.node.ledger.reject_counts
    assert r.node.ledger.reject_counts == {"stale_stamp": 1, "future_stamp": 1}
    assert len(r.mapper.buffer) == 1 and r.mapper.buffer.slot_stamps[r.mapper.buffer.order[0]] == sim + 0.5
    sim = 1020.0                            # the clock moves on: a frame at 1020.2 is current
    assert wait(lambda: (tick(), r.node.get_clock().now().nanoseconds == int(sim * 1e9))[1], 10)
    r.send_frame(f[3], sim + 0.2)
    r.settle(4)
    assert r.node.ledger.frames_synced == 2 and len(r.mapper.buffer) == 2
    assert r.node.status_message().header.stamp.sec == 1020     # status stamped with sim time


def test_reset_map_with_the_real_mapper(rig, scene):
    r = rig()
    frames = scene["frames"]
    t0 = time.time()
    for i, f in enumerate(frames[:3]):
        r.send_frame(f, t0 + 0.1 * i)
    r.settle(3)
    r.mapper.step(3)
    assert len(r.mapper.buffer) == 3 and r.mapper.step_count == 3 and r.render_view(frames[0].pose).success
    old_model = r.mapper.model
    resp = r.call(Trigger, "reset_map", Trigger.Request())
    assert resp.success and resp.message == "map reset"
    m = r.mapper
    assert len(m.buffer) == 0 and m.step_count == 0 and m.stats()["keyframes_added"] == 0
    # the engine config gives explicit scene bounds: a fresh, untrained field over the same box
    assert m.model is not old_model and np.array_equal(m.scene_bounds, old_model.scene_bounds.numpy())
    assert m.optimizer.state_dict()["state"] == {}
    # ... which is not rendered as if it were a map (it would be the initialisation's noise): the node
    # refuses before it asks the engine (the engine's own refusal, MapNotReadyError, is test_mapper's)
    resp = r.render_view(frames[0].pose)
    assert not resp.success and "map has no keyframes yet" in resp.message, resp.message
    st = r.call(r.iface["GetStatus"], "get_status", r.iface["GetStatus"].Request()).status
    assert (st.keyframes, st.step, st.frames_synced) == (0, 0, 3)   # the node's input counters survive
    resp = r.call(Trigger, "export_mesh_default", Trigger.Request())
    assert not resp.success and "empty" in resp.message
    # mapping starts again, even with stamps older than before the reset
    for i, f in enumerate(frames[6:8]):
        r.send_frame(f, t0 - 10.0 + 0.1 * i)
    r.settle(5)
    assert r.node.ledger.frames_synced == 5 and not r.node.ledger.reject_counts, r.node.ledger.reject_counts
    assert m.buffer.keyframe_ids == [0, 1] and m.model is not None
    np.testing.assert_allclose(m.buffer.poses[m.buffer.order[0]].numpy(), frames[6].pose, atol=1e-6)
    m.step(2)
    assert m.step_count == 2 and r.render_view(frames[6].pose).success


# =========================================================================== engine_location: process


def test_the_node_with_its_engine_in_a_process_of_its_own(rig, scene, tmp_path):
    """engine_location: process -- the same node, its engine in a child process: frames reach the
    child's map, ~/render_view answers with the child's renders (equal to the map file's), ~/save_map
    writes from the child, and closing the node ends the child."""
    from semnerf_ros.bridge.engine_process import EngineProcess

    r = rig(load_on_start=True, map_path=str(scene["map"]), engine_location="process")
    assert isinstance(r.mapper, EngineProcess) and r.mapper.alive
    pose = scene["frames"][0].pose
    got = images(r.render_view(pose))
    assert_is_render(got, Mapper.load(scene["map"], device="cpu").render(pose, r.intr))
    t0 = time.time()
    for i, f in enumerate(scene["frames"][:2]):      # the map file's keyframes are kept; new sets are taken
        r.send_frame(f, t0 + 0.1 * i)
    r.settle(2)
    st = r.call(r.iface["GetStatus"], "get_status", r.iface["GetStatus"].Request()).status
    assert st.frames_synced == 2 and st.keyframes == 12
    saved = tmp_path / "from_child.pt"
    resp = r.call(r.iface["SaveMap"], "save_map", r.iface["SaveMap"].Request(path=str(saved)))
    assert resp.success and saved.exists(), resp.message
    child = r.mapper
    r.node.close()
    assert wait(lambda: not child.alive, 15.0)


def test_a_dead_engine_process_is_reported_not_fatal(rig, scene):
    """The engine's process killed: the node stays up and answers ~/render_view with the reason."""
    import os
    import signal

    r = rig(load_on_start=True, map_path=str(scene["map"]), engine_location="process")
    os.kill(r.mapper.pid, signal.SIGKILL)
    assert wait(lambda: not r.mapper.alive, 15.0)
    resp = r.render_view(scene["frames"][0].pose)
    assert not resp.success and "engine process ended unexpectedly" in resp.message, resp.message
