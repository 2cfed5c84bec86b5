"""Does quantization-aware fine-tuning bring int4 back? The model of benchmarks/planner_int4.py
(byte-level tinyshakespeare, GPT 2 x 4 heads x 64, 1000 steps, seed 0), then:

  before  uniform int4:g32 applied to the trained model
  QAT     `--qat-iters` more steps with fake int4:g32 in every Linear (straight-through), then int4:g32
  control the same extra steps WITHOUT fake quantization, then int4:g32 (is it just more training?)

Perplexity changes are against the trained fp32 model (before any extra step), on held-out batches
(seed 1) of the validation split. `--save` writes qat_int4.json.

    python benchmarks/qat_int4.py --save
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tinylm.data import encode_corpus, train_val_split  # noqa: E402
from tinylm.model import GPT, GPTConfig  # noqa: E402
from tinylm.quant import apply_plan, uniform_plan, weight_bytes  # noqa: E402
from tinylm.quant.evaluate import Evaluator  # noqa: E402
from tinylm.quant.qat import fake_quantize, strip_fake_quantize  # noqa: E402
from tinylm.tokenizer import Tokenizer  # noqa: E402
from tinylm.train import TrainConfig, train  # noqa: E402

CORPUS = "/work/shared/data/tinyshakespeare.txt"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--qat-iters", type=int, default=200)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args(argv)

    with open(CORPUS, encoding="utf-8") as f:
        ids = encode_corpus(f.read(), Tokenizer())
    train_ids, val_ids = train_val_split(ids)
    model = GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=4, n_embd=64), seed=0)
    config = TrainConfig(batch_size=16, max_iters=args.iters, lr=3e-3, min_lr=3e-4, warmup_iters=30,
                         eval_interval=args.iters, eval_iters=4, seed=0)
    t0 = time.time()
    result = train(model, train_ids, val_ids, config, verbose=False)
    model.eval()
    print(f"trained {args.iters} steps in {time.time() - t0:.0f} s: val loss {result.val_loss:.4f}")
    check = Evaluator(model, val_ids, batch_size=8, n_batches=8, seed=1)
    plan = uniform_plan(model, "int4:g32")

    def measured(m):
        q = apply_plan(m, plan)
        return {"ppl_change": check.measure(q)["ppl_change"], "bytes": weight_bytes(q)["total"]}

    out = {"fp32_bytes": weight_bytes(model)["total"], "fp32_val_loss": check.ref_loss,
           "before": measured(model)}
    fine = TrainConfig(batch_size=16, max_iters=args.qat_iters, lr=3e-4, min_lr=3e-5, warmup_iters=10,
                       eval_interval=args.qat_iters, eval_iters=4, seed=1)
    for label, wrap in (("qat", True), ("control", False)):
        m = copy.deepcopy(model)
        m.train()
        if wrap:
            fake_quantize(m, plan)
        t0 = time.time()
        train(m, train_ids, val_ids, fine, verbose=False)
        strip_fake_quantize(m).eval()
        out[label] = measured(m)
        out[label]["fp32_ppl_change"] = check.measure(m)["ppl_change"]
        print(f"{label}: {args.qat_iters} steps in {time.time() - t0:.0f} s")
    print(f"\nfp32: {out['fp32_bytes']:,} weight bytes; int4:g32: {out['before']['bytes']:,} "
          f"({out['fp32_bytes'] / out['before']['bytes']:.2f}x smaller)")
    print("held-out perplexity change of int4:g32 vs the trained fp32 model:")
    print(f"  before QAT:                         {100 * out['before']['ppl_change']:+.2f}%")
    print(f"  after {args.qat_iters} QAT steps:               {100 * out['qat']['ppl_change']:+.2f}%")
    print(f"  after {args.qat_iters} plain steps (control):   {100 * out['control']['ppl_change']:+.2f}%"
          f"  (its fp32: {100 * out['control']['fp32_ppl_change']:+.2f}%)")
    if args.save:
        with open(os.path.join(HERE, "qat_int4.json"), "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
        print("wrote benchmarks/qat_int4.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
