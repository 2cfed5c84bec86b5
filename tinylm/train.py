"""The training loop: batches in, AdamW steps out, with evaluation, checkpoints and exact resume.

One step of training, in the order the loop below does it:

    lr = cosine_schedule(step)                   warm up, then decay from lr to min_lr
    for each of grad_accum micro-batches:
        x, y = get_batch(train_data)             (B, T) inputs and targets, shifted by one token
        loss = model(x, y) / grad_accum          mean cross-entropy, in nats per token
        loss.backward()                          gradients add up in p.grad across micro-batches
    clip_grad_norm(params, grad_clip)            one huge gradient must not wreck the weights
    optimizer.step(); optimizer.zero_grad()

Every `eval_interval` steps the loss is measured on FIXED batches of the training and the validation
data (the same batches each time, so the numbers are comparable and not just batch noise), and a
checkpoint is written (tinylm.io.runs). A run that is stopped and resumed from a checkpoint gives
the same losses, bit for bit, as one that never stopped: the checkpoint holds the weights, AdamW's
moments, the step, and the states of both random generators (batches and dropout).

    >>> config = TrainConfig(batch_size=8, max_iters=100, eval_interval=50)
    >>> result = train(model, train_ids, val_ids, config)          # doctest: +SKIP
    >>> result.val_loss                                             # doctest: +SKIP
    2.71
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from tinylm import process
from tinylm.amp import PRECISIONS, LossScaler, autocast, check_supported
from tinylm.autograd import no_grad
from tinylm.data import get_batch
from tinylm.io.loader import parameter_estimate
from tinylm.io.runs import run_lock, save_checkpoint
from tinylm.optim import AdamW, clip_grad_norm, cosine_schedule
from tinylm.progress import Progress
from tinylm.quant.plan import validate_plan
from tinylm.quant.precisions import canonical_precision
from tinylm.quant.qat import fake_quantize, strip_fake_quantize

# -----------------------------------------------------------------------------------------------------
# configuration


@dataclass
class TrainConfig:
    """How to train (the model's own sizes are in GPTConfig). Defaults: nanoGPT's small Shakespeare run.

    batch_size     sequences per micro-batch (B); each is block_size tokens long (T, from the model)
    grad_accum     micro-batches per optimizer step: the step sees batch_size * grad_accum sequences
    max_iters      optimizer steps in the whole run
    lr, min_lr     peak learning rate, reached after warmup_iters; min_lr at lr_decay_iters and after
    warmup_iters   steps of linear warmup from ~0 to lr
    lr_decay_iters step at which the cosine decay reaches min_lr (None: max_iters)
    weight_decay   AdamW's decoupled decay, on weight matrices only (GPT.optim_groups)
    beta1, beta2   AdamW's averaging constants for the gradient and its square
    grad_clip      clip the global gradient norm to this (0: no clipping)
    eval_interval  evaluate (and checkpoint) every this many steps, and at the end
    eval_iters     batches of the fixed evaluation set (per split)
    seed           seeds the batch order (the model's weights and dropout have GPT's own seed)
    data, val_fraction, clean   how the corpus was prepared (recorded in config.json by `tinylm train`)
    precision      'fp32', or mixed precision: 'fp16' (fp16 compute, fp32 master weights, loss scaling)
                   or 'bf16' (emulated); tinylm.amp says which operations run in which precision
    loss_scale     with fp16: 'dynamic' (tinylm.amp.LossScaler's rule) or a fixed number (1: no scaling)
    qat            quantization-aware training: a precision plan {layer: precision} (tinylm.quant);
                   the forward pass uses the weights as the plan will store them (tinylm.quant.qat)
    """

    batch_size: int = 12
    grad_accum: int = 1
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    data: str | None = None
    val_fraction: float = 0.1
    clean: bool = True
    precision: str = "fp32"
    loss_scale: str | float = "dynamic"
    qat: dict | None = None

    def __post_init__(self):
        for name in ("batch_size", "grad_accum", "max_iters", "eval_interval", "eval_iters"):
            _check_int(name, getattr(self, name), low=1, high=MAX_COUNTS[name])
        _check_int("warmup_iters", self.warmup_iters, low=0, high=MAX_COUNTS["warmup_iters"])
        _check_int("seed", self.seed, low=0, high=MAX_COUNTS["seed"])
        if self.lr_decay_iters is not None:
            _check_int("lr_decay_iters", self.lr_decay_iters, low=self.warmup_iters, high=MAX_COUNTS["lr_decay_iters"])
        for name in ("lr", "min_lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"TrainConfig: {name} is {value!r}; expected a number >= 0")
        if self.min_lr > self.lr:
            raise ValueError(f"TrainConfig: min_lr ({self.min_lr}) is larger than lr ({self.lr})")
        if self.lr_decay_iters is None and self.warmup_iters > self.max_iters:
            raise ValueError(f"TrainConfig: warmup_iters ({self.warmup_iters}) is longer than max_iters "
                             f"({self.max_iters})")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"TrainConfig: {name} is {getattr(self, name)}; expected 0 <= {name} < 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"TrainConfig: val_fraction is {self.val_fraction}; expected between 0 and 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig: precision is {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        scale = self.loss_scale
        if scale != "dynamic" and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                   or not math.isfinite(scale) or scale <= 0):
            raise ValueError(f"TrainConfig: loss_scale is {scale!r}; expected 'dynamic' or a number > 0")
        if self.qat is not None:
            if not isinstance(self.qat, dict) or not self.qat:
                raise ValueError(f"TrainConfig: qat is {self.qat!r}; expected a precision plan {{layer: precision}}")
            self.qat = {name: canonical_precision(p) for name, p in self.qat.items()}
            if self.precision != "fp32":
                raise ValueError(f"TrainConfig: quantization-aware training (qat) runs in fp32; it cannot be "
                                 f"combined with precision {self.precision!r}")

    @property
    def decay_iters(self):
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    def lr_at(self, step):
        """The learning rate of step `step` (0-based): warmup, then cosine decay to min_lr."""
        return cosine_schedule(step, self.lr, self.min_lr, self.warmup_iters, self.decay_iters)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """The inverse of to_dict; unknown keys are an error (a typo must not be silently ignored)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TrainConfig: unknown setting(s) {', '.join(unknown)}")
        return cls(**d)


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        expected = f"an integer >= {low}" if high is None else f"an integer from {low} to {high:,}"
        raise ValueError(f"TrainConfig: {name} is {value!r}; expected {expected}")


# the largest counts a config may ask for: beyond them a run (or one step of it) would never end, and a
# config file saying grad_accum=2**63 must be an error, not a resume that never returns
MAX_COUNTS = {"batch_size": 1 << 20, "grad_accum": 1 << 16, "max_iters": 1 << 40, "eval_interval": 1 << 40,
              "eval_iters": 1 << 16, "warmup_iters": 1 << 40, "lr_decay_iters": 1 << 40, "seed": (1 << 63) - 1}


def perplexity(loss):
    """exp(loss), the perplexity of a mean cross-entropy loss; inf where exp overflows (a loss above
    ~709 nats is a broken model, and its report must still print).

    >>> perplexity(0.0), perplexity(1000.0)
    (1.0, inf)
    """
    return math.exp(loss) if loss < 709.0 else math.inf


def memory_estimate(model_config, batch_size, training=True):
    """Bytes a step of `batch_size` sequences needs, roughly, so that sizes too large for the machine
    fail with a clear error before anything is allocated: the weights (training: also their gradients
    and AdamW's two moments) and the activations of one micro-batch, float32.

    >>> from tinylm.model import GPTConfig
    >>> memory_estimate(GPTConfig(), batch_size=12) < 100e6     # the default run: ~40 MB
    True
    """
    c = model_config
    B, T = batch_size, c.block_size
    activations = B * T * (c.n_layer * (20 * c.n_embd + 2 * c.n_head * T) + 3 * c.vocab_size)
    return 4 * ((4 if training else 1) * parameter_estimate(c) + activations)


# -----------------------------------------------------------------------------------------------------
# evaluation


def evaluate(model, data, batch_size, block_size, iters=20, seed=0):
    """Mean cross-entropy (nats per token) of `model` on `data`, without gradients and without dropout.

    iters=N: N batches drawn with a generator seeded by `seed`, so the SAME batches every call: two
    evaluations differ only because the model changed, not because the batches did.
    iters=None: every non-overlapping window of `data`, in order (the whole text, for a final number).

    The loss is averaged over tokens; exp(loss) is the perplexity.
    """
    data = np.asarray(data)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"evaluate: batch_size is {batch_size!r}; expected an integer >= 1")
    if iters is None:
        batch_size = min(batch_size, max((len(data) - 1) // block_size, 1))  # no batch larger than the data
    process.check_fits_in_memory(memory_estimate(model.config, batch_size, training=False),
                                 f"evaluating batches of {batch_size} sequences")
    if iters is None:
        n_windows = (len(data) - 1) // block_size
        if n_windows < 1:
            raise ValueError(f"evaluate: data has {len(data)} tokens; one window of block_size={block_size} "
                             f"needs {block_size + 1}")
        starts = np.arange(n_windows) * block_size
        batches = [starts[i:i + batch_size] for i in range(0, n_windows, batch_size)]
    else:
        rng = np.random.default_rng(seed)
        if len(data) <= block_size:
            get_batch(data, batch_size, block_size, rng)  # raises the clear "too few tokens" error
        batches = [rng.integers(0, len(data) - block_size, size=batch_size) for _ in range(iters)]

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with no_grad():
            for starts in batches:
                offsets = starts[:, None] + np.arange(block_size)  # (B, T)
                x = data[offsets].astype(np.int64)  # (B, T)
                y = data[offsets + 1].astype(np.int64)  # (B, T)
                _, loss = model(x, y)
                total += loss.item() * y.size
                count += y.size
    finally:
        model.train(was_training)
    return total / count


# -----------------------------------------------------------------------------------------------------
# the loop


@dataclass
class TrainResult:
    """What a call of `train` returns: where it stopped, and the losses on the way."""
    step: int
    history: dict  # {"step": [...], "loss": [...], "lr": [...], "eval": [{"step", "train_loss", "val_loss"}]}
    best_val_loss: float
    seconds: float
    tokens_per_second: float
    optimizer: object = field(repr=False, default=None)
    loss_scaler: object = field(repr=False, default=None)  # mixed precision: its final scale, skipped steps

    @property
    def val_loss(self):
        """The validation loss of the last evaluation (nan when there was none)."""
        evals = self.history["eval"]
        return evals[-1]["val_loss"] if evals else float("nan")

    @property
    def train_loss(self):
        evals = self.history["eval"]
        return evals[-1]["train_loss"] if evals else float("nan")


def new_history():
    return {"step": [], "loss": [], "lr": [], "eval": []}


def train(model, train_data, val_data, config, *, tokenizer=None, run_dir=None, resume=None, stop_at=None,
          verbose=True):
    """Train `model` on token ids `train_data`, evaluating on `val_data`; returns a TrainResult.

    tokenizer, run_dir  when both are given, a checkpoint is saved in run_dir at every evaluation, at
                        the end, and when the run is interrupted (Ctrl-C) between two steps
    resume              a Checkpoint (tinylm.io.runs.load_checkpoint) to continue from: its step,
                        optimizer state, random generator states and history; `model` must be its model
    stop_at             stop after this step instead of max_iters (the schedule still spans max_iters):
                        a long run can be trained in pieces
    verbose             a progress line and one line per evaluation on stderr

    config.precision fp16/bf16 and config.qat wrap the model's layers while it trains (tinylm.amp,
    tinylm.quant.qat); it is a plain fp32 model again when train returns, holding the trained weights.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train: config must be a TrainConfig, got {type(config).__name__}")
    block_size = model.config.block_size
    for name, data in (("train_data", train_data), ("val_data", val_data)):
        if len(data) <= block_size:
            raise ValueError(f"train: {name} has {len(data)} tokens; block_size={block_size} needs at least "
                             f"{block_size + 1} (use a larger corpus or a smaller --block-size)")
    end = config.max_iters if stop_at is None else int(stop_at)
    if not 0 <= end <= config.max_iters:
        raise ValueError(f"train: stop_at is {stop_at}; expected 0 .. max_iters ({config.max_iters})")
    process.check_fits_in_memory(memory_estimate(model.config, config.batch_size),
                                 f"training with batch_size={config.batch_size}")
    saving = run_dir is not None
    if saving and tokenizer is None:
        raise ValueError("train: saving checkpoints in run_dir needs the tokenizer too")
    process.tune_malloc()  # NumPy's many ~1 MB temporaries, reused rather than page-faulted in afresh

    optimizer = AdamW(model.optim_groups(config.weight_decay), lr=config.lr, betas=(config.beta1, config.beta2))
    params = model.parameters()
    rng = np.random.default_rng(config.seed)  # the order of the training batches
    step, history, best_val_loss = 0, new_history(), float("inf")
    if resume is not None:
        if resume.model is not model:
            raise ValueError("train: resume is a checkpoint of another model; pass checkpoint.model as model")
        if resume.optimizer_state is None:
            raise ValueError("train: the checkpoint has no optimizer state, so training cannot resume exactly")
        optimizer.load_state_dict(resume.optimizer_state)
        try:
            rng.bit_generator.state = resume.state["rng"]
            model.dropout_rng.bit_generator.state = resume.state["dropout_rng"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"train: the checkpoint's random generator states (rng, dropout_rng in "
                             f"state.json) are missing or not valid ({type(exc).__name__}: {exc}); it cannot "
                             "resume exactly") from None
        step, best_val_loss = resume.step, resume.state.get("best_val_loss", float("inf"))
        history = resume.history or new_history()
    if config.qat is not None:
        validate_plan(model, config.qat)  # a plan naming layers this model does not have: an error now
    if config.precision != "fp32":
        check_supported(model.config)
    scaler = None
    if config.precision != "fp32":  # bf16 has fp32's range: no scaling unless a scale is asked for
        fixed = config.loss_scale != "dynamic" or config.precision == "bf16"
        scaler = LossScaler(init_scale=1.0 if config.loss_scale == "dynamic" else config.loss_scale,
                            dynamic=False) if fixed else LossScaler()
        if resume is not None and "loss_scale" in resume.state:
            scaler.load_state_dict(resume.state["loss_scale"])

    def measure():
        """Loss on the fixed evaluation batches of both splits, recorded in the history."""
        nonlocal best_val_loss
        kw = dict(batch_size=config.batch_size, block_size=block_size, iters=config.eval_iters, seed=config.seed)
        point = {"step": step, "train_loss": evaluate(model, train_data, **kw),
                 "val_loss": evaluate(model, val_data, **kw)}
        history["eval"].append(point)
        best_val_loss = min(best_val_loss, point["val_loss"])
        if verbose:
            print(f"step {step}: train loss {point['train_loss']:.4f}, val loss {point['val_loss']:.4f}",
                  file=sys.stderr, flush=True)

    def save(rng_state, dropout_state):
        train_state = {"config": config.to_dict(), "step": step, "rng": rng_state, "dropout_rng": dropout_state,
                       "best_val_loss": best_val_loss, "history": history}
        if scaler is not None:
            train_state["loss_scale"] = scaler.state_dict()
        save_checkpoint(run_dir, model, tokenizer, optimizer, train_state)

    tokens_per_step = config.batch_size * config.grad_accum * block_size
    progress = Progress(total=end - step, what="steps", enabled=verbose)
    start_step, t0, updating = step, time.perf_counter(), False
    generators = rng.bit_generator.state, model.dropout_rng.bit_generator.state  # as of the last whole step
    writing = contextlib.ExitStack()  # undone in `finally`, last first
    try:
        if saving:
            writing.enter_context(run_lock(run_dir))  # one training at a time writes a run folder
        writing.enter_context(autocast(model, config.precision))  # fp16/bf16: half-precision layers
        if config.qat is not None:
            fake_quantize(model, config.qat)  # the plan's weights in the forward pass
            writing.callback(strip_fake_quantize, model)
        model.train()
        if step == 0 and not history["eval"]:
            measure()  # the loss before any training: ~ln(vocab_size) for a fresh model
        while step < end:
            lr = config.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr

            optimizer.zero_grad()
            step_loss = 0.0
            for _ in range(config.grad_accum):
                x, y = get_batch(train_data, config.batch_size, block_size, rng)  # (B, T), (B, T)
                _, loss = model(x, y)
                if config.grad_accum > 1:
                    loss = loss * (1.0 / config.grad_accum)  # the mean over all micro-batches
                step_loss += loss.item()
                if scaler is None:
                    loss.backward()
                else:
                    with np.errstate(over="ignore", invalid="ignore"):  # an overflow: found by unscale, step skipped
                        (loss * scaler.scale).backward()  # fp16: gradients S times larger while half
            if not math.isfinite(step_loss):
                raise ValueError(f"train: the loss became {step_loss} at step {step}; the run diverged "
                                 "(try a lower --lr or a smaller --grad-clip)")
            finite = scaler is None or scaler.unscale(params)  # master gradients / S; any inf or NaN?
            if finite and config.grad_clip > 0:
                clip_grad_norm(params, config.grad_clip)
            updating = True  # from here until the step is recorded, an interrupt must not save
            if finite:
                optimizer.step()  # an fp16 gradient that overflowed: no update this step
            if scaler is not None:
                scaler.update(finite)  # halve S after an overflow, double it after a long clean run
            step += 1
            history["step"].append(step)
            history["loss"].append(step_loss)
            history["lr"].append(lr)
            generators = rng.bit_generator.state, model.dropout_rng.bit_generator.state
            updating = False

            elapsed = time.perf_counter() - t0
            where = f"step {step} | " if start_step else ""  # a resumed run's count starts at 0 again
            scale = "" if scaler is None else f"loss scale {scaler.scale:g} | "
            progress.update(step - start_step, extra=f"{where}loss {step_loss:.4f} | lr {lr:.2e} | {scale}"
                                                      f"{(step - start_step) * tokens_per_step / elapsed:,.0f} tok/s")
            if step % config.eval_interval == 0 or step == end:
                measure()
                if saving:
                    save(*generators)
    except KeyboardInterrupt:
        # save the last whole step, unless the interrupt came in the middle of an optimizer update
        # (the weights would be half-changed; the previous checkpoint then stays the last good one)
        if saving and not updating and step > start_step:
            save(*generators)
        raise
    finally:
        progress.done(step - start_step)
        writing.close()
    seconds = time.perf_counter() - t0
    return TrainResult(step=step, history=history, best_val_loss=best_val_loss, seconds=seconds,
                       tokens_per_second=(step - start_step) * tokens_per_step / max(seconds, 1e-9),
                       optimizer=optimizer, loss_scaler=scaler)
