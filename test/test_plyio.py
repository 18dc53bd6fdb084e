"""PLY writing (atomic) and reading: round trips, Open3D interop, corrupt input."""
import os

import numpy as np
import pytest

from semnerf_ros.io import atomic as atomic_io
from semnerf_ros.io.ply import MeshExportError, PlyError, read_ply, write_ply


def _tetra():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) * 0.25 + 0.1
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    c = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [7, 8, 9]], np.uint8)
    lab = np.array([0, 3, 41, 2**20], np.int32)
    return v, f, c, lab


def _leftovers(d):
    return sorted(p for p in os.listdir(d) if p.endswith(".tmp") or p.startswith("."))


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip_all_properties(tmp_path, binary):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(500, 3)).astype(np.float32)
    f = rng.integers(0, 500, size=(900, 3)).astype(np.int32)
    c = rng.integers(0, 256, size=(500, 3)).astype(np.uint8)
    lab = rng.integers(-5, 1000, size=500).astype(np.int32)
    out = write_ply(tmp_path / "m.ply", v, f, c, lab, binary=binary)
    assert out.is_absolute() and out.exists()
    r = read_ply(out)
    assert r["vertices"].dtype == np.float32 and np.array_equal(r["vertices"], v)
    assert r["faces"].dtype == np.int32 and np.array_equal(r["faces"], f)
    assert r["colors"].dtype == np.uint8 and np.array_equal(r["colors"], c)
    assert r["labels"].dtype == np.int32 and np.array_equal(r["labels"], lab)
    head = out.read_bytes()[:300]
    assert (b"binary_little_endian" in head) == binary
    assert b"property int label" in head and b"property list uchar int vertex_indices" in head
    assert _leftovers(tmp_path) == []


def test_optional_parts_absent(tmp_path):
    v, *_ = _tetra()
    r = read_ply(write_ply(tmp_path / "pc.ply", v))
    assert np.array_equal(r["vertices"], v)
    assert r["faces"] is None and r["colors"] is None and r["labels"] is None
    # float colours in [0, 1] are scaled; an empty mesh is fine
    r = read_ply(write_ply(tmp_path / "fc.ply", v, colors=np.full((4, 3), 0.5)))
    assert np.all(r["colors"] == 128)
    r = read_ply(write_ply(tmp_path / "empty.ply", np.zeros((0, 3)), np.zeros((0, 3), int)))
    assert r["vertices"].shape == (0, 3) and r["faces"].shape == (0, 3)


def test_open3d_reads_what_we_write(tmp_path):
    import open3d as o3d
    v, f, c, lab = _tetra()
    for binary in (True, False):
        p = write_ply(tmp_path / f"t{binary}.ply", v, f, c, lab, binary=binary)
        m = o3d.io.read_triangle_mesh(str(p))
        assert len(m.vertices) == 4 and len(m.triangles) == 4
        assert np.allclose(np.asarray(m.vertices), v)
        assert np.array_equal(np.asarray(m.triangles), f)
        assert np.array_equal(np.round(np.asarray(m.vertex_colors) * 255).astype(np.uint8), c)


def test_reads_open3d_double_ascii_and_binary(tmp_path):
    import open3d as o3d
    m = o3d.geometry.TriangleMesh.create_sphere(radius=0.5, resolution=6)
    m.compute_vertex_normals()
    m.vertex_colors = o3d.utility.Vector3dVector(np.tile([[0.2, 0.4, 1.0]], (len(m.vertices), 1)))
    for ascii_ in (True, False):
        p = tmp_path / f"o3d{ascii_}.ply"
        assert o3d.io.write_triangle_mesh(str(p), m, write_ascii=ascii_)
        r = read_ply(p)
        assert np.allclose(r["vertices"], np.asarray(m.vertices), atol=1e-6)
        assert np.array_equal(r["faces"], np.asarray(m.triangles))
        assert np.array_equal(r["colors"][0], [51, 102, 255])
        assert "nx" in r["properties"]  # extra properties tolerated and exposed


def test_extra_elements_polygons_and_big_endian(tmp_path):
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], ">f8")
    body = v.tobytes()
    body += np.array([4], "u1").tobytes() + np.array([0, 1, 2, 3], ">i4").tobytes()   # a quad
    body += np.array([3], "u1").tobytes() + np.array([0, 1, 2], ">i4").tobytes()
    body += np.array([(0, 1)], dtype=[("a", ">i4"), ("b", ">i4")]).tobytes()        # an 'edge' element
    head = ("ply\nformat binary_big_endian 1.0\ncomment x\nelement vertex 4\nproperty double x\n"
            "property double y\nproperty double z\nelement face 2\nproperty list uchar int vertex_indices\n"
            "element edge 1\nproperty int vertex1\nproperty int vertex2\nend_header\n").encode()
    p = tmp_path / "be.ply"
    p.write_bytes(head + body)
    r = read_ply(p)
    assert np.array_equal(r["vertices"], v.astype(np.float32))
    assert r["faces"].tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2]]


