"""Drive the C runtime (runtime/tinylm_runtime.c) from Python, through the cffi extension.

    >>> rt = CRuntime.from_model(model, tokenizer)   # doctest: +SKIP
    >>> ids = rt.encode("To be")                      # doctest: +SKIP
    >>> out = rt.generate(ids, 50, temperature=0)    # doctest: +SKIP
    >>> rt.decode(out)                                # doctest: +SKIP

encode gives tokenizer.encode's ids (C's BPE); generate gives tinylm.generate's tokens.

The blob lives in a NumPy buffer aligned to 16 bytes, the arena in another (tinylm_arena_bytes of
them): the runtime itself never allocates. Every argument is checked here before C sees it.
"""
from __future__ import annotations

import numbers

import numpy as np

from tinylm.io.cblob import blob_bytes


def _lib():
    try:
        from tinylm import _kernels
    except ImportError as exc:
        raise RuntimeError(f"the C runtime needs tinylm's C extension ({exc}); build it with "
                           "`python kernels/build.py` or reinstall tinylm with a C compiler") from None
    return _kernels.ffi, _kernels.lib


def _aligned(nbytes):
    """A zeroed uint8 array of nbytes whose data starts at a multiple of 16 bytes."""
    raw = np.zeros(nbytes + 16, np.uint8)
    skip = -raw.ctypes.data % 16
    return raw[skip:skip + nbytes]


