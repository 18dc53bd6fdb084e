"""rosbag2 files without rclpy (``rosbags``): :mod:`.writer` writes a scene as a bag.

Importing this package imports nothing; import the modules you need."""
