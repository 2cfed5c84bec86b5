"""The C kernels against their NumPy references (tinylm.kernels vs tinylm.kernels.reference).

Exact kernels (fp16 conversions, int8 matmul, quantization, linear_s8, softmax_s8) are compared bit
for bit; fp32 sums within a bound that grows with K (see `assert_matmul_close`).
Bad input, backend forcing and the missing-extension warning are in tests/test_kernels_api.py.
"""
import doctest
import mmap
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm import kernels
from tinylm.kernels import reference as ref

needs_c = pytest.mark.skipif(kernels.backend() != "c", reason="C kernels not built")
pytestmark = needs_c

FEW = settings(max_examples=25, deadline=None)
dims = st.integers(1, 300)                # M, N, K: odd sizes, 1, not multiples of SIMD widths


def bits32(a):
    return np.asarray(a, np.float32).view(np.uint32)


def rand_f32(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- fp16 <-> fp32: exact -------------------------------------------------------------------------

def test_f16_to_f32_is_bit_exact_for_all_65536_halves():
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    assert np.array_equal(bits32(kernels.f16_to_f32(h)), bits32(ref.f16_to_f32(h)))


def test_f32_to_f16_is_bit_exact_on_random_bit_patterns_and_every_half_boundary():
    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    # every half, and the floats just around every halfway point between neighbouring halves
    halves = np.arange(0x7C00, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    mid = bits32(halves) + (1 << 12)                            # halfway to the next half (exact tie)
    edges = np.concatenate([bits32(halves), mid - 1, mid, mid + 1])
    x = np.concatenate([random_bits, edges, edges | 0x80000000]).view(np.float32)
    assert np.array_equal(kernels.f32_to_f16(x).view(np.uint16), ref.f32_to_f16(x).view(np.uint16))


def test_f32_to_f16_rounds_half_to_even_saturates_to_inf_and_keeps_subnormals():
    x = np.array([1 + 2**-11, 1 + 3 * 2**-11, 65504, 65519.99, 65520, -1e9, 2**-24, 2**-25,
                  1.5 * 2**-24, np.inf, -0.0], np.float32)
    want = np.array([1, 1 + 2**-9, 65504, 65504, np.inf, -np.inf, 2**-24, 0, 2**-23, np.inf, -0.0],
                    np.float16)
    got = kernels.f32_to_f16(x)
    assert np.array_equal(got.view(np.uint16), want.view(np.uint16))


def test_nan_converts_to_a_quiet_nan_with_sign_and_payload_kept():
    x = np.array([0x7F800001, 0xFFC12345, 0x7FA00000], np.uint32).view(np.float32)
    h = kernels.f32_to_f16(x).view(np.uint16)
    assert [hex(v) for v in h] == ["0x7e00", "0xfe09", "0x7f00"]
    back = kernels.f16_to_f32(h.view(np.float16))
    assert [hex(v) for v in bits32(back)] == ["0x7fc00000", "0xffc12000", "0x7fe00000"]


# ---- fp32 / fp16 matmul: within a K-scaled bound -------------------------------------------------

def assert_matmul_close(y, x, w, b):
    """|y - y_exact| within the bound of tinylm_kernels.h (reference.matmul_tolerance).

    Why that bound holds: a float32 sum of K products has |error| <= K * u * sum|x_k w_k| with
    u = 2**-24 whatever the order of the additions (the classic gamma_K bound; fused multiply-adds
    only make it smaller). The bound allows twice that, plus one ulp for the rounding to float32."""
    exact = x.astype(np.float64) @ w.astype(np.float64).T + (0 if b is None else b)
    bound = ref.matmul_tolerance(x, w, b)
    err = np.abs(y.astype(np.float64) - exact)
    assert (err <= bound).all(), f"max error {err.max()} exceeds bound at {np.argmax(err - bound)}"


@FEW
@given(M=dims, N=dims, K=dims, with_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_matmul_f32_matches_reference_within_k_scaled_tolerance(M, N, K, with_bias, seed):
    rng = np.random.default_rng(seed)
    x, w = rand_f32(rng, (M, K)), rand_f32(rng, (N, K))
    b = rand_f32(rng, (N,)) if with_bias else None
    y = kernels.matmul_f32(x, w, b)
    assert y.shape == (M, N) and y.dtype == np.float32
    assert_matmul_close(y, x, w, b)


@FEW
@given(M=dims, N=dims, K=dims, with_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_matmul_f16_matches_reference_within_k_scaled_tolerance(M, N, K, with_bias, seed):
    rng = np.random.default_rng(seed)
    x, w = rand_f32(rng, (M, K)).astype(np.float16), rand_f32(rng, (N, K)).astype(np.float16)
    b = rand_f32(rng, (N,)) if with_bias else None
    y = kernels.matmul_f16(x, w, b)
    assert y.dtype == np.float32
    assert_matmul_close(y, x.astype(np.float32), w.astype(np.float32), b)


@pytest.mark.parametrize("M", [1, 7])                  # the dot-product path and the packed path
def test_matmul_with_k_longer_than_one_cache_block_accumulates_the_blocks(M):
    rng = np.random.default_rng(5)
    x, w, b = rand_f32(rng, (M, 1100)), rand_f32(rng, (19, 1100)), rand_f32(rng, (19,))
    assert_matmul_close(kernels.matmul_f32(x, w, b), x, w, b)
    xh, wh = x.astype(np.float16), w.astype(np.float16)
    assert_matmul_close(kernels.matmul_f16(xh, wh, b), xh.astype(np.float32), wh.astype(np.float32), b)


def test_matmul_f16_handles_subnormal_and_largest_halves():
    x = np.array([[2**-24, 2**-20, 1.0], [65504, -65504, 65504]], np.float16)   # 2**-24: subnormal
    w = np.array([[2**10, 2**4, -0.5], [1.0, 1.0, 0.5]], np.float16)
    y = kernels.matmul_f16(x, w)            # every product and partial sum is exact in float32
    np.testing.assert_array_equal(y, [[2**-14 + 2**-16 - 0.5, 2**-24 + 2**-20 + 0.5],
                                      [65504 * 1007.5, 32752]])
    assert_matmul_close(y, x.astype(np.float32), w.astype(np.float32), None)


@pytest.mark.parametrize("M", [3, 8])                  # the dot-product path and the packed path
def test_matmul_f32_propagates_nan_and_inf_like_ieee(M):
    x = np.ones((M, 2), np.float32)
    x[0, 1], x[1, 0] = np.nan, np.inf
    w = np.ones((9, 2), np.float32)
    y = kernels.matmul_f32(x, w)
    assert np.isnan(y[0]).all() and np.isposinf(y[1]).all() and (y[2:] == 2).all()


# ---- int8: exact ---------------------------------------------------------------------------------

@FEW
@given(M=dims, N=dims, K=dims, seed=st.integers(0, 2**16))
def test_matmul_s8_is_exact(M, N, K, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-127, 128, (M, K)).astype(np.int8)
    w = rng.integers(-127, 128, (N, K)).astype(np.int8)
    y = kernels.matmul_s8(x, w)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, ref.matmul_s8(x, w))


@pytest.mark.parametrize("M", [3, 7])         # few rows (w read as stored) and packed panels of w
def test_matmul_s8_at_saturation_reaches_the_largest_sums_exactly(M):
    K = 2400                                       # more than one block of columns (2300) when packed
    x = np.full((M, K), 127, np.int8)
    x[1] = -127
    w = np.full((9, K), 127, np.int8)
    w[4] = -127
    y = kernels.matmul_s8(x, w)
    assert y[0, 0] == 127 * 127 * K and y[1, 0] == -127 * 127 * K and y[1, 4] == 127 * 127 * K
    np.testing.assert_array_equal(y, ref.matmul_s8(x, w))


group_sizes = st.sampled_from([1, 2, 3, 7, 8, 16, 31, 32, 33, 64, 96, 128])


@FEW
@given(M=st.integers(1, 40), G=st.integers(1, 8), group_size=group_sizes, seed=st.integers(0, 2**16))
def test_quantize_and_dequantize_s8_are_bit_exact(M, G, group_size, seed):
    rng = np.random.default_rng(seed)
    K = G * group_size
    x = rand_f32(rng, (M, K), scale=10.0 ** rng.integers(-6, 6))
    q, scale = kernels.quantize_s8(x, group_size)
    q_ref, scale_ref = ref.quantize_s8(x, group_size)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(bits32(scale), bits32(scale_ref))
    assert q.min() >= -127 and scale.shape == (M, G)
    np.testing.assert_array_equal(bits32(kernels.dequantize_s8(q, scale)),
                                  bits32(ref.dequantize_s8(q, scale)))


def test_quantize_s8_rounds_half_to_even_and_maps_the_max_to_127():
    x = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -127.0, 3.49]], np.float32)  # scale = 1.0
    q, scale = kernels.quantize_s8(x, group_size=8)
    assert scale[0, 0] == 1.0
    assert q.tolist() == [[127, 0, 2, 2, 0, -2, -127, 3]]


