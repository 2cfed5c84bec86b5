"""tinylm.kernels at its Python boundary: bad input is refused with clear errors before reaching C,
views are accepted, the backend can be forced to NumPy, and a missing extension warns once."""
import re
import warnings

import numpy as np
import pytest

from tinylm import kernels
from tinylm.kernels import reference as ref

f32, f16, i8 = np.float32, np.float16, np.int8


def ones(shape, dtype=f32):
    return np.ones(shape, dtype)


# (call, exception, words the message must contain) for every public function
BAD_INPUTS = [
    (lambda: kernels.f32_to_f16(np.ones(3)), TypeError, "f32_to_f16: x has dtype float64; expected float32"),
    (lambda: kernels.f16_to_f32(ones(3)), TypeError, "f16_to_f32: h has dtype float32; expected float16"),
    (lambda: kernels.matmul_f32(ones((2, 4)), ones((3, 5))), ValueError,
     "matmul_f32: w has shape (3, 5); expected (N, 4) to match x's K=4"),
    (lambda: kernels.matmul_f32(ones((2, 4), np.float64), ones((3, 4))), TypeError,
     "matmul_f32: x has dtype float64; expected float32"),
    (lambda: kernels.matmul_f32(ones(4), ones((3, 4))), ValueError, "matmul_f32: x has shape (4,); expected 2"),
    (lambda: kernels.matmul_f32(ones((2, 4)), ones((3, 4)), ones(4)), ValueError,
     "matmul_f32: b has shape (4,); expected (3,)"),
    (lambda: kernels.matmul_f32(ones((2, 4)), ones((3, 4)), ones(3, f16)), TypeError,
     "matmul_f32: b has dtype float16; expected float32"),
    (lambda: kernels.matmul_nn_f32(ones((2, 4)), ones((3, 4))), ValueError,
     "matmul_nn_f32: w has shape (3, 4); expected (4, N) to match x's K=4"),
    (lambda: kernels.matmul_nn_f32(ones((2, 4)), ones((4, 3), f16)), TypeError,
     "matmul_nn_f32: w has dtype float16; expected float32"),
    (lambda: kernels.matmul_nn_f32(ones((2, 2, 4)), ones((4, 3))), ValueError,
     "matmul_nn_f32: x has shape (2, 2, 4); expected 2 dimensions"),
    (lambda: kernels.matmul_tn_f32(ones((4, 2)), ones((3, 5))), ValueError,
     "matmul_tn_f32: w has shape (3, 5); expected (4, N) to match x's K=4"),
    (lambda: kernels.matmul_tn_f32(ones((4, 2), np.float64), ones((4, 5))), TypeError,
     "matmul_tn_f32: x has dtype float64; expected float32"),
    (lambda: kernels.matmul_f16(ones((2, 4)), ones((3, 4), f16)), TypeError,
     "matmul_f16: x has dtype float32; expected float16"),
    (lambda: kernels.matmul_f16(ones((2, 4), f16), ones((3, 2), f16)), ValueError,
     "matmul_f16: w has shape (3, 2); expected (N, 4)"),
    (lambda: kernels.matmul_s8(ones((2, 4), i8), ones((3, 4), np.int16)), TypeError,
     "matmul_s8: w has dtype int16; expected int8"),
    (lambda: kernels.matmul_s8(np.full((2, 4), -128, i8), ones((3, 4), i8)), ValueError,
     "matmul_s8: x contains -128; expected int8 values in [-127, 127]"),
    (lambda: kernels.matmul_s8(ones((1, 200_000), i8), ones((1, 200_000), i8)), ValueError,
     "matmul_s8: K is 200000; expected at most 133144"),
    (lambda: kernels.quantize_s8(ones((2, 10)), 4), ValueError,
     "quantize_s8: group_size=4 does not divide K=10"),
    (lambda: kernels.quantize_s8(ones((2, 10)), 0), ValueError, "quantize_s8: group_size=0"),
    (lambda: kernels.quantize_s8(ones((2, 10)), 2.0), TypeError,
     "quantize_s8: group_size is 2.0; expected a positive int"),
    (lambda: kernels.quantize_s8(ones((2, 10), np.float64), 2), TypeError, "quantize_s8: x has dtype float64"),
    (lambda: kernels.quantize_s8(ones(10), 2), ValueError, "quantize_s8: x has shape (10,); expected 2 dimensions"),
    (lambda: kernels.quantize_s8(ones((3, 0)), 1), ValueError, "quantize_s8: x has K=0 columns; expected K >= 1"),
    (lambda: kernels.linear_s8(ones((2, 0)), ones((3, 0), i8), ones((3, 1))), ValueError, "linear_s8: K=0 columns"),
    (lambda: kernels.dequantize_s8(ones((2, 8), i8), ones((2, 3))), ValueError,
     "dequantize_s8: scale has shape (2, 3); expected (2, G) with G dividing K=8"),
    (lambda: kernels.dequantize_s8(ones((2, 8)), ones((2, 2))), TypeError,
     "dequantize_s8: q has dtype float32; expected int8"),
    (lambda: kernels.linear_s8(ones((2, 8)), ones((3, 8), i8), ones((3, 3))), ValueError,
     "linear_s8: w_scale has shape (3, 3); expected (3, G) with G dividing K=8"),
    (lambda: kernels.linear_s8(ones((2, 8)), ones((3, 6), i8), ones((3, 2))), ValueError,
     "linear_s8: w_q has shape (3, 6); expected (N, 8) to match x's K=8"),
    (lambda: kernels.linear_s8(ones((2, 8), f16), ones((3, 8), i8), ones((3, 2))), TypeError,
     "linear_s8: x has dtype float16; expected float32"),
    (lambda: kernels.linear_s8(ones((2, 8)), ones((3, 8), i8), ones((3, 2)), ones(2)), ValueError,
     "linear_s8: b has shape (2,); expected (3,)"),
    (lambda: kernels.linear_s8(ones((2, 8)), np.full((3, 8), -128, i8), ones((3, 2))), ValueError,
     "linear_s8: w_q contains -128"),
    (lambda: kernels.LinearS8(np.full((3, 8), -128, i8), ones((3, 2))), ValueError, "linear_s8: w_q contains -128"),
    (lambda: kernels.LinearS8(ones((3, 8), i8), ones((3, 2)))(ones((2, 6))), ValueError,
     "linear_s8: x has shape (2, 6); expected (M, 8) to match w_q's K=8"),
    (lambda: kernels.LinearS8(ones((3, 8), i8), ones((3, 2)))(ones((2, 8), np.float64)), TypeError,
     "linear_s8: x has dtype float64; expected float32"),
    (lambda: kernels.LinearS8(ones((3, 8), i8), ones((3, 2)))(ones((2, 8)), ones(4)), ValueError,
     "linear_s8: b has shape (4,); expected (3,)"),
    (lambda: kernels.softmax_f32(ones((2, 3), np.float64)), TypeError,
     "softmax_f32: x has dtype float64; expected float32"),
    (lambda: kernels.softmax_f32(ones((2, 0))), ValueError,
     "softmax_f32: x has shape (2, 0); expected (..., T) with T >= 1"),
    (lambda: kernels.softmax_f32(ones((4, 3)), causal=True), ValueError, "Tk >= Tq"),
    (lambda: kernels.softmax_f32(ones(3), causal=True), ValueError, "score matrices (..., Tq, Tk)"),
    (lambda: kernels.softmax_f16(ones((2, 3))), TypeError, "softmax_f16: x has dtype float32; expected float16"),
    (lambda: kernels.softmax_s8(ones((2, 3)), 0.1), TypeError, "softmax_s8: x has dtype float32; expected int8"),
    (lambda: kernels.softmax_s8(ones((2, 3), i8), 0.0), ValueError,
     "softmax_s8: scale is 0.0; expected a positive finite float"),
    (lambda: kernels.softmax_s8(ones((2, 3), i8), float("nan")), ValueError, "softmax_s8: scale is nan"),
    (lambda: kernels.softmax_s8(ones((2, 3), i8), "0.1"), TypeError,
     "softmax_s8: scale is '0.1'; expected a positive float"),
    (lambda: kernels.sdpa_f32(ones((1, 2, 3, 4), np.float64), ones((1, 2, 3, 4)), ones((1, 2, 3, 4))), TypeError,
     "sdpa_f32: q has dtype float64; expected float32"),
    (lambda: kernels.sdpa_f32(ones((2, 3, 4)), ones((2, 3, 4)), ones((2, 3, 4))), ValueError,
     "sdpa_f32: q has shape (2, 3, 4); expected (B, nh, T, hs)"),
    (lambda: kernels.sdpa_f32(ones((1, 2, 3, 4)), ones((1, 2, 3, 5)), ones((1, 2, 3, 5))), ValueError,
     "sdpa_f32: k has shape (1, 2, 3, 5); expected (1, 2, Tk, 4)"),
    (lambda: kernels.sdpa_f32(ones((1, 2, 3, 4)), ones((1, 2, 3, 4)), ones((1, 2, 6, 4))), ValueError,
     "sdpa_f32: v has shape (1, 2, 6, 4); expected (1, 2, 3, 4)"),
    (lambda: kernels.sdpa_f32(ones((1, 2, 5, 4)), ones((1, 2, 3, 4)), ones((1, 2, 3, 4))), ValueError,
     "Tq <= Tk (causal)"),
    (lambda: kernels.sdpa_f32(ones((1, 2, 3, 4)), ones((1, 2, 3, 4)), ones((1, 2, 3, 4)),
                              out=ones((1, 2, 3, 8))[..., ::2]), ValueError,
     "sdpa_f32: out must be a writeable view whose last axis is contiguous"),
    (lambda: kernels.sdpa_backward_f32(ones((1, 2, 3, 4)), ones((1, 2, 3, 4)), ones((1, 2, 3, 4)), ones((1, 2, 3, 4)),
                                       ones((1, 2, 3, 4))), ValueError,
     "sdpa_backward_f32: p has shape (1, 2, 3, 4); expected (1, 2, 3, 3) (the forward's probabilities)"),
    (lambda: kernels.sdpa_backward_f32(ones((1, 2, 3, 4)), ones((1, 2, 3, 4)), ones((1, 2, 3, 4)), ones((1, 2, 3, 3)),
                                       ones((1, 2, 3, 4)), dk=ones((1, 2, 4, 4))), ValueError,
     "sdpa_backward_f32: dk has shape (1, 2, 4, 4); expected (1, 2, 3, 4)"),
]


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("call, error, words", BAD_INPUTS, ids=[w[:40] for _, _, w in BAD_INPUTS])
def test_bad_input_is_refused_with_a_message_naming_the_argument(call, error, words, backend, monkeypatch):
    monkeypatch.setenv("TINYLM_KERNELS", backend)
    with pytest.raises(error, match=re.escape(words)):
        call()


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_linear_s8_checked_once_gives_linear_s8s_bits_and_its_weights_cannot_change(backend, monkeypatch):
    monkeypatch.setenv("TINYLM_KERNELS", backend)
    rng = np.random.default_rng(3)
    w_q = rng.integers(-127, 128, (24, 64)).astype(i8)
    w_scale = rng.random((24, 2)).astype(f32)
    b = rng.standard_normal(24).astype(f32)
    layer = kernels.LinearS8(w_q, w_scale)
    for m in (1, 7):                                     # the batch-1 path and the packed one
        x = rng.standard_normal((m, 64)).astype(f32)
        for bias in (None, b):
            np.testing.assert_array_equal(layer(x, bias), kernels.linear_s8(x, w_q, w_scale, bias))
    with pytest.raises(ValueError, match="read-only"):
        layer.w_q[0, 0] = -128                           # what was checked stays as it was checked
    assert w_q.flags.writeable and layer.w_q.base is w_q  # a view: the caller's array is neither copied nor frozen


