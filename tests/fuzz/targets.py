"""Fuzz targets: one function per loader, `target(data: bytes)`, shared by the two fuzzers.

    tests/test_fuzz_loaders.py   hypothesis: mutations of valid seed files, a few seconds per loader,
                                 in the normal suite
    tests/fuzz/fuzz.py           atheris (coverage-guided, libFuzzer's engine): a short bounded run in
                                 the suite, long runs by hand (see its docstring)

A target writes `data` where the loader reads it (a file, or one file of an otherwise valid folder)
and loads it. The contract it checks: a loader either succeeds or raises one of ALLOWED, the error
types tinylm documents for a bad file (ValueError, and OSError for a missing or unreadable one). Any
other exception (KeyError, RecursionError, ZeroDivisionError, OverflowError, MemoryError, ...) is a bug
and escapes to the fuzzer. Hangs and huge allocations are caught by the fuzzers' own limits (hypothesis'
deadline, atheris' -timeout and -rss_limit_mb).

Folder targets take their first byte to choose which file of a valid folder to replace and their
second to say whether to re-hash it in state.json (so a mutation also reaches the code behind the
checksum, as a careful attacker would).
"""
import base64
import functools
import json
import os
import shutil
import tempfile

import numpy as np

from tinylm.fileio import load_json, load_npz
from tinylm.io import hf_gpt2, quantized, runs
from tinylm.io.safetensors import iter_safetensors, read_safetensors, write_safetensors
from tinylm.model import GPT, GPTConfig
from tinylm.optim import AdamW
from tinylm.quant import load_plan, save_plan, uniform_plan
from tinylm.tokenizer import Tokenizer
from tinylm.train import TrainConfig

ALLOWED = (ValueError, OSError)
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
TEXT = "the quick brown fox jumps over the lazy dog. 我喜欢学习AI! "


class Scratch:
    """One temporary folder per process, with the valid seed folders the folder targets start from."""
    _root = None

    @classmethod
    def root(cls):
        if cls._root is None:
            cls._root = tempfile.mkdtemp(prefix="tinylm-fuzz-")
            _make_seed_folders(cls._root)
        return cls._root

    @classmethod
    def path(cls, name):
        return os.path.join(cls.root(), name)


def _make_seed_folders(root):
    """A run folder, a quantized model folder and a Hugging Face folder, each tiny and valid."""
    tokenizer = Tokenizer().train(TEXT * 20, 270, pattern="gpt2", special_tokens=["<|endoftext|>"])
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16)
    model = GPT(config, seed=0)
    optimizer = AdamW(model.optim_groups(0.1), lr=1e-3)
    rng = np.random.default_rng(0)
    state = {"step": 1, "rng": rng.bit_generator.state, "dropout_rng": model.dropout_rng.bit_generator.state,
             "best_val_loss": 5.0, "config": {"batch_size": 2, "max_iters": 4, "warmup_iters": 0},
             "history": {"step": [1], "loss": [5.0], "lr": [1e-3], "eval": [{"step": 1, "train_loss": 5.0,
                                                                             "val_loss": 5.0}]}}
    run = os.path.join(root, "seed-run")
    os.makedirs(run)
    ids = np.asarray(tokenizer.encode(TEXT * 4), np.uint16)
    runs.save_tokens(run, ids[:60], ids[60:])
    runs.save_checkpoint(run, model, tokenizer, optimizer, state)
    quantized.save_quantized(os.path.join(root, "seed-quantized"), model, uniform_plan(model, "int8:g8"),
                             tokenizer=tokenizer)
    shutil.copytree(os.path.join(FIXTURES, "tiny-gpt2"), os.path.join(root, "seed-hf"),
                    ignore=shutil.ignore_patterns("reference.*"))
    save_plan(os.path.join(root, "plan.json"), uniform_plan(model, "int8:g8"))
    tokenizer.save(os.path.join(root, "tokenizer.json"))
    write_safetensors(os.path.join(root, "tensors.safetensors"),
                      {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.float16)},
                      metadata={"format": "pt"}, dtypes={"w": "BF16"})


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


# -----------------------------------------------------------------------------------------------------
# single files


def safetensors(data):
    path = _write(Scratch.path("fuzz.safetensors"), data)
    for _, a in read_safetensors(path).items():
        np.asarray(a).sum()  # touch every byte the header promised
    for _ in iter_safetensors(path):
        pass


