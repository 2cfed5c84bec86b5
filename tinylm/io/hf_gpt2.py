"""Hugging Face GPT-2 folders, in and out: config.json, model.safetensors, vocab.json + merges.txt.

A Hugging Face GPT-2 folder holds four files that tinylm reads and writes:

    config.json         the sizes, under GPT-2's names: n_embd, n_layer, n_head, n_positions, vocab_size, ...
    model.safetensors   every weight, by name ("h.0.attn.c_attn.weight", ...): tinylm.io.safetensors
    vocab.json          {token text: id}, bytes spelled with GPT-2's byte-to-unicode table ("Ġthe": 262)
    merges.txt          the BPE merges in rank order, one "left right" pair per line

GPT-2's weight names match tinylm's one to one (tinylm uses GPT-2's names), with one twist: GPT-2's
linear layers are `Conv1D` modules, which store their weight as (in_features, out_features) and compute
y = x @ W + b, while tinylm's Linear stores (out_features, in_features) like nn.Linear and computes
y = x @ W.T + b. So the weights named in CONV1D_WEIGHTS are transposed on the way in and on the way
out; embeddings and layer norms are copied as they are. The tokenizer (`load_hf_tokenizer`) is
vocab.json + merges.txt, read by tinylm.tokenizer.

    >>> model = load_hf_gpt2("tests/fixtures/tiny-gpt2")                 # doctest: +SKIP
    >>> tokenizer = load_hf_tokenizer("tests/fixtures/tiny-gpt2")        # doctest: +SKIP
    >>> save_hf_gpt2(model, "out/tiny-gpt2", tokenizer)                  # doctest: +SKIP
"""
from __future__ import annotations

import os

import numpy as np

from tinylm import fileio
from tinylm.io.loader import build_model, check_sizes
from tinylm.io.safetensors import iter_safetensors, safetensors_header, write_safetensors
from tinylm.model import GPT, GPTConfig
from tinylm.tokenizer import Tokenizer

# ----------------------------------------------------------------------------------------------
# GPT-2: names, shapes and config.json

# the four Conv1D weights of every block: stored (in, out) by GPT-2, (out, in) by tinylm
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
LAYER_NORM_EPS = 1e-5  # tinylm's LayerNorm epsilon, and GPT-2's
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")  # the names transformers gives GELU's tanh approximation


def _is_conv1d(name):
    return name.startswith("transformer.h.") and name.endswith(CONV1D_WEIGHTS)


def gpt_config_from_hf(hf_config, where="config.json", dropout=0.0):
    """A GPTConfig from the fields of a Hugging Face GPT-2 config.json, refusing anything tinylm's GPT
    would compute differently (another activation, another layer-norm epsilon, untied output, ...).

    >>> gpt_config_from_hf({"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
    ...                     "n_head": 12}).block_size
    1024
    """
    if not isinstance(hf_config, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(hf_config).__name__}")

    def refuse(problem):
        return ValueError(f"{where}: {problem}; tinylm's GPT implements GPT-2 exactly and cannot load this model")

    model_type = hf_config.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise refuse(f"model_type is {model_type!r}, not 'gpt2'")
    activation = hf_config.get("activation_function", "gelu_new")
    if activation not in GELU_TANH:
        raise refuse(f"activation_function is {activation!r}, not GELU's tanh approximation ('gelu_new')")
    eps = hf_config.get("layer_norm_epsilon", LAYER_NORM_EPS)
    if not isinstance(eps, (int, float)) or abs(eps - LAYER_NORM_EPS) > 1e-12:
        raise refuse(f"layer_norm_epsilon is {eps!r}; tinylm's LayerNorm uses {LAYER_NORM_EPS}")
    for field, expected in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                            ("add_cross_attention", False), ("tie_word_embeddings", True)):
        if hf_config.get(field, expected) != expected:
            raise refuse(f"{field} is {hf_config[field]!r} (tinylm needs {expected!r})")

    sizes = {}
    for ours, theirs in (("vocab_size", ("vocab_size",)), ("block_size", ("n_positions", "n_ctx")),
                         ("n_layer", ("n_layer",)), ("n_head", ("n_head",)), ("n_embd", ("n_embd",))):
        found = [t for t in theirs if t in hf_config]
        if not found:
            raise ValueError(f"{where}: missing {' or '.join(theirs)} (the model's {ours})")
        sizes[ours] = hf_config[found[0]]  # n_positions wins over the older n_ctx
    n_inner = hf_config.get("n_inner")
    if n_inner is not None and n_inner != 4 * sizes["n_embd"]:
        raise refuse(f"n_inner is {n_inner}, not 4 * n_embd = {4 * sizes['n_embd']}")
    try:
        return GPTConfig(**sizes, dropout=dropout, bias=True)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def hf_config_from_gpt(config, tokenizer=None):
    """The config.json of a Hugging Face GPT-2 with tinylm's sizes, under GPT-2's field names."""
    end_of_text = None
    if tokenizer is not None:
        end_of_text = getattr(tokenizer, "special_tokens", {}).get("<|endoftext|>")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # None means 4 * n_embd
        "activation_function": "gelu_new",
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": end_of_text,
        "eos_token_id": end_of_text,
        "use_cache": True,
        "torch_dtype": "float32",
    }


