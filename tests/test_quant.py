"""fp16 / int8 weights and layers, precision plans, weight bytes and quantized checkpoints."""
import json
import os

import numpy as np
import pytest

from tinylm import kernels
from tinylm.autograd import Tensor
from tinylm.io.quantized import load_quantized, save_quantized
from tinylm.model import GPT, GPTConfig
from tinylm.nn import Linear
from tinylm.quant import (
    Fp16Linear,
    Fp16Weight,
    Int8Linear,
    Int8Weight,
    QuantizedEmbedding,
    apply_plan,
    load_plan,
    parse_precision,
    plan_of,
    quantizable_layers,
    save_plan,
    uniform_plan,
    validate_plan,
    weight_bytes,
)

TINY = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=64)


@pytest.fixture(scope="module")
def model():
    return GPT(GPTConfig(**TINY), seed=3)


def _linear(in_features, out_features, seed=0, bias=True):
    lin = Linear(in_features, out_features, bias=bias, rng=np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 100)
    lin.weight.data[...] = rng.normal(0, 0.5, lin.weight.data.shape).astype(np.float32)
    lin.weight.data[0, 3] = 8.0  # an outlier: its group gets a coarse scale
    if bias:
        lin.bias.data[...] = rng.normal(0, 0.1, lin.bias.data.shape).astype(np.float32)
    return lin


# ----------------------------------------------------------------------------------------------
# formats


