"""The model: GPT-2's architecture, with a mixture-of-experts option.

    config.py   GPTConfig: the sizes and options, checked against one table
    gpt.py      attention, MLP, block, GPT, and the KV cache that generation uses
    moe.py      the top-k mixture of experts that can replace each block's MLP (tutorial 12)
"""
from tinylm.model.config import GPTConfig
from tinylm.model.gpt import GPT, MLP, Block, CausalSelfAttention, KVCache, Transformer
from tinylm.model.moe import MoE, Routing, active_params, expert_usage, load_balancing_loss

__all__ = ["GPT", "GPTConfig", "KVCache", "Block", "CausalSelfAttention", "MLP", "Transformer",
           "MoE", "Routing", "active_params", "expert_usage", "load_balancing_loss"]
