"""int4 against int8 Linear layers at batch 1 on GPT-2-124M's shapes, on this machine's C kernels.

    python benchmarks/int4_speed.py

Each layer is called 20 times per round, 7 rounds; the best round's mean is reported (the machine may
be shared: the minimum is the least disturbed). Weights are random, quantized with groups of 32.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinylm import kernels  # noqa: E402

SHAPES = [(2304, 768), (3072, 768), (768, 3072), (768, 768)]   # c_attn, c_fc, mlp c_proj, attn c_proj


def best_time(layer, x, rounds=7, calls=20):
    layer(x)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            layer(x)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def main():
    rng = np.random.default_rng(0)
    print(f"C kernels: {kernels.build_info()['simd']}")
    print("| N x K (batch 1) | int8 us | int4 us | int4 / int8 |\n|---|---:|---:|---:|")
    for N, K in SHAPES:
        w = rng.standard_normal((N, K)).astype(np.float32)
        x = rng.standard_normal((1, K)).astype(np.float32)
        t8 = best_time(kernels.LinearS8(*kernels.quantize_s8(w, 32)), x)
        t4 = best_time(kernels.LinearS4(*kernels.quantize_s4(w, 32)), x)
        print(f"| {N} x {K} | {t8 * 1e6:.0f} | {t4 * 1e6:.0f} | {t4 / t8:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