@pytest.mark.parametrize("group_size", [8, 32, 64])
def test_int8_error_is_at_most_half_a_step_per_element(group_size):
    w = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32) * 3
    w[2, :group_size] *= 50  # a group with an outlier-sized range
    stored = Int8Weight.from_float(w, group_size)
    assert stored.q.dtype == np.int8 and stored.scale.shape == (16, 64 // group_size)
    assert stored.q.min() >= -127 and stored.q.max() <= 127
    step = np.repeat(stored.scale, group_size, axis=1)  # (16, 64): the scale of every element's group
    err = np.abs(stored.dequantize() - w)
    assert np.all(err <= step / 2 * (1 + 1e-6) + 1e-12)
    # the largest element of every group maps to +-127: the whole int8 range is used
    assert np.all(np.abs(stored.q.reshape(16, -1, group_size)).max(-1) == 127)


def test_int8_rounds_half_to_even_and_zero_groups_get_scale_zero():
    w = np.zeros((2, 8), np.float32)
    w[0] = [127.0, 0.5, 1.5, 2.5, -2.5, -0.5, 3.5, 0.0]  # max 127 -> scale exactly 1
    stored = Int8Weight.from_float(w, 8)
    assert stored.scale[0, 0] == 1.0
    assert stored.q[0].tolist() == [127, 0, 2, 2, -2, 0, 4, 0]
    assert stored.scale[1, 0] == 0.0 and not stored.q[1].any()
    assert np.array_equal(stored.dequantize()[1], np.zeros(8, np.float32))


def test_fp16_weight_rounds_to_nearest_even_exactly():
    one_ulp = 2.0 ** -10  # spacing of fp16 numbers in [1, 2)
    ties = np.array([[1 + one_ulp / 2, 1 + 3 * one_ulp / 2, 2049.0, 2051.0]], np.float32)
    assert Fp16Weight.from_float(ties).dequantize().tolist() == [[1.0, 1 + 2 * one_ulp, 2048.0, 2052.0]]
    w = (np.random.default_rng(1).standard_normal((32, 48)) * 10.0 ** np.random.default_rng(2).integers(
        -6, 4, (32, 48))).astype(np.float32)  # normal and subnormal fp16 ranges
    assert np.array_equal(Fp16Weight.from_float(w).data, w.astype(np.float16))  # NumPy rounds IEEE-exactly


def test_precision_strings():
    assert parse_precision("fp16") == ("fp16", None)
    assert parse_precision("int8") == ("int8", 32)
    assert parse_precision("INT8:g64") == ("int8", 64)
    assert parse_precision("int8:channel") == ("int8", None)
    # one group as wide as the layer's inputs is the same thing as per channel: one name for it
    assert validate_plan(GPT(GPTConfig(**TINY)), {"lm_head": "int8:g64"}) == {"lm_head": "int8:channel"}
    for bad in ["int3", "int4:g0", "fp16:g32", "int8:g0", "int8:64", ""]:
        with pytest.raises(ValueError, match="precision"):
            parse_precision(bad)
    with pytest.raises(TypeError):
        parse_precision(8)


def test_storage_rejects_bad_arrays():
    with pytest.raises(TypeError, match="float16"):
        Fp16Weight(np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="int8"):
        Int8Weight(np.zeros((2, 4), np.int16), np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        Int8Weight(np.zeros((2, 6), np.int8), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="-128"):
        Int8Weight(np.full((1, 4), -128, np.int8), np.ones((1, 1), np.float32))
    with pytest.raises(ValueError, match="does not divide"):
        Int8Weight.from_float(np.ones((2, 48), np.float32), 32)
    with pytest.raises(TypeError, match="float32"):
        Int8Weight.from_float(np.ones((2, 32), np.float64), 32)


# ----------------------------------------------------------------------------------------------
# layers


@pytest.mark.parametrize("group_size", [16, 32, None])
def test_int8_linear_equals_dequantized_linear_within_the_activation_bound(group_size):
    lin = _linear(64, 24, seed=1)
    layer = Int8Linear.from_linear(lin, group_size)
    x = np.random.default_rng(5).standard_normal((7, 64)).astype(np.float32)
    y = layer(Tensor(x)).data  # (7, 24)
    w_deq = layer.dequantized_weight().astype(np.float64)  # (24, 64)
    b = lin.bias.data.astype(np.float64)
    # the only other rounding is the run-time quantization of x: at most half of x's step per element
    gs = layer.group_size
    x_q, x_scale = kernels.quantize_s8(x, gs)
    x_step = np.repeat(x_scale, gs, axis=1).astype(np.float64)  # (7, 64)
    bound = (x_step / 2) @ np.abs(w_deq).T  # (7, 24)
    slack = 1e-5 * (np.abs(x) @ np.abs(w_deq).T + np.abs(b))
    assert np.all(np.abs(y - (x @ w_deq.T + b)) <= bound + slack)
    # and with the quantized activations it is the same product, up to float rounding
    x_deq = kernels.dequantize_s8(x_q, x_scale).astype(np.float64)
    assert np.all(np.abs(y - (x_deq @ w_deq.T + b)) <= slack)


def test_fp16_linear_is_fp16_inputs_times_fp16_weights_in_fp32():
    lin = _linear(48, 20, seed=2)
    layer = Fp16Linear.from_linear(lin)
    x = np.random.default_rng(6).standard_normal((2, 3, 48)).astype(np.float32)
    y = layer(Tensor(x)).data  # (2, 3, 20)
    assert y.shape == (2, 3, 20) and y.dtype == np.float32
    x16 = x.astype(np.float16).astype(np.float64)
    w16 = lin.weight.data.astype(np.float16).astype(np.float64)
    expected = x16 @ w16.T + lin.bias.data
    assert np.allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_quantized_linear_keeps_leading_dimensions_and_checks_features():
    layer = Int8Linear.from_linear(_linear(32, 8, bias=False))
    assert layer(Tensor(np.ones((2, 5, 32), np.float32))).data.shape == (2, 5, 8)
    assert layer.bias is None
    with pytest.raises(ValueError, match="expected 32"):
        layer(Tensor(np.ones((2, 31), np.float32)))


def test_quantized_embedding_looks_up_dequantized_rows():
    w = np.random.default_rng(0).standard_normal((10, 32)).astype(np.float32)
    stored = Int8Weight.from_float(w, 32)
    emb = QuantizedEmbedding(stored)
    idx = np.array([[3, 0], [9, 3]])
    assert np.array_equal(emb(idx).data, stored.dequantize()[idx])  # (2, 2, 32)
    with pytest.raises(ValueError, match="out of range"):
        emb(np.array([[10]]))


# ----------------------------------------------------------------------------------------------
# plans on a GPT


def test_quantizable_layers_are_the_linears_and_position_embedding(model):
    layers = quantizable_layers(model)
    assert layers["lm_head"] == (64, 64) and layers["transformer.h.1.mlp.c_proj"] == (64, 256)
    assert "transformer.wte" not in layers  # tied to lm_head: one matrix, one entry
    assert len(layers) == 4 * TINY["n_layer"] + 2


def test_apply_plan_returns_a_new_model_and_keeps_the_original(model):
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    small = apply_plan(model, {"transformer.h.0.mlp.c_fc": "int8:g32", "lm_head": "fp16"})
    assert isinstance(small.transformer.h[0].mlp.c_fc, Int8Linear)
    assert isinstance(small.lm_head, Fp16Linear)
    # the tied token embedding follows the head and shares its storage (stored once)
    assert small.transformer.wte.weight is small.lm_head.weight
    assert plan_of(small)["transformer.h.0.mlp.c_fc"] == "int8:g32"
    assert plan_of(small)["transformer.h.0.attn.c_attn"] == "fp32"
    assert all(np.array_equal(before[n], p.data) for n, p in model.named_parameters())
    assert type(model.lm_head).__name__ == "Linear"


def test_uniform_fp16_model_is_close_and_int8_model_runs(model):
    idx = np.random.default_rng(0).integers(0, 64, (2, 16))
    logits, _ = model(idx)
    scale = np.abs(logits.data).max()
    errors = {}
    for precision in ["fp16", "int8:g32"]:
        q_logits, _ = apply_plan(model, uniform_plan(model, precision))(idx)
        assert q_logits.data.shape == logits.data.shape
        errors[precision] = np.abs(q_logits.data - logits.data).max() / scale
    assert 0 < errors["fp16"] < 2e-3 and errors["fp16"] < errors["int8:g32"] < 5e-2


def test_weight_bytes_count_each_precision_once(model):
    fp32 = weight_bytes(model)
    assert fp32 == {"fp32": 4 * model.num_params(), "fp16": 0, "int8": 0, "int4": 0, "total": 4 * model.num_params()}
    layers = quantizable_layers(model)
    matrix_elems = sum(n * k for n, k in layers.values())
    other = fp32["total"] - 4 * matrix_elems  # LayerNorms and biases stay fp32
    assert weight_bytes(apply_plan(model, uniform_plan(model, "fp16"))) == {
        "fp32": other, "fp16": 2 * matrix_elems, "int8": 0, "int4": 0, "total": other + 2 * matrix_elems}
    int8 = weight_bytes(apply_plan(model, uniform_plan(model, "int8:g32")))
    assert int8["int8"] == matrix_elems + 4 * matrix_elems // 32  # 1 byte + a 4-byte scale per 32
    assert int8["total"] == other + int8["int8"]


def test_bad_plans_have_clear_errors(model):
    with pytest.raises(ValueError, match="unknown layer 'transformer.h.7.mlp.c_fc'"):
        apply_plan(model, {"transformer.h.7.mlp.c_fc": "fp16"})
    with pytest.raises(ValueError, match="'lm_head'.*unknown precision 'int3'"):
        apply_plan(model, {"lm_head": "int3"})
    with pytest.raises(ValueError, match="group size 48 does not divide its in_features 64"):
        apply_plan(model, {"transformer.h.0.attn.c_attn": "int8:g48"})
    with pytest.raises(ValueError, match="tied to 'lm_head'"):
        apply_plan(model, {"transformer.wte": "fp16"})
    with pytest.raises(TypeError, match="expected a dict"):
        apply_plan(model, ["lm_head", "fp16"])
    small = apply_plan(model, {"lm_head": "int8"})
    with pytest.raises(ValueError, match="already quantized"):
        apply_plan(small, {"lm_head": "fp16"})


def test_plan_file_round_trip_and_bad_files(tmp_path, model):
    plan = {"lm_head": "int8", "transformer.h.0.attn.c_proj": "fp16"}
    path = tmp_path / "plan.json"
    save_plan(path, plan, note="test")
    assert load_plan(path) == validate_plan(model, plan) == {"lm_head": "int8:g32",
                                                             "transformer.h.0.attn.c_proj": "fp16"}
    saved = json.loads(path.read_text())
    assert saved["format"] == "tinylm-precision-plan" and saved["version"] == 1 and saved["note"] == "test"
    path.write_text('{"format": "tinylm-precision-plan", "version": 1, "layers": {"lm_head": "int3"}}')
    with pytest.raises(ValueError, match="lm_head.*int3"):
        load_plan(path)
    path.write_text('{"format": "tinylm-precision-plan", "version": 99, "layers": {}}')
    with pytest.raises(ValueError, match="version 99"):
        load_plan(path)
    path.write_text('{"lm_head": "fp16"}')
    with pytest.raises(ValueError, match="not a tinylm precision plan"):
        load_plan(path)
    path.write_text('{"format": ')
    with pytest.raises(ValueError, match="plan.json"):
        load_plan(path)
    with pytest.raises(FileNotFoundError):
        load_plan(tmp_path / "missing.json")


# ----------------------------------------------------------------------------------------------
# quantized checkpoints


def _npz_bytes(folder):
    return os.path.getsize(os.path.join(folder, "weights.npz"))


def test_quantized_checkpoint_round_trip_is_exact_and_small(tmp_path, model):
    plan = {**uniform_plan(model, "int8:g32"), "transformer.h.1.attn.c_attn": "fp16",
            "transformer.wpe": "int8:channel"}
    saved = save_quantized(tmp_path / "q", model, plan)
    loaded = load_quantized(tmp_path / "q")
    assert plan_of(loaded) == validate_plan(model, plan)
    assert weight_bytes(loaded) == weight_bytes(saved)
    for name in quantizable_layers(model):
        a, b = saved, loaded
        for part in name.split("."):
            a, b = (a[int(part)], b[int(part)]) if part.isdigit() else (getattr(a, part), getattr(b, part))
        if hasattr(a.weight, "q"):
            assert np.array_equal(a.weight.q, b.weight.q) and np.array_equal(a.weight.scale, b.weight.scale)
    idx = np.random.default_rng(1).integers(0, 64, (2, 16))
    assert np.array_equal(saved(idx)[0].data, loaded(idx)[0].data)  # no re-quantization on load
    # on disk: the int8 file holds the weight bytes plus the .npz headers (a few hundred bytes per array)
    int8 = save_quantized(tmp_path / "int8", model, uniform_plan(model, "int8:g32"))
    fp32 = save_quantized(tmp_path / "fp32", model, {})  # fp32 everything, same format
    n_arrays = len(np.load(tmp_path / "int8" / "weights.npz").files)
    assert weight_bytes(int8)["total"] < _npz_bytes(tmp_path / "int8") < weight_bytes(int8)["total"] + 400 * n_arrays
    assert _npz_bytes(tmp_path / "fp32") > weight_bytes(fp32)["total"]
    assert _npz_bytes(tmp_path / "int8") < _npz_bytes(tmp_path / "fp32") / 3


def test_save_quantized_accepts_an_already_quantized_model(tmp_path, model):
    small = apply_plan(model, uniform_plan(model, "fp16"))
    save_quantized(tmp_path / "q", small)
    assert plan_of(load_quantized(tmp_path / "q")) == uniform_plan(model, "fp16")
    with pytest.raises(ValueError, match="different plan"):
        save_quantized(tmp_path / "q2", small, uniform_plan(model, "int8"))
    with pytest.raises(ValueError, match="pass the plan"):
        save_quantized(tmp_path / "q3", model)


def test_corrupt_quantized_checkpoints_are_named(tmp_path, model):
    folder = tmp_path / "q"
    save_quantized(folder, model, uniform_plan(model, "int8"))
    arrays = dict(np.load(folder / "weights.npz"))
    # a missing array
    np.savez(folder / "weights.npz", **{k: v for k, v in arrays.items() if k != "lm_head.weight.scale"})
    with pytest.raises(ValueError, match="lm_head.weight.scale"):
        load_quantized(folder)
    # the wrong dtype
    np.savez(folder / "weights.npz", **{**arrays, "lm_head.weight.q": arrays["lm_head.weight.q"].astype(np.int16)})
    with pytest.raises(ValueError, match="lm_head.*int16"):
        load_quantized(folder)
    # a truncated file
    (folder / "weights.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="weights.npz"):
        load_quantized(folder)
    # a foreign description
    (folder / "quantized.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a tinylm quantized model"):
        load_quantized(folder)
    with pytest.raises(FileNotFoundError):
        load_quantized(tmp_path / "nowhere")


def test_quantized_model_generates_with_the_kv_cache(model):
    from tinylm.generate import generate

    small = apply_plan(model, uniform_plan(model, "int8:g32"))
    prompt = np.array([[1, 2, 3]])
    cached = generate(small, prompt, max_new_tokens=10, temperature=0.0, seed=0, use_cache=True)
    uncached = generate(small, prompt, max_new_tokens=10, temperature=0.0, seed=0, use_cache=False)
    assert cached.shape == (1, 13) and np.array_equal(cached, uncached)
