"""The NumPy reference of every tinylm kernel: what the C in kernels/ must compute.

Each function is pure NumPy, reads like the math, and has exactly the contract written in
kernels/tinylm_kernels.h: that header is the one place the contracts (rounding, special values,
error bounds) are written; a docstring here says what the function computes and names the section
of the header. The tests compare the C kernels with these functions bit for bit where the contract
says "exact", and within the header's bounds elsewhere -- those bounds are the constants and
`matmul_tolerance` below, and a test checks that the header still states the same numbers.

These functions expect arguments that tinylm.kernels has already validated (dtypes, shapes,
contiguity); call those, not these, from model code.

Layout everywhere: row-major, weights like nn.Linear, `(out_features, in_features) = (N, K)`:

    >>> x = np.ones((2, 3), np.float32); w = np.ones((4, 3), np.float32)
    >>> matmul_f32(x, w).shape              # y = x @ w.T: (M, K) @ (K, N) -> (M, N)
    (2, 4)
"""
from __future__ import annotations

import numpy as np

# int8 values stay in [-127, 127]: symmetric around 0, so -x is always representable
QMAX = 127

# ---- the error bounds of the inexact kernels (stated in tinylm_kernels.h) --------------------------
EXP_F32_REL_ERROR = 1.5e-7             # tinylm_exp_f32: |y - e^x| <= 1.5e-7 * e^x
SOFTMAX_F32_ATOL = 1e-6                # tinylm_softmax_f32: |y - y_exact| <= 1e-6 + 2e-6 * y_exact
SOFTMAX_F32_RTOL = 2e-6
SOFTMAX_F16_ULPS = 1                   # tinylm_softmax_f16: fp16 ulps from the exactly rounded result
SOFTMAX_S8_ERROR = 1 / 256 + 2**-22    # tinylm_softmax_s8: |y / 256 - p| against the float softmax


def matmul_tolerance(x, w, b=None):
    """The bound of tinylm_matmul_f32 / tinylm_matmul_f16 for every output (float64, (M, N)):
    K * 2**-23 * sum_k |x[m, k] * w[n, k]| + |y_exact[m, n]| * 2**-23, y_exact = x @ w.T + b.

    >>> matmul_tolerance(np.ones((1, 2), np.float32), np.ones((1, 2), np.float32)) * 2**23
    array([[6.]])
    """
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    exact = x64 @ w64.T + (0 if b is None else b)                  # (M, N)
    K = x.shape[1]
    return K * 2.0**-23 * (np.abs(x64) @ np.abs(w64).T) + np.abs(exact) * 2.0**-23


# ---- fp16 <-> fp32 -------------------------------------------------------------------------------