def npz(data):
    load_npz(_write(Scratch.path("fuzz.npz"), data))


def json_file(data):
    load_json(_write(Scratch.path("fuzz.json"), data))


def tokenizer_json(data):
    tok = Tokenizer.load(_write(Scratch.path("fuzz-tokenizer.json"), data))
    tok.decode(tok.encode(TEXT, allowed_special="all"))


def gpt2_files(data):
    """data = vocab.json bytes, a 0 byte, merges.txt bytes."""
    vocab, _, merges = data.partition(b"\0")
    tok = Tokenizer.from_gpt2_files(_write(Scratch.path("fuzz-vocab.json"), vocab),
                                    _write(Scratch.path("fuzz-merges.txt"), merges))
    tok.decode(tok.encode(TEXT, allowed_special="all"))


def tiktoken(data):
    tok = Tokenizer.from_tiktoken_file(_write(Scratch.path("fuzz.tiktoken"), data), pattern="gpt4")
    tok.decode(tok.encode(TEXT))


def plan(data):
    load_plan(_write(Scratch.path("fuzz-plan.json"), data))


# -----------------------------------------------------------------------------------------------------
# folders: one file of a valid folder replaced


def _mutated_folder(seed, data):
    folder = Scratch.path("fuzz-" + seed)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(Scratch.path("seed-" + seed), folder)
    names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    if len(data) >= 2:
        name = names[data[0] % len(names)]
        _write(os.path.join(folder, name), data[2:])
        state_path = os.path.join(folder, runs.STATE)
        if data[1] % 2 and name != runs.STATE and os.path.exists(state_path):
            state = json.loads(_read(state_path))
            state["files"][name] = runs._sha256(os.path.join(folder, name))
            _write(state_path, json.dumps(state).encode())
    return folder


def run_folder(data):
    folder = _mutated_folder("run", data)
    runs.load_model(folder)
    checkpoint = runs.load_checkpoint(folder)
    runs.load_tokens(folder)
    TrainConfig.from_dict(checkpoint.train_config)  # what a resume does next


def quantized_folder(data):
    folder = _mutated_folder("quantized", data)
    quantized.load_quantized(folder)
    quantized.load_tokenizer(folder)


def hf_folder(data):
    folder = _mutated_folder("hf", data)
    hf_gpt2.load_hf_gpt2(folder)
    hf_gpt2.load_hf_tokenizer(folder)


# -----------------------------------------------------------------------------------------------------
# the list, and a valid input of each (the fuzzers mutate these)

TARGETS = {
    "safetensors": safetensors, "npz": npz, "json": json_file, "tokenizer": tokenizer_json,
    "gpt2-files": gpt2_files, "tiktoken": tiktoken, "plan": plan, "run": run_folder,
    "quantized": quantized_folder, "hf": hf_folder,
}


@functools.lru_cache(maxsize=None)
def seeds(name):
    """Valid inputs of target `name`: the bytes the fuzzers start mutating from, read once (hypothesis
    replays a case by its choices, so the seeds must not change between two draws)."""
    return tuple(_seeds(name))


def _seeds(name):
    root = Scratch.root()
    if name == "safetensors":
        return [_read(os.path.join(root, "tensors.safetensors"))]
    if name == "npz":
        return [_read(os.path.join(root, "seed-run", "tokens.npz")),
                _read(os.path.join(root, "seed-quantized", "weights.npz"))]
    if name in ("json", "plan"):
        return [_read(os.path.join(root, "plan.json"))]
    if name == "tokenizer":
        return [_read(os.path.join(root, "tokenizer.json"))]
    if name == "gpt2-files":
        hf = os.path.join(root, "seed-hf")
        return [_read(os.path.join(hf, "vocab.json")) + b"\0" + _read(os.path.join(hf, "merges.txt"))]
    if name == "tiktoken":
        lines = [base64.b64encode(bytes([b])) + b" %d" % b for b in range(256)]
        lines += [base64.b64encode(b"th") + b" 256", base64.b64encode(b"the") + b" 257"]
        return [b"\n".join(lines)]
    folder = os.path.join(root, "seed-" + name)
    names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    return [bytes([i, 1]) + _read(os.path.join(folder, n)) for i, n in enumerate(names)]


def check(name, data):
    """Run target `name` on `data`: returns None, or re-raises what is not an ALLOWED error."""
    try:
        TARGETS[name](data)
    except ALLOWED:
        pass
