"""The semantic mesh as RViz markers: ``visualization_msgs/MarkerArray`` of TRIANGLE_LIST
chunks with per-vertex colours (by class or rendered colour), after a DELETEALL.  Builds
message objects (visualization_msgs, geometry_msgs, std_msgs: plain data classes); no rclpy."""
from __future__ import annotations

from typing import Optional

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ..engine.mesh import SemanticMesh, decimate

MARKER_NAMESPACE = "semnerf_mesh"


def marker_chunks(mesh: SemanticMesh, max_triangles: int = 60000, semantic_colors: bool = True,
                  decimate_to: Optional[int] = None, decimation: str = "auto", device=None) -> list:
    """Triangle lists for RViz ``Marker.TRIANGLE_LIST`` markers.

    Returns ``[(points (3T,3) float32 m, colors (3T,4) float32 RGBA 0..1), ...]``: each
    triangle's three corners in order, at most ``max_triangles`` triangles per chunk, every
    triangle of the (optionally decimated to ``decimate_to`` faces, see :func:`decimate`
    for ``decimation``; clustering runs on ``device``, default the CPU) mesh exactly once.
    """
    max_triangles = int(max_triangles)
    if max_triangles < 1:
        raise ValueError(f"max_triangles must be >= 1, got {max_triangles}")
    if decimate_to is not None:
        mesh = decimate(mesh, decimate_to, method=decimation, device=device)
    if mesh.num_faces == 0:
        return []
    colors8 = mesh.semantic_colors() if semantic_colors else mesh.vertex_colors
    rgba = np.ones((mesh.num_vertices, 4), np.float32)
    rgba[:, :3] = colors8.astype(np.float32) / 255.0
    out = []
    for start in range(0, mesh.num_faces, max_triangles):
        idx = mesh.faces[start:start + max_triangles].reshape(-1)
        out.append((np.ascontiguousarray(mesh.vertices[idx]), np.ascontiguousarray(rgba[idx])))
    return out
def _points(points: np.ndarray) -> list:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in p]


def _colors(colors: np.ndarray) -> list:
    c = np.asarray(colors)
    if c.dtype == np.uint8 or (c.size and c.max() > 1.0):
        c = c.astype(np.float32) / 255.0
    c = c.reshape(len(c), -1)
    if c.shape[1] == 3:
        c = np.concatenate([c, np.ones((len(c), 1), np.float32)], axis=1)
    return [ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a)) for r, g, b, a in c]


def triangle_list_marker(header: Header, marker_id: int) -> Marker:
    """Chunk ``marker_id`` of the mesh without its corners: a TRIANGLE_LIST in ``header``'s frame,
    identity pose, unit scale, white (the per-vertex colours decide)."""
    m = Marker(header=header, ns=MARKER_NAMESPACE, id=marker_id, type=Marker.TRIANGLE_LIST, action=Marker.ADD,
               frame_locked=False)
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = 1.0
    m.color.r = m.color.g = m.color.b = m.color.a = 1.0
    return m


def mesh_marker_array(mesh: SemanticMesh, header: Header, max_triangles: int = 60000,
                      semantic_colors: bool = True, max_faces: Optional[int] = None,
                      decimation: str = "auto", device=None) -> MarkerArray:
    """MarkerArray: DELETEALL, then TRIANGLE_LIST chunks of at most ``max_triangles`` with
    per-vertex colours, of the mesh decimated to ``max_faces`` triangles (None or 0: all) by
    ``decimation`` (:func:`semnerf_ros.engine.mesh.decimate`'s method)."""
    out = MarkerArray()
    out.markers.append(Marker(header=header, ns=MARKER_NAMESPACE, action=Marker.DELETEALL))
    chunks = marker_chunks(mesh, int(max_triangles), semantic_colors=bool(semantic_colors),
                           decimate_to=max_faces if max_faces else None, decimation=decimation, device=device)
    for i, (points, colors) in enumerate(chunks):
        m = triangle_list_marker(header, i)
        m.points = _points(points)
        m.colors = _colors(colors)
        out.markers.append(m)
    return out
