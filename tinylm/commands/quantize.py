"""`tinylm quantize`: compare precisions, plan a mixed-precision model, save a quantized checkpoint.

    tinylm quantize --run runs/demo --report                    # fp32 / fp16 / int8 side by side
    tinylm quantize --run runs/demo --max-ppl-increase 0.5%     # smallest plan within +0.5% perplexity
    tinylm quantize --run runs/demo --max-bytes 300k            # best plan within 300 KB of weights
    tinylm quantize --run runs/demo --plan plan.json --out runs/demo-q   # apply a plan, save it
    tinylm quantize --run runs/demo --plan int8 --out runs/demo-int8     # a precision = uniform plan

Every mode prints the comparison table (Markdown) on stdout; progress goes to stderr. The planner
chooses on one set of validation batches (--seed) and checks its plan on another (--seed + 1).
"""
from __future__ import annotations

import os
import re
import sys

from tinylm.progress import Progress

UNIFORM = ("fp32", "fp16", "int8:g32", "int8:g64", "int8:channel", "int4:g32", "int4:channel")


def register(sub):
    p = sub.add_parser(
        "quantize", help="fp16/int8/int4 precision plans: compare, plan per layer, save quantized models",
        description="Measure fp32, fp16, int8 and int4 versions of a trained model (weight bytes, validation "
                    "perplexity, greedy agreement with fp32, generation speed), choose a precision per "
                    "layer under a perplexity or byte budget, and save quantized checkpoints.")
    p.add_argument("--run", required=True, help="the training run folder to quantize (from `tinylm train`)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--report", action="store_true",
                      help="print the comparison table for uniform fp32, fp16, int8:g32, int8:g64, "
                           "int8:channel, int4:g32 and int4:channel plans (the default when no other mode "
                           "is given)")
    mode.add_argument("--max-ppl-increase", metavar="PCT",
                      help="plan the fewest weight bytes whose validation perplexity rises by at most PCT "
                           "(e.g. 0.5%% or 0.005)")
    mode.add_argument("--max-bytes", metavar="N",
                      help="plan the lowest perplexity within N bytes of weights (e.g. 250000, 250k, 1.5M)")
    p.add_argument("--plan", metavar="PLAN",
                   help="a plan JSON file (from `tinylm quantize` or save_plan) or one precision for every "
                        "layer (fp16, int8, int8:g64, int8:channel, int4, int4:channel); with --report it "
                        "adds a row")
    p.add_argument("--out", metavar="DIR",
                   help="save the quantized model (plus its tokenizer) in DIR: the --plan, or the plan "
                        "the planner chose; if DIR already holds a quantized model, it stops unless --force")
    p.add_argument("--force", action="store_true", help="replace the quantized model already in --out")
    p.add_argument("--save-plan", metavar="PATH",
                   help="where the planner writes its plan JSON (default: RUN/quant/plan.json)")
    p.add_argument("--figure", metavar="PATH",
                   help="where the planner saves its bytes-vs-perplexity figure "
                        "(default: beside the plan, tradeoff.png; needs matplotlib)")
    p.add_argument("--candidates", default="fp16,int8:g32,int8:channel,int4:g32",
                   help="precisions the planner may choose from besides fp32, comma separated "
                        "(default: fp16,int8:g32,int8:channel,int4:g32)")
    p.add_argument("--greedy", action="store_true",
                   help="with --max-bytes: lower one layer at a time and re-measure the whole plan after "
                        "each step, instead of adding single-layer estimates (slower; sees interactions)")
    p.add_argument("--data", help="corpus for the validation set (default: the corpus the run trained on)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per evaluation batch (default 8)")
    p.add_argument("--eval-batches", type=int, default=8,
                   help="fixed validation batches every plan is measured on (default 8)")
    p.add_argument("--block-size", type=int, help="tokens per evaluation sequence (default: the model's)")
    p.add_argument("--gen-tokens", type=int, default=32,
                   help="tokens generated (batch 1, greedy, KV cache) to measure speed; 0 skips it (default 32)")
    p.add_argument("--repeats", type=int, default=3, help="timing repeats; the median is reported (default 3)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for the evaluation batches (default 0); the planner checks its plan on the "
                        "batches of seed + 1")
    p.set_defaults(func=run)


