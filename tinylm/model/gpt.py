"""The GPT model: GPT-2's architecture (and, by its options, Llama's), built from tinylm.nn modules on
the tinylm.autograd engine.

    token ids idx (B, T)
      -> token embedding wte + position embedding wpe          (B, T, C)
      -> n_layer blocks, each:  x = x + attn(ln_1(x))            causal multi-head self-attention
                                x = x + mlp(ln_2(x))             Linear(C, 4C), GELU, Linear(4C, C)
                                                                 (or, with n_expert > 0, a mixture of
                                                                 such MLPs: tinylm.model.moe,
                                                                 tutorial 12)
      -> final LayerNorm ln_f                                    (B, T, C)
      -> lm_head, whose weight IS wte's weight (tied)           (B, T, vocab_size) logits

The options of GPTConfig change four pieces, each in one place below (tutorial 14):
    norm='rmsnorm'     every LayerNorm becomes an RMSNorm                       (Block, Transformer: _norm)
    pos='rope'         no wpe; queries and keys are rotated by their position   (CausalSelfAttention)
    mlp='swiglu'       c_proj(silu(c_fc x) * c_up x), hidden width mlp_hidden_size   (MLP)
    n_kv_head < n_head grouped-query attention: fewer key/value heads, a smaller KV cache
    tie_head=False     lm_head has its own (vocab_size, C) matrix
With every option at its default the model is GPT-2, weight for weight and bit for bit.

B is the batch size, T the number of tokens, C = n_embd the width, nh = n_head the number of heads,
nkv = n_kv_head the number of key/value heads (nh by default) and hs = C // nh the size of one head.
Parameter names are exactly GPT-2's (`transformer.h.0.attn.c_attn.weight`, ...), so a Hugging Face
GPT-2 checkpoint maps onto them one to one (tinylm.io.hf_gpt2).

Generation feeds one new token at a time. Without help that costs a full forward pass over the whole
context for every token; the KV cache (`KVCache`, at the end of this file) keeps the keys and values of
the tokens already seen, so each step only computes the new token's. See tutorials 05 and 07.

    >>> model = GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=2, n_head=2, n_embd=32))
    >>> logits, loss = model(np.array([[1, 2, 3]]), targets=np.array([[2, 3, 4]]))
    >>> logits.shape, bool(abs(loss.item() - np.log(256)) < 0.1)    # loss ~ ln(vocab_size) at start
    ((1, 3, 256), True)
"""
from __future__ import annotations

import math

import numpy as np

from tinylm import nn
from tinylm.autograd import (
    Tensor,
    cross_entropy,
    gelu,
    rope,
    scaled_dot_product_attention,
    self_attention,
    split,
    swiglu,
)
from tinylm.model.config import GPTConfig
from tinylm.model.moe import MoE

# ----------------------------------------------------------------------------------------------
# the pieces of a block


