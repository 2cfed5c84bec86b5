"""The C blob: one file (`model.bin`) that holds a model and its tokenizer for the C runtime.

The format is written down once, at the top of runtime/tinylm_runtime.h; this module writes exactly
that, and the C reader (tinylm_validate) checks every number of it. In five lines:

    header (128 bytes)  "TLMB", version 1, the GPTConfig sizes, LayerNorm eps, where the sections are
    tokenizer           byte ids, each token's bytes, merges in rank order + a (left, right) index,
                        the pre-split pattern (none / gpt2 / gpt4) and its Unicode class table
    tensor table        48 bytes a tensor: kind, layer, expert, precision (fp32 / fp16 / int8 / int4 +
                        group size), shape, offset and size of its data (and int8 / int4 scales)
    data                every array, little-endian, each starting at a multiple of 16 bytes

    >>> blob = blob_bytes(model, tokenizer)            # doctest: +SKIP
    >>> write_blob(model, tokenizer, "out/model.bin")  # doctest: +SKIP

A quantized model (tinylm.quant.apply_plan, load_quantized) is written with each layer in the
precision it holds: nothing is re-quantized, so the C runtime multiplies the very same fp16/int8/int4
values (int4: Int4Weight's packed bytes and scales, as they are). A blob with an int4 tensor is format
version 2, any other version 1 (a runtime that predates int4 refuses the first by its version and still
runs the second).
`export_c` writes the whole folder of `tinylm export --format c`: model.bin, model_data.c/.h (the
same bytes as a const array, for flash) and a README.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from tinylm import nn
from tinylm.bpe import native
from tinylm.fileio import atomic_open, check_not_replacing
from tinylm.quant import Fp16Weight, Int4Weight, Int8Weight, QuantizedEmbedding, QuantizedLinear
from tinylm.tokenizer import GPT2_PATTERN, GPT4_PATTERN

MAGIC = b"TLMB"
VERSION = 2  # the newest version written: 2 when a tensor is int4, else 1 (tinylm_runtime.h)
ALIGN = 16
HEADER_BYTES = 128
TOK_HEADER_BYTES = 32
ENTRY = struct.Struct("<12I")  # one tensor table entry

PATTERN_IDS = {None: 0, GPT2_PATTERN: 1, GPT4_PATTERN: 2}
DTYPE_F32, DTYPE_F16, DTYPE_S8, DTYPE_S4 = 0, 1, 2, 3
DTYPE_NAMES = ("fp32", "fp16", "int8", "int4")

# tensor kinds (TINYLM_T_* in tinylm_runtime.h): name inside a block -> kind
KIND = {"wte": 1, "wpe": 2, "ln_f.weight": 3, "ln_f.bias": 4, "ln_1.weight": 5, "ln_1.bias": 6,
        "attn.c_attn.weight": 7, "attn.c_attn.bias": 8, "attn.c_proj.weight": 9, "attn.c_proj.bias": 10,
        "ln_2.weight": 11, "ln_2.bias": 12, "mlp.c_fc.weight": 13, "mlp.c_fc.bias": 14,
        "mlp.c_proj.weight": 15, "mlp.c_proj.bias": 16, "mlp.router.weight": 17}

C_FILES = ("model.bin", "model_data.c", "model_data.h", "README.md")


# ----------------------------------------------------------------------------------------------
# the Unicode classes of the pre-split patterns, as the `regex` module defines them


def unicode_ranges():
    """Sorted, disjoint (lo, hi, class bits) runs of code points in \\p{L} (1), \\p{N} (2), \\s (4).

    The table tinylm.bpe.native computes for the Python tokenizer's C encoder (from the `regex` module
    itself), so the runtime classifies every character exactly as Python does. About 840 runs (6.7 KB
    in the blob).

    >>> [r for r in unicode_ranges() if r[0] <= ord("A") <= r[1]]
    [(65, 90, 1)]
    """
    return [(int(lo), int(hi) & 0xFFFFFF, int(hi) >> 24) for lo, hi in native.unicode_ranges()]


# ----------------------------------------------------------------------------------------------
# the tokenizer section


def _tokenizer_section(tokenizer, vocab_size):
    """The tokenizer section's bytes (format: tinylm_runtime.h)."""
    pattern = getattr(tokenizer, "pattern", None)
    if pattern not in PATTERN_IDS:
        raise ValueError("write_blob: the tokenizer pre-splits with a custom regex; the C runtime implements "
                         "only 'gpt2', 'gpt4' and no pattern (retrain the tokenizer with one of those)")
    n_tokens = tokenizer.vocab_size
    if n_tokens > vocab_size:
        raise ValueError(f"write_blob: the tokenizer has {n_tokens} tokens but the model only {vocab_size}")
    vocab = tokenizer.vocab  # {id: bytes}
    pool = b"".join(vocab.get(i, b"") for i in range(n_tokens))
    lengths = np.array([len(vocab.get(i, b"")) for i in range(n_tokens)], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.uint32)  # (n_tokens + 1,)
    merges = np.array([(a, b, new) for (a, b), new in tokenizer.merges.items()], np.uint32).reshape(-1, 3)
    pair_index = np.lexsort((merges[:, 1], merges[:, 0])).astype(np.uint32)  # ranks by (left, right)
    packed = native.unicode_ranges() if pattern is not None else np.zeros((0, 2), np.uint32)  # (n, 2) lo, hi|cls<<24
    specials = set(getattr(tokenizer, "special_tokens", {}).values())
    one_byte = {b[0]: i for i, b in vocab.items() if len(b) == 1 and i not in specials}
    if len(one_byte) != 256:
        raise ValueError(f"write_blob: the tokenizer defines {len(one_byte)} one-byte tokens; a byte-level BPE "
                         "vocabulary has all 256")
    byte_ids = np.array([one_byte[b] for b in range(256)], np.uint32)  # the id of each byte value
    head = struct.pack("<8I", n_tokens, len(merges), PATTERN_IDS[pattern], len(packed), len(pool), 0, 0, 0)
    tables = [byte_ids, starts, merges.reshape(-1), pair_index, packed.reshape(-1)]
    return head + b"".join(t.astype("<u4").tobytes() for t in tables) + pool


