"""The C runtime on emulated Cortex-M cores: instructions per token, the kernels' share, flash and RAM,
and tokens/s and energy per token *estimated* for a 168 MHz STM32F405.

    python -m tinylm.bench.runtime_mcu --run runs/board                 # int8 g32, on the M4 and the M55
    python -m tinylm.bench.runtime_mcu --run runs/board --plan fp16 --plan int8:g32
    python -m tinylm.bench.runtime_mcu --run runs/board --plan int8:g32 --plan int4:g32 --core m4
    python -m tinylm.bench.runtime_mcu --train-board /tmp/board         # train the board preset first
    python -m tinylm.bench.runtime_mcu --random-board --plan int8:g32 --plan int4:g32 --core m4

What is measured, per core and precision plan: the model is exported with the C blob writer, linked
into kernels/targets/cortex-m/gen.c with the STM32F405 budget (stm32f405.ld), run under QEMU, and the
QEMU plugin count_funcs.c counts each generated token's instructions (greedy, KV cache, the prompt's
prefill left out) and those executed inside kernels/*.c. The runtime's overhead is the rest: its
own loops and calls, plus the C library it calls (memcpy, libgcc helpers).

What is estimated: QEMU counts instructions, not cycles. A Cortex-M4 issues at most one instruction
per cycle; loads, branches (pipeline refill), and flash wait states that the ART accelerator does not
hide cost more. We assume INSTRUCTIONS_PER_CYCLE = 0.8 (1.25 cycles per instruction) at 168 MHz
with the ART accelerator on: an assumption, not a measurement. Energy uses the STM32F405 datasheet's
typical run-mode supply current at 168 MHz (RUN_CURRENT_SOURCE): current x 3.3 V x time per token.
The host bench (`python -m tinylm.bench runtime`) calls `measure_board` for its MCU rows.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOARD_PY = os.path.join(ROOT, "kernels", "targets", "cortex-m", "board.py")
SHAKESPEARE = os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt")

# ---- the 168 MHz STM32F405 the estimates are for --------------------------------------------------
CLOCK_HZ = 168e6
INSTRUCTIONS_PER_CYCLE = 0.8        # assumption (see the docstring): 1.25 cycles per instruction
SUPPLY_VOLTS = 3.3
RUN_CURRENT_AMPS = 0.040            # typical IDD in Run mode at 168 MHz, all peripherals disabled
# (taken from the datasheet as we know it, not re-read from a copy while writing this: it agrees with
# the product summary's "238 uA/MHz" x 168 MHz = 40 mA; check it against your part's revision)
RUN_CURRENT_SOURCE = ("STM32F405xx/STM32F407xx datasheet (ST DS8626, DocID022152), table 'Typical and "
                      "maximum current consumption in Run mode, code with data processing running from "
                      "Flash memory (ART accelerator enabled) or RAM': fHCLK = 168 MHz, all peripherals "
                      "disabled, typ. 40 mA (87 mA with all peripherals enabled)")


def estimate(instructions_per_token: float) -> dict:
    """Tokens/s and millijoules per token on a 168 MHz STM32F405, from an instruction count.

    >>> {k: round(v, 3) for k, v in estimate(1_344_000).items()}
    {'cycles_per_token': 1680000.0, 'tokens_per_s': 100.0, 'mj_per_token': 1.32}
    """
    cycles = instructions_per_token / INSTRUCTIONS_PER_CYCLE
    seconds = cycles / CLOCK_HZ
    return {"cycles_per_token": cycles, "tokens_per_s": 1.0 / seconds,
            "mj_per_token": RUN_CURRENT_AMPS * SUPPLY_VOLTS * seconds * 1e3}


def _board():
    """kernels/targets/cortex-m/board.py, imported from the source tree (it is not part of the package)."""
    module = sys.modules.get("tinylm_board")
    if module is None:
        spec = importlib.util.spec_from_file_location("tinylm_board", BOARD_PY)
        module = sys.modules["tinylm_board"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


# ---- one model, one core ------------------------------------------------------------------------

def export(model, tokenizer, folder: str) -> str:
    """Write the model (fp32 or quantized by a plan) as model.bin + model_data.c/.h into `folder`."""
    from tinylm.io import cblob
    cblob.export_c(model, tokenizer, folder)
    return folder


def arena_bytes(export_dir: str) -> int:
    """tinylm_arena_bytes() of the exported model, from the host build of the same runtime."""
    from tinylm.io.cruntime import CRuntime
    with open(os.path.join(export_dir, "model.bin"), "rb") as f:
        return int(CRuntime(f.read()).arena_bytes)


def measure_export(export_dir: str, core: str, folder: str, prompt: str = "\n", n_tokens: int = 50,
                   count: bool = True, plugin: str | None = None) -> dict:
    """Build, run (and with `count`, count) one exported model on one core: a row of the table."""
    board = _board()
    image = board.build(core, export_dir, folder, prompt, n_tokens, arena_bytes(export_dir))
    if count and plugin is None:
        plugin = board.build_plugin(folder, _plugin_header())
    memory = board.memory_use(image)
    row = {"core": core, "machine": image.core.machine, "memory": memory, "n_tokens": n_tokens}
    if core == "m55" and memory["flash"] > board.AN547_CODE_BYTES:
        row["note"] = f"image > the an547's {board.AN547_CODE_BYTES // 1024} KB code memory: not run"
        return row
    generation = row["generation"] = board.run(image, plugin if count else None)
    if count:
        row["per_token"] = generation.per_token(3)           # tokens 2 .. n, refills included
        row["per_token_window"] = generation.per_token(2)    # tokens 2 .. window, no refill
        row["estimate"] = estimate(row["per_token"]["total"])
        row["estimate_window"] = estimate(row["per_token_window"]["total"])
    return row


def plugin_header_cached() -> bool:
    """Whether QEMU's qemu-plugin.h is already downloaded (the counts need it; .ci/run fetches it)."""
    return _count_module().plugin_header(fetch=False) is not None


