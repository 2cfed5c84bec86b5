"""Executed instructions per kernel call on emulated Cortex-M cores, against CMSIS-NN (chapter 11).

    python benchmarks/mcu/count.py            # print the tables
    python benchmarks/mcu/count.py --save     # and rewrite benchmarks/mcu/results.json (chapter 11)
    python benchmarks/mcu/count.py --fetch-header   # only download qemu-plugin.h (what .ci/run does)
    python benchmarks/mcu/count.py --int4     # int4 beside int8 (bench_s4.c); --save writes results_s4.json
    python benchmarks/mcu/count.py --cmsis-nn DIR   # re-measure CMSIS-NN's arm_fully_connected_s4 (see below)

QEMU has no cycle model, but it can count: kernels/targets/cortex-m/qemu-plugin/count_insns.c is a
TCG plugin that counts the guest instructions executed between two marker functions, and
kernels/targets/cortex-m/bench_kernels.c calls each kernel once between them. Counts are exact and
identical on every run (instructions, not cycles: an SMLAD and a division both count 1).

The plugin is compiled against qemu-plugin.h, which Debian's QEMU does not install. The script
takes it from the QEMU 7.2 source package (`apt-get source --download-only qemu`, ~24 MB, with a
private deb-src list so the system's apt configuration is untouched) and keeps only that header in
~/.cache/tinylm/qemu-7.2/ (or $TINYLM_QEMU_PLUGIN_DIR). Needs arm-none-eabi-gcc, qemu-system-arm
and a host gcc.

The CMSIS-NN figures are arm_fully_connected_s8 (int8 in, int8 weights, requantized int8 out) on the
same emulated M4 at -O2, measured once the same way (the plugin between two markers) and kept in
CMSIS_NN_M4 below.

The int4 figures (CMSIS_NN_S4_M4) are arm_fully_connected_s4 (int8 in, two int4 weights a byte, int32
bias, requantized int8 out; CMSIS-NN commit c0c92b31, V.1.0.0 of arm_nn_vec_mat_mult_t_s4.c, its
ARM_MATH_DSP branch), counted by bench_cmsis_nn_s4.c here: `--cmsis-nn DIR` compiles that program
with DIR/Source/FullyConnectedFunctions/arm_fully_connected_s4.c and
DIR/Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s4.c (-IDIR/Include, -O2, the M4's flags, its
warnings not errors) and prints the counts. CMSIS-NN's code is not part of tinylm: DIR is a checkout
of https://github.com/ARM-software/CMSIS-NN made by whoever re-measures. (The committed figures were
counted with those two files at that commit and the GCC-branch definitions of the helpers they use,
from Include/arm_nnsupportfunctions.h and Include/Internal/arm_nn_compiler.h: SMLAD and SXTAB16 as
inline assembly, read_and_pad_s4, arm_nn_requantize. Its inner loop, compiled so, is 35 instructions
for 8 multiply-adds (4 SMLAD): each 2-byte weight load is spread into signed pairs by shifts, ANDs,
ORs, SXTB16s and RORs. tinylm's (simd/linear_s4_dsp.h) is 32 for 16 (8 SMLAD): Q4_0's layout puts
8 weights of a row in one word, which a shift and two ANDs split.)
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MCU_DIR = os.path.join(ROOT, "kernels", "targets", "cortex-m")
RESULTS = os.path.join(HERE, "results.json")
RESULTS_S4 = os.path.join(HERE, "results_s4.json")
sys.path.insert(0, ROOT)

from tinylm.fileio import load_json, save_json  # noqa: E402

_spec = importlib.util.spec_from_file_location("tinylm_mcu", os.path.join(MCU_DIR, "mcu.py"))
mcu = sys.modules.setdefault("tinylm_mcu", importlib.util.module_from_spec(_spec))
if not hasattr(mcu, "CORES"):
    _spec.loader.exec_module(mcu)

# arm_fully_connected_s8 on the emulated M4, -O2: instructions for one matrix-vector product
CMSIS_NN_M4 = {"64x64": 10_971, "256x256": 135_699}
# arm_fully_connected_s4 on the emulated M4, -O2 (`--cmsis-nn DIR`): one matrix-vector product
CMSIS_NN_S4_M4 = {"64x64": 21_168, "256x256": 299_138}

# (name, core, extra compiler flags, what it shows)
CONFIGS = [
    ("m4", "m4", (), "Cortex-M4F, DSP int8 path (SMLAD)"),
    ("m4-portable", "m4", ("-U__ARM_FEATURE_DSP", "-DTINYLM_NO_F16_HW"), "Cortex-M4F, portable C only"),
    ("m3", "m3", (), "Cortex-M3: no FPU (soft float), no DSP"),
    ("m55", "m55", (), "Cortex-M55, Helium int8 path (VMLADAVA); floats scalar"),
]

PLUGIN_DIR = os.environ.get("TINYLM_QEMU_PLUGIN_DIR",
                            os.path.join(os.path.expanduser("~"), ".cache", "tinylm", "qemu-7.2"))
QEMU_SOURCE = "qemu=1:7.2+dfsg-7+deb12u18"   # the source of Debian 12's qemu-system-arm


def plugin_header(fetch: bool = True) -> str | None:
    """The folder holding QEMU 7.2's qemu-plugin.h; downloads it once when `fetch`, else None."""
    header = os.path.join(PLUGIN_DIR, "qemu-plugin.h")
    if os.path.isfile(header):
        return PLUGIN_DIR
    if not fetch:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        lists = os.path.join(tmp, "lists")
        os.makedirs(os.path.join(lists, "partial"))
        with open(os.path.join(tmp, "sources.list"), "w", encoding="utf-8") as f:
            f.write("deb-src http://deb.debian.org/debian bookworm main\n")
        apt = ["apt-get", "-qq", "-o", f"Dir::Etc::SourceList={tmp}/sources.list",
               "-o", "Dir::Etc::SourceParts=/dev/null", "-o", f"Dir::State::Lists={lists}",
               "-o", "APT::Sandbox::User=root"]
        subprocess.run([*apt, "update"], check=True, cwd=tmp)
        subprocess.run([*apt, "source", "--download-only", QEMU_SOURCE], check=True, cwd=tmp)
        tarball = glob.glob(os.path.join(tmp, "qemu_*.orig.tar.*"))[0]
        subprocess.run(["tar", "-xf", tarball, "-C", tmp, "--wildcards", "*/include/qemu/qemu-plugin.h"],
                       check=True)
        os.makedirs(PLUGIN_DIR, exist_ok=True)
        shutil.copyfile(glob.glob(os.path.join(tmp, "*", "include", "qemu", "qemu-plugin.h"))[0], header)
    return PLUGIN_DIR


