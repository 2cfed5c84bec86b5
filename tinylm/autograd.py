"""Reverse-mode automatic differentiation on NumPy arrays: the engine every tinylm model trains on.

A `Tensor` wraps an ndarray. Every operation on Tensors returns a new Tensor that remembers its inputs
(`_parents`) and a small function (`_backward`) that turns the gradient of the output into gradients of
the inputs: the chain rule, one operation at a time. `loss.backward()` walks that graph from the loss
back to the leaves (the parameters) in reverse topological order and adds each parameter's gradient
into its `.grad`.

    >>> x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()               # y = x0^2 + x1^2 + x2^2
    >>> y.backward()                    # dy/dx = 2x
    >>> x.grad
    array([2., 4., 6.], dtype=float32)

Semantics (each one tested in tests/test_autograd*.py):
- floats are float32 unless the input array is float64 (kept, for gradient checks); ints stay ints and
  an integer Tensor can never require a gradient;
- gradients ACCUMULATE into leaves (`.grad += ...`) until someone clears them (`Module.zero_grad()`);
- `backward()` frees the graph as it goes; calling it twice over the same graph is an error, not a
  silent double count; a non-scalar output needs an explicit `grad`;
- inside `with no_grad():` nothing is recorded (inference, optimizer updates).

The file reads top to bottom: grad mode, the Tensor and its backward pass, then the operations, each
forward beside its backward: arithmetic, reductions, shapes and indexing, elementwise functions, and
last the fused operations a transformer needs (softmax, log-softmax, layer norm, cross-entropy,
attention, GELU, dropout, embedding, and the scatter-add `index_add` of a mixture of experts) whose
backward is derived by hand in a comment, because the fused form is both faster and uses less memory
than the same math composed from small operations. At the very end, one setting of the memory
allocator that makes NumPy's many temporaries cheap.
"""
from __future__ import annotations

import ctypes
import math
import os
import sys

import numpy as np

# ----------------------------------------------------------------------------------------------
# grad mode: is the graph being recorded?

_grad_enabled = True


def is_grad_enabled():
    """True unless inside a `no_grad()` block."""
    return _grad_enabled


class no_grad:
    """Context manager (and decorator) that turns graph recording off, for inference and updates.

    >>> w = Tensor([1.0], requires_grad=True)
    >>> with no_grad():
    ...     y = w * 2
    >>> y.requires_grad
    False
    """

    def __enter__(self):
        global _grad_enabled
        self._prev, _grad_enabled = _grad_enabled, False
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False

    def __call__(self, func):
        import functools

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with no_grad():
                return func(*args, **kwargs)

        return wrapper


# ----------------------------------------------------------------------------------------------
# helpers


def _to_array(data):
    """float -> float32 (float64 arrays kept), ints and bools unchanged; never copies a float32 array."""
    if isinstance(data, Tensor):
        return data.data
    if isinstance(data, np.ndarray):
        if data.dtype == np.float64 or data.dtype == np.float32 or data.dtype.kind in "iub":
            return data
        if data.dtype.kind == "f":
            return data.astype(np.float32)
        raise TypeError(f"Tensor: unsupported dtype {data.dtype}; expected a float, integer or bool array")
    if isinstance(data, np.generic):
        return _to_array(np.asarray(data))
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)  # Python floats -> float32, the working precision
    if arr.dtype.kind in "iub":
        return arr
    raise TypeError(f"Tensor: cannot make a tensor from {type(data).__name__} (dtype {arr.dtype})")


def _unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the backward of NumPy broadcasting.

    A value that was broadcast to many positions influenced all of them, so its gradient is the sum.
    (3, 4) -> (4,): sum over axis 0;  (3, 4) -> (3, 1): sum over axis 1, keeping it.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def _norm_axes(axis, ndim):
    """axis (None, int or tuple, negatives allowed) -> sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(int(a) % max(ndim, 1))
    return tuple(sorted(out))


class _SliceGrad:
    """A gradient that is zero except at `index`: lets split and slicing write their part into the
    parent's gradient buffer instead of each allocating a full array of zeros."""

    __slots__ = ("index", "value")

    def __init__(self, index, value):
        self.index, self.value = index, value


# ----------------------------------------------------------------------------------------------
# the Tensor and its backward pass


