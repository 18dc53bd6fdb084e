"""The ROS-free half of the node: everything between messages and the engine that does not
need rclpy, so it is unit-tested without DDS.

* :mod:`.params` -- the node's parameter table (types, ranges, defaults, descriptions)
* :mod:`.sync` -- approximate-time synchronizer (message_filters' semantics, pure Python)
* :mod:`.convert` -- Image / CameraInfo / pose messages <-> numpy (no cv_bridge; duck-typed)

Importing this package imports nothing; import the modules you need."""
