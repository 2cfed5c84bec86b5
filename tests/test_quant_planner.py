"""The precision planner: its knapsack, its budgets on a small trained model, and `tinylm quantize`."""
import itertools
import json
import math

import numpy as np
import pytest

from tinylm.quant.planner import _knapsack, layer_bytes


def test_layer_bytes_match_the_storage_formats():
    assert layer_bytes((64, 128), "fp32") == 4 * 64 * 128
    assert layer_bytes((64, 128), "fp16") == 2 * 64 * 128
    assert layer_bytes((64, 128), "int8:g32") == 64 * 128 + 4 * 64 * 4
    assert layer_bytes((64, 128), "int8:channel") == 64 * 128 + 4 * 64
    assert layer_bytes((64, 128), "int8") == layer_bytes((64, 128), "int8:g32")


@pytest.mark.parametrize("seed", range(5))
def test_knapsack_finds_the_best_choice_that_fits(seed):
    """Against brute force over every combination: the cheapest total value within the capacity."""
    rng = np.random.default_rng(seed)
    options = [[(None, float(c), float(v)) for c, v in zip(rng.integers(1, 100, 3), rng.random(3))]
               for _ in range(5)]
    capacity = float(rng.integers(100, 300))
    best = math.inf
    for combo in itertools.product(*[range(3)] * 5):
        cost = sum(options[i][j][1] for i, j in enumerate(combo))
        value = sum(options[i][j][2] for i, j in enumerate(combo))
        if cost <= capacity:
            best = min(best, value)
    chosen = _knapsack(options, cost_of=lambda o: o[1], value_of=lambda o: o[2], capacity=capacity,
                       n_bins=int(capacity))  # integer costs: one bin per unit, so the DP is exact
    if best == math.inf:
        assert chosen is None
    else:
        assert sum(options[i][j][1] for i, j in enumerate(chosen)) <= capacity
        assert sum(options[i][j][2] for i, j in enumerate(chosen)) == pytest.approx(best)


def test_knapsack_rounds_costs_up_so_it_never_exceeds_the_capacity():
    options = [[(None, 0.3, 1.0), (None, 0.0, 5.0)] for _ in range(4)]

    def solve(n_bins):
        return _knapsack(options, cost_of=lambda o: o[1], value_of=lambda o: o[2], capacity=1.0,
                         n_bins=n_bins)
    assert sorted(solve(1000)) == [0, 0, 0, 1]  # three 0.3-cost options fit in 1.0, a fourth does not
    coarse = solve(7)  # bins of 1/7: 0.3 counts as 3/7, so only two fit -- less, never more
    assert sorted(coarse) == [0, 0, 1, 1]


# ----------------------------------------------------------------------------------------------
# on a small trained model


