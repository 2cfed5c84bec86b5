"""llama2.c checkpoints, in and out: model.bin (versions 0, 1 and 2) and tokenizer.bin.

llama2.c (github.com/karpathy/llama2.c) runs a Llama 2 in one C file: `run.c` reads an fp32 model,
`runq.c` an int8 one. Its files hold no names, only numbers in a fixed order, so this module is mostly
that order. All integers and floats are little-endian, 4 bytes.

    version 0 (run.c)     7 int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
                          (vocab_size < 0: the output head is NOT the token embedding), then fp32:
                          tok_embeddings, attention_norm x L, wq x L, wk x L, wv x L, wo x L,
                          ffn_norm x L, w1 x L, w2 x L, w3 x L, norm, freq_cos (seq_len, hs/2),
                          freq_sin (seq_len, hs/2), [output]
    version 1             a 256-byte header: uint32 magic 0x616b3432 ("ak42"), int32 version 1, the 7
                          ints, uint8 shared_classifier, zeros; then fp32: attention_norm x L,
                          ffn_norm x L, norm, tok_embeddings, wq, wk, wv, wo, w1, w2, w3 (x L each),
                          [output]
    version 2 (runq.c)    the header of version 1 with version 2 and, after the flag, int32
                          group_size; then the norms in fp32 as in version 1, then every matrix
                          (tok_embeddings, wq, wk, wv, wo, w1, w2, w3 x L each, [output]) as its int8
                          values followed by its fp32 scales, one per group_size consecutive values

Each matrix is (out_features, in_features), like tinylm's. Llama's names against tinylm's:

    tok_embeddings   transformer.wte             attention_norm   transformer.h.i.ln_1
    wq | wk | wv     the rows of attn.c_attn     wo               attn.c_proj
    ffn_norm         ln_2                        w1 | w3 | w2     mlp.c_fc | mlp.c_up | mlp.c_proj
    norm             transformer.ln_f            output           lm_head

Version 2 is tinylm's int8 with the group running along each row (a group never spans two rows when
group_size divides dim and hidden_dim, which runq.c needs anyway): the int8 values and the float32 scales
are written and read as they are, bit for bit.

RoPE: run.c rotates ADJACENT pairs (q[2i], q[2i+1]) of each head by pos * 10000^(-2i/hs), which is what
tinylm.autograd.rope does, so the weights are written as they are (no permutation of wq and wk, which a
Hugging Face "rotate-half" model would need). rope_theta is fixed at 10000 by run.c.

tokenizer.bin: int32 max_token_length, then per token: float32 score, int32 length, the bytes. llama2.c's
ids 0, 1, 2 are <unk>, BOS and EOS and ids 3..258 the 256 bytes (run.c encodes a byte that no token
spells as id byte + 3; Llama's own file spells them "<0x00>".."<0xFF>", tinylm's spells them as the
bytes themselves so that run.c can merge them: see `_token_text`; the reader takes either).
A tinylm tokenizer has the bytes at ids 0..255, so the export moves every id up by 3 and gives the
model three extra rows of zeros for <unk>, BOS and EOS (`to_llama2c_ids`).
Reading a file back keeps llama2.c's ids (the model then has vocab_size + 3 rows; every original weight
is unchanged). See tutorial 14 for what run.c's own prompt encoding does with a tinylm tokenizer.

    >>> save_llama2c(model, "out", tokenizer, version=1)          # out/model.bin + out/tokenizer.bin  # doctest: +SKIP
    >>> model, tokenizer = load_llama2c("out/model.bin")            # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import math
import os
import struct
import warnings

import numpy as np

from tinylm import nn
from tinylm.autograd import rope_angles
from tinylm.fileio import atomic_open
from tinylm.io.loader import build_model
from tinylm.model import GPT, GPTConfig
from tinylm.quant.layers import Int8Linear, Int8Weight, QuantizedEmbedding, QuantizedLinear
from tinylm.quant.plan import get_module, set_module
from tinylm.tokenizer import Tokenizer

MAGIC = 0x616B3432  # "ak42"
HEADER_BYTES = 256  # versions 1 and 2
VERSIONS = (0, 1, 2)
ROPE_THETA = 10000.0  # run.c's, fixed
NORM_EPS = 1e-5  # run.c's rmsnorm epsilon, and tinylm's
MAX_SEQ_LEN = 1 << 20  # a larger seq_len in a header is refused (it sizes the KV cache)
MAX_TOKEN_BYTES = 1 << 16  # a longer token in tokenizer.bin is refused
MAX_TOKENIZER_BYTES = 64 << 20  # and a larger tokenizer.bin
SPECIALS = ("<unk>", "<s>", "</s>")  # llama2.c's ids 0, 1, 2 (tinylm's names for them)
SPECIAL_TEXT = (b"<unk>", b"\n<s>\n", b"\n</s>\n")  # what llama2.c's tokenizer.py writes for them
FILES = ("model.bin", "tokenizer.bin", "tokenizer.json")

# ----------------------------------------------------------------------------------------------
# what a llama2.c file can carry


def refusals(config):
    """What in `config` a llama2.c file cannot carry: [] for a Llama that run.c computes exactly."""
    wanted = dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, n_expert=0, rope_theta=ROPE_THETA)
    return [f"{k}={getattr(config, k)!r} (llama2.c needs {v!r})" for k, v in wanted.items() if getattr(config, k) != v]


def _check_exportable(config):
    problems = refusals(config)
    if problems:
        raise ValueError("save_llama2c: a llama2.c file holds a Llama (RMSNorm, RoPE with theta 10000, SwiGLU, "
                         "no biases, no mixture of experts); this model has " + ", ".join(problems))


def _layout(config, version, shared):
    """[(llama2.c name, shape)] of every array in the file after its header, in file order.

    Names: 'tok_embeddings', 'attention_norm.3' (layer 3), 'wq.0', ..., 'norm', 'freq_cos', 'output'."""
    C, H, L, V = config.n_embd, config.mlp_hidden_size, config.n_layer, config.vocab_size
    hs = C // config.n_head
    kv = config.kv_heads * hs
    shapes = {"tok_embeddings": (V, C), "attention_norm": (C,), "ffn_norm": (C,), "norm": (C,),
              "wq": (C, C), "wk": (kv, C), "wv": (kv, C), "wo": (C, C), "w1": (H, C), "w2": (C, H), "w3": (H, C),
              "freq_cos": (config.block_size, hs // 2), "freq_sin": (config.block_size, hs // 2), "output": (V, C)}

    def per_layer(*names):
        return [f"{n}.{i}" for n in names for i in range(L)]

    matrices = per_layer("wq", "wk", "wv", "wo", "w1", "w2", "w3")
    if version == 0:
        names = ["tok_embeddings", *per_layer("attention_norm"), *matrices[:4 * L], *per_layer("ffn_norm"),
                 *matrices[4 * L:], "norm", "freq_cos", "freq_sin"]
    else:
        names = [*per_layer("attention_norm", "ffn_norm"), "norm", "tok_embeddings", *matrices]
    if not shared:
        names.append("output")
    return [(n, shapes[n.split(".")[0]]) for n in names]


def _is_norm(name):
    return name.split(".")[0] in ("attention_norm", "ffn_norm", "norm")


def _tinylm_name(name):
    """The tinylm layer (module path) a llama2.c array belongs to (wq, wk, wv: rows of c_attn, `_qkv_rows`)."""
    kind, _, layer = name.partition(".")
    h = f"transformer.h.{layer}."
    return {"tok_embeddings": "transformer.wte", "norm": "transformer.ln_f", "output": "lm_head",
            "attention_norm": h + "ln_1", "ffn_norm": h + "ln_2", "wq": h + "attn.c_attn", "wk": h + "attn.c_attn",
            "wv": h + "attn.c_attn", "wo": h + "attn.c_proj", "w1": h + "mlp.c_fc", "w2": h + "mlp.c_proj",
            "w3": h + "mlp.c_up"}[kind]


def _qkv_rows(config, kind):
    """The rows of c_attn (C + 2 kv, C) that hold wq, wk or wv."""
    C, kv = config.n_embd, config.kv_heads * (config.n_embd // config.n_head)
    return {"wq": slice(0, C), "wk": slice(C, C + kv), "wv": slice(C + kv, C + 2 * kv)}[kind]


# ----------------------------------------------------------------------------------------------
# ids: tinylm's (bytes 0..255) and llama2.c's (<unk>, BOS, EOS, then bytes 3..258)


def has_llama2c_ids(tokenizer):
    """True when the tokenizer already numbers its tokens as llama2.c does."""
    return (tokenizer._byte_ids == list(range(3, 259))
            and all(tokenizer.special_tokens.get(s) == i for i, s in enumerate(SPECIALS)))


def to_llama2c_ids(tokenizer):
    """The same tokenizer with llama2.c's ids: every id + 3, and <unk>, <s>, </s> at 0, 1, 2.

    >>> to_llama2c_ids(Tokenizer()).encode("hi")            # 'h' is byte 104: id 107 in llama2.c
    [107, 108]
    """
    if has_llama2c_ids(tokenizer):
        return tokenizer
    if tokenizer._byte_ids != list(range(256)):
        raise ValueError("llama2.c: the tokenizer's bytes are not ids 0..255 (a GPT-2 or tiktoken vocabulary); "
                         "only a tinylm-trained tokenizer can be renumbered for llama2.c")
    clash = [s for s in SPECIALS if s in tokenizer.special_tokens]
    if clash:
        raise ValueError(f"llama2.c: the tokenizer already has special token(s) {clash}")
    merges = [(a + 3, b + 3, n + 3) for a, b, n in tokenizer._merge_list()]
    specials = {**{s: i for i, s in enumerate(SPECIALS)}, **{s: i + 3 for s, i in tokenizer.special_tokens.items()}}
    return Tokenizer._from_parts(tokenizer.pattern, list(range(3, 259)), merges, specials, "llama2.c tokenizer")


# ----------------------------------------------------------------------------------------------
# tokenizer.bin


class NotByteLevelBPE(ValueError):
    """A well-formed tokenizer.bin whose vocabulary is not byte-level BPE (e.g. a SentencePiece vocabulary
    with characters of three bytes and no two-byte pieces): tinylm's Tokenizer cannot hold it."""


