"""The tokenizer's C encoder (tinylm_bpe_encode, the C runtime's encoder) against the Python reference.

Tokenizer.encode_ordinary runs in C when the extension is built; `_encode_ordinary_python` is the
readable Python it must equal, id for id: on GPT-2's tokenizer as tinylm reads it from Hugging Face
files, on tokenizers trained here (both patterns and none, with special tokens), on Chinese, emoji,
odd Unicode and empty text, and on random text (hypothesis). The pre-split is checked on its own,
chunk for chunk, against the `regex` module's findall on adversarial text.
"""
import os

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tokenizer_files import gpt2_files_in_gpt2_id_order

from tinylm.bpe import native
from tinylm.data import load_corpus
from tinylm.io.hf_gpt2 import load_hf_tokenizer
from tinylm.tokenizer import GPT2_PATTERN, GPT4_PATTERN, PATTERNS, Tokenizer

pytestmark = pytest.mark.skipif(not native.c_in_use(), reason="the C encoder is not in use: no extension "
                                "(python kernels/build.py), or TINYLM_KERNELS=numpy")

TINY_GPT2 = os.path.join(os.path.dirname(__file__), "fixtures", "tiny-gpt2")

TEXTS = [
    "",
    "我喜欢学习AI。机器学习很有趣！",
    "Family 👨\u200d👩\u200d👧\u200d👦, flags 🇫🇷🇯🇵, skin 👍🏽, keycap 1\ufe0f\u20e3 ❤️ 🤖🎉",
    "Ünïcödé: café e\u0301 a\u0300 o\u0302\u0323, ǅ ª ʰ, Ελληνικά, русский, العربية, हिन्दी, 日本語, 한국어",
    "Hello, world!  It's   12345 o'clock\n\n\tdon'T 'LL 'ſ they're we've I'm he'd 'sS",
    "  leading spaces\r\n\r\nwindows lines   \n trailing   ",
    "numbers 1234567 ٣٤٥ ⅷ Ⅻ ½ ²³, punctuation!?... ---> <|endoftext|> x",
    "odd: \x00\x01\x7f \ufeff \u200b \u00a0\u2028\u2029\x85 \x1c\x1d\x1e\x1f \ufffe\uffff \U0010ffff \U000e0001",
    "'" * 7 + " '" * 5 + "''s''" + "\r\r\n\n \n \r " + "x" * 200 + " " * 100 + "9" * 70 + "!" * 80,
]

# characters that sit on the patterns' edges: quotes and contraction letters (ſ folds to s), spaces of
# every kind, \r \n, letters, digits and marks outside ASCII, emoji, symbols, the last code point
EDGE_CHARS = list(" \t\n\r\x0b\x0c'sSdDmMtTlLvVrReE0123456789aZ.,!?-_é我学🤖٣ⅷ½ſ\u0301\u00a0\u2028\u3000\x85"
                  "\x1c\u200b\ufeff\U0010ffff")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("builtin")


@pytest.fixture(scope="module")
def tokenizers(corpus, tmp_path_factory):
    """{name: tokenizer}: trained with each pattern (special tokens included); the tiny GPT-2's
    Hugging Face files; the gpt2 one written as GPT-2's files, in GPT-2's id order, and read back."""
    text = corpus[:60_000] + "".join(TEXTS) * 20
    found = {name: Tokenizer().train(text, 600, pattern=pattern, special_tokens=["<|endoftext|>", "<|x|>"])
             for name, pattern in (("gpt2", "gpt2"), ("gpt4", "gpt4"), ("none", None))}
    found["hf-gpt2"] = load_hf_tokenizer(TINY_GPT2)
    folder = tmp_path_factory.mktemp("gpt2-ids")
    gpt2_files_in_gpt2_id_order(found["gpt2"], folder)
    found["gpt2-ids"] = load_hf_tokenizer(str(folder))
    return found


def both(tok, text):
    """(C ids, Python ids) of encode_ordinary(text)."""
    tok._chunk_cache.clear()
    return tok.encode_ordinary(text), tok._encode_ordinary_python(text)


