"""Does quantization-aware fine-tuning bring int4 back? On the Shakespeare benchmark model.

The model is `python -m tinylm.bench train`'s (tinylm/bench/train.py): nanoGPT's small Shakespeare run,
byte-level tokens, GPT 4 layers x 4 heads x 128, block 64, no biases, 2000 steps (seed 1337), which
reaches a validation loss of ~1.89. Then, every row lowering ALL its weight matrices (the tied
embedding / output head and the position embedding included) to int4:g32:

  before    int4:g32 applied to the trained model
  QAT       `--qat-iters` more steps with fake int4:g32 in every lowered layer (straight-through, scales
            recomputed from the weights), then int4:g32: tinylm.quant.qat as it is now
  QAT, Linear layers only   the same, but the embedding lookups see fp32 weights while training
            (what tinylm.quant.qat did before: the tied token embedding was int4 only after training)
  control   the same extra steps WITHOUT fake quantization, then int4:g32 (is it just more training?)

Every perplexity is on the WHOLE validation split (every window of 64 tokens), against the trained
fp32 model before any extra step; the fp32 perplexity of each fine-tuned model is printed beside it.
Target (issue 15): int4:g32 after QAT within 3% of fp32, weights >= 6x smaller than fp32.

    python benchmarks/qat_int4.py --save                     # trains the model (~5 min here), then ~6 min
    python benchmarks/qat_int4.py --run RUN --save           # RUN from `python -m tinylm.bench train --out RUN`
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tinylm.bench.machine import cpu_model  # noqa: E402
from tinylm.bench.train import DEFAULT_DATA, MODEL, TRAIN, load_shakespeare  # noqa: E402
from tinylm.io.runs import load_model  # noqa: E402
from tinylm.model import GPT, GPTConfig  # noqa: E402
from tinylm.quant import apply_plan, uniform_plan, weight_bytes  # noqa: E402
from tinylm.quant.plan import set_module  # noqa: E402
from tinylm.quant.qat import FakeQuantEmbedding, fake_quantize, strip_fake_quantize  # noqa: E402
from tinylm.train import TrainConfig, evaluate, train  # noqa: E402

PRECISION = "int4:g32"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="a trained benchmark run folder (default: train one)")
    parser.add_argument("--data", default=os.path.normpath(DEFAULT_DATA), help="path of tinyshakespeare.txt")
    parser.add_argument("--qat-iters", type=int, default=200, help="fine-tuning steps of each variant")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate of the fine-tuning")
    parser.add_argument("--save", action="store_true", help="write benchmarks/qat_int4.json")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_model()}")

    tokenizer, (train_ids, val_ids) = load_shakespeare(args.data)
    t0 = time.time()
    if args.run:
        model, _ = load_model(args.run)
    else:  # the benchmark's own run, as tinylm.bench.train.run_training does it
        config = TrainConfig(max_iters=2000, eval_interval=250, eval_iters=20, seed=1337, data=args.data, clean=False,
                             **TRAIN)
        model = GPT(GPTConfig(vocab_size=256, **MODEL), seed=1337)
        train(model, train_ids, val_ids, config, verbose=False)
    model.eval()
    print(f"model: {model.num_params():,} parameters ({'loaded from ' + args.run if args.run else 'trained'}, "
          f"{time.time() - t0:.0f} s)")

    def val_loss(m):
        return evaluate(m, val_ids, batch_size=64, block_size=model.config.block_size, iters=None)

    plan = uniform_plan(model, PRECISION)
    fp32_loss = val_loss(model)
    out = {"cpu": cpu_model(), "model": "tinylm.bench train (4 x 4 x 128, 2000 steps)", "precision": PRECISION,
           "qat_iters": args.qat_iters, "lr": args.lr, "fp32_bytes": weight_bytes(model)["total"],
           "int4_bytes": weight_bytes(apply_plan(model, plan))["total"], "fp32_val_loss": fp32_loss,
           "rows": {"before": {"int4_val_loss": val_loss(apply_plan(model, plan)), "fp32_val_loss": fp32_loss}}}

    def linear_only(m):
        fake_quantize(m, plan)
        for name, mod in list(m.named_modules()):
            if isinstance(mod, FakeQuantEmbedding):
                set_module(m, name, mod.plain())
        return m

    fine = TrainConfig(batch_size=12, max_iters=args.qat_iters, lr=args.lr, min_lr=args.lr / 10,
                       warmup_iters=min(20, args.qat_iters), eval_interval=args.qat_iters, eval_iters=2, seed=7)
    variants = (("QAT", lambda m: fake_quantize(m, plan)), ("QAT, Linear layers only", linear_only),
                ("control (no fake quantization)", lambda m: m))
    for label, wrap in variants:
        m = copy.deepcopy(model)
        m.train()
        wrap(m)
        t0 = time.time()
        train(m, train_ids, val_ids, fine, verbose=False)
        strip_fake_quantize(m).eval()
        out["rows"][label] = {"int4_val_loss": val_loss(apply_plan(m, plan)), "fp32_val_loss": val_loss(m),
                              "seconds": time.time() - t0}
        print(f"{label}: {args.qat_iters} steps in {time.time() - t0:.0f} s", flush=True)

    def pct(loss):
        return 100 * math.expm1(loss - fp32_loss)

    ratio = out["fp32_bytes"] / out["int4_bytes"]
    print(f"\nfp32 weights {out['fp32_bytes']:,} bytes, {PRECISION} {out['int4_bytes']:,} ({ratio:.2f}x smaller); "
          f"fp32 validation perplexity {math.exp(fp32_loss):.4f} (whole split)")
    print(f"{'':34s} {PRECISION} ppl  vs fp32   | its own fp32 ppl vs fp32")
    for label, r in out["rows"].items():
        print(f"{label:34s} {math.exp(r['int4_val_loss']):9.4f} {pct(r['int4_val_loss']):+7.2f}%  | "
              f"{math.exp(r['fp32_val_loss']):9.4f} {pct(r['fp32_val_loss']):+7.2f}%")
    qat = pct(out["rows"]["QAT"]["int4_val_loss"])
    control = out["rows"]["control (no fake quantization)"]
    print(f"QAT's {PRECISION} against the control's fp32 (fp32 fine-tuned as long): "
          f"{100 * math.expm1(out['rows']['QAT']['int4_val_loss'] - control['fp32_val_loss']):+.2f}%; "
          f"the control's own {PRECISION}: {pct(control['int4_val_loss']):+.2f}%")
    met = qat <= 3.0 and ratio >= 6.0
    out["target_met"] = met
    print(f"target: {PRECISION} after QAT within 3% of fp32 and >= 6x smaller: {qat:+.2f}%, {ratio:.2f}x -> "
          f"{'met' if met else 'NOT met'}")
    if args.save:
        with open(os.path.join(HERE, "qat_int4.json"), "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
        print("wrote benchmarks/qat_int4.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
