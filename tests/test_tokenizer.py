"""The byte-level BPE tokenizer: exact round trips, training equal to the textbook algorithm,
special tokens, files, and clear errors."""
import numpy as np
import pytest
import regex

from tinylm.data import load_corpus
from tinylm.tokenizer import GPT2_PATTERN, GPT4_PATTERN, Tokenizer

MULTILINGUAL = (
    "我喜欢学习AI。机器学习很有趣！\n"
    "Ünïcödé: café, naïve, coöperate; e\u0301 a\u0300 o\u0302\u0323 (combining marks)\n"
    "Family 👨\u200d👩\u200d👧\u200d👦, flags 🇫🇷🇯🇵, skin tones 👍🏽👋🏿, keycap 1\ufe0f\u20e3 ❤️\n"
    "Русский текст, العربية, हिन्दी, 日本語のテキスト, 한국어\n"
    "  tabs\tand   spaces\r\n\n\n123456789 3.14159 x**2 == 4 'll 'S they're\n"
)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("builtin")


@pytest.fixture(scope="module")
def trained(corpus):
    """A small tokenizer trained on a slice of the built-in corpus, with two special tokens."""
    return Tokenizer().train(corpus[:60_000], 400, special_tokens=["<|endoftext|>", "<|my token|> "])


# ---------------------------------------------------------------------- the oracle trainer
def slow_split(text, pattern):
    return [text] if pattern is None else regex.findall(pattern, text)


def slow_merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if ids[i:i + 2] == list(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def slow_train(text, n_merges, pattern):
    """The textbook BPE trainer: recount every pair of the whole text at every step.

    Python dicts keep insertion order, so `max` returns, among the most frequent pairs, the one seen
    first while scanning the chunks in text order: the first-occurrence tie-break.
    """
    chunks = [list(c.encode("utf-8")) for c in slow_split(text, pattern)]
    merges = []
    for step in range(n_merges):
        counts = {}
        for ids in chunks:
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        pair = max(counts, key=counts.get)
        chunks = [slow_merge(ids, pair, 256 + step) for ids in chunks]
        merges.append(pair)
    return merges


def fast_merges(tok):
    return [pair for pair, _ in sorted(tok.merges.items(), key=lambda item: item[1])]


ORACLE_CASES = {
    "builtin slice, gpt4": (lambda c: c[:6000], 150, "gpt4"),
    "builtin slice, gpt2": (lambda c: c[200_000:205_000], 150, "gpt2"),
    "builtin slice, no pattern": (lambda c: c[100_000:103_000], 120, None),
    "multilingual, gpt4": (lambda c: MULTILINGUAL * 3, 120, "gpt4"),
    "multilingual, no pattern": (lambda c: MULTILINGUAL, 100, None),
    "repeated characters": (lambda c: "aaaaaa aaa aaaaaaa bbbb aa abab ababab\n" * 4 + "a" * 37, 40, None),
    "emoji ZWJ sequences": (lambda c: "👨\u200d👩\u200d👧 👩\u200d💻👨\u200d💻 🏳️\u200d🌈 " * 5, 60, "gpt4"),
    "combining marks": (lambda c: "e\u0301e\u0301e\u0301 a\u0300\u0301 n\u0303o\u0308 " * 6, 40, "gpt2"),
}


@pytest.mark.filterwarnings("ignore:train. the text only has material")  # small texts run out of pairs
@pytest.mark.parametrize("case", list(ORACLE_CASES))
def test_fast_trainer_gives_the_same_merges_as_the_textbook_trainer(corpus, case):
    make_text, n_merges, pattern = ORACLE_CASES[case]
    text = make_text(corpus)
    tok = Tokenizer().train(text, 256 + n_merges, pattern=pattern)
    assert fast_merges(tok) == slow_train(text, n_merges, {"gpt4": GPT4_PATTERN, "gpt2": GPT2_PATTERN}.get(pattern))
    assert tok.decode(tok.encode(text)) == text


def test_training_on_aaabdaaabac_by_hand():
    # aa occurs 4 times (overlaps counted) -> Z; merging left to right gives "ZabdZabac", where
    # Za and ab tie at 2: Za occurs first -> Y ("aaa"); "YbdYbac": Yb occurs twice -> X ("aaab")
    tok = Tokenizer().train("aaabdaaabac", 259, pattern=None)
    assert tok.merges == {(97, 97): 256, (256, 97): 257, (257, 98): 258}
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]


