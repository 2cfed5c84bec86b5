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


@pytest.fixture
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


@pytest.mark.usefixtures("toolchain")
@pytest.mark.parametrize("plan", ["fp32", "fp16", "int8:g32", "mixed"])
def test_greedy_tokens_on_the_emulated_m4_are_pythons(tiny, plan, tmp_path):
    model, tokenizer = tiny
    model = with_plan(model, plan)
    expected = python_greedy(model, tokenizer)
    _, got = build_and_run(model, tokenizer, tmp_path)
    assert got.tokens == expected
    assert got.text == tokenizer.decode(expected)


@pytest.mark.usefixtures("toolchain")
def test_int4_greedy_tokens_on_the_emulated_m4_are_pythons(tiny, tmp_path):
    """Uniform int4:g32 (the tied embedding / head and wpe too): a version-2 blob, the kernels' DSP
    int4 path (tinylm_linear_s4) on the M4, Python's tokens; smaller than the int8 export."""
    model, tokenizer = tiny
    int4, int8 = with_plan(model, "int4:g32"), with_plan(model, "int8:g32")
    _, got = build_and_run(int4, tokenizer, tmp_path, n=60)
    assert got.tokens == python_greedy(int4, tokenizer, n=60)
    assert open(tmp_path / "export" / "model.bin", "rb").read(8)[4] == 2
    int8_dir = runtime_mcu.export(int8, tokenizer, str(tmp_path / "export8"))
    assert os.path.getsize(tmp_path / "export" / "model.bin") < os.path.getsize(os.path.join(int8_dir, "model.bin"))


@pytest.mark.usefixtures("toolchain")
def test_greedy_tokens_on_the_emulated_m55_are_pythons(tiny, tmp_path):
    """The M55 build takes the kernels' Helium (MVE) int8 path: still Python's tokens."""
    model, tokenizer = tiny
    model = with_plan(model, "int8:g32")
    _, got = build_and_run(model, tokenizer, tmp_path, core="m55", n=100)
    assert got.tokens == python_greedy(model, tokenizer, n=100)


@pytest.mark.usefixtures("toolchain")
@pytest.mark.slow
def test_board_preset_in_int8_fits_the_stm32f405_and_gives_pythons_tokens(tmp_path):
    """The `board` size preset, int8 g32: links inside 1 MB flash / 128 KB SRAM / 64 KB CCM, and
    200 greedy tokens on the emulated M4 are Python's (random weights: same shapes as the trained
    preset; the benchmark measures the trained one). With the QEMU plugin header cached (CI fetches
    it), also the targets: the runtime's overhead over its kernels and the estimated speed."""
    model, tokenizer = board_model()
    model = with_plan(model, "int8:g32")
    plugin = board.build_plugin(str(tmp_path), runtime_mcu._plugin_header()) \
        if runtime_mcu.plugin_header_cached() else None
    image, got = build_and_run(model, tokenizer, tmp_path, prompt="ROMEO:", plugin=plugin)
    assert got.tokens == python_greedy(model, tokenizer, prompt="ROMEO:")
    if plugin:   # issue 13's targets on the M4: overhead <= 20%; >= 100 tokens/s (inside a window)
        every, window = got.per_token(3), got.per_token(2)
        assert every["kernels"] >= 0.8 * every["total"], every
        assert runtime_mcu.estimate(window["total"])["tokens_per_s"] >= 100, window
    mem = board.memory_use(image)
    assert mem["flash"] <= mem["flash_budget"] == 1024 * 1024
    assert mem["sram"] <= mem["sram_budget"] == 128 * 1024
    assert mem["ccm"] <= mem["ccm_budget"] == 64 * 1024
    assert mem["sram"] >= runtime_mcu.arena_bytes(str(tmp_path / "export"))   # the arena is in SRAM
    # the blob is most of the flash, and is the size of the exported model.bin
    blob = os.path.getsize(tmp_path / "export" / "model.bin")
    assert blob <= mem["flash_by_owner"]["model"] < blob + 64


# ---- the budget is enforced by the linker -------------------------------------------------------

@pytest.mark.usefixtures("toolchain")
def test_a_model_larger_than_the_flash_fails_to_link_with_a_clear_message(tmp_path):
    """The board preset 1.5x wider, 3 layers, in fp32: ~1.5 MB of weights for 1 MB of flash."""
    model, tokenizer = board_model(n_embd=96, n_head=4, n_layer=3)
    export_dir = runtime_mcu.export(model, tokenizer, str(tmp_path / "export"))
    with pytest.raises(board.LinkError, match=r"do not fit the STM32F405's 1 MB of flash: quantize"):
        board.build("m4", export_dir, str(tmp_path), PROMPT, 10, runtime_mcu.arena_bytes(export_dir))


@pytest.mark.usefixtures("toolchain")
def test_an_arena_larger_than_the_sram_fails_to_link_with_a_clear_message(tmp_path):
    """The board preset with 256 tokens of context: a 512 KB KV cache for 128 KB of SRAM."""
    model, tokenizer = board_model(block_size=256)
    model = with_plan(model, "int8:g32")
    export_dir = runtime_mcu.export(model, tokenizer, str(tmp_path / "export"))
    with pytest.raises(board.LinkError, match=r"arena .* does not fit the STM32F405's 128 KB SRAM"):
        board.build("m4", export_dir, str(tmp_path), PROMPT, 10, runtime_mcu.arena_bytes(export_dir))


# ---- counting ---------------------------------------------------------------------------------------

