"""Fit the polynomial kernels/softmax.c uses for e^r on [-ln2/2, ln2/2], and measure its error.

    python kernels/tools/fit_exp_poly.py        # prints the TL_EXP_C2..C6 constants and their error

p(r) = 1 + r + r^2 * (c2 + c3 r + c4 r^2 + c5 r^3 + c6 r^4). Its first two coefficients are fixed at 1,
so that p(0) = 1 exactly and small r keep full precision; the other five minimise the largest
*relative* error |p(r) / e^r - 1| over the interval. The fit is Lawson's iteration: a weighted least-
squares fit on Chebyshev nodes, re-weighted by each node's error until the largest errors are equal
(what a minimax fit is). The coefficients are then rounded to float32, and the polynomial is evaluated
the way the C does (Horner's rule in float32, no fused multiply-add) to measure the error that the
kernels really have. Run by hand; the kernels' tests check the resulting exp against the contract.
"""
import numpy as np

HALF_LN2 = np.log(2) / 2


def fit(degree=6, nodes=4000, iterations=200):
    """The float64 coefficients c2..c_degree, and the largest relative error of the fit."""
    r = HALF_LN2 * np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes)   # Chebyshev nodes
    target = (np.expm1(r) - r) / r**2                # what the bracket must be: (e^r - 1 - r) / r^2
    scale = r**2 / np.exp(r)                          # turns the bracket's error into p's relative error
    A = np.vander(r, degree - 1, increasing=True)     # (nodes, degree - 1): 1, r, r^2, ...
    weights = np.ones(nodes)
    for _ in range(iterations):
        w = scale * np.sqrt(weights)
        c, *_ = np.linalg.lstsq(A * w[:, None], target * w, rcond=None)
        err = np.abs((A @ c - target) * scale)
        weights = weights * err
        weights /= weights.sum()
    return c, float(err.max())


def horner_f32(c, r):
    """p(r) in float32, in the C's order: p = c6; p = p*r + c5; ... ; p = p*r + 1; p*r + 1."""
    c = [np.float32(v) for v in c]
    p = np.full_like(r, c[-1])
    for coefficient in c[-2::-1] + [np.float32(1), np.float32(1)]:
        p = p * r + coefficient                       # float32 * float32 + float32: rounded each step
    return p


if __name__ == "__main__":
    c, err = fit()
    r = np.linspace(-HALF_LN2, HALF_LN2, 2_000_001, dtype=np.float32)
    measured = np.abs(horner_f32(c, r).astype(np.float64) / np.exp(r.astype(np.float64)) - 1).max()
    for i, value in enumerate(c, start=2):
        print(f"#define TL_EXP_C{i} {np.float32(value):.9e}f")
    print(f"fit error {err:.2e}; in float32 arithmetic, with rounded coefficients: {measured:.2e}")
