"""GGUF: tinylm's writer read back by the `gguf` package (llama.cpp's own Python reader and writer) and by
tinylm's reader; round trips in F32, F16 and Q8_0; a file written by the gguf package read by tinylm;
refusals; hostile files. Q4_0 (tinylm's int4:g32) the same ways."""
import copy
import struct

import numpy as np
import pytest

from tinylm import cli
from tinylm.autograd import no_grad
from tinylm.generate import generate
from tinylm.io import detect, load
from tinylm.io.gguf import load_gguf, save_gguf
from tinylm.kernels import reference as ref
from tinylm.model import GPT, GPTConfig
from tinylm.quant.layers import Fp16Weight, Int4Weight, Int8Weight
from tinylm.quant.plan import apply_plan, get_module, plan_of, uniform_plan
from tinylm.tokenizer import Tokenizer

gguf = pytest.importorskip("gguf")  # a test dependency: pip install -e ".[test]"

TEXT = "the cat sat on the mat; the dog sat on the log. héllo wörld! " * 20


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer().train(TEXT, 280, special_tokens=["<|endoftext|>"])


ARCHS = {
    "gpt2": dict(),
    "gpt2-no-bias": dict(bias=False),
    "llama": dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, tie_head=False, n_kv_head=2, rope_theta=500.0),
    "llama-tied": dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, n_kv_head=1),
    "llama-moe": dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, n_kv_head=2, n_expert=3, expert_top_k=2),
}


def model_of(tokenizer, opts, seed=0):
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size + 3, block_size=24, n_layer=2, n_head=4, n_embd=64,
                          **opts), seed=seed).eval()
    for _, p in model.named_parameters():  # larger weights: logits far from zero
        p.data *= 3.0 if p.data.ndim == 2 else 1.0
    return model


def matrices(model):
    """{layer: float32 weight}, quantized layers dequantized."""
    return {n: (m.weight.dequantize() if hasattr(m.weight, "dequantize") else m.weight.data)
            for n, m in model.named_modules() if n and hasattr(m, "weight") and m.weight is not None}


def greedy(model, ids, n=16):
    return generate(model, np.array([ids]), n, temperature=0)[0].tolist()


# ----------------------------------------------------------------------------------------------
# round trips through tinylm's reader


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_and_fp16_round_trips_are_bit_for_bit(tmp_path, tokenizer, arch):
    model = model_of(tokenizer, ARCHS[arch])
    for plan in (None, "fp16"):
        m = model if plan is None else apply_plan(model, uniform_plan(model, plan))
        save_gguf(m, tmp_path / "m.gguf", tokenizer)
        loaded, tok = load(tmp_path / "m.gguf")
        assert loaded.config == model.config and plan_of(loaded) == plan_of(m)
        ours, theirs = matrices(m), matrices(loaded)
        assert ours.keys() == theirs.keys()
        for name, w in ours.items():
            assert np.array_equal(w, theirs[name]), name
        prompt = tokenizer.encode("the cat")
        assert tok.encode("the cat sat, héllo") == tokenizer.encode("the cat sat, héllo")
        assert tok.special_tokens == tokenizer.special_tokens
        assert greedy(loaded, prompt) == greedy(m, prompt)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "llama-moe"])
def test_q8_0_keeps_the_int8_values_and_rounds_each_scale_to_fp16(tmp_path, tokenizer, arch):
    """tinylm -> GGUF -> tinylm: int8 values identical, every scale rounded to the nearest fp16 (relative
    change at most 2^-11); GGUF -> tinylm -> GGUF: the same file."""
    model = model_of(tokenizer, ARCHS[arch])
    q8 = apply_plan(model, uniform_plan(model, "int8:g32"))
    save_gguf(q8, tmp_path / "a.gguf", tokenizer)
    loaded, tok = load_gguf(tmp_path / "a.gguf")
    worst = 0.0
    down = "transformer.h.1.mlp.experts.2.c_proj" if model.config.n_expert else "transformer.h.1.mlp.c_proj"
    for name in ("transformer.h.0.attn.c_attn", down, "lm_head", "transformer.wte"):
        a, b = get_module(q8, name).weight, get_module(loaded, name).weight
        assert isinstance(b, Int8Weight) and np.array_equal(a.q, b.q), name
        assert np.array_equal(b.scale, a.scale.astype(np.float16).astype(np.float32)), name
        worst = max(worst, float(np.max(np.abs(b.scale - a.scale) / a.scale)))
    assert 0 < worst <= 2.0 ** -11
    prompt = tokenizer.encode("the dog")
    assert greedy(loaded, prompt) == greedy(q8, prompt)
    save_gguf(loaded, tmp_path / "b.gguf", tok)
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()


