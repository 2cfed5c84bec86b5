"""The precision planner: measure what each layer can take, then pick a precision per layer.

Step 1, **sensitivity**: lower ONE layer to fp16 (or int8), leave every other layer fp32, and measure
how much the validation loss rises. Layers differ a lot: an MLP projection may not notice int8 while
the output head does.

Step 2, **choice**: treat the loss increases as additive (a first-order approximation that the
planner then checks) and solve a small knapsack, one choice per layer:
- `plan_for_ppl_budget`: the fewest weight bytes whose perplexity rises by at most `max_ppl_increase`
  (0.005 = 0.5%). The plan is evaluated for real; if it overshoots (the increases were not quite
  additive), the planner asks for a tighter budget and tries again.
- `plan_for_byte_budget`: the lowest predicted loss within `max_bytes` of weights (exact: bytes add up).

At 4 bits the additive estimate misleads: lowering two layers to int4 can cost more (or less) than the
sum of lowering each alone. `plan_greedy` does not add estimates: it lowers one layer at a time and
re-measures the WHOLE plan after each step (the cheapest measured loss per byte saved wins), so every
interaction between layers is in the numbers it decides on. It costs one evaluation per candidate
move per step instead of one per (layer, precision).

    >>> ev = Evaluator(model, val_ids, seed=0)
    >>> sens = sensitivity(model, ev, ["fp16", "int8:g32"])
    >>> sens["lm_head"]          # loss increase when only lm_head is lowered
    {'fp16': 1.2e-05, 'int8:g32': 0.0041}
    >>> plan, metrics = plan_for_ppl_budget(model, ev, sens, max_ppl_increase=0.005)

Both are deterministic: fixed evaluation batches (from the seed) and a deterministic solver.
"""
from __future__ import annotations

import math

import numpy as np

from tinylm.progress import Progress
from tinylm.quant.plan import apply_plan, layer_precision, quantizable_layers, weight_bytes
from tinylm.quant.precisions import PRECISIONS, fits, parse_precision

DEFAULT_CANDIDATES = ("fp16", "int8:g32", "int8:channel", "int4:g32")


def layer_bytes(shape, precision):
    """Bytes of one (out, in) weight matrix in `precision`: ((64, 128), 'int8:g32') -> 8192 + 1024."""
    kind, group_size = parse_precision(precision)
    return PRECISIONS[kind].nbytes(shape, group_size)


def sensitivity(model, evaluator, precisions=DEFAULT_CANDIDATES, show_progress=True):
    """{layer: {precision: loss increase}} when only that layer is lowered to that precision.

    A precision a layer cannot take (a group size that does not divide its inputs) is left out.
    """
    precisions = [parse_precision(p) for p in precisions]
    layers = quantizable_layers(model)
    jobs = []
    for name, shape in layers.items():
        usable = {layer_precision(name, shape[1], kind, group_size) for kind, group_size in precisions
                  if kind != "fp32" and fits(shape, kind, group_size)}
        jobs += [(name, p) for p in sorted(usable)]  # int8:g32 is int8:channel when in_features is 32
    progress = Progress(len(jobs), what="layers", enabled=show_progress)
    out = {name: {} for name in layers}
    for i, (name, precision) in enumerate(jobs):
        loss = evaluator.measure(apply_plan(model, {name: precision}))["loss"]
        out[name][precision] = loss - evaluator.ref_loss
        progress.update(i + 1, extra=f"{name} {precision}")
    progress.done(len(jobs))
    return out


def _choices(layers, sens):
    """Per layer, the options [(precision, bytes, loss increase)], fp32 first (0 increase)."""
    options = []
    for name, shape in layers.items():
        opts = [("fp32", layer_bytes(shape, "fp32"), 0.0)]
        for precision, delta in sorted(sens.get(name, {}).items()):
            # a measured decrease is noise as far as planning goes: count it as no change
            opts.append((precision, layer_bytes(shape, precision), max(float(delta), 0.0)))
        options.append(opts)
    return options


def _knapsack(options, cost_of, value_of, capacity, n_bins=2000):
    """Pick one option per layer minimizing the sum of value_of(option) with sum of cost_of <= capacity.

    Costs are rounded UP to 1/n_bins of the capacity, so the real total never exceeds it. Returns the
    chosen option index per layer, or None when no choice fits. Dynamic programming over cost bins:
    best[c] = the smallest total value whose (rounded) cost is c.
    """
    unit = capacity / n_bins if capacity > 0 else 1.0
    best = np.full(n_bins + 1, np.inf)
    best[0] = 0.0
    picks = []
    for opts in options:
        new = np.full(n_bins + 1, np.inf)
        pick = np.full(n_bins + 1, -1, dtype=np.int64)
        for j, opt in enumerate(opts):
            c = int(math.ceil(cost_of(opt) / unit - 1e-9)) if cost_of(opt) > 0 else 0
            if c > n_bins:
                continue
            shifted = np.full(n_bins + 1, np.inf)
            shifted[c:] = best[: n_bins + 1 - c] + value_of(opt)
            better = shifted < new
            new[better], pick[better] = shifted[better], j
        best = new
        picks.append(pick)
    if not np.isfinite(best).any():
        return None
    c = int(np.argmin(best))  # ties: the lowest cost bin
    chosen = []
    for opts, pick in zip(reversed(options), reversed(picks)):
        j = int(pick[c])
        chosen.append(j)
        cost = cost_of(opts[j])
        c -= int(math.ceil(cost / unit - 1e-9)) if cost > 0 else 0
    return chosen[::-1]


