"""`python -m tinylm.bench train`: nanoGPT's small Shakespeare run, for quality and for speed.

The widely reported CPU baseline: the Shakespeare character corpus (tinyshakespeare.txt, 1,115,394
bytes; first 90% train, last 10% validation), byte-level tokens, a GPT with n_layer=4, n_head=4,
n_embd=128, block_size=64, batch_size=12, dropout 0, no biases (nanoGPT's default), AdamW lr 1e-3
decaying to 1e-4 over 2000 steps (100 warmup, beta2 0.99, weight decay 0.1, clipping at 1.0), which
reaches a validation loss of ~1.88.

    python -m tinylm.bench train                     # speed (vs PyTorch when importable), then 2000 steps
    python -m tinylm.bench train --max-iters 200     # a shorter run
    python -m tinylm.bench train --max-iters 0       # speed only
    python -m tinylm.bench train --torch-loss        # also train the PyTorch twin for 2000 steps (+2-3 min)

Speed is ms per training step (forward, backward, clipping, AdamW) of tinylm and, when `torch` can be
imported, of the same model in PyTorch on the same batches, in the same process, alternating rounds,
median of the rounds; the ratio is what to read (absolute times depend on the machine and its load).
--torch-loss answers "is 1.88 a fair target?": the same model, initialisation (nanoGPT's: N(0, 0.02),
residual projections / sqrt(2 n_layer)), batches and schedule, trained by PyTorch, scored on the same
whole validation split.

Both run on one core: python -m tinylm.bench sets OPENBLAS_NUM_THREADS=1 when it is unset, and PyTorch
is limited to one thread with torch.set_num_threads unless --threads says otherwise. For 2 threads:

    OPENBLAS_NUM_THREADS=2 python -m tinylm.bench train --max-iters 0 --threads 2

Which path tinylm's step ran is printed: "C" when tinylm's C kernels are built (the element-wise work of
the autograd ops and AdamW runs in them; matrix products stay NumPy's BLAS), "NumPy" otherwise. With the
C kernels, the NumPy path (TINYLM_KERNELS=numpy) is timed in the same rounds too, so the gain of the C
kernels is a ratio measured side by side. Targets (issue 18): tinylm / PyTorch <= 0.8x on 1 thread and
<= 1.0x on 2 threads.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "tinyshakespeare.txt")
MODEL = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False)  # nanoGPT: no biases
TRAIN = dict(batch_size=12, lr=1e-3, min_lr=1e-4, warmup_iters=100, beta1=0.9, beta2=0.99, weight_decay=0.1,
             grad_clip=1.0)
TARGET_VAL_LOSS = 1.88
TARGET_RATIO = {1: 0.8, 2: 1.0}  # tinylm / PyTorch ms per step, by thread count (issue 18)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m tinylm.bench train", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.normpath(DEFAULT_DATA), help="path of tinyshakespeare.txt")
    p.add_argument("--max-iters", type=int, default=2000, help="training steps (0: measure speed only)")
    p.add_argument("--eval-interval", type=int, default=250, help="steps between evaluations")
    p.add_argument("--eval-iters", type=int, default=20,
                   help="batches per evaluation of each split during the run (the final number uses the whole "
                        "validation split)")
    p.add_argument("--timing-steps", type=int, default=10, help="steps per timing round")
    p.add_argument("--rounds", type=int, default=5, help="timing rounds (alternating tinylm / PyTorch)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads (tinylm's BLAS threads come from "
                                                          "OPENBLAS_NUM_THREADS: set it to the same number)")
    p.add_argument("--no-numpy-path", action="store_true",
                   help="do not also time tinylm's NumPy path (TINYLM_KERNELS=numpy) when the C kernels are built")
    p.add_argument("--out", default=None, help="run folder to save the trained model in (default: not saved)")
    p.add_argument("--seed", type=int, default=1337, help="seed of weights and batches")
    p.add_argument("--torch-loss", action="store_true",
                   help="also train the same model with PyTorch for --max-iters steps and report its validation loss")
    return p.parse_args(argv)


def load_shakespeare(path):
    """Byte-level token ids of the corpus, split 90% / 10% (tinylm.data, no cleaning: the text as is)."""
    from tinylm.data import encode_corpus, train_val_split
    from tinylm.tokenizer import Tokenizer
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Shakespeare corpus not found: {path} (pass --data)")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    tokenizer = Tokenizer()  # 256 byte ids, no merges
    return tokenizer, train_val_split(encode_corpus(text, tokenizer), 0.1)


# -----------------------------------------------------------------------------------------------------
# speed: one training step, tinylm and PyTorch


def tinylm_stepper(train_ids, seed):
    """A function that runs one full training step of tinylm on the next batch."""
    from tinylm.data import get_batch
    from tinylm.model import GPT, GPTConfig
    from tinylm.optim import AdamW, clip_grad_norm

    model = GPT(GPTConfig(vocab_size=256, **MODEL), seed=seed)
    opt = AdamW(model.optim_groups(TRAIN["weight_decay"]), lr=TRAIN["lr"], betas=(TRAIN["beta1"], TRAIN["beta2"]))
    params, rng = model.parameters(), np.random.default_rng(seed)

    def step():
        x, y = get_batch(train_ids, TRAIN["batch_size"], MODEL["block_size"], rng)  # (B, T) each
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        clip_grad_norm(params, TRAIN["grad_clip"])
        opt.step()
    return step


def torch_stepper(train_ids, seed, threads):
    """The same model and step in PyTorch (written here for the comparison), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    import torch.nn as tnn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    C, nh, T = MODEL["n_embd"], MODEL["n_head"], MODEL["block_size"]

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            bias = MODEL["bias"]
            self.ln_1, self.ln_2 = tnn.LayerNorm(C, bias=bias), tnn.LayerNorm(C, bias=bias)
            self.c_attn, self.attn_proj = tnn.Linear(C, 3 * C, bias=bias), tnn.Linear(C, C, bias=bias)
            self.c_fc, self.mlp_proj = tnn.Linear(C, 4 * C, bias=bias), tnn.Linear(4 * C, C, bias=bias)

        def forward(self, x):
            B = x.shape[0]
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)  # (B, T, C) each
            q, k, v = (t.view(B, T, nh, C // nh).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
            x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class TorchGPT(tnn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = tnn.Embedding(256, C), tnn.Embedding(T, C)
            self.h = tnn.ModuleList(Block() for _ in range(MODEL["n_layer"]))
            self.ln_f = tnn.LayerNorm(C, bias=MODEL["bias"])

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(T))
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T  # tied head, (B, T, 256)
            return F.cross_entropy(logits.view(-1, 256), targets.view(-1))

    model = TorchGPT()
    with torch.no_grad():  # nanoGPT's (and tinylm's) GPT-2 initialisation
        for name, p in model.named_parameters():
            if p.dim() == 2:
                residual = name.endswith(("attn_proj.weight", "mlp_proj.weight"))
                p.normal_(0.0, 0.02 / math.sqrt(2 * MODEL["n_layer"]) if residual else 0.02)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and not n.startswith(("wte", "wpe"))]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and not n.startswith(("wte", "wpe")))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": TRAIN["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=TRAIN["lr"], betas=(TRAIN["beta1"], TRAIN["beta2"]), foreach=False)
    rng = np.random.default_rng(seed)
    from tinylm.data import get_batch

    def step(lr=TRAIN["lr"]):
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = get_batch(train_ids, TRAIN["batch_size"], T, rng)
        loss = model(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        opt.step()

    def val_loss(val_ids):
        """Mean loss over every non-overlapping window of the validation split, as tinylm's evaluate."""
        n = (len(val_ids) - 1) // T
        x = np.asarray(val_ids[:n * T], dtype=np.int64).reshape(n, T)
        y = np.asarray(val_ids[1:n * T + 1], dtype=np.int64).reshape(n, T)
        with torch.no_grad():
            total = sum(float(model(torch.from_numpy(x[i:i + 64]), torch.from_numpy(y[i:i + 64]))) * len(x[i:i + 64])
                        for i in range(0, n, 64))
        return total / n
    step.val_loss = val_loss
    return step


def torch_training(train_ids, val_ids, args):
    """Train the PyTorch twin with tinylm's schedule (nanoGPT's) for --max-iters steps; its val loss."""
    from tinylm.optim import cosine_schedule
    from tinylm.progress import Progress

    step = torch_stepper(train_ids, args.seed, args.threads)
    if step is None:
        return None
    progress = Progress(args.max_iters, what="PyTorch steps")
    for it in range(args.max_iters):
        step(cosine_schedule(it, TRAIN["lr"], TRAIN["min_lr"], min(TRAIN["warmup_iters"], args.max_iters),
                             args.max_iters))
        progress.update(it + 1)
    progress.done()
    return step.val_loss(val_ids)


def ms_per_step(step, n):
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) * 1e3 / n


