"""The mesh MarkerArray as serialized CDR bytes, built from NumPy arrays.

``Publisher.publish`` takes a serialized message (``bytes``) as well as a message object.  The
object path builds one ``geometry_msgs/Point`` and one ``std_msgs/ColorRGBA`` Python object per
triangle corner: 600 k of each for a 200 k-triangle mesh, seconds of interpreter time (measured in
``bench/marker_mesh.py``).  Here the corners go straight from the arrays into the bytes; every
other field is written from the message objects by walking their ROS interface description
(``SLOT_TYPES``), so the layout follows the installed ``visualization_msgs`` definition rather than
a copy of it.

The encoding is plain CDR as the ROS 2 middlewares write it (XCDR1, little endian, 4-byte
encapsulation header 00 01 00 00; primitives aligned to their size from the end of that header;
strings as a uint32 length with the terminating NUL; sequences as a uint32 count).  The smallest
faithful equivalent of ``rclpy.serialization.serialize_message`` for these messages.  The padding
bytes are zeros here; the middleware leaves whatever its buffer held there, so the two are compared
through ``deserialize_message``: the tests and :func:`self_check` (handed rclpy's two functions by
the node) require the same length and equal messages back, and the node falls back to message
objects if that ever fails.  No rclpy import here.
"""
from __future__ import annotations

import importlib
import struct
from typing import Optional

import numpy as np
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from ..engine.mesh import SemanticMesh
from .markers import MARKER_NAMESPACE, marker_chunks, mesh_marker_array, triangle_list_marker

#: rosidl basic type names -> (struct format, size)
_BASIC = {"boolean": ("?", 1), "octet": ("B", 1), "char": ("B", 1), "uint8": ("B", 1), "int8": ("b", 1),
          "uint16": ("H", 2), "int16": ("h", 2), "uint32": ("I", 4), "int32": ("i", 4), "uint64": ("Q", 8),
          "int64": ("q", 8), "float": ("f", 4), "double": ("d", 8)}
_NUMPY = {"boolean": np.bool_, "octet": np.uint8, "char": np.uint8, "uint8": np.uint8, "int8": np.int8,
          "uint16": np.uint16, "int16": np.int16, "uint32": np.uint32, "int32": np.int32, "uint64": np.uint64,
          "int64": np.int64, "float": np.float32, "double": np.float64}


class _Writer:
    """A growing CDR payload; offsets for alignment count from the end of the encapsulation header."""

    def __init__(self):
        self.parts: list = [b"\x00\x01\x00\x00"]
        self.size = 0

    def align(self, n: int) -> None:
        pad = (-self.size) % n
        if pad:
            self.parts.append(b"\x00" * pad)
            self.size += pad

    def raw(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)

    def basic(self, typename: str, value) -> None:
        fmt, n = _BASIC[typename]
        self.align(n)
        self.raw(struct.pack("<" + fmt, value))

    def string(self, value: str) -> None:
        data = value.encode("utf-8") + b"\x00"
        self.basic("uint32", len(data))
        self.raw(data)

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _message_class(namespaced_type):
    module = importlib.import_module(".".join(namespaced_type.namespaces))
    return getattr(module, namespaced_type.name)


def _first_alignment(msg_class) -> int:
    """Alignment of a nested message's first primitive (its position in CDR)."""
    t = msg_class.SLOT_TYPES[0]
    kind = type(t).__name__
    if kind == "BasicType":
        return _BASIC[t.typename][1]
    if kind == "NamespacedType":
        return _first_alignment(_message_class(t))
    return 4  # strings and sequences start with a uint32


