"""The C runtime (runtime/tinylm_runtime.c) against the Python model it was exported from.

Greedy tokens must be identical for 200 tokens (past block_size, so the cache restart is exercised too)
in fp32, fp16, int8 and int4 per group and per channel, mixed plans and a mixture-of-experts model; logits agree
within LOGIT_TOL; seeded sampling (temperature, top-k, top-p) picks the same tokens with the shared
PRNG; C's BPE gives the same ids as tinylm.Tokenizer on real text, Chinese included.
"""
import os
import struct

import numpy as np
import pytest

from tinylm.autograd import no_grad
from tinylm.data import load_corpus
from tinylm.generate import TinyRNG, generate
from tinylm.io.quantized import load_quantized, save_quantized
from tinylm.model import GPT, GPTConfig
from tinylm.quant import apply_plan, uniform_plan
from tinylm.tokenizer import Tokenizer
from tinylm.train import TrainConfig, train

pytest.importorskip("tinylm._kernels")
from tinylm.io.cblob import blob_bytes, c_sources, export_c, unicode_ranges, write_blob  # noqa: E402
from tinylm.io.cruntime import CRuntime, CRuntimeError, validate_blob  # noqa: E402

# fp32 logits: the C forward pass adds in another order than NumPy's (pairwise sums, BLAS). Measured on
# the fixture models over 32 positions: max |diff| 2.4e-6 (fp32), 1.3e-4 (fp16), 1.2e-6 (int8 g16 and
# per channel), 1.9e-6 / 9.5e-7 (MoE fp32 / int8). An fp16/int8 layer rounds its input activations, and
# a 1e-6 change can move one rounding step, so quantized models get the looser bound. int4 (g32 and per
# channel, every matrix): 9.5e-7 and 1.4e-6. The mixed fp16/int8/int4 plan below: 31 of 32 positions
# within 1e-6, one at 4.8e-3 (an activation's rounding step flipped), so it gets "mixed".
LOGIT_TOL = {"fp32": 1e-4, "quant": 5e-3, "mixed": 2e-2}
N_NEW = 200


# ----------------------------------------------------------------------------------------------
# fixtures: a tokenizer and two small models trained for a few seconds on the built-in corpus


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("builtin")


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return Tokenizer().train(corpus[:200_000], 384, pattern="gpt4")


def _trained(tokenizer, corpus, steps, **kw):
    ids = np.array(tokenizer.encode(corpus[:300_000]), np.int64)
    split = int(len(ids) * 0.9)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=4, n_embd=64, **kw),
                seed=3)
    cfg = TrainConfig(batch_size=8, max_iters=steps, lr=3e-3, min_lr=3e-4, warmup_iters=10,
                      eval_interval=steps, eval_iters=1)
    train(model, ids[:split], ids[split:], cfg, verbose=False)
    model.eval()
    return model


@pytest.fixture(scope="module")
def model(tokenizer, corpus):
    return _trained(tokenizer, corpus, 120)


@pytest.fixture(scope="module")
def moe_model(tokenizer, corpus):
    return _trained(tokenizer, corpus, 80, n_expert=4, expert_top_k=2)


PROMPT = "The Python interpreter"


def _python_tokens(model, tokenizer, **kw):
    ids = tokenizer.encode(PROMPT)
    return generate(model, np.array(ids), N_NEW, seed=kw.pop("seed", 0), rng="tinylm", **kw).tolist()


def _check_same_greedy(model, tokenizer, tol):
    rt = CRuntime.from_model(model, tokenizer)
    ids = tokenizer.encode(PROMPT)
    want = _python_tokens(model, tokenizer, temperature=0)
    got = rt.generate(ids, N_NEW, temperature=0)
    assert len(got) == len(ids) + N_NEW
    assert got == want, f"first difference at token {next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)}"
    rt2 = CRuntime.from_model(model, tokenizer)  # a fresh cache: logits of the whole window
    window = want[:model.config.block_size]
    with no_grad():
        ref, _ = model(np.array([window]))
    diff = np.abs(rt2.logits(window) - ref.data[0]).max()
    assert diff < tol, diff
    return diff


# ----------------------------------------------------------------------------------------------
# greedy generation and logits, one test per precision