def c_chunks(tok, text):
    """The C pre-split of `text` (tinylm_bpe_chunk_end, chunk after chunk), as byte strings."""
    enc = tok._native_encoder()
    data = text.encode("utf-8")
    ptr = enc.ffi.from_buffer("uint8_t[]", data) if data else enc.ffi.NULL
    chunks, i = [], 0
    while i < len(data):
        end = enc.lib.tinylm_bpe_chunk_end(enc._bpe, ptr, len(data), i)
        chunks.append(data[i:end])
        i = end
    return chunks


def regex_chunks(pattern, text):
    return [c.encode("utf-8") for c in regex.findall(pattern, text)]


# ---------------------------------------------------------------------- the C path is the one taken
def test_encode_runs_in_c_and_falls_back_to_python(tokenizers, monkeypatch):
    tok = tokenizers["gpt2"]
    assert tok._native_encoder() is not None
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    assert tok._native_encoder() is None  # the switch of every kernel also switches the encoder
    custom = Tokenizer(pattern=r"\w+|\W")  # a custom pattern has no C splitter: Python's regex runs it
    monkeypatch.delenv("TINYLM_KERNELS")
    assert custom._native_encoder() is None and custom.encode("hi there") == list(b"hi there")


# ---------------------------------------------------------------------- ids: C == Python
@pytest.mark.parametrize("name", ["gpt2", "gpt4", "none", "hf-gpt2", "gpt2-ids"])
def test_c_ids_equal_python_ids(tokenizers, corpus, name):
    tok = tokenizers[name]
    for text in TEXTS + [corpus[100_000:160_000]]:
        c, py = both(tok, text)
        assert c == py, text[:60]
        assert tok.decode_bytes(c) == text.encode("utf-8")
    assert both(tok, "")[0] == []


def test_gpt2_files_keep_gpt2s_ids_in_c(tokenizers):
    tok = tokenizers["gpt2-ids"]  # GPT-2's own ids: "!" is 0, the space byte 220
    assert tok.encode("!") == [0] and tok.encode(" ") == [220]
    assert tok.encode("a<|endoftext|>", allowed_special="all")[-1] == tok.special_tokens["<|endoftext|>"]


@pytest.mark.parametrize("name", ["gpt2", "gpt4", "gpt2-ids"])
def test_special_tokens_give_the_same_ids_on_both_paths(tokenizers, name, monkeypatch):
    tok = tokenizers[name]
    text = "a<|endoftext|>b <|x|>我 <|endoftext|><|endoftext|>" if "<|x|>" in tok.special_tokens else \
        "a<|endoftext|>b 我 <|endoftext|><|endoftext|>"
    in_c = [tok.encode(text, allowed_special=mode) for mode in ("all", "none", {"<|endoftext|>"})]
    monkeypatch.setenv("TINYLM_KERNELS", "numpy")
    tok._chunk_cache.clear()
    assert [tok.encode(text, allowed_special=mode) for mode in ("all", "none", {"<|endoftext|>"})] == in_c
    assert in_c[0].count(tok.special_tokens["<|endoftext|>"]) == 3


def test_lone_surrogates_are_refused_on_both_paths(tokenizers):
    tok = tokenizers["gpt4"]  # a Python str can hold one; UTF-8 cannot
    for encode in (tok.encode_ordinary, tok._encode_ordinary_python):
        with pytest.raises(UnicodeEncodeError):
            encode("ok \ud800 no")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=60), st.text(st.sampled_from(EDGE_CHARS), max_size=80)))
def test_c_equals_python_on_random_text(tokenizers, text):
    for name in ("gpt2", "gpt4", "none", "hf-gpt2", "gpt2-ids"):
        c, py = both(tokenizers[name], text)
        assert c == py, (name, text)


# ---------------------------------------------------------------------- the three merge loops
def test_long_chunks_merge_alike_with_and_without_work_memory(tokenizers, corpus):
    # pattern None: the whole text is one chunk, merged by the tournament tree (work memory given),
    # by rescanning (no work memory, as the runtime on a board does), and by Python's heap
    tok = tokenizers["none"]
    enc = tok._native_encoder()
    text = corpus[200_000:203_000] + TEXTS[2]
    data = text.encode("utf-8")
    ids = np.empty(len(data), np.int32)
    n = enc.lib.tinylm_bpe_encode(enc._bpe, enc.ffi.from_buffer("uint8_t[]", data), len(data),
                                  enc.ffi.from_buffer("int32_t[]", ids), len(ids), enc.ffi.NULL, 0)
    python = tok._encode_ordinary_python(text)
    assert ids[:n].tolist() == python == enc.encode(data)
    assert len(python) < len(data) / 2  # merges happened (else every loop would agree trivially)