def test_ties_go_to_the_pair_that_occurs_first():
    # "ab", " c" and "cd" all occur twice; which one is merged first depends only on text order
    assert fast_merges(Tokenizer().train("ab ab cd cd", 257))[0] == (97, 98)
    assert fast_merges(Tokenizer().train("cd cd ab ab", 257))[0] == (99, 100)


def test_training_stops_with_a_warning_when_the_text_runs_out_of_pairs():
    with pytest.warns(UserWarning, match="only has material for 3 merges"):
        tok = Tokenizer().train("abcd", 300, pattern=None, special_tokens=["<|end|>"])
    assert tok.vocab_size == 256 + 3 + 1
    assert tok.special_tokens == {"<|end|>": 259}


# ---------------------------------------------------------------------- bytes and round trips
def test_the_untrained_tokenizer_is_utf8_bytes():
    tok = Tokenizer()
    assert tok.vocab_size == 256
    ids = tok.encode("我喜欢学习AI")
    assert ids == list("我喜欢学习AI".encode("utf-8"))
    assert len(ids) == 17  # 5 Chinese characters x 3 bytes + "A" + "I"
    assert ids[:3] == [0xE6, 0x88, 0x91]  # 我 = U+6211 = 0xE6 0x88 0x91 in UTF-8


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2", None])
def test_round_trip_on_multilingual_text(corpus, pattern):
    tok = Tokenizer().train(corpus[:20_000] + MULTILINGUAL, 500, pattern=pattern)
    for text in [MULTILINGUAL, "", " ", "\n\n", "a" * 1000, " " * 300, corpus[50_000:52_000]]:
        ids = tok.encode(text)
        assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
        assert tok.decode_bytes(ids) == text.encode("utf-8")


def test_merges_compress_the_text(trained, corpus):
    text = corpus[60_000:80_000]
    assert len(trained.encode(text)) < 0.6 * len(text.encode("utf-8"))


def test_long_chunks_give_the_same_ids_as_short_chunk_merging(corpus):
    import tinylm.tokenizer as tokenizer_module
    tok = Tokenizer().train(corpus[:30_000], 500, pattern=None)
    text = corpus[40_000:41_000] + MULTILINGUAL
    heap_ids = tok._encode_ordinary_python(text)  # one chunk of ~1.6 KB: merged with the heap
    tok._chunk_cache.clear()
    old = tokenizer_module.LONG_CHUNK
    tokenizer_module.LONG_CHUNK = 10 ** 9  # force the simple rescanning loop
    try:
        assert tok._encode_ordinary_python(text) == heap_ids
    finally:
        tokenizer_module.LONG_CHUNK = old


def test_decode_accepts_numpy_arrays_of_any_integer_dtype(trained):
    ids = trained.encode("hello world, 你好")
    for dtype in (np.int64, np.int32, np.uint16):
        assert trained.decode(np.array(ids, dtype=dtype)) == "hello world, 你好"
    assert trained.decode([np.int64(i) for i in ids]) == "hello world, 你好"
    assert trained.decode(np.array([], dtype=np.int64)) == ""


def test_a_partial_character_decodes_to_the_replacement_character():
    tok = Tokenizer()
    assert tok.decode([0xE6, 0x88]) == "\ufffd"
    assert tok.decode_bytes([0xE6, 0x88]) == b"\xe6\x88"
    assert tok.token_bytes(0xE6) == b"\xe6"


# ---------------------------------------------------------------------- special tokens
def test_special_tokens_get_the_last_ids(trained):
    assert trained.vocab_size == 400
    assert trained.special_tokens == {"<|endoftext|>": 398, "<|my token|> ": 399}
    assert trained.token_bytes(399) == b"<|my token|> "