def _count_module():
    spec = importlib.util.spec_from_file_location("tinylm_mcu_count",
                                                  os.path.join(ROOT, "benchmarks", "mcu", "count.py"))
    count = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(count)
    return count


def _plugin_header() -> str:
    """QEMU's qemu-plugin.h folder (benchmarks/mcu/count.py downloads it once, ~24 MB)."""
    return _count_module().plugin_header(fetch=True)


# ---- a model in several plans, on several cores -------------------------------------------------

def plan_model(model, plan):
    """The model in precision `plan`: None (the model as given, e.g. already quantized), "fp32", a
    uniform precision ("fp16", "int8:g32", ...), or a plan.json file (a precision per layer, as
    chapter 10's planner writes)."""
    from tinylm.quant import apply_plan, load_plan, uniform_plan
    if plan is None or plan == "fp32":
        return model
    if plan.endswith(".json"):
        return apply_plan(model, load_plan(plan))
    return apply_plan(model, uniform_plan(model, plan))


def python_greedy(model, tokenizer, prompt: str, n_tokens: int) -> list:
    """The tokens tinylm.generate picks (greedy, KV cache): what the board must print."""
    import numpy as np

    from tinylm.generate import generate
    ids = tokenizer.encode(prompt)
    return [int(t) for t in np.asarray(generate(model, np.array([ids]), n_tokens, temperature=0))[0, len(ids):]]


