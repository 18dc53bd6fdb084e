#!/usr/bin/env python3
"""Which classes the label votes judge to be noise (``train.label_fusion_noise_classes``), per room, on the CPU.

Casts every training frame's votes (depth and noisy labels, the seed's pixel noise) into the engine's own
:class:`~semnerf_ros.engine.label_fusion.VoxelLabelFusion` with the fast field's fusion settings, as the
Mapper does, and reports: the classes absent from the training views' clean labels, the classes judged noise,
the share of all votes that clearly won voxels hold (the rule judges only maps where it is at least
``JUDGE_STRONG_SHARE``), and each class's votes and clear wins.  No training: votes only.  Writes JSON::

    python bench/noise_classes.py --scene-npz rooms/room_s5.npz rooms/room_s8.npz --out noise_classes.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semnerf_ros import tasks  # noqa: E402
from semnerf_ros.engine.config import load_config  # noqa: E402
from semnerf_ros.engine.geometry import Intrinsics  # noqa: E402
from semnerf_ros.engine.label_fusion import JUDGE_STRONG_SHARE, VoxelLabelFusion  # noqa: E402
from semnerf_ros.io.jsonio import write_json  # noqa: E402


def judge_room(path: str, noise_ratio: float, seed: int) -> dict:
    z = np.load(path)
    k = z["intrinsics"]
    intr = Intrinsics(*[float(v) for v in k[:4]], int(k[4]), int(k[5]))
    names = [str(c) for c in z["class_names"]]
    n_cls = len(names)
    clean = z["train_labels"].astype(np.int32)
    noisy = tasks.corrupt_labels(clean, "pixel", noise_ratio, n_cls, np.random.default_rng(seed))[0]  # as online.py
    tr = load_config(str(ROOT / "config" / "replica_hash.yaml"))["train"]
    fusion = VoxelLabelFusion(n_cls, tr["label_fusion_cell"], "cpu", tr["label_fusion_min_count"],
                              tr["label_fusion_margin"], stride=tr["label_fusion_stride"],
                              keep_share=tr["label_fusion_keep_share"], noise_classes=True)
    for i in range(len(clean)):
        fusion.integrate_depth(z["train_depth"][i].astype(np.float32), noisy[i], intr, z["train_poses"][i])
    counts = fusion.counts
    clear, wins = fusion.clear_wins()
    present = set(np.unique(clean).tolist()) - {0}
    return {"scene": path, "voxels": len(fusion), "votes": fusion.votes,
            "clear_share_of_votes": float(counts[clear].sum() / counts.sum()),
            "judge_strong_share": JUDGE_STRONG_SHARE,
            "absent_classes": sorted(set(range(1, n_cls)) - present),
            "judged_noise": fusion.noise_class_ids(),
            "classes": [{"id": c, "name": names[c], "votes": int(counts[:, c].sum()), "clear_wins": int(wins[c])}
                        for c in range(1, n_cls)]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene-npz", nargs="+", required=True, help="rooms from bench/make_rooms.py")
    ap.add_argument("--noise-ratio", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0, help="the noise's seed (bench/online.py's --seed)")
    ap.add_argument("--out", default="noise_classes.json")
    args = ap.parse_args(argv)
    rooms = []
    for path in args.scene_npz:
        r = judge_room(path, args.noise_ratio, args.seed)
        rooms.append(r)
        print(f"{path}: {r['voxels']} voxels, clearly won voxels hold {r['clear_share_of_votes']:.3f} of the votes; "
              f"absent classes {r['absent_classes']}, judged noise {r['judged_noise']}", flush=True)
    write_json(args.out, {"benchmark": "noise_classes", "noise_ratio": args.noise_ratio, "rooms": rooms}, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
