"""The TF buffer of the pip path (bridge/tf_buffer.py) without DDS: lookups through a tree,
interpolation between samples, static transforms, the errors tf2 raises (missing, future,
past, loop) naming the frames, REP 103/105 camera axes, and the queue of sets that wait for
their transform."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from semnerf_ros.bridge.tf_buffer import (
    TfError,
    TfWaitQueue,
    TransformBuffer,
    camera_convention,
    camera_pose_from_transform,
)
from semnerf_ros.engine.geometry import BODY_FROM_OPTICAL, pose_from_position_quaternion


def quat(axis, deg):
    return Rotation.from_rotvec(np.radians(deg) * np.asarray(axis, float)).as_quat()


def robot_tree(buf, stamps=(10.0, 11.0)):
    """map -> odom (dynamic, moving along x), odom -> base_link (dynamic, turning about z),
    base_link -> camera_link -> camera_optical_frame (static, REP 103 -> optical)."""
    for i, t in enumerate(stamps):
        buf.set_transform("map", "odom", t, [float(i), 0, 0], [0, 0, 0, 1])
        buf.set_transform("odom", "base_link", t, [0, 0, 0], quat([0, 0, 1], 90.0 * i))
    buf.set_transform("base_link", "camera_link", 0.0, [0.1, 0, 0.5], [0, 0, 0, 1], static=True)
    q_opt = Rotation.from_matrix(BODY_FROM_OPTICAL).as_quat()
    buf.set_transform("camera_link", "camera_optical_frame", 0.0, [0, 0, 0], q_opt, static=True)


def test_lookup_composes_the_chain_and_interpolates():
    buf = TransformBuffer()
    robot_tree(buf)
    T = buf.lookup("map", "camera_link", 10.5)
    # halfway: odom at x=0.5, base turned 45 deg; camera 0.1 m ahead of the base, 0.5 m up
    c, s = np.cos(np.radians(45)), np.sin(np.radians(45))
    assert np.allclose(T[:3, 3], [0.5 + 0.1 * c, 0.1 * s, 0.5], atol=1e-9)
    assert np.allclose(T[:3, :3], Rotation.from_euler("z", 45, degrees=True).as_matrix(), atol=1e-9)
    # exact samples, and the inverse direction
    assert np.allclose(buf.lookup("map", "base_link", 11.0)[:3, 3], [1, 0, 0])
    assert np.allclose(buf.lookup("camera_link", "map", 10.5) @ T, np.eye(4), atol=1e-9)
    # time 0: the latest time every edge has
    assert np.allclose(buf.lookup("map", "base_link", 0.0)[:3, 3], [1, 0, 0])
    assert buf.lookup("/map", "map", 3.0).tolist() == np.eye(4).tolist()   # leading slash ignored


def test_optical_and_body_frames_give_the_same_camera_pose():
    buf = TransformBuffer()
    robot_tree(buf)
    body = buf.lookup("map", "camera_link", 10.25)
    optical = buf.lookup("map", "camera_optical_frame", 10.25)
    assert camera_convention("camera_link", "auto") == "body"
    assert camera_convention("camera_color_optical_frame", "auto") == "optical"
    assert camera_convention("camera_link", "optical") == "optical"
    # REP 103 body frame rotated into optical axes == the optical frame's own pose
    assert np.allclose(camera_pose_from_transform(body, "camera_link"), optical, atol=1e-9)
    assert np.allclose(camera_pose_from_transform(optical, "camera_optical_frame"), optical)
    # optical camera looks along the body's x (forward): its z axis is the body's x axis
    assert np.allclose(optical[:3, 2], body[:3, 0], atol=1e-9)


def test_errors_name_the_frames():
    buf = TransformBuffer(cache_time=5.0)
    robot_tree(buf)
    with pytest.raises(TfError) as e:
        buf.lookup("map", "camera_link", 11.2)
    assert e.value.kind == "future" and e.value.reason == "tf_future"
    assert "odom" in e.value.detail and "map -> camera_link" in e.value.detail and "0.200 s" in e.value.detail
    with pytest.raises(TfError) as e:
        buf.lookup("map", "camera_link", 9.0)
    assert e.value.kind == "past" and "odom -> base_link" in e.value.detail and "map -> camera_link" in e.value.detail
    with pytest.raises(TfError) as e:
        buf.lookup("map", "lidar", 10.5)
    assert e.value.kind == "missing" and "'lidar' does not exist" in e.value.detail
    buf.set_transform("world", "elsewhere", 0.0, [0, 0, 0], [0, 0, 0, 1], static=True)
    with pytest.raises(TfError) as e:
        buf.lookup("map", "elsewhere", 10.5)
    assert e.value.kind == "missing" and "not connected" in e.value.detail and "'world'" in e.value.detail
    # a loop: map's parent becomes camera_link
    buf.set_transform("camera_link", "map", 0.0, [0, 0, 0], [0, 0, 0, 1], static=True)
    with pytest.raises(TfError) as e:
        buf.lookup("odom", "camera_link", 10.5)
    assert e.value.kind == "loop" and "camera_link" in e.value.detail and "map" in e.value.detail


def test_cache_time_prunes_and_bad_transforms_are_refused():
    buf = TransformBuffer(cache_time=1.0)
    for t in np.arange(0.0, 5.01, 0.5):
        buf.set_transform("map", "cam", float(t), [t, 0, 0], [0, 0, 0, 1])
    with pytest.raises(TfError) as e:
        buf.lookup("map", "cam", 3.5)
    assert e.value.kind == "past"
    assert np.allclose(buf.lookup("map", "cam", 4.25)[:3, 3], [4.25, 0, 0])
    for bad in (dict(parent="map", child="map"), dict(parent="", child="cam"),
                dict(parent="map", child="cam", q=[0, 0, 0, 3.0]), dict(parent="map", child="cam", t=[np.nan, 0, 0])):
        with pytest.raises(ValueError):
            buf.set_transform(bad["parent"], bad["child"], 6.0, bad.get("t", [0, 0, 0]), bad.get("q", [0, 0, 0, 1]))
    # a static transform holds at any time, before and after
    buf.set_transform("cam", "lens", 0.0, [0, 0, 0.01], [0, 0, 0, 1], static=True)
    assert np.allclose(buf.lookup("cam", "lens", 123.0)[:3, 3], [0, 0, 0.01])


def test_slerp_takes_the_short_way():
    buf = TransformBuffer()
    buf.set_transform("map", "cam", 0.0, [0, 0, 0], quat([0, 0, 1], 170))
    buf.set_transform("map", "cam", 1.0, [0, 0, 0], -quat([0, 0, 1], -170))  # same as -170 deg, other sign
    mid = buf.lookup("map", "cam", 0.5)
    assert np.allclose(mid[:3, :3], Rotation.from_euler("z", 180, degrees=True).as_matrix(), atol=1e-9)


def test_wait_queue_resolves_late_transforms_and_times_out():
    buf = TransformBuffer()
    now = [100.0]
    q = TfWaitQueue(lambda stamp, frame: buf.lookup("map", frame, stamp), timeout=0.5, max_pending=2,
                    clock=lambda: now[0])
    buf.set_transform("map", "cam", 1.0, [0, 0, 0], [0, 0, 0, 1])
    assert q.submit("a", 1.5, "cam") == [] and len(q) == 1            # future: waits
    buf.set_transform("map", "cam", 2.0, [2, 0, 0], [0, 0, 0, 1])
    now[0] += 0.1
    out = q.poll()
    assert [o.item for o in out] == ["a"] and np.allclose(out[0].pose[:3, 3], [1, 0, 0]) and len(q) == 0
    # past and loop end at once
    [o] = q.submit("old", 0.5, "cam")
    assert o.error.kind == "past"
    # a transform that never comes: dropped after the timeout, saying how long it waited
    assert q.submit("b", 3.0, "cam") == []
    now[0] += 0.3
    assert q.poll() == []
    now[0] += 0.3
    [o] = q.poll()
    assert o.item == "b" and o.error.kind == "future" and "waited 0.60 s" in o.error.detail
    # a full queue pushes its oldest set out
    assert q.submit("c", 5.0, "cam") == [] and q.submit("d", 5.1, "cam") == []
    [o] = q.submit("e", 5.2, "cam")
    assert o.item == "c" and o.error.kind == "future" and "already waited" in o.error.detail


def test_transform_message_input():
    from types import SimpleNamespace as NS

    msg = NS(header=NS(stamp=NS(sec=3, nanosec=500_000_000), frame_id="map"), child_frame_id="cam",
             transform=NS(translation=NS(x=1.0, y=2.0, z=3.0), rotation=NS(x=0.0, y=0.0, z=0.0, w=1.0)))
    buf = TransformBuffer()
    buf.set_transform_message(msg)
    assert np.allclose(buf.lookup("map", "cam", 3.5), pose_from_position_quaternion([1, 2, 3], [0, 0, 0, 1]))
    assert buf.frames() == ["cam", "map"]


def test_tf_message_is_the_upstream_type_on_the_wire():
    """The tf2_msgs/msg/TFMessage the node subscribes with (built from the upstream definition on the
    pip path) has the real type name and the upstream CDR layout: rosbags' own definition reads it."""
    from geometry_msgs.msg import TransformStamped
    from rclpy.serialization import serialize_message
    from tf2_msgs.msg import TFMessage

    from semnerf_ros.bags.reader import typestore

    t = TransformStamped(child_frame_id="camera_link")
    t.header.frame_id, t.header.stamp.sec, t.header.stamp.nanosec = "map", 7, 250
    t.transform.translation.x, t.transform.rotation.z, t.transform.rotation.w = 1.5, 0.6, 0.8
    raw = serialize_message(TFMessage(transforms=[t]))
    back = typestore().deserialize_cdr(raw, "tf2_msgs/msg/TFMessage")
    (b,) = back.transforms
    assert (b.header.frame_id, b.child_frame_id, b.header.stamp.sec, b.header.stamp.nanosec) == ("map", "camera_link",
                                                                                                  7, 250)
    assert (b.transform.translation.x, b.transform.rotation.z, b.transform.rotation.w) == (1.5, 0.6, 0.8)
    assert TFMessage.__module__.startswith("tf2_msgs.msg")


