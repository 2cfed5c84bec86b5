"""Does quality hold? Measuring a quantized model against its fp32 original.

Three numbers per precision plan, all on the same fixed validation batches:
- **validation loss and perplexity** (perplexity = exp(mean cross-entropy));
- **greedy agreement**: the fraction of validation positions where the plan's most likely next token
  (argmax of the logits) is the same as the fp32 model's;
- **tokens/s** of generation at batch 1 with the KV cache, through the ordinary `generate` API.

    >>> ev = Evaluator(model, val_ids, block_size=64, batch_size=8, n_batches=4, seed=0)
    >>> ev.measure(apply_plan(model, uniform_plan(model, "fp16")))
    {'loss': 1.8432, 'ppl': 6.317, 'ppl_change': 0.0004, 'agreement': 0.998}

`compare` runs that for several plans and `format_table` prints the comparison as a Markdown table.
"""
from __future__ import annotations

import math
import time

import numpy as np

from tinylm.autograd import no_grad
from tinylm.generate import generate
from tinylm.quant.plan import apply_plan, validate_plan, weight_bytes


class Evaluator:
    """Fixed validation batches, and the fp32 model's loss and argmax tokens on them (the reference)."""

    def __init__(self, model, val_ids, block_size=None, batch_size=8, n_batches=4, seed=0):
        val_ids = np.asarray(val_ids)
        if val_ids.ndim != 1 or val_ids.dtype.kind not in "iu":
            raise TypeError(f"Evaluator: val_ids has dtype {val_ids.dtype} and shape {val_ids.shape}; "
                            "expected a 1-D array of token ids")
        block_size = model.config.block_size if block_size is None else int(block_size)
        if not 1 <= block_size <= model.config.block_size:  # (0 is a mistake, not "the default")
            raise ValueError(f"Evaluator: block_size is {block_size}; expected 1 .. the model's "
                             f"{model.config.block_size}")
        if len(val_ids) < block_size + 1:
            raise ValueError(f"Evaluator: {len(val_ids)} validation tokens are too few for one window of "
                             f"block_size {block_size} (+1 target)")
        rng = np.random.default_rng(seed)
        starts = rng.integers(0, len(val_ids) - block_size, size=(n_batches, batch_size))
        offsets = np.arange(block_size)
        self.batches = [(val_ids[s[:, None] + offsets], val_ids[s[:, None] + offsets + 1])  # (B, T) each
                        for s in starts]
        self.reference = model
        self.ref_loss, self.ref_tokens = self.run(model)

    def run(self, model):
        """(mean loss, argmax tokens (n_batches, B, T)) of `model` on the fixed batches."""
        losses, tokens = [], []
        with no_grad():
            for idx, targets in self.batches:
                logits, loss = model.forward(idx, targets)  # (B, T, vocab_size), scalar
                losses.append(float(np.asarray(loss.data)))
                tokens.append(np.asarray(logits.data).argmax(-1))  # (B, T)
        return float(np.mean(losses)), np.stack(tokens)

    def measure(self, model):
        """{'loss', 'ppl', 'ppl_change' (relative to fp32), 'agreement'} of `model`."""
        loss, tokens = self.run(model)
        return {"loss": loss, "ppl": _exp(loss), "ppl_change": _exp(loss - self.ref_loss) - 1.0,
                "agreement": float(np.mean(tokens == self.ref_tokens))}


def _exp(x):
    """math.exp, inf where it would overflow (a loss above ~709 nats: a broken model, not a crash)."""
    return math.exp(x) if x < 709.0 else math.inf


def tokens_per_second(model, n_tokens=32, repeats=3, seed=0):
    """Median generation speed at batch 1 (greedy, KV cache) from a one-token prompt."""
    return speeds([model], n_tokens, repeats, seed)[0]


def speeds(models, n_tokens=32, repeats=3, seed=0):
    """Tokens/s of each model, timed in interleaved rounds (A B C, A B C, ...), median per model.

    Interleaving matters on a busy machine: a burst of load then slows every model a little instead of
    one model a lot, so the ratios between them stay meaningful.
    """
    idx = np.zeros((1, 1), dtype=np.int64)
    times = [[] for _ in models]
    with no_grad():
        for _ in range(repeats):
            for i, model in enumerate(models):
                t0 = time.perf_counter()
                generate(model, idx, max_new_tokens=n_tokens, temperature=0.0, seed=seed, use_cache=True)
                times[i].append(time.perf_counter() - t0)
    return [n_tokens / float(np.median(t)) for t in times]


def compare(model, evaluator, plans, gen_tokens=32, repeats=3, seed=0, progress=None):
    """One row per plan ({label: plan}): bytes, compression, perplexity and its change, agreement, tok/s.

    Set gen_tokens=0 to skip the speed measurement (the 'tok_s' column is then None).
    """
    fp32_bytes = weight_bytes(model)["total"]
    rows, models = [], []
    for i, (label, plan) in enumerate(plans.items()):
        qmodel = apply_plan(model, validate_plan(model, plan))
        nbytes = weight_bytes(qmodel)
        rows.append({"plan": label, "bytes": nbytes, "compression": fp32_bytes / nbytes["total"],
                     **evaluator.measure(qmodel), "tok_s": None})
        models.append(qmodel)
        if progress is not None:
            progress.update(i + 1, extra=label)
    if gen_tokens:
        for row, tok_s in zip(rows, speeds(models, gen_tokens, repeats, seed)):
            row["tok_s"] = tok_s
    return rows


def format_table(rows):
    """The comparison as a Markdown table (speed relative to the first row, normally fp32)."""
    lines = ["| plan | weight bytes | vs fp32 | val ppl | ppl change | greedy agreement | tok/s | speed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    base_speed = rows[0]["tok_s"] if rows and rows[0]["tok_s"] else None
    for r in rows:
        speed = f"{r['tok_s']:,.0f}" if r["tok_s"] else "-"
        ratio = f"{r['tok_s'] / base_speed:.2f}x" if r["tok_s"] and base_speed else "-"
        lines.append(f"| {r['plan']} | {r['bytes']['total']:,} | {r['compression']:.2f}x | {r['ppl']:.4f} | "
                     f"{100 * r['ppl_change']:+.3f}% | {100 * r['agreement']:.2f}% | {speed} | {ratio} |")
    return "\n".join(lines)
