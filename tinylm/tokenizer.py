"""Byte-level BPE: the tokenizer that turns any text into integer ids and back.

Text is first turned into UTF-8 bytes, so every string, Chinese and emoji included, is a sequence
of the 256 byte values: a tokenizer with no merges at all already covers everything.

    >>> tok = Tokenizer()                     # 256 byte tokens: id i is byte i
    >>> tok.encode("hi!")
    [104, 105, 33]
    >>> len(tok.encode("我喜欢学习AI"))        # five Chinese characters of 3 bytes each, then 2
    17

Training (byte pair encoding) repeatedly finds the most frequent adjacent pair of tokens and makes
it a new token, so frequent words become single ids:

    >>> tok = Tokenizer().train("low lower lowest " * 50, vocab_size=260, pattern=None)
    >>> [tok.decode([i]) for i in range(256, 260)]
    ['lo', 'low', ' low', ' lowe']

Before merging, a pre-split `pattern` (a regex) cuts the text into chunks — words with their leading
space, numbers, punctuation — and merges never cross a chunk boundary: "gpt2" and "gpt4" are the
patterns of GPT-2 and of GPT-4's cl100k tokenizer. Special tokens such as "<|endoftext|>" get ids
after the merges and are never produced by merging.

The ids: trained here, ids 0..255 are the bytes and merge i makes id 256 + i. A tokenizer read from
GPT-2's files keeps GPT-2's own ids (where the byte "!" is id 0 and the space byte is id 220), so the
tables below map id <-> bytes in general, and merges are applied by rank (their order), exactly as
GPT-2's tokenizer does. The file formats (tinylm's JSON, GPT-2's vocab.json + merges.txt, tiktoken's
rank files) live in `tinylm/bpe/files.py`, the fast trainer in `tinylm/bpe/train.py`.

Encoding runs in C when tinylm's C extension is built: `encode_ordinary` hands the text to the C
runtime's encoder (tinylm/bpe/native.py), which splits GPT-2's and GPT-4's patterns by hand and
merges by rank, giving the very ids of the Python below (`_encode_ordinary_python`, the reference,
and the fallback: no extension, TINYLM_KERNELS=numpy, or a custom pattern); tests/test_tokenizer_c.py
checks that both agree.

Patterns are code: a regex can backtrack for hours on a short text ("(a|aa)+$" on 40 characters). So:
- a pattern found in a FILE (Tokenizer.load) must be one of the named patterns (gpt2, gpt4) or none,
  unless the caller trusts the file: Tokenizer.load(path, trust_pattern=True), or the environment
  variable TINYLM_TRUST_PATTERN=1 for the tinylm command (a pattern the caller passes to `train`
  or `Tokenizer(pattern=...)` is the caller's own, and trusted);
- every split, named pattern or not, runs with a timeout (SPLIT_SECONDS plus SPLIT_SECONDS_PER_CHAR
  per character, ~10x what GPT-4's pattern needs on a slow board): a pattern that takes longer raises
  ValueError instead of hanging;
- a pattern with capture groups is refused (findall would return the groups, not the chunks).
"""
from __future__ import annotations

import heapq
import os
import warnings
from collections import Counter
from itertools import chain, repeat

import numpy as np
import regex

from tinylm import fileio
from tinylm.bpe import files, native
from tinylm.bpe.train import train_merges

# The pre-split patterns of GPT-2 and of GPT-4's cl100k_base tokenizer. Both keep a word together
# with the space in front of it (" world"), split numbers and punctuation off, and keep runs of
# whitespace apart. GPT-4's also caps numbers at 3 digits and is case-insensitive for "'S", "'LL".
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
                r"""|\s*[\r\n]|\s+(?!\S)|\s+""")
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}
_PATTERN_CODES = {None: 0, GPT2_PATTERN: 1, GPT4_PATTERN: 2}  # the patterns the C encoder splits by hand

ALLOWED_SPECIAL = ("all", "none", "none_raise")
LONG_CHUNK = 128  # chunks longer than this (in bytes) are merged with a heap instead of rescans
NO_MERGE = (float("inf"),)  # the rank of a pair that is not a merge
CACHE_SIZE = 200_000  # chunk strings whose ids are remembered; a text usually has far fewer distinct ones
SPLIT_SECONDS, SPLIT_SECONDS_PER_CHAR = 2.0, 5e-6  # the pre-split's time limit (GPT-4's: ~0.3 us per char)


