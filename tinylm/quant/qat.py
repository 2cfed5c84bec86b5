"""Quantization-aware fine-tuning: train with the quantization error in the forward pass.

A layer lowered to int4 after training loses what its rounding throws away (benchmarks/qat_int4.py
measures it on the Shakespeare benchmark model). Fine-tuning with *fake quantization* lets the weights
settle where rounding hurts least: the forward pass uses each weight as it will be stored,

    w_q = w + stopgrad(dequantize(quantize(w)) - w)        # = dequantize(quantize(w)) in value

and the backward pass treats rounding as the identity (the straight-through estimator): d loss / d w
= d loss / d w_q, because the added term is a constant. The scales are **recomputed** from the current
weights at every forward pass (max |w| / 7 per group for int4), not learned: exactly the quantizer
`apply_plan` uses afterwards, so the fine-tuned fp32 weights re-quantize to the very values the
training saw, and the saved model exports like any quantized model.

    >>> qat = fake_quantize(model, uniform_plan(model, "int4:g32"))   # lowered layers wrapped, in place
    >>> train(qat, train_ids, val_ids, config)                         # an ordinary training run
    >>> plain = strip_fake_quantize(qat)                                # plain layers again, new weights
    >>> small = apply_plan(plain, plan)                                 # what the training saw

Every lowered layer is fake-quantized, embedding tables included: the token embedding that shares its
matrix with the output head (GPT's tied `wte` / `lm_head`) looks its rows up in the same rounded
matrix the head multiplies by, and the position embedding is rounded when the plan lowers it. (An
earlier version rounded only the Linear layers, so the training saw fp32 embeddings that the shipped
model does not have; on the Shakespeare benchmark model that version recovers much less:
benchmarks/qat_int4.py runs both.) Not simulated: the int8 rounding of each activation row that the
int8 and int4 kernels do; it costs far less than the weights' rounding.
"""
from __future__ import annotations

from tinylm import nn
from tinylm.autograd import Tensor, embedding, linear
from tinylm.quant.plan import get_module, is_embedding, is_linear, set_module, tied_layers, validate_plan
from tinylm.quant.precisions import make_storage


def _rounded(weight, precision):
    """weight (a Tensor) as `precision` stores it, with the straight-through gradient to weight."""
    w = weight.data                                                  # (out, in) float32
    error = make_storage(w, precision).dequantize() - w              # what rounding changes, a constant
    return weight + Tensor(error)


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
        return linear(x, _rounded(self.weight, self.precision), self.bias)   # (..., out)

    def plain(self):
        """The ordinary Linear layer with the current weights."""
        lin = nn.Linear.__new__(nn.Linear)
        nn.Module.__init__(lin)
        lin.in_features, lin.out_features = self.in_features, self.out_features
        lin.weight, lin.bias = self.weight, self.bias
        return lin

    def extra_repr(self):
        return f"{super().extra_repr()}, fake {self.precision}"


class FakeQuantEmbedding(nn.Embedding):
    """An Embedding whose lookup reads its table rounded to `precision` (straight-through); it holds
    the SAME weight Tensor as the Embedding it wraps (a table tied to the output head stays tied)."""

    def __init__(self, emb, precision):
        nn.Module.__init__(self)
        self.num_embeddings, self.embedding_dim = emb.num_embeddings, emb.embedding_dim
        self.weight = emb.weight
        self.precision = precision

    def forward(self, idx):
        return embedding(_rounded(self.weight, self.precision), idx)        # (..., embedding_dim)

    def plain(self):
        """The ordinary Embedding with the current table."""
        emb = nn.Embedding.__new__(nn.Embedding)
        nn.Module.__init__(emb)
        emb.num_embeddings, emb.embedding_dim = self.num_embeddings, self.embedding_dim
        emb.weight = self.weight
        return emb

    def extra_repr(self):
        return f"{super().extra_repr()}, fake {self.precision}"


def fake_quantize(model, plan):
    """Wrap, in place, every layer the plan lowers (not fp32) in a FakeQuantLinear or FakeQuantEmbedding,
    an embedding tied to a lowered Linear included; returns model."""
    tied = tied_layers(model)                                        # {linear name: embedding name}
    for name, precision in validate_plan(model, plan).items():
        if precision == "fp32":
            continue
        for target in (name, tied.get(name)):
            m = None if target is None else get_module(model, target)
            if isinstance(m, (FakeQuantLinear, FakeQuantEmbedding)) or m is None:
                continue
            if is_linear(m) and isinstance(m, nn.Linear):
                set_module(model, target, FakeQuantLinear(m, precision))
            elif is_embedding(m) and isinstance(m, nn.Embedding):
                set_module(model, target, FakeQuantEmbedding(m, precision))
            else:
                raise ValueError(f"fake_quantize: layer {target!r} is already quantized "
                                 f"({type(m).__name__}); fine-tune the float model")
    return model


def strip_fake_quantize(model):
    """Undo fake_quantize in place: plain layers holding the fine-tuned weights; returns model."""
    for name, m in list(model.named_modules()):
        if isinstance(m, (FakeQuantLinear, FakeQuantEmbedding)):
            set_module(model, name, m.plain())
    return model
