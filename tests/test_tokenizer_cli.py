"""`tinylm tokenizer train | encode | decode | vocab`, and its one-line errors."""
import pytest

from tinylm import cli
from tinylm.tokenizer import Tokenizer

TEXT = "the cat sat on the mat; the cat ate the rat. 我喜欢学习AI\n" * 40


@pytest.fixture
def tok_path(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "tok.json"
    assert cli.main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "280",
                     "--pattern", "gpt2", "--out", str(out), "--quiet"]) == 0
    assert "trained 280 tokens (23 merges)" in capsys.readouterr().out
    return out


def test_train_writes_a_tokenizer_that_the_library_loads(tok_path):
    tok = Tokenizer.load(tok_path)
    assert tok.vocab_size == 280 and tok.special_tokens == {"<|endoftext|>": 279}
    assert tok.decode(tok.encode(TEXT)) == TEXT


def test_train_keeps_an_existing_tokenizer_unless_forced(tok_path, tmp_path, capsys):
    saved = tok_path.read_bytes()
    argv = ["tokenizer", "train", "--input", str(tmp_path / "corpus.txt"), "--vocab-size", "270", "--out",
            str(tok_path), "--quiet"]
    assert cli.main(argv) == 2
    assert "already exists: pass --force" in capsys.readouterr().err and tok_path.read_bytes() == saved
    assert cli.main(argv + ["--force"]) == 0
    assert Tokenizer.load(tok_path).vocab_size == 270


def test_encode_prints_the_ids_and_decode_prints_the_text(tok_path, capsys):
    tok = Tokenizer.load(tok_path)
    assert cli.main(["tokenizer", "encode", "--tokenizer", str(tok_path), "the cat 我"]) == 0
    printed = capsys.readouterr().out.split()
    assert [int(i) for i in printed] == tok.encode("the cat 我")
    assert cli.main(["tokenizer", "decode", "--tokenizer", str(tok_path)] + printed) == 0
    assert capsys.readouterr().out == "the cat 我\n"
    assert cli.main(["tokenizer", "decode", "--tokenizer", str(tok_path), ",".join(printed)]) == 0
    assert capsys.readouterr().out == "the cat 我\n"


def test_encode_refuses_special_tokens_unless_allowed(tok_path, capsys):
    assert cli.main(["tokenizer", "encode", "--tokenizer", str(tok_path), "a<|endoftext|>"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-special" in err
    assert cli.main(["tokenizer", "encode", "--tokenizer", str(tok_path), "--allow-special", "a<|endoftext|>"]) == 0
    assert capsys.readouterr().out.split()[-1] == "279"


def test_vocab_lists_every_token(tok_path, tmp_path, capsys):
    assert cli.main(["tokenizer", "vocab", "--tokenizer", str(tok_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 280 and lines[-1] == "279\t[<|endoftext|>]\t(special token)"
    assert cli.main(["tokenizer", "vocab", "--tokenizer", str(tok_path), "--out", str(tmp_path / "v.txt")]) == 0
    assert (tmp_path / "v.txt").read_text(encoding="utf-8").splitlines() == lines


@pytest.mark.parametrize("argv, message", [
    (["decode", "--tokenizer", "{tok}", "5", "99999"], "id 99999 is out of range"),
    (["decode", "--tokenizer", "{tok}", "5", "x"], "'x' is not an integer token id"),
    (["decode", "--tokenizer", "{missing}", "5"], "tokenizer file not found"),
    (["encode", "--tokenizer", "{bad}", "hi"], "is not a valid tinylm tokenizer file"),
    (["encode", "--tokenizer", "{tok}"], "give either TEXT or --file"),
    (["train", "--vocab-size", "200", "--out", "{out}"], "vocab_size 200 is too small"),
    (["train", "--input", "{missing}", "--out", "{out}"], "corpus not found"),
])
def test_errors_are_one_line_and_exit_status_2(tok_path, tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "tinylm-bpe", "version": 1}', encoding="utf-8")
    paths = {"tok": tok_path, "missing": tmp_path / "missing.json", "bad": bad, "out": tmp_path / "o.json"}
    argv = ["tokenizer"] + [a.format(**paths) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm tokenizer: error: ") and message in err and err.count("\n") == 1