def test_non_contiguous_views_give_the_same_result_as_copies():
    rng = np.random.default_rng(0)
    big = rng.standard_normal((40, 60)).astype(f32)
    x, w = big[::2, :33], big[1::2, 10:43].T.copy().T      # a strided slice, a Fortran-ordered array
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    np.testing.assert_array_equal(kernels.matmul_f32(x, w), kernels.matmul_f32(x.copy(), w.copy()))
    np.testing.assert_array_equal(kernels.softmax_f32(big.T), kernels.softmax_f32(big.T.copy()))
    q, s = kernels.quantize_s8(big[:, ::3], 4)
    q2, s2 = kernels.quantize_s8(big[:, ::3].copy(), 4)
    assert np.array_equal(q, q2) and np.array_equal(s, s2)


def test_forcing_numpy_backend_with_the_environment_variable(monkeypatch):
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    assert kernels.backend() == "numpy"
    calls = []
    monkeypatch.setattr(ref, "matmul_s8", lambda x, w: calls.append(1) or np.zeros((1, 1), np.int32))
    kernels.matmul_s8(ones((1, 2), i8), ones((1, 2), i8))
    assert calls == [1]                                    # the NumPy reference did the work
    monkeypatch.setenv("TINYLM_KERNELS", "fortran")
    with pytest.raises(ValueError, match="TINYLM_KERNELS='fortran'; expected 'c', 'numpy' or unset"):
        kernels.backend()


