"""The GPT model: config validation, GPT-2 names and init, shapes, loss, causality, training, KV cache."""
import math

import numpy as np
import pytest

from tinylm.autograd import Tensor, no_grad
from tinylm.model import GPT, GPTConfig, KVCache

TINY = dict(vocab_size=61, block_size=16, n_layer=2, n_head=2, n_embd=32)


def tiny(seed=0, **overrides):
    return GPT(GPTConfig(**{**TINY, **overrides}), seed=seed)


def ids(shape, vocab_size=61, seed=0):
    return np.random.default_rng(seed).integers(0, vocab_size, size=shape)


# ----------------------------------------------------------------------------------------------
# config


def test_config_round_trips_through_a_dict():
    cfg = GPTConfig(vocab_size=300, block_size=32, n_layer=3, n_head=4, n_embd=64, dropout=0.1, bias=False)
    d = cfg.to_dict()
    assert d == {"vocab_size": 300, "block_size": 32, "n_layer": 3, "n_head": 4, "n_embd": 64,
                 "dropout": 0.1, "bias": False}
    assert GPTConfig.from_dict(d) == cfg


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_embd=100, n_head=3), "multiple of n_head"),
    (dict(n_layer=0), "n_layer must be positive"),
    (dict(vocab_size=-5), "vocab_size must be positive"),
    (dict(block_size=8.0), "block_size must be an integer"),
    (dict(n_head=True), "n_head must be an integer"),
    (dict(dropout=1.0), "dropout must be in [0, 1)"),
    (dict(dropout=-0.1), "dropout must be in [0, 1)"),
    (dict(dropout="0.1"), "dropout must be a number"),
    (dict(bias="yes"), "bias must be true or false"),
])
def test_config_rejects_invalid_values_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        GPTConfig(**kwargs)


def test_config_from_dict_names_unknown_and_missing_keys():
    d = GPTConfig().to_dict()
    d["n_ctx"] = 64
    del d["bias"]
    with pytest.raises(ValueError) as info:
        GPTConfig.from_dict(d)
    assert "unknown key(s) n_ctx" in str(info.value) and "missing key(s) bias" in str(info.value)
    with pytest.raises(ValueError, match="expected a dict"):
        GPTConfig.from_dict([1, 2])


# ----------------------------------------------------------------------------------------------
# parameters: names, tying, initialisation


def test_parameter_names_and_shapes_are_gpt2s():
    model = tiny(n_layer=1)
    C, V = 32, 61
    expected = {
        "transformer.wte.weight": (V, C), "transformer.wpe.weight": (16, C),
        "transformer.h.0.ln_1.weight": (C,), "transformer.h.0.ln_1.bias": (C,),
        "transformer.h.0.attn.c_attn.weight": (3 * C, C), "transformer.h.0.attn.c_attn.bias": (3 * C,),
        "transformer.h.0.attn.c_proj.weight": (C, C), "transformer.h.0.attn.c_proj.bias": (C,),
        "transformer.h.0.ln_2.weight": (C,), "transformer.h.0.ln_2.bias": (C,),
        "transformer.h.0.mlp.c_fc.weight": (4 * C, C), "transformer.h.0.mlp.c_fc.bias": (4 * C,),
        "transformer.h.0.mlp.c_proj.weight": (C, 4 * C), "transformer.h.0.mlp.c_proj.bias": (C,),
        "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,),
    }
    got = {name: p.data.shape for name, p in model.named_parameters()}
    assert got == expected
    assert set(model.state_dict()) == set(expected)
    assert model.num_params() == sum(math.prod(s) for s in expected.values())
    assert model.num_params(non_embedding=True) == model.num_params() - 16 * C


def test_bias_false_leaves_out_every_bias():
    names = [n for n, _ in tiny(bias=False).named_parameters()]
    assert not [n for n in names if n.endswith(".bias")]


def test_head_is_tied_to_the_token_embedding():
    model = tiny()
    assert model.lm_head.weight is model.transformer.wte.weight
    assert sum(p is model.transformer.wte.weight for p in model.parameters()) == 1