def _plan_from(layers, options, chosen):
    return {name: opts[j][0] for name, opts, j in zip(layers, options, chosen)}


def predicted_loss_increase(plan, sens):
    """The planner's additive estimate of a plan's loss increase."""
    return sum(max(sens[name].get(p, 0.0), 0.0) for name, p in plan.items() if p != "fp32")


def fixed_bytes(model):
    """Weight bytes no plan can change (LayerNorm, biases): the fp32 total minus the planned matrices."""
    return weight_bytes(model)["total"] - sum(layer_bytes(s, "fp32") for s in quantizable_layers(model).values())


def plan_for_ppl_budget(model, evaluator, sens, max_ppl_increase, max_tries=6):
    """The smallest plan (in weight bytes) whose measured perplexity rises by <= max_ppl_increase.

    Returns (plan, metrics) where metrics = evaluator.measure(...) of the chosen plan plus
    'bytes' and 'tries'. The all-fp32 plan always qualifies, so a plan is always returned.
    """
    if not max_ppl_increase >= 0:
        raise ValueError(f"max_ppl_increase must be >= 0 (e.g. 0.005 for 0.5%); got {max_ppl_increase}")
    layers = quantizable_layers(model)
    options = _choices(layers, sens)
    loss_budget = math.log1p(max_ppl_increase)
    target = loss_budget
    for tries in range(1, max_tries + 1):
        if target > 0:
            chosen = _knapsack(options, cost_of=lambda o: o[2], value_of=lambda o: o[1], capacity=target)
        else:
            chosen = [0] * len(options)  # nothing may change: fp32 everywhere
        plan = _plan_from(layers, options, chosen)
        metrics = evaluator.measure(apply_plan(model, plan))
        if metrics["ppl_change"] <= max_ppl_increase or target == 0:
            break
        # the real increase overshot the additive estimate: shrink the planning budget and retry
        target = 0.0 if tries == max_tries - 1 else target * 0.6
    metrics.update(bytes=weight_bytes(apply_plan(model, plan))["total"], tries=tries)
    return plan, metrics


def plan_for_byte_budget(model, evaluator, sens, max_bytes):
    """The plan with the lowest predicted loss whose total weight bytes are <= max_bytes.

    Raises ValueError when even the smallest precisions do not fit.
    """
    layers = quantizable_layers(model)
    options = _choices(layers, sens)
    room = int(max_bytes) - fixed_bytes(model)
    smallest = fixed_bytes(model) + sum(min(o[1] for o in opts) for opts in options)
    if room <= 0 or smallest > max_bytes:
        raise ValueError(f"max_bytes {int(max_bytes):,} is below the smallest plan this model allows "
                         f"({smallest:,} bytes with the candidate precisions)")
    chosen = _knapsack(options, cost_of=lambda o: o[1], value_of=lambda o: o[2], capacity=room)
    if chosen is None:  # the rounding of costs can lose a plan that fits exactly: fall back to the smallest
        chosen = [int(np.argmin([o[1] for o in opts])) for opts in options]
    plan = _plan_from(layers, options, chosen)
    qmodel = apply_plan(model, plan)
    metrics = evaluator.measure(qmodel)
    metrics.update(bytes=weight_bytes(qmodel)["total"], tries=1)
    return plan, metrics