def test_numpy_backend_gives_the_same_exact_results(monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 64)).astype(f32)
    w_q, w_scale = ref.quantize_s8(rng.standard_normal((7, 64)).astype(f32), 32)
    y_default = kernels.linear_s8(x, w_q, w_scale)
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    np.testing.assert_array_equal(kernels.linear_s8(x, w_q, w_scale), y_default)


def test_missing_extension_warns_once_and_falls_back_to_numpy(monkeypatch):
    def no_extension():
        raise ImportError("No module named 'tinylm._kernels'")

    monkeypatch.delenv("TINYLM_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "_load_extension", no_extension)
    monkeypatch.setattr(kernels, "_extension_cache", [])
    monkeypatch.setattr(kernels, "_warned", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert kernels.backend() == "numpy"
        y = kernels.matmul_f32(ones((2, 3)), ones((4, 3)))
        kernels.softmax_f32(ones((2, 3)))
    assert (y == 3).all()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "C kernels are not available" in messages[0]
    assert kernels.build_info()["flags"] is None


@pytest.mark.skipif(kernels.backend() != "c", reason="C kernels not built")
def test_build_info_reports_strict_c99_flags_and_simd_paths():
    info = kernels.build_info()
    assert info["backend"] == "c"
    assert "-std=c99" in info["flags"] and "-Werror" in info["flags"]
    assert info["simd"].endswith("portable")


def test_tinylm_info_prints_backend_flags_simd_and_environment(capsys, monkeypatch):
    from tinylm import cli

    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "kernels: numpy" in out and "SIMD paths:" in out and "TINYLM_KERNELS=numpy" in out
    if kernels._extension() is not None:
        assert "-std=c99" in out


def test_kernel_benchmark_prints_a_table_with_ratios_and_targets(capsys):
    from tinylm.bench import kernels as bench

    assert bench.main(["--size", "24", "--T", "40", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    header, *rows = out[out.index("kernel "):].strip().splitlines()
    assert header.split()[:4] == ["kernel", "shape", "C", "ms"]
    amx = kernels.backend() == "c" and kernels.amx_available()    # + the AMX-against-VNNI row
    assert len(rows) == 13 + amx and any("matmul_f32" in r and ">= 1x" in r for r in rows)
    assert any(r.startswith("matmul_s8 AMX") and ">= 3x" in r for r in rows) == amx
    verdicts = 0
    for row in rows:  # a verdict must follow from the printed median ratio and target
        if ">=" not in row:
            continue
        ratio = float(next(w for w in row.split() if w.endswith("x"))[:-1])  # the median ratio, e.g. 0.48x
        target = float(row.split(">=")[1].split("x")[0])
        assert row.rstrip().endswith("NOT met" if ratio < target else " met"), row
        verdicts += 1
    assert verdicts == 7 + amx


def test_every_bench_suite_prints_the_cpu_model_and_kernel_paths_once(capsys):
    from tinylm.bench.__main__ import main
    from tinylm.bench.machine import cpu_model

    assert main(["kernels", "--size", "16", "--T", "16", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("CPU: ") == 1 and f"CPU: {cpu_model()}" in out
    assert out.count("matmul_f32/f16: ") == 1 and out.count("matmul_s8/linear_s8: ") == 1


def test_kernel_paths_name_the_variant_each_build_chooses():
    from tinylm.bench.machine import kernel_paths

    assert kernel_paths("portable", "-O3", amx=False) == ["matmul_f32/f16: portable C",
                                                          "matmul_s8/linear_s8: portable C"]
    zen4 = kernel_paths("avx512f avx512bw avx512vnni avx2 fma f16c portable",
                        "-march=native -DTL_L1D_BYTES=32768 -DTL_L2_BYTES=1048576", amx=False)
    assert "KC=336, NC=384 for L1D 32 KB, L2 1024 KB" in zen4[0] and "AMX" not in zen4[1]
    xeon = kernel_paths("avx512f avx512bw avx512vnni amx-int8 avx2 fma f16c portable",
                        "-march=native -DTL_L1D_BYTES=49152 -DTL_L2_BYTES=2097152", amx=True)
    assert "KC=512, NC=256" in xeon[0] and xeon[1].startswith("matmul_s8/linear_s8: AMX-INT8 tiles at M >= 16")
    refused = kernel_paths("avx512f avx512bw avx512vnni amx-int8 avx2 fma portable", "", amx=False)
    assert "the OS refused the tiles" in refused[1]


def test_bench_header_names_the_path_of_training_linear_and_the_thread_count(monkeypatch):
    from tinylm.bench.machine import describe

    monkeypatch.setenv("TINYLM_NUM_THREADS", "3")
    lines = [line for line in describe() if "training's Linear" in line]
    if kernels.backend() != "c":
        assert lines == []
        return
    assert len(lines) == 1 and "on 3 thread(s)" in lines[0] and "tinylm's matmul_f32" not in lines[0]
    monkeypatch.setenv("TINYLM_NUM_THREADS", "1")
    line = [line for line in describe() if "training's Linear" in line][0]
    assert ("tinylm's matmul_f32" in line) == kernels.packed_gemm_f32()