def test_initialisation_is_gpt2s():
    model = GPT(GPTConfig(vocab_size=512, block_size=64, n_layer=4, n_head=4, n_embd=128), seed=3)
    params = dict(model.named_parameters())
    for name, p in params.items():
        w = p.data
        assert w.dtype == np.float32, name
        if ".ln_" in name or name.startswith("transformer.ln_f"):
            assert np.all(w == (1.0 if name.endswith("weight") else 0.0)), name
        elif name.endswith(".bias"):
            assert np.all(w == 0.0), name
        else:
            std = 0.02 / math.sqrt(2 * 4) if name.endswith("c_proj.weight") else 0.02
            assert abs(w.mean()) < 0.1 * std and abs(w.std() / std - 1) < 0.05, (name, w.std(), std)


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = tiny(seed=1), tiny(seed=1), tiny(seed=2)
    wa, wb, wc = (m.transformer.h[0].attn.c_attn.weight.data for m in (a, b, c))
    assert np.array_equal(wa, wb) and not np.array_equal(wa, wc)


# ----------------------------------------------------------------------------------------------
# forward


def test_logits_shape_and_loss_at_init_is_about_ln_vocab_size():
    model = GPT(GPTConfig(vocab_size=256, block_size=32, n_layer=2, n_head=4, n_embd=64))
    idx, targets = ids((4, 32), 256, seed=1), ids((4, 32), 256, seed=2)
    logits, loss = model(idx, targets)
    assert logits.shape == (4, 32, 256)
    assert loss.data.shape == () and abs(float(loss.data) - math.log(256)) < 0.1
    logits, loss = model(idx)
    assert loss is None


def test_ignored_targets_do_not_count():
    model = tiny()
    idx, targets = ids((2, 8), seed=1), ids((2, 8), seed=2)
    logits, loss = model(idx, targets)
    masked = targets.copy()
    masked[:, 4:] = -1
    _, loss_half = model(idx, masked)
    lp = logits.data - logits.data.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))  # (2, 8, V) log-probabilities
    picked = np.take_along_axis(lp, targets[..., None], -1)[..., 0]  # (2, 8)
    assert float(loss.data) == pytest.approx(-picked.mean(), rel=1e-5)
    assert float(loss_half.data) == pytest.approx(-picked[:, :4].mean(), rel=1e-5)


def test_a_future_token_never_changes_an_earlier_logit():
    model = tiny()
    idx = ids((1, 12), seed=4)
    base, _ = model(idx)
    for t in (0, 5, 11):
        changed = idx.copy()
        changed[0, t] = (changed[0, t] + 1) % 61
        out, _ = model(changed)
        np.testing.assert_array_equal(out.data[:, :t], base.data[:, :t])  # exactly: no leak at all
        assert np.abs(out.data[:, t] - base.data[:, t]).max() > 1e-4  # the changed position does move


def test_rows_of_a_batch_are_independent():
    model = tiny()
    idx = ids((3, 10), seed=5)
    together, _ = model(idx)
    alone, _ = model(idx[1:2])
    np.testing.assert_allclose(together.data[1:2], alone.data, atol=1e-5)


@pytest.mark.parametrize("idx, error, message", [
    (np.zeros((1, 4), np.float32), TypeError, "dtype float32; expected integer"),
    (np.zeros((1, 4), bool), TypeError, "dtype bool"),
    (np.array([[1, 2, 61]]), ValueError, "contains id 61, outside 0 .. 60"),
    (np.array([[1, -2, 3]]), ValueError, "contains id -2"),
    (np.zeros((1, 17), np.int64), ValueError, "17 tokens, more than block_size 16"),
    (np.zeros(5, np.int64), ValueError, r"shape \(5,\); expected \(batch, tokens\)"),
    (np.zeros((1, 0), np.int64), ValueError, "both > 0"),
])
def test_bad_idx_gives_a_clear_error(idx, error, message):
    with pytest.raises(error, match=message):
        tiny()(idx)


def test_bad_targets_give_a_clear_error():
    model = tiny()
    with pytest.raises(ValueError, match="targets has shape"):
        model(ids((2, 4)), ids((2, 5)))
    with pytest.raises(ValueError, match="targets contains id 99"):
        model(ids((1, 3)), np.array([[1, 99, 2]]))


