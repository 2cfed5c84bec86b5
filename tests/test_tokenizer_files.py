"""GPT-2's vocab.json + merges.txt and tiktoken's rank files: read, written, and encoded exactly.

No downloads: every file here is built by the test from a small vocabulary trained on the built-in
corpus, and the encodings are compared with independent re-implementations of GPT-2's `bpe()` and
tiktoken's merge rule."""
import base64
import json

import pytest
import regex

from tinylm.bpe.files import bytes_to_unicode
from tinylm.data import load_corpus
from tinylm.tokenizer import GPT2_PATTERN, GPT4_PATTERN, Tokenizer

TEXTS = [
    "Hello world! It's 2024, and they'll say: \"we've done it\".\n\n    indented code()\n",
    "我喜欢学习AI 👨\u200d👩\u200d👧 café e\u0301 Здравствуйте   \t\r\n",
    " the the the  theory of the thermal theatre ",
]


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("builtin")


@pytest.fixture(scope="module")
def trained(corpus):
    return Tokenizer().train(corpus[:40_000] + "".join(TEXTS), 600, pattern="gpt2",
                             special_tokens=["<|endoftext|>"])


def test_bytes_to_unicode_matches_gpt2_by_hand():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord("!")] == "!" and table[ord("a")] == "a" and table[0xE9] == "é"
    assert table[ord(" ")] == "Ġ" == "\u0120"   # the 33rd non-printable byte: U+0100 + 32
    assert table[ord("\n")] == "Ċ" == "\u010a"
    assert table[0] == "\u0100"
    assert table[0xAD] == "Ń" == "\u0143"       # soft hyphen, the last of the 68 remapped bytes


# ---------------------------------------------------------------------- GPT-2's format
def gpt2_files_in_gpt2_id_order(tok, folder):
    """Write `tok`'s vocabulary as GPT-2 does: bytes get ids in bytes_to_unicode order ("!" = 0,
    "Ġ" = 220), merge i gets 256 + i, then "<|endoftext|>". Not the ids tinylm trained with."""
    table = bytes_to_unicode()
    printable_first = sorted(range(256), key=lambda b: ord(table[b]))
    text_of = {i: "".join(table[x] for x in tok.token_bytes(i)) for i in range(256 + len(tok.merges))}
    vocab = {table[b]: i for i, b in enumerate(printable_first)}
    merge_lines = ["#version: 0.2"]
    for rank, ((a, b), new_id) in enumerate(tok.merges.items()):
        vocab[text_of[new_id]] = 256 + rank
        merge_lines.append(f"{text_of[a]} {text_of[b]}")
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("\n".join(merge_lines) + "\n", encoding="utf-8")
    return vocab, merge_lines[1:]


def gpt2_reference_encode(text, vocab, merge_lines):
    """GPT-2's own algorithm (encoder.py): pre-split, map bytes to characters, then repeatedly merge
    every occurrence of the lowest-ranked bigram; finally look the pieces up in vocab.json."""
    table = bytes_to_unicode()
    bpe_ranks = {tuple(line.split(" ")): i for i, line in enumerate(merge_lines)}
    ids = []
    for token in regex.findall(GPT2_PATTERN, text):
        word = [table[b] for b in token.encode("utf-8")]
        while len(word) > 1:
            bigram = min(set(zip(word, word[1:])), key=lambda p: bpe_ranks.get(p, float("inf")))
            if bigram not in bpe_ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == bigram:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        ids.extend(vocab[w] for w in word)
    return ids


def test_gpt2_files_encode_exactly_like_gpt2s_algorithm(trained, corpus, tmp_path):
    vocab, merge_lines = gpt2_files_in_gpt2_id_order(trained, tmp_path)
    gpt2 = Tokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert gpt2.vocab_size == len(vocab) == 600  # 256 bytes + 343 merges + <|endoftext|>
    assert gpt2.special_tokens == {"<|endoftext|>": 599}
    assert gpt2.encode(" ") == [220] and gpt2.encode("!") == [0]  # GPT-2's ids, not the byte values
    for text in TEXTS + [corpus[45_000:50_000]]:
        ids = gpt2.encode(text)
        assert ids == gpt2_reference_encode(text, vocab, merge_lines)
        assert gpt2.decode(ids) == text
        assert len(ids) == len(trained.encode(text))  # same tokens, renumbered
    assert gpt2.encode("a<|endoftext|>", allowed_special="all")[-1] == 599