def test_allowed_special_modes(trained):
    text = "end<|endoftext|>start <|my token|> x"
    with pytest.raises(ValueError, match="contains the special token '<|endoftext|>'"):
        trained.encode(text)
    ids = trained.encode(text, allowed_special="all")
    assert ids.count(398) == 1 and ids.count(399) == 1
    assert trained.decode(ids) == text
    ordinary = trained.encode(text, allowed_special="none")
    assert 398 not in ordinary and 399 not in ordinary
    assert ordinary == trained.encode_ordinary(text)
    assert trained.decode(ordinary) == text
    only_end = trained.encode(text, allowed_special={"<|endoftext|>"})
    assert 398 in only_end and 399 not in only_end
    with pytest.raises(ValueError, match="unknown special tokens"):
        trained.encode(text, allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special"):
        trained.encode(text, allowed_special="some")


def test_special_tokens_in_training_text_are_cut_out_before_counting():
    text = "<|endoftext|>".join(["hello world"] * 30)
    tok = Tokenizer().train(text, 262, special_tokens=["<|endoftext|>"])
    learned = [tok.token_bytes(i) for i in range(256, 256 + len(tok.merges))]
    assert not any(b"|" in b or b"<" in b or b"endof" in b for b in learned)
    assert tok.encode(text, allowed_special="all").count(tok.special_tokens["<|endoftext|>"]) == 29


# ---------------------------------------------------------------------- save and load
def test_save_and_load_keep_everything(trained, tmp_path):
    path = tmp_path / "tok.json"
    trained.save(path)
    back = Tokenizer.load(path)
    assert back.merges == trained.merges
    assert back.special_tokens == trained.special_tokens
    assert back.pattern == trained.pattern
    text = MULTILINGUAL + "<|my token|> <|endoftext|>"
    assert back.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all")


def test_save_and_load_keep_a_custom_pattern_and_no_pattern(tmp_path):
    for pattern in [r"\w+|\s+|[^\w\s]+", None]:
        tok = Tokenizer().train("one two three, four five six! " * 20, 268, pattern=pattern)
        tok.save(tmp_path / "t.json")
        back = Tokenizer.load(tmp_path / "t.json", trust_pattern=True)  # a custom pattern needs the opt-in
        assert back.pattern == pattern
        assert back.encode("three, four") == tok.encode("three, four")


def _corrupt(tmp_path, trained, change):
    import json
    path = tmp_path / "bad.json"
    trained.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="something-else"), "format is 'something-else'"),
    (lambda d: d.update(version=2), "version 2 is not supported"),
    (lambda d: d.pop("merges"), "missing keys"),
    (lambda d: d.update(merges=[[1, 2]]), "triples"),
    (lambda d: d["merges"].append([9999, 1, 5000]), "uses an id that no byte or earlier merge defines"),
    (lambda d: d["merges"].append([1, 2, 65]), "already stands for other bytes"),
    (lambda d: d.update(pattern="(unclosed"), "not a valid regex"),
    (lambda d: d.update(special_tokens={"<|x|>": 3}), "not a free"),
    (lambda d: d.update(special_tokens={"<|x|>": 10 ** 9}), "far beyond"),
    (lambda d: d.update(special_tokens=["<|x|>"]), "special_tokens"),
])
def test_load_rejects_corrupt_files_naming_them(tmp_path, trained, change, message):
    path = _corrupt(tmp_path, trained, change)
    with pytest.raises(ValueError, match=message) as info:
        Tokenizer.load(path)
    assert str(path) in str(info.value)


