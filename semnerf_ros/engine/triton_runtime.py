"""Triton where it is installed: the one guarded import that the package's kernels share
(``fields/hash_triton.py``, ``march_triton.py``).  CUDA builds of PyTorch bring Triton; CPU
installs usually lack it, and everything then runs the PyTorch reference paths."""
from __future__ import annotations

import functools

import torch

try:  # Triton is optional: only GPU installs have it.
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - depends on the install
    triton = None
    tl = None


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """True when Triton imports and a CUDA device is present."""
    return triton is not None and torch.cuda.is_available()


__all__ = ["available", "tl", "triton"]
