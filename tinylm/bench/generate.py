"""`python -m tinylm.bench generate`: tokens/s with and without the KV cache, as ratios.

Two models with random weights (the speed of a forward pass does not depend on what was learned):
    small   n_layer=4, n_head=4, n_embd=128, vocab_size=256   (the default GPTConfig, ~0.8M parameters)
    gpt2    n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024 (GPT-2 124M's shapes)
For each, greedy generation of `--new` tokens that end at `--context` tokens of context:
    end-to-end  tokens/s of generate(use_cache=False) vs generate(use_cache=True), the cached run paying
                for its prefill of the prompt;
    per step    one decoding step at that context: the whole context through the model (no cache) vs
                one token against a cache holding the rest.
Single-threaded BLAS is recommended (OPENBLAS_NUM_THREADS=1); times are medians of --repeats runs, and
the two sides of each ratio run in turn (no cache, cache, no cache, ...) so that they share the
machine's load; the ratios are the figures to quote.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

CONFIGS = {
    "small": dict(vocab_size=256, n_layer=4, n_head=4, n_embd=128),
    "gpt2": dict(vocab_size=50257, n_layer=12, n_head=12, n_embd=768, block_size=1024),
}


def _median_times(fns, repeats):
    """Median seconds of each function, the functions run in turn (a, b, a, b, ...) so that a change of
    load on a shared machine hits both sides of a ratio alike."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def bench_config(name, context, new, repeats):
    """Measure one config; returns a dict of times (seconds) and ratios."""
    from tinylm.autograd import no_grad
    from tinylm.generate import generate
    from tinylm.model import GPT, GPTConfig

    sizes = dict(CONFIGS[name])
    sizes["block_size"] = max(context, sizes.get("block_size", 64))  # the context must fit the model
    config = GPTConfig(**sizes)
    model = GPT(config, seed=0)
    model.eval()
    prompt = np.random.default_rng(0).integers(0, config.vocab_size, size=(1, context - new))  # (1, P)
    full = np.random.default_rng(1).integers(0, config.vocab_size, size=(1, context))  # (1, context)

    # end to end: `new` tokens whose last one sees `context` tokens
    t_plain, t_cache = _median_times([lambda: generate(model, prompt, new, temperature=0, use_cache=False),
                                      lambda: generate(model, prompt, new, temperature=0, use_cache=True)], repeats)

    # one step at `context`: everything again, or one token against a filled cache
    cache = model.new_kv_cache(1)
    with no_grad():
        model(full[:, :-1], kv_cache=cache)  # the cache holds context - 1 tokens

        def one_cached_step():
            cache.length = context - 1
            model(full[:, -1:], kv_cache=cache)

        s_plain, s_cache = _median_times([lambda: model(full), one_cached_step], max(repeats, 5))
    return {"name": name, "params": model.num_params(), "context": context, "new": new,
            "tok_s_plain": new / t_plain, "tok_s_cache": new / t_cache, "ratio": t_plain / t_cache,
            "step_plain": s_plain, "step_cache": s_cache, "step_ratio": s_plain / s_cache}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinylm.bench generate", description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="small,gpt2", help="comma-separated: small, gpt2 (default both)")
    parser.add_argument("--context", type=int, default=256, help="tokens of context at the last step (default 256)")
    parser.add_argument("--new", type=int, default=32,
                        help="tokens generated for the small config (default 32; gpt2 uses 8)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="runs per measurement, median kept (default 5; gpt2 uses 1)")
    args = parser.parse_args(argv)
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    print(f"{'config':8} {'params':>8} {'context':>7} {'new':>4} | {'tok/s no cache':>14} {'tok/s cache':>11} "
          f"{'ratio':>6} | {'step no cache':>13} {'step cache':>10} {'ratio':>6}")
    for name in args.configs.split(","):
        name = name.strip()
        if name not in CONFIGS:
            parser.error(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
        small = name == "small"
        r = bench_config(name, args.context, args.new if small else min(args.new, 8), args.repeats if small else 1)
        print(f"{name:8} {r['params'] / 1e6:7.1f}M {r['context']:7d} {r['new']:4d} | {r['tok_s_plain']:14.1f} "
              f"{r['tok_s_cache']:11.1f} {r['ratio']:5.1f}x | {r['step_plain'] * 1e3:11.1f}ms "
              f"{r['step_cache'] * 1e3:8.2f}ms {r['step_ratio']:5.1f}x", flush=True)
    return 0
