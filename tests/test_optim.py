"""Optimizers against their closed-form updates, parameter groups, the schedule, clipping, and resume."""
import math

import numpy as np
import pytest

from tinylm.autograd import Tensor
from tinylm.optim import SGD, AdamW, clip_grad_norm, cosine_schedule


def param(values):
    return Tensor(np.array(values, np.float64), requires_grad=True)


def test_adamw_matches_the_closed_form_for_a_few_steps():
    p = param([1.0, -2.0, 0.5])
    opt = AdamW([p], lr=0.1, betas=(0.8, 0.9), eps=1e-8, weight_decay=0.05)
    grads = [np.array([0.1, -0.3, 2.0]), np.array([-0.2, 0.1, 1.0]), np.array([0.5, 0.5, -1.0])]
    expected, m, v = p.data.copy(), np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, start=1):
        p.grad = g.copy()
        opt.step()
        expected = expected - 0.1 * 0.05 * expected
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        expected = expected - 0.1 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.9 ** t)) + 1e-8)
        np.testing.assert_allclose(p.data, expected, rtol=1e-12)


def test_adamw_first_step_moves_each_weight_by_lr():
    p = param([1.0, 1.0])
    p.grad = np.array([1e-3, -50.0])
    AdamW([p], lr=0.01, weight_decay=0.0).step()
    np.testing.assert_allclose(p.data, [0.99, 1.01], rtol=1e-6)  # Adam's step is ~lr whatever |g| is


def test_weight_decay_groups_decay_only_their_parameters():
    w, b = param([1.0, 1.0]), param([1.0, 1.0])
    opt = AdamW([{"params": [w], "weight_decay": 0.5}, {"params": [b], "weight_decay": 0.0}], lr=0.1)
    w.grad, b.grad = np.zeros(2), np.zeros(2)  # no gradient: only the decay moves anything
    opt.step()
    np.testing.assert_allclose(w.data, [0.95, 0.95])
    np.testing.assert_array_equal(b.data, [1.0, 1.0])
    opt.param_groups[0]["lr"] = 0.2
    opt.step()
    np.testing.assert_allclose(w.data, [0.95 * 0.9, 0.95 * 0.9])


def test_parameters_without_grad_are_left_alone():
    p, q = param([1.0]), param([2.0])
    p.grad = np.array([1.0])
    opt = AdamW([p, q], lr=0.1)
    opt.step()
    assert q.data[0] == 2.0 and p.data[0] != 1.0


def test_sgd_with_momentum_and_weight_decay():
    p = param([1.0])
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    p.grad = np.array([1.0])
    opt.step()  # g = 1 + 0.1 * 1 = 1.1; buf = 1.1; p = 1 - 0.11
    np.testing.assert_allclose(p.data, [0.89])
    opt.step()  # g = 1 + 0.089 = 1.089; buf = 0.99 + 1.089 = 2.079; p = 0.89 - 0.2079
    np.testing.assert_allclose(p.data, [0.89 - 0.2079])


def test_optimizer_argument_errors():
    p = param([1.0])
    with pytest.raises(ValueError, match="empty"):
        AdamW([])
    with pytest.raises(TypeError, match="requires_grad=True"):
        AdamW([Tensor([1.0])])
    with pytest.raises(ValueError, match="appears twice"):
        AdamW([p, p])
    with pytest.raises(ValueError, match="unknown option"):
        AdamW([{"params": [p], "decay": 0.1}])
    with pytest.raises(ValueError, match="lr must be >= 0"):
        SGD([p], lr=-1)
    with pytest.raises(ValueError, match="betas"):
        AdamW([p], betas=(0.9, 1.0))


def _run(opt, params, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        for p in params:
            p.grad = rng.standard_normal(p.shape).astype(p.dtype)
        opt.step()


@pytest.mark.parametrize("make", [
    lambda ps: AdamW([{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "weight_decay": 0.0}], lr=0.01),
    lambda ps: SGD(ps, lr=0.01, momentum=0.9),
])
def test_state_dict_resume_is_bit_exact(make, tmp_path):
    def fresh():
        return [Tensor(np.ones((3, 2), np.float32), requires_grad=True),
                Tensor(np.zeros(4, np.float32), requires_grad=True)]

    straight = fresh()
    opt = make(straight)
    _run(opt, straight, 3, seed=0)
    _run(opt, straight, 2, seed=1)

    first = fresh()
    opt1 = make(first)
    _run(opt1, first, 3, seed=0)
    opt1.param_groups[0]["lr"] = opt1.param_groups[0]["lr"]  # settable
    path = tmp_path / "opt.npz"
    np.savez(path, **opt1.state_dict())  # flat str -> ndarray: saves directly
    weights = [p.data.copy() for p in first]

    resumed = fresh()
    for p, w in zip(resumed, weights):
        p.data[...] = w
    opt2 = make(resumed)
    with np.load(path, allow_pickle=False) as f:
        opt2.load_state_dict(dict(f))
    _run(opt2, resumed, 2, seed=1)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_restores_hyper_parameters_and_checks_shapes():
    p = param([1.0, 2.0])
    opt = AdamW([p], lr=0.5, betas=(0.8, 0.9))
    p.grad = np.ones(2)
    opt.step()
    sd = opt.state_dict()
    other = AdamW([param([0.0, 0.0])], lr=0.1)
    other.load_state_dict(sd)
    assert other.param_groups[0]["lr"] == 0.5 and other.param_groups[0]["betas"] == (0.8, 0.9)
    wrong = AdamW([param([0.0, 0.0, 0.0])])
    with pytest.raises(ValueError, match="expected \\(3,\\)"):
        wrong.load_state_dict(sd)
    two = AdamW([param([0.0, 0.0]), param([0.0])])
    with pytest.raises(ValueError, match="group 0 does not match"):
        two.load_state_dict(sd)


def test_cosine_schedule_values():
    lr = [cosine_schedule(s, 1e-3, 1e-4, 10, 110) for s in range(120)]
    assert lr[0] == pytest.approx(1e-3 / 11) and lr[9] == pytest.approx(1e-3 * 10 / 11)
    assert all(a < b for a, b in zip(lr[:10], lr[1:11]))  # warming up
    assert lr[10] == pytest.approx(1e-3)  # peak right after warmup
    assert lr[60] == pytest.approx(1e-4 + 0.5 * 0.9e-3)  # halfway down the cosine
    assert all(a >= b for a, b in zip(lr[10:110], lr[11:111]))  # decaying
    assert lr[110] == pytest.approx(1e-4) and lr[119] == 1e-4
    with pytest.raises(ValueError, match="warmup_steps <= decay_steps"):
        cosine_schedule(0, 1.0, 0.1, 10, 5)


def test_clip_grad_norm_scales_to_max_norm_and_returns_the_norm_before():
    a, b, c = param([3.0]), param([0.0, 4.0]), param([1.0])
    a.grad, b.grad = np.array([3.0]), np.array([0.0, 4.0])  # global norm 5; c has no grad
    assert clip_grad_norm([a, b, c], 1.0) == pytest.approx(5.0)
    total = math.sqrt(float(a.grad @ a.grad + b.grad @ b.grad))
    assert total == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(b.grad, [0.0, 0.8], rtol=1e-5)
    assert clip_grad_norm([a, b], 10.0) == pytest.approx(1.0, rel=1e-5)  # under the limit: unchanged
    np.testing.assert_allclose(b.grad, [0.0, 0.8], rtol=1e-5)
