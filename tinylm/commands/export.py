"""`tinylm export`: hand a trained run to another tool.

    tinylm export --format hf --run tinylm-demo --out tinylm-demo-hf

--format hf writes a Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json, merges.txt)
that `transformers` loads as it is:

    from transformers import AutoTokenizer, GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained("tinylm-demo-hf")
    tokenizer = AutoTokenizer.from_pretrained("tinylm-demo-hf")

--format c writes the folder tinylm's C runtime runs (model.bin, model_data.c/.h, README.md), from a
run (optionally quantized by --plan: a plan file or one precision for every layer) or from a folder
written by `tinylm quantize --out`:

    tinylm export --format c --run tinylm-demo --plan int8 --out demo-c
    make -C runtime && ./runtime/tinylm-run demo-c/model.bin -n 100 -i "def "
"""
from __future__ import annotations

import os
import sys

FORMATS = ["hf", "c"]


def register(sub):
    p = sub.add_parser(
        "export", help="write a trained run in another format (hf: a Hugging Face GPT-2 folder)",
        description="Export the model and tokenizer of a run written by `tinylm train`. --format hf writes a "
                    "Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json, merges.txt) that "
                    "transformers' GPT2LMHeadModel.from_pretrained and AutoTokenizer.from_pretrained load "
                    "without conversion, and that `tinylm generate --hf` reads back.")
    p.add_argument("--format", choices=FORMATS, default="hf",
                   help="output format; hf = Hugging Face GPT-2 folder (the default); c = model.bin + "
                        "model_data.c/.h for tinylm's C runtime")
    p.add_argument("--run", required=True, metavar="RUN_DIR",
                   help="run folder written by `tinylm train` (or, with --format c, a quantized model folder "
                        "written by `tinylm quantize --out`)")
    p.add_argument("--plan", metavar="PLAN",
                   help="--format c only: quantize first, with a plan file (plan.json) or one precision for "
                        "every layer (fp16, int8, int8:g64, int8:channel)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write (created if needed; if it already holds files of the names written, "
                        "the export stops unless --force)")
    p.add_argument("--force", action="store_true", help="replace the files of an earlier export in --out")
    p.set_defaults(func=run)


def run(args):
    if args.format == "c":
        return run_c(args)
    if args.plan is not None:
        raise ValueError("--plan applies to --format c only")
    from tinylm.checkpoint import load_model
    from tinylm.fileio import check_not_replacing
    from tinylm.hf import HF_FILES, save_hf_gpt2
    from tinylm.tokenizer import GPT2_PATTERN

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise FileExistsError(f"--out {args.out} exists and is not a folder")
    if not args.force:
        check_not_replacing(args.out, HF_FILES)
    model, tokenizer = load_model(args.run)
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


def load_for_c(folder, plan=None):
    """(model, tokenizer) from a run folder or a quantized folder, quantized by `plan` when given (a
    plan file or one precision string). Used by export --format c and generate --engine c."""
    from tinylm.quant import apply_plan, load_plan, load_quantized, uniform_plan
    from tinylm.tokenizer import Tokenizer

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--run {folder} is not a folder")
    if os.path.exists(os.path.join(folder, "quantized.json")):
        if plan is not None:
            raise ValueError(f"{folder} is already quantized; --plan applies to an fp32 run")
        tok_path = os.path.join(folder, "tokenizer.json")
        if not os.path.exists(tok_path):
            raise FileNotFoundError(f"{folder} has no tokenizer.json; save the quantized model with its tokenizer")
        return load_quantized(folder), Tokenizer.load(tok_path)
    from tinylm.checkpoint import load_model
    model, tokenizer = load_model(folder)
    if plan is not None:
        plan = load_plan(plan) if os.path.exists(plan) else uniform_plan(model, plan)
        model = apply_plan(model, plan)
    return model, tokenizer


def run_c(args):
    from tinylm.io.cblob import export_c

    model, tokenizer = load_for_c(args.run, args.plan)
    size = export_c(model, tokenizer, args.out, force=args.force)
    c = model.config
    print(f"wrote {args.out}: model.bin ({size:,} bytes), model_data.c, model_data.h, README.md (n_layer={c.n_layer}, "
          f"n_head={c.n_head}, n_embd={c.n_embd}, block_size={c.block_size}, vocab_size={c.vocab_size})")
    print(f"run it: make -C runtime && ./runtime/tinylm-run {os.path.join(args.out, 'model.bin')} -n 100 -i \"...\"")
    return 0
