"""The node's actions: ``~/export_mesh``, ``~/save_map`` and ``~/load_map`` with feedback (stage,
fraction done) and cancel, next to the services of the same names (kept for one-line use).

A cancel is accepted until the job commits -- the mesh file starts being written, the map file
starts being written, the new map starts loading -- and then the job stops at its next chunk with
nothing written and the live map untouched (``canceled`` with a message saying so); a cancel that
comes later is rejected and the job runs to its end.  The bookkeeping is ROS-free:
:class:`~semnerf_ros.bridge.progress.StageProgress` and
:class:`~semnerf_ros.bridge.progress.CancelGate`; the work is
:class:`~semnerf_ros.bridge.map_ops.MapOperations`, the same as the services'."""
from __future__ import annotations

import threading
from typing import Callable, Optional

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup

from ..bridge.progress import EXPORT_STAGES, LOAD_STAGES, SAVE_STAGES, CancelGate, StageProgress
from ..engine.mesh import ExtractionCancelled

#: seconds between two feedback messages of one goal (stage changes and the end always go out)
FEEDBACK_PERIOD_S = 0.2


class MapActions:
    """Creates the action servers on ``node`` (a :class:`~semnerf_ros.ros.node.SemNerfNode`)
    in a reentrant group of their own, so that cancel requests are served while a goal runs."""

    def __init__(self, node, iface: Optional[dict]):
        self.node = node
        self._gates: dict[bytes, CancelGate] = {}
        self._lock = threading.Lock()
        self.servers = []
        if iface is None:
            return
        group = ReentrantCallbackGroup()
        self.types = {"export_mesh": iface["ExportMeshAction"], "save_map": iface["SaveMapAction"],
                      "load_map": iface["LoadMapAction"]}
        for name, execute in (("export_mesh", self._export), ("save_map", self._save), ("load_map", self._load)):
            self.servers.append(ActionServer(node, self.types[name], f"~/{name}", execute, callback_group=group,
                                             goal_callback=self._goal, cancel_callback=self._cancel,
                                             handle_accepted_callback=self._accepted))

    def destroy(self) -> None:
        for server in self.servers:
            server.destroy()
        self.servers = []

    # ---------------------------------------------------------------- goal and cancel rules
    def _goal(self, request) -> GoalResponse:
        return GoalResponse.ACCEPT if self.node.ops is not None and not self.node._closed else GoalResponse.REJECT

    def _accepted(self, goal_handle) -> None:
        with self._lock:
            self._gates[bytes(goal_handle.goal_id.uuid)] = CancelGate()
        goal_handle.execute()

    def _cancel(self, goal_handle) -> CancelResponse:
        with self._lock:
            gate = self._gates.get(bytes(goal_handle.goal_id.uuid))
        return CancelResponse.ACCEPT if gate is not None and gate.request_cancel() else CancelResponse.REJECT

    # ---------------------------------------------------------------- execution
    def _run(self, goal_handle, name: str, stages: tuple, work: Callable, fill: Callable[[object, object], str]):
        """Run ``work(gate, progress)`` for one goal; ``fill(result, value)`` sets the result's
        fields from its return value and gives the success message."""
        action_type = self.types[name]
        result = action_type.Result()
        key = bytes(goal_handle.goal_id.uuid)
        with self._lock:
            gate = self._gates.setdefault(key, CancelGate())

        def feedback(stage: str, stage_fraction: float, fraction: float) -> None:
            fb = action_type.Feedback(stage=stage, fraction=float(fraction))
            if hasattr(fb, "stage_fraction"):
                fb.stage_fraction = float(stage_fraction)
            goal_handle.publish_feedback(fb)

        progress = StageProgress(stages, feedback, FEEDBACK_PERIOD_S)
        log = self.node._node_log()
        try:
            result.message = fill(result, work(gate, progress))
            result.success = True
            goal_handle.succeed()
            log.info(f"{name} (action): {result.message}")
        except ExtractionCancelled as exc:   # the goal's cancel, or the node shutting down
            result.success = False
            if gate.is_cancelled():
                result.message = f"cancelled, nothing written or changed ({exc})"
                goal_handle.canceled()
            else:
                result.message = f"cancelled, nothing written: the node is shutting down ({exc})"
                goal_handle.abort()
            log.warning(f"{name} (action): {result.message}")
        except Exception as exc:  # noqa: BLE001 - errors become success=false
            result.success, result.message = False, f"{name} failed: {type(exc).__name__}: {exc}"
            goal_handle.abort()
            log.error(f"{name} (action): {result.message}")
        finally:
            with self._lock:
                self._gates.pop(key, None)
        return result

    def _export(self, goal_handle):
        req = goal_handle.request

        def work(gate, progress):
            return self.node.ops.export_mesh(req.path, req.format, req.semantic_colors, req.resolution,
                                             req.density_threshold, gate=gate, progress=progress)

        def fill(result, out):
            result.written_path, result.vertex_count, result.face_count = out
            return f"wrote {out[1]} vertices, {out[2]} faces to {out[0]} ({self.node.ops.export_seconds:.1f} s)"

        return self._run(goal_handle, "export_mesh", EXPORT_STAGES, work, fill)

    def _save(self, goal_handle):
        def fill(result, path):
            result.written_path = path
            return f"saved the map to {path}"

        return self._run(goal_handle, "save_map", SAVE_STAGES,
                         lambda gate, progress: self.node.ops.save(goal_handle.request.path, gate, progress), fill)

    def _load(self, goal_handle):
        def work(gate, progress):
            source = self.node.ops.load(goal_handle.request.path, gate, progress)
            self.node.forget_input()
            return source

        return self._run(goal_handle, "load_map", LOAD_STAGES, work, lambda result, src: f"loaded the map from {src}")