@pytest.mark.slow
def test_greedy_tokens_identical_fp32(model, tokenizer):
    _check_same_greedy(model, tokenizer, LOGIT_TOL["fp32"])


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8:g16", "int8:channel", "int4:g32", "int4:channel"])
def test_greedy_tokens_identical_quantized(model, tokenizer, precision):
    q = apply_plan(model, uniform_plan(model, precision))
    _check_same_greedy(q, tokenizer, LOGIT_TOL["quant"])


@pytest.mark.slow
def test_greedy_tokens_identical_int4_is_int4_in_the_blob(model, tokenizer):
    # uniform int4:g32 (the tied embedding / head and wpe too) is version 2 with every matrix tagged
    # int4 at its packed size; the tokens of the C runtime are Python's
    q = apply_plan(model, uniform_plan(model, "int4:g32"))
    blob = blob_bytes(q, tokenizer)
    assert blob[4] == 2 and blob_bytes(model, tokenizer)[4] == 1  # int4 needs version 2, the rest stays 1
    n, table = int.from_bytes(blob[60:64], "little"), int.from_bytes(blob[64:68], "little")
    entries = [struct.unpack_from("<12I", blob, table + 48 * i) for i in range(n)]
    matrices = [e for e in entries if e[5] > 1]
    assert matrices and all(e[3] == 3 and e[4] == 32 and e[8] == e[5] * e[6] // 2 and
                            e[10] == 4 * e[5] * e[6] // 32 for e in matrices)
    assert len(blob) < 0.4 * len(blob_bytes(model, tokenizer))
    _check_same_greedy(q, tokenizer, LOGIT_TOL["quant"])


@pytest.mark.slow
def test_greedy_tokens_identical_mixed_fp16_int8_int4_plan(model, tokenizer, tmp_path):
    plan = {"transformer.h.0.attn.c_attn": "int4:g32", "transformer.h.0.attn.c_proj": "fp16",
            "transformer.h.0.mlp.c_fc": "int8:g32", "transformer.h.0.mlp.c_proj": "int4:g64",
            "transformer.h.1.attn.c_attn": "int8:channel", "transformer.h.1.mlp.c_fc": "int4:channel",
            "transformer.h.1.mlp.c_proj": "int4:g128", "lm_head": "int4:g32", "transformer.wpe": "fp16"}
    save_quantized(tmp_path / "q", model, plan, tokenizer)
    q = load_quantized(tmp_path / "q")  # int4 layers as a saved folder holds them, exported as they are
    _check_same_greedy(q, tokenizer, LOGIT_TOL["mixed"])


@pytest.mark.slow
def test_greedy_tokens_identical_mixed_plan_from_a_saved_folder(model, tokenizer, tmp_path):
    plan = {"transformer.h.0.attn.c_attn": "fp16", "transformer.h.0.mlp.c_fc": "int8:g32",
            "transformer.h.1.mlp.c_proj": "int8:channel", "lm_head": "int8:g64", "transformer.wpe": "fp16"}
    save_quantized(tmp_path / "q", model, plan, tokenizer)
    q = load_quantized(tmp_path / "q")  # what `tinylm export --format c` reads from a quantized folder
    _check_same_greedy(q, tokenizer, LOGIT_TOL["quant"])


@pytest.mark.slow
def test_greedy_tokens_identical_mixture_of_experts(moe_model, tokenizer):
    _check_same_greedy(moe_model, tokenizer, LOGIT_TOL["fp32"])
    q = apply_plan(moe_model, uniform_plan(moe_model, "int8:g32"))
    _check_same_greedy(q, tokenizer, LOGIT_TOL["quant"])


@pytest.mark.slow
@pytest.mark.parametrize("kw", [dict(temperature=1.0), dict(temperature=0.8, top_k=20),
                                dict(temperature=1.2, top_p=0.9), dict(temperature=0.7, top_k=50, top_p=0.8)])
def test_seeded_sampling_identical(model, tokenizer, kw):
    rt = CRuntime.from_model(model, tokenizer)
    ids = tokenizer.encode(PROMPT)
    for seed in (0, 7):
        want = _python_tokens(model, tokenizer, seed=seed, **kw)
        assert rt.generate(ids, N_NEW, seed=seed, **kw) == want
    assert rt.generate(ids, N_NEW, seed=0, **kw) != rt.generate(ids, N_NEW, seed=1, **kw)  # the seed matters


def test_tinyrng_is_the_c_generator():
    from tinylm._kernels import ffi, lib
    for seed in (0, 1, 2**64 - 1):
        s = ffi.new("tinylm_sampler *")
        assert lib.tinylm_sampler_init(s, 1.0, 0, 1.0, seed) == 0
        assert [lib.tinylm_random(s) for _ in range(100)] == TinyRNG(seed).random(100).tolist()
    with pytest.raises(ValueError, match="seed"):
        TinyRNG(-1)
    with pytest.raises(ValueError, match="rng"):
        generate(GPT(GPTConfig(n_layer=1, n_embd=16, n_head=2)), np.array([1]), 1, rng="mt19937")


# ----------------------------------------------------------------------------------------------
# the tokenizer in C


TEXTS = ["我喜欢学习AI", "Hello, world!  It's   12345 o'clock\n\n\tdon'T 'LL 'ſ",
         "  leading spaces\r\n\r\nwindows lines   \n trailing   ", "emoji 🤖🎉 and ünïcödé, Ελληνικά, русский, العربية",
         "numbers 1234567 ٣٤٥ ⅷ ½, punctuation!?... ---> <|endoftext|> x", ""]


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2", None])
def test_c_encode_equals_python_encode(corpus, pattern):
    tok = Tokenizer().train(corpus[:100_000] + " ".join(TEXTS) * 20, 420, pattern=pattern)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16))
    rt = CRuntime.from_model(model, tok)
    texts = TEXTS + ([corpus[200_000:260_000]] if pattern else [corpus[200_000:203_000]])
    for text in texts:
        assert rt.encode(text) == tok.encode_ordinary(text), text[:40]
        ids = tok.encode_ordinary(text)
        assert rt.decode_bytes(ids) == text.encode("utf-8")


