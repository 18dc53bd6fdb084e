"""The node's services: ``~/export_mesh``, ``~/save_map``, ``~/load_map``, ``~/render_view``,
``~/get_status`` (package interfaces), ``~/reset_map`` and ``~/export_mesh_default``
(std_srvs/Trigger).  Failures answer ``success=false`` with the reason, never an exception
that reaches rclpy; an export's target is checked before the extraction starts.  The work
itself is :class:`semnerf_ros.bridge.map_ops.MapOperations` (actions with progress can call
the same)."""
from __future__ import annotations

from typing import Callable, Optional

from rclpy.callback_groups import CallbackGroup, MutuallyExclusiveCallbackGroup
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from ..bridge import convert
from ..engine.mesh import ExtractionCancelled


class MapServices:
    """Creates the services on ``node`` (a :class:`~semnerf_ros.ros.node.SemNerfNode`).
    Long services share one mutually exclusive group; ``~/render_view`` runs in
    ``render_group``, ``~/get_status`` in ``status_group``."""

    def __init__(self, node, iface: Optional[dict], render_group: CallbackGroup, status_group: CallbackGroup):
        self.node = node
        self.ops = node.ops
        long = MutuallyExclusiveCallbackGroup()
        node.create_service(Trigger, "~/reset_map", self.reset, callback_group=long)
        node.create_service(Trigger, "~/export_mesh_default", self.export_default, callback_group=long)
        if iface is None:
            return
        node.create_service(iface["ExportMesh"], "~/export_mesh", self.export, callback_group=long)
        node.create_service(iface["SaveMap"], "~/save_map", self.save, callback_group=long)
        node.create_service(iface["LoadMap"], "~/load_map", self.load, callback_group=long)
        node.create_service(iface["RenderView"], "~/render_view", self.render, callback_group=render_group)
        node.create_service(iface["GetStatus"], "~/get_status", self.status, callback_group=status_group)

    def serve(self, name: str, resp, failure: str, action: Callable[[], str]):
        """Run a service body: ``action()`` returns the success message (and fills ``resp``);
        any exception becomes ``success=false`` with ``failure`` and the error.  The outcome
        is logged (info / warning / error) unless ``name`` is empty."""
        try:
            resp.message = action()
            resp.success = True
        except ExtractionCancelled as exc:
            resp.success = False
            resp.message = f"cancelled, nothing written: the node is shutting down ({exc})"
        except Exception as exc:  # noqa: BLE001 - errors become success=false
            resp.success, resp.message = False, f"{failure}: {type(exc).__name__}: {exc}"
        if name:
            log = self.node._node_log()
            if resp.success:
                log.info(f"{name}: {resp.message}")
            elif resp.message.startswith("cancelled"):
                log.warning(f"{name}: {resp.message}")
            else:
                log.error(f"{name}: {resp.message}")
        return resp

    def _exported(self, path: str, nv: int, nf: int) -> str:
        return f"wrote {nv} vertices, {nf} faces to {path} ({self.ops.export_seconds:.1f} s)"

    def export(self, req, resp):
        def action():
            path, nv, nf = self.ops.export_mesh(req.path, req.format, req.semantic_colors, req.resolution,
                                                req.density_threshold)
            resp.written_path, resp.vertex_count, resp.face_count = path, nv, nf
            return self._exported(path, nv, nf)
        return self.serve("export_mesh", resp, "export failed", action)

    def export_default(self, req, resp):
        def action():
            return self._exported(*self.ops.export_mesh(semantic_colors=bool(self.node.values["mesh_semantic_colors"])))
        return self.serve("export_mesh_default", resp, "export failed", action)

    def save(self, req, resp):
        def action():
            resp.written_path = self.ops.save(req.path)
            return f"saved the map to {resp.written_path}"
        return self.serve("save_map", resp, "save failed", action)

    def load(self, req, resp):
        def action():
            source = self.ops.load(req.path)
            self.node.forget_input()
            return f"loaded the map from {source}"
        return self.serve("load_map", resp, "load failed (live map unchanged)", action)

    def reset(self, req, resp):
        def action():
            self.node.intake.clear()
            self.node.mapper.reset()
            self.node.forget_input(stream=True)
            return "map reset"
        return self.serve("reset_map", resp, "reset failed", action)

    def render(self, req, resp):
        def action():
            if not self.ops.has_keyframes():
                raise RuntimeError("map has no keyframes yet (nothing to render: stream input first, "
                                   "or ~/load_map a saved map)")
            world, frame = self.node.values["world_frame"], req.pose.header.frame_id
            if frame and frame.lstrip("/") != world.lstrip("/"):
                raise ValueError(f"pose is in frame '{frame}' but the map is in '{world}'")
            pose = convert.pose_from_pose_stamped(req.pose, "optical")
            info = req.camera_info
            if int(info.width) == 0 and int(info.height) == 0 and not any(info.k):
                intr = self.node.latest_intrinsics()
                if intr is None:
                    raise ValueError("camera_info is all zero and no input camera is known yet")
            else:
                intr = convert.intrinsics_from_camera_info(info)
            header = Header(stamp=req.pose.header.stamp, frame_id=self.node.render_frame_id(info.header.frame_id))
            imgs = self.node.render_images(pose, intr, header, float(req.scale) if req.scale > 0 else 1.0)
            for key in ("semantic", "semantic_color", "rgb", "depth", "uncertainty"):
                setattr(resp, key, imgs[key])
            return f"rendered {imgs['semantic'].width}x{imgs['semantic'].height}"
        return self.serve("", resp, "render failed", action)  # frequent: not logged

    def status(self, req, resp):
        resp.status = self.node.status_message()
        return resp
