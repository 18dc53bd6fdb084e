#!/usr/bin/env python3
"""Plot test mIoU against time from benchmark JSON into a PNG (OpenCV drawing, no plotting library).

Each ``--curve LABEL=FILE[:RUN]`` is one line: ``FILE`` a ``bench/online.py`` result (its
``checkpoints``), a ``bench/node_latency.py`` result (published mIoU per window, at the window's
end), a ``bench/scenes.py`` summary (``RUN`` names a variant: its mean over the rooms) or a
``bench/scenes.py``-derived file with ``runs`` (``RUN`` names one)::

    python bench/plot_curves.py --out docs/label_quality.png --title "house 4, RGB only" \\
        --curve "shared head=bench/results/scenes_long_semantic_h200.json:rgb/base__room_s4" \\
        --curve "semantic grid=bench/results/scenes_long_semantic_h200.json:rgb/grid__room_s4"
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

COLOURS = [(200, 80, 30), (40, 140, 40), (30, 60, 200), (150, 60, 150), (20, 150, 190), (90, 90, 90)]  # BGR


def load_curve(spec: str) -> tuple[str, list, list]:
    label, _, ref = spec.partition("=")
    path, _, run = ref.partition(":")
    d = json.loads(Path(path).read_text())
    if d.get("benchmark") == "node":
        ws = d["windows"]
        return label, [w["t1"] for w in ws], [w["published_miou"] for w in ws]
    if d.get("benchmark") == "scenes" and "summary" in d:
        cps = d["summary"][run]["checkpoints"]
        return label, [c["t"] for c in cps], [c["mean"] for c in cps]
    if "runs" in d:
        cps = d["runs"][run]["checkpoints"]
        return label, [c["t"] for c in cps], [c["test_miou"] for c in cps]
    cps = d["checkpoints"]
    return label, [c.get("t_nominal", c["t"]) for c in cps], [c["test"]["miou"] for c in cps]


def plot(curves, title: str, xlabel: str, out: Path, y_min: float = 0.5, size=(900, 520)) -> None:
    w, h = size
    left, right, top, bottom = 80, 200, 50, 60
    img = np.full((h, w, 3), 255, np.uint8)
    t_max = max(max(t) for _, t, _ in curves)
    px = lambda t: int(left + (w - left - right) * t / t_max)  # noqa: E731
    py = lambda y: int(h - bottom - (h - top - bottom) * (y - y_min) / (1.0 - y_min))  # noqa: E731
    font = cv2.FONT_HERSHEY_SIMPLEX
    for y in np.arange(y_min, 1.0001, 0.1):
        cv2.line(img, (left, py(y)), (w - right, py(y)), (225, 225, 225), 1)
        cv2.putText(img, f"{y:.1f}", (left - 45, py(y) + 5), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    for t in np.linspace(0, t_max, 7):
        cv2.putText(img, f"{t:.0f}", (px(t) - 12, h - bottom + 20), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    cv2.putText(img, title, (left, top - 18), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (left + 150, h - 15), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "test mIoU", (8, top - 18), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (label, ts, ys) in enumerate(curves):
        c = COLOURS[k % len(COLOURS)]
        pts = np.array([[px(t), py(max(y, y_min))] for t, y in zip(ts, ys)], np.int32)
        cv2.polylines(img, [pts], False, c, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, tuple(int(v) for v in p), 4, c, -1, cv2.LINE_AA)
        ly = top + 20 + 24 * k
        cv2.line(img, (w - right + 12, ly - 4), (w - right + 36, ly - 4), c, 2)
        cv2.putText(img, label, (w - right + 42, ly), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), img)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--curve", action="append", required=True, metavar="LABEL=FILE[:RUN]")
    ap.add_argument("--title", default="")
    ap.add_argument("--xlabel", default="seconds of the benchmark clock")
    ap.add_argument("--y-min", type=float, default=0.5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    plot([load_curve(c) for c in args.curve], args.title, args.xlabel, Path(args.out), args.y_min)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
