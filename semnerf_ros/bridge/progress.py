"""Progress and cancel of the node's long work (mesh export, map save and load): the stages of
each job with their share of the whole, the fraction done from the engine's per-chunk
callbacks, and the rule of when a cancel is still accepted.  Used by the node's actions
(:mod:`semnerf_ros.ros.actions`) and by the ``semnerf-mesh`` progress bar.  No ROS imports."""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

#: (stage, share of the whole job) in order.  Mesh export: the density grid is most of the work
#: on every device measured (bench/results/mesh_time_*.json), vertex shading the next.
EXPORT_STAGES = (("checking", 0.01), ("density_grid", 0.64), ("marching_cubes", 0.10), ("shading", 0.20),
                 ("writing", 0.05))
SAVE_STAGES = (("waiting", 0.1), ("writing", 0.9))
LOAD_STAGES = (("waiting", 0.05), ("loading", 0.95))


class StageProgress:
    """Fraction done of a job made of weighted stages.  ``report(stage, stage_fraction, fraction)``
    is called on every change, at most every ``min_interval`` s (a stage change and the end are
    always reported); the fraction never goes back."""

    def __init__(self, stages: tuple, report: Optional[Callable[[str, float, float], object]] = None,
                 min_interval: float = 0.0, clock: Callable[[], float] = time.monotonic):
        total = sum(w for _, w in stages)
        self.stages = [name for name, _ in stages]
        self._start, acc = {}, 0.0
        for name, w in stages:
            self._start[name] = (acc / total, w / total)
            acc += w
        self.report, self.min_interval, self.clock = report, float(min_interval), clock
        self.stage, self.stage_fraction, self.fraction = stages[0][0], 0.0, 0.0
        self._last_report = -1e18
        self._lock = threading.Lock()

    def update(self, stage: str, done: float = 0.0, total: float = 1.0) -> tuple:
        """``done`` of ``total`` units of ``stage`` are finished; returns (stage, stage fraction,
        fraction of the whole)."""
        if stage not in self._start:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(self._start)}")
        start, share = self._start[stage]
        part = min(1.0, max(0.0, float(done) / float(total))) if total > 0 else 1.0
        with self._lock:
            changed_stage = stage != self.stage
            self.stage, self.stage_fraction = stage, part
            self.fraction = max(self.fraction, start + share * part)
            out = (self.stage, self.stage_fraction, self.fraction)
            now = self.clock()
            due = changed_stage or part >= 1.0 or now - self._last_report >= self.min_interval
            if due:
                self._last_report = now
        if due and self.report is not None:
            self.report(*out)
        return out

    def finish(self) -> tuple:
        """Everything done (fraction 1)."""
        return self.update(self.stages[-1], 1.0, 1.0)

    def engine_callback(self) -> Callable[[str, int, int], None]:
        """``progress(stage, done, total)`` for :func:`semnerf_ros.engine.mesh.extract_mesh`."""
        return lambda stage, done, total: self.update(stage, done, total)


class CancelGate:
    """When a cancel request is still honoured: until the job *commits* (starts writing a file
    or replacing the live map), after which it runs to its end -- so a cancelled job has
    written nothing and changed nothing, and an accepted cancel is never ignored."""

    def __init__(self):
        self._lock = threading.Lock()
        self.cancel_requested = False
        self.committed = False

    def request_cancel(self) -> bool:
        """True: accepted (the job will stop before committing); False: too late (committed)."""
        with self._lock:
            if self.committed:
                return False
            self.cancel_requested = True
            return True

    def is_cancelled(self) -> bool:
        with self._lock:
            return self.cancel_requested

    def commit(self) -> bool:
        """Enter the point of no return; False when a cancel came first (then stop, nothing done)."""
        with self._lock:
            if self.cancel_requested:
                return False
            self.committed = True
            return True
