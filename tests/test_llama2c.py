"""llama2.c checkpoints: versions 0, 1 and 2 and tokenizer.bin, round trips, run.c's own arithmetic (an
independent NumPy reading of run.c and runq.c in runc_reference.py), and hostile files."""
import os
import struct

import numpy as np
import pytest
from runc_reference import RunC, RunCTokenizer

from tinylm import cli
from tinylm.autograd import no_grad
from tinylm.generate import generate
from tinylm.io import detect, load
from tinylm.io.llama2c import (
    load_llama2c,
    read_tokenizer_bin,
    save_llama2c,
    to_llama2c_ids,
    tokenizer_from_bin,
    write_tokenizer_bin,
)
from tinylm.model import GPT, GPTConfig
from tinylm.quant.layers import Int8Weight
from tinylm.quant.plan import apply_plan, get_module, uniform_plan
from tinylm.tokenizer import Tokenizer

TEXT = "the cat sat on the mat; the dog sat on the log. héllo wörld! " * 20


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer().train(TEXT, 280)


def llama(tokenizer, seed=0, **kw):
    """A small Llama whose weights are scaled up so its logits are far from zero (an untrained model's
    are tiny, and a test of agreement should not pass because everything is ~0)."""
    config = GPTConfig.llama(**{**dict(vocab_size=tokenizer.vocab_size + 4, block_size=24, n_layer=2, n_head=4,
                                       n_embd=32, n_kv_head=2), **kw})
    model = GPT(config, seed=seed).eval()
    for name, p in model.named_parameters():
        if p.data.ndim == 2:
            p.data *= 5.0
    return model


def weights(model):
    """{name: float32 array}, quantized layers dequantized, for comparison."""
    out = {}
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if w is not None and name:
            out[name] = w.dequantize() if hasattr(w, "dequantize") else w.data
    return out


def greedy(model, ids, n=12):
    return generate(model, np.array([ids]), n, temperature=0)[0].tolist()


# ----------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("tied", [True, False])
def test_fp32_round_trip_keeps_every_weight_and_the_greedy_tokens(tmp_path, tokenizer, version, tied):
    model = llama(tokenizer, tie_head=tied)
    save_llama2c(model, tmp_path, tokenizer, version=version)
    loaded, tok = load_llama2c(tmp_path / "model.bin")
    assert loaded.config.tie_head == tied and loaded.config.n_kv_head == 2
    assert loaded.config.vocab_size == model.config.vocab_size + 3  # <unk>, BOS, EOS in front
    ours, theirs = weights(model), weights(loaded)
    assert ours.keys() == theirs.keys()
    for name, w in ours.items():
        stored = theirs[name][3:] if name in ("transformer.wte", "lm_head") else theirs[name]
        assert np.array_equal(stored, w), name  # bit for bit
        if name in ("transformer.wte", "lm_head"):
            assert not theirs[name][:3].any()  # the three new rows are zeros
    prompt = tokenizer.encode("the cat")
    assert tok.encode("the cat") == [i + 3 for i in prompt]
    assert greedy(loaded, [i + 3 for i in prompt]) == [i + 3 for i in greedy(model, prompt)]
    text = tokenizer.decode(greedy(model, prompt))
    assert tok.decode(greedy(loaded, tok.encode("the cat"))) == text


@pytest.mark.parametrize("tied", [True, False])
def test_int8_round_trip_keeps_the_int8_values_and_scales_bit_for_bit(tmp_path, tokenizer, tied):
    model = apply_plan(llama(tokenizer, tie_head=tied), uniform_plan(llama(tokenizer, tie_head=tied), "int8:g16"))
    save_llama2c(model, tmp_path, tokenizer, version=2)
    loaded, _ = load_llama2c(tmp_path / "model.bin")
    for name in ("transformer.h.1.attn.c_attn", "transformer.h.0.mlp.c_up", "lm_head", "transformer.wte"):
        a, b = get_module(model, name).weight, get_module(loaded, name).weight
        assert isinstance(b, Int8Weight) and b.group_size == 16
        rows = slice(3, None) if name in ("lm_head", "transformer.wte") else slice(None)
        assert np.array_equal(a.q, b.q[rows]) and np.array_equal(a.scale, b.scale[rows]), name
    prompt = tokenizer.encode("the dog")
    assert greedy(loaded, [i + 3 for i in prompt]) == [i + 3 for i in greedy(model, prompt)]