# ----------------------------------------------------------------------------------------------
# GPT-2: import


def load_hf_gpt2(folder, dropout=0.0):
    """Load a Hugging Face GPT-2 folder (config.json + model.safetensors) as a tinylm GPT.

    Weight names may carry the "transformer." prefix (GPT2LMHeadModel) or not (GPT2Model); the causal
    masks older checkpoints store ("h.0.attn.bias", "h.0.attn.masked_bias") are skipped; lm_head.weight
    may be absent (tied to wte) or present, in which case it must equal wte. F16 and BF16 weights are
    widened to float32. `dropout` is set in the config (0 for inference; e.g. 0.1 to train further).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Hugging Face folder not found: {folder}")
    config_path = os.path.join(folder, "config.json")
    config = gpt_config_from_hf(fileio.load_json(config_path, "Hugging Face config.json"), config_path, dropout)
    weights_path = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(weights_path):
        hint = ""
        if os.path.isfile(os.path.join(folder, "pytorch_model.bin")):
            hint = (" (there is a pytorch_model.bin, a pickle file tinylm does not read; convert it with "
                    "transformers: AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder, "
                    "safe_serialization=True))")
        raise FileNotFoundError(f"no model.safetensors in {folder}{hint}")

    # 1. check names, shapes and dtypes against config.json from the header alone, before any work
    header, _ = safetensors_header(weights_path)
    check_sizes(config, {key: shape for key, (_, shape) in header.items()}, weights_path)
    expected = dict(_gpt2_shapes(config))  # our name -> the shape GPT-2 stores
    file_key, lm_head = {}, None  # our name -> the file's name ("h.0.ln_1.weight" or with "transformer.")
    for key in header:
        name = key if key.startswith("transformer.") or key == "lm_head.weight" else "transformer." + key
        if name == "lm_head.weight":
            lm_head = key
        elif not name.endswith((".attn.bias", ".attn.masked_bias")):  # those are stored causal masks
            file_key[name] = key
    missing = [name for name in expected if name not in file_key]
    unexpected = [file_key[name] for name in file_key if name not in expected]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        raise ValueError(f"{weights_path}: {'; '.join(parts)} (for the sizes in config.json)")
    for name, shape in [*expected.items(), *([("lm_head.weight", expected["transformer.wte.weight"])]
                                             if lm_head else [])]:
        key = lm_head if name == "lm_head.weight" else file_key[name]
        dtype, stored = header[key]
        if dtype not in ("F64", "F32", "F16", "BF16"):
            raise ValueError(f"{weights_path}: {key} has dtype {dtype}; expected floating-point weights")
        if stored != shape:
            raise ValueError(f"{weights_path}: {key} has shape {stored}; config.json's sizes give {shape}")

    # 2. build the model and fill it one tensor at a time (tinylm.io.loader), then check the head
    shapes = {name: shape[::-1] if _is_conv1d(name) else shape for name, shape in expected.items()}

    def tensors():
        ours = {key: name for name, key in file_key.items()}
        for key, value in iter_safetensors(weights_path, list(file_key.values())):
            name = ours[key]
            yield name, value.T if _is_conv1d(name) else value  # Conv1D (in, out) -> Linear (out, in)

    model = build_model(config, shapes, tensors(), weights_path, widen=True)
    if lm_head:
        (_, value), = iter_safetensors(weights_path, [lm_head])
        if not np.array_equal(value, model.transformer.wte.weight.data):
            raise ValueError(f"{weights_path}: lm_head.weight differs from wte.weight; tinylm's GPT ties "
                             f"the output layer to the token embedding, as GPT-2 does")
    return model


def load_hf_tokenizer(folder):
    """The GPT-2 tokenizer of a Hugging Face folder (vocab.json + merges.txt), with GPT-2's ids."""
    folder = os.fspath(folder)
    vocab_json, merges_txt = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    for path in (vocab_json, merges_txt):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no {os.path.basename(path)} in {folder} (a GPT-2 tokenizer needs "
                                    f"vocab.json and merges.txt)")
    return Tokenizer.from_gpt2_files(vocab_json, merges_txt)


# ----------------------------------------------------------------------------------------------
# GPT-2: export

