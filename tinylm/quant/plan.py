"""Precision plans: which precision each layer of a model runs in, and applying one to a model.

A plan is a dict from a layer's dotted name to a precision string:

    {"transformer.h.0.attn.c_attn": "fp16", "transformer.h.0.mlp.c_fc": "int8:g32", "lm_head": "int8"}

| precision      | weight storage                                       | bytes per weight          |
|----------------|------------------------------------------------------|---------------------------|
| `fp32`         | float32 (the trained model, unchanged)               | 4                         |
| `fp16`         | IEEE half precision, fp32 accumulation               | 2                         |
| `int8:gN`      | int8 + a float32 scale per row and group of N inputs | 1 + 4/N (1.125 for N=32)  |
| `int8:channel` | int8 + one float32 scale per output row              | 1 + 4/in_features         |
| `int8`         | short for `int8:g32`                                 |                           |
| `int4:gN`      | int4 in [-7, 7], two a byte, + a float32 scale per    | 1/2 + 4/N (0.625 for N=32)|
|                | row and group of N inputs (N a multiple of 32)       |                           |
| `int4:channel` | int4 + one float32 scale per output row              | 1/2 + 4/in_features       |
| `int4`         | short for `int4:g32`                                 |                           |

Layers a plan does not name stay fp32. The names are those of `quantizable_layers(model)`: every
Linear (attention `c_attn`/`c_proj`, MLP `c_fc`/`c_proj`, the output head `lm_head`) and the
embedding tables. A GPT ties its token embedding to `lm_head` (one matrix, used twice), so the name
`lm_head` sets the precision of that shared matrix and `transformer.wte` is not a separate entry.
LayerNorm, softmax and GELU always stay fp32.

    >>> plan = uniform_plan(model, "int8:g32")        # every layer int8
    >>> small = apply_plan(model, plan)                 # a new model; `model` is untouched
    >>> weight_bytes(small)["total"] < weight_bytes(model)["total"] / 3
    True
    >>> save_plan("plan.json", plan); load_plan("plan.json") == plan
    True
"""
from __future__ import annotations

import copy

import numpy as np

from tinylm import nn
from tinylm.autograd import Tensor
from tinylm.fileio import load_json, save_json
from tinylm.quant.layers import QuantizedEmbedding, QuantizedLinear
from tinylm.quant.precisions import (
    PRECISIONS,
    canonical_precision,
    format_precision,
    make_linear,
    make_storage,
    parse_precision,
)

PLAN_FORMAT = "tinylm-precision-plan"
PLAN_VERSION = 1


# ----------------------------------------------------------------------------------------------
# finding the layers of a model


def get_module(model, name):
    """The module at dotted path `name` ('transformer.h.0.attn.c_attn'), or a ValueError naming it."""
    m = model
    for part in name.split("."):
        m = vars(m).get(part) if isinstance(m, nn.Module) else None
        if not isinstance(m, nn.Module):
            raise ValueError(f"model has no layer {name!r}")
    return m


def set_module(model, name, new):
    """Replace the module at dotted path `name` by `new`."""
    parent_name, _, key = name.rpartition(".")
    parent = get_module(model, parent_name) if parent_name else model
    get_module(model, name)  # it must exist: a plan never adds layers
    setattr(parent, key, new)


def is_linear(m):
    """A Linear layer, float or quantized: what a plan can set the precision of."""
    return isinstance(m, (nn.Linear, QuantizedLinear))


def is_embedding(m):
    """An embedding table, float or quantized."""
    return isinstance(m, (nn.Embedding, QuantizedEmbedding))


def quantizable_layers(model):
    """{name: (out_features, in_features)} of every layer a plan may name, in model order.

    Linear layers and embedding tables; an embedding tied to a Linear (GPT's `transformer.wte` and
    `lm_head`) is listed once, under the Linear's name.
    """
    modules = [(n, m) for n, m in model.named_modules() if n]
    seen, layers = set(), {}
    linears = [(n, m) for n, m in modules if is_linear(m)]
    embeddings = [(n, m) for n, m in modules if is_embedding(m)]
    for n, m in linears + embeddings:  # Linears first: a tied matrix is listed under the Linear
        if id(m.weight) in seen:
            continue
        seen.add(id(m.weight))
        layers[n] = tuple(m.weight.shape if isinstance(m, (QuantizedLinear, QuantizedEmbedding))
                          else m.weight.data.shape)
    order = [n for n, _ in modules]
    return {n: layers[n] for n in sorted(layers, key=order.index)}


def tied_layers(model):
    """{linear name: embedding name} for embeddings that share their weight with a Linear."""
    modules = [(n, m) for n, m in model.named_modules() if n]
    linear_of = {id(m.weight): n for n, m in modules if is_linear(m)}
    return {linear_of[id(m.weight)]: n for n, m in modules if is_embedding(m) and id(m.weight) in linear_of}


# ----------------------------------------------------------------------------------------------
# plans


def validate_plan(model, plan):
    """Check `plan` against `model`; return it in canonical form ({name: 'int8:g32', ...}).

    Errors name the layer: an unknown layer (with the valid names), a bad precision, a group size that
    does not divide the layer's in_features.
    """
    if not isinstance(plan, dict):
        raise TypeError(f"plan is a {type(plan).__name__}; expected a dict {{layer name: precision}}")
    layers = quantizable_layers(model)
    tied = tied_layers(model)
    tied_embeddings = {e: lin for lin, e in tied.items()}
    out = {}
    for name, precision in plan.items():
        if name in tied_embeddings:
            raise ValueError(f"plan names {name!r}, which is tied to {tied_embeddings[name]!r} (one shared "
                             f"matrix); set the precision of {tied_embeddings[name]!r} instead")
        if name not in layers:
            raise ValueError(f"plan names an unknown layer {name!r}; this model's layers are: "
                             + ", ".join(layers))
        try:
            kind, group_size = parse_precision(precision)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"layer {name!r}: {exc}") from None
        out[name] = layer_precision(name, layers[name][1], kind, group_size)
    return out