def test_dropout_is_seeded_and_off_in_eval_mode():
    idx = ids((2, 8))
    a, b = tiny(dropout=0.2), tiny(dropout=0.2)
    a.train(), b.train()
    ya, yb = a(idx)[0].data, b(idx)[0].data
    np.testing.assert_array_equal(ya, yb)  # same seed, same masks
    assert not np.allclose(a(idx)[0].data, ya)  # the next masks differ
    a.eval()
    np.testing.assert_array_equal(a(idx)[0].data, a(idx)[0].data)
    np.testing.assert_allclose(a(idx)[0].data, tiny(dropout=0.0)(idx)[0].data, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# training


def test_every_parameter_gets_a_gradient():
    model = tiny()
    _, loss = model(ids((2, 8), seed=1), ids((2, 8), seed=2))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.abs(p.grad).max() > 0, name


def test_optim_groups_decay_exactly_the_linear_matrices():
    model = tiny()
    decay, no_decay = model.optim_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    assert decayed == sorted(n for n in names.values() if n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")))
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)


def test_model_overfits_a_tiny_text():
    from tinylm.optim import AdamW

    text = b"hello tinylm, hello world. "
    data = np.frombuffer(text * 2, np.uint8).astype(np.int64)
    model = GPT(GPTConfig(vocab_size=256, block_size=24, n_layer=2, n_head=2, n_embd=32), seed=0)
    x = np.stack([data[i:i + 24] for i in range(4)])  # (4, 24)
    y = np.stack([data[i + 1:i + 25] for i in range(4)])  # (4, 24)
    opt = AdamW(model.optim_groups(0.0), lr=5e-3)
    first = None
    for step in range(60):
        _, loss = model(x, y)
        first = float(loss.data) if first is None else first
        model.zero_grad()
        loss.backward()
        opt.step()
    assert first > 5.0 and float(loss.data) < 0.3, (first, float(loss.data))


# ----------------------------------------------------------------------------------------------
# KV cache


@pytest.mark.parametrize("overrides, chunks", [
    (dict(), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),  # token by token from the start
    (dict(n_head=1, bias=False), [5, 1, 3, 1, 1, 5]),  # a prompt, then mixed chunk sizes
    (dict(n_layer=3, n_head=4, n_embd=64, block_size=20), [12, 1, 1, 1, 1, 1, 1, 1, 1]),
])
def test_kv_cache_matches_full_forward(overrides, chunks):
    """Logits for the same positions, computed in chunks with the cache or all at once, agree to float32
    rounding: the operations are the same, only grouped differently (BLAS may block a 1-row and a
    T-row matmul differently), so the difference is a few ulps of values of size ~1 (we allow 1e-5)."""
    model = tiny(**overrides)
    B, T = 3, sum(chunks)
    idx = ids((B, T), seed=7)
    full, _ = model(idx)  # (B, T, V)
    cache = model.new_kv_cache(B)
    pieces, start = [], 0
    with no_grad():
        for n in chunks:
            logits, _ = model(idx[:, start:start + n], kv_cache=cache)  # (B, n, V)
            pieces.append(logits.data)
            start += n
    assert cache.length == T
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full.data, rtol=0, atol=1e-5)


@no_grad()
def test_a_full_kv_cache_refuses_more_tokens_and_resets():
    model = tiny()
    cache = model.new_kv_cache(1)
    model(ids((1, 16)), kv_cache=cache)
    with pytest.raises(ValueError, match="kv_cache holds 16 positions"):
        model(ids((1, 1)), kv_cache=cache)
    cache.reset()
    assert cache.length == 0
    with pytest.raises(ValueError, match="batch size 2 but the kv_cache was made for 1"):
        model(ids((2, 1)), kv_cache=cache)


def test_a_kv_cache_refuses_to_record_gradients():
    model = tiny()
    with pytest.raises(RuntimeError, match="no_grad"):
        model(ids((1, 4)), kv_cache=model.new_kv_cache(1))


def test_kv_cache_holds_a_key_and_a_value_per_layer_head_and_position():
    model = tiny(n_layer=3, n_head=2, n_embd=32)
    cache = model.new_kv_cache(batch_size=2)
    assert isinstance(cache, KVCache)
    # 2 (k, v) x n_layer x B x n_head x block_size x head_size float32 values, allocated once
    assert cache.nbytes == 2 * 3 * 2 * 2 * 16 * 16 * 4
    with no_grad():
        model(ids((2, 5)), kv_cache=cache)
        k, v = cache.append(0, Tensor(np.ones((2, 2, 1, 16), np.float32)), Tensor(np.ones((2, 2, 1, 16), np.float32)))
    assert k.shape == v.shape == (2, 2, 6, 16)  # every position so far: the 5 cached and the new one
