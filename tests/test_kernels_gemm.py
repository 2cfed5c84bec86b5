"""The blocked GEMMs: the AVX-512 fp32/fp16 matmul across its block edges, the cache sizes the build
passes to it, and the AMX-INT8 int8 kernels against the VNNI ones (the same bits) where the CPU and the
OS allow tiles. (Exactness against the NumPy references on random shapes is in tests/test_kernels.py.)"""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kernels import assert_matmul_close, bits32, rand_f32

from tinylm import kernels
from tinylm.kernels import reference as ref

pytestmark = pytest.mark.skipif(kernels.backend() != "c", reason="C kernels not built")
needs_amx = pytest.mark.skipif(kernels.backend() != "c" or not kernels.amx_available(),
                               reason="no AMX tiles (CPU, build or OS permission)")


@pytest.mark.parametrize("M, N, K", [(25, 300, 1100),      # row tiles of 12 + 1, 256-row blocks of w + 44,
                                     (12, 32, 512),        # column blocks of 512 + 76; one exact tile;
                                     (13, 257, 513),       # one past each edge
                                     (600, 40, 17)])
def test_matmul_f32_and_f16_add_every_block_of_the_packed_gemm(M, N, K):
    rng = np.random.default_rng(M + N + K)
    x, w, b = rand_f32(rng, (M, K)), rand_f32(rng, (N, K)), rand_f32(rng, (N,))
    assert_matmul_close(kernels.matmul_f32(x, w, b), x, w, b)
    xh, wh = x.astype(np.float16), w.astype(np.float16)
    assert_matmul_close(kernels.matmul_f16(xh, wh, b), xh.astype(np.float32), wh.astype(np.float32), b)


@pytest.mark.parametrize("M, N, K", [(5, 19, 45),         # few rows: the row-by-row loop
                                     (6, 32, 16),         # one tile, half used
                                     (25, 300, 1100),     # past the K blocks and a partial 32-column sliver
                                     (13, 400, 513),      # past an N block (384 or 256 columns)
                                     (600, 40, 17)])
def test_matmul_nn_f32_is_the_product_with_w_as_stored(M, N, K):
    """matmul_nn_f32(x, w) = x @ w with w (K, N): the bound of matmul_f32 against x @ (w.T).T."""
    rng = np.random.default_rng(M * N + K)
    x, w = rand_f32(rng, (M, K)), rand_f32(rng, (K, N))
    y = kernels.matmul_nn_f32(x, w)
    assert y.shape == (M, N) and y.dtype == np.float32
    assert_matmul_close(y, x, np.ascontiguousarray(w.T), None)


@pytest.mark.parametrize("M, N, K", [(5, 19, 45), (6, 32, 16), (25, 300, 1100), (13, 400, 513), (600, 40, 17)])
def test_matmul_tn_f32_is_the_product_with_x_transposed_as_stored(M, N, K):
    """matmul_tn_f32(x, w) = x.T @ w with x (K, M) and w (K, N): the bound of matmul_f32."""
    rng = np.random.default_rng(M + N * K)
    x, w = rand_f32(rng, (K, M)), rand_f32(rng, (K, N))
    y = kernels.matmul_tn_f32(x, w)
    assert y.shape == (M, N) and y.dtype == np.float32
    assert_matmul_close(y, np.ascontiguousarray(x.T), np.ascontiguousarray(w.T), None)


def test_matmul_nn_f32_propagates_nan_and_inf_like_ieee():
    rng = np.random.default_rng(3)
    x, w = rand_f32(rng, (20, 40)), rand_f32(rng, (40, 50))
    x[3, 7], w[5, 11] = np.nan, np.inf
    y = kernels.matmul_nn_f32(x, w)
    assert np.isnan(y[3]).all()                                  # a NaN in row 3 of x: all of row 3
    assert np.isinf(y[np.arange(20) != 3, 11]).all()             # an inf in w: its column, elsewhere
    assert np.isfinite(np.delete(np.delete(y, 3, axis=0), 11, axis=1)).all()


@pytest.mark.parametrize("threads", ["2", "3"])
def test_matmuls_split_across_threads_give_the_bits_of_one_thread(threads, monkeypatch):
    """matmul_f32, matmul_nn_f32 and matmul_f16 cut their rows into blocks at multiples of 12 rows, one per thread;
    tinylm_kernels.h promises the bits of a single call."""
    rng = np.random.default_rng(int(threads))
    x, w, wt, b = rand_f32(rng, (770, 200)), rand_f32(rng, (130, 200)), rand_f32(rng, (200, 130)), rand_f32(rng, (130,))
    monkeypatch.setenv("TINYLM_NUM_THREADS", "1")
    xh, wh = x.astype(np.float16), w.astype(np.float16)
    one = kernels.matmul_f32(x, w, b), kernels.matmul_nn_f32(x, wt), kernels.matmul_f16(xh, wh, b)
    blocks = []
    real = kernels.run_rows
    monkeypatch.setattr(kernels, "run_rows", lambda fn, rows, **kw: (blocks.append(rows), real(fn, rows, **kw)))
    monkeypatch.setenv("TINYLM_NUM_THREADS", threads)
    split = kernels.matmul_f32(x, w, b), kernels.matmul_nn_f32(x, wt), kernels.matmul_f16(xh, wh, b)
    assert blocks == [770, 770, 770]                             # all three went through the row split
    for a, c in zip(one, split):
        np.testing.assert_array_equal(bits32(a), bits32(c))