def layer_precision(name, in_features, kind, group_size):
    """The canonical precision of one layer; a group as wide as the row is called 'int8:channel'."""
    if PRECISIONS[kind].grouped and group_size is not None:
        if in_features % group_size:
            raise ValueError(f"layer {name!r}: {kind} group size {group_size} does not divide its "
                             f"in_features {in_features}; use a divisor of {in_features} or {kind}:channel")
        if group_size == in_features:
            group_size = None
    return format_precision(kind, group_size)


def uniform_plan(model, precision):
    """Every quantizable layer in `precision`: uniform_plan(model, 'fp16') -> {name: 'fp16', ...}."""
    precision = canonical_precision(precision)
    return validate_plan(model, {name: precision for name in quantizable_layers(model)})


def plan_of(model):
    """The plan a (possibly quantized) model runs: {name: precision} for every quantizable layer."""
    out = {}
    for name in quantizable_layers(model):
        m = get_module(model, name)
        out[name] = m.weight.label if isinstance(m, (QuantizedLinear, QuantizedEmbedding)) else "fp32"
    return out


def apply_plan(model, plan):
    """A new model whose layers run in the plan's precisions; `model` itself is not changed.

    Layers the plan does not name (or names 'fp32') keep their float32 weights. A tied embedding
    follows its Linear and shares its quantized storage, so the matrix is stored once.
    """
    plan = validate_plan(model, plan)
    new = copy.deepcopy(model)
    tied = tied_layers(new)
    for name, precision in plan.items():
        module = get_module(new, name)
        if isinstance(module, (QuantizedLinear, QuantizedEmbedding)):
            if module.weight.label != precision:
                raise ValueError(f"layer {name!r} is already quantized ({module.weight.label}); "
                                 "apply plans to the fp32 model")
            continue
        if precision == "fp32":
            continue
        bias = None if getattr(module, "bias", None) is None else module.bias.data
        put_storage(new, name, make_storage(module.weight.data, precision), bias, tied)
    return new


def put_storage(model, name, storage, bias, tied):
    """Replace layer `name` of `model` by the quantized layer holding `storage` (a Linear gets `bias`,
    float32 or None); the embedding tied to a Linear (`tied`: tied_layers(model)) shares the storage."""
    if is_linear(get_module(model, name)):
        set_module(model, name, make_linear(storage, bias))
        if name in tied:
            set_module(model, tied[name], QuantizedEmbedding(storage))
    else:
        set_module(model, name, QuantizedEmbedding(storage))


def save_plan(path, plan, **extra):
    """Write a plan as versioned JSON; `extra` (e.g. metrics=..., note=...) is saved beside it."""
    if not isinstance(plan, dict):
        raise TypeError(f"save_plan: plan is a {type(plan).__name__}; expected a dict")
    layers = {}
    for name, precision in plan.items():
        try:
            layers[str(name)] = canonical_precision(precision)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"layer {name!r}: {exc}") from None
    save_json(path, {"format": PLAN_FORMAT, "version": PLAN_VERSION, "layers": layers, **extra})


def load_plan(path):
    """Read a plan written by save_plan (or by `tinylm quantize`): {name: precision}."""
    obj = load_json(path, what="precision plan")
    if not isinstance(obj, dict) or obj.get("format") != PLAN_FORMAT:
        raise ValueError(f"{path} is not a tinylm precision plan (expected \"format\": \"{PLAN_FORMAT}\")")
    if obj.get("version") != PLAN_VERSION:
        raise ValueError(f"{path}: precision plan version {obj.get('version')!r} is not supported "
                         f"(this tinylm reads version {PLAN_VERSION})")
    layers = obj.get("layers")
    if not isinstance(layers, dict):
        raise ValueError(f"{path}: \"layers\" must be an object {{layer name: precision}}")
    out = {}
    for name, precision in layers.items():
        try:
            out[name] = canonical_precision(precision)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: layer {name!r}: {exc}") from None
    return out


# ----------------------------------------------------------------------------------------------
# memory footprint


def weight_bytes(model):
    """Bytes of weights per storage precision: {'fp32': ..., 'fp16': ..., 'int8': ..., 'total': ...}.

    int8 / int4 count the packed values and their float32 scales; a quantized layer's bias counts as fp32.
    A matrix shared by two layers (the tied embedding and head) is counted once.
    """
    counts = dict.fromkeys(PRECISIONS, 0)
    seen = set()
    for _, m in model.named_modules():
        if isinstance(m, (QuantizedLinear, QuantizedEmbedding)):
            if id(m.weight) not in seen:
                seen.add(id(m.weight))
                counts[m.weight.precision] += m.weight.nbytes
            bias = getattr(m, "bias", None)
            if bias is not None and id(bias) not in seen:
                seen.add(id(bias))
                counts["fp32"] += bias.nbytes
            continue
        for value in vars(m).values():
            if isinstance(value, Tensor) and id(value) not in seen:
                seen.add(id(value))
                counts[_dtype_name(value.data)] = counts.get(_dtype_name(value.data), 0) + value.data.nbytes
    counts["total"] = sum(counts.values())
    return counts


def _dtype_name(a):
    return {np.dtype(np.float32): "fp32", np.dtype(np.float16): "fp16", np.dtype(np.int8): "int8"}.get(
        a.dtype, str(a.dtype))
