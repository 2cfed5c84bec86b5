"""int4 as a precision like the others: the registry entry, plans, weight bytes, and quantized model
folders (saved and loaded by tinylm.io.quantized through the registry's arrays / from_arrays)."""
import numpy as np
import pytest

from tinylm import kernels
from tinylm.io.quantized import load_quantized, save_quantized
from tinylm.model import GPT, GPTConfig
from tinylm.quant import (
    Int4Linear,
    Int4Weight,
    Int8Weight,
    QuantizedEmbedding,
    apply_plan,
    parse_precision,
    plan_of,
    quantizable_layers,
    uniform_plan,
    validate_plan,
    weight_bytes,
)
from tinylm.quant.planner import layer_bytes, sensitivity
from tinylm.quant.precisions import canonical_precision, fits

TINY = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=64)


@pytest.fixture(scope="module")
def model():
    return GPT(GPTConfig(**TINY), seed=3)


def _get(model, name):
    m = model
    for part in name.split("."):
        m = m[int(part)] if part.isdigit() else getattr(m, part)
    return m


def test_int4_precision_strings_parse_like_int8():
    assert parse_precision("int4") == ("int4", 32)
    assert parse_precision("int4:g64") == ("int4", 64)
    assert parse_precision("int4:channel") == ("int4", None)
    assert canonical_precision("INT4") == "int4:g32"


def test_int4_fits_only_groups_of_whole_32_column_blocks():
    assert fits((8, 64), "int4", 32) and fits((8, 64), "int4", None) and fits((8, 96), "int4", 96)
    assert not fits((8, 80), "int4", 32)                  # 32 does not divide 80
    assert not fits((8, 48), "int4", None)                # a row that is not whole blocks
    assert not fits((8, 64), "int4", 16)                  # a group smaller than a block
    assert fits((8, 48), "int8", 16)                      # int8 has no such rule
    with pytest.raises(ValueError, match="multiple of 32"):
        Int4Weight.from_float(np.ones((2, 64), np.float32), 16)


def test_int4_bytes_are_half_a_byte_per_weight_plus_the_scales():
    assert layer_bytes((64, 128), "int4:g32") == 64 * 64 + 4 * 64 * 4
    assert layer_bytes((64, 128), "int4:channel") == 64 * 64 + 4 * 64
    w = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
    assert Int4Weight.from_float(w, 32).nbytes == layer_bytes((64, 128), "int4:g32")


def test_int4_linear_layer_runs_the_linear_s4_kernel(model):
    lin = _get(model, "transformer.h.0.mlp.c_fc")
    q = Int4Linear.from_linear(lin, group_size=32)
    x = np.random.default_rng(1).standard_normal((5, lin.in_features)).astype(np.float32)
    w = q.weight
    assert np.array_equal(q(x).data, kernels.linear_s4(x, w.q4, w.scale, lin.bias.data))
    assert repr(q).endswith("weight=int4:g32, bias=True)")


def test_uniform_int4_plan_is_over_6x_smaller_than_fp32_and_worse_than_int8(model):
    plan = uniform_plan(model, "int4:g32")
    assert set(plan.values()) == {"int4:g32"}                     # output head and embeddings too
    small, int8 = apply_plan(model, plan), apply_plan(model, uniform_plan(model, "int8:g32"))
    fp32_bytes = sum(4 * np.prod(_get(model, n).weight.data.shape) for n in quantizable_layers(model))
    assert weight_bytes(small)["int4"] * 6 < fp32_bytes
    assert isinstance(small.transformer.wte, QuantizedEmbedding)
    assert small.transformer.wte.weight is small.lm_head.weight    # tied: one storage
    idx = np.random.default_rng(2).integers(0, 64, (2, 16))
    ref = model(idx)[0].data
    err4 = np.abs(small(idx)[0].data - ref).mean()
    err8 = np.abs(int8(idx)[0].data - ref).mean()
    assert 0 < err8 < err4


