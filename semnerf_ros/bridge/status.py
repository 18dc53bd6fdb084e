"""The node's report of itself: the ``MapStatus`` message's fields, the one-line progress
log, and the engine's training faults since the last look.  No ROS imports (the message
object is filled duck-typed)."""
from __future__ import annotations

import math
import threading
from typing import Any, Callable

from .ledger import InputLedger

_FLOAT_FIELDS = ("loss", "loss_rgb", "loss_semantic", "loss_depth", "psnr", "iterations_per_second",
                 "gpu_memory_mb")


class EngineFaults:
    """Training steps the engine skipped (``oom_events``) or that failed (``step_errors``),
    warned about (throttled, through ``warn(key, text)``) when they grow."""

    def __init__(self, warn: Callable[[str, str], object]):
        self._warn = warn
        self._seen = (0, 0)
        self._lock = threading.Lock()

    def check(self, st: dict) -> dict:
        """The fault counters for ``reject_reasons`` (``training_oom``, ``training_error``)."""
        oom, errors = int(st.get("oom_events", 0) or 0), int(st.get("step_errors", 0) or 0)
        with self._lock:
            seen_oom, seen_errors = self._seen
            self._seen = (oom, errors)
        if oom > seen_oom:
            self._warn("training_oom", f"out of GPU memory in {oom - seen_oom} training step(s) ({oom} in "
                                       f"all): those steps were skipped and the ray batch shrunk to "
                                       f"{st.get('ray_batch', '?')} rays; training continues")
        if errors > seen_errors:
            self._warn("training_error", f"{errors - seen_errors} training step(s) failed ({errors} in all; "
                                         f"see the semnerf_ros.mapper log); training continues")
        return {k: v for k, v in (("training_oom", oom), ("training_error", errors)) if v > 0}


def fill_status(msg: Any, st: dict, ledger: InputLedger, sync_dropped: list, synced: list, names: dict,
                engine_faults: dict, max_keyframes: int, device: str) -> Any:
    """Fill a ``MapStatus`` (all fields but the header) from the mapper's ``stats()`` ``st``,
    the ledger, and the synchronizer's drops per synchronized input."""
    msg.step = int(st.get("step", 0))
    msg.keyframes = int(st.get("keyframes", 0))
    msg.max_keyframes = int(st.get("max_keyframes", max_keyframes))
    msg.training = bool(st.get("training", False))
    msg.device = str(st.get("device", device))
    for key in _FLOAT_FIELDS:
        v = st.get(key, 0.0)
        setattr(msg, key, float(v) if v is not None and math.isfinite(float(v)) else 0.0)
    topics = ledger.topics
    with ledger.lock:
        msg.topics = [names[t] for t in topics]
        msg.received = [int(ledger.received[t]) for t in topics]
        msg.dropped = [int(ledger.rejected_by_topic[t] + (sync_dropped[synced.index(t)] if t in synced else 0))
                       for t in topics]
        msg.frames_synced = int(ledger.frames_synced)
        msg.frames_rejected = int(ledger.frames_rejected)
        msg.keyframes_added = int(ledger.keyframes_added)
        counts = {**ledger.reject_counts, **engine_faults}
    reasons = sorted(counts)
    msg.reject_reasons = reasons
    msg.reject_counts = [int(counts[r]) for r in reasons]
    msg.intake_queue = int(st.get("intake_queue", 0))
    msg.intake_queue_peak = int(st.get("intake_queue_peak", 0))
    msg.intake_capacity = int(st.get("intake_capacity", 0))
    return msg


def progress_line(st: dict, ledger: InputLedger, training_enabled: bool) -> str:
    """One line: training, keyframes, frames, lock waits and images since start."""
    tm = st.get("timing_ms", {})

    def ms(name):
        t = tm.get(name)
        return f"{t['p50']:.0f}/{t['max']:.0f}" if t else "-"

    rate = (f"{st.get('iterations_per_second', 0.0):.0f} it/s" if st.get("training", True)
            else "paused" if not training_enabled else "not training")
    with ledger.lock:
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(ledger.reject_counts.items())) or "none"
        counts = list(ledger.received.values()) or [0]
        received = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
        return (f"step {st.get('step', 0)} ({rate}), keyframes {st.get('keyframes', 0)}/{st.get('max_keyframes', 0)}; "
                f"messages received {received} per topic, frames synced {ledger.frames_synced}, "
                f"rejected {ledger.frames_rejected} ({rejected}); images "
                f"published {ledger.images_published}; intake queue {st.get('intake_queue', 0)}/"
                f"{st.get('intake_capacity', 0)} (peak {st.get('intake_queue_peak', 0)}); ms p50/max: step "
                f"{ms('step')}, add_frame {ms('add_frame')} "
                f"(wait {ms('add_frame_wait')}), view {ms('view')} (map lock {ms('render')}, wait {ms('render_wait')})"
                + (f", label votes {ms('fuse')} ({st['label_fusion']['voxels']} voxels"
                   + (f", {st['label_fusion'].get('keyframes_waiting')} keyframes waiting"
                      if st['label_fusion'].get('keyframes_waiting') else "") + ")"
                   if st.get("label_fusion") else "")
                + (f"; gpu {st['gpu_memory_mb']:.0f} MB" if (st.get("gpu_memory_mb") or 0) > 0 else ""))