def test_c_encode_on_random_unicode(tokenizer):
    rng = np.random.default_rng(0)
    pool = list(" \t\n\r'sSdltvre0123456789aZ.,!?-é我学🤖٣ſ\u00a0\u2028\u3000")
    rt = CRuntime.from_model(GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2,
                                           n_embd=16)), tokenizer)
    for _ in range(300):
        text = "".join(rng.choice(pool, size=rng.integers(1, 40)))
        assert rt.encode(text) == tokenizer.encode_ordinary(text), repr(text)


def test_unicode_ranges_are_sorted_and_classify_like_regex():
    r = unicode_ranges()
    assert all(a[1] < b[0] for a, b in zip(r, r[1:]))
    cls = {c: bits for lo, hi, bits in r for c in (lo, hi)}
    assert cls[ord("A")] == 1 and cls.get(ord("0")) == 2 and cls.get(ord(" ")) == 4


# ----------------------------------------------------------------------------------------------
# files and bad inputs


def test_export_c_writes_the_folder_and_refuses_to_overwrite(model, tokenizer, tmp_path):
    out = tmp_path / "c"
    size = export_c(model, tokenizer, str(out))
    assert sorted(os.listdir(out)) == ["README.md", "model.bin", "model_data.c", "model_data.h"]
    blob = (out / "model.bin").read_bytes()
    assert len(blob) == size and blob[:4] == b"TLMB" and len(blob) % 16 == 0
    assert validate_blob(blob)["n_layer"] == 2
    assert f"tinylm_model_data_len = {size};" in (out / "model_data.c").read_text()
    with pytest.raises(FileExistsError, match="--force"):
        export_c(model, tokenizer, str(out))
    export_c(model, tokenizer, str(out), force=True)