def test_simd_build_is_blocked_for_this_machines_caches():
    """kernels/build.py passes the L1D and L2 sizes it found (getconf on Linux) to a -march=native
    build; a portable build gets none (the Cortex-M builds never see them)."""
    flags = kernels.build_info()["flags"].split()
    if "-march=native" not in flags:
        assert not any(f.startswith("-DTL_L") for f in flags)
        return
    for name, define in (("LEVEL1_DCACHE_SIZE", "TL_L1D_BYTES"), ("LEVEL2_CACHE_SIZE", "TL_L2_BYTES")):
        try:
            size = subprocess.run(["getconf", name], capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            pytest.skip("no getconf here")
        if size.isdigit() and int(size) > 0 and not os.environ.get("TINYLM_" + define[3:]):
            assert f"-D{define}={size}" in flags


# ---- AMX-INT8 tiles against the AVX-512 VNNI kernels ------------------------------------------------

@needs_amx
@settings(max_examples=30, deadline=None)
@given(M=st.integers(16, 80), N=st.integers(1, 70), K=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_matmul_s8_amx_and_vnni_paths_give_identical_results(M, N, K, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-127, 128, (M, K)).astype(np.int8)
    w = rng.integers(-127, 128, (N, K)).astype(np.int8)
    tiles, vnni = kernels.matmul_s8(x, w), kernels.matmul_s8(x, w, amx=False)
    np.testing.assert_array_equal(tiles, vnni)
    np.testing.assert_array_equal(tiles, ref.matmul_s8(x, w))


@needs_amx
@settings(max_examples=30, deadline=None)
@given(M=st.integers(16, 70), N=st.integers(1, 70), G=st.integers(1, 6),
       group_size=st.sampled_from([4, 8, 20, 32, 60, 64, 128, 3, 33, 96]), with_bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_linear_s8_amx_and_vnni_paths_give_identical_bits(M, N, G, group_size, with_bias, seed):
    rng = np.random.default_rng(seed)
    K = G * group_size
    x = rand_f32(rng, (M, K))
    w_q, w_scale = ref.quantize_s8(rand_f32(rng, (N, K)), group_size)
    b = rand_f32(rng, (N,)) if with_bias else None
    tiles, vnni = kernels.linear_s8(x, w_q, w_scale, b), kernels.linear_s8(x, w_q, w_scale, b, amx=False)
    np.testing.assert_array_equal(bits32(tiles), bits32(vnni))
    np.testing.assert_array_equal(bits32(tiles), bits32(ref.linear_s8(x, w_q, w_scale, b)))


@needs_amx
@pytest.mark.parametrize("M, K", [(40, 4100), (16, 2048), (33, 2049)])   # K past one packed block
def test_amx_kernels_add_the_packed_blocks_of_a_long_k_exactly(M, K):
    rng = np.random.default_rng(K)
    x = np.full((M, K), 127, np.int8)
    x[1] = -127
    w = rng.integers(-127, 128, (37, K)).astype(np.int8)
    w[0] = 127
    y = kernels.matmul_s8(x, w)
    assert y[0, 0] == 127 * 127 * K and y[1, 0] == -127 * 127 * K
    np.testing.assert_array_equal(y, ref.matmul_s8(x, w))
    xf = rand_f32(rng, (M, K))
    for gs in (K, 64):
        if K % gs == 0:
            w_q, w_scale = ref.quantize_s8(rand_f32(rng, (37, K)), gs)
            np.testing.assert_array_equal(bits32(kernels.linear_s8(xf, w_q, w_scale)),
                                          bits32(ref.linear_s8(xf, w_q, w_scale)))


# A child process (a read past the end is a SIGSEGV): x ends where a PROT_NONE page begins, and the
# tiles read 64 bytes per row -- the last rows must come from a zero-padded copy.
GUARD_PAGE_SCRIPT = """
import ctypes, mmap
import numpy as np
from tinylm import kernels
from tinylm.kernels import reference as ref

assert kernels.amx_available()
PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

def before_guard_page(n):
    size = (n // PAGE + 2) * PAGE
    buf = mmap.mmap(-1, size, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    start = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert libc.mprotect(start + size - PAGE, PAGE, 0) == 0, ctypes.get_errno()
    return np.frombuffer(buf, np.int8, count=n, offset=size - PAGE - n)

rng = np.random.default_rng(0)
for M in (16, 17, 33):
    for K in (1, 3, 65, 130):
        x = before_guard_page(M * K)
        x[:] = rng.integers(-127, 128, M * K)
        w = rng.integers(-127, 128, (20, K)).astype(np.int8)
        assert (kernels.matmul_s8(x.reshape(M, K), w) == ref.matmul_s8(x.reshape(M, K), w)).all(), (M, K)
print("ok")
"""


@needs_amx
def test_amx_tiles_never_read_past_the_end_of_x():
    run = subprocess.run([sys.executable, "-c", GUARD_PAGE_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr[-2000:])
