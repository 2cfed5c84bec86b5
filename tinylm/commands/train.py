"""`tinylm train`: corpus -> tokenizer -> token ids -> a trained GPT in a run folder.

    tinylm train --data builtin --out runs/manual --vocab-size 512 --max-iters 1000
    tinylm train --data ../shared/data/tinyshakespeare.txt --out runs/shakespeare --vocab-size 256
    tinylm train --out runs/manual --resume --max-iters 2000      # continue (and extend) a run
    tinylm train --data ../shared/data/tinyshakespeare.txt --out runs/llama --arch llama --n-kv-head 2
    tinylm train --size board --data ../shared/data/tinyshakespeare.txt --out runs/board   # for a board
    tinylm train --data builtin --out runs/half --precision fp16     # fp16 compute, fp32 master weights
    tinylm train --out runs/manual --resume --qat int4 --max-iters 2300   # quantization-aware fine-tuning

A folder that already holds a run is never overwritten by accident: pass --resume to continue it or
--force to start again from scratch (the old run is deleted as a whole before the new one writes).
While a run trains, its folder is locked (run.lock): a second `tinylm train` into it is refused.
"""
from __future__ import annotations

import os
import sys

# options that shape the model or the data: fixed once a run has started
# GPTConfig fields set from options of the same name
GPT_OPTIONS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "n_expert", "expert_top_k", "moe_aux_coef",
               "norm", "pos", "rope_theta", "mlp", "mlp_hidden", "multiple_of", "n_kv_head", "bias", "tie_head")
MODEL_OPTIONS = ("size", "vocab_size", "tokenizer", "arch", *GPT_OPTIONS, "data", "val_fraction", "no_clean")
# TrainConfig fields set from options of the same name
TRAIN_OPTIONS = ("batch_size", "grad_accum", "max_iters", "lr", "min_lr", "warmup_iters", "lr_decay_iters",
                 "weight_decay", "grad_clip", "eval_interval", "eval_iters", "seed", "val_fraction", "precision",
                 "loss_scale")
# quantization-aware training writes the quantized model here, inside the run folder, when it ends
QAT_FOLDER = "qat"

# --size presets: defaults for the options above (an option given on the command line wins).
# board: ~240k parameters, like llama2.c's stories260K, sized for an STM32F405 (1 MB flash, 128 KB SRAM
# + 64 KB CCM). In int8 its weights take ~0.3 MB of flash; its fp32 KV cache, n_layer * 2 * block_size
# * n_embd * 4 bytes = 96 KB, is most of the runtime's arena, which has to fit the 128 KB SRAM
# (kernels/targets/cortex-m/stm32f405.ld). 4000 steps of 32 x 48 tokens on tinyshakespeare: ~5 minutes.
SIZES = {
    "board": {"vocab_size": 512, "n_layer": 4, "n_head": 4, "n_embd": 64, "block_size": 48,
              "batch_size": 32, "max_iters": 4000, "lr": 2e-3, "min_lr": 2e-4, "eval_interval": 500},
}


