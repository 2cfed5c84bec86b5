"""tinylm's kernels: one Python function per kernel, which checks its arguments and runs the C
kernel (tinylm._kernels, built from kernels/*.c by cffi) or its NumPy reference.

    >>> import numpy as np
    >>> from tinylm import kernels
    >>> x = np.ones((2, 3), np.float32); w = np.ones((4, 3), np.float32)
    >>> kernels.matmul_f32(x, w)            # y = x @ w.T: (2, 3) @ (3, 4) -> (2, 4)
    array([[3., 3., 3., 3.],
           [3., 3., 3., 3.]], dtype=float32)
    >>> kernels.backend() in ("c", "numpy")   # "numpy" when the C extension was not built
    True

The contracts (layout, rounding, saturation, NaN/inf) are written once, in kernels/tinylm_kernels.h,
and repeated in the docstrings of tinylm.kernels.reference. This module adds the checks a C kernel
cannot do, BEFORE any pointer reaches C:

- wrong dtype -> TypeError; wrong rank, shape, mismatched K, a group size that does not divide K,
  int8 values of -128 -> ValueError. Messages name the argument and what was expected, e.g.
  `matmul_f32: w has shape (3, 5); expected (N, 4) to match x's K=4`.
- Arrays are never converted between dtypes silently (pass float32 for fp32, float16 for fp16,
  int8 for int8). A non-contiguous array (a slice, a transpose) is copied to a contiguous one first,
  so any view works, at the cost of a copy.
- Outputs are new arrays.

Threads: the fp32 and fp16 matmuls split their rows across num_threads() Python threads when the product
is large (tinylm.kernels.threads; the C itself is single-threaded), with the bits of one call.

Backend: the C extension when it was built, else NumPy. TINYLM_KERNELS=numpy in the environment
forces NumPy (TINYLM_KERNELS=c or unset: C when available). When the extension is missing, tinylm
warns once and uses NumPy, which gives the same results (bit for bit for the exact kernels).
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from tinylm.kernels import reference
from tinylm.kernels.threads import num_threads, run_rows

__all__ = [
    "backend", "build_info", "f32_to_f16", "f16_to_f32", "matmul_f32", "matmul_f16", "matmul_s8",
    "quantize_s8", "dequantize_s8", "linear_s8", "LinearS8", "softmax_f32", "softmax_f16", "softmax_s8",
    "quantize_s4", "dequantize_s4", "linear_s4", "LinearS4",
    "layernorm_f32", "gelu_f32", "embedding", "residual_add_f32", "attention_f32",
    "amx_available", "matmul_nn_f32", "matmul_tn_f32", "packed_gemm_f32", "gemm_f32_for_linear",
]

ENV_VAR = "TINYLM_KERNELS"
# 127 * 127 * K must stay below 2**31: the int32 dot products of the int8 kernels cannot overflow
MAX_S8_DOT = (2**31 - 1) // (127 * 127)

# ---- finding the C extension ----------------------------------------------------------------------

_extension_cache = []       # [] until looked up, then [module or None]
_warned = []                # non-empty once the "no C kernels" warning was given


def _load_extension():
    from tinylm import _kernels  # built by setup.py from kernels/ (see kernels/build.py)
    return _kernels


def _extension():
    """The compiled module tinylm._kernels, or None (warning once) when it cannot be imported."""
    if not _extension_cache:
        try:
            ext = _load_extension()
        except ImportError as exc:
            ext = None
            if not _warned:
                _warned.append(True)
                warnings.warn(f"tinylm's C kernels are not available ({exc}); using the NumPy "
                              "reference kernels (slower, same results). Reinstall with a C "
                              "compiler to build them.", RuntimeWarning, stacklevel=3)
        _extension_cache.append(ext)
    return _extension_cache[0]


def backend() -> str:
    """'c' when kernels run in C, 'numpy' when they run on the NumPy references.

    TINYLM_KERNELS=numpy forces NumPy; otherwise C is used when the extension was built."""
    choice = os.environ.get(ENV_VAR)
    if choice is None:
        return "c" if _extension() is not None else "numpy"
    choice = choice.strip().lower()
    if choice not in ("", "c", "numpy"):
        raise ValueError(f"{ENV_VAR}={choice!r}; expected 'c', 'numpy' or unset")
    if choice == "numpy":
        return "numpy"
    return "c" if _extension() is not None else "numpy"


def build_info() -> dict:
    """What the C extension was built with: {'backend', 'flags', 'simd', 'env'}."""
    ext = _extension()
    info = {"backend": backend(), "flags": None, "simd": None,
            "env": {ENV_VAR: os.environ.get(ENV_VAR, "(unset)")}}
    if ext is not None:
        info["flags"] = ext.ffi.string(ext.lib.tinylm_build_flags()).decode()
        info["simd"] = ext.ffi.string(ext.lib.tinylm_build_info()).decode()
    return info


def _c():
    """The cffi (ffi, lib) pair when the C backend is in use, else None."""
    if backend() != "c":
        return None
    ext = _extension()
    return ext.ffi, ext.lib


# ---- AMX tiles: the OS's permission, asked once (the kernels make no OS call) -----------------------

_amx_cache = []             # [] until asked, then [True or False]


def amx_available() -> bool:
    """True when the int8 kernels may use AMX tiles: the C build has them (build_info()['simd'] names
    "amx-int8") and the OS granted the process the tile state, asked once, at the first call (Linux:
    arch_prctl ARCH_REQ_XCOMP_PERM, in the extension's host C, kernels/build.py). When it is refused
    the int8 kernels use their AVX-512 VNNI (or portable) paths: the same results."""
    if not _amx_cache:
        ext = _extension()
        lib = ext.lib if ext is not None else None
        simd = ext.ffi.string(lib.tinylm_build_info()).decode().split() if lib is not None else []
        _amx_cache.append("amx-int8" in simd and bool(lib.tinylm_host_amx_request()))
    return _amx_cache[0]


def _s8_kernel(lib, name, amx):
    """lib.tinylm_<name>_amx when asked for (amx=True) and available, else lib.tinylm_<name>."""
    return getattr(lib, f"tinylm_{name}_amx" if amx and amx_available() else f"tinylm_{name}")


# the C array type cffi's from_buffer wants for each pointer type (a dict: this runs on every call)
_BUFFER_TYPES = {f"{t} *": f"{t}[]" for t in ("float", "int8_t", "uint8_t", "uint16_t", "int32_t",
                                              "uint32_t")}


def _ptr(ffi, ctype, a):
    """A C pointer to the data of the contiguous array a (kept alive by the cdata object)."""
    return ffi.from_buffer(_BUFFER_TYPES[ctype], a)     # "float *" -> "float[]"


# ---- argument checks ------------------------------------------------------------------------------

_DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16",
                np.dtype(np.int8): "int8"}


def _array(fn, name, a, dtype, ndim=None):
    """a as a contiguous ndarray of `dtype` (never converted: a wrong dtype is a TypeError)."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.dtype != dtype:
        raise TypeError(f"{fn}: {name} has dtype {a.dtype}; expected {_DTYPE_NAMES[np.dtype(dtype)]}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{fn}: {name} has shape {a.shape}; expected {ndim} dimensions")
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)  # (ascontiguousarray makes 0-d 1-d)


