"""Quantized checkpoints: a folder with the model's config, its plan, and the small arrays.

    qdir/
      quantized.json   {"format": "tinylm-quantized-model", "version": 1, "config": {...}, "plan": {...},
                        "weight_bytes": {...}}
      weights.npz      fp32 parameters by name ("transformer.ln_f.weight", ...) and, per quantized
                        layer, "<layer>.weight.f16" (float16) or "<layer>.weight.q" (int8) +
                        "<layer>.weight.scale" (float32), and "<layer>.bias" (float32)
      tokenizer.json   when a tokenizer is given

The .npz is uncompressed, so an int8 model takes about a quarter of the fp32 bytes on disk. Loading
builds the layers straight from the stored int8/fp16 arrays: nothing is quantized a second time, so a
loaded model computes exactly what the saved one did.

    >>> save_quantized("ckpt-int8", model, uniform_plan(model, "int8:g32"))
    >>> small = load_quantized("ckpt-int8")
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from tinylm.fileio import load_json, load_npz, save_json, save_npz
from tinylm.io.loader import build_model
from tinylm.model import GPTConfig
from tinylm.quant.layers import QuantizedEmbedding, QuantizedLinear
from tinylm.quant.plan import (
    apply_plan,
    get_module,
    is_linear,
    plan_of,
    put_storage,
    tied_layers,
    validate_plan,
    weight_bytes,
)
from tinylm.quant.precisions import PRECISIONS, parse_precision
from tinylm.tokenizer import Tokenizer

CHECKPOINT_FORMAT = "tinylm-quantized-model"
CHECKPOINT_VERSION = 1
META_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "quantized.json", "weights.npz", "tokenizer.json"


def _is_quantized(model):
    return any(isinstance(m, (QuantizedLinear, QuantizedEmbedding)) for _, m in model.named_modules())


def save_quantized(folder, model, plan=None, tokenizer=None):
    """Save `model` quantized by `plan` (or an already quantized model, plan=None) into `folder`.

    Returns the quantized model that was saved. When `model` is already quantized, `plan` may be
    omitted; if given it must be the plan the model runs.
    """
    if _is_quantized(model):
        current = plan_of(model)
        if plan is not None and {**current, **validate_plan(model, plan)} != current:
            raise ValueError("save_quantized: model is already quantized with a different plan; "
                             "pass the fp32 model or plan=None")
        qmodel = model
    else:
        if plan is None:
            raise ValueError("save_quantized: model is fp32; pass the plan to quantize it with")
        qmodel = apply_plan(model, plan)
    config = _config_dict(qmodel)
    arrays = {}
    tied = tied_layers(qmodel)
    for name in plan_of(qmodel):
        m = get_module(qmodel, name)
        if isinstance(m, (QuantizedLinear, QuantizedEmbedding)):
            arrays.update(m.weight.arrays(f"{name}.weight"))
            if getattr(m, "bias", None) is not None:
                arrays[f"{name}.bias"] = m.bias
    for pname, t in qmodel.named_parameters():
        arrays.setdefault(pname, np.asarray(t.data))
    os.makedirs(folder, exist_ok=True)
    save_npz(os.path.join(folder, WEIGHTS_FILE), arrays)
    save_json(os.path.join(folder, META_FILE), {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config,
        "plan": plan_of(qmodel), "tied": tied, "weight_bytes": weight_bytes(qmodel)})
    if tokenizer is not None:
        tokenizer.save(os.path.join(folder, TOKENIZER_FILE))
    return qmodel


def load_quantized(folder):
    """Load a model saved by save_quantized: its layers hold the saved int8/fp16 arrays as they are."""
    meta_path, weights_path = os.path.join(folder, META_FILE), os.path.join(folder, WEIGHTS_FILE)
    meta = load_json(meta_path, what="quantized model description")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{meta_path} is not a tinylm quantized model (expected \"format\": "
                         f"\"{CHECKPOINT_FORMAT}\")")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{meta_path}: quantized model version {meta.get('version')!r} is not supported "
                         f"(this tinylm reads version {CHECKPOINT_VERSION})")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("plan"), dict):
        raise ValueError(f"{meta_path}: missing \"config\" or \"plan\"")
    try:
        config = GPTConfig.from_dict(meta["config"])
    except ValueError as exc:
        raise ValueError(f"{meta_path}: config does not describe a GPT: {exc}") from None
    arrays = load_npz(weights_path, what="quantized weights")

    def take(key, dtype, shape=None):
        if key not in arrays:
            raise ValueError(f"{weights_path} has no array {key!r} (needed by the plan in {META_FILE})")
        a = arrays[key]
        if a.dtype != dtype or (shape is not None and a.shape != tuple(shape)):
            raise ValueError(f"{weights_path}: {key!r} has dtype {a.dtype} and shape {a.shape}; expected "
                             f"{np.dtype(dtype)}" + (f" {tuple(shape)}" if shape is not None else ""))
        return a

    def put_quantized_layers(model):
        """Replace each layer the plan quantizes by one holding the saved arrays, as they are; return
        the names of the arrays used."""
        used = set()
        try:
            plan = validate_plan(model, meta["plan"])
        except (TypeError, ValueError) as exc:  # e.g. a precision that is a number: the file is at fault
            raise ValueError(f"{meta_path}: {exc}") from None
        tied = tied_layers(model)
        for name, precision in plan.items():
            if precision == "fp32":
                continue
            module = get_module(model, name)
            shape = module.weight.data.shape
            try:
                storage = PRECISIONS[parse_precision(precision)[0]].storage.from_arrays(take, f"{name}.weight", shape)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{weights_path}: layer {name!r}: {exc}") from None
            if storage.label != precision:
                raise ValueError(f"{weights_path}: layer {name!r} holds {storage.label} arrays but the plan "
                                 f"says {precision}")
            has_bias = is_linear(module) and getattr(module, "bias", None) is not None
            bias = take(f"{name}.bias", np.float32, (shape[0],)) if has_bias else None
            put_storage(model, name, storage, bias, tied)
            used.update(k for k in arrays if k == f"{name}.bias" or k.startswith(f"{name}.weight."))
        return used

    return build_model(config, {k: a.shape for k, a in arrays.items()}, arrays.items(), weights_path,
                       prepare=put_quantized_layers)


def load_tokenizer(folder):
    """The tokenizer saved beside a quantized model, or None when it was saved without one."""
    path = os.path.join(folder, TOKENIZER_FILE)
    return Tokenizer.load(path) if os.path.exists(path) else None


def _config_dict(model):
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError("save_quantized: model has no .config; expected a tinylm GPT")
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(vars(config))