def _write_value(w: _Writer, value, t, arrays: Optional[dict] = None, field: str = "") -> None:
    kind = type(t).__name__
    if kind == "BasicType":
        w.basic(t.typename, value)
    elif kind in ("UnboundedString", "BoundedString", "UnboundedWString", "BoundedWString"):
        if "W" in kind:
            raise NotImplementedError("wide strings are not written by this serializer")
        w.string(value)
    elif kind == "NamespacedType":
        _write_message(w, value)
    elif kind in ("UnboundedSequence", "BoundedSequence", "Array"):
        vt = t.value_type
        if arrays is not None and field in arrays:  # a nested-message sequence given as an array
            data = np.ascontiguousarray(arrays[field])
            w.basic("uint32", data.shape[0])
            if data.shape[0]:
                w.align(_first_alignment(_message_class(vt)))
                w.raw(data.tobytes())
            return
        if kind != "Array":
            w.basic("uint32", len(value))
        vkind = type(vt).__name__
        if vkind == "BasicType":
            data = np.asarray(value, dtype=_NUMPY[vt.typename])
            if data.size:
                w.align(_BASIC[vt.typename][1])
                w.raw(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes())
        else:
            for item in value:
                _write_value(w, item, vt)
    else:  # pragma: no cover - a type the installed messages do not use
        raise NotImplementedError(f"CDR for {kind}")


def _write_message(w: _Writer, msg, arrays: Optional[dict] = None) -> None:
    # the fields in declaration order (newer rclpy messages have extra, non-field __slots__)
    for field, t in zip(msg.get_fields_and_field_types(), msg.SLOT_TYPES):
        _write_value(w, getattr(msg, field), t, arrays, field)


def mesh_marker_array_cdr(mesh: SemanticMesh, header: Header, max_triangles: int = 60000,
                          semantic_colors: bool = True, max_faces: Optional[int] = None,
                          decimation: str = "auto", device=None) -> bytes:
    """The serialized ``MarkerArray`` of :func:`semnerf_ros.bridge.markers.mesh_marker_array`
    (DELETEALL, then TRIANGLE_LIST chunks), with the same fields, built from the arrays."""
    chunks = marker_chunks(mesh, int(max_triangles), semantic_colors=bool(semantic_colors),
                           decimate_to=max_faces if max_faces else None, decimation=decimation, device=device)
    w = _Writer()
    w.basic("uint32", 1 + len(chunks))
    _write_message(w, Marker(header=header, ns=MARKER_NAMESPACE, action=Marker.DELETEALL))
    for i, (points, colors) in enumerate(chunks):
        m = triangle_list_marker(header, i)
        # geometry_msgs/Point: 3 float64; std_msgs/ColorRGBA: 4 float32 (RGBA 0..1)
        _write_message(w, m, {"points": np.asarray(points, dtype="<f8").reshape(-1, 3),
                              "colors": np.asarray(colors, dtype="<f4").reshape(-1, 4)})
    return w.bytes()


def serialize(msg) -> bytes:
    """Any message of the installed interfaces (no wide strings) as CDR bytes, from its objects."""
    w = _Writer()
    _write_message(w, msg)
    return w.bytes()


def self_check(serialize_message, deserialize_message) -> Optional[str]:
    """None when a small mesh MarkerArray written here has the length of
    ``serialize_message``'s bytes and reads back (``deserialize_message``) equal to the message
    objects, else why not.  The node passes ``rclpy.serialization``'s two functions, once."""
    rng = np.random.default_rng(0)
    mesh = SemanticMesh(rng.random((5, 3), dtype=np.float32), np.array([[0, 1, 2], [2, 3, 4], [0, 2, 4]], np.int32),
                        rng.integers(0, 255, (5, 3), dtype=np.uint8), np.array([1, 2, 3, 1, 2], np.int32),
                        ["void", "a", "b", "c"])
    header = Header(frame_id="map_frame")
    header.stamp.sec, header.stamp.nanosec = 7, 123
    try:
        ours = mesh_marker_array_cdr(mesh, header, 2)
        objects = mesh_marker_array(mesh, header, 2)
        if len(ours) != len(serialize_message(objects)):
            return "the serialized length differs from rclpy's"
        back = deserialize_message(ours, MarkerArray)
    except Exception as exc:  # noqa: BLE001 - any failure means: use message objects
        return f"{type(exc).__name__}: {exc}"
    return None if back == objects else "the message read back differs from the objects"


__all__ = ["mesh_marker_array_cdr", "self_check", "serialize"]
