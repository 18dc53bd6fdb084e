"""The node's long work on the map -- mesh extraction and export, map save and load -- with
the bookkeeping a shutdown needs: what is running and since when, and one cancel switch that
stops running extractions at their next chunk (about a second).  The actions pass a
:class:`~.progress.StageProgress` (feedback) and a :class:`~.progress.CancelGate` (cancel of one
goal, honoured until the job writes or replaces anything).  No ROS imports; the services and
the actions call these."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from ..engine.mesh import ExtractionCancelled, check_export_target, write_mesh
from .mapper_api import MapperAPI
from .params import ParameterValueError
from .progress import CancelGate, StageProgress


class Cancelled(ExtractionCancelled):
    """The job's goal was cancelled before it wrote or replaced anything."""

#: field queries per chunk of a mesh extraction on a CPU: small enough that a cancel
#: (polled between chunks) takes effect within about a second on a busy 2-core machine
CPU_MESH_CHUNK_POINTS = 32768


class MapOperations:
    """``values``: the node's live parameter values (``mesh_resolution``,
    ``mesh_density_threshold``, ``export_path``, ``map_path`` are read at each call);
    ``info``: logs a line."""

    def __init__(self, mapper: MapperAPI, values: dict, info: Callable[[str], object]):
        self.mapper = mapper
        self.values = values
        self._info = info
        self.cancel = threading.Event()
        self.export_seconds = 0.0
        self._running: dict[int, tuple] = {}   # id -> (name, detail, monotonic start)
        self._lock = threading.Lock()
        #: the last mesh export (for /diagnostics): path, ok, cancelled, message, vertices, faces,
        #: seconds, when (monotonic)
        self.last_export: Optional[dict] = None

    @contextlib.contextmanager
    def long_op(self, name: str, detail: str = ""):
        """Mark a piece of long work as running, so that the shutdown can say what it
        cancels or waits for."""
        key = object()
        with self._lock:
            self._running[id(key)] = (name, detail, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(id(key), None)

    def running_work(self) -> list:
        """[(name, detail, seconds running)] of the long work in progress."""
        now = time.monotonic()
        with self._lock:
            return [(n, d, now - t0) for n, d, t0 in self._running.values()]

    def wait_idle(self, timeout: float) -> list:
        """Wait up to ``timeout`` s for the long work to end; returns what is still running."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.running_work():
            time.sleep(0.02)
        return self.running_work()

    @staticmethod
    def shutdown_lines(reason: str, work: list) -> list:
        """[(log level, text)] a shutdown says about the long ``work`` it cancels or waits for."""
        if not work:
            return [("info", f"{reason}: shutting down")]
        lines = []
        for name, detail, took in work:
            if name in ("export_mesh", "mesh markers"):
                what = f"{detail}: nothing will be written" if name == "export_mesh" else "no markers"
                lines.append(("warning", f"{reason}: shutting down; cancelling {name} (running {took:.1f} s; {what})"))
            else:
                lines.append(("warning", f"{reason}: shutting down; waiting for {name} {detail} to finish "
                                         f"(running {took:.1f} s)"))
        return lines

    def has_keyframes(self, strict: bool = False) -> bool:
        """Whether the map has keyframes.  A failing engine reads as False for the timers, and
        raises with ``strict`` (services: a dead engine process must be named, not reported as an
        empty map)."""
        try:
            return int(self.mapper.stats().get("keyframes", 0)) > 0
        except Exception:  # noqa: BLE001
            if strict:
                raise
            return False

    def extract_mesh(self, resolution: int = 0, density_threshold: float = 0.0,
                     gate: Optional[CancelGate] = None, progress: Optional[StageProgress] = None):
        """The mapper's mesh (parameters fill in zero arguments); cancelled
        (:class:`ExtractionCancelled`) at the next chunk once :attr:`cancel` is set or ``gate``
        was cancelled; ``progress`` gets the engine's per-chunk stages."""
        res = int(resolution) or int(self.values["mesh_resolution"])
        thr = float(density_threshold) or float(self.values["mesh_density_threshold"]) or None
        chunk = CPU_MESH_CHUNK_POINTS if str(self.mapper.device).startswith("cpu") else None
        options = {"chunk": chunk} if chunk else {}
        if progress is not None:
            options["progress"] = progress.engine_callback()
        cancel = self.cancel.is_set if gate is None else (lambda: self.cancel.is_set() or gate.is_cancelled())
        return self.mapper.extract_mesh(resolution=res, density_threshold=thr, cancel=cancel,
                                        observed_only=bool(self.values.get("mesh_observed_only", True)),
                                        **options)

    def export_mesh(self, path: str = "", fmt: str = "", semantic_colors: bool = False,
                    resolution: int = 0, density_threshold: float = 0.0, gate: Optional[CancelGate] = None,
                    progress: Optional[StageProgress] = None) -> tuple:
        """Extract and write the mesh; returns (absolute path, vertex count, face count).

        The target is checked first (known format with its writer installed, an existing
        directory where a file can be created), so a bad path fails at once instead of after
        the extraction.  On shutdown, or when ``gate`` is cancelled before the write begins, the
        extraction stops (:class:`ExtractionCancelled` / :class:`Cancelled`); the write is atomic,
        so no partial file is ever left.  The outcome is kept in :attr:`last_export`."""
        t0 = time.monotonic()
        target = Path(path or self.values["export_path"])
        try:
            out = self._export(target, fmt, semantic_colors, resolution, density_threshold, gate, progress)
        except Exception as exc:
            cancelled = isinstance(exc, ExtractionCancelled)
            self.last_export = {"path": str(target), "ok": False, "cancelled": cancelled,
                                "message": f"{type(exc).__name__}: {exc}", "seconds": round(time.monotonic() - t0, 2),
                                "when": time.monotonic()}
            raise
        self.last_export = {"path": out[0], "ok": True, "vertices": out[1], "faces": out[2],
                            "seconds": round(self.export_seconds, 2), "when": time.monotonic()}
        return out

    def _export(self, target, fmt, semantic_colors, resolution, density_threshold, gate, progress) -> tuple:
        if progress is not None:
            progress.update("checking", 0, 1)
        target, fmt = check_export_target(target, fmt or None)
        if not self.has_keyframes(strict=True):
            raise RuntimeError("the map is empty (no keyframes yet)")
        res = int(resolution) or int(self.values["mesh_resolution"])
        with self.long_op("export_mesh", str(target)):
            t0 = time.monotonic()
            self._info(f"export_mesh: extracting the mesh at resolution {res} for {target}")
            mesh = self.extract_mesh(resolution, density_threshold, gate, progress)
            if self.cancel.is_set():
                raise ExtractionCancelled("the node is shutting down")
            if gate is not None and not gate.commit():
                raise Cancelled("the goal was cancelled before the file was written")
            if progress is not None:
                progress.update("writing", 0, 1)
            written = write_mesh(mesh, target, fmt=fmt, semantic_colors=semantic_colors)
            self.export_seconds = time.monotonic() - t0
        if progress is not None:
            progress.finish()
        written = Path(written) if written is not None else target
        return str(written.absolute()), int(len(mesh.vertices)), int(len(mesh.faces))

    def load_at_start(self) -> None:
        """``load_on_start``: load ``map_path``; any failure is a start-up error
        (:class:`~semnerf_ros.bridge.params.ParameterValueError`)."""
        path = self.values["map_path"]
        try:
            self.mapper.load_state(path)
        except Exception as exc:  # noqa: BLE001 - any failure is a start-up error
            raise ParameterValueError(f"parameter 'load_on_start': cannot load map_path {path!r}: {exc}") from exc
        self._info(f"loaded map {path}")

    def map_file(self, path: str = "") -> str:
        """``path``, else the ``map_path`` parameter, as an absolute path (``~`` expanded)."""
        return str(Path(os.path.expanduser(path or self.values["map_path"])).absolute())

    def save(self, path: str = "", gate: Optional[CancelGate] = None,
             progress: Optional[StageProgress] = None) -> str:
        """Save the map (atomic); with ``gate``: nothing is written when it was cancelled first."""
        target = self.map_file(path)
        with self.long_op("save_map", target):
            self._step(progress, "waiting", gate, "the goal was cancelled before the map was written")
            self.mapper.save(target)
        if progress is not None:
            progress.finish()
        return target

    def load(self, path: str = "", gate: Optional[CancelGate] = None,
             progress: Optional[StageProgress] = None) -> str:
        """Load a map in place (the live map is untouched on error, or when ``gate`` was
        cancelled before loading began)."""
        source = self.map_file(path)
        with self.long_op("load_map", source):
            self._step(progress, "waiting", gate, "the goal was cancelled before loading began")
            self.mapper.load_state(source)
        if progress is not None:
            progress.finish()
        return source

    @staticmethod
    def _step(progress, first_stage: str, gate: Optional[CancelGate], cancelled: str) -> None:
        """Report the first stage, then commit (or stop, :class:`Cancelled`) and enter the second."""
        if progress is not None:
            progress.update(first_stage, 1, 1)
        if gate is not None and not gate.commit():
            raise Cancelled(cancelled)
        if progress is not None:
            progress.update(progress.stages[1], 0, 1)
