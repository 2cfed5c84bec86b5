"""`python -m tinylm.bench runtime`: tokens/s of the C runtime vs the NumPy path, and the bandwidth limit.

Three model shapes with random weights (speed does not depend on what was learned), each in fp32, fp16,
int8 (groups of 32, and per channel) and int4 (groups of 32); every Linear and embedding:
    demo         the `tinylm demo` model: n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=512
    shakespeare  nanoGPT's baby Shakespeare: n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=256
                 (tinylm's byte-level tokenizer has 256 ids where nanoGPT's character model has 65)
    gpt2         GPT-2 124M's shapes: n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257
Both engines generate greedily at batch 1 with a KV cache from a 1-token prompt, min(100, block_size - 1)
tokens (so the cache never restarts; gpt2: 8 tokens in NumPy, 16 in C): the NumPy path is
tinylm.generate.generate (the Python model; its quantized layers call the C matmul kernels), the C path
is tinylm_generate in runtime/tinylm_runtime.c, called once through cffi for all the tokens. Times are
the best of --repeats runs (gpt2: of 2) in CPU time of the (single-threaded) process, the two engines
run in turn so a change of load hits both.

Bandwidth limit: generating one token reads every weight once (the tied embedding as the output head;
of wpe one row), so tokens/s <= memory bandwidth / weight bytes per token. The bandwidth is measured in
the same run, single-threaded like the runtime: the read bandwidth of np.sum / np.max over a 512 MiB
int64 array (weights are only read). The fraction of that limit the C runtime reaches is printed for
every row; it matters for gpt2 (the small models' weights stay in the caches, which can beat it). After
the table, int4 against int8:g32 for each model shape: the ratio of C tokens/s and of weight bytes. The
MCU rows (instructions per token on emulated Cortex-M cores, int8:g32 and int4:g32) come from
tinylm/bench/runtime_mcu.py: `--mcu RUN_DIR`.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tinylm.bench.machine import cpu_model  # noqa: F401  (tinylm.bench.runtime.cpu_model, as before)

CONFIGS = {
    "demo": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=512),
    "shakespeare": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=256),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
}
PRECISIONS = ("fp32", "fp16", "int8:g32", "int8:channel", "int4:g32")
TARGET_SPEEDUP = 20.0       # issue 13: C >= 20x NumPy tokens/s on the demo model, batch 1
TARGET_BANDWIDTH = 0.60     # issue 13: int8 on GPT-2-124M shapes >= 60% of the bandwidth limit


def memory_bandwidth(repeats=5):
    """(read GB/s, copy GB/s), best of `repeats` in CPU time like the tokens/s.

    read: bytes / s of the faster of np.sum and np.max over a 512 MiB int64 array (two read-only
    streams; weights are only read). copy: bytes read + written / s of np.copyto of 256 MiB (STREAM's
    convention), printed for reference."""
    a = np.ones(64 * 2**20, np.int64)  # 512 MiB
    src, dst = np.ones(32 * 2**20, np.int64), np.empty(32 * 2**20, np.int64)  # 256 MiB each
    a.sum(), a.max(), np.copyto(dst, src)  # touch every page once
    best = {"read": float("inf"), "copy": float("inf")}
    for _ in range(repeats):
        for key, fn in (("read", a.sum), ("read", a.max), ("copy", lambda: np.copyto(dst, src))):
            t = time.process_time()
            fn()
            best[key] = min(best[key], time.process_time() - t)
    return a.nbytes / best["read"] / 1e9, 2 * src.nbytes / best["copy"] / 1e9


def weight_bytes_per_token(model):
    """Bytes of weights one token reads: every tensor of the blob, but only one row of wpe."""
    from tinylm.io.cblob import blob_tensors
    total = 0
    for (kind, _, _), (_, _, data, scale) in blob_tensors(model).items():
        n = data.nbytes + (0 if scale is None else scale.nbytes)
        total += n // data.shape[0] if kind == 2 else n  # kind 2: wpe, one row a token
    return total


def _best_times(fns, repeats):
    """Best (smallest) CPU seconds of each function over `repeats` runs, the functions run in turn.

    CPU time of this process, not wall time: everything here runs on one thread, and on a machine
    shared with other jobs (load average above the core count) wall time counts the time the
    scheduler gave the core to someone else. CPU time still pays for caches and memory bandwidth
    shared with them. The best of a few runs, for both engines alike."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            start = time.process_time()
            fn()
            t.append(time.process_time() - start)
    return [min(t) for t in times]


def bench_model(name, precision, new_c, new_np, repeats):
    """tokens/s of both engines for one config and precision, and the weight bytes per token."""
    from tinylm import nn
    from tinylm.generate import generate
    from tinylm.io.cruntime import CRuntime
    from tinylm.model import GPT, GPTConfig
    from tinylm.quant import apply_plan, uniform_plan
    from tinylm.tokenizer import Tokenizer

    config = GPTConfig(**CONFIGS[name])
    model = GPT(config, seed=0)
    params = model.num_params()
    if precision != "fp32":
        with nn.skip_init():
            model = apply_plan(model, uniform_plan(model, precision))
    model.eval()
    rt = CRuntime.from_model(model, Tokenizer())
    prompt = [1]
    np_prompt = np.array(prompt)
    t_np, t_c = _best_times([lambda: generate(model, np_prompt, new_np, temperature=0),
                               lambda: rt.generate(prompt, new_c, temperature=0)], repeats)
    return {"name": name, "precision": precision, "params": params, "np_tok_s": new_np / t_np,
            "c_tok_s": new_c / t_c, "bytes": weight_bytes_per_token(model), "arena": rt.arena_bytes}


