"""The README's node command, run as written against a (small) demo bag.

The two command lines of the README's "Using it" block are taken from README.md
itself (so the test follows the text): the node (`semnerf_node --ros-args
--params-file config/semnerf.yaml -r ...`, from the repository root) and the
player (`semnerf-play <demo bag> ...`), with only the bag path replaced by a
64x48, 30-frame bag written the way semnerf-demo writes its bag (same topics,
same writer).  The node must synchronize the bag's frames and publish semantic
images stamped with the bag's rgb stamps, and must not complain about a missing
input.  This is what failed in issue 19 (bug 1): the command remapped no depth
while config/semnerf.yaml has use_depth: true, so nothing ever synchronized.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FRAMES, WIDTH, HEIGHT = 30, 64, 48


def readme_commands() -> tuple[list, list]:
    """(node command, player command) of the README's usage block, split like a shell."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    block = next(b for b in blocks if "semnerf_node --ros-args" in b)
    lines = block.replace("\\\n", " ").splitlines()
    node = next(ln for ln in lines if "semnerf_node --ros-args" in ln)
    player = next(ln for ln in lines if "semnerf-play " in ln)
    return shlex.split(node, comments=True), shlex.split(player, comments=True)


def _executable(word: str) -> list:
    """``.venv/bin/NAME`` of the README -> NAME next to this interpreter (the same venv)."""
    name = Path(word).name
    exe = Path(sys.executable).parent / name
    if exe.is_file():
        return [str(exe)]
    module = {"semnerf_node": "semnerf_ros.ros.node", "semnerf-play": "semnerf_ros.ros.bag_player"}[name]
    return [sys.executable, "-m", module]


@pytest.fixture(scope="module")
def demo_bag(tmp_path_factory):
    from semnerf_ros.bags.writer import write_scene_bag
    from semnerf_ros.datasets.synthetic import ensure_scene

    base = tmp_path_factory.mktemp("readme")
    scene = ensure_scene(frames=FRAMES, width=WIDTH, height=HEIGHT, path=base / "scene", progress=False)
    bag = base / f"bag_{WIDTH}x{HEIGHT}_f{FRAMES}_pixel0.5"
    write_scene_bag(scene, bag, storage="mcap", rate_hz=30.0, noise="pixel", noise_ratio=0.5, seed=0,
                    progress=False)
    return bag


def _bag_rgb_stamps(bag: Path) -> set:
    from rosbags.highlevel import AnyReader

    stamps = set()
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == "/camera/color/image_raw"]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            stamps.add(int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec))
    return stamps


def test_readme_node_command_on_the_demo_bag(demo_bag, tmp_path):
    node_cmd, player_cmd = readme_commands()
    assert node_cmd[0].endswith("semnerf_node") and "--params-file" in node_cmd
    assert player_cmd[0].endswith("semnerf-play") and player_cmd[1].startswith("runs/demo/bag_")
    node_cmd = _executable(node_cmd[0]) + node_cmd[1:]
    player_cmd = _executable(player_cmd[0]) + [str(demo_bag)] + player_cmd[2:]

    domain = 200 + os.getpid() % 30
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    node = subprocess.Popen(node_cmd, cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list = []
    threading.Thread(target=lambda: lines.extend(node.stdout), daemon=True).start()
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    io = rclpy.create_node("readme_check", context=ctx)
    semantic: list = []
    io.create_subscription(Image, "/semnerf_node/semantic", semantic.append,
                           QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(io)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    player = None
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and not any("semnerf_node ready" in ln for ln in lines):
            assert node.poll() is None, "".join(lines)
            time.sleep(0.1)
        assert any("semnerf_node ready" in ln for ln in lines), "".join(lines)
        player = subprocess.run(player_cmd, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=120)
        assert player.returncode == 0, player.stdout
        bag_stamps = _bag_rgb_stamps(demo_bag)
        end = time.monotonic() + 60
        while time.monotonic() < end and not semantic:
            assert node.poll() is None, "".join(lines)
            time.sleep(0.1)
        log = "".join(lines)
        assert semantic, "no semantic image was published\n" + log
        got = {int(m.header.stamp.sec) * 1_000_000_000 + int(m.header.stamp.nanosec) for m in semantic}
        assert got <= bag_stamps, "a published image carries no stamp of the bag's rgb"
        assert all(m.header.frame_id == "camera_color_optical_frame" for m in semantic)
        assert "no publisher on" not in log and "never synchronize" not in log, log
        assert "engine profile:" in log
        try:
            from semnerf_ros.srv import GetStatus
        except ImportError:
            GetStatus = None
        if GetStatus is not None:
            cli = io.create_client(GetStatus, "/semnerf_node/get_status")
            assert cli.wait_for_service(timeout_sec=10)
            fut = cli.call_async(GetStatus.Request())
            end = time.monotonic() + 10
            while time.monotonic() < end and not fut.done():
                time.sleep(0.05)
            st = fut.result().status
            print(f"\nnode status: frames synced {st.frames_synced}, received "
                  f"{dict(zip(st.topics, st.received))}")
            assert st.frames_synced > 0 and all(n > 0 for n in st.received), st
        print(f"\n{len(semantic)} semantic images from {len(bag_stamps)} bag frames\n" + log[-2500:])
    finally:
        if player is None or node.poll() is None:
            node.send_signal(2)
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        ex.shutdown(timeout_sec=2)
        io.destroy_node()
        rclpy.shutdown(context=ctx)
    assert node.returncode == 0, "".join(lines)
