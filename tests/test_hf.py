"""Hugging Face GPT-2 files: the transformers-made fixture, round trips, refusals, and the commands.

tests/fixtures/tiny-gpt2/ was made by tests/fixtures/make_tiny_gpt2.py with torch + transformers (no
tinylm code): its logits, greedy tokens and tokenizer ids are transformers' own numbers.
"""
import json
import os
import shutil

import numpy as np
import pytest

from tinylm.cli import main
from tinylm.io.hf_gpt2 import gpt_config_from_hf, load_hf_gpt2, load_hf_tokenizer, save_hf_gpt2
from tinylm.io.safetensors import read_safetensors, write_safetensors
from tinylm.model import GPT, GPTConfig
from tinylm.tokenizer import Tokenizer

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "tiny-gpt2")
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@pytest.fixture(scope="module")
def reference():
    with np.load(os.path.join(FIXTURE, "reference.npz")) as z:
        arrays = {k: z[k] for k in z.files}
    with open(os.path.join(FIXTURE, "reference.json"), encoding="utf-8") as f:
        arrays["encode"] = json.load(f)["encode"]
    return arrays


@pytest.fixture
def hf_copy(tmp_path):
    """A writable copy of the fixture folder, for tests that break one of its files."""
    return shutil.copytree(FIXTURE, tmp_path / "tiny-gpt2")


def perturbed_gpt(config, seed=0):
    """A tinylm GPT whose every parameter is perturbed: zero biases and unit norms would hide mistakes."""
    model = GPT(config, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for p in model.parameters():
        p.data += rng.normal(0.0, 0.1, size=p.data.shape).astype(p.data.dtype)
    return model.eval()


def logits_of(model, idx):
    logits, _ = model(idx)
    return logits.data


# ---------------------------------------------------------------------------- the fixture vs transformers

def test_fixture_logits_match_transformers(reference):
    model = load_hf_gpt2(FIXTURE)
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd, model.config.block_size,
            model.config.vocab_size) == (2, 4, 32, 32, 457)
    logits = logits_of(model, reference["idx"])  # (2, 32, 457)
    assert logits.dtype == np.float32
    # float32 through 2 layers: different summation orders differ by ~1e-6; 1e-4 leaves room, yet a
    # wrong epsilon or the exact-erf GELU is off by > 3e-4 and a missing transpose by far more (below)
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-4, rtol=0)


def test_the_tolerance_catches_near_misses(reference, monkeypatch):
    """1e-4 is tight enough: each plausible mistake moves the fixture's logits by more than that."""
    import math

    import tinylm.model.gpt as gpt

    def max_error(model):
        return np.abs(logits_of(model, reference["idx"]) - reference["logits"]).max()

    model = load_hf_gpt2(FIXTURE)
    assert max_error(model) < 1e-5
    for norm in [m for block in model.transformer.h for m in (block.ln_1, block.ln_2)] + [model.transformer.ln_f]:
        norm.eps = 1e-6  # another layer-norm epsilon
    assert max_error(model) > 3e-4

    model = load_hf_gpt2(FIXTURE)
    erf = np.vectorize(math.erf)
    monkeypatch.setattr(gpt, "gelu", lambda x: gpt.Tensor(
        (0.5 * x.data * (1 + erf(x.data / math.sqrt(2)))).astype(np.float32)))  # the exact GELU
    assert max_error(model) > 3e-4
    monkeypatch.undo()

    w = model.transformer.h[1].attn.c_proj.weight.data  # square: a forgotten transpose still fits
    w[...] = w.T.copy()
    assert max_error(model) > 0.1


def test_tinylm_load_opens_a_hugging_face_folder_as_load_hf_gpt2_does(reference):
    import tinylm

    model, tokenizer = tinylm.load(FIXTURE)
    np.testing.assert_array_equal(logits_of(model, reference["idx"]),
                                  logits_of(load_hf_gpt2(FIXTURE), reference["idx"]))
    assert tokenizer.encode("我喜欢学习AI") == load_hf_tokenizer(FIXTURE).encode("我喜欢学习AI")


def test_fixture_tokenizer_ids_match_transformers(reference):
    tokenizer = load_hf_tokenizer(FIXTURE)
    assert tokenizer.special_tokens == {"<|endoftext|>": 456}
    texts = [e["text"] for e in reference["encode"]]
    assert "我喜欢学习AI" in texts and any("🙂" in t for t in texts)
    for entry in reference["encode"]:
        assert tokenizer.encode(entry["text"]) == entry["ids"], entry["text"]
        assert tokenizer.decode(entry["ids"]) == entry["text"]


