"""Replay a rosbag2 into semnerf_node: the node (semnerf.launch.py) plus the
package's bag player ``semnerf-play`` as a process.

    ros2 launch semnerf_ros replay.launch.py bag:=/path/to/scene_bag rate:=1.0 rviz:=true

Arguments: bag (required), rate, loop, delay (seconds before playing, so the
node's subscriptions are up), use_sim_time (default true: the player publishes
/clock and the node follows it), exit_when_done (stop everything when the bag
ends), params_file, rviz, and the topic arguments of semnerf.launch.py (their
defaults are the topics the bags of ``semnerf-make-scene --bag`` hold).  With
use_sim_time the node's outputs are stamped with the bag's /clock, while its
timers (renders, mesh, status, progress) run on the wall clock, so they go on
after the bag ended and /clock stopped.
"""
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "semnerf_ros"
#: semnerf.launch.py's arguments, declared here too (so `ros2 launch` accepts them) and passed on
NODE_ARGUMENTS = (
    ("rviz", "false", "also start RViz"),
    ("namespace", "", "namespace of the node (and RViz)"),
    ("pose_source", "topic", "camera poses: topic (the pose input) or tf (/tf, /tf_static from the bag)"),
    ("log_level", "info", "node log level: debug, info, warn, error"),
    ("rgb_topic", "/camera/color/image_raw", "topic remapped onto the node's 'rgb' input"),
    ("camera_info_topic", "/camera/color/camera_info", "topic remapped onto the node's 'camera_info' input"),
    ("pose_topic", "/camera/pose", "topic remapped onto the node's 'pose' input"),
    ("labels_topic", "/segmentation/labels", "topic remapped onto the node's 'labels' input"),
    ("depth_topic", "/camera/depth/image_raw", "topic remapped onto the node's 'depth' input"),
)


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _player(context):
    """The semnerf-play process, built once the launch arguments are known."""
    cfg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    cmd = ["ros2", "run", PACKAGE, "semnerf-play", cfg("bag"), "--rate", cfg("rate"),
           "--delay", cfg("delay")]
    if _truthy(cfg("loop")):
        cmd.append("--loop")
    if _truthy(cfg("use_sim_time")):
        cmd.append("--clock")
    player = ExecuteProcess(cmd=cmd, name="semnerf_play", output="screen", emulate_tty=True)
    actions = [player]
    if _truthy(cfg("exit_when_done")):
        actions.append(RegisterEventHandler(OnProcessExit(
            target_action=player,
            on_exit=[EmitEvent(event=Shutdown(reason="the bag has been played"))])))
    return actions


def generate_launch_description():
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 folder to play (MCAP or SQLite3)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("loop", default_value="false", description="replay the bag forever"),
        DeclareLaunchArgument("delay", default_value="3.0",
                              description="seconds to wait before playing (node start-up)"),
        DeclareLaunchArgument("use_sim_time", default_value="true",
                              description="player publishes /clock and the node follows it"),
        DeclareLaunchArgument("exit_when_done", default_value="false",
                              description="shut the launch down when the bag ends"),
    ]
    share = FindPackageShare(PACKAGE)
    args.append(DeclareLaunchArgument(
        "params_file", default_value=PathJoinSubstitution([share, "config", "semnerf.yaml"]),
        description="YAML file with the node's parameters (ros__parameters)"))
    args += [DeclareLaunchArgument(name, default_value=default, description=text)
             for name, default, text in NODE_ARGUMENTS]
    passed = ["use_sim_time", "params_file"] + [name for name, _, _ in NODE_ARGUMENTS]
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "semnerf.launch.py"])),
        launch_arguments=[(name, LaunchConfiguration(name)) for name in passed],
    )
    return LaunchDescription(args + [node, OpaqueFunction(function=_player)])
