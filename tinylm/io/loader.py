"""The one way tinylm turns stored weights into a model: build it empty, check, fill, switch to eval.

Every format tinylm reads (run folders, quantized models, Hugging Face GPT-2 folders, the formats that
come later) ends here. The format's own module reads its config and lists its tensors in tinylm's
names and layout; `build_model` does the rest the same way for all of them:

    1. build the model under nn.skip_init() (zeros allocated, no random numbers drawn);
    2. let the caller put special layers in place (`prepare`: e.g. quantized layers, whose weights are
       not parameters; it fills them itself and returns the names of the stored arrays it used);
    3. compare the stored names and shapes with the model's parameters: every missing, unexpected or
       mis-shaped tensor is named in one error, before any weight is copied;
    4. copy the tensors in one at a time (a lazy source never holds the weights twice in memory);
    5. model.eval().

    >>> import numpy as np
    >>> from tinylm.model import GPTConfig
    >>> config = GPTConfig(vocab_size=8, block_size=4, n_layer=1, n_head=1, n_embd=4)
    >>> build_model(config, {"transformer.wte.weight": (8, 4)}, [], "demo.npz")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: demo.npz does not match the model its config.json describes: missing transformer.wpe.weight, ...
"""
from __future__ import annotations

import numpy as np

from tinylm import nn
from tinylm.model import GPT, GPTConfig


def _first_few(names):
    return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")


def build_model(config, shapes, tensors, source, prepare=None, widen=False):
    """A GPT in eval mode holding the stored weights.

    config    a GPTConfig (a format module reads it from its own file, with its own errors)
    shapes    {name: shape} of every stored parameter, in tinylm's names and (out, in) layout
    tensors   iterable of (name, array) pairs for those names, read lazily, one at a time
    source    the file named in errors
    prepare   optional function(model) -> names, run before the check, for layers the caller fills
              itself; the stored arrays it names are left out of the check and the copy
    widen     accept float16/float64 weights and convert them to float32 (formats that store them);
              otherwise a weight must be float32, so a file never changes precision silently
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"build_model: config must be a GPTConfig, got {type(config).__name__}")
    with nn.skip_init():  # the weights come from the file: drawing random ones first would waste seconds
        model = GPT(config)
    used = set(prepare(model)) if prepare is not None else set()
    shapes = {n: shape for n, shape in shapes.items() if n not in used}
    params = dict(model.named_parameters())
    missing = [n for n in params if n not in shapes]
    unexpected = [n for n in shapes if n not in params]
    wrong = [f"{n} is {tuple(shapes[n])} in the file, {params[n].data.shape} in the model"
             for n in params if n in shapes and tuple(shapes[n]) != params[n].data.shape]
    problems = ([f"missing {_first_few(missing)}"] if missing else []) \
        + ([f"unexpected {_first_few(unexpected)}"] if unexpected else []) + wrong[:3]
    if problems:
        raise ValueError(f"{source} does not match the model its config.json describes: " + "; ".join(problems))
    for name, value in tensors:
        if name in used:
            continue
        value = np.asarray(value)
        if value.dtype != np.float32 and not (widen and value.dtype.kind == "f"):
            raise ValueError(f"{source}: {name} has dtype {value.dtype}; expected float32 weights")
        params[name].data[...] = value
    model.eval()
    return model
