"""The node in a ROS 2 system, over real DDS on CPU (issue 15): camera poses from TF (interpolated,
late transforms waited for, missing / future / loop counted and warned about by frame name),
/diagnostics, the actions with feedback and cancel, the lifecycle variant's transitions, and
use_sim_time with ``semnerf-play --clock``."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from dds_rig import DdsRig, closing_factory, wait
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import TransformStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.action import ActionClient
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image
from test_node import INTR, FakeMapper, frame_msgs, reliable, require_interfaces

from semnerf_ros.bridge import convert
from semnerf_ros.engine.geometry import BODY_FROM_OPTICAL, pose_from_position_quaternion
from semnerf_ros.engine.mesh import ExtractionCancelled, SemanticMesh
from semnerf_ros.ros.lifecycle import SemNerfLifecycleNode
from semnerf_ros.ros.node import SemNerfNode

ROOT = Path(__file__).resolve().parents[1]
STATIC_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Rig(DdsRig):
    """A node (``node_class``) and a test node on one context, spun by one executor."""

    def __init__(self, node_class=SemNerfNode, mapper=None, topics=("rgb", "labels", "camera_info"), **params):
        require_interfaces()
        self.open_context()
        values = dict(num_classes=4, publish_rate=20.0, render_scale=0.5, mesh_period=0.0, slop=0.01,
                      warn_period=0.0, qos="reliable", device="cpu")
        values.update(params)
        self.mapper = mapper if mapper is not None else (None if node_class is SemNerfLifecycleNode
                                                         else FakeMapper(values["num_classes"]))
        self.node = node_class(mapper=self.mapper, context=self.ctx,
                               parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        self.io = rclpy.create_node("rig", context=self.ctx)
        types = {"rgb": Image, "labels": Image, "camera_info": CameraInfo}
        self.pubs = {t: self.io.create_publisher(types[t], t, reliable()) for t in topics}
        self.tf_pub = self.io.create_publisher(_tf_class(), "/tf", reliable(100))
        self.tf_static_pub = self.io.create_publisher(_tf_class(), "/tf_static", STATIC_QOS)
        self.spin(threads=4)

    def matched(self, timeout=10.0):
        return wait(lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values()), timeout)

    call_timeout, service_timeout = 20.0, 10.0


def _tf_class():
    from tf2_msgs.msg import TFMessage

    return TFMessage


@pytest.fixture
def rigs():
    yield from closing_factory(Rig)


def transform(parent, child, stamp, T):
    p = T[:3, 3]
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = parent, child
    t.header.stamp = convert.sec_to_stamp(stamp) if stamp else TimeMsg()
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = map(float, p)
    (t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
     t.transform.rotation.w) = map(float, q)
    return t


def base_pose(stamp):
    """map -> base_link: driving along x at 1 m/s, turning about z at 30 deg/s."""
    T = pose_from_position_quaternion([stamp - 100.0, 0.2, 0.0],
                                      Rotation.from_euler("z", 30.0 * (stamp - 100.0), degrees=True).as_quat())
    return T


CAMERA_LINK = np.eye(4)
CAMERA_LINK[:3, 3] = [0.1, 0.0, 0.4]       # base_link -> camera_link (REP 103 body axes)
OPTICAL = np.eye(4)
OPTICAL[:3, :3] = BODY_FROM_OPTICAL          # camera_link -> cam_optical


def publish_image(rig, i, stamp, frame_id="cam_optical"):
    """One image set, then 0.1 s (a 10 Hz camera: the node's 2-deep intake queue is not a burst buffer)."""
    rgb, lab, _, info = frame_msgs(i, stamp, np.random.default_rng(i), jitter=0.0, frame_id=frame_id)
    rig.pubs["camera_info"].publish(info)
    rig.pubs["labels"].publish(lab)
    rig.pubs["rgb"].publish(rgb)
    time.sleep(0.1)


# =========================================================================== poses from TF


def test_tf_poses_interpolated_late_missing_future_and_loop(rigs):
    r = rigs(pose_source="tf", tf_timeout=1.0)
    assert "pose" not in r.node._subs and r.node.names["tf"] == "/tf"
    assert r.matched() and wait(lambda: r.tf_pub.get_subscription_count() > 0
                                and r.tf_static_pub.get_subscription_count() > 0, 10)
    warnings = []
    out = r.node.ledger._warn_out
    r.node.ledger._warn_out = lambda text: (warnings.append(text), out(text))
    # /tf_static once (latched): base_link -> camera_link -> cam_optical
    from tf2_msgs.msg import TFMessage

    r.tf_static_pub.publish(TFMessage(transforms=[transform("base_link", "camera_link", 0.0, CAMERA_LINK),
                                                  transform("camera_link", "cam_optical", 0.0, OPTICAL)]))
    r.pubs["camera_info"].publish(convert.camera_info_from_intrinsics(INTR))
    assert wait(lambda: r.node._camera_intrinsics is not None, 10)
    # /tf at 10 Hz around the images; images between samples (interpolated)
    for k in range(0, 11):
        r.tf_pub.publish(TFMessage(transforms=[transform("map", "base_link", 100.0 + 0.1 * k,
                                                         base_pose(100.0 + 0.1 * k))]))
    assert wait(lambda: r.node.ledger.received["tf"] >= 11, 10)
    stamps = [100.13, 100.47, 100.81]
    for i, t in enumerate(stamps):
        publish_image(r, i, t)
    # a late transform: the image comes first and waits, the TF follows 0.3 s later
    publish_image(r, 3, 101.15)
    time.sleep(0.3)
    r.tf_pub.publish(TFMessage(transforms=[transform("map", "base_link", 101.2, base_pose(101.2))]))
    assert wait(lambda: len(r.mapper.frames) == 4, 15), (len(r.mapper.frames), r.node.ledger.reject_counts)
    for frame, t in zip(r.mapper.frames, stamps + [101.15]):
        expect = base_pose(t) @ CAMERA_LINK @ OPTICAL     # slerp of a constant-rate turn = the exact pose
        assert frame.stamp == pytest.approx(t)
        assert np.allclose(frame.pose, expect, atol=1e-6), (t, frame.pose, expect)
    # extrapolation into the future that never resolves: dropped after tf_timeout, counted
    publish_image(r, 4, 105.0)
    # a frame nobody publishes
    publish_image(r, 5, 101.16, frame_id="thermal_optical")
    # a loop: cam_b's parent is cam_a and cam_a's is cam_b
    r.tf_static_pub.publish(TFMessage(transforms=[transform("cam_a", "cam_b_optical", 0.0, np.eye(4)),
                                                  transform("cam_b_optical", "cam_a", 0.0, np.eye(4))]))
    time.sleep(0.3)
    publish_image(r, 6, 101.17, frame_id="cam_b_optical")
    counts = r.node.ledger.reject_counts
    assert wait(lambda: {"tf_future", "tf_missing", "tf_loop"} <= set(counts), 15), counts
    text = "\n".join(warnings)
    assert "map -> thermal_optical" in text and "'thermal_optical' does not exist" in text
    assert "extrapolation into the future" in text and "map -> cam_optical" in text
    assert "loop" in text and "cam_a" in text and "cam_b_optical" in text
    assert r.node.ledger.rejected_by_topic["tf"] == 3 and len(r.mapper.frames) == 4
    # the node keeps running: a later good frame still maps
    r.tf_pub.publish(TFMessage(transforms=[transform("map", "base_link", 101.3, base_pose(101.3))]))
    publish_image(r, 7, 101.25)
    assert wait(lambda: len(r.mapper.frames) == 5, 15)
    status = r.call(require_interfaces()["GetStatus"], "/semnerf_node/get_status",
                    require_interfaces()["GetStatus"].Request()).status
    reasons = dict(zip(status.reject_reasons, status.reject_counts))
    assert reasons["tf_future"] == 1 and reasons["tf_missing"] == 1 and reasons["tf_loop"] == 1
    assert "/tf" in status.topics


# =========================================================================== /diagnostics


def test_diagnostics_at_one_hertz_with_levels(rigs):
    r = rigs(diag_min_training_rate=5.0)
    got = []
    r.io.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    assert r.matched()
    r.pubs["camera_info"].publish(convert.camera_info_from_intrinsics(INTR))
    assert wait(lambda: r.node._camera_intrinsics is not None, 10)
    from geometry_msgs.msg import PoseStamped

    pose_pub = r.io.create_publisher(PoseStamped, "pose", reliable())
    assert wait(lambda: pose_pub.get_subscription_count() > 0, 10)
    for i in range(6):
        rgb, lab, pose, info = frame_msgs(i, 50.0 + i * 0.1, np.random.default_rng(i), jitter=0.0)
        pose_pub.publish(pose)
        r.pubs["labels"].publish(lab)
        r.pubs["rgb"].publish(rgb)
        time.sleep(0.05)
    assert wait(lambda: len(r.mapper.frames) >= 4 and len(got) >= 3, 15)
    n0 = len(got)
    t0 = time.monotonic()
    assert wait(lambda: len(got) >= n0 + 2, 10)
    per = (time.monotonic() - t0) / (len(got) - n0)
    assert 0.5 < per < 1.6, f"/diagnostics every {per:.2f} s"
    status = {s.name.split(": ", 1)[1]: s for s in got[-1].status}
    assert {"input rgb", "input labels", "input pose", "input camera_info", "synchronization", "training",
            "keyframes", "gpu memory", "last export", "engine faults"} <= set(status)
    assert all(s.name.startswith("semnerf_node: ") for s in got[-1].status)
    assert status["training"].level == DiagnosticStatus.WARN
    assert "diag_min_training_rate 5" in status["training"].message
    assert status["keyframes"].level == DiagnosticStatus.OK
    assert status["gpu memory"].level == DiagnosticStatus.OK and "no GPU" in status["gpu memory"].message
    kv = {k.key: k.value for k in status["synchronization"].values}
    assert int(kv["frames_synced"]) >= 4
    # a failed training step shows as an ERROR in the next report; a threshold set at run time applies
    stats = r.mapper.stats
    r.mapper.stats = lambda: dict(stats(), step_errors=2, iterations_per_second=50.0)
    n = len(got)
    assert wait(lambda: len(got) >= n + 2, 10)
    status = {s.name.split(": ", 1)[1]: s for s in got[-1].status}
    levels = [{s.name.split(": ", 1)[1]: s.level for s in a.status}["engine faults"] for a in got[n:]]
    assert DiagnosticStatus.ERROR in levels
    assert status["training"].level == DiagnosticStatus.OK
    # stamps come from the node's clock
    assert abs(got[-1].header.stamp.sec - time.time()) < 5


# =========================================================================== actions


class SlowMeshMapper(FakeMapper):
    """A fake mapper whose mesh extraction takes 40 chunks of 50 ms, reporting progress and
    polling cancel like the engine's."""

    def extract_mesh(self, resolution=128, density_threshold=None, cancel=None, chunk=None, progress=False,
                     observed_only=False):
        for i in range(40):
            if callable(progress):
                progress("density_grid", i, 40)
            if cancel is not None and cancel():
                raise ExtractionCancelled("mesh extraction cancelled during the density grid")
            time.sleep(0.05)
        if callable(progress):
            progress("density_grid", 40, 40)
            progress("marching_cubes", 0, 1)
            progress("shading", 1, 1)
        v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
        return SemanticMesh(v, np.array([[0, 2, 1]], np.int32), np.full((3, 3), 100, np.uint8),
                            np.array([1, 1, 2], np.int32), ["void", "a", "b", "c"])

    def stats(self):
        return dict(super().stats(), keyframes=1)


def _send(r, client, goal, feedback):
    assert client.wait_for_server(timeout_sec=10.0)
    fut = client.send_goal_async(goal, feedback_callback=lambda m: feedback.append(m.feedback))
    assert wait(fut.done, 10)
    handle = fut.result()
    assert handle.accepted
    return handle


def test_actions_feedback_cancel_and_services_kept(rigs, tmp_path):
    iface = require_interfaces()
    r = rigs(mapper=SlowMeshMapper(4))
    from action_msgs.msg import GoalStatus

    from semnerf_ros.action import ExportMesh, LoadMap, SaveMap

    export = ActionClient(r.io, ExportMesh, "/semnerf_node/export_mesh")
    # every feedback message as sent (the ActionClient drops those it handles after the goal's result)
    sent = []
    sub = r.io.create_subscription(ExportMesh.Impl.FeedbackMessage, "/semnerf_node/export_mesh/_action/feedback",
                                   lambda m: sent.append(m.feedback), 100)
    assert wait(lambda: sub.get_publisher_count() > 0, 10)
    fb = []
    target = tmp_path / "mesh.ply"
    handle = _send(r, export, ExportMesh.Goal(path=str(target), semantic_colors=True), fb)
    res = handle.get_result_async()
    assert wait(res.done, 30)
    result = res.result()
    assert result.status == GoalStatus.STATUS_SUCCEEDED and result.result.success, result.result.message
    assert target.is_file() and result.result.written_path == str(target) and result.result.face_count == 1
    # feedback and result travel on different topics: the last feedback (sent before the result) may come later
    assert wait(lambda: sent and sent[-1].fraction == pytest.approx(1.0), 5), sent[-1:]
    fb = sent
    stages = [f.stage for f in fb]
    assert stages[0] == "checking" and "density_grid" in stages and stages[-1] == "writing", stages
    fractions = [f.fraction for f in fb]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0) and len(fb) >= 5
    assert any(0.2 < f.stage_fraction < 0.9 for f in fb if f.stage == "density_grid")
    # cancel in the middle of the extraction: canceled, nothing written, no temporary file
    fb = []
    cancelled_target = tmp_path / "cancelled.ply"
    handle = _send(r, export, ExportMesh.Goal(path=str(cancelled_target)), fb)
    assert wait(lambda: any(f.stage == "density_grid" and f.stage_fraction > 0.1 for f in fb), 20)
    cancel = handle.cancel_goal_async()
    assert wait(cancel.done, 10) and len(cancel.result().goals_canceling) == 1
    res = handle.get_result_async()
    assert wait(res.done, 20)
    assert res.result().status == GoalStatus.STATUS_CANCELED
    assert "cancelled, nothing written" in res.result().result.message
    assert not cancelled_target.exists() and list(tmp_path.iterdir()) == [target]
    assert r.node.ops.last_export["cancelled"]
    # save and load as actions, and a load that fails (the live map untouched)
    save = ActionClient(r.io, SaveMap, "/semnerf_node/save_map")
    fb, saved = [], []
    sub = r.io.create_subscription(SaveMap.Impl.FeedbackMessage, "/semnerf_node/save_map/_action/feedback",
                                   lambda m: saved.append(m.feedback), 100)
    assert wait(lambda: sub.get_publisher_count() > 0, 10)
    handle = _send(r, save, SaveMap.Goal(path=str(tmp_path / "map.pt")), fb)
    res = handle.get_result_async()
    assert wait(res.done, 20) and res.result().result.success and (tmp_path / "map.pt").is_file()
    assert wait(lambda: saved and saved[-1].fraction == pytest.approx(1.0), 5), saved[-1:]
    assert [f.stage for f in saved] == ["waiting", "writing", "writing"]
    load = ActionClient(r.io, LoadMap, "/semnerf_node/load_map")
    fb = []
    handle = _send(r, load, LoadMap.Goal(path=str(tmp_path / "missing.pt")), fb)
    res = handle.get_result_async()
    assert wait(res.done, 20)
    assert res.result().status == GoalStatus.STATUS_ABORTED and "FileNotFoundError" in res.result().result.message
    # the services of the same names stay
    resp = r.call(iface["SaveMap"], "/semnerf_node/save_map", iface["SaveMap"].Request(path=str(tmp_path / "b.pt")))
    assert resp.success and (tmp_path / "b.pt").is_file()