class CRuntimeError(ValueError):
    """The C runtime refused a blob or an argument: `status` is its code, the message says why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def validate_blob(blob):
    """Run the C validator on `blob` (bytes): the config dict, or CRuntimeError naming the problem."""
    ffi, lib = _lib()
    if not isinstance(blob, (bytes, bytearray, np.ndarray)):
        raise TypeError(f"validate_blob: blob is a {type(blob).__name__}; expected bytes")
    buf = _aligned(len(blob))
    buf[:] = np.frombuffer(bytes(blob), np.uint8)
    cfg = ffi.new("tinylm_config *")
    msg = ffi.new("char[200]")
    status = lib.tinylm_validate(ffi.from_buffer("uint8_t[]", buf), len(blob), cfg, msg, 200)
    if status != 0:
        raise CRuntimeError(status, ffi.string(msg).decode("utf-8", "replace"))
    return {k: getattr(cfg, k) for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "n_expert",
                                         "expert_top_k", "bias", "ln_eps", "n_tokens", "pattern")}


class CRuntime:
    """A model loaded into the C runtime: forward, encode, decode, sample, generate."""

    def __init__(self, blob):
        ffi, lib = _lib()
        self.ffi, self.lib = ffi, lib
        if not isinstance(blob, (bytes, bytearray)) or not blob:
            raise TypeError("CRuntime: blob must be non-empty bytes (tinylm.io.cblob.blob_bytes)")
        self.blob = _aligned(len(blob))
        self.blob[:] = np.frombuffer(bytes(blob), np.uint8)
        self._blob_ptr = ffi.from_buffer("uint8_t[]", self.blob)
        cfg = ffi.new("tinylm_config *")
        msg = ffi.new("char[200]")
        status = lib.tinylm_validate(self._blob_ptr, len(blob), cfg, msg, 200)
        if status != 0:
            raise CRuntimeError(status, ffi.string(msg).decode("utf-8", "replace"))
        self.arena_bytes = lib.tinylm_arena_bytes(cfg)
        self.arena = np.zeros(self.arena_bytes, np.uint8)
        model = ffi.new("tinylm_model **")
        status = lib.tinylm_init(model, self._blob_ptr, len(blob), ffi.from_buffer("uint8_t[]", self.arena),
                                 self.arena_bytes, msg, 200)
        if status != 0:
            raise CRuntimeError(status, ffi.string(msg).decode("utf-8", "replace"))
        self.model = model[0]
        self.config = lib.tinylm_model_config(self.model)
        self.vocab_size = self.config.vocab_size
        self.block_size = self.config.block_size

    @classmethod
    def from_model(cls, model, tokenizer):
        """Write the blob of a tinylm GPT (fp32 or quantized) in memory and load it."""
        return cls(blob_bytes(model, tokenizer))

    # -- the model ------------------------------------------------------------------------------

    def forward(self, token, pos):
        """Logits (vocab_size,) float32 of `token` at position `pos`; the cache must hold 0 .. pos-1."""
        token, pos = _int("forward: token", token, self.vocab_size), _int("forward: pos", pos, self.block_size)
        ptr = self.lib.tinylm_forward(self.model, token, pos)
        return np.frombuffer(self.ffi.buffer(ptr, 4 * self.vocab_size), np.float32).copy()

    def logits(self, ids):
        """Logits (T, vocab_size) of a whole sequence fed one token at a time from position 0."""
        ids = _ids("logits", ids, self.vocab_size)
        if len(ids) > self.block_size:
            raise ValueError(f"logits: {len(ids)} tokens, more than block_size {self.block_size}")
        return np.stack([self.forward(t, p) for p, t in enumerate(ids)])  # (T, V)

    # -- the tokenizer --------------------------------------------------------------------------

    def encode(self, text):
        """C's byte-level BPE of `text` (str): the ids of Tokenizer.encode_ordinary."""
        if not isinstance(text, str):
            raise TypeError(f"encode: text must be a str, not {type(text).__name__}")
        data = text.encode("utf-8")
        out = np.zeros(max(1, len(data)), np.int32)
        n = self.lib.tinylm_encode(self.model, data, len(data), self.ffi.from_buffer("int32_t[]", out), len(out))
        if n < 0:
            raise CRuntimeError(n, f"encode: {self.ffi.string(self.lib.tinylm_status_name(n)).decode()}")
        return out[:n].tolist()

    def decode_bytes(self, ids):
        ids = _ids("decode", ids, self.vocab_size, allow_empty=True)
        n = self.ffi.new("size_t *")
        parts = []
        for i in ids:
            p = self.lib.tinylm_token_bytes(self.model, i, n)
            parts.append(bytes(self.ffi.buffer(p, n[0])) if p != self.ffi.NULL else b"")
        return b"".join(parts)

    def decode(self, ids):
        """The text of `ids` (invalid UTF-8 becomes U+FFFD, as Tokenizer.decode)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- sampling -------------------------------------------------------------------------------

    def sampler(self, temperature=1.0, top_k=None, top_p=None, seed=0):
        """A tinylm_sampler (the C PRNG seeded with `seed`, an integer in [0, 2**64))."""
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
                or not np.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral)
                                  or not 1 <= top_k < 2**32):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                                  or not 0.0 < top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        s = self.ffi.new("tinylm_sampler *")
        status = self.lib.tinylm_sampler_init(s, float(temperature), int(top_k or 0),
                                              1.0 if top_p is None else float(top_p), int(seed))
        if status != 0:
            raise ValueError(f"sampler: the C runtime refused temperature={temperature}, top_p={top_p}")
        return s

    def generate(self, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=0):
        """Continue `ids` by max_new_tokens tokens, as tinylm.generate.generate(use_cache=True, rng="tinylm")
        does; returns prompt + new ids (a list)."""
        ids = _ids("generate", ids, self.vocab_size)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
            raise ValueError(f"generate: max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        s = self.sampler(temperature, top_k, top_p, seed)
        buf = np.zeros(len(ids) + max_new_tokens, np.int32)
        buf[:len(ids)] = ids
        n = self.lib.tinylm_generate(self.model, s, self.ffi.from_buffer("int32_t[]", buf), len(ids),
                                     max_new_tokens, len(buf))
        if n < 0:
            raise CRuntimeError(n, f"generate: {self.ffi.string(self.lib.tinylm_status_name(n)).decode()}")
        return buf[:n].tolist()


def _int(what, value, limit):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    if not 0 <= value < limit:
        raise ValueError(f"{what} is {value}; expected 0 .. {limit - 1}")
    return int(value)


def _ids(fn, ids, vocab_size, allow_empty=False):
    arr = np.asarray(ids)
    if arr.size == 0:
        if allow_empty:
            return []
        raise ValueError(f"{fn}: ids is empty; give at least one token id")
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError(f"{fn}: ids must be a 1-D sequence of integer token ids, got dtype {arr.dtype} "
                        f"shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= vocab_size:
        raise ValueError(f"{fn}: ids must be in 0 .. {vocab_size - 1} (vocab_size)")
    return arr.astype(np.int64).tolist()