def test_int4_model_folder_round_trip_is_exact(tmp_path, model):
    plan = {**uniform_plan(model, "int4:g32"), "transformer.h.1.mlp.c_proj": "int8:g32",
            "transformer.wpe": "int4:channel"}
    saved = save_quantized(tmp_path / "q", model, plan)
    loaded = load_quantized(tmp_path / "q")
    assert plan_of(loaded) == validate_plan(model, plan)
    assert plan_of(loaded)["transformer.wpe"] == "int4:channel"
    assert weight_bytes(loaded) == weight_bytes(saved)
    for name in quantizable_layers(model):
        a, b = _get(saved, name).weight, _get(loaded, name).weight
        if isinstance(a, Int4Weight):
            assert np.array_equal(a.q4, b.q4) and np.array_equal(a.scale, b.scale)
    assert isinstance(_get(loaded, "transformer.h.1.mlp.c_proj").weight, Int8Weight)
    idx = np.random.default_rng(3).integers(0, 64, (2, 16))
    assert np.array_equal(saved(idx)[0].data, loaded(idx)[0].data)


def test_a_saved_int4_file_with_a_minus_8_nibble_is_refused(tmp_path, model):
    save_quantized(tmp_path / "q", model, uniform_plan(model, "int4:g32"))
    path = tmp_path / "q" / "weights.npz"
    arrays = dict(np.load(path))
    arrays["lm_head.weight.q4"][0, 0] = 0x80
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="0x8"):
        load_quantized(tmp_path / "q")


class _LossOfPlan:
    """A stand-in evaluator: the loss is the mean |logits error| of the quantized model."""

    def __init__(self, model):
        self.idx = np.random.default_rng(4).integers(0, 64, (2, 16))
        self.ref = model(self.idx)[0].data
        self.ref_loss = 0.0

    def measure(self, m):
        return {"loss": float(np.abs(m(self.idx)[0].data - self.ref).mean())}


def test_sensitivity_measures_int4_for_every_layer_and_it_costs_more_than_int8(model):
    sens = sensitivity(model, _LossOfPlan(model), precisions=("int8:g32", "int4:g32"), show_progress=False)
    assert all(set(s) == {"int8:g32", "int4:g32"} for s in sens.values())
    assert all(s["int4:g32"] > s["int8:g32"] for s in sens.values())


