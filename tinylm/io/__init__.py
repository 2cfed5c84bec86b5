"""Files in and out: every format tinylm reads or writes, and `load`, the one way to open any of them.

    runs.py         run folders written by `tinylm train` (config, weights, tokenizer, optimizer,
                    history, state.json's commit record); exact resume
    quantized.py    quantized model folders written by `tinylm quantize --out`
    safetensors.py  the safetensors tensor format (knows nothing of models)
    hf_gpt2.py      Hugging Face GPT-2 folders, in and out
    llama2c.py      llama2.c checkpoints (model.bin versions 0, 1, 2) and tokenizer.bin, in and out
    gguf.py         GGUF files for llama.cpp (GPT-2 and Llama; F32, F16, Q8_0), in and out
    loader.py       build_model: the one place stored weights become a model (build empty, check, fill)

    >>> model, tokenizer = load("tinylm-demo")          # a run folder        # doctest: +SKIP
    >>> model, tokenizer = load("demo-int8")            # a quantized model   # doctest: +SKIP
    >>> model, tokenizer = load("gpt2")                 # a Hugging Face GPT-2 folder  # doctest: +SKIP
    >>> model, tokenizer = load("stories15M.bin")       # a llama2.c checkpoint  # doctest: +SKIP
    >>> model, tokenizer = load("model.gguf")           # a GGUF file  # doctest: +SKIP
"""
import os

from tinylm.fileio import load_json
from tinylm.io import gguf, hf_gpt2, llama2c, quantized, runs
from tinylm.quant import apply_plan, load_plan, uniform_plan

# what `load` recognises, for its error message
FORMATS = ("a tinylm run folder (config.json with \"format\": \"tinylm-run\")",
           f"a quantized model folder ({quantized.META_FILE})",
           "a Hugging Face GPT-2 folder (config.json + model.safetensors)",
           "a llama2.c checkpoint (a .bin file, or a folder with model.bin)",
           "a GGUF file (.gguf, or a folder with model.gguf)")


def detect(path):
    """The format of `path`: 'run', 'quantized', 'hf-gpt2', 'llama2c' or 'gguf'; a ValueError when it is none."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"not found: {path}")
    if not os.path.isdir(path):
        if path.endswith(".bin"):
            return "llama2c"
        if path.endswith(".gguf"):
            return "gguf"
        raise ValueError(f"{path} is a file tinylm cannot load; expected " + "; ".join(FORMATS))
    if os.path.isfile(os.path.join(path, quantized.META_FILE)):
        return "quantized"
    config_path = os.path.join(path, runs.CONFIG)
    if os.path.isfile(config_path):
        config = load_json(config_path, "config.json")
        if isinstance(config, dict) and config.get("format") == runs.FORMAT:
            return "run"
        if os.path.isfile(os.path.join(path, "model.safetensors")):
            return "hf-gpt2"
    if os.path.isfile(os.path.join(path, "model.bin")):
        return "llama2c"
    if os.path.isfile(os.path.join(path, "model.gguf")):
        return "gguf"
    raise ValueError(f"{path} is not a folder tinylm can load; expected " + "; ".join(FORMATS))


def load(path, plan=None):
    """(model, tokenizer) from any folder (or llama2.c .bin file) tinylm can read, the model in eval mode.

    The tokenizer is None where the folder holds none (a quantized model saved without one, a Hugging
    Face folder without vocab.json + merges.txt). With `plan` (a plan JSON file, or one precision for
    every layer such as "int8"), the loaded fp32 model is quantized by it (tinylm.quant.apply_plan).
    """
    model, tokenizer = _load(path)
    if plan is not None:
        model = apply_plan(model, load_plan(plan) if os.path.exists(plan) else uniform_plan(model, plan))
    return model, tokenizer


def _load(path):
    kind = detect(path)
    if kind == "run":
        return runs.load_model(path)
    if kind == "quantized":
        return quantized.load_quantized(path), quantized.load_tokenizer(path)
    if kind == "llama2c":
        return llama2c.load_llama2c(path if not os.path.isdir(path) else os.path.join(path, "model.bin"))
    if kind == "gguf":
        return gguf.load_gguf(path if not os.path.isdir(path) else os.path.join(path, "model.gguf"))
    tokenizer = None
    if os.path.isfile(os.path.join(path, "vocab.json")) and os.path.isfile(os.path.join(path, "merges.txt")):
        tokenizer = hf_gpt2.load_hf_tokenizer(path)
    return hf_gpt2.load_hf_gpt2(path), tokenizer


__all__ = ["FORMATS", "detect", "load"]