def f32_to_f16(x):
    """float32 -> float16 with the rounding, overflow and NaN rules of tinylm_f32_to_f16
    (tinylm_kernels.h). Exact.

    >>> f32_to_f16(np.array([1.0, 65519.0, 65520.0, 2.0**-25], np.float32))
    array([1.00e+00, 6.55e+04,      inf, 0.00e+00], dtype=float16)
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):             # overflowing to inf is part of the contract
        h = x.astype(np.float16)                 # IEEE conversion: round half to even
    nan = np.isnan(x)
    if nan.any():                                # pin down the NaN bits the contract promises
        bits = x.view(np.uint32)[nan]
        nan_bits = ((bits >> 16) & 0x8000) | 0x7E00 | ((bits >> 13) & 0x3FF)
        h.view(np.uint16)[nan] = nan_bits.astype(np.uint16)
    return h


def f16_to_f32(h):
    """float16 -> float32 (tinylm_f16_to_f32 in tinylm_kernels.h, NaN bits included). Exact.

    >>> f16_to_f32(np.array([2.0**-24, 65504.0], np.float16))   # smallest subnormal, largest half
    array([5.9604645e-08, 6.5504000e+04], dtype=float32)
    """
    h = np.asarray(h, dtype=np.float16)
    x = h.astype(np.float32)
    nan = np.isnan(h)
    if nan.any():
        bits = h.view(np.uint16)[nan].astype(np.uint32)
        nan_bits = ((bits & 0x8000) << 16) | 0x7FC00000 | ((bits & 0x3FF) << 13)
        x.view(np.uint32)[nan] = nan_bits
    return x


# ---- matmul --------------------------------------------------------------------------------------

def matmul_f32(x, w, b=None):
    """y (M, N) = x (M, K) @ w (N, K).T + b (N,), float32 in and out (tinylm_matmul_f32).

    Sums in float64 and rounds once: the most accurate answer, which the C kernel must be within
    `matmul_tolerance` of (the bound of tinylm_kernels.h).
    """
    y = x.astype(np.float64) @ w.astype(np.float64).T      # (M, K) @ (K, N) -> (M, N)
    if b is not None:
        y = y + b
    return y.astype(np.float32)


def matmul_nn_f32(x, w):
    """y (M, N) = x (M, K) @ w (K, N), float32, w as stored (tinylm_matmul_nn_f32): summed in float64
    and rounded once, like matmul_f32, whose error bound the C kernel meets."""
    return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.float32)   # (M, K) @ (K, N)


def matmul_tn_f32(x, w):
    """y (M, N) = x (K, M).T @ w (K, N), float32, both as stored (tinylm_matmul_tn_f32): summed in float64
    and rounded once, like matmul_f32."""
    return (x.astype(np.float64).T @ w.astype(np.float64)).astype(np.float32)   # (M, K) @ (K, N)


def matmul_f16(x, w, b=None):
    """y (M, N) float32 = x (M, K) float16 @ w (N, K).T float16 + b (N,) float32.

    fp16 is storage only (tinylm_matmul_f16): converted exactly, then as matmul_f32.
    """
    return matmul_f32(f16_to_f32(x), f16_to_f32(w), b)


def matmul_s8(x, w):
    """y (M, N) int32 = x (M, K) int8 @ w (N, K).T int8, exact (tinylm_matmul_s8).

    >>> matmul_s8(np.array([[127, -127]], np.int8), np.array([[127, 127]], np.int8))
    array([[0]], dtype=int32)
    """
    return x.astype(np.int32) @ w.astype(np.int32).T          # (M, K) @ (K, N) -> (M, N)


# ---- int8 quantization ---------------------------------------------------------------------------

def quantize_s8(x, group_size):
    """Symmetric int8 quantization of x (M, K) float32 per row and group of `group_size` columns
    (tinylm_quantize_s8, with its special groups: tinylm_kernels.h). Exact.

    Returns q (M, K) int8 and scale (M, G) float32; x ~ q * scale:
        scale = max|x| / 127;  q = clip(round_half_even(x / scale), -127, 127)

    >>> q, scale = quantize_s8(np.array([[0.5, -1.0, 0.25, 0.0]], np.float32), group_size=2)
    >>> q, scale                                # groups [0.5, -1.0] and [0.25, 0.0]
    (array([[  64, -127,  127,    0]], dtype=int8), array([[0.00787402, 0.0019685 ]], dtype=float32))
    """
    M, K = x.shape
    xg = x.reshape(M, K // group_size, group_size)            # (M, G, group_size)
    amax = np.abs(xg).max(axis=-1)                            # (M, G), NaN if the group has one
    scale = (amax / np.float32(QMAX)).astype(np.float32)      # (M, G)
    ok = (scale > 0) & np.isfinite(scale)                     # groups we can divide by
    safe = np.where(ok, scale, np.float32(1))[..., None]      # (M, G, 1)
    with np.errstate(invalid="ignore"):
        q = np.clip(np.rint(xg / safe), -QMAX, QMAX)          # (M, G, group_size), half to even
    q = np.where(ok[..., None], q, 0)
    return q.astype(np.int8).reshape(M, K), scale


def dequantize_s8(q, scale):
    """x (M, K) float32 = q (M, K) int8 * scale (M, G) float32, each scale used for its group of
    K // G columns (tinylm_dequantize_s8). Exact."""
    M, K = q.shape
    group_size = K // scale.shape[1]
    with np.errstate(invalid="ignore"):                      # 0 * NaN, 0 * inf: NaN, as promised
        x = q.reshape(M, -1, group_size).astype(np.float32) * scale[..., None]   # (M, G, group_size)
    return x.reshape(M, K)