def plan_greedy(model, evaluator, max_bytes, candidates=DEFAULT_CANDIDATES, show_progress=True):
    """Lower layers one at a time, re-measuring, until the weights fit in max_bytes.

    Start with every layer fp32. Each step tries, for every layer, each smaller candidate precision it
    can take, measures the loss of the whole plan with that one change, and keeps the move with the
    smallest measured loss increase per byte saved (a move that lowers the loss counts as free). Stop
    when the total weight bytes are <= max_bytes. The last step usually saves more than was needed, so
    a second phase spends the rest: while some layer can be raised to a more exact precision within
    max_bytes and that measurably lowers the loss, take the raise with the largest loss decrease per
    byte. Returns (plan, metrics) like plan_for_byte_budget, with metrics['steps'] = [(bytes, loss)]
    after each lowering step (the path, for a figure) and metrics['refills'] = [(bytes, loss)] after
    each raise.
    """
    layers = quantizable_layers(model)
    options = {}
    for name, shape in layers.items():
        usable = {layer_precision(name, shape[1], kind, gs) for kind, gs in map(parse_precision, candidates)
                  if kind != "fp32" and fits(shape, kind, gs)}
        options[name] = sorted(usable, key=lambda p: -layer_bytes(shape, p))
    fixed = fixed_bytes(model)
    smallest = fixed + sum(min([layer_bytes(s, "fp32")] + [layer_bytes(s, p) for p in options[n]])
                           for n, s in layers.items())
    if smallest > max_bytes:
        raise ValueError(f"max_bytes {int(max_bytes):,} is below the smallest plan this model allows "
                         f"({smallest:,} bytes with the candidate precisions)")
    plan = {name: "fp32" for name in layers}
    total = fixed + sum(layer_bytes(s, "fp32") for s in layers.values())
    loss = evaluator.ref_loss
    steps = [(total, loss)]
    progress = Progress(1, what="greedy steps", enabled=show_progress)
    while total > max_bytes:
        best = None
        for name, shape in layers.items():
            now = layer_bytes(shape, plan[name])
            for p in options[name]:
                saved = now - layer_bytes(shape, p)
                if saved <= 0:
                    continue
                trial_loss = evaluator.measure(apply_plan(model, {**plan, name: p}))["loss"]
                score = max(trial_loss - loss, 0.0) / saved       # loss per byte saved
                if best is None or (score, -saved) < best[0]:     # ties: the bigger saving
                    best = ((score, -saved), name, p, saved, trial_loss)
        _, name, p, saved, loss = best
        plan[name] = p
        total -= saved
        steps.append((total, loss))
        progress.update(len(steps) - 1, extra=f"{name} {p}")
    progress.done(len(steps) - 1)
    refills = []
    while True:  # spend what the last step left of the budget: the upgrade that lowers the loss most per byte
        best = None
        for name, shape in layers.items():
            now = layer_bytes(shape, plan[name])
            for p in ["fp32"] + options[name]:
                extra = layer_bytes(shape, p) - now
                if extra <= 0 or total + extra > max_bytes:
                    continue
                trial_loss = evaluator.measure(apply_plan(model, {**plan, name: p}))["loss"]
                score = (trial_loss - loss) / extra                # < 0: it helps
                if score < 0 and (best is None or score < best[0]):
                    best = (score, name, p, extra, trial_loss)
        if best is None:
            break
        _, name, p, extra, loss = best
        plan[name] = p
        total += extra
        refills.append((total, loss))
    qmodel = apply_plan(model, plan)
    metrics = evaluator.measure(qmodel)
    metrics.update(bytes=weight_bytes(qmodel)["total"], tries=1, steps=steps, refills=refills)
    return plan, metrics


def tradeoff_curve(model, evaluator, sens, budgets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)):
    """[(max_ppl_increase, plan, metrics)] along a range of budgets: the planner's frontier."""
    out = []
    for b in budgets:
        plan, metrics = plan_for_ppl_budget(model, evaluator, sens, b)
        out.append((b, plan, metrics))
    return out


def plot_tradeoff(path, points, chosen=None, frontier=None, title="weight bytes vs perplexity"):
    """Save the trade-off figure: x = weight bytes, y = perplexity change vs fp32 (in %).

    points   {label: (bytes, ppl_change)} (e.g. the uniform plans), drawn as labelled dots
    frontier [(bytes, ppl_change)] of the planner's budget sweep, drawn as a line; or
             {label: [(bytes, ppl_change)]}, one line per planner
    chosen   (label, bytes, ppl_change) of the chosen plan, drawn as a red star
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    curves = frontier if isinstance(frontier, dict) else {"planner (budget sweep)": frontier}
    for (label, curve), color in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green", "tab:purple")):
        if curve:
            xs, ys = zip(*sorted(curve))
            ax.plot(np.array(xs) / 1024, 100 * np.array(ys), "-o", color=color, ms=4, label=label)
    for label, (nbytes, change) in points.items():
        ax.scatter(nbytes / 1024, 100 * change, s=40, zorder=3, color="k", marker="s")
        ax.annotate(label, (nbytes / 1024, 100 * change), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if chosen is not None:
        ax.scatter(chosen[1] / 1024, 100 * chosen[2], marker="*", s=250, color="tab:red", zorder=4,
                   label=f"chosen: {chosen[0]}")
    ax.axhline(0, color="k", lw=0.5)
    ax.ticklabel_format(useOffset=False)
    ax.set_xlabel("weight bytes (KiB)")
    ax.set_ylabel("validation perplexity change vs fp32 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
