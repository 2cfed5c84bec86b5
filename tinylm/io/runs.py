"""Run folders: everything a training run leaves behind, saved so that a crash never loses it.

A run folder written by `tinylm train` holds

    config.json      {"format": "tinylm-run", "version": 1, "model": GPTConfig, "train": TrainConfig}
    model.npz        the weights, model.state_dict() (one array per parameter name)
    tokenizer.json   the tokenizer (Tokenizer.save)
    optimizer.npz    AdamW's moments and step count (only needed to resume)
    loss.json        the loss history; loss.csv (for a spreadsheet) and loss.png (when matplotlib is
                     installed) are drawn from it
    state.json       step, random generator states, best validation loss ... and the SHA-256 of every
                     file above and below: the list of what belongs to this checkpoint
    tokens.npz       the corpus as token ids (train and val), encoded once, so a resume skips the work
    run.lock         while a training writes the folder: a second one is refused (run_lock, below)

Saving a checkpoint writes several files, and a crash can come between any two. So a save is done in
three steps, like a tiny database transaction:

    1. every file is written as NAME.next (each write itself atomic: temporary file, then rename);
    2. state.json is written, naming the SHA-256 of each NAME.next      <- the commit point
    3. each NAME.next is renamed to NAME.

A reader takes, for each file, whichever of NAME and NAME.next has the hash state.json names. A crash
before step 2 leaves the old state.json pointing at the old files (the last good checkpoint); a crash
during step 3 leaves the new state.json pointing at a mix of renamed and .next files, all of them new.

tokens.npz is written once, before the first checkpoint, and every commit record names its hash too,
so ids from another corpus are never read with this run's tokenizer. The whole folder is one
transaction: a new run over an old one (--force) first deletes the old state.json (the old run is then
gone as a whole, never half-replaced), then the old files, and only then writes its own; a SIGKILL
anywhere leaves either the old run, nothing, or the new run's last commit.

    >>> save_checkpoint("runs/tiny", model, tokenizer)              # doctest: +SKIP
    >>> model, tokenizer = load_model("runs/tiny")                  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from tinylm.data import clean_text, encode_corpus, load_corpus, train_val_split
from tinylm.fileio import atomic_open, load_json, load_npz, remove_stale_temporaries, save_json, save_npz
from tinylm.io.loader import build_model
from tinylm.model import GPTConfig
from tinylm.tokenizer import Tokenizer

FORMAT = "tinylm-run"
VERSION = 1
STATE_FORMAT = "tinylm-state"

CONFIG, MODEL, TOKENIZER, OPTIMIZER, HISTORY, STATE, TOKENS = (
    "config.json", "model.npz", "tokenizer.json", "optimizer.npz", "loss.json", "state.json", "tokens.npz")
LOCK = "run.lock"
_held = set()  # real paths of the run folders whose lock this process holds
DRAWINGS = ("loss.csv", "loss.png")  # drawn from loss.json, not part of a checkpoint

try:
    import fcntl  # POSIX: the lock of a run folder; released by the kernel when its process dies
except ImportError:  # Windows: no lock (two trainings into one folder are then the user's care)
    fcntl = None


# -----------------------------------------------------------------------------------------------------
# small helpers


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _committed_path(run_dir, name, files):
    """The path holding the committed version of file `name` (NAME or NAME.next), or an error.

    `files` is state.json's {name: sha256}; None means the folder has no state.json (a folder written
    by hand or by another tool), and then NAME is taken as it is.
    """
    path = os.path.join(run_dir, name)
    if files is None:
        return path
    want = files.get(name)
    if want is None:
        raise ValueError(f"{os.path.join(run_dir, STATE)} does not list {name}")
    for candidate in (path, path + ".next"):
        if os.path.isfile(candidate) and _sha256(candidate) == want:
            return candidate
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    raise ValueError(f"{path} does not match its SHA-256 in state.json: the file is corrupt or was "
                     "changed after the checkpoint was saved")


def has_checkpoint(run_dir):
    """True when `run_dir` already holds a run (so starting a new one there would overwrite it)."""
    return any(os.path.exists(os.path.join(run_dir, name)) for name in (CONFIG, STATE, MODEL))


def _check_run_dir(run_dir):
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    return run_dir


def _read_state(run_dir):
    """state.json as a dict, or None when the folder has none."""
    path = os.path.join(run_dir, STATE)
    if not os.path.exists(path):
        return None
    state = load_json(path, "checkpoint state file")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or not isinstance(state.get("files"), dict):
        raise ValueError(f"{path} is not a tinylm checkpoint state file (expected format {STATE_FORMAT!r} "
                         "with a 'files' table)")
    if state.get("version") != VERSION:
        raise ValueError(f"{path} has version {state.get('version')}; this tinylm reads version {VERSION}")
    step = state.get("step")
    if not _is_count(step):
        raise ValueError(f"{path}: step is {step!r}; expected an integer >= 0")
    for name, digest in state["files"].items():
        if not (isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest)):
            raise ValueError(f"{path}: the SHA-256 of {name!r} is {str(digest)[:70]!r}; expected 64 hex digits")
    return state


def _is_count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _read_config(run_dir, files):
    path = _committed_path(run_dir, CONFIG, files)
    config = load_json(path, "run configuration")
    if not isinstance(config, dict) or config.get("format") != FORMAT or not isinstance(config.get("model"), dict):
        raise ValueError(f"{path} is not a tinylm run configuration (expected format {FORMAT!r} with a 'model' "
                         "section)")
    if config.get("version") != VERSION:
        raise ValueError(f"{path} has version {config.get('version')}; this tinylm reads version {VERSION}")
    if not isinstance(config.get("train", {}), dict):
        raise ValueError(f"{path}: 'train' must be an object of TrainConfig settings")
    return config


# -----------------------------------------------------------------------------------------------------
# saving


def save_checkpoint(run_dir, model, tokenizer, optimizer=None, train_state=None):
    """Save a model, its tokenizer and (to resume training) the optimizer and loop state in `run_dir`.

    train_state is a dict; three keys are special, the rest goes to state.json as it is (JSON values):
      "config"   the training configuration (a dict), saved in config.json beside the model's
      "history"  the loss history {"step": [...], "loss": [...], "lr": [...], "eval": [{...}, ...]},
                 saved as loss.json, and drawn as loss.csv and loss.png
      "step"     the number of optimizer steps taken (default 0)
    """
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    train_state = dict(train_state or {})
    train_config = train_state.pop("config", {})
    history = train_state.pop("history", None)

    # 1. every file as NAME.next
    written = []

    def target(name):
        written.append(name)
        return os.path.join(run_dir, name + ".next")

    save_json(target(CONFIG), {"format": FORMAT, "version": VERSION, "model": model.config.to_dict(),
                               "train": train_config})
    save_npz(target(MODEL), {name: np.asarray(a) for name, a in model.state_dict().items()})
    tokenizer.save(target(TOKENIZER))
    if optimizer is not None:
        save_npz(target(OPTIMIZER), optimizer.state_dict())
    if history is not None:
        save_json(target(HISTORY), history)

    # 2. the commit: state.json names exactly these files, and the token ids the run trains on
    files = {name: _sha256(os.path.join(run_dir, name + ".next")) for name in written}
    if os.path.isfile(os.path.join(run_dir, TOKENS)):
        files[TOKENS] = _sha256(os.path.join(run_dir, TOKENS))
    state = {"format": STATE_FORMAT, "version": VERSION, "step": int(train_state.pop("step", 0)),
             **train_state, "files": files}
    save_json(os.path.join(run_dir, STATE), state)

    # 3. the new files take their real names; files of an older checkpoint not in this one go away
    for name in written:
        _promote(run_dir, name)
    for name in (OPTIMIZER, HISTORY):
        if name not in written and os.path.exists(os.path.join(run_dir, name)):
            os.remove(os.path.join(run_dir, name))

    if history is not None:  # drawings of the history: not part of the checkpoint, redrawn each time
        write_loss_csv(os.path.join(run_dir, "loss.csv"), history)
        plot_loss(os.path.join(run_dir, "loss.png"), history)


def _promote(run_dir, name):
    """NAME.next becomes NAME (step 3 of a save)."""
    os.replace(os.path.join(run_dir, name + ".next"), os.path.join(run_dir, name))


def write_loss_csv(path, history):
    """One row per training step: step, lr, loss (of that step's batch), and the train/val loss on the
    fixed evaluation batches at the steps where they were measured (empty elsewhere)."""
    evals = {e["step"]: e for e in history.get("eval", [])}
    rows = {s: [s, lr, loss, "", ""] for s, lr, loss in zip(history["step"], history["lr"], history["loss"])}
    for s, e in evals.items():
        rows.setdefault(s, [s, "", "", "", ""])[3:] = [e["train_loss"], e["val_loss"]]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "lr", "loss", "train_loss", "val_loss"])
    writer.writerows(rows[s] for s in sorted(rows))
    with atomic_open(path, "w") as f:
        f.write(out.getvalue())


def plot_loss(path, history):
    """Draw the loss curve as a PNG; quietly does nothing when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe in any thread
    except ImportError:
        return False
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    if history["step"]:
        ax.plot(history["step"], history["loss"], lw=0.6, alpha=0.5, color="tab:blue", label="batch loss")
    evals = history.get("eval", [])
    if evals:
        steps = [e["step"] for e in evals]
        ax.plot(steps, [e["train_loss"] for e in evals], "o-", color="tab:blue", label="train (fixed batches)")
        ax.plot(steps, [e["val_loss"] for e in evals], "o-", color="tab:orange", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return True


# -----------------------------------------------------------------------------------------------------
# loading


def load_run_config(run_dir):
    """config.json of a run: {"format", "version", "model": GPTConfig fields, "train": TrainConfig fields}."""
    run_dir = _check_run_dir(run_dir)
    state = _read_state(run_dir)
    return _read_config(run_dir, None if state is None else state["files"])


def load_model(run_dir):
    """(model, tokenizer) from a run folder, the model in eval mode: for generate, eval, quantize, export.

    >>> model, tokenizer = load_model("tinylm-demo")              # doctest: +SKIP
    """
    run_dir = _check_run_dir(run_dir)
    state = _read_state(run_dir)
    files = None if state is None else state["files"]
    config = _read_config(run_dir, files)
    try:
        model_config = GPTConfig.from_dict(config["model"])
    except ValueError as exc:
        raise ValueError(f"{_committed_path(run_dir, CONFIG, files)}: {exc}") from None
    weights_path = _committed_path(run_dir, MODEL, files)
    arrays = load_npz(weights_path, "model weights file")
    model = build_model(model_config, {k: a.shape for k, a in arrays.items()}, arrays.items(), weights_path)
    tokenizer = Tokenizer.load(_committed_path(run_dir, TOKENIZER, files))
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"{os.path.join(run_dir, TOKENIZER)} has {tokenizer.vocab_size} tokens but the model "
                         f"only {model.config.vocab_size} (vocab_size in config.json)")
    return model, tokenizer


@dataclass
class Checkpoint:
    """Everything `load_checkpoint` reads: enough to resume training exactly where it stopped."""
    model: object
    tokenizer: object
    train_config: dict
    step: int
    state: dict  # state.json without its bookkeeping: rng states, best val loss, ...
    optimizer_state: dict | None = None  # AdamW.state_dict(), or None when saved without optimizer
    history: dict | None = None
    files: dict = field(default_factory=dict)


def load_checkpoint(run_dir):
    """Read a run folder for resuming: the model (in train mode), tokenizer, optimizer state, step, ..."""
    run_dir = _check_run_dir(run_dir)
    state = _read_state(run_dir)
    if state is None:
        raise FileNotFoundError(f"{os.path.join(run_dir, STATE)} not found: {run_dir} holds no checkpoint "
                                "to resume from")
    files = state["files"]
    model, tokenizer = load_model(run_dir)
    model.train()
    config = _read_config(run_dir, files)
    optimizer_state = history = None
    if OPTIMIZER in files:
        path = _committed_path(run_dir, OPTIMIZER, files)
        optimizer_state = _check_optimizer_state(load_npz(path, "optimizer state file"), path)
    if HISTORY in files:
        path = _committed_path(run_dir, HISTORY, files)
        history = _check_history(load_json(path, "loss history"), path)
    state_path = os.path.join(run_dir, STATE)
    for name in ("rng", "dropout_rng"):
        if name in state and not isinstance(state[name], dict):
            raise ValueError(f"{state_path}: {name} is {state[name]!r}; expected a random generator state (an object)")
    best = state.get("best_val_loss", math.inf)
    if isinstance(best, bool) or not isinstance(best, (int, float)) or math.isnan(best):
        raise ValueError(f"{state_path}: best_val_loss is {best!r}; expected a number")
    rest = {k: v for k, v in state.items() if k not in ("format", "version", "files", "step")}
    return Checkpoint(model=model, tokenizer=tokenizer, train_config=config.get("train", {}),
                      step=state["step"], state=rest, optimizer_state=optimizer_state,
                      history=history, files=dict(files))


def _check_optimizer_state(arrays, path):
    """optimizer.npz's arrays, each step count an integer >= 0, each moment float32 (never cast) and each
    number finite: a state with step -1 would divide by zero in AdamW's bias correction, a NaN moment
    would poison every weight."""
    for key, a in arrays.items():
        if key.endswith(".step"):
            if a.shape != () or a.dtype.kind not in "iu" or int(a) < 0:
                raise ValueError(f"{path}: {key} is {a.tolist()!r}; expected one integer >= 0")
        elif key.endswith(".n_params"):
            continue
        elif key.startswith("state.") and a.dtype != np.float32:  # moments: the weights' dtype, not cast
            raise ValueError(f"{path}: {key} has dtype {a.dtype}; expected float32, like the weights")
        elif a.dtype.kind != "f":
            raise ValueError(f"{path}: {key} has dtype {a.dtype}; expected floating-point values")
        elif not np.isfinite(a).all():
            raise ValueError(f"{path}: {key} holds NaN or infinite values")
    return arrays


def _check_history(history, path):
    """loss.json: {"step": [...], "loss": [...], "lr": [...], "eval": [{"step", "train_loss", "val_loss"}]},
    the three lists of one length."""
    def bad(problem):
        return ValueError(f"{path} is not a valid loss history: {problem}")

    if not isinstance(history, dict):
        raise bad(f"expected a JSON object, found {type(history).__name__}")
    for key in ("step", "loss", "lr", "eval"):
        if not isinstance(history.get(key), list):
            raise bad(f"{key!r} must be a list")
    if not len(history["step"]) == len(history["loss"]) == len(history["lr"]):
        raise bad("'step', 'loss' and 'lr' must have the same length")
    numbers = history["step"] + history["loss"] + history["lr"]
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers):
        raise bad("'step', 'loss' and 'lr' must hold numbers")
    for point in history["eval"]:
        if not (isinstance(point, dict) and all(isinstance(point.get(k), (int, float))
                                                for k in ("step", "train_loss", "val_loss"))):
            raise bad("every 'eval' entry must be {\"step\", \"train_loss\", \"val_loss\"} numbers")
    return history