def test_cli_export_c_and_generate_engine_c(model, tokenizer, tmp_path, capsys):
    from tinylm.cli import main
    run = tmp_path / "run"
    _save_run(model, tokenizer, run)
    out = tmp_path / "exported"
    assert main(["export", "--format", "c", "--run", str(run), "--out", str(out)]) == 0
    assert (out / "model.bin").exists()
    before = (out / "model.bin").read_bytes()
    assert main(["export", "--format", "c", "--run", str(run), "--out", str(out)]) != 0
    assert "--force" in capsys.readouterr().err
    assert (out / "model.bin").read_bytes() == before
    assert main(["export", "--format", "c", "--run", str(run), "--plan", "int8:g32", "--out", str(out),
                 "--force"]) == 0
    capsys.readouterr()
    args = ["generate", "--run", str(run), "--prompt", PROMPT, "--max-new-tokens", "30", "--temperature", "0"]
    assert main(args + ["--engine", "c"]) == 0
    c_text = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == c_text
    # a folder written by `tinylm quantize --out` exports and generates the same way
    qdir = tmp_path / "q"
    save_quantized(qdir, model, uniform_plan(model, "int8:g32"), tokenizer)
    assert main(["export", "--format", "c", "--run", str(qdir), "--out", str(tmp_path / "qc")]) == 0
    capsys.readouterr()
    assert main(["generate", "--run", str(qdir), "--engine", "c", "--prompt", PROMPT, "--max-new-tokens", "30",
                 "--temperature", "0"]) == 0
    q_text = capsys.readouterr().out
    assert q_text.startswith(PROMPT) and len(q_text) > len(PROMPT) + 5
    assert main(["export", "--format", "c", "--run", str(qdir), "--plan", "fp16", "--out", str(tmp_path / "x")]) != 0
    assert "already quantized" in capsys.readouterr().err
    assert main(["export", "--format", "hf", "--run", str(run), "--plan", "fp16", "--out", str(tmp_path / "h")]) != 0
    assert "--plan applies to --format gguf and c" in capsys.readouterr().err
    assert main(args + ["--plan", "int8", "--engine", "c"]) == 0  # a plan runs the same tokens in both engines
    c_int8 = capsys.readouterr().out
    assert main(args + ["--plan", "int8"]) == 0
    assert capsys.readouterr().out == c_int8
    assert main(args + ["--plan", "int4:g32", "--engine", "c"]) == 0  # int4 too (a version-2 blob)
    c_int4 = capsys.readouterr().out
    assert main(args + ["--plan", "int4:g32"]) == 0
    assert capsys.readouterr().out == c_int4
    sampled = ["generate", "--run", str(run), "--prompt", PROMPT, "--max-new-tokens", "40", "--seed", "5"]
    assert main(sampled + ["--engine", "c", "--top-k", "30"]) == 0
    c_text = capsys.readouterr().out
    assert main(sampled + ["--rng", "tinylm", "--top-k", "30"]) == 0
    assert capsys.readouterr().out == c_text


def _save_run(model, tokenizer, run):
    from tinylm.io.runs import save_checkpoint
    save_checkpoint(str(run), model, tokenizer)


