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

The file reads top to bottom: grad mode, the Tensor and its backward pass, then the primitive
operations, each forward beside its backward: arithmetic, reductions, shapes and indexing, elementwise
functions, joining and splitting. The fused operations a transformer needs (softmax, layer norm,
cross-entropy, attention, GELU, ...) live one floor up, in tinylm.autograd.functional, each with its
backward derived by hand.
"""
from __future__ import annotations

import functools

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