def _token_text(tokenizer, i):
    """The bytes tokenizer.bin holds for id i: llama2.c's spelling of the specials, and every other token
    as its own bytes, single bytes included: run.c finds a merge by joining the two tokens' STRINGS and
    looking the result up, so a byte spelled "<0xC3>" could never merge into "é", and it looks up " " for
    the space it puts before every prompt. Only the zero byte, which would end a C string, is "<0x00>"."""
    if i < 3:
        return SPECIAL_TEXT[i]
    b = tokenizer.token_bytes(i)
    return b"<0x00>" if b == b"\0" else b


def write_tokenizer_bin(path, tokenizer, vocab_size=None):
    """Write tokenizer.bin for a tokenizer with llama2.c's ids (to_llama2c_ids), with `vocab_size` tokens
    (the model's: run.c reads that many); ids the tokenizer does not use are empty tokens. Scores: a merge
    of rank r scores -r - 1 (run.c merges the highest score first: rank order), every other token 0."""
    if not has_llama2c_ids(tokenizer):
        raise ValueError("write_tokenizer_bin: the tokenizer must have llama2.c's ids; use to_llama2c_ids")
    V = tokenizer.vocab_size if vocab_size is None else vocab_size
    if V < tokenizer.vocab_size:
        raise ValueError(f"write_tokenizer_bin: vocab_size {V} is less than the tokenizer's {tokenizer.vocab_size}")
    score = np.zeros(V, np.float32)
    for rank, (_, _, new_id) in enumerate(tokenizer._merge_list()):
        score[new_id] = -rank - 1.0
    used = [i < tokenizer.vocab_size and tokenizer._id_to_bytes[i] is not None for i in range(V)]
    texts = [_token_text(tokenizer, i) if used[i] else b"" for i in range(V)]
    with atomic_open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(t) for t in texts)))
        for t, s in zip(texts, score):
            f.write(struct.pack("<fi", s, len(t)) + t)


