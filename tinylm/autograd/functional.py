"""Fused operations on the autograd engine: the forward of each, and its backward derived by hand.

A transformer could be written with the primitive operations of tinylm.autograd.engine alone (exp,
sum, matmul, ...), and the gradients would be right. These operations are fused instead because the
fused form is both faster and lighter: `cross_entropy` composed from log, exp and sum keeps four
(N, vocab_size) temporaries for its backward pass; fused, it keeps one. Each docstring derives the
backward that its code implements, and tests/test_autograd_fused.py checks every one against finite
differences and against the composed version.

Two paths, one result. For float32 tensors, when tinylm's C kernels are built (tinylm._kernels), the
element-wise work of gelu, layer_norm, rms_norm, softmax, scaled_dot_product_attention's softmax,
cross_entropy and embedding's backward runs in C (tinylm.kernels: each kernel's contract is in
kernels/tinylm_kernels.h). The NumPy code below is the readable reference and the fallback: it runs for
other dtypes (the float64 gradient checks), without the extension, and when TINYLM_KERNELS=numpy is set in
the environment (read at every call, so a test can switch). Both give the same values within float32
rounding; tests/test_autograd_c.py checks every op on both paths.

    >>> x = Tensor(np.array([[1.0, 2.0, 3.0]]), requires_grad=True)
    >>> y = softmax(x)
    >>> [round(v, 4) for v in y.data[0].tolist()]
    [0.09, 0.2447, 0.6652]
"""
from __future__ import annotations

import math

import numpy as np

from tinylm import kernels
from tinylm.autograd.engine import Tensor, split


def _c_path(*arrays):
    """True when these arrays go to the C kernels: all float32 and tinylm.kernels.backend() is 'c'."""
    return all(a.dtype == np.float32 for a in arrays) and kernels.backend() == "c"


