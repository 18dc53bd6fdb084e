"""The node's long work on the map -- mesh extraction and export, map save and load -- with
the bookkeeping a shutdown needs: what is running and since when, and one cancel switch that
stops running extractions at their next chunk (about a second).  No ROS imports; the
services (and, later, actions with progress) call these."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Callable

from ..engine.mesh import ExtractionCancelled, check_export_target, write_mesh
from .mapper_api import MapperAPI
from .params import ParameterValueError

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

    def has_keyframes(self) -> bool:
        try:
            return int(self.mapper.stats().get("keyframes", 0)) > 0
        except Exception:  # noqa: BLE001
            return False

    def extract_mesh(self, resolution: int = 0, density_threshold: float = 0.0):
        """The mapper's mesh (parameters fill in zero arguments); cancelled
        (:class:`ExtractionCancelled`) at the next chunk once :attr:`cancel` is set."""
        res = int(resolution) or int(self.values["mesh_resolution"])
        thr = float(density_threshold) or float(self.values["mesh_density_threshold"]) or None
        chunk = CPU_MESH_CHUNK_POINTS if str(self.mapper.device).startswith("cpu") else None
        options = {"chunk": chunk} if chunk else {}
        return self.mapper.extract_mesh(resolution=res, density_threshold=thr, cancel=self.cancel.is_set,
                                        observed_only=bool(self.values.get("mesh_observed_only", True)),
                                        **options)

    def export_mesh(self, path: str = "", fmt: str = "", semantic_colors: bool = False,
                    resolution: int = 0, density_threshold: float = 0.0) -> tuple:
        """Extract and write the mesh; returns (absolute path, vertex count, face count).

        The target is checked first (known format with its writer installed, an existing
        directory where a file can be created), so a bad path fails at once instead of after
        the extraction.  On shutdown the extraction is cancelled; the write is atomic, so no
        partial file is ever left."""
        target, fmt = check_export_target(path or self.values["export_path"], fmt or None)
        if not self.has_keyframes():
            raise RuntimeError("the map is empty (no keyframes yet)")
        res = int(resolution) or int(self.values["mesh_resolution"])
        with self.long_op("export_mesh", str(target)):
            t0 = time.monotonic()
            self._info(f"export_mesh: extracting the mesh at resolution {res} for {target}")
            mesh = self.extract_mesh(resolution, density_threshold)
            if self.cancel.is_set():
                raise ExtractionCancelled("the node is shutting down")
            written = write_mesh(mesh, target, fmt=fmt, semantic_colors=semantic_colors)
            self.export_seconds = time.monotonic() - t0
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

    def save(self, path: str = "") -> str:
        target = self.map_file(path)
        with self.long_op("save_map", target):
            self.mapper.save(target)
        return target

    def load(self, path: str = "") -> str:
        source = self.map_file(path)
        with self.long_op("load_map", source):
            self.mapper.load_state(source)
        return source