def test_binary_search_and_hash_table_find_the_same_merges(tokenizers, corpus):
    # the runtime looks merges up by binary search in pair_index, Python through the hash table
    tok = tokenizers["hf-gpt2"]
    enc = tok._native_encoder()
    text = corpus[:20_000] + "".join(TEXTS)
    with_hash = enc.encode(text.encode("utf-8"))
    enc._bpe.pair_hash = enc.ffi.NULL
    try:
        assert enc.encode(text.encode("utf-8")) == with_hash
    finally:
        enc._bpe.pair_hash = enc._pointers["pair_hash"]


def test_the_capacity_is_checked(tokenizers):
    enc = tokenizers["gpt2"]._native_encoder()
    data = "hello world".encode("utf-8")
    ids = np.empty(1, np.int32)
    n = enc.lib.tinylm_bpe_encode(enc._bpe, enc.ffi.from_buffer("uint8_t[]", data), len(data),
                                  enc.ffi.from_buffer("int32_t[]", ids), 1, enc.ffi.NULL, 0)
    assert n == enc.lib.TINYLM_E_CAPACITY


# ---------------------------------------------------------------------- the pre-split: C == regex
ADVERSARIAL = [
    " " * 300 + "x", " " * 300, "\n" * 50 + " " * 50 + "a", " \n \n \r\n\r\n  \t\t x", "\u00a0" * 5 + "a",
    "'" * 100, "''s'S'ſ'll'LL'Ll've'VE're'RE'd'D'm'M't'T", " 's 't", "x's'", "'", "' ", "'\n",
    "1" * 100, "a1b2c3 123 ٣٤٥٦ ²³⁴ ⅷⅸ ½¼ 1٣2", "!" * 100 + "\n\n\r\n" + "?" * 3, " !\n !!\r\n\r\n x",
    "e\u0301\u0301\u0301 \u0301\u0301x \u0301", "👨\u200d👩\u200d👧 \u200d \ufe0f\ufe0f",
    "\U0010ffff\uffff\ufffe \x00\x7f",
    "\x1c\x1d\x1e\x1f\x85\u2028\u2029\u3000 a\u2028b\x85c", "ǅǈ ʰʲ ªº ΐ ß ẞ ﬁ", "a\tb\x0bc\x0cd\re\nf",
    "\r\n" * 20, " \r" * 20 + "x", "x\n\n\ny  \n  z", "A" * 5000 + " " + "٣" * 1000,
]


@pytest.mark.parametrize("name", ["gpt2", "gpt4"])
def test_pre_split_equals_regex_on_adversarial_text(tokenizers, name):
    tok, pattern = tokenizers[name], PATTERNS[name]
    for text in ADVERSARIAL + TEXTS:
        assert c_chunks(tok, text) == regex_chunks(pattern, text), repr(text[:80])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(st.sampled_from(EDGE_CHARS), max_size=60), st.text(max_size=40)))
def test_pre_split_equals_regex_on_random_text(tokenizers, text):
    for name, pattern in (("gpt2", GPT2_PATTERN), ("gpt4", GPT4_PATTERN)):
        assert c_chunks(tokenizers[name], text) == regex_chunks(pattern, text), (name, text)


def test_the_split_comparison_can_fail(tokenizers):
    # the same check sees a difference: GPT-2's pattern keeps "'S" apart, GPT-4's does not
    text = "IT'S 12345"
    assert c_chunks(tokenizers["gpt2"], text) != regex_chunks(GPT4_PATTERN, text)


def test_unicode_classes_are_the_regex_modules():
    ranges = native.unicode_ranges()
    lo, hi, cls = ranges[:, 0], ranges[:, 1] & 0xFFFFFF, ranges[:, 1] >> 24
    assert np.all(lo <= hi) and np.all(hi[:-1] < lo[1:]) and set(np.unique(cls)) <= {1, 2, 4}
    rng = np.random.default_rng(0)
    for cp in list(rng.integers(0, 0x110000, 3000)) + [0x20, 0x41, 0x30, 0x85, 0xA0, 0x1C, 0x2028, 0x10FFFF]:
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        want = (regex.match(r"\p{L}", ch) is not None) | (regex.match(r"\p{N}", ch) is not None) << 1 \
            | (regex.match(r"\s", ch) is not None) << 2
        k = np.searchsorted(lo, cp, side="right") - 1
        got = int(cls[k]) if k >= 0 and cp <= hi[k] else 0
        assert got == want, hex(cp)


