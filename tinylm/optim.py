"""Optimizers (SGD, AdamW), the learning-rate schedule and gradient clipping.

An optimizer holds parameter groups: lists of parameters that share hyper-parameters, so a model can
decay its weight matrices but not its biases, LayerNorm gains or embeddings:

    >>> w = Tensor(np.ones(3), requires_grad=True)
    >>> b = Tensor(np.zeros(3), requires_grad=True)
    >>> opt = AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}], lr=1e-3)
    >>> opt.param_groups[1]["lr"] = 5e-4        # each group's lr can be set (a schedule does this)

`state_dict()` is a flat {str: ndarray}, so it goes straight into an .npz file, and `load_state_dict`
restores it so that a resumed run continues bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from tinylm import kernels
from tinylm.autograd import Tensor, no_grad

# ----------------------------------------------------------------------------------------------
# the learning-rate schedule and gradient clipping


def cosine_schedule(step, max_lr, min_lr, warmup_steps, decay_steps):
    """The learning rate at `step` (0-based): linear warmup, then a cosine from max_lr down to min_lr.

        step < warmup_steps:            max_lr * (step + 1) / (warmup_steps + 1)
        warmup_steps <= step <= decay_steps:  min_lr + (max_lr - min_lr) * 0.5 * (1 + cos(pi * r)),
                                        r = (step - warmup_steps) / (decay_steps - warmup_steps)
        step > decay_steps:             min_lr
    decay_steps is the step at which the rate reaches min_lr (nanoGPT's lr_decay_iters).

    >>> [round(cosine_schedule(s, 1.0, 0.1, 2, 6), 3) for s in range(8)]
    [0.333, 0.667, 1.0, 0.868, 0.55, 0.232, 0.1, 0.1]
    """
    if warmup_steps < 0 or decay_steps < warmup_steps:
        raise ValueError(f"cosine_schedule: need 0 <= warmup_steps <= decay_steps, got warmup_steps={warmup_steps}, "
                         f"decay_steps={decay_steps}")
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr if decay_steps > warmup_steps or step > decay_steps else max_lr
    ratio = (step - warmup_steps) / (decay_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * ratio))


def clip_grad_norm(params, max_norm):
    """Scale all gradients down together so their global L2 norm is at most max_norm; return the norm
    they had before (useful to log: spikes show instabilities). Parameters without a grad are skipped."""
    if max_norm <= 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= g.dtype.type(scale)
    return total


# ----------------------------------------------------------------------------------------------
# optimizers


class Optimizer:
    """Parameter groups, zero_grad and the flat state_dict shared by SGD and AdamW."""

    defaults: dict = {}
    state_names: tuple = ()  # per-parameter arrays kept between steps, e.g. ("exp_avg", "exp_avg_sq")

    def __init__(self, params_or_groups, **defaults):
        params_or_groups = list(params_or_groups)
        if not params_or_groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(params_or_groups[0], dict):
            params_or_groups = [{"params": params_or_groups}]
        self.param_groups = []
        seen = set()
        for i, group in enumerate(params_or_groups):
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError(f"{type(self).__name__}: group {i} must be a dict with a 'params' list")
            unknown = set(group) - {"params"} - set(defaults)
            if unknown:
                raise ValueError(f"{type(self).__name__}: group {i} has unknown option(s) {sorted(unknown)}; "
                                 f"known: {sorted(defaults)}")
            params = list(group["params"])
            for p in params:
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise TypeError(f"{type(self).__name__}: group {i} holds a {type(p).__name__} that is not a "
                                    f"Tensor with requires_grad=True")
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears twice (tied weights must be "
                                     f"passed once)")
                seen.add(id(p))
            self.param_groups.append({**defaults, **group, "params": params})
        for group in self.param_groups:
            self._check(group)
        self.state = [{} for _ in self._params()]  # per parameter, in order: {"step": int, name: array}

    def _check(self, group):
        if group["lr"] < 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {group['lr']}")
        if group.get("weight_decay", 0.0) < 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0, got {group['weight_decay']}")

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self):
        """Forget every parameter's gradient (set it to None)."""
        for p in self._params():
            p.grad = None

    def state_dict(self):
        """A flat {str: ndarray}: group hyper-parameters ('group.0.lr', ...) and per-parameter state
        ('state.3.exp_avg', 'state.3.step', ...), parameters numbered in group order."""
        sd = {}
        for i, group in enumerate(self.param_groups):
            for key, value in group.items():
                if key != "params":
                    sd[f"group.{i}.{key}"] = np.asarray(value, dtype=np.float64)
            sd[f"group.{i}.n_params"] = np.asarray(len(group["params"]), dtype=np.int64)
        for j, st in enumerate(self.state):
            for key, value in st.items():
                sd[f"state.{j}.{key}"] = np.array(value, copy=True)
        return sd

    def load_state_dict(self, sd):
        """Restore a state_dict() of an optimizer over the same parameters (same groups, same shapes)."""
        name = type(self).__name__
        for i, group in enumerate(self.param_groups):
            key = f"group.{i}.n_params"
            if key not in sd or int(sd[key]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} does not match (expected "
                                 f"{len(group['params'])} parameters, state has {sd.get(key, 'none')})")
        if f"group.{len(self.param_groups)}.n_params" in sd:
            raise ValueError(f"{name}.load_state_dict: the state has more parameter groups than the optimizer")
        params = self._params()
        state = [{} for _ in params]
        for key, value in sd.items():
            if not key.startswith("state."):
                continue
            _, j, what = key.split(".", 2)
            j = int(j)
            if j >= len(params):
                raise ValueError(f"{name}.load_state_dict: state for parameter {j}, but the optimizer has "
                                 f"{len(params)}")
            if what == "step":
                state[j]["step"] = int(value)
            else:
                if what not in self.state_names or value.shape != params[j].shape:
                    raise ValueError(f"{name}.load_state_dict: {key} has shape {value.shape}; expected "
                                     f"{params[j].shape} for one of {self.state_names}")
                state[j][what] = np.array(value, dtype=params[j].dtype, copy=True)
        for i, group in enumerate(self.param_groups):
            for key in group:
                if key == "params":
                    continue
                value = sd.get(f"group.{i}.{key}")
                if value is None:
                    raise ValueError(f"{name}.load_state_dict: missing group.{i}.{key}")
                group[key] = tuple(float(v) for v in value) if np.ndim(value) else float(value)
        self.state = state


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and (L2) weight decay, as PyTorch's SGD:
        g = grad + weight_decay * p;  buf = momentum * buf + g  (buf = g at the first step);  p -= lr * buf
    """

    state_names = ("momentum_buffer",)

    def __init__(self, params_or_groups, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params_or_groups, lr=lr, momentum=momentum, weight_decay=weight_decay)

    @no_grad()
    def step(self):
        """One update of every parameter that has a gradient."""
        j = 0
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                st, j = self.state[j], j + 1
                if p.grad is None:
                    continue
                g = p.grad + wd * p.data if wd else p.grad
                if mu:
                    buf = st.get("momentum_buffer")
                    if buf is None:
                        buf = st["momentum_buffer"] = np.array(g, dtype=p.dtype, copy=True)
                    else:
                        buf *= mu
                        buf += g
                    g = buf
                st["step"] = st.get("step", 0) + 1
                p.data -= p.dtype.type(lr) * g


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), the optimizer GPTs are trained with.

    For every parameter p with gradient g, at step t = 1, 2, ...:
        p -= lr * weight_decay * p                       (decay, not mixed into the gradient)
        m = beta1 * m + (1 - beta1) * g                  (running mean of g)
        v = beta2 * v + (1 - beta2) * g^2                (running mean of g^2)
        p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    For float32 parameters with tinylm's C kernels built, each parameter's update is one pass of
    tinylm.kernels.adamw_f32 (the same operations in the same order, so the same bits); the NumPy code
    below is the reference, and runs otherwise (or with TINYLM_KERNELS=numpy in the environment).
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params_or_groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params_or_groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _check(self, group):
        super()._check(group)
        b1, b2 = group["betas"]
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"AdamW: betas must be in [0, 1), got {group['betas']}")

    @no_grad()
    def step(self):
        """One update of every parameter that has a gradient (in place: a few passes over each array and one
        scratch array, since this runs over every weight of the model at every step)."""
        j = 0
        use_c = kernels.backend() == "c"
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                st, j = self.state[j], j + 1
                g = p.grad
                if g is None:
                    continue
                if "exp_avg" not in st:
                    st["step"] = 0
                    st["exp_avg"] = np.zeros_like(p.data)
                    st["exp_avg_sq"] = np.zeros_like(p.data)
                st["step"] += 1
                t, m, v = st["step"], st["exp_avg"], st["exp_avg_sq"]
                bias1, root2 = 1.0 - b1 ** t, math.sqrt(1.0 - b2 ** t)
                if use_c and p.dtype == np.float32 and g.dtype == np.float32 and p.data.flags.c_contiguous:
                    kernels.adamw_f32(p.data, g, m, v, 1.0 - lr * wd if wd else 1.0, b1, b2, eps * root2,
                                      -lr * root2 / bias1)
                    continue
                f = p.dtype.type
                if wd:
                    p.data *= f(1.0 - lr * wd)
                tmp = g * f(1.0 - b1)  # one scratch array, reused for every term below
                m *= f(b1)
                m += tmp  # m = b1 m + (1 - b1) g
                np.multiply(g, g, out=tmp)
                tmp *= f(1.0 - b2)
                v *= f(b2)
                v += tmp  # v = b2 v + (1 - b2) g^2
                # (lr / bias1) m / (sqrt(v) / sqrt(bias2) + eps), written with one division less:
                #   = (lr sqrt(bias2) / bias1) m / (sqrt(v) + eps sqrt(bias2))
                np.sqrt(v, out=tmp)
                tmp += f(eps * root2)
                np.divide(m, tmp, out=tmp)
                tmp *= f(-lr * root2 / bias1)
                p.data += tmp