def build_plugin(folder: str, header_dir: str) -> str:
    """Compile the counting plugin (host C, a shared library QEMU loads)."""
    out = os.path.join(folder, "libcount_insns.so")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", f"-I{header_dir}",
                    os.path.join(MCU_DIR, "qemu-plugin", "count_insns.c"), "-o", out], check=True)
    return out


def _symbol(elf: str, name: str) -> int:
    out = subprocess.run(["arm-none-eabi-nm", elf], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        address, _, symbol = line.split()
        if symbol == name:
            return int(address, 16)
    raise RuntimeError(f"{elf}: symbol {name} not found")


def count(config: str, folder: str, plugin: str, program: str = "bench_kernels.c") -> dict:
    """{span name: instructions of that one kernel call} for one configuration of CONFIGS, running
    `program` (a file of kernels/targets/cortex-m/).

    The "empty" span (begin and end called back to back) holds only the call sequence; it is
    subtracted from every other span."""
    _, core_name, extra, _ = next(c for c in CONFIGS if c[0] == config)
    core = mcu.get_core(core_name)
    stem = os.path.splitext(program)[0]
    elf = mcu.build(core, [*mcu.kernel_sources(), os.path.join(MCU_DIR, program)],
                    os.path.join(folder, f"{stem}_{config}.elf"), "-O2", extra=extra)
    plugin_arg = (f"{plugin},begin={_symbol(elf, 'tl_mark_begin'):#x},"
                  f"end={_symbol(elf, 'tl_mark_end'):#x}")
    done = mcu.run(core, elf, timeout=120, plugin_args=["-plugin", plugin_arg, "-d", "plugin"])
    if done.returncode != 0:
        raise RuntimeError(f"{config}: benchmark exited with {done.returncode}\n{done.stdout}{done.stderr}")
    names = re.findall(r"^span (.+)$", done.stdout, re.MULTILINE)
    counts = [int(c) for c in re.findall(r"^count (\d+)$", done.stderr, re.MULTILINE)]
    if len(names) != len(counts) or names[0] != "empty":
        raise RuntimeError(f"{config}: {len(names)} spans but {len(counts)} counts\n{done.stderr}")
    return {name: n - counts[0] for name, n in zip(names[1:], counts[1:])}


def sizes(folder: str, core_name: str = "m4") -> dict:
    """{opt: {"text", "data", "bss"}} of all kernels/*.c objects for `core_name` (arm-none-eabi-size)."""
    core = mcu.get_core(core_name)
    result = {}
    for opt in ("-Os", "-O2"):
        objects = [mcu.compile_object(core, src, os.path.join(folder, f"{os.path.basename(src)}{opt}.o"), opt)
                   for src in mcu.kernel_sources()]
        out = subprocess.run(["arm-none-eabi-size", "-t", *objects], capture_output=True, text=True,
                             check=True).stdout
        text, data, bss = (int(v) for v in out.splitlines()[-1].split()[:3])   # the "(TOTALS)" line
        result[opt] = {"text": text, "data": data, "bss": bss}
    return result


def measure(configs=None) -> dict:
    """Everything results.json holds: counts per configuration, M4 object sizes, the references."""
    configs = configs or [c[0] for c in CONFIGS]
    with tempfile.TemporaryDirectory() as tmp:
        plugin = build_plugin(tmp, plugin_header())
        return {
            "what": "instructions executed per kernel call (call sequence excluded), QEMU 7.2 TCG plugin",
            "cmsis_nn_m4": CMSIS_NN_M4,
            "configs": {c[0]: c[3] for c in CONFIGS if c[0] in configs},
            "counts": {config: count(config, tmp, plugin) for config in configs},
            "sizes_m4": sizes(tmp),
        }


def count_cmsis_nn_s4(cmsis_nn_dir: str, folder: str, plugin: str) -> dict:
    """{shape: instructions of one arm_fully_connected_s4 call} on the M4, from a CMSIS-NN checkout."""
    core = mcu.get_core("m4")
    sources = [os.path.join(cmsis_nn_dir, "Source", "FullyConnectedFunctions", "arm_fully_connected_s4.c"),
               os.path.join(cmsis_nn_dir, "Source", "NNSupportFunctions", "arm_nn_vec_mat_mult_t_s4.c")]
    missing = [s for s in sources if not os.path.isfile(s)]
    if missing:
        raise FileNotFoundError(f"{cmsis_nn_dir} is not a CMSIS-NN checkout: no {missing[0]}")
    elf = mcu.build(core, [*sources, os.path.join(HERE, "bench_cmsis_nn_s4.c")],
                    os.path.join(folder, "bench_cmsis_nn_s4.elf"), "-O2",
                    include_dirs=[os.path.join(cmsis_nn_dir, "Include")], extra=("-Wno-error",))
    plugin_arg = (f"{plugin},begin={_symbol(elf, 'tl_mark_begin'):#x},"
                  f"end={_symbol(elf, 'tl_mark_end'):#x}")
    done = mcu.run(core, elf, timeout=120, plugin_args=["-plugin", plugin_arg, "-d", "plugin"])
    if done.returncode != 0:
        raise RuntimeError(f"CMSIS-NN benchmark exited with {done.returncode}\n{done.stdout}{done.stderr}")
    names = re.findall(r"^span (.+)$", done.stdout, re.MULTILINE)
    counts = [int(c) for c in re.findall(r"^count (\d+)$", done.stderr, re.MULTILINE)]
    return {name: n - counts[0] for name, n in zip(names[1:], counts[1:])}


def measure_s4(configs=None) -> dict:
    """int4 beside int8 (bench_s4.c): what results_s4.json holds."""
    configs = configs or [c[0] for c in CONFIGS]
    with tempfile.TemporaryDirectory() as tmp:
        plugin = build_plugin(tmp, plugin_header())
        return {
            "what": "instructions executed per kernel call (call sequence excluded), QEMU 7.2 TCG plugin",
            "cmsis_nn_s4_m4": CMSIS_NN_S4_M4,
            "configs": {c[0]: c[3] for c in CONFIGS if c[0] in configs},
            "counts": {config: count(config, tmp, plugin, "bench_s4.c") for config in configs},
        }


def s4_table(results: dict) -> str:
    """Markdown: int4 and int8 Linear layers side by side, instructions per call and int4 / int8."""
    rows = ["| kernel | " + " | ".join(results["counts"]) + " |",
            "|---|" + "---:|" * len(results["counts"])]
    for span in next(iter(results["counts"].values())):
        cells = []
        for config, counts in results["counts"].items():
            n = counts[span]
            ratio = f" ({n / counts[span.replace('_s4', '_s8')]:.2f}x int8)" if "_s4" in span else ""
            cells.append(f"{n:,}{ratio}")
        rows.append(f"| {span} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def s4_cmsis_table(results: dict) -> str:
    """Markdown: tinylm's int4 layer with one scale per row (g64, g256: CMSIS-NN's per-tensor scale is
    the closest) against arm_fully_connected_s4 on the M4, instructions and their ratio."""
    rows = ["| shape (M = 1) | tinylm linear_s4, one group a row | CMSIS-NN arm_fully_connected_s4 | ratio |",
            "|---|---:|---:|---:|"]
    for shape, theirs in results["cmsis_nn_s4_m4"].items():
        ours = results["counts"]["m4"][f"linear_s4 {shape} g{shape.split('x')[1]}"]
        rows.append(f"| {shape} | {ours:,} | {theirs:,} | {ours / theirs:.2f}x |")
    return "\n".join(rows)


def matvec_table(results: dict) -> str:
    """Markdown: int8 matrix-vector products, instructions and ratio to CMSIS-NN per multiply-add."""
    rows = ["| kernel | " + " | ".join(results["counts"]) + " |",
            "|---|" + "---:|" * len(results["counts"])]
    spans = [s for s in next(iter(results["counts"].values())) if "_s8 " in s and "x" in s.split()[1]]
    for span in spans:
        shape = span.split()[1]
        cells = []
        for config in results["counts"]:
            n = results["counts"][config][span]
            cells.append(f"{n:,} ({n / results['cmsis_nn_m4'][shape]:.2f}x)")
        rows.append(f"| {span} | " + " | ".join(cells) + " |")
    for shape, n in results["cmsis_nn_m4"].items():
        rows.append(f"| CMSIS-NN arm_fully_connected_s8 {shape} (M4) | {n:,} |" + " |" * (len(results["counts"]) - 1))
    return "\n".join(rows)


def other_table(results: dict) -> str:
    """Markdown: the float kernels and the softmaxes, instructions per call."""
    rows = ["| kernel | " + " | ".join(results["counts"]) + " |",
            "|---|" + "---:|" * len(results["counts"])]
    spans = [s for s in next(iter(results["counts"].values())) if "_s8 " not in s or "softmax" in s]
    for span in spans:
        rows.append(f"| {span} | " + " | ".join(f"{results['counts'][c][span]:,}" for c in results["counts"]) + " |")
    return "\n".join(rows)


def size_table(results: dict) -> str:
    rows = ["| kernels/*.c for Cortex-M4F | text | data | bss |", "|---|---:|---:|---:|"]
    for opt, s in results["sizes_m4"].items():
        rows.append(f"| {opt} | {s['text']:,} | {s['data']} | {s['bss']} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", action="store_true", help=f"also write {os.path.relpath(RESULTS, ROOT)}")
    parser.add_argument("--show", action="store_true", help="print the saved results without measuring")
    parser.add_argument("--fetch-header", action="store_true",
                        help="only download QEMU's qemu-plugin.h into the cache (for the tests), then stop")
    parser.add_argument("--cmsis-nn", metavar="DIR",
                        help="count CMSIS-NN's arm_fully_connected_s4 from the CMSIS-NN checkout DIR on the M4, "
                             "then stop (the figures CMSIS_NN_S4_M4 holds)")
    parser.add_argument("--int4", action="store_true",
                        help="int4 beside int8 instead (bench_s4.c; with --save, writes "
                             f"{os.path.relpath(RESULTS_S4, ROOT)})")
    args = parser.parse_args(argv)
    if args.cmsis_nn:
        reason = mcu.toolchain_missing()
        if reason:
            print(reason, file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory() as tmp:
            counts = count_cmsis_nn_s4(args.cmsis_nn, tmp, build_plugin(tmp, plugin_header()))
        print("CMSIS-NN arm_fully_connected_s4 on the M4 (-O2), instructions per call:", counts)
        return 0
    if args.int4:
        results = load_json(RESULTS_S4, "MCU int4 results") if args.show else None
        if results is None:
            reason = mcu.toolchain_missing()
            if reason:
                print(reason, file=sys.stderr)
                return 2
            results = measure_s4()
        print("int4 and int8 Linear layers (M = 1), instructions per call\n")
        print(s4_table(results))
        print("\nint4 on the M4 against CMSIS-NN's int4 fully connected layer (int8 in and out, per-tensor scale)\n")
        print(s4_cmsis_table(results))
        if args.save:
            save_json(RESULTS_S4, results)
            print(f"\nwrote {os.path.relpath(RESULTS_S4, ROOT)}")
        return 0
    if args.fetch_header:
        print(f"qemu-plugin.h in {plugin_header(fetch=True)}")
        return 0
    if args.show:
        results = load_json(RESULTS, "MCU benchmark results")
    else:
        reason = mcu.toolchain_missing()
        if reason:
            print(reason, file=sys.stderr)
            return 2
        results = measure()
    print("int8 matrix-vector products (M = 1), instructions and ratio to CMSIS-NN on the M4\n")
    print(matvec_table(results), "\n")
    print(other_table(results), "\n")
    print(size_table(results))
    if args.save:
        save_json(RESULTS, results)
        print(f"\nwrote {os.path.relpath(RESULTS, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