def resolve_pattern(pattern):
    """'gpt2' / 'gpt4' -> that regex; None or 'none' -> None (no pre-split); any other string is a regex."""
    if pattern is None or pattern == "none":
        return None
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be 'gpt2', 'gpt4', 'none', None or a regex string, not {type(pattern).__name__}")
    pattern = PATTERNS.get(pattern, pattern)
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
    if compiled.groups:
        raise ValueError(f"pattern {pattern!r} has {compiled.groups} capture group(s); a pre-split pattern "
                         "must have none (write (?:...) instead of (...))")
    return pattern


def trusted_file_pattern(pattern, where, trust=None):
    """A pattern read from a file: a named pattern or None passes; any other regex only when trusted
    (trust=True, or trust=None and TINYLM_TRUST_PATTERN=1), since a regex can hang the process."""
    if pattern is None or pattern in PATTERNS.values():
        return pattern
    if trust is None:
        trust = os.environ.get("TINYLM_TRUST_PATTERN") == "1"
    if not trust:
        raise ValueError(f"{where} has a custom pre-split pattern {pattern[:60]!r}; tinylm runs only the named "
                         "patterns (gpt2, gpt4) from files, since a regex can hang the process: load it with "
                         "trust_pattern=True (the tinylm command: TINYLM_TRUST_PATTERN=1) if you trust the file")
    return resolve_pattern(pattern)


def _splitter(pattern):
    """findall of the compiled pattern with a time limit that grows with the text; None for no pattern."""
    if pattern is None:
        return None
    findall = regex.compile(pattern).findall

    def split(text):
        limit = SPLIT_SECONDS + SPLIT_SECONDS_PER_CHAR * len(text)
        try:
            return findall(text, timeout=limit)
        except TimeoutError:
            raise ValueError(f"the pre-split pattern took more than {limit:.1f} s on {len(text):,} characters: "
                             f"it backtracks catastrophically; use 'gpt2' or 'gpt4' "
                             f"(pattern {pattern[:60]!r})") from None
    return split


