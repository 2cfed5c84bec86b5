"""The training loop: it learns, its evaluation is on fixed batches, and a resumed run is exact."""
import csv
import importlib.util
import math
import re

import numpy as np
import pytest

import tinylm.train as train_module
from tinylm.data import train_val_split
from tinylm.io.runs import load_checkpoint
from tinylm.model import GPT, GPTConfig
from tinylm.tokenizer import Tokenizer
from tinylm.train import TrainConfig, evaluate, train

TINY = GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=2, n_embd=16)


@pytest.fixture(scope="module")
def ids():
    text = "To be, or not to be, that is the question. " * 30
    return train_val_split(np.frombuffer(text.encode(), dtype=np.uint8).astype(np.uint16))


def _config(**kw):
    base = dict(batch_size=4, max_iters=8, warmup_iters=2, eval_interval=4, eval_iters=2, seed=7)
    return TrainConfig(**{**base, **kw})


def test_train_config_rejects_bad_values_by_name():
    for kw, match in [({"batch_size": 0}, "batch_size"), ({"lr": -1.0}, "lr"), ({"lr": 1e-4, "min_lr": 1e-3}, "min_lr"),
                      ({"max_iters": 10, "warmup_iters": 20}, "warmup_iters"), ({"beta2": 1.0}, "beta2"),
                      ({"grad_accum": 1.5}, "grad_accum"),
                      ({"lr_decay_iters": 1, "warmup_iters": 5}, "lr_decay_iters")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**kw)
    with pytest.raises(ValueError, match="unknown setting"):
        TrainConfig.from_dict({"batch_sise": 4})
    assert TrainConfig.from_dict(TrainConfig(lr=3e-4).to_dict()) == TrainConfig(lr=3e-4)


def test_the_schedule_warms_up_then_decays_to_min_lr():
    config = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=100)
    lrs = [config.lr_at(s) for s in range(120)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1e-3  # warmup rises
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:101]))  # then never rises
    assert lrs[100] == pytest.approx(1e-4) and lrs[119] == pytest.approx(1e-4)


def test_evaluate_uses_the_same_batches_every_time_and_restores_train_mode(ids):
    model = GPT(TINY, seed=0)
    model.train()
    a = evaluate(model, ids[1], batch_size=4, block_size=8, iters=3, seed=5)
    b = evaluate(model, ids[1], batch_size=4, block_size=8, iters=3, seed=5)
    c = evaluate(model, ids[1], batch_size=4, block_size=8, iters=3, seed=6)
    assert a == b and a != c and model.training
    assert a == pytest.approx(math.log(256), abs=0.3)  # a fresh model guesses ~uniformly
    full = evaluate(model, ids[1], batch_size=4, block_size=8, iters=None)  # every window, in order
    assert full == pytest.approx(math.log(256), abs=0.3)
    with pytest.raises(ValueError, match="needs 9"):
        evaluate(model, ids[1][:5], batch_size=4, block_size=8, iters=None)


def test_training_lowers_the_loss_and_overfits_a_tiny_text(ids):
    model = GPT(TINY, seed=0)
    result = train(model, ids[0], ids[1], _config(max_iters=60, eval_interval=30, lr=1e-2, min_lr=1e-3),
                   verbose=False)
    first, last = result.history["eval"][0], result.history["eval"][-1]
    assert first["step"] == 0 and last["step"] == 60 == result.step
    assert last["train_loss"] < 0.5 * first["train_loss"]
    assert result.best_val_loss <= last["val_loss"] and result.tokens_per_second > 0
    assert len(result.history["loss"]) == 60 and result.history["lr"][0] < result.history["lr"][2]


def test_train_refuses_data_shorter_than_a_window(ids):
    with pytest.raises(ValueError, match="val_data has 5 tokens"):
        train(GPT(TINY), ids[0], ids[1][:5], _config(), verbose=False)
    with pytest.raises(TypeError, match="TrainConfig"):
        train(GPT(TINY), ids[0], ids[1], {"max_iters": 3}, verbose=False)


@pytest.mark.parametrize("dropout, grad_accum", [(0.0, 1), (0.1, 2)])
def test_a_resumed_run_gives_exactly_the_losses_of_an_uninterrupted_one(tmp_path, ids, dropout, grad_accum):
    config = GPTConfig(**{**TINY.to_dict(), "dropout": dropout})
    tc = _config(grad_accum=grad_accum)
    tok = Tokenizer()
    whole = GPT(config, seed=1)
    straight = train(whole, ids[0], ids[1], tc, verbose=False)

    train(GPT(config, seed=1), ids[0], ids[1], tc, tokenizer=tok, run_dir=tmp_path, stop_at=3, verbose=False)
    ck = load_checkpoint(tmp_path)
    assert ck.step == 3
    resumed = train(ck.model, ids[0], ids[1], tc, tokenizer=tok, run_dir=tmp_path, resume=ck, verbose=False)
    assert resumed.history["loss"] == straight.history["loss"]  # bit for bit, all 8 steps
    for name, value in whole.state_dict().items():
        assert np.array_equal(ck.model.state_dict()[name], value), name
    rows = list(csv.DictReader(open(tmp_path / "loss.csv")))
    assert [int(r["step"]) for r in rows] == list(range(0, 9))  # step 0 is the evaluation before training


def test_ctrl_c_saves_the_last_whole_step_and_the_run_resumes_exactly(tmp_path, ids, monkeypatch):
    tc = _config(eval_interval=100, max_iters=8)
    straight = train(GPT(TINY, seed=2), ids[0], ids[1], tc, verbose=False)

    real_get_batch, calls = train_module.get_batch, []

    def interrupted_get_batch(*args):
        calls.append(1)
        if len(calls) == 6:  # during step 6: steps 1..5 are whole
            raise KeyboardInterrupt
        return real_get_batch(*args)

    monkeypatch.setattr(train_module, "get_batch", interrupted_get_batch)
    with pytest.raises(KeyboardInterrupt):
        train(GPT(TINY, seed=2), ids[0], ids[1], tc, tokenizer=Tokenizer(), run_dir=tmp_path, verbose=False)
    monkeypatch.undo()
    ck = load_checkpoint(tmp_path)
    assert ck.step == 5
    resumed = train(ck.model, ids[0], ids[1], tc, tokenizer=ck.tokenizer, run_dir=tmp_path, resume=ck, verbose=False)
    assert resumed.history["loss"] == straight.history["loss"]


@pytest.mark.slow
def test_shakespeare_benchmark_runs_end_to_end_on_a_small_text(tmp_path, capsys):
    from tinylm.bench import train as bench_train

    text = tmp_path / "tiny.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    args = ["--data", str(text), "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "1",
            "--rounds", "1", "--timing-steps", "1"]
    if importlib.util.find_spec("torch") is not None:
        args.append("--torch-loss")
    assert bench_train.main(args) == 0
    out = capsys.readouterr().out
    assert "ms/step (median of 1 rounds of 1): tinylm" in out
    losses = [float(v) for v in re.findall(r"([0-9.]+) on the whole validation split", out)]
    assert losses and all(0 < v < math.log(256) + 0.5 for v in losses)  # at most a little above chance


def test_shakespeare_benchmark_names_a_missing_corpus(tmp_path):
    from tinylm.bench import train as bench_train

    with pytest.raises(FileNotFoundError, match="Shakespeare corpus not found"):
        bench_train.main(["--data", str(tmp_path / "nope.txt"), "--max-iters", "0"])