def test_gpt2_ids_survive_save_and_load(trained, tmp_path):
    gpt2_files_in_gpt2_id_order(trained, tmp_path)
    gpt2 = Tokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    gpt2.save(tmp_path / "tok.json")
    back = Tokenizer.load(tmp_path / "tok.json")
    for text in TEXTS:
        assert back.encode(text) == gpt2.encode(text)
    assert json.loads((tmp_path / "tok.json").read_text(encoding="utf-8"))["byte_ids"][32] == 220


def test_save_gpt2_files_round_trips(trained, tmp_path):
    trained.save_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    merge_lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merge_lines[0] == "#version: 0.2" and len(merge_lines) == 1 + len(trained.merges)
    assert vocab["Ġ"] == 32 and vocab["Ċ"] == 10 and vocab["<|endoftext|>"] == 599
    back = Tokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert back.merges == trained.merges and back.special_tokens == trained.special_tokens
    for text in TEXTS:
        assert back.encode(text) == trained.encode(text) == gpt2_reference_encode(text, vocab, merge_lines[1:])


def test_bad_gpt2_files_raise_errors_naming_them(trained, tmp_path):
    trained.save_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\nzz qq\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"merges.txt line 3: token 'zz' is not in"):
        Tokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: expected two tokens"):
        Tokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "vocab.json").write_text('{"a": 0}', encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.json is not a byte-level vocab.json"):
        Tokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "vocab.json").write_text('["a"]', encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.json is not a GPT-2 vocab.json"):
        Tokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


# ---------------------------------------------------------------------- tiktoken's format
def tiktoken_reference_encode(text, ranks, pattern):
    """tiktoken's rule: merge the adjacent pair whose concatenation has the lowest rank, leftmost
    first, one at a time, until no concatenation is in the vocabulary."""
    ids = []
    for chunk in regex.findall(pattern, text):
        parts = [bytes([b]) for b in chunk.encode("utf-8")]
        while True:
            candidates = [(ranks[parts[i] + parts[i + 1]], i) for i in range(len(parts) - 1)
                          if parts[i] + parts[i + 1] in ranks]
            if not candidates:
                break
            _, i = min(candidates)
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids.extend(ranks[p] for p in parts)
    return ids


def test_tiktoken_file_encodes_like_tiktoken(corpus, tmp_path):
    tok = Tokenizer().train(corpus[:40_000] + "".join(TEXTS), 600, pattern="gpt4")
    ranks = {tok.token_bytes(i): i for i in range(tok.vocab_size)}
    lines = [f"{base64.b64encode(b).decode('ascii')} {i}" for b, i in ranks.items()]
    (tmp_path / "tiny.tiktoken").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tt = Tokenizer.from_tiktoken_file(tmp_path / "tiny.tiktoken", pattern="gpt4",
                                      special_tokens={"<|endoftext|>": 600})
    assert tt.vocab_size == 601
    for text in TEXTS + [corpus[45_000:50_000]]:
        assert tt.encode(text) == tiktoken_reference_encode(text, ranks, GPT4_PATTERN) == tok.encode(text)
    assert tt.encode("<|endoftext|>", allowed_special="all") == [600]


def test_bad_tiktoken_files_raise_errors_naming_them(tmp_path):
    path = tmp_path / "bad.tiktoken"
    path.write_text("IQ== 0\nnot-base64! 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.tiktoken line 2: expected 'base64-token rank'"):
        Tokenizer.from_tiktoken_file(path)
    path.write_text("IQ== 0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a byte-level BPE vocabulary"):
        Tokenizer.from_tiktoken_file(path)
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    path.write_text("\n".join(lines + [f"{base64.b64encode(b'abc').decode()} 256"]), encoding="utf-8")
    with pytest.raises(ValueError, match="cannot be made by merging two lower-ranked tokens"):
        Tokenizer.from_tiktoken_file(path)
