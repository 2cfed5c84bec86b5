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
}

# fields a file may leave out (written before they existed); absent means the default
OPTIONAL_IN_FILES = ("n_expert", "expert_top_k", "moe_aux_coef")


def _coerce(name, value):
    """value as the field's Python type, or a ValueError naming the field and what it may be."""
    kind, ok, allowed = FIELDS[name]
    if kind == "bool":
        good = isinstance(value, (bool, np.bool_))
        value = bool(value) if good else value
    elif kind == "int":
        good = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        value = int(value) if good else value
    else:  # float: ints are fine, bools and strings are not
        good = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        value = float(value) if good else value
    if not good:
        what = {"int": "an integer", "float": "a number", "bool": "true or false"}[kind]
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

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name)))
        # the rules that tie two fields together
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"GPTConfig: n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.n_expert and self.expert_top_k > self.n_expert:
            raise ValueError(f"GPTConfig: expert_top_k ({self.expert_top_k}) must be at most n_expert "
                             f"({self.n_expert})")

    def to_dict(self):
        """A plain dict, ready for JSON: {'vocab_size': 256, 'block_size': 64, ...}. Optional fields are
        left out while all of them have their defaults (a dense model), so a dense model's config.json
        is the same as before they existed."""
        d = asdict(self)
        defaults = {f.name: f.default for f in fields(self)}
        if all(d[n] == defaults[n] for n in OPTIONAL_IN_FILES):
            for n in OPTIONAL_IN_FILES:
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