# =========================================================================== lifecycle


def test_lifecycle_transitions(rigs, tmp_path):
    iface = require_interfaces()
    r = rigs(SemNerfLifecycleNode, num_classes=4, engine_config="engine_cpu.yaml", max_steps_per_second=50.0)
    n = r.node
    change = r.io.create_client(ChangeState, "/semnerf_node/change_state")
    get = r.io.create_client(GetState, "/semnerf_node/get_state")
    assert change.wait_for_service(timeout_sec=10) and get.wait_for_service(timeout_sec=10)

    def transition(tid):
        fut = change.call_async(ChangeState.Request(transition=Transition(id=tid)))
        assert wait(fut.done, 120), f"transition {tid} did not answer"
        return fut.result().success

    def state():
        fut = get.call_async(GetState.Request())
        assert wait(fut.done, 10)
        return fut.result().current_state.label

    assert state() == "unconfigured" and n.mapper is None
    assert r.io.count_subscribers("/rgb") == 0
    assert transition(Transition.TRANSITION_CONFIGURE) and state() == "inactive"
    mapper_ref = weakref.ref(n.mapper)
    status = r.call(iface["GetStatus"], "/semnerf_node/get_status", iface["GetStatus"].Request()).status
    assert status.device == "cpu" and not status.training
    assert r.io.count_subscribers("/rgb") == 0          # inactive: not subscribed
    assert transition(Transition.TRANSITION_ACTIVATE) and state() == "active"
    assert r.matched()
    from geometry_msgs.msg import PoseStamped

    pose_pub = r.io.create_publisher(PoseStamped, "pose", reliable())
    assert wait(lambda: pose_pub.get_subscription_count() > 0, 10)
    r.pubs["camera_info"].publish(convert.camera_info_from_intrinsics(INTR))
    assert wait(lambda: n._camera_intrinsics is not None, 10)
    for i in range(4):
        rgb, lab, pose, info = frame_msgs(i, 10.0 + i, np.random.default_rng(i), jitter=0.0)
        pose_pub.publish(pose)
        r.pubs["labels"].publish(lab)
        r.pubs["rgb"].publish(rgb)
        time.sleep(0.1)
    assert wait(lambda: n.mapper.stats().get("keyframes", 0) >= 1 and n.mapper.stats().get("step", 0) > 5, 60)
    # deactivate: unsubscribed, training paused (the step count stops), the map kept
    assert transition(Transition.TRANSITION_DEACTIVATE) and state() == "inactive"
    assert wait(lambda: r.io.count_subscribers("/rgb") == 0, 10)
    time.sleep(0.5)
    step = n.mapper.stats()["step"]
    time.sleep(1.0)
    assert n.mapper.stats()["step"] == step and not n.mapper.stats().get("training", False)
    assert n.mapper.stats()["keyframes"] >= 1
    # cleanup: the engine is released (no reference left: its tensors are freed)
    assert transition(Transition.TRANSITION_CLEANUP) and state() == "unconfigured"
    gc.collect()
    assert n.mapper is None and mapper_ref() is None
    # and it can be configured again
    assert transition(Transition.TRANSITION_CONFIGURE) and state() == "inactive" and n.mapper is not None


