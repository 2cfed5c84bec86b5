"""Write train_vectors.h: inputs, expected outputs and tolerances for training's kernels (the backward
passes of GELU, layer norm, RMSNorm and softmax; RMSNorm; cross-entropy; AdamW; the embedding scatter-add;
fused attention, forward and backward),
from the NumPy references in tinylm/kernels/reference.py.

    python tests/c/gen_train_vectors.py OUT.h [--seed 3]

tests/c/test_train_kernels.c includes it and checks the kernels with nothing but printf. Floats are
stored as their uint32 bit patterns. Exact kernels carry no tolerance; the others carry one per element,
from the bounds written in kernels/tinylm_kernels.h (the constants of reference.py).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))      # run from a checkout, uninstalled

from gen_vectors import c_array, f32_bits  # noqa: E402  (tests/c: the folder of this script)

from tinylm.kernels import reference as ref  # noqa: E402

NORM = dict(ROWS=5, C=45)          # C not a multiple of 8: the partial sums' tail is exercised
GELU_N = 150
SM = dict(B=2, TQ=6, TK=9)         # causal score matrices (Tq < Tk: the queries are the last Tq)
CE = dict(N=7, V=29)
ADAM_N = 53                        # not a multiple of 16: the SIMD loop and the portable tail
EMB = dict(V=6, C=10, N=9)
SDPA = dict(B=2, NH=2, TQ=6, TK=9, HS=19)   # causal, Tq < Tk; hs not a multiple of 16, Tq not of 4


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def vectors(seed):
    rng = np.random.default_rng(seed)
    out = []
    for name, d in (("NORM", NORM), ("SM", SM), ("CE", CE), ("EMB", EMB), ("SDPA", SDPA)):
        out += [f"#define TV_{name}_{k} {v}" for k, v in d.items()]
    out += [f"#define TV_GELU_N {GELU_N}", f"#define TV_ADAM_N {ADAM_N}\n"]
    tol_norm = ref.NORM_BACKWARD_TOL

    def arrays(pairs):
        return [c_array("uint32_t", n, f32_bits(a)) for n, a in pairs]

    g = np.concatenate([f32(rng, GELU_N - 6, scale=4), np.array([0, -0.0, 30, -30, -100, 1e-30], np.float32)])
    gdy = f32(rng, GELU_N)
    gdx = ref.gelu_backward_f32(g, gdy)
    out += arrays([("gelu_x", g), ("gelu_dy", gdy), ("gelu_dx", gdx),
                   ("gelu_tol", ref.GELU_BACKWARD_RTOL * (np.abs(gdx) + np.abs(gdy)) + np.float32(1e-30))])

    x = f32(rng, NORM["ROWS"], NORM["C"], scale=3) + np.float32(0.5)
    w, dy = f32(rng, NORM["C"]), f32(rng, NORM["ROWS"], NORM["C"])
    dx, dw, db = ref.layernorm_backward_f32(x, w, dy, 1e-5)
    ry = ref.rmsnorm_f32(x, w, 1e-5)
    rdx, rdw = ref.rmsnorm_backward_f32(x, w, dy, 1e-5)
    out += arrays([("norm_x", x), ("norm_w", w), ("norm_dy", dy)])
    for name, a in (("ln_dx", dx), ("ln_dw", dw), ("ln_db", db), ("rms_y", ry), ("rms_dx", rdx), ("rms_dw", rdw)):
        out += arrays([(name, a), (name + "_tol", tol_norm * (1 + np.abs(a)))])

    s = f32(rng, SM["B"], SM["TQ"], SM["TK"], scale=2)
    y = ref.softmax_f32(s, causal=True)
    sdy = f32(rng, *s.shape)
    sdx = ref.softmax_backward_f32(y, sdy, 0.5)
    sdx[:, ~ref._causal_visible(s.shape)] = 0.0
    bound = 0.5 * np.abs(sdy * y).max(axis=-1, keepdims=True) * SM["TK"]
    out += arrays([("sm_y", y), ("sm_dy", sdy), ("sm_dx", sdx),
                   ("sm_tol", ref.SOFTMAX_BACKWARD_TOL * (np.abs(sdx) + bound))])

    z = f32(rng, CE["N"], CE["V"], scale=3)
    t = rng.integers(0, CE["V"], CE["N"]).astype(np.int32)
    t[2] = -1                                                   # an ignored row
    probs, nll = ref.cross_entropy_f32(z, t)
    dz = ref.cross_entropy_backward_f32(probs, t, np.float32(1 / 6))
    out += arrays([("ce_z", z), ("ce_probs", probs), ("ce_nll", nll), ("ce_dz", dz),
                   ("ce_probs_tol", ref.SOFTMAX_F32_ATOL + ref.SOFTMAX_F32_RTOL * probs),
                   ("ce_nll_tol", ref.CROSS_ENTROPY_NLL_TOL * (1 + np.abs(nll)))])
    out += [c_array("int32_t", "ce_t", t)]

    p, grad = f32(rng, ADAM_N), f32(rng, ADAM_N)
    m, v = f32(rng, ADAM_N, scale=0.1), np.abs(f32(rng, ADAM_N, scale=0.1))
    v[:3] = 0.0
    grad[:3] = 0.0                                              # sqrt(0): the update is 0 / eps_hat
    hyper = dict(decay=0.9999, beta1=0.9, beta2=0.99, eps_hat=1e-8 * 0.1, step=-1e-3 * 0.1 / 0.1)
    p2, m2, v2 = ref.adamw_f32(p, grad, m, v, **hyper)
    out += arrays([("adam_p", p), ("adam_g", grad), ("adam_m", m), ("adam_v", v),
                   ("adam_p2", p2), ("adam_m2", m2), ("adam_v2", v2)])
    scalars = dict(hyper, c1=1 - hyper["beta1"], c2=1 - hyper["beta2"])   # as floats, in hex: exact
    out += [f"#define TV_ADAM_{k.upper()} {float(np.float32(val)).hex()}f" for k, val in scalars.items()] + [""]

    ids = rng.integers(0, EMB["V"], EMB["N"]).astype(np.int32)
    ids[1] = ids[0]                                             # an id used twice
    edy = f32(rng, EMB["N"], EMB["C"])
    out += [c_array("int32_t", "emb_ids", ids)]
    out += arrays([("emb_dy", edy), ("emb_dtable", ref.embedding_backward_f32(ids, edy, EMB["V"]))])
    B, nh, Tq, Tk, hs = SDPA.values()
    q, k, v, ady = f32(rng, B, nh, Tq, hs), f32(rng, B, nh, Tk, hs), f32(rng, B, nh, Tk, hs), f32(rng, B, nh, Tq, hs)
    ay, ap = ref.sdpa_f32(q, k, v, causal=True)
    adq, adk, adv = ref.sdpa_backward_f32(q, k, v, ap, ady, causal=True)
    out += arrays([("sdpa_q", q), ("sdpa_k", k), ("sdpa_v", v), ("sdpa_dy", ady)])
    for name, a in (("sdpa_y", ay), ("sdpa_p", ap), ("sdpa_dq", adq), ("sdpa_dk", adk), ("sdpa_dv", adv)):
        tol = ref.SDPA_TOL * (1 + np.abs(a).max(axis=(2, 3), keepdims=True)) + np.zeros_like(a)
        out += arrays([(name, a), (name + "_tol", tol)])
    return "/* generated by tests/c/gen_train_vectors.py; do not edit */\n#include <stdint.h>\n\n" + "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="the header to write")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(vectors(args.seed))


if __name__ == "__main__":
    main()
