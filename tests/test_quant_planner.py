"""The precision planner: its knapsack, its budgets on a small trained model, and `tinylm quantize`."""
import itertools
import math

import numpy as np
import pytest

from tinylm.quant.planner import _knapsack, layer_bytes


def test_layer_bytes_match_the_storage_formats():
    assert layer_bytes((64, 128), "fp32") == 4 * 64 * 128
    assert layer_bytes((64, 128), "fp16") == 2 * 64 * 128
    assert layer_bytes((64, 128), "int8:g32") == 64 * 128 + 4 * 64 * 4
    assert layer_bytes((64, 128), "int8:channel") == 64 * 128 + 4 * 64
    assert layer_bytes((64, 128), "int8") == layer_bytes((64, 128), "int8:g32")


@pytest.mark.parametrize("seed", range(5))
def test_knapsack_finds_the_best_choice_that_fits(seed):
    """Against brute force over every combination: the cheapest total value within the capacity."""
    rng = np.random.default_rng(seed)
    options = [[(None, float(c), float(v)) for c, v in zip(rng.integers(1, 100, 3), rng.random(3))]
               for _ in range(5)]
    capacity = float(rng.integers(100, 300))
    best = math.inf
    for combo in itertools.product(*[range(3)] * 5):
        cost = sum(options[i][j][1] for i, j in enumerate(combo))
        value = sum(options[i][j][2] for i, j in enumerate(combo))
        if cost <= capacity:
            best = min(best, value)
    chosen = _knapsack(options, cost_of=lambda o: o[1], value_of=lambda o: o[2], capacity=capacity,
                       n_bins=int(capacity))  # integer costs: one bin per unit, so the DP is exact
    if best == math.inf:
        assert chosen is None
    else:
        assert sum(options[i][j][1] for i, j in enumerate(chosen)) <= capacity
        assert sum(options[i][j][2] for i, j in enumerate(chosen)) == pytest.approx(best)


def test_knapsack_rounds_costs_up_so_it_never_exceeds_the_capacity():
    options = [[(None, 0.3, 1.0), (None, 0.0, 5.0)] for _ in range(4)]

    def solve(n_bins):
        return _knapsack(options, cost_of=lambda o: o[1], value_of=lambda o: o[2], capacity=1.0,
                         n_bins=n_bins)
    assert sorted(solve(1000)) == [0, 0, 0, 1]  # three 0.3-cost options fit in 1.0, a fourth does not
    coarse = solve(7)  # bins of 1/7: 0.3 counts as 3/7, so only two fit -- less, never more
    assert sorted(coarse) == [0, 0, 1, 1]
