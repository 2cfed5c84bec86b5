"""Smaller models: fp16 and int8 weights, precision plans per layer, quantized checkpoints, a planner.

    >>> from tinylm.quant import apply_plan, uniform_plan, weight_bytes
    >>> small = apply_plan(model, uniform_plan(model, "int8:g32"))   # model is left as it was
    >>> weight_bytes(small)                     # {'fp32': ..., 'fp16': 0, 'int8': ..., 'total': ...}

- `layers`:     Fp16Linear, Int8Linear, QuantizedEmbedding and the weight storages they wrap
- `plan`:       precision strings ("fp16", "int8:g32", "int8:channel"), plans, apply_plan, weight_bytes
- `checkpoint`: save_quantized / load_quantized (int8 and fp16 arrays in .npz, never re-quantized)
- `planner`:    evaluation on fixed validation batches, per-layer sensitivity, the byte/perplexity
                planner, the comparison report (used by `tinylm quantize`)
"""
from tinylm.quant.checkpoint import load_quantized, save_quantized
from tinylm.quant.layers import (Fp16Linear, Fp16Weight, Int8Linear, Int8Weight, QuantizedEmbedding,
                                 QuantizedLinear)
from tinylm.quant.plan import (apply_plan, canonical_precision, load_plan, parse_precision, plan_of,
                               quantizable_layers, save_plan, uniform_plan, validate_plan, weight_bytes)

__all__ = [
    "Fp16Linear", "Int8Linear", "QuantizedEmbedding", "QuantizedLinear", "Fp16Weight", "Int8Weight",
    "apply_plan", "canonical_precision", "load_plan", "parse_precision", "plan_of", "quantizable_layers",
    "save_plan", "uniform_plan", "validate_plan", "weight_bytes", "save_quantized", "load_quantized",
]
