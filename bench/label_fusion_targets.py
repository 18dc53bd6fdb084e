#!/usr/bin/env python3
"""How good are label fusion's training targets?  (CPU; no training.)

For each room (scene arrays from ``bench/make_rooms.py``), every training view's noisy labels
(the seed's pixel noise, or ``--noise segmentation``: errors like a segmentation network's,
correlated along the trajectory, :mod:`semnerf_ros.segmentation_noise`) vote in
:class:`semnerf_ros.engine.label_fusion.VoxelLabelFusion`; then each training pixel is
relabelled as a training ray would be, and scored against its clean label: the share of
targets that are right (among those with a label), the share voided (ambiguous voxels), the
share of all labelled pixels that get their right label (``recall``: voided counts as missed) and
the same within 2 pixels of an object boundary of the clean labels (``boundary_recall``: where two
objects share a voxel), and the same for the raw noisy labels.  ``--keep-shares`` also scores
``VoxelLabelFusion(keep_share=...)``, which lets a pixel keep a label the voxel holds as a second
object.  One line per (room, voxel size) in the JSON (``--out``)::

    python bench/label_fusion_targets.py --scene-npz rooms/room_s1.npz rooms/room_s2.npz --cells 0.03 0.04 0.06
    python bench/label_fusion_targets.py --scene-npz rooms/room_s1.npz --cells 0.04 --keep-shares 0 0.25 0.5
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import find_boundaries

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semnerf_ros import tasks  # noqa: E402
from semnerf_ros.engine.geometry import Intrinsics  # noqa: E402
from semnerf_ros.engine.label_fusion import VoxelLabelFusion  # noqa: E402
from semnerf_ros.metrics import SegmentationEvaluator  # noqa: E402


def noisy_labels(z, noise: str, strength: float, seed: int = 0) -> np.ndarray:
    clean = z["train_labels"].astype(np.int32)
    names = [str(c) for c in z["class_names"]]
    rng = np.random.default_rng(seed)
    if noise == "none":
        return clean.copy()
    if noise == "pixel":
        return tasks.pixel_noise(clean, strength, len(names), rng)[0]
    inst = z["train_instances"] if "train_instances" in z.files else None
    return tasks.segmentation_noise(clean, strength, len(names), rng, class_names=names, instances=inst)[0]


def boundary_mask(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """(H, W) bool: pixels within ``width`` pixels of a change of label (void included): both
    sides of each 4-neighbour change (scikit-image's thick boundaries), grown by ``width - 1``."""
    edge = find_boundaries(labels, mode="thick")
    return ndimage.binary_dilation(edge, iterations=width - 1) if width > 1 else edge


def target_quality(z, cell: float, min_count: int, margin: float, noise: str = "pixel", strength: float = 0.5,
                   seed: int = 0, keep_share: float = 0.0) -> dict:
    k = z["intrinsics"]
    intr = Intrinsics(*[float(v) for v in k[:4]], int(k[4]), int(k[5]))
    nc = len(z["class_names"])
    clean = z["train_labels"].astype(np.int64)
    depth = z["train_depth"].astype(np.float32)
    poses = z["train_poses"].astype(np.float64)
    noisy = noisy_labels(z, noise, strength, seed)
    fusion = VoxelLabelFusion(nc, cell, "cpu", min_count, margin, keep_share=keep_share)
    t0 = time.perf_counter()
    for i in range(len(poses)):
        fusion.integrate_depth(depth[i], noisy[i], intr, poses[i])
    integrate_s = time.perf_counter() - t0
    h, w = intr.shape
    v, u = np.mgrid[0:h, 0:w]
    d_cam = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones((h, w))], -1).reshape(-1, 3)
    ev_fused, ev_noisy = SegmentationEvaluator(nc), SegmentationEvaluator(nc)
    right = labelled = voided = total = noisy_right = edge_right = edge_total = 0
    for i in range(len(poses)):
        dirs = torch.tensor(d_cam @ poses[i][:3, :3].T, dtype=torch.float32)
        origins = torch.tensor(poses[i][:3, 3], dtype=torch.float32).expand_as(dirs)
        gt = torch.from_numpy(clean[i].reshape(-1))
        lab = torch.from_numpy(noisy[i].reshape(-1).astype(np.int64))
        out = fusion.relabel(origins, dirs, torch.from_numpy(depth[i].reshape(-1)), lab)
        scored = gt > 0
        kept = scored & (out > 0)
        right += int((out[kept] == gt[kept]).sum())
        labelled += int(kept.sum())
        voided += int((scored & (out == 0) & (lab > 0)).sum())
        total += int(scored.sum())
        noisy_right += int((lab[scored] == gt[scored]).sum())
        edge = torch.from_numpy(boundary_mask(clean[i]).reshape(-1)) & scored
        edge_right += int((out[edge] == gt[edge]).sum())
        edge_total += int(edge.sum())
        # mIoU of the targets where they carry a label (voided pixels scored as void = ignored)
        ev_fused.add(np.where(kept.numpy(), gt.numpy(), 0).reshape(h, w).astype(np.int32),
                     out.numpy().reshape(h, w).astype(np.int32))
        ev_noisy.add(clean[i].astype(np.int32), noisy[i].astype(np.int32))
    return {"cell_m": cell, "min_count": min_count, "margin": margin, "keep_share": keep_share,
            "voxels": len(fusion), "votes": fusion.votes,
            "integrate_s_per_view": integrate_s / len(poses),
            "targets_right": right / max(labelled, 1), "targets_voided": voided / max(total, 1),
            "targets_miou": ev_fused.scores()["miou"], "recall": right / max(total, 1),
            "boundary_recall": edge_right / max(edge_total, 1), "boundary_share": edge_total / max(total, 1),
            "noisy_right": noisy_right / max(total, 1), "noisy_miou": ev_noisy.scores()["miou"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene-npz", nargs="+", required=True)
    ap.add_argument("--cells", type=float, nargs="+", default=[0.03, 0.04, 0.06, 0.08])
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--margin", type=float, default=2.0)
    ap.add_argument("--keep-shares", type=float, nargs="+", default=[0.0],
                    help="VoxelLabelFusion keep_share values to score (0 = off)")
    ap.add_argument("--noise", choices=("pixel", "segmentation", "none"), default="pixel",
                    help="noise on the training labels (none: clean labels, what fusion itself costs)")
    ap.add_argument("--strength", type=float, default=0.5,
                    help="pixel noise ratio, or segmentation noise strength in [0, 1]")
    ap.add_argument("--out", default="label_fusion_targets.json")
    args = ap.parse_args(argv)
    rows = []
    for path in args.scene_npz:
        z = np.load(path)
        for cell in args.cells:
            for share in args.keep_shares:
                r = {"room": Path(path).stem, **target_quality(z, cell, args.min_count, args.margin, args.noise,
                                                                args.strength, keep_share=share)}
                rows.append(r)
                print(f"{r['room']} cell {cell:.3f} m keep {share:.2f}: targets right {r['targets_right']:.4f}, "
                      f"voided {r['targets_voided']:.4f}, recall {r['recall']:.4f}, boundary recall "
                      f"{r['boundary_recall']:.4f} ({r['boundary_share']:.3f} of pixels), target mIoU "
                      f"{r['targets_miou']:.3f} (noisy labels: right {r['noisy_right']:.3f}, mIoU "
                      f"{r['noisy_miou']:.3f}); {r['voxels']} voxels", flush=True)
    Path(args.out).write_text(json.dumps({"benchmark": "label_fusion_targets", "noise": args.noise,
                                          "strength": args.strength,
                                          "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
