"""The autograd engine: every operation against finite differences (float64), and the stated semantics."""
import numpy as np
import pytest

from tinylm.autograd import Tensor, cat, index_add, is_grad_enabled, no_grad, split


def numeric_grad(f, arrays, i, eps=1e-6):
    """d f(arrays) / d arrays[i] by central differences, f returning a float."""
    x = arrays[i]
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        j = it.multi_index
        old = x[j]
        x[j] = old + eps
        up = f(arrays)
        x[j] = old - eps
        down = f(arrays)
        x[j] = old
        grad[j] = (up - down) / (2 * eps)
    return grad


def gradcheck(f, *arrays, seed=0, rtol=1e-5, atol=1e-6):
    """Check the engine's gradient of sum(f(*tensors) * R) (R random, so every output position weighs
    differently) against central differences, for every float64 input. Returns the output Tensor."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = f(*tensors)
    R = np.random.default_rng(seed).standard_normal(out.shape)
    (out * R).sum().backward()

    def value(arrs):
        with no_grad():
            return float((f(*[Tensor(a) for a in arrs]).data * R).sum())

    for i, t in enumerate(tensors):
        expected = numeric_grad(value, arrays, i)
        assert t.grad is not None, f"input {i} got no gradient"
        assert t.grad.shape == arrays[i].shape
        np.testing.assert_allclose(t.grad, expected, rtol=rtol, atol=atol, err_msg=f"input {i}")
    return out


def rand(*shape, seed=0, positive=False):
    a = np.random.default_rng(seed + sum(shape)).standard_normal(shape)
    return np.abs(a) + 0.5 if positive else a


# ----------------------------------------------------------------------------------------------
# arithmetic with broadcasting


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)), ((), (2, 3)), ((5,), (2, 1, 5)),
])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_ops_with_broadcasting(op, shape_a, shape_b):
    fn = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
          "mul": lambda a, b: a * b, "div": lambda a, b: a / b}[op]
    b = rand(*shape_b, seed=1, positive=(op == "div"))
    out = gradcheck(fn, rand(*shape_a), b)
    assert out.shape == np.broadcast_shapes(shape_a, shape_b)


def test_operations_with_numbers_and_arrays_on_either_side():
    gradcheck(lambda x: 2.0 - x * 3 + 1 / x - (-x) + x / 4.0, rand(3, 2, positive=True))
    c = rand(3, 2, seed=5)
    gradcheck(lambda x: c * x + c - x / (c * c + 1) + x @ (c.T @ c), rand(3, 2))
    x = Tensor(np.ones(3), requires_grad=True)
    out = np.arange(3.0) + x  # ndarray on the left must still give a Tensor
    assert isinstance(out, Tensor) and out.requires_grad


@pytest.mark.parametrize("p", [2, 3, 0.5, -1, -1.5])
def test_pow_with_a_number_exponent(p):
    gradcheck(lambda x: x ** p, rand(2, 3, positive=True))


def test_pow_refuses_a_tensor_exponent():
    x = Tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="exponent must be a number"):
        x ** x


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
    ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((3, 4), (2, 4, 5)),
])
def test_matmul_shapes_and_batch_broadcasting(shape_a, shape_b):
    out = gradcheck(lambda a, b: a @ b, rand(*shape_a), rand(*shape_b, seed=3))
    assert out.shape == np.matmul(np.zeros(shape_a), np.zeros(shape_b)).shape


# ----------------------------------------------------------------------------------------------
# reductions


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reductions_over_axes(op, axis, keepdims):
    out = gradcheck(lambda x: getattr(x, op)(axis=axis, keepdims=keepdims), rand(2, 3, 4))
    assert out.shape == getattr(np, op)(np.zeros((2, 3, 4)), axis=axis, keepdims=keepdims).shape


def test_max_shares_the_gradient_between_tied_maxima():
    x = Tensor(np.array([1.0, 3.0, 3.0]), requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.5, 0.5])


def test_mean_divides_by_the_number_of_values_averaged():
    x = Tensor(np.ones((2, 5)), requires_grad=True)
    x.mean(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, np.full((2, 5), 0.2))


# ----------------------------------------------------------------------------------------------
# shapes and indexing


def test_reshape_permute_transpose():
    gradcheck(lambda x: x.reshape(4, 6), rand(2, 3, 4))
    gradcheck(lambda x: x.reshape((3, -1)), rand(2, 3, 2))
    out = gradcheck(lambda x: x.permute(2, 0, 1), rand(2, 3, 4))
    assert out.shape == (4, 2, 3)
    assert gradcheck(lambda x: x.T, rand(2, 3)).shape == (3, 2)
    assert gradcheck(lambda x: x.transpose(), rand(2, 3, 4)).shape == (4, 3, 2)
    assert gradcheck(lambda x: x.transpose(0, 2, 1), rand(2, 3, 4)).shape == (2, 4, 3)


def test_transpose_with_two_axes_swaps_them_like_pytorch():
    x = Tensor(np.zeros((2, 3, 4, 5)))
    assert x.transpose(1, 2).shape == (2, 4, 3, 5)
    assert x.transpose(-1, 0).shape == (5, 3, 4, 2)


def test_permute_rejects_axes_that_are_not_a_permutation():
    with pytest.raises(ValueError, match="not a permutation"):
        Tensor(np.zeros((2, 3))).permute(0, 0)


@pytest.mark.parametrize("index", [
    (slice(1, 3),), (0,), (-1,), (Ellipsis, 1), (slice(None), None, slice(0, 2)), (slice(None, None, -1),),
    (np.array([0, 2, 0, 0]),),  # repeated indices: contributions add up
    (np.array([1, 1]), np.array([0, 2])),
    (slice(None), np.array([[0, 1], [1, 1]])),
    (np.array([True, False, True]),),
])
def test_indexing(index):
    gradcheck(lambda x: x[index if len(index) > 1 else index[0]], rand(3, 4))


def test_indexing_with_repeated_ids_adds_their_gradients():
    x = Tensor(np.zeros(3), requires_grad=True)
    x[np.array([2, 2, 0, 2])].sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 3.0])


def test_index_add_scatters_rows_and_sends_each_row_its_gradient():
    idx = np.array([3, 0, 3, 1, 3])  # row 3 gets three contributions, row 2 none
    out = gradcheck(lambda src: index_add(idx, src * src, 4), rand(5, 3))
    assert out.shape == (4, 3) and not out.data[2].any()
    src = rand(5, 3)
    expected = np.zeros((4, 3))
    np.add.at(expected, idx, src)
    np.testing.assert_allclose(index_add(idx, Tensor(src), 4).data, expected)
    assert index_add(np.array([], dtype=np.int64), Tensor(np.zeros((0, 3))), 2).data.tolist() == [[0.0] * 3] * 2
    with pytest.raises(ValueError, match="ids must be in 0 .. 3"):
        index_add(np.array([4]), Tensor(np.zeros((1, 3))), 4)
    with pytest.raises(ValueError, match="expected integer idx"):
        index_add(np.array([0.5]), Tensor(np.zeros((1, 3))), 4)


def test_cat_and_split():
    gradcheck(lambda a, b: cat([a, b], axis=1), rand(2, 3), rand(2, 5, seed=1))
    gradcheck(lambda a, b, c: cat([a, b, c], axis=0), rand(1, 3), rand(2, 3), rand(3, 3))
    gradcheck(lambda x: cat(split(x, 3, axis=-1)[::-1], axis=-1), rand(2, 2, 6))  # pieces in another order
    gradcheck(lambda x: split(x, [1, 4, 2], axis=1)[1] * 2, rand(3, 7))  # only one piece used
    sizes = [p.shape for p in split(Tensor(np.zeros((4, 6))), 2, axis=0)]
    assert sizes == [(2, 6), (2, 6)]


def test_split_rejects_bad_sizes():
    x = Tensor(np.zeros((2, 6)))
    with pytest.raises(ValueError, match="equal pieces"):
        split(x, 4)
    with pytest.raises(ValueError, match="add up"):
        split(x, [2, 2])


# ----------------------------------------------------------------------------------------------
# elementwise functions


@pytest.mark.parametrize("fn", ["exp", "log", "sqrt", "tanh", "relu", "gelu", "neg"])
def test_elementwise_functions(fn):
    f = (lambda x: -x) if fn == "neg" else (lambda x: getattr(x, fn)())
    gradcheck(f, rand(3, 5, positive=fn in ("log", "sqrt")) * (1 if fn in ("log", "sqrt") else 2))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax(axis):
    gradcheck(lambda x: x.softmax(axis=axis), rand(3, 4, 5))
    gradcheck(lambda x: x.log_softmax(axis=axis), rand(3, 4, 5))


def test_masked_fill_blocks_the_gradient_at_filled_positions():
    mask = np.array([[True, False, False], [False, False, True]])
    gradcheck(lambda x: x.masked_fill(mask, -5.0), rand(2, 3))
    gradcheck(lambda x: x.masked_fill(mask[0], 0.0), rand(2, 3))  # a mask that broadcasts
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    out = x.masked_fill(mask, -np.inf)
    assert np.isneginf(out.data[mask]).all()
    out.softmax().sum().backward()
    assert (x.grad[mask] == 0).all()


# ----------------------------------------------------------------------------------------------
# semantics


def test_dtypes_float32_by_default_float64_kept_ints_kept():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(np.ones(2, np.float16)).dtype == np.float32
    assert Tensor(np.ones(2)).dtype == np.float64
    assert Tensor([1, 2]).dtype.kind == "i"
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    y = (x * 2.0 + 1 - np.ones(3) / 3) ** 2  # numbers and float64 constants do not upcast
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_a_float32_array_is_wrapped_without_a_copy():
    a = np.zeros(3, np.float32)
    assert Tensor(a).data is a


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="integer tensor"):
        Tensor([1, 2, 3], requires_grad=True)


def test_gradients_accumulate_into_leaves_until_cleared():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [3 + 2, 3 + 4])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [3, 3])


def test_a_value_used_twice_gets_both_gradients():
    x = Tensor(np.array([2.0, -1.0]), requires_grad=True)
    y = x * 3
    z = (y * y + y).sum()  # d/dx = (2y + 1) * 3
    z.backward()
    np.testing.assert_allclose(x.grad, (2 * 3 * x.data + 1) * 3)


def test_second_backward_over_the_same_graph_raises():
    x = Tensor(np.ones(2), requires_grad=True)
    loss = (x * 2).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        loss.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])  # not silently doubled


def test_backward_through_a_consumed_part_of_a_graph_raises():
    x = Tensor(np.ones(2), requires_grad=True)
    h = x * 2
    h.sum().backward()
    with pytest.raises(RuntimeError, match="already freed"):
        (h * 3).sum().backward()


def test_non_scalar_backward_needs_a_grad():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="scalar"):
        y.backward()
    y = x * 2
    with pytest.raises(ValueError, match="shape"):
        y.backward(np.ones(3))
    y.backward(np.full((2, 3), 0.5))
    np.testing.assert_allclose(x.grad, np.ones((2, 3)))


def test_backward_of_a_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require a gradient"):
        Tensor([1.0]).sum().backward()


def test_no_grad_records_nothing_and_restores_the_mode():
    w = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = w * 2
    assert is_grad_enabled() and not y.requires_grad

    @no_grad()
    def predict(x):
        return x * w

    assert not predict(Tensor(np.ones(2))).requires_grad
    assert is_grad_enabled()


def test_detach_and_item():
    x = Tensor(np.array([3.0]), requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.item() == 6.0
    with pytest.raises(ValueError, match="2 elements"):
        Tensor([1.0, 2.0]).item()


def test_a_deep_graph_needs_no_recursion():
    x = Tensor(np.ones(1), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 5000], rtol=1e-4)


def test_a_leaf_root_gets_gradient_one():
    x = Tensor(np.array(2.0), requires_grad=True)
    x.backward()
    assert x.grad == 1.0


def test_mixed_float32_and_float64_gives_each_leaf_its_own_dtype():
    a = Tensor(np.ones(2, np.float32), requires_grad=True)
    b = Tensor(np.ones(2, np.float64), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_numpy_interplay():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    np.testing.assert_array_equal(np.asarray(x), [1.0, 2.0])
    assert isinstance(np.ones(2) * x, Tensor) and isinstance(np.ones(2) @ x, Tensor)
    with pytest.raises(TypeError):
        np.exp(x)  # NumPy functions do not silently drop the graph: use x.exp()