def test_bag_with_tf_poses_reproduces_the_scene_poses(tmp_path):
    """semnerf-make-scene --bag --pose-source tf: /tf map -> camera_link at each image's stamp and
    /tf_static camera_link -> the optical frame, so the lookup gives the scene's camera poses."""
    from test_bag import make_replica_scene

    from semnerf_ros.bags.reader import read_bag_messages
    from semnerf_ros.bags.writer import write_scene_bag
    from semnerf_ros.bridge import convert
    from semnerf_ros.datasets import load_dataset

    scene = make_replica_scene(tmp_path / "scene")
    info = write_scene_bag(scene, tmp_path / "bag", pose_source="tf", progress=False)
    assert "/camera/pose" not in info["topics"] and info["topics"]["/tf_static"] == 1
    buf, images = TransformBuffer(), []
    for topic, _, _, msg in read_bag_messages(tmp_path / "bag"):
        if topic in ("/tf", "/tf_static"):
            for t in msg.transforms:
                buf.set_transform_message(t, static=topic == "/tf_static")
        elif topic == "/camera/color/image_raw":
            images.append((convert.stamp_to_sec(msg.header.stamp), msg.header.frame_id))
    poses = load_dataset(scene, width=None, height=None, train_step=1, test_offset=0, progress=False).poses
    assert len(images) == len(poses)
    for (stamp, frame), pose in zip(images, poses):
        T = camera_pose_from_transform(buf.lookup("map", frame, stamp), frame)
        assert frame == "camera_color_optical_frame" and np.allclose(T, pose, atol=1e-6)
        body = buf.lookup("map", "camera_link", stamp)
        assert np.allclose(camera_pose_from_transform(body, "camera_link"), pose, atol=1e-6)