def linear_s8(x, w_q, w_scale, b=None):
    """The int8 Linear layer: y (M, N) float32 from x (M, K) float32 and int8 weights w_q (N, K),
    w_scale (N, G), b (N,) or None, in the order of operations of tinylm_linear_s8
    (tinylm_kernels.h): quantize x, exact int32 dots per group, groups added in float32. Exact.
    """
    M, K = x.shape
    N, G = w_scale.shape
    group_size = K // G
    x_q, x_scale = quantize_s8(x, group_size)                 # (M, K) int8, (M, G) float32
    xg = x_q.reshape(M, G, group_size).astype(np.int32)       # (M, G, group_size)
    wg = w_q.reshape(N, G, group_size).astype(np.int32)       # (N, G, group_size)
    acc = np.zeros((M, N), np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        for g in range(G):
            dot = (xg[:, g] @ wg[:, g].T).astype(np.float32)             # (M, N), exact int32
            acc = acc + (x_scale[:, g, None] * w_scale[None, :, g]) * dot  # (M, 1) * (1, N) * (M, N)
        if b is not None:
            acc = acc + b
    return acc


# ---- int4 weights (two per byte) -----------------------------------------------------------------

# int4 values stay in [-7, 7]: symmetric like int8, so -8 (0x8) is never produced
Q4MAX = 7


def pack_s4(q):
    """int8 values in [-7, 7], shape (N, K) with K a multiple of 32 -> (N, K // 2) uint8 in Q4_0's
    layout (tinylm_kernels.h, int4): each block of 32 columns is 16 bytes, byte j holding column j in
    its low nibble and column j + 16 in its high nibble, as 4-bit two's complement.

    >>> q = np.zeros((1, 32), np.int8); q[0, :3] = [1, -1, 7]; q[0, 16:19] = [-7, 3, 0]
    >>> pack_s4(q)[0, :4]                       # 0x91 = (-7, 1), 0x3F = (3, -1), 0x07 = (0, 7)
    array([145,  63,   7,   0], dtype=uint8)
    """
    N, K = q.shape
    nib = (q.astype(np.uint8) & 0x0F).reshape(N, K // 32, 2, 16)    # (N, blocks, low/high, 16)
    return (nib[:, :, 0] | (nib[:, :, 1] << 4)).reshape(N, K // 2)


def unpack_s4(w_q4):
    """(N, K // 2) uint8 -> (N, K) int8 in [-8, 7]: the inverse of pack_s4.

    >>> unpack_s4(np.full((1, 16), 0x9F, np.uint8))[0, [0, 15, 16, 31]]   # low -1, high -7
    array([-1, -1, -7, -7], dtype=int8)
    """
    N, half = w_q4.shape
    blocks = w_q4.reshape(N, half // 16, 1, 16)
    nib = np.concatenate([blocks & 0x0F, blocks >> 4], axis=2).astype(np.int8)  # (N, blocks, 2, 16)
    return (nib - ((nib & 8) << 1)).reshape(N, 2 * half)            # 8..15 -> -8..-1


def quantize_s4(w, group_size):
    """Symmetric int4 quantization of w (N, K) float32 per row and group (tinylm_kernels.h, int4):
    scale = max|w| / 7 (float32), q = clip(round_half_even(w / scale), -7, 7), special groups as
    quantize_s8. Returns (w_q4 (N, K // 2) uint8 packed, scale (N, G) float32). Exact.

    >>> w = np.zeros((1, 64), np.float32); w[0, :2] = [0.5, -1.0]; w[0, 32:34] = [0.25, 0.0]
    >>> w_q4, scale = quantize_s4(w, group_size=32)
    >>> unpack_s4(w_q4)[0, [0, 1, 32, 33]], scale     # 0.5 / scale = 3.4999998 in float32 -> 3
    (array([ 3, -7,  7,  0], dtype=int8), array([[0.14285715, 0.03571429]], dtype=float32))
    """
    N, K = w.shape
    wg = w.reshape(N, K // group_size, group_size)            # (N, G, group_size)
    amax = np.abs(wg).max(axis=-1)                            # (N, G)
    scale = (amax / np.float32(Q4MAX)).astype(np.float32)     # (N, G)
    ok = (scale > 0) & np.isfinite(scale)
    safe = np.where(ok, scale, np.float32(1))[..., None]      # (N, G, 1)
    with np.errstate(invalid="ignore"):
        q = np.clip(np.rint(wg / safe), -Q4MAX, Q4MAX)        # (N, G, group_size), half to even
    q = np.where(ok[..., None], q, 0).astype(np.int8).reshape(N, K)
    return pack_s4(q), scale


def dequantize_s4(w_q4, scale):
    """w (N, K) float32 = unpacked q * the scale of its group (tinylm_dequantize_s4). Exact."""
    return dequantize_s8(unpack_s4(w_q4), scale)


def linear_s4(x, w_q4, w_scale, b=None):
    """The int4 Linear layer (tinylm_linear_s4): linear_s8's rule with the weights unpacked from
    w_q4 (N, K // 2) uint8; the int4 values are exact in int8, so the int32 dots are the same. Exact.
    """
    return linear_s8(x, unpack_s4(w_q4), w_scale, b)


# ---- softmax -------------------------------------------------------------------------------------

def _causal_visible(shape):
    """Boolean mask (Tq, Tk): query i sees key j when j <= i + (Tk - Tq)."""
    Tq, Tk = shape[-2], shape[-1]
    return np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (Tk - Tq)


def softmax_f32(x, causal=False):
    """Softmax over the last axis of x (..., T), float32: e / e.sum(), e = exp(x - max(x)).

    causal=True takes x as score matrices (..., Tq, Tk), Tk >= Tq, where query i only sees keys
    j <= i + (Tk - Tq). Masking and special values as tinylm_softmax_f32 (tinylm_kernels.h); the C
    kernel is within SOFTMAX_F32_ATOL + SOFTMAX_F32_RTOL * y of this reference.

    >>> softmax_f32(np.array([[0.0, 0.0], [1.0, 2.0]], np.float32), causal=True)
    array([[1.       , 0.       ],
           [0.2689414, 0.7310586]], dtype=float32)
    """
    x = np.asarray(x, dtype=np.float32)
    if causal:
        x = np.where(_causal_visible(x.shape), x, np.float32(-np.inf))
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))          # (..., T), each in [0, 1]
        y = e / e.sum(axis=-1, keepdims=True)
    if causal:                                                 # masked stays 0 even in a NaN row
        y = np.where(_causal_visible(x.shape), y, np.float32(0))
    return y.astype(np.float32)


def softmax_f16(x):
    """Softmax over the last axis with float16 storage: converted exactly to float32, float32 math,
    rounded to nearest even float16 (tinylm_softmax_f16: within SOFTMAX_F16_ULPS of this)."""
    return f32_to_f16(softmax_f32(f16_to_f32(x)))


def softmax_s8_table(scale):
    """The 256 exp values an integer softmax needs: table[d] = round(exp(-d * scale) * 2**30).

    The logits are int8 with real value x * scale, so exp(scale * (x_i - max)) depends only on
    d = max - x_i in 0..255. Q2.30 fixed point (table[0] = 2**30 is 1.0), uint32.

    >>> softmax_s8_table(0.5)[:3]                 # 2**30 * [1, e**-0.5, e**-1]
    array([1073741824,  651257337,  395007542], dtype=uint32)
    """
    d = np.arange(256, dtype=np.float64)
    return np.rint(np.exp(-d * float(scale)) * 2.0**30).astype(np.uint32)


def softmax_s8(x, scale):
    """Integer softmax over the last axis: int8 logits (real value x * scale) -> uint8 Q0.8, p ~ y / 256
    (tinylm_softmax_s8: integers only, exact; within SOFTMAX_S8_ERROR of the float softmax). Per row,
    with table = softmax_s8_table(scale):
        m = max(x);  e_i = table[m - x_i];  S = sum(e_i);  y_i = min(255, (e_i * 256 + S // 2) // S)

    >>> softmax_s8(np.array([[0, 0, 0, 0]], np.int8), scale=0.1)     # four times 1/4 = 64/256
    array([[64, 64, 64, 64]], dtype=uint8)
    """
    table = softmax_s8_table(scale).astype(np.uint64)
    x = np.asarray(x).astype(np.int64)
    d = x.max(axis=-1, keepdims=True) - x                      # (..., T) in 0..255
    e = table[d]                                               # (..., T) uint64
    S = e.sum(axis=-1, keepdims=True, dtype=np.uint64)
    y = (e * np.uint64(256) + S // np.uint64(2)) // S
    return np.minimum(y, 255).astype(np.uint8)


# ---- the C runtime's kernels (contracts: the last section of kernels/tinylm_kernels.h) --------------

def layernorm_f32(x, w, b=None, eps=1e-5):
    """LayerNorm over the last axis of x (..., C) float32, as tinylm.autograd.layer_norm computes it:

        xhat = (x - mean) / sqrt(var + eps)        y = xhat * w + b      (float32 throughout)

    The C kernel sums left to right, NumPy pairwise: within 1e-5 * (1 + |y|) (see the header).

    >>> layernorm_f32(np.array([[1.0, 3.0]], np.float32), np.ones(2, np.float32))
    array([[-0.999995,  0.999995]], dtype=float32)
    """
    xc = x - x.mean(axis=-1, keepdims=True)                      # (..., C)
    rstd = np.float32(1.0) / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + np.float32(eps))  # (..., 1)
    y = (xc * rstd) * w
    return y if b is None else y + b


GELU_K1 = np.float32(-2.0 * 0.7978845608028654 * 0.044715)     # (float)(-2 sqrt(2/pi) 0.044715)
GELU_K2 = np.float32(2.0 * 0.7978845608028654)                  # (float)(2 sqrt(2/pi))


def gelu_f32(x):
    """GELU, tanh form, as tinylm.autograd.gelu computes it in float32: x * sigmoid(2u),
    u = sqrt(2/pi) (x + 0.044715 x^3), written as t = ((x*x) * K1 - K2) * x = -2u, y = x / (exp(t) + 1).
    The C kernel uses tinylm's exp: within 1e-6 |y| (see the header).

    >>> gelu_f32(np.array([0.0, 1.0, -1.0], np.float32)).round(4)
    array([ 0.    ,  0.8412, -0.1588], dtype=float32)
    """
    with np.errstate(over="ignore"):                             # x*x and exp(t) may overflow to inf:
        t = ((x * x) * GELU_K1 - GELU_K2) * x                    # then y = x / inf = -0 for very
        e = np.exp(t)                                            # negative x, as GELU tends to 0
    return x * (np.float32(1.0) / (e + np.float32(1.0)))


def embedding(table, ids, scale=None):
    """Rows `ids` of a (V, C) table -> ids.shape + (C,) float32. Exact. float32 rows are copied,
    float16 rows converted, int8 rows dequantized with their (V, C // group_size) scales."""
    flat = ids.reshape(-1)
    if table.dtype == np.int8:
        rows = dequantize_s8(table[flat], scale[flat])
    else:
        rows = table[flat].astype(np.float32)
    return rows.reshape(ids.shape + (table.shape[1],))


def residual_add_f32(x, r):
    """x + r, float32, element by element. Exact."""
    return x + r


def attention_f32(q, k, v, n_head, scale):
    """One query q (C,) attending over T cached positions k, v (T, C), n_head heads: for each head,
    softmax(q_h . k_t,h * scale) over t, then the weighted sum of v_t,h -> y (C,) float32.
    Computed in float64 here; the C kernel is within 1e-5 * (1 + max|v|) of it.

    >>> attention_f32(np.ones(2, np.float32), np.ones((3, 2), np.float32), np.eye(3, 2, dtype=np.float32), 1, 1.0)
    array([0.33333334, 0.33333334], dtype=float32)
    """
    T, C = k.shape
    hs = C // n_head
    qh = q.astype(np.float64).reshape(n_head, 1, hs)                          # (nh, 1, hs)
    kh = k.astype(np.float64).reshape(T, n_head, hs).transpose(1, 2, 0)       # (nh, hs, T)
    vh = v.astype(np.float64).reshape(T, n_head, hs).transpose(1, 0, 2)       # (nh, T, hs)
    s = (qh @ kh) * float(scale)                                              # (nh, 1, T)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return (p @ vh).reshape(C).astype(np.float32)                             # (C,)


# ---- training's kernels: backward passes, cross-entropy, AdamW (tinylm_kernels.h, "training's kernels") ----
# The math of tinylm.autograd.functional's backward closures and of tinylm.optim.AdamW, as pure functions
# of float32 arrays. Bounds of the C kernels against these (stated in the header, checked by the tests):
GELU_BACKWARD_RTOL = 2e-6              # |dx - ref| <= 2e-6 * (|ref| + |dy|) + 1e-30
NORM_BACKWARD_TOL = 1e-5               # layer norm / RMSNorm forward and backward: 1e-5 * (1 + |v|)
SOFTMAX_BACKWARD_TOL = 1e-6            # |dx - ref| <= 1e-6 * (|ref| + scale * max|dy * y| * cols)
CROSS_ENTROPY_NLL_TOL = 2e-6           # |nll - ref| <= 2e-6 * (1 + nll)
GELU_K3 = np.float32(6.0 * 0.7978845608028654 * 0.044715)      # (float)(6 sqrt(2/pi) 0.044715)


def gelu_backward_f32(x, dy):
    """dx = dy * GELU'(x) for float32 x, dy of one shape (tinylm_gelu_backward_f32):
    s = sigmoid(2u) as in gelu_f32, GELU'(x) = ((K3 x^2 + K2) x (1 - s) + 1) s.

    >>> gelu_backward_f32(np.array([0.0, 1.0], np.float32), np.ones(2, np.float32)).round(4)
    array([0.5  , 1.083], dtype=float32)
    """
    one = np.float32(1.0)
    with np.errstate(over="ignore"):
        s = one / (np.exp(((x * x) * GELU_K1 - GELU_K2) * x) + one)  # sigmoid(2u)
        d = (((x * x) * GELU_K3 + GELU_K2) * x) * (one - s)
    return ((d + one) * s) * dy


def layernorm_backward_f32(x, w, dy, eps=1e-5):
    """(dx, dw, db) of y = layernorm_f32(x, w, b) for x, dy (..., C), w (C,) (tinylm_layernorm_backward_f32):
        dx = ((dxhat - mean(dxhat)) - xhat * mean(dxhat * xhat)) * rstd,   dxhat = dy * w
        dw = sum over rows of dy * xhat,   db = sum over rows of dy
    """
    C = x.shape[-1]
    xc = x - x.mean(axis=-1, keepdims=True)                      # (..., C)
    rstd = np.float32(1.0) / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + np.float32(eps))  # (..., 1)
    xhat = xc * rstd
    dxhat = dy * w
    dx = ((dxhat - dxhat.mean(axis=-1, keepdims=True)) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)) * rstd
    return dx, (dy * xhat).reshape(-1, C).sum(axis=0), dy.reshape(-1, C).sum(axis=0)


def rmsnorm_f32(x, w, eps=1e-5):
    """Llama's RMSNorm over the last axis (tinylm_rmsnorm_f32): y = (x * rstd) * w, rstd = 1/sqrt(mean(x^2) + eps).

    >>> rmsnorm_f32(np.array([[3.0, 4.0]], np.float32), np.ones(2, np.float32), eps=0.0).round(4)
    array([[0.8485, 1.1314]], dtype=float32)
    """
    rstd = np.float32(1.0) / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(eps))  # (..., 1)
    return (x * rstd) * w