def read_tokenizer_bin(path, vocab_size=None):
    """(texts, scores): the bytes and score of every token of a tokenizer.bin, never trusting the file.
    vocab_size (from the model) is the number of tokens; None reads tokens to the end of the file."""
    size = os.path.getsize(path)
    if size > MAX_TOKENIZER_BYTES:
        raise ValueError(f"{path} has {size:,} bytes; a tokenizer.bin is far smaller (32,000 tokens take under 1 MB), "
                         f"tinylm reads at most {MAX_TOKENIZER_BYTES:,}")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes; a tokenizer.bin starts with a 4-byte max_token_length")
    (max_len,) = struct.unpack_from("<i", data, 0)
    if not 0 < max_len <= MAX_TOKEN_BYTES:
        raise ValueError(f"{path}: max_token_length is {max_len}; expected 1 .. {MAX_TOKEN_BYTES}")
    texts, scores, at = [], [], 4
    while (len(texts) < vocab_size) if vocab_size is not None else at < len(data):
        if at + 8 > len(data):
            raise ValueError(f"{path} is truncated: token {len(texts)} has no score and length"
                             + (f" (the model has {vocab_size} tokens)" if vocab_size else ""))
        s, n = struct.unpack_from("<fi", data, at)
        if not 0 <= n <= max_len or at + 8 + n > len(data):
            raise ValueError(f"{path}: token {len(texts)} has length {n}; expected 0 .. {max_len} within the file")
        texts.append(data[at + 8:at + 8 + n])
        scores.append(s)
        at += 8 + n
    if at != len(data):
        raise ValueError(f"{path}: {len(data) - at} bytes after the last of {len(texts)} tokens")
    return texts, np.array(scores, np.float32)


