"""JSON outputs: one sanitiser (:func:`to_jsonable`) and one atomic writer (:func:`write_json`)
for metrics, run records, summaries and metadata."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text

__all__ = ["to_jsonable", "write_json", "dumps"]


def to_jsonable(obj):
    """``obj`` as strict JSON values, recursively: NaN and infinities become None, numpy
    scalars and arrays Python numbers and lists, tuples and sets lists, paths strings,
    mapping keys strings; any other object its ``str()``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return str(obj)


def dumps(data, indent: int = 1, sort_keys: bool = False) -> str:
    """:func:`to_jsonable` then ``json.dumps`` (strict: no NaN literal), with a final newline."""
    return json.dumps(to_jsonable(data), indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json(path, data, indent: int = 1, sort_keys: bool = False) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (its folder is created); returns the
    absolute path."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, dumps(data, indent, sort_keys))