def test_lifecycle_with_the_engine_in_its_own_process(rigs):
    """engine_location: process -- configure starts the engine's process, cleanup ends it, and a
    second configure starts a new one."""
    r = rigs(SemNerfLifecycleNode, num_classes=4, engine_config="engine_cpu.yaml", engine_location="process")
    n = r.node
    change = r.io.create_client(ChangeState, "/semnerf_node/change_state")
    assert change.wait_for_service(timeout_sec=10)

    def transition(tid):
        fut = change.call_async(ChangeState.Request(transition=Transition(id=tid)))
        assert wait(fut.done, 120), f"transition {tid} did not answer"
        return fut.result().success

    assert transition(Transition.TRANSITION_CONFIGURE)
    first = n.mapper
    assert first.alive and first.pid != os.getpid() and first.stats()["keyframes"] == 0
    assert transition(Transition.TRANSITION_CLEANUP) and n.mapper is None
    assert wait(lambda: not first.alive, 15)
    assert transition(Transition.TRANSITION_CONFIGURE)
    assert n.mapper.alive and n.mapper.pid != first.pid


def test_lifecycle_configure_fails_on_bad_parameters(rigs):
    r = rigs(SemNerfLifecycleNode, num_classes=0)      # neither num_classes nor class_names
    change = r.io.create_client(ChangeState, "/semnerf_node/change_state")
    assert change.wait_for_service(timeout_sec=10)
    fut = change.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
    assert wait(fut.done, 30) and not fut.result().success and r.node.state == "unconfigured"