def rmsnorm_backward_f32(x, w, dy, eps=1e-5):
    """(dx, dw) of y = rmsnorm_f32(x, w) (tinylm_rmsnorm_backward_f32):
        dx = (dxhat - xhat * mean(dxhat * xhat)) * rstd,   dw = sum over rows of dy * xhat
    """
    C = x.shape[-1]
    rstd = np.float32(1.0) / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(eps))  # (..., 1)
    xhat = x * rstd
    dxhat = dy * w
    dx = (dxhat - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)) * rstd
    return dx, (dy * xhat).reshape(-1, C).sum(axis=0)


def softmax_backward_f32(y, dy, scale=1.0):
    """dx = ((dy - sum(dy * y)) * y) * scale over the last axis (tinylm_softmax_backward_f32), y = softmax(x).

    >>> softmax_backward_f32(np.array([[0.5, 0.5]], np.float32), np.array([[1.0, 0.0]], np.float32))
    array([[ 0.25, -0.25]], dtype=float32)
    """
    return ((dy - (dy * y).sum(axis=-1, keepdims=True)) * y) * np.float32(scale)


def cross_entropy_f32(logits, targets):
    """(probs (N, V), nll (N,)) for logits (N, V) float32 and targets (N,) ids, < 0 ignored (nll 0)
    (tinylm_cross_entropy_f32): probs = softmax(z), nll = log(sum exp(z - max)) - (z[t] - max).

    >>> cross_entropy_f32(np.zeros((1, 4), np.float32), np.array([2]))[1].round(4)   # ln 4
    array([1.3863], dtype=float32)
    """
    N = logits.shape[0]
    zmax = logits.max(axis=1, keepdims=True)                     # (N, 1)
    e = np.exp(logits - zmax)                                    # (N, V)
    total = e.sum(axis=1, keepdims=True)                         # (N, 1)
    valid = targets >= 0
    picked = logits[np.arange(N), np.where(valid, targets, 0)] - zmax[:, 0]
    nll = np.where(valid, np.log(total[:, 0]) - picked, np.float32(0.0)).astype(np.float32)
    return e / total, nll


