"""The machine a benchmark ran on: the CPU model and the code paths the C kernels' build chose.

Every `python -m tinylm.bench SUITE` prints both first (tinylm/bench/__main__.py), so that a table
measured on another machine can be read: which CPU, and which of the kernels' variants ran.

    >>> kernel_paths("avx2 fma f16c portable", "-O3 -march=native", amx=False)[0]
    'matmul_f32/f16: AVX2 + FMA, 6 x 16 tiles on packed panels of w (M >= 6), 2 x 4 dots below'
"""
from __future__ import annotations

import os
import platform
import re
import subprocess


def cpu_model():
    """The CPU's model name, from lscpu (or /proc/cpuinfo, or platform)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return " ".join(line.split(":", 1)[1].split())
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gemm_blocks(flags):
    """(L1D bytes, L2 bytes, KC, NC) of the AVX-512 matmul: the -DTL_L1D_BYTES / -DTL_L2_BYTES the
    build passed (or the header's defaults) and the block sizes kernels/simd/matmul_avx512.h derives
    from them (the same formulas: MR = 12, NR = 32)."""
    def define(name, default):
        found = re.search(rf"-D{name}=(\d+)", flags or "")
        return int(found.group(1)) if found else default
    l1d, l2 = define("TL_L1D_BYTES", 32768), define("TL_L2_BYTES", 1048576)
    kc = min(512, max(64, l1d // 2 // (4 * 12) // 16 * 16))
    nc = max(32, min(l2 // 2, 524288) // (4 * kc) // 32 * 32)
    return l1d, l2, kc, nc


def kernel_paths(simd, flags, amx):
    """One line per kernel family: the variant this build runs (from tinylm_build_info's words, the
    compile flags and whether the OS granted AMX tiles), as the #if chains in kernels/*.c choose."""
    words = set((simd or "").split())
    lines = []
    if "avx512f" in words and "fma" in words:
        l1d, l2, kc, nc = _gemm_blocks(flags)
        lines.append(f"matmul_f32/f16: AVX-512, 12 x 32 tiles on packed x and w (M >= 6; blocks KC={kc}, "
                     f"NC={nc} for L1D {l1d // 1024} KB, L2 {l2 // 1024} KB), AVX2 dots below"
                     + ("" if "avx512bw" in words else " (fp16: AVX2 + F16C)"))
    elif "avx2" in words and "fma" in words:
        lines.append("matmul_f32/f16: AVX2 + FMA, 6 x 16 tiles on packed panels of w (M >= 6), 2 x 4 dots below")
    else:
        lines.append("matmul_f32/f16: portable C")
    if {"avx512f", "avx512bw", "avx512vnni"} <= words:
        s8 = "AVX-512 VNNI (VPDPBUSD), 6 x 32 tiles on packed w (M >= 6), 1 x 16 dots below"
        if "amx-int8" in words:
            s8 = ("AMX-INT8 tiles at M >= 16 (OS permission granted), " if amx else
                  "AMX-INT8 compiled in but the OS refused the tiles: ") + s8
        lines.append(f"matmul_s8/linear_s8: {s8}")
    else:
        isa = [w for w in ("avx2", "arm-mve", "arm-dsp") if w in words]
        lines.append(f"matmul_s8/linear_s8: {isa[0].upper() + ' dots' if isa else 'portable C'}")
    return lines


def describe():
    """The lines every benchmark prints first: the CPU, the C build and its kernels' paths."""
    from tinylm import kernels

    info = kernels.build_info()
    lines = [f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs)"]
    if info["backend"] != "c":
        return lines + ["kernels: NumPy references (the C extension is not in use)"]
    lines.append(f"kernels: C, SIMD {info['simd']}; flags {info['flags']}")
    lines += ["  " + line for line in kernel_paths(info["simd"], info["flags"], kernels.amx_available())]
    linear = "tinylm's matmul_f32 / _nn_f32 / _tn_f32" if kernels.gemm_f32_for_linear() else "NumPy's BLAS"
    return lines + [f"  training's Linear (y, dx, dW): {linear}; C matmuls on {kernels.num_threads()} thread(s) "
                    f"(rows split in a Python pool: TINYLM_NUM_THREADS, else OPENBLAS_NUM_THREADS)"]
