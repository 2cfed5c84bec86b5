"""`tinylm generate`: continue a prompt with a trained run or a Hugging Face GPT-2 folder.

    tinylm generate --run runs/demo --prompt "def " --max-new-tokens 100 --temperature 0.8 --top-k 40
    tinylm generate --hf gpt2/ --prompt "我喜欢学习AI" --temperature 0
"""
from __future__ import annotations

import os


def register(sub):
    p = sub.add_parser(
        "generate", help="generate text from a trained run or a Hugging Face GPT-2 folder",
        description="Continue a prompt with a model: one trained by `tinylm train` (--run) or a Hugging "
                    "Face GPT-2 folder with config.json, model.safetensors, vocab.json and merges.txt "
                    "(--hf). Prints the prompt followed by the generated text. The same --seed gives "
                    "the same text.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN_DIR",
                        help="run folder written by `tinylm train`, or any model tinylm.load opens (a quantized "
                             "folder, llama2.c model.bin, GGUF)")
    source.add_argument("--hf", metavar="HF_FOLDER", help="Hugging Face GPT-2 folder to load instead of a run")
    p.add_argument("--prompt", required=True, help="text to continue (must not be empty)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="number of tokens to generate (default 200)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature; 0 = greedy, always the most likely token (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample only from the K most likely tokens (default: all)")
    p.add_argument("--top-p", type=float, default=None,
                   help="sample only from the smallest set of most likely tokens whose probability reaches P "
                        "(nucleus sampling, 0 < P <= 1; default: off)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same text (default 0)")
    p.add_argument("--engine", choices=["numpy", "c"], default="numpy",
                   help="numpy: the Python model (default); c: tinylm's C runtime through cffi (it samples with the "
                        "tinylm PRNG, so `--engine numpy --rng tinylm` picks the same tokens)")
    p.add_argument("--rng", choices=["numpy", "tinylm"], default="numpy",
                   help="--engine numpy: the random generator of the sampler (tinylm = the C runtime's xorshift64*)")
    p.add_argument("--plan", metavar="PLAN",
                   help="quantize the model first: a plan file or one precision for every layer (e.g. int8)")
    p.add_argument("--no-cache", action="store_true",
                   help="run the whole context through the model at every step instead of using the KV cache "
                        "(slower; for comparison)")
    p.set_defaults(func=run)


def load_model_and_tokenizer(args):
    """(model, tokenizer) from --run or --hf (quantized by --plan), through tinylm.load."""
    from tinylm.io import load

    folder = args.run if args.run is not None else args.hf
    if not os.path.exists(folder):
        raise FileNotFoundError(f"{'run' if args.run is not None else 'Hugging Face'} folder not found: {folder}")
    model, tokenizer = load(folder, args.plan)
    if tokenizer is None:
        raise ValueError(f"{folder} holds no tokenizer; generation needs one to read the prompt")
    return model, tokenizer


def run(args):
    from tinylm.generate import generate_text

    if args.max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if not args.prompt:
        raise ValueError("--prompt is empty; give some text to continue")
    if args.engine == "c":
        return run_c(args)
    model, tokenizer = load_model_and_tokenizer(args)
    stop = _end_of_text_ids(tokenizer)
    text = generate_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                         stop_tokens=stop or None, seed=args.seed, use_cache=not args.no_cache, rng=args.rng)
    print(text)
    return 0


def _end_of_text_ids(tokenizer):
    """The id of an end-of-text special token, if the tokenizer has one: generation stops there."""
    special = getattr(tokenizer, "special_tokens", None) or {}
    return [int(special[name]) for name in ("<|endoftext|>",) if name in special]


def run_c(args):
    """--engine c: export the model to a blob in memory and generate with the C runtime."""
    from tinylm.io.cruntime import CRuntime

    if args.no_cache:
        raise ValueError("--engine c always uses its KV cache; drop --no-cache")
    if not 0 <= args.seed < 2**64:
        raise ValueError(f"--seed must be in [0, 2**64) with --engine c, got {args.seed}")
    model, tokenizer = load_model_and_tokenizer(args)
    rt = CRuntime.from_model(model, tokenizer)
    ids = tokenizer.encode(args.prompt)
    out = rt.generate(ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                      top_p=args.top_p, seed=args.seed)[len(ids):]
    stop = set(_end_of_text_ids(tokenizer))
    hits = [i for i, t in enumerate(out) if t in stop]
    print(args.prompt + rt.decode(out[:hits[0]] if hits else out))
    return 0
