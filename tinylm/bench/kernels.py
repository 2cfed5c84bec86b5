"""`python -m tinylm.bench kernels`: the C kernels against NumPy, side by side in one run.

    python -m tinylm.bench kernels                 # 512 x 512 x 512 matmuls, (512, 4096) softmax
    python -m tinylm.bench kernels --size 256 --repeats 3

For each kernel: the median time of the C kernel and of the NumPy way of computing the same thing,
measured alternately in the same process (absolute times are noisy on a shared machine; the ratio
is what to read; the best-of-repeats ratio is printed beside it), the C kernel's GFLOP/s (GOP/s for
int8: one multiply-add = 2 operations), and the speed target it is held to, with "met" / "NOT met".
Single-threaded: python -m tinylm.bench sets OPENBLAS_NUM_THREADS=1 (and OMP, MKL) when unset.

Baselines: NumPy's float32 matmul is BLAS (OpenBLAS or MKL); its float16 and integer matmuls are
plain loops without BLAS, so the ratios against those are large by nature. Where the CPU has AMX and
the OS grants the tiles, "matmul_s8 AMX" times the int8 matmul on tiles against its AVX-512 VNNI path.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from tinylm import kernels


def time_pair(fast, slow, repeats, slow_repeats=None):
    """(median of fast, median of slow, best of fast, best of slow) in seconds, the calls alternated
    so that both see the same machine load. The slow one may be repeated fewer times (NumPy's
    float16 matmul takes seconds)."""
    slow_repeats = repeats if slow_repeats is None else slow_repeats
    fast(), slow()                                   # warm up: page faults, caches, lazy imports
    fast_times, slow_times = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        fast()
        fast_times.append(time.perf_counter() - t0)
        if i < slow_repeats:
            t0 = time.perf_counter()
            slow()
            slow_times.append(time.perf_counter() - t0)
    return (float(np.median(fast_times)), float(np.median(slow_times)),
            float(np.min(fast_times)), float(np.min(slow_times)))


def numpy_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))   # (..., T)
    return e / e.sum(axis=-1, keepdims=True)


def run(size=512, T=4096, repeats=7, seed=0):
    """Rows of (kernel, shape, C s, baseline s, baseline name, ops, target ratio or None, best-of
    ratio): times are medians; the best-of ratio (fastest baseline / fastest C) is less sensitive
    to a busy machine."""
    rng = np.random.default_rng(seed)
    M = N = K = size
    x = rng.standard_normal((M, K)).astype(np.float32)           # (M, K) activations
    w = rng.standard_normal((N, K)).astype(np.float32)           # (N, K) like nn.Linear.weight
    xh, wh = x.astype(np.float16), w.astype(np.float16)
    xq, _ = kernels.quantize_s8(x, K)
    wq, ws = kernels.quantize_s8(w, K)                           # one scale per row
    wq32, ws32 = kernels.quantize_s8(w, 32) if K % 32 == 0 else (wq, ws)
    scores = rng.standard_normal((size, T)).astype(np.float32)   # (rows, T) attention scores
    mm_ops = 2 * M * N * K
    shape = f"{M}x{N}x{K}"
    rows = []

    best = {}

    def add(name, shape, fast, slow, baseline, ops, target, slow_repeats=None):
        t_c, t_np, best_c, best_np = time_pair(fast, slow, repeats, slow_repeats)
        rows.append((name, shape, t_c, t_np, baseline, ops, target, best_np / best_c))
        best[name] = best_c
        return t_c

    add("matmul_f32", shape, lambda: kernels.matmul_f32(x, w), lambda: x @ w.T,
                "numpy f32 matmul", mm_ops, 1.0)
    add("matmul_f16", shape, lambda: kernels.matmul_f16(xh, wh), lambda: xh @ wh.T,
        "numpy f16 matmul", mm_ops, 100.0, slow_repeats=min(repeats, 3))
    # f16 against our f32 in a pair of their own, alternated like every pair: timed beside NumPy's
    # 280 ms f16 matmul instead, the f16 calls would each follow a cache-flushing neighbour
    add("matmul_f16", shape, lambda: kernels.matmul_f16(xh, wh), lambda: kernels.matmul_f32(x, w),
        "our matmul_f32", mm_ops, 0.9)
    xq32, wq32_ = xq.astype(np.int32), wq.astype(np.int32)
    add("matmul_s8", shape, lambda: kernels.matmul_s8(xq, wq), lambda: xq32 @ wq32_.T,
        "numpy int32 matmul", mm_ops, 50.0, slow_repeats=min(repeats, 3))
    if kernels.backend() == "c" and kernels.amx_available() and M >= 16:   # the tiles against VNNI
        add("matmul_s8 AMX", shape, lambda: kernels.matmul_s8(xq, wq), lambda: kernels.matmul_s8(xq, wq, amx=False),
            "our s8 VNNI path", mm_ops, 3.0)
    add("linear_s8 g=K", shape, lambda: kernels.linear_s8(x, wq, ws), lambda: x @ w.T,
        "numpy f32 matmul", mm_ops, 2.0)
    add("linear_s8 g=32", shape, lambda: kernels.linear_s8(x, wq32, ws32), lambda: x @ w.T,
        "numpy f32 matmul", mm_ops, 2.5)
    add("softmax_f32", f"{size}x{T}", lambda: kernels.softmax_f32(scores), lambda: numpy_softmax(scores),
        "numpy exp/sum", 5 * size * T, 2.0)
    # without targets: a token at a time (generation), and the smaller formats
    x1 = x[:1].copy()
    add("matmul_f32 M=1", f"1x{N}x{K}", lambda: kernels.matmul_f32(x1, w), lambda: x1 @ w.T,
        "numpy f32 matmul", 2 * N * K, None)
    add("linear_s8 M=1 g=32", f"1x{N}x{K}", lambda: kernels.linear_s8(x1, wq32, ws32), lambda: x1 @ w.T,
        "numpy f32 matmul", 2 * N * K, None)
    layer = kernels.LinearS8(wq32, ws32)  # what a quantized model calls: weights checked once
    add("LinearS8 M=1 g=32", f"1x{N}x{K}", lambda: layer(x1), lambda: x1 @ w.T,
        "numpy f32 matmul", 2 * N * K, None)
    sh = scores.astype(np.float16)
    add("softmax_f16", f"{size}x{T}", lambda: kernels.softmax_f16(sh),
        lambda: numpy_softmax(sh.astype(np.float32)).astype(np.float16), "numpy exp/sum", 5 * size * T, None)
    s8 = kernels.quantize_s8(scores, T)[0]
    add("softmax_s8", f"{size}x{T}", lambda: kernels.softmax_s8(s8, 0.05),
        lambda: numpy_softmax(s8.astype(np.float32) * np.float32(0.05)), "numpy exp/sum", 5 * size * T, None)
    g = 32 if T % 32 == 0 else T
    add(f"quantize_s8 g={g}", f"{size}x{T}", lambda: kernels.quantize_s8(scores, g),
        lambda: kernels.reference.quantize_s8(scores, g), "numpy reference", 3 * size * T, None)
    return rows


def format_table(rows):
    lines = [f"{'kernel':<20} {'shape':<13} {'C ms':>9} {'base ms':>10}  {'baseline':<19} {'ratio':>8} "
             f"{'(best)':>8} {'GFLOP/s':>8}  target (on the median ratio)"]
    for name, shape, t_c, t_np, baseline, ops, target, best_ratio in rows:
        ratio = t_np / t_c
        verdict = "" if target is None else f">= {target:g}x  {'met' if ratio >= target else 'NOT met'}"
        lines.append(f"{name:<20} {shape:<13} {t_c * 1e3:9.3f} {t_np * 1e3:10.3f}  {baseline:<19} "
                     f"{ratio:7.2f}x {best_ratio:7.2f}x {ops / t_c * 1e-9:8.1f}  {verdict}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinylm.bench kernels",
                                     description="Time tinylm's C kernels against NumPy (single thread, "
                                                 "median of repeats, ratios measured side by side).")
    parser.add_argument("--size", type=int, default=512, help="M = N = K of the matmuls, rows of softmax")
    parser.add_argument("--T", type=int, default=4096, help="length of a softmax row")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per kernel (median reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    args = parser.parse_args(argv)
    if args.size < 1 or args.T < 1 or args.repeats < 1:
        parser.error("--size, --T and --repeats must be positive")
    info = kernels.build_info()           # (the CPU and the kernels' paths: printed by tinylm/bench/__main__.py)
    print(f"numpy {np.__version__}; threads OPENBLAS/OMP/MKL = {os.environ.get('OPENBLAS_NUM_THREADS')}/"
          f"{os.environ.get('OMP_NUM_THREADS')}/{os.environ.get('MKL_NUM_THREADS')}; median of "
          f"{args.repeats} (NumPy fp16/int matmuls: of {min(args.repeats, 3)}); ratio = baseline / C\n")
    if info["backend"] != "c":
        print("note: the C extension is not in use, the 'C' column times the NumPy references")
    print(format_table(run(args.size, args.T, args.repeats, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
