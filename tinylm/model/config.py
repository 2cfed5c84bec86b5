"""GPTConfig: the sizes and options that define a model, checked against one table.

Every field is one row of `FIELDS`: its kind, the values it may take, and what a wrong value means.
Adding an architecture option is adding a row (and a default): the checks, the error messages and the
JSON round trip follow from the table.

    >>> GPTConfig(n_embd=100, n_head=3)
    Traceback (most recent call last):
    ValueError: GPTConfig: n_embd (100) must be a multiple of n_head (3)
    >>> GPTConfig(dropout=1.5)
    Traceback (most recent call last):
    ValueError: GPTConfig: dropout must be in [0, 1), got 1.5
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

# name -> (kind, test of the value, the values it may take): kind is "int", "float" or "bool"
FIELDS = {
    "vocab_size": ("int", lambda v: v >= 1, "positive"),
    "block_size": ("int", lambda v: v >= 1, "positive"),
    "n_layer": ("int", lambda v: v >= 1, "positive"),
    "n_head": ("int", lambda v: v >= 1, "positive"),
    "n_embd": ("int", lambda v: v >= 1, "positive"),
    "dropout": ("float", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "bias": ("bool", lambda v: True, "true or false"),
    "n_expert": ("int", lambda v: v >= 0, "an integer >= 0 (0 = the dense MLP)"),
    "expert_top_k": ("int", lambda v: v >= 1, "an integer >= 1"),
    "moe_aux_coef": ("float", lambda v: math.isfinite(v) and v >= 0, "a number >= 0"),
    # the architecture options that turn GPT-2 into Llama (tutorial 14); each default is GPT-2's
    "norm": ("str", lambda v: v in ("layernorm", "rmsnorm"), "'layernorm' or 'rmsnorm'"),
    "pos": ("str", lambda v: v in ("learned", "rope"), "'learned' or 'rope'"),
    "rope_theta": ("float", lambda v: math.isfinite(v) and v > 1, "a number > 1"),
    "mlp": ("str", lambda v: v in ("gelu", "swiglu"), "'gelu' or 'swiglu'"),
    "mlp_hidden": ("int", lambda v: v >= 0, "an integer >= 0 (0 = computed from n_embd)"),
    "multiple_of": ("int", lambda v: v >= 1, "a positive integer"),
    "n_kv_head": ("int", lambda v: v >= 0, "an integer >= 0 (0 = n_head)"),
    "tie_head": ("bool", lambda v: True, "true or false"),
}

# fields a file may leave out (written before they existed); absent means the default. A config.json
# leaves out a whole group while every field of it has its default, so a dense GPT-2's file is the same
# as before any of them existed.
OPTIONAL_GROUPS = (("n_expert", "expert_top_k", "moe_aux_coef"),
                   ("norm", "pos", "rope_theta", "mlp", "mlp_hidden", "multiple_of", "n_kv_head", "tie_head"))
OPTIONAL_IN_FILES = tuple(name for group in OPTIONAL_GROUPS for name in group)


def _coerce(name, value):
    """value as the field's Python type, or a ValueError naming the field and what it may be."""
    kind, ok, allowed = FIELDS[name]
    if kind == "str":
        good = isinstance(value, str)
    elif kind == "bool":
        good = isinstance(value, (bool, np.bool_))
        value = bool(value) if good else value
    elif kind == "int":
        good = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        value = int(value) if good else value
    else:  # float: ints are fine, bools and strings are not
        good = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        value = float(value) if good else value
    if not good:
        what = {"int": "an integer", "float": "a number", "bool": "true or false", "str": allowed}[kind]
        raise ValueError(f"GPTConfig: {name} must be {what}, got {value!r}")
    if not ok(value):
        raise ValueError(f"GPTConfig: {name} must be {allowed}, got {value!r}")
    return value