def count_pairs(ids):
    """How often each adjacent pair occurs, in order of first occurrence: the first step of BPE.

    >>> count_pairs([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge_pair(ids, pair, new_id):
    """A copy of `ids` with every occurrence of `pair`, left to right, replaced by `new_id`.

    >>> merge_pair([5, 6, 6, 6, 7], (6, 6), 99)
    [5, 99, 6, 7]
    """
    ids, (a, b) = list(ids), pair
    i = 0
    while True:
        try:
            i = ids.index(a, i)  # the next candidate, found at C speed
        except ValueError:
            return ids
        if i + 1 < len(ids) and ids[i + 1] == b:
            ids[i:i + 2] = [new_id]
        i += 1


class Tokenizer:
    """A byte-level BPE tokenizer: bytes, merges applied by rank, and special tokens.

    `Tokenizer()` is the byte-level tokenizer (vocab_size 256); `train` learns merges;
    `load`, `from_gpt2_files` and `from_tiktoken_file` read trained vocabularies.
    """

    def __init__(self, pattern=None, special_tokens=None):
        self._set_state(resolve_pattern(pattern), list(range(256)), [],
                        _number_special_tokens(special_tokens, 256))

    # ------------------------------------------------------------------ the tables
    def _set_state(self, pattern, byte_ids, merges, special_tokens):
        """Install a vocabulary, checking that it is consistent.

        byte_ids: the id of each byte value 0..255. merges: [(left_id, right_id, new_id), ...] in
        rank order (rank 0 is merged first). special_tokens: {string: id}.
        """
        if len(byte_ids) != 256 or not all(type(i) is int and i >= 0 for i in byte_ids) or len(set(byte_ids)) != 256:
            raise ValueError("byte_ids must be 256 distinct non-negative integer ids, one per byte value")
        vocab = {i: bytes([b]) for b, i in enumerate(byte_ids)}
        ranks = {}  # (left, right) -> (rank, left, right, new_id): min() over these finds the next merge
        for rank, merge in enumerate(merges):
            if len(merge) != 3 or not all(type(i) is int for i in merge):
                raise ValueError(f"merge {rank} is {merge!r}; expected [left_id, right_id, new_id]")
            left, right, new_id = merge
            if left not in vocab or right not in vocab:
                raise ValueError(f"merge {rank} ({left}, {right}) uses an id that no byte or earlier merge defines")
            if (left, right) in ranks:
                raise ValueError(f"merge {rank}: the pair ({left}, {right}) is merged twice")
            merged = vocab[left] + vocab[right]
            if new_id < 0 or vocab.get(new_id, merged) != merged:
                raise ValueError(f"merge {rank} gives id {new_id}, which already stands for other bytes")
            vocab[new_id] = merged
            ranks[(left, right)] = (rank, left, right, new_id)
        special_tokens = dict(special_tokens)
        for text, i in special_tokens.items():
            if not isinstance(text, str) or not text:
                raise ValueError(f"special token {text!r} must be a non-empty string")
            if type(i) is not int or i < 0 or i in vocab:
                raise ValueError(f"special token {text!r} has id {i!r}, which is not a free non-negative id")
            vocab[i] = text.encode("utf-8")

        if max(vocab) >= 2 * len(vocab) + 1024:  # gaps are fine (tiktoken has some), a stray huge id is not
            raise ValueError(f"id {max(vocab)} is far beyond the {len(vocab)} ids of this vocabulary")
        self.pattern = pattern  # the pre-split regex (a string), or None
        self.special_tokens = special_tokens  # {"<|endoftext|>": 1023, ...}
        self.merges = {(a, b): new_id for a, b, new_id in merges}  # (left, right) -> new id, in rank order
        self._byte_ids = list(byte_ids)
        self._ranks = ranks
        self._id_to_bytes = [vocab.get(i) for i in range(max(vocab) + 1)]  # None for unused ids
        self._split = _splitter(pattern)
        self._check_split = pattern not in PATTERNS.values()
        self._chunk_cache = {}  # chunk string -> its ids: text repeats words, so this saves most work
        self._native = {}  # the C encoder's tables (tinylm/bpe/native.py), made at the first encode
        specials = sorted(special_tokens, key=len, reverse=True)  # longest first: "<|a|>x" before "<|a|>"
        self._special_re = regex.compile("|".join(map(regex.escape, specials))) if specials else None

    def __getstate__(self):  # copy / deepcopy: the C encoder's tables (cffi pointers) are made anew
        return {**self.__dict__, "_native": {}}

    @property
    def vocab_size(self):
        """Number of ids: bytes + merges + special tokens (ids are 0 .. vocab_size - 1)."""
        return len(self._id_to_bytes)

    @property
    def vocab(self):
        """{id: bytes} for every id; special tokens as their UTF-8 bytes."""
        return {i: b for i, b in enumerate(self._id_to_bytes) if b is not None}

    def token_bytes(self, i):
        """The bytes of token `i`: token_bytes(104) == b'h' for a trained tokenizer."""
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"token id must be an integer, not {type(i).__name__}")
        if not 0 <= i < self.vocab_size or self._id_to_bytes[i] is None:
            raise ValueError(f"token id {i} is out of range: this vocabulary has ids 0..{self.vocab_size - 1}")
        return self._id_to_bytes[i]

    # ------------------------------------------------------------------ training
    def train(self, text, vocab_size, pattern="gpt4", special_tokens=None, verbose=False):
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `text`; returns self.

        Ids 0..255 become the bytes, merge i makes id 256 + i, special tokens come last. Ties between
        equally frequent pairs go to the pair that occurs first in the text, so training is
        deterministic. Special tokens in `text` are cut out before counting.
        """
        if not isinstance(text, str):
            raise TypeError(f"train: text must be a str, not {type(text).__name__}")
        if not text:
            raise ValueError("train: text is empty; a tokenizer needs some text to learn merges from")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
            raise TypeError(f"train: vocab_size must be an integer, not {type(vocab_size).__name__}")
        specials = list(_number_special_tokens(special_tokens, 0))
        n_merges = int(vocab_size) - 256 - len(specials)
        if n_merges < 0:
            raise ValueError(f"train: vocab_size {vocab_size} is too small: the 256 byte tokens and "
                             f"{len(specials)} special tokens need at least {256 + len(specials)}")
        pattern = resolve_pattern(pattern)

        longest_first = sorted(specials, key=len, reverse=True)
        pieces = regex.split("|".join(map(regex.escape, longest_first)), text) if specials else [text]
        split = _splitter(pattern)
        chunks = Counter()  # chunk -> count, in order of first appearance
        for piece in pieces:
            chunks.update(_split_checked(piece, split, pattern not in PATTERNS.values()))
        pairs = train_merges([(c.encode("utf-8"), n) for c, n in chunks.items()], n_merges, verbose=verbose)
        if len(pairs) < n_merges:
            warnings.warn(f"train: the text only has material for {len(pairs)} merges, not {n_merges}; "
                          f"vocab_size is {256 + len(pairs) + len(specials)}", stacklevel=2)
        merges = [(a, b, 256 + i) for i, (a, b) in enumerate(pairs)]
        first_special = 256 + len(merges)
        self._set_state(pattern, list(range(256)), merges,
                        {s: first_special + j for j, s in enumerate(specials)})
        return self

    # ------------------------------------------------------------------ encoding
    def _encode_chunk(self, data):
        """The ids of one chunk's bytes: merge the lowest-ranked adjacent pair until none is a merge.

        Ties (the same pair twice) go to the leftmost, one merge at a time, as tiktoken and Hugging
        Face do. GPT-2's encoder.py merges every occurrence of the pair at once; that gives the same
        ids, since a merge that uses a token always comes after the merge that made it.

        >>> tok = Tokenizer().train("aaabdaaabac", 259, pattern=None)   # aa, aa+a, aaa+b
        >>> tok._encode_chunk(b"aaaab")     # [a a a a b] -> [aa a a b] -> [aa aa b]
        [256, 256, 98]
        """
        ids = list(map(self._byte_ids.__getitem__, data))
        if len(ids) > LONG_CHUNK:
            return self._encode_long_chunk(ids)
        rank_of = self._ranks.get  # (left, right) -> (rank, left, right, new_id)
        ranks = list(map(rank_of, zip(ids, ids[1:]), repeat(NO_MERGE)))  # ranks[i]: pair (ids[i], ids[i+1])
        while ranks:
            best = min(ranks)
            if best is NO_MERGE:
                break
            i = ranks.index(best)  # the leftmost occurrence of the best pair
            ids[i:i + 2] = [best[3]]
            del ranks[i]
            if i > 0:  # the pairs on either side of the new token changed
                ranks[i - 1] = rank_of((ids[i - 1], ids[i]), NO_MERGE)
            if i < len(ranks):
                ranks[i] = rank_of((ids[i], ids[i + 1]), NO_MERGE)
        return ids

    def _encode_long_chunk(self, ids):
        """Same result as `_encode_chunk` in O(n log n): a linked list of tokens and a heap of pairs.

        Repeatedly merges the lowest-ranked pair, leftmost first, as tiktoken does; without it a long
        chunk (a text encoded with pattern=None) would be rescanned once per merge.
        """
        ranks = self._ranks
        n = len(ids)
        nxt, prv = list(range(1, n + 1)), list(range(-1, n - 1))
        nxt[-1] = -1
        heap = [(ranks[p][0], i, p) for i, p in enumerate(zip(ids, ids[1:])) if p in ranks]
        heapq.heapify(heap)
        while heap:
            _, i, pair = heapq.heappop(heap)
            j = nxt[i] if ids[i] is not None else -1
            if j < 0 or (ids[i], ids[j]) != pair:
                continue  # outdated: one of the two tokens was merged since this entry was pushed
            ids[i], ids[j] = ranks[pair][3], None  # merge j into i
            nxt[i] = nxt[j]
            if nxt[i] >= 0:
                prv[nxt[i]] = i
            for left in (prv[i], i):  # the two new pairs around the merged token
                right = nxt[left] if left >= 0 else -1
                if right >= 0 and (ids[left], ids[right]) in ranks:
                    p = (ids[left], ids[right])
                    heapq.heappush(heap, (ranks[p][0], left, p))
        return [i for i in ids if i is not None]

    def encode_ordinary(self, text):
        """Encode `text`, treating special-token strings like any other text.

        With the C extension built, GPT-2's and GPT-4's patterns (and no pattern) run in C: the
        encoder of the C runtime (tinylm/bpe/native.py), which gives the ids of
        `_encode_ordinary_python`, the readable reference below (a custom pattern always runs there).

        >>> Tokenizer().encode_ordinary("<|endoftext|>")[:3]
        [60, 124, 101]
        """
        if not isinstance(text, str):
            raise TypeError(f"encode: text must be a str, not {type(text).__name__}")
        encoder = self._native_encoder()
        if encoder is not None:
            return encoder.encode(text.encode("utf-8"))
        return self._encode_ordinary_python(text)

    def _native_encoder(self):
        """The C encoder for this tokenizer, or None (no C backend, or a custom pattern)."""
        code = _PATTERN_CODES.get(self.pattern)
        if code is None or not native.c_in_use():
            return None
        if "encoder" not in self._native:
            self._native["encoder"] = native.native_encoder(self._byte_ids, self._merge_list(), code)
        return self._native["encoder"]

    def _encode_ordinary_python(self, text):
        """encode_ordinary in Python: the pre-split regex, then each distinct chunk merged once (cached)."""
        chunks = _split_checked(text, self._split, self._check_split)
        cache = self._chunk_cache
        new_chunks = set(chunks).difference(cache)
        if len(cache) + len(new_chunks) > CACHE_SIZE:
            cache.clear()
            new_chunks = set(chunks)
        for chunk in new_chunks:
            cache[chunk] = self._encode_chunk(chunk.encode("utf-8"))
        ids = list(chain.from_iterable(map(cache.__getitem__, chunks)))  # every chunk's ids, in order
        for chunk in new_chunks:
            if len(chunk) > LONG_CHUNK:  # a long chunk rarely comes back: do not keep it
                del cache[chunk]
        return ids

    def encode(self, text, allowed_special="none_raise"):
        """Encode `text` to a list of ids, with special tokens handled as `allowed_special` says.

        "all": every special token in the text becomes its id; "none": they are ordinary text;
        "none_raise" (default): raise if the text contains one (so user text cannot smuggle in
        "<|endoftext|>"); a set of special-token strings: those become ids, others are ordinary text.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode: text must be a str, not {type(text).__name__}")
        if isinstance(allowed_special, str):
            if allowed_special not in ALLOWED_SPECIAL:
                raise ValueError(f"allowed_special={allowed_special!r}; expected one of {ALLOWED_SPECIAL} or a set")
            if allowed_special == "none_raise":
                for special in self.special_tokens:
                    if special in text:
                        raise ValueError(f"the text contains the special token {special!r}; pass "
                                         f"allowed_special='all' to encode it as a special token or "
                                         f"'none' to encode it as ordinary text")
            allowed = set(self.special_tokens) if allowed_special == "all" else set()
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(f"allowed_special has unknown special tokens {sorted(unknown)}; "
                                 f"this tokenizer has {sorted(self.special_tokens)}")
        if not allowed or self._special_re is None:
            return self.encode_ordinary(text)
        ids, start = [], 0
        for m in self._special_re.finditer(text):
            if m.group() in allowed:
                ids.extend(self.encode_ordinary(text[start:m.start()]))
                ids.append(self.special_tokens[m.group()])
                start = m.end()
        ids.extend(self.encode_ordinary(text[start:]))
        return ids

    # ------------------------------------------------------------------ decoding
    def decode_bytes(self, ids):
        """The bytes of a sequence of ids (a list or a 1-D NumPy integer array)."""
        ids = _as_id_list(ids, self.vocab_size)
        try:
            parts = [self._id_to_bytes[i] for i in ids]
        except TypeError:  # a list with a float or a bool among its ints
            raise TypeError(f"decode: ids must be integers, got {ids[:8]!r}...") from None
        try:
            return b"".join(parts)
        except TypeError:
            bad = next(i for i in ids if self._id_to_bytes[i] is None)
            raise ValueError(f"decode: id {bad} is not used by this vocabulary") from None

    def decode(self, ids):
        """The text of a sequence of ids; bytes that are not valid UTF-8 become U+FFFD (as usual).

        A single id can be part of a character: Tokenizer().decode([230]) == '\\ufffd'.
        """
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ files
    def save(self, path):
        """Write the tokenizer as one versioned JSON file (see tinylm/bpe/files.py for the format)."""
        text = files.tokenizer_to_json(self.pattern, self._byte_ids, self._merge_list(), self.special_tokens)
        with fileio.atomic_open(path, "w") as f:  # written whole or not at all
            f.write(text)

    @classmethod
    def load(cls, path, trust_pattern=None):
        """Read a file written by `save`; a wrong format, version or content raises ValueError naming it.

        A custom pre-split pattern in the file is refused unless `trust_pattern` (see the top of this
        module: named patterns only from files, unless the caller opts in)."""
        pattern, *parts = files.tokenizer_from_json(fileio.load_json(path, "tokenizer file"), path)
        return cls._from_parts(trusted_file_pattern(pattern, path, trust_pattern), *parts, where=path)

    def vocab_listing(self):
        """A human-readable listing: one line per id, its bytes, and the pair it was merged from.

        Lines look like "258<TAB>[ t]<TAB><- [ ] + [t]"; special tokens end with "(special token)".
        """
        return files.vocab_listing(self._id_to_bytes, self._merge_list(), self.special_tokens)

    def save_vocab(self, path):
        """Write `vocab_listing()` to a text file."""
        with fileio.atomic_open(path, "w") as f:
            f.write(self.vocab_listing())

    @classmethod
    def from_gpt2_files(cls, vocab_json, merges_txt, pattern="gpt2"):
        """Read Hugging Face GPT-2 files (vocab.json + merges.txt); ids stay GPT-2's own ids."""
        parts = files.read_gpt2_files(vocab_json, merges_txt)
        return cls._from_parts(resolve_pattern(pattern), *parts, where=vocab_json)

    def save_gpt2_files(self, vocab_json, merges_txt):
        """Write vocab.json + merges.txt in GPT-2's format, readable by `from_gpt2_files` and GPT-2's tokenizer."""
        files.write_gpt2_files(vocab_json, merges_txt, self._id_to_bytes, self._merge_list(), self.special_tokens)

    @classmethod
    def from_tiktoken_file(cls, path, pattern="gpt4", special_tokens=None):
        """Read a tiktoken rank file (lines "base64-token rank"); the rank is the id.

        `special_tokens` is {string: id}, e.g. {"<|endoftext|>": 100257} for cl100k_base.
        """
        byte_ids, merges = files.read_tiktoken_file(path)
        return cls._from_parts(resolve_pattern(pattern), byte_ids, merges, dict(special_tokens or {}), where=path)

    @classmethod
    def _from_parts(cls, pattern, byte_ids, merges, special_tokens, where):
        tok = cls.__new__(cls)
        try:
            tok._set_state(pattern, byte_ids, merges, special_tokens)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        return tok

    def _merge_list(self):
        return [(a, b, new_id) for (a, b), new_id in self.merges.items()]

    def __repr__(self):
        return (f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={len(self.special_tokens)}, pattern={_pattern_name(self.pattern)})")


