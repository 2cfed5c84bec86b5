"""Quantized weights and the layers that use them: fp16, int8 and int4 stand-ins for Linear and Embedding.

A trained GPT keeps every weight in float32: 4 bytes a number. Two smaller formats, and where the
rounding happens (always inside `tinylm.kernels`, one contract written once):

- **fp16** (IEEE binary16, 2 bytes): the weight is rounded to the nearest half-precision number
  (round half to even) once, when the model is quantized. At run time the activations are rounded to
  fp16 too and `matmul_f16` multiplies them with fp32 accumulation.
- **int8** (1 byte + a float32 scale per row and group of `group_size` columns): each group of a
  weight row is mapped to integers in [-127, 127] by `q = round(w / scale)`, `scale = max|w| / 127`.
  At run time `linear_s8` quantizes the activations the same way (per row and group), takes int32
  dot products inside a group and adds the groups in float.
- **int4** (half a byte + a float32 scale per row and group): the same rule with values in [-7, 7],
  `scale = max|w| / 7`, two values packed in a byte; the activations are still int8 at run time.

A weight is held by a *storage* object (`Fp16Weight`, `Int8Weight`) that knows its bytes and how to
multiply with it; the layers (`Fp16Linear`, `Int8Linear`, `QuantizedEmbedding`) wrap a storage. The
tied token embedding and output head of a GPT share ONE storage, exactly as they share one fp32 matrix.

    >>> lin = Linear(64, 32)                    # weight (32, 64) float32: 8192 bytes
    >>> q = Int8Linear.from_linear(lin, group_size=32)
    >>> q.weight.nbytes                         # 2048 int8 values + 32 * 2 float32 scales
    2304
    >>> y = q(Tensor(np.ones((5, 64), np.float32)))   # (5, 32), like lin(...)

The layers are for inference only: their output is a fresh Tensor with no gradient history.
"""
from __future__ import annotations

import numpy as np

from tinylm import kernels
from tinylm.autograd import Tensor
from tinylm.nn import Module

# ----------------------------------------------------------------------------------------------
# weight storage: the bytes that replace one float32 matrix


class Fp16Weight:
    """A (N, K) weight stored as IEEE half precision."""

    precision = "fp16"

    def __init__(self, data):
        data = np.asarray(data)
        if data.dtype != np.float16 or data.ndim != 2:
            raise TypeError(f"Fp16Weight: data has dtype {data.dtype} and shape {data.shape}; "
                            "expected a 2-D float16 array (out_features, in_features)")
        self.data = np.ascontiguousarray(data)  # (N, K) float16

    @classmethod
    def from_float(cls, w, group_size=None):
        """Round a float32 (N, K) matrix to fp16 (nearest, ties to even; large values become inf).
        (fp16 has no groups: group_size is accepted for the registry's one signature and must be None.)"""
        if group_size is not None:
            raise ValueError(f"fp16 has no group size (got {group_size})")
        return cls(kernels.f32_to_f16(_as_f32_matrix(w, "Fp16Weight.from_float: w")))

    @staticmethod
    def nbytes_for(shape, group_size=None):
        """Bytes of an (N, K) matrix in fp16: 2 N K."""
        return 2 * shape[0] * shape[1]

    @classmethod
    def from_arrays(cls, take, prefix, shape):
        """The storage saved by `arrays(prefix)`; take(key, dtype, shape) returns a checked array."""
        return cls(take(prefix + ".f16", np.float16, shape))

    @property
    def shape(self):
        return self.data.shape

    @property
    def nbytes(self):
        return self.data.nbytes

    @property
    def label(self):
        return "fp16"

    def dequantize(self):
        """The float32 matrix this storage stands for."""
        return kernels.f16_to_f32(self.data)  # (N, K) float32

    def rows(self, idx):
        """float32 rows `idx` (any integer shape) -> idx.shape + (K,): an embedding lookup."""
        picked = self.data[idx.reshape(-1)]  # (n, K) float16
        return kernels.f16_to_f32(picked).reshape(idx.shape + (self.shape[1],))

    def linear(self, x, bias=None):
        """x (M, K) float32 -> x @ W.T + bias (M, N) float32, activations rounded to fp16."""
        return kernels.matmul_f16(kernels.f32_to_f16(x), self.data, bias)

    def arrays(self, prefix):
        return {prefix + ".f16": self.data}


