"""A trained tinylm model generating text on an emulated Cortex-M (issue 13, chapter 11): the C runtime
+ kernels + model_data.c, linked with the STM32F405's budget (kernels/targets/cortex-m/stm32f405.ld),
run under qemu-system-arm, gives exactly Python's greedy tokens; an over-budget model fails to link.

Skipped when arm-none-eabi-gcc or qemu-system-arm is missing, except under CI=true (.ci/run installs
both): there a missing toolchain fails. The models are small ones trained here in seconds, and
board-preset-shaped ones with random weights (same shapes, same memory, same instructions per token
as the trained preset; only python -m tinylm.bench.runtime_mcu trains the real one).
"""
import importlib.util
import os
import sys

import numpy as np
import pytest

from conftest import ROOT

MCU_DIR = os.path.join(ROOT, "kernels", "targets", "cortex-m")
_spec = importlib.util.spec_from_file_location("tinylm_board", os.path.join(MCU_DIR, "board.py"))
board = sys.modules["tinylm_board"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(board)

from tinylm.bench import runtime_mcu  # noqa: E402
from tinylm.quant import apply_plan, uniform_plan  # noqa: E402

MISSING = board.mcu.toolchain_missing()


@pytest.fixture(autouse=True)
def toolchain():
    """Skip without the Arm toolchain and QEMU, but fail under CI, which installs them."""
    if MISSING:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {MISSING}")
        pytest.skip(MISSING)


# ---- models ---------------------------------------------------------------------------------------

PROMPT = "def main(self):\n    return"   # BPE merges apply: the C encoder is tested too
N_TOKENS = 200                           # > 6 x block_size: the cache is refilled many times

# a precision per layer, as chapter 10's planner writes them: every format in one model
MIXED = {"transformer.wpe": "fp16", "transformer.h.0.attn.c_attn": "int8:g16",
         "transformer.h.0.mlp.c_fc": "fp16", "transformer.h.1.mlp.c_proj": "int8:channel",
         "lm_head": "int8:g32"}


@pytest.fixture(scope="module")
def tiny():
    """A 2-layer, 32-wide GPT with a 300-token BPE vocabulary and 32 tokens of context, trained for a
    few seconds on the built-in corpus: text-like logits, so greedy decoding is not a tie-breaking
    contest between near-equal scores."""
    from tinylm.data import encode_corpus, load_corpus, train_val_split
    from tinylm.model import GPT, GPTConfig
    from tinylm.tokenizer import Tokenizer
    from tinylm.train import TrainConfig, train

    text = load_corpus("builtin")[:60_000]
    tokenizer = Tokenizer().train(text, 300)
    train_ids, val_ids = train_val_split(encode_corpus(text, tokenizer))
    model = GPT(GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=2, n_embd=32), seed=0)
    train(model, train_ids, val_ids, TrainConfig(batch_size=8, max_iters=60, lr=3e-3, warmup_iters=6,
                                                 eval_interval=60, eval_iters=1, seed=0), verbose=False)
    model.eval()
    return model, tokenizer


def board_model(seed=0, **overrides):
    """A GPT of the `board` size preset (tinylm train --size board) with random weights, and a BPE
    tokenizer of the preset's vocabulary: the shapes, the memory and the instructions per token are
    the trained preset's; training it (3 minutes) is left to the benchmark."""
    from tinylm.commands.train import SIZES
    from tinylm.data import load_corpus
    from tinylm.model import GPT, GPTConfig
    from tinylm.tokenizer import Tokenizer

    sizes = {k: v for k, v in SIZES["board"].items() if k in GPTConfig.__dataclass_fields__}
    sizes.update(overrides)
    tokenizer = Tokenizer().train(load_corpus("builtin")[:100_000], sizes["vocab_size"])
    model = GPT(GPTConfig(**sizes), seed=seed)
    model.eval()
    return model, tokenizer


def python_greedy(model, tokenizer, prompt=PROMPT, n=N_TOKENS):
    from tinylm.generate import generate
    ids = tokenizer.encode(prompt)
    out = generate(model, np.array([ids]), n, temperature=0)
    return [int(t) for t in np.asarray(out)[0, len(ids):]]


def build_and_run(model, tokenizer, folder, core="m4", prompt=PROMPT, n=N_TOKENS, plugin=None):
    export_dir = runtime_mcu.export(model, tokenizer, str(folder / "export"))
    build_dir = folder / f"build-{core}"
    build_dir.mkdir()
    image = board.build(core, export_dir, str(build_dir), prompt, n, runtime_mcu.arena_bytes(export_dir))
    return image, board.run(image, plugin)


# ---- the same tokens as Python ------------------------------------------------------------------

def with_plan(model, plan):
    if plan == "fp32":
        return model
    return apply_plan(model, MIXED if plan == "mixed" else uniform_plan(model, plan))


@pytest.mark.parametrize("plan", ["fp32", "fp16", "int8:g32", "mixed"])
def test_greedy_tokens_on_the_emulated_m4_are_pythons(tiny, plan, tmp_path):
    model, tokenizer = tiny
    model = with_plan(model, plan)
    expected = python_greedy(model, tokenizer)
    _, got = build_and_run(model, tokenizer, tmp_path)
    assert got.tokens == expected
    assert got.text == tokenizer.decode(expected)
