"""Corpora: where the text comes from.

A corpus is just a string. tinylm can read one from a text file, from a folder of text files, or use
the built-in corpus: the text of the Python reference manual that every CPython ships in
`pydoc_data.topics` (~466 KB of real English technical prose), so that the tokenizer, training and the
demo work on a fresh machine with no download.

    >>> text = load_corpus("builtin")
    >>> len(text) > 400_000
    True
"""
import os


def builtin_corpus():
    """The Python reference manual's topics, joined in sorted-key order (stable across runs)."""
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some minimal Python builds strip pydoc_data
        raise ValueError("the built-in corpus needs pydoc_data, which this Python does not ship; "
                         "pass a text file or folder instead") from exc
    return "\n\n".join(topics[key] for key in sorted(topics))


def load_corpus(source):
    """Return the text of `source`: "builtin", a UTF-8 text file, or a folder of .txt files."""
    if source == "builtin":
        text = builtin_corpus()
    elif os.path.isdir(source):
        names = sorted(n for n in os.listdir(source) if n.endswith((".txt", ".md")))
        if not names:
            raise ValueError(f"folder {source} has no .txt or .md files")
        text = "\n\n".join(_read_text(os.path.join(source, n)) for n in names)
    elif os.path.isfile(source):
        text = _read_text(source)
    else:
        raise FileNotFoundError(f"corpus not found: {source} (expected a text file, a folder, or 'builtin')")
    if not text.strip():
        raise ValueError(f"corpus {source} is empty")
    return text


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc})") from None