class Int8Weight:
    """A (N, K) weight stored as int8 values with a float32 scale per row and group of columns.

    `q` is (N, K) int8 in [-127, 127]; `scale` is (N, K // group_size) float32, and the weight it stands
    for is `q * scale` (each scale repeated over its group). group_size == K is one scale per output
    row ("per channel").
    """

    precision = "int8"

    def __init__(self, q, scale):
        q, scale = np.asarray(q), np.asarray(scale)
        if q.dtype != np.int8 or q.ndim != 2:
            raise TypeError(f"Int8Weight: q has dtype {q.dtype} and shape {q.shape}; "
                            "expected a 2-D int8 array (out_features, in_features)")
        if scale.dtype != np.float32 or scale.ndim != 2:
            raise TypeError(f"Int8Weight: scale has dtype {scale.dtype} and shape {scale.shape}; "
                            "expected a 2-D float32 array (out_features, n_groups)")
        n, k = q.shape
        if scale.shape[0] != n or scale.shape[1] < 1 or k % scale.shape[1]:
            raise ValueError(f"Int8Weight: scale shape {scale.shape} does not fit q shape {q.shape}; "
                             f"expected ({n}, G) with G dividing {k}")
        if not np.all(np.isfinite(scale)) or scale.min(initial=0) < 0:
            raise ValueError("Int8Weight: scale must be finite and >= 0")
        # LinearS8 checks q for -128 once, for every call to come (per call, that scan would cost as
        # much as a batch-1 product); q and scale are kept as its read-only views, so they cannot change
        self._kernel = kernels.LinearS8(q, scale)
        self.q = self._kernel.w_q  # (N, K) int8
        self.scale = self._kernel.w_scale  # (N, K // group_size) float32

    @classmethod
    def from_float(cls, w, group_size=32):
        """Quantize a float32 (N, K) matrix; group_size must divide K (None or K: per channel)."""
        w = _as_f32_matrix(w, "Int8Weight.from_float: w")
        k = w.shape[1]
        group_size = k if group_size is None else int(group_size)
        if group_size < 1 or k % group_size:
            raise ValueError(f"int8 group_size {group_size} does not divide in_features {k}; "
                             f"choose a divisor of {k} (or 'channel' for one group per row)")
        return cls(*kernels.quantize_s8(w, group_size))

    @staticmethod
    def nbytes_for(shape, group_size=None):
        """Bytes of an (N, K) matrix in int8 with groups of group_size (None: per channel): the int8
        values plus a float32 scale per row and group. ((64, 128), 32) -> 8192 + 1024."""
        n, k = shape
        n_groups = 1 if group_size is None else k // group_size
        return n * k + 4 * n * n_groups

    @classmethod
    def from_arrays(cls, take, prefix, shape):
        """The storage saved by `arrays(prefix)`; take(key, dtype, shape) returns a checked array."""
        return cls(take(prefix + ".q", np.int8, shape), take(prefix + ".scale", np.float32))

    @property
    def shape(self):
        return self.q.shape

    @property
    def group_size(self):
        return self.q.shape[1] // self.scale.shape[1]

    @property
    def nbytes(self):
        return self.q.nbytes + self.scale.nbytes

    @property
    def label(self):
        gs = self.group_size
        return "int8:channel" if gs == self.q.shape[1] else f"int8:g{gs}"

    def dequantize(self):
        return kernels.dequantize_s8(self.q, self.scale)  # (N, K) float32

    def rows(self, idx):
        flat = idx.reshape(-1)
        picked = kernels.dequantize_s8(self.q[flat], self.scale[flat])  # (n, K) float32
        return picked.reshape(idx.shape + (self.shape[1],))

    def linear(self, x, bias=None):
        """x (M, K) float32 -> (M, N) float32; x is quantized per row and group at run time."""
        return self._kernel(x, bias)

    def arrays(self, prefix):
        return {prefix + ".q": self.q, prefix + ".scale": self.scale}


