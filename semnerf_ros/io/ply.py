"""PLY files for meshes and point clouds: atomic writing and tolerant reading (numpy only).

:func:`write_ply` writes ``x y z`` (float32), optional ``red green blue``
(uchar), optional ``label`` (int32 class id) per vertex, and optional
triangles as ``vertex_indices`` lists (uchar count, int32 indices), binary
little-endian by default.  Open3D, MeshLab, CloudCompare and Blender read it.
The write is **atomic** (:func:`semnerf_ros.io.atomic.atomic_output`): on any
failure :class:`MeshExportError` (an ``OSError``) naming the path is raised and a
reader never sees a partial file.

:func:`read_ply` reads ASCII and binary (little/big endian) PLY with any
scalar property types (float or double coordinates, extra properties
tolerated), polygon faces (fan-triangulated to triangles), and raises
:class:`PlyError` naming the file on truncated or corrupt input.

Units: whatever the caller's vertices are in (this package writes metres,
world frame).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .atomic import AtomicWriteError, atomic_output

#: the error of a PLY / mesh file that could not be written (no partial file is left)
MeshExportError = AtomicWriteError

__all__ = ["MeshExportError", "PlyError", "atomic_output", "write_ply", "read_ply"]


class PlyError(ValueError):
    """A PLY file that cannot be parsed (bad header, truncated, corrupt)."""


# --------------------------------------------------------------------------- writing

def _as_array(name: str, value, shape_tail: tuple, dtype, n: Optional[int] = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail:
        want = "(N" + "".join(f", {s}" for s in shape_tail) + ")"
        raise ValueError(f"write_ply: {name} must have shape {want}, got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"write_ply: {name} has {arr.shape[0]} rows but there are {n} vertices")
    return arr


def write_ply(path, vertices, faces=None, colors=None, labels=None, binary: bool = True) -> Path:
    """Write a PLY file atomically and return its absolute path.

    vertices: (V, 3) float (stored as float32, e.g. world metres).
    faces:    (F, 3) int vertex indices (triangles) or None for a point cloud.
    colors:   (V, 3) uint8 RGB, or float in [0, 1] (scaled to 0..255), or None.
    labels:   (V,) integer class ids (stored as int32 property ``label``) or None.
    binary:   binary little-endian (default) or ASCII.

    Raises ``ValueError`` for malformed arrays (before touching the disk) and
    :class:`MeshExportError` if the file cannot be written.
    """
    path = Path(path).expanduser().absolute()
    v = _as_array("vertices", vertices, (3,), np.float32)
    n = v.shape[0]
    if not np.all(np.isfinite(v)):
        raise ValueError("write_ply: vertices contain NaN or inf")
    v = v.astype("<f4", copy=False)
    f = None
    if faces is not None:
        f = _as_array("faces", faces, (3,), np.int32)
        if f.size and not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"write_ply: faces must be integers, got {f.dtype}")
        if f.size and (f.min() < 0 or f.max() >= n):
            raise ValueError(f"write_ply: face indices must lie in [0, {n}), got [{f.min()}, {f.max()}]")
        f = f.astype("<i4", copy=False)
    c = None
    if colors is not None:
        c = _as_array("colors", colors, (3,), np.uint8, n)
        if np.issubdtype(c.dtype, np.floating):
            c = np.clip(np.round(c * 255.0), 0, 255)
        elif c.size and (c.min() < 0 or c.max() > 255):
            raise ValueError("write_ply: integer colors must lie in 0..255")
        c = c.astype(np.uint8)
    lab = None
    if labels is not None:
        lab = _as_array("labels", labels, (), np.int32, n)
        if not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(f"write_ply: labels must be integers, got {lab.dtype}")
        if lab.size and (lab.min() < np.iinfo(np.int32).min or lab.max() > np.iinfo(np.int32).max):
            raise ValueError("write_ply: labels do not fit int32")
        lab = lab.astype("<i4")

    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
              "comment written by semnerf_ros", f"element vertex {n}",
              "property float x", "property float y", "property float z"]
    if c is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if lab is not None:
        header.append("property int label")
        fields.append(("label", "<i4"))
    if f is not None:
        header += [f"element face {f.shape[0]}", "property list uchar int vertex_indices"]
    header.append("end_header")
    head = ("\n".join(header) + "\n").encode("ascii")

    vert = np.empty(n, dtype=fields)
    vert["x"], vert["y"], vert["z"] = v[:, 0], v[:, 1], v[:, 2]
    if c is not None:
        vert["red"], vert["green"], vert["blue"] = c[:, 0], c[:, 1], c[:, 2]
    if lab is not None:
        vert["label"] = lab

    with atomic_output(path, "wb") as fh:
        fh.write(head)
        if binary:
            fh.write(vert.tobytes())
            if f is not None:
                face_rec = np.empty(f.shape[0], dtype=[("n", "u1"), ("i", "<i4", (3,))])
                face_rec["n"] = 3
                face_rec["i"] = f
                fh.write(face_rec.tobytes())
        else:
            cols = [v[:, 0], v[:, 1], v[:, 2]]
            fmt = ["%.9g"] * 3
            if c is not None:
                cols += [c[:, 0], c[:, 1], c[:, 2]]
                fmt += ["%d"] * 3
            if lab is not None:
                cols.append(lab)
                fmt.append("%d")
            if n:  # float64 holds float32 and int32 values exactly
                table = np.column_stack([np.asarray(col, dtype=np.float64) for col in cols])
                np.savetxt(fh, table, fmt=" ".join(fmt))
            if f is not None and f.shape[0]:
                np.savetxt(fh, np.column_stack([np.full(f.shape[0], 3), f]), fmt="%d")
    return path


# --------------------------------------------------------------------------- reading

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_MAX_HEADER = 1 << 20


class _Element:
    def __init__(self, name: str, count: int):
        self.name = name
        self.count = count
        self.props: list[tuple] = []  # (name, dtype) or (name, count_dtype, item_dtype)

    @property
    def has_list(self) -> bool:
        return any(len(p) == 3 for p in self.props)


def _parse_header(data: bytes, path: Path):
    if not data.startswith(b"ply"):
        raise PlyError(f"{path}: not a PLY file (missing 'ply' magic)")
    end = data.find(b"end_header", 0, _MAX_HEADER)
    if end < 0:
        raise PlyError(f"{path}: PLY header has no 'end_header' (truncated or corrupt)")
    nl = data.find(b"\n", end)
    if nl < 0:
        # 'end_header' as the last bytes: valid only if no element has data.
        nl = len(data) - 1
    body_start = nl + 1
    try:
        lines = data[:end].decode("ascii").replace("\r", "").split("\n")
    except UnicodeDecodeError as exc:
        raise PlyError(f"{path}: PLY header is not ASCII") from exc
    fmt = None
    elements: list[_Element] = []
    for lineno, raw in enumerate(lines[1:], start=2):
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        try:
            if tok[0] == "format":
                fmt = tok[1]
                if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
                    raise PlyError(f"{path}: unknown PLY format {fmt!r}")
            elif tok[0] == "element":
                count = int(tok[2])
                if count < 0:
                    raise ValueError
                elements.append(_Element(tok[1], count))
            elif tok[0] == "property":
                if not elements:
                    raise PlyError(f"{path}: header line {lineno}: property before any element")
                if tok[1] == "list":
                    elements[-1].props.append((tok[4], _PLY_TYPES[tok[2]], _PLY_TYPES[tok[3]]))
                else:
                    elements[-1].props.append((tok[2], _PLY_TYPES[tok[1]]))
            else:
                raise PlyError(f"{path}: header line {lineno}: unknown keyword {tok[0]!r}")
        except (IndexError, ValueError, KeyError) as exc:
            if isinstance(exc, PlyError):
                raise
            raise PlyError(f"{path}: header line {lineno} is malformed: {raw!r}") from None
    if fmt is None:
        raise PlyError(f"{path}: PLY header has no 'format' line")
    return fmt, elements, body_start


def _read_binary_element(el: _Element, buf: memoryview, pos: int, endian: str, path: Path):
    """Return ({prop: array}, new_pos) for one element of a binary body."""
    def dt(code):
        return np.dtype(endian + code) if code not in ("i1", "u1") else np.dtype(code)

    def truncated(need):
        return PlyError(f"{path}: truncated: element {el.name!r} needs {need} more bytes "
                        f"than the file holds")

    if not el.has_list:
        rec = np.dtype([(p[0], dt(p[1])) for p in el.props])
        need = rec.itemsize * el.count
        if pos + need > len(buf):
            raise truncated(pos + need - len(buf))
        arr = np.frombuffer(buf, dtype=rec, count=el.count, offset=pos)
        return {name: arr[name] for name in rec.names}, pos + need
    if el.count == 0:
        return {p[0]: (np.zeros((0, 0), dt(p[2])) if len(p) == 3 else np.zeros(0, dt(p[1])))
                for p in el.props}, pos
    # Fast path: every list of the element has the length found in the first row.
    first: list[int] = []
    p0 = pos
    fields = []
    for p in el.props:
        if len(p) == 3:
            cdt = dt(p[1])
            if p0 + cdt.itemsize > len(buf):
                raise truncated(p0 + cdt.itemsize - len(buf))
            k = int(np.frombuffer(buf, dtype=cdt, count=1, offset=p0)[0])
            first.append(k)
            fields += [(p[0] + "#n", cdt), (p[0], dt(p[2]), (k,))]
            p0 += cdt.itemsize + k * dt(p[2]).itemsize
        else:
            fields.append((p[0], dt(p[1])))
            p0 += dt(p[1]).itemsize
    rec = np.dtype(fields)
    need = rec.itemsize * el.count
    if pos + need <= len(buf):
        arr = np.frombuffer(buf, dtype=rec, count=el.count, offset=pos)
        counts_ok = all(np.all(arr[p[0] + "#n"] == k)
                        for p, k in zip([p for p in el.props if len(p) == 3], first))
        if counts_ok:
            return {p[0]: arr[p[0]] for p in el.props}, pos + need
    # Slow path: variable-length lists, row by row.
    out: dict[str, list] = {p[0]: [] for p in el.props}
    for _ in range(el.count):
        for p in el.props:
            if len(p) == 3:
                cdt, idt = dt(p[1]), dt(p[2])
                if pos + cdt.itemsize > len(buf):
                    raise truncated(pos + cdt.itemsize - len(buf))
                k = int(np.frombuffer(buf, dtype=cdt, count=1, offset=pos)[0])
                pos += cdt.itemsize
                if pos + k * idt.itemsize > len(buf):
                    raise truncated(pos + k * idt.itemsize - len(buf))
                out[p[0]].append(np.frombuffer(buf, dtype=idt, count=k, offset=pos))
                pos += k * idt.itemsize
            else:
                d = dt(p[1])
                if pos + d.itemsize > len(buf):
                    raise truncated(pos + d.itemsize - len(buf))
                out[p[0]].append(np.frombuffer(buf, dtype=d, count=1, offset=pos)[0])
                pos += d.itemsize
    res = {}
    for p in el.props:
        res[p[0]] = out[p[0]] if len(p) == 3 else np.asarray(out[p[0]], dtype=dt(p[1]))
    return res, pos


def _read_ascii_elements(elements, text_lines: list[str], path: Path) -> dict:
    result = {}
    li = 0
    for el in elements:
        rows = text_lines[li:li + el.count]
        if len(rows) < el.count:
            raise PlyError(f"{path}: truncated: element {el.name!r} has {len(rows)} of "
                           f"{el.count} rows")
        li += el.count
        try:
            if not el.has_list:
                if el.count == 0:
                    table = np.zeros((0, len(el.props)))
                else:
                    table = np.array([r.split() for r in rows], dtype=np.float64)
                    if table.ndim != 2 or table.shape[1] != len(el.props):
                        raise ValueError("wrong number of values on a row")
                result[el.name] = {p[0]: table[:, j].astype(p[1]) for j, p in enumerate(el.props)}
                continue
            cols: dict[str, list] = {p[0]: [] for p in el.props}
            for r in rows:
                vals = r.split()
                k = 0
                for p in el.props:
                    if len(p) == 3:
                        cnt = int(vals[k])
                        item = np.asarray(vals[k + 1:k + 1 + cnt], dtype=np.float64).astype(p[2])
                        if item.shape[0] != cnt:
                            raise ValueError("list shorter than its count")
                        cols[p[0]].append(item)
                        k += 1 + cnt
                    else:
                        cols[p[0]].append(float(vals[k]))
                        k += 1
                if k != len(vals):
                    raise ValueError("wrong number of values on a row")
            result[el.name] = {p[0]: (cols[p[0]] if len(p) == 3 else np.asarray(cols[p[0]]).astype(p[1]))
                               for p in el.props}
        except (ValueError, IndexError) as exc:
            raise PlyError(f"{path}: corrupt ASCII element {el.name!r}: {exc}") from None
    return result


def _triangles_from_lists(lists, path: Path) -> np.ndarray:
    if isinstance(lists, np.ndarray) and lists.ndim == 2:
        if lists.shape[1] == 3 or lists.shape[0] == 0:
            return lists.reshape(-1, 3).astype(np.int32)
        lists = list(lists)
    tris = []
    for poly in lists:
        poly = np.asarray(poly)
        if poly.shape[0] < 3:
            continue
        for j in range(1, poly.shape[0] - 1):  # fan triangulation of polygons
            tris.append((poly[0], poly[j], poly[j + 1]))
    return np.asarray(tris, dtype=np.int32).reshape(-1, 3)


def read_ply(path) -> dict:
    """Read a PLY file.

    Returns ``dict(vertices (V,3) float32, faces (F,3) int32 or None,
    colors (V,3) uint8 or None, labels (V,) int32 or None, properties)``,
    where ``properties`` maps every vertex property name to its array.
    Polygons are fan-triangulated.  Colours stored as floats are taken as
    0..1 and scaled to uint8.  Raises ``FileNotFoundError`` if the file is
    missing and :class:`PlyError` if it is not a readable PLY.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PLY file not found: {path}")
    data = path.read_bytes()
    fmt, elements, body = _parse_header(data, path)
    if fmt == "ascii":
        try:
            text = data[body:].decode("ascii")
        except UnicodeDecodeError as exc:
            raise PlyError(f"{path}: ASCII PLY body contains non-ASCII bytes") from exc
        lines = [ln for ln in text.replace("\r", "").split("\n") if ln.strip()]
        parsed = _read_ascii_elements(elements, lines, path)
    else:
        endian = "<" if fmt == "binary_little_endian" else ">"
        buf = memoryview(data)
        pos = body
        parsed = {}
        for el in elements:
            parsed[el.name], pos = _read_binary_element(el, buf, pos, endian, path)

    vprops = parsed.get("vertex")
    if vprops is None:
        raise PlyError(f"{path}: PLY has no 'vertex' element")
    for axis in "xyz":
        if axis not in vprops:
            raise PlyError(f"{path}: vertex element lacks property {axis!r}")
    vertices = np.stack([np.asarray(vprops[a], dtype=np.float32) for a in "xyz"], axis=1)
    if not np.all(np.isfinite(vertices)):
        raise PlyError(f"{path}: vertex coordinates contain NaN or inf (corrupt file?)")
    colors = None
    for names in (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue")):
        if all(nm in vprops for nm in names):
            cols = np.stack([np.asarray(vprops[nm]) for nm in names], axis=1)
            if np.issubdtype(cols.dtype, np.floating):
                cols = np.clip(np.round(cols * 255.0), 0, 255)
            colors = cols.astype(np.uint8)
            break
    labels = None
    for nm in ("label", "class_id", "semantic", "category_id"):
        if nm in vprops:
            labels = np.asarray(vprops[nm]).astype(np.int32)
            break
    faces = None
    if "face" in parsed:
        fprops = parsed["face"]
        key = "vertex_indices" if "vertex_indices" in fprops else (
            "vertex_index" if "vertex_index" in fprops else None)
        if key is None:
            raise PlyError(f"{path}: face element lacks a 'vertex_indices' list")
        faces = _triangles_from_lists(fprops[key], path)
        if faces.size and (faces.min() < 0 or faces.max() >= vertices.shape[0]):
            raise PlyError(f"{path}: face indices out of range [0, {vertices.shape[0]}) (corrupt file?)")
    return {"vertices": vertices, "faces": faces, "colors": colors, "labels": labels,
            "properties": {k: np.asarray(v) for k, v in vprops.items()}}
