"""The ROS 2 layer: the only part of semnerf_ros that imports rclpy.

* :mod:`.sync` -- approximate-time synchronizer (message_filters' semantics, pure Python)
* :mod:`.convert` -- Image / CameraInfo / pose messages <-> numpy (no cv_bridge)
* :mod:`.params` -- the node's parameter table (no rclpy)
* :mod:`.node` -- ``semnerf_node``, the adapter around :class:`semnerf_ros.engine.mapper.Mapper`
* :mod:`.bag_writer` -- scene folder -> rosbag2 with ``rosbags`` (no rclpy)
* :mod:`.bag_player` -- ``semnerf-play``, a small rosbag2 player

Importing this package imports nothing; import the modules you need.
"""
