"""The autograd ops and AdamW on both paths: tinylm's C kernels (float32, when built) and the NumPy
reference code (the fallback, forced with TINYLM_KERNELS=numpy). Each op: the C path is taken, its
gradients pass a gradient check (float64 central differences of the same math), and both paths give the
same values and gradients within float32 rounding. A few training steps give the same losses on both."""
import numpy as np
import pytest
from test_autograd import numeric_grad

import tinylm.autograd.functional as F
from tinylm import kernels
from tinylm.autograd import Tensor, no_grad, split
from tinylm.data import get_batch
from tinylm.model import GPT, GPTConfig
from tinylm.optim import AdamW, clip_grad_norm

pytestmark = pytest.mark.skipif(kernels.backend() != "c", reason="the C kernels are not built")


class Spy:
    """Stands in for tinylm.kernels inside functional.py and records which kernels were called."""

    def __init__(self):
        self.called = set()

    def __getattr__(self, name):
        self.called.add(name)
        return getattr(kernels, name)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """The kernels on one thread, where Linear runs on tinylm's GEMM (with more, on NumPy's BLAS)."""
    monkeypatch.setenv("TINYLM_NUM_THREADS", "1")


@pytest.fixture
def spy(monkeypatch):
    s = Spy()
    monkeypatch.setattr(F, "kernels", s)
    return s


def rand32(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed + sum(shape)).standard_normal(shape) * scale).astype(np.float32)


def run(f, arrays, seed=5):
    """f(*float32 tensors), and the gradients of sum(out * R) w.r.t. each input."""
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = f(*tensors)
    R = np.random.default_rng(seed).standard_normal(out.shape).astype(np.float32)
    (out * Tensor(R)).sum().backward()
    return out.data, [t.grad for t in tensors], R


def gradcheck_c(f, *arrays, rtol=2e-3, atol=2e-4):
    """The float32 C path's gradients against central differences of f evaluated in float64 (where every
    op runs the NumPy reference math): a gradient check of the C backward passes."""
    _, grads, R = run(f, arrays)
    arrays64 = [a.astype(np.float64) for a in arrays]

    def value(arrs):
        with no_grad():
            return float((f(*[Tensor(a) for a in arrs]).data * R).sum())
    for i, g in enumerate(grads):
        assert g is not None and g.dtype == np.float32, f"input {i}: gradient {g if g is None else g.dtype}"
        np.testing.assert_allclose(g, numeric_grad(value, arrays64, i), rtol=rtol, atol=atol, err_msg=f"input {i}")


def both_paths_agree(monkeypatch, f, *arrays, rtol=1e-5, atol=1e-6):
    out_c, grads_c, _ = run(f, arrays)
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    out_np, grads_np, _ = run(f, arrays)
    monkeypatch.delenv("TINYLM_KERNELS")
    np.testing.assert_allclose(out_c, out_np, rtol=rtol, atol=atol)
    for gc, gn in zip(grads_c, grads_np):
        np.testing.assert_allclose(gc, gn, rtol=rtol, atol=atol)


def attention(causal, **kw):
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=causal, **kw)


