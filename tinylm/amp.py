"""Mixed-precision training: fp16 (or emulated bf16) compute, fp32 master weights, dynamic loss scaling.

The weights the optimizer updates stay float32 ("master weights"). At every forward pass each Linear
layer rounds its weight to half precision, and the activations and gradients that flow between the
layers are stored in half precision: about half the bytes of what a training step keeps for its
backward pass. What runs in which precision, and why:

    op                              storage            math      why
    Linear (x @ W.T + b)            fp16 in, fp16 out   fp32 sums  tinylm.kernels.matmul_f16: fp16 values, fp32
                                                                 accumulation, like a GPU's tensor cores
    attention scores, softmax, P v  fp16 q, k, v, P, y  fp32      exp and the row sums of a softmax lose
                                                                 too much in fp16 (a sum per row)
    GELU                            fp16 in, fp16 out   fp32      as a GPU kernel: load half, compute fp32,
                                                                 store half (recomputed in backward)
    residual adds, dropout          fp16                fp16      each result rounded to fp16
    LayerNorm / RMSNorm             fp16 in, fp16 out   fp32      a row's mean and variance: fp16's 11-bit
                                                                 mantissa would lose the small terms
                                                                 (recomputed in backward: no fp32 kept)
    embedding lookup                fp32 table          -         rows are rounded to fp16 as they leave
    output head (lm_head)           fp16 in, fp32 out   fp32 sums  the logits feed the loss
    cross-entropy, loss             fp32                fp32      log-sum-exp over the vocabulary
    optimizer (AdamW), clipping     fp32                fp32      an update below 2^-11 of its weight
                                                                 vanishes in fp16

The failure this prevents: fp16's smallest positive number is 2^-24 ~ 6e-8 (normal numbers start at
2^-14 ~ 6e-5), and the gradients of a language model are small: the loss is a mean over B*T tokens, so
every logit's gradient carries a factor 1/(B*T). Stored in fp16 many of them round to exactly zero
and the weights they belong to stop learning. Loss scaling multiplies the loss by S before backward,
so every gradient is S times larger while it is stored in fp16, and divides the fp32 master gradients
by S before the update (the same update, without the underflow). S is chosen dynamically
(`LossScaler`): too large and a gradient overflows to inf (fp16's largest is 65504); then the step is
skipped and S halved. The constants are PyTorch's GradScaler's: S starts at 2^16, halves on an inf or
NaN, and doubles after 2000 clean steps in a row.

bf16 (bfloat16: fp32's 8-bit exponent, a 7-bit mantissa) is not a NumPy dtype. It is EMULATED: float32
arrays rounded to bf16's mantissa (round to nearest even, `round_bf16`) at the inputs, outputs,
weights and gradients of every Linear layer, norm and embedding; the attention core and the
elementwise operations between them see those rounded values but keep their fp32 results.
Its memory is therefore fp32's (the emulation does not save bytes; real bf16 would save what fp16 does).
Its range is fp32's, so it needs no loss scaling (LossScaler is used with a fixed scale of 1).

    >>> scaler = LossScaler()
    >>> with autocast(model, "fp16"):               # Linear, norm, embedding layers wrapped  # doctest: +SKIP
    ...     _, loss = model(x, y)
    ...     (loss * scaler.scale).backward()          # gradients S times larger while in fp16
    >>> if scaler.unscale(params):                   # False: inf/NaN  # doctest: +SKIP
    ...     optimizer.step()
    >>> scaler.update(finite)                        # halve S, or count a clean step  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from tinylm import kernels, nn
from tinylm.autograd import Tensor, embedding, is_grad_enabled, no_grad

PRECISIONS = ("fp32", "fp16", "bf16")

# PyTorch's torch.cuda.amp.GradScaler defaults
INIT_SCALE = 2.0 ** 16
GROWTH_FACTOR = 2.0
BACKOFF_FACTOR = 0.5
GROWTH_INTERVAL = 2000

# -----------------------------------------------------------------------------------------------------
# the two half formats


def round_bf16(a):
    """float32 array -> float32 array holding the nearest bfloat16 values (round to nearest, ties to even).

    bf16 is the top 16 bits of an fp32: sign, 8-bit exponent, 7-bit mantissa. Rounding adds 0x7FFF plus
    the lowest kept bit to the 32-bit pattern, then clears the low 16 bits; NaN stays NaN, inf stays inf,
    a value past bf16's largest (~3.39e38) becomes inf.

    >>> round_bf16(np.array([1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 3.4e38], np.float32)).tolist()   # ties to even
    [1.0, 1.015625, inf]
    """
    a = np.ascontiguousarray(a, dtype=np.float32)
    bits = a.view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)).view(np.float32)
    return np.where(np.isnan(a), a, rounded)


class HalfFormat:
    """How one half format stores an array (`round`) and multiplies two (`matmul`, fp32 sums).

    fp16: float16 arrays; matmul is tinylm.kernels.matmul_f16 (the C kernel; NumPy's float16 matmul is
    ~100x slower). bf16: float32 arrays rounded by round_bf16; matmul is NumPy's float32 matmul, exact
    in its products (two 8-bit mantissas fit fp32's 24) with fp32 sums: what bf16 hardware computes.
    """

    def __init__(self, name):
        if name not in ("fp16", "bf16"):
            raise ValueError(f"mixed precision: unknown half format {name!r}; expected fp16 or bf16")
        self.name = name
        self.dtype = np.dtype(np.float16 if name == "fp16" else np.float32)  # how the values are held
        self.bytes_per_value = 2  # what real hardware stores (the bf16 emulation holds 4)
        self.counting = False  # count_underflow: gradients that were nonzero and rounded to exactly zero
        self.nonzero = self.flushed = 0

    def round(self, a):
        """a (any float dtype) -> the nearest values of this format, stored as self.dtype."""
        if self.name == "fp16":  # the C conversion (NumPy's astype is far slower on subnormal values)
            if a.dtype == np.float16:
                return a
            return kernels.f32_to_f16(a.astype(np.float32, copy=False)).reshape(a.shape)  # > 65504: inf
        return round_bf16(a)

    def widen(self, a):
        """a value of this format as float32 (exact)."""
        if a.dtype == np.float16:
            return kernels.f16_to_f32(a).reshape(a.shape)
        return a.astype(np.float32, copy=False)

    def round_grad(self, a):
        """round(a) for a gradient; while self.counting, also counts its nonzero entries and those of them
        that became exactly zero (underflow: below half the smallest subnormal, 2^-25 for fp16)."""
        r = self.round(a)
        if self.counting:
            nonzero = a != 0
            self.nonzero += int(np.count_nonzero(nonzero))
            self.flushed += int(np.count_nonzero(nonzero & (r == 0)))
        return r

    def matmul(self, x, w):
        """x (M, K) @ w (N, K).T -> (M, N) float32, both inputs already in this format."""
        if self.name == "fp16":
            return kernels.matmul_f16(np.ascontiguousarray(x), np.ascontiguousarray(w))
        return x @ w.T

    def __repr__(self):
        return self.name


# -----------------------------------------------------------------------------------------------------
# operations that change precision, each forward beside its backward


def to_half(x, fmt):
    """x (fp32) -> x rounded to `fmt`. Backward: the half gradient, exactly widened to fp32."""
    if x.dtype == fmt.dtype and fmt.name == "fp16":
        return x  # already half
    return Tensor._make(fmt.round(x.data), (x,), lambda g: (fmt.widen(g),))


def fp32_island(fn, x, params, fmt):
    """y = fn(x) computed in fp32 from the half x, rounded to `fmt`; for a norm, whose statistics need fp32.

    Nothing fp32 is kept for backward: the backward pass recomputes fn in fp32 from the half x it
    already holds (the norm is cheap, its fp32 intermediates are three (B, T, C) arrays) and runs fn's
    own backward, which adds the gradients of `params` (the norm's weight and bias) into their fp32
    .grad directly; dx leaves rounded to `fmt`.
    """
    with no_grad():
        y = fn(Tensor(fmt.widen(x.data))).data

    def backward(g):
        if not is_grad_enabled():
            raise RuntimeError("mixed precision: backward() needs grad mode on (it recomputes the norms)")
        xf = Tensor(fmt.widen(x.data), requires_grad=True)
        fn(xf).backward(fmt.widen(g))
        return (fmt.round_grad(xf.grad),) + (None,) * len(params)

    return Tensor._make(fmt.round(y), (x, *params), backward)


def half_linear(x, weight, bias, fmt, out_float=False):
    """y = x @ weight.T + bias with x (..., in) in `fmt`, weight (out, in) and bias (out,) fp32 masters.

    The weight is rounded to `fmt` for this pass (the copy is kept for backward); every product is in
    fp32 with fp32 sums. y is rounded to `fmt` (out_float=True: kept fp32, for the logits).
    Backward, with g rounded to `fmt` first (it is stored in half precision):
        dx = g @ W16                (N, out) @ (out, in), rounded to fmt
        dW = g^T @ x                (out, N) @ (N, in), rounded to fmt: the gradient that can underflow
        db = sum_rows(g)            fp32 sum, rounded to fmt
    The engine widens dW and db to fp32 as they are added into the master weights' .grad.
    """
    lead = x.shape[:-1]
    x2 = x.data.reshape(-1, x.shape[-1])  # (N, in)
    w16 = fmt.round(weight.data)  # (out, in)
    y = fmt.matmul(x2, w16)  # (N, out) fp32
    if bias is not None:
        y += bias.data
    y = y if out_float else fmt.round(y)

    def backward(g):
        g2 = fmt.round_grad(g.reshape(-1, g.shape[-1]))  # (N, out)
        gx = fmt.round_grad(fmt.matmul(g2, w16.T)).reshape(x.shape) if x.requires_grad else None  # (..., in)
        gw = fmt.round_grad(fmt.matmul(g2.T, x2.T)) if weight.requires_grad else None  # (out, in)
        gb = fmt.round_grad(g2.sum(axis=0, dtype=np.float32)) if bias is not None and bias.requires_grad else None
        return gx, gw, gb

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(y.reshape(lead + (weight.shape[0],)), parents, backward)


# -----------------------------------------------------------------------------------------------------
# the layers of a model, wrapped


class HalfLinear(nn.Linear):
    """A Linear layer computing in a half format. It holds the SAME weight and bias Tensors as the Linear
    it wraps (the fp32 masters), so the optimizer updates them and a tied weight stays tied."""

    def __init__(self, lin, fmt, out_float=False):
        nn.Module.__init__(self)
        self.in_features, self.out_features = lin.in_features, lin.out_features
        self.weight, self.bias = lin.weight, lin.bias
        self.fmt, self.out_float = fmt, out_float

    def forward(self, x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        return half_linear(to_half(x, self.fmt), self.weight, self.bias, self.fmt, self.out_float)  # (..., out)

    def extra_repr(self):
        return f"{super().extra_repr()}, {self.fmt}" + (" -> fp32" if self.out_float else "")


class HalfEmbedding(nn.Embedding):
    """An embedding whose fp32 rows are rounded to the half format as they are looked up."""

    def __init__(self, emb, fmt):
        nn.Module.__init__(self)
        self.num_embeddings, self.embedding_dim = emb.num_embeddings, emb.embedding_dim
        self.weight = emb.weight
        self.fmt = fmt

    def forward(self, idx):
        return to_half(embedding(self.weight, idx), self.fmt)  # (..., C)


class FloatNorm(nn.Module):
    """A LayerNorm or RMSNorm run in fp32 on a half input (fp32_island), its output rounded to half.

    It takes over the attributes of the norm it wraps (the same weight Tensors, eps, ...) and calls that
    norm's class's forward on them, so it works for any norm without knowing its formula."""

    def __init__(self, norm, fmt):
        nn.Module.__init__(self)
        vars(self).update(vars(norm))
        self.float_class, self.fmt = type(norm), fmt

    def forward(self, x):
        x = to_half(x if isinstance(x, Tensor) else Tensor(x), self.fmt)
        params = [p for p in self.parameters() if p.requires_grad]
        return fp32_island(lambda xf: self.float_class.forward(self, xf), x, params, self.fmt)

    def plain(self):
        norm = self.float_class.__new__(self.float_class)
        vars(norm).update({k: v for k, v in vars(self).items() if k not in ("float_class", "fmt")})
        return norm


def _plain_linear(m):
    lin = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(lin)
    lin.in_features, lin.out_features = m.in_features, m.out_features
    lin.weight, lin.bias = m.weight, m.bias
    lin.training = m.training
    return lin


def _plain_embedding(m):
    emb = nn.Embedding.__new__(nn.Embedding)
    nn.Module.__init__(emb)
    emb.num_embeddings, emb.embedding_dim, emb.weight = m.num_embeddings, m.embedding_dim, m.weight
    emb.training = m.training
    return emb


def _set(model, name, new):
    parent_name, _, key = name.rpartition(".")
    parent = model
    for part in parent_name.split(".") if parent_name else ():
        parent = vars(parent)[part]
    new.training = vars(parent)[key].training
    setattr(parent, key, new)


def check_supported(model_config):
    """A ValueError for a model the half-precision wrappers do not cover (a mixture of experts: its router
    and gates are not Linear layers this module wraps)."""
    if getattr(model_config, "n_expert", 0):
        raise ValueError("mixed precision (fp16/bf16) does not support a mixture of experts (n_expert > 0) yet; "
                         "train it in fp32")


def half_model(model, precision):
    """Wrap, in place, every Linear, Embedding and norm of `model` for `precision` ('fp16' or 'bf16', or a
    HalfFormat: its underflow counters then count this model's gradients)."""
    fmt = precision if isinstance(precision, HalfFormat) else HalfFormat(precision)
    check_supported(getattr(model, "config", None))
    for name, m in list(model.named_modules()):
        if not name:
            continue
        if type(m) is nn.Linear:
            _set(model, name, HalfLinear(m, fmt, out_float=(name == "lm_head")))
        elif type(m) is nn.Embedding:
            _set(model, name, HalfEmbedding(m, fmt))
        elif type(m) in (nn.LayerNorm, nn.RMSNorm):
            _set(model, name, FloatNorm(m, fmt))
    return model


def float_model(model):
    """Undo half_model in place: the plain fp32 layers, holding the (trained) master weights."""
    for name, m in list(model.named_modules()):
        if isinstance(m, HalfLinear):
            _set(model, name, _plain_linear(m))
        elif isinstance(m, HalfEmbedding):
            _set(model, name, _plain_embedding(m))
        elif isinstance(m, FloatNorm):
            _set(model, name, m.plain())
    return model


@contextlib.contextmanager
def autocast(model, precision):
    """Within the block, `model` computes in `precision` ('fp32': unchanged; 'fp16', 'bf16' or a HalfFormat);
    afterwards it is fp32 again."""
    if not isinstance(precision, HalfFormat) and precision not in PRECISIONS:
        raise ValueError(f"unknown training precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        yield model
        return
    half_model(model, precision)
    try:
        yield model
    finally:
        float_model(model)


# -----------------------------------------------------------------------------------------------------
# dynamic loss scaling


class LossScaler:
    """The loss scale S of dynamic loss scaling, and its rule.

    Each step: backward of loss * S; then `unscale(params)` divides every .grad by S and says whether
    all are finite. Finite: the step is taken, and after `growth_interval` such steps in a row S doubles.
    Not finite (an fp16 gradient overflowed): the step must be skipped, S halves, the count restarts.
    dynamic=False keeps S fixed (S=1: no scaling, to show what scaling prevents).

    >>> s = LossScaler(init_scale=4.0, growth_interval=2)
    >>> s.update(True); s.update(True); s.scale          # two clean steps: doubled
    8.0
    >>> s.update(False); s.scale, s.skipped              # an overflow: halved, one step skipped
    (4.0, 1)
    """

    def __init__(self, init_scale=INIT_SCALE, growth_interval=GROWTH_INTERVAL, dynamic=True):
        if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"LossScaler: init_scale is {init_scale!r}; expected a positive number")
        self.scale = float(init_scale)
        self.growth_interval = int(growth_interval)
        self.dynamic = bool(dynamic)
        self.clean_steps = 0  # finite steps since the last change of scale
        self.skipped = 0  # steps skipped for an inf/NaN gradient, in the whole run

    def unscale(self, params):
        """Divide each parameter's .grad by the scale, in place; True when every gradient is finite."""
        finite = True
        inv = 1.0 / self.scale
        for p in params:
            if p.grad is not None:
                p.grad *= np.float32(inv)
                finite = finite and bool(np.isfinite(p.grad).all())
        return finite

    def update(self, finite):
        """The rule, after a step whose gradients were `finite` (or not)."""
        if finite:
            self.clean_steps += 1
            if self.dynamic and self.clean_steps >= self.growth_interval:
                self.scale *= GROWTH_FACTOR
                self.clean_steps = 0
        else:
            self.skipped += 1
            self.clean_steps = 0
            if self.dynamic:
                self.scale = max(self.scale * BACKOFF_FACTOR, 2.0 ** -24)

    def state_dict(self):
        return {"scale": self.scale, "clean_steps": self.clean_steps, "skipped": self.skipped}

    def load_state_dict(self, state):
        try:
            scale, clean, skipped = float(state["scale"]), int(state["clean_steps"]), int(state["skipped"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"loss scaler state {state!r} is not valid ({type(exc).__name__}: {exc})") from None
        if not (math.isfinite(scale) and scale > 0 and clean >= 0 and skipped >= 0):
            raise ValueError(f"loss scaler state {state!r} is not valid: expected a positive scale and counts >= 0")
        self.scale, self.clean_steps, self.skipped = scale, clean, skipped


# -----------------------------------------------------------------------------------------------------
# measuring: the zeros of underflow, the bytes a step keeps


def zero_fraction(params):
    """Fraction of the entries of the parameters' gradients that are exactly zero (None grads count whole)."""
    zeros = total = 0
    for p in params:
        total += p.data.size
        zeros += p.data.size if p.grad is None else int(np.count_nonzero(p.grad == 0))
    return zeros / max(total, 1)


def _root(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def saved_activation_bytes(loss, params=()):
    """Bytes of the arrays the graph behind `loss` keeps alive until its backward pass (call it before
    backward): the output of every operation (the graph holds each node's inputs) and every array a
    backward function holds. Each buffer is counted once (a view counts its base); the leaves in
    `params` (the fp32 master weights, kept anyway) are not counted, the half copies of the weights a
    mixed-precision step makes are.
    """
    skip = {id(p) for p in params}
    seen_nodes, seen_buffers = set(), set()
    total = 0

    def count(a):
        nonlocal total
        if isinstance(a, np.ndarray) and a.size > 1:
            base = _root(a)
            if id(base) not in seen_buffers:
                seen_buffers.add(id(base))
                total += base.nbytes

    stack = [loss]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes or id(node) in skip:
            continue
        seen_nodes.add(id(node))
        count(node.data)
        stack.extend(node._parents)
        for cell in (node._backward.__closure__ or ()) if node._backward is not None else ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(value, Tensor):
                if id(value) not in skip:
                    stack.append(value)
            else:
                count(value)
    return total


__all__ = ["PRECISIONS", "HalfFormat", "LossScaler", "autocast", "float_model", "half_model", "half_linear",
           "fp32_island", "round_bf16", "saved_activation_bytes", "to_half", "zero_fraction"]
