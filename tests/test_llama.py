"""The Llama options of GPTConfig: RMSNorm, RoPE, SwiGLU, grouped-query attention, an untied head.

Each operation is checked against finite differences (float64) and a composed form; each option alone
and the full Llama preset, with and without a mixture of experts, must train, resume exactly, keep the
KV cache exact, generate, quantize and save/load; formats that cannot carry an option refuse it."""
import json

import numpy as np
import pytest
from test_autograd import gradcheck, rand
from test_autograd_fused import composed_attention, same_values_and_grads

from tinylm.autograd import Tensor, no_grad, rms_norm, rope, scaled_dot_product_attention, swiglu
from tinylm.data import train_val_split
from tinylm.generate import generate
from tinylm.io.runs import load_checkpoint, load_model, save_checkpoint
from tinylm.model import GPT, GPTConfig
from tinylm.quant.plan import apply_plan, quantizable_layers, uniform_plan
from tinylm.tokenizer import Tokenizer
from tinylm.train import TrainConfig, train

TINY = dict(vocab_size=61, block_size=16, n_layer=2, n_head=4, n_embd=32)

# every option alone, then all of them (the Llama preset with grouped-query attention)
OPTIONS = {
    "rmsnorm": dict(norm="rmsnorm"),
    "rope": dict(pos="rope"),
    "swiglu": dict(mlp="swiglu"),
    "gqa": dict(n_kv_head=2),
    "mqa": dict(n_kv_head=1),
    "no-bias": dict(bias=False),
    "untied": dict(tie_head=False),
    "llama": dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, tie_head=False, n_kv_head=2),
}
MOE = dict(n_expert=3, expert_top_k=2)
COMBINATIONS = [pytest.param(opts, id=name) for name, opts in OPTIONS.items()] + \
               [pytest.param({**opts, **MOE}, id=name + "+moe") for name, opts in OPTIONS.items()]


def ids(shape, vocab_size=61, seed=0):
    return np.random.default_rng(seed).integers(0, vocab_size, size=shape)


# ----------------------------------------------------------------------------------------------
# the operations: gradients and composed forms


def composed_rms_norm(x, w, eps=1e-5):
    return x / ((x * x).mean(axis=-1, keepdims=True) + eps).sqrt() * w


def test_rms_norm_gradients_and_composed_form():
    gradcheck(lambda x, w: rms_norm(x, w), rand(2, 3, 5), rand(5, seed=1))
    same_values_and_grads(rms_norm, composed_rms_norm, rand(4, 6), rand(6, seed=2))


def test_rms_norm_output_has_unit_root_mean_square():
    y = rms_norm(Tensor(rand(3, 8) * 10), Tensor(np.ones(8))).data
    np.testing.assert_allclose(np.sqrt((y * y).mean(axis=-1)), 1.0, rtol=1e-6)


def composed_rope(x, pos, theta=10000.0):
    """The rotation written as a (hs, hs) block-diagonal matrix per position: y[t] = R(t) x[t]."""
    T, hs = x.shape[-2], x.shape[-1]
    R = np.zeros((T, hs, hs))
    for t, p in enumerate(pos):
        for i in range(hs // 2):
            a = p * theta ** (-2 * i / hs)
            R[t, 2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return (Tensor(R) @ x.reshape(x.shape[:-1] + (hs, 1))).reshape(x.shape)


def test_rope_gradients_and_composed_form():
    pos = np.array([3, 4, 5, 6])
    gradcheck(lambda x: rope(x, pos, theta=100.0), rand(2, 3, 4, 6))
    same_values_and_grads(lambda x: rope(x, pos, theta=100.0), lambda x: composed_rope(x, pos, theta=100.0),
                          rand(2, 4, 6))


def test_rope_makes_attention_scores_depend_on_relative_position_only():
    q, k = rand(1, 1, 8), rand(1, 1, 8, seed=1)  # one query and one key vector (T=1)
    def score(m, n):
        return float((rope(Tensor(q), [m]).data * rope(Tensor(k), [n]).data).sum())
    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-12)  # both 3 apart
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)


def test_rope_rejects_odd_heads_and_wrong_positions():
    with pytest.raises(ValueError, match="odd"):
        rope(Tensor(rand(2, 3)), [0, 1])
    with pytest.raises(ValueError, match="3 positions for 2 tokens"):
        rope(Tensor(rand(2, 4)), [0, 1, 2])


