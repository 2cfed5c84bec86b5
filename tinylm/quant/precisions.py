"""The precision registry: every weight precision tinylm knows, in one table.

A precision string is a registered name, plus a group size for the grouped ones:

    "fp32"          float32, the trained model unchanged (no storage class: the Tensor itself)
    "fp16"          Fp16Weight
    "int8:g32"      Int8Weight with a scale per row and group of 32 inputs ("int8" alone means g32)
    "int8:channel"  Int8Weight with one scale per output row
    "int4:g32"      Int4Weight: [-7, 7] two a byte, a scale per row and group of 32 ("int4" = g32)
    "int4:channel"  Int4Weight with one scale per output row

Each entry names its storage class, which knows everything about the format: `from_float` (quantize),
`nbytes_for` (size without building it), `arrays` / `from_arrays` (save and load), `linear` and
`rows` (the kernels that compute with it), `label` (its precision string). A new precision is a new
storage class (and its kernel family in tinylm.kernels) plus one row here; plans, the planner,
weight counts and quantized checkpoints find it through this table.

    >>> parse_precision("int8:g64"), parse_precision("int8:channel"), parse_precision("fp16")
    (('int8', 64), ('int8', None), ('fp16', None))
    >>> PRECISIONS["int8"].nbytes((64, 128), 32)
    9216
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from tinylm.quant.layers import Fp16Linear, Fp16Weight, Int4Linear, Int4Weight, Int8Linear, Int8Weight

DEFAULT_GROUP_SIZE = 32


@dataclass(frozen=True)
class Precision:
    """One row of the registry."""
    name: str
    storage: type | None  # the weight storage class; None for fp32 (a plain float32 Tensor)
    linear: type | None  # the QuantizedLinear subclass that holds such a storage
    grouped: bool  # takes ":gN" / ":channel"
    help: str

    def nbytes(self, shape, group_size=None):
        """Bytes of one (out, in) weight matrix stored in this precision."""
        return 4 * shape[0] * shape[1] if self.storage is None else self.storage.nbytes_for(shape, group_size)


PRECISIONS = {
    "fp32": Precision("fp32", None, None, False, "fp32"),
    "fp16": Precision("fp16", Fp16Weight, Fp16Linear, False, "fp16"),
    "int8": Precision("int8", Int8Weight, Int8Linear, True,
                      "int8 (= int8:g32), int8:gN (N divides the layer's inputs), int8:channel"),
    "int4": Precision("int4", Int4Weight, Int4Linear, True,
                      "int4 (= int4:g32), int4:gN (N a multiple of 32 dividing the inputs), int4:channel"),
}

PRECISIONS_HELP = ", ".join(p.help for p in PRECISIONS.values())

_PRECISION = re.compile(r"^([a-z][a-z0-9]*)(?::(?:g(\d+)|(channel)))?$")


def parse_precision(text):
    """'int8:g64' -> ('int8', 64); 'int8:channel' -> ('int8', None); 'fp16' -> ('fp16', None).

    The group size None means one group per row (per channel).
    """
    if not isinstance(text, str):
        raise TypeError(f"precision {text!r} is a {type(text).__name__}; expected a string ({PRECISIONS_HELP})")
    m = _PRECISION.match(text.strip().lower())
    if not m or m.group(1) not in PRECISIONS or (not PRECISIONS[m.group(1)].grouped and (m.group(2) or m.group(3))):
        raise ValueError(f"unknown precision {text!r}; expected one of {PRECISIONS_HELP}")
    kind = m.group(1)
    if not PRECISIONS[kind].grouped or m.group(3):
        return kind, None
    group_size = int(m.group(2)) if m.group(2) else DEFAULT_GROUP_SIZE
    if group_size < 1:
        raise ValueError(f"precision {text!r}: group size must be >= 1")
    return kind, group_size


def format_precision(kind, group_size=None):
    """('int8', 32) -> 'int8:g32', ('int8', None) -> 'int8:channel', ('fp16', None) -> 'fp16'."""
    if not PRECISIONS[kind].grouped:
        return kind
    return f"{kind}:channel" if group_size is None else f"{kind}:g{group_size}"


def canonical_precision(text):
    """'INT8' -> 'int8:g32': the one spelling used in saved plans and tables."""
    return format_precision(*parse_precision(text))


def fits(shape, kind, group_size):
    """Can an (out, in) matrix take this precision? (A group size must divide the inputs; a storage
    class with its own `fits`, like int4's blocks of 32, has the last word.)"""
    storage = PRECISIONS[kind].storage
    if hasattr(storage, "fits"):
        return storage.fits(shape, group_size)
    return not (PRECISIONS[kind].grouped and group_size is not None and shape[1] % group_size)


def make_storage(w, precision):
    """Quantize float32 matrix w (out, in) to `precision` (not fp32): a storage object."""
    kind, group_size = parse_precision(precision)
    return PRECISIONS[kind].storage.from_float(w, group_size)


def make_linear(storage, bias):
    """The quantized Linear layer for `storage` (its registered class), with `bias` (or None)."""
    return PRECISIONS[storage.precision].linear(storage, bias)