def measure_board(model, tokenizer, plans=("int8:g32",), cores=("m4", "m55"), prompt: str = "\n",
                  n_tokens: int = 100, count: bool = True) -> list:
    """Rows for the table: every plan on every core (what `python -m tinylm.bench runtime` calls)."""
    board = _board()
    reason = board.mcu.toolchain_missing()
    if reason:
        raise RuntimeError(reason)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plugin = board.build_plugin(tmp, _plugin_header()) if count else None
        for plan in plans:
            planned = plan_model(model, plan)
            export_dir = export(planned, tokenizer, os.path.join(tmp, f"export-{len(rows)}"))
            expected = python_greedy(planned, tokenizer, prompt, n_tokens)
            for core in cores:
                folder = os.path.join(tmp, f"build-{len(rows)}")
                os.makedirs(folder)
                row = measure_export(export_dir, core, folder, prompt, n_tokens, count=count, plugin=plugin)
                row["plan"] = "as given" if plan is None else os.path.basename(plan)
                if "generation" in row:
                    got = row["generation"].tokens
                    row["first_difference"] = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b),
                                                   None if len(got) == len(expected) else min(len(got), len(expected)))
                rows.append(row)
    return rows


def format_rows(rows) -> str:
    """The table, then where the kernel instructions go, then the assumptions of the estimate.

    Two figures per token: inside one context window (no refill), and averaged over all the tokens of
    the run, where every block_size / 2 tokens a full cache is refilled by a forward pass over
    block_size / 2 tokens (tinylm.generate's rule, which the runtime follows to give the same tokens)."""
    lines = ["| core (board) | plan | tokens = Python's | instructions/token: window / all | in kernels (all) "
             "| runtime overhead "
             "| flash of 1 MB | SRAM of 128 KB (arena) | CCM of 64 KB | est. tokens/s at 168 MHz: window / all "
             "| est. mJ/token: window / all |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = r["memory"]
        cells = [f"{r['core']} ({r['machine']})", r.get("plan", "as exported")]
        if "first_difference" not in r:                      # not run, or not compared
            cells.append("-")
        elif r["first_difference"] is None:
            cells.append(f"all {r['n_tokens']}")
        else:
            cells.append(f"differ from token {r['first_difference']}")
        if "per_token" in r:
            t, w = r["per_token"], r["per_token_window"]
            cells += [f"{w['total']:,.0f} / {t['total']:,.0f}", f"{t['kernels']:,.0f}",
                      f"{(t['total'] - t['kernels']) / t['total']:.1%}"]
        else:
            cells += [r.get("note", "-"), "-", "-"]
        cells += [f"{mem['flash']:,} B", f"{mem['sram']:,} B", f"{mem['ccm']:,} B"]
        if "estimate" in r and r["core"] == "m4":
            ew, ea = r["estimate_window"], r["estimate"]
            cells += [f"{ew['tokens_per_s']:,.0f} / {ea['tokens_per_s']:,.0f}",
                      f"{ew['mj_per_token']:.2f} / {ea['mj_per_token']:.2f}"]
        else:
            cells += ["-", "-"]   # the STM32F405 is a Cortex-M4: no estimate from the M55's counts
        lines.append("| " + " | ".join(cells) + " |")
    counted = [r for r in rows if "per_token" in r]
    if counted:
        files = [k for k in counted[0]["per_token"] if k not in ("total", "kernels")
                 and any(r["per_token"].get(k, 0) for r in counted)]
        lines += ["", "instructions per token (all) inside each kernel file, and outside any kernel:", "",
                  "| core | plan | " + " | ".join(files) + " | runtime + libc |",
                  "|---|---|" + "---:|" * (len(files) + 1)]
        for r in counted:
            t = r["per_token"]
            lines.append(f"| {r['core']} | {r.get('plan', 'as exported')} | "
                         + " | ".join(f"{t.get(f, 0):,.0f}" for f in files)
                         + f" | {t['total'] - t['kernels']:,.0f} |")
        lines += ["", f"estimates: {CLOCK_HZ / 1e6:.0f} MHz, {INSTRUCTIONS_PER_CYCLE} instructions per cycle "
                      f"(assumed), {RUN_CURRENT_AMPS * 1e3:.0f} mA at {SUPPLY_VOLTS} V: {RUN_CURRENT_SOURCE}"]
    return "\n".join(lines)


def train_board(out: str, data: str | None = None, verbose: bool = True):
    """Train the `board` size preset (tinylm train --size board) into `out`; returns (model, tokenizer).
    On tinyshakespeare when ../shared/data has it, else the built-in corpus."""
    from tinylm.commands.train import SIZES, start_run
    from tinylm.model import GPTConfig
    from tinylm.train import TrainConfig
    preset = dict(SIZES["board"])
    data = data or (os.path.normpath(SHAKESPEARE) if os.path.isfile(SHAKESPEARE) else "builtin")
    model_kw = {k: preset.pop(k) for k in list(preset) if k in GPTConfig.__dataclass_fields__}
    vocab_size = model_kw.pop("vocab_size")
    model, tokenizer, _ = start_run(out, TrainConfig(data=data, **preset), model_kw, vocab_size=vocab_size,
                                    force=True, verbose=verbose)
    model.eval()
    return model, tokenizer


def random_board(seed: int = 0):
    """The board preset's model with random weights and a BPE tokenizer of its vocabulary (trained in
    seconds on the built-in corpus): the shapes, memory and instructions per token of the trained
    preset without its 3-minute-plus training (its tokens are not text)."""
    from tinylm.commands.train import SIZES
    from tinylm.data import load_corpus
    from tinylm.model import GPT, GPTConfig
    from tinylm.tokenizer import Tokenizer
    sizes = {k: v for k, v in SIZES["board"].items() if k in GPTConfig.__dataclass_fields__}
    tokenizer = Tokenizer().train(load_corpus("builtin")[:100_000], sizes["vocab_size"])
    model = GPT(GPTConfig(**sizes), seed=seed)
    model.eval()
    return model, tokenizer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinylm.bench.runtime_mcu", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run folder (tinylm train) or a quantized model (tinylm quantize --out)")
    source.add_argument("--train-board", metavar="DIR", help="train the board preset into DIR first (~3-5 min)")
    source.add_argument("--random-board", action="store_true",
                        help="the board preset's shapes with random weights, untrained: the same memory and "
                             "instructions per token as the trained preset, in seconds")
    parser.add_argument("--plan", action="append", help="fp32, fp16, int8:gN, int8:channel, int4:gN, int4:channel or a "
                                                        "plan.json; "
                                                        "repeat for several (default int8:g32)")
    parser.add_argument("--core", action="append", choices=["m4", "m55"], help="default: both")
    parser.add_argument("-n", "--n-tokens", type=int, default=100, help="tokens generated per run (default 100)")
    parser.add_argument("-i", "--prompt", default="\n", help="the prompt (default a newline)")
    args = parser.parse_args(argv)
    if args.train_board:
        model, tokenizer = train_board(args.train_board)
    elif args.random_board:
        model, tokenizer = random_board()
    else:
        model, tokenizer = _load(args.run)
    rows = measure_board(model, tokenizer, args.plan or ["int8:g32"], args.core or ["m4", "m55"],
                         args.prompt, args.n_tokens)
    print(f"{args.n_tokens} greedy tokens per run, prompt {args.prompt!r}; "
          f"a model of {model.num_params():,} parameters\n")
    print(format_rows(rows))
    return 0


def _load(path: str):
    """(model, tokenizer) of a run folder or of a quantized model folder."""
    if os.path.isfile(os.path.join(path, "model.npz")):
        from tinylm.io.runs import load_model
        model, tokenizer = load_model(path)
    else:
        from tinylm.io.quantized import load_quantized
        from tinylm.tokenizer import Tokenizer
        model = load_quantized(path)
        tokenizer = Tokenizer.load(os.path.join(path, "tokenizer.json"))
    model.eval()
    return model, tokenizer


if __name__ == "__main__":
    sys.exit(main())
