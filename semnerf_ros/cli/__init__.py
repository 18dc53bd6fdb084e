"""Every command-line entry point (``main(argv=None) -> int``), one module per tool:

* :mod:`.node` -- ``semnerf_node`` (the ROS node's process, :mod:`semnerf_ros.ros.process`)
* :mod:`.play` -- ``semnerf-play`` (rosbag2 player, :mod:`semnerf_ros.ros.bag_player`)
* :mod:`.train` -- ``semnerf-train`` (offline trainer, :mod:`semnerf_ros.train`)
* :mod:`.mesh` -- ``semnerf-mesh`` (mesh of a saved map)
* :mod:`.make_scene` -- ``semnerf-make-scene`` (synthetic houses, optionally as a bag)
* :mod:`.demo` -- ``semnerf-demo`` (the end-to-end demo, :mod:`semnerf_ros.demo`)
* :mod:`.noise_table` -- input mIoU of the segmentation-like label noise

Console scripts (setup.py) and the ``ros2 run`` launchers (scripts/, CMakeLists.txt) call these.
``python -m semnerf_ros.ros.node`` and ``python -m semnerf_ros.ros.bag_player`` still work.

Importing this package imports nothing; import the modules you need."""
