"""The C encoder behind `Tokenizer.encode`: the same C function the C runtime encodes with.

tinylm_bpe_encode (runtime/tinylm_runtime.c, API in runtime/tinylm_runtime.h) pre-splits the text
with GPT-2's or GPT-4's pattern, implemented by hand alternative by alternative, and merges each
chunk by rank. The runtime runs it on the tables of a model blob; this module builds the same
tables from a Tokenizer's own lists (NumPy arrays the C reads in place) and runs it on them:

    byte_ids (256,)          the id of each byte value
    merges (n_merges, 3)     (left, right, new_id) in rank order
    pair_index (n_merges,)   the ranks sorted by (left, right): the runtime's binary search
    pair_hash (2^bits,)      a hash table of the merges, filled by tinylm_bpe_hash: faster lookups
    ranges (n_ranges, 2)     the Unicode classes \\p{L}, \\p{N}, \\s of the `regex` module, as runs

`tinylm.tokenizer` uses it when the C extension is built (and TINYLM_KERNELS is not "numpy") and the
tokenizer's pattern is GPT-2's, GPT-4's or none; its own Python code stays the reference and the
fallback, and tests/test_tokenizer_c.py checks that both give the same ids.
"""
from __future__ import annotations

import functools

import numpy as np
import regex

from tinylm import kernels

CLASS_L, CLASS_N, CLASS_S = 1, 2, 4  # the class bits of the C encoder (and of the blob)


@functools.lru_cache(maxsize=1)
def unicode_ranges():
    """(n_ranges, 2) uint32: sorted, disjoint runs (lo, hi | class << 24) of code points in \\p{L} (1),
    \\p{N} (2), \\s (4), as the `regex` module that the Python tokenizer splits with defines them.

    Every code point but the surrogates goes through the regex once (~30 ms, once per process).

    >>> [(int(lo), int(hi) & 0xFFFFFF, int(hi) >> 24) for lo, hi in unicode_ranges() if lo <= 65 <= hi & 0xFFFFFF]
    [(65, 90, 1)]
    """
    cps = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x110000)]).astype("<u4")  # no surrogates
    text = cps.tobytes().decode("utf-32-le")
    classes = np.zeros(0x110000, np.uint8)  # (code points,) class bits
    for bit, pattern in ((CLASS_L, r"\p{L}+"), (CLASS_N, r"\p{N}+"), (CLASS_S, r"\s+")):
        for m in regex.finditer(pattern, text):
            classes[cps[m.start():m.end()]] |= bit
    change = np.flatnonzero(np.diff(classes)) + 1  # positions where the class changes
    lo = np.concatenate([[0], change])
    hi = np.concatenate([change, [0x110000]]) - 1
    keep = classes[lo] != 0
    return np.stack([lo[keep], hi[keep] | classes[lo[keep]].astype(np.int64) << 24], axis=1).astype(np.uint32)


def _c_library():
    """The cffi (ffi, lib) of tinylm._kernels when the C backend is in use, else None."""
    if kernels.backend() != "c":
        return None
    from tinylm import _kernels  # optional: built from kernels/ and runtime/ (see kernels/build.py)
    return _kernels.ffi, _kernels.lib


class NativeEncoder:
    """A tokenizer's tables in the layout of tinylm_bpe, and `encode(data)` through the C encoder.

    pattern_code: 0 none, 1 GPT-2's, 2 GPT-4's. merges: [(left, right, new_id), ...] in rank order.
    """

    def __init__(self, ffi, lib, byte_ids, merges, pattern_code):
        self.ffi, self.lib = ffi, lib
        merges = np.array(merges, np.uint32).reshape(-1, 3)  # (n_merges, 3)
        self._arrays = {  # kept alive here: the C struct points into them
            "byte_ids": np.array(byte_ids, np.uint32),
            "merges": merges,
            "pair_index": np.lexsort((merges[:, 1], merges[:, 0])).astype(np.uint32),
            "ranges": unicode_ranges() if pattern_code else np.zeros((0, 2), np.uint32),
        }
        bpe = ffi.new("tinylm_bpe *")
        self._pointers = {name: ffi.from_buffer("uint32_t[]", a) for name, a in self._arrays.items()}
        for name, ptr in self._pointers.items():
            setattr(bpe, name, ptr)
        bpe.n_merges, bpe.n_ranges, bpe.pattern = len(merges), len(self._arrays["ranges"]), pattern_code
        lib.tinylm_bpe_init(bpe)
        if len(merges):
            bits = max(1, int(2 * len(merges) - 1).bit_length())  # 2^bits >= 2 n_merges: half full at most
            self._arrays["pair_hash"] = slots = np.empty(1 << bits, np.uint32)
            self._pointers["pair_hash"] = ptr = ffi.from_buffer("uint32_t[]", slots)
            status = lib.tinylm_bpe_hash(bpe, ptr, bits)
            assert status == 0, f"tinylm_bpe_hash: status {status}"
        self._bpe = bpe

    def encode(self, data):
        """The ids of the UTF-8 bytes `data` (a list of ints)."""
        n = len(data)
        if n == 0:
            return []
        ffi, lib = self.ffi, self.lib
        ids = np.empty(n, np.int32)  # n ids at most: a chunk's byte ids are written before they merge
        work = np.empty(lib.tinylm_bpe_work_words(n), np.uint32)  # only a long chunk's share is touched
        count = lib.tinylm_bpe_encode(self._bpe, ffi.from_buffer("uint8_t[]", data), n,
                                      ffi.from_buffer("int32_t[]", ids), n,
                                      ffi.from_buffer("uint32_t[]", work) if work.size else ffi.NULL, work.size)
        if count < 0:  # cannot happen with capacity n; a status would be a bug in the tables
            raise RuntimeError(f"tinylm_bpe_encode: {ffi.string(lib.tinylm_status_name(count)).decode()}")
        return ids[:count].tolist()


def native_encoder(byte_ids, merges, pattern_code):
    """A NativeEncoder for these tables, or None when the C backend is not in use."""
    c = _c_library()
    if c is None:
        return None
    return NativeEncoder(*c, byte_ids, merges, pattern_code)


def c_in_use():
    """Is the C encoder in use right now? (False when the extension is missing or TINYLM_KERNELS=numpy.)"""
    return _c_library() is not None
