"""`python -m tinylm.bench autograd`: what the autograd engine costs over hand-written NumPy.

Two workloads, each run forward + backward by tinylm's engine and by a hand-written NumPy forward and
backward of exactly the same computation (same float32 arrays, same BLAS), in the same run:
  mlp    x (B*T, C) -> Linear(C, 4C) -> GELU -> Linear(4C, C) -> mean squared error
  block  one pre-norm GPT-2 transformer block (LayerNorm, causal self-attention, LayerNorm, MLP)
         with nanoGPT's small config: B=12, T=64, C=128, 4 heads
and, when tinylm.model is present, the whole small GPT (4 layers, vocab 65) against the same GPT
written by hand, plus the AdamW step. Last, two fused operations (cross-entropy, attention) against
the same math composed from the engine's small operations.
With tinylm's C kernels built, the engine's element-wise work runs in C (the printed path says which), so a
ratio below 1.00 is the C kernels' gain; TINYLM_KERNELS=numpy measures the engine on its NumPy code alone.
The figure that matters is the ratio engine / hand-written (1.00 = no overhead); absolute times move
with whatever else the machine is doing. Single-threaded BLAS unless told otherwise
(python -m tinylm.bench sets OPENBLAS_NUM_THREADS=1 when it is unset):

    python -m tinylm.bench autograd [--repeats 30] [--threads N]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

from tinylm import nn
from tinylm.autograd import Tensor, scaled_dot_product_attention, split

GELU_C = math.sqrt(2.0 / math.pi)


# ----------------------------------------------------------------------------------------------
# the hand-written reference: forward functions return a cache, backward functions consume it


def ln_forward(x, w, b, eps=1e-5):  # x (N, C)
    xc = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
    xhat = xc * rstd
    return xhat * w + b, (xhat, rstd, w)


def ln_backward(dy, cache):
    xhat, rstd, w = cache
    dw = (dy * xhat).sum(axis=0)
    db = dy.sum(axis=0)
    dxhat = dy * w
    dx = (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)) * rstd
    return dx, dw, db


def gelu_forward(x):  # x * sigmoid(2u), the same formula as tinylm.autograd.gelu (one exp, no tanh)
    s = 1.0 / (1.0 + np.exp(-2.0 * GELU_C * (x + 0.044715 * x * x * x)))
    return x * s, (x, s)


def gelu_backward(dy, cache):
    x, s = cache
    return dy * s * (1.0 + 2.0 * GELU_C * x * (1.0 - s) * (1.0 + 3 * 0.044715 * x * x))


def block_forward(p, x, n_head):
    """x (B, T, C) -> (B, T, C) and the cache for block_backward; p: the block's named arrays."""
    B, T, C = x.shape
    hs = C // n_head
    x2 = x.reshape(B * T, C)
    h, ln1 = ln_forward(x2, p["ln_1.weight"], p["ln_1.bias"])  # (BT, C)
    qkv = h @ p["attn.c_attn.weight"].T + p["attn.c_attn.bias"]  # (BT, 3C)
    q, k, v = (qkv[:, i * C:(i + 1) * C].reshape(B, T, n_head, hs).transpose(0, 2, 1, 3) for i in range(3))
    att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
    att += np.triu(np.full((T, T), -np.inf, np.float32), k=1)
    att = np.exp(att - att.max(axis=-1, keepdims=True))
    att /= att.sum(axis=-1, keepdims=True)
    y = (att @ v).transpose(0, 2, 1, 3).reshape(B * T, C)  # (BT, C)
    x1 = x2 + y @ p["attn.c_proj.weight"].T + p["attn.c_proj.bias"]  # (BT, C)
    h2, ln2 = ln_forward(x1, p["ln_2.weight"], p["ln_2.bias"])
    f = h2 @ p["mlp.c_fc.weight"].T + p["mlp.c_fc.bias"]  # (BT, 4C)
    g, gc = gelu_forward(f)
    out = x1 + g @ p["mlp.c_proj.weight"].T + p["mlp.c_proj.bias"]  # (BT, C)
    return out.reshape(B, T, C), (x2, ln1, h, q, k, v, att, y, ln2, h2, gc, g)