def register(sub):
    p = sub.add_parser(
        "train", help="train a tokenizer and a GPT on a corpus, saving a run folder",
        description="Train a byte-level BPE tokenizer and a GPT on a corpus (a text file, a folder of .txt/.md "
                    "files, or 'builtin': the Python reference manual every Python ships). The run folder gets "
                    "config.json, model.npz, tokenizer.json, optimizer.npz, state.json, tokens.npz and the loss "
                    "history (loss.json, loss.csv, loss.png). Unset options take the defaults of nanoGPT's small "
                    "Shakespeare run (4 layers, 4 heads, 128 wide, 64 tokens of context, batch 12, lr 1e-3 -> 1e-4).")
    p.add_argument("--data", help="corpus: a UTF-8 text file, a folder of .txt/.md files, or 'builtin' "
                                  "(required for a new run; a resumed run uses the tokens saved in its folder)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write (or to resume from)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out exactly where it stopped (only --max-iters may change)")
    p.add_argument("--force", action="store_true", help="start a new run even if --out already holds one "
                                                        "(its checkpoint is replaced)")
    p.add_argument("--size", choices=sorted(SIZES), help="a preset of the model and training options below "
                                                         "(board: ~240k parameters for a microcontroller)")
    g = p.add_argument_group("tokenizer and data")
    g.add_argument("--vocab-size", type=int, help="tokenizer vocabulary: 256 = raw bytes, no merges; more = BPE "
                                                  "merges learned from the corpus (default 512)")
    g.add_argument("--tokenizer", metavar="FILE", help="use this tokenizer.json instead of training one")
    g.add_argument("--val-fraction", type=float, help="fraction of the corpus, at its end, held out for "
                                                      "validation (default 0.1)")
    g.add_argument("--no-clean", action="store_true", help="train on the text exactly as read, without "
                                                           "tinylm.data.clean_text")
    g = p.add_argument_group("model (GPTConfig)")
    g.add_argument("--n-layer", type=int, help="transformer blocks (default 4)")
    g.add_argument("--n-head", type=int, help="attention heads per block (default 4)")
    g.add_argument("--n-embd", type=int, help="width of the token vectors, a multiple of --n-head (default 128)")
    g.add_argument("--block-size", type=int, help="context length in tokens (default 64)")
    g.add_argument("--dropout", type=float, help="dropout probability while training (default 0)")
    g.add_argument("--n-expert", type=int, help="expert MLPs per block, a mixture of experts (tutorial 12); "
                                                "0 = one dense MLP, GPT-2's block (default 0)")
    g.add_argument("--expert-top-k", type=int, help="experts each token is routed to, with --n-expert (default 2)")
    g.add_argument("--moe-aux-coef", type=float, help="weight of the load-balancing loss, with --n-expert "
                                                      "(default 0.01)")
    g = p.add_argument_group("architecture (tutorial 14: from GPT-2 to Llama)")
    g.add_argument("--arch", choices=["gpt2", "llama"], help="preset: gpt2 (the default) or llama = --norm rmsnorm "
                                                              "--pos rope --mlp swiglu --bias false --tie-head false; "
                                                              "the options below override it")
    g.add_argument("--norm", choices=["layernorm", "rmsnorm"], help="the norm of every block (default layernorm)")
    g.add_argument("--pos", choices=["learned", "rope"], help="learned position table or rotary positions "
                                                              "(default learned)")
    g.add_argument("--rope-theta", type=float, help="base of the rotary frequencies, with --pos rope (default 10000)")
    g.add_argument("--mlp", choices=["gelu", "swiglu"], help="the MLP: GELU (4 n_embd wide) or SwiGLU "
                                                             "(Llama's 8/3 n_embd rule) (default gelu)")
    g.add_argument("--mlp-hidden", type=int, help="hidden width of the MLP; 0 = the rule of --mlp (default 0)")
    g.add_argument("--multiple-of", type=int, help="round the SwiGLU hidden width up to a multiple of this "
                                                   "(default 32)")
    g.add_argument("--n-kv-head", type=int, help="key/value heads: fewer than --n-head = grouped-query attention, "
                                                 "1 = multi-query; 0 = --n-head (default 0)")
    g.add_argument("--bias", type=_yes_no, metavar="{true,false}", help="biases in Linear and LayerNorm layers "
                                                                        "(default true)")
    g.add_argument("--tie-head", type=_yes_no, metavar="{true,false}",
                   help="the output layer shares the token embedding's matrix (default true)")
    g = p.add_argument_group("training (TrainConfig)")
    g.add_argument("--batch-size", type=int, help="sequences per micro-batch (default 12)")
    g.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step (default 1)")
    g.add_argument("--max-iters", type=int, help="optimizer steps in the whole run (default 2000)")
    g.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    g.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine decay (default 1e-4)")
    g.add_argument("--warmup-iters", type=int,
                   help="steps of linear warmup (default 100, or a tenth of a shorter --max-iters)")
    g.add_argument("--lr-decay-iters", type=int, help="step where the decay reaches --min-lr (default --max-iters)")
    g.add_argument("--weight-decay", type=float, help="AdamW weight decay on weight matrices (default 0.1)")
    g.add_argument("--grad-clip", type=float, help="clip the gradient norm to this; 0 = off (default 1.0)")
    g.add_argument("--eval-interval", type=int, help="evaluate and save a checkpoint every N steps (default 250)")
    g.add_argument("--eval-iters", type=int, help="batches per evaluation of each split (default 20)")
    g.add_argument("--seed", type=int, help="seed of the weights, dropout and batch order (default 1337)")
    g.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    g = p.add_argument_group("precision (tutorial 10)")
    g.add_argument("--precision", choices=["fp32", "fp16", "bf16"],
                   help="compute precision of a new run: fp32, or mixed precision with fp32 master weights: "
                        "fp16 (fp16 activations and gradients, matmuls with fp32 sums, norms/softmax/loss in "
                        "fp32, dynamic loss scaling) or bf16 (emulated in float32 arrays, no memory saved) "
                        "(default fp32)")
    g.add_argument("--loss-scale", type=_loss_scale, metavar="{dynamic,N}",
                   help="with --precision fp16: 'dynamic' (start at 65536, skip the step and halve on inf/NaN, "
                        "double after 2000 clean steps) or a fixed scale; 1 = none (default dynamic)")
    g.add_argument("--qat", metavar="PLAN",
                   help="with --resume: fine-tune the run with fake quantization in the forward pass "
                        "(straight-through estimator, scales recomputed from the weights at every step). PLAN "
                        "is a plan JSON file or one precision for every layer (int4, int4:g32, int8, fp16 ...). "
                        "The run folder keeps the fp32 weights (so it resumes exactly) with the plan in "
                        "config.json; fine-tuning runs in fp32 (a run trained with --precision fp16 continues "
                        "in fp32); when training ends the quantized model is saved in RUN_DIR/qat/ (a "
                        "quantized model folder: tinylm.load, eval and generate read it, and export does "
                        "for the precisions its format takes, e.g. --format c: fp16 and int8)")
    p.set_defaults(func=run)


