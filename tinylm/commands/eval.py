"""`tinylm eval`: the loss and perplexity of a trained run on a corpus.

    tinylm eval --run tinylm-demo                          # the run's own held-out validation tokens
    tinylm eval --run tinylm-demo --data builtin           # the last 10% of a corpus, encoded afresh
    tinylm eval --run runs/shakespeare --data play.txt --split all
    tinylm eval --run tinylm-demo --plan int8.json         # the same, with weights quantized by a plan

Loss is the mean cross-entropy in nats per token; perplexity is exp(loss), "how many tokens the model
hesitates between" (a model guessing uniformly among V tokens has perplexity V).
"""
from __future__ import annotations


def register(sub):
    p = sub.add_parser(
        "eval", help="loss and perplexity of a trained run on a corpus",
        description="Measure a run's mean cross-entropy loss (nats per token) and perplexity on text: by default "
                    "on the validation tokens the run held out; with --data, on a corpus encoded with the run's "
                    "tokenizer (its last --val-fraction, or all of it with --split all). Every non-overlapping "
                    "window of block_size tokens is scored unless --iters samples fewer.")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder written by `tinylm train`")
    p.add_argument("--data", help="corpus: a text file, a folder, or 'builtin' (default: the run's own "
                                  "held-out tokens, tokens.npz)")
    p.add_argument("--split", choices=["val", "all"], default="val",
                   help="with --data: 'val' = the last part of the text, as held out in training (default); "
                        "'all' = the whole text")
    p.add_argument("--plan", metavar="PLAN_JSON",
                   help="precision plan (from `tinylm quantize`) to apply to the weights before measuring")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    p.add_argument("--iters", type=int, default=None,
                   help="score this many random batches instead of every window (faster, noisier)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random batches of --iters (default 0)")
    p.set_defaults(func=run)


def run(args):
    from tinylm.io.runs import load_model, scoring_ids
    from tinylm.train import evaluate, perplexity

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.iters is not None and args.iters < 1:
        raise ValueError(f"--iters must be >= 1, got {args.iters}")
    model, tokenizer = load_model(args.run)
    if args.data is None and args.split == "all":
        raise ValueError("--split all needs --data (without it, eval uses the run's held-out tokens)")
    ids, source = scoring_ids(args.run, tokenizer, args.data, args.split)
    label = "fp32"
    if args.plan is not None:
        from tinylm.quant import apply_plan, load_plan
        model = apply_plan(model, load_plan(args.plan))
        label = f"plan {args.plan}"
    block_size = model.config.block_size
    if len(ids) <= block_size:
        raise ValueError(f"{source} has {len(ids)} tokens; scoring needs more than block_size ({block_size})")
    loss = evaluate(model, ids, batch_size=args.batch_size, block_size=block_size, iters=args.iters, seed=args.seed)
    n_tokens = (args.iters * args.batch_size if args.iters else (len(ids) - 1) // block_size) * block_size
    print(f"loss {loss:.4f} | perplexity {perplexity(loss):.2f} | {n_tokens:,} tokens scored | {source} | {label}")
    return 0
