"""GGUF, the file llama.cpp and ollama run: a tinylm GPT-2 or Llama in one file, and back.

A GGUF file (version 3, all little-endian) is:

    "GGUF"  uint32 version  uint64 n_tensors  uint64 n_kv
    n_kv x (key: string, uint32 value type, value)         metadata: sizes, tokenizer, ...
    n_tensors x (name: string, uint32 n_dims, uint64 dims[n_dims], uint32 ggml type, uint64 offset)
    zero padding to the alignment (32), then the tensor data, each tensor at its offset (aligned)

A string is a uint64 length and that many UTF-8 bytes; an array is a uint32 element type, a uint64
count and the elements. ggml lists dimensions innermost first, so tinylm's (out, in) weight is dims
[in, out], with the same bytes. Four tensor types are written and read:

    F32 (0)    float32
    F16 (1)    IEEE half: tinylm's fp16 layers, bit for bit
    Q8_0 (8)   blocks of 32 values along a row: an fp16 scale d, then 32 int8 q; value = q * d.
               That is tinylm's int8:g32 with its float32 scale rounded to the nearest fp16: the int8
               values are kept exactly, each scale moves by at most 2^-11 of itself (fp16 has 11
               significant bits) and a scale below 2^-24 (a group of weights all below ~2e-6) becomes 0.
    Q4_0 (2)   blocks of 32 values along a row: an fp16 scale d, then 16 bytes; byte j holds value j in
               its low nibble and value j + 16 in its high one, each as u = q + 8 (0..15); value =
               (u - 8) * d. That is tinylm's int4:g32 (the same nibble order, tinylm_kernels.h) with
               each nibble's bit 3 flipped (two's complement q -> q + 8: byte ^ 0x88) and, as for
               Q8_0, the float32 scale rounded to the nearest fp16: the int4 values are kept exactly,
               a weight moves by at most 7 * 2^-11 * scale = 2^-11 of its group's largest |w| (scales
               of 2^-14 and above; below, fp16's subnormals move it by up to 7 * 2^-25, and a scale
               under 2^-25 becomes 0). A scale fp16 cannot hold (above 65504) is refused, for Q8_0
               too. Q4_0 can also hold u = 0 (q = -8) and a negative d, which llama.cpp's quantizer
               uses and tinylm's int4 does not: a tensor with q = -8 is read as int8:g32, exactly.

llama.cpp's names: token_embd, position_embd (GPT-2), blk.N.attn_norm, attn_qkv (GPT-2) or attn_q /
attn_k / attn_v (Llama), attn_output, ffn_norm, ffn_up, ffn_gate (Llama), ffn_down, output_norm,
output. A Llama with a mixture of experts is written as llama.cpp reads Mixtral: the router
blk.N.ffn_gate_inp and one 3-D tensor per matrix holding every expert (ffn_gate_exps, ffn_up_exps,
ffn_down_exps), with llama.expert_count and llama.expert_used_count; llama.cpp's gates are the softmax
renormalised over the chosen experts, as tinylm's. llama.cpp's "llama" rotates adjacent pairs like
tinylm (Hugging Face's rotate-half models are permuted by its converter), so Llama weights are written
as they are. The tokenizer is llama.cpp's "gpt2" BPE: tokens and merges spelled with GPT-2's
byte-to-unicode table, the pre-tokenizer named by its regex ("gpt-2" for tinylm's gpt2 pattern,
"llama-bpe" for the gpt4 one, which is Llama 3's).
Two tinylm keys make the round trip exact: tinylm.config (the GPTConfig as JSON) and
tinylm.tokenizer.pattern; llama.cpp ignores them, and a file without them is read from the
standard keys.

    >>> save_gguf(model, "model.gguf", tokenizer)          # doctest: +SKIP
    >>> model, tokenizer = load_gguf("model.gguf")          # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import mmap
import os
import struct

import numpy as np

from tinylm import nn
from tinylm.bpe.files import bytes_to_unicode
from tinylm.fileio import atomic_open
from tinylm.io.loader import build_model
from tinylm.model import GPT, GPTConfig
from tinylm.quant.layers import (
    Fp16Linear,
    Fp16Weight,
    Int4Linear,
    Int4Weight,
    Int8Linear,
    Int8Weight,
    QuantizedEmbedding,
    QuantizedLinear,
)
from tinylm.quant.plan import get_module, is_embedding, set_module
from tinylm.tokenizer import GPT2_PATTERN, GPT4_PATTERN, Tokenizer

MAGIC = b"GGUF"
VERSION = 3
ALIGNMENT = 32
F32, F16, Q4_0, Q8_0 = 0, 1, 2, 8
TYPE_NAMES = {F32: "F32", F16: "F16", Q4_0: "Q4_0", Q8_0: "Q8_0"}
BLOCK_BYTES = {Q4_0: 18, Q8_0: 34}  # bytes of 32 values: an fp16 scale and the packed values
NORM_EPS = 1e-5
PRE_TOKENIZERS = {"gpt-2": GPT2_PATTERN, "llama-bpe": GPT4_PATTERN}  # llama.cpp's name -> tinylm's regex
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_UNUSED = 1, 3, 5  # llama.cpp's token types
MAX_DIMS = 4

# metadata value types: code -> (struct format, size) for the fixed-size ones
U8, I8, U16, I16, U32, I32, F32V, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALARS = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32V: "<f", BOOL: "<?", U64: "<Q",
           I64: "<q", F64: "<d"}

# ----------------------------------------------------------------------------------------------
# names: tinylm's layers and llama.cpp's tensors


def architecture(config):
    """'gpt2' or 'llama': the llama.cpp architecture that computes this config; a ValueError otherwise."""
    if config.is_gpt2:
        if config.n_expert:
            raise ValueError("GGUF: llama.cpp's gpt2 has no mixture of experts (its llama has: use --arch llama)")
        return "gpt2"
    llama = dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False)
    other = [f"{k}={getattr(config, k)!r}" for k, v in llama.items() if getattr(config, k) != v]
    if other:
        raise ValueError(f"GGUF: llama.cpp has a GPT-2 and a Llama, and this model is neither: {', '.join(other)} "
                         f"(a Llama needs {', '.join(f'{k}={v!r}' for k, v in llama.items())})")
    return "llama"


def tensor_names(config):
    """[(GGUF name, tinylm layer, rows of that layer or None, 'weight' or 'bias')] in file order.

    A mixture of experts (Llama only, Mixtral's layout) stores each of its three matrices for all experts
    in one 3-D tensor: there the tinylm layer is a tuple, one layer per expert, stacked on a new first axis.
    """
    arch = architecture(config)
    C, kv = config.n_embd, config.kv_heads * (config.n_embd // config.n_head)
    out = [("token_embd.weight", "transformer.wte", None, "weight")]
    if arch == "gpt2":
        out.append(("position_embd.weight", "transformer.wpe", None, "weight"))
    for i in range(config.n_layer):
        b, h = f"blk.{i}.", f"transformer.h.{i}."
        parts = [("attn_norm", "ln_1", None)]
        if arch == "gpt2":
            parts += [("attn_qkv", "attn.c_attn", None), ("attn_output", "attn.c_proj", None),
                      ("ffn_norm", "ln_2", None), ("ffn_up", "mlp.c_fc", None), ("ffn_down", "mlp.c_proj", None)]
        else:
            parts += [("attn_q", "attn.c_attn", slice(0, C)), ("attn_k", "attn.c_attn", slice(C, C + kv)),
                      ("attn_v", "attn.c_attn", slice(C + kv, C + 2 * kv)), ("attn_output", "attn.c_proj", None),
                      ("ffn_norm", "ln_2", None)]
            if config.n_expert:  # the router, then (gate, up, down) of every expert stacked
                experts = [f"mlp.experts.{e}." for e in range(config.n_expert)]
                parts += [("ffn_gate_inp", "mlp.router", None)]
                parts += [(f"ffn_{g}_exps", tuple(x + sub for x in experts), None)
                          for g, sub in (("gate", "c_fc"), ("up", "c_up"), ("down", "c_proj"))]
            else:
                parts += [("ffn_gate", "mlp.c_fc", None), ("ffn_up", "mlp.c_up", None),
                          ("ffn_down", "mlp.c_proj", None)]
        for gguf_name, layer, rows in parts:
            layer = tuple(h + x for x in layer) if isinstance(layer, tuple) else h + layer
            out.append((b + gguf_name + ".weight", layer, rows, "weight"))
            if arch == "gpt2":  # GPT-2 in llama.cpp always has biases (zeros stand in for bias=False)
                out.append((b + gguf_name + ".bias", layer, rows, "bias"))
    out.append(("output_norm.weight", "transformer.ln_f", None, "weight"))
    if arch == "gpt2":
        out.append(("output_norm.bias", "transformer.ln_f", None, "bias"))
    if arch == "gpt2" or not config.tie_head:  # llama.cpp's gpt2 expects output; a tied Llama leaves it out
        out.append(("output.weight", "lm_head", None, "weight"))
    return out


# ----------------------------------------------------------------------------------------------
# writing


def _string(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _value(kind, value):
    """The bytes of one metadata value of type `kind` (ARRAY values are (element kind, list))."""
    if kind == STRING:
        return _string(value)
    if kind == ARRAY:
        element, items = value
        return struct.pack("<IQ", element, len(items)) + b"".join(_value(element, v) for v in items)
    return struct.pack(SCALARS[kind], value)


def _fp16_scales(scale, layer):
    """float32 scales rounded to the nearest fp16 (Q8_0's and Q4_0's d); refuses one fp16 cannot hold."""
    if (scale >= 65520.0).any():  # 65520 and above round to fp16's infinity, below it to at most 65504
        raise ValueError(f"GGUF: layer {layer} has a scale of {float(scale.max()):.6g}, beyond fp16's 65504 (weights "
                         f"over ~{127 * 65504:,}); its blocks cannot be written with an fp16 scale: use fp32")
    return scale.astype(np.float16)


def _tensor_data(model, layer, rows, part):
    """(ggml type, bytes, dims) of one tensor from tinylm layer `layer` (its rows `rows`); a tuple of
    layers (the experts of a mixture) is stacked on a new outermost axis, all in one type."""
    if isinstance(layer, tuple):
        pieces = [_tensor_data(model, one, rows, part) for one in layer]
        if len({(kind, tuple(dims)) for kind, _, dims in pieces}) != 1:
            raise ValueError(f"GGUF: the experts {layer[0]} .. {layer[-1]} have different precisions; one GGUF "
                             f"tensor holds them all in one type")
        kind, _, dims = pieces[0]
        return kind, b"".join(data for _, data, _ in pieces), dims + [len(pieces)]
    m = get_module(model, layer)
    if part == "bias":
        b = m.bias if isinstance(m, QuantizedLinear) else (None if m.bias is None else m.bias.data)
        n = m.out_features if isinstance(m, QuantizedLinear) else m.weight.shape[0]
        b = np.zeros(n, np.float32) if b is None else np.asarray(b, np.float32)
        b = b[rows] if rows is not None else b
        return F32, b.astype("<f4").tobytes(), [b.shape[0]]
    w = m.weight
    if isinstance(w, Int8Weight):
        if w.group_size != 32:
            raise ValueError(f"GGUF: layer {layer} is {w.label}; Q8_0 has groups of 32 values: quantize with "
                             f"int8:g32 (or fp16 / fp32)")
        q, scale = (w.q, w.scale) if rows is None else (w.q[rows], w.scale[rows])
        n, k = q.shape
        blocks = np.empty((n, k // 32), dtype=[("d", "<f2"), ("qs", "i1", 32)])  # 34 bytes a block
        blocks["d"] = _fp16_scales(scale, layer)  # round to nearest even fp16: the one change Q8_0 makes
        blocks["qs"] = q.reshape(n, k // 32, 32)
        return Q8_0, blocks.tobytes(), [k, n]
    if isinstance(w, Int4Weight):
        if w.group_size != 32:
            raise ValueError(f"GGUF: layer {layer} is {w.label}; Q4_0 has groups of 32 values: quantize with "
                             f"int4:g32 (or int8:g32, fp16, fp32)")
        q4, scale = (w.q4, w.scale) if rows is None else (w.q4[rows], w.scale[rows])
        n, k = q4.shape[0], 2 * q4.shape[1]
        blocks = np.empty((n, k // 32), dtype=[("d", "<f2"), ("qs", "u1", 16)])  # 18 bytes a block
        blocks["d"] = _fp16_scales(scale, layer)  # as Q8_0: the one change
        blocks["qs"] = (q4 ^ 0x88).reshape(n, k // 32, 16)  # each two's complement nibble q -> q + 8
        return Q4_0, blocks.tobytes(), [k, n]
    if isinstance(w, Fp16Weight):
        data = w.data if rows is None else w.data[rows]
        return F16, np.ascontiguousarray(data, "<f2").tobytes(), list(data.shape[::-1])
    data = w.data if rows is None else w.data[rows]
    return F32, np.ascontiguousarray(data, "<f4").tobytes(), list(data.shape[::-1])


def _metadata(config, tokenizer, file_type):
    """[(key, type, value)] for llama.cpp (sizes, norm epsilon, RoPE, tokenizer) and tinylm's own keys."""
    arch = architecture(config)
    hs = config.n_embd // config.n_head
    kv = [("general.architecture", STRING, arch), ("general.name", STRING, "tinylm"),
          ("general.file_type", U32, file_type), ("general.quantization_version", U32, 2),
          (f"{arch}.context_length", U32, config.block_size), (f"{arch}.embedding_length", U32, config.n_embd),
          (f"{arch}.block_count", U32, config.n_layer), (f"{arch}.feed_forward_length", U32, config.mlp_hidden_size),
          (f"{arch}.attention.head_count", U32, config.n_head), (f"{arch}.vocab_size", U32, config.vocab_size)]
    if config.n_expert:
        kv += [(f"{arch}.expert_count", U32, config.n_expert), (f"{arch}.expert_used_count", U32, config.expert_top_k)]
    if arch == "gpt2":
        kv.append(("gpt2.attention.layer_norm_epsilon", F32V, NORM_EPS))
    else:
        kv += [("llama.attention.head_count_kv", U32, config.kv_heads),
               ("llama.attention.layer_norm_rms_epsilon", F32V, NORM_EPS),
               ("llama.rope.freq_base", F32V, config.rope_theta), ("llama.rope.dimension_count", U32, hs)]
    kv.append(("tinylm.config", STRING, json.dumps(config.to_dict(), sort_keys=True)))
    if tokenizer is not None:
        kv += _tokenizer_metadata(config, tokenizer)
    return kv


def _tokenizer_metadata(config, tokenizer):
    """llama.cpp's BPE tokenizer keys for a tinylm tokenizer (ids as they are, unused ids marked UNUSED)."""
    if tokenizer.merges and tokenizer.pattern not in PRE_TOKENIZERS.values():
        raise ValueError("GGUF: llama.cpp pre-splits text with a fixed list of regexes; this tokenizer's pattern "
                         "is neither tinylm's gpt2 nor gpt4 (Llama 3's), so llama.cpp would cut text differently")
    pre = next((name for name, p in PRE_TOKENIZERS.items() if p == tokenizer.pattern), "gpt-2")
    table = bytes_to_unicode()
    specials = {i: s for s, i in tokenizer.special_tokens.items()}
    tokens, types = [], []
    for i in range(config.vocab_size):
        b = tokenizer._id_to_bytes[i] if i < tokenizer.vocab_size else None
        if i in specials:
            tokens.append(specials[i])
            types.append(TOKEN_CONTROL)
        elif b is None:
            tokens.append(f"[PAD{i}]")  # an id the model has but the tokenizer does not use
            types.append(TOKEN_UNUSED)
        else:
            tokens.append("".join(table[x] for x in b))
            types.append(TOKEN_NORMAL)
    if len(set(tokens)) != len(tokens):
        raise ValueError("GGUF: two tokens have the same text; llama.cpp looks tokens up by their text")
    merges = [f"{tokens[a]} {tokens[b]}" for a, b, _ in tokenizer._merge_list()]
    kv = [("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, pre),
          ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)), ("tokenizer.ggml.token_type", ARRAY, (I32, types)),
          ("tokenizer.ggml.merges", ARRAY, (STRING, merges)), ("tokenizer.ggml.add_bos_token", BOOL, False)]
    end = tokenizer.special_tokens.get("<|endoftext|>")
    if end is not None:  # without one, llama.cpp's default (id 11) stands in
        kv += [("tokenizer.ggml.bos_token_id", U32, end), ("tokenizer.ggml.eos_token_id", U32, end)]
    if tokenizer.pattern is not None:
        kv.append(("tinylm.tokenizer.pattern", STRING, tokenizer.pattern))
    return kv


