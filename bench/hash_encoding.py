#!/usr/bin/env python3
"""Hash-encoding backends: agreement and speed (forward + backward).

Compares the pure-PyTorch path of :class:`semnerf_ros.engine.fields.encodings.HashEncoding`
with the fused Triton kernels on the same table and points, and times both
(median of repeated runs, CUDA-synchronised).  Writes JSON (``--out``).

    python bench/hash_encoding.py --points 262144 --out results/hash_encoding.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semnerf_ros.engine.fields.encodings import HashEncoding  # noqa: E402


def timed(fn, repeats: int, device) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return times[len(times) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=2 ** 18)
    ap.add_argument("--levels", type=int, default=16)
    ap.add_argument("--log2-table", type=int, default=19)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="bench_hash_encoding.json")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    enc = HashEncoding(n_levels=args.levels, log2_hashmap_size=args.log2_table, finest_resolution=2048,
                       backend="torch", init_scale=1.0).to(dev)
    x = torch.rand(args.points, 3, device=dev)
    g = torch.randn(args.points, enc.out_dim, device=dev)
    result = {"points": args.points, "levels": args.levels, "log2_table": args.log2_table,
              "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
              "torch": torch.__version__}

    def fwd_bwd():
        enc.table.grad = None
        (enc(x) * g).sum().backward()

    enc.backend = "torch"
    ref = enc(x).detach()
    fwd_bwd()
    ref_grad = enc.table.grad.clone()
    result["torch_forward_ms"] = timed(lambda: enc(x), args.repeats, dev)
    result["torch_forward_backward_ms"] = timed(fwd_bwd, args.repeats, dev)

    from semnerf_ros.engine.fields import hash_triton
    if dev.type == "cuda" and hash_triton.available():
        enc.backend = "triton"
        out = enc(x).detach()
        fwd_bwd()
        result["max_abs_diff_forward"] = float((out - ref).abs().max())
        result["max_abs_diff_grad"] = float((enc.table.grad - ref_grad).abs().max())
        result["triton_forward_ms"] = timed(lambda: enc(x), args.repeats, dev)
        result["triton_forward_backward_ms"] = timed(fwd_bwd, args.repeats, dev)
        result["speedup_forward_backward"] = result["torch_forward_backward_ms"] / result["triton_forward_backward_ms"]
    else:
        result["triton"] = "not available (needs CUDA and Triton)"
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
