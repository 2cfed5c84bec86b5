"""The commands `tinylm demo`, `tinylm train` and `tinylm eval`, end to end, and their user errors."""
import json
import os

import pytest

from tinylm import cli

TINY = ["--vocab-size", "256", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--warmup-iters", "2", "--eval-iters", "2", "--quiet"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("Friends, Romans, countrymen, lend me your ears;\r\n" * 60, encoding="utf-8")
    return str(path)


def _fails(argv, capsys, match):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.slow
def test_train_then_resume_then_eval(tmp_path, corpus, capsys):
    run = str(tmp_path / "run")
    assert cli.main(["train", "--data", corpus, "--out", run, "--max-iters", "6", "--eval-interval", "3"] + TINY) == 0
    assert "val loss" in capsys.readouterr().out
    for name in ("config.json", "model.npz", "tokenizer.json", "optimizer.npz", "state.json", "tokens.npz",
                 "loss.json", "loss.csv"):
        assert os.path.isfile(os.path.join(run, name)), name
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["train"]["data"] == corpus and config["model"]["n_embd"] == 16

    assert cli.main(["train", "--out", run, "--resume", "--max-iters", "9", "--quiet"]) == 0
    assert "step 9:" in capsys.readouterr().out
    assert json.load(open(os.path.join(run, "state.json")))["step"] == 9

    assert cli.main(["eval", "--run", run]) == 0
    out = capsys.readouterr().out
    assert out.startswith("loss ") and "perplexity" in out
    assert cli.main(["eval", "--run", run, "--data", corpus, "--split", "all", "--iters", "2",
                     "--batch-size", "4"]) == 0
    assert "128 tokens scored" in capsys.readouterr().out  # 2 batches x 4 windows x 16 tokens


def test_eval_with_a_precision_plan(tmp_path, corpus, capsys):
    from tinylm import quant
    from tinylm.io.runs import load_model
    run = str(tmp_path / "run")
    assert cli.main(["train", "--data", corpus, "--out", run, "--max-iters", "2"] + TINY) == 0
    quant.save_plan(str(tmp_path / "int8.json"), quant.uniform_plan(load_model(run)[0], "int8:channel"))
    capsys.readouterr()
    assert cli.main(["eval", "--run", run]) == 0
    fp32 = float(capsys.readouterr().out.split()[1])
    assert cli.main(["eval", "--run", run, "--plan", str(tmp_path / "int8.json")]) == 0
    out = capsys.readouterr().out
    assert "int8.json" in out and abs(float(out.split()[1]) - fp32) < 0.05  # int8 weights: a small change
    _fails(["eval", "--run", run, "--plan", str(tmp_path / "missing.json")], capsys, "missing.json")


def test_a_run_folder_is_never_overwritten_by_accident(tmp_path, corpus, capsys):
    run = str(tmp_path / "run")
    args = ["train", "--data", corpus, "--out", run, "--max-iters", "2", "--eval-interval", "2"] + TINY
    assert cli.main(args) == 0
    before = open(os.path.join(run, "model.npz"), "rb").read()
    _fails(args, capsys, "already holds a run; pass --resume to continue it or --force")
    assert open(os.path.join(run, "model.npz"), "rb").read() == before
    assert cli.main(args + ["--force", "--seed", "3"]) == 0
    assert open(os.path.join(run, "model.npz"), "rb").read() != before


def test_train_errors_are_one_clear_line(tmp_path, corpus, capsys):
    out = str(tmp_path / "run")
    _fails(["train", "--data", str(tmp_path / "missing.txt"), "--out", out], capsys, "corpus not found")
    (tmp_path / "empty.txt").write_text("\n\n")
    _fails(["train", "--data", str(tmp_path / "empty.txt"), "--out", out], capsys, "is empty")
    _fails(["train", "--out", out], capsys, "--data is required")
    _fails(["train", "--data", corpus, "--out", out, "--n-embd", "100", "--n-head", "3"], capsys, "multiple of n_head")
    _fails(["train", "--data", corpus, "--out", out, "--max-iters", "0"], capsys, "max_iters")
    _fails(["train", "--data", corpus, "--out", out, "--lr", "-1"], capsys, "lr")
    _fails(["train", "--data", corpus, "--out", out, "--vocab-size", "100"], capsys, "--vocab-size is 100")
    _fails(["train", "--data", corpus, "--out", out, "--vocab-size", "256", "--block-size", "512", "--n-layer", "1",
            "--n-head", "2", "--n-embd", "16"], capsys, "block_size=512 needs at least 513")
    _fails(["train", "--out", out, "--resume"], capsys, "run folder not found")
    os.makedirs(out, exist_ok=True)
    _fails(["train", "--out", out, "--resume"], capsys, "no checkpoint")
    _fails(["train", "--out", out, "--resume", "--n-layer", "2"], capsys, "--n-layer cannot be used with --resume")
    _fails(["train", "--data", corpus, "--out", out, "--n-expert", "2", "--expert-top-k", "3"], capsys,
           "expert_top_k (3) must be at most n_expert (2)")


@pytest.mark.slow
def test_train_a_mixture_of_experts_then_generate_and_eval(tmp_path, corpus, capsys):
    run = str(tmp_path / "moe")
    assert cli.main(["train", "--data", corpus, "--out", run, "--max-iters", "4", "--eval-interval", "2",
                     "--n-expert", "4", "--expert-top-k", "2"] + TINY) == 0
    capsys.readouterr()
    model = json.load(open(os.path.join(run, "config.json")))["model"]
    assert (model["n_expert"], model["expert_top_k"], model["moe_aux_coef"]) == (4, 2, 0.01)
    assert cli.main(["generate", "--run", run, "--prompt", "Friends", "--max-new-tokens", "5",
                     "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("Friends")
    assert cli.main(["eval", "--run", run]) == 0
    assert "perplexity" in capsys.readouterr().out


def test_eval_errors_name_the_problem(tmp_path, corpus, capsys):
    run = str(tmp_path / "run")
    _fails(["eval", "--run", run], capsys, "run folder not found")
    assert cli.main(["train", "--data", corpus, "--out", run, "--max-iters", "2"] + TINY) == 0
    capsys.readouterr()
    _fails(["eval", "--run", run, "--split", "all"], capsys, "--split all needs --data")
    _fails(["eval", "--run", run, "--batch-size", "0"], capsys, "--batch-size")
    config = json.load(open(os.path.join(run, "config.json")))
    config["model"]["n_embd"] = 32
    os.remove(os.path.join(run, "state.json"))  # no hash list: the edited config is read as it is
    json.dump(config, open(os.path.join(run, "config.json"), "w"))
    _fails(["eval", "--run", run], capsys, "does not match the model its config.json describes")


@pytest.mark.slow
def test_demo_trains_prints_loss_and_samples_and_keeps_the_run(tmp_path, capsys):
    run = str(tmp_path / "demo")
    assert cli.main(["demo", "--out", run, "--max-iters", "3", "--samples", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "validation loss" in out and "perplexity" in out and "sample 1" in out
    assert os.path.isfile(os.path.join(run, "model.npz")) and os.path.isfile(os.path.join(run, "tokenizer.json"))
    assert json.load(open(os.path.join(run, "tokenizer.json")))  # a real, trained BPE tokenizer file
    _fails(["demo", "--out", run, "--max-iters", "3"], capsys, "already holds a run")
    _fails(["demo", "--out", run, "--max-iters", "0"], capsys, "--max-iters must be >= 1")


def test_a_short_run_warms_up_for_a_tenth_of_its_steps(tmp_path, corpus):
    run = str(tmp_path / "run")
    at = TINY.index("--warmup-iters")
    tiny = TINY[:at] + TINY[at + 2:]  # no --warmup-iters: the default adapts to --max-iters
    assert cli.main(["train", "--data", corpus, "--out", run, "--max-iters", "20"] + tiny) == 0
    assert json.load(open(os.path.join(run, "config.json")))["train"]["warmup_iters"] == 2