def test_load_rejects_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "tok.json"
    path.write_text('{"format": "tinylm-bpe", "vers', encoding="utf-8")
    with pytest.raises(ValueError, match="tok.json"):
        Tokenizer.load(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Tokenizer.load(tmp_path / "missing.json")


def test_save_vocab_lists_each_token_and_its_parents(trained, tmp_path):
    trained.save_vocab(tmp_path / "vocab.txt")
    lines = (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 400
    (a, b), new_id = next(iter(trained.merges.items()))
    show = lambda i: trained.token_bytes(i).decode("utf-8", "backslashreplace")  # noqa: E731
    assert lines[1 + new_id] == f"{new_id}\t[{show(new_id)}]\t<- [{show(a)}] + [{show(b)}]"
    assert lines[1 + 10] == "10\t[\\n]"
    assert lines[1 + 399] == "399\t[<|my token|> ]\t(special token)"


# ---------------------------------------------------------------------- bad input
def test_train_rejects_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size 255 is too small"):
        Tokenizer().train("hello", 255)
    with pytest.raises(ValueError, match="2 special tokens need at least 258"):
        Tokenizer().train("hello", 257, special_tokens=["<|a|>", "<|b|>"])
    with pytest.raises(ValueError, match="text is empty"):
        Tokenizer().train("", 300)
    with pytest.raises(TypeError, match="text must be a str"):
        Tokenizer().train(b"bytes", 300)
    with pytest.raises(TypeError, match="vocab_size must be an integer"):
        Tokenizer().train("hello", 300.0)
    with pytest.raises(ValueError, match="duplicates"):
        Tokenizer().train("hello", 300, special_tokens=["<|a|>", "<|a|>"])
    with pytest.raises(ValueError, match="non-empty string"):
        Tokenizer().train("hello", 300, special_tokens=[""])
    with pytest.raises(ValueError, match="not a valid regex"):
        Tokenizer().train("hello", 300, pattern="(unclosed")


def test_a_pattern_that_drops_text_is_refused():
    with pytest.raises(ValueError, match="does not match every character"):
        Tokenizer().train("hello, world", 300, pattern=r"\w+")
    tok = Tokenizer(pattern=r"\w+")
    with pytest.raises(ValueError, match="does not match every character"):
        tok.encode("hello, world")


def test_decode_rejects_ids_out_of_range_and_non_integers(trained):
    for bad in ([5, -1], [400], np.array([3, 1000])):
        with pytest.raises(ValueError, match="out of range: this vocabulary has ids 0..399"):
            trained.decode(bad)
    with pytest.raises(TypeError, match="ids must be integers"):
        trained.decode([1.5, 2.0])
    with pytest.raises(TypeError, match="ids must be integers"):
        trained.decode(["a"])
    with pytest.raises(ValueError, match="1-D"):
        trained.decode(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="out of range"):
        trained.token_bytes(400)
    with pytest.raises(TypeError, match="must be an integer"):
        trained.token_bytes("a")
    with pytest.raises(TypeError, match="text must be a str"):
        trained.encode(b"bytes")


def test_count_pairs_and_merge_pair_the_two_steps_of_bpe():
    from tinylm.tokenizer import count_pairs, merge_pair
    ids = [97, 97, 97, 98, 97, 97]  # "aaabaa"
    assert count_pairs(ids) == {(97, 97): 3, (97, 98): 1, (98, 97): 1}  # overlapping pairs all count
    assert merge_pair(ids, (97, 97), 256) == [256, 97, 98, 256]  # left to right, no overlaps
    assert ids == [97, 97, 97, 98, 97, 97]  # the input is not changed
    assert merge_pair([], (1, 2), 3) == [] and merge_pair([1], (1, 2), 3) == [1]


# ---------------------------------------------------------------------- random texts
from hypothesis import given, settings  # noqa: E402  (the random-text tests start here)
from hypothesis import strategies as st  # noqa: E402

small_alphabet = st.text(alphabet="aab b\n.é😀", min_size=1, max_size=60)  # many ties and overlaps


@settings(max_examples=80, deadline=None)
@given(text=small_alphabet, n_merges=st.integers(1, 30), pattern=st.sampled_from([None, "gpt2", "gpt4"]))
def test_fast_trainer_matches_the_textbook_trainer_on_random_texts(text, n_merges, pattern):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short texts run out of pairs
        tok = Tokenizer().train(text, 256 + n_merges, pattern=pattern)
    expected = slow_train(text, n_merges, {"gpt4": GPT4_PATTERN, "gpt2": GPT2_PATTERN}.get(pattern))
    assert fast_merges(tok) == expected


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=80))
def test_any_text_round_trips(trained, text):
    ids = trained.encode(text, allowed_special="none")
    assert trained.decode(ids) == text


def test_every_merged_token_is_the_concatenation_of_its_pair(trained):
    vocab = trained.vocab
    assert len(vocab) == trained.vocab_size == 400
    for (a, b), new_id in trained.merges.items():
        assert vocab[new_id] == trained.token_bytes(new_id) == vocab[a] + vocab[b]
        assert a < new_id and b < new_id  # a merge only uses tokens made before it


def test_a_byte_level_tokenizer_can_have_special_tokens():
    tok = Tokenizer(special_tokens=["<|endoftext|>"])
    assert tok.vocab_size == 257 and tok.special_tokens == {"<|endoftext|>": 256}
    assert tok.encode("hi<|endoftext|>", allowed_special="all") == [104, 105, 256]


def test_the_saved_file_has_one_merge_per_line(trained, tmp_path):
    trained.save(tmp_path / "tok.json")
    lines = (tmp_path / "tok.json").read_text(encoding="utf-8").splitlines()
    (a, b), new_id = next(iter(trained.merges.items()))
    assert lines[1] == '  "format": "tinylm-bpe",' and lines[2] == '  "version": 1,'
    assert f"    [{a}, {b}, {new_id}]," in lines
    assert len(lines) == 8 + len(trained.merges)