def tokenizer_from_bin(path, vocab_size=None):
    """A tinylm Tokenizer with the ids of a tokenizer.bin: ids 0/1/2 the specials <unk>, <s>, </s>, ids
    3..258 the bytes, and every longer token a merge, found as tiktoken files are read: the pair that
    run.c's own rule (highest score first) makes from the token's bytes with the higher-scored tokens only.
    Empty tokens after the bytes are unused ids (tinylm's export pads the vocabulary with them). Decoding
    is exact. Encoding follows tinylm's rule (merges by rank, no pre-split pattern), which is
    run.c's rule without its leading space. A ValueError when a token cannot be made by one merge."""
    texts, scores = read_tokenizer_bin(path, vocab_size)
    if len(texts) < 259:
        raise ValueError(f"{path} has {len(texts)} tokens; llama2.c's layout needs at least 259 (3 + 256 bytes)")
    byte_ids = []
    for i in range(3, 259):
        t = texts[i]
        b = int(t[3:5], 16) if len(t) == 6 and t.startswith(b"<0x") and t.endswith(b">") else (t[0] if len(t) == 1
                                                                                              else -1)
        if b != i - 3:
            raise ValueError(f"{path}: token {i} is {t!r}; llama2.c's token {i} is the byte <0x{i - 3:02X}>")
        byte_ids.append(i)
    id_of = {bytes([b]): b + 3 for b in range(256)}
    rank_of = {}  # the merged tokens so far: bytes -> rank
    merges = []
    for i in sorted(range(259, len(texts)), key=lambda i: (-scores[i], i)):  # merged first = highest score
        if not texts[i]:
            continue  # an unused id
        parts = _split_by_rank(texts[i], rank_of)
        if len(parts) != 2 or texts[i] in id_of:
            raise NotByteLevelBPE(f"{path}: token {i} ({texts[i]!r}) is not one merge of two higher-scored "
                                  f"tokens; tinylm reads byte-level BPE vocabularies only")
        merges.append((id_of[parts[0]], id_of[parts[1]], i))
        id_of[texts[i]] = i
        rank_of[texts[i]] = len(rank_of)
    specials = {s: i for i, s in enumerate(SPECIALS)}
    return Tokenizer._from_parts(None, byte_ids, merges, specials, path)


