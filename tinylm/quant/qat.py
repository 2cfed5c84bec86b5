"""Quantization-aware fine-tuning: train with the quantization error in the forward pass.

A layer lowered to int4 after training loses what its rounding throws away (+6.7% perplexity for
uniform int4:g32 on benchmarks/planner_int4.py's model). Fine-tuning with *fake quantization* lets the
other weights compensate: the forward pass uses the weight as it will be stored,

    w_q = w + stopgrad(dequantize(quantize(w)) - w)        # = dequantize(quantize(w)) in value

and the backward pass treats rounding as the identity (the straight-through estimator): d loss / d w
= d loss / d w_q, because the added term is a constant. The scales are recomputed from the current
weights at every forward pass (not learned), with exactly the quantizer the saved model will use.

    >>> qat = fake_quantize(model, uniform_plan(model, "int4:g32"))   # model's Linear layers wrapped
    >>> train(qat, train_ids, val_ids, config)                         # an ordinary training run
    >>> plain = strip_fake_quantize(qat)                                # Linear layers again, new weights

Only Linear layers (the output head included) are fake-quantized; embedding lookups (the tied wte,
wpe) see fp32 weights while training, and are quantized as the plan says when it is applied.
"""
from __future__ import annotations

from tinylm import nn
from tinylm.autograd import Tensor, linear
from tinylm.quant.plan import get_module, is_linear, set_module, validate_plan
from tinylm.quant.precisions import make_storage


class FakeQuantLinear(nn.Linear):
    """A Linear layer whose forward pass uses its weight rounded to `precision` (straight-through).

    It holds the SAME weight and bias Tensors as the Linear it wraps, so an optimizer updates them and
    a tied weight stays tied."""

    def __init__(self, lin, precision):
        nn.Module.__init__(self)
        self.in_features, self.out_features = lin.in_features, lin.out_features
        self.weight, self.bias = lin.weight, lin.bias
        self.precision = precision

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        w = self.weight.data                                                 # (out, in) float32
        error = make_storage(w, self.precision).dequantize() - w             # what rounding changes
        return linear(x, self.weight + Tensor(error), self.bias)             # (..., out)

    def plain(self):
        """The ordinary Linear layer with the current weights."""
        lin = nn.Linear.__new__(nn.Linear)
        nn.Module.__init__(lin)
        lin.in_features, lin.out_features = self.in_features, self.out_features
        lin.weight, lin.bias = self.weight, self.bias
        return lin

    def extra_repr(self):
        return f"{super().extra_repr()}, fake {self.precision}"


def fake_quantize(model, plan):
    """Wrap, in place, every Linear layer the plan lowers (not fp32) in a FakeQuantLinear; returns model."""
    for name, precision in validate_plan(model, plan).items():
        m = get_module(model, name)
        if precision != "fp32" and is_linear(m) and not isinstance(m, FakeQuantLinear):
            set_module(model, name, FakeQuantLinear(m, precision))
    return model


def strip_fake_quantize(model):
    """Undo fake_quantize in place: plain Linear layers holding the fine-tuned weights; returns model."""
    for name, m in list(model.named_modules()):
        if isinstance(m, FakeQuantLinear):
            set_module(model, name, m.plain())
    return model
