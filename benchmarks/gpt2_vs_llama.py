"""GPT-2 shape against Llama shape at the same budget: parameters, steps, batches, schedule (tutorial 14).

    python benchmarks/gpt2_vs_llama.py                      # 2000 steps each (~15 min on one core)
    python benchmarks/gpt2_vs_llama.py --max-iters 200      # a quick look

nanoGPT's small Shakespeare run (python -m tinylm.bench train): byte-level tokens, 4 layers, 4 heads,
n_embd 128, block_size 64, batch 12, no biases, AdamW 1e-3 -> 1e-4, 2000 steps. The two shapes:

    gpt2    LayerNorm, learned positions, GELU MLP (4 x 128 = 512 wide), tied output head
    llama   RMSNorm, RoPE, SwiGLU MLP, 2 key/value heads for the 4 query heads, separate output head;
            the SwiGLU width (368) is chosen so that both have exactly 828,544 parameters

Both see the same batches in the same order (same seed). Reported: validation loss on the whole
validation split, ms per training step (median over timing rounds that alternate the two models, so
both see the same machine load), and the KV cache of one sequence of block_size tokens. Results go to
stdout as a Markdown table and to benchmarks/gpt2_vs_llama.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from tinylm.bench.train import DEFAULT_DATA, MODEL, TRAIN, load_shakespeare
from tinylm.data import get_batch
from tinylm.model import GPT, GPTConfig
from tinylm.optim import AdamW, clip_grad_norm
from tinylm.train import TrainConfig, evaluate, train

SHAPES = {
    "gpt2": GPTConfig(vocab_size=256, **MODEL),
    "llama": GPTConfig.llama(vocab_size=256, **{**MODEL, "bias": False}, n_kv_head=2, mlp_hidden=368),
}


def ms_per_step(configs, train_ids, rounds=5, steps=10, seed=1337):
    """Median ms per training step of each config, in alternating rounds."""
    steppers = {}
    for name, config in configs.items():
        model = GPT(config, seed=seed)
        opt = AdamW(model.optim_groups(TRAIN["weight_decay"]), lr=TRAIN["lr"], betas=(TRAIN["beta1"], TRAIN["beta2"]))
        rng = np.random.default_rng(seed)

        def step(model=model, opt=opt, rng=rng):
            x, y = get_batch(train_ids, TRAIN["batch_size"], MODEL["block_size"], rng)  # (B, T) each
            _, loss = model(x, y)
            opt.zero_grad()
            loss.backward()
            clip_grad_norm(model.parameters(), TRAIN["grad_clip"])
            opt.step()
        steppers[name] = step
    times = {name: [] for name in configs}
    for name, step in steppers.items():  # warm up
        step()
    for _ in range(rounds):
        for name, step in steppers.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - t0) * 1e3 / steps)
    return {name: float(np.median(t)) for name, t in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.normpath(DEFAULT_DATA))
    p.add_argument("--max-iters", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt2_vs_llama.json"))
    args = p.parse_args(argv)
    tokenizer, (train_ids, val_ids) = load_shakespeare(args.data)
    speed = ms_per_step(SHAPES, train_ids, seed=args.seed)
    rows = {}
    for name, config in SHAPES.items():
        model = GPT(config, seed=args.seed)
        tc = TrainConfig(max_iters=args.max_iters, eval_interval=max(args.max_iters // 4, 1), eval_iters=20,
                         seed=args.seed, warmup_iters=min(TRAIN["warmup_iters"], args.max_iters),
                         **{k: v for k, v in TRAIN.items() if k != "warmup_iters"})
        result = train(model, train_ids, val_ids, tc, verbose=False)
        val = evaluate(model, val_ids, batch_size=64, block_size=config.block_size, iters=None)
        rows[name] = dict(params=model.num_params(), val_loss=round(val, 4), train_loss=round(result.train_loss, 4),
                          ms_per_step=round(speed[name], 1), kv_cache_bytes=model.new_kv_cache(1).nbytes,
                          steps=result.step)
        print(f"{name}: {rows[name]}", flush=True)
    kv = f"KV cache (1 x {MODEL['block_size']})"
    print(f"\n| shape | parameters | val loss ({args.max_iters} steps) | ms/step | {kv} |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['params']:,} | {r['val_loss']:.4f} | {r['ms_per_step']:.1f} | "
              f"{r['kv_cache_bytes']:,} bytes |")
    with open(args.out, "w") as f:
        json.dump({"max_iters": args.max_iters, "seed": args.seed, "results": rows}, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
