"""safetensors in NumPy: read and write the tensor format Hugging Face (and many other tools) use.

The format is three pieces back to back:

    8 bytes    N, the length of the header, an unsigned little-endian 64-bit integer
    N bytes    a JSON header: {"wte.weight": {"dtype": "F32", "shape": [50257, 768],
                                              "data_offsets": [0, 154389504]}, ...,
                                "__metadata__": {"format": "pt"}}      (optional, strings only)
    the rest   the data area: every tensor's bytes, row-major, little-endian, at its [begin, end)
               offsets counted from the start of the data area, with no gaps and no overlaps

Reading maps the file into memory (np.memmap) and returns arrays that are views of it: nothing is read
until used, and a 500 MB GPT-2 checkpoint "loads" in milliseconds. `safetensors_header` reads only the
header; `iter_safetensors` reads one tensor at a time (how a model is loaded: never the weights twice in
memory). The header comes from strangers, so every number in it is checked against the file before
anything is allocated.

This module knows nothing of models: it needs NumPy and tinylm.fileio's atomic write, nothing else.

    >>> write_safetensors("t.safetensors", {"w": np.ones((2, 3), np.float32)})   # doctest: +SKIP
    >>> read_safetensors("t.safetensors")["w"].shape                             # doctest: +SKIP
    (2, 3)
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
MAX_TENSORS = 100_000  # a large model's shard has a few thousand; millions of empty ones are an attack


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
    objects = 0

    def checked_object(pairs):  # called for every JSON object as it is parsed: stops a huge header early
        nonlocal objects
        objects += 1
        if objects > MAX_TENSORS + 2:  # each tensor's {dtype, shape, data_offsets}, __metadata__, the header
            raise OverflowError(f"the header has more than {MAX_TENSORS:,} tensors")
        return _no_duplicate_keys(pairs)

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=checked_object)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, a 5000-digit number, [[[[...]]]]
        raise bad(f"the header is not valid UTF-8 JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    except OverflowError as exc:
        raise bad(str(exc)) from None
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
        if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
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
