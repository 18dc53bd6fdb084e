"""semnerf_ros: online Semantic-NeRF mapping for ROS 2.

The engine (everything outside ``semnerf_ros.ros``) imports no ROS code.
"""
__version__ = "0.1.0"
