"""Mixture of experts: routing, gates, equality with the dense MLP, gradients, the load-balancing loss,
the KV cache, training, checkpoints and config errors."""
import json

import numpy as np
import pytest
from test_autograd import numeric_grad

from tinylm.autograd import Tensor, no_grad
from tinylm.io.hf_gpt2 import save_hf_gpt2
from tinylm.io.runs import load_model, save_checkpoint
from tinylm.model import GPT, MLP, GPTConfig
from tinylm.model.moe import MoE, active_params, expert_usage, load_balancing_loss
from tinylm.tokenizer import Tokenizer

TINY = dict(vocab_size=61, block_size=16, n_layer=2, n_head=2, n_embd=32, n_expert=4, expert_top_k=2)


def moe_layer(n_embd=8, n_expert=4, top_k=2, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    cfg = GPTConfig(n_embd=n_embd, n_head=1)
    layer = MoE(n_embd, n_expert, top_k, lambda: MLP(cfg, rng, None), rng=rng)
    for p in layer.parameters():
        p.data = (rng.standard_normal(p.shape) * 0.5).astype(dtype)  # biases too, so they are checked
    return layer


def x_of(shape, seed=1, dtype=np.float32):
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


# ----------------------------------------------------------------------------------------------
# routing and gates


def test_each_token_goes_to_exactly_k_distinct_experts_with_gates_summing_to_one():
    layer = moe_layer(n_expert=5, top_k=3)
    x = x_of((2, 7, 8))
    out = layer(x)
    assert out.shape == (2, 7, 8)
    assert layer.last.chosen.shape == (14, 3) and layer.last.gates.shape == (14, 3)
    assert [n for n, _ in layer.named_parameters()][-1] == "experts.4.c_proj.bias"  # no routing in there
    assert all(len(set(row)) == 3 for row in layer.last.chosen.tolist())
    np.testing.assert_allclose(layer.last.gates.sum(axis=1), 1.0, rtol=1e-6)
    assert (np.diff(layer.last.gates, axis=1) <= 1e-7).all()  # best expert first
    logits = layer.router(x.reshape(14, 8)).data  # the chosen experts are the k highest logits
    top = np.sort(logits, axis=1)[:, -3:]
    np.testing.assert_allclose(np.sort(np.take_along_axis(logits, layer.last.chosen, 1), axis=1), top)


def test_output_is_the_gated_sum_of_the_chosen_experts():
    layer = moe_layer(n_expert=3, top_k=2)
    x = x_of((1, 5, 8))
    out = layer(x).data.reshape(5, 8)
    rows = x.data.reshape(5, 8)
    for t in range(5):
        expected = sum(g * layer.experts[e](Tensor(rows[t:t + 1])).data[0]
                       for e, g in zip(layer.last.chosen[t], layer.last.gates[t]))
        np.testing.assert_allclose(out[t], expected, rtol=1e-5, atol=1e-6)


def test_one_expert_with_top_1_is_the_dense_mlp():
    layer = moe_layer(n_expert=1, top_k=1)
    x = x_of((2, 4, 8))
    np.testing.assert_array_equal(layer(x).data, layer.experts[0](x).data)
    assert (layer.last.gates == 1.0).all()


def test_gradients_of_the_moe_layer_match_finite_differences():
    """float64, every parameter and the input, through the gates, the experts and the aux loss."""
    layer = moe_layer(n_embd=4, n_expert=3, top_k=2, dtype=np.float64)
    x = x_of((2, 3, 4), dtype=np.float64)
    x.requires_grad = True
    R = np.random.default_rng(5).standard_normal((2, 3, 4))

    def loss():
        return (layer(x) * R).sum() + layer.last.aux_loss * 0.7

    loss().backward()
    routing = layer.last.chosen.copy()
    for name, t in [("x", x)] + list(layer.named_parameters()):
        def value(arrays, t=t):
            t.data = arrays[0]
            with no_grad():
                return float(loss().data)

        expected = numeric_grad(value, [t.data], 0)
        np.testing.assert_allclose(t.grad, expected, rtol=1e-5, atol=1e-7, err_msg=name)
    layer(x)
    assert (layer.last.chosen == routing).all()  # the check stayed away from a tie between experts


# ----------------------------------------------------------------------------------------------
# the load-balancing loss


def test_aux_loss_is_one_for_a_uniform_router_and_grows_when_routing_collapses():
    E, N = 4, 8
    uniform = Tensor(np.zeros((N, E)))
    balanced = np.arange(N)[:, None] % E  # each expert gets N/E tokens
    assert load_balancing_loss(uniform, balanced, E).item() == pytest.approx(1.0)
    collapsed_logits = Tensor(np.tile([8.0, 0.0, 0.0, 0.0], (N, 1)))
    collapsed = load_balancing_loss(collapsed_logits, np.zeros((N, 1), dtype=np.int64), E).item()
    assert collapsed > 3.9  # -> n_expert / k = 4 as the router's probability of expert 0 -> 1
    half = load_balancing_loss(Tensor(np.tile([2.0, 0.0, 0.0, 0.0], (N, 1))), np.zeros((N, 1), np.int64), E)
    assert 1.0 < half.item() < collapsed


def test_training_loss_adds_the_aux_loss_times_its_coefficient_and_eval_does_not():
    idx = np.random.default_rng(0).integers(0, 61, (2, 8))
    model = GPT(GPTConfig(**{**TINY, "moe_aux_coef": 0.5}), seed=0)
    _, with_aux = model(idx, idx)
    aux = np.mean([b.mlp.last.aux_loss.item() for b in model.transformer.h])
    _, plain = model.eval()(idx, idx)
    assert with_aux.item() == pytest.approx(plain.item() + 0.5 * aux, rel=1e-6)


# ----------------------------------------------------------------------------------------------
# the model with MoE blocks


def test_kv_cache_matches_full_forward_with_moe_blocks():
    model = GPT(GPTConfig(**TINY), seed=0).eval()
    idx = np.random.default_rng(7).integers(0, 61, (3, 16))
    full, _ = model(idx)  # (B, T, V)
    cache, pieces, start = model.new_kv_cache(3), [], 0
    with no_grad():
        for n in [5, 1, 1, 3, 1, 5]:
            pieces.append(model(idx[:, start:start + n], kv_cache=cache)[0].data)  # (B, n, V)
            start += n
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full.data, rtol=0, atol=1e-5)