def _loss_scale(text):
    if text.lower() == "dynamic":
        return "dynamic"
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0 or value == float("inf"):
        raise ValueError(f"expected 'dynamic' or a number > 0, got {text!r}")
    return value


def _yes_no(text):
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def model_options(args):
    """The GPTConfig fields the options ask for: the --arch preset, then every option given explicitly."""
    from tinylm.model.config import LLAMA_OPTIONS

    preset = dict(LLAMA_OPTIONS) if getattr(args, "arch", None) == "llama" else {}
    return {**preset, **{k: getattr(args, k) for k in GPT_OPTIONS if getattr(args, k, None) is not None}}


def run(args):
    try:
        return resume_run(args) if args.resume else new_run(args)
    except KeyboardInterrupt:
        from tinylm.io.runs import has_checkpoint
        if has_checkpoint(args.out):
            print(f"\ninterrupted: the last checkpoint is in {args.out}; continue with "
                  f"`tinylm train --out {args.out} --resume`", file=sys.stderr)
        raise


def new_run(args):
    if args.qat is not None:
        raise ValueError("--qat fine-tunes a trained run: use it with --resume (and a larger --max-iters)")
    if args.data is None:
        raise ValueError("--data is required to start a run (a file, a folder, or 'builtin')")
    from tinylm.model import GPTConfig
    from tinylm.train import TrainConfig

    for name, value in SIZES.get(args.size, {}).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    model_kw = model_options(args)
    train_kw = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}
    if args.warmup_iters is None and args.max_iters is not None:
        train_kw["warmup_iters"] = min(100, max(args.max_iters, 0) // 10)  # a short run warms up briefly
    train_config = TrainConfig(data=args.data, clean=not args.no_clean, **train_kw)
    GPTConfig(**model_kw)  # bad sizes fail now, before minutes of tokenizer training
    result = start_run(args.out, train_config, model_kw, vocab_size=512 if args.vocab_size is None else args.vocab_size,
                       tokenizer_path=args.tokenizer, force=args.force, verbose=not args.quiet)
    report(args.out, result)
    return 0


def start_run(out, train_config, model_kw, vocab_size=512, tokenizer_path=None, force=False, verbose=True):
    """Prepare the data and train a new run in folder `out`; returns (model, tokenizer, TrainResult)."""
    from tinylm.fileio import check_writable
    from tinylm.io.runs import has_checkpoint, run_lock

    if has_checkpoint(out) and not force:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or --force to replace it")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder")
    check_writable(out)
    with run_lock(out):
        return _start_locked_run(out, train_config, model_kw, vocab_size, tokenizer_path, force, verbose)


