"""`python -m tinylm.bench tokenizer`: BPE training and encoding throughput, as ratios.

    python -m tinylm.bench tokenizer            # the full suite (~30 s on a quiet machine)
    python -m tinylm.bench tokenizer --quick    # smaller texts and fewer repeats (~5 s)
    python -m tinylm.bench tokenizer --gpt2 DIR # GPT-2's vocab.json + merges.txt for part 4
    python -m tinylm.bench tokenizer --only tiktoken --gpt2 DIR   # part 4 alone

What it measures, each the median of --repeats runs, single-threaded:
1. training vocab 1024 on the built-in corpus; the same number of merges with the textbook
   recount-every-step trainer is too slow to run in full (~a minute), so both are timed on the
   first --textbook-merges merges and the ratio is reported at equal work;
2. training vocab 8192 on 4 MB of distinct text: tinyshakespeare (when ../shared/data has it), the
   built-in corpus, then the source files of Python's own standard library, in a fixed order, until
   4,000,000 bytes (no text is repeated: a repeated text would add bytes but no new chunks to count);
3. encoding English prose (tinyshakespeare + the built-in corpus, or the built-in corpus alone) with a
   4096-token vocabulary: MB/s with an empty chunk cache (a fresh tokenizer) and with a warm one,
   against the pre-split regex alone (the ceiling of the Python path; the C encoder, used when the
   extension is built, splits by hand and keeps no cache), and decoding.
4. GPT-2 encode against tiktoken, side by side: tinylm's Tokenizer read from GPT-2's Hugging Face
   files (--gpt2 DIR with vocab.json + merges.txt; without it the tiny GPT-2 of tests/fixtures, 200
   merges, which is not GPT-2's speed) and a tiktoken.Encoding built from the same vocabulary (ranks =
   GPT-2's ids, GPT-2's pattern: what tiktoken.get_encoding("gpt2") holds, with no download), both
   from an empty cache (tinylm's C encoder keeps none; its Python path's chunk cache is cleared), on
   the English prose of part 3; MB/s of each, the ratio, and whether the ids are identical. tiktoken
   is optional: without it, part 4 says so and is skipped.
Targets from the issue: (1) < 2 s, (2) < 60 s, (3) >= 2 MB/s, (4) >= 0.5x tiktoken, identical ids.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sysconfig
import time

import regex

from tinylm.bench.runtime import cpu_model
from tinylm.bpe import native
from tinylm.data import load_corpus
from tinylm.io.hf_gpt2 import load_hf_tokenizer
from tinylm.tokenizer import GPT4_PATTERN, Tokenizer

SHAKESPEARE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "tinyshakespeare.txt")
TINY_GPT2 = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "tiny-gpt2")


def textbook_train(text, n_merges, pattern=GPT4_PATTERN):
    """The straightforward trainer (the tests' oracle): recount every pair at every step."""
    chunks = [list(c.encode("utf-8")) for c in regex.findall(pattern, text)]
    for step in range(n_merges):
        counts = {}
        for ids in chunks:
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        pair = max(counts, key=counts.get)
        new_chunks = []
        for ids in chunks:
            out, i = [], 0
            while i < len(ids):
                if i < len(ids) - 1 and (ids[i], ids[i + 1]) == pair:
                    out.append(256 + step)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            new_chunks.append(out)
        chunks = new_chunks


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def english_text(builtin):
    """English prose: tinyshakespeare + the built-in corpus when ../shared/data has it, else the latter."""
    path = os.path.normpath(SHAKESPEARE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read() + "\n" + builtin, "tinyshakespeare + built-in corpus"
    return builtin, "built-in corpus"


def four_megabytes(english, n_bytes=4_000_000):
    """`english` followed by Python's standard-library sources (sorted paths) up to `n_bytes`."""
    parts, total = [english], len(english.encode("utf-8"))
    stdlib = sysconfig.get_paths()["stdlib"]
    for path in sorted(glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True)):
        if total >= n_bytes:
            break
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
        parts.append(source)
        total += len(source.encode("utf-8"))
    return "\n".join(parts).encode("utf-8")[:n_bytes].decode("utf-8", errors="ignore")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinylm.bench tokenizer", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller texts and fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 3, 1 with --quick)")
    parser.add_argument("--textbook-merges", type=int, default=None,
                        help="merges for the textbook-trainer comparison (default 40, 10 with --quick)")
    parser.add_argument("--gpt2", metavar="DIR", default=None,
                        help="a folder with GPT-2's vocab.json + merges.txt (Hugging Face's) for part 4; "
                             "default: the tiny GPT-2 of tests/fixtures (200 merges)")
    parser.add_argument("--only", choices=["tiktoken"], default=None,
                        help="run one part alone: 'tiktoken' = part 4, GPT-2 encode against tiktoken")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.only == "tiktoken":
        english, english_name = english_text(load_corpus("builtin"))
        if args.quick:
            english = english[: len(english) // 4]
        print(f"tokenizer benchmark, part 4 (median of {repeats}; single process)")
        return against_tiktoken(english, english_name, args.gpt2, repeats)
    n_textbook = args.textbook_merges or (10 if args.quick else 40)
    builtin = load_corpus("builtin")
    n_bytes = len(builtin.encode("utf-8"))
    rows = []

    # 1. vocab 1024 on the built-in corpus, and the fast/textbook ratio at equal merges
    t_1024 = median_seconds(lambda: Tokenizer().train(builtin, 1024), repeats)
    t_fast = median_seconds(lambda: Tokenizer().train(builtin, 256 + n_textbook), repeats)
    t_slow = median_seconds(lambda: textbook_train(builtin, n_textbook), 1)
    rows.append(("train vocab 1024, built-in corpus", f"{n_bytes / 1e6:.2f} MB", f"{t_1024:.2f} s",
                 f"target < 2 s: {'met' if t_1024 < 2 else 'NOT met'}"))
    rows.append((f"  first {n_textbook} merges: fast vs textbook", "", f"{t_fast:.2f} s vs {t_slow:.2f} s",
                 f"fast is {t_slow / t_fast:.0f}x faster"))
    per_merge = t_slow / n_textbook
    rows.append(("  textbook trainer, 768 merges (extrapolated)", "", f"~{per_merge * 768:.0f} s",
                 f"~{per_merge * 768 / t_1024:.0f}x the fast trainer"))

    # 2. vocab 8192 on ~4 MB
    english, english_name = english_text(builtin)
    big, big_name = four_megabytes(english), english_name + " + Python's stdlib sources"
    if args.quick:
        big, big_name = big[: len(big) // 8], big_name + ", first 1/8"
    big_bytes = len(big.encode("utf-8"))
    start = time.perf_counter()
    tok_8192 = Tokenizer().train(big, 8192)
    t_8192 = time.perf_counter() - start  # once: it is the longest measurement
    rows.append((f"train vocab 8192, {big_name}", f"{big_bytes / 1e6:.2f} MB", f"{t_8192:.2f} s",
                 f"target < 60 s: {'met' if t_8192 < 60 else 'NOT met'} ({len(tok_8192.merges)} merges)"))

    # 3. encoding and decoding with a 4096-token vocabulary
    if args.quick:
        english = english[: len(english) // 4]
    en_bytes = len(english.encode("utf-8"))
    tok = Tokenizer().train(builtin, 4096)
    pre_split = regex.compile(tok.pattern)
    ids = tok.encode(english)

    def cold():
        tok._chunk_cache.clear()  # as a fresh tokenizer: every distinct chunk is merged once
        tok.encode(english)

    # interleaved, so that the ratios compare runs made under the same machine load
    jobs = {"regex": lambda: pre_split.findall(english), "cold": cold,
            "warm": lambda: tok.encode(english), "decode": lambda: tok.decode(ids)}
    times = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            times[name].append(median_seconds(job, 1))
    t_regex, t_cold, t_warm, t_decode = (statistics.median(times[name]) for name in jobs)
    mbs = lambda seconds: en_bytes / seconds / 1e6  # noqa: E731
    path = "C encoder" if native.c_in_use() else "Python"  # the C encoder keeps no cache: cold = warm
    rows.append((f"encode {english_name}, vocab 4096, {path}, empty chunk cache", f"{en_bytes / 1e6:.2f} MB",
                 f"{mbs(t_cold):.1f} MB/s",
                 f"target >= 2 MB/s: {'met' if mbs(t_cold) >= 2 else 'NOT met'}; "
                 f"{t_regex / t_cold:.2f}x the regex; {en_bytes / len(ids):.2f} bytes/token"))
    rows.append((f"encode, vocab 4096, {path}, warm chunk cache", "", f"{mbs(t_warm):.1f} MB/s",
                 f"{t_regex / t_warm:.2f}x the speed of the pre-split regex alone"))
    rows.append(("  pre-split regex alone (the Python path's ceiling)", "", f"{mbs(t_regex):.1f} MB/s", ""))
    rows.append(("decode, vocab 4096", "", f"{mbs(t_decode):.1f} MB/s",
                 f"{t_warm / t_decode:.1f}x the speed of encoding (warm)"))

    print(f"tokenizer benchmark (median of {repeats}; single process)")
    print_rows(rows)
    print()
    return against_tiktoken(english, english_name, args.gpt2, repeats)


def print_rows(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def tiktoken_like(tok, name):
    """A tiktoken.Encoding holding tok's vocabulary: ranks = ids (GPT-2's ids are its ranks), tok's pattern."""
    import tiktoken
    ranks = {tok.token_bytes(i): i for i in range(tok.vocab_size) if i not in tok.special_tokens.values()}
    return tiktoken.Encoding(name, pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens)


def against_tiktoken(english, english_name, gpt2_dir, repeats):
    """Part 4: GPT-2 encode, empty cache, tinylm (C encoder, and its Python reference once) vs tiktoken."""
    print(f"4. GPT-2 encode vs tiktoken. CPU: {cpu_model()} ({os.cpu_count()} logical CPUs; single-threaded)")
    try:
        import tiktoken
    except ImportError:
        print("   skipped: tiktoken is not installed (pip install tiktoken); it is optional, for this part only")
        return 0
    folder = gpt2_dir or os.path.normpath(TINY_GPT2)
    tok = load_hf_tokenizer(folder)  # FileNotFoundError, naming the file, when a folder lacks one
    vocab_note = "" if gpt2_dir else " (the tiny test GPT-2: pass --gpt2 DIR for GPT-2's own 50,000 merges)"
    enc = tiktoken_like(tok, "gpt2-from-files")
    path = "C (tinylm_bpe_encode, hash-table lookups)" if native.c_in_use() else \
        "Python (the C extension is not built, or TINYLM_KERNELS=numpy)"
    n_bytes = len(english.encode("utf-8"))
    tok.encode_ordinary("warm up: builds the C tables once, as tiktoken.Encoding builds its own")

    def tinylm_cold():
        tok._chunk_cache.clear()  # the C encoder has no cache; the Python path's is emptied
        return tok.encode_ordinary(english)

    ours, theirs = tinylm_cold(), enc.encode_ordinary(english)
    times = {"tinylm": [], "tiktoken": []}
    for _ in range(repeats):  # interleaved, so both see the same machine load
        times["tinylm"].append(median_seconds(tinylm_cold, 1))
        times["tiktoken"].append(median_seconds(lambda: enc.encode_ordinary(english), 1))
    t_ours, t_theirs = statistics.median(times["tinylm"]), statistics.median(times["tiktoken"])
    t_python = median_seconds(lambda: (tok._chunk_cache.clear(), tok._encode_ordinary_python(english)), 1)
    ratio = t_theirs / t_ours
    same = ours == theirs
    print(f"   vocabulary: {folder}: {len(tok.merges):,} merges{vocab_note}; tiktoken {tiktoken.__version__}")
    print(f"   text: {english_name}, {n_bytes / 1e6:.2f} MB, {len(ours):,} tokens; tinylm's path: {path}")
    print_rows([
        ("   tinylm encode_ordinary, empty cache", f"{n_bytes / t_ours / 1e6:.1f} MB/s",
         f"{ratio:.2f}x tiktoken's speed: target >= 0.5x {'met' if ratio >= 0.5 else 'NOT met'}"),
        ("   tiktoken encode_ordinary", f"{n_bytes / t_theirs / 1e6:.1f} MB/s", ""),
        ("   tinylm's Python reference, empty cache", f"{n_bytes / t_python / 1e6:.1f} MB/s",
         f"{t_theirs / t_python:.2f}x tiktoken's speed (run once)"),
        ("   ids identical to tiktoken's", "yes" if same else "NO", f"{len(ours):,} vs {len(theirs):,} ids"),
    ])
    return 0 if same else 1