# -----------------------------------------------------------------------------------------------------
# the corpus as token ids, next to the run


def save_tokens(run_dir, train_ids, val_ids):
    """Keep the encoded corpus in the run folder (tokens.npz), so resuming or evaluating skips encoding."""
    save_npz(os.path.join(run_dir, TOKENS), {"train": np.asarray(train_ids), "val": np.asarray(val_ids)})


def load_tokens(run_dir):
    """(train_ids, val_ids) as saved by `save_tokens`: the exact split the run trained and validated on.

    When state.json names the hash of tokens.npz (every run since the commit record included it), the
    file must have that hash: ids written by another run are refused, never read with this tokenizer.
    """
    run_dir = _check_run_dir(run_dir)
    state = _read_state(run_dir)
    files = None if state is None or TOKENS not in state["files"] else state["files"]
    path = _committed_path(run_dir, TOKENS, files)
    arrays = load_npz(path, "token file")
    if set(arrays) != {"train", "val"} or any(arrays[k].ndim != 1 or arrays[k].dtype.kind not in "iu"
                                                  for k in ("train", "val")):
        raise ValueError(f"{path} should hold two 1-D integer arrays, 'train' and 'val'")
    return arrays["train"], arrays["val"]


# -----------------------------------------------------------------------------------------------------
# the folder as a whole: one writer at a time, and a new run replaces an old one all at once


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold run_dir/run.lock while a training writes the folder; a second training is refused.

    The lock is an flock on the file, so the kernel releases it when its process ends, however it ends:
    a lock left by a killed run is simply taken over (the file names the last holder's process id, for
    the message). Taking the lock also removes the temporary files a killed writer left behind. Within
    one process the lock is re-entrant: `tinylm train` holds it, and train() inside takes it again.

    >>> with run_lock("runs/tiny"):                  # doctest: +SKIP
    ...     train(...)
    """
    run_dir = os.fspath(run_dir)
    created = not os.path.isdir(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, LOCK)
    key = os.path.realpath(run_dir)
    if fcntl is None or key in _held:  # no locks here, or this process holds it already (train() in a command)
        yield
        return
    while True:  # until we hold a lock on the file that is at `path` now (another may have replaced it)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise BlockingIOError(f"another tinylm training (process {holder}) is writing {run_dir}; wait for it "
                               "to finish or stop it (two runs in one folder would mix their files)") from None
        if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
            break
        os.close(fd)
    _held.add(key)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        remove_stale_temporaries(run_dir)
        yield
    finally:
        _held.discard(key)
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(fd)
        if created:  # a run that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                os.rmdir(run_dir)


def remove_run(run_dir):
    """Delete the run in `run_dir` (for `train --force`), the commit record first: from that moment
    no reader takes the old files for a run, so a crash halfway leaves no mix of old and new."""
    names = (CONFIG, MODEL, TOKENIZER, OPTIMIZER, HISTORY)
    for name in (STATE, TOKENS, *names, *(n + ".next" for n in names), *DRAWINGS):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(run_dir, name))


def scoring_ids(run_dir, tokenizer, data=None, split="val"):
    """(token ids, a description) to score a run on.

    data None: the run's held-out tokens as it saved them (tokens.npz), or, when the folder has none,
    the corpus its config.json names. data given (a file, a folder or "builtin"): that text, prepared
    the way the run prepared its training text (cleaning and val_fraction from config.json), then its
    validation part (split "val") or all of it (split "all").
    """
    if split not in ("val", "all"):
        raise ValueError(f"split must be 'val' or 'all', got {split!r}")
    settings = load_run_config(run_dir).get("train", {})
    settings = settings if isinstance(settings, dict) else {}
    if data is None:
        if split == "all":
            raise ValueError("split 'all' needs a corpus (without one, the run's held-out tokens are used)")
        if os.path.isfile(os.path.join(run_dir, TOKENS)):
            return np.asarray(load_tokens(run_dir)[1]), f"{run_dir} held-out tokens"
        data = settings.get("data")
        if not isinstance(data, str):
            raise ValueError(f"run {run_dir} has no {TOKENS} and its config.json names no corpus; pass --data")
    text = load_corpus(data)
    if settings.get("clean", True):
        text = clean_text(text)
    ids = np.asarray(encode_corpus(text, tokenizer))
    if split == "val":
        ids = np.asarray(train_val_split(ids, settings.get("val_fraction", 0.1))[1])
    return ids, f"{data} ({split})"