def _start_locked_run(out, train_config, model_kw, vocab_size, tokenizer_path, force, verbose):
    from tinylm import process
    from tinylm.data import clean_text, encode_corpus, load_corpus, train_val_split
    from tinylm.io.runs import has_checkpoint, remove_run, save_tokens
    from tinylm.model import GPT, GPTConfig
    from tinylm.tokenizer import Tokenizer
    from tinylm.train import memory_estimate, train

    if has_checkpoint(out) and not force:  # again, under the lock: another run may have just finished
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or --force to replace it")
    if vocab_size < 256 and tokenizer_path is None:
        raise ValueError(f"--vocab-size is {vocab_size}; expected 256 (bytes) or more (bytes + BPE merges)")
    sizes = GPTConfig(vocab_size=max(vocab_size, 256), **model_kw)  # the tokenizer's size is known later
    asked = ", ".join(f"{k}={v}" for k, v in {**model_kw, "batch_size": train_config.batch_size}.items())
    process.check_fits_in_memory(memory_estimate(sizes, train_config.batch_size), f"training with {asked}")
    text = load_corpus(train_config.data)
    if train_config.clean:
        text = clean_text(text)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if verbose else (lambda msg: None)
    if tokenizer_path is not None:
        tokenizer = Tokenizer.load(tokenizer_path)
    elif vocab_size == 256:
        tokenizer = Tokenizer()  # bytes, no merges
    else:
        say(f"training a BPE tokenizer with {vocab_size} tokens on {len(text):,} characters ...")
        tokenizer = Tokenizer().train(text, vocab_size)
    ids = encode_corpus(text, tokenizer)
    train_ids, val_ids = train_val_split(ids, train_config.val_fraction)
    model_config = GPTConfig(vocab_size=tokenizer.vocab_size, **model_kw)
    if len(val_ids) <= model_config.block_size:
        raise ValueError(f"the validation split has {len(val_ids)} tokens; block_size={model_config.block_size} "
                         f"needs at least {model_config.block_size + 1} (use a larger corpus, a larger "
                         "--val-fraction or a smaller --block-size)")
    if force:
        remove_run(out)  # the old run goes as a whole (its commit record first) before a new file is written
    save_tokens(out, train_ids, val_ids)
    model = GPT(model_config, seed=train_config.seed)
    say(f"{len(train_ids):,} training and {len(val_ids):,} validation tokens ({len(text) / len(ids):.2f} "
        f"characters per token); a GPT with {model.num_params():,} parameters")
    result = train(model, train_ids, val_ids, train_config, tokenizer=tokenizer, run_dir=out,
                   verbose=verbose)
    return model, tokenizer, result


def resume_run(args):
    from tinylm.io.runs import run_lock

    fixed = [name for name in MODEL_OPTIONS + TRAIN_OPTIONS
             if name != "max_iters" and (getattr(args, name, None) not in (None, False)
                                         or (name in ("bias", "tie_head") and getattr(args, name) is not None))]
    if fixed or args.force:
        flags = ", ".join("--" + name.replace("_", "-") for name in (fixed or ["force"]))
        raise ValueError(f"{flags} cannot be used with --resume: a resumed run keeps its data and settings "
                         "(only --max-iters may change)")
    if not os.path.isdir(args.out):
        raise FileNotFoundError(f"run folder not found: {args.out}")
    with run_lock(args.out):
        return _resume_locked_run(args)


