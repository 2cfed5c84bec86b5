"""Run folders: save/load round trips, crash safety, and clear errors for anything wrong on disk."""
import json
import os

import numpy as np
import pytest

from tinylm.io import runs as checkpoint
from tinylm.io.runs import load_checkpoint, load_model, load_tokens, save_checkpoint, save_tokens
from tinylm.model import GPT, GPTConfig
from tinylm.optim import AdamW
from tinylm.tokenizer import Tokenizer

CONFIG = GPTConfig(vocab_size=260, block_size=8, n_layer=1, n_head=2, n_embd=8)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer().train("the cat sat on the mat " * 20, vocab_size=260)


def _weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def _same_weights(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_save_then_load_model_gives_the_same_model_and_tokenizer(tmp_path, tokenizer):
    model = GPT(CONFIG, seed=3)
    save_checkpoint(tmp_path / "run", model, tokenizer)
    loaded, tok = load_model(tmp_path / "run")
    assert loaded.config == CONFIG
    assert _same_weights(_weights(loaded), _weights(model))
    assert not loaded.training  # ready for generation
    assert tok.encode("the cat") == tokenizer.encode("the cat") and tok.vocab_size == 260
    x = np.array([[1, 2, 3]])
    assert np.array_equal(loaded(x)[0].data, model.eval()(x)[0].data)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["format"] == "tinylm-run" and config["version"] == 1 and config["model"]["n_embd"] == 8


def test_load_checkpoint_returns_optimizer_state_step_and_history(tmp_path, tokenizer):
    model = GPT(CONFIG, seed=0)
    opt = AdamW(model.optim_groups(0.1), lr=1e-3)
    _, loss = model(np.array([[1, 2, 3]]), np.array([[2, 3, 4]]))
    loss.backward()
    opt.step()
    history = {"step": [1], "loss": [5.5], "lr": [1e-3], "eval": [{"step": 1, "train_loss": 5.4, "val_loss": 5.6}]}
    save_checkpoint(tmp_path, model, tokenizer, opt, {"step": 1, "config": {"lr": 1e-3}, "history": history,
                                                      "best_val_loss": 5.6})
    ck = load_checkpoint(tmp_path)
    assert ck.step == 1 and ck.train_config == {"lr": 1e-3} and ck.history == history
    assert ck.state["best_val_loss"] == 5.6 and ck.model.training
    for key, value in opt.state_dict().items():
        assert np.array_equal(ck.optimizer_state[key], value), key
    assert (tmp_path / "loss.csv").read_text().splitlines() == ["step,lr,loss,train_loss,val_loss",
                                                                 "1,0.001,5.5,5.4,5.6"]


def test_tokens_are_stored_compactly_beside_the_run(tmp_path):
    save_tokens(tmp_path, np.arange(90, dtype=np.uint16), np.arange(10, dtype=np.uint16))
    train, val = load_tokens(tmp_path)
    assert train.dtype == np.uint16 and train.tolist() == list(range(90)) and len(val) == 10


def test_a_crash_before_the_commit_keeps_the_last_good_checkpoint(tmp_path, tokenizer, monkeypatch):
    old = GPT(CONFIG, seed=1)
    save_checkpoint(tmp_path, old, tokenizer, train_state={"step": 1})
    real_save_json = checkpoint.save_json

    def crash_on_state(path, obj):
        if str(path).endswith("state.json"):
            raise OSError("disk full")
        real_save_json(path, obj)

    monkeypatch.setattr(checkpoint, "save_json", crash_on_state)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, GPT(CONFIG, seed=2), tokenizer, train_state={"step": 2})
    monkeypatch.undo()
    assert os.path.exists(tmp_path / "model.npz.next")  # the new files were written...
    loaded, _ = load_model(tmp_path)  # ...but not committed: the old checkpoint is what loads
    assert _same_weights(_weights(loaded), _weights(old))
    assert load_checkpoint(tmp_path).step == 1


def test_a_crash_after_the_commit_loads_the_new_checkpoint(tmp_path, tokenizer, monkeypatch):
    save_checkpoint(tmp_path, GPT(CONFIG, seed=1), tokenizer, train_state={"step": 1})
    new = GPT(CONFIG, seed=2)
    calls = []

    def crash_after_one(run_dir, name):
        if calls:
            raise OSError("power cut")
        calls.append(name)
        os.replace(os.path.join(run_dir, name + ".next"), os.path.join(run_dir, name))

    monkeypatch.setattr(checkpoint, "_promote", crash_after_one)
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint(tmp_path, new, tokenizer, train_state={"step": 2})
    monkeypatch.undo()
    assert os.path.exists(tmp_path / "model.npz.next")  # renames half done
    loaded, _ = load_model(tmp_path)
    assert _same_weights(_weights(loaded), _weights(new))
    assert load_checkpoint(tmp_path).step == 2


def test_errors_for_missing_corrupt_or_mismatched_files(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "empty")

    run = tmp_path / "run"
    save_checkpoint(run, GPT(CONFIG), tokenizer)
    (run / "model.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="model.npz does not match its SHA-256"):
        load_model(run)
    os.remove(run / "model.npz")
    with pytest.raises(FileNotFoundError, match="model.npz"):
        load_model(run)


def test_weights_that_do_not_match_the_config_are_named(tmp_path, tokenizer):
    run = tmp_path / "run"
    save_checkpoint(run, GPT(CONFIG), tokenizer)
    os.remove(run / "state.json")  # a folder without the hash list: files are taken as they are
    config = json.loads((run / "config.json").read_text())
    config["model"]["n_embd"] = 16
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"does not match the model .* transformer.wte.weight is \(260, 8\)"):
        load_model(run)
    config["model"]["n_embd"] = 8
    config["model"]["n_layer"] = 2
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing transformer.h.1"):
        load_model(run)
    (run / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a tinylm run configuration"):
        load_model(run)
    (run / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="not a valid run configuration"):
        load_model(run)