def test_swiglu_gradients_and_composed_form():
    gradcheck(swiglu, rand(3, 7), rand(3, 7, seed=1))
    same_values_and_grads(swiglu, lambda a, b: a * (1.0 / (1.0 + (-a).exp())) * b, rand(3, 7), rand(3, 7, seed=1))


def test_swiglu_is_stable_for_huge_inputs():
    y = swiglu(Tensor(np.array([-1000.0, 1000.0])), Tensor(np.array([2.0, 2.0]))).data
    np.testing.assert_array_equal(y, [0.0, 2000.0])


@pytest.mark.parametrize("Tq, Tk", [(4, 4), (2, 5)])
def test_grouped_query_attention_gradients_equal_repeated_heads(Tq, Tk):
    """q (B, nkv, group, T, hs) against k, v (B, nkv, 1, T, hs): the same as copying each key/value head
    for every query head of its group, and its gradients sum over the group."""
    q, k, v = rand(2, 2, 3, Tq, 4), rand(2, 2, 1, Tk, 4, seed=1), rand(2, 2, 1, Tk, 4, seed=2)
    gradcheck(scaled_dot_product_attention, q, k, v)

    def repeated(q, k, v):
        ones = Tensor(np.ones((1, 1, 3, 1, 1)))
        return composed_attention(q, k * ones, v * ones)  # an explicit copy per query head

    same_values_and_grads(scaled_dot_product_attention, repeated, q, k, v)


# ----------------------------------------------------------------------------------------------
# the config


def test_defaults_are_gpt2_and_leave_config_json_unchanged():
    c = GPTConfig(**TINY)
    assert c.is_gpt2 and c.kv_heads == 4 and c.mlp_hidden_size == 128
    assert c.to_dict() == {**TINY, "dropout": 0.0, "bias": True}


def test_a_llama_config_round_trips_and_writes_every_option():
    c = GPTConfig.llama(**TINY, n_kv_head=2, rope_theta=500.0)
    d = c.to_dict()
    assert (d["norm"], d["pos"], d["mlp"], d["n_kv_head"], d["tie_head"], d["rope_theta"]) == \
        ("rmsnorm", "rope", "swiglu", 2, False, 500.0)
    assert "n_expert" not in d  # the MoE group is still left out as a whole
    assert GPTConfig.from_dict(json.loads(json.dumps(d))) == c


@pytest.mark.parametrize("n_embd, multiple_of, hidden", [(32, 32, 96), (128, 32, 352), (4096, 256, 11008),
                                                         (64, 4, 172)])
def test_swiglu_hidden_size_is_llamas_rule(n_embd, multiple_of, hidden):
    """Llama 2 7B: 4096 -> 11008; llama2.c's stories260K: 64 (multiple_of 4) -> 172."""
    c = GPTConfig(n_embd=n_embd, n_head=4, mlp="swiglu", multiple_of=multiple_of)
    assert c.mlp_hidden_size == hidden
    assert GPTConfig(n_embd=n_embd, n_head=4, mlp="swiglu", mlp_hidden=100).mlp_hidden_size == 100


@pytest.mark.parametrize("kwargs, message", [
    (dict(norm="batchnorm"), "norm must be 'layernorm' or 'rmsnorm', got 'batchnorm'"),
    (dict(pos=1), "pos must be 'learned' or 'rope', got 1"),
    (dict(mlp="relu"), "mlp must be 'gelu' or 'swiglu'"),
    (dict(rope_theta=0.5), "rope_theta must be a number > 1"),
    (dict(n_kv_head=3), "n_head \\(4\\) must be a multiple of n_kv_head \\(3\\)"),
    (dict(n_kv_head=-1), "n_kv_head must be an integer >= 0"),
    (dict(multiple_of=0), "multiple_of must be a positive integer"),
    (dict(tie_head="no"), "tie_head must be true or false"),
    (dict(pos="rope", n_embd=36, n_head=4), "head size n_embd / n_head \\(9\\) must be even"),
])
def test_config_rejects_bad_options_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**TINY, **kwargs})


# ----------------------------------------------------------------------------------------------
# the model


def test_a_llama_has_llamas_parameters():
    model = GPT(GPTConfig.llama(**TINY, n_kv_head=2), seed=0)
    names = dict(model.named_parameters())
    C, H, kv = 32, 96, 2 * 8
    assert "transformer.wpe.weight" not in names and "transformer.h.0.ln_1.bias" not in names
    assert names["transformer.h.0.attn.c_attn.weight"].shape == (C + 2 * kv, C)
    assert names["transformer.h.0.mlp.c_up.weight"].shape == (H, C)
    assert names["lm_head.weight"] is not names["transformer.wte.weight"]
    assert not any(name.endswith(".bias") for name in names)


