"""The kernels of the C runtime (layer norm, GELU, embedding, residual add, attention over a cache)
against their NumPy references, within the bounds their contracts state (bit for bit where "exact"),
and their Python boundary refusing bad input; then the same kernels in plain C (tests/c/
test_runtime_kernels.c) on the host under ASan/UBSan and on emulated Cortex-M3/M4/M55 cores."""
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tinylm import kernels
from tinylm.autograd import Tensor, gelu, layer_norm
from tinylm.kernels import reference as ref

pytestmark = pytest.mark.skipif(kernels.backend() != "c", reason="needs the C extension")
rng = np.random.default_rng(0)
f32 = np.float32


def test_layernorm_matches_autograd_within_contract(monkeypatch):
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")  # the model's NumPy math (float32 autograd runs C otherwise)
    for C in (1, 7, 64, 768, 3072):
        x = (rng.standard_normal((5, C)) * 3 + 1).astype(f32)
        w, b = rng.standard_normal(C).astype(f32), rng.standard_normal(C).astype(f32)
        want = layer_norm(Tensor(x), Tensor(w), Tensor(b)).data
        monkeypatch.delenv("TINYLM_KERNELS")
        got = kernels.layernorm_f32(x, w, b)
        monkeypatch.setenv("TINYLM_KERNELS", "numpy")
        assert np.all(np.abs(got - want) <= 1e-5 * (1 + np.abs(want))), C
        np.testing.assert_array_equal(ref.layernorm_f32(x, w, b), want)   # the reference IS the model's math
    monkeypatch.delenv("TINYLM_KERNELS")
    nob = kernels.layernorm_f32(x, w)
    assert np.allclose(nob, ref.layernorm_f32(x, w), atol=1e-5)
    assert np.isnan(kernels.layernorm_f32(np.array([[1, np.nan]], f32), np.ones(2, f32))).all()


def test_gelu_matches_autograd_within_contract(monkeypatch):
    x = np.concatenate([rng.standard_normal(10000) * 4, np.linspace(-100, 100, 2001),
                        [0.0, -0.0, 1e-30, -1e-30, 50.0, -50.0, -1e30]]).astype(f32)
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")     # the model's NumPy math (float32 autograd runs C otherwise)
    with np.errstate(over="ignore"):                     # (-1e30)^2 overflows, in the model too
        want = gelu(Tensor(x)).data
    monkeypatch.delenv("TINYLM_KERNELS")
    got = kernels.gelu_f32(x)
    np.testing.assert_array_equal(ref.gelu_f32(x), want)
    assert np.all(np.abs(got - want) <= 1e-6 * np.abs(want) + 1e-37)
    assert got[-1] == 0.0  # very negative: exp overflows to inf, y = -0
    assert kernels.gelu_f32(np.zeros((0, 3), f32)).shape == (0, 3)


def test_embedding_is_exact_in_every_precision():
    V, C = 50, 32
    table = rng.standard_normal((V, C)).astype(f32)
    ids = rng.integers(0, V, size=(3, 4))
    np.testing.assert_array_equal(kernels.embedding(table, ids), table[ids])
    h = table.astype(np.float16)
    np.testing.assert_array_equal(kernels.embedding(h, ids), h[ids].astype(f32))
    q, s = kernels.quantize_s8(table, 8)
    np.testing.assert_array_equal(kernels.embedding(q, ids, s), kernels.dequantize_s8(q, s)[ids])
    np.testing.assert_array_equal(kernels.embedding(q, ids, s), ref.embedding(q, ids, s))


def test_residual_add_is_exact():
    x, r = rng.standard_normal((4, 9)).astype(f32), rng.standard_normal((4, 9)).astype(f32)
    np.testing.assert_array_equal(kernels.residual_add_f32(x, r), x + r)