# ---------------------------------------------------------------------- against tiktoken
def tiktoken_encoding(tok, name):
    """A tiktoken Encoding with tok's vocabulary (ranks = ids, as GPT-2's and tinylm's are ordered)."""
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {tok.token_bytes(i): i for i in range(tok.vocab_size) if i not in tok.special_tokens.values()}
    return tiktoken.Encoding(name, pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens)


@pytest.mark.parametrize("name", ["hf-gpt2", "gpt2-ids", "gpt4"])
def test_ids_equal_tiktokens(tokenizers, corpus, name):
    tok = tokenizers[name]
    enc = tiktoken_encoding(tok, name)
    for text in TEXTS + ADVERSARIAL + [corpus[100_000:160_000]]:
        assert tok.encode_ordinary(text) == enc.encode_ordinary(text), repr(text[:60])
    text = "a<|endoftext|>b"
    assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")


# ---------------------------------------------------------------------- the C under ASan and UBSan
def write_tables(enc, path):
    """The tables of a NativeEncoder in the layout tests/c/bpe_driver.c reads."""
    a = enc._arrays
    head = np.array([enc._bpe.pattern, len(a["merges"]), len(a["ranges"])], np.uint32)
    parts = [head, a["byte_ids"], a["merges"].ravel(), a["pair_index"], a["ranges"].ravel()]
    path.write_bytes(b"".join(p.astype("<u4").tobytes() for p in parts))


@pytest.fixture(scope="module")
def bpe_driver(tmp_path_factory):
    import shutil
    import subprocess
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = tmp_path_factory.mktemp("bpe-driver") / "bpe_driver"
    kernels_dir = os.path.join(root, "kernels")
    sources = [os.path.join(root, "tests", "c", "bpe_driver.c"), os.path.join(root, "runtime", "tinylm_runtime.c")]
    sources += sorted(os.path.join(kernels_dir, f) for f in os.listdir(kernels_dir) if f.endswith(".c"))
    build = subprocess.run([cc, "-std=c99", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                            "-Wall", "-Wextra", "-Werror", "-I" + os.path.join(root, "runtime"), "-I" + kernels_dir,
                            "-o", str(exe), *sources], capture_output=True, text=True)
    if build.returncode != 0 and "sanitize" in build.stderr:
        pytest.skip(f"the compiler has no ASan/UBSan: {build.stderr[:200]}")
    assert build.returncode == 0, build.stderr
    return exe


@pytest.mark.parametrize("name", ["gpt2", "gpt4", "none", "hf-gpt2"])
def test_encoder_under_sanitizers_on_text_and_invalid_utf8(tokenizers, corpus, bpe_driver, tmp_path, name):
    # every lookup (hash, binary search) and merge loop (stack, tree, rescan) under ASan/UBSan, with an
    # output buffer of exactly len ids; on text the ids are Python's, on random bytes (invalid UTF-8,
    # which Python's str never holds) the four variants must agree and not crash
    import subprocess
    tok = tokenizers[name]
    write_tables(tok._native_encoder(), tmp_path / "tables.bin")
    rng = np.random.default_rng(1)
    text = corpus[300_000:304_000] + "".join(TEXTS) + "".join(ADVERSARIAL[:-1])
    cases = [text.encode("utf-8"), b"", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(),
             bytes(rng.choice(list(b"\xc3\xa9\xe6\x88\x91\xf0\x9f\xa4\x96\xed\xa0\x80\xf4\x90 'sa\n\r"), 2000))]
    for k, data in enumerate(cases):
        (tmp_path / "text.bin").write_bytes(data)
        run = subprocess.run([str(bpe_driver), str(tmp_path / "tables.bin"), str(tmp_path / "text.bin")],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        ids = [int(i) for i in run.stdout.split()]
        if k == 0:
            assert ids == tok._encode_ordinary_python(text)
        assert tok.decode_bytes(ids) == data  # every byte, valid or not, is in some token