# ----------------------------------------------------------------------------------------------
# the tensors


def _matrix(module, what):
    """(dtype tag, group_size, data array, scale array or None) of a Linear / Embedding's weight."""
    if isinstance(module, (QuantizedLinear, QuantizedEmbedding)):
        w = module.weight
        if isinstance(w, Fp16Weight):
            return DTYPE_F16, 0, w.data.view(np.uint16), None
        if isinstance(w, Int8Weight):
            return DTYPE_S8, w.group_size, w.q, w.scale
        if isinstance(w, Int4Weight):  # (N, K // 2) packed bytes, as held: the runtime reads them in place
            return DTYPE_S4, w.group_size, w.q4, w.scale
        raise TypeError(f"write_blob: {what} holds a {type(w).__name__}; expected fp16, int8 or int4 storage")
    if isinstance(module, (nn.Linear, nn.Embedding)):
        data = np.asarray(module.weight.data)
        if data.dtype != np.float32:
            raise TypeError(f"write_blob: {what} has dtype {data.dtype}; expected float32")
        return DTYPE_F32, 0, data, None
    raise TypeError(f"write_blob: {what} is a {type(module).__name__}; expected a Linear or an Embedding")


def _vector(t, what):
    a = np.asarray(getattr(t, "data", t))
    if a.dtype != np.float32 or a.ndim != 1:
        raise TypeError(f"write_blob: {what} has dtype {a.dtype} and shape {a.shape}; expected a 1-D float32 vector")
    return DTYPE_F32, 0, a.reshape(1, -1), None


def _bias(module, what):
    b = getattr(module, "bias", None)
    return None if b is None else _vector(b, what + ".bias")


