"""Does the planner have to choose? int4 on a small Shakespeare model: uniform plans against the
knapsack (additive sensitivity) planner and the greedy planner that re-measures, under byte budgets
between uniform int4 and uniform int8, checked on validation batches neither planner saw.

    python benchmarks/planner_int4.py                 # trains the model (a few minutes), prints tables
    python benchmarks/planner_int4.py --save          # also writes planner_int4.json and the figure

The model: tinyshakespeare, byte-level tokens, GPT 2 layers x 4 heads x 64 wide, block 64, trained
`--iters` steps (seed 0). Planning batches: seed 0; held-out check batches: seed 1 (other windows of
the same validation split).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tinylm.bench.machine import cpu_model  # noqa: E402
from tinylm.data import encode_corpus, train_val_split  # noqa: E402
from tinylm.io.runs import save_checkpoint  # noqa: E402
from tinylm.model import GPT, GPTConfig  # noqa: E402
from tinylm.quant import apply_plan, uniform_plan, weight_bytes  # noqa: E402
from tinylm.quant.evaluate import Evaluator  # noqa: E402
from tinylm.quant.planner import plan_for_byte_budget, plan_greedy, plot_tradeoff, sensitivity  # noqa: E402
from tinylm.tokenizer import Tokenizer  # noqa: E402
from tinylm.train import TrainConfig, train  # noqa: E402

CORPUS = "/work/shared/data/tinyshakespeare.txt"
UNIFORM = ("fp32", "fp16", "int8:g32", "int8:channel", "int4:g32", "int4:channel")
CANDIDATES = ("fp16", "int8:g32", "int4:g32")
FRACTIONS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.95)  # budgets: uniform int4:g32 bytes + this x (int8:g32 - int4:g32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--corpus", default=CORPUS)
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--save", action="store_true", help="write planner_int4.json and planner_int4.png")
    parser.add_argument("--save-model", default=None, metavar="DIR",
                        help="also save the trained fp32 model as a run folder (chapter 10 reads "
                             "tutorials/data/shakespeare-small, written this way)")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_model()}")

    with open(args.corpus, encoding="utf-8") as f:
        text = f.read()
    ids = encode_corpus(text, Tokenizer())
    train_ids, val_ids = train_val_split(ids)
    model = GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=4, n_embd=64), seed=0)
    config = TrainConfig(batch_size=16, max_iters=args.iters, lr=3e-3, min_lr=3e-4, warmup_iters=30,
                         eval_interval=args.iters, eval_iters=4, seed=0)
    t0 = time.time()
    result = train(model, train_ids, val_ids, config, verbose=False)
    model.eval()
    print(f"trained {args.iters} steps in {time.time() - t0:.0f} s: val loss {result.val_loss:.4f}")
    if args.save_model:
        save_checkpoint(args.save_model, model, Tokenizer(),
                        train_state={"step": args.iters, "config": {**vars(config), "data": "tinyshakespeare.txt"}})
        print(f"saved the trained model in {args.save_model}")

    plan_ev = Evaluator(model, val_ids, batch_size=8, n_batches=args.eval_batches, seed=0)
    check_ev = Evaluator(model, val_ids, batch_size=8, n_batches=args.eval_batches, seed=1)

    def row(label, plan):
        q = apply_plan(model, plan)
        return {"plan": label, "bytes": weight_bytes(q)["total"], "seen": plan_ev.measure(q)["ppl_change"],
                "held_out": check_ev.measure(q)["ppl_change"], "layers": plan}

    uniform = [row(p, uniform_plan(model, p)) for p in UNIFORM]
    b4 = next(r["bytes"] for r in uniform if r["plan"] == "int4:g32")
    b8 = next(r["bytes"] for r in uniform if r["plan"] == "int8:g32")
    t0 = time.time()
    sens = sensitivity(model, plan_ev, CANDIDATES, show_progress=False)
    print(f"sensitivity ({len(sens)} layers x {len(CANDIDATES)} precisions): {time.time() - t0:.0f} s")
    for name, s in sens.items():
        print(f"  {name:32s} " + "  ".join(f"{p} {s[p]:+.4f}" for p in CANDIDATES if p in s))
    budgets = [int(b4 + f * (b8 - b4)) for f in FRACTIONS]
    knapsack, greedy = [], []
    for budget in budgets:
        plan, m = plan_for_byte_budget(model, plan_ev, sens, budget)
        knapsack.append(row(f"knapsack <= {budget:,}", plan))
        t0 = time.time()
        plan, m = plan_greedy(model, plan_ev, budget, CANDIDATES, show_progress=False)
        greedy.append(row(f"greedy <= {budget:,}", plan))
        print(f"budget {budget:,}: greedy took {time.time() - t0:.0f} s")

    print("\n| plan | weight bytes | ppl change (planning batches) | ppl change (held-out batches) |")
    print("|---|---:|---:|---:|")
    for r in uniform + knapsack + greedy:
        print(f"| {r['plan']} | {r['bytes']:,} | {100 * r['seen']:+.2f}% | {100 * r['held_out']:+.2f}% |")
    print("\ntarget: at each budget between uniform int4:g32 and int8:g32, the plan's held-out perplexity is")
    print("lower than that of every uniform plan that fits the budget")
    met = {"knapsack": [], "greedy": []}
    for budget, k, g in zip(budgets, knapsack, greedy):
        best = min((u for u in uniform if u["bytes"] <= budget), key=lambda u: u["held_out"])
        verdicts = []
        for label, r in (("knapsack", k), ("greedy", g)):
            met[label].append(r["held_out"] < best["held_out"])
            verdicts.append(f"{label} {100 * r['held_out']:+.2f}% ({'met' if met[label][-1] else 'NOT met'})")
        print(f"  <= {budget:,} bytes: best uniform that fits {best['plan']} {100 * best['held_out']:+.2f}%; "
              + "; ".join(verdicts))
    for label, ok in met.items():
        print(f"{label}: target {'met' if all(ok) else 'NOT met'} at {sum(ok)} of {len(ok)} budgets")
    if args.save:
        out = os.path.join(HERE, "planner_int4.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"iters": args.iters, "val_loss": result.val_loss, "budgets": budgets, "uniform": uniform,
                       "knapsack": knapsack, "greedy": greedy, "target_met": met, "sensitivity": sens}, f,
                      indent=1)
        fig = plot_tradeoff(os.path.join(HERE, "planner_int4.png"),
                            {u["plan"]: (u["bytes"], u["held_out"]) for u in uniform},
                            frontier={"knapsack (additive)": [(k["bytes"], k["held_out"]) for k in knapsack],
                                      "greedy (re-measuring)": [(g["bytes"], g["held_out"]) for g in greedy]},
                            title="uniform plans vs the planners across byte budgets (held-out batches)")
        print(f"wrote {out} and {fig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