def test_write_blob_refuses_what_c_cannot_run(model, tokenizer, tmp_path):
    with pytest.raises(TypeError, match="tinylm GPT"):
        blob_bytes(object(), tokenizer)
    with pytest.raises(TypeError, match="Tokenizer"):
        blob_bytes(model, "not a tokenizer")
    custom = Tokenizer(pattern=r"\w+|\W")
    with pytest.raises(ValueError, match="custom regex"):
        blob_bytes(model, custom)
    llama = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16,
                          norm="rmsnorm"))
    with pytest.raises(ValueError, match="runs GPT-2's architecture.*norm=rmsnorm"):
        blob_bytes(llama, tokenizer)
    small = GPT(GPTConfig(vocab_size=256, block_size=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="384 tokens but the model only 256"):
        blob_bytes(small, tokenizer)
    with pytest.raises(ValueError, match="non-empty"):
        c_sources(b"")
    assert write_blob(model, tokenizer, tmp_path / "m.bin") == (tmp_path / "m.bin").stat().st_size
    with pytest.raises(FileExistsError, match="not a folder"):
        export_c(model, tokenizer, str(tmp_path / "m.bin"))
    with pytest.raises(TypeError, match="bytes"):
        validate_blob("model.bin")
    from tinylm.io import load
    with pytest.raises(FileNotFoundError, match="not found"):
        load(str(tmp_path / "nowhere"))


def test_cruntime_bad_arguments(model, tokenizer):
    rt = CRuntime.from_model(model, tokenizer)
    V, T = model.config.vocab_size, model.config.block_size
    with pytest.raises(ValueError, match="token"):
        rt.forward(V, 0)
    with pytest.raises(ValueError, match="pos"):
        rt.forward(0, T)
    with pytest.raises(TypeError, match="integer"):
        rt.forward(1.5, 0)
    with pytest.raises(ValueError, match="empty"):
        rt.generate([], 5)
    with pytest.raises(TypeError, match="integer token ids"):
        rt.generate(np.array([1.0, 2.0]), 5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        rt.generate([1], -1)
    with pytest.raises(ValueError, match="temperature"):
        rt.generate([1], 1, temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        rt.generate([1], 1, top_p=0)
    with pytest.raises(ValueError, match="top_k"):
        rt.generate([1], 1, top_k=0)
    with pytest.raises(ValueError, match="seed"):
        rt.generate([1], 1, seed=-3)
    with pytest.raises(TypeError, match="str"):
        rt.encode(b"bytes")
    with pytest.raises(ValueError, match="0 .."):
        rt.decode([V])
    assert rt.decode([]) == ""
    with pytest.raises(TypeError, match="bytes"):
        CRuntime("model.bin")
    with pytest.raises(CRuntimeError, match="magic"):
        CRuntime(b"X" * 256)
    with pytest.raises(CRuntimeError, match="header"):
        CRuntime(b"TLMB")


def test_validator_rejects_every_truncation_and_a_flipped_tensor_tag(model, tokenizer):
    blob = blob_bytes(GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=4, n_layer=1, n_head=1,
                                    n_embd=8)), tokenizer)
    validate_blob(blob)
    for n in list(range(0, 300)) + list(range(300, len(blob), 97)):
        with pytest.raises(CRuntimeError):
            validate_blob(blob[:n])
    bad = bytearray(blob)
    table = int.from_bytes(blob[64:68], "little")
    bad[table + 12] = 7  # dtype of the first tensor: not a precision
    with pytest.raises(CRuntimeError, match="precision tag"):
        validate_blob(bytes(bad))
    bad = bytearray(blob)
    bad[4] = 3  # version (this reader reads 1 and 2)
    with pytest.raises(CRuntimeError, match="version") as e:
        validate_blob(bytes(bad))
    assert e.value.status == -3


def _int4_blob(tokenizer):
    """A small blob with int4 layers (version 2) and the table entry of its int4 c_fc."""
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=4, n_layer=1, n_head=2, n_embd=64), seed=1)
    q = apply_plan(model, {"transformer.h.0.mlp.c_fc": "int4:g32", "transformer.h.0.mlp.c_proj": "int4:channel",
                           "lm_head": "int4:g64"})
    blob = blob_bytes(q, tokenizer)
    table = int.from_bytes(blob[64:68], "little")
    fc = next(table + 48 * i for i in range(int.from_bytes(blob[60:64], "little"))
              if struct.unpack_from("<I", blob, table + 48 * i)[0] == 13)
    return blob, fc