def kernels_path():
    """'C' when tinylm's autograd runs its element-wise work in the C kernels, else 'NumPy'."""
    from tinylm import kernels
    return "C" if kernels.backend() == "c" else "NumPy"


def on_numpy_path(step):
    """step, run with TINYLM_KERNELS=numpy: tinylm's NumPy reference path."""
    def numpy_step():
        old = os.environ.get("TINYLM_KERNELS")
        os.environ["TINYLM_KERNELS"] = "numpy"
        try:
            step()
        finally:
            if old is None:
                del os.environ["TINYLM_KERNELS"]
            else:
                os.environ["TINYLM_KERNELS"] = old
    return numpy_step


def measure_speed(train_ids, args):
    """Median ms/step of tinylm (and its NumPy path, and PyTorch), alternating rounds so all see the same
    machine load."""
    steppers = {"tinylm": tinylm_stepper(train_ids, args.seed)}
    if kernels_path() == "C" and not args.no_numpy_path:
        steppers["tinylm-numpy"] = on_numpy_path(tinylm_stepper(train_ids, args.seed))
    torch_step = torch_stepper(train_ids, args.seed, args.threads)
    if torch_step is not None:
        steppers["pytorch"] = torch_step
    for step in steppers.values():  # warm up caches, allocators, BLAS
        ms_per_step(step, 3)
    times = {name: [] for name in steppers}
    for _ in range(args.rounds):
        for name, step in steppers.items():
            times[name].append(ms_per_step(step, args.timing_steps))
    return {name: float(np.median(t)) for name, t in times.items()}


