"""Hugging Face GPT-2 files, in and out: safetensors in NumPy, config.json, vocab.json + merges.txt.

A Hugging Face GPT-2 folder holds four files that tinylm reads and writes:

    config.json         the sizes, under GPT-2's names: n_embd, n_layer, n_head, n_positions, vocab_size, ...
    model.safetensors   every weight, by name ("h.0.attn.c_attn.weight", ...), raw little-endian numbers
    vocab.json          {token text: id}, bytes spelled with GPT-2's byte-to-unicode table ("Ġthe": 262)
    merges.txt          the BPE merges in rank order, one "left right" pair per line

The file is read in three parts:

1. safetensors (`read_safetensors`, `write_safetensors`). The format is three pieces back to back:

       8 bytes    N, the length of the header, an unsigned little-endian 64-bit integer
       N bytes    a JSON header: {"wte.weight": {"dtype": "F32", "shape": [50257, 768],
                                                 "data_offsets": [0, 154389504]}, ...,
                                   "__metadata__": {"format": "pt"}}      (optional, strings only)
       the rest   the data area: every tensor's bytes, row-major, little-endian, at its [begin, end)
                  offsets counted from the start of the data area, with no gaps and no overlaps

   Reading maps the file into memory (np.memmap) and returns arrays that are views of it: nothing is
   read until used, and a 500 MB GPT-2 checkpoint "loads" in milliseconds. `safetensors_header` reads
   only the header; `iter_safetensors` reads one tensor at a time (how a model is loaded: never the
   weights twice in memory). The header comes from strangers, so every number in it is checked
   against the file before anything is allocated.

2. GPT-2's weights (`load_hf_gpt2`, `save_hf_gpt2`). The names match tinylm's one to one (tinylm
   uses GPT-2's names), with one twist: GPT-2's linear layers are `Conv1D` modules, which store their
   weight as (in_features, out_features) and compute y = x @ W + b, while tinylm's Linear stores
   (out_features, in_features) like nn.Linear and computes y = x @ W.T + b. So the four Conv1D weights
   of each block (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) are transposed on the way in and on
   the way out; embeddings and layer norms are copied as they are.

3. The tokenizer (`load_hf_tokenizer`): vocab.json + merges.txt, read by tinylm.tokenizer.

    >>> model = load_hf_gpt2("tests/fixtures/tiny-gpt2")                 # doctest: +SKIP
    >>> tokenizer = load_hf_tokenizer("tests/fixtures/tiny-gpt2")        # doctest: +SKIP
    >>> save_hf_gpt2(model, "out/tiny-gpt2", tokenizer)                  # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

from tinylm import fileio

# ----------------------------------------------------------------------------------------------
# safetensors: the dtypes

# safetensors name -> the NumPy dtype its bytes are read as. BF16 has no NumPy dtype: its bytes are
# read as uint16 and widened to float32 (bfloat16 is the top half of a float32, see below).
SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
# NumPy dtype -> the safetensors name an array of that dtype is written as
_NAME_OF_DTYPE = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
                  np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
                  np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}

MAX_HEADER_BYTES = 100_000_000  # a real header is kilobytes; a larger length is a broken or hostile file


def bf16_to_float32(bits):
    """bfloat16 bit patterns (uint16) -> float32, exactly: bfloat16 is the top 16 bits of a float32.

    >>> bf16_to_float32(np.array([0x3F80, 0xC000, 0x3EAB], dtype=np.uint16))
    array([ 1.        , -2.        ,  0.33398438], dtype=float32)
    """
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(x):
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest, ties to even (as PyTorch does).

    Keeping the top 16 bits would truncate (always round towards zero); adding 0x7FFF plus the lowest
    kept bit before the shift rounds to nearest instead, with ties going to the even pattern. NaN stays
    a (quiet) NaN; a value above the largest bfloat16 (~3.39e38) rounds to infinity.

    >>> hex(int(float32_to_bf16(np.float32(1 / 3))))       # 0x3EAAAAAB -> 0x3EAB (rounded up, not 0x3EAA)
    '0x3eab'
    """
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    lowest_kept = (bits >> 16) & 1
    rounded = ((bits + 0x7FFF + lowest_kept) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)  # keep the sign, set the quiet bit
    return rounded


