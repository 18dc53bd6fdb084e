"""Input mIoU of the segmentation-like label noise on the synthetic houses (the calibration
table of :mod:`semnerf_ros.segmentation_noise`)."""
from __future__ import annotations

import argparse

import numpy as np

from ..io.jsonio import dumps, write_json
from ..segmentation_noise import input_miou_table


def main(argv=None) -> int:
    """``python -m semnerf_ros.cli.noise_table --seeds 1 4 9 --strengths 0.25 0.5 0.75 1``:
    the input mIoU table of :func:`~semnerf_ros.segmentation_noise.input_miou_table` as JSON
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