@pytest.mark.parametrize("arch", ["gpt2", "llama", "llama-moe"])
def test_q4_0_keeps_the_int4_values_and_rounds_each_scale_to_fp16(tmp_path, tokenizer, arch):
    """tinylm -> GGUF -> tinylm: int4 values identical, every scale rounded to the nearest fp16, so no
    weight moves by more than 2^-11 of its group's largest |w|; GGUF -> tinylm -> GGUF: the same file."""
    model = model_of(tokenizer, ARCHS[arch])
    q4 = apply_plan(model, uniform_plan(model, "int4:g32"))
    save_gguf(q4, tmp_path / "a.gguf", tokenizer)
    loaded, tok = load_gguf(tmp_path / "a.gguf")
    assert plan_of(loaded) == plan_of(q4) and set(plan_of(q4).values()) == {"int4:g32"}
    worst = 0.0
    down = "transformer.h.1.mlp.experts.2.c_proj" if model.config.n_expert else "transformer.h.1.mlp.c_proj"
    for name in ("transformer.h.0.attn.c_attn", down, "lm_head", "transformer.wte"):
        a, b = get_module(q4, name).weight, get_module(loaded, name).weight
        assert isinstance(b, Int4Weight) and np.array_equal(a.q4, b.q4), name
        assert np.array_equal(b.scale, a.scale.astype(np.float16).astype(np.float32)), name
        moved = np.abs(b.dequantize() - a.dequantize()).reshape(a.scale.shape + (32,)).max(axis=-1)
        amax = 7 * a.scale                                              # the group's largest |w| (its q = +-7)
        worst = max(worst, float(np.max(moved / amax)))
    assert 0 < worst <= 2.0 ** -11
    # the loaded model is the int4 model with fp16-rounded scales, bit for bit (greedy text may differ
    # from the unrounded model's where two logits are nearly tied: this model is random)
    rounded = copy.deepcopy(q4)
    for _, m in rounded.named_modules():
        if isinstance(getattr(m, "weight", None), Int4Weight):
            m.weight = Int4Weight(m.weight.q4, m.weight.scale.astype(np.float16).astype(np.float32))
    x = np.array([tokenizer.encode("the dog sat")])
    with no_grad():
        np.testing.assert_array_equal(loaded(x)[0].data, rounded(x)[0].data)
    save_gguf(loaded, tmp_path / "b.gguf", tok)
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()


def test_load_finds_a_gguf_file_or_folder(tmp_path, tokenizer):
    save_gguf(model_of(tokenizer, ARCHS["llama"]), tmp_path / "model.gguf", tokenizer)
    assert detect(tmp_path) == "gguf" and detect(tmp_path / "model.gguf") == "gguf"
    model, tok = load(tmp_path)
    assert model.config.n_kv_head == 2 and tok is not None