def block_backward(p, dout, cache, n_head):
    """Gradients of every parameter (and of x) given dout (B, T, C)."""
    x2, ln1, h, q, k, v, att, y, ln2, h2, gc, g = cache
    B, T, C = dout.shape
    hs = C // n_head
    grads = {}
    d = dout.reshape(B * T, C)
    # out = x1 + g @ Wp^T + b
    grads["mlp.c_proj.weight"] = d.T @ g
    grads["mlp.c_proj.bias"] = d.sum(axis=0)
    df = gelu_backward(d @ p["mlp.c_proj.weight"], gc)  # (BT, 4C)
    grads["mlp.c_fc.weight"] = df.T @ h2
    grads["mlp.c_fc.bias"] = df.sum(axis=0)
    dx1, grads["ln_2.weight"], grads["ln_2.bias"] = ln_backward(df @ p["mlp.c_fc.weight"], ln2)
    dx1 += d
    # x1 = x2 + y @ Wp^T + b
    grads["attn.c_proj.weight"] = dx1.T @ y
    grads["attn.c_proj.bias"] = dx1.sum(axis=0)
    dy = (dx1 @ p["attn.c_proj.weight"]).reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
    dv = att.transpose(0, 1, 3, 2) @ dy
    datt = dy @ v.transpose(0, 1, 3, 2)
    ds = att * (datt - (datt * att).sum(axis=-1, keepdims=True)) * (1.0 / math.sqrt(hs))
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    dqkv = np.concatenate([t.transpose(0, 2, 1, 3).reshape(B * T, C) for t in (dq, dk, dv)], axis=1)  # (BT, 3C)
    grads["attn.c_attn.weight"] = dqkv.T @ h
    grads["attn.c_attn.bias"] = dqkv.sum(axis=0)
    dx, grads["ln_1.weight"], grads["ln_1.bias"] = ln_backward(dqkv @ p["attn.c_attn.weight"], ln1)
    dx += dx1
    return dx.reshape(B, T, C), grads


