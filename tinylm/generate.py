"""Sampling text from a GPT: greedy, temperature, top-k, top-p, stop tokens, and the KV cache.

A language model gives, for every position, a score (logit) for each token of the vocabulary.
Generation repeats one step: turn the last position's logits into a probability distribution, pick a
token from it, append it, run the model again. The choices of this file are all in the first step:

- temperature 0: always the most likely token (greedy; deterministic, often repetitive);
- temperature t > 0: softmax(logits / t); t < 1 sharpens the distribution, t > 1 flattens it;
- top_k = k: keep only the k most likely tokens;
- top_p = p ("nucleus"): keep the smallest set of most likely tokens whose probabilities add up to p.

    >>> next_token_probs(np.array([[2.0, 1.0, 0.0, -1.0]]), temperature=1.0, top_k=2).round(3)
    array([[0.731, 0.269, 0.   , 0.   ]])

`generate` runs the loop. With `use_cache=True` (the default) it keeps the keys and values of past
tokens in a KV cache (tinylm.model.KVCache) and feeds the model only the newest token at each step.
"""
from __future__ import annotations

import numbers

import numpy as np

from tinylm.autograd import no_grad

# ----------------------------------------------------------------------------------------------
# one step: logits -> a distribution -> a token


def _check_logits(logits):
    logits = np.asarray(logits.data if hasattr(logits, "data") and not isinstance(logits, np.ndarray) else logits)
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits has shape {logits.shape}; expected (batch, vocab_size)")
    if not np.issubdtype(logits.dtype, np.floating):
        raise TypeError(f"logits has dtype {logits.dtype}; expected floating point scores")
    if np.isnan(logits).any():
        raise ValueError("logits contain NaN")
    if (logits == np.inf).any():
        raise ValueError("logits contain +inf")
    if np.isneginf(logits).all(axis=1).any():
        raise ValueError("a row of logits is entirely -inf: no token can be sampled")
    return logits.astype(np.float64)


def _check_sampling(temperature, top_k, top_p):
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """The distribution a token is drawn from: logits (B, V) -> probabilities (B, V), each row adding
    up to 1, zero outside the kept tokens.

    The steps, in this order (the order Hugging Face uses too):
      1. divide the logits by the temperature (0 = greedy: all the mass on the argmax, first on ties);
      2. top_k: keep exactly the k largest logits (ties broken towards the lower token id);
      3. softmax over what is kept;
      4. top_p: sort by probability, keep the smallest prefix whose sum reaches p, renormalise.

    >>> next_token_probs(np.log([[0.5, 0.3, 0.15, 0.05]]), top_p=0.8).round(3)   # 0.5 + 0.3 reaches 0.8
    array([[0.625, 0.375, 0.   , 0.   ]])
    """
    _check_sampling(temperature, top_k, top_p)
    logits = _check_logits(logits)  # (B, V) float64
    B, V = logits.shape
    rows = np.arange(B)[:, None]  # (B, 1)
    if temperature == 0:
        probs = np.zeros_like(logits)  # (B, V)
        probs[np.arange(B), logits.argmax(axis=1)] = 1.0
        return probs
    logits = logits / temperature  # (B, V)
    if top_k is not None and top_k < V:
        order = np.argsort(-logits, axis=1, kind="stable")  # (B, V) most likely first
        drop = order[:, top_k:]  # (B, V - k) ids outside the top k
        logits = logits.copy()
        logits[rows, drop] = -np.inf
    logits = logits - logits.max(axis=1, keepdims=True)  # (B, V) largest is 0: exp cannot overflow
    probs = np.exp(logits)  # (B, V)
    probs /= probs.sum(axis=1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=1, kind="stable")  # (B, V)
        sorted_probs = probs[rows, order]  # (B, V) descending
        mass_before = np.cumsum(sorted_probs, axis=1) - sorted_probs  # (B, V) mass of the tokens ahead
        # keep a token while the tokens ahead of it have not yet reached p (the 1e-9 absorbs rounding,
        # so that 0.5 + 0.3 "reaches" 0.8 even when the float sum is 0.7999999999999999)
        keep_sorted = mass_before < top_p - 1e-9  # (B, V), always keeps the first
        keep = np.zeros_like(keep_sorted)
        keep[rows, order] = keep_sorted
        probs = np.where(keep, probs, 0.0)  # (B, V)
        probs /= probs.sum(axis=1, keepdims=True)
    return probs


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, rng=None):
    """Pick one token id per row of logits (B, V) -> ids (B,) int64.

    temperature 0 is greedy (argmax); otherwise a draw from `next_token_probs(...)` using `rng`
    (a np.random.Generator; the same generator state gives the same ids).

    >>> sample_next(np.array([[0.1, 3.0, 0.2], [5.0, 0.0, 0.0]]), temperature=0)
    array([1, 0])
    """
    probs = next_token_probs(logits, temperature, top_k, top_p)  # (B, V)
    if temperature == 0:
        return probs.argmax(axis=1).astype(np.int64)
    rng = np.random.default_rng() if rng is None else rng
    cdf = np.cumsum(probs, axis=1)  # (B, V)
    u = rng.random(probs.shape[0]) * cdf[:, -1]  # (B,) uniform in [0, total)
    ids = (cdf <= u[:, None]).sum(axis=1)  # (B,) first index whose cdf exceeds u
    # a zero-probability token can never be returned: step back to the last kept one if rounding
    # pushed u past it
    ids = np.minimum(ids, probs.shape[1] - 1)
    for b in np.nonzero(probs[np.arange(len(ids)), ids] == 0)[0]:
        ids[b] = np.nonzero(probs[b])[0][-1]
    return ids.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# the C runtime's generator, so a seeded run picks the same tokens in Python and in C