class Tensor:
    """An ndarray that records the operations made with it, so it can compute gradients.

    Tensor(data, requires_grad=False): floats become float32 unless `data` is a float64 array (kept);
    integer data stays integer and cannot require a gradient.
    """

    __array_ufunc__ = None  # ndarray + Tensor -> Tensor.__radd__; np.exp(tensor) -> TypeError, not an object array

    def __init__(self, data, requires_grad=False):
        self.data = _to_array(data)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"Tensor: an integer tensor (dtype {self.data.dtype}) cannot require a gradient; "
                            f"only float tensors can")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = None
        self._freed = False  # set on non-leaf tensors once backward has consumed them

    # -- description ------------------------------------------------------------------------------

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{grad})"

    def item(self):
        """The single value of a one-element tensor, as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item: the tensor has {self.data.size} elements (shape {self.shape}); expected 1")
        return self.data.item()

    def __float__(self):
        return float(self.item())

    def numpy(self):
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def __array__(self, dtype=None, copy=None):  # np.asarray(tensor), plt.plot(tensor): the data
        return self.data if dtype is None else self.data.astype(dtype)

    def detach(self):
        """The same data (shared) as a new leaf that does not require a gradient."""
        return Tensor(self.data)

    # -- building the graph -----------------------------------------------------------------------

    @staticmethod
    def _make(data, parents, backward):
        """The output of an operation. It joins the graph only if recording and a parent needs a grad.

        `backward(g)` receives the gradient of the output (same shape) and returns one gradient per
        parent (None for a parent that does not require one). It must never modify `g` in place.
        """
        out = Tensor.__new__(Tensor)
        out.data = data
        out.grad = None
        out._freed = False
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
            out._backward = backward
        else:
            out.requires_grad = False
            out._parents = ()
            out._backward = None
        return out

    # -- the backward pass --------------------------------------------------------------------------

    def backward(self, grad=None):
        """Compute d(self)/d(leaf) for every leaf that requires a gradient, adding it into `leaf.grad`.

        self must be a scalar unless `grad` (d(something)/d(self), same shape as self) is given. The graph
        is freed on the way (each operation drops its saved arrays), so a second backward over it raises.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require a gradient (no parameter upstream "
                               "has requires_grad=True, or it was computed under no_grad())")
        if self._freed:
            raise RuntimeError("backward: the graph of this tensor was already freed by an earlier backward(); "
                               "gradients of a graph can be computed only once (run the forward pass again)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be implicit only for a scalar output; this tensor has shape "
                                   f"{self.shape}, so pass grad= (an array of that shape)")
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad has shape {grad.shape}; expected {self.shape} like the tensor")

        order = self._topological_order()
        grads = {id(self): grad}  # id(node) -> gradient of the output w.r.t. node
        owned = set()  # ids whose gradient buffer we allocated, so may add into in place
        for node in order:
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:  # a leaf: accumulate into .grad (the user's buffer)
                node._accumulate_leaf(g)
                continue
            parent_grads = node._backward(g)
            parents = node._parents
            node._backward, node._parents, node._freed = None, (), True  # free the graph as we go
            del g
            for p, pg in zip(parents, parent_grads):
                if pg is None or not p.requires_grad:
                    continue
                if not isinstance(pg, _SliceGrad) and pg.dtype != p.dtype:
                    pg = pg.astype(p.dtype)  # e.g. a float32 parameter used in a float64 expression
                key = id(p)
                prev = grads.get(key)
                if isinstance(pg, _SliceGrad):
                    if prev is None or key not in owned:
                        buf = np.zeros(p.shape, p.dtype) if prev is None else np.array(prev, dtype=p.dtype)
                        grads[key] = buf
                        owned.add(key)
                    grads[key][pg.index] += pg.value
                elif prev is None:
                    grads[key] = pg  # no copy: it may be a view, so it is not ours to write into
                elif key in owned:
                    prev += pg
                else:
                    grads[key] = prev + pg  # a new buffer: prev may be a view shared with another node
                    owned.add(key)

    def _accumulate_leaf(self, g):
        if self.grad is None:
            self.grad = np.array(g, dtype=self.dtype, copy=True)  # our own contiguous copy
        else:
            self.grad += g

    def _topological_order(self):
        """Nodes that need a gradient, the output first, each before all of its parents (no recursion,
        so a graph thousands of operations deep is fine)."""
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            if node._freed:
                raise RuntimeError("backward: part of this graph was already freed by an earlier backward(); "
                                   "gradients of a graph can be computed only once (run the forward pass again)")
            stack.append((node, True))
            for p in node._parents:
                if p.requires_grad and id(p) not in visited:
                    stack.append((p, False))
        order.reverse()
        return order

    # -- arithmetic (with NumPy broadcasting; the backward sums over broadcast axes) -----------------

    def _other(self, other):
        """A constant operand as a Tensor; float constants take our float dtype (2.0 never upcasts)."""
        if isinstance(other, Tensor):
            return other
        if self.data.dtype.kind == "f":
            return Tensor(np.asarray(other, dtype=self.data.dtype))
        return Tensor(other)

    def __add__(self, other):
        a, b = self, self._other(other)

        def backward(g):  # d(a+b)/da = 1, d(a+b)/db = 1
            return (_unbroadcast(g, a.shape) if a.requires_grad else None,
                    _unbroadcast(g, b.shape) if b.requires_grad else None)

        return Tensor._make(a.data + b.data, (a, b), backward)

    def __sub__(self, other):
        a, b = self, self._other(other)

        def backward(g):  # d(a-b)/da = 1, d(a-b)/db = -1
            return (_unbroadcast(g, a.shape) if a.requires_grad else None,
                    -_unbroadcast(g, b.shape) if b.requires_grad else None)

        return Tensor._make(a.data - b.data, (a, b), backward)

    def __mul__(self, other):
        a, b = self, self._other(other)

        def backward(g):  # d(ab)/da = b, d(ab)/db = a
            return (_unbroadcast(g * b.data, a.shape) if a.requires_grad else None,
                    _unbroadcast(g * a.data, b.shape) if b.requires_grad else None)

        return Tensor._make(a.data * b.data, (a, b), backward)

    def __truediv__(self, other):
        a, b = self, self._other(other)

        def backward(g):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
            return (_unbroadcast(g / b.data, a.shape) if a.requires_grad else None,
                    _unbroadcast(-g * a.data / (b.data * b.data), b.shape) if b.requires_grad else None)

        return Tensor._make(a.data / b.data, (a, b), backward)

    def __radd__(self, other):
        return self._other(other) + self

    def __rsub__(self, other):
        return self._other(other) - self

    def __rmul__(self, other):
        return self._other(other) * self

    def __rtruediv__(self, other):
        return self._other(other) / self

    def __neg__(self):
        return Tensor._make(-self.data, (self,), lambda g: (-g,))

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not np.isscalar(exponent):
            raise TypeError("Tensor ** exponent: the exponent must be a number (for x ** y with a tensor y, "
                            "use (y * x.log()).exp())")
        x = self
        if exponent == 2:  # the common square, without the general power function
            return Tensor._make(x.data * x.data, (x,), lambda g: (g * (2 * x.data),))

        def backward(g):  # d(x^p)/dx = p x^(p-1)
            return (g * (exponent * x.data ** (exponent - 1)),)

        return Tensor._make(x.data ** exponent, (x,), backward)

    def __matmul__(self, other):
        a, b = self, self._other(other)
        out = np.matmul(a.data, b.data)

        def backward(g):
            # y = a @ b  =>  da = g @ b^T, db = a^T @ g (summed over broadcast batch dimensions).
            A, B = a.data, b.data
            if B.ndim == 1:  # NumPy treats a vector b as a (k, 1) column, then drops that axis
                B, g = B[:, None], np.expand_dims(g, -1)
            if A.ndim == 1:  # ... and a vector a as a (1, k) row
                A, g = A[None, :], np.expand_dims(g, -2)
            ga = gb = None
            if a.requires_grad:
                if B.ndim == 2:  # the common (..., n, k) @ (k, m): one big matrix product
                    ga = (g.reshape(-1, g.shape[-1]) @ B.T).reshape(g.shape[:-1] + (B.shape[0],))
                else:
                    ga = np.matmul(g, np.swapaxes(B, -1, -2))
                ga = _unbroadcast(ga, A.shape).reshape(a.shape)
            if b.requires_grad:
                if B.ndim == 2:  # sum over the batch of a^T g == (all rows of a)^T (all rows of g)
                    gb = A.reshape(-1, A.shape[-1]).T @ g.reshape(-1, g.shape[-1])
                else:
                    gb = _unbroadcast(np.matmul(np.swapaxes(A, -1, -2), g), B.shape)
                gb = gb.reshape(b.shape)
            return ga, gb

        return Tensor._make(out, (a, b), backward)

    def __rmatmul__(self, other):
        return self._other(other) @ self

    # -- reductions ---------------------------------------------------------------------------------

    def sum(self, axis=None, keepdims=False):
        """Sum over `axis` (None = all). Backward: every input position gets the gradient of its sum."""
        x, axes = self, _norm_axes(axis, self.ndim)

        def backward(g):
            if not keepdims:
                g = np.expand_dims(g, axes)
            return (np.broadcast_to(g, x.shape),)

        return Tensor._make(np.sum(x.data, axis=axes, keepdims=keepdims), (x,), backward)

    def mean(self, axis=None, keepdims=False):
        """Mean over `axis` (None = all): the sum divided by the number of values averaged."""
        axes = _norm_axes(axis, self.ndim)
        n = int(np.prod([self.shape[a] for a in axes])) if axes else 1
        return self.sum(axis=axes, keepdims=keepdims) * (1.0 / max(n, 1))

    def max(self, axis=None, keepdims=False):
        """Maximum over `axis`. Backward: the gradient goes to the position(s) of the maximum (shared
        equally when several positions tie)."""
        x, axes = self, _norm_axes(axis, self.ndim)
        m = np.max(x.data, axis=axes, keepdims=True)

        def backward(g):
            if not keepdims:
                g = np.expand_dims(g, axes)
            hit = x.data == m
            return (hit * (g / np.sum(hit, axis=axes, keepdims=True)),)

        out = m if keepdims else np.squeeze(m, axis=axes)
        return Tensor._make(out, (x,), backward)

    # -- shapes and indexing (no arithmetic: backward only moves gradients around) -------------------

    def reshape(self, *shape):
        """Same values, new shape: x.reshape(2, 3) or x.reshape((2, 3)); -1 infers one size."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        x = self
        return Tensor._make(x.data.reshape(shape), (x,), lambda g: (g.reshape(x.shape),))

    def permute(self, *axes):
        """Reorder the axes: x.permute(0, 2, 1, 3) turns (B, T, nh, hs) into (B, nh, T, hs)."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if sorted(int(a) % max(self.ndim, 1) for a in axes) != list(range(self.ndim)):
            raise ValueError(f"permute: axes {axes} are not a permutation of the {self.ndim} axes of the tensor")
        inverse = tuple(np.argsort([int(a) % self.ndim for a in axes]))
        return Tensor._make(self.data.transpose(axes), (self,), lambda g: (g.transpose(inverse),))

    def transpose(self, *axes):
        """x.transpose() reverses the axes; x.transpose(*perm) with every axis is NumPy's permutation;
        x.transpose(a, b) with two axes of a tensor with more than two swaps those two (PyTorch style)."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(range(self.ndim))[::-1]
        elif len(axes) == 2 and self.ndim != 2:
            perm = list(range(self.ndim))
            i, j = (int(a) % self.ndim for a in axes)
            perm[i], perm[j] = perm[j], perm[i]
            axes = tuple(perm)
        return self.permute(*axes)

    @property
    def T(self):
        """The axes reversed (the usual matrix transpose for 2-D)."""
        return self.transpose()

    def __getitem__(self, index):
        """x[index] with slices, ints, None, Ellipsis, integer or boolean arrays. Backward adds the gradient
        back at the indexed positions; a position picked twice (x[[0, 0]]) gets both contributions."""
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        x = self
        parts = index if isinstance(index, tuple) else (index,)
        basic = all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in parts)

        def backward(g):
            if basic:  # a view: positions are distinct, so write instead of add
                return (_SliceGrad(index, g),)
            full = np.zeros(x.shape, g.dtype)
            np.add.at(full, index, g)
            return (full,)

        return Tensor._make(x.data[index], (x,), backward)

    # -- elementwise functions --------------------------------------------------------------------------

    def exp(self):
        x, y = self, np.exp(self.data)
        return Tensor._make(y, (x,), lambda g: (g * y,))  # d e^x = e^x

    def log(self):
        x = self
        return Tensor._make(np.log(x.data), (x,), lambda g: (g / x.data,))  # d log x = 1/x

    def sqrt(self):
        x, y = self, np.sqrt(self.data)
        return Tensor._make(y, (x,), lambda g: (g / (2 * y),))  # d sqrt x = 1 / (2 sqrt x)

    def tanh(self):
        x, y = self, np.tanh(self.data)
        return Tensor._make(y, (x,), lambda g: (g * (1 - y * y),))  # d tanh x = 1 - tanh^2 x

    def relu(self):
        x = self
        return Tensor._make(np.maximum(x.data, 0), (x,), lambda g: (g * (x.data > 0),))

    def gelu(self):
        return gelu(self)

    def softmax(self, axis=-1):
        return softmax(self, axis)

    def log_softmax(self, axis=-1):
        return log_softmax(self, axis)

    def masked_fill(self, mask, value):
        """A copy with `value` where `mask` is True (mask broadcasts against the tensor). No gradient flows
        to the filled positions: their value no longer depends on the input."""
        mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=bool)
        x = self
        out = np.where(mask, np.asarray(value, dtype=x.dtype), x.data)

        def backward(g):
            return (_unbroadcast(np.where(mask, 0, g).astype(g.dtype, copy=False), x.shape),)

        return Tensor._make(out, (x,), backward)


# ----------------------------------------------------------------------------------------------
# joining and splitting


def cat(tensors, axis=0):
    """Concatenate tensors along `axis`; backward hands each input its slice of the gradient."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: expected at least one tensor")
    ndim = tensors[0].ndim
    axis = _norm_axes(axis, ndim)[0]
    bounds = np.cumsum([t.shape[axis] for t in tensors])[:-1]

    def backward(g):
        pieces = np.split(g, bounds, axis=axis)
        return tuple(p if t.requires_grad else None for p, t in zip(pieces, tensors))

    return Tensor._make(np.concatenate([t.data for t in tensors], axis=axis), tuple(tensors), backward)


