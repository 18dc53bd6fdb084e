"""Launch semnerf_node with its parameter file, topic remaps and optional RViz.

    ros2 launch semnerf_ros semnerf.launch.py \
        rgb_topic:=/camera/color/image_raw labels_topic:=/segmentation/labels \
        pose_topic:=/camera/pose camera_info_topic:=/camera/color/camera_info rviz:=true

On a machine without a GPU add ``params_file:=$(ros2 pkg prefix semnerf_ros)/share/semnerf_ros/config/semnerf_cpu.yaml``
(the CPU profile, docs/node.md; with the default file the node takes the CPU engine by itself and logs it).
The node handles SIGINT itself and exits within launch's SIGINT -> SIGTERM window (5 s): a running mesh
export is cancelled, training stops, ``save_on_shutdown`` saves (docs/node.md "Shutdown").

Arguments (``ros2 launch semnerf_ros semnerf.launch.py --show-args``): params_file,
rgb_topic, camera_info_topic, pose_topic, labels_topic, depth_topic, use_sim_time,
rviz, rviz_config, log_level.  The defaults of the topic arguments are the
topics of the bags written by ``semnerf-make-scene --bag``.  The RViz config
shows ``/semnerf_node/...`` (the node's default name, no namespace).
"""
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

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
    ]
    args += [DeclareLaunchArgument(name, default_value=default,
                                   description=f"topic remapped onto the node's '{target}' input")
             for name, default, target in TOPIC_ARGUMENTS]
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)

    node = Node(
        package=PACKAGE,
        executable="semnerf_node",
        name="semnerf_node",
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), {"use_sim_time": use_sim_time}],
        remappings=[(target, LaunchConfiguration(name)) for name, _, target in TOPIC_ARGUMENTS],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        output="log",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        parameters=[{"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(args + [node, rviz])