# the files save_hf_gpt2 writes (the last three only with a tokenizer)
HF_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json")


def save_hf_gpt2(model, folder, tokenizer=None):
    """Write a tinylm GPT (and its tokenizer) as a Hugging Face GPT-2 folder that `transformers` loads
    as it is: GPT2LMHeadModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder).

    Writes config.json, model.safetensors (GPT-2's names and Conv1D (in, out) layout, float32) and,
    with a tokenizer, vocab.json + merges.txt + tokenizer_config.json. A model without biases
    (bias=False) is written with zero biases, which computes the same function. Note: Hugging Face's
    GPT-2 tokenizer always pre-splits text with GPT-2's regex; a tinylm tokenizer trained with another
    pattern ("gpt4") gives the same text back but may cut some strings into different (equally valid)
    tokens.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"save_hf_gpt2: model must be a tinylm GPT, got {type(model).__name__}")
    config = model.config
    _refuse_non_gpt2(config)
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"save_hf_gpt2: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{config.vocab_size} (vocab_size)")
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"save_hf_gpt2: {folder} exists and is not a folder")
    params = dict(model.named_parameters())
    shapes = dict(_gpt2_shapes(config))
    extra = sorted(set(params) - set(shapes))
    if extra:  # (e.g. a mixture-of-experts model) refused before anything is written
        raise ValueError(f"save_hf_gpt2: the model has parameters GPT-2 does not: {', '.join(extra)}")
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for name, shape in shapes.items():
        if name in params:
            value = params[name].data.astype(np.float32, copy=False)
            tensors[name] = np.ascontiguousarray(value.T) if _is_conv1d(name) else value  # (out, in) -> (in, out)
        else:  # bias=False: GPT-2 always has biases; zeros compute the same function
            tensors[name] = np.zeros(shape, dtype=np.float32)
    write_safetensors(os.path.join(folder, "model.safetensors"), tensors, metadata={"format": "pt"})
    fileio.save_json(os.path.join(folder, "config.json"), hf_config_from_gpt(config, tokenizer))
    if tokenizer is not None:
        tokenizer.save_gpt2_files(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))
        fileio.save_json(os.path.join(folder, "tokenizer_config.json"), hf_tokenizer_config(config, tokenizer))
    return folder


def _refuse_non_gpt2(config):
    """A ValueError naming every architecture option GPT2LMHeadModel cannot compute (tutorial 14)."""
    if not config.is_gpt2:
        gpt2 = GPTConfig()
        options = ("norm", "pos", "mlp", "mlp_hidden", "n_kv_head", "tie_head")
        other = [f"{n}={getattr(config, n)!r}" for n in options if getattr(config, n) != getattr(gpt2, n)]
        raise ValueError(f"save_hf_gpt2: the model has {', '.join(other)}; a Hugging Face GPT-2 folder cannot "
                         f"carry them (GPT-2 is LayerNorm, learned positions, GELU, one key/value head per "
                         f"query head and a tied head). Export a Llama-shaped model with --format llama2c or gguf")


def hf_tokenizer_config(config, tokenizer):
    """tokenizer_config.json: the longest input, and which token is <|endoftext|> (or that there is none:
    without this file transformers' GPT2Tokenizer would invent one, with an id past the model's vocabulary)."""
    end_of_text = "<|endoftext|>" if "<|endoftext|>" in tokenizer.special_tokens else None
    return {"tokenizer_class": "GPT2Tokenizer", "model_max_length": config.block_size,
            "bos_token": end_of_text, "eos_token": end_of_text, "unk_token": end_of_text}


def _gpt2_shapes(config):
    """Every tensor of GPT2LMHeadModel's model.safetensors, in its order, with GPT-2's (stored) shape."""
    C, V = config.n_embd, config.vocab_size
    yield "transformer.wte.weight", (V, C)
    yield "transformer.wpe.weight", (config.block_size, C)
    for i in range(config.n_layer):
        h = f"transformer.h.{i}."
        yield h + "ln_1.weight", (C,)
        yield h + "ln_1.bias", (C,)
        yield h + "attn.c_attn.weight", (C, 3 * C)  # Conv1D: (in, out)
        yield h + "attn.c_attn.bias", (3 * C,)
        yield h + "attn.c_proj.weight", (C, C)
        yield h + "attn.c_proj.bias", (C,)
        yield h + "ln_2.weight", (C,)
        yield h + "ln_2.bias", (C,)
        yield h + "mlp.c_fc.weight", (C, 4 * C)
        yield h + "mlp.c_fc.bias", (4 * C,)
        yield h + "mlp.c_proj.weight", (4 * C, C)
        yield h + "mlp.c_proj.bias", (C,)
    yield "transformer.ln_f.weight", (C,)
    yield "transformer.ln_f.bias", (C,)