# -----------------------------------------------------------------------------------------------------
# quality: the 2000-step run


def run_training(tokenizer, train_ids, val_ids, args):
    from tinylm.model import GPT, GPTConfig
    from tinylm.train import TrainConfig, evaluate, train

    config = TrainConfig(max_iters=args.max_iters, eval_interval=min(args.eval_interval, args.max_iters),
                         eval_iters=args.eval_iters, seed=args.seed, data=args.data, clean=False,
                         warmup_iters=min(TRAIN["warmup_iters"], args.max_iters),
                         **{k: v for k, v in TRAIN.items() if k != "warmup_iters"})
    model = GPT(GPTConfig(vocab_size=256, **MODEL), seed=args.seed)
    result = train(model, train_ids, val_ids, config, tokenizer=tokenizer, run_dir=args.out)
    full_val = evaluate(model, val_ids, batch_size=64, block_size=MODEL["block_size"], iters=None)
    return result, full_val


def main(argv=None):
    args = parse_args(argv or [])
    tokenizer, (train_ids, val_ids) = load_shakespeare(args.data)
    env = {k: os.environ.get(k, "unset") for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE")}
    print(f"Shakespeare, byte-level: {len(train_ids):,} train / {len(val_ids):,} val tokens; "
          + ", ".join(f"{k}={v}" for k, v in env.items()))
    print(f"model: {MODEL}, batch_size {TRAIN['batch_size']}")
    from tinylm import kernels
    from tinylm.bench.runtime import cpu_model
    path = kernels_path()
    info = kernels.build_info()
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); tinylm path: {path}"
          + (f" (tinylm._kernels, SIMD: {info['simd']})" if path == "C" else
             f" ({kernels.ENV_VAR}={info['env'][kernels.ENV_VAR]}, or the C kernels are not built)"))
    blas = os.environ.get("OPENBLAS_NUM_THREADS")
    if blas != str(args.threads):
        print(f"note: OPENBLAS_NUM_THREADS={blas} but --threads {args.threads}: tinylm and PyTorch use different "
              "thread counts")

    speed = measure_speed(train_ids, args)
    line = f"ms/step (median of {args.rounds} rounds of {args.timing_steps}): tinylm ({path}) {speed['tinylm']:.1f}"
    if "tinylm-numpy" in speed:
        line += f", tinylm (NumPy) {speed['tinylm-numpy']:.1f}"
    if "pytorch" in speed:
        line += f", PyTorch {speed['pytorch']:.1f} ({args.threads} thread(s))"
    print(line, flush=True)
    if "pytorch" in speed:
        for name in ("tinylm", "tinylm-numpy"):
            if name in speed:
                ratio = speed[name] / speed["pytorch"]
                label = f"tinylm ({path if name == 'tinylm' else 'NumPy'}) / PyTorch"
                target = TARGET_RATIO.get(args.threads)
                verdict = "" if target is None else (f" (target <= {target}x on {args.threads} thread(s): "
                                                     f"{'met' if ratio <= target else 'not met'})")
                print(f"{label} = {ratio:.2f}x{verdict}", flush=True)
    else:
        print("(PyTorch not importable: no comparison)", flush=True)

    if args.max_iters > 0:
        result, full_val = run_training(tokenizer, train_ids, val_ids, args)
        def verdict(loss):
            return f"{loss:.4f} {'meets' if loss <= TARGET_VAL_LOSS else 'misses'} it"
        print(f"after {result.step} steps ({result.seconds:.0f} s, {result.seconds * 1e3 / result.step:.1f} ms/step "
              f"including evaluations): val loss {result.val_loss:.4f} on {args.eval_iters} fixed batches, "
              f"{full_val:.4f} on the whole validation split (perplexity {math.exp(full_val):.2f}); "
              f"train loss {result.train_loss:.4f}")
        if args.max_iters >= 2000:
            print(f"target: val loss <= {TARGET_VAL_LOSS} at 2000 steps (nanoGPT's figure, an estimate on "
                  f"{args.eval_iters} random batches): the same estimate here {verdict(result.val_loss)}; "
                  f"the whole validation split {verdict(full_val)}")
        if args.torch_loss:
            torch_val = torch_training(train_ids, val_ids, args)
            if torch_val is None:
                print("--torch-loss: PyTorch is not importable")
            else:
                print(f"PyTorch, the same model, init, batches and schedule, {args.max_iters} steps: val loss "
                      f"{torch_val:.4f} on the whole validation split (tinylm {full_val:.4f})")
    return 0
