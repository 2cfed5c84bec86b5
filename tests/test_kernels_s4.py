"""int4 weights (tinylm_kernels.h, "int4 linear layer"): the packing, the quantizer's rounding, the
C kernels bit for bit against their NumPy references, and the Python boundary's guards.

The standalone C test (tests/test_kernels_c.py, portable and SIMD builds under ASan/UBSan) and the
emulated Cortex-M cores (tests/test_mcu.py) run the same kernels on the vectors of gen_vectors.py.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm import kernels
from tinylm.kernels import reference as ref

needs_c = pytest.mark.skipif(kernels.backend() != "c", reason="C kernels not built")
FEW = settings(max_examples=25, deadline=None)


def bits32(a):
    return np.asarray(a, np.float32).view(np.uint32)


def rand_f32(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- the format -----------------------------------------------------------------------------------

def test_pack_puts_column_j_low_and_j_plus_16_high_as_twos_complement():
    q = np.zeros((1, 64), np.int8)
    q[0, [0, 16, 1, 17, 15, 31]] = [1, -7, -1, 3, 7, -1]
    q[0, [32, 48]] = [-3, 2]                                   # the second block starts afresh
    packed = ref.pack_s4(q)
    assert packed.shape == (1, 32)
    assert packed[0, [0, 1, 15, 16]].tolist() == [0x91, 0x3F, 0xF7, 0x2D]
    assert np.array_equal(ref.unpack_s4(packed), q)


def test_every_byte_unpacks_to_two_values_in_minus8_to_7_and_packs_back():
    every = np.arange(256, dtype=np.uint8).reshape(16, 16)
    q = ref.unpack_s4(every)                                   # (16, 32)
    assert q.min() == -8 and q.max() == 7
    assert np.array_equal(ref.pack_s4(q), every)


def test_quantize_s4_uses_7_levels_each_side_and_rounds_half_to_even():
    # amax 7 -> scale exactly 1, so w / scale = w: the ties k + 0.5 show the rounding rule
    w = np.zeros((1, 32), np.float32)
    w[0, :8] = [7.0, -7.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5]
    w_q4, scale = kernels.quantize_s4(w, 32)
    assert scale.tolist() == [[1.0]]
    assert ref.unpack_s4(w_q4)[0, :8].tolist() == [7, -7, 0, 2, 2, 0, -2, -2]


def test_quantize_s4_never_produces_minus_8_and_zero_groups_get_scale_zero():
    rng = np.random.default_rng(0)
    w = rand_f32(rng, (16, 64), 5.0)
    w[3, :32] = 0
    w_q4, scale = kernels.quantize_s4(w, 32)
    q = ref.unpack_s4(w_q4)
    assert q.min() >= -7 and q.max() <= 7 and (np.abs(q) == 7).any()
    assert scale[3, 0] == 0 and not q[3, :32].any()


def test_int4_error_is_at_most_half_a_step_of_its_group():
    rng = np.random.default_rng(1)
    w = rand_f32(rng, (8, 96))
    w_q4, scale = kernels.quantize_s4(w, 32)
    err = np.abs(kernels.dequantize_s4(w_q4, scale) - w).reshape(8, 3, 32)
    assert (err <= scale[..., None] * (0.5 + 1e-6)).all()


# ---- C against the reference, bit for bit ---------------------------------------------------------

@needs_c
@FEW
@given(M=st.integers(1, 9), N=st.integers(1, 40), G=st.integers(1, 5),
       group_size=st.sampled_from([32, 64, 96, 160]), with_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_s4_is_bit_exact_against_reference(M, N, G, group_size, with_bias, seed):
    rng = np.random.default_rng(seed)
    K = G * group_size
    x, w = rand_f32(rng, (M, K), 3.0), rand_f32(rng, (N, K))
    b = rand_f32(rng, (N,)) if with_bias else None
    w_q4, scale = kernels.quantize_s4(w, group_size)
    y = kernels.linear_s4(x, w_q4, scale, b)
    assert np.array_equal(bits32(y), bits32(ref.linear_s4(x, w_q4, scale, b)))


@needs_c
@pytest.mark.parametrize("M", [1, 4])
def test_linear_s4_per_channel_on_a_gpt2_sized_row_is_bit_exact(M):
    rng = np.random.default_rng(2)
    x, w = rand_f32(rng, (M, 768)), rand_f32(rng, (37, 768))
    w_q4, scale = kernels.quantize_s4(w, 768)                  # one scale per output row
    y = kernels.linear_s4(x, w_q4, scale)
    assert np.array_equal(bits32(y), bits32(ref.linear_s4(x, w_q4, scale)))


@needs_c
@pytest.mark.parametrize("M, N, K, group_size", [(1, 16, 128, 32), (1, 50, 768, 32), (3, 33, 384, 96),
                                                 (2, 17, 256, 64), (1, 40, 640, 640), (1, 24, 3072, 32)])
def test_linear_s4_is_bit_exact_on_the_avx512_loops_shapes(M, N, K, group_size):
    """N >= 16 and K a multiple of 128: what simd/linear_s4_avx512.h takes on a VNNI machine (N % 16
    != 0 overlaps the last 16 columns; a group of 96 straddles its 128-column steps)."""
    rng = np.random.default_rng(K + N)
    x, w = rand_f32(rng, (M, K), 3.0), rand_f32(rng, (N, K))
    w[3] = 0.0                                                   # a row of zero groups (scale 0)
    b = rand_f32(rng, (N,))
    w_q4, scale = kernels.quantize_s4(w, group_size)
    for bias in (b, None):
        y = kernels.linear_s4(x, w_q4, scale, bias)
        assert np.array_equal(bits32(y), bits32(ref.linear_s4(x, w_q4, scale, bias)))


@needs_c
def test_linear_s4_extreme_values_do_not_saturate():
    """every activation quantizes to 127 and every weight to -7 (or 7): the largest int32 dots"""
    K, N = 3072, 32
    x = np.ones((1, K), np.float32)
    w = np.full((N, K), -1.0, np.float32)
    w[::2] = 1.0
    w_q4, scale = kernels.quantize_s4(w, 32)
    y = kernels.linear_s4(x, w_q4, scale)
    assert np.array_equal(bits32(y), bits32(ref.linear_s4(x, w_q4, scale)))
    assert np.allclose(y[0, ::2], K, rtol=1e-5) and np.allclose(y[0, 1::2], -K, rtol=1e-5)


def test_linear_s4_is_linear_s8_on_the_unpacked_weights():
    """The contract: int4 follows int8's rule, only the storage differs."""
    rng = np.random.default_rng(3)
    x, w = rand_f32(rng, (3, 64)), rand_f32(rng, (11, 64))
    w_q4, scale = kernels.quantize_s4(w, 32)
    y4 = kernels.linear_s4(x, w_q4, scale)
    y8 = kernels.linear_s8(x, ref.unpack_s4(w_q4), scale)
    assert np.array_equal(bits32(y4), bits32(y8))