def blob_tensors(model):
    """{(kind, layer, expert): (dtype, group_size, data, scale)} for every tensor of the blob."""
    cfg, t = model.config, model.transformer
    head, wte = model.lm_head, t.wte
    tied = (head.weight is wte.weight) if isinstance(head, (QuantizedLinear, nn.Linear)) else False
    if not tied or getattr(head, "bias", None) is not None:
        raise ValueError("write_blob: the output head must be the token embedding (tied, no bias), as in "
                         "tinylm's GPT; this model's lm_head is a separate matrix")
    out = {(KIND["wte"], 0, 0): _matrix(head, "lm_head"), (KIND["wpe"], 0, 0): _matrix(t.wpe, "transformer.wpe")}
    out[(KIND["ln_f.weight"], 0, 0)] = _vector(t.ln_f.weight, "transformer.ln_f.weight")
    if t.ln_f.bias is not None:
        out[(KIND["ln_f.bias"], 0, 0)] = _vector(t.ln_f.bias, "transformer.ln_f.bias")
    for layer, block in enumerate(t.h):
        p = f"transformer.h.{layer}"
        parts = {"ln_1": block.ln_1, "ln_2": block.ln_2}
        for name, ln in parts.items():
            out[(KIND[f"{name}.weight"], layer, 0)] = _vector(ln.weight, f"{p}.{name}.weight")
            if ln.bias is not None:
                out[(KIND[f"{name}.bias"], layer, 0)] = _vector(ln.bias, f"{p}.{name}.bias")
        for name in ("c_attn", "c_proj"):
            lin = getattr(block.attn, name)
            out[(KIND[f"attn.{name}.weight"], layer, 0)] = _matrix(lin, f"{p}.attn.{name}")
            if _bias(lin, f"{p}.attn.{name}") is not None:
                out[(KIND[f"attn.{name}.bias"], layer, 0)] = _bias(lin, f"{p}.attn.{name}")
        experts = block.mlp.experts if cfg.n_expert else [block.mlp]
        if cfg.n_expert:
            out[(KIND["mlp.router.weight"], layer, 0)] = _matrix(block.mlp.router, f"{p}.mlp.router")
        for e, mlp in enumerate(experts):
            for name in ("c_fc", "c_proj"):
                lin = getattr(mlp, name)
                out[(KIND[f"mlp.{name}.weight"], layer, e)] = _matrix(lin, f"{p}.mlp.{name}")
                if _bias(lin, f"{p}.mlp.{name}") is not None:
                    out[(KIND[f"mlp.{name}.bias"], layer, e)] = _bias(lin, f"{p}.mlp.{name}")
    return out


# ----------------------------------------------------------------------------------------------
# the blob


def _pad(buf):
    buf.extend(b"\0" * (-len(buf) % ALIGN))


def blob_bytes(model, tokenizer):
    """The whole blob of `model` (a tinylm GPT, fp32 or quantized) and `tokenizer`, as bytes."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(model, "transformer"):
        raise TypeError(f"write_blob: model is a {type(model).__name__}; expected a tinylm GPT")
    if not hasattr(tokenizer, "merges") or not hasattr(tokenizer, "vocab"):
        raise TypeError(f"write_blob: tokenizer is a {type(tokenizer).__name__}; expected a tinylm Tokenizer")
    if not cfg.is_gpt2:
        raise ValueError("write_blob: the C runtime runs GPT-2's architecture (LayerNorm, learned positions, GELU "
                         "MLP, one key/value head per query head, tied head); this model has other options "
                         f"(norm={cfg.norm}, pos={cfg.pos}, mlp={cfg.mlp}, n_kv_head={cfg.kv_heads}, "
                         f"tie_head={cfg.tie_head})")
    tensors = blob_tensors(model)
    buf = bytearray(HEADER_BYTES)
    tok = _tokenizer_section(tokenizer, cfg.vocab_size)
    tok_offset = len(buf)
    buf += tok
    _pad(buf)
    table_offset = len(buf)
    keys = sorted(tensors)  # (kind, layer, expert), strictly increasing: the order the reader checks
    buf += bytes(ENTRY.size * len(keys))
    _pad(buf)
    entries = []
    for kind, layer, expert in keys:
        dtype, group_size, data, scale = tensors[(kind, layer, expert)]
        data = np.ascontiguousarray(data)
        rows, cols = data.shape
        cols *= 2 if dtype == DTYPE_S4 else 1  # int4: (rows, cols // 2) bytes hold (rows, cols) values
        data_offset = len(buf)
        buf += data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        _pad(buf)
        scale_offset = scale_bytes = 0
        if scale is not None:
            scale_offset, raw = len(buf), np.ascontiguousarray(scale, "<f4").tobytes()
            scale_bytes = len(raw)
            buf += raw
            _pad(buf)
        entries.append(ENTRY.pack(kind, layer, expert, dtype, group_size, rows, cols, data_offset,
                                  data.nbytes, scale_offset, scale_bytes, 0))
    buf[table_offset:table_offset + ENTRY.size * len(keys)] = b"".join(entries)
    if len(buf) >= 2**32:
        raise ValueError(f"write_blob: the blob would be {len(buf):,} bytes; the format's offsets stop at 4 GiB")
    eps = float(getattr(model.transformer.ln_f, "eps", 1e-5))
    version = 2 if any(t[0] == DTYPE_S4 for t in tensors.values()) else 1
    header = struct.pack("<4s3I7IIf4I", MAGIC, version, HEADER_BYTES, len(buf), cfg.vocab_size, cfg.block_size,
                         cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_expert, cfg.expert_top_k if cfg.n_expert else 0,
                         1 if cfg.bias else 0, eps, tok_offset, len(tok), len(keys), table_offset)
    buf[:len(header)] = header
    return bytes(buf)


def write_blob(model, tokenizer, path):
    """Write `blob_bytes(model, tokenizer)` to `path` (a temporary file, then renamed). Returns its size."""
    blob = blob_bytes(model, tokenizer)
    with atomic_open(path, "wb") as f:
        f.write(blob)
    return len(blob)


def c_sources(blob, name="tinylm_model_data"):
    """(model_data.c, model_data.h) text: the blob as a 16-byte-aligned `const uint8_t` array + its length."""
    if not isinstance(blob, (bytes, bytearray)) or not blob:
        raise ValueError("c_sources: blob must be non-empty bytes")
    h = (f"/* model_data.h -- a tinylm model blob (runtime/tinylm_runtime.h) as a const array. Generated by\n"
         f" * tinylm export --format c; do not edit. */\n#ifndef TINYLM_MODEL_DATA_H\n#define TINYLM_MODEL_DATA_H\n\n"
         f"#include <stddef.h>\n#include <stdint.h>\n\nextern const uint8_t {name}[];\n"
         f"extern const size_t {name}_len;  /* {len(blob)} bytes */\n\n#endif\n")
    hexes = blob.hex()
    lines = [",".join("0x" + hexes[i:i + 2] for i in range(j, min(j + 48, len(hexes)), 2))
             for j in range(0, len(hexes), 48)]
    c = ("/* model_data.c -- generated by tinylm export --format c; do not edit. */\n#include \"model_data.h\"\n\n"
         "#if defined(__GNUC__)\n__attribute__((aligned(16)))\n#endif\n"
         f"const uint8_t {name}[{len(blob)}] = {{\n" + ",\n".join(lines) + "\n};\n"
         f"const size_t {name}_len = {len(blob)};\n")
    return c, h


_README = """# {name}: a tinylm model for the C runtime

    model.bin       the model and its tokenizer, in tinylm's blob format version {version}
                    (runtime/tinylm_runtime.h describes every byte); {size:,} bytes
    model_data.c/h  the same bytes as a const array `tinylm_model_data` (for flash on a board)

