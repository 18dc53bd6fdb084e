"""Synthetic houses rendered to the Replica layout: the built-in demo room and a family of rooms.

No download needed.  ``seed`` 0 is the demo room (a 6 x 5 x 2.7 m living/dining
room, unchanged since the first version); every other seed is a different house:
one to three connected rooms of 3-8 m or a corridor with rooms, furnished by room
kind, with its own textures and lights, and windows and doors that open to the
outside (those pixels are void, label 0, with no depth).  All use the same 17
classes (:data:`CLASS_NAMES`, plus void).

Modules, one concept each:

* :mod:`.geometry` -- class list, primitive meshes, the triangle soup ``SceneGeometry``
* :mod:`.plan` -- floor plans (rooms, walls, openings); :mod:`.layout` -- houses from plans
  (``build_room``) and their scans (``camera_path``); :mod:`.classic` -- the demo room;
  :mod:`.furniture` -- pieces and their placement
* :mod:`.appearance` -- materials, lights and the outside (``Shader``, ``Lighting``)
* :mod:`.trajectory` -- handheld-scan camera paths through every room (``planned_path``, ``FreeSpace``)
* :mod:`.raycast` -- Open3D and torch ray casters; :mod:`.rendering` -- ``Renderer``
* :mod:`.output` -- files and cache (``make_scene``, ``ensure_scene``); :mod:`.arrays` --
  in-memory split for benchmarks (``scene_arrays``); the CLI ``semnerf-make-scene`` is
  :mod:`semnerf_ros.cli.make_scene`
"""
from .appearance import Lighting, Shader
from .arrays import scene_arrays
from .geometry import CLASS_ID, CLASS_NAMES, SceneGeometry
from .layout import build_room, camera_path
from .output import (
                     COMPLETION_MARKER,
                     DEPTH_SCALE,
                     FPS,
                     GENERATOR_VERSION,
                     HFOV_DEG,
                     default_scene_dir,
                     ensure_scene,
                     make_scene,
                     scene_is_complete,
)
from .raycast import RAYCASTERS, TorchRayCaster, make_raycaster, open3d_available
from .rendering import Renderer
from .trajectory import look_rotation, path_report

__all__ = [
    "CLASS_NAMES", "CLASS_ID", "COMPLETION_MARKER", "DEPTH_SCALE", "FPS", "GENERATOR_VERSION", "HFOV_DEG",
    "Lighting", "Renderer", "SceneGeometry", "Shader", "TorchRayCaster", "RAYCASTERS",
    "build_room", "camera_path", "default_scene_dir", "ensure_scene", "look_rotation",
    "make_raycaster", "make_scene", "open3d_available", "path_report", "scene_arrays", "scene_is_complete",
]
