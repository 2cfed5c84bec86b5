"""Tokenizer files: tinylm's own JSON, GPT-2's vocab.json + merges.txt, tiktoken's rank files.

Every reader returns the same parts, which `Tokenizer` checks and installs:
    byte_ids        the id of each byte value 0..255 (0..255 for tinylm-trained vocabularies)
    merges          [(left_id, right_id, new_id), ...] in rank order: rank 0 is merged first
    special_tokens  {"<|endoftext|>": 50256, ...}

tinylm's format is one JSON object:

    {
      "format": "tinylm-bpe",
      "version": 1,
      "pattern": "<the pre-split regex, or null>",
      "special_tokens": {"<|endoftext|>": 1023},
      "merges": [
        [116, 104, 256],          <- left id, right id, new id: one merge per line, in rank order
        [32, 97, 257],
        ...
      ]
    }

plus "byte_ids": [256 ids] when bytes do not have ids 0..255 (GPT-2's files, for example).
"""
from __future__ import annotations

import base64
import binascii
import heapq
import json

import regex

from tinylm import fileio

FORMAT, VERSION = "tinylm-bpe", 1
MAX_SPECIAL_TOKENS = 1024  # vocab.json entries no merge makes; more means merges.txt is cut short


# ---------------------------------------------------------------------- tinylm's JSON format
def tokenizer_to_json(pattern, byte_ids, merges, special_tokens):
    """The text of a tokenizer file: JSON with one merge per line, so that it reads like a table.

    >>> print(tokenizer_to_json(None, range(256), [(104, 105, 256)], {"<|end|>": 257}), end="")
    {
      "format": "tinylm-bpe",
      "version": 1,
      "pattern": null,
      "special_tokens": {"<|end|>": 257},
      "merges": [
        [104, 105, 256]
      ]
    }
    """
    fields = {"format": FORMAT, "version": VERSION, "pattern": pattern, "special_tokens": dict(special_tokens)}
    if list(byte_ids) != list(range(256)):
        fields["byte_ids"] = list(byte_ids)
    lines = [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}," for key, value in fields.items()]
    rows = ",\n".join(f"    {json.dumps(list(m))}" for m in merges)
    return "{\n" + "\n".join(lines) + '\n  "merges": [\n' + rows + ("\n" if rows else "") + "  ]\n}\n"