def test_validator_rejects_hostile_int4_entries(tokenizer):
    blob, fc = _int4_blob(tokenizer)
    assert blob[4] == 2 and validate_blob(blob)["n_embd"] == 64
    kind, _, _, dtype, gs, rows, cols, off, nbytes, soff, sbytes, _ = struct.unpack_from("<12I", blob, fc)
    assert (kind, dtype, gs, rows, cols, nbytes, sbytes) == (13, 3, 32, 256, 64, 256 * 32, 256 * 2 * 4)

    def refused(field, value, match):
        bad = bytearray(blob)
        struct.pack_into("<I", bad, fc + 4 * field, value)
        with pytest.raises(CRuntimeError, match=match) as e:
            validate_blob(bytes(bad))
        assert e.value.status == -6, e.value

    refused(8, rows * cols, "data_bytes")            # int8's size for an int4 tag
    refused(8, rows * cols // 2 - 16, "data_bytes")
    refused(10, sbytes // 2, "scale_bytes")
    refused(10, sbytes + 16, "scale_bytes")
    refused(4, 16, "multiple of 32")                 # divides cols, but int4 groups are Q4_0 blocks of 32
    refused(4, 48, "must divide cols")
    refused(4, 0, "must divide cols")
    refused(3, 4, "precision tag")
    bad = bytearray(blob)
    bad[off + 5] = 0x78                                # a high nibble of -8 (0x8): outside [-7, 7]
    with pytest.raises(CRuntimeError, match="int4 weights hold -8"):
        validate_blob(bytes(bad))
    bad[off + 5] = 0x0F                                # -1 and 0: valid
    validate_blob(bytes(bad))
    bad = bytearray(blob)
    bad[4] = 1                                         # an int4 tag in a version-1 blob: refused
    with pytest.raises(CRuntimeError, match="int4 needs version 2"):
        validate_blob(bytes(bad))
    # a truncated int4 blob, inside its int4 data and scales
    for n in range(len(blob) - 1, len(blob) - 4000, -37):
        with pytest.raises(CRuntimeError):
            validate_blob(blob[:n])


# ----------------------------------------------------------------------------------------------
# the standalone program


@pytest.mark.slow
def test_tinylm_run_prints_what_python_generates(model, tokenizer, tmp_path):
    import shutil
    import subprocess
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = tmp_path / "tinylm-run"
    sources = [os.path.join(root, "runtime", f) for f in ("main.c", "tinylm_runtime.c")]
    sources += sorted(os.path.join(root, "kernels", f) for f in os.listdir(os.path.join(root, "kernels"))
                      if f.endswith(".c"))
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-ffp-contract=off",
                    "-I" + os.path.join(root, "runtime"), "-I" + os.path.join(root, "kernels"), "-o", str(exe),
                    *sources], check=True)
    write_blob(model, tokenizer, tmp_path / "model.bin")
    run = subprocess.run([str(exe), str(tmp_path / "model.bin"), "-n", "60", "-i", PROMPT, "-t", "0"],
                         capture_output=True, check=True)
    from tinylm.generate import generate_text
    want = generate_text(model, tokenizer, PROMPT, max_new_tokens=60, temperature=0)
    assert run.stdout.decode("utf-8", "replace") == want + "\n"
    assert b"tokens/s" in run.stderr
    int4 = apply_plan(model, uniform_plan(model, "int4:g32"))  # a version-2 blob, in the standalone program too
    write_blob(int4, tokenizer, tmp_path / "int4.bin")
    run = subprocess.run([str(exe), str(tmp_path / "int4.bin"), "-n", "60", "-i", PROMPT, "-t", "0"],
                         capture_output=True, check=True)
    assert run.stdout.decode("utf-8", "replace") == generate_text(int4, tokenizer, PROMPT, max_new_tokens=60,
                                                                  temperature=0) + "\n"
    bad = subprocess.run([str(exe), str(tmp_path / "model.bin"), "-n", "x"], capture_output=True)
    assert bad.returncode == 2 and b"not a number" in bad.stderr
    (tmp_path / "cut.bin").write_bytes((tmp_path / "model.bin").read_bytes()[:1000])
    cut = subprocess.run([str(exe), str(tmp_path / "cut.bin")], capture_output=True)
    assert cut.returncode == 1 and b"truncated" in cut.stderr


# ----------------------------------------------------------------------------------------------
# the blob loader under AddressSanitizer + UndefinedBehaviorSanitizer (tests/c/fuzz_blob.c)


@pytest.mark.slow
@pytest.mark.parametrize("n_expert", [0, 3])
def test_blob_loader_survives_mutated_blobs_under_sanitizers(tokenizer, tmp_path, n_expert):
    import shutil
    import subprocess
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = tmp_path / "fuzz_blob"
    kernels_dir = os.path.join(root, "kernels")
    sources = [os.path.join(root, "tests", "c", "fuzz_blob.c"), os.path.join(root, "runtime", "tinylm_runtime.c")]
    sources += sorted(os.path.join(kernels_dir, f) for f in os.listdir(kernels_dir) if f.endswith(".c"))
    build = subprocess.run([cc, "-std=c99", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                            "-Wall", "-Wextra", "-Werror", "-I" + os.path.join(root, "runtime"), "-I" + kernels_dir,
                            "-o", str(exe), *sources], capture_output=True, text=True)
    if build.returncode != 0 and "sanitize" in build.stderr:
        pytest.skip(f"the compiler has no ASan/UBSan: {build.stderr[:200]}")
    assert build.returncode == 0, build.stderr
    # a small blob with every precision tag: fp32 everywhere, one fp16, one int8 and one int4 layer
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16,
                          n_expert=n_expert, expert_top_k=2))
    mlp = "transformer.h.0.mlp." + ("experts.1." if n_expert else "")
    model = apply_plan(model, {"transformer.h.0.attn.c_attn": "fp16", "transformer.h.0.attn.c_proj": "int8:g8",
                               mlp + "c_proj": "int4:g32"})  # (16, 64): int4 needs inputs in blocks of 32
    assert write_blob(model, tokenizer, tmp_path / "model.bin") and (tmp_path / "model.bin").read_bytes()[4] == 2
    run = subprocess.run([str(exe), str(tmp_path / "model.bin"), "1500"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr  # any ASan/UBSan report aborts with non-zero
    assert "0 crashes" in run.stdout and "ran" in run.stdout
    refused = dict(part.rsplit(" ", 1) for part in run.stdout.splitlines()[1].split(": ", 1)[1].split(", "))
    assert int(refused["truncated"]) > 0 and int(refused["tensor"]) > 0 and int(refused["tokenizer"]) > 0
    assert " retags" in run.stdout  # the precision tags (int4 among them) crossed with group sizes


def test_encode_terminates_when_the_class_table_is_wrong(tokenizer):
    # a blob whose Unicode table leaves ' ' out of \s (it validates: the table is still sorted and
    # disjoint) must still encode every text, one odd chunk at a time, never loop forever
    import struct
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16))
    blob = bytearray(blob_bytes(model, tokenizer))
    tok = int.from_bytes(blob[52:56], "little")
    n_tokens, n_merges, _, n_ranges = struct.unpack_from("<4I", blob, tok)
    ranges = tok + 32 + 4 * (256 + n_tokens + 1 + 4 * n_merges)
    for i in range(n_ranges):
        lo, packed = struct.unpack_from("<2I", blob, ranges + 8 * i)
        if lo == 0x20:  # (32, 32, \s) -> (33, 33, \s): still sorted, and ' ' is now of no class
            assert packed == 0x20 | 4 << 24
            struct.pack_into("<2I", blob, ranges + 8 * i, 0x21, 0x21 | 4 << 24)
    rt = CRuntime(bytes(blob))
    ids = rt.encode("x 1 2  3\n 4")
    assert rt.decode(ids) == "x 1 2  3\n 4"


