"""Training's kernels (tinylm_kernels.h, "training's kernels"): the C kernels against their NumPy
references in tinylm.kernels.reference, within the header's bounds or bit for bit where it says "Exact";
the standalone C test of the same kernels under ASan/UBSan; the Python boundary's checks."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from tinylm import kernels
from tinylm.kernels import reference as ref

needs_c = pytest.mark.skipif(kernels.backend() != "c", reason="the C kernels are not built")
KERNELS_DIR = os.path.join(ROOT, "kernels")
TESTS_C = os.path.join(ROOT, "tests", "c")
GCC = shutil.which("gcc")


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def assert_within(got, want, tol):
    bad = ~(np.abs(got.astype(np.float64) - want) <= tol)
    assert not bad.any(), f"{bad.sum()} of {bad.size} values outside the bound; worst at {np.argwhere(bad)[0]}"


# ---- the C kernels against the references ----------------------------------------------------------

@needs_c
def test_gelu_backward_is_within_its_bound_including_extremes(rng):
    x = np.concatenate([f32(rng, 3000, scale=4), np.array([0, -0.0, 30, -30, -100, 100, 1e-30], np.float32)])
    dy = f32(rng, x.size)
    got, want = kernels.gelu_backward_f32(x, dy), ref.gelu_backward_f32(x, dy)
    assert_within(got, want, ref.GELU_BACKWARD_RTOL * (np.abs(want) + np.abs(dy)) + 1e-30)
    assert np.isfinite(got).all() and got[-3] == 0.0 and got[-2] == dy[-2]   # GELU'(-100) = 0, GELU'(100) = 1


@needs_c
@pytest.mark.parametrize("C", [1, 7, 128, 1031])
def test_layernorm_and_rmsnorm_backward_are_within_their_bound(rng, C):
    x, w, dy = f32(rng, 6, C, scale=3) + np.float32(2), f32(rng, C), f32(rng, 6, C)
    tol = ref.NORM_BACKWARD_TOL
    for got, want in zip(kernels.layernorm_backward_f32(x, w, dy), ref.layernorm_backward_f32(x, w, dy)):
        assert_within(got, want, tol * (1 + np.abs(want)))
    assert_within(kernels.rmsnorm_f32(x, w), ref.rmsnorm_f32(x, w), tol * (1 + np.abs(ref.rmsnorm_f32(x, w))))
    for got, want in zip(kernels.rmsnorm_backward_f32(x, w, dy), ref.rmsnorm_backward_f32(x, w, dy)):
        assert_within(got, want, tol * (1 + np.abs(want)))
    assert kernels.layernorm_backward_f32(x, w, dy, bias=False)[2] is None


@needs_c
def test_layernorm_backward_matches_finite_differences():
    """Not only the reference: d/dx of sum(layernorm(x) * dy), numerically, in float64."""
    rng = np.random.default_rng(3)
    x, w, dy = f32(rng, 2, 9), f32(rng, 9), f32(rng, 2, 9)

    def loss(x64):
        xc = x64 - x64.mean(-1, keepdims=True)
        return float(((xc / np.sqrt((xc * xc).mean(-1, keepdims=True) + 1e-5)) * w * dy).sum())
    num = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[i] = 1e-6
        num[i] = (loss(x + e) - loss(x - e)) / 2e-6
    np.testing.assert_allclose(kernels.layernorm_backward_f32(x, w, dy)[0], num, rtol=1e-3, atol=1e-4)


@needs_c
@pytest.mark.parametrize("shape,causal", [((3, 2, 17, 17), True), ((2, 5, 40), True), ((4, 33), False)])
def test_softmax_backward_is_within_its_bound_and_masked_entries_are_zero(rng, shape, causal):
    y = kernels.softmax_f32(f32(rng, *shape, scale=2), causal=causal)
    dy = f32(rng, *shape)
    got, want = kernels.softmax_backward_f32(y, dy, causal=causal, scale=0.25), ref.softmax_backward_f32(y, dy, 0.25)
    bound = 0.25 * np.abs(dy * y).max(axis=-1, keepdims=True) * shape[-1]
    assert_within(got, want, ref.SOFTMAX_BACKWARD_TOL * (np.abs(want) + bound))
    if causal:
        assert (got[..., ~ref._causal_visible(shape)] == 0).all()


@needs_c
def test_cross_entropy_is_within_its_bound_and_its_backward_is_exact(rng):
    z = f32(rng, 50, 257, scale=4)
    z[0, :] = 0.0                                          # uniform row: nll = ln 257
    t = rng.integers(0, 257, 50)
    t[3] = -1                                              # ignored row
    probs, nll = kernels.cross_entropy_f32(z, t)
    rprobs, rnll = ref.cross_entropy_f32(z, t)
    assert_within(probs, rprobs, ref.SOFTMAX_F32_ATOL + ref.SOFTMAX_F32_RTOL * rprobs)
    assert_within(nll, rnll, ref.CROSS_ENTROPY_NLL_TOL * (1 + np.abs(rnll)))
    assert nll[3] == 0.0 and abs(nll[0] - np.log(257)) < 1e-6
    np.testing.assert_array_equal(kernels.cross_entropy_backward_f32(probs, t, 0.02),
                                  ref.cross_entropy_backward_f32(probs, t, 0.02))
    assert (kernels.cross_entropy_backward_f32(probs, t, 0.02)[3] == 0).all()


@needs_c
def test_cross_entropy_of_huge_logit_gaps_is_finite(rng):
    """-log p_t from the shifted logits: a target 200 below the max has nll ~200, not inf."""
    z = np.zeros((1, 4), np.float32)
    z[0, 1] = 200.0
    _, nll = kernels.cross_entropy_f32(z, np.array([0]))
    assert abs(nll[0] - 200.0) < 1e-4


@needs_c
@pytest.mark.parametrize("n", [1, 15, 16, 1000])
def test_adamw_is_bit_exact_with_the_reference_over_steps(rng, n):
    p, g = f32(rng, n), f32(rng, n)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    rp, rm, rv = p.copy(), m.copy(), v.copy()
    for t in range(1, 4):
        hyper = dict(decay=1 - 1e-3 * 0.1, beta1=0.9, beta2=0.99, eps_hat=1e-8 * np.sqrt(1 - 0.99**t),
                     step=-1e-3 * np.sqrt(1 - 0.99**t) / (1 - 0.9**t))
        kernels.adamw_f32(p, g, m, v, **hyper)
        rp, rm, rv = ref.adamw_f32(rp, g, rm, rv, **hyper)
        g = g[::-1].copy()
    for got, want in ((p, rp), (m, rm), (v, rv)):
        np.testing.assert_array_equal(got, want)


@needs_c
def test_embedding_backward_is_exact_and_adds_repeated_ids(rng):
    ids = rng.integers(0, 30, (4, 50))
    dy = f32(rng, 4, 50, 16)
    got = kernels.embedding_backward_f32(ids, dy, 30)
    np.testing.assert_array_equal(got, ref.embedding_backward_f32(ids.reshape(-1), dy.reshape(-1, 16), 30))
    np.testing.assert_allclose(got.sum(0), dy.reshape(-1, 16).sum(0), rtol=1e-5, atol=1e-5)


def _qkv_views(rng, B, nh, Tq, Tk, hs):
    """q (B, nh, Tq, hs), k, v (B, nh, Tk, hs) as the model makes them: permuted slices of (B, T, 3C) arrays."""
    C = nh * hs
    q = f32(rng, B, Tq, 3 * C)[..., :C].reshape(B, Tq, nh, hs).transpose(0, 2, 1, 3)
    kv = f32(rng, B, Tk, 3 * C)
    k = kv[..., C:2 * C].reshape(B, Tk, nh, hs).transpose(0, 2, 1, 3)
    v = kv[..., 2 * C:].reshape(B, Tk, nh, hs).transpose(0, 2, 1, 3)
    return q, k, v


SDPA_SHAPES = [  # B, nh, Tq, Tk, hs, causal
    (2, 4, 64, 64, 32, True),          # the baby training config's heads
    (1, 3, 5, 13, 17, True),           # Tq < Tk (a KV cache), hs not a multiple of 16, Tq not of 4
    (2, 2, 9, 6, 33, False),           # non-causal, Tq > Tk
    (1, 1, 1, 1, 1, True),
    (1, 2, 70, 70, 128, True),         # a wide head, keys past two vectors of 32
]


@needs_c
@pytest.mark.parametrize("B,nh,Tq,Tk,hs,causal", SDPA_SHAPES)
def test_sdpa_forward_and_backward_are_within_their_bound_on_strided_views(rng, B, nh, Tq, Tk, hs, causal):
    q, k, v = _qkv_views(rng, B, nh, Tq, Tk, hs)
    dy = f32(rng, B, Tq, nh, hs).transpose(0, 2, 1, 3)
    y, p = kernels.sdpa_f32(q, k, v, causal)
    ry, rp = ref.sdpa_f32(q, k, v, causal)
    grads = kernels.sdpa_backward_f32(q, k, v, p, dy, causal)
    rgrads = ref.sdpa_backward_f32(q, k, v, rp, dy, causal)
    for got, want in zip((y, p) + grads, (ry, rp) + rgrads):
        assert got.shape == want.shape
        assert_within(got, want, ref.SDPA_TOL * (1 + np.abs(want).max(axis=(2, 3), keepdims=True)))
    if causal:
        assert (p[..., ~ref._causal_visible(p.shape)] == 0).all()


@needs_c
def test_sdpa_writes_its_gradients_into_one_qkv_buffer(rng):
    """dq, dk, dv as the three parts of one (B, T, 3C) gradient: every element written, nothing else touched."""
    B, nh, T, hs = 2, 3, 10, 8
    C = nh * hs
    q, k, v = _qkv_views(rng, B, nh, T, T, hs)
    y, p = kernels.sdpa_f32(q, k, v)
    dy = f32(rng, B, nh, T, hs)
    buf = np.full((B, T, 3 * C + 1), np.nan, np.float32)         # one column past 3C: must stay NaN
    parts = [buf[..., i * C:(i + 1) * C].reshape(B, T, nh, hs).transpose(0, 2, 1, 3) for i in range(3)]
    kernels.sdpa_backward_f32(q, k, v, p, dy, dq=parts[0], dk=parts[1], dv=parts[2])
    assert np.isfinite(buf[..., :3 * C]).all() and np.isnan(buf[..., 3 * C]).all()
    for got, want in zip(parts, kernels.sdpa_backward_f32(q, k, v, p, dy)):
        np.testing.assert_array_equal(got, want)


def test_numpy_backend_gives_the_references(monkeypatch, rng):
    """TINYLM_KERNELS=numpy: the wrappers run the references (the fallback when C is missing)."""
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    x, dy = f32(rng, 5, 8), f32(rng, 5, 8)
    np.testing.assert_array_equal(kernels.gelu_backward_f32(x, dy), ref.gelu_backward_f32(x, dy))
    np.testing.assert_array_equal(kernels.softmax_backward_f32(x, dy), ref.softmax_backward_f32(x, dy))
    causal = kernels.softmax_backward_f32(x[:5, :5], dy[:5, :5], causal=True)
    assert (causal[np.triu_indices(5, 1)] == 0).all()


# ---- the Python boundary ---------------------------------------------------------------------------

@pytest.mark.parametrize("call,exc,words", [
    (lambda: kernels.gelu_backward_f32(np.ones(3), np.ones(3, np.float32)), TypeError, "x has dtype float64"),
    (lambda: kernels.gelu_backward_f32(np.ones(3, np.float32), np.ones(4, np.float32)), ValueError,
     "dy has shape (4,); expected (3,)"),
    (lambda: kernels.layernorm_backward_f32(np.ones((2, 3), np.float32), np.ones(4, np.float32),
                                            np.ones((2, 3), np.float32)), ValueError, "w has shape (4,)"),
    (lambda: kernels.rmsnorm_f32(np.ones((2, 3), np.float32), np.ones(3, np.float32), eps=-1), ValueError, "eps"),
    (lambda: kernels.softmax_backward_f32(np.ones((3, 2), np.float32), np.ones((3, 2), np.float32), causal=True),
     ValueError, "Tk >= Tq"),
    (lambda: kernels.cross_entropy_f32(np.ones((2, 3), np.float32), np.array([0, 3])), ValueError, "< V=3"),
    (lambda: kernels.cross_entropy_f32(np.ones((2, 3), np.float32), np.array([0.0, 1.0])), ValueError, "integer"),
    (lambda: kernels.adamw_f32(np.ones(3, np.float32), np.ones(3, np.float32), np.ones(3),
                               np.ones(3, np.float32), 1, 0.9, 0.99, 1e-8, -1e-3), TypeError, "m is float64"),
    (lambda: kernels.adamw_f32(np.ones(6, np.float32)[::2], np.ones(3, np.float32), np.ones(3, np.float32),
                               np.ones(3, np.float32), 1, 0.9, 0.99, 1e-8, -1e-3), ValueError, "in place"),
    (lambda: kernels.embedding_backward_f32(np.array([0, 5]), np.ones((2, 4), np.float32), 5), ValueError,
     "0 .. 4"),
])
def test_bad_arguments_are_refused_with_clear_errors(call, exc, words):
    with pytest.raises(exc, match=re.escape(words)):
        call()


def test_the_header_states_the_bounds_the_tests_use():
    with open(os.path.join(KERNELS_DIR, "tinylm_kernels.h"), encoding="utf-8") as f:
        text = re.sub(r"\s*\n\s*\*\s*", " ", f.read())

    def fmt(v):
        return f"{v:g}".replace("e-0", "e-")                  # 2e-06 -> 2e-6, as the header writes it
    assert f"Within {fmt(ref.GELU_BACKWARD_RTOL)} * (|dx| + |dy|)" in text
    assert f"Within {fmt(ref.NORM_BACKWARD_TOL)} * (1 + |v|)" in text
    assert f"Within {fmt(ref.SOFTMAX_BACKWARD_TOL)} * (|dx| + scale * max|dy * y| * cols)" in text
    assert f"Within {fmt(ref.CROSS_ENTROPY_NLL_TOL)} * (1 + nll) for nll" in text
    assert f"within {fmt(ref.SDPA_TOL)} * (1 + max|o_ref|) of the reference" in text


# ---- the same kernels in plain C, under the sanitizers ---------------------------------------------

@pytest.fixture(scope="module")
def train_vectors(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_vectors")
    subprocess.run([sys.executable, os.path.join(TESTS_C, "gen_train_vectors.py"), str(out / "train_vectors.h"),
                    "--seed", "4"], check=True)
    return out


def _build(vectors, exe, flags):
    sources = sorted(os.path.join(KERNELS_DIR, f) for f in os.listdir(KERNELS_DIR) if f.endswith(".c"))
    return subprocess.run([GCC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g", *flags, f"-I{vectors}",
                           f"-I{KERNELS_DIR}", *sources, os.path.join(TESTS_C, "test_train_kernels.c"),
                           "-o", str(exe)], capture_output=True, text=True)


@pytest.mark.skipif(GCC is None, reason="gcc not found")
@pytest.mark.parametrize("simd", [[], ["-march=native"]], ids=["portable", "native-simd"])
def test_golden_c_test_of_the_training_kernels_under_sanitizers(train_vectors, tmp_path, simd):
    exe = tmp_path / "t"
    build = _build(train_vectors, exe, ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", *simd])
    if build.returncode and "sanitize" in build.stderr:
        build = _build(train_vectors, exe, simd)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.endswith("PASSED: 0 kernel(s) failed\n"), run.stdout + run.stderr
    assert run.stdout.count(" ok") == 20


@pytest.mark.skipif(GCC is None, reason="gcc not found")
def test_golden_c_test_fails_on_a_wrong_expected_value(train_vectors, tmp_path):
    text = (train_vectors / "train_vectors.h").read_text()
    first = text.index("0x", text.index("adam_p2["))
    (tmp_path / "train_vectors.h").write_text(text[:first] + "0x3f800001u" + text[first + 11:])
    assert _build(tmp_path, tmp_path / "t", []).returncode == 0
    run = subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "adamw_f32 p" in run.stdout and "MISMATCH" in run.stdout