def test_parameters_grow_with_experts_but_active_parameters_follow_k():
    dense = GPT(GPTConfig(**{**TINY, "n_expert": 0}))
    moe = GPT(GPTConfig(**TINY))
    mlp = sum(p.data.size for p in dense.transformer.h[0].mlp.parameters())
    router = 32 * 4
    assert moe.num_params() == dense.num_params() + 2 * (3 * mlp + router)
    assert active_params(moe) == dense.num_params() + 2 * (mlp + router)  # k = 2 experts per token
    assert active_params(dense) == dense.num_params()
    names = [n for n, _ in moe.named_parameters()]
    assert "transformer.h.1.mlp.router.weight" in names and "transformer.h.1.mlp.experts.3.c_proj.bias" in names


def test_a_tiny_moe_gpt_overfits_a_tiny_text():
    from tinylm.optim import AdamW

    data = np.frombuffer(b"hello tinylm, hello world. " * 2, np.uint8).astype(np.int64)
    model = GPT(GPTConfig(vocab_size=256, block_size=24, n_layer=2, n_head=2, n_embd=32, n_expert=4), seed=0)
    x = np.stack([data[i:i + 24] for i in range(4)])  # (4, 24)
    y = np.stack([data[i + 1:i + 25] for i in range(4)])  # (4, 24)
    opt = AdamW(model.optim_groups(0.0), lr=5e-3)
    losses = []
    for _ in range(60):
        _, loss = model(x, y)
        losses.append(loss.item())
        model.zero_grad()
        loss.backward()
        opt.step()
    assert losses[0] > 5.0 and losses[-1] < 0.3, (losses[0], losses[-1])
    usage = expert_usage(model)
    assert usage.shape == (2, 4) and np.allclose(usage.sum(axis=1), 1.0)


def test_checkpoint_round_trip_of_an_moe_model(tmp_path):
    tokenizer = Tokenizer().train("the cat sat on the mat " * 20, vocab_size=260)
    config = GPTConfig(vocab_size=260, block_size=8, n_layer=1, n_head=2, n_embd=8, n_expert=3,
                       expert_top_k=1, moe_aux_coef=0.05)
    model = GPT(config, seed=3).eval()
    save_checkpoint(tmp_path / "run", model, tokenizer)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert (saved["n_expert"], saved["expert_top_k"], saved["moe_aux_coef"]) == (3, 1, 0.05)
    loaded, _ = load_model(tmp_path / "run")
    assert loaded.config == config
    x = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(loaded(x)[0].data, model(x)[0].data)


def test_a_config_written_before_moe_loads_as_dense():
    old = {"vocab_size": 61, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0,
           "bias": True}
    cfg = GPTConfig.from_dict(old)
    assert cfg.n_expert == 0 and cfg.to_dict() == old  # and a dense config writes no MoE keys
    assert GPTConfig.from_dict(GPTConfig(n_expert=2).to_dict()) == GPTConfig(n_expert=2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_expert=-1), "n_expert must be an integer >= 0"),
    (dict(n_expert=2.0), "n_expert must be an integer"),
    (dict(n_expert=4, expert_top_k=0), "expert_top_k must be an integer >= 1"),
    (dict(n_expert=2, expert_top_k=3), r"expert_top_k \(3\) must be at most n_expert \(2\)"),
    (dict(n_expert=2, moe_aux_coef=-0.1), "moe_aux_coef must be a number >= 0"),
])
def test_bad_moe_config_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**kwargs)


def test_hugging_face_export_refuses_an_moe_model_before_writing_anything(tmp_path):
    out = tmp_path / "hf"
    with pytest.raises(ValueError, match=r"parameters GPT-2 does not: .*experts"):
        save_hf_gpt2(GPT(GPTConfig(**TINY), seed=0), out)
    assert not out.exists()