# ----------------------------------------------------------------------------------------------
# safetensors: reading


def _read_header(path):
    """Read and check the header of a safetensors file.

    Returns (entries, metadata, data_start): entries = [(name, dtype name, shape, begin, end)] sorted by
    offset, every one checked to lie inside the file, to have exactly prod(shape) * itemsize bytes, and
    to follow the previous one with no gap and no overlap.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"safetensors file not found: {path}")

    def bad(problem):
        return ValueError(f"{path} is not a valid safetensors file: {problem}")

    file_size = os.path.getsize(path)
    if file_size < 8:
        raise bad(f"it has {file_size} bytes, fewer than the 8-byte header length")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES:
            raise bad(f"the header length is {n} bytes, more than the {MAX_HEADER_BYTES} tinylm accepts")
        if 8 + n > file_size:
            raise bad(f"the header length is {n} bytes but only {file_size - 8} bytes follow it (truncated file?)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, a 5000-digit number, [[[[...]]]]
        raise bad(f"the header is not valid UTF-8 JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    except KeyError as exc:
        raise bad(f"the header names {exc.args[0]!r} twice") from None
    if not isinstance(header, dict):
        raise bad(f"the header is a JSON {type(header).__name__}, not an object")

    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(v, str) for v in metadata.values())):
        raise bad("__metadata__ must be an object of strings")

    data_size = file_size - 8 - n
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r} must be an object with exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise bad(f"tensor {name!r} has unknown dtype {dtype!r}; tinylm reads "
                      f"{', '.join(SAFETENSORS_DTYPES)}")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise bad(f"tensor {name!r} has shape {shape!r}; expected a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            raise bad(f"tensor {name!r} has data_offsets {offsets!r}; expected [begin, end]")
        begin, end = offsets
        if not begin <= end <= data_size:
            raise bad(f"tensor {name!r} has data_offsets [{begin}, {end}], outside the data area of "
                      f"{data_size} bytes")
        expected = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize  # Python ints: no overflow
        if end - begin != expected:
            raise bad(f"tensor {name!r} has {end - begin} bytes but its shape {shape} of {dtype} "
                      f"needs {expected}")
        entries.append((name, dtype, tuple(shape), begin, end))

    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0  # the tensors must tile the data area exactly: each begins where the previous ended
    for name, _, _, begin, end in entries:
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else f"leaves a gap at byte {position}"
            raise bad(f"tensor {name!r} at data_offsets [{begin}, {end}] {problem}")
        position = end
    if position != data_size:
        raise bad(f"the tensors cover {position} bytes of the {data_size}-byte data area")
    return entries, metadata, 8 + n


def _is_count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _no_duplicate_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise KeyError(key)
        seen[key] = value
    return seen


def read_safetensors(path, metadata=False):
    """Read a safetensors file -> {name: ndarray} (and its __metadata__ dict if `metadata=True`).

    The arrays are copy-on-write views of the memory-mapped file: reading is instant, pages load from
    disk when first touched, and writing to an array changes memory only, never the file. BF16
    tensors are widened to float32 (exactly: every bfloat16 is a float32). A file that breaks the
    format raises ValueError naming the file and the problem, before any large allocation.

    >>> write_safetensors("t.safetensors", {"w": np.eye(2, dtype=np.float32)})   # doctest: +SKIP
    >>> read_safetensors("t.safetensors")                                        # doctest: +SKIP
    {'w': array([[1., 0.], [0., 1.]], dtype=float32)}
    """
    path = os.fspath(path)
    entries, meta, data_start = _read_header(path)
    tensors = {}
    mapped = np.memmap(path, dtype=np.uint8, mode="c") if entries else None
    for name, dtype, shape, begin, end in entries:
        np_dtype = SAFETENSORS_DTYPES[dtype]
        raw = np.asarray(mapped[data_start + begin:data_start + end])  # (nbytes,) uint8, a view
        if (data_start + begin) % np_dtype.itemsize:  # unaligned (unusual writer): copy, then view
            raw = raw.copy()
        a = raw.view(np_dtype).reshape(shape)
        if dtype == "BF16":
            a = bf16_to_float32(a)
        elif dtype == "BOOL" and raw.size and raw.max() > 1:
            raise ValueError(f"{path} is not a valid safetensors file: BOOL tensor {name!r} holds bytes "
                             f"other than 0 and 1")
        tensors[name] = a
    return (tensors, dict(meta or {})) if metadata else tensors


def iter_safetensors(path, names=None):
    """Yield (name, array) one tensor at a time, each read afresh from the file (no memory map), in
    the order of `names` (default: the file's order). Copying a model's weights this way never holds
    more than one tensor beside the model: the way to load a checkpoint as large as the free RAM.

    The whole header is checked first, exactly as by read_safetensors; a name not in the file is a
    KeyError.
    """
    path = os.fspath(path)
    entries, _, data_start = _read_header(path)
    by_name = {e[0]: e for e in entries}
    with open(path, "rb") as f:
        for name in (by_name if names is None else names):
            _, dtype, shape, begin, _ = by_name[name]
            f.seek(data_start + begin)
            a = np.fromfile(f, dtype=SAFETENSORS_DTYPES[dtype], count=math.prod(shape)).reshape(shape)
            if dtype == "BF16":
                a = bf16_to_float32(a)
            elif dtype == "BOOL" and a.size and a.view(np.uint8).max() > 1:
                raise ValueError(f"{path} is not a valid safetensors file: BOOL tensor {name!r} holds bytes "
                                 f"other than 0 and 1")
            yield name, a


def safetensors_header(path):
    """{name: (dtype, shape)} and the __metadata__ dict of a safetensors file, reading only its header.

    >>> safetensors_header("gpt2/model.safetensors")[0]["wte.weight"]     # doctest: +SKIP
    ('F32', (50257, 768))
    """
    entries, metadata, _ = _read_header(path)
    return {name: (dtype, shape) for name, dtype, shape, _, _ in entries}, dict(metadata or {})


# ----------------------------------------------------------------------------------------------
# safetensors: writing


def write_safetensors(path, tensors, metadata=None, dtypes=None):
    """Write {name: array} as a safetensors file, atomically (a crash never leaves half a file).

    Each array is stored in its own dtype (float64/32/16, int64/32/16/8, uint8, bool). `dtypes` maps a
    name to a different stored dtype for float arrays: {"wte.weight": "BF16"} rounds to bfloat16
    (nearest, ties to even; see float32_to_bf16), "F16" rounds to float16 the same way. `metadata` is
    a {str: str} dict stored as __metadata__ (Hugging Face expects {"format": "pt"}).

    Tensors are laid out largest element size first and the header is padded with spaces to a
    multiple of 8 bytes, so every tensor starts at a multiple of its element size (as the reference
    writer does): readers can use the bytes in place.
    """
    path = os.fspath(path)
    if not isinstance(tensors, dict):
        raise TypeError(f"write_safetensors: tensors must be a dict {{name: array}}, got {type(tensors).__name__}")
    dtypes = dict(dtypes or {})
    unknown = sorted(set(dtypes) - set(tensors))
    if unknown:
        raise ValueError(f"write_safetensors: dtypes names {', '.join(unknown)}, which are not in tensors")
    if metadata is not None and not (isinstance(metadata, dict) and
                                     all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError("write_safetensors: metadata must be a dict of str -> str")

    stored = []  # (name, safetensors dtype, shape, little-endian contiguous array to write)
    for name, a in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"write_safetensors: tensor name {name!r} must be a non-empty string, "
                             f"not '__metadata__'")
        a = np.asarray(a)
        if not a.dtype.isnative:  # e.g. big-endian ">f4": same numbers, this machine's byte order
            a = a.astype(a.dtype.newbyteorder("="))
        if a.dtype not in _NAME_OF_DTYPE:
            raise TypeError(f"write_safetensors: tensor {name!r} has dtype {a.dtype}; expected one of "
                            f"{', '.join(str(d) for d in _NAME_OF_DTYPE)}")
        dtype = dtypes.get(name, _NAME_OF_DTYPE[a.dtype])
        if dtype != _NAME_OF_DTYPE[a.dtype]:
            if a.dtype.kind != "f" or dtype not in ("F64", "F32", "F16", "BF16"):
                raise ValueError(f"write_safetensors: cannot store tensor {name!r} of dtype {a.dtype} as "
                                 f"{dtype!r}; only float arrays convert, to F64, F32, F16 or BF16")
        data = (float32_to_bf16(a) if dtype == "BF16" else a).astype(SAFETENSORS_DTYPES[dtype], copy=False)
        stored.append((name, dtype, a.shape, np.ascontiguousarray(data)))

    stored.sort(key=lambda s: -SAFETENSORS_DTYPES[s[1]].itemsize)  # stable: same-size tensors keep their order
    header, position = {}, 0
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    for name, dtype, shape, data in stored:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [position, position + data.nbytes]}
        position += data.nbytes
    header_bytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with fileio.atomic_open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for _, _, _, data in stored:
            f.write(data.reshape(-1).view(np.uint8))  # the bytes, without a copy


# ----------------------------------------------------------------------------------------------
# GPT-2: names, shapes and config.json

# the four Conv1D weights of every block: stored (in, out) by GPT-2, (out, in) by tinylm
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
LAYER_NORM_EPS = 1e-5  # tinylm's LayerNorm epsilon, and GPT-2's
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")  # the names transformers gives GELU's tanh approximation


def _is_conv1d(name):
    return name.startswith("transformer.h.") and name.endswith(CONV1D_WEIGHTS)


def gpt_config_from_hf(hf_config, where="config.json", dropout=0.0):
    """A GPTConfig from the fields of a Hugging Face GPT-2 config.json, refusing anything tinylm's GPT
    would compute differently (another activation, another layer-norm epsilon, untied output, ...).

    >>> gpt_config_from_hf({"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
    ...                     "n_head": 12}).block_size
    1024
    """
    from tinylm.model import GPTConfig

    if not isinstance(hf_config, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(hf_config).__name__}")

    def refuse(problem):
        return ValueError(f"{where}: {problem}; tinylm's GPT implements GPT-2 exactly and cannot load this model")

    model_type = hf_config.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise refuse(f"model_type is {model_type!r}, not 'gpt2'")
    activation = hf_config.get("activation_function", "gelu_new")
    if activation not in GELU_TANH:
        raise refuse(f"activation_function is {activation!r}, not GELU's tanh approximation ('gelu_new')")
    eps = hf_config.get("layer_norm_epsilon", LAYER_NORM_EPS)
    if not isinstance(eps, (int, float)) or abs(eps - LAYER_NORM_EPS) > 1e-12:
        raise refuse(f"layer_norm_epsilon is {eps!r}; tinylm's LayerNorm uses {LAYER_NORM_EPS}")
    for field, expected in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                            ("add_cross_attention", False), ("tie_word_embeddings", True)):
        if hf_config.get(field, expected) != expected:
            raise refuse(f"{field} is {hf_config[field]!r} (tinylm needs {expected!r})")

    sizes = {}
    for ours, theirs in (("vocab_size", ("vocab_size",)), ("block_size", ("n_positions", "n_ctx")),
                         ("n_layer", ("n_layer",)), ("n_head", ("n_head",)), ("n_embd", ("n_embd",))):
        found = [t for t in theirs if t in hf_config]
        if not found:
            raise ValueError(f"{where}: missing {' or '.join(theirs)} (the model's {ours})")
        sizes[ours] = hf_config[found[0]]  # n_positions wins over the older n_ctx
    n_inner = hf_config.get("n_inner")
    if n_inner is not None and n_inner != 4 * sizes["n_embd"]:
        raise refuse(f"n_inner is {n_inner}, not 4 * n_embd = {4 * sizes['n_embd']}")
    try:
        return GPTConfig(**sizes, dropout=dropout, bias=True)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def hf_config_from_gpt(config, tokenizer=None):
    """The config.json of a Hugging Face GPT-2 with tinylm's sizes, under GPT-2's field names."""
    end_of_text = None
    if tokenizer is not None:
        end_of_text = getattr(tokenizer, "special_tokens", {}).get("<|endoftext|>")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # None means 4 * n_embd
        "activation_function": "gelu_new",
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": end_of_text,
        "eos_token_id": end_of_text,
        "use_cache": True,
        "torch_dtype": "float32",
    }


# ----------------------------------------------------------------------------------------------
# GPT-2: import


def load_hf_gpt2(folder, dropout=0.0):
    """Load a Hugging Face GPT-2 folder (config.json + model.safetensors) as a tinylm GPT.

    Weight names may carry the "transformer." prefix (GPT2LMHeadModel) or not (GPT2Model); the causal
    masks older checkpoints store ("h.0.attn.bias", "h.0.attn.masked_bias") are skipped; lm_head.weight
    may be absent (tied to wte) or present, in which case it must equal wte. F16 and BF16 weights are
    widened to float32. `dropout` is set in the config (0 for inference; e.g. 0.1 to train further).
    """
    from tinylm import nn
    from tinylm.model import GPT

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Hugging Face folder not found: {folder}")
    config_path = os.path.join(folder, "config.json")
    config = gpt_config_from_hf(fileio.load_json(config_path, "Hugging Face config.json"), config_path, dropout)
    weights_path = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(weights_path):
        hint = ""
        if os.path.isfile(os.path.join(folder, "pytorch_model.bin")):
            hint = (" (there is a pytorch_model.bin, a pickle file tinylm does not read; convert it with "
                    "transformers: AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder, "
                    "safe_serialization=True))")
        raise FileNotFoundError(f"no model.safetensors in {folder}{hint}")

    # 1. check names, shapes and dtypes against config.json from the header alone, before any work
    header, _ = safetensors_header(weights_path)
    expected = dict(_gpt2_shapes(config))  # our name -> the shape GPT-2 stores
    file_key, lm_head = {}, None  # our name -> the file's name ("h.0.ln_1.weight" or with "transformer.")
    for key in header:
        name = key if key.startswith("transformer.") or key == "lm_head.weight" else "transformer." + key
        if name == "lm_head.weight":
            lm_head = key
        elif not name.endswith((".attn.bias", ".attn.masked_bias")):  # those are stored causal masks
            file_key[name] = key
    missing = [name for name in expected if name not in file_key]
    unexpected = [file_key[name] for name in file_key if name not in expected]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        raise ValueError(f"{weights_path}: {'; '.join(parts)} (for the sizes in config.json)")
    for name, shape in [*expected.items(), *([("lm_head.weight", expected["transformer.wte.weight"])]
                                             if lm_head else [])]:
        key = lm_head if name == "lm_head.weight" else file_key[name]
        dtype, stored = header[key]
        if dtype not in ("F64", "F32", "F16", "BF16"):
            raise ValueError(f"{weights_path}: {key} has dtype {dtype}; expected floating-point weights")
        if stored != shape:
            raise ValueError(f"{weights_path}: {key} has shape {stored}; config.json's sizes give {shape}")

    # 2. build the model, then copy the weights into it one tensor at a time (lm_head last, to compare)
    with nn.skip_init():  # every weight is copied in below: drawing random ones first would waste seconds
        model = GPT(config)
    params = dict(model.named_parameters())
    order = list(file_key.values()) + ([lm_head] if lm_head else [])
    ours = {key: name for name, key in file_key.items()}
    for key, value in iter_safetensors(weights_path, order):
        if key == lm_head:
            if not np.array_equal(value, params["transformer.wte.weight"].data):
                raise ValueError(f"{weights_path}: lm_head.weight differs from wte.weight; tinylm's GPT ties "
                                 f"the output layer to the token embedding, as GPT-2 does")
            continue
        name = ours[key]
        params[name].data[...] = value.T if _is_conv1d(name) else value  # Conv1D (in, out) -> Linear (out, in)
    model.eval()
    return model


def load_hf_tokenizer(folder):
    """The GPT-2 tokenizer of a Hugging Face folder (vocab.json + merges.txt), with GPT-2's ids."""
    from tinylm.tokenizer import Tokenizer

    folder = os.fspath(folder)
    vocab_json, merges_txt = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    for path in (vocab_json, merges_txt):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no {os.path.basename(path)} in {folder} (a GPT-2 tokenizer needs "
                                    f"vocab.json and merges.txt)")
    return Tokenizer.from_gpt2_files(vocab_json, merges_txt)


# ----------------------------------------------------------------------------------------------
# GPT-2: export

# the files save_hf_gpt2 writes (the last three only with a tokenizer)
HF_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json")


def save_hf_gpt2(model, folder, tokenizer=None):
    """Write a tinylm GPT (and its tokenizer) as a Hugging Face GPT-2 folder that `transformers` loads
    as it is: GPT2LMHeadModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder).

    Writes config.json, model.safetensors (GPT-2's names and Conv1D (in, out) layout, float32) and,
    with a tokenizer, vocab.json + merges.txt + tokenizer_config.json. A model without biases
    (bias=False) is written with zero biases, which computes the same function. Note: Hugging Face's GPT-2 tokenizer always
    pre-splits text with GPT-2's regex; a tinylm tokenizer trained with another pattern ("gpt4") gives
    the same text back but may cut some strings into different (equally valid) tokens.
    """
    from tinylm.model import GPT

    if not isinstance(model, GPT):
        raise TypeError(f"save_hf_gpt2: model must be a tinylm GPT, got {type(model).__name__}")
    config = model.config
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"save_hf_gpt2: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{config.vocab_size} (vocab_size)")
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"save_hf_gpt2: {folder} exists and is not a folder")
    params = dict(model.named_parameters())
    shapes = dict(_gpt2_shapes(config))
    extra = sorted(set(params) - set(shapes))
    if extra:  # (e.g. a mixture-of-experts model) refused before anything is written
        raise ValueError(f"save_hf_gpt2: the model has parameters GPT-2 does not: {', '.join(extra)}")
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for name, shape in shapes.items():
        if name in params:
            value = params[name].data.astype(np.float32, copy=False)
            tensors[name] = np.ascontiguousarray(value.T) if _is_conv1d(name) else value  # (out, in) -> (in, out)
        else:  # bias=False: GPT-2 always has biases; zeros compute the same function
            tensors[name] = np.zeros(shape, dtype=np.float32)
    write_safetensors(os.path.join(folder, "model.safetensors"), tensors, metadata={"format": "pt"})
    fileio.save_json(os.path.join(folder, "config.json"), hf_config_from_gpt(config, tokenizer))
    if tokenizer is not None:
        tokenizer.save_gpt2_files(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))
        fileio.save_json(os.path.join(folder, "tokenizer_config.json"), hf_tokenizer_config(config, tokenizer))
    return folder


