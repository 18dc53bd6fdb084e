"""Test-session settings.

One intra-op thread for torch (also for the node subprocesses, through
OMP_NUM_THREADS): the tests' tensors are tiny, and on a 2-core machine that is
busy with DDS, a training thread and pytest itself, OpenMP's spinning worker
threads make a training step 20x slower (1.3 s instead of 0.06 s measured).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency
    pass
