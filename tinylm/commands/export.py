"""`tinylm export`: hand a trained run to another tool.

    tinylm export --format hf --run tinylm-demo --out tinylm-demo-hf

--format hf writes a Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json, merges.txt)
that `transformers` loads as it is:

    from transformers import AutoTokenizer, GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained("tinylm-demo-hf")
    tokenizer = AutoTokenizer.from_pretrained("tinylm-demo-hf")
"""
from __future__ import annotations

import os
import sys

FORMATS = ["hf"]


def register(sub):
    p = sub.add_parser(
        "export", help="write a trained run in another format (hf: a Hugging Face GPT-2 folder)",
        description="Export the model and tokenizer of a run written by `tinylm train`. --format hf writes a "
                    "Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json, merges.txt) that "
                    "transformers' GPT2LMHeadModel.from_pretrained and AutoTokenizer.from_pretrained load "
                    "without conversion, and that `tinylm generate --hf` reads back.")
    p.add_argument("--format", choices=FORMATS, default="hf",
                   help="output format; hf = Hugging Face GPT-2 folder (the default and, for now, the only one)")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder written by `tinylm train`")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write (created if needed; if it already holds files of the names written, "
                        "the export stops unless --force)")
    p.add_argument("--force", action="store_true", help="replace the files of an earlier export in --out")
    p.set_defaults(func=run)


def run(args):
    from tinylm.fileio import check_not_replacing, check_writable, removed_on_failure
    from tinylm.io.hf_gpt2 import HF_FILES, save_hf_gpt2
    from tinylm.io.runs import load_model
    from tinylm.tokenizer import GPT2_PATTERN

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise FileExistsError(f"--out {args.out} exists and is not a folder")
    if not args.force:
        check_not_replacing(args.out, HF_FILES)
    check_writable(args.out)
    model, tokenizer = load_model(args.run)
    with removed_on_failure(args.out, HF_FILES):
        save_hf_gpt2(model, args.out, tokenizer)
    c = model.config
    print(f"wrote {args.out}: config.json, model.safetensors, vocab.json, merges.txt, tokenizer_config.json "
          f"(GPT-2 with n_layer={c.n_layer}, n_head={c.n_head}, n_embd={c.n_embd}, block_size={c.block_size}, "
          f"vocab_size={c.vocab_size}; {model.num_params():,} parameters)")
    if tokenizer.pattern != GPT2_PATTERN:
        print("note: this tokenizer pre-splits text with another pattern than GPT-2's; Hugging Face's GPT-2 "
              "tokenizer will use GPT-2's, which decodes to the same text but may choose other tokens for "
              "some strings", file=sys.stderr)
    return 0