# ---------------------------------------------------------------------- helpers
def _number_special_tokens(special_tokens, first_id):
    """['<|a|>', '<|b|>'] -> {'<|a|>': first_id, '<|b|>': first_id + 1}; a dict's keys keep its order."""
    if special_tokens is None:
        return {}
    if isinstance(special_tokens, str):
        raise TypeError("special_tokens must be a list of strings, not a single string")
    names = list(special_tokens)
    for s in names:
        if not isinstance(s, str) or not s:
            raise ValueError(f"special token {s!r} must be a non-empty string")
    if len(set(names)) != len(names):
        raise ValueError(f"special_tokens has duplicates: {names}")
    return {s: first_id + j for j, s in enumerate(names)}


def _split_checked(text, split, check=True):
    """Cut `text` into chunks with the pattern's findall; refuse patterns that would drop text.

    GPT-2's and GPT-4's patterns match every character, so `check=False` skips the test for them.
    """
    if split is None:
        return [text] if text else []
    chunks = split(text)
    if check and sum(map(len, chunks)) != len(text):
        raise ValueError("the pre-split pattern does not match every character of the text; "
                         "a custom pattern must cover all text (end it with an alternative like |\\s+|.)")
    return chunks


def _as_id_list(ids, vocab_size):
    """A list of ints from a list, tuple or 1-D integer array, each checked to be in range."""
    if isinstance(ids, (list, tuple)):  # the common case, checked without a copy to NumPy
        try:
            lo, hi = (min(ids), max(ids)) if ids else (0, 0)
            ok = 0 <= lo and hi < vocab_size
            if not all(isinstance(i, (int, np.integer)) for i in (lo, hi)):
                raise TypeError
        except TypeError:
            lo = hi = None
        if lo is not None and ok:
            return ids
    arr = np.asarray(ids)
    if arr.size == 0:
        return []
    if arr.dtype.kind not in "iu":
        raise TypeError(f"decode: ids must be integers, got {arr.dtype} values")
    if arr.ndim != 1:
        raise ValueError(f"decode: ids must be a 1-D sequence, got shape {arr.shape}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"decode: id {bad} is out of range: this vocabulary has ids 0..{vocab_size - 1}")
    return arr.tolist()


def _pattern_name(pattern):
    for name, p in PATTERNS.items():
        if pattern == p:
            return repr(name)
    return "None" if pattern is None else "custom"
