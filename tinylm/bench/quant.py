"""`python -m tinylm.bench quant`: fp32 / fp16 / int8 models side by side: size, speed, perplexity.

    python -m tinylm.bench quant                      # a GPT of the demo's size, random weights: bytes, speed
    python -m tinylm.bench quant --run runs/demo      # a trained run: + perplexity and greedy agreement
    python -m tinylm.bench quant --size gpt2          # GPT-2 124M's shapes, random weights: bytes, speed
    python -m tinylm.bench quant --int4               # only: int4 vs int8 matmul on GPT-2's shapes

Two measurements, each as ratios to fp32 taken in the same run (absolute times are noisy):
1. one Linear layer at batch 1 (the shape generation uses): fp32 NumPy `x @ W.T + b`, Fp16Linear,
   Int8Linear, for the model's layer shapes;
2. whole-model generation (batch 1, greedy, KV cache) in tokens/s per precision plan.
With --size gpt2 or --int4, first: the int4 and int8 kernels (tinylm.kernels.LinearS4 / LinearS8,
groups of 32) on GPT-2 124M's layer shapes at batch 1, side by side, and int4 / int8 (issue 15's
target: int4 faster than int8 on every shape).
Single-threaded (python -m tinylm.bench sets OPENBLAS_NUM_THREADS=1 when it is unset).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _median_time(fn, repeats, inner):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return float(np.median(times))


def bench_linear(shapes, repeats=5, inner=200, seed=0):
    """[(shape, fp32 s, fp16 s, int8 s)] for one (1, K) @ (N, K).T layer call per shape."""
    from tinylm.autograd import Tensor
    from tinylm.nn import Linear
    from tinylm.quant import Fp16Linear, Int8Linear

    rng = np.random.default_rng(seed)
    rows = []
    for n, k in shapes:
        lin = Linear(k, n, rng=rng)
        f16, i8 = Fp16Linear.from_linear(lin), Int8Linear.from_linear(lin, 32 if k % 32 == 0 else None)
        x = Tensor(rng.standard_normal((1, k)).astype(np.float32))  # (1, K): one token
        w, b = lin.weight.data, lin.bias.data

        def numpy_fp32():
            return x.data @ w.T + b  # (1, N)

        rows.append(((n, k), _median_time(numpy_fp32, repeats, inner), _median_time(lambda: f16(x), repeats, inner),
                     _median_time(lambda: i8(x), repeats, inner)))
    return rows


# GPT-2 124M's Linear layers as (N, K) = (outputs, inputs): attention's c_attn and c_proj, the MLP's
# c_fc and c_proj, and the tied output head over the 50,257 tokens
GPT2_SHAPES = [(2304, 768), (768, 768), (3072, 768), (768, 3072), (50257, 768)]


def bench_int4_vs_int8(shapes=GPT2_SHAPES, repeats=7, seed=0, group_size=32):
    """[(shape, int8 s, int4 s)]: one (1, K) @ (N, K).T call of the int8 and the int4 C kernel per shape.

    Random weights, quantized with groups of `group_size`. The two layers are timed in alternation,
    `repeats` rounds, each round enough calls for ~20 ms; the best round's mean is kept for each. Times
    are the process's CPU time, as the runtime suite's: on a shared machine, wall time also counts
    the moments another process had the core (the least disturbed round is the closest to the cost)."""
    from tinylm import kernels

    rng = np.random.default_rng(seed)
    rows = []
    for n, k in shapes:
        w = rng.standard_normal((n, k), dtype=np.float32)         # (N, K)
        x = rng.standard_normal((1, k), dtype=np.float32)         # (1, K): one token
        s8 = kernels.LinearS8(*kernels.quantize_s8(w, group_size))
        s4 = kernels.LinearS4(*kernels.quantize_s4(w, group_size))
        del w
        layers = (s8, s4)
        calls = []
        for layer in layers:                                       # warm up; calls per round: ~20 ms
            layer(x)
            t0 = time.process_time()
            for _ in range(3):
                layer(x)
            calls.append(max(3, min(500, int(0.02 * 3 / max(time.process_time() - t0, 1e-7)))))
        best = [float("inf"), float("inf")]
        for _ in range(repeats):
            for i, layer in enumerate(layers):
                t0 = time.process_time()
                for _ in range(calls[i]):
                    layer(x)
                best[i] = min(best[i], (time.process_time() - t0) / calls[i])
        rows.append(((n, k), best[0], best[1]))
    return rows


def int4_vs_int8(args):
    """Print the int4 vs int8 matmul table on GPT-2's shapes, with the CPU and the kernels' code paths."""
    from tinylm import kernels
    from tinylm.bench.runtime import cpu_model

    info = kernels.build_info()
    print(f"CPU: {cpu_model()}; kernels: {info['backend']} ({info['simd'] or 'NumPy reference'})")
    simd = info["simd"] or ""
    if "avx512vnni" in simd:
        print("int4 path: simd/linear_s4_avx512.h (N >= 16, K a multiple of 128); int8: simd/linear_s8_avx512.h")
    elif "avx2" in simd:
        print("int4 path: simd/linear_s4_avx2.h; int8: simd/linear_s8_avx2.h")
    else:
        print("int4 and int8 paths: the portable C loops (or the NumPy reference)")
    print(f"\nint4 vs int8 matmul, GPT-2 shapes: one Linear layer at batch 1, groups of 32, best of "
          f"{args.repeats} rounds:\n")
    print("| layer (N, K) | int8 us | int4 us | int4 / int8 |")
    print("|---|---:|---:|---:|")
    for (n, k), t8, t4 in bench_int4_vs_int8(repeats=args.repeats, seed=args.seed):
        print(f"| ({n}, {k}) | {t8 * 1e6:.1f} | {t4 * 1e6:.1f} | {t4 / t8:.2f}x |")
    return 0


def gpt2_speed(args):
    """Generation speed at batch 1 of fp32 / fp16 / int8 plans on a GPT with GPT-2 124M's shapes.

    At the demo's size (128 wide) a layer's product takes a few microseconds and the call overhead of
    any path decides; at GPT-2's (768 wide, 3072 in the MLP) the weights no longer fit in cache and
    reading them is the cost, which int8 makes 4x smaller."""
    from tinylm.model import GPT, GPTConfig
    from tinylm.quant import apply_plan, uniform_plan, weight_bytes
    from tinylm.quant.evaluate import speeds

    model = GPT(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768), seed=args.seed)
    names = ("fp32", "fp16", "int8:g32", "int8:channel")
    models = [model if p == "fp32" else apply_plan(model, uniform_plan(model, p)) for p in names]
    tok_s = speeds(models, n_tokens=min(args.gen_tokens, 16), repeats=min(args.repeats, 3), seed=args.seed)
    print(f"\nGPT-2 124M shapes, random weights, batch 1, greedy with the KV cache "
          f"({min(args.gen_tokens, 16)} tokens, median of {min(args.repeats, 3)}):\n")
    print("| plan | weight bytes | vs fp32 | tok/s | speed |")
    print("|---|---:|---:|---:|---:|")
    fp32_bytes = weight_bytes(model)["total"]
    for name, m, t in zip(names, models, tok_s):
        total = weight_bytes(m)["total"]
        print(f"| {name} | {total:,} | {fp32_bytes / total:.2f}x | {t:.1f} | {t / tok_s[0]:.2f}x |")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tinylm.bench quant", description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a trained run folder (adds perplexity and agreement)")
    ap.add_argument("--gen-tokens", type=int, default=64, help="tokens generated per timing (default 64)")
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats, median reported (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights and inputs (default 0)")
    ap.add_argument("--size", choices=["demo", "gpt2"], default="demo",
                    help="without --run: a random GPT of the demo's size (default), or of GPT-2 124M's "
                         "shapes (speed and bytes only: ~1 minute, ~1 GB of RAM)")
    ap.add_argument("--int4", action="store_true",
                    help="only the int4 vs int8 matmul on GPT-2 124M's layer shapes (~20 s, ~0.5 GB of RAM)")
    args = ap.parse_args(argv)
    if args.int4:
        return int4_vs_int8(args)
    if args.size == "gpt2" and not args.run:
        int4_vs_int8(args)
        return gpt2_speed(args)

    from tinylm import kernels
    from tinylm.model import GPT, GPTConfig
    from tinylm.quant import uniform_plan
    from tinylm.quant.evaluate import Evaluator, compare, format_table

    print(f"kernel backend: {kernels.backend()}")
    if args.run:
        from tinylm.io.runs import load_model, scoring_ids
        model, tokenizer = load_model(args.run)
        evaluator = Evaluator(model, scoring_ids(args.run, tokenizer)[0], seed=args.seed)
    else:
        model = GPT(GPTConfig(), seed=args.seed)  # the demo's default size, untrained
        ids = np.random.default_rng(args.seed).integers(0, model.config.vocab_size, 4096)
        evaluator = Evaluator(model, ids, seed=args.seed)
    c = model.config.n_embd
    print(f"\none Linear layer at batch 1 (median of {args.repeats}), time relative to NumPy fp32:\n")
    print("| layer (N, K) | NumPy fp32 us | Fp16Linear | Int8Linear |")
    print("|---|---:|---:|---:|")
    for (n, k), t32, t16, t8 in bench_linear([(3 * c, c), (c, c), (4 * c, c), (c, 4 * c)], args.repeats):
        print(f"| ({n}, {k}) | {t32 * 1e6:.1f} | {t16 / t32:.2f}x | {t8 / t32:.2f}x |")
    plans = {p: uniform_plan(model, p) for p in ("fp32", "fp16", "int8:g32", "int8:g64", "int8:channel")}
    rows = compare(model, evaluator, plans, gen_tokens=args.gen_tokens, repeats=args.repeats, seed=args.seed)
    print(f"\nwhole model ({'trained: ' + args.run if args.run else 'untrained, random validation ids'}):\n")
    print(format_table(rows))
    return 0