class TinyRNG:
    """xorshift64* (Vigna 2016) seeded through splitmix64: the PRNG of tinylm's C runtime
    (tinylm_sampler in runtime/tinylm_runtime.h), small enough to state in four lines:

        state = splitmix64(seed), or 1 if that is 0
        x ^= x >> 12;  x ^= x << 25;  x ^= x >> 27;  state = x          (64-bit words)
        out = x * 0x2545F4914F6CDD1D  (mod 2**64)
        uniform double in [0, 1) = (out >> 11) * 2**-53

    It offers the one method sample_next uses, `random(n)`, so `generate(..., rng="tinylm")` draws
    from it instead of NumPy's generator.

    >>> TinyRNG(0).random(2).round(6)
    array([0.483348, 0.869139])
    """

    MASK = (1 << 64) - 1

    def __init__(self, seed=0):
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= self.MASK:
            raise ValueError(f"TinyRNG: seed must be an integer in [0, 2**64), got {seed!r}")
        z = (int(seed) + 0x9E3779B97F4A7C15) & self.MASK  # splitmix64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        self.state = (z ^ (z >> 31)) or 1

    def next_u64(self):
        x = self.state
        x ^= x >> 12
        x ^= (x << 25) & self.MASK
        x ^= x >> 27
        self.state = x
        return (x * 0x2545F4914F6CDD1D) & self.MASK

    def random(self, size=None):
        """One uniform float in [0, 1), or an array of `size` of them."""
        if size is None:
            return (self.next_u64() >> 11) * 2.0**-53
        return np.array([(self.next_u64() >> 11) * 2.0**-53 for _ in range(int(np.prod(size)))]).reshape(size)


# ----------------------------------------------------------------------------------------------
# the loop


def _check_prompt(idx, vocab_size):
    idx = np.asarray(idx)
    if idx.dtype == bool or not np.issubdtype(idx.dtype, np.integer):
        if idx.size == 0:
            idx = idx.astype(np.int64)
        else:
            raise TypeError(f"generate: idx has dtype {idx.dtype}; expected integer token ids")
    if idx.ndim not in (1, 2):
        raise ValueError(f"generate: idx has shape {idx.shape}; expected (tokens,) or (batch, tokens)")
    if idx.shape[-1] == 0:
        raise ValueError("generate: the prompt is empty; give at least one token")
    if idx.min() < 0 or idx.max() >= vocab_size:
        raise ValueError(f"generate: idx contains ids outside 0 .. {vocab_size - 1} (vocab_size)")
    return idx.astype(np.int64)


def _check_stop_tokens(stop_tokens, vocab_size):
    """None, one id or a list of ids -> a set of ids, each checked to be a token id of the model."""
    if stop_tokens is None:
        return set()
    items = list(stop_tokens) if isinstance(stop_tokens, (list, tuple, set, frozenset, np.ndarray)) else [stop_tokens]
    for t in items:
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral) or not 0 <= t < vocab_size:
            raise ValueError(f"stop_tokens must be token ids in 0 .. {vocab_size - 1}, got {t!r}")
    return {int(t) for t in items}


