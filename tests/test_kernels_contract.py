"""The kernel contract is written once, in kernels/tinylm_kernels.h; the error bounds the tests use
live in tinylm.kernels.reference (constants and `matmul_tolerance`), which also writes them into the C
test's vectors.h. These tests read the bounds the header states, in its own words, and check that
they are the ones reference.py (hence every kernel test) uses -- so neither can drift alone.
"""
import os
import re

import numpy as np
import pytest
from conftest import ROOT

from tinylm.kernels import reference as ref

HEADER = os.path.join(ROOT, "kernels", "tinylm_kernels.h")
VECTORS = os.path.join(ROOT, "tests", "c", "vectors.h")


def header_text(path=HEADER):
    """The header's comments as one line of prose: ' * ' prefixes dropped, whitespace collapsed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return " ".join(re.sub(r"^\s*\*\s?", "", line) for line in text.splitlines()).replace("  ", " ")


def stated_bounds(text):
    """{name: value or formula} of every error bound the header states, parsed from its prose."""
    text = re.sub(r"\s+", " ", text)
    matmul = re.search(r"\|y - y_exact\| <= (.+?)\. ", text).group(1)
    exp = re.search(r"Max relative error ([0-9.e+-]+)", text).group(1)
    softmax = re.search(r"within ([0-9.e+-]+) \+ ([0-9.e+-]+) \* y of the exact softmax", text)
    f16 = re.search(r"Within (\d+) fp16 ulp", text).group(1)
    s8 = re.search(r"Within 1/(\d+) \(\+ 2\^(-\d+)\) of the float softmax", text)
    return {"matmul": matmul, "exp": float(exp), "softmax_atol": float(softmax.group(1)),
            "softmax_rtol": float(softmax.group(2)), "softmax_f16_ulps": int(f16),
            "softmax_s8": 1 / int(s8.group(1)) + 2.0**int(s8.group(2))}


def evaluate_matmul_bound(formula, x, w, b):
    """The header's matmul formula, e.g. 'K * 2^-23 * sum|x*w| + |y_exact| * 2^-23', on x, w, b."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    names = {"K": x.shape[1], "SUM_XW": np.abs(x64) @ np.abs(w64).T,
             "Y_EXACT": np.abs(x64 @ w64.T + (0 if b is None else b))}
    expr = formula.replace("sum|x*w|", "SUM_XW").replace("|y_exact|", "Y_EXACT").replace("^", "**")
    assert re.fullmatch(r"[A-Z_0-9*+\- .]+", expr), f"cannot read the header's bound: {formula!r}"
    return eval(expr, {"__builtins__": {}}, names)               # only names, numbers, + - * **


def check_bounds_agree(text):
    bounds = stated_bounds(text)
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((5, 37), (7, 37), (7,)))
    np.testing.assert_allclose(evaluate_matmul_bound(bounds["matmul"], x, w, b), ref.matmul_tolerance(x, w, b),
                               rtol=1e-12, atol=0)
    assert bounds["exp"] == ref.EXP_F32_REL_ERROR
    assert (bounds["softmax_atol"], bounds["softmax_rtol"]) == (ref.SOFTMAX_F32_ATOL, ref.SOFTMAX_F32_RTOL)
    assert bounds["softmax_f16_ulps"] == ref.SOFTMAX_F16_ULPS
    assert bounds["softmax_s8"] == ref.SOFTMAX_S8_ERROR


def test_bounds_stated_in_the_header_are_the_ones_the_reference_and_tests_use():
    check_bounds_agree(header_text())


@pytest.mark.parametrize("old, new", [
    (" + |y_exact| * 2^-23", ""),                                # the term reference.py once lacked
    ("K * 2^-23 * sum", "K * 2^-24 * sum"),
    ("Max relative error 1.5e-7", "Max relative error 1e-7"),
    ("within 1e-6 + 2e-6 * y", "within 1e-6 + 4e-6 * y"),
    ("Within 1 fp16 ulp", "Within 2 fp16 ulp"),
    ("Within 1/256 (+ 2^-22)", "Within 1/128 (+ 2^-22)"),
])
def test_a_bound_changed_in_the_header_alone_is_caught(old, new):
    text = header_text()
    assert old in text
    with pytest.raises(AssertionError):
        check_bounds_agree(text.replace(old, new))


def test_the_c_test_vectors_carry_the_reference_bounds():
    with open(VECTORS, encoding="utf-8") as f:
        defines = dict(re.findall(r"#define (TV_\w+) (\S+)", f.read()))
    assert float(defines["TV_SOFTMAX_F32_ATOL"].rstrip("f")) == ref.SOFTMAX_F32_ATOL
    assert float(defines["TV_SOFTMAX_F32_RTOL"].rstrip("f")) == ref.SOFTMAX_F32_RTOL
    assert int(defines["TV_SOFTMAX_F16_ULPS"]) == ref.SOFTMAX_F16_ULPS
    assert float(defines["TV_EXP_F32_RTOL"].rstrip("f")) == pytest.approx(ref.EXP_F32_REL_ERROR + 2.0**-24)
