"""`tinylm export`: hand a trained run to another tool.

    tinylm export --format hf --run tinylm-demo --out tinylm-demo-hf

--format hf writes a Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json, merges.txt)
that `transformers` loads as it is:

    from transformers import AutoTokenizer, GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained("tinylm-demo-hf")
    tokenizer = AutoTokenizer.from_pretrained("tinylm-demo-hf")

--format llama2c writes model.bin (llama2.c version 0, 1 or 2: --llama2c-version) + tokenizer.bin for
llama2.c's run.c / runq.c, and tokenizer.json (tinylm's exact tokenizer) beside them:

    tinylm export --format llama2c --run runs/llama --out llama2c
    ./run llama2c/model.bin -z llama2c/tokenizer.bin -t 0 -n 100 -i "ROMEO:"

--format gguf writes model.gguf for llama.cpp (GPT-2 or Llama architecture), tensors in F32, F16,
Q8_0 or Q4_0 as the precision plan says (--plan fp16, --plan int8, --plan int4:g32, or a plan file):

    tinylm export --format gguf --run runs/llama --out gguf --plan int8
    llama-cli -m gguf/model.gguf -p "ROMEO:" -n 100 --temp 0

--format c writes the folder tinylm's C runtime runs (model.bin, model_data.c/.h, README.md), from a
run (optionally quantized by --plan) or from a folder written by `tinylm quantize --out`:

    tinylm export --format c --run tinylm-demo --plan int8 --out demo-c
    make -C runtime && ./runtime/tinylm-run demo-c/model.bin -n 100 -i "def "
"""
from __future__ import annotations

import os
import sys

FORMATS = ["hf", "llama2c", "gguf", "c"]


def register(sub):
    p = sub.add_parser(
        "export", help="write a trained run in another format (hf: a Hugging Face GPT-2 folder)",
        description="Export the model and tokenizer of a run written by `tinylm train`. --format hf writes a "
                    "Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json, merges.txt) that "
                    "transformers' GPT2LMHeadModel.from_pretrained and AutoTokenizer.from_pretrained load "
                    "without conversion, and that `tinylm generate --hf` reads back.")
    p.add_argument("--format", choices=FORMATS, default="hf",
                   help="output format; hf = Hugging Face GPT-2 folder (the default), llama2c = model.bin + "
                        "tokenizer.bin for llama2.c, gguf = model.gguf for llama.cpp, c = model.bin + "
                        "model_data.c/.h for tinylm's C runtime")
    p.add_argument("--run", required=True, metavar="RUN_DIR",
                   help="run folder written by `tinylm train` (llama2c, gguf and c: any model tinylm.load opens, "
                        "e.g. a quantized folder written by `tinylm quantize --out`)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write (created if needed; if it already holds files of the names written, "
                        "the export stops unless --force)")
    p.add_argument("--force", action="store_true", help="replace the files of an earlier export in --out")
    p.add_argument("--llama2c-version", type=int, choices=[0, 1, 2], default=0,
                   help="llama2c: 0 = run.c's fp32 file (the default), 1 = fp32 with a header, 2 = int8 for runq.c")
    p.add_argument("--group-size", type=int, help="llama2c version 2: values per int8 scale (default: the model's "
                                                  "own, else 64 halved until it divides the widths)")
    p.add_argument("--plan", metavar="PLAN",
                   help="gguf and c: quantize first, with a plan JSON file or one precision for every layer "
                        "(fp16, int8, int8:g64, int8:channel, int4:g32; gguf takes fp16, int8 = Q8_0 and "
                        "int4:g32 = Q4_0); default: the model's own precisions (fp32 for a trained run)")
    p.set_defaults(func=run)


def run(args):
    if args.format != "hf":
        return {"llama2c": run_llama2c, "gguf": run_gguf, "c": run_c}[args.format](args)
    if args.plan is not None:
        raise ValueError("--plan applies to --format gguf and c")
    from tinylm.fileio import removed_on_failure
    from tinylm.io.hf_gpt2 import HF_FILES, save_hf_gpt2
    from tinylm.io.runs import load_model
    from tinylm.tokenizer import GPT2_PATTERN

    _check_out(args, HF_FILES)
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


def _check_out(args, names):
    """Before any work: --out must be a folder we can write, and hold none of `names` unless --force."""
    from tinylm.fileio import check_not_replacing, check_writable

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise FileExistsError(f"--out {args.out} exists and is not a folder")
    if not args.force:
        check_not_replacing(args.out, names)
    check_writable(args.out)


def run_llama2c(args):
    from tinylm.fileio import removed_on_failure
    from tinylm.io import load
    from tinylm.io.llama2c import FILES, save_llama2c

    _check_out(args, FILES)
    model, tokenizer = load(args.run)
    with removed_on_failure(args.out, FILES):
        save_llama2c(model, args.out, tokenizer, version=args.llama2c_version, group_size=args.group_size)
    c = model.config
    print(f"wrote {args.out}: model.bin (llama2.c version {args.llama2c_version}; dim={c.n_embd}, "
          f"n_layers={c.n_layer}, n_heads={c.n_head}, n_kv_heads={c.kv_heads}, hidden_dim={c.mlp_hidden_size}, "
          f"seq_len={c.block_size}), tokenizer.bin, tokenizer.json")
    print(f"run it: ./{'runq' if args.llama2c_version == 2 else 'run'} {os.path.join(args.out, 'model.bin')} "
          f"-z {os.path.join(args.out, 'tokenizer.bin')} -t 0 -n 64 -i \"your prompt\"")
    return 0


def run_gguf(args):
    from tinylm.fileio import removed_on_failure
    from tinylm.io import load
    from tinylm.io.gguf import save_gguf

    _check_out(args, ["model.gguf"])
    model, tokenizer = load(args.run, args.plan)
    with removed_on_failure(args.out, ["model.gguf"]):
        os.makedirs(args.out, exist_ok=True)  # --out is created if needed (and removed again on failure)
        path = save_gguf(model, os.path.join(args.out, "model.gguf"), tokenizer)
    print(f"wrote {path} ({os.path.getsize(path):,} bytes; {'llama' if not model.config.is_gpt2 else 'gpt2'} "
          f"architecture)")
    print(f"run it: llama-cli -m {path} -p \"your prompt\" -n 64 --temp 0")
    return 0


def run_c(args):
    from tinylm.fileio import removed_on_failure
    from tinylm.io import load
    from tinylm.io.cblob import C_FILES, export_c

    _check_out(args, C_FILES)
    model, tokenizer = load(args.run, args.plan)
    if tokenizer is None:
        raise ValueError(f"{args.run} holds no tokenizer; the C runtime needs one (save the quantized model with it)")
    with removed_on_failure(args.out, C_FILES):
        size = export_c(model, tokenizer, args.out, force=args.force)
    c = model.config
    print(f"wrote {args.out}: model.bin ({size:,} bytes), model_data.c, model_data.h, README.md (n_layer={c.n_layer}, "
          f"n_head={c.n_head}, n_embd={c.n_embd}, block_size={c.block_size}, vocab_size={c.vocab_size})")
    print(f"run it: make -C runtime && ./runtime/tinylm-run {os.path.join(args.out, 'model.bin')} -n 100 -i \"...\"")
    return 0