def refill_size(block_size):
    """How many recent tokens a full KV cache is re-filled with: block_size // 2 (at least 1)."""
    return max(1, block_size // 2)


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_tokens=None,
             seed=None, use_cache=True, rng="numpy"):
    """Continue the prompts idx (B, T) by max_new_tokens tokens -> (B, T + new) (or (T + new,) for a
    1-D prompt). Rows of a batch have the same length T.

    - `seed`: the same seed gives the same tokens (None = fresh randomness each call).
    - `rng`: "numpy" (NumPy's default generator) or "tinylm" (TinyRNG, the C runtime's generator: the
      same seed then gives the same tokens as `tinylm generate --engine c`).
    - `stop_tokens`: ids that end a row. The stop token is kept in the output; generation ends when
      every row has stopped, so `new` may be smaller than max_new_tokens. A row that stopped early is
      padded with its stop token until the others stop.
    - Context longer than block_size: the model only ever sees the last block_size tokens (positions
      0 .. block_size-1). Without the cache every step runs the model on the last block_size tokens.
      With the cache, a full cache is started again from the last block_size // 2 tokens (one forward
      pass over them), then grows one token a step until full again. So once the text is longer than
      block_size, a cached step sees between block_size // 2 and block_size tokens of context instead of
      exactly block_size: greedy text with and without the cache is identical up to block_size tokens
      and may differ after. (Rolling the cache instead is not possible: learned absolute position
      embeddings are baked into every cached key and value.)
    - The model runs in eval mode (no dropout) under no_grad; its training flag is restored after.
    """
    cfg = model.config
    _check_sampling(temperature, top_k, top_p)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    stop = _check_stop_tokens(stop_tokens, cfg.vocab_size)
    idx = _check_prompt(idx, cfg.vocab_size)
    one_row = idx.ndim == 1
    out = idx[None, :] if one_row else idx  # (B, T)
    B = out.shape[0]
    if rng not in ("numpy", "tinylm"):
        raise ValueError(f"generate: rng must be 'numpy' or 'tinylm', got {rng!r}")
    if rng == "tinylm":
        rng = TinyRNG(int.from_bytes(np.random.SeedSequence().entropy.to_bytes(16, "little")[:8], "little")
                      if seed is None else seed)
    else:
        rng = np.random.default_rng(seed)

    was_training = model.training
    model.eval()
    cache = model.new_kv_cache(B) if use_cache else None
    stopped = np.zeros(B, dtype=bool)  # (B,)
    try:
        with no_grad():
            for step in range(max_new_tokens):
                if not use_cache:
                    logits, _ = model(out[:, -cfg.block_size:])  # (B, T', V) the whole context, again
                elif step == 0 or cache.length == cfg.block_size:
                    cache.reset()  # start (again) from the most recent tokens
                    window = cfg.block_size if step == 0 else refill_size(cfg.block_size)
                    logits, _ = model(out[:, -window:], kv_cache=cache)  # (B, window, V)
                else:
                    logits, _ = model(out[:, -1:], kv_cache=cache)  # (B, 1, V) only the newest token
                ids = sample_next(logits.data[:, -1, :], temperature, top_k, top_p, rng)  # (B,)
                ids = np.where(stopped, out[:, -1], ids)  # rows already stopped repeat their stop token
                out = np.concatenate([out, ids[:, None]], axis=1)  # (B, T + step + 1)
                stopped |= np.isin(ids, list(stop))
                if stop and stopped.all():
                    break
    finally:
        model.train(was_training)
    return out[0] if one_row else out


def generate_text(model, tokenizer, prompt, **kwargs):
    """Encode `prompt`, generate (same keyword arguments as `generate`) and return the prompt followed
    by the generated text, cut before the first stop token.

    >>> generate_text(model, tokenizer, "def ", max_new_tokens=20, temperature=0)   # doctest: +SKIP
    'def __init__(self):\\n   ...'
    """
    if not isinstance(prompt, str):
        raise TypeError(f"generate_text: prompt must be a str, got {type(prompt).__name__}")
    if not prompt:
        raise ValueError("generate_text: the prompt is empty; give at least one character")
    ids = tokenizer.encode(prompt)
    new = generate(model, np.array(ids, dtype=np.int64), **kwargs)[len(ids):]  # (new,)
    stop = _check_stop_tokens(kwargs.get("stop_tokens"), model.config.vocab_size)
    hits = [i for i, t in enumerate(new.tolist()) if t in stop]
    if hits:
        new = new[:hits[0]]
    return prompt + tokenizer.decode(new.tolist())