def gpt_forward_backward(p, idx, targets, n_layer, n_head):
    """Loss and gradients of a whole GPT (tinylm.model's names, tied lm_head) written by hand."""
    B, T = idx.shape
    wte, wpe = p["transformer.wte.weight"], p["transformer.wpe.weight"]
    V, C = wte.shape
    x = wte[idx] + wpe[:T]  # (B, T, C)
    caches = []
    for layer in range(n_layer):
        sub = {k[len(f"transformer.h.{layer}."):]: v for k, v in p.items() if k.startswith(f"transformer.h.{layer}.")}
        x, cache = block_forward(sub, x, n_head)
        caches.append((sub, cache))
    xf, lnf = ln_forward(x.reshape(B * T, C), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"])
    logits = xf @ wte.T  # (BT, V)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    rows, t = np.arange(B * T), targets.reshape(-1)
    loss = -np.log(probs[rows, t]).mean()
    probs[rows, t] -= 1.0
    dlogits = probs / (B * T)  # (BT, V)
    grads = {"transformer.wte.weight": dlogits.T @ xf}
    dx, grads["transformer.ln_f.weight"], grads["transformer.ln_f.bias"] = ln_backward(dlogits @ wte, lnf)
    dx = dx.reshape(B, T, C)
    for layer in reversed(range(n_layer)):
        sub, cache = caches[layer]
        dx, g = block_backward(sub, dx, cache, n_head)
        grads.update({f"transformer.h.{layer}.{k}": v for k, v in g.items()})
    np.add.at(grads["transformer.wte.weight"], idx.reshape(-1), dx.reshape(B * T, C))
    grads["transformer.wpe.weight"] = np.zeros_like(wpe)
    grads["transformer.wpe.weight"][:T] = dx.sum(axis=0)
    return loss, grads


# ----------------------------------------------------------------------------------------------
# the same block on the engine


class Block(nn.Module):
    """A GPT-2 block on tinylm.nn, parameter names as in tinylm.model."""

    def __init__(self, n_embd, n_head, rng):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(n_embd, 3 * n_embd, rng=rng)
        self.attn.c_proj = nn.Linear(n_embd, n_embd, rng=rng)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(n_embd, 4 * n_embd, rng=rng)
        self.mlp.c_proj = nn.Linear(4 * n_embd, n_embd, rng=rng)

    def forward(self, x):
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = split(self.attn.c_attn(self.ln_1(x)), 3, axis=-1)  # 3 x (B, T, C)
        q, k, v = (t.reshape(B, T, nh, hs).permute(0, 2, 1, 3) for t in (q, k, v))  # (B, nh, T, hs)
        y = scaled_dot_product_attention(q, k, v, causal=True)  # (B, nh, T, hs)
        x = x + self.attn.c_proj(y.permute(0, 2, 1, 3).reshape(B, T, C))  # (B, T, C)
        return x + self.mlp.c_proj(self.mlp.c_fc(self.ln_2(x)).gelu())  # (B, T, C)


# ----------------------------------------------------------------------------------------------
# timing


def median_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1000 * float(np.median(times))


def interleaved(fns, repeats):
    """Median ms of each function, run alternately so that background load hits them alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for t, fn in zip(times, fns):
            t0 = time.process_time()
            fn()
            t.append(time.process_time() - t0)
    return [1000 * float(np.median(t)) for t in times]


def bench_mlp(repeats, N=768, C=128, seed=0):
    rng = np.random.default_rng(seed)
    fc, proj = nn.Linear(C, 4 * C, rng=rng), nn.Linear(4 * C, C, rng=rng)
    x = rng.standard_normal((N, C)).astype(np.float32)
    target = rng.standard_normal((N, C)).astype(np.float32)
    W1, b1, W2, b2 = fc.weight.data, fc.bias.data, proj.weight.data, proj.bias.data

    def engine():
        fc.weight.grad = fc.bias.grad = proj.weight.grad = proj.bias.grad = None
        loss = ((proj(fc(Tensor(x)).gelu()) - target) ** 2).mean()
        loss.backward()

    def numpy():
        f = x @ W1.T + b1
        g, gc = gelu_forward(f)
        out = g @ W2.T + b2
        diff = out - target
        _ = (diff * diff).mean()
        d = diff * (2.0 / diff.size)
        _ = d.T @ g, d.sum(axis=0)
        df = gelu_backward(d @ W2, gc)
        _ = df.T @ x, df.sum(axis=0)

    return interleaved([engine, numpy], repeats)


def bench_block(repeats, B=12, T=64, C=128, n_head=4, seed=0):
    rng = np.random.default_rng(seed)
    block = Block(C, n_head, rng)
    params = {name: p.data for name, p in block.named_parameters()}
    x = rng.standard_normal((B, T, C)).astype(np.float32)
    dout = rng.standard_normal((B, T, C)).astype(np.float32)

    def engine():
        block.zero_grad()
        xt = Tensor(x, requires_grad=True)
        block(xt).backward(dout)

    def numpy():
        _, cache = block_forward(params, x, n_head)
        block_backward(params, dout, cache, n_head)

    return interleaved([engine, numpy], repeats)


def bench_gpt(repeats, B=12, T=64, seed=0):
    """nanoGPT's small config through tinylm.model (if present): forward + backward by the engine and by
    gpt_forward_backward, and the AdamW step. Returns (engine ms, numpy ms, adamw ms) or None."""
    try:
        from tinylm.model import GPT, GPTConfig
    except ImportError:
        return None
    from tinylm.optim import AdamW
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    model = GPT(cfg, seed=seed)
    params = {name: p.data for name, p in model.named_parameters()}
    opt = AdamW(model.parameters(), lr=1e-3)
    idx = np.random.default_rng(seed).integers(0, cfg.vocab_size, (B, T + 1))
    x, y = idx[:, :-1], idx[:, 1:]

    def engine():
        model.zero_grad()
        _, loss = model(x, targets=y)
        loss.backward()

    def numpy():
        gpt_forward_backward(params, x, y, cfg.n_layer, cfg.n_head)

    eng, ref = interleaved([engine, numpy], repeats)
    return eng, ref, median_ms(opt.step, repeats)  # the gradients of the last engine() call


def bench_fused(repeats, N=768, V=256, B=12, nh=4, T=64, hs=32, seed=0):
    """Fused operations against the same math composed from small engine operations (both on the
    engine, forward + backward): [(name, fused ms, composed ms)]."""
    from tinylm.autograd import cross_entropy
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((N, V)).astype(np.float32)
    targets = rng.integers(0, V, N)
    rows = np.arange(N)

    def ce_fused():
        z = Tensor(logits, requires_grad=True)
        cross_entropy(z, targets).backward()

    def ce_composed():
        z = Tensor(logits, requires_grad=True)
        (-(z.log_softmax(axis=-1)[rows, targets]).mean()).backward()

    q, k, v = (rng.standard_normal((B, nh, T, hs)).astype(np.float32) for _ in range(3))
    mask = np.triu(np.ones((T, T), bool), k=1)
    dy = rng.standard_normal((B, nh, T, hs)).astype(np.float32)

    def attn_fused():
        qt, kt, vt = (Tensor(a, requires_grad=True) for a in (q, k, v))
        scaled_dot_product_attention(qt, kt, vt).backward(dy)

    def attn_composed():
        qt, kt, vt = (Tensor(a, requires_grad=True) for a in (q, k, v))
        att = ((qt @ kt.transpose(-1, -2)) * (1.0 / math.sqrt(hs))).masked_fill(mask, -np.inf)  # (B, nh, T, T)
        (att.softmax(axis=-1) @ vt).backward(dy)

    ce = interleaved([ce_fused, ce_composed], repeats)
    attn = interleaved([attn_fused, attn_composed], repeats)
    return [(f"cross-entropy ({N} x {V} logits)", *ce), (f"causal attention (B={B} nh={nh} T={T} hs={hs})", *attn)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinylm.bench autograd", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed repetitions per workload (median reported)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks that it runs (tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    from tinylm import kernels
    path = "C kernels (tinylm._kernels)" if kernels.backend() == "c" else "NumPy (TINYLM_KERNELS=numpy or no C build)"
    print(f"tinylm autograd engine vs hand-written NumPy (float32, median of {args.repeats}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, NumPy {np.__version__})")
    print(f"engine's element-wise ops (GELU, norms, softmax, cross-entropy, AdamW) run in: {path}")
    print(f"{'workload':<44} {'engine ms':>10} {'numpy ms':>10} {'ratio':>7}")
    small = dict(B=2, T=8) if args.quick else {}
    mlp = bench_mlp(args.repeats, N=16 if args.quick else 768)
    block = bench_block(args.repeats, **small)
    for name, (eng, ref) in [("mlp fwd+bwd (768 x 128 -> 512 -> 128)", mlp),
                             ("block fwd+bwd (B=12 T=64 C=128 nh=4)", block)]:
        print(f"{name:<44} {eng:>10.2f} {ref:>10.2f} {eng / ref:>7.2f}")
    gpt = bench_gpt(args.repeats, **small)
    if gpt is not None:
        eng, ref, adamw = gpt
        print(f"{'GPT fwd+bwd (4 x 128, B=12 T=64, vocab 65)':<44} {eng:>10.2f} {ref:>10.2f} {eng / ref:>7.2f}")
        print(f"{'AdamW step over its 0.8M parameters':<44} {adamw:>10.2f}")
    print(f"\n{'fused operation vs the same math composed':<44} {'fused ms':>10} {'composed':>10} {'ratio':>7}")
    tiny = dict(N=8, V=5, B=1, T=4) if args.quick else {}
    for name, fused, composed in bench_fused(args.repeats, **tiny):
        print(f"{name:<44} {fused:>10.2f} {composed:>10.2f} {fused / composed:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
