"""Neural-network building blocks on the autograd engine: Module, Linear, Embedding, LayerNorm, ...

A `Module` is a bag of parameters (Tensors with requires_grad=True) and sub-modules, found simply by
looking at its attributes in the order they were assigned, so their dotted names follow the code:

    >>> class MLP(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = Linear(2, 3, rng=np.random.default_rng(0))
    ...         self.proj = Linear(3, 1, rng=np.random.default_rng(1))
    ...     def forward(self, x):
    ...         return self.proj(self.fc(x).relu())
    >>> [name for name, p in MLP().named_parameters()]
    ['fc.weight', 'fc.bias', 'proj.weight', 'proj.bias']

Weights are stored like PyTorch's nn.Linear, (out_features, in_features), and y = x @ W.T + b, so a
checkpoint maps one to one onto GPT-2's names and shapes. Every initialisation takes a `rng`
(np.random.Generator): the same seed gives the same model.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from tinylm.autograd import Tensor, dropout, embedding, layer_norm, linear, rms_norm

_default_rng = np.random.default_rng(0)


def manual_seed(seed):
    """Reseed the generator used by modules built without an explicit `rng` (tests, tutorials)."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


_skipping_init = []  # non-empty inside skip_init()


@contextlib.contextmanager
def skip_init():
    """Build modules without drawing their initial weights (Linear and Embedding get zeros), for a
    model whose weights are loaded from a file right after: random numbers that would be overwritten
    cost GPT-2 124M ~4 s. No generator is advanced inside the block.

    >>> with skip_init():
    ...     layer = Linear(3, 2)
    >>> float(abs(layer.weight.data).sum())
    0.0
    """
    _skipping_init.append(True)
    try:
        yield
    finally:
        _skipping_init.pop()


def init_skipped():
    """True inside skip_init(): modules with their own initialisation (GPT) skip it too."""
    return bool(_skipping_init)


def _normal_(a, rng, std):
    """Fill float32 array `a` with N(0, std^2) in place: no float64 copy of a 38M-number embedding."""
    rng.standard_normal(dtype=np.float32, out=a)
    a *= np.float32(std)


def _rng(rng):
    if rng is None:
        return _default_rng
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


# ----------------------------------------------------------------------------------------------
# Module


class Module:
    """Base class: subclasses assign parameters and sub-modules in __init__ and define forward()."""

    def __init__(self):
        self.training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    # -- what a module holds ----------------------------------------------------------------------

    def _items(self):
        """(attribute name, Tensor parameter or Module) in assignment order."""
        for name, value in vars(self).items():
            if isinstance(value, Module) or (isinstance(value, Tensor) and value.requires_grad):
                yield name, value

    def children(self):
        """The direct sub-modules, in assignment order."""
        return [m for _, m in self._items() if isinstance(m, Module)]

    def modules(self):
        """This module and every module below it (depth first, each once)."""
        out, seen = [], set()

        def visit(m):
            if id(m) in seen:
                return
            seen.add(id(m))
            out.append(m)
            for child in m.children():
                visit(child)

        visit(self)
        return out

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module ('') and every module below it, depth first, in
        assignment order: 'transformer', 'transformer.h', 'transformer.h.0', ... A module reachable
        under two names (shared) is listed under each."""
        yield prefix, self
        for name, value in self._items():
            if isinstance(value, Module):
                yield from value.named_modules(f"{prefix}.{name}" if prefix else name)

    def _all_named_parameters(self, prefix=""):
        """Every (dotted name, parameter), a shared parameter once per name it is reachable under."""
        for name, value in self._items():
            if isinstance(value, Module):
                yield from value._all_named_parameters(f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", value

    def named_parameters(self):
        """[(dotted name, parameter)], e.g. ("transformer.h.0.attn.c_attn.weight", Tensor). A parameter
        shared by two modules (tied weights) appears once, under the first name it is reached by."""
        out, seen = [], set()
        for name, p in self._all_named_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append((name, p))
        return out

    def parameters(self):
        """Every parameter once (tied weights are counted once)."""
        return [p for _, p in self.named_parameters()]

    # -- modes and gradients ----------------------------------------------------------------------

    def train(self, mode=True):
        """Training mode (dropout active) for this module and all below it; returns self."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (dropout off); returns self."""
        return self.train(False)

    def zero_grad(self):
        """Forget the accumulated gradients (set to None: the next backward starts from fresh buffers)."""
        for p in self.parameters():
            p.grad = None

    # -- saving and loading ----------------------------------------------------------------------

    def state_dict(self):
        """{dotted name: copy of the parameter's array}; a tied weight is stored once, under its first name."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters (in place, so optimizers holding them keep working).

        strict=True: the names must be exactly those of state_dict() (a second name of a tied weight is
        also accepted); otherwise ValueError listing what is missing or unexpected. A shape mismatch is
        always an error. Returns the list of names loaded.
        """
        by_name = dict(self._all_named_parameters())  # every name, aliases of tied weights included
        first = self.named_parameters()
        unexpected = sorted(k for k in state_dict if k not in by_name)
        provided = {id(by_name[k]) for k in state_dict if k in by_name}
        missing = [name for name, p in first if id(p) not in provided]
        if strict and (unexpected or missing):
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected {', '.join(unexpected)}")
            raise ValueError(f"load_state_dict: {'; '.join(parts)}")
        loaded = []
        for name, value in state_dict.items():
            if name not in by_name:
                continue
            p = by_name[name]
            value = np.asarray(value)
            if value.shape != p.data.shape:
                raise ValueError(f"load_state_dict: {name} has shape {value.shape} in the state dict; "
                                 f"the model expects {p.data.shape}")
            if value.dtype.kind not in "fiu":
                raise ValueError(f"load_state_dict: {name} has dtype {value.dtype}; expected numbers")
            p.data[...] = value
            loaded.append(name)
        return loaded

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in vars(self).items():
            if isinstance(child, Module):
                lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"

    def extra_repr(self):
        return ""