def print_mcu_rows(folder):
    """The emulated Cortex-M rows for a run (or quantized) folder, from tinylm/bench/runtime_mcu.py: the
    run's model in int8:g32 and int4:g32 (a quantized folder: as saved) on the M4 and the M55."""
    try:
        from tinylm.bench import runtime_mcu
    except ImportError:
        print("(no MCU rows: tinylm/bench/runtime_mcu.py is not in this tree)")
        return
    from tinylm.io import load
    model, tokenizer = load(folder)
    quantized = os.path.exists(os.path.join(folder, "quantized.json"))
    try:
        rows = runtime_mcu.measure_board(model, tokenizer, plans=(None,) if quantized else ("int8:g32", "int4:g32"))
    except RuntimeError as exc:  # no cross compiler / QEMU
        print(f"(no MCU rows: {exc})")
        return
    print(f"\nemulated Cortex-M, {folder}:\n")
    print(runtime_mcu.format_rows(rows))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinylm.bench runtime", description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="demo,shakespeare,gpt2",
                        help="comma-separated: demo, shakespeare, gpt2 (default all three)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS),
                        help=f"comma-separated (default {','.join(PRECISIONS)})")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement, best kept (default 5)")
    parser.add_argument("--mcu", metavar="RUN_DIR", help="also measure a run (e.g. the board preset) on the emulated "
                                                         "Cortex-M4 and M55 (tinylm/bench/runtime_mcu.py)")
    args = parser.parse_args(argv)
    import tinylm
    from tinylm import kernels

    info = kernels.build_info()
    print(f"tinylm: {os.path.dirname(tinylm.__file__)}; C build: {info['simd']}; flags: {info['flags']}")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes share these cores)")
    bandwidth, copy_bw = memory_bandwidth()
    print(f"memory bandwidth: {bandwidth:.1f} GB/s read (np.sum / np.max over 512 MiB; the limit below uses "
          f"it), {copy_bw:.1f} GB/s read+write (np.copyto, 256 MiB)")
    print(f"\n{'model':12} {'precision':12} {'params':>7} {'weights/token':>13} | {'NumPy tok/s':>11} {'C tok/s':>9} "
          f"{'C/NumPy':>8} | {'limit tok/s':>11} {'of limit':>8}")
    rows = []
    for name in args.configs.split(","):
        name = name.strip()
        if name not in CONFIGS:
            parser.error(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
        big = name == "gpt2"
        for precision in args.precisions.split(","):
            new = 8 if big else min(100, CONFIGS[name]["block_size"] - 1)  # within block_size: no cache restart
            r = bench_model(name, precision.strip(), new_c=2 * new if big else new, new_np=new,
                            repeats=min(2, args.repeats) if big else args.repeats)
            limit = bandwidth * 1e9 / r["bytes"]
            r["limit"], r["fraction"] = limit, r["c_tok_s"] / limit
            rows.append(r)
            print(f"{name:12} {r['precision']:12} {r['params'] / 1e6:6.1f}M {r['bytes'] / 1e6:11.2f}MB | "
                  f"{r['np_tok_s']:11.1f} {r['c_tok_s']:9.1f} {r['c_tok_s'] / r['np_tok_s']:7.1f}x | "
                  f"{limit:11.1f} {100 * r['fraction']:7.0f}%", flush=True)
    print()
    for r in rows:
        if r["name"] == "demo":
            ratio = r["c_tok_s"] / r["np_tok_s"]
            print(f"target C >= {TARGET_SPEEDUP:.0f}x NumPy on the demo model, {r['precision']}: {ratio:.1f}x -> "
                  f"{'met' if ratio >= TARGET_SPEEDUP else 'NOT met'}")
    by_key = {(r["name"], r["precision"]): r for r in rows}
    for name in dict.fromkeys(r["name"] for r in rows):
        int4, int8 = by_key.get((name, "int4:g32")), by_key.get((name, "int8:g32"))
        if int4 and int8:
            print(f"int4:g32 vs int8:g32 on {name}: C tokens/s {int4['c_tok_s'] / int8['c_tok_s']:.2f}x, "
                  f"weight bytes per token {int4['bytes'] / int8['bytes']:.2f}x")
    for r in rows:
        if r["name"] == "gpt2" and r["precision"].startswith("int8"):
            f = r["fraction"]
            print(f"target int8 GPT-2-124M >= {100 * TARGET_BANDWIDTH:.0f}% of the bandwidth limit, {r['precision']}: "
                  f"{100 * f:.0f}% -> {'met' if f >= TARGET_BANDWIDTH else 'NOT met'}")
    if args.mcu:
        print_mcu_rows(args.mcu)
    return 0