def test_greedy_generation_matches_transformers(reference):
    from tinylm.generate import generate

    model = load_hf_gpt2(FIXTURE)
    prompt = reference["greedy_prompt"][None, :]  # (1, T)
    for use_cache in (True, False):
        out = generate(model, prompt, max_new_tokens=12, temperature=0, use_cache=use_cache)
        np.testing.assert_array_equal(np.asarray(out)[0, prompt.shape[1]:], reference["greedy_ids"])


# ---------------------------------------------------------------------------- round trips

def test_tinylm_model_round_trips_through_hf_files_exactly(tmp_path):
    model = perturbed_gpt(GPTConfig(vocab_size=300, block_size=16, n_layer=3, n_head=2, n_embd=24), seed=5)
    save_hf_gpt2(model, tmp_path / "hf")
    back = load_hf_gpt2(tmp_path / "hf")
    assert back.config == model.config
    idx = np.random.default_rng(0).integers(0, 300, size=(3, 16))
    np.testing.assert_array_equal(logits_of(back, idx), logits_of(model, idx))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], value, err_msg=name)


def test_saved_files_have_gpt2s_layout_and_names(tmp_path):
    """Checked against the file, not through load_hf_gpt2: Conv1D weights are (in, out), no lm_head."""
    config = GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=24, dropout=0.1)
    model = perturbed_gpt(config)
    save_hf_gpt2(model, tmp_path / "hf")
    tensors, meta = read_safetensors(tmp_path / "hf" / "model.safetensors", metadata=True)
    assert meta == {"format": "pt"}  # transformers refuses a file without it
    params = dict(model.named_parameters())
    assert set(tensors) == set(params) and "lm_head.weight" not in tensors
    for name, p in params.items():
        expected = p.data.T if name.endswith(CONV1D) else p.data
        np.testing.assert_array_equal(tensors[name], expected, err_msg=name)
    assert tensors["transformer.h.1.mlp.c_fc.weight"].shape == (24, 96)  # (in, out)
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["architectures"] == ["GPT2LMHeadModel"] and hf_config["model_type"] == "gpt2"
    assert {k: hf_config[k] for k in ("vocab_size", "n_positions", "n_ctx", "n_embd", "n_layer", "n_head")} == \
        {"vocab_size": 300, "n_positions": 16, "n_ctx": 16, "n_embd": 24, "n_layer": 2, "n_head": 2}
    assert hf_config["activation_function"] == "gelu_new" and hf_config["layer_norm_epsilon"] == 1e-5
    assert hf_config["resid_pdrop"] == 0.1 and hf_config["tie_word_embeddings"] is True
    assert not (tmp_path / "hf" / "vocab.json").exists()  # no tokenizer given, none written


def test_re_exporting_the_fixture_gives_transformers_own_tensors(tmp_path):
    """The fixture's model.safetensors was written by transformers: tinylm writes the same tensors."""
    save_hf_gpt2(load_hf_gpt2(FIXTURE), tmp_path / "again", load_hf_tokenizer(FIXTURE))
    theirs = read_safetensors(os.path.join(FIXTURE, "model.safetensors"))
    ours = read_safetensors(tmp_path / "again" / "model.safetensors")
    assert set(ours) == set(theirs)
    for name in theirs:
        assert ours[name].dtype == theirs[name].dtype
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "activation_function",
                "layer_norm_epsilon", "model_type", "architectures", "bos_token_id", "eos_token_id"):
        theirs_config = json.loads(open(os.path.join(FIXTURE, "config.json")).read())
        assert json.loads((tmp_path / "again" / "config.json").read_text())[key] == theirs_config[key], key


def test_tokenizer_files_round_trip(tmp_path, reference):
    fixture_tok = load_hf_tokenizer(FIXTURE)
    save_hf_gpt2(load_hf_gpt2(FIXTURE), tmp_path / "hf", fixture_tok)
    with open(os.path.join(FIXTURE, "vocab.json"), encoding="utf-8") as f:
        assert json.loads((tmp_path / "hf" / "vocab.json").read_text(encoding="utf-8")) == json.load(f)
    with open(os.path.join(FIXTURE, "merges.txt"), encoding="utf-8") as f:
        assert (tmp_path / "hf" / "merges.txt").read_text(encoding="utf-8").splitlines() == f.read().splitlines()
    back = load_hf_tokenizer(tmp_path / "hf")
    for entry in reference["encode"]:
        assert back.encode(entry["text"]) == entry["ids"]


def test_a_trained_tinylm_tokenizer_round_trips(tmp_path):
    text = "the cat sat on the mat; 猫坐在垫子上 🙂 the cat, the mat. " * 20
    tokenizer = Tokenizer().train(text, 280, pattern="gpt2", special_tokens=["<|endoftext|>"])
    model = perturbed_gpt(GPTConfig(vocab_size=280, block_size=8, n_layer=1, n_head=1, n_embd=8))
    save_hf_gpt2(model, tmp_path / "hf", tokenizer)
    back = load_hf_tokenizer(tmp_path / "hf")
    assert back.vocab_size == tokenizer.vocab_size and back.special_tokens == {"<|endoftext|>": 279}
    for s in ["the cat sat", "猫坐在垫子上 🙂", "unseen words, 新的字 😀<|endoftext|>"]:
        assert back.encode(s, allowed_special="all") == tokenizer.encode(s, allowed_special="all")
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["eos_token_id"] == hf_config["bos_token_id"] == 279
    tokenizer_config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "<|endoftext|>" and tokenizer_config["model_max_length"] == 8


