"""The fused operations: gradient checks in float64, and the same values and gradients as the same math
composed from small operations (which test_autograd.py checks one by one)."""
import math

import numpy as np
import pytest
from test_autograd import gradcheck, rand

from tinylm.autograd import (
    Tensor,
    cross_entropy,
    dropout,
    embedding,
    gelu,
    layer_norm,
    linear,
    log_softmax,
    scaled_dot_product_attention,
    softmax,
)


def same_values_and_grads(fused, composed, *arrays, rtol=1e-9, atol=1e-10):
    """fused(*tensors) and composed(*tensors) agree, and so do the gradients of sum(out * R)."""
    results = []
    for f in (fused, composed):
        tensors = [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]
        out = f(*tensors)
        R = np.random.default_rng(7).standard_normal(out.shape)
        (out * R).sum().backward()
        results.append((out.data, [t.grad for t in tensors]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=rtol, atol=atol)
    for g_fused, g_composed in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(g_fused, g_composed, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------------
# linear


def test_linear_gradients_and_composed_form():
    gradcheck(lambda x, w, b: linear(x, w, b), rand(2, 3, 4), rand(5, 4, seed=1), rand(5, seed=2))
    gradcheck(lambda x, w: linear(x, w), rand(3, 4), rand(2, 4, seed=1))
    same_values_and_grads(lambda x, w, b: linear(x, w, b), lambda x, w, b: x @ w.T + b,
                          rand(2, 3, 4), rand(5, 4, seed=1), rand(5, seed=2))


# ----------------------------------------------------------------------------------------------
# softmax and log-softmax


def composed_softmax(x, axis=-1):
    e = (x - Tensor(x.data.max(axis=axis, keepdims=True))).exp()
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax_and_log_softmax_match_their_composed_forms():
    same_values_and_grads(lambda x: softmax(x, axis=1), lambda x: composed_softmax(x, axis=1), rand(3, 4, 5))
    same_values_and_grads(log_softmax, lambda x: composed_softmax(x).log(), rand(4, 6))


def test_softmax_is_stable_for_large_logits():
    out = softmax(Tensor(np.array([[1000.0, 1000.0, -1000.0]])))
    np.testing.assert_allclose(out.data, [[0.5, 0.5, 0.0]])


# ----------------------------------------------------------------------------------------------
# layer norm


def composed_layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    out = xc / (var + eps) ** 0.5 * w
    return out if b is None else out + b


def test_layer_norm_gradients():
    gradcheck(lambda x, w, b: layer_norm(x, w, b), rand(2, 3, 5), rand(5, seed=1), rand(5, seed=2))
    gradcheck(lambda x, w: layer_norm(x, w, None), rand(4, 7), rand(7, seed=1))
    gradcheck(lambda x, w, b: layer_norm(x, w, b), rand(6), rand(6, seed=1), rand(6, seed=2))  # one row


def test_layer_norm_matches_composed_form():
    same_values_and_grads(lambda x, w, b: layer_norm(x, w, b), composed_layer_norm,
                          rand(3, 4, 8), rand(8, seed=1), rand(8, seed=2))


def test_layer_norm_output_has_zero_mean_unit_variance():
    x = Tensor(np.random.default_rng(0).normal(3.0, 5.0, (4, 64)))
    y = layer_norm(x, Tensor(np.ones(64)), Tensor(np.zeros(64))).data
    np.testing.assert_allclose(y.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=-1), 1, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# cross-entropy


def composed_cross_entropy(logits, targets, ignore_index=-1):
    logp = composed_softmax(logits).log()  # (N, V)
    V = logits.shape[-1]
    valid = targets != ignore_index
    onehot = np.eye(V)[np.where(valid, targets, 0)] * valid[..., None]
    return -(logp * onehot).sum() / max(valid.sum(), 1)


def test_cross_entropy_gradients_2d_and_3d_with_ignored_targets():
    t2 = np.array([0, 3, 1, -1, 3])
    gradcheck(lambda z: cross_entropy(z, t2), rand(5, 4))
    t3 = np.array([[1, 2, -1], [0, 0, 4]])
    gradcheck(lambda z: cross_entropy(z, t3), rand(2, 3, 5))
    gradcheck(lambda z: cross_entropy(z, np.array([1, 7, 2]), ignore_index=7), rand(3, 4))


def test_cross_entropy_matches_composed_form():
    t = np.array([2, 0, -1, 1, 2, 2])
    same_values_and_grads(lambda z: cross_entropy(z, t), lambda z: composed_cross_entropy(z, t), rand(6, 3))


def test_cross_entropy_of_uniform_logits_is_log_vocab_size():
    loss = cross_entropy(Tensor(np.zeros((4, 65), np.float32)), np.array([0, 5, 64, 3]))
    assert loss.dtype == np.float32
    assert abs(loss.item() - math.log(65)) < 1e-6


def test_cross_entropy_with_every_target_ignored_is_zero():
    z = Tensor(np.ones((2, 3)), requires_grad=True)
    loss = cross_entropy(z, np.array([-1, -1]))
    loss.backward()
    assert loss.item() == 0.0 and not z.grad.any()


def test_cross_entropy_stable_for_huge_logits():
    loss = cross_entropy(Tensor(np.array([[1e4, 0.0, -1e4]], np.float32)), np.array([1]))
    assert abs(loss.item() - 1e4) < 1


def test_cross_entropy_rejects_bad_targets():
    z = Tensor(np.zeros((3, 4)))
    with pytest.raises(TypeError, match="targets has dtype float"):
        cross_entropy(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="same leading shape"):
        cross_entropy(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="target 4 is outside 0 .. 3"):
        cross_entropy(z, np.array([0, 4, 1]))


# ----------------------------------------------------------------------------------------------
# attention


def composed_attention(q, k, v, causal=True):
    Tq, Tk, hs = q.shape[-2], k.shape[-2], q.shape[-1]
    att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hs))  # (B, nh, Tq, Tk)
    if causal:
        att = att.masked_fill(np.triu(np.ones((Tq, Tk), bool), k=1 + Tk - Tq), -np.inf)
    return composed_softmax(att) @ v