@pytest.fixture(scope="module")
def trained():
    """A 2-layer GPT trained for a few seconds on bytes of the built-in corpus, and its val ids."""
    from tinylm.data import get_batch, load_corpus, train_val_split
    from tinylm.model import GPT, GPTConfig
    from tinylm.optim import AdamW

    ids = np.frombuffer(load_corpus("builtin")[:60_000].encode("utf-8"), np.uint8).astype(np.uint16)
    train_ids, val_ids = train_val_split(ids)
    model = GPT(GPTConfig(vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=64), seed=0)
    opt = AdamW(model.optim_groups(0.1), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(120):
        x, y = get_batch(train_ids, 16, 32, rng)
        _, loss = model(x, y)
        model.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, train_ids, val_ids


@pytest.fixture(scope="module")
def planned(trained):
    from tinylm.quant.evaluate import Evaluator
    from tinylm.quant.planner import sensitivity

    model, _, val_ids = trained
    evaluator = Evaluator(model, val_ids, batch_size=8, n_batches=2, seed=0)
    return model, evaluator, sensitivity(model, evaluator, show_progress=False)


@pytest.mark.slow
def test_sensitivity_measures_every_layer_and_is_deterministic(trained, planned):
    from tinylm.quant import quantizable_layers
    from tinylm.quant.evaluate import Evaluator
    from tinylm.quant.planner import sensitivity

    model, evaluator, sens = planned
    assert list(sens) == list(quantizable_layers(model))
    assert all(set(row) == {"fp16", "int8:g32", "int8:channel", "int4:g32"} for row in sens.values())
    # fp16 barely moves the loss; int8 moves it more, in total
    total = {p: sum(abs(row[p]) for row in sens.values()) for p in ("fp16", "int8:g32")}
    assert total["fp16"] < total["int8:g32"]
    # the same seed gives the same batches, so the same measurements, bit for bit
    again = Evaluator(model, trained[2], batch_size=8, n_batches=2, seed=0)
    assert sensitivity(model, again, ["fp16"], show_progress=False) == {
        name: {"fp16": row["fp16"]} for name, row in sens.items()}


@pytest.mark.slow
@pytest.mark.parametrize("budget", [0.001, 0.01])
def test_planner_respects_its_perplexity_budget_and_saves_bytes(planned, budget):
    from tinylm.quant import apply_plan, weight_bytes
    from tinylm.quant.planner import plan_for_ppl_budget

    model, evaluator, sens = planned
    plan, metrics = plan_for_ppl_budget(model, evaluator, sens, budget)
    measured = evaluator.measure(apply_plan(model, plan))
    assert measured["ppl_change"] <= budget
    assert measured == {k: metrics[k] for k in measured}
    assert metrics["bytes"] == weight_bytes(apply_plan(model, plan))["total"] < weight_bytes(model)["total"] / 1.9


@pytest.mark.slow
def test_byte_budget_plan_fits_and_beats_uniform_int8_per_channel_at_equal_bytes(planned):
    from tinylm.quant import apply_plan, uniform_plan, weight_bytes
    from tinylm.quant.planner import plan_for_byte_budget, predicted_loss_increase

    model, evaluator, sens = planned
    g32 = apply_plan(model, uniform_plan(model, "int8:g32"))
    budget = weight_bytes(g32)["total"]
    plan, metrics = plan_for_byte_budget(model, evaluator, sens, budget)
    assert metrics["bytes"] <= budget
    # by its own (additive) estimate, no uniform plan that fits does better
    for precision in ["int8:g32", "int8:channel"]:
        uniform = uniform_plan(model, precision)
        assert predicted_loss_increase(plan, sens) <= predicted_loss_increase(uniform, sens) + 1e-12
    with pytest.raises(ValueError, match="below the smallest plan"):
        plan_for_byte_budget(model, evaluator, sens, 1000)


# ----------------------------------------------------------------------------------------------
# the command


@pytest.fixture(scope="module")
def run_dir(trained, tmp_path_factory):
    from tinylm.io.runs import save_checkpoint, save_tokens
    from tinylm.tokenizer import Tokenizer

    model, train_ids, val_ids = trained
    folder = tmp_path_factory.mktemp("run")
    save_checkpoint(folder, model, Tokenizer())
    save_tokens(folder, train_ids, val_ids)
    return folder


FAST = ["--eval-batches", "2", "--batch-size", "4", "--gen-tokens", "4", "--repeats", "1"]


def _table_rows(out):
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and "weight bytes" not in line}