def _norm(config):
    """The norm every branch reads through: GPT-2's LayerNorm or Llama's RMSNorm (config.norm)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where a token looks only at itself and the tokens before it.

    One Linear makes a query, a key and a value for every token (c_attn, C -> 3C); each of the nh heads
    compares its queries with its keys (scaled dot products, softmax over the allowed positions) and
    takes that mixture of values; the heads are concatenated and projected back (c_proj, C -> C).

    With n_kv_head = nkv < nh (grouped-query attention) c_attn makes nh query heads but only nkv key and
    value heads (C -> C + 2 nkv hs); query head h reads key/value head h // (nh / nkv), as in Llama and
    llama2.c. With pos='rope' the queries and keys are rotated by their positions before the dot products.
    """

    def __init__(self, config, rng, dropout_rng):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.n_embd = config.n_embd
        self.rope_theta = config.rope_theta if config.pos == "rope" else None
        self.attn_dropout_p = config.dropout  # dropout on the attention weights, while training
        self.dropout_rng = dropout_rng
        kv_dim = self.n_kv_head * (config.n_embd // config.n_head)
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * kv_dim, bias=config.bias, rng=rng)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias, rng=rng)
        self.resid_dropout = nn.Dropout(config.dropout, rng=dropout_rng)

    def forward(self, x, pos, kv_cache=None, layer=0):
        """x (B, T, C) -> (B, T, C). pos (1, T) holds the positions of the T tokens (after the cached
        ones). GPT-2's learned position embeddings were already added to x, so attention does not use
        them; with pos='rope' the queries and keys are rotated by them here."""
        B, T, C = x.shape
        nh, nkv, hs = self.n_head, self.n_kv_head, C // self.n_head
        p = self.attn_dropout_p if self.training else 0.0
        if kv_cache is None and self.rope_theta is None and nkv == nh:  # training: the steps below, fused
            y = self_attention(self.c_attn(x), nh, dropout_p=p, rng=self.dropout_rng)  # (B, T, C)
            return self.resid_dropout(self.c_proj(y))  # (B, T, C)
        q, k, v = split(self.c_attn(x), [C, nkv * hs, nkv * hs], axis=-1)  # (B, T, C), 2 x (B, T, nkv*hs)
        q = q.reshape(B, T, nh, hs).permute(0, 2, 1, 3)  # (B, nh, T, hs)
        k = k.reshape(B, T, nkv, hs).permute(0, 2, 1, 3)  # (B, nkv, T, hs)
        v = v.reshape(B, T, nkv, hs).permute(0, 2, 1, 3)  # (B, nkv, T, hs)
        if self.rope_theta is not None:
            q = rope(q, pos, self.rope_theta)  # (B, nh, T, hs), each pair turned by its angle
            k = rope(k, pos, self.rope_theta)  # (B, nkv, T, hs): cached already rotated
        if kv_cache is not None:
            k, v = kv_cache.append(layer, k, v)  # (B, nkv, Tk, hs): the past and the T new positions
        Tk = k.shape[2]
        if nkv != nh:  # the nh // nkv query heads of a group share one key/value head (broadcast, no copy)
            q = q.reshape(B, nkv, nh // nkv, T, hs)  # (B, nkv, group, T, hs)
            k = k.reshape(B, nkv, 1, Tk, hs)  # (B, nkv, 1, Tk, hs)
            v = v.reshape(B, nkv, 1, Tk, hs)  # (B, nkv, 1, Tk, hs)
        y = scaled_dot_product_attention(q, k, v, causal=True, dropout_p=p, rng=self.dropout_rng)  # (B, nh, T, hs)
        y = y.reshape(B, nh, T, hs).permute(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)


class MLP(nn.Module):
    """The per-token feed-forward network, H = config.mlp_hidden_size wide.

    GPT-2 (mlp='gelu'):    c_proj(gelu(c_fc x))                 widen to H = 4C, GELU (tanh form), narrow
    Llama (mlp='swiglu'):  c_proj(silu(c_fc x) * c_up x)        c_fc is Llama's w1 (gate), c_up its w3
                                                                (up), c_proj its w2 (down); H ~ 8C/3
    """

    def __init__(self, config, rng, dropout_rng):
        super().__init__()
        C, H = config.n_embd, config.mlp_hidden_size
        self.gated = config.mlp == "swiglu"
        self.c_fc = nn.Linear(C, H, bias=config.bias, rng=rng)
        if self.gated:
            self.c_up = nn.Linear(C, H, bias=config.bias, rng=rng)
        self.c_proj = nn.Linear(H, C, bias=config.bias, rng=rng)
        self.dropout = nn.Dropout(config.dropout, rng=dropout_rng)

    def forward(self, x):
        if self.gated:
            h = swiglu(self.c_fc(x), self.c_up(x))  # (B, T, H)
        else:
            h = gelu(self.c_fc(x))  # (B, T, H)
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    """A pre-norm transformer block: the residual stream x is read through a norm (LayerNorm or RMSNorm)
    by each branch and each branch's output is added back, so the stream itself is never normalised away."""

    def __init__(self, config, rng, dropout_rng):
        super().__init__()
        self.ln_1 = _norm(config)
        self.attn = CausalSelfAttention(config, rng, dropout_rng)
        self.ln_2 = _norm(config)
        if config.n_expert:  # n_expert MLPs and a router instead of one MLP (tinylm.model.moe)
            self.mlp = MoE(config.n_embd, config.n_expert, config.expert_top_k,
                           lambda: MLP(config, rng, dropout_rng), rng=rng)
        else:
            self.mlp = MLP(config, rng, dropout_rng)

    def forward(self, x, pos, kv_cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), pos, kv_cache, layer)  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x


class Transformer(nn.Module):
    """The body of the GPT: embeddings, blocks and final norm (named `transformer` like GPT-2's).
    With pos='rope' there is no position table: positions enter inside attention."""

    def __init__(self, config, rng, dropout_rng):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd, rng=rng)
        self.wpe = nn.Embedding(config.block_size, config.n_embd, rng=rng) if config.pos == "learned" else None
        self.drop = nn.Dropout(config.dropout, rng=dropout_rng)
        self.h = nn.ModuleList([Block(config, rng, dropout_rng) for _ in range(config.n_layer)])
        self.ln_f = _norm(config)


# ----------------------------------------------------------------------------------------------
# the model


