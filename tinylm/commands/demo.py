"""`tinylm demo`: the whole pipeline in one command, with nothing to download.

It trains a BPE tokenizer and a small GPT on the built-in corpus (the Python reference manual that
every Python ships), shows the progress, prints the validation loss and perplexity and a few samples,
and leaves the run folder behind for `tinylm generate --run tinylm-demo --prompt ...` and friends.
About two minutes on two cores; --max-iters makes it shorter or longer.
"""
from __future__ import annotations

import math
import os
import sys

DEMO_MODEL = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0)
DEMO_VOCAB_SIZE = 512
DEMO_ITERS = 1100  # ~2 minutes on one core of a 2020s laptop CPU (measured: 1500 steps, 160 s CPU)
PROMPTS = ["The ", "A class", "If the"]


def register(sub):
    p = sub.add_parser(
        "demo", help="train a tokenizer and a small GPT on the built-in corpus, then generate (~2 minutes)",
        description="Run tinylm end to end with no download and no arguments: train a 512-token BPE tokenizer "
                    "and a 4-layer GPT on the Python reference manual (shipped with Python), print the "
                    "validation loss, perplexity and a few generated samples, and keep the run folder for "
                    "`tinylm generate` and `tinylm eval`.")
    p.add_argument("--out", default="tinylm-demo", metavar="RUN_DIR",
                   help="run folder to create (default ./tinylm-demo)")
    p.add_argument("--max-iters", type=int, default=DEMO_ITERS,
                   help=f"training steps: fewer for a quicker, worse model (default {DEMO_ITERS}, about 2 minutes)")
    p.add_argument("--force", action="store_true", help="replace the run in --out if there is one")
    p.add_argument("--seed", type=int, default=1337,
                   help="seed of everything: weights, batches, samples (default 1337)")
    p.add_argument("--samples", type=int, default=len(PROMPTS),
                   help=f"number of samples to print, up to {len(PROMPTS)} (default {len(PROMPTS)})")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def run(args):
    from tinylm.commands.train import start_run
    from tinylm.generate import generate_text
    from tinylm.io.runs import has_checkpoint, load_tokens
    from tinylm.train import TrainConfig, evaluate, perplexity

    if args.max_iters < 1:
        raise ValueError(f"--max-iters must be >= 1, got {args.max_iters}")
    if not 0 <= args.samples <= len(PROMPTS):
        raise ValueError(f"--samples must be between 0 and {len(PROMPTS)}, got {args.samples}")
    warmup = min(100, args.max_iters // 10)
    config = TrainConfig(data="builtin", batch_size=12, max_iters=args.max_iters, lr=1e-3, min_lr=1e-4,
                         warmup_iters=warmup, eval_interval=max(1, min(250, args.max_iters)), eval_iters=10,
                         seed=args.seed)
    if has_checkpoint(args.out) and not args.force:
        raise ValueError(f"{args.out} already holds a run: pass --force to replace it, or --out another folder")
    print(f"tinylm demo: training a tokenizer and a GPT on the Python reference manual, {args.max_iters} steps, "
          f"into {args.out}/", file=sys.stderr)
    model, tokenizer, result = start_run(args.out, config, DEMO_MODEL, vocab_size=DEMO_VOCAB_SIZE,
                                         force=args.force, verbose=not args.quiet)

    _, val_ids = load_tokens(args.out)
    val_loss = evaluate(model, val_ids, batch_size=32, block_size=model.config.block_size, iters=None)
    print(f"\nvalidation loss {val_loss:.3f} nats/token, perplexity {perplexity(val_loss):.1f} "
          f"(an untrained model: {math.log(tokenizer.vocab_size):.3f}, {tokenizer.vocab_size}) "
          f"after {result.step} steps in {result.seconds:.0f} s")
    for i, prompt in enumerate(PROMPTS[:args.samples]):
        text = generate_text(model, tokenizer, prompt, max_new_tokens=60, temperature=0.8, top_k=40,
                             seed=args.seed + i)
        print(f"\n--- sample {i + 1} (prompt {prompt!r}, temperature 0.8, top-k 40)\n{text}")
    where = os.path.join(args.out, "")
    print(f"\nthe run is in {where}: try `tinylm generate --run {args.out} --prompt \"The \"` or "
          f"`tinylm eval --run {args.out}`")
    return 0