def _split_by_rank(token, rank_of):
    """Merge the bytes of `token` by the rule of run.c (and tiktoken): join the adjacent pair whose joined
    bytes is the best-ranked token (lowest rank), until no pair joins. rank_of holds the allowed tokens.

    >>> _split_by_rank(b"abc", {b"ab": 0, b"bc": 1})
    [b'ab', b'c']
    """
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        ranked = [(rank_of[parts[k] + parts[k + 1]], k) for k in range(len(parts) - 1)
                  if parts[k] + parts[k + 1] in rank_of]
        if not ranked:
            break
        _, k = min(ranked)
        parts[k:k + 2] = [parts[k] + parts[k + 1]]
    return parts


# ----------------------------------------------------------------------------------------------
# model.bin: writing


def _source(model, layer):
    """The weight of tinylm layer `layer` as float32 (N, K) or as an Int8Weight (kept as it is for version 2)."""
    m = get_module(model, layer)
    if isinstance(m, (QuantizedLinear, QuantizedEmbedding)):
        return m.weight if isinstance(m.weight, Int8Weight) else m.weight.dequantize()
    return m.weight.data


def _default_group_size(config, group_size):
    """export.py's rule: start at 64 and halve until it divides dim (and, for runq.c, hidden_dim)."""
    C, H = config.n_embd, config.mlp_hidden_size
    while C % group_size or H % group_size:
        group_size //= 2
    return group_size