@pytest.mark.slow
def test_the_comparison_catches_a_transposed_weight(model, tokenizer):
    # the greedy tests above can fail: the same model with one square matrix transposed in the
    # blob (a classic export bug) generates other tokens than Python
    import copy
    wrong = copy.deepcopy(model)
    w = wrong.transformer.h[0].attn.c_proj.weight
    w.data = np.ascontiguousarray(w.data.T)
    ids = tokenizer.encode(PROMPT)
    assert CRuntime.from_model(wrong, tokenizer).generate(ids, 50, temperature=0) != \
        _python_tokens(model, tokenizer, temperature=0)[:len(ids) + 50]


def test_a_hugging_face_gpt2_folder_runs_in_c():
    # a folder in GPT-2's format (vocab.json + merges.txt, GPT-2's pre-split pattern, a special token
    # <|endoftext|>): the C runtime encodes and generates exactly as tinylm's Python does
    from tinylm.io.hf_gpt2 import load_hf_gpt2, load_hf_tokenizer
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tiny-gpt2")
    model, tok = load_hf_gpt2(folder), load_hf_tokenizer(folder)
    model.eval()
    rt = CRuntime.from_model(model, tok)
    for text in TEXTS:
        assert rt.encode(text) == tok.encode_ordinary(text), text
    ids = tok.encode("Hello world")
    want = generate(model, np.array(ids), 60, temperature=0).tolist()
    assert rt.generate(ids, 60, temperature=0) == want
    from tinylm.cli import main
    args = ["generate", "--hf", folder, "--prompt", "Hello world", "--max-new-tokens", "20", "--temperature", "0.7",
            "--top-p", "0.9", "--seed", "3"]
    import contextlib
    import io
    outs = []
    for extra in (["--engine", "c"], ["--rng", "tinylm"]):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(args + extra) == 0
        outs.append(buf.getvalue())
    assert outs[0] == outs[1] and outs[0].startswith("Hello world")


def test_c_encode_with_byte_ids_that_are_not_the_byte_values(tokenizer):
    # GPT-2's real vocab.json numbers bytes its own way ("!" is 0): permute the byte ids of a trained
    # tokenizer and check that C maps bytes through the blob's byte_ids table, not by value
    perm = list(reversed(range(256)))
    remap = lambda i: perm[i] if i < 256 else i  # noqa: E731
    merges = [(remap(a), remap(b), new) for (a, b), new in tokenizer.merges.items()]
    odd = Tokenizer._from_parts(tokenizer.pattern, perm, merges, dict(tokenizer.special_tokens), where="test")
    assert odd.encode_ordinary("!") == [255 - ord("!")]
    model = GPT(GPTConfig(vocab_size=odd.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16))
    rt = CRuntime.from_model(model, odd)
    for text in TEXTS:
        assert rt.encode(text) == odd.encode_ordinary(text), text
        assert rt.decode(rt.encode(text)) == text