def _matmul_args(fn, x, w, b, dtype):
    x = _array(fn, "x", x, dtype, 2)                          # (M, K)
    w = _array(fn, "w", w, dtype, 2)                          # (N, K)
    M, K = x.shape
    if w.shape[1] != K:
        raise ValueError(f"{fn}: w has shape {w.shape}; expected (N, {K}) to match x's K={K}")
    if b is not None:
        b = _array(fn, "b", b, np.float32, 1)
        if b.shape != (w.shape[0],):
            raise ValueError(f"{fn}: b has shape {b.shape}; expected ({w.shape[0]},) to match "
                             f"w's N={w.shape[0]}")
    return x, w, b


def _same_shape(fn, name, a, like, like_name):
    a = _array(fn, name, a, np.float32)
    if a.shape != like.shape:
        raise ValueError(f"{fn}: {name} has shape {a.shape}; expected {like.shape} like {like_name}")
    return a


def _norm_args(fn, x, w, dy, eps):
    """x (..., C), w (C,), dy like x (or None) and eps checked for the norms' kernels."""
    x = _array(fn, "x", x, np.float32)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{fn}: x has shape {x.shape}; expected (..., C) with C >= 1")
    C = x.shape[-1]
    w = _array(fn, "w", w, np.float32, 1)
    if w.shape != (C,):
        raise ValueError(f"{fn}: w has shape {w.shape}; expected ({C},) to match x's C={C}")
    if dy is not None:
        dy = _same_shape(fn, "dy", dy, x, "x")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not 0 <= eps < 1:
        raise ValueError(f"{fn}: eps is {eps!r}; expected a number in [0, 1)")
    return x, w, dy, C


def _check_s8_range(fn, name, a):
    if a.size and a.min() < -127:
        raise ValueError(f"{fn}: {name} contains -128; expected int8 values in [-127, 127] "
                         "(symmetric int8, as quantize_s8 produces)")


def _check_dot_length(fn, what, n):
    if n > MAX_S8_DOT:
        raise ValueError(f"{fn}: {what} is {n}; expected at most {MAX_S8_DOT} so that int32 "
                         "dot products cannot overflow")


# ---- fp16 <-> fp32 --------------------------------------------------------------------------------

def f32_to_f16(x):
    """float32 array (any shape) -> float16, round to nearest even (see reference.f32_to_f16)."""
    x = _array("f32_to_f16", "x", x, np.float32)
    c = _c()
    if c is None or x.size == 0:
        return reference.f32_to_f16(x)
    ffi, lib = c
    h = np.empty(x.shape, np.float16)
    lib.tinylm_f32_to_f16(_ptr(ffi, "float *", x), _ptr(ffi, "uint16_t *", h), x.size)
    return h


def f16_to_f32(h):
    """float16 array (any shape) -> float32, exact (see reference.f16_to_f32)."""
    h = _array("f16_to_f32", "h", h, np.float16)
    c = _c()
    if c is None or h.size == 0:
        return reference.f16_to_f32(h)
    ffi, lib = c
    x = np.empty(h.shape, np.float32)
    lib.tinylm_f16_to_f32(_ptr(ffi, "uint16_t *", h), _ptr(ffi, "float *", x), h.size)
    return x


# ---- matmul ---------------------------------------------------------------------------------------

# A matmul is split by rows across threads (tinylm.kernels.threads) when each thread gets at least this
# many multiply-adds (~10 us of work: far more than handing a block to a thread costs). The blocks start
# at multiples of 12 rows and have at least 12, which tinylm_kernels.h promises gives the same bits.
_MIN_MACS_PER_THREAD = 1 << 20
_ROW_ALIGN = 12


