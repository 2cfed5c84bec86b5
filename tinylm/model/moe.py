"""A mixture of experts: n_expert MLPs per block, and a router that sends each token to k of them.

(This is the "MoE" of Switch Transformer and Mixtral. The other "MoE", mixed-precision optimization for
embedded targets, is tinylm.quant and tutorial 10.)

A dense GPT block runs one MLP on every token. An MoE block holds n_expert MLPs of the same shape and a
router, a Linear(C, n_expert) without bias, that scores the experts for each token:

    logits = router(x)                     (N, n_expert)  N = B*T tokens, one row each
    chosen = top k of each row             (N, k)         expert ids, best first
    gates  = softmax(logits[chosen])       (N, k)         weights that sum to 1 per token
    y[t]   = sum_j gates[t, j] * expert_{chosen[t, j]}(x[t])

so the parameters grow n_expert times while each token still pays for only k MLPs.

Gates: the softmax over the k chosen logits, as Mixtral computes it. That is exactly the same number as
a softmax over all n_expert logits renormalised over the chosen k (the normalising sums cancel), so the
two recipes are one choice; we take the first because it never computes probabilities it throws away.
The real alternative is Switch Transformer's: no renormalisation, gate = the full softmax probability.
With k = 1 our gate is always exactly 1 (an MoE with one expert IS the dense MLP, a test checks it), and
then the router learns only from the load-balancing loss: use k >= 2, the default, for a router that
also learns from the language-model loss.

Load balancing: nothing in the language-model loss stops the router from sending every token to the
one expert that happened to start best; that expert then trains fastest, gets chosen even more, and
the others starve. Switch Transformer's auxiliary loss pushes back:

    aux = n_expert * sum_i f_i * P_i

f_i, the fraction of the N*k (token, slot) assignments that went to expert i, is a count (no gradient);
P_i, the mean router probability of expert i over the tokens, is differentiable. Both sum to 1, and the
sum of their products is smallest when both are uniform: aux = 1.0 for a perfectly balanced router, up
to n_expert / k when every token goes to the same k experts. The model adds moe_aux_coef * aux (mean
over the MoE blocks) to its loss while training (tinylm.model.GPT.forward).

    >>> from tinylm.model import GPT, GPTConfig
    >>> model = GPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, n_expert=4, expert_top_k=2))
    >>> _ = model(np.zeros((2, 5), dtype=np.int64))
    >>> last = model.transformer.h[0].mlp.last             # how the last forward pass was routed
    >>> last.chosen.shape, last.gates.shape                 # (B*T, k): k experts for each token
    ((10, 2), (10, 2))
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinylm import nn
from tinylm.autograd import cat, index_add, softmax, split


@dataclass
class Routing:
    """How one forward pass of an MoE block was routed (kept in `MoE.last`, outside the parameters).

    chosen    (B*T, k) int array, the experts of each token, best first
    gates     (B*T, k) float array, their weights (each row sums to 1)
    aux_loss  the load-balancing loss of that pass, a scalar Tensor (1.0 = perfectly balanced)
    """
    chosen: np.ndarray
    gates: np.ndarray
    aux_loss: object


class MoE(nn.Module):
    """Top-k mixture of experts: x (B, T, C) -> (B, T, C), like the MLP it replaces.

    `make_expert()` builds one expert (GPT passes its MLP, so expert i is named `experts.i.c_fc`, ...).
    After each forward pass `last` is a Routing: the experts chosen, their gates and the load-balancing
    loss, for inspection and for the model's loss. (Inside a dataclass, not an attribute of its own: a
    Tensor that requires a gradient, set on a Module, would be taken for a parameter.)
    """

    def __init__(self, n_embd, n_expert, top_k, make_expert, rng=None):
        super().__init__()
        if not 1 <= top_k <= n_expert:
            raise ValueError(f"MoE: top_k ({top_k}) must be between 1 and n_expert ({n_expert})")
        self.n_expert, self.top_k = n_expert, top_k
        self.router = nn.Linear(n_embd, n_expert, bias=False, rng=rng)
        self.experts = nn.ModuleList([make_expert() for _ in range(n_expert)])
        self.last = None  # a Routing, after the first forward pass

    def forward(self, x):
        B, T, C = x.shape
        E, k = self.n_expert, self.top_k
        x2 = x.reshape(B * T, C)  # (N, C): from here on a token is just a row
        N = B * T
        logits = self.router(x2)  # (N, E)

        # -- route: the k best experts of each token, and their gate weights
        chosen = np.argsort(-logits.data, axis=-1, kind="stable")[:, :k]  # (N, k) expert ids, best first
        rows = np.arange(N)[:, None]  # (N, 1)
        gates = softmax(logits[rows, chosen], axis=-1)  # (N, k), each row sums to 1

        # -- dispatch: gather each expert's tokens into one block of rows and run the expert on those only.
        # Running every expert on every token and masking would cost E/k times the MLP work (4x for
        # E=8, k=2); gathering costs k MLP passes per token, whatever E is: compute stays, parameters grow.
        slot_expert = chosen.reshape(-1)  # (N*k,) the expert of each (token, slot) assignment
        order = np.argsort(slot_expert, kind="stable")  # (N*k,) assignments grouped by expert
        token = order // k  # (N*k,) the token of each assignment, in that order
        counts = np.bincount(slot_expert, minlength=E)  # (E,) tokens per expert
        pieces = split(x2[token], counts.tolist(), axis=0)  # E x (n_e, C), sum n_e = N*k
        ys = cat([expert(p) for expert, p, n in zip(self.experts, pieces, counts) if n], axis=0)  # (N*k, C)

        # -- combine: weight each expert output by its gate and add it back into its token's row
        ys = ys * gates.reshape(-1)[order].reshape(-1, 1)  # (N*k, C)
        out = index_add(token, ys, N)  # (N, C): each token, the gated sum of its k experts

        self.last = Routing(chosen, gates.data, load_balancing_loss(logits, chosen, E))
        return out.reshape(B, T, C)  # (B, T, C)

    def extra_repr(self):
        return f"n_expert={self.n_expert}, top_k={self.top_k}"


def load_balancing_loss(logits, chosen, n_expert):
    """Switch Transformer's auxiliary loss, n_expert * sum_i f_i * P_i, as a scalar Tensor.

    logits (N, n_expert) router logits (a Tensor: the gradient flows through P); chosen (N, k) the
    experts each token was sent to (f is counted from it, no gradient).

    >>> from tinylm.autograd import Tensor
    >>> uniform = Tensor(np.zeros((4, 2)))                       # every expert equally likely ...
    >>> load_balancing_loss(uniform, np.array([[0], [1], [0], [1]]), 2).item()   # ... and equally used
    1.0
    """
    f = np.bincount(chosen.reshape(-1), minlength=n_expert) / chosen.size  # (E,) fraction of assignments
    P = softmax(logits, axis=-1).mean(axis=0)  # (E,) mean router probability
    return (P * f.astype(P.dtype)).sum() * float(n_expert)  # scalar


def expert_usage(model):
    """(n_moe_layers, n_expert) array: the fraction of assignments each expert got in the last forward
    pass, one row per MoE block. A balanced router gives 1/n_expert everywhere."""
    moes = [m for m in model.modules() if isinstance(m, MoE)]
    return np.array([np.bincount(m.last.chosen.reshape(-1), minlength=m.n_expert) / m.last.chosen.size
                     for m in moes])


def active_params(model):
    """Parameters that touch one token: all of them, minus the (n_expert - k) experts it skips in every
    MoE block. For a dense model, model.num_params()."""
    n = model.num_params()
    for m in model.modules():
        if isinstance(m, MoE):
            per_expert = sum(p.data.size for p in m.experts[0].parameters())
            n -= (m.n_expert - m.top_k) * per_expert
    return n