@pytest.mark.parametrize("Tq, Tk, causal", [(4, 4, True), (2, 5, True), (1, 3, True), (3, 5, False)])
def test_attention_gradients(Tq, Tk, causal):
    q, k, v = rand(2, 2, Tq, 3), rand(2, 2, Tk, 3, seed=1), rand(2, 2, Tk, 3, seed=2)
    gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=causal), q, k, v)
    same_values_and_grads(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=causal),
                          lambda q, k, v: composed_attention(q, k, v, causal=causal), q, k, v)


def test_attention_with_dropout_gradients():
    q, k, v = rand(1, 2, 4, 3), rand(1, 2, 4, 3, seed=1), rand(1, 2, 4, 3, seed=2)
    gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, dropout_p=0.3, rng=np.random.default_rng(1)),
              q, k, v)


def test_attention_causal_means_the_future_changes_nothing():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 5, 4)).astype(np.float32) for _ in range(3))
    y = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v)).data
    k[:, :, 3:] += 10.0
    v[:, :, 3:] -= 10.0
    y2 = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v)).data
    np.testing.assert_allclose(y[:, :, :3], y2[:, :, :3], rtol=1e-6)
    assert not np.allclose(y[:, :, 3:], y2[:, :, 3:])


def test_attention_with_fewer_queries_equals_the_last_rows_of_the_full_attention():
    q, k, v = (Tensor(rand(1, 2, 6, 4, seed=s)) for s in range(3))
    full = scaled_dot_product_attention(q, k, v).data
    last = scaled_dot_product_attention(q[:, :, 4:], k, v).data  # 2 new queries over 6 keys (a KV cache)
    np.testing.assert_allclose(last, full[:, :, 4:], rtol=1e-12)


def test_attention_rejects_mismatched_shapes():
    q, k = Tensor(np.zeros((1, 1, 3, 4))), Tensor(np.zeros((1, 1, 2, 4)))
    with pytest.raises(ValueError, match="Tq <= Tk"):
        scaled_dot_product_attention(q, k, k)
    with pytest.raises(ValueError, match="do not fit"):
        scaled_dot_product_attention(q, Tensor(np.zeros((1, 1, 3, 5))), q)


# ----------------------------------------------------------------------------------------------
# GELU, dropout, embedding


def test_gelu_matches_the_tanh_formula_composed():
    def composed(x):
        return 0.5 * x * (1 + ((x + 0.044715 * x ** 3) * math.sqrt(2 / math.pi)).tanh())
    same_values_and_grads(gelu, composed, rand(3, 7) * 3)
    gradcheck(gelu, rand(4, 5) * 3)


def test_dropout_zeroes_and_rescales_and_is_identity_in_eval():
    x = Tensor(np.ones((200, 50), np.float32), requires_grad=True)
    y = dropout(x, 0.25, training=True, rng=np.random.default_rng(0))
    kept = y.data != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y.data[kept], 1 / 0.75)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, y.data)  # gradient flows exactly where values were kept
    assert dropout(x, 0.25, training=False, rng=None) is x
    assert dropout(x, 0.0, training=True, rng=None) is x
    gradcheck(lambda x: dropout(x, 0.5, True, np.random.default_rng(3)), rand(4, 5))


def test_dropout_errors():
    x = Tensor(np.ones(3))
    with pytest.raises(ValueError, match="needs rng"):
        dropout(x, 0.1, training=True, rng=None)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        dropout(x, 1.0, training=True, rng=np.random.default_rng(0))


def test_embedding_gradient_adds_repeated_ids():
    idx = np.array([[0, 2, 2], [4, 2, 0]])
    out = gradcheck(lambda w: embedding(w, idx), rand(5, 3))
    assert out.shape == (2, 3, 3)
    w = Tensor(np.zeros((5, 2)), requires_grad=True)
    embedding(w, idx).sum().backward()
    np.testing.assert_array_equal(w.grad[:, 0], [2, 0, 3, 0, 1])  # how often each id occurs


def test_embedding_rejects_bad_ids():
    w = Tensor(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"0 \.\. 4"):
        embedding(w, np.array([0, 5]))
    with pytest.raises(TypeError, match="integer ids"):
        embedding(w, np.array([0.0, 1.0]))