Run it with no Python, from a tinylm checkout:

    make -C runtime
    ./runtime/tinylm-run {folder}/model.bin -n 200 -i "To be" -t 0.8 -k 40 -s 1

Or build it into your own program: compile runtime/tinylm_runtime.c, kernels/*.c and model_data.c
with -Iruntime -Ikernels (C99, no malloc: you pass one arena of tinylm_arena_bytes() bytes).

Model: n_layer={n_layer}, n_head={n_head}, n_embd={n_embd}, block_size={block_size}, vocab_size={vocab_size},
n_expert={n_expert}; precisions: {precisions}.
"""


def export_c(model, tokenizer, folder, force=False):
    """Write model.bin, model_data.c, model_data.h and README.md into `folder` (refusing to replace
    those files unless force). Returns the blob's size in bytes."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"--out {folder} exists and is not a folder")
    if not force:
        check_not_replacing(folder, C_FILES)
    blob = blob_bytes(model, tokenizer)
    c_text, h_text = c_sources(blob)
    os.makedirs(folder, exist_ok=True)
    with atomic_open(os.path.join(folder, "model.bin"), "wb") as f:
        f.write(blob)
    for name, text in (("model_data.c", c_text), ("model_data.h", h_text)):
        with atomic_open(os.path.join(folder, name), "w") as f:
            f.write(text)
    cfg = model.config
    tags = sorted({DTYPE_NAMES[d] + (f":g{g}" if d in (DTYPE_S8, DTYPE_S4) else "")
                   for d, g, *_ in blob_tensors(model).values()})
    with atomic_open(os.path.join(folder, "README.md"), "w") as f:
        f.write(_README.format(name=os.path.basename(os.path.abspath(folder)), version=blob[4], size=len(blob),
                               folder=folder, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                               block_size=cfg.block_size, vocab_size=cfg.vocab_size, n_expert=cfg.n_expert,
                               precisions=", ".join(tags)))
    return len(blob)