class Int4Weight:
    """A (N, K) weight stored as int4 values, two a byte, with a float32 scale per row and group.

    `q4` is (N, K // 2) uint8 in llama.cpp Q4_0's layout: 16 bytes per 32 columns, byte j holding
    column j in its low nibble and j + 16 in its high nibble, each a 4-bit two's complement value in
    [-7, 7]; `scale` is (N, K // group_size) float32; the weight it stands for is `q * scale`
    (tinylm_kernels.h, "int4 linear layer"). K and the group size are multiples of 32;
    group_size == K is one scale per output row.

        >>> Int4Weight.nbytes_for((64, 128), 32)   # 64 * 64 bytes of values + 64 * 4 float32 scales
        5120
    """

    precision = "int4"

    def __init__(self, q4, scale):
        # LinearS4 checks dtypes, shapes, even groups and the -8 nibble once, and keeps read-only views
        self._kernel = kernels.LinearS4(q4, scale)
        if not np.all(np.isfinite(self._kernel.w_scale)) or self._kernel.w_scale.min(initial=0) < 0:
            raise ValueError("Int4Weight: scale must be finite and >= 0")
        self.q4 = self._kernel.w_q4  # (N, K // 2) uint8
        self.scale = self._kernel.w_scale  # (N, K // group_size) float32

    @staticmethod
    def fits(shape, group_size=None):
        """Can an (N, K) matrix be stored in int4 with these groups? K and the group must be multiples
        of 32 (a block of 32 columns is 16 bytes), the group dividing K."""
        k = shape[1]
        gs = k if group_size is None else group_size
        return k % 32 == 0 and gs % 32 == 0 and k % gs == 0

    @classmethod
    def from_float(cls, w, group_size=32):
        """Quantize a float32 (N, K) matrix; group_size a multiple of 32 dividing K (None: per channel)."""
        w = _as_f32_matrix(w, "Int4Weight.from_float: w")
        k = w.shape[1]
        group_size = k if group_size is None else int(group_size)
        if not cls.fits(w.shape, group_size):
            raise ValueError(f"int4 group_size {group_size} does not fit in_features {k}; expected a "
                             f"multiple of 32 dividing in_features, itself a multiple of 32 (Q4_0 blocks)")
        return cls(*kernels.quantize_s4(w, group_size))

    @staticmethod
    def nbytes_for(shape, group_size=None):
        """Bytes of an (N, K) matrix in int4: N K / 2 packed bytes plus a float32 scale per row and
        group (None: per channel)."""
        n, k = shape
        n_groups = 1 if group_size is None else k // group_size
        return n * (k // 2) + 4 * n * n_groups

    @classmethod
    def from_arrays(cls, take, prefix, shape):
        """The storage saved by `arrays(prefix)`; take(key, dtype, shape) returns a checked array."""
        n, k = shape
        if k % 32:
            raise ValueError(f"int4 needs in_features to be a multiple of 32; this layer has {k}")
        return cls(take(prefix + ".q4", np.uint8, (n, k // 2)), take(prefix + ".scale", np.float32))

    @property
    def shape(self):
        return self._kernel.shape

    @property
    def group_size(self):
        return self._kernel.group_size

    @property
    def nbytes(self):
        return self.q4.nbytes + self.scale.nbytes

    @property
    def label(self):
        gs = self.group_size
        return "int4:channel" if gs == self.shape[1] else f"int4:g{gs}"

    def dequantize(self):
        return kernels.dequantize_s4(self.q4, self.scale)  # (N, K) float32

    def rows(self, idx):
        flat = idx.reshape(-1)
        picked = kernels.dequantize_s4(self.q4[flat], self.scale[flat])  # (n, K) float32
        return picked.reshape(idx.shape + (self.shape[1],))

    def linear(self, x, bias=None):
        """x (M, K) float32 -> (M, N) float32; x is quantized to int8 per row and group at run time."""
        return self._kernel(x, bias)

    def arrays(self, prefix):
        return {prefix + ".q4": self.q4, prefix + ".scale": self.scale}


def _as_f32_matrix(w, what):
    w = w.data if isinstance(w, Tensor) else np.asarray(w)
    if w.ndim != 2 or w.dtype != np.float32:
        raise TypeError(f"{what} has dtype {w.dtype} and shape {w.shape}; expected a 2-D float32 matrix")
    return np.ascontiguousarray(w)


# ----------------------------------------------------------------------------------------------
# layers


class QuantizedLinear(Module):
    """y = x @ W.T + b with W held by a quantized storage; called like Linear: (..., in) -> (..., out)."""

    storage_type = None  # set by the subclasses

    def __init__(self, weight, bias=None):
        super().__init__()
        if self.storage_type is not None and not isinstance(weight, self.storage_type):
            raise TypeError(f"{type(self).__name__}: weight is a {type(weight).__name__}; "
                            f"expected {self.storage_type.__name__}")
        n, k = weight.shape
        if bias is not None:
            bias = np.ascontiguousarray(bias.data if isinstance(bias, Tensor) else bias, dtype=np.float32)
            if bias.shape != (n,):
                raise ValueError(f"{type(self).__name__}: bias has shape {bias.shape}; expected ({n},)")
        self.weight = weight  # the storage (Fp16Weight or Int8Weight), not a trainable Tensor
        self.bias = bias  # (out_features,) float32 or None
        self.in_features, self.out_features = k, n

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        if data.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: input has {data.shape[-1]} features; "
                             f"expected {self.in_features}")
        lead = data.shape[:-1]
        x2 = np.ascontiguousarray(data.reshape(-1, self.in_features), dtype=np.float32)  # (M, K)
        y = self.weight.linear(x2, self.bias)  # (M, N) float32
        return Tensor(y.reshape(lead + (self.out_features,)))  # (..., N)

    def dequantized_weight(self):
        return self.weight.dequantize()  # (N, K) float32

    def __repr__(self):
        return (f"{type(self).__name__}(in_features={self.in_features}, out_features={self.out_features}, "
                f"weight={self.weight.label}, bias={self.bias is not None})")


class Fp16Linear(QuantizedLinear):
    """A Linear layer whose weight is stored in fp16 (fp32 accumulation: the `matmul_f16` kernel)."""

    storage_type = Fp16Weight

    @classmethod
    def from_linear(cls, linear):
        bias = None if linear.bias is None else linear.bias.data
        return cls(Fp16Weight.from_float(linear.weight.data), bias)


class Int8Linear(QuantizedLinear):
    """A Linear layer with int8 weights (per row and group scales) and run-time int8 activations."""

    storage_type = Int8Weight

    @classmethod
    def from_linear(cls, linear, group_size=32):
        bias = None if linear.bias is None else linear.bias.data
        return cls(Int8Weight.from_float(linear.weight.data, group_size), bias)

    @property
    def group_size(self):
        return self.weight.group_size


class Int4Linear(QuantizedLinear):
    """A Linear layer with int4 weights (two a byte, per row and group scales) and run-time int8
    activations: the `linear_s4` kernel."""

    storage_type = Int4Weight

    @classmethod
    def from_linear(cls, linear, group_size=32):
        bias = None if linear.bias is None else linear.bias.data
        return cls(Int4Weight.from_float(linear.weight.data, group_size), bias)

    @property
    def group_size(self):
        return self.weight.group_size


class QuantizedEmbedding(Module):
    """An embedding table (num_embeddings, embedding_dim) held by a quantized storage.

    A lookup dequantizes only the rows it needs: idx (B, T) -> (B, T, C) float32. The tied token
    embedding of a GPT is a QuantizedEmbedding sharing its storage with the output head.
    """

    def __init__(self, weight):
        super().__init__()
        self.weight = weight
        self.num_embeddings, self.embedding_dim = weight.shape

    def __call__(self, idx):
        return self.forward(idx)

    def forward(self, idx):
        idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"QuantizedEmbedding: idx has dtype {idx.dtype}; expected integers")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise ValueError(f"QuantizedEmbedding: idx out of range [0, {self.num_embeddings})")
        return Tensor(self.weight.rows(idx))  # idx.shape + (C,)

    def __repr__(self):
        return f"QuantizedEmbedding({self.num_embeddings}, {self.embedding_dim}, weight={self.weight.label})"
