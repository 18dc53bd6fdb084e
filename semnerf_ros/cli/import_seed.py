"""``python -m semnerf_ros.cli.import_seed``: a seed checkpoint (Semantic-NeRF's ``<step>.ckpt``)
as a semnerf map file, which the node loads (``~/load_map``, ``load_on_start``) and ``semnerf-mesh``
meshes (:mod:`semnerf_ros.engine.seed_checkpoint`).  The map holds the MLPs but no keyframes.

    python -m semnerf_ros.cli.import_seed runs/room0/checkpoints/200000.ckpt -o room0_map.pt \\
        --config_file SSR/configs/SSR_room0_config.yaml --training_data_dir Replica/room_0/Sequence_1
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .. import train as train_mod
from ..datasets import DatasetError
from ..engine.config import ConfigError, load_config
from ..engine.mapper import MapFileError
from ..engine.seed_checkpoint import SeedCheckpointError, import_seed_checkpoint


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m semnerf_ros.cli.import_seed",
        description="Import a Semantic-NeRF (seed) checkpoint into a semnerf map file.")
    p.add_argument("checkpoint", help="the seed's checkpoint, <save_dir>/checkpoints/<step>.ckpt")
    p.add_argument("-o", "--output", required=True, help="map file to write (.pt)")
    p.add_argument("--config_file", default=None, help="the config the checkpoint was trained with (seed layout)")
    p.add_argument("--training_data_dir", default=None,
                   help="the training sequence: class names and the scene bounds (its cameras and depth)")
    p.add_argument("--dataset_type", default=None, choices=["replica", "replica_nyu_cnn", "scannet"],
                   help="the training data's type (default: the config's, else detected)")
    p.add_argument("--bounds", type=float, nargs=6, metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                   help="the scene box in metres, without --training_data_dir")
    p.add_argument("--device", default="cpu", help="torch device to import on (default cpu)")
    return p


def main(argv=None) -> int:
    """Exit 0 on success, 2 on bad input."""
    args = _build_parser().parse_args(argv)
    try:
        overrides = {"experiment": {"dataset_type": args.dataset_type}} if args.dataset_type else None
        cfg = load_config(args.config_file, overrides)
        if args.training_data_dir:
            cfg["experiment"]["dataset_dir"] = args.training_data_dir
            scene = train_mod._load_scene(cfg, True, "seed")
            r = cfg["render"]
            bounds = train_mod.scene_bounds_from_data(scene, scene.train_ids, r["depth_range"], r["bounds_margin"])
            names = scene.class_names
        elif args.bounds is not None:
            bounds, names = np.asarray(args.bounds, dtype=np.float64).reshape(2, 3), None
        else:
            print("import_seed: error: give --training_data_dir (classes and bounds) or --bounds", file=sys.stderr)
            return 2
        mapper = import_seed_checkpoint(args.checkpoint, cfg, names, bounds, device=args.device)
        path = mapper.save(args.output)
    except (ConfigError, DatasetError, SeedCheckpointError, MapFileError, train_mod.TrainError) as exc:
        print(f"import_seed: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}: the seed's MLPs at step {mapper.step_count}, {mapper.num_classes} classes "
          f"({', '.join(mapper.class_names[:6])}{', ...' if mapper.num_classes > 6 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
