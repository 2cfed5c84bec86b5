"""Corpora, cleaning, splits and batches: the road from a text file to a (B, T) array of token ids.

A corpus is just a string. tinylm can read one from a text file, from a folder of text files, or use
the built-in corpus: the text of the Python reference manual that every CPython ships in
`pydoc_data.topics` (~466 KB of real English technical prose), so that the tokenizer, training and the
demo work on a fresh machine with no download.

    >>> text = load_corpus("builtin")
    >>> len(text) > 400_000
    True

Then, in order: `clean_text` tidies the string (lightly: nothing a reader would call content changes),
`encode_corpus` turns it into one long compact array of token ids, `train_val_split` keeps the first
90% for training and holds out the last 10% to measure generalization, and `get_batch` cuts random
windows out of an array: inputs `x` and targets `y`, the same window shifted by one token.
"""
from __future__ import annotations

import os
import re
import unicodedata

import numpy as np


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


# -----------------------------------------------------------------------------------------------------
# cleaning

_CONTROL = re.compile(r"[^\S\n\t ]|[\x00-\x08\x0b-\x1f\x7f]")  # odd whitespace and control chars
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text):
    """Tidy a corpus without changing what it says. Four steps, each for a reason:

    1. line endings become "\\n" (Windows "\\r\\n" and old Mac "\\r" would otherwise be tokens of
       their own that only tell the model which editor saved the file);
    2. Unicode is put in NFC form, so "é" is always one code point and never "e" + a combining accent
       (two spellings of one letter would waste vocabulary and split statistics);
    3. control characters and exotic spaces (NUL, form feed, no-break space, ...) become a plain space
       (tabs and newlines stay: they carry layout, and code is indented);
    4. spaces at line ends are dropped and runs of blank lines shrink to one blank line.

    Case, punctuation, digits and non-English text are kept: the model should learn real text.

    >>> clean_text("Hello,\\r\\nworld!   \\n\\n\\n\\nBye\\x00now")
    'Hello,\\nworld!\\n\\nBye now'
    """
    if not isinstance(text, str):
        raise TypeError(f"clean_text: text has type {type(text).__name__}; expected str")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text)


# -----------------------------------------------------------------------------------------------------
# token ids: encoding, storage, splitting


def token_dtype(vocab_size):
    """The smallest unsigned dtype that holds every id of a vocabulary: uint16 up to 65,536 tokens.

    A byte-level or BPE corpus of a million tokens then takes 2 MB instead of 8 MB as int64.

    >>> token_dtype(256), token_dtype(65_536), token_dtype(100_277)
    (dtype('uint16'), dtype('uint16'), dtype('uint32'))
    """
    if vocab_size < 1:
        raise ValueError(f"token_dtype: vocab_size is {vocab_size}; expected at least 1")
    return np.dtype(np.uint16 if vocab_size <= 65_536 else np.uint32)


def encode_corpus(text, tokenizer):
    """Encode a whole corpus into one 1-D array of token ids, stored compactly (see `token_dtype`).

    >>> from tinylm.tokenizer import Tokenizer
    >>> encode_corpus("hi!", Tokenizer())         # byte-level: one id per UTF-8 byte
    array([104, 105,  33], dtype=uint16)
    """
    if not isinstance(text, str):
        raise TypeError(f"encode_corpus: text has type {type(text).__name__}; expected str")
    if not text:
        raise ValueError("encode_corpus: text is empty; there is nothing to train on")
    ids = np.asarray(tokenizer.encode(text, allowed_special="none"), dtype=np.int64)  # "<|endoftext|>" is text
    dtype = token_dtype(tokenizer.vocab_size)
    if ids.size and (ids.min() < 0 or ids.max() >= tokenizer.vocab_size):
        raise ValueError(f"encode_corpus: the tokenizer produced id {int(ids.max())} outside its "
                         f"vocabulary of {tokenizer.vocab_size}")
    return ids.astype(dtype)


def train_val_split(ids, val_fraction=0.1):
    """Split token ids into the first (1 - val_fraction) for training and the rest for validation.

    The split is a cut, not a shuffle: the validation text is a part of the corpus the model never
    sees in training (shuffled windows would overlap the training text and flatter the model), and
    the same ids always give the same split.

    >>> train, val = train_val_split(np.arange(10))
    >>> train, val
    (array([0, 1, 2, 3, 4, 5, 6, 7, 8]), array([9]))
    """
    ids = _as_token_array(ids, "train_val_split: ids")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"train_val_split: val_fraction is {val_fraction}; expected a number between 0 and 1")
    n_train = int(len(ids) * (1.0 - float(val_fraction)))
    if n_train == 0 or n_train == len(ids):
        raise ValueError(f"train_val_split: {len(ids)} tokens are too few to split with "
                         f"val_fraction={val_fraction} (both parts need at least one token)")
    return ids[:n_train], ids[n_train:]


# -----------------------------------------------------------------------------------------------------
# batches


def get_batch(data, batch_size, block_size, rng):
    """Cut `batch_size` random windows of `block_size` tokens out of `data`: inputs and targets.

    Row b of the targets `y` is row b of the inputs `x` shifted one token to the left, so position t
    of `y` is the token that follows x[b, :t+1]: one window teaches block_size next-token predictions.

    >>> data = np.arange(100, 110, dtype=np.uint16)
    >>> x, y = get_batch(data, batch_size=2, block_size=4, rng=np.random.default_rng(0))
    >>> x                                   # (B, T) = (2, 4): windows starting at offsets 5 and 3
    array([[105, 106, 107, 108],
           [103, 104, 105, 106]])
    >>> y                                   # (B, T): the same windows, one token later
    array([[106, 107, 108, 109],
           [104, 105, 106, 107]])
    """
    data = _as_token_array(data, "get_batch: data")
    batch_size, block_size = _positive_int(batch_size, "batch_size"), _positive_int(block_size, "block_size")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"get_batch: rng has type {type(rng).__name__}; expected numpy.random.Generator "
                        "(np.random.default_rng(seed))")
    if len(data) <= block_size:
        raise ValueError(f"get_batch: data has {len(data)} tokens; a window of block_size={block_size} "
                         f"needs at least {block_size + 1} (inputs plus the one token after them)")
    starts = rng.integers(0, len(data) - block_size, size=batch_size)  # (B,)
    offsets = starts[:, None] + np.arange(block_size)                  # (B, T)
    x = data[offsets].astype(np.int64)                                 # (B, T)
    y = data[offsets + 1].astype(np.int64)                             # (B, T)
    return x, y


def _as_token_array(ids, what):
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{what} has shape {arr.shape}; expected a 1-D sequence of token ids")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{what} has dtype {arr.dtype}; expected integer token ids")
    return arr


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} is {value!r}; expected a positive integer")
    return int(value)
