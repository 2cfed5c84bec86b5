import numpy as np
import pytest

from tinylm.data import clean_text, encode_corpus, get_batch, load_corpus, token_dtype, train_val_split


def test_builtin_corpus_is_the_python_manual_and_stable():
    text = load_corpus("builtin")
    assert len(text.encode("utf-8")) > 400_000
    assert "assert" in text and "lambda" in text
    assert load_corpus("builtin") == text


def test_file_and_folder_corpora(tmp_path):
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first 我喜欢学习AI", encoding="utf-8")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    assert load_corpus(str(tmp_path / "a.txt")) == "first 我喜欢学习AI"
    assert load_corpus(str(tmp_path)) == "first 我喜欢学习AI\n\nsecond"


def test_corpus_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_corpus(str(tmp_path / "nope.txt"))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(str(tmp_path / "empty.txt"))
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_corpus(str(tmp_path / "latin1.txt"))
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="no .txt"):
        load_corpus(str(tmp_path / "sub"))


# -- cleaning, encoding, splitting, batches ------------------------------------------------------------


def test_clean_text_normalizes_layout_but_keeps_content():
    raw = "Line one  \r\nline two\rcafe\u0301 我喜欢学习AI\x00end\u00a0x\n\n\n\n\tindented"
    assert clean_text(raw) == "Line one\nline two\ncaf\u00e9 我喜欢学习AI end x\n\n\tindented"
    assert clean_text("Keep CASE, punctuation!? and 123.") == "Keep CASE, punctuation!? and 123."
    assert clean_text(clean_text(raw)) == clean_text(raw)  # idempotent
    with pytest.raises(TypeError, match="expected str"):
        clean_text(b"bytes")


def test_split_is_first_part_then_last_part_and_deterministic():
    ids = np.arange(1000, dtype=np.uint16)
    train, val = train_val_split(ids)
    assert len(train) == 900 and len(val) == 100
    assert train[-1] == 899 and val[0] == 900  # a cut, not a shuffle
    train2, val2 = train_val_split(ids.copy())
    assert np.array_equal(train, train2) and np.array_equal(val, val2)
    assert len(train_val_split(ids, val_fraction=0.25)[1]) == 250
    assert train.dtype == np.uint16


def test_split_errors():
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(np.arange(10), val_fraction=1.5)
    with pytest.raises(ValueError, match="too few"):
        train_val_split(np.arange(1))
    with pytest.raises(ValueError, match="1-D"):
        train_val_split(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="integer"):
        train_val_split(np.zeros(10, dtype=np.float32))


def test_batches_have_shape_targets_shifted_by_one_and_follow_the_seed():
    data = (np.arange(500) * 7 % 256).astype(np.uint16)
    x, y = get_batch(data, batch_size=4, block_size=8, rng=np.random.default_rng(1))
    assert x.shape == y.shape == (4, 8) and x.dtype == y.dtype == np.int64
    assert np.array_equal(x[:, 1:], y[:, :-1])  # y is x one token later
    for row_x, row_y in zip(x, y):
        starts = [s for s in range(len(data) - 8) if np.array_equal(data[s:s + 8], row_x)]
        assert starts and any(np.array_equal(data[s + 1:s + 9], row_y) for s in starts)
    x2, y2 = get_batch(data, 4, 8, np.random.default_rng(1))
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = get_batch(data, 4, 8, np.random.default_rng(2))
    assert not np.array_equal(x, x3)


def test_batches_reach_the_last_token_and_never_go_past_it():
    data = np.arange(10, dtype=np.uint16)
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = get_batch(data, 3, 4, rng)
        assert y.max() <= 9
        seen.update(y[:, -1].tolist())
    assert 9 in seen and 4 in seen  # every window start, including the last one, is drawn


def test_batch_errors():
    data = np.arange(10, dtype=np.uint16)
    with pytest.raises(ValueError, match="at least 11"):
        get_batch(data, 2, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="batch_size"):
        get_batch(data, 0, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="block_size"):
        get_batch(data, 2, 2.5, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        get_batch(data, 2, 4, rng=0)


class _ListTokenizer:
    """A stand-in tokenizer: one id per character, from a fixed alphabet."""
    def __init__(self, vocab_size):
        self.vocab_size = vocab_size

    def encode(self, text, allowed_special="none_raise"):
        return [ord(c) % self.vocab_size for c in text]


def test_encode_corpus_stores_uint16_when_the_vocab_fits():
    assert token_dtype(256) == np.uint16 and token_dtype(65_536) == np.uint16
    assert token_dtype(65_537) == np.uint32
    ids = encode_corpus("hello", _ListTokenizer(256))
    assert ids.dtype == np.uint16 and ids.tolist() == [ord(c) for c in "hello"]
    assert encode_corpus("hello", _ListTokenizer(100_000)).dtype == np.uint32
    with pytest.raises(ValueError, match="empty"):
        encode_corpus("", _ListTokenizer(256))


def test_encode_corpus_with_the_byte_level_tokenizer():
    from tinylm import tokenizer as tokenizer_module
    ids = encode_corpus("hi 我", tokenizer_module.Tokenizer())
    assert ids.dtype == np.uint16 and ids.tolist() == list("hi 我".encode("utf-8"))
