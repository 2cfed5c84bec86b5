"""The autograd engine in two floors, imported together as `tinylm.autograd`.

    engine.py       Tensor, the graph and its backward pass, the primitive operations (each forward
                    beside its backward), no_grad, cat, split
    functional.py   the fused operations a transformer needs, each with its hand-derived backward:
                    linear, softmax, log_softmax, layer_norm, rms_norm, rope, cross_entropy,
                    scaled_dot_product_attention, self_attention, gelu, swiglu, dropout, embedding, index_add

    >>> from tinylm.autograd import Tensor, gelu
    >>> x = Tensor([0.0, 1.0], requires_grad=True)
    >>> gelu(x).sum().backward()
    >>> [round(g, 4) for g in x.grad.tolist()]
    [0.5, 1.083]
"""
from tinylm.autograd.engine import Tensor, cat, is_grad_enabled, no_grad, split
from tinylm.autograd.functional import (
                                        cross_entropy,
                                        dropout,
                                        embedding,
                                        gelu,
                                        index_add,
                                        layer_norm,
                                        linear,
                                        log_softmax,
                                        rms_norm,
                                        rope,
                                        rope_angles,
                                        scaled_dot_product_attention,
                                        self_attention,
                                        softmax,
                                        swiglu,
)

# The fused operations that PyTorch also offers as methods (x.gelu(), x.softmax(-1)). Attached here,
# where both floors are known, so that engine.py never imports functional.py.
Tensor.gelu = gelu
Tensor.softmax = softmax
Tensor.log_softmax = log_softmax

__all__ = ["Tensor", "cat", "cross_entropy", "dropout", "embedding", "gelu", "index_add", "is_grad_enabled",
           "layer_norm", "linear", "log_softmax", "no_grad", "rms_norm", "rope", "rope_angles",
           "scaled_dot_product_attention", "self_attention", "softmax", "split", "swiglu"]
