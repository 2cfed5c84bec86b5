"""Draw figures/05-architecture.png: the GPT model (left) and one transformer block (right).

    python tutorials/tools/draw_architecture.py

A drawing, not a computation: the chapter checks every shape in it with code.
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = {"embed": "#dbe9f6", "block": "#fde7c8", "norm": "#e4f2df", "attn": "#f8d9d9", "mlp": "#e8def3",
          "io": "#f2f2f2", "add": "#ffffff"}


def box(ax, x, y, w, h, text, kind, size=10, bold=False):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=COLORS[kind], ec="#444444", lw=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, fontweight="bold" if bold else "normal")


def arrow(ax, x0, y0, x1, y1):
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="-|>", lw=1.3, color="#333333"))


def model_panel(ax):
    ax.set_title("the model (GPT)", fontsize=13, fontweight="bold")
    steps = [(9.2, "logits  (B, T, vocab_size)", "io", 0.7),
             (8.1, "lm_head: Linear(C, vocab_size)\nweight tied to wte", "embed", 0.9),
             (6.95, "ln_f: LayerNorm(C)", "norm", 0.7),
             (5.2, "block\n\nx n_layer", "block", 2.0),
             (3.4, "+  (dropout on the sum)", "add", 0.7),
             (2.25, "wte[idx]: token vectors   |   wpe[pos]: position vectors\n"
                    "(vocab_size, C)            (block_size, C)", "embed", 0.95),
             (0.95, "token ids idx  (B, T)", "io", 0.7)]
    for y, text, kind, h in steps:
        box(ax, 5, y, 8.2, h, text, kind, size=10, bold=(kind == "block"))
    for (y0, _, _, h0), (y1, _, _, h1) in zip(steps[::-1][:-1], steps[::-1][1:]):
        arrow(ax, 5, y0 + h0 / 2, 5, y1 - h1 / 2)
    ax.text(9.35, 5.2, "(B, T, C)\nthe residual\nstream", fontsize=9, va="center", color="#555555")
    ax.set_xlim(0, 11)
    ax.set_ylim(0.3, 10)


def block_panel(ax):
    ax.set_title("one block (pre-norm, as GPT-2)", fontsize=13, fontweight="bold")
    X = 2.0                                    # the residual stream runs up the left
    ax.plot([X, X], [0.5, 9.6], color="#333333", lw=2.5)
    ax.annotate("", (X, 9.8), (X, 9.4), arrowprops=dict(arrowstyle="-|>", lw=2.5, color="#333333"))
    ax.text(X - 0.25, 0.7, "x (B, T, C)", ha="right", fontsize=10)
    ax.text(X - 0.25, 9.7, "out (B, T, C)", ha="right", fontsize=10)
    # branch 1: attention
    box(ax, 6.2, 1.6, 4.6, 0.6, "ln_1: LayerNorm(C)", "norm")
    box(ax, 6.2, 3.0, 4.6, 1.6, "causal self-attention\nc_attn: C -> 3C (q, k, v)\nsoftmax(q k^T / sqrt(hs) + mask) v\n"
        "per head: (B, nh, T, hs)\nc_proj: C -> C, dropout", "attn", size=9)
    box(ax, X, 4.25, 0.7, 0.5, "+", "add", size=13)
    arrow(ax, X, 1.0, X + 1.6, 1.6)
    arrow(ax, 6.2, 1.9, 6.2, 2.2)
    arrow(ax, 6.2, 3.8, X + 0.35, 4.25)
    # branch 2: MLP
    box(ax, 6.2, 5.3, 4.6, 0.6, "ln_2: LayerNorm(C)", "norm")
    box(ax, 6.2, 6.9, 4.6, 1.7, "MLP\nc_fc: C -> 4C\nGELU (tanh form)\nc_proj: 4C -> C, dropout", "mlp", size=9)
    box(ax, X, 8.25, 0.7, 0.5, "+", "add", size=13)
    arrow(ax, X, 4.5, X + 1.6, 5.3)
    arrow(ax, 6.2, 5.6, 6.2, 6.05)
    arrow(ax, 6.2, 7.75, X + 0.35, 8.25)
    ax.text(X + 0.2, 2.3, "the stream\ngoes past\nunchanged", fontsize=8, color="#555555")
    ax.set_xlim(0, 9)
    ax.set_ylim(0.3, 10)


fig, (left, right) = plt.subplots(1, 2, figsize=(13, 7.5), gridspec_kw={"width_ratios": [11, 9]})
model_panel(left)
block_panel(right)
for ax in (left, right):
    ax.axis("off")
fig.tight_layout()
fig.savefig(os.path.join(HERE, "figures", "05-architecture.png"), dpi=100)