def _plugin_header_or_skip():
    import importlib.util as iu
    spec = iu.spec_from_file_location("tinylm_mcu_count", os.path.join(ROOT, "benchmarks", "mcu", "count.py"))
    count = iu.module_from_spec(spec)
    spec.loader.exec_module(count)
    header = count.plugin_header(fetch=False)
    if header is None:
        pytest.skip("QEMU's qemu-plugin.h is not cached; `python benchmarks/mcu/count.py --fetch-header` fetches it")
    return header


@pytest.mark.usefixtures("toolchain")
@pytest.mark.slow
def test_instruction_counts_split_into_kernels_and_runtime(tiny, tmp_path):
    model, tokenizer = tiny
    model = with_plan(model, "int8:g32")
    plugin = board.build_plugin(str(tmp_path), _plugin_header_or_skip())
    image, got = build_and_run(model, tokenizer, tmp_path, n=40, plugin=plugin)
    assert got.tokens == python_greedy(model, tokenizer, n=40)     # counting changes nothing
    per_token = got.per_token()
    assert 0 < per_token["kernels"] < per_token["total"]
    # every kernel a GPT-2 forward pass needs ran, and the int8 matrix products dominate
    for name in ("linear_s8", "layernorm", "gelu", "attention", "embedding"):
        assert per_token[name] > 0, name
    assert per_token["linear_s8"] == max(per_token[k] for k in got.buckets)
    # refilling a full cache (every block_size / 2 tokens) costs: more per token than inside a window
    assert got.per_token(2)["total"] < per_token["total"]
    # the same program counted twice gives the same numbers: exact, not sampled
    assert board.run(image, plugin).spans == got.spans


def test_estimate_is_clock_times_ipc_over_instructions():
    e = runtime_mcu.estimate(1_344_000)
    assert round(e["tokens_per_s"], 6) == 100.0                  # 168e6 * 0.8 / 1.344e6
    assert round(e["mj_per_token"], 6) == round(0.040 * 3.3 / 100 * 1e3, 6)


def test_memory_regions_are_the_stm32f405s():
    assert board.memory_regions() == {"FLASH": (0, 1024 * 1024), "SRAM": (0x20000000, 128 * 1024),
                                      "CCM": (0x20020000, 64 * 1024)}


# ---- the board size preset ---------------------------------------------------------------------

def test_size_board_sets_the_unset_options_and_an_explicit_option_wins(tmp_path, monkeypatch):
    from tinylm import cli
    from tinylm.commands import train as train_command
    seen = {}

    def fake_start_run(out, train_config, model_kw, vocab_size=512, **kwargs):
        seen.update(model_kw, vocab_size=vocab_size, batch_size=train_config.batch_size,
                    max_iters=train_config.max_iters)
        raise KeyboardInterrupt   # stop before any training; the CLI turns it into status 130

    monkeypatch.setattr(train_command, "start_run", fake_start_run)
    status = cli.main(["train", "--size", "board", "--data", "builtin", "--out", str(tmp_path / "run"),
                       "--max-iters", "7"])
    assert status == 130
    assert seen == {"n_layer": 4, "n_head": 4, "n_embd": 64, "block_size": 48, "vocab_size": 512,
                    "batch_size": 32, "max_iters": 7}


def test_board_preset_is_about_250k_parameters_like_stories260k():
    from tinylm import nn
    from tinylm.commands.train import SIZES
    from tinylm.model import GPT, GPTConfig
    sizes = {k: v for k, v in SIZES["board"].items() if k in GPTConfig.__dataclass_fields__}
    with nn.skip_init():
        n = GPT(GPTConfig(**sizes)).num_params()
    assert 200_000 <= n <= 300_000, n


@pytest.mark.usefixtures("toolchain")
@pytest.mark.parametrize("plan", ["fp32", "int8:g32"])
def test_seeded_sampling_on_the_emulated_m4_is_pythons_with_the_tinylm_rng(tiny, plan, tmp_path):
    """temperature, top-k and top-p with the runtime's xorshift64* generator: the same seed picks the
    same tokens on the board as tinylm.generate(rng="tinylm") (the M4 computes the sampler's doubles
    in software: IEEE all the same)."""
    from tinylm.generate import generate
    model, tokenizer = tiny
    model = with_plan(model, plan)
    sampling = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "seed": 1234}
    ids = tokenizer.encode(PROMPT)
    expected = generate(model, np.array([ids]), 100, rng="tinylm", **sampling)
    expected = [int(t) for t in np.asarray(expected)[0, len(ids):]]
    export_dir = runtime_mcu.export(model, tokenizer, str(tmp_path / "export"))
    image = board.build("m4", export_dir, str(tmp_path), PROMPT, 100, runtime_mcu.arena_bytes(export_dir),
                        **sampling)
    got = board.run(image)
    assert got.tokens == expected
    assert got.tokens != python_greedy(model, tokenizer, n=100)      # it did sample


@pytest.mark.usefixtures("toolchain")
def test_the_comparison_can_fail_a_changed_weight_changes_the_board_tokens(tiny, tmp_path):
    """The board runs what was exported, not what Python holds: export a model whose token embedding
    (= output head) has one row scaled, and its tokens are no longer the original model's."""
    import copy
    model, tokenizer = tiny
    expected = python_greedy(model, tokenizer, n=50)
    changed = copy.deepcopy(model)
    wte = changed.transformer.wte.weight.data
    wte[expected[0]] *= -1.0                    # the first greedy token now scores the opposite
    _, got = build_and_run(changed, tokenizer, tmp_path, n=50)
    assert got.tokens == python_greedy(changed, tokenizer, n=50)
    assert got.tokens != expected
