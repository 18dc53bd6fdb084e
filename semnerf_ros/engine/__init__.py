"""The engine core: configuration, geometry and frames, fields and encodings, sampling and
volume rendering, models, occupancy grid, keyframes, the :class:`~.mapper.Mapper` and mesh
extraction.  Imports nothing of semnerf_ros outside this subpackage except the foundations
(:mod:`semnerf_ros.io`, :mod:`semnerf_ros.colormap`, :mod:`semnerf_ros.logs`); no ROS.

Importing this package imports nothing; import the modules you need."""