# ----------------------------------------------------------------------------------------------
# layers


class Linear(Module):
    """y = x @ weight.T + bias for x of shape (..., in_features) -> (..., out_features).

    weight (out_features, in_features) and bias (out_features,) start uniform in +-1/sqrt(in_features),
    PyTorch's default, so the output's scale does not grow with the width. A model with its own scheme
    calls `reset_parameters(rng, std)` (GPT: N(0, 0.02), zero bias).
    """

    def __init__(self, in_features, out_features, bias=True, rng=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Tensor(np.zeros((out_features, in_features), np.float32), requires_grad=True)  # (out, in)
        self.bias = Tensor(np.zeros(out_features, np.float32), requires_grad=True) if bias else None  # (out,)
        if not init_skipped():  # inside skip_init() the weights are about to be loaded: allocate, do not draw
            bound = 1.0 / math.sqrt(in_features)
            rng = _rng(rng)
            self.weight.data[...] = rng.uniform(-bound, bound, (out_features, in_features))
            if bias:
                self.bias.data[...] = rng.uniform(-bound, bound, out_features)

    def reset_parameters(self, rng, std):
        """weight ~ N(0, std^2), drawn in place in float32; bias = 0."""
        _normal_(self.weight.data, rng, std)
        if self.bias is not None:
            self.bias.data[...] = 0.0

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear: input has shape {x.shape}; expected (..., {self.in_features})")
        return linear(x, self.weight, self.bias)  # (..., out_features)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A table of num_embeddings vectors of size embedding_dim; forward(idx) picks rows: (...) -> (..., C).
    Initialised N(0, 1) like PyTorch (GPT calls reset_parameters(rng, 0.02))."""

    def __init__(self, num_embeddings, embedding_dim, rng=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Tensor(np.zeros((num_embeddings, embedding_dim), np.float32), requires_grad=True)
        if not init_skipped():
            self.weight.data[...] = _rng(rng).standard_normal((num_embeddings, embedding_dim))

    def reset_parameters(self, rng, std):
        """weight ~ N(0, std^2), drawn in place in float32."""
        _normal_(self.weight.data, rng, std)

    def forward(self, idx):
        return embedding(self.weight, idx)  # (..., embedding_dim)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalise the last axis (size n) to mean 0, variance 1, then scale (weight, ones) and shift (bias,
    zeros; none when bias=False). Its initial values are its own: no model re-initialises a norm."""

    def __init__(self, n, eps=1e-5, bias=True):
        super().__init__()
        self.n, self.eps = n, eps
        self.weight = Tensor(np.ones(n, np.float32), requires_grad=True)
        self.bias = Tensor(np.zeros(n, np.float32), requires_grad=True) if bias else None

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        if x.shape[-1:] != (self.n,):
            raise ValueError(f"LayerNorm: input has shape {x.shape}; expected (..., {self.n})")
        return layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.n}, eps={self.eps}, bias={self.bias is not None}"


class RMSNorm(Module):
    """Llama's norm: divide the last axis (size n) by its root mean square, then scale (weight, ones).
    No mean, no bias (tinylm.autograd.rms_norm). Its initial values are its own, like LayerNorm's."""

    def __init__(self, n, eps=1e-5):
        super().__init__()
        self.n, self.eps = n, eps
        self.weight = Tensor(np.ones(n, np.float32), requires_grad=True)

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        if x.shape[-1:] != (self.n,):
            raise ValueError(f"RMSNorm: input has shape {x.shape}; expected (..., {self.n})")
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.n}, eps={self.eps}"


class Dropout(Module):
    """Zero activations with probability p while training (scaling the rest by 1/(1-p)); identity in eval."""

    def __init__(self, p, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = _rng(rng) if rng is not None else np.random.default_rng(_default_rng.integers(2**63))

    def forward(self, x):
        return dropout(x, self.p, self.training, self.rng)

    def extra_repr(self):
        return f"p={self.p}"


# ----------------------------------------------------------------------------------------------
# containers


class Sequential(Module):
    """Modules applied one after the other: Sequential(Linear(2, 8), ReLU(), Linear(8, 1))."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __iter__(self):
        return iter(self.children())

    def __len__(self):
        return len(self.children())

    def __getitem__(self, i):
        return self.children()[i]

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters are registered, named by position: h.0.attn..., h.1.attn..."""

    def __init__(self, modules=()):
        super().__init__()
        self._n = 0
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: expected a Module, got {type(module).__name__}")
        setattr(self, str(self._n), module)
        self._n += 1
        return self

    def __iter__(self):
        return (getattr(self, str(i)) for i in range(self._n))

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [getattr(self, str(j)) for j in range(self._n)[i]]
        if not -self._n <= i < self._n:
            raise IndexError(f"ModuleList: index {i} out of range for {self._n} modules")
        return getattr(self, str(i % self._n))


class ReLU(Module):
    """max(x, 0) as a module, for Sequential."""

    def forward(self, x):
        return x.relu()


class Tanh(Module):
    """tanh(x) as a module, for Sequential."""

    def forward(self, x):
        return x.tanh()


class GELU(Module):
    """GELU (tanh approximation) as a module, for Sequential."""

    def forward(self, x):
        return x.gelu()
