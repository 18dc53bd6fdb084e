"""The ROS 2 layer: every module of semnerf_ros that imports rclpy, and nothing else
(the ROS-free half of the node is :mod:`semnerf_ros.bridge`; bag files without rclpy are
:mod:`semnerf_ros.bags`).

* :mod:`.node` -- ``SemNerfNode``, the adapter between topics and the engine
* :mod:`.parameters` -- the node's parameters declared with descriptors (public rclpy API only)
* :mod:`.services` -- the node's services (export, save, load, reset, render view, status)
* :mod:`.process` -- the node's process: start-up, spinning, signals and the orderly shutdown
* :mod:`.bag_player` -- ``semnerf-play``, publishes a bag's recorded CDR bytes with their timing
* :mod:`.monitor` -- the demo's subscriber: scores published images against the ground truth

Importing this package imports nothing; import the modules you need.
"""