def save_llama2c(model, folder, tokenizer=None, version=1, group_size=None):
    """Write `model` (a tinylm Llama) as folder/model.bin in llama2.c's `version` (0, 1 or 2), and with a
    tokenizer folder/tokenizer.bin (for run.c) + folder/tokenizer.json (tinylm's exact tokenizer, with its
    pre-split pattern, in llama2.c's ids). A tinylm-numbered tokenizer moves every id up by 3 and the file
    gets three zero rows for <unk>, BOS, EOS (in the embedding and, untied, in the output head).

    version 2 stores int8 with one scale per group_size values: a model quantized with int8:gN on every
    matrix (wte/lm_head included) is written as it is, bit for bit; any other weight is quantized with
    tinylm's int8 (round half to even, scale = max|w| / 127, as llama2.c's export.py). group_size
    defaults to the model's own N, else 64 halved until it divides n_embd and the MLP width.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"save_llama2c: model must be a tinylm GPT, got {type(model).__name__}")
    if version not in VERSIONS:
        raise ValueError(f"save_llama2c: version must be 0, 1 or 2, got {version!r}")
    config = model.config
    _check_exportable(config)
    shift = 0
    if tokenizer is not None:
        if tokenizer.vocab_size > config.vocab_size:
            raise ValueError(f"save_llama2c: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                             f"{config.vocab_size}")
        ids = to_llama2c_ids(tokenizer)
        shift = 0 if ids is tokenizer else 3
        tokenizer = ids
    out_config = dataclasses.replace(config, vocab_size=config.vocab_size + shift)  # as the file describes it
    shared = config.tie_head
    if version == 2:
        own = {w.group_size for w in (_source(model, n) for n in ("transformer.wte", "lm_head"))
               if isinstance(w, Int8Weight)}
        group_size = group_size or (own.pop() if len(own) == 1 else _default_group_size(config, 64))
        C, H = config.n_embd, config.mlp_hidden_size
        if group_size < 1 or C % group_size or H % group_size:
            raise ValueError(f"save_llama2c: group_size {group_size} must divide n_embd ({C}) and the MLP width "
                             f"({H}), as runq.c quantizes activations in groups of it")

    def array(name):
        """The float32 array, or (q, scale) for version 2, of llama2.c array `name`."""
        kind = name.split(".")[0]
        if kind in ("freq_cos", "freq_sin"):
            cos, sin = rope_angles(np.arange(config.block_size), config.n_embd // config.n_head, ROPE_THETA)
            return cos if kind == "freq_cos" else sin  # (seq_len, hs/2): run.c skips them; older ones read them
        w = _source(model, _tinylm_name(name))
        if kind in ("wq", "wk", "wv"):
            rows = _qkv_rows(config, kind)
            w = Int8Weight(w.q[rows], w.scale[rows]) if isinstance(w, Int8Weight) else w[rows]
        if _is_norm(name):
            return w
        if version < 2:
            w = w.dequantize() if isinstance(w, Int8Weight) else w
        else:
            if not isinstance(w, Int8Weight) or w.group_size != group_size:
                w = Int8Weight.from_float(w.dequantize() if isinstance(w, Int8Weight) else w, group_size)
            w = (w.q, w.scale)
        if kind in ("tok_embeddings", "output") and shift:  # three zero rows: <unk>, BOS, EOS
            if version < 2:
                return np.concatenate([np.zeros((shift, w.shape[1]), np.float32), w])
            q, s = w
            return (np.concatenate([np.zeros((shift, q.shape[1]), np.int8), q]),
                    np.concatenate([np.zeros((shift, s.shape[1]), np.float32), s]))
        return w

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    with atomic_open(os.path.join(folder, "model.bin"), "wb") as f:
        vocab = out_config.vocab_size if shared or version > 0 else -out_config.vocab_size  # v0: < 0 = untied
        sizes = struct.pack("<7i", config.n_embd, config.mlp_hidden_size, config.n_layer, config.n_head,
                            config.kv_heads, vocab, config.block_size)
        if version == 0:
            f.write(sizes)
        else:
            header = struct.pack("<Ii", MAGIC, version) + sizes + struct.pack("<B", int(shared))
            if version == 2:
                header += struct.pack("<i", group_size)
            f.write(header + bytes(HEADER_BYTES - len(header)))
        for name, _ in _layout(out_config, version, shared):
            a = array(name)
            if isinstance(a, tuple):  # version 2: the int8 values, then their scales
                f.write(np.ascontiguousarray(a[0], np.int8).tobytes())
                f.write(np.ascontiguousarray(a[1], "<f4").tobytes())
            else:
                f.write(np.ascontiguousarray(a, "<f4").tobytes())
    if tokenizer is not None:
        write_tokenizer_bin(os.path.join(folder, "tokenizer.bin"), tokenizer, out_config.vocab_size)
        tokenizer.save(os.path.join(folder, "tokenizer.json"))
    return folder


# ----------------------------------------------------------------------------------------------
# model.bin: reading


def read_header(path):
    """(version, config, shared_classifier, group_size, header_bytes) of a llama2.c model.bin, checked
    against the file's size before anything else is read: a file that does not hold exactly the arrays
    its header describes is refused, so a hostile header can never make tinylm allocate more than the
    file holds."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if len(head) < 28:
        raise ValueError(f"{path}: {len(head)} bytes; too short for a llama2.c model header")
    magic, version = struct.unpack_from("<Ii", head, 0)
    group_size = None
    if magic == MAGIC:
        if version not in (1, 2):
            raise ValueError(f"{path}: llama2.c version {version}; tinylm reads versions 0, 1 and 2")
        if len(head) < HEADER_BYTES:
            raise ValueError(f"{path} is truncated: {len(head)} bytes, less than the {HEADER_BYTES}-byte header")
        dims = struct.unpack_from("<7i", head, 8)
        flag = head[36]
        if flag not in (0, 1):
            raise ValueError(f"{path}: shared_classifier flag is {flag}; expected 0 or 1")
        shared = bool(flag)
        if version == 2:
            (group_size,) = struct.unpack_from("<i", head, 37)
        header_bytes = HEADER_BYTES
    else:
        version, header_bytes = 0, 28
        dims = struct.unpack_from("<7i", head, 0)
        shared = dims[5] > 0
        dims = dims[:5] + (abs(dims[5]),) + dims[6:]
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = dims
    names = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
    bad = [f"{n}={v}" for n, v in zip(names, dims) if v <= 0]
    if bad or seq_len > MAX_SEQ_LEN:
        what = "not a llama2.c model (no 'ak42' magic, and as a version 0 header " if magic != MAGIC else ""
        raise ValueError(f"{path}: {what}header has {', '.join(bad) or f'seq_len={seq_len}'}; expected positive "
                         f"sizes and seq_len <= {MAX_SEQ_LEN}" + (")" if what else ""))
    if dim % n_heads or n_heads % n_kv_heads or (dim // n_heads) % 2:
        raise ValueError(f"{path}: dim {dim}, n_heads {n_heads}, n_kv_heads {n_kv_heads}: dim must be a multiple of "
                         f"n_heads, n_heads of n_kv_heads, and the head size must be even")
    if version == 2 and (group_size is None or group_size < 1 or dim % group_size or hidden % group_size):
        raise ValueError(f"{path}: group_size {group_size} must be positive and divide dim ({dim}) and "
                         f"hidden_dim ({hidden})")
    config = GPTConfig.llama(vocab_size=vocab, block_size=seq_len, n_layer=n_layers, n_head=n_heads, n_embd=dim,
                             n_kv_head=0 if n_kv_heads == n_heads else n_kv_heads, tie_head=shared)
    if config.mlp_hidden_size != hidden:  # tinylm's rule gives another width: say it explicitly
        config = GPTConfig(**{**config.to_dict(), "mlp_hidden": hidden})
    expected = header_bytes + _data_bytes(config, version, shared, group_size)
    if size != expected:
        raise ValueError(f"{path}: the header describes {expected:,} bytes but the file has {size:,} "
                         f"({'truncated' if size < expected else 'trailing bytes'}); not a complete llama2.c "
                         f"version {version} model")
    return version, config, shared, group_size, header_bytes


def _data_bytes(config, version, shared, group_size):
    total = 0
    for name, shape in _layout(config, version, shared):
        n = math.prod(shape)
        total += 4 * n if version < 2 or _is_norm(name) else n + 4 * (n // group_size)
    return total


def load_llama2c(path, tokenizer_path=None):
    """(model, tokenizer) from a llama2.c model.bin (version 0, 1 or 2) and, if found beside it, tinylm's
    tokenizer.json (exact) or else tokenizer.bin; tokenizer is None when there is neither, or (with a
    warning) when tokenizer.bin is not a byte-level BPE vocabulary (Llama 2's SentencePiece one has
    three-byte characters that no merge of two tokens makes).

    Versions 0 and 1 give an fp32 model; version 2 a model whose every matrix is int8 with the file's
    group size (tinylm.quant's Int8Linear, the values and scales as stored)."""
    path = os.fspath(path)
    version, config, shared, group_size, offset = read_header(path)
    layout = _layout(config, version, shared)

    def arrays():
        """(llama2.c name, array or (q, scale)) in file order, read one at a time."""
        at = offset
        with open(path, "rb") as f:
            for name, shape in layout:
                n = math.prod(shape)
                f.seek(at)
                if version < 2 or _is_norm(name):
                    a = np.fromfile(f, "<f4", n)
                    at += 4 * n
                    if a.size != n:
                        raise ValueError(f"{path}: truncated while reading {name}")
                    yield name, a.astype(np.float32).reshape(shape)
                else:
                    q = np.fromfile(f, np.int8, n)
                    s = np.fromfile(f, "<f4", n // group_size)
                    at += n + 4 * (n // group_size)
                    if q.size != n or s.size != n // group_size:
                        raise ValueError(f"{path}: truncated while reading {name}")
                    yield name, (q.reshape(shape), s.astype(np.float32).reshape(shape[0], -1))

    if version < 2:
        model = build_model(config, _shapes(config), _tinylm_tensors(config, arrays()), path)
    else:
        model = _build_int8(config, arrays(), path)
    return model, _find_tokenizer(path, tokenizer_path, config.vocab_size)


def _shapes(config):
    with nn.skip_init():
        return {n: p.data.shape for n, p in GPT(config).named_parameters()}


def _tinylm_tensors(config, arrays):
    """llama2.c's float arrays as tinylm (name, array) pairs: wq, wk, wv joined into c_attn; version 0's
    freq tables are skipped (as run.c does: tinylm computes the angles itself)."""
    pending = {}
    for name, a in arrays:
        kind, _, layer = name.partition(".")
        if kind in ("freq_cos", "freq_sin"):
            continue  # run.c skips them too: tinylm recomputes the angles
        if kind in ("wq", "wk", "wv"):
            pending[(layer, kind)] = a
            if all((layer, k) in pending for k in ("wq", "wk", "wv")):
                yield _tinylm_name(name) + ".weight", np.concatenate([pending.pop((layer, k))
                                                                      for k in ("wq", "wk", "wv")])
            continue
        yield _tinylm_name(name) + ".weight", a


def _build_int8(config, arrays, path):
    """A model whose matrices are Int8Linear layers holding the file's int8 values and scales."""
    floats, quantized = {}, {}
    for name, a in arrays:
        (quantized if isinstance(a, tuple) else floats)[name] = a
    storages = {}
    try:
        for name, (q, s) in quantized.items():
            storages[name] = Int8Weight(q, s)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {name}: {exc}") from None

    def put_layers(model):
        for layer in range(config.n_layer):
            qkv = [storages[f"{k}.{layer}"] for k in ("wq", "wk", "wv")]
            joined = Int8Weight(np.concatenate([w.q for w in qkv]), np.concatenate([w.scale for w in qkv]))
            set_module(model, f"transformer.h.{layer}.attn.c_attn", Int8Linear(joined))
            for kind in ("wo", "w1", "w2", "w3"):
                set_module(model, _tinylm_name(f"{kind}.{layer}"), Int8Linear(storages[f"{kind}.{layer}"]))
        emb = storages["tok_embeddings"]
        set_module(model, "transformer.wte", QuantizedEmbedding(emb))
        set_module(model, "lm_head", Int8Linear(emb if config.tie_head else storages["output"]))
        return []

    norms = ((_tinylm_name(n) + ".weight", a) for n, a in floats.items())
    shapes = {_tinylm_name(n) + ".weight": a.shape for n, a in floats.items()}
    return build_model(config, shapes, norms, path, prepare=put_layers)


def _find_tokenizer(path, tokenizer_path, vocab_size):
    folder = os.path.dirname(os.path.abspath(path))
    if tokenizer_path is None:
        for name in ("tokenizer.json", "tokenizer.bin"):
            if os.path.isfile(os.path.join(folder, name)):
                tokenizer_path = os.path.join(folder, name)
                break
        else:
            return None
    if tokenizer_path.endswith(".json"):
        tokenizer = Tokenizer.load(tokenizer_path)
    else:
        try:
            tokenizer = tokenizer_from_bin(tokenizer_path, vocab_size)
        except NotByteLevelBPE as exc:  # the model is still fine: return it without a tokenizer
            warnings.warn(f"{exc}; the model is loaded without a tokenizer", stacklevel=3)
            return None
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(f"{tokenizer_path} has {tokenizer.vocab_size} tokens but the model only {vocab_size}")
    return tokenizer
