"""Sampling: greedy, temperature, top-k, top-p on hand-made logits; the generation loop and its cache."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm import cli
from tinylm.generate import generate, generate_text, next_token_probs, refill_size, sample_next
from tinylm.model import GPT, GPTConfig

# ----------------------------------------------------------------------------------------------
# one step, on distributions made by hand


def logits_of(*probs):
    """Logits whose softmax is exactly `probs` (one row per argument)."""
    return np.log(np.array(probs, dtype=np.float64))


def test_temperature_zero_is_argmax_first_on_ties():
    logits = np.array([[0.1, 3.0, 0.2, 3.0], [5.0, 0.0, 0.0, -1.0]])
    assert sample_next(logits, temperature=0).tolist() == [1, 0]
    # greedy ignores the rng entirely
    assert sample_next(logits, temperature=0, rng=np.random.default_rng(1)).tolist() == [1, 0]


def test_temperature_one_is_the_softmax_and_temperature_reshapes_it():
    p = [0.6, 0.3, 0.1]
    np.testing.assert_allclose(next_token_probs(logits_of(p))[0], p, rtol=1e-12)
    # softmax(log p / t) is proportional to p ** (1 / t)
    for t in (0.5, 2.0):
        q = np.array(p) ** (1 / t)
        np.testing.assert_allclose(next_token_probs(logits_of(p), temperature=t)[0], q / q.sum(), rtol=1e-12)
    sharp, flat = next_token_probs(logits_of(p), temperature=0.1)[0], next_token_probs(logits_of(p), temperature=10)[0]
    assert sharp[0] > 0.99 and flat.max() - flat.min() < 0.1


def test_top_k_keeps_exactly_k_even_with_ties():
    probs = next_token_probs(logits_of([0.3, 0.2, 0.2, 0.2, 0.1]), top_k=2)[0]
    assert (probs > 0).sum() == 2
    np.testing.assert_allclose(probs, [0.6, 0.4, 0, 0, 0])  # ties go to the lower id
    probs = next_token_probs(logits_of([0.1, 0.2, 0.3, 0.4]), top_k=3)[0]
    np.testing.assert_allclose(probs, [0, 0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9])
    # k >= vocab_size keeps everything
    np.testing.assert_allclose(next_token_probs(logits_of([0.5, 0.5]), top_k=10)[0], [0.5, 0.5])


def test_top_p_keeps_the_smallest_set_reaching_p():
    p = [0.05, 0.5, 0.15, 0.3]  # sorted: 0.5, 0.3, 0.15, 0.05
    cases = {0.4: [1], 0.5: [1], 0.51: [1, 3], 0.8: [1, 3], 0.81: [1, 3, 2], 0.95: [1, 3, 2], 0.951: [0, 1, 2, 3]}
    for top_p, kept in cases.items():
        probs = next_token_probs(logits_of(p), top_p=top_p)[0]
        assert sorted(np.nonzero(probs)[0].tolist()) == sorted(kept), top_p
        expected = np.zeros(4)
        expected[kept] = np.array(p)[kept] / np.array(p)[kept].sum()
        np.testing.assert_allclose(probs, expected, rtol=1e-12)


def test_top_k_then_top_p_on_the_renormalised_distribution():
    # top_k=2 leaves 0.5, 0.3 -> renormalised 0.625, 0.375; top_p=0.6 then keeps only the first
    probs = next_token_probs(logits_of([0.5, 0.3, 0.15, 0.05]), top_k=2, top_p=0.6)[0]
    np.testing.assert_allclose(probs, [1, 0, 0, 0])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12), st.floats(0.05, 1.0))
def test_top_k_and_top_p_hold_on_random_logits(seed, top_k, top_p):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(3, 10))
    full = next_token_probs(logits)  # (3, 10)
    k_probs = next_token_probs(logits, top_k=top_k)
    assert ((k_probs > 0).sum(axis=1) == min(top_k, 10)).all()
    np.testing.assert_allclose(k_probs.sum(axis=1), 1.0)
    p_probs = next_token_probs(logits, top_p=top_p)
    np.testing.assert_allclose(p_probs.sum(axis=1), 1.0)
    for row in range(3):
        kept = np.nonzero(p_probs[row])[0]
        ranked = np.argsort(-full[row], kind="stable")
        assert set(kept) == set(ranked[:len(kept)])  # the most likely ones
        assert full[row, kept].sum() >= top_p - 1e-9  # reach p ...
        assert full[row, ranked[:len(kept) - 1]].sum() < top_p  # ... and one fewer would not


def test_sampling_follows_the_distribution_and_never_picks_a_dropped_token():
    rng = np.random.default_rng(0)
    logits = np.tile(logits_of([0.1, 0.2, 0.3, 0.4]), (20000, 1))  # 20000 draws at once
    draws = sample_next(logits, top_k=3, rng=rng)
    counts = np.bincount(draws, minlength=4) / len(draws)
    assert counts[0] == 0
    np.testing.assert_allclose(counts[1:], [0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9], atol=0.015)  # ~4 sigma


def test_the_same_rng_state_gives_the_same_tokens():
    logits = np.random.default_rng(1).normal(size=(4, 50))
    a = sample_next(logits, rng=np.random.default_rng(7))
    b = sample_next(logits, rng=np.random.default_rng(7))
    assert a.dtype == np.int64 and a.shape == (4,) and np.array_equal(a, b)


def test_masked_logits_are_never_sampled():
    logits = np.array([[-np.inf, 0.0, -np.inf]])
    assert set(sample_next(np.repeat(logits, 100, 0), rng=np.random.default_rng(0)).tolist()) == {1}


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(temperature=-1.0), ValueError, "temperature must be"),
    (dict(temperature=float("nan")), ValueError, "temperature must be"),
    (dict(top_k=0), ValueError, "top_k must be a positive integer"),
    (dict(top_k=2.5), ValueError, "top_k must be"),
    (dict(top_p=0.0), ValueError, r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), ValueError, "top_p must be"),
    (dict(logits=np.zeros(5)), ValueError, r"logits has shape \(5,\); expected \(batch, vocab_size\)"),
    (dict(logits=np.zeros((1, 5), np.int64)), TypeError, "logits has dtype int64"),
    (dict(logits=np.array([[0.0, np.nan]])), ValueError, "NaN"),
    (dict(logits=np.array([[-np.inf, -np.inf]])), ValueError, "entirely -inf"),
])
def test_bad_sampling_arguments_give_clear_errors(kwargs, error, message):
    logits = kwargs.pop("logits", np.zeros((1, 5)))
    with pytest.raises(error, match=message):
        sample_next(logits, **kwargs)


# ----------------------------------------------------------------------------------------------
# the generation loop


def tiny(seed=0, **overrides):
    config = dict(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32)
    return GPT(GPTConfig(**{**config, **overrides}), seed=seed)


PROMPT = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])


def test_generate_shapes_and_prompt_kept():
    model = tiny()
    out = generate(model, PROMPT, 7, seed=0)
    assert out.shape == (2, 12) and out.dtype == np.int64
    assert np.array_equal(out[:, :5], PROMPT) and out.min() >= 0 and out.max() < 40
    one = generate(model, [3, 1, 4], 4, seed=0)  # a 1-D prompt gives a 1-D answer
    assert one.shape == (7,)
    assert np.array_equal(generate(model, PROMPT, 0), PROMPT)


def test_same_seed_same_tokens_other_seed_other_tokens():
    model = tiny()
    a, b = generate(model, PROMPT, 10, seed=5), generate(model, PROMPT, 10, seed=5)
    c = generate(model, PROMPT, 10, seed=6, temperature=2.0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("overrides", [dict(), dict(n_head=4, bias=False), dict(n_layer=3, block_size=24)])
def test_greedy_text_is_identical_with_and_without_the_cache(overrides):
    model = tiny(seed=2, **overrides)
    n_new = model.config.block_size - PROMPT.shape[1]  # fill the context exactly
    with_cache = generate(model, PROMPT, n_new, temperature=0)
    without = generate(model, PROMPT, n_new, temperature=0, use_cache=False)
    assert np.array_equal(with_cache, without)


def test_sampled_text_is_identical_with_and_without_the_cache():
    model = tiny(seed=3)
    a = generate(model, PROMPT, 11, temperature=1.5, top_k=20, seed=1)
    b = generate(model, PROMPT, 11, temperature=1.5, top_k=20, seed=1, use_cache=False)
    assert np.array_equal(a, b)


def test_context_longer_than_block_size_is_cropped_and_the_cache_refilled():
    model = tiny(seed=4)  # block_size 16
    prompt = np.arange(30)[None, :] % 40  # longer than block_size: cropped from the left
    out = generate(model, prompt, 25, temperature=0)
    no_cache = generate(model, prompt, 25, temperature=0, use_cache=False)
    assert out.shape == (1, 55)
    # the first new token saw the last block_size prompt tokens, with or without the cache
    assert out[0, 30] == no_cache[0, 30]
    # the cache is full after that first step, so step 2 re-fills it from the last block_size // 2
    # tokens: the token it picks is the model's greedy choice after exactly those tokens
    window = out[:, 31 - refill_size(16):31]
    logits, _ = model(window)
    assert out[0, 31] == logits.data[0, -1].argmax()
    # the cache then grows again: 8 steps later it is full and refilled from the last 8 tokens
    logits, _ = model(out[:, 39 - 8:39])
    assert out[0, 39] == logits.data[0, -1].argmax()


def test_stop_tokens_end_each_row():
    model = tiny(seed=5)
    free = generate(model, PROMPT, 12, temperature=0)  # (2, 17) greedy, no stop
    stop = int(free[0, 7])  # a token row 0 generates
    out = generate(model, PROMPT, 12, temperature=0, stop_tokens=[stop])
    hits = [np.nonzero(row[5:] == stop)[0] for row in free]  # where each row generates it
    ends = [5 + int(h[0]) + 1 if len(h) else free.shape[1] for h in hits]  # length up to its stop token
    assert out.shape == (2, max(ends))
    for b in range(2):  # each row follows the free run up to its stop token, then repeats it
        assert np.array_equal(out[b, :ends[b]], free[b, :ends[b]])
        assert (out[b, ends[b]:] == stop).all()
    single = generate(model, PROMPT[:1], 12, temperature=0, stop_tokens=stop)
    assert single.shape == (1, ends[0]) and single[0, -1] == stop


def test_generate_restores_the_training_flag():
    model = tiny(dropout=0.1)
    model.train()
    generate(model, PROMPT, 2, seed=0)
    assert model.training
    model.eval()
    generate(model, PROMPT, 2, seed=0)
    assert not model.training


@pytest.mark.parametrize("prompt, kwargs, error, message", [
    (PROMPT, dict(max_new_tokens=-1), ValueError, "max_new_tokens must be an integer >= 0"),
    (np.zeros((1, 0), np.int64), dict(), ValueError, "prompt is empty"),
    ([], dict(), ValueError, "prompt is empty"),
    (np.array([[1.0, 2.0]]), dict(), TypeError, "idx has dtype float64"),
    (np.array([[1, 40]]), dict(), ValueError, r"outside 0 \.\. 39"),
    (np.zeros((1, 2, 3), np.int64), dict(), ValueError, "expected"),
    (PROMPT, dict(top_p=2.0), ValueError, "top_p"),
    (PROMPT, dict(stop_tokens=["<|endoftext|>"]), ValueError, r"stop_tokens must be token ids in 0 \.\. 39"),
    (PROMPT, dict(stop_tokens=40), ValueError, "got 40"),
])
def test_bad_generate_arguments_give_clear_errors(prompt, kwargs, error, message):
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(error, match=message):
        generate(tiny(), prompt, **kwargs)


# ----------------------------------------------------------------------------------------------
# text in, text out, and the command


class ByteTokenizer:
    """A stand-in tokenizer: one token per UTF-8 byte, plus <|endoftext|> = 256."""

    vocab_size = 257
    special_tokens = {"<|endoftext|>": 256}

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def byte_model():
    return GPT(GPTConfig(vocab_size=257, block_size=32, n_layer=1, n_head=2, n_embd=16), seed=0)


def test_generate_text_returns_prompt_and_continuation_cut_at_the_stop_token():
    model, tok = byte_model(), ByteTokenizer()
    text = generate_text(model, tok, "héllo", max_new_tokens=8, seed=3)
    ids = generate(model, tok.encode("héllo"), 8, seed=3)
    new = ids[6:].tolist()  # "héllo" is 6 bytes
    assert text == "héllo" + tok.decode(new)
    k = next(i for i in range(1, len(new)) if new[i] not in new[:i])  # a token first seen at step k
    cut = generate_text(model, tok, "héllo", max_new_tokens=8, seed=3, stop_tokens=[new[k]])
    assert cut == "héllo" + tok.decode(new[:k])
    with pytest.raises(ValueError, match="prompt is empty"):
        generate_text(model, tok, "", max_new_tokens=2)


def test_generate_command_prints_the_text(monkeypatch, capsys, tmp_path):
    from tinylm.commands import generate as command

    model, tok = byte_model(), ByteTokenizer()
    monkeypatch.setattr(command, "load_model_and_tokenizer", lambda args: (model, tok))
    status = cli.main(["generate", "--run", str(tmp_path), "--prompt", "ab", "--max-new-tokens", "5",
                       "--temperature", "0", "--no-cache"])
    assert status == 0
    expected = generate_text(model, tok, "ab", max_new_tokens=5, temperature=0, stop_tokens=[256])
    assert capsys.readouterr().out == expected + "\n"


def test_generate_command_errors_are_one_line(capsys, tmp_path):
    missing = str(tmp_path / "nope")
    assert cli.main(["generate", "--run", missing, "--prompt", "hi"]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert cli.main(["generate", "--hf", missing, "--prompt", "hi"]) == 2
    assert "Hugging Face folder not found" in capsys.readouterr().err
    assert cli.main(["generate", "--run", str(tmp_path), "--prompt", ""]) == 2
    assert "--prompt is empty" in capsys.readouterr().err


def test_generate_command_runs_a_saved_checkpoint(capsys, tmp_path):
    from tinylm.io.runs import save_checkpoint
    from tinylm.tokenizer import Tokenizer

    tok = Tokenizer(special_tokens=["<|endoftext|>"])  # bytes + one special token: vocab_size 257
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16), seed=1)
    save_checkpoint(tmp_path / "run", model, tok)
    args = ["generate", "--run", str(tmp_path / "run"), "--prompt", "我喜欢", "--max-new-tokens", "20", "--seed", "3"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("我喜欢")
    assert cli.main(args) == 0 and capsys.readouterr().out == first  # same seed, same text
    assert cli.main(args + ["--no-cache"]) == 0 and capsys.readouterr().out == first  # 9 + 20 tokens fit block_size


def test_generate_benchmark_runs_and_prints_ratios(capsys):
    from tinylm.bench.generate import main

    assert main(["--configs", "small", "--context", "24", "--new", "4", "--repeats", "1"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("small")]
    assert len(row) == 1 and row[0].count("x") >= 2  # two ratios: end to end and per step


def test_generate_command_runs_a_hugging_face_folder(capsys, tmp_path):
    from tinylm.io.hf_gpt2 import save_hf_gpt2
    from tinylm.tokenizer import Tokenizer

    tok = Tokenizer(special_tokens=["<|endoftext|>"])
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16), seed=2)
    save_hf_gpt2(model, tmp_path / "hf", tok)
    assert cli.main(["generate", "--hf", str(tmp_path / "hf"), "--prompt", "我喜欢学习AI", "--max-new-tokens", "8",
                     "--temperature", "0"]) == 0
    expected = generate_text(model, tok, "我喜欢学习AI", max_new_tokens=8, temperature=0, stop_tokens=[256])
    assert capsys.readouterr().out == expected + "\n"