def test_quantize_s8_special_groups_zero_tiny_nan_inf():
    x = np.array([[0, 0, 0, 0,  1e-45, 0, 0, 0,  1, np.nan, 2, 3,  1, -np.inf, 2, 3,  1, 2, 4, -8]],
                 np.float32)
    q, scale = kernels.quantize_s8(x, group_size=4)
    s = scale[0]
    assert s[0] == 0 and s[1] == 0 and np.isnan(s[2]) and np.isposinf(s[3]) and s[4] == np.float32(8) / 127
    assert (q[0, :16] == 0).all() and q[0, 16:].tolist() == [16, 32, 64, -127]
    q_ref, scale_ref = ref.quantize_s8(x, group_size=4)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(bits32(scale), bits32(scale_ref))
    deq = kernels.dequantize_s8(q, scale)[0]
    assert (deq[:8] == 0).all() and np.isnan(deq[8:16]).all()


@FEW
@given(M=st.integers(1, 40), N=st.integers(1, 70), G=st.integers(1, 6), group_size=group_sizes,
       with_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_s8_is_bit_exact_against_reference(M, N, G, group_size, with_bias, seed):
    rng = np.random.default_rng(seed)
    K = G * group_size
    x = rand_f32(rng, (M, K))
    w_q, w_scale = ref.quantize_s8(rand_f32(rng, (N, K)), group_size)
    b = rand_f32(rng, (N,)) if with_bias else None
    y = kernels.linear_s8(x, w_q, w_scale, b)
    np.testing.assert_array_equal(bits32(y), bits32(ref.linear_s8(x, w_q, w_scale, b)))


@pytest.mark.parametrize("M", [5, 7])                  # few rows of x, and packed panels of w
@pytest.mark.parametrize("group_size", [2, 3, 32])
def test_linear_s8_with_more_groups_than_one_chunk_is_bit_exact(group_size, M):
    rng = np.random.default_rng(6)
    K = 150 * group_size                                   # 150 groups: more than a chunk of 64
    x, b = rand_f32(rng, (M, K)), rand_f32(rng, (37,))     # 37 outputs: two panels of 32 and a tail
    w_q, w_scale = ref.quantize_s8(rand_f32(rng, (37, K)), group_size)
    y = kernels.linear_s8(x, w_q, w_scale, b)
    np.testing.assert_array_equal(bits32(y), bits32(ref.linear_s8(x, w_q, w_scale, b)))


@pytest.mark.parametrize("M", [3, 7])
def test_linear_s8_with_one_scale_per_row_and_a_long_k_is_bit_exact(M):
    rng = np.random.default_rng(7)
    K = 2400                                               # more than one packed block of columns
    x, b = rand_f32(rng, (M, K)), rand_f32(rng, (37,))
    w_q, w_scale = ref.quantize_s8(rand_f32(rng, (37, K)), K)
    for bias in (b, None):
        y = kernels.linear_s8(x, w_q, w_scale, bias)
        np.testing.assert_array_equal(bits32(y), bits32(ref.linear_s8(x, w_q, w_scale, bias)))


# A script run in a child process (a read past the end is a SIGSEGV, not an exception): int8 rows
# placed so that they end where a PROT_NONE page begins, then matmul_s8 on them, and linear_s8 with
# its quantized-x workspace x_q placed the same way (through cffi: the Python wrapper allocates x_q).
GUARD_PAGE_SCRIPT = """
import ctypes, mmap
import numpy as np
from tinylm import kernels
from tinylm.kernels import reference as ref

PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

def before_guard_page(n):    # n int8 whose last byte is the last one before an unreadable page
    buf = mmap.mmap(-1, 2 * PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    start = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert libc.mprotect(start + PAGE, PAGE, 0) == 0, ctypes.get_errno()     # PROT_NONE
    return np.frombuffer(buf, np.int8, count=n, offset=PAGE - n)

rng = np.random.default_rng(0)
ffi, lib = kernels._c()
for K, gs in [(1, 1), (2, 1), (2, 2), (3, 1), (3, 3)]:
    for M in (6, 7, 13):
        N = 33
        x = before_guard_page(M * K)
        x[:] = rng.integers(-127, 128, M * K)
        w = rng.integers(-127, 128, (N, K)).astype(np.int8)
        y = kernels.matmul_s8(x.reshape(M, K), w)
        assert (y == ref.matmul_s8(x.reshape(M, K), w)).all(), ("matmul_s8", M, K)

        xf = rng.standard_normal((M, K)).astype(np.float32)
        w_q, w_scale = ref.quantize_s8(rng.standard_normal((N, K)).astype(np.float32), gs)
        x_q, x_scale = before_guard_page(M * K), np.empty((M, K // gs), np.float32)
        y = np.empty((M, N), np.float32)
        lib.tinylm_linear_s8(ffi.from_buffer("float[]", xf), ffi.from_buffer("int8_t[]", w_q),
                             ffi.from_buffer("float[]", w_scale), ffi.NULL, ffi.from_buffer("float[]", y),
                             ffi.from_buffer("int8_t[]", x_q), ffi.from_buffer("float[]", x_scale),
                             M, N, K, gs)
        want = ref.linear_s8(xf, w_q, w_scale)
        assert (y.view(np.uint32) == want.view(np.uint32)).all(), ("linear_s8", M, K, gs)
print("ok")
"""


@pytest.mark.skipif(not hasattr(mmap, "PROT_READ"), reason="needs mmap protections (POSIX)")
def test_int8_kernels_with_k_below_4_never_read_past_the_end_of_x():
    """K in {1, 2, 3} with M >= 6 (the packed AVX-512 VNNI path reads x 4 bytes at a time): with x,
    and linear_s8's workspace x_q, ending right before an unreadable page, a read past their end
    kills the process with SIGSEGV; the results must also be exact."""
    run = subprocess.run([sys.executable, "-c", GUARD_PAGE_SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr[-2000:])


def test_linear_s8_is_close_to_the_float_layer_it_approximates():
    # an independent sanity check of the reference itself: int8 per-row/group quantization of
    # x and w has relative error ~ 1/254 per value, so the output error is a small fraction of |y|
    rng = np.random.default_rng(1)
    x, w, b = rand_f32(rng, (16, 256)), rand_f32(rng, (48, 256)), rand_f32(rng, (48,))
    w_q, w_scale = kernels.quantize_s8(w, 32)
    y = kernels.linear_s8(x, w_q, w_scale, b)
    exact = x @ w.T + b
    assert np.abs(y - exact).max() < 0.02 * np.abs(exact).max()


# ---- softmax -------------------------------------------------------------------------------------

def test_exp_approximation_max_relative_error_is_within_the_documented_bound():
    from tinylm._kernels import ffi, lib
    x = np.linspace(-87.3, 88.7, 2_000_003, dtype=np.float32)
    y = np.empty_like(x)
    lib.tinylm_exp_f32(ffi.cast("float *", x.ctypes.data), ffi.cast("float *", y.ctypes.data), x.size)
    exact = np.exp(x.astype(np.float64))
    assert (np.abs(y - exact) / exact).max() < ref.EXP_F32_REL_ERROR
    special = np.array([np.nan, -np.inf, np.inf, -100, 100, 0], np.float32)
    out = np.empty_like(special)
    lib.tinylm_exp_f32(ffi.cast("float *", special.ctypes.data), ffi.cast("float *", out.ctypes.data), 6)
    assert np.isnan(out[0]) and out[1:].tolist() == [0, np.inf, 0, np.inf, 1]


def test_exp_simd_lanes_give_the_same_bits_as_the_scalar_exp():
    # a call for fewer values than a vector takes the scalar tl_softmax_exp; a long call the SIMD lanes
    from tinylm._kernels import ffi, lib
    rng = np.random.default_rng(3)
    x = np.concatenate([np.linspace(-100, 100, 60_000), rng.standard_normal(20_000) * 40,
                        [np.nan, -np.inf, np.inf, -87.33, -87.32, 88.72, 88.73, -0.0, 1e-40]])
    x = x.astype(np.float32)
    simd, scalar = np.empty_like(x), np.empty_like(x)
    lib.tinylm_exp_f32(ffi.cast("float *", x.ctypes.data), ffi.cast("float *", simd.ctypes.data), x.size)
    for i in range(0, x.size, 7):
        n = min(7, x.size - i)
        lib.tinylm_exp_f32(ffi.cast("float *", x[i:].ctypes.data), ffi.cast("float *", scalar[i:].ctypes.data), n)
    np.testing.assert_array_equal(bits32(simd), bits32(scalar))


def test_softmax_f32_exponentials_are_the_bits_of_exp_f32():
    # a row (0, v): e = (1, exp(v)), so y[1] = exp(v) / (1 + exp(v)) in float32, whatever the
    # summation order; the SIMD softmax's own exponential must give exp_f32's bits
    from tinylm._kernels import ffi, lib
    v = np.concatenate([-np.geomspace(1e-8, 100, 20_000), [0.0, -87.33, -87.34, -np.inf]])
    v = v.astype(np.float32)
    e = np.empty_like(v)
    for i in range(0, v.size, 7):                              # the scalar exp (fewer than a vector)
        n = min(7, v.size - i)
        lib.tinylm_exp_f32(ffi.cast("float *", v[i:].ctypes.data), ffi.cast("float *", e[i:].ctypes.data), n)
    rows = np.stack([np.zeros_like(v), v], axis=1)             # (n, 2)
    y = kernels.softmax_f32(rows)
    np.testing.assert_array_equal(bits32(y[:, 1]), bits32(e / (np.float32(1) + e)))


def assert_softmax_close(y, y_ref):
    # own exp + another summation order: the bound of tinylm_kernels.h
    assert np.all(np.abs(y - y_ref) <= ref.SOFTMAX_F32_ATOL + ref.SOFTMAX_F32_RTOL * np.abs(y_ref)), \
        np.abs(y - y_ref).max()


@FEW
@given(rows=st.integers(1, 20), T=st.integers(1, 300), causal=st.booleans(),
       spread=st.sampled_from([0.01, 1.0, 30.0, 1e4]), seed=st.integers(0, 2**16))
def test_softmax_f32_matches_reference(rows, T, causal, spread, seed):
    rng = np.random.default_rng(seed)
    Tq = min(rows, T)
    x = rand_f32(rng, (2, Tq, T) if causal else (rows, T), scale=spread)
    y = kernels.softmax_f32(x, causal=causal)
    assert_softmax_close(y, ref.softmax_f32(x, causal=causal))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


def test_causal_softmax_masks_future_keys_with_a_kv_cache_offset():
    x = np.zeros((2, 5), np.float32)                   # 2 new queries, 5 keys (3 cached)
    y = kernels.softmax_f32(x, causal=True)
    np.testing.assert_allclose(y, [[0.25] * 4 + [0], [0.2] * 5], rtol=1e-6)
    assert y[0, 4] == 0.0


def test_softmax_f32_special_values_follow_the_contract():
    x = np.array([[1, np.nan, 2, 3], [1, np.inf, 2, 3], [-np.inf] * 4, [0, -np.inf, 0, -np.inf],
                  [1e30, -1e30, 1e30, 0]], np.float32)
    y = kernels.softmax_f32(x)
    assert np.isnan(y[:3]).all()
    assert y[3].tolist() == [0.5, 0, 0.5, 0] and y[4].tolist() == [0.5, 0, 0.5, 0]
    y_ref = ref.softmax_f32(x)
    assert np.array_equal(np.isnan(y), np.isnan(y_ref))


@FEW
@given(rows=st.integers(1, 20), T=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_softmax_f16_is_within_one_fp16_ulp_of_reference(rows, T, seed):
    rng = np.random.default_rng(seed)
    x = rand_f32(rng, (rows, T), scale=4.0).astype(np.float16)
    y, y_ref = kernels.softmax_f16(x), ref.softmax_f16(x)
    assert y.dtype == np.float16
    # both are non-negative halves, where adjacent bit patterns are adjacent values
    ulps = np.abs(y.view(np.uint16).astype(np.int32) - y_ref.view(np.uint16).astype(np.int32))
    assert ulps.max() <= ref.SOFTMAX_F16_ULPS


@FEW
@given(rows=st.integers(1, 20), T=st.integers(1, 400), scale=st.sampled_from([0.001, 0.03, 0.1, 1.0]),
       seed=st.integers(0, 2**16))
def test_softmax_s8_is_exact_and_within_1_over_256_of_float_softmax(rows, T, scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (rows, T)).astype(np.int8)
    y = kernels.softmax_s8(x, scale)
    assert y.dtype == np.uint8
    np.testing.assert_array_equal(y, ref.softmax_s8(x, scale))
    p = ref.softmax_f32(x.astype(np.float32) * np.float32(scale))
    assert np.abs(y / 256.0 - p).max() <= ref.SOFTMAX_S8_ERROR


def test_softmax_s8_saturates_a_certain_token_to_255():
    x = np.array([[127, -128, -128]], np.int8)
    assert kernels.softmax_s8(x, 1.0).tolist() == [[255, 0, 0]]


def test_reference_docstring_examples_hold():
    failures, _ = doctest.testmod(ref)
    assert failures == 0
    failures, _ = doctest.testmod(kernels)
    assert failures == 0