def test_a_fp32_model_written_as_version_2_is_tinylms_int8(tmp_path, tokenizer):
    """Version 2 from an fp32 model quantizes exactly as tinylm's int8 plan does (group 64 halved to 32:
    it must divide n_embd 32 and the MLP width 96)."""
    model = llama(tokenizer)
    save_llama2c(model, tmp_path, tokenizer, version=2)
    loaded, _ = load_llama2c(tmp_path / "model.bin")
    q = apply_plan(model, uniform_plan(model, "int8:g32"))
    a, b = get_module(q, "transformer.h.0.attn.c_proj").weight, get_module(loaded, "transformer.h.0.attn.c_proj").weight
    assert np.array_equal(a.q, b.q) and np.array_equal(a.scale, b.scale)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_llama2c_to_tinylm_to_llama2c_is_the_same_file(tmp_path, tokenizer, version):
    save_llama2c(llama(tokenizer, tie_head=False), tmp_path / "a", tokenizer, version=version)
    model, tok = load(tmp_path / "a")
    save_llama2c(model, tmp_path / "b", tok, version=version)
    for name in ("model.bin", "tokenizer.bin"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_load_opens_the_folder_or_the_bin_file(tmp_path, tokenizer):
    save_llama2c(llama(tokenizer), tmp_path, tokenizer)
    assert detect(tmp_path) == "llama2c" and detect(tmp_path / "model.bin") == "llama2c"
    os.remove(tmp_path / "tokenizer.json")  # then tokenizer.bin is read: no pre-split pattern, same ids
    model, tok = load(tmp_path / "model.bin")
    assert tok.pattern is None and tok.encode("the cat") == [i + 3 for i in tokenizer.encode("the cat")]


# ----------------------------------------------------------------------------------------------
# run.c's own arithmetic


@pytest.mark.parametrize("version", [0, 2])
def test_run_c_computes_the_same_logits_as_tinylm(tmp_path, tokenizer, version):
    """runc_reference reads the file as run.c (version 0) or runq.c (version 2) do and runs their forward
    pass one token at a time; tinylm's model loaded from the same file gives the same logits."""
    save_llama2c(llama(tokenizer, tie_head=False), tmp_path, tokenizer, version=version)
    ids = [i + 3 for i in tokenizer.encode("the cat sat on the mat")]
    runc = RunC(tmp_path / "model.bin")
    theirs = np.stack([runc.forward(t, pos) for pos, t in enumerate(ids)])  # (T, V)
    model, _ = load(tmp_path / "model.bin")
    with no_grad():
        ours = model(np.array([ids]))[0].data[0]  # (T, V)
    assert np.abs(ours).max() > 1.0
    # fp32: float rounding only. int8: both quantize every activation per group at run time, so a 1e-7
    # difference in a sum (another order) can flip one rounding and move a logit by a quantization step
    tolerance = 2e-4 if version == 0 else 0.03
    np.testing.assert_allclose(theirs, ours, atol=tolerance * np.abs(ours).max())
    assert (theirs.argmax(-1) == ours.argmax(-1)).all()
    with no_grad():  # and a position off by one (or another rotation convention) would not match
        shifted = model(np.array([[3] + ids]))[0].data[0, 1:]
    assert np.abs(shifted - theirs).max() > 10 * tolerance * np.abs(ours).max()


def test_run_c_reads_tokenizer_bin_and_decodes_exactly(tmp_path, tokenizer):
    save_llama2c(llama(tokenizer), tmp_path, tokenizer)
    V = tokenizer.vocab_size + 4 + 3
    rt = RunCTokenizer(tmp_path / "tokenizer.bin", V)
    ids = to_llama2c_ids(tokenizer)
    for i in range(3, ids.vocab_size):  # every token decodes to its bytes in run.c
        assert rt.decode(0, i) == ids.token_bytes(i), i
    # run.c's prompt encoding: BOS, a space in front, then merges by score over the whole text (no
    # pre-split): for this ASCII prompt that is tinylm's encoding of " " + prompt
    assert rt.encode("the cat sat") == [1] + [i + 3 for i in tokenizer.encode(" the cat sat")]
    assert rt.encode("héllo") == [1] + [i + 3 for i in tokenizer.encode(" héllo")]


def test_tokenizer_bin_round_trip_recovers_every_merge(tmp_path):
    trained = Tokenizer().train(open("/work/shared/data/tinyshakespeare.txt", encoding="utf-8").read()[:100_000],
                                600)
    ids = to_llama2c_ids(trained)
    write_tokenizer_bin(tmp_path / "tokenizer.bin", ids, ids.vocab_size + 5)  # 5 unused ids at the end
    back = tokenizer_from_bin(tmp_path / "tokenizer.bin", ids.vocab_size + 5)
    assert back.merges == ids.merges and back.special_tokens == ids.special_tokens
    assert all(back.decode([i]) == ids.decode([i]) for i in range(ids.vocab_size))


def test_a_tokenizer_bin_that_is_not_byte_level_bpe_loads_the_model_without_it(tmp_path, tokenizer):
    """A SentencePiece vocabulary (Llama 2's, the TinyStories models') has characters such as "的" (three
    bytes) as single pieces, which no merge of two tokens makes: the model loads, with a warning."""
    save_llama2c(llama(tokenizer), tmp_path, tokenizer)
    os.remove(tmp_path / "tokenizer.json")
    data = bytearray((tmp_path / "tokenizer.bin").read_bytes())
    last = data.rindex(b"\0\0\0\0") + 4  # the last token is an unused (empty) id: spell it as one piece
    assert last == len(data)
    data[last - 8:] = struct.pack("<fi", -0.5, 3) + "的".encode()
    (tmp_path / "tokenizer.bin").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="not one merge of two higher-scored tokens"):
        model, tok = load(tmp_path / "model.bin")
    assert tok is None and model.config.vocab_size == tokenizer.vocab_size + 4 + 3


