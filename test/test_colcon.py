"""A real ``colcon build`` of this package, as a colcon user does it: the sources in a temporary
workspace, built against the venv's ROS 2 prefix (the PyPI wheels), then the node started from
``install/`` through the installed executable with the installed
``share/semnerf_ros/config/semnerf.yaml``, answering ``~/get_status`` over DDS.

Needs Debian's ``colcon`` with ``python3-colcon-ros``, ``python3-colcon-cmake`` and
``python3-colcon-bash`` (.ci/run installs them); without colcon on PATH the test says so in its skip reason."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from semnerf_ros.ros.services import load_interfaces

ROOT = Path(__file__).resolve().parents[1]
PREFIX = Path(sys.prefix)


def _colcon_env(tmp: Path) -> dict:
    env = dict(os.environ, AMENT_PREFIX_PATH=str(PREFIX), CMAKE_PREFIX_PATH=str(PREFIX),
               PATH=os.pathsep.join([str(PREFIX / "bin"), os.environ.get("PATH", "")]),
               COLCON_HOME=str(tmp / "colcon_home"), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)   # the build and the installed node must not see this checkout
    return env


@pytest.mark.skipif(shutil.which("colcon") is None,
                    reason="colcon is not installed (apt-get install colcon python3-colcon-ros "
                           "python3-colcon-cmake; .ci/run does)")
def test_colcon_build_and_run_the_installed_node(tmp_path):
    ws = tmp_path / "ws"
    src = ws / "src" / "semnerf_ros"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    env = _colcon_env(tmp_path)
    t0 = time.monotonic()
    build = subprocess.run(
        ["colcon", "build", "--event-handlers", "console_direct+",
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
         f"-DCMAKE_PROJECT_INCLUDE={src / 'scripts' / 'wheel_cmake_fixups.cmake'}"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    print(f"colcon build took {time.monotonic() - t0:.1f} s")
    assert build.returncode == 0, build.stdout[-6000:] + build.stderr[-3000:]
    install = ws / "install" / "semnerf_ros"
    exe = install / "lib" / "semnerf_ros" / "semnerf_node"
    params = install / "share" / "semnerf_ros" / "config" / "semnerf.yaml"
    assert exe.is_file() and os.access(exe, os.X_OK) and params.is_file()
    assert (install / "lib" / "semnerf_ros" / "semnerf_lifecycle_node").is_file()
    assert (install / "share" / "semnerf_ros" / "launch" / "semnerf.launch.py").is_file()
    # the installed environment, as `source install/setup.bash` gives it
    setup = ws / "install" / "setup.bash"
    shell = ["bash", "-c", f"source {setup} && env"] if setup.is_file() else \
        ["sh", "-c", f". {ws / 'install' / 'setup.sh'} && env"]   # colcon without python3-colcon-bash
    show = subprocess.run(shell, env=env, capture_output=True, text=True, check=True).stdout
    run_env = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    where = subprocess.run([sys.executable, "-c", "import semnerf_ros, semnerf_ros.action, semnerf_ros.msg; "
                            "print(semnerf_ros.__file__); print(semnerf_ros.msg.__file__)"],
                           env=run_env, cwd=tmp_path, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(install)) for line in where.stdout.split()), where.stdout
    domain = 150 + os.getpid() % 50
    run_env.update(ROS_DOMAIN_ID=str(domain), OMP_NUM_THREADS="1")
    node = subprocess.Popen([str(exe), "--ros-args", "--params-file", str(params), "-p", "device:=cpu"],
                            env=run_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    io = rclpy.create_node("colcon_check", context=ctx)
    try:
        iface = load_interfaces()
        cli = io.create_client(iface["GetStatus"], "/semnerf_node/get_status")
        assert cli.wait_for_service(timeout_sec=120), "the installed node offers no ~/get_status"
        fut = cli.call_async(iface["GetStatus"].Request())
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(io)
        executor.spin_until_future_complete(fut, timeout_sec=30)
        assert fut.done(), "~/get_status did not answer"
        status = fut.result().status
        assert status.device == "cpu" and status.max_keyframes > 0
        assert "/camera/color/image_raw" not in status.topics and "/rgb" in status.topics
    finally:
        io.destroy_node()
        rclpy.shutdown(context=ctx)
        node.send_signal(signal.SIGINT)
        try:
            out, _ = node.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            out, _ = node.communicate()
        print(out[-3000:])
    assert node.returncode == 0, out[-3000:]
    assert str(install) in out or "semnerf_node ready" in out