def tokenizer_from_json(data, path):
    """Check the structure of a loaded tokenizer file; returns (pattern, byte_ids, merges, special_tokens)."""
    def bad(what):
        return ValueError(f"{path} is not a valid tinylm tokenizer file: {what}")

    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, found {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise bad(f"format is {data.get('format')!r}, expected {FORMAT!r}")
    if data.get("version") != VERSION:
        raise bad(f"version {data.get('version')!r} is not supported (this tinylm reads version {VERSION})")
    missing = {"pattern", "merges", "special_tokens"} - set(data)
    if missing:
        raise bad(f"missing keys {sorted(missing)}")
    pattern = data["pattern"]
    if pattern is not None:
        if not isinstance(pattern, str):
            raise bad("'pattern' must be a string or null")
        try:
            regex.compile(pattern)
        except regex.error as exc:
            raise bad(f"'pattern' is not a valid regex ({exc})") from None
    byte_ids = data.get("byte_ids", list(range(256)))
    if not isinstance(byte_ids, list):
        raise bad("'byte_ids' must be a list of 256 ids")
    merges = data["merges"]
    if not isinstance(merges, list) or not all(isinstance(m, list) and len(m) == 3 for m in merges):
        raise bad("'merges' must be a list of [left_id, right_id, new_id] triples")
    specials = data["special_tokens"]
    if not isinstance(specials, dict):
        raise bad("'special_tokens' must be an object {token: id}")
    return pattern, byte_ids, [tuple(m) for m in merges], specials


def show_bytes(b):
    """Bytes as readable text: valid UTF-8 as characters, the rest as escapes.

    >>> show_bytes(b" the\\n"), show_bytes("é".encode()), show_bytes(b"\\xe6")
    (' the\\\\n', 'é', '\\\\xe6')
    """
    text = b.decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def vocab_listing(id_to_bytes, merges, special_tokens):
    """The text of `save_vocab`: `id  [token]  <- [left] + [right]`, one id per line."""
    parents = {new_id: (a, b) for a, b, new_id in merges}
    special_ids = {i: s for s, i in special_tokens.items()}
    lines = ["# id\t[token bytes]\t<- [left] + [right] (the merge that made it)"]
    for i, b in enumerate(id_to_bytes):
        if b is None:
            continue
        line = f"{i}\t[{show_bytes(b)}]"
        if i in special_ids:
            line += "\t(special token)"
        elif i in parents:
            a, c = parents[i]
            line += f"\t<- [{show_bytes(id_to_bytes[a])}] + [{show_bytes(id_to_bytes[c])}]"
        lines.append(line)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- GPT-2's files
def bytes_to_unicode():
    """GPT-2's table from each byte value to a printable character, so tokens can be JSON keys.

    Printable Latin-1 bytes map to themselves ("!" -> "!"); the other 68 bytes (controls, space,
    ...) map, in byte order, to the characters U+0100, U+0101, ...: the space 0x20 is the 33rd of
    them, so " " -> "Ġ" (U+0120), and the newline 0x0A -> "Ċ" (U+010A). That is why GPT-2's
    vocabulary is full of words like "Ġthe".
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def read_gpt2_files(vocab_json, merges_txt):
    """Read vocab.json ({token string: id}) and merges.txt ("left right" per line, in rank order)."""
    vocab = fileio.load_json(vocab_json, "GPT-2 vocab.json")
    if not isinstance(vocab, dict) or not all(isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()):
        raise ValueError(f"{vocab_json} is not a GPT-2 vocab.json: expected an object {{token: id}}")
    byte_to_char = bytes_to_unicode()
    missing = [b for b in range(256) if byte_to_char[b] not in vocab]
    if missing:
        raise ValueError(f"{vocab_json} is not a byte-level vocab.json: no token for byte(s) {missing[:5]}")
    byte_ids = [vocab[byte_to_char[b]] for b in range(256)]

    merges, made = [], set(byte_ids)
    for number, line in enumerate(_read_lines(merges_txt, "GPT-2 merges.txt"), start=1):
        if (number == 1 and line.startswith("#version")) or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{merges_txt} line {number}: expected two tokens separated by one space, got {line!r}")
        left, right = parts
        for token in (left, right, left + right):
            if token not in vocab:
                raise ValueError(f"{merges_txt} line {number}: token {token!r} is not in {vocab_json}")
        merges.append((vocab[left], vocab[right], vocab[left + right]))
        made.add(vocab[left + right])
    special_tokens = {s: i for s, i in vocab.items() if i not in made}  # e.g. "<|endoftext|>": 50256
    _check_special_tokens(special_tokens, byte_to_char, vocab_json, merges_txt)
    return byte_ids, merges, special_tokens


def _check_special_tokens(special_tokens, byte_to_char, vocab_json, merges_txt):
    """The tokens of vocab.json that no merge makes are its special tokens ("<|endoftext|>"): a few,
    written as themselves. A token spelled in GPT-2's byte alphabet with a character that stands for a
    space or a control byte ("Ġb" is " b") is a learned token whose merge is missing, and so is a
    vocabulary where thousands of tokens are made by no merge: merges.txt is truncated or belongs to
    another vocab.json. Taken as special tokens they would decode as "Ġb" and refuse ordinary prompts."""
    shifted = {c for b, c in byte_to_char.items() if ord(c) != b}  # "Ġ" (space), "Ċ" (newline), ...
    learned = [s for s in special_tokens if len(s) > 1 and shifted.intersection(s)]
    if learned or len(special_tokens) > MAX_SPECIAL_TOKENS:
        example = learned[0] if learned else next(iter(special_tokens))
        raise ValueError(f"{merges_txt} makes no token for {len(special_tokens):,} entries of {vocab_json} "
                         f"(for example {example!r}): merges.txt is truncated or belongs to another vocabulary")


def write_gpt2_files(vocab_json, merges_txt, id_to_bytes, merges, special_tokens):
    """Write vocab.json and merges.txt so that GPT-2's tokenizer reads the same vocabulary."""
    byte_to_char = bytes_to_unicode()
    special_ids = set(special_tokens.values())
    as_text = {i: "".join(byte_to_char[x] for x in b)
               for i, b in enumerate(id_to_bytes) if b is not None and i not in special_ids}
    vocab = {s: i for i, s in as_text.items()}
    for s, i in special_tokens.items():
        if s in vocab:
            raise ValueError(f"special token {s!r} has the same text as token {vocab[s]} in GPT-2's format; "
                             f"GPT-2's vocab.json cannot hold both")
        vocab[s] = i
    if len(vocab) != len(as_text) + len(special_tokens):
        raise ValueError("two tokens have the same bytes; GPT-2's vocab.json cannot hold both")
    fileio.save_json(vocab_json, vocab)
    with fileio.atomic_open(merges_txt, "w") as f:
        f.write("#version: 0.2\n")
        for a, b, _ in merges:
            f.write(f"{as_text[a]} {as_text[b]}\n")


# ---------------------------------------------------------------------- tiktoken's files
def read_tiktoken_file(path):
    """Read a tiktoken rank file: one "base64(token bytes) rank" per line; the rank is the id.

    tiktoken stores no merges: it merges, at each step, the adjacent pair whose concatenation has
    the lowest rank. For a vocabulary learned by BPE (cl100k_base is one) the same result comes
    from merges applied by rank, and each token's merge is recovered by running that rule on the
    token's own bytes with the lower ranks only: it stops at exactly two parts, the merged pair.
    """
    rank_of = {}
    for number, line in enumerate(_read_lines(path, "tiktoken file"), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            rank_of[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise ValueError(f"{path} line {number}: expected 'base64-token rank', got {line[:60]!r}") from None
    missing = [b for b in range(256) if bytes([b]) not in rank_of]
    if missing:
        raise ValueError(f"{path} is not a byte-level BPE vocabulary: no token for byte(s) {missing[:5]}")
    byte_ids = [rank_of[bytes([b])] for b in range(256)]
    merges = []
    for token, rank in sorted(rank_of.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = _merge_by_rank(token, rank_of, max_rank=rank)
        if len(parts) != 2:
            raise ValueError(f"{path}: token {token!r} (rank {rank}) cannot be made by merging two "
                             f"lower-ranked tokens; not a BPE vocabulary")
        merges.append((rank_of[parts[0]], rank_of[parts[1]], rank))
    return byte_ids, merges


def _merge_by_rank(token, rank_of, max_rank):
    """tiktoken's rule on `token`: merge the adjacent pair of lowest rank (< max_rank), the leftmost of
    equal ones, until none is left; returns the parts.

    A heap of candidate pairs and a linked list of parts, as in Tokenizer._encode_long_chunk: a rescan
    of the whole token after every merge would be O(L^2), 16 s for one hostile 46 KB line.
    """
    parts = [bytes([b]) for b in token]  # parts[i]: the part that starts at byte i (None: merged into its left)
    nxt = [*range(1, len(parts)), -1]
    prv = list(range(-1, len(parts) - 1))
    heap = []

    def push(i):
        j = nxt[i] if i >= 0 else -1
        if j >= 0:
            r = rank_of.get(parts[i] + parts[j])
            if r is not None and r < max_rank:
                heapq.heappush(heap, (r, i, j, len(parts[i]), len(parts[j])))

    for i in range(len(parts)):
        push(i)
    while heap:
        _, i, j, len_i, len_j = heapq.heappop(heap)
        if parts[i] is None or nxt[i] != j or len(parts[i]) != len_i or len(parts[j]) != len_j:
            continue  # outdated: a part of this pair was merged since it was pushed (parts only grow)
        parts[i], parts[j] = parts[i] + parts[j], None
        nxt[i] = nxt[j]
        if nxt[i] >= 0:
            prv[nxt[i]] = i
        push(prv[i])
        push(i)
    return [p for p in parts if p is not None]


def _read_lines(path, what):
    """The lines of a UTF-8 text file (a FIFO, a device or a huge file is refused: fileio.read_text)."""
    return [line.rstrip("\r") for line in fileio.read_text(path, what).split("\n")]
