"""The one way tinylm turns stored weights into a model: build it empty, check, fill, switch to eval.

Every format tinylm reads (run folders, quantized models, Hugging Face GPT-2 folders, the formats that
come later) ends here. The format's own module reads its config and lists its tensors in tinylm's
names and layout; `build_model` does the rest the same way for all of them:

    0. check the config's sizes against the file before anything is allocated (`check_sizes`): a
       473-byte config.json saying n_layer=100000 must not allocate until the machine runs out;
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

from tinylm import nn, process
from tinylm.model import GPT, GPTConfig

SIZE_SLACK = 8  # a config may imply at most this many times the numbers its weight file holds


def _first_few(names):
    return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")


def parameter_estimate(config):
    """The number of parameters of a GPT with these sizes (GPT-2's layout, biases included, the tied
    output layer counted once): what building it will allocate, known before building it.

    >>> parameter_estimate(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))
    124439808
    """
    C = config.n_embd
    mlp = 8 * C * C + 5 * C  # c_fc (C -> 4C) and c_proj (4C -> C), with biases
    if config.n_expert:
        mlp = config.n_expert * mlp + C * config.n_expert  # the experts and the router
    block = 4 * C  # ln_1, ln_2
    block += 4 * C * C + 4 * C  # c_attn (C -> 3C) and c_proj (C -> C), with biases
    return config.vocab_size * C + config.block_size * C + config.n_layer * (block + mlp) + 2 * C


def check_sizes(config, shapes, source):
    """Before a model is built: the sizes in its config must fit the tensors stored in `source`
    ({name: shape}), and the model must fit in memory. Both failures name the sizes.

    The stored tensors exist (their bytes are in the file), so comparing the number of parameters the
    config implies with the numbers the file holds bounds what a config can make tinylm allocate by
    a small multiple of the file's size. The comparison is loose (SIZE_SLACK times, plus a million):
    it is there to stop a config that asks for thousands of times what the file holds; a config that
    is merely wrong is named tensor by tensor by the exact check after the model is built.
    """
    stored = 0
    for shape in shapes.values():
        count = 1
        for n in shape:
            count *= int(n)
        stored += count
    needed = parameter_estimate(config)
    sizes = (f"vocab_size={config.vocab_size}, block_size={config.block_size}, n_layer={config.n_layer}, "
             f"n_embd={config.n_embd}" + (f", n_expert={config.n_expert}" if config.n_expert else ""))
    if needed > SIZE_SLACK * stored + 1_000_000:
        raise ValueError(f"{source} holds {stored:,} numbers, but its config ({sizes}) describes a model of "
                         f"{needed:,} parameters: the config does not belong to these weights")
    process.check_fits_in_memory(4 * needed, f"the model of {source} ({sizes}, {needed:,} parameters)")


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
    check_sizes(config, shapes, source)
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