def cross_entropy_backward_f32(probs, targets, scale):
    """dlogits = (probs - onehot(targets)) * scale, rows with targets < 0 zero (tinylm_cross_entropy_backward_f32)."""
    d = probs * np.float32(scale)
    rows = np.flatnonzero(targets >= 0)
    d[rows, targets[rows]] = (probs[rows, targets[rows]] - np.float32(1.0)) * np.float32(scale)
    d[targets < 0] = 0.0
    return d


def adamw_f32(p, g, m, v, decay, beta1, beta2, eps_hat, step):
    """One AdamW step (tinylm_adamw_f32) on float32 arrays, returned as new (p, m, v):
        m = m b1 + g (1 - b1);  v = v b2 + (g g)(1 - b2);  p = p decay + (m / (sqrt(v) + eps_hat)) step
    every scalar rounded to float32 first, as the kernel receives it.
    """
    f = np.float32
    m = m * f(beta1) + g * f(1.0 - beta1)
    v = v * f(beta2) + (g * g) * f(1.0 - beta2)
    return p * f(decay) + (m / (np.sqrt(v) + f(eps_hat))) * f(step), m, v


def embedding_backward_f32(ids, dy, V):
    """dtable (V, C) = the rows of dy (n, C) added into rows ids (n,), in order (tinylm_embedding_backward_f32).

    >>> embedding_backward_f32(np.array([1, 1]), np.ones((2, 2), np.float32), 3).tolist()
    [[0.0, 0.0], [2.0, 2.0], [0.0, 0.0]]
    """
    out = np.zeros((V, dy.shape[1]), np.float32)
    np.add.at(out, ids, dy)                                      # unbuffered, in the order of ids
    return out