def test_a_swapped_nibble_order_changes_the_output():
    """The golden comparison can fail: reading the nibbles the other way round gives other bits."""
    rng = np.random.default_rng(4)
    x, w = rand_f32(rng, (2, 64)), rand_f32(rng, (9, 64))
    w_q4, scale = kernels.quantize_s4(w, 32)
    swapped = ((w_q4 >> 4) | (w_q4 << 4)).astype(np.uint8)     # column j + 16 read as column j
    assert not np.array_equal(kernels.linear_s4(x, swapped, scale), kernels.linear_s4(x, w_q4, scale))


@needs_c
def test_dequantize_s4_is_bit_exact_against_reference():
    rng = np.random.default_rng(5)
    w_q4, scale = kernels.quantize_s4(rand_f32(rng, (13, 192)), 64)
    assert np.array_equal(bits32(kernels.dequantize_s4(w_q4, scale)), bits32(ref.dequantize_s4(w_q4, scale)))


def test_int4_layer_is_close_to_the_float_layer_but_worse_than_int8():
    rng = np.random.default_rng(6)
    x, w = rand_f32(rng, (16, 256)), rand_f32(rng, (64, 256))
    exact = x @ w.T
    y4 = kernels.linear_s4(x, *kernels.quantize_s4(w, 32))
    y8 = kernels.linear_s8(x, *kernels.quantize_s8(w, 32))
    rel4 = np.linalg.norm(y4 - exact) / np.linalg.norm(exact)
    rel8 = np.linalg.norm(y8 - exact) / np.linalg.norm(exact)
    assert rel8 < rel4 < 0.15


# ---- the boundary ---------------------------------------------------------------------------------

def test_a_minus_8_nibble_is_refused():
    scale = np.ones((1, 1), np.float32)
    for byte in (0x08, 0x80):
        w_q4 = np.zeros((1, 16), np.uint8)
        w_q4[0, 5] = byte
        with pytest.raises(ValueError, match="0x8"):
            kernels.LinearS4(w_q4, scale)


def test_groups_not_multiple_of_32_and_wrong_dtypes_are_refused():
    w = np.zeros((2, 48), np.float32)
    with pytest.raises(ValueError, match="multiple of 32"):
        kernels.quantize_s4(w, 16)
    with pytest.raises(ValueError, match="multiple of 32"):
        kernels.quantize_s4(w, 48)
    with pytest.raises(ValueError, match="multiple of 32"):
        kernels.LinearS4(np.zeros((2, 8), np.uint8), np.ones((2, 1), np.float32))
    with pytest.raises(TypeError, match="uint8"):
        kernels.linear_s4(np.zeros((1, 32), np.float32), np.zeros((2, 16), np.int8), np.ones((2, 1), np.float32))
    with pytest.raises(TypeError, match="float32"):
        kernels.quantize_s4(w.astype(np.float64), 32)


def test_x_with_the_wrong_k_is_refused_and_the_weights_cannot_change():
    layer = kernels.LinearS4(np.zeros((2, 16), np.uint8), np.ones((2, 1), np.float32))
    with pytest.raises(ValueError, match="K=32"):
        layer(np.zeros((1, 30), np.float32))
    with pytest.raises(ValueError, match="read-only"):
        layer.w_q4[0, 0] = 1


def test_the_int4_vs_int8_bench_times_both_kernels_per_shape():
    """`python -m tinylm.bench quant --int4` (the speed comparison; the bench prints, no test times)"""
    from tinylm.bench.quant import GPT2_SHAPES, bench_int4_vs_int8

    assert (768, 768) in GPT2_SHAPES and (50257, 768) in GPT2_SHAPES
    rows = bench_int4_vs_int8([(16, 128), (40, 256)], repeats=1)
    assert [shape for shape, _, _ in rows] == [(16, 128), (40, 256)]
    assert all(t8 > 0 and t4 > 0 for _, t8, t4 in rows)
