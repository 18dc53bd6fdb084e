"""Scene -> rosbag2 -> read back: topics, counts, stamp jitter within bounds,
receive-time order, noise ratio of the labels, both storage plugins."""
import json
import time

import cv2
import numpy as np
import pytest

from semnerf_ros.bags import reader as bag_reader  # noqa: E402
from semnerf_ros.bags import writer as bag_writer  # noqa: E402
from semnerf_ros.bags.writer import (  # noqa: E402
    TOPIC_DEPTH,
    TOPIC_INFO,
    TOPIC_LABELS,
    TOPIC_LABELS_GT,
    TOPIC_POSE,
    TOPIC_RGB,
    BagWriteError,
)
from semnerf_ros.bridge import convert  # noqa: E402

N, W, H = 12, 32, 24


def make_replica_scene(root, n=N, w=W, h=H):
    """A tiny Replica-layout folder: 3 classes in vertical bands + floor, 4 instances."""
    for sub in ("rgb", "depth", "semantic_class", "semantic_instance"):
        (root / sub).mkdir(parents=True)
    poses = []
    for i in range(n):
        cls = np.zeros((h, w), np.uint8)
        inst = np.zeros((h, w), np.uint16)
        shift = i % 4
        cls[:, : w // 3 + shift] = 3
        cls[:, w // 3 + shift: 2 * w // 3] = 7
        cls[:, 2 * w // 3:] = 12
        cls[h - 4:, :] = 1
        inst[cls == 3], inst[cls == 7], inst[cls == 12], inst[cls == 1] = 10, 11, 12, 13
        rgb = np.stack([cls * 20, 255 - cls * 20, np.full_like(cls, 100)], -1).astype(np.uint8)
        depth = np.full((h, w), 2000 + 10 * i, np.uint16)
        depth[0, 0] = 0
        cv2.imwrite(str(root / "rgb" / f"rgb_{i}.png"), rgb[:, :, ::-1])
        cv2.imwrite(str(root / "depth" / f"depth_{i}.png"), depth)
        cv2.imwrite(str(root / "semantic_class" / f"semantic_class_{i}.png"), cls)
        cv2.imwrite(str(root / "semantic_instance" / f"semantic_instance_{i}.png"), inst)
        T = np.eye(4)
        T[:3, 3] = [0.05 * i, 0.0, 0.0]
        poses.append(T.reshape(-1))
    np.savetxt(root / "traj_w_c.txt", np.asarray(poses))
    return root


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_replica_scene(tmp_path_factory.mktemp("scene"))


def read_all(path):
    out = {}
    for topic, msgtype, t, msg in bag_reader.read_bag_messages(path):
        out.setdefault(topic, []).append((t, msgtype, msg))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip(scene, tmp_path, storage):
    info = bag_writer.write_scene_bag(scene, tmp_path / "bag", storage=storage, rate_hz=30.0,
                                      noise="pixel", noise_ratio=0.5, seed=3, jitter_ms=3.0,
                                      progress=False)
    assert info["frames"] == N and info["num_classes"] == 5
    assert info["class_names"][0] == "void"
    msgs = read_all(tmp_path / "bag")
    assert set(msgs) == {TOPIC_RGB, TOPIC_INFO, TOPIC_POSE, TOPIC_LABELS, TOPIC_DEPTH, TOPIC_LABELS_GT}
    assert all(len(v) == N for v in msgs.values())
    assert msgs[TOPIC_POSE][0][1] == "geometry_msgs/msg/PoseStamped"
    # receive-time order over the whole bag, and receive time after the stamp
    all_times = [t for _, _, t, _ in bag_reader.read_bag_messages(tmp_path / "bag")]
    assert all_times == sorted(all_times)
    for lst in msgs.values():
        for t, _, m in lst:
            assert t / 1e9 - convert.stamp_to_sec(m.header.stamp) >= 0.002 - 1e-9
    # stamps: frame i at start + i/30 with per-topic jitter within +-3 ms
    stamps = {k: np.array([convert.stamp_to_sec(m.header.stamp) for _, _, m in v]) for k, v in msgs.items()}
    base = bag_writer.DEFAULT_START_TIME + np.arange(N) / 30.0
    for topic in (TOPIC_RGB, TOPIC_POSE, TOPIC_LABELS, TOPIC_DEPTH):
        dev = stamps[topic] - base
        assert np.all(np.abs(dev) <= 3.0e-3 + 1e-6), topic
        assert np.std(dev) > 3e-4, f"{topic} stamps are not jittered"
    assert np.max(np.abs(stamps[TOPIC_RGB] - stamps[TOPIC_LABELS])) > 5e-4
    np.testing.assert_array_equal(stamps[TOPIC_INFO], stamps[TOPIC_RGB])
    np.testing.assert_array_equal(stamps[TOPIC_LABELS_GT], stamps[TOPIC_RGB])
    # frames and contents
    rgb0 = convert.rgb_from_image_msg(msgs[TOPIC_RGB][0][2])
    assert rgb0.shape == (H, W, 3) and msgs[TOPIC_RGB][0][2].header.frame_id == "camera_color_optical_frame"
    assert msgs[TOPIC_POSE][0][2].header.frame_id == "map"
    np.testing.assert_allclose(convert.pose_from_pose_stamped(msgs[TOPIC_POSE][5][2])[:3, 3], [0.25, 0, 0],
                               atol=1e-12)
    depth = convert.depth_from_image_msg(msgs[TOPIC_DEPTH][1][2])
    assert depth[0, 0] == 0 and depth[1, 1] == pytest.approx(2.01)
    intr = convert.intrinsics_from_camera_info(msgs[TOPIC_INFO][0][2])
    assert (intr.width, intr.height) == (W, H) and intr.fx == pytest.approx(W / 2.0)  # hfov 90
    # noise: half of the valid pixels perturbed with a random valid class (1..4),
    # so about 0.5 * 3/4 of them change; void stays void
    gt = np.stack([convert.labels_from_image_msg(m) for _, _, m in msgs[TOPIC_LABELS_GT]])
    noisy = np.stack([convert.labels_from_image_msg(m) for _, _, m in msgs[TOPIC_LABELS]])
    assert msgs[TOPIC_LABELS][0][2].encoding == "mono8"
    assert gt.max() == 4 and noisy.max() <= 4
    changed = np.mean(noisy[gt > 0] != gt[gt > 0])
    assert 0.5 * 0.75 - 0.05 < changed < 0.5 * 0.75 + 0.05
    assert info["noise_info"]["perturbed_ratio"] == pytest.approx(0.5, abs=0.01)
    custom = bag_reader.bag_custom_data(tmp_path / "bag")
    assert json.loads(custom["semnerf.class_names"]) == info["class_names"]
    assert custom["semnerf.num_classes"] == "5"


def test_options_and_region_noise(scene, tmp_path):
    info = bag_writer.write_scene_bag(scene, tmp_path / "b", noise="region", noise_ratio=0.5, seed=0,
                                      include_depth=False, include_gt=True, jitter_ms=0.0, rate_hz=10.0,
                                      world_frame="odom", frame_id="cam", progress=False)
    msgs = read_all(tmp_path / "b")
    assert TOPIC_DEPTH not in msgs
    assert msgs[TOPIC_POSE][0][2].header.frame_id == "odom"
    st = np.array([convert.stamp_to_sec(m.header.stamp) for _, _, m in msgs[TOPIC_LABELS]])
    np.testing.assert_allclose(np.diff(st), 0.1, atol=1e-6)
    gt = np.stack([convert.labels_from_image_msg(m) for _, _, m in msgs[TOPIC_LABELS_GT]])
    noisy = np.stack([convert.labels_from_image_msg(m) for _, _, m in msgs[TOPIC_LABELS]])
    # whole instances flipped: each flipped (frame, instance) region takes one new class on every one
    # of its pixels, and nothing outside the flipped regions changes
    flips = info["noise_info"]["flips"]
    assert len(flips) == sum(info["noise_info"]["flipped_frames"]) > 0
    inst = np.stack([cv2.imread(str(scene / "semantic_instance" / f"semantic_instance_{i}.png"),
                                cv2.IMREAD_UNCHANGED) for i in range(N)])
    flipped = np.zeros(gt.shape, bool)
    for fl in flips:
        region = inst[fl["frame"]] == fl["instance"]
        assert region.sum() == fl["pixels"] > 0 and fl["to"] != fl["from"]
        assert np.all(gt[fl["frame"]][region] == fl["from"]), fl
        assert np.all(noisy[fl["frame"]][region] == fl["to"]), fl
        flipped[fl["frame"]] |= region
    np.testing.assert_array_equal(noisy[~flipped], gt[~flipped])
    assert np.array_equal(noisy != gt, flipped)
    # region noise at ratio 0.5 flips int(0.5 * visible) of the frames of each of the 4 instances
    assert info["noise_info"]["flipped_frames"] == [v // 2 for v in info["noise_info"]["visible_frames"]]
    same = bag_writer.write_scene_bag(scene, tmp_path / "c", noise="none", progress=False)
    msgs = read_all(tmp_path / "c")
    for (_, _, a), (_, _, b) in zip(msgs[TOPIC_LABELS], msgs[TOPIC_LABELS_GT]):
        np.testing.assert_array_equal(convert.labels_from_image_msg(a), convert.labels_from_image_msg(b))
    assert same["frames"] == N


def test_seed_reproducible(scene, tmp_path):
    a = bag_writer.write_scene_bag(scene, tmp_path / "a", seed=7, progress=False)
    b = bag_writer.write_scene_bag(scene, tmp_path / "b", seed=7, progress=False)
    la = [bytes(m.data) for _, _, m in [e for e in read_all(tmp_path / "a")[TOPIC_LABELS]]]
    lb = [bytes(m.data) for _, _, m in [e for e in read_all(tmp_path / "b")[TOPIC_LABELS]]]
    assert la == lb and a["topics"] == b["topics"]


def test_errors(scene, tmp_path):
    with pytest.raises(BagWriteError, match="storage"):
        bag_writer.write_scene_bag(scene, tmp_path / "x", storage="rosbag1", progress=False)
    with pytest.raises(BagWriteError, match="noise"):
        bag_writer.write_scene_bag(scene, tmp_path / "x", noise="salt", progress=False)
    with pytest.raises(BagWriteError, match="jitter"):
        bag_writer.write_scene_bag(scene, tmp_path / "x", jitter_ms=20.0, rate_hz=30.0, progress=False)
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagWriteError, match="exists"):
        bag_writer.write_scene_bag(scene, tmp_path / "exists", progress=False)


def test_no_rclpy_import(scene, tmp_path):
    """The scene generator imports bag_writer: it must not pull in rclpy."""
    import subprocess
    import sys

    code = ("import sys; from semnerf_ros.bags import writer as bag_writer; "
            f"bag_writer.write_scene_bag({str(scene)!r}, {str(tmp_path / 'q')!r}, progress=False); "
            "assert 'rclpy' not in sys.modules, 'rclpy imported'")
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(tmp_path), env=env)


def test_player_publishes_exact_messages_with_timing(scene, tmp_path):
    """semnerf-play in a subprocess; a subscriber here receives the recorded
    messages unchanged, remapped, at the recorded rate scaled by --rate."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    bag_writer.write_scene_bag(scene, tmp_path / "bag", rate_hz=10.0, progress=False)
    domain = 100 + os.getpid() % 100
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain),
               PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("play_check", context=ctx)
    got = {"labels": [], "pose": []}
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, "/labels", lambda m: got["labels"].append((time.monotonic(), m)), qos)
    node.create_subscription(PoseStamped, "/camera/pose", lambda m: got["pose"].append(m), qos)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    proc = subprocess.Popen([sys.executable, "-m", "semnerf_ros.ros.bag_player", str(tmp_path / "bag"),
                             "--rate", "2.0", "--wait-for-subscribers", "20", "--quiet",
                             "--topics", TOPIC_LABELS, TOPIC_POSE,
                             "--remap", f"{TOPIC_LABELS}:=/labels"], env=env, cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, exited = time.monotonic() + 20, None
        while time.monotonic() < deadline and len(got["labels"]) + len(got["pose"]) < 2 * N:
            ex.spin_once(timeout_sec=0.05)
            if proc.poll() is not None:
                exited = exited or time.monotonic()
                if time.monotonic() - exited > 1.0:
                    break
        out = proc.communicate(timeout=10)[0].decode()
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    assert len(got["labels"]) == N and len(got["pose"]) == N, out
    recorded = [m for _, _, _, m in bag_reader.read_bag_messages(tmp_path / "bag", [TOPIC_LABELS])]
    for (_, live), rec in zip(got["labels"], recorded):
        assert bytes(live.data) == bytes(rec.data.tobytes())
        assert (live.header.stamp.sec, live.header.stamp.nanosec) == (rec.header.stamp.sec, rec.header.stamp.nanosec)
    # 12 frames at 10 Hz played at x2: about 11 * 0.05 s = 0.55 s between first and last
    span = got["labels"][-1][0] - got["labels"][0][0]
    assert 0.35 < span < 1.5, span


def test_player_options_in_process(scene, tmp_path):
    """--start-offset, --topics, --remap, --clock on an in-process node; option errors."""
    import threading

    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    from semnerf_ros.ros import bag_player

    assert bag_reader.split_ros_args(["b", "--rate", "2", "--ros-args", "-r", "a:=b", "--", "--loop"]) == \
        (["b", "--rate", "2", "--loop"], ["--ros-args", "-r", "a:=b"])
    assert bag_reader.parse_remaps(["/a:=/b"]) == {"/a": "/b"}
    with pytest.raises(bag_reader.PlayerError):
        bag_reader.parse_remaps(["/a=/b"])
    with pytest.raises(bag_reader.PlayerError):
        bag_reader.message_class("sensor_msgs/Image")

    bag_writer.write_scene_bag(scene, tmp_path / "bag", rate_hz=10.0, progress=False)
    log_times = [t for _, _, t, _ in bag_reader.read_bag_messages(tmp_path / "bag", [TOPIC_POSE])]
    all_times = [t for _, _, t, _ in bag_reader.read_bag_messages(tmp_path / "bag")]
    start = min(all_times)
    expected = [t for t in log_times if t >= start + 200_000_000]
    import os

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=30 + os.getpid() % 150)
    node = rclpy.create_node("player_test", context=ctx)
    poses, clocks = [], []
    q = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(PoseStamped, "/p", poses.append, q)
    node.create_subscription(Clock, "/clock", clocks.append, q)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    try:
        with pytest.raises(bag_reader.PlayerError, match="not in the bag"):
            bag_player.BagPlayer(node, tmp_path / "bag", topics=["/nope"])
        with pytest.raises(bag_reader.PlayerError, match="rate"):
            bag_player.BagPlayer(node, tmp_path / "bag", rate=0.0)
        player = bag_player.BagPlayer(node, tmp_path / "bag", rate=4.0, topics=[TOPIC_POSE],
                                      remaps={TOPIC_POSE: "/p"}, start_offset=0.2, clock_hz=50.0)
        end = time.monotonic() + 5
        while time.monotonic() < end and not (player.publishers["/p"].get_subscription_count() and
                                              player.clock_pub.get_subscription_count()):
            time.sleep(0.02)
        time.sleep(0.3)
        player.play_once(progress=False)
        player.close()
        end = time.monotonic() + 5
        while time.monotonic() < end and len(poses) < len(expected):
            time.sleep(0.02)
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    assert len(poses) == len(expected) and N - 3 <= len(expected) <= N - 1
    ns = [c.clock.sec * 1_000_000_000 + c.clock.nanosec for c in clocks]
    assert ns == sorted(ns) and ns[0] >= start + 200_000_000 and ns[-1] == expected[-1]


def test_player_loop_and_delay(scene, tmp_path):
    """semnerf-play --loop --delay in a subprocess: nothing is published for --delay seconds after
    the subscribers matched, then the bag plays again and again, each pass the recorded messages
    in order (stamps unchanged); SIGINT ends it with exit code 0."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    delay = 1.5
    bag_writer.write_scene_bag(scene, tmp_path / "bag", rate_hz=10.0, progress=False)
    recorded = [m for _, _, _, m in bag_reader.read_bag_messages(tmp_path / "bag", [TOPIC_LABELS])]
    domain = 100 + (os.getpid() + 37) % 100
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain),
               PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("loop_check", context=ctx)
    got = []
    sub = node.create_subscription(Image, TOPIC_LABELS, lambda m: got.append((time.monotonic(), m)),
                                   QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    proc = subprocess.Popen([sys.executable, "-m", "semnerf_ros.ros.bag_player", str(tmp_path / "bag"),
                             "--rate", "4.0", "--loop", "--delay", str(delay), "--wait-for-subscribers", "20",
                             "--quiet", "--topics", TOPIC_LABELS], env=env, cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, matched = time.monotonic() + 30, None
        while time.monotonic() < deadline and len(got) < 3 * N + 2:
            ex.spin_once(timeout_sec=0.02)
            if matched is None and sub.get_publisher_count() > 0:
                matched = time.monotonic()
            assert proc.poll() is None, proc.stdout.read().decode()
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=15)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    assert proc.returncode == 0, out
    assert matched is not None and len(got) >= 3 * N + 2, (len(got), out)
    # --delay: the first message comes delay (+ 0.3 s settling after the match) after the match
    first = got[0][0] - matched
    assert delay <= first < delay + 5.0, first
    # --loop: pass after pass, the recorded messages in their order, bytes and stamps unchanged
    for k, (_, live) in enumerate(got):
        rec = recorded[k % N]
        assert bytes(live.data) == bytes(rec.data.tobytes()), k
        assert (live.header.stamp.sec, live.header.stamp.nanosec) == (rec.header.stamp.sec, rec.header.stamp.nanosec)
    # each pass takes the recorded 1.1 s at x4 (about 0.28 s): no --delay between passes
    starts = [got[k][0] for k in range(0, len(got), N)]
    gaps = np.diff(starts[:3])
    assert np.all(gaps > 0.2) and np.all(gaps < 0.28 + 1.0), gaps
