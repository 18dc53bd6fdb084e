"""Launch semnerf_node with its parameter file, topic remaps and optional RViz.

    ros2 launch semnerf_ros semnerf.launch.py \
        rgb_topic:=/camera/color/image_raw labels_topic:=/segmentation/labels \
        pose_topic:=/camera/pose camera_info_topic:=/camera/color/camera_info rviz:=true

On a machine without a GPU add ``params_file:=$(ros2 pkg prefix semnerf_ros)/share/semnerf_ros/config/semnerf_cpu.yaml``
(the CPU profile, docs/node.md; with the default file the node takes the CPU engine by itself and logs it).
The node handles SIGINT itself and exits within launch's SIGINT -> SIGTERM window (5 s): a running mesh
export is cancelled, training stops, ``save_on_shutdown`` saves (docs/node.md "Shutdown").

Arguments (``ros2 launch semnerf_ros semnerf.launch.py --show-args``): params_file, namespace,
executable (semnerf_node, or semnerf_lifecycle_node for the managed variant), pose_source (topic
or tf), rgb_topic, camera_info_topic, pose_topic, labels_topic, depth_topic, use_sim_time,
rviz, rviz_config, log_level.  The defaults of the topic arguments are the
topics of the bags written by ``semnerf-make-scene --bag``.  With ``namespace:=robot1`` the node's
outputs are ``/robot1/semnerf_node/...`` and RViz gets a copy of its config with those names
(:func:`semnerf_ros.bridge.rviz_config.namespaced_rviz_config`); input topics given as absolute
names stay as they are.  TF (``pose_source:=tf``) is read from the absolute ``/tf`` and
``/tf_static``, as every ROS 2 tool does.
"""
import tempfile
from pathlib import Path

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from semnerf_ros.bridge.rviz_config import namespaced_rviz_config

PACKAGE = "semnerf_ros"

#: (launch argument, default topic, the node's input name it remaps)
TOPIC_ARGUMENTS = (
    ("rgb_topic", "/camera/color/image_raw", "rgb"),
    ("camera_info_topic", "/camera/color/camera_info", "camera_info"),
    ("pose_topic", "/camera/pose", "pose"),
    ("labels_topic", "/segmentation/labels", "labels"),
    ("depth_topic", "/camera/depth/image_raw", "depth"),
)


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    args = [
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([share, "config", "semnerf.yaml"]),
            description="YAML file with the node's parameters (ros__parameters)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="follow /clock (e.g. from semnerf-play --clock)"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz"),
        DeclareLaunchArgument(
            "rviz_config", default_value=PathJoinSubstitution([share, "config", "semnerf.rviz"]),
            description="RViz configuration file"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="node log level: debug, info, warn, error"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node (and RViz)"),
        DeclareLaunchArgument("executable", default_value="semnerf_node",
                              description="semnerf_node, or semnerf_lifecycle_node (managed: configure / "
                                          "activate with ros2 lifecycle set)"),
        DeclareLaunchArgument("pose_source", default_value="topic",
                              description="camera poses: topic (the pose input) or tf (/tf, /tf_static)"),
    ]
    args += [DeclareLaunchArgument(name, default_value=default,
                                   description=f"topic remapped onto the node's '{target}' input")
             for name, default, target in TOPIC_ARGUMENTS]
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)

    node = Node(
        package=PACKAGE,
        executable=LaunchConfiguration("executable"),
        name="semnerf_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"),
                    {"use_sim_time": use_sim_time, "pose_source": LaunchConfiguration("pose_source")}],
        remappings=[(target, LaunchConfiguration(name)) for name, _, target in TOPIC_ARGUMENTS],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
    )
    return LaunchDescription(args + [node, OpaqueFunction(function=_rviz)])


def _rviz(context):
    """RViz (rviz:=true) with the config's node topics moved under the namespace."""
    cfg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    if cfg("rviz").strip().lower() not in ("1", "true", "yes", "on"):
        return []
    config, namespace = Path(cfg("rviz_config")), cfg("namespace")
    if namespace.strip("/"):
        out = Path(tempfile.mkdtemp(prefix="semnerf_rviz_")) / config.name
        out.write_text(namespaced_rviz_config(config.read_text(), namespace))
        config = out
    return [Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace, output="log",
                 arguments=["-d", str(config)],
                 parameters=[{"use_sim_time": cfg("use_sim_time").strip().lower() == "true"}])]