def _matmul_rows(call, M, N, K):
    """call(r0, r1) on rows r0 .. r1 - 1, split across threads when the product is big enough."""
    min_rows = max(_ROW_ALIGN, -(-_MIN_MACS_PER_THREAD // max(N * K, 1)))
    if M < 2 * min_rows or num_threads() == 1:
        call(0, M)
    else:
        run_rows(call, M, align=_ROW_ALIGN, min_rows=min_rows)


def matmul_f32(x, w, b=None):
    """y (M, N) = x (M, K) @ w (N, K).T + b (N,), all float32 (see reference.matmul_f32).
    Large products are split by rows across num_threads() threads (same bits as one thread)."""
    x, w, b = _matmul_args("matmul_f32", x, w, b, np.float32)
    c = _c()
    if c is None or x.size == 0 or w.size == 0:
        return reference.matmul_f32(x, w, b)
    ffi, lib = c
    (M, K), N = x.shape, w.shape[0]
    y = np.empty((M, N), np.float32)
    xp, wp, yp = _ptr(ffi, "float *", x), _ptr(ffi, "float *", w), _ptr(ffi, "float *", y)
    bp = ffi.NULL if b is None else _ptr(ffi, "float *", b)
    _matmul_rows(lambda r0, r1: lib.tinylm_matmul_f32(xp + r0 * K, wp, bp, yp + r0 * N, r1 - r0, N, K),
                 M, N, K)
    return y


def _k_first_product(fn, x, w, x_k_first):
    """The checks and the call both K-first matmuls share: x (M, K) or, x_k_first, (K, M); w (K, N) ->
    y (M, N) float32, the C kernel lib.tinylm_<fn> split by rows across threads, or the reference."""
    x, w = _array(fn, "x", x, np.float32, 2), _array(fn, "w", w, np.float32, 2)
    K, M = x.shape if x_k_first else x.shape[::-1]
    N = w.shape[1]
    if w.shape[0] != K:
        raise ValueError(f"{fn}: w has shape {w.shape}; expected ({K}, N) to match x's K={K}")
    c = _c()
    if c is None or x.size == 0 or w.size == 0:
        return getattr(reference, fn)(x, w)
    ffi, lib = c
    kernel = getattr(lib, f"tinylm_{fn}")
    y = np.empty((M, N), np.float32)
    xp, wp, yp = _ptr(ffi, "float *", x), _ptr(ffi, "float *", w), _ptr(ffi, "float *", y)
    if x_k_first:  # rows r0 .. r1 - 1 of y are columns r0 .. r1 - 1 of x, whose rows are M apart
        _matmul_rows(lambda r0, r1: kernel(xp + r0, M, wp, yp + r0 * N, r1 - r0, N, K), M, N, K)
    else:
        _matmul_rows(lambda r0, r1: kernel(xp + r0 * K, wp, yp + r0 * N, r1 - r0, N, K), M, N, K)
    return y


def matmul_nn_f32(x, w):
    """y (M, N) = x (M, K) @ w (K, N), float32, w not transposed (see reference.matmul_nn_f32): a Linear
    layer's dx = dy @ W. Split by rows across threads like matmul_f32."""
    return _k_first_product("matmul_nn_f32", x, w, x_k_first=False)


def matmul_tn_f32(x, w):
    """y (M, N) = x (K, M).T @ w (K, N), float32, both as stored (see reference.matmul_tn_f32): a Linear
    layer's dW = dy^T @ x. Split by rows of y (columns of x) across threads like matmul_f32."""
    return _k_first_product("matmul_tn_f32", x, w, x_k_first=True)


def packed_gemm_f32() -> bool:
    """True when matmul_f32, matmul_nn_f32 and matmul_tn_f32 run the AVX-512 packed GEMM
    (simd/matmul_avx512.h), which `python -m tinylm.bench kernels` measures at or above NumPy's OpenBLAS
    on one thread: then a Linear layer's forward and backward use them on one thread
    (tinylm.autograd.functional.linear)."""
    if backend() != "c":
        return False
    if not _packed_gemm_cache:  # the build does not change while the process runs: asked once
        _packed_gemm_cache.append("avx512f" in build_info()["simd"].split())
    return _packed_gemm_cache[0]


_packed_gemm_cache = []     # [] until asked, then [True or False]


def gemm_f32_for_linear() -> bool:
    """True when a float32 Linear layer runs its three products on matmul_f32 / _nn_f32 / _tn_f32: the
    build has the packed GEMM (packed_gemm_f32()) and the kernels run on one thread. With more threads
    NumPy's BLAS, which threads itself, measured faster on two cores than our GEMMs split by
    tinylm.kernels.threads (handing a block to a Python thread costs tens of microseconds a call)."""
    return packed_gemm_f32() and num_threads() == 1


def matmul_f16(x, w, b=None):
    """y (M, N) float32 = x (M, K) float16 @ w (N, K).T float16 + b (N,) float32, fp32 math.
    Split by rows across threads like matmul_f32 (NumPy has no fast fp16 matmul to hand this to)."""
    x, w, b = _matmul_args("matmul_f16", x, w, b, np.float16)
    c = _c()
    if c is None or x.size == 0 or w.size == 0:
        return reference.matmul_f16(x, w, b)
    ffi, lib = c
    (M, K), N = x.shape, w.shape[0]
    y = np.empty((M, N), np.float32)
    xp, wp, yp = _ptr(ffi, "uint16_t *", x), _ptr(ffi, "uint16_t *", w), _ptr(ffi, "float *", y)
    bp = ffi.NULL if b is None else _ptr(ffi, "float *", b)
    _matmul_rows(lambda r0, r1: lib.tinylm_matmul_f16(xp + r0 * K, wp, bp, yp + r0 * N, r1 - r0, N, K),
                 M, N, K)
    return y


def matmul_s8(x, w, amx=True):
    """y (M, N) int32 = x (M, K) int8 @ w (N, K).T int8, exact; values in [-127, 127].

    amx=False keeps to the AVX-512 VNNI (or portable) kernel where AMX tiles are available (the same
    bits; for comparing the two paths)."""
    x, w, _ = _matmul_args("matmul_s8", x, w, None, np.int8)
    _check_s8_range("matmul_s8", "x", x)
    _check_s8_range("matmul_s8", "w", w)
    _check_dot_length("matmul_s8", "K", x.shape[1])
    c = _c()
    if c is None or x.size == 0 or w.size == 0:
        return reference.matmul_s8(x, w)
    ffi, lib = c
    (M, K), N = x.shape, w.shape[0]
    y = np.empty((M, N), np.int32)
    _s8_kernel(lib, "matmul_s8", amx)(_ptr(ffi, "int8_t *", x), _ptr(ffi, "int8_t *", w),
                                      _ptr(ffi, "int32_t *", y), M, N, K)
    return y


# ---- int8 quantization ----------------------------------------------------------------------------

def _check_group_size(fn, group_size, K):
    if K < 1:
        raise ValueError(f"{fn}: x has K=0 columns; expected K >= 1 (there is nothing to quantize)")
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise TypeError(f"{fn}: group_size is {group_size!r}; expected a positive int")
    if group_size < 1 or K % group_size:
        raise ValueError(f"{fn}: group_size={group_size} does not divide K={K}; expected a "
                         f"divisor of K (K for one scale per row, or e.g. 32)")
    return int(group_size)


def quantize_s8(x, group_size):
    """x (M, K) float32 -> (q (M, K) int8 in [-127, 127], scale (M, K // group_size) float32).

    Symmetric, zero point 0, round half to even (see reference.quantize_s8)."""
    x = _array("quantize_s8", "x", x, np.float32, 2)
    M, K = x.shape
    group_size = _check_group_size("quantize_s8", group_size, K)
    c = _c()
    if c is None or x.size == 0:
        return reference.quantize_s8(x, group_size)
    ffi, lib = c
    q = np.empty((M, K), np.int8)
    scale = np.empty((M, K // group_size), np.float32)
    lib.tinylm_quantize_s8(_ptr(ffi, "float *", x), _ptr(ffi, "int8_t *", q),
                           _ptr(ffi, "float *", scale), M, K, group_size)
    return q, scale


def _check_scales(fn, name, scale, rows, K, rows_name, finite=False):
    """The group size K // G of scales (rows, G); every scale >= 0, and finite when `finite` (weights
    of a model). NaN and +inf are what quantize_s8 gives a group holding NaN or inf, so dequantize_s8
    takes them back (and gives NaN, as the header promises); no quantizer makes a negative scale."""
    if K < 1:
        raise ValueError(f"{fn}: K=0 columns; expected K >= 1")
    if scale.shape[0] != rows or scale.shape[1] < 1 or K % scale.shape[1]:
        raise ValueError(f"{fn}: {name} has shape {scale.shape}; expected ({rows}, G) with G "
                         f"dividing K={K} (one scale per {rows_name} and group)")
    if scale.size and (np.less(scale, 0).any() or (finite and not np.isfinite(scale).all())):
        expected = "finite and >= 0" if finite else ">= 0 (or NaN/+inf, as quantize_s8 gives non-finite groups)"
        raise ValueError(f"{fn}: {name} holds a negative{' or non-finite' if finite else ''} value; "
                         f"expected scales {expected}")
    return K // scale.shape[1]


def dequantize_s8(q, scale):
    """q (M, K) int8, scale (M, G) float32 -> float32 (M, K) = q * scale of its group."""
    q = _array("dequantize_s8", "q", q, np.int8, 2)
    scale = _array("dequantize_s8", "scale", scale, np.float32, 2)
    M, K = q.shape
    group_size = _check_scales("dequantize_s8", "scale", scale, M, K, "row")
    c = _c()
    if M == 0:
        return np.empty((0, K), np.float32)
    if c is None or q.size == 0:
        return reference.dequantize_s8(q, scale)
    ffi, lib = c
    y = np.empty((M, K), np.float32)
    lib.tinylm_dequantize_s8(_ptr(ffi, "int8_t *", q), _ptr(ffi, "float *", scale),
                             _ptr(ffi, "float *", y), M, K, group_size)
    return y


class LinearS8:
    """int8 Linear-layer weights checked once, for many calls: `LinearS8(w_q, w_scale)(x, b)`.

    linear_s8() checks its weights on every call, and one check is a scan of all N * K values for
    -128. A model calls the same layer once per generated token, where that scan costs as much as the
    product itself; so tinylm.quant builds one LinearS8 per int8 weight. It keeps read-only views of
    w_q (N, K) int8 and w_scale (N, G) float32 (no copy): they cannot be changed through it after the
    check. Each call still checks x (M, K) float32 and b (N,) float32, then runs the kernel.

    >>> layer = LinearS8(np.ones((4, 8), np.int8), np.full((4, 1), 0.5, np.float32))
    >>> layer(np.ones((1, 8), np.float32))     # each output: 8 columns of 1 * 1 * 0.5
    array([[4., 4., 4., 4.]], dtype=float32)
    """

    def __init__(self, w_q, w_scale):
        fn = "linear_s8"
        w_q = _array(fn, "w_q", w_q, np.int8, 2)                  # (N, K)
        w_scale = _array(fn, "w_scale", w_scale, np.float32, 2)   # (N, G)
        N, K = w_q.shape
        self.group_size = _check_scales(fn, "w_scale", w_scale, N, K, "output row", finite=True)
        _check_s8_range(fn, "w_q", w_q)
        _check_dot_length(fn, "group_size", self.group_size)
        self.w_q, self.w_scale = w_q.view(), w_scale.view()
        self.w_q.flags.writeable = self.w_scale.flags.writeable = False
        self.shape = (N, K)
        self._pointers = None  # (ffi, w_q pointer, w_scale pointer), made on the first C call

    def __call__(self, x, b=None, amx=True):
        """y (M, N) float32 = x @ W.T (+ b), x quantized per row and group at run time. (amx=False:
        as in matmul_s8.)"""
        fn = "linear_s8"
        N, K = self.shape
        x = _array(fn, "x", x, np.float32, 2)                     # (M, K)
        if x.shape[1] != K:
            raise ValueError(f"{fn}: x has shape {x.shape}; expected (M, {K}) to match w_q's K={K}")
        if b is not None:
            b = _array(fn, "b", b, np.float32, 1)
            if b.shape != (N,):
                raise ValueError(f"{fn}: b has shape {b.shape}; expected ({N},) to match w_q's N={N}")
        c = _c()
        if c is None or x.size == 0 or N == 0:
            return reference.linear_s8(x, self.w_q, self.w_scale, b)
        ffi, lib = c
        if self._pointers is None or self._pointers[0] is not ffi:
            self._pointers = (ffi, _ptr(ffi, "int8_t *", self.w_q), _ptr(ffi, "float *", self.w_scale))
        _, w_q_ptr, w_scale_ptr = self._pointers
        M, gs = x.shape[0], self.group_size
        y = np.empty((M, N), np.float32)
        x_q = np.empty((M, K), np.int8)                           # workspace: the kernel quantizes x
        x_scale = np.empty((M, K // gs), np.float32)              # into these (no malloc in C)
        _s8_kernel(lib, "linear_s8", amx)(_ptr(ffi, "float *", x), w_q_ptr, w_scale_ptr,
                                          ffi.NULL if b is None else _ptr(ffi, "float *", b),
                                          _ptr(ffi, "float *", y), _ptr(ffi, "int8_t *", x_q),
                                          _ptr(ffi, "float *", x_scale), M, N, K, gs)
        return y


def linear_s8(x, w_q, w_scale, b=None, amx=True):
    """y (M, N) float32 = int8 Linear layer on x (M, K) float32 (see reference.linear_s8).

    w_q (N, K) int8 in [-127, 127], w_scale (N, G) float32 with group_size = K // G, b (N,) float32.
    The activations are quantized at run time with quantize_s8's rule, per row and group. (To call
    the same weights many times, check them once: LinearS8(w_q, w_scale)(x, b).)"""
    fn = "linear_s8"
    x = _array(fn, "x", x, np.float32, 2)                         # (M, K): its K names the mismatch
    w_q = _array(fn, "w_q", w_q, np.int8, 2)
    if w_q.shape[1] != x.shape[1]:
        raise ValueError(f"{fn}: w_q has shape {w_q.shape}; expected (N, {x.shape[1]}) to match x's "
                         f"K={x.shape[1]}")
    return LinearS8(w_q, w_scale)(x, b, amx)


# ---- int4 weights ---------------------------------------------------------------------------------

def _check_s4_group_size(fn, group_size, K):
    group_size = _check_group_size(fn, group_size, K)
    if group_size % 32:
        raise ValueError(f"{fn}: group_size={group_size} is not a multiple of 32; expected 32, 64, ... "
                         "(int4 packs blocks of 32 columns into 16 bytes, Q4_0's layout)")
    return group_size


def quantize_s4(w, group_size):
    """w (N, K) float32 -> (w_q4 (N, K // 2) uint8, scale (N, K // group_size) float32): symmetric
    int4 in [-7, 7] packed two per byte in Q4_0's layout (see reference.quantize_s4). Weights are quantized once,
    offline, so this runs the NumPy reference (there is no C quantizer for int4)."""
    w = _array("quantize_s4", "w", w, np.float32, 2)
    group_size = _check_s4_group_size("quantize_s4", group_size, w.shape[1])
    return reference.quantize_s4(w, group_size)


def _s4_weights(fn, w_q4, w_scale):
    """Check packed int4 weights once: (w_q4 (N, K // 2) uint8, w_scale (N, G) float32, group_size)."""
    w_q4 = np.asarray(w_q4)
    if w_q4.dtype != np.uint8:
        raise TypeError(f"{fn}: w_q4 has dtype {w_q4.dtype}; expected uint8 (two int4 values a byte)")
    w_q4 = np.ascontiguousarray(w_q4)
    if w_q4.ndim != 2:
        raise ValueError(f"{fn}: w_q4 has shape {w_q4.shape}; expected 2 dimensions (N, K // 2)")
    w_scale = _array(fn, "w_scale", w_scale, np.float32, 2)
    N, K = w_q4.shape[0], 2 * w_q4.shape[1]
    group_size = _check_scales(fn, "w_scale", w_scale, N, K, "output row")
    if group_size % 32:
        raise ValueError(f"{fn}: w_scale has shape {w_scale.shape}, so groups of {group_size} columns; "
                         "expected a multiple of 32 (int4 packs blocks of 32 columns)")
    if w_q4.size and (((w_q4 & 0x0F) == 0x08).any() or ((w_q4 & 0xF0) == 0x80).any()):
        raise ValueError(f"{fn}: w_q4 contains the nibble 0x8 (-8); expected int4 values in [-7, 7] "
                         "(symmetric int4, as quantize_s4 produces)")
    _check_dot_length(fn, "group_size", group_size)
    return w_q4, w_scale, group_size


def dequantize_s4(w_q4, w_scale):
    """w_q4 (N, K // 2) uint8, w_scale (N, G) float32 -> float32 (N, K) = q * scale of its group."""
    fn = "dequantize_s4"
    w_q4, w_scale, group_size = _s4_weights(fn, w_q4, w_scale)
    N, K = w_q4.shape[0], 2 * w_q4.shape[1]
    c = _c()
    if c is None or w_q4.size == 0:
        return reference.dequantize_s4(w_q4, w_scale)
    ffi, lib = c
    y = np.empty((N, K), np.float32)
    lib.tinylm_dequantize_s4(_ptr(ffi, "uint8_t *", w_q4), _ptr(ffi, "float *", w_scale),
                             _ptr(ffi, "float *", y), N, K, group_size)
    return y


class LinearS4:
    """int4 Linear-layer weights checked once, for many calls: `LinearS4(w_q4, w_scale)(x, b)`, as
    LinearS8. w_q4 (N, K // 2) uint8 packed, w_scale (N, G) float32; kept as read-only views.

    >>> layer = LinearS4(np.full((4, 16), 0x11, np.uint8), np.full((4, 1), 0.5, np.float32))
    >>> layer(np.ones((1, 32), np.float32))    # each output: 32 columns of 1 * 1 * 0.5
    array([[16., 16., 16., 16.]], dtype=float32)
    """

    def __init__(self, w_q4, w_scale):
        w_q4, w_scale, self.group_size = _s4_weights("linear_s4", w_q4, w_scale)
        self.w_q4, self.w_scale = w_q4.view(), w_scale.view()
        self.w_q4.flags.writeable = self.w_scale.flags.writeable = False
        self.shape = (w_q4.shape[0], 2 * w_q4.shape[1])
        self._pointers = None  # (ffi, w_q4 pointer, w_scale pointer), made on the first C call

    def __call__(self, x, b=None):
        """y (M, N) float32 = x @ W.T (+ b), x quantized to int8 per row and group at run time."""
        fn = "linear_s4"
        N, K = self.shape
        x = _array(fn, "x", x, np.float32, 2)                     # (M, K)
        if x.shape[1] != K:
            raise ValueError(f"{fn}: x has shape {x.shape}; expected (M, {K}) to match w_q4's "
                             f"K={K} (2 * {K // 2} bytes)")
        if b is not None:
            b = _array(fn, "b", b, np.float32, 1)
            if b.shape != (N,):
                raise ValueError(f"{fn}: b has shape {b.shape}; expected ({N},) to match w_q4's N={N}")
        c = _c()
        if c is None or x.size == 0 or N == 0:
            return reference.linear_s4(x, self.w_q4, self.w_scale, b)
        ffi, lib = c
        if self._pointers is None or self._pointers[0] is not ffi:
            self._pointers = (ffi, _ptr(ffi, "uint8_t *", self.w_q4), _ptr(ffi, "float *", self.w_scale))
        _, w_ptr, s_ptr = self._pointers
        M, gs = x.shape[0], self.group_size
        y = np.empty((M, N), np.float32)
        x_q = np.empty((M, K), np.int8)                           # workspace for the quantized x
        x_scale = np.empty((M, K // gs), np.float32)
        lib.tinylm_linear_s4(_ptr(ffi, "float *", x), w_ptr, s_ptr,
                             ffi.NULL if b is None else _ptr(ffi, "float *", b),
                             _ptr(ffi, "float *", y), _ptr(ffi, "int8_t *", x_q),
                             _ptr(ffi, "float *", x_scale), M, N, K, gs)
        return y


def linear_s4(x, w_q4, w_scale, b=None):
    """y (M, N) float32 = int4 Linear layer on x (M, K) float32 (see reference.linear_s4)."""
    return LinearS4(w_q4, w_scale)(x, b)


# ---- softmax --------------------------------------------------------------------------------------

def _softmax_input(fn, x, dtype):
    x = _array(fn, "x", x, dtype)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{fn}: x has shape {x.shape}; expected (..., T) with T >= 1")
    return x


def softmax_f32(x, causal=False):
    """Softmax over the last axis of float32 x (..., T); causal=True masks score matrices
    (..., Tq, Tk) so query i sees keys j <= i + (Tk - Tq) (see reference.softmax_f32)."""
    fn = "softmax_f32"
    x = _softmax_input(fn, x, np.float32)
    causal_tq = 0
    if causal:
        if x.ndim < 2 or x.shape[-1] < x.shape[-2]:
            raise ValueError(f"{fn}: x has shape {x.shape}; causal=True expects score matrices "
                             "(..., Tq, Tk) with Tk >= Tq")
        causal_tq = x.shape[-2]
    c = _c()
    if c is None or x.size == 0:
        return reference.softmax_f32(x, causal=causal)
    ffi, lib = c
    y = np.empty(x.shape, np.float32)
    T = x.shape[-1]
    lib.tinylm_softmax_f32(_ptr(ffi, "float *", x), _ptr(ffi, "float *", y), x.size // T, T,
                           causal_tq)
    return y


def softmax_f16(x):
    """Softmax over the last axis of float16 x (..., T): fp32 math, float16 out."""
    x = _softmax_input("softmax_f16", x, np.float16)
    c = _c()
    if c is None or x.size == 0:
        return reference.softmax_f16(x)
    ffi, lib = c
    y = np.empty(x.shape, np.float16)
    T = x.shape[-1]
    lib.tinylm_softmax_f16(_ptr(ffi, "uint16_t *", x), _ptr(ffi, "uint16_t *", y), x.size // T, T)
    return y


_S8_TABLES = {}             # scale -> its exp table (a model uses a handful of scales)


def softmax_s8(x, scale):
    """Integer softmax over the last axis: int8 logits (real value x * scale) -> uint8 Q0.8
    probabilities, p ~ y / 256, 1.0 saturating to 255 (see reference.softmax_s8)."""
    fn = "softmax_s8"
    x = _softmax_input(fn, x, np.int8)
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise TypeError(f"{fn}: scale is {scale!r}; expected a positive float")
    scale = float(scale)
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f"{fn}: scale is {scale}; expected a positive finite float")
    c = _c()
    if c is None or x.size == 0:
        return reference.softmax_s8(x, scale)
    ffi, lib = c
    table = _S8_TABLES.get(scale)
    if table is None:
        if len(_S8_TABLES) > 64:
            _S8_TABLES.clear()
        table = _S8_TABLES[scale] = reference.softmax_s8_table(scale)
    y = np.empty(x.shape, np.uint8)
    T = x.shape[-1]
    lib.tinylm_softmax_s8(_ptr(ffi, "int8_t *", x), _ptr(ffi, "uint8_t *", y), x.size // T, T,
                          _ptr(ffi, "uint32_t *", table))
    return y


# ---- the C runtime's kernels: layer norm, GELU, embedding, residual add, attention over a cache ------

def layernorm_f32(x, w, b=None, eps=1e-5):
    """LayerNorm over the last axis of float32 x (..., C) with w (C,), b (C,) or None
    (see reference.layernorm_f32)."""
    fn = "layernorm_f32"
    x, w, _, C = _norm_args(fn, x, w, None, eps)
    if b is not None:
        b = _array(fn, "b", b, np.float32, 1)
        if b.shape != (C,):
            raise ValueError(f"{fn}: b has shape {b.shape}; expected ({C},) to match x's C={C}")
    c = _c()
    if c is None or x.size == 0:
        return reference.layernorm_f32(x, w, b, eps)
    ffi, lib = c
    y = np.empty(x.shape, np.float32)
    lib.tinylm_layernorm_f32(_ptr(ffi, "float *", x), _ptr(ffi, "float *", w),
                             ffi.NULL if b is None else _ptr(ffi, "float *", b), _ptr(ffi, "float *", y),
                             x.size // C, C, float(eps))
    return y


def gelu_f32(x):
    """GELU (tanh form, as GPT-2) of float32 x, any shape (see reference.gelu_f32)."""
    x = _array("gelu_f32", "x", x, np.float32)
    c = _c()
    if c is None or x.size == 0:
        return reference.gelu_f32(x)
    ffi, lib = c
    y = np.empty(x.shape, np.float32)
    lib.tinylm_gelu_f32(_ptr(ffi, "float *", x), _ptr(ffi, "float *", y), x.size)
    return y


def embedding(table, ids, scale=None):
    """Rows `ids` (integers, any shape) of a (V, C) table -> ids.shape + (C,) float32, exact.
    table: float32, float16, or int8 with scale (V, C // group_size) float32."""
    fn = "embedding"
    table = np.asarray(table)
    if table.dtype not in (np.float32, np.float16, np.int8):
        raise TypeError(f"{fn}: table has dtype {table.dtype}; expected float32, float16 or int8")
    table = _array(fn, "table", table, table.dtype, 2)
    V, C = table.shape
    if V < 1 or C < 1:
        raise ValueError(f"{fn}: table has shape {table.shape}; expected (V, C) with both >= 1")
    ids = np.asarray(ids)
    if ids.dtype == bool or ids.dtype.kind not in "iu":
        raise TypeError(f"{fn}: ids has dtype {ids.dtype}; expected integer row ids")
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"{fn}: ids must be in 0 .. {V - 1} (the table's rows)")
    if table.dtype == np.int8:
        if scale is None:
            raise ValueError(f"{fn}: an int8 table needs its scale (V, C // group_size) float32")
        scale = _array(fn, "scale", scale, np.float32, 2)
        group_size = _check_scales(fn, "scale", scale, V, C, "table row")
        _check_s8_range(fn, "table", table)
    elif scale is not None:
        raise ValueError(f"{fn}: scale is only for int8 tables; this table is {table.dtype}")
    c = _c()
    if c is None or ids.size == 0:
        return reference.embedding(table, ids, scale)
    ffi, lib = c
    flat = np.ascontiguousarray(ids.reshape(-1), dtype=np.int32)
    out = np.empty((flat.size, C), np.float32)
    if table.dtype == np.float32:
        lib.tinylm_embedding_f32(_ptr(ffi, "float *", table), _ptr(ffi, "int32_t *", flat),
                                 _ptr(ffi, "float *", out), flat.size, C)
    elif table.dtype == np.float16:
        lib.tinylm_embedding_f16(_ptr(ffi, "uint16_t *", table), _ptr(ffi, "int32_t *", flat),
                                 _ptr(ffi, "float *", out), flat.size, C)
    else:
        lib.tinylm_embedding_s8(_ptr(ffi, "int8_t *", table), _ptr(ffi, "float *", scale),
                                _ptr(ffi, "int32_t *", flat), _ptr(ffi, "float *", out), flat.size, C,
                                group_size)
    return out.reshape(ids.shape + (C,))


def residual_add_f32(x, r):
    """x + r for float32 arrays of the same shape, as a new array (the C kernel adds in place)."""
    fn = "residual_add_f32"
    x = _array(fn, "x", x, np.float32)
    r = _array(fn, "r", r, np.float32)
    if x.shape != r.shape:
        raise ValueError(f"{fn}: r has shape {r.shape}; expected {x.shape} like x")
    c = _c()
    if c is None or x.size == 0:
        return reference.residual_add_f32(x, r)
    ffi, lib = c
    y = x.copy()
    lib.tinylm_residual_add_f32(_ptr(ffi, "float *", y), _ptr(ffi, "float *", r), y.size)
    return y


def attention_f32(q, k, v, n_head, scale=None):
    """One token's attention over a KV cache: q (C,), k and v (T, C) float32, n_head heads
    (C % n_head == 0); scale defaults to 1/sqrt(C // n_head). -> y (C,) (see reference.attention_f32)."""
    fn = "attention_f32"
    q = _array(fn, "q", q, np.float32, 1)
    k = _array(fn, "k", k, np.float32, 2)
    v = _array(fn, "v", v, np.float32, 2)
    C = q.shape[0]
    if isinstance(n_head, bool) or not isinstance(n_head, (int, np.integer)) or n_head < 1 or C % n_head:
        raise ValueError(f"{fn}: n_head is {n_head!r}; expected a positive divisor of C={C}")
    if C == 0 or k.shape[0] == 0 or k.shape[1] != C:
        raise ValueError(f"{fn}: k has shape {k.shape}; expected (T, {C}) with T >= 1 to match q's C={C}")
    if v.shape != k.shape:
        raise ValueError(f"{fn}: v has shape {v.shape}; expected {k.shape} like k")
    scale = np.float32(1.0 / np.sqrt(C // n_head) if scale is None else scale)
    c = _c()
    if c is None:
        return reference.attention_f32(q, k, v, int(n_head), scale)
    ffi, lib = c
    T = k.shape[0]
    y = np.empty(C, np.float32)
    scratch = np.empty(2 * T, np.float32)
    lib.tinylm_attention_f32(_ptr(ffi, "float *", q), _ptr(ffi, "float *", k), _ptr(ffi, "float *", v),
                             _ptr(ffi, "float *", y), _ptr(ffi, "float *", scratch), int(n_head), C // n_head,
                             T, C, float(scale))
    return y


# ---- training's kernels: backward passes, cross-entropy, AdamW ---------------------------------------
# What tinylm.autograd and tinylm.optim call for float32 tensors when the C backend is in use (each falls
# back to its reference in tinylm.kernels.reference otherwise). Same checks as above: dtype, shape,
# contiguity (a non-contiguous input is copied). adamw_f32 alone updates its arrays in place.

__all__ += ["gelu_backward_f32", "layernorm_backward_f32", "rmsnorm_f32", "rmsnorm_backward_f32",
            "softmax_backward_f32", "cross_entropy_f32", "cross_entropy_backward_f32", "adamw_f32",
            "embedding_backward_f32"]


def gelu_backward_f32(x, dy):
    """dx = dy * GELU'(x) for float32 x and dy of one shape (see reference.gelu_backward_f32)."""
    x = _array("gelu_backward_f32", "x", x, np.float32)
    dy = _same_shape("gelu_backward_f32", "dy", dy, x, "x")
    c = _c()
    if c is None or x.size == 0:
        return reference.gelu_backward_f32(x, dy)
    ffi, lib = c
    dx = np.empty(x.shape, np.float32)
    lib.tinylm_gelu_backward_f32(_ptr(ffi, "float *", x), _ptr(ffi, "float *", dy), _ptr(ffi, "float *", dx),
                                 x.size)
    return dx


def layernorm_backward_f32(x, w, dy, eps=1e-5, bias=True):
    """(dx (..., C), dw (C,), db (C,) or None when bias=False) of layernorm_f32(x, w, b, eps) given dy like x
    (see reference.layernorm_backward_f32)."""
    x, w, dy, C = _norm_args("layernorm_backward_f32", x, w, dy, eps)
    c = _c()
    if c is None or x.size == 0:
        dx, dw, db = reference.layernorm_backward_f32(x, w, dy, eps)
        return dx, dw, db if bias else None
    ffi, lib = c
    dx, dw = np.empty(x.shape, np.float32), np.empty(C, np.float32)
    db = np.empty(C, np.float32) if bias else None
    lib.tinylm_layernorm_backward_f32(_ptr(ffi, "float *", x), _ptr(ffi, "float *", w), _ptr(ffi, "float *", dy),
                                      _ptr(ffi, "float *", dx), _ptr(ffi, "float *", dw),
                                      ffi.NULL if db is None else _ptr(ffi, "float *", db), x.size // C, C, float(eps))
    return dx, dw, db


def rmsnorm_f32(x, w, eps=1e-5):
    """Llama's RMSNorm over the last axis of float32 x (..., C) with w (C,) (see reference.rmsnorm_f32)."""
    x, w, _, C = _norm_args("rmsnorm_f32", x, w, None, eps)
    c = _c()
    if c is None or x.size == 0:
        return reference.rmsnorm_f32(x, w, eps)
    ffi, lib = c
    y = np.empty(x.shape, np.float32)
    lib.tinylm_rmsnorm_f32(_ptr(ffi, "float *", x), _ptr(ffi, "float *", w), _ptr(ffi, "float *", y),
                           x.size // C, C, float(eps))
    return y


def rmsnorm_backward_f32(x, w, dy, eps=1e-5):
    """(dx (..., C), dw (C,)) of rmsnorm_f32(x, w, eps) given dy like x (see reference.rmsnorm_backward_f32)."""
    x, w, dy, C = _norm_args("rmsnorm_backward_f32", x, w, dy, eps)
    c = _c()
    if c is None or x.size == 0:
        return reference.rmsnorm_backward_f32(x, w, dy, eps)
    ffi, lib = c
    dx, dw = np.empty(x.shape, np.float32), np.empty(C, np.float32)
    lib.tinylm_rmsnorm_backward_f32(_ptr(ffi, "float *", x), _ptr(ffi, "float *", w), _ptr(ffi, "float *", dy),
                                    _ptr(ffi, "float *", dx), _ptr(ffi, "float *", dw), x.size // C, C, float(eps))
    return dx, dw


def softmax_backward_f32(y, dy, causal=False, scale=1.0):
    """dx = ((dy - sum(dy * y)) * y) * scale over the last axis, y = softmax_f32(x, causal) (see
    reference.softmax_backward_f32); with causal=True the masked entries are 0 without being read."""
    fn = "softmax_backward_f32"
    y = _softmax_input(fn, y, np.float32)
    dy = _same_shape(fn, "dy", dy, y, "y")
    causal_tq = 0
    if causal:
        if y.ndim < 2 or y.shape[-1] < y.shape[-2]:
            raise ValueError(f"{fn}: y has shape {y.shape}; causal=True expects (..., Tq, Tk) with Tk >= Tq")
        causal_tq = y.shape[-2]
    c = _c()
    if c is None or y.size == 0:
        dx = reference.softmax_backward_f32(y, dy, scale)
        if causal:
            dx[..., ~reference._causal_visible(y.shape)] = 0.0
        return dx
    ffi, lib = c
    dx = np.empty(y.shape, np.float32)
    T = y.shape[-1]
    lib.tinylm_softmax_backward_f32(_ptr(ffi, "float *", y), _ptr(ffi, "float *", dy), _ptr(ffi, "float *", dx),
                                    y.size // T, T, causal_tq, float(scale))
    return dx


def _targets(fn, targets, N, V):
    t = np.asarray(targets)
    if t.dtype == bool or t.dtype.kind not in "iu" or t.shape != (N,):
        raise ValueError(f"{fn}: targets has shape {t.shape} and dtype {t.dtype}; expected ({N},) integer ids")
    if t.size and t.max() >= V:
        raise ValueError(f"{fn}: targets must be < V={V} (negative ids are ignored rows)")
    return np.ascontiguousarray(np.maximum(t, -1), dtype=np.int32)


def cross_entropy_f32(logits, targets):
    """(probs (N, V), nll (N,)) of float32 logits (N, V) and integer targets (N,); a negative target is an
    ignored row, nll 0 (see reference.cross_entropy_f32)."""
    fn = "cross_entropy_f32"
    z = _array(fn, "logits", logits, np.float32, 2)
    N, V = z.shape
    if V < 1:
        raise ValueError(f"{fn}: logits has shape {z.shape}; expected (N, V) with V >= 1")
    t = _targets(fn, targets, N, V)
    c = _c()
    if c is None or N == 0:
        return reference.cross_entropy_f32(z, t)
    ffi, lib = c
    probs, nll = np.empty((N, V), np.float32), np.empty(N, np.float32)
    lib.tinylm_cross_entropy_f32(_ptr(ffi, "float *", z), _ptr(ffi, "int32_t *", t), _ptr(ffi, "float *", probs),
                                 _ptr(ffi, "float *", nll), N, V)
    return probs, nll


def cross_entropy_backward_f32(probs, targets, scale):
    """dlogits (N, V) = (probs - onehot(targets)) * scale, zero rows where targets < 0
    (see reference.cross_entropy_backward_f32)."""
    fn = "cross_entropy_backward_f32"
    probs = _array(fn, "probs", probs, np.float32, 2)
    N, V = probs.shape
    t = _targets(fn, targets, N, V)
    c = _c()
    if c is None or probs.size == 0:
        return reference.cross_entropy_backward_f32(probs, t, scale)
    ffi, lib = c
    d = np.empty((N, V), np.float32)
    lib.tinylm_cross_entropy_backward_f32(_ptr(ffi, "float *", probs), _ptr(ffi, "int32_t *", t),
                                          _ptr(ffi, "float *", d), N, V, float(scale))
    return d


def adamw_f32(p, g, m, v, decay, beta1, beta2, eps_hat, step):
    """One AdamW step IN PLACE on the float32 arrays p (the parameter), m, v (its two moments), given its
    gradient g, all of one shape and contiguous (they are updated where they are: no copy is made).
    decay = 1 - lr wd, eps_hat = eps sqrt(1 - beta2^t), step = -lr sqrt(1 - beta2^t) / (1 - beta1^t)
    (see reference.adamw_f32 and tinylm.optim.AdamW)."""
    fn = "adamw_f32"
    for name, a in (("p", p), ("g", g), ("m", m), ("v", v)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32:
            raise TypeError(f"{fn}: {name} is {getattr(a, 'dtype', type(a).__name__)}; expected a float32 ndarray")
        if a.shape != p.shape:
            raise ValueError(f"{fn}: {name} has shape {a.shape}; expected {p.shape} like p")
        if name != "g" and not (a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"{fn}: {name} must be a writeable C-contiguous array (it is updated in place)")
    g = g if g.flags.c_contiguous else np.ascontiguousarray(g)
    c = _c()
    if c is None or p.size == 0:
        p[...], m[...], v[...] = reference.adamw_f32(p, g, m, v, decay, beta1, beta2, eps_hat, step)
        return
    ffi, lib = c
    f = np.float32
    lib.tinylm_adamw_f32(_ptr(ffi, "float *", p), _ptr(ffi, "float *", g), _ptr(ffi, "float *", m),
                         _ptr(ffi, "float *", v), p.size, f(decay), f(beta1), f(1.0 - beta1), f(beta2),
                         f(1.0 - beta2), f(eps_hat), f(step))


def embedding_backward_f32(ids, dy, V):
    """dtable (V, C) float32: the rows of dy (..., C) added into the rows `ids` (...) they were read from
    (see reference.embedding_backward_f32)."""
    fn = "embedding_backward_f32"
    dy = _array(fn, "dy", dy, np.float32)
    ids = np.asarray(ids)
    if ids.dtype == bool or ids.dtype.kind not in "iu" or dy.shape[:-1] != ids.shape or dy.ndim < 1:
        raise ValueError(f"{fn}: ids {ids.shape} {ids.dtype} and dy {dy.shape} do not fit; expected integer ids "
                         "(...) and dy (..., C)")
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"{fn}: ids must be in 0 .. {V - 1} (the table's rows)")
    C = dy.shape[-1]
    flat, rows = ids.reshape(-1), dy.reshape(-1, C)
    c = _c()
    if c is None or V * C == 0:
        return reference.embedding_backward_f32(flat, rows, V)
    ffi, lib = c
    flat = np.ascontiguousarray(flat, dtype=np.int32)
    out = np.empty((V, C), np.float32)
    lib.tinylm_embedding_backward_f32(_ptr(ffi, "int32_t *", flat), _ptr(ffi, "float *", rows),
                                      _ptr(ffi, "float *", out), flat.size, V, C)
    return out


# ---- fused attention for training -------------------------------------------------------------------
# The operands are (B, nh, T, hs) arrays that may be strided views (a permuted slice of a (B, T, 3C) qkv
# activation): the C kernels take each one's strides instead of a contiguous copy. Only the hs values of
# a position must be contiguous; any other view is copied first.

__all__ += ["sdpa_f32", "sdpa_backward_f32"]


def _heads(fn, name, a, shape=None):
    """(a, its (batch, head, row) strides in elements) for a float32 (B, nh, T, hs) array, viewed as it
    is when its last axis is contiguous and its other strides non-negative, else copied."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        raise TypeError(f"{fn}: {name} has dtype {getattr(a, 'dtype', type(a).__name__)}; expected float32")
    if a.ndim != 4 or (shape is not None and a.shape != shape):
        want = "(B, nh, T, hs)" if shape is None else str(shape)
        raise ValueError(f"{fn}: {name} has shape {a.shape}; expected {want}")
    st = a.strides
    if (a.shape[3] > 1 and st[3] != 4) or min(st) < 0 or any(s % 4 for s in st):
        a = np.ascontiguousarray(a)
        st = a.strides
    return a, (st[0] // 4, st[1] // 4, st[2] // 4)


def _head_out(fn, name, out, shape):
    """An output view the caller passed (checked like an input, never copied: it must be written where
    it is), or a new contiguous array of `shape`."""
    if out is None:
        out = np.empty(shape, np.float32)
    a, strides = _heads(fn, name, out, shape)
    if a is not out or not out.flags.writeable:
        raise ValueError(f"{fn}: {name} must be a writeable view whose last axis is contiguous")
    return out, strides


def _sdpa_shapes(fn, q, k, v, causal):
    """(q, k, v, their strides, (B, nh, Tq, Tk, hs)) after the checks both passes make."""
    q, qs = _heads(fn, "q", q)
    B, nh, Tq, hs = q.shape
    k, ks = _heads(fn, "k", k)
    if k.shape[:2] != (B, nh) or k.shape[3] != hs:
        raise ValueError(f"{fn}: k has shape {k.shape}; expected ({B}, {nh}, Tk, {hs}) to match q {q.shape}")
    Tk = k.shape[2]
    v, vs = _heads(fn, "v", v, k.shape)
    if min(Tq, Tk, hs) < 1 or (causal and Tq > Tk):
        raise ValueError(f"{fn}: q {q.shape} and k {k.shape}; expected Tq, Tk, hs >= 1"
                         + (" and Tq <= Tk (causal)" if causal else ""))
    return q, k, v, (qs, ks, vs), (B, nh, Tq, Tk, hs)


def _address(ffi, a):
    """A float pointer to the first element of the (possibly strided) float32 array a, which the caller
    keeps alive during the call."""
    return ffi.cast("float *", a.__array_interface__["data"][0])


def sdpa_f32(q, k, v, causal=True, scale=None, out=None):
    """(y (B, nh, Tq, hs), p (B, nh, Tq, Tk)): scaled dot-product attention of float32 q (B, nh, Tq, hs) and
    k, v (B, nh, Tk, hs), any of them a strided view (see reference.sdpa_f32). causal=True: the queries
    are the last Tq positions. scale defaults to 1/sqrt(hs). out, when given, is a writeable (B, nh, Tq, hs)
    view y is written into (e.g. a permuted (B, Tq, nh, hs) buffer), and is returned as y.

    >>> y, p = sdpa_f32(*np.ones((3, 1, 1, 2, 4), np.float32))
    >>> p[0, 0].tolist()
    [[1.0, 0.0], [0.5, 0.5]]
    """
    fn = "sdpa_f32"
    q, k, v, (qs, ks, vs), (B, nh, Tq, Tk, hs) = _sdpa_shapes(fn, q, k, v, causal)
    y, ys = _head_out(fn, "out", out, q.shape)
    scale = np.float32(1.0 / np.sqrt(hs) if scale is None else scale)
    c = _c()
    if c is None or B * nh == 0:
        y[...], p = reference.sdpa_f32(q, k, v, causal, scale)
        return y, p
    ffi, lib = c
    p = np.empty((B, nh, Tq, Tk), np.float32)
    scratch = np.empty((Tq + hs) * Tk, np.float32)
    lib.tinylm_sdpa_f32(_address(ffi, q), qs, _address(ffi, k), ks, _address(ffi, v), vs, _address(ffi, y), ys,
                        _ptr(ffi, "float *", p), _ptr(ffi, "float *", scratch), B, nh, Tq, Tk, hs, int(causal),
                        float(scale))
    return y, p


def sdpa_backward_f32(q, k, v, p, dy, causal=True, scale=None, dq=None, dk=None, dv=None):
    """(dq, dk, dv) of sdpa_f32(q, k, v, causal, scale) given its p and dy (B, nh, Tq, hs), the gradient of y
    (see reference.sdpa_backward_f32). dq, dk, dv, when given, are writeable views the gradients are
    written into (e.g. three parts of one (B, T, 3C) buffer: they may share a buffer, not elements);
    every element of each is written."""
    fn = "sdpa_backward_f32"
    q, k, v, (qs, ks, vs), (B, nh, Tq, Tk, hs) = _sdpa_shapes(fn, q, k, v, causal)
    p = _array(fn, "p", p, np.float32)
    if p.shape != (B, nh, Tq, Tk):
        raise ValueError(f"{fn}: p has shape {p.shape}; expected {(B, nh, Tq, Tk)} (the forward's probabilities)")
    dy, dys = _heads(fn, "dy", dy, q.shape)
    dq, dqs = _head_out(fn, "dq", dq, q.shape)
    dk, dks = _head_out(fn, "dk", dk, k.shape)
    dv, dvs = _head_out(fn, "dv", dv, k.shape)
    scale = np.float32(1.0 / np.sqrt(hs) if scale is None else scale)
    c = _c()
    if c is None or B * nh == 0:
        dq[...], dk[...], dv[...] = reference.sdpa_backward_f32(q, k, v, p, dy, causal, scale)
        return dq, dk, dv
    ffi, lib = c
    scratch = np.empty((2 * Tq + hs) * Tk, np.float32)
    lib.tinylm_sdpa_backward_f32(_address(ffi, q), qs, _address(ffi, k), ks, _address(ffi, v), vs,
                                 _ptr(ffi, "float *", p), _address(ffi, dy), dys, _address(ffi, dq), dqs,
                                 _address(ffi, dk), dks, _address(ffi, dv), dvs, _ptr(ffi, "float *", scratch),
                                 B, nh, Tq, Tk, hs, int(causal), float(scale))
    return dq, dk, dv