# ---- fused attention for training ------------------------------------------------------------------
SDPA_TOL = 1e-5                        # each output o: |o - ref| <= 1e-5 * (1 + max|ref| over its head)


def sdpa_f32(q, k, v, causal=True, scale=None):
    """(y (B, nh, Tq, hs), p (B, nh, Tq, Tk)) of scaled dot-product attention (tinylm_sdpa_f32): q (B, nh, Tq, hs),
    k, v (B, nh, Tk, hs); with causal=True the queries are the last Tq positions (query i sees keys
    j <= i + Tk - Tq). scale defaults to 1/sqrt(hs).
        S = (q k^T) * scale        p = softmax_f32(S, causal)        y = p v

    >>> y, p = sdpa_f32(*np.ones((3, 1, 1, 2, 4), np.float32))
    >>> p[0, 0].tolist(), y[0, 0, 1].tolist()
    ([[1.0, 0.0], [0.5, 0.5]], [1.0, 1.0, 1.0, 1.0])
    """
    scale = np.float32(1.0 / np.sqrt(q.shape[-1]) if scale is None else scale)
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * scale            # (B, nh, Tq, Tk)
    p = softmax_f32(s, causal=causal)                           # (B, nh, Tq, Tk), masked entries 0
    return np.matmul(p, v), p                                   # (B, nh, Tq, hs)


def sdpa_backward_f32(q, k, v, p, dy, causal=True, scale=None):
    """(dq, dk, dv) of sdpa_f32 given its probabilities p and dy, the gradient of y (tinylm_sdpa_backward_f32):
        dv = p^T dy     dp = dy v^T     ds = softmax_backward_f32(p, dp, scale)     dq = ds k     dk = ds^T q
    (masked entries have p = 0, hence ds = 0).
    """
    scale = np.float32(1.0 / np.sqrt(q.shape[-1]) if scale is None else scale)
    dv = np.matmul(np.swapaxes(p, -1, -2), dy)                 # (B, nh, Tk, hs)
    dp = np.matmul(dy, np.swapaxes(v, -1, -2))                 # (B, nh, Tq, Tk)
    ds = softmax_backward_f32(p, dp, scale)                     # (B, nh, Tq, Tk), times scale
    if causal:
        ds[..., ~_causal_visible(p.shape)] = 0.0                # (0 * inf stays out of the masked entries)
    return np.matmul(ds, k), np.matmul(np.swapaxes(ds, -1, -2), q), dv