@pytest.mark.slow
def test_quantize_report_prints_the_comparison_table(run_dir, capsys):
    from tinylm import cli

    assert cli.main(["quantize", "--run", str(run_dir), "--report", *FAST]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert list(rows) == ["fp32", "fp16", "int8:g32", "int8:g64", "int8:channel", "int4:g32", "int4:channel"]
    assert float(rows["int4:g32"][1].rstrip("x")) > 5.5        # biases and LayerNorms stay fp32
    assert rows["fp32"][1:5] == ["1.00x", rows["fp32"][2], "+0.000%", "100.00%"]
    assert float(rows["fp16"][1].rstrip("x")) > 1.9 and float(rows["int8:g32"][1].rstrip("x")) > 3.0
    assert abs(float(rows["fp16"][3].rstrip("%"))) < 0.1


@pytest.mark.slow
def test_quantize_plans_saves_and_applies_a_plan(run_dir, tmp_path, capsys):
    from tinylm import cli
    from tinylm.io.quantized import load_quantized
    from tinylm.quant import load_plan, plan_of

    plan_path, figure = tmp_path / "plan.json", tmp_path / "tradeoff.png"
    assert cli.main(["quantize", "--run", str(run_dir), "--max-ppl-increase", "1%", "--save-plan",
                     str(plan_path), "--figure", str(figure), *FAST]) == 0
    out = capsys.readouterr().out
    assert "planned (ppl +1%)" in out and plan_path.exists() and figure.stat().st_size > 10_000
    assert "other validation batches" in out  # the plan is checked on batches it was not chosen on
    saved = json.loads(plan_path.read_text())
    assert set(saved["checked"]) == {"loss", "ppl", "ppl_change", "agreement"}
    assert saved["sensitivity"].keys() == saved["layers"].keys()  # every layer measured, every layer planned
    plan = load_plan(plan_path)
    assert cli.main(["quantize", "--run", str(run_dir), "--plan", str(plan_path), "--out",
                     str(tmp_path / "q"), *FAST]) == 0
    assert set(_table_rows(capsys.readouterr().out)) == {"fp32", "plan"}
    assert plan_of(load_quantized(tmp_path / "q")) == {**plan_of(load_quantized(tmp_path / "q")), **plan}
    assert (tmp_path / "q" / "tokenizer.json").exists()
    # saving again into the same folder stops before any work, and keeps the model that is there
    saved_weights = (tmp_path / "q" / "weights.npz").read_bytes()
    assert cli.main(["quantize", "--run", str(run_dir), "--plan", "fp16", "--out", str(tmp_path / "q")]) == 2
    assert "already holds quantized.json, weights.npz: pass --force" in capsys.readouterr().err
    assert (tmp_path / "q" / "weights.npz").read_bytes() == saved_weights


def test_quantize_report_leaves_out_a_group_size_wider_than_the_model(tmp_path, capsys):
    """A 32-wide model cannot take groups of 64: the report has no int8:g64 row and says why."""
    import numpy as np

    from tinylm import cli
    from tinylm.io.runs import save_checkpoint, save_tokens
    from tinylm.model import GPT, GPTConfig
    from tinylm.tokenizer import Tokenizer

    ids = np.random.default_rng(0).integers(0, 256, 600).astype(np.uint16)
    save_checkpoint(tmp_path, GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=32)),
                    Tokenizer())
    save_tokens(tmp_path, ids[:500], ids[500:])
    assert cli.main(["quantize", "--run", str(tmp_path), "--report", *FAST]) == 0
    out, err = capsys.readouterr()
    assert list(_table_rows(out)) == ["fp32", "fp16", "int8:g32", "int8:channel", "int4:g32", "int4:channel"]
    assert "no uniform int8:g64 row" in err and "does not divide its in_features 32" in err


@pytest.mark.parametrize("argv, message", [
    (["--max-ppl-increase", "lots"], "not a number or a percentage"),
    (["--max-bytes", "12 parsecs"], "not a byte count"),
    (["--plan", "int3"], "unknown precision 'int3'"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--greedy"], "--greedy plans under a byte budget"),
])
def test_quantize_bad_arguments_are_one_line_errors(argv, message, tmp_path, capsys):
    from tinylm import cli

    assert cli.main(["quantize", "--run", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_quantize_a_missing_run_is_a_clear_error(tmp_path, capsys):
    from tinylm import cli

    assert cli.main(["quantize", "--run", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err


@pytest.mark.slow
def test_quantize_without_saved_tokens_needs_a_corpus(run_dir, tmp_path, capsys):
    import shutil

    from tinylm import cli

    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    (bare / "tokens.npz").unlink()
    assert cli.main(["quantize", "--run", str(bare), "--report", *FAST]) == 2
    assert "pass --data" in capsys.readouterr().err
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog. " * 200)
    assert cli.main(["quantize", "--run", str(bare), "--report", "--data", str(corpus), *FAST]) == 0
    assert "int8:g32" in capsys.readouterr().out



def test_tradeoff_figure_draws_one_line_per_planner(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from tinylm.quant.planner import plot_tradeoff

    drawn, plot = [], Axes.plot

    def recording_plot(self, *args, **kwargs):
        drawn.append((kwargs.get("label"), list(args[0]), list(args[1])))
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recording_plot)
    points = {"fp32": (4096, 0.0), "int4:g32": (1024, 0.06)}
    curves = {"knapsack": [(2048, 0.01), (1536, 0.02)], "greedy": [(2048, 0.012), (1536, 0.018), (1280, 0.03)]}
    path = plot_tradeoff(str(tmp_path / "t.png"), points, frontier=curves)
    assert (tmp_path / "t.png").stat().st_size > 0 and path == str(tmp_path / "t.png")
    assert [d[0] for d in drawn] == ["knapsack", "greedy"]
    assert drawn[1][1] == [1.25, 1.5, 2.0] and np.allclose(drawn[1][2], [3.0, 1.8, 1.2])   # KiB, %, sorted
    drawn.clear()
    plot_tradeoff(str(tmp_path / "one.png"), points, frontier=curves["knapsack"])      # a list: one line
    assert [d[0] for d in drawn] == ["planner (budget sweep)"]
