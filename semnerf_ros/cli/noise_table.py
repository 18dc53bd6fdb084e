"""Input mIoU of the segmentation-like label noise on the synthetic houses (the calibration
table of :mod:`semnerf_ros.segmentation_noise`)."""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from ..datasets.synthetic import CLASS_NAMES, scene_arrays
from ..io.jsonio import dumps, write_json
from ..metrics import confusion_matrix, segmentation_scores
from ..segmentation_noise import segmentation_noise
from ..tasks import pixel_noise


def input_miou_table(seeds: Sequence[int], strengths: Sequence[float], frames: int = 300, width: int = 320,
                     height: int = 240, progress: bool = True) -> dict:
    """Input mIoU (the seed's metric, void ignored) of the training labels of the synthetic
    houses ``seeds`` (every 5th of ``frames``) under this noise at each strength, with
    50 % pixel noise for comparison: ``{seed: {"segmentation": {strength: miou}, "pixel_0.5": miou}}``.
    The rng of each run is ``default_rng(seed)``."""
    C = len(CLASS_NAMES)
    table = {}
    for seed in seeds:
        a = scene_arrays(int(seed), frames=frames, width=width, height=height, mesh=False, progress=progress)
        lab, inst = a["train_labels"], a["train_instances"]
        row = {}
        for st in strengths:
            noisy, _ = segmentation_noise(lab, float(st), C, np.random.default_rng(int(seed)), CLASS_NAMES, inst)
            row[float(st)] = round(segmentation_scores(confusion_matrix(lab, noisy, C))["miou"], 4)
        pix, _ = pixel_noise(lab, 0.5, C, np.random.default_rng(int(seed)))
        table[int(seed)] = {"segmentation": row,
                            "pixel_0.5": round(segmentation_scores(confusion_matrix(lab, pix, C))["miou"], 4)}
    return table


def main(argv=None) -> int:
    """``python -m semnerf_ros.cli.noise_table --seeds 1 4 9 --strengths 0.25 0.5 0.75 1``:
    the input mIoU table of :func:`input_miou_table` as JSON
    (``--out`` file or stdout)."""
    p = argparse.ArgumentParser(description="Input mIoU of segmentation-like label noise on the synthetic houses.")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 9])
    p.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--out", default="", help="write the JSON here (default: print it)")
    a = p.parse_args(argv)
    table = input_miou_table(a.seeds, a.strengths, a.frames, a.width, a.height)
    means = {st: round(float(np.mean([table[s]["segmentation"][st] for s in table])), 4) for st in a.strengths}
    result = {"per_seed": table, "mean": means}
    if a.out:
        write_json(a.out, result)
    print(dumps(result), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
