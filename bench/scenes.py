#!/usr/bin/env python3
"""Multi-room benchmark: ``bench/online.py`` over many rooms and engine variants, side by side.

Runs one ``bench/online.py`` process per (room, variant), ``--parallel`` at a
time (on one GPU they share it: use ``--clock steps`` so each run sees frames
arrive at the same *step* as a standalone run at ``--steps-per-second`` would),
then reports, per variant and checkpoint, the mean, the worst room and every
room's test mIoU, plus each run's peak, final value and largest drop.  With
``--mesh-resolution N`` each run also saves its final map and ``bench/mesh.py``
scores the mesh extracted from it (N^3, over the ground-truth box, observed-only
faces, against the room's ground-truth mesh), reported per variant as mean and
worst room of precision@5cm, chamfer on the observed surface and semantic vertex
accuracy on it.  Writes the per-run JSON files and ``summary.json`` into
``--out-dir`` and prints markdown tables.

Rooms are scene arrays (``bench/online.py --export-npz``) or generator seeds
(``--seeds``, generated on the spot where the generator can run).  A variant is
``NAME=SECTION.KEY=VALUE,SECTION.KEY=VALUE`` (no overrides: ``NAME=``)::

    python bench/scenes.py --scene-npz rooms/*.npz --variants base= grid=model.hash.semantic_branch=grid \\
        --times 10 30 60 120 300 --clock steps --steps-per-second 200 --parallel 8 --out-dir results/scenes
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: mesh figures summarised per variant; lower is better for distances, higher for the rest
MESH_KEYS = ("precision@5cm", "chamfer_m_observed", "fscore@5cm_observed", "semantic_vertex_accuracy_observed")


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition("=")
    if not name:
        raise SystemExit(f"variant {text!r}: expected NAME=SECTION.KEY=VALUE,...")
    return name, [s for s in sets.split(",") if s]


def summarise(runs: list[dict]) -> dict:
    """Per variant: per checkpoint mean / worst / per-room test mIoU, and per run summaries."""
    out: dict = {}
    for variant in sorted({r["variant"] for r in runs}):
        rs = [r for r in runs if r["variant"] == variant and r.get("result")]
        if not rs:
            continue
        times = sorted({c["t_nominal"] for r in rs for c in r["result"]["checkpoints"]})
        table = []
        for t in times:
            vals = {r["room"]: c["test"]["miou"] for r in rs for c in r["result"]["checkpoints"]
                    if c["t_nominal"] == t}
            if vals:
                table.append({"t": t, "mean": float(np.mean(list(vals.values()))),
                              "worst": float(min(vals.values())),
                              "worst_room": min(vals, key=vals.get), "rooms": vals})
        meshes = {r["room"]: r["mesh"] for r in rs if r.get("mesh")}
        mesh_summary = {}
        for key in MESH_KEYS:
            vals = {room: m[key] for room, m in meshes.items() if isinstance(m.get(key), (int, float))}
            if vals:
                worst = max(vals, key=vals.get) if key.startswith("chamfer") else min(vals, key=vals.get)
                mesh_summary[key] = {"mean": float(np.mean(list(vals.values()))), "worst": float(vals[worst]),
                                     "worst_room": worst, "rooms": vals}
        out[variant] = {"checkpoints": table, "mesh": mesh_summary,
                        "runs": {r["room"]: r["result"].get("summary", {}) for r in rs},
                        "input_miou": float(np.mean([r["result"]["input_labels"]["miou"] for r in rs]))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene-npz", nargs="*", default=[], help="scene arrays, one room each")
    ap.add_argument("--seeds", type=int, nargs="*", default=[], help="generator seeds to generate and use")
    ap.add_argument("--variants", nargs="+", default=["default="], metavar="NAME=SETS")
    ap.add_argument("--config", default=str(ROOT / "config" / "replica_hash.yaml"),
                    help="engine YAML ('' = the package defaults for the hash field and the device)")
    ap.add_argument("--set", nargs="*", default=["train.wgt_depth=0.05"], help="overrides for every run")
    ap.add_argument("--no-depth", action="store_true")
    ap.add_argument("--times", type=float, nargs="+", default=[5, 10, 20, 30, 60])
    ap.add_argument("--clock", choices=("wall", "steps"), default="wall")
    ap.add_argument("--steps-per-second", type=float, default=60.0)
    ap.add_argument("--max-test-views", type=int, default=60)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=0.0,
                    help="stop runs still going after this many seconds (0 = none); their checkpoints so far are kept")
    ap.add_argument("--mesh-resolution", type=int, default=0,
                    help="also extract and score each run's final mesh at this grid resolution (0 = no mesh)")
    ap.add_argument("--keep-maps", action="store_true", help="keep the saved maps (--mesh-resolution) afterwards")
    ap.add_argument("--archive", default="", help="also pack --out-dir (JSON and logs, no maps) into this .tar.gz: "
                    "one file to bring back from a machine that returns few files")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                    help="more bench/online.py arguments: everything after it, so it must come last")
    ap.add_argument("--out-dir", default="bench_scenes")
    ap.add_argument("--from-runs", nargs="+", default=[], metavar="DIR",
                    help="run nothing: summarise the per-run JSON files (VARIANT__ROOM.json) found in these "
                         "folders, e.g. one variant's rooms split over several invocations, into --out-dir")
    args = ap.parse_args(argv)
    # --extra takes the rest of the line: this benchmark's own flags after it would go to every run
    # instead (and online.py would refuse them), so say so before anything starts
    own = sorted({opt for action in ap._actions for opt in action.option_strings} - {"-h", "--help"})
    swallowed = [a for a in args.extra if a.split("=", 1)[0] in own]
    if swallowed:
        ap.error(f"--extra must come last: it took this benchmark's own {', '.join(swallowed)}; "
                 f"move --extra and its bench/online.py arguments to the end")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.from_runs:
        return merge_runs(args, out_dir)

    rooms = {Path(p).stem: ["--scene-npz", str(p)] for p in args.scene_npz}
    missing = [s for s in args.seeds if not (out_dir / f"room_s{s}.npz").exists()]
    if missing:
        print(f"generating rooms {missing} ...", flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "make_rooms.py"), "--seeds", *map(str, missing),
                        "--out", str(out_dir)], check=True)
    for seed in args.seeds:
        rooms[f"room_s{seed}"] = ["--scene-npz", str(out_dir / f"room_s{seed}.npz")]
    if not rooms:
        raise SystemExit("no rooms: give --scene-npz or --seeds")
    jobs = []
    for room, room_args in rooms.items():
        for text in args.variants:
            name, sets = parse_variant(text)
            out = out_dir / f"{name}__{room}.json"
            cmd = [sys.executable, str(ROOT / "bench" / "online.py"), *room_args,
                   *(["--config", args.config] if args.config else []),
                   "--times", *map(str, args.times), "--clock", args.clock,
                   "--steps-per-second", str(args.steps_per_second), "--max-test-views", str(args.max_test_views),
                   "--partial-json", "--out", str(out), "--set", *args.set, *sets]
            if args.no_depth:
                cmd.append("--no-depth")
            job = {"variant": name, "room": room, "cmd": cmd, "out": out, "npz": room_args[1]}
            if args.mesh_resolution > 0:
                job["map"] = out_dir / f"{name}__{room}.map.pt"
                cmd += ["--save-map", str(job["map"])]
            cmd += args.extra
            jobs.append(job)
    print(f"{len(jobs)} runs ({len(rooms)} rooms x {len(args.variants)} variants), {args.parallel} at a time",
          flush=True)
    t0 = time.time()
    run_pool(jobs, args.parallel, args.budget_s, out_dir, t0)
    runs = []
    for j in jobs:
        result = json.loads(j["out"].read_text()) if j["out"].exists() else None
        runs.append({"variant": j["variant"], "room": j["room"], "rc": j.get("rc"), "result": result})
    if args.mesh_resolution > 0:
        mesh_jobs = []
        for j, r in zip(jobs, runs):
            if not j["map"].exists():
                print(f"{j['variant']} / {j['room']}: no saved map (run cut short?), no mesh", flush=True)
                continue
            r["mesh_out"] = out_dir / f"{j['variant']}__{j['room']}.mesh.json"
            mesh_jobs.append({"variant": j["variant"], "room": j["room"], "out": r["mesh_out"], "map": j["map"],
                              "cmd": [sys.executable, str(ROOT / "bench" / "mesh.py"), "--map", str(j["map"]),
                                      "--scene-npz", j["npz"], "--resolutions", str(args.mesh_resolution),
                                      "--bounds-from-gt", "--observed-only", "--out", str(r["mesh_out"])]})
        print(f"{len(mesh_jobs)} meshes at {args.mesh_resolution}^3", flush=True)
        run_pool(mesh_jobs, args.parallel, 0.0, out_dir, t0)
        for r in runs:
            out = r.pop("mesh_out", None)
            r["mesh"] = json.loads(out.read_text()).get("accuracy") if out is not None and out.exists() else None
        if not args.keep_maps:
            for j in jobs:
                j["map"].unlink(missing_ok=True)
    summary = {"benchmark": "scenes", "rooms": list(rooms), "variants": args.variants, "set": args.set,
               "no_depth": args.no_depth, "clock": args.clock, "steps_per_second": args.steps_per_second,
               "times": args.times, "mesh_resolution": args.mesh_resolution, "wall_s": time.time() - t0,
               "summary": summarise(runs)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.archive:
        with tarfile.open(args.archive, "w:gz") as tar:
            for p in sorted(out_dir.iterdir()):
                if p.suffix in (".json", ".log"):
                    tar.add(p, arcname=f"{out_dir.name}/{p.name}")
    print_tables(summary["summary"], args.times, args.mesh_resolution > 0)
    return 0


def merge_runs(args, out_dir: Path) -> int:
    """``--from-runs``: one summary of per-run JSON files written by earlier invocations."""
    runs, sources = [], []
    for folder in args.from_runs:
        for p in sorted(Path(folder).glob("*__*.json")):
            if p.name.endswith(".mesh.json"):
                continue
            variant, _, room = p.stem.partition("__")
            result = json.loads(p.read_text())
            mesh_file = p.with_name(p.stem + ".mesh.json")
            mesh = json.loads(mesh_file.read_text()).get("accuracy") if mesh_file.exists() else None
            runs.append({"variant": variant, "room": room, "rc": None, "result": result, "mesh": mesh})
            sources.append(str(p))
    if not runs:
        raise SystemExit(f"no VARIANT__ROOM.json files in {args.from_runs}")
    times = sorted({c["t_nominal"] for r in runs for c in r["result"].get("checkpoints", [])})
    first = runs[0]["result"]
    summary = {"benchmark": "scenes", "merged_from": sources, "rooms": sorted({r["room"] for r in runs}),
               "variants": sorted({r["variant"] for r in runs}), "set": first.get("overrides"),
               "no_depth": not first.get("depth_given", True), "clock": first.get("clock"),
               "steps_per_second": first.get("steps_per_second"), "times": times,
               "summary": summarise(runs)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{len(runs)} runs from {len(args.from_runs)} folders -> {out_dir / 'summary.json'}")
    print_tables(summary["summary"], times, any(r["mesh"] for r in runs))
    return 0


def print_tables(summary: dict, times: list, mesh: bool) -> None:
    print("\n| variant | " + " | ".join(f"{t:g} s mean / worst" for t in times) + " |")
    print("|---|" + "---|" * len(times))
    for variant, s in summary.items():
        cells = {c["t"]: f"{c['mean']:.3f} / {c['worst']:.3f}" for c in s["checkpoints"]}
        print(f"| {variant} | " + " | ".join(cells.get(t, "-") for t in times) + " |")
    if mesh:
        print("\n| variant (mesh, mean / worst room) | " + " | ".join(MESH_KEYS) + " |")
        print("|---|" + "---|" * len(MESH_KEYS))
        for variant, s in summary.items():
            mesh = s.get("mesh") or {}
            print(f"| {variant} | " + " | ".join(
                f"{mesh[k]['mean']:.3f} / {mesh[k]['worst']:.3f}" if k in mesh else "-" for k in MESH_KEYS) + " |")


def run_pool(jobs: list, parallel: int, budget_s: float, out_dir: Path, t0: float) -> None:
    """Run each job's ``cmd`` (its output to ``out_dir/<out stem>.log``), ``parallel`` at a
    time; past ``budget_s`` seconds from ``t0`` (0 = no limit) the running ones are stopped
    (bench/online.py writes its checkpoints so far on SIGTERM).  Sets each job's ``rc``."""
    pending, running = list(jobs), []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    while pending or running:
        over = budget_s > 0 and time.time() - t0 > budget_s
        while pending and len(running) < parallel and not over:
            j = pending.pop(0)
            j["log"] = open(out_dir / (j["out"].stem + ".log"), "w")
            j["proc"] = subprocess.Popen(j["cmd"], stdout=j["log"], stderr=subprocess.STDOUT, env=env)
            running.append(j)
        if over and not running:
            break
        time.sleep(1.0)
        for j in list(running):
            if over and j["proc"].poll() is None:
                j["proc"].terminate()
                try:
                    j["proc"].wait(30)
                except subprocess.TimeoutExpired:
                    j["proc"].kill()
            if j["proc"].poll() is not None:
                j["rc"] = j["proc"].returncode
                j["log"].close()
                running.remove(j)
                print(f"[{time.time() - t0:6.0f} s] {j['variant']} / {j['room']}: exit {j['rc']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