def parse_percent(text):
    """'0.5%' -> 0.005, '0.005' -> 0.005."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ValueError(f"--max-ppl-increase {text!r} is not a number or a percentage like 0.5%") from None
    if not value >= 0:
        raise ValueError(f"--max-ppl-increase must be >= 0, got {text!r}")
    return value


def parse_bytes(text):
    """'250000' -> 250000, '250k' -> 250000, '1.5M' -> 1500000 (decimal units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)[bB]?\s*", str(text))
    if not m:
        raise ValueError(f"--max-bytes {text!r} is not a byte count like 250000, 250k or 1.5M")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
    if value <= 0:
        raise ValueError(f"--max-bytes must be positive, got {text!r}")
    return int(value)


def _is_plan_file(text):
    return os.path.exists(text) or text.endswith(".json")


def _load_plan_arg(model, text):
    from tinylm.quant import load_plan, uniform_plan
    if _is_plan_file(text):
        return os.path.splitext(os.path.basename(text))[0], load_plan(text)
    return text, uniform_plan(model, text)


def run(args):
    from tinylm import process
    from tinylm.fileio import check_not_replacing, check_writable, removed_on_failure
    from tinylm.io.quantized import META_FILE, TOKENIZER_FILE, WEIGHTS_FILE, save_quantized
    from tinylm.io.runs import load_model, scoring_ids
    from tinylm.quant import canonical_precision, save_plan
    from tinylm.quant.evaluate import Evaluator, compare, format_table
    from tinylm.quant.planner import (
        plan_for_byte_budget,
        plan_for_ppl_budget,
        plan_greedy,
        plot_tradeoff,
        sensitivity,
        tradeoff_curve,
    )
    from tinylm.train import memory_estimate

    for name in ("batch_size", "eval_batches", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.gen_tokens < 0:
        raise ValueError(f"--gen-tokens must be >= 0, got {args.gen_tokens}")
    if args.block_size is not None and args.block_size < 1:  # None is the model's; 0 is a mistake
        raise ValueError(f"--block-size must be >= 1, got {args.block_size}")
    max_ppl = parse_percent(args.max_ppl_increase) if args.max_ppl_increase is not None else None
    max_bytes = parse_bytes(args.max_bytes) if args.max_bytes is not None else None
    candidates = [canonical_precision(c) for c in args.candidates.split(",") if c.strip()]
    if args.greedy and max_bytes is None:
        raise ValueError("--greedy plans under a byte budget: give --max-bytes too")

    if args.out and not args.force:  # before any work: never replace a saved model by surprise
        check_not_replacing(args.out, [META_FILE, WEIGHTS_FILE])
    if args.out:
        check_writable(args.out)
    if args.plan is not None and not _is_plan_file(args.plan):
        canonical_precision(args.plan)  # a bad precision fails before the model is loaded

    model, tokenizer = load_model(args.run)
    batch_bytes = 2 * 8 * args.eval_batches * args.batch_size * model.config.block_size  # int64 inputs, targets
    process.check_fits_in_memory(memory_estimate(model.config, args.batch_size, training=False) + batch_bytes,
                                 f"--batch-size {args.batch_size} with --eval-batches {args.eval_batches}")
    val_ids, _ = scoring_ids(args.run, tokenizer, args.data)
    evaluator = Evaluator(model, val_ids, block_size=args.block_size, batch_size=args.batch_size,
                          n_batches=args.eval_batches, seed=args.seed)
    timing = dict(gen_tokens=args.gen_tokens, repeats=args.repeats, seed=args.seed)

    if max_ppl is None and max_bytes is None:  # --report, or --plan [--out]
        plans = {}
        if args.plan is None or args.report:
            plans = _uniform_plans(model, UNIFORM)
        else:
            plans["fp32"] = {}
        if args.plan is not None:
            label, plan = _load_plan_arg(model, args.plan)
            plans[label if label not in plans else f"{label} (plan)"] = plan
        progress = Progress(len(plans), what="plans")
        rows = compare(model, evaluator, plans, progress=progress, **timing)
        progress.done()
        print(format_table(rows))
        if args.out:
            if args.plan is None:
                raise ValueError("--out needs a --plan (or a planner budget) to know what to save")
            with removed_on_failure(args.out, [META_FILE, WEIGHTS_FILE, TOKENIZER_FILE]):  # a full disk
                save_quantized(args.out, model, plans[list(plans)[-1]], tokenizer=tokenizer)
            print(f"\nsaved {args.out} ({_disk_bytes(args.out):,} bytes on disk)", file=sys.stderr)
        return 0

    # the planner: sensitivity per layer, then a plan under the budget
    sens = sensitivity(model, evaluator, candidates)
    print("per-layer loss increase when only that layer is lowered (fp32 loss "
          f"{evaluator.ref_loss:.4f}):\n")
    print("| layer | " + " | ".join(candidates) + " |")
    print("|---|" + "---:|" * len(candidates))
    for name, row in sens.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:+.5f}" if c in row else "-" for c in candidates) + " |")
    if max_ppl is not None:
        plan, metrics = plan_for_ppl_budget(model, evaluator, sens, max_ppl)
        label = f"planned (ppl +{100 * max_ppl:g}%)"
    elif args.greedy:
        plan, metrics = plan_greedy(model, evaluator, max_bytes, candidates)
        label = f"greedy (<= {max_bytes:,} B)"
    else:
        plan, metrics = plan_for_byte_budget(model, evaluator, sens, max_bytes)
        label = f"planned (<= {max_bytes:,} B)"

    plan_path = args.save_plan
    if plan_path is None:  # the default folder is made here; a folder the user names must exist
        plan_path = os.path.join(args.run, "quant", "plan.json")
        os.makedirs(os.path.dirname(plan_path), exist_ok=True)
    budget = {"max_ppl_increase": max_ppl} if max_ppl is not None else {"max_bytes": max_bytes}
    plans = _uniform_plans(model, ("fp32", "fp16", "int8:g32", "int8:channel", "int4:g32"))
    plans[label] = plan
    # step 3, verify: measure on validation batches the planner did not see (the next seed)
    check = Evaluator(model, val_ids, block_size=args.block_size, batch_size=args.batch_size,
                      n_batches=args.eval_batches, seed=args.seed + 1)
    rows = compare(model, check, plans, **timing)
    print(f"\nchecked on {args.eval_batches} other validation batches (seed {args.seed + 1}), "
          "not the ones the plan was chosen on:\n")
    print(format_table(rows))
    keys = ("loss", "ppl", "ppl_change", "agreement")
    save_plan(plan_path, plan, budget=budget, seed=args.seed, bytes=metrics["bytes"],
              measured={k: metrics[k] for k in keys}, checked={k: rows[-1][k] for k in keys},
              sensitivity=sens, fp32_loss=evaluator.ref_loss)
    print(f"\nplan written to {plan_path} (apply it with --plan {plan_path})")

    figure = args.figure or os.path.join(os.path.dirname(plan_path), "tradeoff.png")
    try:
        # sweep budgets around the one asked for (or around what the byte budget reached)
        center = max_ppl if max_ppl is not None else max(metrics["ppl_change"], 1e-4)
        curve = tradeoff_curve(model, evaluator, sens, budgets=[center * f for f in (0.1, 0.25, 0.5, 1, 2, 5, 10)])
        # the figure stays on the planning batches, where the planner's curve was measured
        seen = compare(model, evaluator, dict(list(plans.items())[:-1]), gen_tokens=0)
        points = {r["plan"]: (r["bytes"]["total"], r["ppl_change"]) for r in seen}
        plot_tradeoff(figure, points, chosen=(label, metrics["bytes"], metrics["ppl_change"]),
                      frontier=[(m["bytes"], m["ppl_change"]) for _, _, m in curve])
        print(f"figure written to {figure}")
    except ImportError:
        print("matplotlib is not installed: no figure (pip install matplotlib)", file=sys.stderr)
    if args.out:
        with removed_on_failure(args.out, [META_FILE, WEIGHTS_FILE, TOKENIZER_FILE]):
            save_quantized(args.out, model, plan, tokenizer=tokenizer)
        print(f"saved {args.out} ({_disk_bytes(args.out):,} bytes on disk)", file=sys.stderr)
    return 0


def _uniform_plans(model, precisions):
    """{precision: uniform plan} for each precision every layer can take; a group size that does not
    divide some layer's width (a small model) is left out of the table, with a note saying why."""
    from tinylm.quant import uniform_plan

    plans = {}
    for precision in precisions:
        try:
            plans[precision] = uniform_plan(model, precision)
        except ValueError as exc:
            print(f"note: no uniform {precision} row: {exc}", file=sys.stderr)
    return plans


def _disk_bytes(folder):
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