def split(x, n_or_sizes, axis=-1):
    """Cut x along `axis` into `n` equal pieces (an int) or pieces of the given sizes (a list) -> list.

    >>> [p.shape for p in split(Tensor(np.zeros((2, 6))), [1, 2, 3])]
    [(2, 1), (2, 2), (2, 3)]
    """
    axis = _norm_axes(axis, x.ndim)[0]
    length = x.shape[axis]
    if isinstance(n_or_sizes, (int, np.integer)):
        n = int(n_or_sizes)
        if n < 1 or length % n:
            raise ValueError(f"split: cannot cut an axis of length {length} into {n} equal pieces")
        sizes = [length // n] * n
    else:
        sizes = [int(s) for s in n_or_sizes]
        if sum(sizes) != length or any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes {sizes} do not add up to the axis length {length}")
    pieces, start = [], 0
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        pieces.append(x[index])  # a view; its backward writes into the slice of x's gradient
        start += size
    return pieces


# ----------------------------------------------------------------------------------------------
# fused operations: forward and a hand-derived backward in one place


def linear(x, weight, bias=None):
    """y = x @ weight.T + bias for x (..., in), weight (out, in), bias (out,) -> (..., out).

    One operation instead of transpose + matmul + add: the rows of every leading axis are handled as one
    matrix (N, in), so forward and backward are three plain matrix products.
        dx = dy @ W        (N, out) @ (out, in)
        dW = dy^T @ x      (out, N) @ (N, in)
        db = sum_rows(dy)
    """
    lead = x.shape[:-1]
    x2 = x.data.reshape(-1, x.shape[-1])  # (N, in)
    y = x2 @ weight.data.T  # (N, out)
    if bias is not None:
        y += bias.data

    def backward(g):
        g2 = g.reshape(-1, g.shape[-1])  # (N, out)
        gx = (g2 @ weight.data).reshape(x.shape) if x.requires_grad else None
        gw = g2.T @ x2 if weight.requires_grad else None
        gb = g2.sum(axis=0) if bias is not None and bias.requires_grad else None
        return gx, gw, gb

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(y.reshape(lead + (weight.shape[0],)), parents, backward)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`, computed after subtracting the max (same result, no overflow).

    Backward: with y = softmax(x), dy_i/dx_j = y_i (delta_ij - y_j), so
        dx = y * (g - sum(g * y))          (sum over the softmax axis)
    """
    y = np.exp(x.data - x.data.max(axis=axis, keepdims=True))
    y /= y.sum(axis=axis, keepdims=True)

    def backward(g):
        return (y * (g - (g * y).sum(axis=axis, keepdims=True)),)

    return Tensor._make(y, (x,), backward)


def log_softmax(x, axis=-1):
    """x - log(sum(exp(x))) along `axis`, stable: the log-probabilities of a softmax.

    Backward: y_i = x_i - lse(x) and d lse/dx_j = softmax_j, so dx = g - softmax * sum(g).
    """
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

    def backward(g):
        return (g - np.exp(y) * g.sum(axis=axis, keepdims=True),)

    return Tensor._make(y, (x,), backward)


def layer_norm(x, weight, bias=None, eps=1e-5):
    """Normalise the last axis to mean 0 and variance 1, then scale by weight and shift by bias.

        xhat = (x - mean) / sqrt(var + eps)        y = xhat * weight + bias
    Backward (per row of C values, rstd = 1/sqrt(var + eps), dxhat = g * weight):
        dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    because xhat depends on x directly (rstd), through the mean (-rstd/C for every input), and through
    the variance (d rstd/dx_j = -rstd * xhat_j / C).  dweight = sum_rows(g * xhat), dbias = sum_rows(g).
    """
    data = x.data
    xc = data - data.mean(axis=-1, keepdims=True)  # (..., C)
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
    xhat = xc
    xhat *= rstd  # (..., C), in place: xc is not needed again
    y = xhat * weight.data
    if bias is not None:
        y += bias.data

    def backward(g):
        gx = gw = gb = None
        C = data.shape[-1]
        if weight.requires_grad:
            gw = (g * xhat).reshape(-1, C).sum(axis=0)
        if bias is not None and bias.requires_grad:
            gb = g.reshape(-1, C).sum(axis=0)
        if x.requires_grad:
            dxhat = g * weight.data  # (..., C)
            a = dxhat.mean(axis=-1, keepdims=True)  # (..., 1)
            b = (dxhat * xhat).mean(axis=-1, keepdims=True)  # (..., 1)
            gx = dxhat
            gx -= a
            gx -= xhat * b
            gx *= rstd
        return gx, gw, gb

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(y, parents, backward)


def cross_entropy(logits, targets, ignore_index=-1):
    """Mean negative log-likelihood of `targets` under softmax(logits): the language-model loss.

    logits (N, V) or (B, T, V); targets integer (N,) or (B, T). Targets equal to `ignore_index` count
    for nothing (and are not in the mean); if every target is ignored the loss is 0.

    Fused because composing it wastes work and precision: log(softmax(x))[t] = x_t - logsumexp(x) needs
    no division and no log of a tiny number, and its gradient is simply
        dloss/dlogits = (softmax(logits) - onehot(targets)) / n_valid
    (the softmax computed in the forward pass is reused in place in the backward).

    >>> round(cross_entropy(Tensor(np.zeros((1, 4))), np.array([2])).item(), 4)   # uniform: ln 4
    1.3863
    """
    if isinstance(targets, Tensor):
        targets = targets.data
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets has dtype {targets.dtype}; expected integer class ids")
    if logits.ndim < 2 or targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: logits has shape {logits.shape} and targets {targets.shape}; "
                         f"expected logits (..., V) and targets (...) with the same leading shape")
    V = logits.shape[-1]
    z = logits.data.reshape(-1, V)  # (N, V)
    t = targets.reshape(-1)  # (N,)
    valid = t != ignore_index
    if ((t < 0) | (t >= V))[valid].any():
        bad = t[valid & ((t < 0) | (t >= V))][0]
        raise ValueError(f"cross_entropy: target {bad} is outside 0 .. {V - 1} (and is not ignore_index "
                         f"{ignore_index})")
    n_valid = int(valid.sum())
    rows = np.arange(len(t))
    t_safe = np.where(valid, t, 0)

    probs = np.exp(z - z.max(axis=1, keepdims=True))  # (N, V) unnormalised
    total = probs.sum(axis=1, keepdims=True)  # (N, 1)
    probs /= total  # softmax, kept for backward
    # -log p_t = log(total) - (z_t - max)  computed from the shifted logits, never log of a tiny p
    nll = np.log(total[:, 0]) - (z[rows, t_safe] - z.max(axis=1))  # (N,)
    loss = np.asarray((nll * valid).sum() / max(n_valid, 1), dtype=logits.dtype)

    def backward(g):
        grad = probs  # reused in place: this backward runs once
        grad[rows, t_safe] -= 1.0
        if n_valid < len(t):
            grad[~valid] = 0.0
        grad *= g / max(n_valid, 1)
        return (grad.reshape(logits.shape),)

    return Tensor._make(loss, (logits,), backward)


_causal_masks = {}


def _causal_bias(Tq, Tk, dtype):
    """(Tq, Tk) additive mask: 0 where query i may see key j (j <= i + Tk - Tq), -inf elsewhere."""
    key = (Tq, Tk, np.dtype(dtype).str)
    if key not in _causal_masks:
        if len(_causal_masks) > 256:  # generation asks for (1, 1), (1, 2), ...: keep the cache bounded
            _causal_masks.clear()
        blocked = np.triu(np.ones((Tq, Tk), dtype=bool), k=1 + Tk - Tq)
        _causal_masks[key] = np.where(blocked, -np.inf, 0.0).astype(dtype)
    return _causal_masks[key]


def scaled_dot_product_attention(q, k, v, causal=True, dropout_p=0.0, rng=None):
    """softmax(q k^T / sqrt(hs) + mask) v: every query's mixture of the values it may look at.

    q (B, nh, Tq, hs), k and v (B, nh, Tk, hs) -> (B, nh, Tq, hs). With causal=True and Tq <= Tk the
    queries are the LAST Tq positions (bottom-right aligned): query i sees keys j <= i + (Tk - Tq), which
    is what a KV cache feeding only the new tokens needs. dropout_p > 0 drops attention weights (needs rng).

    Backward, with S = q k^T * scale, P = softmax(S), Pd = dropout(P), y = Pd v:
        dv = Pd^T dy        dPd = dy v^T        dP = dropout_backward(dPd)
        dS = P * (dP - sum_j(dP * P))           (the softmax backward, row by row)
        dq = dS k * scale   dk = dS^T q * scale
    Masked positions have P = 0, so they get dS = 0 with no extra work.
    """
    Tq, hs, Tk = q.shape[-2], q.shape[-1], k.shape[-2]
    if k.shape[-1] != hs or v.shape[-2] != Tk:
        raise ValueError(f"scaled_dot_product_attention: q {q.shape}, k {k.shape}, v {v.shape} do not fit; "
                         f"expected q (..., Tq, hs), k (..., Tk, hs), v (..., Tk, hv)")
    if causal and Tq > Tk:
        raise ValueError(f"scaled_dot_product_attention: causal attention needs Tq <= Tk, got Tq={Tq}, Tk={Tk}")
    scale = 1.0 / math.sqrt(hs)
    S = np.matmul(q.data, np.swapaxes(k.data, -1, -2))  # (B, nh, Tq, Tk)
    S *= scale
    if causal:
        S += _causal_bias(Tq, Tk, S.dtype)
    S -= S.max(axis=-1, keepdims=True)
    P = np.exp(S, out=S)  # (B, nh, Tq, Tk), in place
    P /= P.sum(axis=-1, keepdims=True)
    keep = None
    Pd = P
    if dropout_p > 0.0:
        if rng is None:
            raise ValueError("scaled_dot_product_attention: dropout_p > 0 needs rng (a np.random.Generator)")
        keep = (rng.random(P.shape, dtype=np.float32) >= dropout_p).astype(P.dtype)  # (B, nh, Tq, Tk) of 0/1
        keep *= P.dtype.type(1.0 / (1.0 - dropout_p))
        Pd = P * keep
    y = np.matmul(Pd, v.data)  # (B, nh, Tq, hs)

    def backward(g):
        gv = np.matmul(np.swapaxes(Pd, -1, -2), g) if v.requires_grad else None  # (B, nh, Tk, hs)
        gq = gk = None
        if q.requires_grad or k.requires_grad:
            dP = np.matmul(g, np.swapaxes(v.data, -1, -2))  # (B, nh, Tq, Tk)
            if keep is not None:
                dP *= keep
            dS = dP
            dS -= (dP * P).sum(axis=-1, keepdims=True)
            dS *= P
            dS *= scale
            if q.requires_grad:
                gq = np.matmul(dS, k.data)  # (B, nh, Tq, hs)
            if k.requires_grad:
                gk = np.matmul(np.swapaxes(dS, -1, -2), q.data)  # (B, nh, Tk, hs)
        return gq, gk, gv

    return Tensor._make(y, (q, k, v), backward)


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def gelu(x):
    """GELU with the tanh approximation GPT-2 uses: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).

    Computed as x * sigmoid(2u), the same number (0.5 (1 + tanh(u)) = sigmoid(2u)) for one exp instead of
    a tanh, which NumPy evaluates several times slower. With s = sigmoid(2u), and since
    0.5 (1 - tanh^2 u) = 2 s (1 - s), the derivative is
        dy/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    """
    d = x.data
    s = d * d  # (...,) every step below reuses this one buffer
    s *= -2.0 * _GELU_C * _GELU_A
    s -= 2.0 * _GELU_C
    s *= d  # -2u
    with np.errstate(over="ignore"):  # exp(-2u) = inf for very negative x gives s = 0, as it should
        np.exp(s, out=s)
    s += 1.0
    np.reciprocal(s, out=s)  # s = sigmoid(2u)
    y = d * s

    def backward(g):
        dy = d * d
        dy *= 2.0 * _GELU_C * 3 * _GELU_A
        dy += 2.0 * _GELU_C
        dy *= d  # 2 x sqrt(2/pi) (1 + 3 a x^2)
        dy *= 1.0 - s
        dy += 1.0
        dy *= s  # s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 a x^2)
        dy *= g
        return (dy,)

    return Tensor._make(y, (x,), backward)


def dropout(x, p, training, rng):
    """Inverted dropout: zero each value with probability p and scale the rest by 1/(1-p), so the expected
    value is unchanged and evaluation needs no rescaling. Identity when p == 0 or not training."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if p == 0.0 or not training:
        return x
    if rng is None:
        raise ValueError("dropout: p > 0 while training needs rng (a np.random.Generator)")
    keep = (rng.random(x.shape, dtype=np.float32) >= p).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return Tensor._make(x.data * keep, (x,), lambda g: (g * keep,))


def embedding(weight, idx):
    """Rows of `weight` (V, C) picked by integer ids `idx` (...) -> (..., C): the embedding lookup.

    Backward: row v of dweight is the sum of the output gradients at every position where idx == v (an
    id used twice gets both): `_add_rows`, the same scatter-add as `index_add` below.
    """
    if isinstance(idx, Tensor):
        idx = idx.data
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: idx has dtype {idx.dtype}; expected integer ids")
    V, C = weight.shape
    if idx.size and (idx.min() < 0 or idx.max() >= V):
        raise ValueError(f"embedding: ids must be in 0 .. {V - 1}, got values from {idx.min()} to {idx.max()}")
    out = weight.data[idx]  # (..., C)

    def backward(g):
        return (_add_rows(idx.reshape(-1), g.reshape(-1, C), V),)  # (V, C)

    return Tensor._make(out, (weight,), backward)


def _add_rows(idx, rows, n):
    """An (n, C) array of zeros with rows[i] added into row idx[i]: the backward of a row gather.

    idx (N,) integer ids in 0 .. n-1, rows (N, C). One sort + np.add.reduceat over runs of equal ids: 7x
    faster than np.add.at for a training batch (768 ids into a (65, 128) table), as fast for GPT-2's 50257 rows.
    """
    order = np.argsort(idx, kind="stable")
    ids = idx[order]
    out = np.zeros((n,) + rows.shape[1:], dtype=rows.dtype)
    if ids.size:
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        out[ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def index_add(idx, src, n):
    """Rows of `src` (N, C) added into an (n, C) tensor of zeros at rows `idx` (N,): the scatter-add.

    The inverse of gathering rows x[idx]: a mixture of experts gathers the rows each expert works on and
    puts the results back with this, each token summing the (gated) outputs of its k experts.

    >>> index_add(np.array([2, 0, 2]), Tensor(np.ones((3, 2))), 4).data.tolist()
    [[1.0, 1.0], [0.0, 0.0], [2.0, 2.0], [0.0, 0.0]]

    Backward: row i of src went into row idx[i] only, with factor 1, so its gradient is g[idx[i]].
    """
    idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
    if idx.dtype.kind not in "iu" or idx.ndim != 1 or src.ndim < 1 or len(idx) != src.shape[0]:
        raise ValueError(f"index_add: idx has shape {idx.shape} and dtype {idx.dtype}, src {src.shape}; expected "
                         f"integer idx (N,) and src (N, ...)")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"index_add: ids must be in 0 .. {n - 1}, got values from {idx.min()} to {idx.max()}")
    out = _add_rows(idx, src.data, n)  # (n, C)
    return Tensor._make(out, (src,), lambda g: (g[idx],))  # (N, C)


# ----------------------------------------------------------------------------------------------
# memory: NumPy temporaries are big, and getting fresh pages from the OS is slow


def _tune_malloc():
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS at once.

    Every operation allocates arrays of ~1 MB (a (768, 512) float32 activation is 1.5 MB). By default
    glibc serves such sizes with mmap and gives them back on free, so the next operation page-faults its
    way through fresh memory; on a virtual machine that costs more than the arithmetic (a Linear layer
    measured 2.5x slower). Raising the mmap threshold to 32 MB and the trim threshold to 512 MB keeps that
    memory in the process. Skipped when not on glibc, when the user set MALLOC_MMAP_THRESHOLD_ or
    MALLOC_TRIM_THRESHOLD_ themselves, or when TINYLM_MALLOC=0. Returns a line for `tinylm info`.
    """
    if os.environ.get("TINYLM_MALLOC", "1") == "0":
        return "malloc: default (TINYLM_MALLOC=0)"
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return "malloc: as set by the MALLOC_*_ environment variables"
    if not sys.platform.startswith("linux"):
        return "malloc: default (not Linux)"
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 512 << 20)
    except (OSError, AttributeError):
        return "malloc: default (no glibc mallopt)"
    return ("malloc: mmap threshold 32 MB, trim threshold 512 MB (set by tinylm.autograd; TINYLM_MALLOC=0 to "
            "skip)" if ok else "malloc: default (mallopt refused)")


MALLOC_SETTINGS = _tune_malloc()