def test_a_model_without_biases_is_written_with_zero_biases(tmp_path):
    model = perturbed_gpt(GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=8, bias=False))
    save_hf_gpt2(model, tmp_path / "hf")
    tensors = read_safetensors(tmp_path / "hf" / "model.safetensors")
    assert np.all(tensors["transformer.h.0.attn.c_attn.bias"] == 0) and tensors["transformer.ln_f.bias"].shape == (8,)
    back = load_hf_gpt2(tmp_path / "hf")
    assert back.config.bias is True
    idx = np.arange(16).reshape(2, 8)
    np.testing.assert_allclose(logits_of(back, idx), logits_of(model, idx), atol=1e-6)


# ---------------------------------------------------------------------------- variants GPT-2 files come in

def test_names_without_prefix_with_mask_buffers_and_lm_head_load_the_same(hf_copy, reference):
    """GPT2Model files have no "transformer." prefix; older files store causal masks as attn.bias."""
    tensors = read_safetensors(hf_copy / "model.safetensors")
    renamed = {k.replace("transformer.", "", 1): v for k, v in tensors.items()}
    renamed["h.0.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), np.float32))
    renamed["h.1.attn.masked_bias"] = np.array(-1e4, np.float32)
    renamed["lm_head.weight"] = tensors["transformer.wte.weight"]
    write_safetensors(hf_copy / "model.safetensors", renamed)
    np.testing.assert_array_equal(logits_of(load_hf_gpt2(hf_copy), reference["idx"]),
                                  logits_of(load_hf_gpt2(FIXTURE), reference["idx"]))


def test_half_precision_weights_are_widened_to_float32(hf_copy, reference):
    tensors = read_safetensors(hf_copy / "model.safetensors")
    write_safetensors(hf_copy / "model.safetensors", tensors, dtypes={k: "BF16" for k in tensors})
    model = load_hf_gpt2(hf_copy)
    assert model.transformer.wte.weight.data.dtype == np.float32
    # bfloat16 weights (8 significant bits) move the logits by ~1e-2, not more
    np.testing.assert_allclose(logits_of(model, reference["idx"]), reference["logits"], atol=0.1)


# ---------------------------------------------------------------------------- refusals

def edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            config.pop(k, None)
        else:
            config[k] = v
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("changes, problem", [
    ({"activation_function": "relu"}, "activation_function is 'relu'"),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon is 1e-06"),
    ({"model_type": "llama"}, "model_type is 'llama'"),
    ({"n_inner": 100}, "n_inner is 100"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings"),
    ({"n_embd": None}, "missing n_embd"),
    ({"n_positions": None, "n_ctx": None}, "missing n_positions or n_ctx"),
    ({"n_head": 5}, "n_embd \\(32\\) must be a multiple of n_head \\(5\\)"),
    ({"n_embd": 64, "n_head": 4},
     r"transformer.wte.weight has shape \(457, 32\); config.json's sizes give \(457, 64\)"),
    ({"n_layer": 3}, "missing transformer.h.2"),
    ({"n_layer": 1}, "unexpected transformer.h.1"),
])
def test_configs_tinylm_would_compute_differently_are_refused(hf_copy, changes, problem):
    edit_config(hf_copy, **changes)
    with pytest.raises(ValueError, match=problem):
        load_hf_gpt2(hf_copy)


def test_n_positions_wins_over_the_older_n_ctx():
    sizes = {"vocab_size": 10, "n_embd": 8, "n_layer": 1, "n_head": 2}
    assert gpt_config_from_hf({**sizes, "n_ctx": 64}).block_size == 64
    assert gpt_config_from_hf({**sizes, "n_ctx": 64, "n_positions": 128}).block_size == 128


def test_broken_weight_files_are_refused(hf_copy):
    tensors = read_safetensors(hf_copy / "model.safetensors")
    for change, problem in [
        ({"lm_head.weight": tensors["transformer.wte.weight"] + 1}, "lm_head.weight differs from wte.weight"),
        ({"transformer.h.0.ln_1.weight": np.ones(32, np.int32)}, "dtype I32; expected floating-point"),
        ({"transformer.h.0.attn.c_attn.weight": np.zeros((96, 32), np.float32)},  # (out, in): not GPT-2's
         r"c_attn.weight has shape \(96, 32\); config.json's sizes give \(32, 96\)"),
        ({"transformer.h.0.extra.weight": np.zeros(3, np.float32)}, "unexpected transformer.h.0.extra.weight"),
    ]:
        write_safetensors(hf_copy / "model.safetensors", {**tensors, **change})
        with pytest.raises(ValueError, match=problem) as info:
            load_hf_gpt2(hf_copy)
        assert "model.safetensors" in str(info.value)


def test_missing_files_are_named(hf_copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="Hugging Face folder not found"):
        load_hf_gpt2(tmp_path / "nowhere")
    os.remove(hf_copy / "model.safetensors")
    (hf_copy / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin, a pickle file tinylm does not read"):
        load_hf_gpt2(hf_copy)
    os.remove(hf_copy / "merges.txt")
    with pytest.raises(FileNotFoundError, match="no merges.txt in"):
        load_hf_tokenizer(hf_copy)
    os.remove(hf_copy / "config.json")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_gpt2(hf_copy)


def test_save_hf_gpt2_refuses_bad_arguments(tmp_path):
    model = perturbed_gpt(GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(TypeError, match="must be a tinylm GPT"):
        save_hf_gpt2("model", tmp_path / "a")
    big = Tokenizer().train("abcabcabd " * 10, 260)
    with pytest.raises(ValueError, match="260 tokens but the model only 256"):
        save_hf_gpt2(model, tmp_path / "b", big)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        save_hf_gpt2(model, tmp_path / "file")


# ---------------------------------------------------------------------------- the commands

def test_generate_hf_command_prints_transformers_greedy_text(reference, capsys):
    tokenizer = load_hf_tokenizer(FIXTURE)
    status = main(["generate", "--hf", FIXTURE, "--prompt", "我喜欢学习AI", "--temperature", "0",
                   "--max-new-tokens", "12"])
    assert status == 0
    expected = tokenizer.decode(list(reference["greedy_prompt"]) + list(reference["greedy_ids"]))
    assert capsys.readouterr().out == expected + "\n"


def test_export_command_writes_a_folder_generate_reads_back(tmp_path, capsys):
    from tinylm.io.runs import save_checkpoint

    tokenizer = Tokenizer(pattern="gpt2").train("to be or not to be, that is the question " * 20, 280,
                                                pattern="gpt2")
    model = perturbed_gpt(GPTConfig(vocab_size=280, block_size=32, n_layer=2, n_head=2, n_embd=16), seed=7)
    save_checkpoint(tmp_path / "run", model, tokenizer)
    assert main(["export", "--format", "hf", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    out = capsys.readouterr()
    assert "wrote" in out.out and "note:" not in out.err  # a gpt2-pattern tokenizer needs no warning
    assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "merges.txt", "model.safetensors",
                                                   "tokenizer_config.json", "vocab.json"]
    tokenizer_config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] is None and tokenizer_config["model_max_length"] == 32  # no <|endoftext|>

    # a second export into the same folder would replace it: refused (one line, exit 2) unless --force
    before = (tmp_path / "hf" / "model.safetensors").read_bytes()
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 2
    assert "already holds config.json, model.safetensors" in capsys.readouterr().err
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == before
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "hf"), "--force"]) == 0
    capsys.readouterr()

    args = ["--prompt", "to be", "--temperature", "0", "--max-new-tokens", "10"]
    assert main(["generate", "--run", str(tmp_path / "run"), *args]) == 0
    from_run = capsys.readouterr().out
    assert main(["generate", "--hf", str(tmp_path / "hf"), *args]) == 0
    assert capsys.readouterr().out == from_run and from_run.startswith("to be")


def test_export_command_errors_are_one_line(tmp_path, capsys):
    assert main(["export", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm export: error:") and err.count("\n") == 1
    (tmp_path / "file").write_text("x")
    assert main(["export", "--run", str(tmp_path), "--out", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_export_notes_when_the_tokenizer_splits_text_unlike_gpt2(tmp_path, capsys):
    from tinylm.io.runs import save_checkpoint

    tokenizer = Tokenizer().train("hello there, hello world " * 10, 270)  # default pattern: gpt4
    save_checkpoint(tmp_path / "run", perturbed_gpt(GPTConfig(vocab_size=270, block_size=8, n_layer=1,
                                                              n_head=1, n_embd=8)), tokenizer)
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    assert "note: this tokenizer pre-splits text with another pattern than GPT-2's" in capsys.readouterr().err
    assert load_hf_tokenizer(tmp_path / "hf").decode(tokenizer.encode("hello world")) == "hello world"


def test_docstring_examples_run():
    import doctest

    import tinylm.io.hf_gpt2
    import tinylm.io.safetensors

    assert doctest.testmod(tinylm.io.hf_gpt2).failed == 0
    assert doctest.testmod(tinylm.io.safetensors).failed == 0