class GPT(nn.Module):
    """A GPT-2 style language model: `model(idx, targets)` -> (logits, loss).

    `seed` fixes the initial weights and the dropout masks: GPT(config, seed=0) is the same model on
    every machine. The dropout generator is `model.dropout_rng` (a np.random.Generator shared by every
    dropout in the model); a training loop that resumes exactly saves and restores its
    `bit_generator.state`.
    """

    def __init__(self, config, seed=0):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        rng = np.random.default_rng(seed)  # initial weights
        self.dropout_rng = np.random.default_rng([seed, 1])  # dropout masks, independent of the weights
        self.transformer = Transformer(config, rng, self.dropout_rng)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False, rng=rng)
        if config.tie_head:
            self.lm_head.weight = self.transformer.wte.weight  # tied: one (vocab_size, C) matrix, two uses
        self._init_weights(rng)

    def _init_weights(self, rng):
        """GPT-2's initialisation: every Linear and Embedding matrix N(0, 0.02) with zero biases, and the
        projections that write into the residual stream (c_proj) scaled down by 1/sqrt(2 n_layer), since
        2 n_layer of them are added up along the stream. Norms keep the ones/zeros they start with.
        Chosen by module type, in the order the modules were built; a shared matrix (the tied head) is
        drawn once."""
        if nn.init_skipped():  # inside nn.skip_init(): the weights are about to be loaded
            return
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        drawn = set()
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and id(module.weight) not in drawn:
                drawn.add(id(module.weight))
                module.reset_parameters(rng, residual_std if name.endswith("c_proj") else 0.02)

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, idx, targets=None, kv_cache=None):
        """idx (B, T) integer token ids -> logits (B, T, vocab_size) and the mean cross-entropy loss
        against `targets` (B, T) (ids; -1 = ignore) or None. With a `kv_cache`, idx holds only the new
        tokens: their positions continue after the kv_cache.length tokens already cached. A mixture-of-
        experts model in training mode adds moe_aux_coef times its load-balancing loss (in eval mode,
        as tinylm.train.evaluate runs it, the loss is the cross-entropy alone)."""
        cfg = self.config
        idx = self._check_idx(idx, "idx")
        B, T = idx.shape
        start = 0
        if kv_cache is not None:
            if kv_cache.batch_size != B:
                raise ValueError(f"GPT: idx has batch size {B} but the kv_cache was made for {kv_cache.batch_size}")
            start = kv_cache.length
            if start + T > cfg.block_size:
                raise ValueError(f"GPT: the kv_cache holds {start} positions and idx adds {T}, more than "
                                 f"block_size {cfg.block_size}; start a new cache with the last tokens")
        elif T > cfg.block_size:
            raise ValueError(f"GPT: idx has {T} tokens, more than block_size {cfg.block_size}; "
                             f"crop the context to the last {cfg.block_size} tokens")
        pos = np.arange(start, start + T)[None, :]  # (1, T)

        t = self.transformer
        x = t.wte(idx)  # (B, T, C)
        if t.wpe is not None:
            x = x + t.wpe(pos)  # (B, T, C) + (1, T, C) -> (B, T, C)
        x = t.drop(x)  # (B, T, C)
        for layer, block in enumerate(t.h):
            x = block(x, pos, kv_cache, layer)  # (B, T, C)
        x = t.ln_f(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        if kv_cache is not None:
            kv_cache.length += T

        loss = None
        if targets is not None:
            targets = self._check_idx(targets, "targets", allow_ignore=True)
            if targets.shape != (B, T):
                raise ValueError(f"GPT: targets has shape {targets.shape}; expected {(B, T)} like idx")
            loss = cross_entropy(logits.reshape(B * T, cfg.vocab_size), targets.reshape(B * T), ignore_index=-1)
            if cfg.n_expert and self.training and cfg.moe_aux_coef:
                aux = [block.mlp.last.aux_loss for block in t.h]  # one scalar per MoE block
                loss = loss + sum(aux[1:], aux[0]) * (cfg.moe_aux_coef / len(aux))  # + coef * mean
        return logits, loss

    def _check_idx(self, idx, what, allow_ignore=False):
        """Token ids as an int64 (B, T) array, or a clear error saying what is wrong with them."""
        if isinstance(idx, Tensor):
            idx = idx.data
        idx = np.asarray(idx)
        if idx.dtype == bool or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"GPT: {what} has dtype {idx.dtype}; expected integer token ids")
        if idx.ndim != 2 or idx.shape[1] == 0 or idx.shape[0] == 0:
            raise ValueError(f"GPT: {what} has shape {idx.shape}; expected (batch, tokens) with both > 0")
        low = -1 if allow_ignore else 0
        if idx.min() < low or idx.max() >= self.config.vocab_size:
            bad = idx[(idx < low) | (idx >= self.config.vocab_size)].flat[0]
            raise ValueError(f"GPT: {what} contains id {bad}, outside 0 .. {self.config.vocab_size - 1} (vocab_size)"
                             + (" (-1 marks an ignored target)" if allow_ignore else ""))
        return idx.astype(np.int64, copy=False)

    # -- bookkeeping ----------------------------------------------------------------------------

    def num_params(self, non_embedding=False):
        """Number of parameters, the tied embedding counted once. non_embedding=True leaves out the
        position embedding, the convention GPT papers use for "model size"."""
        n = sum(p.data.size for p in self.parameters())
        if non_embedding and self.transformer.wpe is not None:
            n -= self.transformer.wpe.weight.data.size
        return n

    def optim_groups(self, weight_decay):
        """Parameter groups for AdamW: weight decay on the 2-D weights of Linear layers only; none on
        biases, LayerNorm weights and embeddings (shrinking those towards 0 does not regularise).

        >>> [len(g["params"]) for g in GPT(GPTConfig(n_layer=1)).optim_groups(0.1)]   # 4 matrices
        [4, 12]
        """
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            is_embedding = name.startswith(("transformer.wte.", "transformer.wpe."))
            (decay if p.data.ndim == 2 and not is_embedding else no_decay).append(p)
        return [{"params": decay, "weight_decay": float(weight_decay)},
                {"params": no_decay, "weight_decay": 0.0}]

    def new_kv_cache(self, batch_size=1):
        """An empty KVCache for `batch_size` sequences, sized for this model's block_size."""
        c = self.config
        return KVCache(c.n_layer, batch_size, c.kv_heads, c.block_size, c.n_embd // c.n_head)


# ----------------------------------------------------------------------------------------------
# the KV cache


class KVCache:
    """The keys and values of every layer for the tokens already seen, so that generation feeds only
    the new token at each step instead of the whole context again.

    Why that is exact: in a causal model the key and value of token j depend only on tokens 0 .. j, so
    they never change once computed. A new token needs them all (its query is compared with every key)
    but only its own query, key and value are new.

    Layout: per layer one preallocated float32 array for keys and one for values, each
    (B, nkv, block_size, hs), where nkv = n_kv_head (= n_head unless grouped-query attention shares
    key/value heads: then the cache is n_head / n_kv_head times smaller); `length` positions are filled.
    With pos='rope' the keys are stored already rotated by their positions. A forward pass with T new
    tokens writes their keys and values at positions length .. length+T-1 and attends over
    0 .. length+T-1; the model then advances `length` by T. Learned position embeddings stop at
    block_size - 1 (and a rotary model keeps the same limit), so a full cache cannot take another
    token: the caller starts a new cache from the most recent tokens (tinylm.generate
    re-fills it with the last block_size // 2 tokens; see its docstring).

    The cache holds plain arrays, not autograd history: it is for inference, under no_grad (a cached
    forward pass that records gradients raises an error rather than silently cutting them).

    >>> from tinylm.autograd import no_grad
    >>> model = GPT(GPTConfig(block_size=8, n_layer=1, n_head=2, n_embd=16))
    >>> cache = model.new_kv_cache(batch_size=1)
    >>> with no_grad():
    ...     _ = model(np.array([[5, 6, 7]]), kv_cache=cache)    # the prompt: positions 0, 1, 2
    ...     _ = model(np.array([[8]]), kv_cache=cache)          # one new token: position 3
    >>> cache.length
    4
    """

    def __init__(self, n_layer, batch_size, n_kv_head, block_size, head_size):
        if batch_size < 1:
            raise ValueError(f"KVCache: batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.block_size = block_size
        shape = (n_layer, batch_size, n_kv_head, block_size, head_size)  # (L, B, nkv, block_size, hs)
        self.k = np.zeros(shape, np.float32)
        self.v = np.zeros(shape, np.float32)
        self.length = 0  # positions filled so far

    def append(self, layer, k, v):
        """Store the new keys/values k, v (B, nkv, T, hs) of `layer` after the `length` cached ones and
        return every key and value so far, each (B, nkv, length + T, hs)."""
        if k.requires_grad or v.requires_grad:
            raise RuntimeError("KVCache: the cache stores plain arrays, so no gradient would flow through the "
                               "cached keys and values; run cached forward passes under tinylm.autograd.no_grad()")
        T = k.shape[2]
        end = self.length + T
        self.k[layer, :, :, self.length:end] = k.data  # (B, nkv, T, hs)
        self.v[layer, :, :, self.length:end] = v.data  # (B, nkv, T, hs)
        return Tensor(self.k[layer, :, :, :end]), Tensor(self.v[layer, :, :, :end])  # (B, nkv, end, hs)

    def reset(self):
        """Forget every cached position (the arrays are reused)."""
        self.length = 0

    @property
    def nbytes(self):
        """Memory held by the cache: 2 (k, v) x n_layer x B x nkv x block_size x hs x 4 bytes."""
        return self.k.nbytes + self.v.nbytes
