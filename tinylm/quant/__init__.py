"""Smaller models: fp16, int8 and int4 weights, precision plans per layer, a planner.

    >>> from tinylm.quant import apply_plan, uniform_plan, weight_bytes
    >>> small = apply_plan(model, uniform_plan(model, "int8:g32"))   # model is left as it was
    >>> weight_bytes(small)                     # {'fp32': ..., 'fp16': 0, 'int8': ..., 'total': ...}

- `layers`:      Fp16Linear, Int8Linear, QuantizedEmbedding and the weight storages they wrap
- `precisions`:  the registry: precision name -> storage class, bytes, parser (add a precision here)
- `plan`:        plans ({layer: "int8:g32", ...}), apply_plan, weight_bytes
- `evaluate`:    evaluation on fixed validation batches, the comparison report
- `planner`:     per-layer sensitivity, the byte/perplexity planner (used by `tinylm quantize`), and
                 plan_greedy, which re-measures the whole plan after each step
- `qat`:         fake quantization (straight-through) for quantization-aware fine-tuning

Quantized models are saved and loaded by tinylm.io.quantized (save_quantized, load_quantized).
"""
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
from tinylm.quant.plan import (
                                 apply_plan,
                                 load_plan,
                                 plan_of,
                                 quantizable_layers,
                                 save_plan,
                                 uniform_plan,
                                 validate_plan,
                                 weight_bytes,
)
from tinylm.quant.precisions import PRECISIONS, canonical_precision, parse_precision

__all__ = [
    "Fp16Linear", "Int8Linear", "QuantizedEmbedding", "QuantizedLinear", "Fp16Weight", "Int8Weight",
    "Int4Linear", "Int4Weight",
    "apply_plan", "canonical_precision", "load_plan", "parse_precision", "plan_of", "quantizable_layers",
    "save_plan", "uniform_plan", "validate_plan", "weight_bytes", "PRECISIONS",
]
