"""Writes (or, with ``--check``, verifies) the node's parameter files config/semnerf.yaml and
config/semnerf_cpu.yaml from the parameter table (:func:`semnerf_ros.bridge.params.params_yaml`):
the defaults and descriptions are written once, in the table; these files only say what the
built-in room and the CPU profile set differently.

    python -m semnerf_ros.cli.params_files [--check] [--config-dir config]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..bridge.params import params_yaml
from ..datasets.synthetic import CLASS_NAMES

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

_ROOM = {"num_classes": len(CLASS_NAMES), "class_names": list(CLASS_NAMES), "use_depth": True}
_ROOM_NOTE = ("# Values here suit the built-in synthetic room (semnerf-make-scene) and its bags: 18 classes,\n"
              "# depth on /camera/depth/image_raw (remap depth:=... to it, or set use_depth:=false).\n"
              "# '/**' applies them whatever the node is named.\n"
              "# Generated from the parameter table (semnerf_ros/bridge/params.py): edit there and run\n"
              "#   python -m semnerf_ros.cli.params_files\n")

#: file name -> (header comment, values that differ from the table's defaults, comments that differ)
PARAMS_FILES = {
    "semnerf.yaml": (
        "# semnerf_node parameters for a GPU (semnerf_ros/bridge/params.py has the full table: types, ranges,\n"
        "# choices; docs/node.md explains them). On a machine without a GPU use config/semnerf_cpu.yaml.\n"
        "#   ros2 run semnerf_ros semnerf_node --ros-args --params-file config/semnerf.yaml -p publish_rate:=5.0\n"
        + _ROOM_NOTE,
        _ROOM, {}),
    "semnerf_cpu.yaml": (
        "# semnerf_node parameters for a machine without a GPU: the CPU profile (docs/node.md \"CPU profile\").\n"
        "# The same as config/semnerf.yaml except for the engine (config/engine_cpu.yaml: a small hash field)\n"
        "# and cheaper outputs (smaller renders, a coarser mesh less often), so that rendering and meshing\n"
        "# leave the two-to-four cores to training.\n"
        "#   ros2 run semnerf_ros semnerf_node --ros-args --params-file config/semnerf_cpu.yaml\n"
        + _ROOM_NOTE,
        {**_ROOM, "engine_config": "engine_cpu.yaml", "device": "cpu", "publish_rate": 1.0, "render_scale": 0.25,
         "mesh_period": 30.0, "mesh_resolution": 64, "mesh_max_faces": 30000},
        {"engine_config": "the CPU profile's engine (a bare name is looked up in the package's config/ "
                          "folder); the parameters below override its keys"}),
}


def render_files() -> dict:
    """file name -> its text."""
    return {name: params_yaml(values, header, comments) for name, (header, values, comments) in PARAMS_FILES.items()}


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m semnerf_ros.cli.params_files", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is out of date")
    p.add_argument("--config-dir", type=Path, default=CONFIG_DIR, help="where the files are (default: config/)")
    args = p.parse_args(argv)
    stale = []
    for name, text in render_files().items():
        path = args.config_dir / name
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(str(path))
        if not args.check:
            path.write_text(text)
    if stale:
        print(("out of date: " if args.check else "wrote: ") + ", ".join(stale))
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