# ----------------------------------------------------------------------------------------------
# the gguf package reads what tinylm writes


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_gguf_package_reads_tinylms_file(tmp_path, tokenizer, arch):
    model = model_of(tokenizer, ARCHS[arch])
    plan = uniform_plan(model, "int8:g32")
    plan["transformer.h.0.attn.c_proj"] = "fp16"  # a mixed plan: Q8_0, F16 and F32 in one file
    plan["transformer.h.1.attn.c_proj"] = "fp32"
    m = apply_plan(model, plan)
    save_gguf(m, tmp_path / "m.gguf", tokenizer)
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    field = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    C = 64
    assert field["general.architecture"] == arch
    assert field[f"{arch}.context_length"] == 24 and field[f"{arch}.embedding_length"] == C
    assert field[f"{arch}.block_count"] == 2 and field[f"{arch}.attention.head_count"] == 4
    assert field[f"{arch}.feed_forward_length"] == model.config.mlp_hidden_size
    if arch == "llama":
        assert field["llama.attention.head_count_kv"] == 2 and field["llama.rope.dimension_count"] == 16
        assert field["llama.rope.freq_base"] == pytest.approx(500.0)
        assert field["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
        assert field["tokenizer.ggml.pre"] == "llama-bpe"  # tinylm's gpt4 pattern is Llama 3's
    else:
        assert field["gpt2.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    assert field["tokenizer.ggml.model"] == "gpt2"
    tokens = field["tokenizer.ggml.tokens"]
    assert len(tokens) == model.config.vocab_size and tokens[ord(" ")] == "Ġ"
    assert tokens[tokenizer.special_tokens["<|endoftext|>"]] == "<|endoftext|>"
    assert field["tokenizer.ggml.eos_token_id"] == tokenizer.special_tokens["<|endoftext|>"]
    assert len(field["tokenizer.ggml.merges"]) == len(tokenizer.merges)
    assert field["tokenizer.ggml.add_bos_token"] is False

    tensors = {t.name: t for t in reader.tensors}
    qkv = "blk.1.attn_qkv.weight" if arch == "gpt2" else "blk.1.attn_q.weight"
    assert tensors[qkv].tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert tensors["blk.0.attn_output.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.1.attn_output.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert list(tensors["token_embd.weight"].shape) == [C, model.config.vocab_size]  # ggml: innermost first
    for name, layer, rows in [(qkv, "transformer.h.1.attn.c_attn", slice(0, C if arch == "llama" else 3 * C)),
                              ("blk.0.attn_output.weight", "transformer.h.0.attn.c_proj", slice(None)),
                              ("blk.1.attn_output.weight", "transformer.h.1.attn.c_proj", slice(None)),
                              ("token_embd.weight", "transformer.wte", slice(None))]:
        t = tensors[name]
        theirs = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1, int(t.shape[0]))
        ours = get_module(m, layer).weight
        if isinstance(ours, Int8Weight):  # Q8_0: the int8 values times the fp16-rounded scales
            expected = ours.q[rows] * np.repeat(ours.scale[rows].astype(np.float16).astype(np.float32), 32, axis=1)
        elif isinstance(ours, Fp16Weight):
            expected = ours.data[rows].astype(np.float32)
        else:
            expected = ours.data[rows]
        np.testing.assert_array_equal(theirs, expected, err_msg=name)


def test_the_gguf_package_reads_tinylms_q4_0_blocks(tmp_path, tokenizer):
    """Each block is Q4_0 as the spec says (fp16 d, then byte j = (q[j] + 8) | (q[j + 16] + 8) << 4),
    built here from the int4 values, and gguf.quants.dequantize gives exactly q * fp16(scale)."""
    model = model_of(tokenizer, ARCHS["llama"])
    plan = uniform_plan(model, "int4:g32")
    plan["transformer.h.0.attn.c_proj"] = "int8:g32"  # Q4_0 beside Q8_0 and F32 in one file
    m = apply_plan(model, plan)
    save_gguf(m, tmp_path / "m.gguf", tokenizer)
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    assert reader.fields["general.file_type"].contents() == 2  # llama.cpp's MOSTLY_Q4_0
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["blk.0.attn_output.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    for name, layer in [("blk.1.ffn_down.weight", "transformer.h.1.mlp.c_proj"),
                        ("token_embd.weight", "transformer.wte"), ("output.weight", "lm_head")]:
        t, w = tensors[name], get_module(m, layer).weight
        assert t.tensor_type == gguf.GGMLQuantizationType.Q4_0
        n, k = w.shape
        q = ref.unpack_s4(w.q4).reshape(n, k // 32, 32).astype(np.int16)  # (N, K/32, 32) in -7..7
        u = (q + 8).astype(np.uint8)
        d = w.scale.astype("<f2").reshape(n, k // 32, 1).view(np.uint8)  # (N, K/32, 2)
        spec = np.concatenate([d, u[..., :16] | (u[..., 16:] << 4)], axis=-1)  # 18 bytes a block
        assert np.array_equal(np.asarray(t.data).reshape(-1), spec.reshape(-1)), name
        theirs = gguf.quants.dequantize(t.data, t.tensor_type).reshape(n, k)
        expected = q.reshape(n, k) * np.repeat(w.scale.astype(np.float16).astype(np.float32), 32, axis=1)
        np.testing.assert_array_equal(theirs, expected, err_msg=name)


@pytest.mark.parametrize("quantizer", ["gguf", "hand"])
def test_tinylm_reads_q4_0_written_by_the_gguf_package(tmp_path, tokenizer, quantizer):
    """gguf: the package's Q4_0 quantizer maps each block's largest |w| to q = -8 (d takes its sign),
    which tinylm's int4 does not have: the tensor is read as int8:g32 holding the same values.
    hand: blocks with q in -7..7 and some negative d: read as int4:g32 (d < 0 stored as (-q, -d)).
    Either way, exactly the values gguf.quants.dequantize gives."""
    model = model_of(tokenizer, ARCHS["llama"])
    save_gguf(model, tmp_path / "f32.gguf", tokenizer)
    reader = gguf.GGUFReader(tmp_path / "f32.gguf")
    w = gguf.GGUFWriter(str(tmp_path / "q.gguf"), "llama")
    for field in reader.fields.values():
        if not field.name.startswith(("GGUF.", "general.architecture")):
            w.add_key_value(field.name, field.contents(), field.types[0],
                            field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None)
    rng = np.random.default_rng(0)
    for t in reader.tensors:
        data = np.array(t.data)
        if t.name == "blk.0.ffn_up.weight":
            if quantizer == "gguf":
                blocks = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q4_0)
            else:                                                   # (N * K/32, 18) bytes, by the spec
                u = rng.integers(1, 16, (data.size // 32, 32)).astype(np.uint8)          # q = u - 8 in -7..7
                d = (rng.uniform(0.01, 0.1, (data.size // 32, 1)) * rng.choice([-1, 1], (data.size // 32, 1)))
                blocks = np.concatenate([d.astype("<f2").view(np.uint8), u[:, :16] | (u[:, 16:] << 4)], axis=1)
                blocks = blocks.reshape(data.shape[0], -1)
            up = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q4_0).reshape(data.shape)
            w.add_tensor(t.name, blocks, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
        else:
            w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    loaded, _ = load_gguf(tmp_path / "q.gguf")
    got = get_module(loaded, "transformer.h.0.mlp.c_up").weight
    assert isinstance(got, Int8Weight if quantizer == "gguf" else Int4Weight)
    np.testing.assert_array_equal(got.dequantize(), up)


def test_a_mixture_of_experts_is_written_as_llama_cpp_reads_mixtral(tmp_path, tokenizer):
    model = model_of(tokenizer, ARCHS["llama-moe"])
    save_gguf(model, tmp_path / "m.gguf", tokenizer)
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    assert reader.fields["llama.expert_count"].contents() == 3
    assert reader.fields["llama.expert_used_count"].contents() == 2
    tensors = {t.name: t for t in reader.tensors}
    H = model.config.mlp_hidden_size
    assert list(map(int, tensors["blk.1.ffn_gate_inp.weight"].shape)) == [64, 3]
    assert list(map(int, tensors["blk.1.ffn_down_exps.weight"].shape)) == [H, 64, 3]  # ggml: innermost first
    stacked = np.asarray(tensors["blk.1.ffn_up_exps.weight"].data).reshape(3, H, 64)
    for e in range(3):
        expert = get_module(model, f"transformer.h.1.mlp.experts.{e}.c_up")
        np.testing.assert_array_equal(stacked[e], expert.weight.data)


def test_tinylm_reads_a_llama_written_by_the_gguf_package(tmp_path, tokenizer):
    """A file from gguf's own GGUFWriter, with only llama.cpp's standard keys (no tinylm.* keys): tinylm
    builds the model from them and computes the same logits."""
    model = model_of(tokenizer, ARCHS["llama"])
    C, kv = 64, 32
    w = gguf.GGUFWriter(str(tmp_path / "other.gguf"), "llama")
    w.add_context_length(24)
    w.add_embedding_length(C)
    w.add_block_count(2)
    w.add_feed_forward_length(model.config.mlp_hidden_size)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(500.0)
    w.add_layer_norm_rms_eps(1e-5)
    p = {n: a.data for n, a in model.named_parameters()}
    h = "transformer.h.{}."
    w.add_tensor("token_embd.weight", p["transformer.wte.weight"])
    for i in range(2):
        qkv = p[h.format(i) + "attn.c_attn.weight"]
        for name, value in [("attn_norm", p[h.format(i) + "ln_1.weight"]), ("attn_q", qkv[:C]),
                            ("attn_k", qkv[C:C + kv]), ("attn_v", qkv[C + kv:]),
                            ("attn_output", p[h.format(i) + "attn.c_proj.weight"]),
                            ("ffn_norm", p[h.format(i) + "ln_2.weight"]),
                            ("ffn_gate", p[h.format(i) + "mlp.c_fc.weight"]),
                            ("ffn_up", p[h.format(i) + "mlp.c_up.weight"]),
                            ("ffn_down", p[h.format(i) + "mlp.c_proj.weight"])]:
            w.add_tensor(f"blk.{i}.{name}.weight", np.ascontiguousarray(value))
    w.add_tensor("output_norm.weight", p["transformer.ln_f.weight"])
    w.add_tensor("output.weight", p["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="vocab_size"):  # no vocab_size and no tokenizer: refused clearly
        load_gguf(tmp_path / "other.gguf")

    w = gguf.GGUFWriter(str(tmp_path / "other2.gguf"), "llama")  # again, now with the vocabulary size
    reader = gguf.GGUFReader(tmp_path / "other.gguf")
    for f in reader.fields.values():
        if f.name.startswith("llama."):
            w.add_key_value(f.name, f.contents(), f.types[0])
    w.add_vocab_size(model.config.vocab_size)
    for t in reader.tensors:
        w.add_tensor(t.name, np.array(t.data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    loaded, tok = load_gguf(tmp_path / "other2.gguf")
    assert tok is None and loaded.config.rope_theta == 500.0 and loaded.config.kv_heads == 2
    x = np.array([tokenizer.encode("the cat sat")])
    with no_grad():
        np.testing.assert_array_equal(loaded(x)[0].data, model(x)[0].data)


# ----------------------------------------------------------------------------------------------
# what GGUF (as llama.cpp reads it) cannot carry


@pytest.mark.parametrize("opts, plan, message", [
    (dict(n_expert=2), None, "gpt2 has no mixture of experts"),
    (dict(pos="rope"), None, "neither"),  # a GPT-2 with rotary positions: no such llama.cpp architecture
    (dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=True), None, "bias=True"),
    (ARCHS["llama"], "int8:g64", "Q8_0 has groups of 32"),
    (ARCHS["llama"], "int4:g64", "Q4_0 has groups of 32"),
])
def test_save_gguf_refuses_what_llama_cpp_cannot_run(tmp_path, tokenizer, opts, plan, message):
    model = model_of(tokenizer, opts)
    if plan:
        model = apply_plan(model, uniform_plan(model, plan))
    with pytest.raises(ValueError, match=message):
        save_gguf(model, tmp_path / "m.gguf", tokenizer)
    assert not (tmp_path / "m.gguf").exists()


def test_save_gguf_refuses_a_scale_fp16_cannot_hold(tmp_path, tokenizer):
    model = apply_plan(model_of(tokenizer, ARCHS["llama"]), uniform_plan(model_of(tokenizer, ARCHS["llama"]),
                                                                          "int4:g32"))
    w = get_module(model, "transformer.h.0.attn.c_proj").weight
    model.transformer.h[0].attn.c_proj.weight = Int4Weight(w.q4, w.scale * 1e8)   # weights of ~1e7
    with pytest.raises(ValueError, match="transformer.h.0.attn.c_proj has a scale of .* beyond fp16's 65504"):
        save_gguf(model, tmp_path / "m.gguf", tokenizer)
    assert not (tmp_path / "m.gguf").exists()


def test_save_gguf_refuses_a_pre_split_pattern_llama_cpp_does_not_have(tmp_path):
    tok = Tokenizer().train(TEXT, 270, pattern=r"\S+|\s+")
    with pytest.raises(ValueError, match="pattern"):
        save_gguf(model_of(tok, ARCHS["llama"]), tmp_path / "m.gguf", tok)


# ----------------------------------------------------------------------------------------------
# hostile files


@pytest.fixture(scope="module")
def good(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("gguf") / "m.gguf"
    save_gguf(apply_plan(model_of(tokenizer, ARCHS["llama"]), uniform_plan(model_of(tokenizer, ARCHS["llama"]),
                                                                          "int8:g32")), path, tokenizer)
    return path.read_bytes()


def _find(data, text):
    return data.index(text.encode())


def _put(data, offset, fmt, value):
    data = bytearray(data)
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


def _tensor_info(data, name):
    """Offset of the uint32 n_dims that follows tensor `name` in the tensor infos."""
    return data.index(struct.pack("<Q", len(name)) + name.encode()) + 8 + len(name)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"GGUG" + d[4:], "not a GGUF file"),
    (lambda d: d[:10], "too short"),
    (lambda d: d[:-100], "does not fit"),
    (lambda d: d[:2000], "truncated|claims"),
    (lambda d: _put(d, 4, "<I", 9), "version 9"),
    (lambda d: _put(d, 8, "<Q", 2**60), "more than"),  # tensor count: no list of 2^60 entries is made
    (lambda d: _put(d, 16, "<Q", 2**40), "more than"),  # metadata count
    (lambda d: _put(d, 24, "<Q", 2**62), "truncated"),  # the first key's length
    (lambda d: _put(d, _find(d, "tokenizer.ggml.tokens") + 21 + 4, "<Q", 2**50), "claims"),  # array count
    (lambda d: _put(d, _find(d, "general.architecture") + 20, "<I", 77), "value type 77"),
    (lambda d: _put(d, _tensor_info(d, "blk.0.attn_q.weight") + 4 + 16, "<I", 3), "ggml type 3"),  # Q4_1
    (lambda d: _put(d, _tensor_info(d, "blk.0.attn_q.weight") + 4 + 16, "<I", 4242), "ggml type 4242"),
    (lambda d: _put(d, _tensor_info(d, "blk.0.attn_q.weight"), "<I", 9), "9 dimensions"),
    (lambda d: _put(d, _tensor_info(d, "blk.0.attn_q.weight") + 4 + 16 + 4, "<Q", 2**40), "does not fit"),
    (lambda d: _put(d, _tensor_info(d, "blk.0.attn_q.weight") + 4 + 16 + 4, "<Q", 8), "aligned"),
    (lambda d: _put(d, _tensor_info(d, "blk.0.attn_q.weight") + 4, "<Q", 2**40), "does not fit"),  # dims
    (lambda d: _put(d, _tensor_info(d, "blk.0.attn_q.weight") + 4 + 8, "<Q", 3), "does not match|is \\("),
    (lambda d: d.replace(struct.pack("<Q", 5) + b"llama", struct.pack("<Q", 5) + b"bloom", 1), "reads 'gpt2' and"),
])
def test_hostile_gguf_files_are_clear_errors(tmp_path, good, mutate, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(mutate(good))
    with pytest.raises(ValueError, match=message):
        load_gguf(path)


# ----------------------------------------------------------------------------------------------
# the command line


def test_tinylm_export_format_gguf_with_a_plan(tmp_path, tokenizer, capsys):
    from tinylm.io.runs import save_checkpoint

    save_checkpoint(tmp_path / "run", model_of(tokenizer, ARCHS["llama"]), tokenizer)
    out = tmp_path / "out"
    assert cli.main(["export", "--format", "gguf", "--run", str(tmp_path / "run"), "--out", str(out),
                     "--plan", "int8"]) == 0
    assert "llama-cli -m" in capsys.readouterr().out
    model, _ = load(out)
    assert set(plan_of(model).values()) == {"int8:g32"}
    assert cli.main(["export", "--format", "gguf", "--run", str(tmp_path / "run"), "--out", str(out),
                     "--plan", "int4:g32", "--force"]) == 0
    model, _ = load(out)
    assert set(plan_of(model).values()) == {"int4:g32"}
