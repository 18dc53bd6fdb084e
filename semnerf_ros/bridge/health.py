"""The node's health for ``/diagnostics`` (diagnostic_msgs/DiagnosticArray, as rqt_robot_monitor
and Foxglove show it): one check per concern, each OK / WARN / ERROR with a message and
key-value pairs, from the counters the node already keeps.  No ROS imports; the node turns
:class:`Check` into ``DiagnosticStatus`` (:mod:`semnerf_ros.ros.health`).

Checks (names below the node's name): ``input <topic>`` (rate over the last report period),
``synchronization`` (sets synchronized, synchronizer drops and rejected sets by reason),
``training`` (it/s, step, loss), ``keyframes``, ``gpu memory``, ``last export``,
``engine faults`` (out-of-memory steps, failed steps).  Thresholds: :class:`Thresholds`, from
the ``diag_*`` parameters.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

from .ledger import InputLedger

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}


@dataclass(frozen=True)
class Thresholds:
    """``min_input_rate`` Hz per input (0 = off); ``max_drop_fraction`` of the period's messages
    dropped or rejected before WARN; ``min_training_rate`` it/s while training has keyframes
    (0 = off); ``gpu_memory_warn_mb`` / ``gpu_memory_error_mb`` (0 = off); ``input_timeout`` s
    after which a silent input that sent before is an ERROR."""

    min_input_rate: float = 1.0
    max_drop_fraction: float = 0.5
    min_training_rate: float = 1.0
    gpu_memory_warn_mb: float = 0.0
    gpu_memory_error_mb: float = 0.0
    input_timeout: float = 5.0

    @classmethod
    def from_values(cls, v: dict) -> "Thresholds":
        return cls(float(v["diag_min_input_rate"]), float(v["diag_max_drop_fraction"]),
                   float(v["diag_min_training_rate"]), float(v["diag_gpu_memory_warn_mb"]),
                   float(v["diag_gpu_memory_error_mb"]), float(v["input_timeout"]))


@dataclass
class Check:
    name: str
    level: int
    message: str
    values: dict = field(default_factory=dict)


def _num(v, spec=".2f") -> str:
    return format(float(v), spec) if v is not None and math.isfinite(float(v)) else "nan"


class HealthMonitor:
    """Assembles the checks; rates and "since the last report" need the previous report's
    counters, which it keeps (one instance per node)."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._prev: Optional[dict] = None

    def checks(self, st: dict, ledger: InputLedger, names: dict, th: Thresholds, training_enabled: bool,
               last_export: Optional[dict] = None, state: str = "active") -> list:
        """``st``: the mapper's ``stats()``; ``names``: input -> topic name; ``last_export``: see
        :meth:`semnerf_ros.bridge.map_ops.MapOperations.last_export`; ``state``: the node's
        (lifecycle) state, named in the training check."""
        now = self.clock()
        with ledger.lock:
            cur = {"t": now, "received": dict(ledger.received), "rejected": dict(ledger.reject_counts),
                   "sync_drops": dict(ledger.sync_drops), "synced": ledger.frames_synced,
                   "frames_rejected": ledger.frames_rejected, "last_rx": dict(ledger.last_received_time)}
        prev, self._prev = self._prev, cur
        dt = (now - prev["t"]) if prev else None
        # the ledger stamps arrivals with time.monotonic (self.clock times the report periods)
        out = [self._input(t, cur, prev, dt, names, th, time.monotonic()) for t in ledger.topics]
        out.append(self._sync(cur, prev, th))
        out.append(self._training(st, th, training_enabled, state))
        kf, mx = int(st.get("keyframes", 0)), int(st.get("max_keyframes", 0))
        out.append(Check("keyframes", OK, f"{kf} of {mx} keyframes" if kf else "no keyframes yet (no frame "
                         "accepted)", {"keyframes": str(kf), "max_keyframes": str(mx),
                                       "keyframes_added": str(ledger.keyframes_added)}))
        out.append(self._fusion(st.get("label_fusion")))
        out.append(self._gpu(st, th))
        out.append(self._export(last_export, now))
        out.append(self._faults(st, prev))
        return out

    @staticmethod
    def _input(topic, cur, prev, dt, names, th, now) -> Check:
        n = cur["received"][topic]
        rate = (n - prev["received"][topic]) / dt if prev and dt and dt > 0 else float("nan")
        values = {"topic": names[topic], "rate_hz": _num(rate), "received": str(n)}
        last = cur["last_rx"].get(topic)
        name = f"input {topic}"
        if n == 0:
            return Check(name, WARN, f"nothing received on {names[topic]} yet", values)
        silent = now - last if last is not None else float("inf")
        values["seconds_since_last"] = _num(silent)
        if th.input_timeout > 0 and silent >= th.input_timeout:
            return Check(name, ERROR, f"no message on {names[topic]} for {silent:.1f} s (stopped?)", values)
        if math.isnan(rate):
            return Check(name, OK, f"{n} messages received (rate from the next report on)", values)
        if th.min_input_rate > 0 and rate < th.min_input_rate:
            return Check(name, WARN, f"{names[topic]} at {rate:.2f} Hz, below diag_min_input_rate "
                                     f"{th.min_input_rate:g} Hz", values)
        return Check(name, OK, f"{names[topic]} at {rate:.2f} Hz", values)

    @staticmethod
    def _sync(cur, prev, th) -> Check:
        values = {"frames_synced": str(cur["synced"]), "frames_rejected": str(cur["frames_rejected"])}
        values.update({f"sync_drop.{k}": str(v) for k, v in sorted(cur["sync_drops"].items())})
        values.update({f"rejected.{k}": str(v) for k, v in sorted(cur["rejected"].items())})
        if prev is None:
            return Check("synchronization", OK, f"{cur['synced']} sets synchronized", values)
        d_synced = cur["synced"] - prev["synced"]
        d_rej = cur["frames_rejected"] - prev["frames_rejected"]
        d_drop = sum(cur["sync_drops"].values()) - sum(prev["sync_drops"].values())
        reasons = {k: v - prev["rejected"].get(k, 0) for k, v in cur["rejected"].items()}
        reasons.update({f"unmatched {k}": v - prev["sync_drops"].get(k, 0) for k, v in cur["sync_drops"].items()})
        reasons = {k: v for k, v in reasons.items() if v > 0}
        lost = d_rej + d_drop
        total = d_synced + lost
        frac = lost / total if total else 0.0
        values["dropped_fraction"] = _num(frac)
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
        if total and d_synced == 0 and d_rej > 0:
            return Check("synchronization", ERROR, f"every set of the last period was rejected ({why})", values)
        if total and frac > th.max_drop_fraction:
            return Check("synchronization", WARN, f"{100 * frac:.0f} % of the period's input lost ({why}); "
                                                  f"diag_max_drop_fraction {th.max_drop_fraction:g}", values)
        return Check("synchronization", OK, f"{d_synced} sets synchronized in the last period"
                     + (f"; lost: {why}" if why else ""), values)

    @staticmethod
    def _training(st, th, enabled, state) -> Check:
        rate = float(st.get("iterations_per_second", 0.0) or 0.0)
        kf = int(st.get("keyframes", 0))
        values = {"iterations_per_second": _num(rate, ".1f"), "step": str(int(st.get("step", 0))),
                  "loss": _num(st.get("loss", float("nan")), ".4f"), "training_enabled": str(bool(enabled)),
                  "state": state}
        if state != "active":
            return Check("training", OK, f"paused (node {state})", values)
        if not enabled:
            return Check("training", OK, "paused (training_enabled is false)", values)
        if kf == 0:
            return Check("training", OK, "waiting for the first keyframe", values)
        if th.min_training_rate > 0 and rate < th.min_training_rate:
            return Check("training", WARN, f"{rate:.1f} it/s, below diag_min_training_rate "
                                           f"{th.min_training_rate:g} it/s", values)
        return Check("training", OK, f"{rate:.1f} it/s, step {int(st.get('step', 0))}", values)

    @staticmethod
    def _fusion(fu: Optional[dict]) -> Check:
        """The label votes (engine/label_fusion.py): off, counting, or full."""
        if not fu:
            return Check("label fusion", OK, "off (train.label_fusion false, or no semantics)", {"enabled": "False"})
        values = {"enabled": "True", "voxels": str(int(fu["voxels"])), "votes": str(int(fu["votes"])),
                  "cell_m": _num(fu["cell_m"], ".3f"), "memory_mb": _num(fu["memory_mb"], ".1f")}
        if fu.get("full"):
            return Check("label fusion", WARN, f"vote table full at {int(fu['voxels'])} voxels: new surface trains "
                                               f"on its pixel labels (raise train.label_fusion_cell)", values)
        if not fu["votes"]:
            return Check("label fusion", OK, "no votes yet (votes need keyframes with depth)", values)
        return Check("label fusion", OK, f"{int(fu['votes'])} votes in {int(fu['voxels'])} voxels", values)

    @staticmethod
    def _gpu(st, th) -> Check:
        device = str(st.get("device", ""))
        mb = float(st.get("gpu_memory_mb", 0.0) or 0.0)
        values = {"device": device, "gpu_memory_mb": _num(mb, ".0f")}
        if not device.startswith("cuda"):
            return Check("gpu memory", OK, f"no GPU in use (device {device or 'unknown'})", values)
        if th.gpu_memory_error_mb > 0 and mb >= th.gpu_memory_error_mb:
            return Check("gpu memory", ERROR, f"{mb:.0f} MB, at or above diag_gpu_memory_error_mb "
                                              f"{th.gpu_memory_error_mb:g}", values)
        if th.gpu_memory_warn_mb > 0 and mb >= th.gpu_memory_warn_mb:
            return Check("gpu memory", WARN, f"{mb:.0f} MB, at or above diag_gpu_memory_warn_mb "
                                             f"{th.gpu_memory_warn_mb:g}", values)
        return Check("gpu memory", OK, f"{mb:.0f} MB peak", values)

    @staticmethod
    def _export(last: Optional[dict], now: float) -> Check:
        if not last:
            return Check("last export", OK, "no mesh exported yet", {})
        values = {k: str(last[k]) for k in ("path", "vertices", "faces", "seconds") if k in last}
        ago = now - float(last.get("when", now))
        values["seconds_ago"] = _num(ago, ".0f")
        if last.get("ok"):
            return Check("last export", OK, f"wrote {last.get('path')} {ago:.0f} s ago", values)
        values["error"] = str(last.get("message", ""))
        level = OK if last.get("cancelled") else WARN
        return Check("last export", level, f"{'cancelled' if last.get('cancelled') else 'failed'} {ago:.0f} s ago: "
                                           f"{last.get('message', '')}", values)

    def _faults(self, st, prev) -> Check:
        oom, errors = int(st.get("oom_events", 0) or 0), int(st.get("step_errors", 0) or 0)
        p_oom, p_err = prev.get("faults", (0, 0)) if prev else (0, 0)
        self._prev["faults"] = (oom, errors)    # self._prev is this report's counters
        values = {"oom_events": str(oom), "step_errors": str(errors), "ray_batch": str(st.get("ray_batch", ""))}
        if errors > p_err:
            return Check("engine faults", ERROR, f"{errors - p_err} training step(s) failed in the last period "
                                                 f"({errors} in all); training continues", values)
        if oom > p_oom:
            return Check("engine faults", WARN, f"out of GPU memory in {oom - p_oom} step(s) in the last period "
                                                f"({oom} in all); the ray batch shrank", values)
        return Check("engine faults", OK, f"no new faults ({oom} out-of-memory, {errors} failed steps in all)",
                     values)


def worst(checks: list) -> int:
    return max((c.level for c in checks), default=OK)
