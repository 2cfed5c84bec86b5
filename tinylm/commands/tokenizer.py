"""`tinylm tokenizer train | encode | decode | vocab`: the byte-level BPE tokenizer from the shell.

    tinylm tokenizer train --input builtin --vocab-size 1024 --pattern gpt4 --out tok.json
    tinylm tokenizer encode --tokenizer tok.json "我喜欢学习AI"      # prints the ids
    tinylm tokenizer decode --tokenizer tok.json 6 4 12 233         # prints the text
    tinylm tokenizer vocab --tokenizer tok.json --out vocab.txt      # a readable listing
"""
from __future__ import annotations

import os
import sys
import time


def register(sub):
    p = sub.add_parser("tokenizer", help="train a BPE tokenizer, encode text to ids, decode ids to text",
                       description="Byte-level BPE tokenizer: train one on a corpus, encode text to token "
                                   "ids, decode ids back to text, or list the learned vocabulary.")
    tsub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    t = tsub.add_parser("train", help="learn merges from a corpus and save the tokenizer as JSON",
                        description="Train a byte-level BPE tokenizer on a text file, a folder of .txt "
                                    "files or the built-in corpus (the Python reference manual), and "
                                    "save it as one JSON file.")
    t.add_argument("--input", default="builtin",
                   help="corpus: a UTF-8 text file, a folder of .txt/.md files, or 'builtin' (default)")
    t.add_argument("--vocab-size", type=int, default=1024,
                   help="number of token ids: 256 bytes + merges + special tokens (default 1024)")
    t.add_argument("--pattern", default="gpt4",
                   help="pre-split pattern: 'gpt4' (default), 'gpt2', 'none', or a regex of your own")
    t.add_argument("--special-tokens", nargs="*", default=["<|endoftext|>"], metavar="TOKEN",
                   help="special tokens, given the last ids (default: <|endoftext|>; none if the flag is "
                        "given without values)")
    t.add_argument("--out", required=True, help="where to write the tokenizer JSON file (an existing file is "
                                                "kept unless --force)")
    t.add_argument("--force", action="store_true", help="replace the file at --out if there is one")
    t.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    t.set_defaults(func=run_train)

    e = tsub.add_parser("encode", help="print the token ids of a text",
                        description="Encode TEXT (or the contents of --file) and print the ids, "
                                    "separated by spaces.")
    e.add_argument("--tokenizer", required=True, help="tokenizer JSON file written by `tinylm tokenizer train`")
    e.add_argument("text", nargs="?", metavar="TEXT", help="the text to encode")
    e.add_argument("--file", help="encode the contents of this UTF-8 file instead of TEXT")
    e.add_argument("--allow-special", action="store_true",
                   help="encode special-token strings such as <|endoftext|> as their ids (default: refuse "
                        "text that contains them)")
    e.set_defaults(func=run_encode)

    d = tsub.add_parser("decode", help="print the text of token ids",
                        description="Decode token ids (integers separated by spaces or commas) and print "
                                    "the text.")
    d.add_argument("--tokenizer", required=True, help="tokenizer JSON file written by `tinylm tokenizer train`")
    d.add_argument("ids", nargs="+", metavar="ID", help="token ids")
    d.set_defaults(func=run_decode)

    v = tsub.add_parser("vocab", help="write a readable listing of the vocabulary",
                        description="Write one line per token id: its bytes shown readably and the pair "
                                    "it was merged from.")
    v.add_argument("--tokenizer", required=True, help="tokenizer JSON file written by `tinylm tokenizer train`")
    v.add_argument("--out", default="-", help="file to write (default '-': standard output)")
    v.set_defaults(func=run_vocab)


def run_train(args):
    from tinylm.data import load_corpus
    from tinylm.fileio import check_writable
    from tinylm.tokenizer import Tokenizer

    if os.path.exists(args.out) and not args.force:  # before the work, not after it
        raise FileExistsError(f"--out {args.out} already exists: pass --force to replace it, or choose another path")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise FileNotFoundError(f"--out {args.out}: the folder {os.path.dirname(os.path.abspath(args.out))} "
                                "does not exist")
    check_writable(os.path.dirname(os.path.abspath(args.out)))
    text = load_corpus(args.input)
    start = time.perf_counter()
    tok = Tokenizer().train(text, args.vocab_size, pattern=args.pattern,
                            special_tokens=args.special_tokens, verbose=not args.quiet)
    seconds = time.perf_counter() - start
    tok.save(args.out)
    n_bytes = len(text.encode("utf-8"))
    n_tokens = len(tok.encode(text, allowed_special="all"))
    print(f"trained {tok.vocab_size} tokens ({len(tok.merges)} merges) on {n_bytes:,} bytes in {seconds:.1f}s; "
          f"{n_bytes / n_tokens:.2f} bytes per token; saved {args.out}")
    return 0


def run_encode(args):
    from tinylm.data import load_corpus
    from tinylm.tokenizer import Tokenizer

    if (args.text is None) == (args.file is None):
        raise ValueError("give either TEXT or --file (exactly one)")
    text = load_corpus(args.file) if args.file is not None else args.text
    tok = Tokenizer.load(args.tokenizer)
    if not args.allow_special:
        for special in tok.special_tokens:
            if special in text:
                raise ValueError(f"the text contains the special token {special!r}; "
                                 f"add --allow-special to encode it as its id")
    ids = tok.encode(text, allowed_special="all" if args.allow_special else "none")
    print(" ".join(map(str, ids)))
    return 0


def run_decode(args):
    from tinylm.tokenizer import Tokenizer

    ids = []
    for arg in args.ids:
        for part in arg.replace(",", " ").split():
            try:
                ids.append(int(part))
            except ValueError:
                raise ValueError(f"{part!r} is not an integer token id") from None
    tok = Tokenizer.load(args.tokenizer)
    sys.stdout.write(tok.decode(ids) + "\n")
    return 0


def run_vocab(args):
    from tinylm.tokenizer import Tokenizer

    tok = Tokenizer.load(args.tokenizer)
    if args.out == "-":
        sys.stdout.write(tok.vocab_listing())
    else:
        tok.save_vocab(args.out)
        print(f"wrote {tok.vocab_size} tokens to {args.out}")
    return 0