# =========================================================================== sim time


def test_sim_time_follows_the_bag_players_clock(rigs, tmp_path):
    """``semnerf-play --clock`` drives the node's clock: outputs are stamped in bag time, the stamp
    gate measures ages against /clock (frames stamped in 2023 are not stale), while the timers that
    serve the user run on the steady clock and go on after the bag (and /clock) stopped."""
    from test_bag import make_replica_scene

    from semnerf_ros.bags.writer import write_scene_bag

    bag = tmp_path / "bag"
    write_scene_bag(make_replica_scene(tmp_path / "scene"), bag, rate_hz=10.0, progress=False)
    r = rigs(mapper=FakeMapper(18), num_classes=18, use_sim_time=True, max_stamp_age=5.0, status_rate=5.0,
             topics=())
    iface = require_interfaces()
    statuses, clocks = [], []
    r.io.create_subscription(iface["MapStatus"], "/semnerf_node/status", statuses.append, 10)
    r.io.create_subscription(Clock, "/clock", clocks.append, 10)
    env = dict(__import__("os").environ, ROS_DOMAIN_ID=str(r.ctx.get_domain_id()),
               PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "semnerf_ros.ros.bag_player", str(bag), "--clock", "--rate", "1.0",
           "--wait-for-subscribers", "20", "--quiet",
           "--remap", "/camera/color/image_raw:=/rgb", "/segmentation/labels:=/labels",
           "/camera/pose:=/pose", "/camera/color/camera_info:=/camera_info"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert clocks, "no /clock from semnerf-play --clock"
    bag_start = 1_700_000_000.0
    assert wait(lambda: len(r.mapper.frames) >= 10, 20), (len(r.mapper.frames), r.node.ledger.reject_counts,
                                                          r.node.ledger.received, proc.stderr[-3000:])
    assert "stale_stamp" not in r.node.ledger.reject_counts        # ages measured on /clock
    now = r.node.get_clock().now().nanoseconds * 1e-9
    last_clock = clocks[-1].clock.sec + clocks[-1].clock.nanosec * 1e-9
    assert bag_start <= now <= bag_start + 2.0 and now == pytest.approx(last_clock, abs=1e-6)
    # status stamps are bag time (the node clock), and the steady timer keeps publishing after /clock stopped
    n = len(statuses)
    assert wait(lambda: len(statuses) >= n + 3, 10)
    stamp = statuses[-1].header.stamp.sec + statuses[-1].header.stamp.nanosec * 1e-9
    assert stamp == pytest.approx(last_clock, abs=1e-6)
    # /clock jumps 60 s ahead (published here): the node's clock follows, and the stamp gate measures
    # ages against it -- a frame 50 s behind /clock is stale, one 2 s behind is taken
    clock_pub = r.io.create_publisher(Clock, "/clock", 10)
    jump = last_clock + 60.0
    assert wait(lambda: clock_pub.get_subscription_count() > 0, 10)
    clock_pub.publish(Clock(clock=convert.sec_to_stamp(jump)))
    assert wait(lambda: r.node.get_clock().now().nanoseconds * 1e-9 == pytest.approx(jump, abs=1e-6), 10)
    pub = {t: r.io.create_publisher(typ, t, reliable()) for t, typ in
           (("rgb", Image), ("labels", Image), ("camera_info", CameraInfo))}
    from geometry_msgs.msg import PoseStamped

    pub["pose"] = r.io.create_publisher(PoseStamped, "pose", reliable())
    assert wait(lambda: all(p.get_subscription_count() > 0 for p in pub.values()), 10)
    n_frames = len(r.mapper.frames)
    for i, stamp in enumerate((last_clock + 10.0, jump - 2.0)):
        rgb, lab, pose, info = frame_msgs(i, stamp, np.random.default_rng(i), jitter=0.0)
        for t, m in (("camera_info", info), ("pose", pose), ("labels", lab), ("rgb", rgb)):
            pub[t].publish(m)
        time.sleep(0.2)
    assert wait(lambda: r.node.ledger.reject_counts.get("stale_stamp", 0) == 1, 10), r.node.ledger.reject_counts
    assert wait(lambda: len(r.mapper.frames) == n_frames + 1, 10)
    assert r.mapper.frames[-1].stamp == pytest.approx(jump - 2.0)


def test_tf_backend_is_tf2_ros_where_installed(rigs):
    """The TF test above runs on whichever backend the machine has: tf2_ros in a full ROS 2 install,
    the package's own buffer on the pip path."""
    r = rigs(pose_source="tf")
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        assert r.node.tf.backend.startswith("semnerf_ros.bridge.tf_buffer")
        pytest.skip("tf2_ros is not installable from PyPI (full ROS 2 installs only): the node uses its own TF "
                    "buffer here, tested above and in test_tf_buffer.py")
    assert r.node.tf.backend == "tf2_ros"