def _resume_locked_run(args):
    from tinylm.io.runs import load_checkpoint, load_tokens
    from tinylm.train import TrainConfig, train

    checkpoint = load_checkpoint(args.out)
    config = dict(checkpoint.train_config)
    if args.max_iters is not None:
        config["max_iters"] = args.max_iters
    if args.qat is not None:
        config["qat"] = qat_plan(checkpoint.model, args.qat, config.get("qat"))
        if config.get("precision", "fp32") != "fp32":
            print(f"--qat: the run trained in {config['precision']}; quantization-aware fine-tuning runs in fp32 "
                  "(on the same fp32 master weights)", file=sys.stderr)
            config["precision"] = "fp32"
    try:
        train_config = TrainConfig.from_dict(config)
    except ValueError as exc:
        raise ValueError(f"{os.path.join(args.out, 'config.json')}: {exc}") from None
    if checkpoint.step >= train_config.max_iters:
        print(f"{args.out} is already at step {checkpoint.step} of {train_config.max_iters}; pass a larger "
              "--max-iters to train longer", file=sys.stderr)
        return 0
    train_ids, val_ids = load_tokens(args.out)
    print(f"resuming {args.out} at step {checkpoint.step} of {train_config.max_iters}", file=sys.stderr)
    result = train(checkpoint.model, train_ids, val_ids, train_config, tokenizer=checkpoint.tokenizer,
                   run_dir=args.out, resume=checkpoint, verbose=not args.quiet)
    report(args.out, (checkpoint.model, checkpoint.tokenizer, result))
    if train_config.qat is not None:
        save_qat_model(args.out, checkpoint.model, checkpoint.tokenizer, train_config.qat)
    return 0


def qat_plan(model, text, current=None):
    """The plan --qat names (a plan file or one precision), checked against the model, canonical."""
    from tinylm.quant import load_plan, uniform_plan, validate_plan

    if not os.path.exists(text) and (os.sep in text or text.endswith(".json")):
        raise FileNotFoundError(f"--qat {text}: no such plan file (expected a plan JSON file or one precision "
                                "for every layer, e.g. int4)")
    try:
        plan = validate_plan(model, load_plan(text)) if os.path.exists(text) else uniform_plan(model, text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--qat {text}: {exc}") from None
    if current is not None and current != plan:
        raise ValueError(f"--qat {text}: this run already fine-tunes for another plan (config.json's train.qat); "
                         "resume it without --qat, or start from a copy of the run before quantization-aware "
                         "training")
    return plan


def save_qat_model(out, model, tokenizer, plan):
    """The fine-tuned fp32 weights quantized by the QAT plan, as a quantized model folder out/qat/."""
    from tinylm.fileio import removed_on_failure
    from tinylm.io.quantized import META_FILE, TOKENIZER_FILE, WEIGHTS_FILE, save_quantized

    folder = os.path.join(out, QAT_FOLDER)
    with removed_on_failure(folder, [META_FILE, WEIGHTS_FILE, TOKENIZER_FILE]):
        save_quantized(folder, model, plan, tokenizer=tokenizer)
    print(f"saved the quantized model in {folder}/ (tinylm.load, eval, generate and export read it)")


def report(out, run):
    """The closing lines of a run, on stdout."""
    from tinylm.train import perplexity

    _, _, result = run
    print(f"step {result.step}: train loss {result.train_loss:.4f}, val loss {result.val_loss:.4f} "
          f"(perplexity {perplexity(result.val_loss):.2f}), {result.seconds:.1f} s, "
          f"{result.tokens_per_second:,.0f} tokens/s")
    if result.loss_scaler is not None:
        print(f"mixed precision: loss scale {result.loss_scaler.scale:g}, {result.loss_scaler.skipped} steps skipped "
              "for an inf/NaN gradient")
    print(f"saved in {out}/ (model.npz, tokenizer.json, loss.csv"
          + (", loss.png" if os.path.exists(os.path.join(out, "loss.png")) else "") + ")")