def save_gguf(model, path, tokenizer=None):
    """Write a tinylm GPT-2 or Llama (fp32, or quantized by a plan: fp16 -> F16, int8:g32 -> Q8_0, int4:g32 ->
    Q4_0) and its
    tokenizer as one GGUF file for llama.cpp. Norms and biases are always F32 (llama.cpp's rule)."""
    if not isinstance(model, GPT):
        raise TypeError(f"save_gguf: model must be a tinylm GPT, got {type(model).__name__}")
    config = model.config
    names = tensor_names(config)  # refuses what llama.cpp cannot compute, before anything is written
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"save_gguf: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{config.vocab_size}")
    tensors = [(name, *_tensor_data(model, layer, rows, part)) for name, layer, rows, part in names]
    types = {t for _, t, _, _ in tensors}
    # llama.cpp's MOSTLY_Q4_0, MOSTLY_Q8_0, MOSTLY_F16, ALL_F32: the smallest type the file holds
    file_type = next((ft for t, ft in ((Q4_0, 2), (Q8_0, 7), (F16, 1)) if t in types), 0)
    metadata = _metadata(config, tokenizer, file_type)

    head = [MAGIC, struct.pack("<IQQ", VERSION, len(tensors), len(metadata))]
    head += [_string(key) + struct.pack("<I", kind) + _value(kind, value) for key, kind, value in metadata]
    offset = 0
    for name, kind, data, dims in tensors:
        head.append(_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                    + struct.pack("<IQ", kind, offset))
        offset += -(-len(data) // ALIGNMENT) * ALIGNMENT
    head = b"".join(head)
    path = os.fspath(path)
    with atomic_open(path, "wb") as f:
        f.write(head + bytes(-len(head) % ALIGNMENT))
        for _, _, data, _ in tensors:
            f.write(data + bytes(-len(data) % ALIGNMENT))
    return path


# ----------------------------------------------------------------------------------------------
# reading: never trust the file


class _Reader:
    """A cursor over the mapped file that refuses to read past its end."""

    def __init__(self, buf, path):
        self.buf, self.at, self.path = buf, 0, path

    def take(self, n, what):
        if n < 0 or self.at + n > len(self.buf):
            raise ValueError(f"{self.path} is truncated: {what} needs {n:,} bytes at offset {self.at:,}, "
                             f"the file has {len(self.buf):,}")
        start, self.at = self.at, self.at + n
        return self.buf[start:self.at]

    def scalar(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what):
        n = self.scalar("<Q", what)
        try:
            return bytes(self.take(n, what)).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: {what} is not UTF-8") from None

    def value(self, kind, what, depth=0):
        if kind in SCALARS:
            return self.scalar(SCALARS[kind], what)
        if kind == STRING:
            return self.string(what)
        if kind == ARRAY and depth == 0:
            element, count = self.scalar("<I", what), self.scalar("<Q", what)
            least = 8 if element == STRING else struct.calcsize(SCALARS.get(element, "<B"))
            if count * least > len(self.buf) - self.at:  # checked before a list of `count` items is made
                raise ValueError(f"{self.path}: {what} claims {count:,} items, more than the file can hold")
            if element == ARRAY or (element not in SCALARS and element != STRING):
                raise ValueError(f"{self.path}: {what} is an array of type {element}; tinylm reads arrays of "
                                 f"numbers and strings")
            if element in SCALARS and element != BOOL:  # numbers: one read
                data = np.frombuffer(self.take(count * least, what), SCALARS[element]).tolist()
                return data
            return [self.value(element, what, depth + 1) for _ in range(count)]
        raise ValueError(f"{self.path}: {what} has value type {kind}; expected one of GGUF's 0..12")


def read_gguf(path):
    """(metadata dict, {name: (ggml type, dims, offset)}, data start, mapped buffer) of a GGUF file: every
    count, length, type and offset checked against the file before it is used."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            raise ValueError(f"{path}: {size} bytes; too short for a GGUF header")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    r = _Reader(memoryview(buf), path)
    if bytes(r.take(4, "magic")) != MAGIC:
        raise ValueError(f"{path} is not a GGUF file (its first bytes are not 'GGUF')")
    version = r.scalar("<I", "version")
    if version not in (2, 3):
        raise ValueError(f"{path}: GGUF version {version}; tinylm reads versions 2 and 3")
    n_tensors, n_kv = r.scalar("<Q", "tensor count"), r.scalar("<Q", "metadata count")
    if n_tensors * 24 + n_kv * 12 > size:  # every entry takes at least that many bytes
        raise ValueError(f"{path}: the header claims {n_tensors:,} tensors and {n_kv:,} metadata entries, more "
                         f"than {size:,} bytes can hold")
    metadata = {}
    for _ in range(n_kv):
        key = r.string("a metadata key")
        metadata[key] = r.value(r.scalar("<I", key), key)
    alignment = metadata.get("general.alignment", ALIGNMENT)
    if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1):
        raise ValueError(f"{path}: general.alignment is {alignment!r}; expected a power of two")
    infos = {}
    for _ in range(n_tensors):
        name = r.string("a tensor name")
        n_dims = r.scalar("<I", name)
        if not 1 <= n_dims <= MAX_DIMS:
            raise ValueError(f"{path}: tensor {name} has {n_dims} dimensions; expected 1 .. {MAX_DIMS}")
        dims = [r.scalar("<Q", name) for _ in range(n_dims)]
        kind, offset = r.scalar("<I", name), r.scalar("<Q", name)
        if kind not in TYPE_NAMES:
            raise ValueError(f"{path}: tensor {name} has ggml type {kind}; tinylm reads F32 (0), F16 (1), "
                             f"Q4_0 (2) and Q8_0 (8)")
        if name in infos:
            raise ValueError(f"{path}: tensor {name} appears twice")
        infos[name] = (kind, dims, offset)
    start = -(-r.at // alignment) * alignment
    for name, (kind, dims, offset) in infos.items():
        n = math.prod(dims)
        nbytes = 4 * n if kind == F32 else 2 * n if kind == F16 else BLOCK_BYTES[kind] * (n // 32)
        if kind in BLOCK_BYTES and dims[0] % 32:
            raise ValueError(f"{path}: {TYPE_NAMES[kind]} tensor {name} has rows of {dims[0]} values; expected a "
                             f"multiple of 32")
        if offset % alignment or start + offset + nbytes > size:
            raise ValueError(f"{path}: tensor {name} ({TYPE_NAMES[kind]} {dims}) at offset {offset:,} does not fit "
                             f"in the file's {size:,} bytes (or is not aligned to {alignment})")
    return metadata, infos, start, buf


def _array(buf, start, info):
    """A tensor as numpy, shaped tinylm's way (dims reversed): float32, float16, or (q, scale) for Q8_0
    (q int8 (..., K)) and Q4_0 (q the file's bytes, (..., K / 2) uint8, nibbles u = q + 8)."""
    kind, dims, offset = info
    shape = tuple(dims[::-1])
    n = math.prod(dims)
    at = start + offset
    if kind == F32:
        return np.frombuffer(buf, "<f4", n, at).astype(np.float32).reshape(shape)
    if kind == F16:
        return np.frombuffer(buf, "<f2", n, at).astype(np.float16).reshape(shape)
    if kind == Q4_0:
        blocks = np.frombuffer(buf, [("d", "<f2"), ("qs", "u1", 16)], n // 32, at)
        q = np.ascontiguousarray(blocks["qs"]).reshape(shape[:-1] + (shape[-1] // 2,))  # (..., K / 2) uint8
    else:
        blocks = np.frombuffer(buf, [("d", "<f2"), ("qs", "i1", 32)], n // 32, at)
        q = np.ascontiguousarray(blocks["qs"]).reshape(shape)  # (..., K) int8
    scale = blocks["d"].astype(np.float32).reshape(shape[:-1] + (-1,))  # (..., K / 32)
    return q, scale


def _config(metadata, tensors, path):
    """The GPTConfig: tinylm's own key when present, else llama.cpp's standard keys (and, for a Llama,
    whether `tensors` hold an output.weight: without one the head is tied)."""
    arch = metadata.get("general.architecture")
    if arch not in ("gpt2", "llama"):
        raise ValueError(f"{path}: general.architecture is {arch!r}; tinylm reads 'gpt2' and 'llama'")
    try:
        if isinstance(metadata.get("tinylm.config"), str):
            return GPTConfig.from_dict(json.loads(metadata["tinylm.config"]))
        need = ["context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count"]
        missing = [f"{arch}.{k}" for k in need if f"{arch}.{k}" not in metadata]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        get = {k: metadata[f"{arch}.{k}"] for k in need}
        sizes = dict(block_size=get["context_length"], n_embd=get["embedding_length"], n_layer=get["block_count"],
                     n_head=get["attention.head_count"], vocab_size=metadata.get(
                         f"{arch}.vocab_size", len(metadata.get("tokenizer.ggml.tokens", [])) or None))
        if arch == "gpt2":
            return GPTConfig(**sizes, mlp_hidden=0 if get["feed_forward_length"] == 4 * sizes["n_embd"]
                             else get["feed_forward_length"])
        n_kv = metadata.get("llama.attention.head_count_kv", sizes["n_head"])
        if metadata.get("llama.expert_count"):
            sizes.update(n_expert=metadata["llama.expert_count"], expert_top_k=metadata.get("llama.expert_used_count"))
        config = GPTConfig.llama(**sizes, n_kv_head=0 if n_kv == sizes["n_head"] else n_kv,
                                 rope_theta=float(metadata.get("llama.rope.freq_base", 10000.0)),
                                 tie_head="output.weight" not in tensors)
        if config.mlp_hidden_size != get["feed_forward_length"]:
            config = GPTConfig(**{**config.to_dict(), "mlp_hidden": get["feed_forward_length"]})
        return config
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: the metadata does not describe a model tinylm can build: {exc}") from None


def _q4_0_weight(qs, scale):
    """Q4_0 blocks (qs (N, K / 2) uint8 of nibbles u = q + 8, scale (N, K / 32) float32) as tinylm's
    int4:g32, or as int8:g32 holding the same values when they do not fit int4's [-7, 7].

    llama.cpp's quantizer maps each block's largest |w| to q = -8 and gives d that value's sign, so a
    block may have q = -8 and a negative d; tinylm's scales are >= 0 and its int4 has no -8. A block
    with d < 0 is stored as (-q, -d), the same products; q = -8 (or 8 after that) makes it int8."""
    n, half = qs.shape
    blocks = qs.reshape(n, half // 16, 16)                                # (N, K/32, 16)
    q = np.concatenate([(blocks & 0x0F).astype(np.int8), (blocks >> 4).astype(np.int8)], axis=2) - 8  # (N, K/32, 32)
    negative = scale < 0
    if negative.any():
        q = np.where(negative[..., None], -q, q)
        scale = np.abs(scale)
    if (np.abs(q) == 8).any():
        return Int8Weight(q.reshape(n, 2 * half), scale)                  # (N, K) int8, exactly the values
    u = (q + 8).astype(np.uint8)
    return Int4Weight(((u[..., :16] | (u[..., 16:] << 4)) ^ 0x88).reshape(n, half), scale)


LINEAR = {Fp16Weight: Fp16Linear, Int8Weight: Int8Linear, Int4Weight: Int4Linear}  # storage -> its layer


def load_gguf(path):
    """(model, tokenizer) from a GGUF file: an fp32 model, or one whose layers keep the file's F16, Q8_0 and
    Q4_0 data (tinylm's fp16, int8:g32 and int4:g32 layers); tokenizer None when the file has no BPE
    tokenizer."""
    path = os.fspath(path)
    metadata, infos, start, buf = read_gguf(path)
    config = _config(metadata, infos, path)
    names = tensor_names(config)
    wanted = {name for name, *_ in names}
    missing, unexpected = sorted(wanted - set(infos)), sorted(set(infos) - wanted)
    if config.tie_head and "output.weight" in unexpected:  # a tied Llama written by another tool
        unexpected.remove("output.weight")
    if missing or unexpected:
        raise ValueError(f"{path}: tensors do not match the model its metadata describes: "
                         + "; ".join(p for p in (missing and f"missing {', '.join(missing[:3])}",
                                                 unexpected and f"unexpected {', '.join(unexpected[:3])}") if p))
    # group the file's tensors by tinylm layer: (part, rows) -> array
    by_layer = {}
    for name, layer, rows, part in names:
        a = _array(buf, start, infos[name])
        if isinstance(layer, tuple):  # one 3-D tensor, the experts of a mixture: one slice each
            if (a[0] if isinstance(a, tuple) else a).shape[0] != len(layer):
                raise ValueError(f"{path}: tensor {name} holds {infos[name][1][-1]} experts; the metadata says "
                                 f"{len(layer)}")
            for e, one in enumerate(layer):
                by_layer.setdefault(one, []).append((name, rows, part, (a[0][e], a[1][e]) if isinstance(a, tuple)
                                                     else a[e]))
        else:
            by_layer.setdefault(layer, []).append((name, rows, part, a))

    def storage(layer, parts, shape):
        """The weight of a tinylm layer: float32 array, Fp16Weight or Int8Weight, rows joined."""
        ws = [a for _, _, part, a in parts if part == "weight"]
        kinds = {infos[n][0] for n, _, part, _ in parts if part == "weight"}
        if len(kinds) != 1:
            raise ValueError(f"{path}: the tensors of layer {layer} have different types")
        kind = kinds.pop()
        if kind == Q8_0:
            w = Int8Weight(np.concatenate([q for q, _ in ws]), np.concatenate([s for _, s in ws]))
        elif kind == Q4_0:
            w = _q4_0_weight(np.concatenate([q for q, _ in ws]), np.concatenate([s for _, s in ws]))
        elif kind == F16:
            w = Fp16Weight(np.concatenate(ws))
        else:
            w = np.concatenate(ws)
        if tuple(w.shape) != tuple(shape):
            raise ValueError(f"{path}: layer {layer} is {tuple(w.shape)} in the file, {tuple(shape)} in the model")
        return w

    floats, special = {}, {}
    shapes = _param_shapes(config)
    for layer, parts in by_layer.items():
        if layer == "lm_head" and config.tie_head:
            continue  # the same matrix as token_embd (GPT-2's output.weight is a copy)
        name = layer + ".weight"
        try:
            w = storage(layer, parts, shapes[name])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: layer {layer}: {exc}") from None
        (floats if isinstance(w, np.ndarray) else special)[name] = w
        biases = [a for _, _, part, a in parts if part == "bias"]
        if biases:
            b = np.concatenate(biases)
            if config.bias:
                floats[layer + ".bias"] = b
            elif b.any():
                raise ValueError(f"{path}: layer {layer} has a non-zero bias but tinylm.config says bias=false")

    def put_layers(model):
        used = []
        for name, w in special.items():
            layer = name[:-len(".weight")]
            if is_embedding(get_module(model, layer)):  # wte, or GPT-2's wpe
                set_module(model, layer, QuantizedEmbedding(w))
                if layer == "transformer.wte" and config.tie_head:
                    set_module(model, "lm_head", LINEAR[type(w)](w))
            else:
                bias = floats.pop(layer + ".bias", None)
                set_module(model, layer, LINEAR[type(w)](w, bias))
                if bias is not None:
                    used.append(layer + ".bias")
            used.append(name)
        return used

    all_shapes = {**{n: a.shape for n, a in floats.items()}, **{n: w.shape for n, w in special.items()}}
    model = build_model(config, all_shapes, list(floats.items()), path, prepare=put_layers, widen=True)
    if config.tie_head and "output.weight" in infos and "transformer.wte.weight" in floats:
        out = _array(buf, start, infos["output.weight"])
        if not isinstance(out, np.ndarray) or not np.array_equal(out, floats["transformer.wte.weight"]):
            raise ValueError(f"{path}: output.weight differs from token_embd.weight but the model ties them")
    return model, _tokenizer(metadata, config, path)


def _param_shapes(config):
    with nn.skip_init():
        return {n: p.data.shape for n, p in GPT(config).named_parameters()}


def _tokenizer(metadata, config, path):
    """A tinylm Tokenizer from llama.cpp's BPE keys (ids as in the file), or None without them."""
    if metadata.get("tokenizer.ggml.model") != "gpt2" or "tokenizer.ggml.tokens" not in metadata:
        return None
    tokens, types = metadata["tokenizer.ggml.tokens"], metadata.get("tokenizer.ggml.token_type", [])
    merges = metadata.get("tokenizer.ggml.merges", [])
    if len(tokens) > config.vocab_size or (types and len(types) != len(tokens)):
        raise ValueError(f"{path}: {len(tokens)} tokens and {len(types)} token types for a model of "
                         f"{config.vocab_size} ids")
    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}
    id_of, specials = {}, {}
    for i, t in enumerate(tokens):
        kind = types[i] if types else TOKEN_NORMAL
        if kind == TOKEN_CONTROL:
            specials[t] = i
        elif kind != TOKEN_UNUSED:
            id_of.setdefault(t, i)
    missing = [b for b in range(256) if bytes_to_unicode()[b] not in id_of]
    if missing:
        raise ValueError(f"{path}: no token for byte(s) {missing[:5]}; not a byte-level BPE vocabulary")
    byte_ids = [id_of[bytes_to_unicode()[b]] for b in range(256)]
    triples = []
    for n, m in enumerate(merges):
        left, sep, right = m.partition(" ")
        if not sep or left not in id_of or right not in id_of or left + right not in id_of:
            raise ValueError(f"{path}: merge {n} ({m[:40]!r}) names a token the vocabulary does not have")
        triples.append((id_of[left], id_of[right], id_of[left + right]))
    if any(c not in char_to_byte for t in id_of for c in t):
        raise ValueError(f"{path}: a token is not spelled with GPT-2's byte-to-unicode table")
    pattern = metadata.get("tinylm.tokenizer.pattern", PRE_TOKENIZERS.get(metadata.get("tokenizer.ggml.pre"),
                                                                          GPT2_PATTERN))
    return Tokenizer._from_parts(pattern if isinstance(pattern, str) else None, byte_ids, triples, specials, path)
