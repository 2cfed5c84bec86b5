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
                        help="run folder written by `tinylm train` (checkpoint + tokenizer)")
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
    p.add_argument("--no-cache", action="store_true",
                   help="run the whole context through the model at every step instead of using the KV cache "
                        "(slower; for comparison)")
    p.set_defaults(func=run)


def load_model_and_tokenizer(args):
    """(model, tokenizer) from --run or --hf. Imported here so `--help` works without those modules."""
    folder = args.run if args.run is not None else args.hf
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{'run' if args.run is not None else 'Hugging Face'} folder not found: {folder}")
    if args.run is not None:
        from tinylm.io.runs import load_model
        return load_model(args.run)
    from tinylm.io.hf_gpt2 import load_hf_gpt2, load_hf_tokenizer
    return load_hf_gpt2(args.hf), load_hf_tokenizer(args.hf)


def run(args):
    from tinylm.generate import generate_text

    if args.max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if not args.prompt:
        raise ValueError("--prompt is empty; give some text to continue")
    model, tokenizer = load_model_and_tokenizer(args)
    stop = _end_of_text_ids(tokenizer)
    text = generate_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                         stop_tokens=stop or None, seed=args.seed, use_cache=not args.no_cache)
    print(text)
    return 0


def _end_of_text_ids(tokenizer):
    """The id of an end-of-text special token, if the tokenizer has one: generation stops there."""
    special = getattr(tokenizer, "special_tokens", None) or {}
    return [int(special[name]) for name in ("<|endoftext|>",) if name in special]