def test_corrupt_and_truncated_files(tmp_path):
    v, f, c, lab = _tetra()
    good = write_ply(tmp_path / "g.ply", v, f, c, lab).read_bytes()
    cases = {
        "trunc.ply": good[:-5],
        "trunc_vertices.ply": good[: good.index(b"end_header") + 11 + 20],
        "nomagic.ply": b"plx" + good[3:],
        "noend.ply": good[:40],
        "badtype.ply": good.replace(b"property float x", b"property flaot x"),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(PlyError, match=name):
            read_ply(tmp_path / name)
    ascii_ = write_ply(tmp_path / "a.ply", v, f, binary=False).read_text()
    (tmp_path / "ascii_trunc.ply").write_text(ascii_[: ascii_.rindex("3 ")])
    with pytest.raises(PlyError, match="truncated"):
        read_ply(tmp_path / "ascii_trunc.ply")
    (tmp_path / "ascii_bad.ply").write_text(ascii_.replace("3 0 2 1", "3 0 2 1 x"))
    with pytest.raises(PlyError, match="corrupt"):
        read_ply(tmp_path / "ascii_bad.ply")
    with pytest.raises(FileNotFoundError):
        read_ply(tmp_path / "missing.ply")


def test_bad_arrays_rejected_before_writing(tmp_path):
    v, f, c, lab = _tetra()
    with pytest.raises(ValueError, match="vertices"):
        write_ply(tmp_path / "x.ply", v[:, :2])
    with pytest.raises(ValueError, match="face indices"):
        write_ply(tmp_path / "x.ply", v, f + 10)
    with pytest.raises(ValueError, match="colors"):
        write_ply(tmp_path / "x.ply", v, f, c[:2])
    with pytest.raises(ValueError, match="labels"):
        write_ply(tmp_path / "x.ply", v, f, labels=lab.astype(float))
    assert os.listdir(tmp_path) == []


class _FailingFile:
    """File wrapper that raises after ``limit`` bytes have been written."""

    def __init__(self, fh, limit):
        self.fh, self.left = fh, limit

    def write(self, data):
        if len(data) > self.left:
            self.fh.write(bytes(data)[: self.left])
            self.fh.flush()
            raise OSError(28, "No space left on device (injected)")
        self.left -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_atomic_write_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    v, f, c, lab = _tetra()
    target = tmp_path / "mesh.ply"
    target.write_bytes(b"previous content")
    real_open = atomic_io._open_temp_file
    monkeypatch.setattr(atomic_io, "_open_temp_file",
                        lambda fd, mode, **kw: _FailingFile(real_open(fd, mode, **kw), 200))
    with pytest.raises(MeshExportError, match="mesh.ply") as info:
        write_ply(target, v, f, c, lab)
    assert isinstance(info.value, OSError)
    assert target.read_bytes() == b"previous content"   # old file untouched
    assert _leftovers(tmp_path) == []                    # temp file removed
    new = tmp_path / "new.ply"
    with pytest.raises(MeshExportError, match="new.ply"):
        write_ply(new, v, f, c, lab)
    assert not new.exists() and _leftovers(tmp_path) == []


def test_unwritable_or_missing_directory(tmp_path, monkeypatch):
    v, f, *_ = _tetra()
    with pytest.raises(MeshExportError, match="does not exist"):
        write_ply(tmp_path / "nope" / "m.ply", v, f)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MeshExportError, match="not a directory"):
        write_ply(tmp_path / "afile" / "m.ply", v, f)
    # Permission bits do not stop root, so simulate the refusal of the filesystem.
    def deny(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(atomic_io.tempfile, "mkstemp", deny)
    with pytest.raises(MeshExportError, match="m.ply"):
        write_ply(tmp_path / "m.ply", v, f)
    assert not (tmp_path / "m.ply").exists()
    monkeypatch.undo()
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(MeshExportError, match="not writable"):
                write_ply(ro / "m.ply", v, f)
            assert os.listdir(ro) == []
        finally:
            ro.chmod(0o700)