def attention_from_qkv(qkv, n_head=2):
    """The model's way: q, k, v are permuted views of one (B, T, 3C) tensor, y goes back to (B, T, C)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (t.reshape(B, T, n_head, C // n_head).permute(0, 2, 1, 3) for t in split(qkv, 3, axis=-1))
    return F.scaled_dot_product_attention(q, k, v).permute(0, 2, 1, 3).reshape(B, T, C)


SDPA = {"sdpa_f32", "sdpa_backward_f32"}


def ce(targets):
    return lambda z: F.cross_entropy(z, targets)


T8 = np.array([1, 0, 3, -1, 2, 4, 4, 0])   # one ignored target (-1)
# Linear runs on tinylm's GEMMs where the build has the AVX-512 packed GEMM, on NumPy's BLAS elsewhere
GEMMS = {"matmul_f32", "matmul_nn_f32", "matmul_tn_f32"} if kernels.packed_gemm_f32() else set()
CASES = {  # name: (f, arrays, the kernels the C path must call)
    "gelu": (F.gelu, [rand32(3, 7, scale=2)], {"gelu_f32", "gelu_backward_f32"}),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, w, b), [rand32(2, 3, 10), rand32(10) + 1, rand32(10)],
                   {"layernorm_f32", "layernorm_backward_f32"}),
    "layer_norm_no_bias": (lambda x, w: F.layer_norm(x, w), [rand32(4, 9), rand32(9) + 1],
                           {"layernorm_f32", "layernorm_backward_f32"}),
    "rms_norm": (F.rms_norm, [rand32(2, 3, 10), rand32(10) + 1], {"rmsnorm_f32", "rmsnorm_backward_f32"}),
    "linear": (F.linear, [rand32(2, 9, 10), rand32(7, 10), rand32(7)], GEMMS),         # 18 rows: packed
    "linear_few_rows": (F.linear, [rand32(3, 40), rand32(33, 40)], GEMMS),            # 3 rows: row loops
    "softmax": (F.softmax, [rand32(3, 6)], {"softmax_f32", "softmax_backward_f32"}),
    "attention_causal": (attention(True), [rand32(2, 2, 5, 4, seed=1), rand32(2, 2, 5, 4, seed=2),
                                           rand32(2, 2, 5, 4, seed=3)], SDPA),
    "attention_cached": (attention(True), [rand32(1, 2, 2, 4, seed=1), rand32(1, 2, 6, 4, seed=2),
                                           rand32(1, 2, 6, 4, seed=3)], SDPA),
    "attention_gqa": (attention(True), [rand32(1, 2, 2, 5, 4, seed=1), rand32(1, 2, 1, 5, 4, seed=2),
                                        rand32(1, 2, 1, 5, 4, seed=3)], {"softmax_f32", "softmax_backward_f32"}),
    "attention_full": (attention(False), [rand32(1, 2, 3, 4, seed=1), rand32(1, 2, 5, 4, seed=2),
                                          rand32(1, 2, 5, 4, seed=3)], SDPA),
    "attention_3d_odd_hs": (attention(True), [rand32(3, 4, 7, seed=1), rand32(3, 6, 7, seed=2),
                                              rand32(3, 6, 7, seed=3)], SDPA),
    "attention_qkv_views": (attention_from_qkv, [rand32(2, 6, 3 * 2 * 5, seed=4)], SDPA),
    "self_attention": (lambda qkv: F.self_attention(qkv, 2), [rand32(2, 5, 24, seed=4)], SDPA),
    "cross_entropy": (ce(T8), [rand32(8, 5, scale=2)], {"cross_entropy_f32", "cross_entropy_backward_f32"}),
    "embedding": (lambda w: F.embedding(w, np.array([[1, 3, 1], [0, 3, 3]])), [rand32(5, 4)],
                  {"embedding_backward_f32"}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_c_path_is_taken_and_passes_the_gradient_check(name, spy):
    f, arrays, expected = CASES[name]
    gradcheck_c(f, *arrays)
    assert expected <= spy.called, f"{name}: the C path did not call {expected - spy.called}"


@pytest.mark.parametrize("name", list(CASES))
def test_c_and_numpy_paths_agree(name, monkeypatch):
    f, arrays, _ = CASES[name]
    both_paths_agree(monkeypatch, f, *arrays)


def test_numpy_switch_and_float64_keep_the_reference_path(spy, monkeypatch):
    x = rand32(3, 4)
    F.gelu(Tensor(x.astype(np.float64)))                          # float64: the NumPy path
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    F.gelu(Tensor(x))                                             # forced NumPy
    assert "gelu_f32" not in spy.called


def test_attention_with_dropout_agrees_on_both_paths(monkeypatch):
    def f(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, rng=np.random.default_rng(4))
    both_paths_agree(monkeypatch, f, rand32(1, 2, 6, 4, seed=1), rand32(1, 2, 6, 4, seed=2), rand32(1, 2, 6, 4, seed=3))


def test_adamw_c_path_is_bit_identical_to_numpy(monkeypatch):
    results = []
    for backend in ("c", "numpy"):
        monkeypatch.setenv("TINYLM_KERNELS", backend)
        w, b = Tensor(rand32(17, 5), requires_grad=True), Tensor(rand32(5), requires_grad=True)
        opt = AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}], lr=1e-2)
        for step in range(4):
            w.grad, b.grad = rand32(17, 5, seed=step), rand32(5, seed=step)
            opt.step()
        results.append((w.data, b.data, opt.state[0]["exp_avg_sq"]))
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)


def train_losses(config, steps=6, seed=3):
    model = GPT(config, seed=seed)
    opt = AdamW(model.optim_groups(0.1), lr=1e-2, betas=(0.9, 0.99))
    data = np.tile(np.random.default_rng(seed).integers(0, config.vocab_size, 23), 100)  # a phrase repeated: learnable
    rng, losses = np.random.default_rng(seed), []
    for _ in range(steps):
        x, y = get_batch(data, 4, config.block_size, rng)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.item()))
    return np.array(losses)


@pytest.mark.parametrize("arch", [
    dict(),                                                       # GPT-2: LayerNorm, GELU, learned positions
    dict(norm="rmsnorm", pos="rope", mlp="swiglu", n_kv_head=1, tie_head=False, bias=False),   # Llama
])
def test_training_losses_are_the_same_on_both_paths(arch, monkeypatch, spy):
    config = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0, **arch)
    c_losses = train_losses(config)
    assert "cross_entropy_f32" in spy.called
    assert ("softmax_f32" if arch else "sdpa_f32") in spy.called   # GQA (Llama's n_kv_head=1): the softmax kernel
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    np_losses = train_losses(config)
    assert c_losses[-1] < c_losses[0] - 0.2                        # it learns: the losses compared are moving
    np.testing.assert_allclose(c_losses, np_losses, rtol=2e-6, atol=0)


def test_self_attention_is_split_heads_attention_and_merge_on_both_paths(monkeypatch):
    """The fused op against the steps it stands for, composed from the engine's split, reshape and
    permute and scaled_dot_product_attention (on the NumPy path: no kernel in the composed version)."""
    B, T, nh, hs = 2, 7, 3, 4
    C = nh * hs

    def composed(qkv):
        q, k, v = (t.reshape(B, T, nh, hs).permute(0, 2, 1, 3) for t in F.split(qkv, [C, C, C], axis=-1))
        return F.scaled_dot_product_attention(q, k, v, causal=True).permute(0, 2, 1, 3).reshape(B, T, C)

    qkv = rand32(B, T, 3 * C, seed=9)
    fused, fused_grads, _ = run(lambda t: F.self_attention(t, nh), [qkv])
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    steps, step_grads, _ = run(composed, [qkv])
    np.testing.assert_allclose(fused, steps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused_grads[0], step_grads[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"self_attention: qkv has shape \(2, 7, 36\); expected \(B, T, 3 \* C\)"):
        F.self_attention(Tensor(qkv), 5)


def test_linear_leaves_its_products_to_the_blas_on_more_than_one_thread(spy, monkeypatch):
    monkeypatch.setenv("TINYLM_NUM_THREADS", "2")
    f, arrays, _ = CASES["linear"]
    gradcheck_c(f, *arrays)
    assert not {"matmul_f32", "matmul_nn_f32", "matmul_tn_f32"} & spy.called