# ----------------------------------------------------------------------------------------------
# what a llama2.c file cannot carry


@pytest.mark.parametrize("kw, message", [
    (dict(), "norm='layernorm'"),  # a GPT-2
    (dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, rope_theta=500.0), "rope_theta=500.0"),
    (dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, n_expert=2), "n_expert=2"),
    (dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=True), "bias=True"),
])
def test_save_llama2c_refuses_what_run_c_cannot_compute(tmp_path, kw, message):
    model = GPT(GPTConfig(vocab_size=300, block_size=8, n_layer=1, n_head=2, n_embd=16, **kw))
    with pytest.raises(ValueError, match=message):
        save_llama2c(model, tmp_path)
    assert not (tmp_path / "model.bin").exists()


# ----------------------------------------------------------------------------------------------
# hostile files


@pytest.fixture
def files(tmp_path, tokenizer):
    out = {}
    for version in (0, 1, 2):
        save_llama2c(llama(tokenizer), tmp_path / f"v{version}", tokenizer, version=version)
        out[version] = (tmp_path / f"v{version}" / "model.bin").read_bytes()
    out["tokenizer"] = (tmp_path / "v0" / "tokenizer.bin").read_bytes()
    return out


def _mutated(tmp_path, data, name="model.bin"):
    path = tmp_path / "bad" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def _put(data, offset, fmt, *values):
    data = bytearray(data)
    struct.pack_into(fmt, data, offset, *values)
    return bytes(data)


@pytest.mark.parametrize("version, mutate, message", [
    (1, lambda d: d[:-1], "truncated"),
    (2, lambda d: d[:5000], "truncated"),
    (0, lambda d: d[:20], "too short"),
    (1, lambda d: d + b"\0", "trailing bytes"),
    (1, lambda d: _put(d, 4, "<i", 7), "version 7"),
    (0, lambda d: _put(d, 0, "<i", -1), "not a llama2.c model"),
    (1, lambda d: _put(d, 8, "<i", 2**30), "the header describes"),  # huge dim: never allocated
    (1, lambda d: _put(d, 32, "<i", 2**30), "seq_len"),
    (0, lambda d: _put(d, 8, "<i", 1000), "the header describes"),  # n_layers
    (1, lambda d: _put(d, 24, "<i", 3), "n_kv_heads 3"),
    (1, lambda d: _put(d, 36, "<B", 7), "shared_classifier flag is 7"),
    (2, lambda d: _put(d, 37, "<i", 0), "group_size 0"),
    (2, lambda d: _put(d, 37, "<i", 5), "group_size 5"),
    (2, lambda d: _put(d, len(d) - 4, "<f", -1.0), "scale must be finite and >= 0"),
    (2, lambda d: _put(d, len(d) - 4, "<f", float("nan")), "scale must be finite and >= 0"),
])
def test_hostile_model_files_are_clear_errors(tmp_path, files, version, mutate, message):
    path = _mutated(tmp_path, mutate(files[version]))
    with pytest.raises(ValueError, match=message):
        load_llama2c(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[:-3], "truncated|length"),
    (lambda d: d[:2], "max_token_length"),
    (lambda d: _put(d, 0, "<i", 2**30), "max_token_length is"),
    (lambda d: _put(d, 8, "<i", 2**30), "token 0 has length"),
    (lambda d: d + b"xx", "bytes after the last"),
    (lambda d: _put(d, 4 + 3 * 8 + len(b"<unk>\n<s>\n\n</s>\n") + 4 + 104 * 9 + 0, "<i", 2),
     "token|byte"),  # a byte token of another length
])
def test_hostile_tokenizer_files_are_clear_errors(tmp_path, files, mutate, message):
    path = _mutated(tmp_path, mutate(files["tokenizer"]), "tokenizer.bin")
    with pytest.raises(ValueError, match=message):
        tokenizer_from_bin(path, len(read_tokenizer_bin(_mutated(tmp_path, files["tokenizer"], "t.bin"))[0]))


# ----------------------------------------------------------------------------------------------
# the command line


def test_tinylm_export_format_llama2c(tmp_path, tokenizer, capsys):
    from tinylm.io.runs import save_checkpoint

    model = llama(tokenizer)
    save_checkpoint(tmp_path / "run", model, tokenizer)
    out = str(tmp_path / "out")
    assert cli.main(["export", "--format", "llama2c", "--run", str(tmp_path / "run"), "--out", out]) == 0
    assert "./run " in capsys.readouterr().out
    assert cli.main(["export", "--format", "llama2c", "--run", str(tmp_path / "run"), "--out", out]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["export", "--format", "llama2c", "--run", str(tmp_path / "run"), "--out", out, "--force",
                     "--llama2c-version", "2"]) == 0
    loaded, _ = load(out)
    assert isinstance(get_module(loaded, "lm_head").weight, Int8Weight)