@pytest.mark.parametrize("opts", COMBINATIONS)
def test_every_option_trains_and_its_kv_cache_matches_the_full_forward(opts):
    from tinylm.optim import AdamW

    model = GPT(GPTConfig(**{**TINY, **opts}), seed=1)
    x, y = ids((4, 16), seed=2), ids((4, 16), seed=3)
    opt = AdamW(model.optim_groups(0.0), lr=1e-2)
    losses = []
    for _ in range(8):
        _, loss = model(x, y)
        losses.append(loss.item())
        model.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        opt.step()
    assert losses[-1] < losses[0] - 0.3, losses

    model.eval()
    full, _ = model(x[:2])  # (2, 16, V)
    cache = model.new_kv_cache(2)
    pieces, start = [], 0
    with no_grad():
        for n in (5, 1, 1, 6, 3):
            logits, _ = model(x[:2, start:start + n], kv_cache=cache)
            pieces.append(logits.data)
            start += n
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full.data, rtol=0, atol=1e-5)


def test_a_rotary_model_has_no_position_table_but_still_knows_order():
    model = GPT(GPTConfig(**TINY, pos="rope"), seed=0).eval()
    a, _ = model(np.array([[1, 2, 3, 4]]))
    b, _ = model(np.array([[2, 1, 3, 4]]))  # same tokens, first two swapped
    assert not np.allclose(a.data[0, 3], b.data[0, 3], atol=1e-4)


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_kv_cache_memory_shrinks_by_n_head_over_n_kv_head(n_kv_head):
    model = GPT(GPTConfig(**{**TINY, "n_kv_head": n_kv_head}))
    cache = model.new_kv_cache(batch_size=3)
    # 2 (k, v) x n_layer x B x n_kv_head x block_size x head_size x 4 bytes
    assert cache.nbytes == 2 * 2 * 3 * n_kv_head * 16 * 8 * 4
    assert cache.nbytes * (4 // n_kv_head) == GPT(GPTConfig(**TINY)).new_kv_cache(3).nbytes


def test_the_default_model_is_gpt2_bit_for_bit():
    """The same seed draws the same GPT-2 weights as before the options existed: the weights of a
    default model are unchanged by the options that are off (a fixed fingerprint of seed 0)."""
    model = GPT(GPTConfig(**TINY), seed=0)
    names = [n for n, _ in model.named_parameters()]
    assert names[:3] == ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight"]
    assert len(names) == 2 + 12 * 2 + 2
    explicit = GPT(GPTConfig(**TINY, norm="layernorm", pos="learned", mlp="gelu", n_kv_head=4, tie_head=True))
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), explicit.named_parameters()):
        assert n1 == n2 and np.array_equal(p1.data, p2.data)


# ----------------------------------------------------------------------------------------------
# training, resume, generation, quantization, files


@pytest.fixture(scope="module")
def text_ids():
    text = "To be, or not to be, that is the question. " * 30
    return train_val_split(np.frombuffer(text.encode(), dtype=np.uint8).astype(np.uint16))


@pytest.mark.parametrize("opts", COMBINATIONS)
def test_every_option_resumes_exactly_and_generates_and_loads(tmp_path, text_ids, opts):
    config = GPTConfig(**{**TINY, "vocab_size": 256, "block_size": 8, **opts})
    tc = TrainConfig(batch_size=4, max_iters=6, warmup_iters=2, eval_interval=3, eval_iters=2, seed=7)
    tok = Tokenizer()
    straight = train(GPT(config, seed=1), *text_ids, tc, verbose=False)
    train(GPT(config, seed=1), *text_ids, tc, tokenizer=tok, run_dir=tmp_path, stop_at=2, verbose=False)
    ck = load_checkpoint(tmp_path)
    resumed = train(ck.model, *text_ids, tc, tokenizer=tok, run_dir=tmp_path, resume=ck, verbose=False)
    assert resumed.history["loss"] == straight.history["loss"]  # bit for bit

    model, _ = load_model(tmp_path)
    assert model.config == config
    saved = json.loads((tmp_path / "config.json").read_text())["model"]
    assert all(saved[k] == v for k, v in opts.items())
    prompt = np.array([[84, 111]])
    a = generate(model, prompt, 20, temperature=0)  # longer than block_size: the cache is refilled
    b = generate(model, prompt, 20, temperature=0, use_cache=False)
    assert a.shape == (1, 22) and np.array_equal(a[:, :8], b[:, :8])