def hf_tokenizer_config(config, tokenizer):
    """tokenizer_config.json: the longest input, and which token is <|endoftext|> (or that there is none:
    without this file transformers' GPT2Tokenizer would invent one, with an id past the model's vocabulary)."""
    end_of_text = "<|endoftext|>" if "<|endoftext|>" in tokenizer.special_tokens else None
    return {"tokenizer_class": "GPT2Tokenizer", "model_max_length": config.block_size,
            "bos_token": end_of_text, "eos_token": end_of_text, "unk_token": end_of_text}


def _gpt2_shapes(config):
    """Every tensor of GPT2LMHeadModel's model.safetensors, in its order, with GPT-2's (stored) shape."""
    C, V = config.n_embd, config.vocab_size
    yield "transformer.wte.weight", (V, C)
    yield "transformer.wpe.weight", (config.block_size, C)
    for i in range(config.n_layer):
        h = f"transformer.h.{i}."
        yield h + "ln_1.weight", (C,)
        yield h + "ln_1.bias", (C,)
        yield h + "attn.c_attn.weight", (C, 3 * C)  # Conv1D: (in, out)
        yield h + "attn.c_attn.bias", (3 * C,)
        yield h + "attn.c_proj.weight", (C, C)
        yield h + "attn.c_proj.bias", (C,)
        yield h + "ln_2.weight", (C,)
        yield h + "ln_2.bias", (C,)
        yield h + "mlp.c_fc.weight", (C, 4 * C)
        yield h + "mlp.c_fc.bias", (4 * C,)
        yield h + "mlp.c_proj.weight", (4 * C, C)
        yield h + "mlp.c_proj.bias", (C,)
    yield "transformer.ln_f.weight", (C,)
    yield "transformer.ln_f.bias", (C,)