@pytest.mark.parametrize("T,n_head,C", [(1, 1, 8), (5, 2, 16), (64, 4, 128), (300, 12, 768)])
def test_attention_over_a_cache_within_contract(T, n_head, C):
    q = rng.standard_normal(C).astype(f32)
    k, v = rng.standard_normal((T, C)).astype(f32), rng.standard_normal((T, C)).astype(f32)
    want = ref.attention_f32(q, k, v, n_head, np.float32(1 / np.sqrt(C // n_head)))
    got = kernels.attention_f32(q, k, v, n_head)
    assert np.abs(got - want).max() <= 1e-5 * (1 + np.abs(v).max())
    # the same numbers as the model's attention of the last query over the whole sequence
    from tinylm.autograd import scaled_dot_product_attention
    hs = C // n_head
    Q = Tensor(q.reshape(1, n_head, 1, hs))
    K = Tensor(k.reshape(1, T, n_head, hs).transpose(0, 2, 1, 3).copy())
    Vt = Tensor(v.reshape(1, T, n_head, hs).transpose(0, 2, 1, 3).copy())
    model_y = scaled_dot_product_attention(Q, K, Vt, causal=True).data.reshape(C)
    assert np.abs(got - model_y).max() <= 1e-5 * (1 + np.abs(v).max())


def test_attention_fails_when_a_head_is_mixed_up():
    # the test above can fail: heads swapped in v change the result far beyond the bound
    q, k, v = (rng.standard_normal(16).astype(f32), rng.standard_normal((6, 16)).astype(f32),
               rng.standard_normal((6, 16)).astype(f32))
    good = kernels.attention_f32(q, k, v, 2)
    swapped = kernels.attention_f32(q, k, np.concatenate([v[:, 8:], v[:, :8]], axis=1), 2)
    assert np.abs(good - swapped).max() > 1e-2


BAD = [
    (lambda: kernels.layernorm_f32(np.ones((2, 3)), np.ones(3, f32)), TypeError, "layernorm_f32: x has dtype float64"),
    (lambda: kernels.layernorm_f32(np.ones((2, 3), f32), np.ones(4, f32)), ValueError,
     "w has shape (4,); expected (3,)"),
    (lambda: kernels.layernorm_f32(np.ones((2, 3), f32), np.ones(3, f32), np.ones(2, f32)), ValueError,
     "b has shape (2,); expected (3,)"),
    (lambda: kernels.layernorm_f32(np.ones((2, 0), f32), np.ones(0, f32)), ValueError, "C >= 1"),
    (lambda: kernels.layernorm_f32(np.ones((2, 3), f32), np.ones(3, f32), eps=-1), ValueError, "eps"),
    (lambda: kernels.gelu_f32(np.ones(3, np.float16)), TypeError, "gelu_f32: x has dtype float16"),
    (lambda: kernels.embedding(np.ones((4, 3), np.float64), [0]), TypeError, "table has dtype float64"),
    (lambda: kernels.embedding(np.ones((4, 3), f32), [4]), ValueError, "ids must be in 0 .. 3"),
    (lambda: kernels.embedding(np.ones((4, 3), f32), [-1]), ValueError, "ids must be in 0 .. 3"),
    (lambda: kernels.embedding(np.ones((4, 3), f32), [0.5]), TypeError, "ids has dtype float64"),
    (lambda: kernels.embedding(np.ones((4, 3), np.int8), [0]), ValueError, "needs its scale"),
    (lambda: kernels.embedding(np.ones((4, 4), np.int8), [0], np.ones((4, 3), f32)), ValueError,
     "scale has shape (4, 3)"),
    (lambda: kernels.embedding(np.full((4, 4), -128, np.int8), [0], np.ones((4, 1), f32)), ValueError, "-128"),
    (lambda: kernels.embedding(np.ones((4, 3), f32), [0], np.ones((4, 1), f32)), ValueError, "only for int8"),
    (lambda: kernels.embedding(np.ones((0, 3), f32), []), ValueError, "both >= 1"),
    (lambda: kernels.residual_add_f32(np.ones(3, f32), np.ones(4, f32)), ValueError, "r has shape (4,)"),
    (lambda: kernels.residual_add_f32(np.ones(3, f32), np.ones(3)), TypeError, "r has dtype float64"),
    (lambda: kernels.attention_f32(np.ones(8, f32), np.ones((2, 8), f32), np.ones((2, 8), f32), 3), ValueError,
     "n_head is 3"),
    (lambda: kernels.attention_f32(np.ones(8, f32), np.ones((0, 8), f32), np.ones((0, 8), f32), 2), ValueError,
     "T >= 1"),
    (lambda: kernels.attention_f32(np.ones(8, f32), np.ones((2, 8), f32), np.ones((3, 8), f32), 2), ValueError,
     "v has shape (3, 8)"),
    (lambda: kernels.attention_f32(np.ones(8, f32), np.ones((2, 4), f32), np.ones((2, 4), f32), 2), ValueError,
     "k has shape (2, 4)"),
    (lambda: kernels.attention_f32(np.ones((1, 8), f32), np.ones((2, 8), f32), np.ones((2, 8), f32), 2), ValueError,
     "q has shape (1, 8)"),
]


@pytest.mark.parametrize("call,exc,words", BAD)
def test_runtime_kernels_refuse_bad_input(call, exc, words):
    with pytest.raises(exc) as e:
        call()
    assert words in str(e.value)


def test_numpy_backend_gives_the_same_results(monkeypatch):
    x = rng.standard_normal((3, 16)).astype(f32)
    w = np.ones(16, f32)
    c_out = kernels.layernorm_f32(x, w), kernels.gelu_f32(x), kernels.embedding(x, [2, 0])
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    np_out = kernels.layernorm_f32(x, w), kernels.gelu_f32(x), kernels.embedding(x, [2, 0])
    for a, b in zip(c_out, np_out):
        assert np.allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- the same kernels in plain C: tests/c/test_runtime_kernels.c on the host and on emulated cores ----

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS_DIR = os.path.join(ROOT, "kernels")
TESTS_C = os.path.join(ROOT, "tests", "c")
GCC = shutil.which("gcc")


@pytest.fixture(scope="module")
def runtime_vectors(tmp_path_factory):
    out = tmp_path_factory.mktemp("runtime_vectors")
    subprocess.run([sys.executable, os.path.join(TESTS_C, "gen_runtime_vectors.py"),
                    str(out / "runtime_vectors.h"), "--seed", "2"], check=True)
    return out


def _host_build(vectors, out, flags):
    sources = sorted(os.path.join(KERNELS_DIR, f) for f in os.listdir(KERNELS_DIR) if f.endswith(".c"))
    return subprocess.run([GCC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g", *flags,
                           f"-I{vectors}", f"-I{KERNELS_DIR}", *sources,
                           os.path.join(TESTS_C, "test_runtime_kernels.c"), "-o", str(out)],
                          capture_output=True, text=True)


@pytest.mark.skipif(GCC is None, reason="gcc not found")
@pytest.mark.parametrize("simd", [[], ["-march=native"]], ids=["portable", "native-simd"])
def test_golden_c_test_of_the_runtime_kernels_under_sanitizers(runtime_vectors, tmp_path, simd):
    exe = tmp_path / "t"
    build = _host_build(runtime_vectors, exe, ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", *simd])
    if build.returncode and "sanitize" in build.stderr:
        build = _host_build(runtime_vectors, exe, simd)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.endswith("PASSED: 0 kernel(s) failed\n"), run.stdout + run.stderr
    assert run.stdout.count(" ok") == 7


@pytest.mark.skipif(GCC is None, reason="gcc not found")
def test_golden_c_test_fails_on_a_wrong_expected_value(runtime_vectors, tmp_path):
    text = (runtime_vectors / "runtime_vectors.h").read_text()
    start = text.index("gelu_y[")
    first = text.index("0x", start)
    (tmp_path / "runtime_vectors.h").write_text(text[:first] + "0x7f7fffffu" + text[first + 11:])
    assert _host_build(tmp_path, tmp_path / "t", []).returncode == 0
    run = subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "gelu_f32" in run.stdout and "MISMATCH" in run.stdout


def _mcu():
    path = os.path.join(KERNELS_DIR, "targets", "cortex-m", "mcu.py")
    spec = importlib.util.spec_from_file_location("tinylm_mcu", path)
    mod = sys.modules.setdefault("tinylm_mcu", importlib.util.module_from_spec(spec))
    if not hasattr(mod, "CORES"):
        spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
@pytest.mark.parametrize("core_name", ["m3", "m4", "m55"])
def test_golden_c_test_of_the_runtime_kernels_on_emulated_cores(runtime_vectors, tmp_path, core_name):
    mcu = _mcu()
    if mcu.toolchain_missing():
        pytest.skip(mcu.toolchain_missing())
    core = mcu.get_core(core_name)
    program = tmp_path / "test_runtime_kernels.c"  # beside its fresh header (see mcu.build_golden)
    shutil.copyfile(os.path.join(TESTS_C, "test_runtime_kernels.c"), program)
    shutil.copyfile(runtime_vectors / "runtime_vectors.h", tmp_path / "runtime_vectors.h")
    elf = mcu.build(core, [*mcu.kernel_sources(), str(program)], str(tmp_path / "t.elf"))
    done = mcu.run(core, elf, timeout=60)
    assert done.returncode == 0 and done.stdout.endswith("PASSED: 0 kernel(s) failed\n"), done.stdout + done.stderr