def linear(x, weight, bias=None):
    """y = x @ weight.T + bias for x (..., in), weight (out, in), bias (out,) -> (..., out).

    One operation instead of transpose + matmul + add: the rows of every leading axis are handled as one
    matrix (N, in), so forward and backward are three plain matrix products.
        dx = dy @ W        (N, out) @ (out, in)
        dW = dy^T @ x      (out, N) @ (N, in)
        db = sum_rows(dy)
    On the C path, where kernels.gemm_f32_for_linear() (the AVX-512 packed GEMM, on one thread), the three
    products are tinylm's matmul_f32, matmul_nn_f32 and matmul_tn_f32, each reading its operands as
    stored (nothing transposed in memory); elsewhere NumPy's BLAS.
    """
    lead = x.shape[:-1]
    x2 = x.data.reshape(-1, x.shape[-1])  # (N, in)
    c_gemm = _c_path(x2, weight.data) and kernels.gemm_f32_for_linear()
    if c_gemm:
        y = kernels.matmul_f32(x2, weight.data, None if bias is None else bias.data)  # (N, out)
    else:
        y = x2 @ weight.data.T  # (N, out)
        if bias is not None:
            y += bias.data

    def backward(g):
        g2 = g.reshape(-1, g.shape[-1])  # (N, out)
        gx = None
        if x.requires_grad:
            gx = kernels.matmul_nn_f32(g2, weight.data) if c_gemm else g2 @ weight.data  # (N, in)
            gx = gx.reshape(x.shape)
        gw = None
        if weight.requires_grad:
            gw = kernels.matmul_tn_f32(g2, x2) if c_gemm else g2.T @ x2  # (out, in)
        gb = g2.sum(axis=0) if bias is not None and bias.requires_grad else None
        return gx, gw, gb

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(y.reshape(lead + (weight.shape[0],)), parents, backward)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`, computed after subtracting the max (same result, no overflow).

    Backward: with y = softmax(x), dy_i/dx_j = y_i (delta_ij - y_j), so
        dx = y * (g - sum(g * y))          (sum over the softmax axis)
    """
    if axis in (-1, x.ndim - 1) and x.ndim and _c_path(x.data):
        y = kernels.softmax_f32(x.data)
        return Tensor._make(y, (x,), lambda g: (kernels.softmax_backward_f32(y, g),))
    y = np.exp(x.data - x.data.max(axis=axis, keepdims=True))
    y /= y.sum(axis=axis, keepdims=True)

    def backward(g):
        return (y * (g - (g * y).sum(axis=axis, keepdims=True)),)

    return Tensor._make(y, (x,), backward)


def log_softmax(x, axis=-1):
    """x - log(sum(exp(x))) along `axis`, stable: the log-probabilities of a softmax.

    Backward: y_i = x_i - lse(x) and d lse/dx_j = softmax_j, so dx = g - softmax * sum(g).
    """
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

    def backward(g):
        return (g - np.exp(y) * g.sum(axis=axis, keepdims=True),)

    return Tensor._make(y, (x,), backward)


def layer_norm(x, weight, bias=None, eps=1e-5):
    """Normalise the last axis to mean 0 and variance 1, then scale by weight and shift by bias.

        xhat = (x - mean) / sqrt(var + eps)        y = xhat * weight + bias
    Backward (per row of C values, rstd = 1/sqrt(var + eps), dxhat = g * weight):
        dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    because xhat depends on x directly (rstd), through the mean (-rstd/C for every input), and through
    the variance (d rstd/dx_j = -rstd * xhat_j / C).  dweight = sum_rows(g * xhat), dbias = sum_rows(g).
    """
    data = x.data
    if _c_path(data, weight.data, *(() if bias is None else (bias.data,))):
        return _layer_norm_c(x, weight, bias, eps)
    xc = data - data.mean(axis=-1, keepdims=True)  # (..., C)
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
    xhat = xc
    xhat *= rstd  # (..., C), in place: xc is not needed again
    y = xhat * weight.data
    if bias is not None:
        y += bias.data

    def backward(g):
        gx = gw = gb = None
        C = data.shape[-1]
        if weight.requires_grad:
            gw = (g * xhat).reshape(-1, C).sum(axis=0)
        if bias is not None and bias.requires_grad:
            gb = g.reshape(-1, C).sum(axis=0)
        if x.requires_grad:
            dxhat = g * weight.data  # (..., C)
            a = dxhat.mean(axis=-1, keepdims=True)  # (..., 1)
            b = (dxhat * xhat).mean(axis=-1, keepdims=True)  # (..., 1)
            gx = dxhat
            gx -= a
            gx -= xhat * b
            gx *= rstd
        return gx, gw, gb

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(y, parents, backward)


def _layer_norm_c(x, weight, bias, eps):
    """layer_norm with tinylm's C kernels: the same math, mean and rstd recomputed in the backward."""
    y = kernels.layernorm_f32(x.data, weight.data, None if bias is None else bias.data, eps)

    def backward(g):
        gx, gw, gb = kernels.layernorm_backward_f32(x.data, weight.data, g, eps, bias=bias is not None)
        return (gx if x.requires_grad else None, gw if weight.requires_grad else None,
                gb if bias is not None and bias.requires_grad else None)

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(y, parents, backward)


def rms_norm(x, weight, eps=1e-5):
    """Llama's norm: scale the last axis by the inverse of its root mean square, then by weight.

        rstd = 1 / sqrt(mean(x^2) + eps)        xhat = x * rstd        y = xhat * weight
    No mean is subtracted and there is no bias: half of LayerNorm's work, and Llama trains as well.
    Backward (per row of C values, dxhat = g * weight): y_i depends on x_j directly when i = j and through
    rstd for every j, with d rstd/dx_j = -rstd^3 x_j / C = -rstd * xhat_j / C, so
        dxhat_i/dx_j = rstd (delta_ij - xhat_i xhat_j / C)
        dx = rstd * (dxhat - xhat * mean(dxhat * xhat))          dweight = sum_rows(g * xhat)
    (LayerNorm's formula without its "- mean(dxhat)" term, which came from subtracting the mean.)

    >>> [round(v, 4) for v in rms_norm(Tensor([[3.0, 4.0]]), Tensor([1.0, 1.0])).data[0].tolist()]
    [0.8485, 1.1314]
    """
    data = x.data
    if _c_path(data, weight.data):  # the C kernels: the same math, rstd recomputed in the backward
        def backward_c(g):
            gx, gw = kernels.rmsnorm_backward_f32(data, weight.data, g, eps)
            return (gx if x.requires_grad else None, gw if weight.requires_grad else None)
        return Tensor._make(kernels.rmsnorm_f32(data, weight.data, eps), (x, weight), backward_c)
    rstd = 1.0 / np.sqrt((data * data).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
    xhat = data * rstd  # (..., C)
    y = xhat * weight.data  # (..., C)

    def backward(g):
        gx = gw = None
        C = data.shape[-1]
        if weight.requires_grad:
            gw = (g * xhat).reshape(-1, C).sum(axis=0)  # (C,)
        if x.requires_grad:
            dxhat = g * weight.data  # (..., C)
            gx = dxhat - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
            gx *= rstd
        return gx, gw

    return Tensor._make(y, (x, weight), backward)


def rope_angles(pos, head_size, theta=10000.0, dtype=np.float32):
    """cos and sin, each (T, head_size // 2), of the rotary angles pos * theta^(-2i / head_size).

    Pair i of a head turns at frequency theta^(-2i/hs): pair 0 by one radian per position, the last pair
    about theta times slower. Computed in float64 and rounded once to `dtype`.

    >>> cos, sin = rope_angles(np.array([0, 1]), 4, theta=100.0)
    >>> [round(v, 4) for v in sin[1].tolist()]      # position 1: sin(1), sin(1/10)
    [0.8415, 0.0998]
    """
    freq = theta ** (-np.arange(0, head_size, 2, dtype=np.float64) / head_size)  # (hs/2,)
    angle = np.asarray(pos, dtype=np.float64).reshape(-1, 1) * freq  # (T, hs/2)
    return np.cos(angle).astype(dtype), np.sin(angle).astype(dtype)


def rope(x, pos, theta=10000.0):
    """Rotary position embedding: rotate each ADJACENT pair (x[2i], x[2i+1]) of every head vector by the
    angle pos * theta^(-2i/hs), the convention of Meta's Llama, llama2.c's run.c and llama.cpp's "llama".

    x (..., T, hs) queries or keys, pos (T,) integer positions -> (..., T, hs). A query at position m
    and a key at position n, both rotated, have the dot product of the unrotated pair rotated by
    (m - n) only: attention sees relative positions. (Hugging Face's Llama rotates the two HALVES of a
    head instead, x[i] with x[i + hs/2]; that is the same model with the rows of Wq and Wk permuted.)

        y[2i]   = x[2i] cos - x[2i+1] sin
        y[2i+1] = x[2i] sin + x[2i+1] cos
    Backward: a rotation's inverse is its transpose (rotation by -angle), so
        dx[2i]   =  g[2i] cos + g[2i+1] sin
        dx[2i+1] = -g[2i] sin + g[2i+1] cos
    """
    T, hs = x.shape[-2], x.shape[-1]
    if hs % 2:
        raise ValueError(f"rope: head size {hs} is odd; rotary embedding needs pairs")
    pos = np.asarray(pos).reshape(-1)
    if pos.shape != (T,):
        raise ValueError(f"rope: pos has {pos.size} positions for {T} tokens")
    cos, sin = rope_angles(pos, hs, theta, x.dtype)  # (T, hs/2) each
    pairs = x.data.reshape(x.shape[:-1] + (hs // 2, 2))  # (..., T, hs/2, 2)
    a, b = pairs[..., 0], pairs[..., 1]  # (..., T, hs/2) each
    y = np.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(x.shape)  # (..., T, hs)

    def backward(g):
        g2 = g.reshape(pairs.shape)
        ga, gb = g2[..., 0], g2[..., 1]
        return (np.stack([ga * cos + gb * sin, gb * cos - ga * sin], axis=-1).reshape(x.shape),)

    return Tensor._make(y, (x,), backward)


def cross_entropy(logits, targets, ignore_index=-1):
    """Mean negative log-likelihood of `targets` under softmax(logits): the language-model loss.

    logits (N, V) or (B, T, V); targets integer (N,) or (B, T). Targets equal to `ignore_index` count
    for nothing (and are not in the mean); if every target is ignored the loss is 0.

    Fused because composing it wastes work and precision: log(softmax(x))[t] = x_t - logsumexp(x) needs
    no division and no log of a tiny number, and its gradient is simply
        dloss/dlogits = (softmax(logits) - onehot(targets)) / n_valid
    (the softmax computed in the forward pass is reused in place in the backward).

    >>> round(cross_entropy(Tensor(np.zeros((1, 4))), np.array([2])).item(), 4)   # uniform: ln 4
    1.3863
    """
    if isinstance(targets, Tensor):
        targets = targets.data
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets has dtype {targets.dtype}; expected integer class ids")
    if logits.ndim < 2 or targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: logits has shape {logits.shape} and targets {targets.shape}; "
                         f"expected logits (..., V) and targets (...) with the same leading shape")
    V = logits.shape[-1]
    z = logits.data.reshape(-1, V)  # (N, V)
    t = targets.reshape(-1)  # (N,)
    valid = t != ignore_index
    if ((t < 0) | (t >= V))[valid].any():
        bad = t[valid & ((t < 0) | (t >= V))][0]
        raise ValueError(f"cross_entropy: target {bad} is outside 0 .. {V - 1} (and is not ignore_index "
                         f"{ignore_index})")
    n_valid = int(valid.sum())
    if _c_path(z):  # the C kernels: softmax and -log p_t per row, then the same backward
        t_c = np.where(valid, t, -1)  # the kernels' mark of an ignored row
        probs_c, nll_c = kernels.cross_entropy_f32(z, t_c)
        loss = np.asarray(nll_c.sum() / max(n_valid, 1), dtype=logits.dtype)

        def backward_c(g):
            scale = g / max(n_valid, 1)
            return (kernels.cross_entropy_backward_f32(probs_c, t_c, scale).reshape(logits.shape),)
        return Tensor._make(loss, (logits,), backward_c)
    rows = np.arange(len(t))
    t_safe = np.where(valid, t, 0)

    probs = np.exp(z - z.max(axis=1, keepdims=True))  # (N, V) unnormalised
    total = probs.sum(axis=1, keepdims=True)  # (N, 1)
    probs /= total  # softmax, kept for backward
    # -log p_t = log(total) - (z_t - max)  computed from the shifted logits, never log of a tiny p
    nll = np.log(total[:, 0]) - (z[rows, t_safe] - z.max(axis=1))  # (N,)
    loss = np.asarray((nll * valid).sum() / max(n_valid, 1), dtype=logits.dtype)

    def backward(g):
        grad = probs  # reused in place: this backward runs once
        grad[rows, t_safe] -= 1.0
        if n_valid < len(t):
            grad[~valid] = 0.0
        grad *= g / max(n_valid, 1)
        return (grad.reshape(logits.shape),)

    return Tensor._make(loss, (logits,), backward)


_causal_masks = {}


def _causal_bias(Tq, Tk, dtype):
    """(Tq, Tk) additive mask: 0 where query i may see key j (j <= i + Tk - Tq), -inf elsewhere."""
    key = (Tq, Tk, np.dtype(dtype).str)
    if key not in _causal_masks:
        if len(_causal_masks) > 256:  # generation asks for (1, 1), (1, 2), ...: keep the cache bounded
            _causal_masks.clear()
        blocked = np.triu(np.ones((Tq, Tk), dtype=bool), k=1 + Tk - Tq)
        _causal_masks[key] = np.where(blocked, -np.inf, 0.0).astype(dtype)
    return _causal_masks[key]


def scaled_dot_product_attention(q, k, v, causal=True, dropout_p=0.0, rng=None):
    """softmax(q k^T / sqrt(hs) + mask) v: every query's mixture of the values it may look at.

    q (B, nh, Tq, hs), k and v (B, nh, Tk, hs) -> (B, nh, Tq, hs). With causal=True and Tq <= Tk the
    queries are the LAST Tq positions (bottom-right aligned): query i sees keys j <= i + (Tk - Tq), which
    is what a KV cache feeding only the new tokens needs. dropout_p > 0 drops attention weights (needs rng).

    Backward, with S = q k^T * scale, P = softmax(S), Pd = dropout(P), y = Pd v:
        dv = Pd^T dy        dPd = dy v^T        dP = dropout_backward(dPd)
        dS = P * (dP - sum_j(dP * P))           (the softmax backward, row by row)
        dq = dS k * scale   dk = dS^T q * scale
    Masked positions have P = 0, so they get dS = 0 with no extra work.

    float16 q, k, v (mixed-precision training, tinylm.amp): the scores, the softmax and the products are
    computed in fp32 from the exactly widened values (`_fp32`, fp32 products and sums, like matmul_f16);
    P and y are stored in float16, and the engine rounds dq, dk, dv to float16 like their inputs.

    Grouped-query attention: k and v may have size 1 on a leading axis where q has more, e.g. q
    (B, n_kv_head, group, Tq, hs) against k, v (B, n_kv_head, 1, Tk, hs): NumPy's matmul broadcasts one
    key/value head to every query head of its group without copying it, and the backward sums dk and dv
    over that axis (a value used `group` times receives `group` gradients).

    float32 with the C backend, no dropout, and q, k, v of one leading shape (no grouped-query broadcast)
    and one hs: the whole op, forward and backward, is the fused C kernel pair kernels.sdpa_f32 /
    sdpa_backward_f32 (`_sdpa_c`). The NumPy code below is its reference and the fallback for the rest.
    """
    Tq, hs, Tk = q.shape[-2], q.shape[-1], k.shape[-2]
    if k.shape[-1] != hs or v.shape[-2] != Tk:
        raise ValueError(f"scaled_dot_product_attention: q {q.shape}, k {k.shape}, v {v.shape} do not fit; "
                         f"expected q (..., Tq, hs), k (..., Tk, hs), v (..., Tk, hv)")
    if causal and Tq > Tk:
        raise ValueError(f"scaled_dot_product_attention: causal attention needs Tq <= Tk, got Tq={Tq}, Tk={Tk}")
    if (dropout_p == 0.0 and q.ndim >= 2 and q.shape[:-2] == k.shape[:-2] == v.shape[:-2] and v.shape[-1] == hs
            and _c_path(q.data, k.data, v.data)):
        return _sdpa_c(q, k, v, causal)
    scale = 1.0 / math.sqrt(hs)
    S = np.matmul(_fp32(q.data), np.swapaxes(_fp32(k.data), -1, -2))  # (B, nh, Tq, Tk)
    S *= scale
    use_c = _c_path(S)
    if use_c:  # the C kernels: the mask is the kernel's causal argument, no (Tq, Tk) bias is added
        P = kernels.softmax_f32(S, causal=causal)  # (B, nh, Tq, Tk)
    else:
        if causal:
            S += _causal_bias(Tq, Tk, S.dtype)
        S -= S.max(axis=-1, keepdims=True)
        P = np.exp(S, out=S)  # (B, nh, Tq, Tk), in place
        P /= P.sum(axis=-1, keepdims=True)
    keep = None
    Pd = P
    if dropout_p > 0.0:
        if rng is None:
            raise ValueError("scaled_dot_product_attention: dropout_p > 0 needs rng (a np.random.Generator)")
        keep = (rng.random(P.shape, dtype=np.float32) >= dropout_p).astype(P.dtype)  # (B, nh, Tq, Tk) of 0/1
        keep *= P.dtype.type(1.0 / (1.0 - dropout_p))
        Pd = P * keep
    y = _like(np.matmul(Pd, _fp32(v.data)), q)  # (B, nh, Tq, hs)
    if q.dtype == np.float16:  # what backward keeps, stored like the activations
        P, Pd = _like(P, q), (None if keep is None else _like(Pd, q))
    if keep is None:
        Pd = P

    def backward(g):
        g = _fp32(g)
        gv = np.matmul(np.swapaxes(_fp32(Pd), -1, -2), g) if v.requires_grad else None  # (B, nh, Tk, hs)
        gq = gk = None
        if q.requires_grad or k.requires_grad:
            dP = np.matmul(g, np.swapaxes(_fp32(v.data), -1, -2))  # (B, nh, Tq, Tk)
            if keep is not None:
                dP *= keep
            Pf = _fp32(P)  # (B, nh, Tq, Tk): float16 under mixed precision, the math in fp32
            if use_c:
                dS = kernels.softmax_backward_f32(Pf, dP, causal=causal, scale=scale)
            else:
                dS = dP
                dS -= (dP * Pf).sum(axis=-1, keepdims=True)
                dS *= Pf
                dS *= scale
            if q.requires_grad:
                gq = np.matmul(dS, _fp32(k.data))  # (B, nh, Tq, hs)
            if k.requires_grad:
                gk = np.matmul(np.swapaxes(dS, -1, -2), _fp32(q.data))  # (B, nh, Tk, hs)
        return _like(gq, q), _like(_sum_to(gk, k.shape), k), _like(_sum_to(gv, v.shape), v)

    return Tensor._make(y, (q, k, v), backward)



def _heads(a):
    """An (..., T, hs) array as (N, nh, T, hs), the kernels' 4 axes: a view for 3 or more axes."""
    return a.reshape((-1,) + a.shape[-3:]) if a.ndim >= 3 else a.reshape((1, 1) + a.shape)


def _position_major(B, nh, T, hs):
    """An empty (B, nh, T, hs) float32 array laid out (B, T, nh, hs) in memory: what attention hands on is
    permuted back to (B, T, nh * hs) next, and for this layout that permute and reshape are views."""
    return np.empty((B, T, nh, hs), np.float32).transpose(0, 2, 1, 3)


def _sdpa_c(q, k, v, causal):
    """scaled_dot_product_attention with the fused C kernels: q, k, v are read where they are (the strided
    views a split and permute of the qkv activation make need no copy), P is kept for the backward, and y,
    dq, dk, dv are made position-major (`_position_major`)."""
    q4, k4, v4 = _heads(q.data), _heads(k.data), _heads(v.data)  # (N, nh, Tq, hs), 2 x (N, nh, Tk, hs)
    N, nh, Tq, hs = q4.shape
    Tk = k4.shape[2]
    y, p = kernels.sdpa_f32(q4, k4, v4, causal, out=_position_major(N, nh, Tq, hs))  # (N, nh, Tq, hs), (N, nh, Tq, Tk)

    def backward(g):
        gq, gk, gv = _position_major(N, nh, Tq, hs), _position_major(N, nh, Tk, hs), _position_major(N, nh, Tk, hs)
        kernels.sdpa_backward_f32(q4, k4, v4, p, _heads(g), causal, dq=gq, dk=gk, dv=gv)
        return (gq.reshape(q.shape) if q.requires_grad else None, gk.reshape(k.shape) if k.requires_grad else None,
                gv.reshape(v.shape) if v.requires_grad else None)

    return Tensor._make(y.reshape(q.shape), (q, k, v), backward)


def self_attention(qkv, n_head, dropout_p=0.0, rng=None):
    """Causal multi-head self-attention straight from the fused projection: qkv (B, T, 3C) holds every
    token's query, key and value side by side (C = n_head * hs each) -> y (B, T, C), the heads side by side.

    It is exactly: split qkv in three, view each part as (B, n_head, T, hs), scaled_dot_product_attention,
    and the heads back side by side; off the C path it runs just that. On the C path (float32, no dropout)
    it is one node instead of nine: the kernels read q, k, v where they sit in qkv and write y as (B, T, C),
    and the backward writes dq, dk, dv into the three parts of one (B, T, 3C) gradient, so there is no
    split to zero-fill and add into and no permute to copy. GPT's attention calls it whenever no KV cache,
    rotary positions or grouped-query heads come between the projection and the attention (training).
    """
    B, T, C3 = qkv.shape
    if C3 % (3 * n_head):
        raise ValueError(f"self_attention: qkv has shape {qkv.shape}; expected (B, T, 3 * C) with C a "
                         f"multiple of n_head={n_head}")
    C, hs = C3 // 3, C3 // 3 // n_head

    def heads(a, part):  # part 0, 1, 2 of a (B, T, 3C) array as a (B, n_head, T, hs) view
        return a[..., part * C:(part + 1) * C].reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)

    if dropout_p == 0.0 and _c_path(qkv.data):
        q4, k4, v4 = heads(qkv.data, 0), heads(qkv.data, 1), heads(qkv.data, 2)  # (B, nh, T, hs) views
        y, p = kernels.sdpa_f32(q4, k4, v4, True, out=_position_major(B, n_head, T, hs))  # p (B, nh, T, T)

        def backward(g):  # g (B, T, C)
            gqkv = np.empty((B, T, C3), np.float32)  # every element written by the kernel
            g4 = g.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
            kernels.sdpa_backward_f32(q4, k4, v4, p, g4, True, dq=heads(gqkv, 0), dk=heads(gqkv, 1),
                                      dv=heads(gqkv, 2))
            return (gqkv,)

        return Tensor._make(y.transpose(0, 2, 1, 3).reshape(B, T, C), (qkv,), backward)  # a view: no copy
    q, k, v = (t.reshape(B, T, n_head, hs).permute(0, 2, 1, 3) for t in split(qkv, 3, axis=-1))
    y = scaled_dot_product_attention(q, k, v, causal=True, dropout_p=dropout_p, rng=rng)  # (B, nh, T, hs)
    return y.permute(0, 2, 1, 3).reshape(B, T, C)


def _fp32(a):
    """a float16 array widened (exactly) to float32 for the math; any other array as it is."""
    return kernels.f16_to_f32(a).reshape(a.shape) if a.dtype == np.float16 else a


def _like(a, t):
    """float32 result `a` stored in float16 (round to nearest even) when tensor `t` is float16; else a.
    (The C conversion: NumPy's astype is ~10x slower, and far slower still for subnormal values.)"""
    if a is None or t.dtype != np.float16:
        return a
    return kernels.f32_to_f16(a.astype(np.float32, copy=False)).reshape(a.shape)


def _in_fp32(fn, x):
    """fn (an elementwise op) of a float16 x computed in fp32, its result stored in float16, as a GPU
    kernel does (load half, compute in fp32 registers, store half). Nothing fp32 is kept for backward:
    it recomputes fn in fp32 from x and runs fn's own backward."""
    y = _like(fn(Tensor(_fp32(x.data))).data, x)  # a Tensor without grad: no graph recorded

    def backward(g):
        xf = Tensor(_fp32(x.data), requires_grad=True)
        fn(xf).backward(_fp32(g))
        return (_like(xf.grad, x),)

    return Tensor._make(y, (x,), backward)


def _sum_to(g, shape):
    """g summed over the leading axes where `shape` has size 1 (the axes a matmul broadcast); None stays None."""
    if g is None or g.shape == shape:
        return g
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    return g.sum(axis=axes, keepdims=True)


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def gelu(x):
    """GELU with the tanh approximation GPT-2 uses: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).

    Computed as x * sigmoid(2u), the same number (0.5 (1 + tanh(u)) = sigmoid(2u)) for one exp instead of
    a tanh, which NumPy evaluates several times slower. With s = sigmoid(2u), and since
    0.5 (1 - tanh^2 u) = 2 s (1 - s), the derivative is
        dy/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    """
    if x.dtype == np.float16:  # mixed precision (tinylm.amp): fp32 math, float16 in and out
        return _in_fp32(gelu, x)
    d = x.data
    if _c_path(d):  # the C kernels: the same formulas; sigmoid(2u) recomputed in the backward
        return Tensor._make(kernels.gelu_f32(d), (x,), lambda g: (kernels.gelu_backward_f32(d, g),))
    s = d * d  # (...,) every step below reuses this one buffer
    s *= -2.0 * _GELU_C * _GELU_A
    s -= 2.0 * _GELU_C
    s *= d  # -2u
    with np.errstate(over="ignore"):  # exp(-2u) = inf for very negative x gives s = 0, as it should
        np.exp(s, out=s)
    s += 1.0
    np.reciprocal(s, out=s)  # s = sigmoid(2u)
    y = d * s

    def backward(g):
        dy = d * d
        dy *= 2.0 * _GELU_C * 3 * _GELU_A
        dy += 2.0 * _GELU_C
        dy *= d  # 2 x sqrt(2/pi) (1 + 3 a x^2)
        dy *= 1.0 - s
        dy += 1.0
        dy *= s  # s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 a x^2)
        dy *= g
        return (dy,)

    return Tensor._make(y, (x,), backward)


def swiglu(gate, up):
    """silu(gate) * up, silu(a) = a * sigmoid(a): the gated unit of Llama's MLP (w2(silu(w1 x) * w3 x)).

    Backward, with s = sigmoid(gate), since d silu/da = s + a s (1 - s):
        dgate = g * up * (s + gate * s * (1 - s))        dup = g * gate * s
    """
    a = gate.data
    with np.errstate(over="ignore"):  # exp(-a) = inf for very negative a gives s = 0, as it should
        s = 1.0 / (1.0 + np.exp(-a))  # sigmoid(gate)
    silu = a * s
    y = silu * up.data

    def backward(g):
        ga = gu = None
        if gate.requires_grad:
            ga = g * up.data * (s + silu * (1.0 - s))
        if up.requires_grad:
            gu = g * silu
        return ga, gu

    return Tensor._make(y, (gate, up), backward)


def dropout(x, p, training, rng):
    """Inverted dropout: zero each value with probability p and scale the rest by 1/(1-p), so the expected
    value is unchanged and evaluation needs no rescaling. Identity when p == 0 or not training."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if p == 0.0 or not training:
        return x
    if rng is None:
        raise ValueError("dropout: p > 0 while training needs rng (a np.random.Generator)")
    keep = (rng.random(x.shape, dtype=np.float32) >= p).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return Tensor._make(x.data * keep, (x,), lambda g: (g * keep,))


def embedding(weight, idx):
    """Rows of `weight` (V, C) picked by integer ids `idx` (...) -> (..., C): the embedding lookup.

    Backward: row v of dweight is the sum of the output gradients at every position where idx == v (an
    id used twice gets both): `_add_rows`, the same scatter-add as `index_add` below.
    """
    if isinstance(idx, Tensor):
        idx = idx.data
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: idx has dtype {idx.dtype}; expected integer ids")
    V, C = weight.shape
    if idx.size and (idx.min() < 0 or idx.max() >= V):
        raise ValueError(f"embedding: ids must be in 0 .. {V - 1}, got values from {idx.min()} to {idx.max()}")
    out = weight.data[idx]  # (..., C)

    def backward(g):
        if _c_path(g):
            return (kernels.embedding_backward_f32(idx, g, V),)  # (V, C), the C scatter-add
        return (_add_rows(idx.reshape(-1), g.reshape(-1, C), V),)  # (V, C)

    return Tensor._make(out, (weight,), backward)


def _add_rows(idx, rows, n):
    """An (n, C) array of zeros with rows[i] added into row idx[i]: the backward of a row gather.

    idx (N,) integer ids in 0 .. n-1, rows (N, C). One sort + np.add.reduceat over runs of equal ids: 7x
    faster than np.add.at for a training batch (768 ids into a (65, 128) table), as fast for GPT-2's 50257 rows.
    """
    order = np.argsort(idx, kind="stable")
    ids = idx[order]
    out = np.zeros((n,) + rows.shape[1:], dtype=rows.dtype)
    if ids.size:
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        out[ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def index_add(idx, src, n):
    """Rows of `src` (N, C) added into an (n, C) tensor of zeros at rows `idx` (N,): the scatter-add.

    The inverse of gathering rows x[idx]: a mixture of experts gathers the rows each expert works on and
    puts the results back with this, each token summing the (gated) outputs of its k experts.

    >>> index_add(np.array([2, 0, 2]), Tensor(np.ones((3, 2))), 4).data.tolist()
    [[1.0, 1.0], [0.0, 0.0], [2.0, 2.0], [0.0, 0.0]]

    Backward: row i of src went into row idx[i] only, with factor 1, so its gradient is g[idx[i]].
    """
    idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
    if idx.dtype.kind not in "iu" or idx.ndim != 1 or src.ndim < 1 or len(idx) != src.shape[0]:
        raise ValueError(f"index_add: idx has shape {idx.shape} and dtype {idx.dtype}, src {src.shape}; expected "
                         f"integer idx (N,) and src (N, ...)")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"index_add: ids must be in 0 .. {n - 1}, got values from {idx.min()} to {idx.max()}")
    out = _add_rows(idx, src.data, n)  # (n, C)
    return Tensor._make(out, (src,), lambda g: (g[idx],))  # (N, C)
