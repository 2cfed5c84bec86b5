import pytest

from tinylm.data import load_corpus


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