@dataclass
class GPTConfig:
    """The sizes that define a GPT. The defaults are a small model that trains on a laptop CPU.

    vocab_size  number of token ids (256 = bytes with no merges; GPT-2 uses 50257)
    block_size  the longest context the model sees; position embeddings exist for 0 .. block_size-1
    n_layer     number of transformer blocks
    n_head      attention heads per block; n_embd must be a multiple of n_head
    n_embd      width C of every token vector
    dropout     probability of zeroing an activation while training (0 <= dropout < 1)
    bias        whether Linear and LayerNorm layers have a bias (GPT-2: True)
    n_expert    0: every block has one MLP (GPT-2). > 0: a mixture of n_expert MLPs (tinylm.model.moe)
    expert_top_k  experts each token is sent to (1 .. n_expert; used when n_expert > 0)
    moe_aux_coef  weight of the load-balancing loss added to the training loss (used when n_expert > 0)

    The options below make a Llama out of a GPT-2 (tutorial 14; `GPTConfig.llama(...)` sets them all):
    norm        'layernorm' (GPT-2: mean and variance, weight and bias) or 'rmsnorm' (Llama: root mean
                square, weight only)
    pos         'learned' (GPT-2: a wpe table added to the token vectors) or 'rope' (Llama: queries and
                keys rotated by their position inside attention; no wpe)
    rope_theta  the base of RoPE's frequencies (Llama 2: 10000)
    mlp         'gelu' (GPT-2: c_fc, GELU, c_proj) or 'swiglu' (Llama: c_proj(silu(c_gate x) * c_fc x))
    mlp_hidden  the MLP's hidden width; 0 = the rule of `mlp_hidden_size`
    multiple_of the SwiGLU hidden width is rounded up to a multiple of this (Llama: 256; llama2.c: 32)
    n_kv_head   key/value heads; 0 = n_head (multi-head). n_head / n_kv_head query heads share each
                one (grouped-query attention; 1 = multi-query). The KV cache shrinks by that factor.
    tie_head    True: lm_head's weight IS wte's (GPT-2). False: a separate output matrix (Llama 2)
    """

    vocab_size: int = 256
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    n_expert: int = 0
    expert_top_k: int = 2
    moe_aux_coef: float = 0.01
    norm: str = "layernorm"
    pos: str = "learned"
    rope_theta: float = 10000.0
    mlp: str = "gelu"
    mlp_hidden: int = 0
    multiple_of: int = 32
    n_kv_head: int = 0
    tie_head: bool = True

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name)))
        # the rules that tie two fields together
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"GPTConfig: n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.n_expert and self.expert_top_k > self.n_expert:
            raise ValueError(f"GPTConfig: expert_top_k ({self.expert_top_k}) must be at most n_expert "
                             f"({self.n_expert})")
        if self.n_head % self.kv_heads != 0:
            raise ValueError(f"GPTConfig: n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"GPTConfig: pos='rope' rotates pairs, so the head size n_embd / n_head "
                             f"({self.n_embd // self.n_head}) must be even")

    @classmethod
    def llama(cls, **sizes):
        """A Llama-shaped config: RMSNorm, RoPE, SwiGLU, no biases, a separate output head; grouped-query
        attention if n_kv_head is given. The sizes are GPTConfig's (`GPTConfig.llama(n_kv_head=2)`).

        >>> c = GPTConfig.llama(n_embd=128, n_head=4)
        >>> (c.norm, c.pos, c.mlp, c.bias, c.tie_head, c.mlp_hidden_size)
        ('rmsnorm', 'rope', 'swiglu', False, False, 352)
        """
        return cls(**{**LLAMA_OPTIONS, **sizes})

    @property
    def kv_heads(self):
        """The number of key/value heads: n_kv_head, or n_head when n_kv_head is 0."""
        return self.n_kv_head or self.n_head

    @property
    def mlp_hidden_size(self):
        """The MLP's hidden width. GPT-2: 4 n_embd. Llama's SwiGLU has three matrices instead of two, so it
        takes two thirds of 4 n_embd (the same parameters), rounded up to a multiple of multiple_of:
        n_embd 128 -> int(2 * 512 / 3) = 341 -> 352 (multiple_of 32). mlp_hidden > 0 overrides both."""
        if self.mlp_hidden:
            return self.mlp_hidden
        if self.mlp == "gelu":
            return 4 * self.n_embd
        hidden = int(2 * (4 * self.n_embd) / 3)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    @property
    def is_gpt2(self):
        """True when the block computes GPT-2's function: LayerNorm, learned positions, a GELU MLP 4C wide,
        one key/value head per query head, a tied head (biases and the MoE fields aside)."""
        return (self.norm == "layernorm" and self.pos == "learned" and self.mlp == "gelu" and self.tie_head
                and self.mlp_hidden_size == 4 * self.n_embd and self.kv_heads == self.n_head)

    def to_dict(self):
        """A plain dict, ready for JSON: {'vocab_size': 256, 'block_size': 64, ...}. A group of optional
        fields (OPTIONAL_GROUPS) is left out while all of it has its defaults, so a dense GPT-2's
        config.json is the same as before those fields existed."""
        d = asdict(self)
        defaults = {f.name: f.default for f in fields(self)}
        for group in OPTIONAL_GROUPS:
            if all(d[n] == defaults[n] for n in group):
                for n in group:
                    del d[n]
        return d

    @classmethod
    def from_dict(cls, d):
        """The inverse of to_dict. Every field must be present and no other key: a config read from a
        file that does not say exactly what it means is an error, not a guess. The exception: the
        OPTIONAL_IN_FILES fields may be absent (files written before they existed), meaning the default."""
        if not isinstance(d, dict):
            raise ValueError(f"GPTConfig.from_dict: expected a dict, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(map(str, d)) - set(names))
        missing = [n for n in names if n not in d and n not in OPTIONAL_IN_FILES]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown key(s) {', '.join(unknown)}")
            if missing:
                parts.append(f"missing key(s) {', '.join(missing)}")
            raise ValueError(f"GPTConfig.from_dict: {'; '.join(parts)} (expected exactly: {', '.join(names)})")
        return cls(**{n: d[n] for n in names if n in d})


# the options GPTConfig.llama sets (and `tinylm train --arch llama`)
LLAMA_OPTIONS = dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, tie_head=False)