@pytest.mark.parametrize("opts", COMBINATIONS)
def test_every_option_quantizes_every_linear(opts):
    model = GPT(GPTConfig(**{**TINY, **opts}), seed=0).eval()
    layers = quantizable_layers(model)
    if opts.get("mlp") == "swiglu":
        assert any(name.endswith("mlp.c_up") or ".c_up" in name for name in layers)
    if opts.get("tie_head") is False:
        assert "transformer.wte" in layers and "lm_head" in layers  # two matrices now
    small = apply_plan(model, uniform_plan(model, "int8:g32"))
    x = ids((2, 12), seed=4)
    ref, q = model(x)[0].data, small(x)[0].data
    assert np.abs(q - ref).max() < 0.05 * np.abs(ref).max() + 0.02
    with no_grad():  # and the cache still agrees with the full pass on the quantized model
        cache = small.new_kv_cache(2)
        first, _ = small(x[:, :7], kv_cache=cache)
        rest, _ = small(x[:, 7:], kv_cache=cache)
    np.testing.assert_allclose(np.concatenate([first.data, rest.data], axis=1), q, atol=1e-4)


def test_a_llama_round_trips_through_a_run_folder(tmp_path):
    model = GPT(GPTConfig.llama(**{**TINY, "vocab_size": 256}, n_kv_head=1), seed=5).eval()
    save_checkpoint(tmp_path / "run", model, Tokenizer())
    loaded, _ = load_model(tmp_path / "run")
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), loaded.named_parameters()):
        assert n1 == n2 and np.array_equal(p1.data, p2.data)


@pytest.mark.parametrize("opts", [OPTIONS[n] for n in ("rmsnorm", "rope", "swiglu", "gqa", "untied")])
def test_a_hugging_face_gpt2_folder_refuses_llama_options(tmp_path, opts):
    from tinylm.io.hf_gpt2 import save_hf_gpt2

    with pytest.raises(ValueError, match="GPT-2 folder cannot carry"):
        save_hf_gpt2(GPT(GPTConfig(**{**TINY, **opts})), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


# ----------------------------------------------------------------------------------------------
# the command line


def test_tinylm_train_arch_llama_then_resume_generate_and_quantize(tmp_path, capsys):
    from tinylm import cli

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Friends, Romans, countrymen, lend me your ears;\n" * 60, encoding="utf-8")
    run = str(tmp_path / "run")
    tiny = ["--vocab-size", "256", "--n-layer", "1", "--n-head", "4", "--n-embd", "32", "--block-size", "16",
            "--batch-size", "4", "--warmup-iters", "2", "--eval-iters", "2", "--quiet"]
    assert cli.main(["train", "--data", str(corpus), "--out", run, "--max-iters", "4", "--eval-interval", "2",
                     "--arch", "llama", "--n-kv-head", "2", "--rope-theta", "500"] + tiny) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert (saved["norm"], saved["pos"], saved["mlp"], saved["bias"], saved["tie_head"], saved["n_kv_head"],
            saved["rope_theta"]) == ("rmsnorm", "rope", "swiglu", False, False, 2, 500.0)
    assert cli.main(["train", "--out", run, "--resume", "--max-iters", "6", "--quiet"]) == 0
    assert cli.main(["train", "--out", run, "--resume", "--max-iters", "8", "--n-kv-head", "1"]) == 2
    assert "--n-kv-head cannot be used with --resume" in capsys.readouterr().err
    assert cli.main(["generate", "--run", run, "--prompt", "Friends", "--max-new-tokens", "5",
                     "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("Friends")
    assert cli.main(["quantize", "--run", run, "--plan", "int8", "--out", str(tmp_path / "q8")]) == 0
    assert cli.main(["quantize", "--run", run, "--max-ppl-increase", "5%", "--eval-batches", "2", "--gen-tokens", "4",
                     "--repeats", "1", "--batch-size", "2"]) == 0  # the planner, over the new layers too
    assert "c_up" in capsys.readouterr().out
    from tinylm.io import load
    model, _ = load(tmp_path / "q8")
    assert model.config.pos == "rope" and model.config.n_kv_head == 2
