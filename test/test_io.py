"""semnerf_ros.io: the one atomic writer and the one JSON sanitiser every output goes through."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from semnerf_ros.io import atomic, jsonio


def test_atomic_write_text_and_bytes_replace_whole_files(tmp_path):
    p = tmp_path / "a.txt"
    assert atomic.atomic_write_text(p, "one\n") == p.absolute()
    atomic.atomic_write_bytes(p, b"two\n")
    assert p.read_bytes() == b"two\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]      # no temporary file left


def test_atomic_write_names_the_missing_folder(tmp_path):
    with pytest.raises(atomic.AtomicWriteError, match="directory .*missing.* does not exist"):
        atomic.atomic_write_bytes(tmp_path / "missing" / "x.bin", b"x")


def test_atomic_output_failure_keeps_the_old_file(tmp_path):
    p = tmp_path / "keep.txt"
    p.write_text("old")
    with pytest.raises(atomic.AtomicWriteError, match="RuntimeError: half way"):
        with atomic.atomic_output(p, "w") as fh:
            fh.write("new, partial")
            raise RuntimeError("half way")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["keep.txt"]


def test_atomic_link_or_copy(tmp_path):
    src = tmp_path / "map_000010.pt"
    src.write_bytes(b"weights")
    dst = atomic.atomic_link_or_copy(src, tmp_path / "latest.pt")
    assert dst.read_bytes() == b"weights"
    src.write_bytes(b"")          # a hard link shares the data; a copy does not: both are valid
    (tmp_path / "map_000020.pt").write_bytes(b"newer")
    atomic.atomic_link_or_copy(tmp_path / "map_000020.pt", dst)
    assert dst.read_bytes() == b"newer"
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".")]


def test_to_jsonable_is_strict_json():
    data = {"nan": float("nan"), "inf": np.float32(np.inf), "f": np.float64(0.25), "i": np.int64(3),
            "arr": np.array([[1, 2]]), "t": (1, 2.0), "path": Path("/x/y"), 7: True, "none": None,
            "b": np.bool_(True)}
    out = jsonio.to_jsonable(data)
    assert out == {"nan": None, "inf": None, "f": 0.25, "i": 3, "arr": [[1, 2]], "t": [1, 2.0],
                   "path": "/x/y", "7": True, "none": None, "b": True}
    assert type(out["i"]) is int and type(out["f"]) is float
    json.dumps(out, allow_nan=False)


def test_write_json_creates_the_folder_and_reads_back(tmp_path):
    p = jsonio.write_json(tmp_path / "sub" / "m.json", [{"miou": math.nan, "step": np.int32(5)}])
    assert json.loads(p.read_text()) == [{"miou": None, "step": 5}]
    assert p.read_text().endswith("\n")
