"""The node's /diagnostics checks (bridge/health.py) and the progress / cancel bookkeeping of its
long work (bridge/progress.py, bridge/map_ops.py) without DDS."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from semnerf_ros.bridge.health import ERROR, OK, WARN, HealthMonitor, Thresholds
from semnerf_ros.bridge.ledger import InputLedger
from semnerf_ros.bridge.map_ops import Cancelled, MapOperations
from semnerf_ros.bridge.progress import EXPORT_STAGES, SAVE_STAGES, CancelGate, StageProgress
from semnerf_ros.engine.mesh import SemanticMesh

NAMES = {"rgb": "/cam/rgb", "labels": "/seg", "pose": "/pose", "camera_info": "/cam/info"}


def _checks(monitor, ledger, st=None, th=Thresholds(), **kw):
    return {c.name: c for c in monitor.checks(st or {}, ledger, NAMES, th, True, **kw)}


def test_health_levels_follow_rates_drops_and_faults():
    now = [0.0]
    ledger = InputLedger(list(NAMES), lambda text: None, 0.0)
    mon = HealthMonitor(clock=lambda: now[0])
    c = _checks(mon, ledger)
    assert c["input rgb"].level == WARN and "nothing received" in c["input rgb"].message
    assert c["training"].message == "waiting for the first keyframe"
    assert c["gpu memory"].level == OK and c["last export"].message == "no mesh exported yet"
    # one second: rgb at 10 Hz, labels at 0.5 Hz (two seconds later), pose silent too long
    for _ in range(10):
        ledger.arrived("rgb")
    ledger.arrived("labels")
    ledger.arrived("pose")
    ledger.last_received_time["pose"] -= 10.0     # the ledger's clock: time.monotonic
    for _ in range(4):
        ledger.accepted(True)
    ledger.reject("size_mismatch", ["labels"], "x")
    ledger.sync_dropped("pruned_older")
    now[0] = 1.0
    st = {"keyframes": 4, "max_keyframes": 10, "iterations_per_second": 0.5, "step": 9, "device": "cuda:0",
          "gpu_memory_mb": 900.0, "oom_events": 1, "step_errors": 0}
    th = Thresholds(min_input_rate=2.0, max_drop_fraction=0.2, min_training_rate=1.0, gpu_memory_warn_mb=800,
                    gpu_memory_error_mb=1000, input_timeout=5.0)
    c = _checks(mon, ledger, st, th)
    assert c["input rgb"].level == OK and c["input rgb"].values["rate_hz"] == "10.00"
    assert c["input labels"].level == WARN and "below diag_min_input_rate" in c["input labels"].message
    assert c["input pose"].level == ERROR and "/pose" in c["input pose"].message
    sync = c["synchronization"]
    assert sync.level == WARN and "size_mismatch 1" in sync.message and "unmatched pruned_older 1" in sync.message
    assert sync.values["sync_drop.pruned_older"] == "1" and sync.values["rejected.size_mismatch"] == "1"
    assert c["training"].level == WARN and "0.5 it/s" in c["training"].message
    assert c["keyframes"].message == "4 of 10 keyframes"
    assert c["gpu memory"].level == WARN
    assert c["engine faults"].level == WARN and "out of GPU memory in 1" in c["engine faults"].message
    # next period: a failed step is an ERROR; no new OOM; GPU over the error line; every set rejected
    ledger.reject("invalid_pose", ["pose"], "x")
    now[0] = 2.0
    c = _checks(mon, ledger, dict(st, step_errors=1, gpu_memory_mb=1200.0), th)
    assert c["engine faults"].level == ERROR and "1 training step(s) failed" in c["engine faults"].message
    assert c["gpu memory"].level == ERROR
    assert c["synchronization"].level == ERROR and "invalid_pose" in c["synchronization"].message
    now[0] = 3.0
    c = _checks(mon, ledger, dict(st, step_errors=1, iterations_per_second=50.0), th,
                last_export={"path": "/tmp/m.ply", "ok": False, "message": "OSError: disk full", "when": 2.0})
    assert c["engine faults"].level == OK and c["training"].level == OK
    assert c["last export"].level == WARN and "disk full" in c["last export"].message
    c = _checks(mon, ledger, st, th, state="inactive")
    assert c["training"].message == "paused (node inactive)"


def test_stage_progress_is_monotonic_and_rate_limited():
    seen, t = [], [0.0]
    p = StageProgress(EXPORT_STAGES, lambda *a: seen.append(a), min_interval=1.0, clock=lambda: t[0])
    p.update("checking", 0, 1)
    p.update("density_grid", 0, 10)
    for i in range(1, 10):
        t[0] += 0.25
        p.update("density_grid", i, 10)
    assert [s[0] for s in seen] == ["checking", "density_grid", "density_grid", "density_grid"]
    grid = [s for s in seen if s[0] == "density_grid"]
    assert grid[-1][1] == pytest.approx(0.8)
    assert grid[-1][2] == pytest.approx(0.01 + 0.64 * 0.8)
    p.update("marching_cubes", 0, 1)
    p.update("density_grid", 0, 10)          # never goes back
    assert p.fraction >= 0.65
    assert p.finish() == ("writing", 1.0, 1.0) and seen[-1] == ("writing", 1.0, 1.0)
    with pytest.raises(ValueError):
        p.update("nonsense")


def test_cancel_gate():
    g = CancelGate()
    assert g.request_cancel() and g.is_cancelled() and not g.commit()
    g = CancelGate()
    assert g.commit() and not g.request_cancel() and not g.is_cancelled()


class _Mapper:
    device = "cpu"

    def __init__(self):
        self.saved = []

    def stats(self):
        return {"keyframes": 1}

    def extract_mesh(self, resolution=0, density_threshold=None, cancel=None, chunk=None, progress=False,
                     observed_only=False):
        for i in range(4):
            if progress:
                progress("density_grid", i, 4)
            if cancel():
                from semnerf_ros.engine.mesh import ExtractionCancelled

                raise ExtractionCancelled("cancelled during the density grid")
        progress("marching_cubes", 0, 1)
        progress("shading", 1, 1)
        v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
        return SemanticMesh(v, np.array([[0, 1, 2]], np.int32), np.full((3, 3), 90, np.uint8),
                            np.ones(3, np.int32), ["void", "a"])

    def save(self, path):
        self.saved.append(path)
        Path(path).write_bytes(b"map")


def test_export_progress_cancel_and_last_export(tmp_path):
    values = {"mesh_resolution": 16, "mesh_density_threshold": 0.0, "export_path": str(tmp_path / "m.ply"),
              "map_path": str(tmp_path / "map.pt")}
    ops = MapOperations(_Mapper(), values, lambda text: None)
    seen = []
    path, nv, nf = ops.export_mesh(progress=StageProgress(EXPORT_STAGES, lambda *a: seen.append(a)),
                                   gate=CancelGate())
    assert Path(path).is_file() and (nv, nf) == (3, 1)
    stages = [s[0] for s in seen]
    assert stages[0] == "checking" and "density_grid" in stages and stages[-1] == "writing"
    assert [s[2] for s in seen] == sorted(s[2] for s in seen) and seen[-1][2] == 1.0
    assert ops.last_export["ok"] and ops.last_export["vertices"] == 3
    # cancelled mid-extraction: nothing written, recorded as cancelled
    gate = CancelGate()
    target = tmp_path / "cancelled.ply"

    def report(stage, part, frac):
        if stage == "density_grid" and part >= 0.5:
            assert gate.request_cancel()

    with pytest.raises(Exception) as e:
        ops.export_mesh(str(target), progress=StageProgress(EXPORT_STAGES, report), gate=gate)
    assert "cancel" in str(e.value)
    assert not target.exists() and not list(tmp_path.glob(".cancelled*"))
    assert ops.last_export["cancelled"] and not ops.last_export["ok"]
    # save: cancelled before writing -> nothing written; after commit a cancel is refused
    gate = CancelGate()
    gate.request_cancel()
    with pytest.raises(Cancelled):
        ops.save(str(tmp_path / "a.pt"), gate=gate, progress=StageProgress(SAVE_STAGES))
    assert not (tmp_path / "a.pt").exists() and ops.mapper.saved == []
    gate = CancelGate()
    assert ops.save(str(tmp_path / "b.pt"), gate=gate, progress=StageProgress(SAVE_STAGES)).endswith("b.pt")
    assert not gate.request_cancel()


def test_mesh_engine_reports_progress_per_chunk():
    import torch

    from semnerf_ros.engine.mesh import extract_mesh

    def density(p):
        return 20.0 * (0.3 - torch.linalg.norm(p, dim=-1))

    seen = []
    mesh = extract_mesh(density, np.array([[-0.5] * 3, [0.5] * 3]), resolution=16, density_threshold=1.0,
                        chunk=1000, progress=lambda *a: seen.append(a),
                        semantic_fn=lambda p: torch.zeros(p.shape[0], 2), color_fn=None)
    assert mesh.num_faces > 0
    grid = [s for s in seen if s[0] == "density_grid"]
    assert grid[0][1] == 0 and grid[-1][1] == grid[-1][2] and len(grid) > 3
    assert ("marching_cubes", 0, 1) in seen and seen[-1] == ("shading", 1, 1)
    assert SimpleNamespace  # noqa: B018 - imported for the fake mapper above


def test_mesh_cli_shows_one_progress_bar(tmp_path, monkeypatch, capsys):
    """semnerf-mesh: one bar for the whole export, through the engine's stages to 100 %."""
    import torch

    from semnerf_ros.cli import mesh as mesh_cli
    from semnerf_ros.engine.mesh import extract_mesh

    class SphereMap:
        def extract_mesh(self, resolution=32, density_threshold=None, bounds=None, progress=False, **kw):
            return extract_mesh(lambda p: 20.0 * (0.3 - torch.linalg.norm(p, dim=-1)),
                                np.array([[-0.5] * 3, [0.5] * 3]), resolution=resolution, density_threshold=1.0,
                                chunk=2000, progress=progress, semantic_fn=lambda p: torch.zeros(p.shape[0], 2))

    (tmp_path / "map.pt").write_bytes(b"x")
    monkeypatch.setattr(mesh_cli, "_load_map", lambda path, device: SphereMap())
    assert mesh_cli.main(["--map", str(tmp_path / "map.pt"), "--output", str(tmp_path / "m.ply"),
                          "--resolution", "24"]) == 0
    err = capsys.readouterr().err
    assert "mesh:" in err and "100%" in err and "density grid" in err and "writing" in err
    assert (tmp_path / "m.ply").is_file()


def test_the_label_fusion_check_says_off_counting_or_full():
    ledger = InputLedger(list(NAMES), lambda text: None, 0.0)
    mon = HealthMonitor()
    assert _checks(mon, ledger, {"label_fusion": None})["label fusion"].message.startswith("off")
    fu = {"voxels": 0, "votes": 0, "cell_m": 0.04, "full": False, "memory_mb": 0.0}
    c = _checks(mon, ledger, {"label_fusion": fu})["label fusion"]
    assert c.level == OK and "no votes yet" in c.message
    fu.update(voxels=1200, votes=50000, memory_mb=0.1)
    c = _checks(mon, ledger, {"label_fusion": fu})["label fusion"]
    assert c.level == OK and c.message == "50000 votes in 1200 voxels" and c.values["cell_m"] == "0.040"
    fu["full"] = True
    c = _checks(mon, ledger, {"label_fusion": fu})["label fusion"]
    assert c.level == WARN and "label_fusion_cell" in c.message