def test_greedy_planner_fits_the_budget_and_measures_every_step(model):
    from tinylm.quant.planner import plan_greedy

    ev = _LossOfPlan(model)
    b4 = weight_bytes(apply_plan(model, uniform_plan(model, "int4:g32")))["total"]
    b8 = weight_bytes(apply_plan(model, uniform_plan(model, "int8:g32")))["total"]
    budget = (b4 + b8) // 2
    plan, metrics = plan_greedy(model, ev, budget, ("fp16", "int8:g32", "int4:g32"), show_progress=False)
    assert metrics["bytes"] == weight_bytes(apply_plan(model, plan))["total"] <= budget
    assert "int4:g32" in plan.values() and set(plan.values()) != {"int4:g32"}   # a real mix
    sizes = [b for b, _ in metrics["steps"]]
    assert sizes == sorted(sizes, reverse=True)
    raised = [sizes[-1]] + [b for b, _ in metrics["refills"]]
    assert raised == sorted(raised) and raised[-1] == metrics["bytes"]
    final = ev.measure(apply_plan(model, plan))["loss"]
    assert (metrics["refills"] or metrics["steps"])[-1][1] == pytest.approx(final)
    # what the last step left of the budget is spent: no single raise that still fits lowers the loss
    order = ["int4:g32", "int8:g32", "fp16", "fp32"]
    for name, shape in quantizable_layers(model).items():
        for p in order[order.index(plan[name]) + 1:]:
            extra = layer_bytes(shape, p) - layer_bytes(shape, plan[name])
            if metrics["bytes"] + extra <= budget:
                assert ev.measure(apply_plan(model, {**plan, name: p}))["loss"] >= final, (name, p)
    with pytest.raises(ValueError, match="below the smallest plan"):
        plan_greedy(model, ev, b4 // 2, ("int4:g32",), show_progress=False)


def test_gguf_export_writes_int4_g32_as_q4_0_and_refuses_other_groups(tmp_path, model):
    from tinylm.io.gguf import save_gguf  # Q4_0 itself: tests/test_gguf.py

    save_gguf(apply_plan(model, uniform_plan(model, "int4:g32")), str(tmp_path / "m.gguf"))
    with pytest.raises(ValueError, match="Q4_0 has groups of 32 values"):
        save_gguf(apply_plan(model, uniform_plan(model, "int4:g64")), str(tmp_path / "n.gguf"))


def test_fake_quantized_training_uses_int4_weights_forward_and_passes_gradients_straight_through():
    from tinylm.autograd import Tensor
    from tinylm.quant.qat import FakeQuantEmbedding, FakeQuantLinear, fake_quantize, strip_fake_quantize

    m = GPT(GPTConfig(**TINY), seed=5)
    fc = m.transformer.h[0].mlp.c_fc
    w_before = fc.weight.data.copy()
    fake_quantize(m, uniform_plan(m, "int4:g32"))
    q = m.transformer.h[0].mlp.c_fc
    assert isinstance(q, FakeQuantLinear) and q.weight is fc.weight
    assert isinstance(m.lm_head, FakeQuantLinear) and m.lm_head.weight is m.transformer.wte.weight
    x = Tensor(np.random.default_rng(6).standard_normal((3, 64)).astype(np.float32))
    deq = Int4Weight.from_float(w_before, 32).dequantize()
    y = q(x)
    assert np.allclose(y.data, x.data @ deq.T + fc.bias.data, atol=1e-5)   # forward: the int4 weight
    assert not np.allclose(y.data, x.data @ w_before.T + fc.bias.data, atol=1e-3)
    y.sum().backward()
    assert np.allclose(fc.weight.grad, np.ones((3, 256)).T @ x.data, atol=1e-5)  # straight through
    # the tied token embedding looks its rows up in the same int4 matrix the head multiplies by
    wte = m.transformer.wte
    assert isinstance(wte, FakeQuantEmbedding) and wte.weight is m.lm_head.weight
    assert isinstance(m.transformer.wpe, FakeQuantEmbedding)
    head = Int4Weight.from_float(wte.weight.data, 32).dequantize()
    idx = np.array([[1, 5, 5, 63]])
    rows = wte(idx)
    assert np.array_equal(rows.data, head[idx]) and not np.array_equal(rows.data, wte.weight.data[idx])
    wte.weight.grad = None
    rows.sum().backward()
    expected = np.zeros_like(head)
    np.add.at(expected, idx.ravel(), 1.0)                       # id 5 twice: two rows of ones
    assert np.array_equal(wte.weight.grad, expected)
    strip_fake_quantize(m)
    assert type(m.transformer.h[0].mlp.c_fc).__name__ == "Linear"
    assert type(m.transformer.wte).__name__ == "Embedding" and type(m.transformer.wpe).__name__ == "Embedding"
    assert m.lm_head.weight is m.transformer.wte.weight


def test_fake_quantized_model_computes_what_the_quantized_model_will():
    """Training sees the shipped model: every lowered layer, the tied embedding and wpe included."""
    from tinylm.quant.qat import fake_quantize, strip_fake_quantize

    m = GPT(GPTConfig(**TINY), seed=8)
    plan = {**uniform_plan(m, "int4:g32"), "transformer.h.1.mlp.c_fc": "int8:g32", "transformer.wpe": "fp32"}
    idx = np.random.default_rng(9).integers(0, 64, (2, 16))
    m.eval()
    fake_quantize(m, plan)
    fake_logits = m(idx)[0].data
    shipped = apply_plan(strip_fake_quantize(m), plan)
    shipped_logits = shipped(idx)[0].data
    fp32_logits = m(idx)[0].data
    # the int8/int4 kernels also round each activation row to int8, which fake quantization does not
    # model: the two differ by that, far less than the fp32 model differs from the shipped one
    fake_error = np.abs(fake_logits - shipped_logits).max()
    assert fake_error < np.abs(fp32_logits - shipped_logits).max() / 4, fake_error


def test_fake_quantize_refuses_an_already_quantized_model(model):
    from tinylm.quant.qat import fake_quantize

    with pytest.raises(ValueError, match="already quantized"):
        fake_quantize(apply_plan(model, {"lm_head": "int8:g32"}), {"lm_head": "int4:g32"})
