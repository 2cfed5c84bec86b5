"""tinylm's C kernels on emulated Cortex-M cores (chapter 11): they cross-compile cleanly, reference
no malloc and no libm, and pass the golden C test (tests/c/test_kernels.c, vectors from the NumPy
references) under qemu-system-arm on an M3 (no FPU, no DSP), M4F, M7 and M55.

Skipped when arm-none-eabi-gcc or qemu-system-arm is missing; .ci/run installs both, so CI runs them.
Everything is built in pytest's temporary folders, never in the source tree."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

MCU_DIR = os.path.join(ROOT, "kernels", "targets", "cortex-m")
_spec = importlib.util.spec_from_file_location("tinylm_mcu", os.path.join(MCU_DIR, "mcu.py"))
mcu = sys.modules["tinylm_mcu"] = importlib.util.module_from_spec(_spec)   # dataclasses need it
_spec.loader.exec_module(mcu)

needs_toolchain = pytest.mark.skipif(mcu.toolchain_missing() is not None,
                                     reason=str(mcu.toolchain_missing()))
CORES = list(mcu.CORES)
DSP_CORES = {"m4", "m7", "m55"}     # the cores with the Armv7E-M DSP instructions (SMLAD, SXTB16)

# one line per kernel check that test_kernels.c prints; every one must say "ok"
KERNEL_CHECKS = ["f32_to_f16", "f16_to_f32", "matmul_f32", "matmul_nn_f32", "matmul_tn_f32", "matmul_f16",
                 "matmul_s8", "quantize_s8",
                 "dequantize_s8", "linear_s8", "linear_s4", "dequantize_s4", "softmax_f32",
                 "softmax_f32 causal", "softmax_f16", "softmax_s8", "exp_f32"]


@pytest.fixture(scope="module")
def vectors_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mcu_vectors")
    mcu.write_vectors(str(folder), seed=1)          # not the committed seed 0: fresh values
    return folder


@needs_toolchain
def test_semihosting_exit_status_reaches_the_shell(tmp_path):
    core = mcu.get_core("m3")
    elf = mcu.build(core, [os.path.join(MCU_DIR, "hello.c")], str(tmp_path / "hello.elf"))
    done = mcu.run(core, elf, timeout=30)
    assert done.returncode == 42, done.stdout + done.stderr
    assert done.stdout.strip() == "hello from a Cortex-M"


@needs_toolchain
@pytest.mark.parametrize("core_name", CORES)
def test_golden_kernel_test_passes_on_core(core_name, vectors_dir, tmp_path):
    core = mcu.get_core(core_name)
    os.symlink(vectors_dir / "vectors.h", tmp_path / "vectors.h")
    elf = mcu.build_golden(core, str(tmp_path))
    done = mcu.run(core, elf, timeout=60)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[-1] == "PASSED: 0 kernel(s) failed"
    checks = {line[:18].strip(): line.split()[-1] for line in lines[1:-1]}
    assert checks == {name: "ok" for name in KERNEL_CHECKS}
    # the DSP int8 path is compiled in exactly on the cores that have the instructions
    assert ("arm-dsp" in lines[0]) == (core_name in DSP_CORES)


@needs_toolchain
def test_golden_kernel_test_passes_at_Os_the_size_build(vectors_dir, tmp_path):
    core = mcu.get_core("m4")
    os.symlink(vectors_dir / "vectors.h", tmp_path / "vectors.h")
    done = mcu.run(core, mcu.build_golden(core, str(tmp_path), opt="-Os"), timeout=60)
    assert done.returncode == 0 and done.stdout.endswith("PASSED: 0 kernel(s) failed\n"), done.stdout


@needs_toolchain
def test_golden_test_fails_with_nonzero_status_on_a_wrong_expected_value(vectors_dir, tmp_path):
    with open(vectors_dir / "vectors.h", encoding="utf-8") as f:
        text = f.read()
    # add 1 to the first expected int8 matmul output
    text, n = re.subn(r"(tv_s8_y\[\d+\] = \{\n    )(-?\d+)", lambda m: m.group(1) + str(int(m.group(2)) + 1),
                      text)
    assert n == 1
    (tmp_path / "vectors.h").write_text(text, encoding="utf-8")
    core = mcu.get_core("m4")
    done = mcu.run(core, mcu.build_golden(core, str(tmp_path)), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"^matmul_s8 +exact +1 / 126 +MISMATCH$", done.stdout, re.MULTILINE)
    assert "FAILED: 1 kernel(s) failed" in done.stdout


def _symbols(obj):
    """(defined, undefined) external symbol names of an object file, from arm-none-eabi-nm."""
    out = subprocess.run(["arm-none-eabi-nm", "-g", obj], capture_output=True, text=True, check=True)
    defined, undefined = set(), set()
    for line in out.stdout.splitlines():
        kind, name = line.split()[-2:]
        (undefined if kind == "U" else defined).add(name)
    return defined, undefined


@needs_toolchain
@pytest.mark.parametrize("core_name", CORES)
def test_kernels_compile_with_werror_and_need_no_malloc_or_libm(core_name, tmp_path):
    core = mcu.get_core(core_name)
    defined, undefined = set(), set()
    for source in mcu.kernel_sources():
        obj = str(tmp_path / (os.path.basename(source)[:-2] + ".o"))
        mcu.compile_object(core, source, obj, opt="-O2")    # -Wall -Wextra -Werror: raises on a warning
        d, u = _symbols(obj)
        defined |= d
        undefined |= u
    # Besides each other, the kernels may only call the compiler's own helpers: __aeabi_* (soft
    # float on the M3, 64-bit division in softmax_s8) and the memset/memcpy GCC emits for zeroing
    # and copying. No malloc, no printf, no expf or any other libm function.
    external = {s for s in undefined - defined if not s.startswith("__aeabi_")}
    assert external <= {"memset", "memcpy", "memmove"}, external
    assert "tinylm_linear_s8" in defined and "tinylm_softmax_f32" in defined


@needs_toolchain
@pytest.mark.parametrize("core_name, expected", [("m3", set()), ("m4", {"smlad"}), ("m7", {"smlad"}),
                                                 ("m55", {"vmlava"})])
def test_int8_kernels_use_the_cores_multiply_accumulate_instructions(core_name, expected, tmp_path):
    """The golden test covers every int8 path: SMLAD (DSP) on M4/M7, Helium's VMLADAVA on the M55
    (binutils prints it as its alias vmlava), and the portable loop on the M3, which has neither."""
    core = mcu.get_core(core_name)
    obj = mcu.compile_object(core, os.path.join(mcu.KERNELS, "matmul_s8.c"), str(tmp_path / "m.o"))
    asm = subprocess.run(["arm-none-eabi-objdump", "-d", "-marmv8.1-m.main", obj], capture_output=True,
                         text=True, check=True).stdout     # v8.1-M decodes every core's instructions
    assert {name for name in ("smlad", "vmlava") if re.search(rf"\t{name}\b", asm)} == expected


@needs_toolchain
@pytest.mark.parametrize("core_name, expected", [("m3", set()), ("m4", {"smlad"}), ("m7", {"smlad"}),
                                                 ("m55", {"vmlava"})])
def test_int4_kernel_uses_the_cores_multiply_accumulate_instructions(core_name, expected, tmp_path):
    """linear_s4's dot products: SMLAD on the DSP cores, VMLADAVA (objdump: vmlava) on the Helium
    M55 (simd/linear_s4_mve.h), the portable loop on the M3; the golden test checks each bit-exact."""
    core = mcu.get_core(core_name)
    obj = mcu.compile_object(core, os.path.join(mcu.KERNELS, "linear_s4.c"), str(tmp_path / "s4.o"))
    asm = subprocess.run(["arm-none-eabi-objdump", "-d", "-marmv8.1-m.main", obj], capture_output=True,
                         text=True, check=True).stdout
    assert {name for name in ("smlad", "vmlava") if re.search(rf"\t{name}\b", asm)} == expected


@needs_toolchain
@pytest.mark.parametrize("core_name, hardware", [("m3", False), ("m4", True), ("m7", True), ("m55", True)])
def test_fp16_conversions_use_the_fpus_vcvtb_where_there_is_one(core_name, hardware, tmp_path):
    """On cores whose FPU converts halves, matmul_f16 converts with VCVTB (the golden test checks the
    bits); the M3 has no FPU and runs the integer conversion. With -DTINYLM_NO_F16_HW, no VCVTB anywhere."""
    core = mcu.get_core(core_name)
    source = os.path.join(mcu.KERNELS, "matmul_f16.c")
    for extra, expected in (((), hardware), (("-DTINYLM_NO_F16_HW",), False)):
        obj = mcu.compile_object(core, source, str(tmp_path / "f16.o"), extra=extra)
        asm = subprocess.run(["arm-none-eabi-objdump", "-d", "-marmv8.1-m.main", obj], capture_output=True,
                             text=True, check=True).stdout
        assert bool(re.search(r"\tvcvtb\.f32\.f16\b", asm)) == expected, (core_name, extra)


def test_unknown_core_is_a_clear_error():
    with pytest.raises(ValueError, match="core 'm0' is unknown; expected one of m3, m4, m7, m55"):
        mcu.get_core("m0")


# ---- what chapter 11 shows is what the current code produces ------------------------------------

CHAPTER = os.path.join(ROOT, "tutorials", "11-microcontroller.md")
_count_spec = importlib.util.spec_from_file_location("tinylm_mcu_count",
                                                     os.path.join(ROOT, "benchmarks", "mcu", "count.py"))
count = importlib.util.module_from_spec(_count_spec)
_count_spec.loader.exec_module(count)


def _text_block_after(marker):
    """The ```text block that follows the first line containing `marker` in chapter 11."""
    with open(CHAPTER, encoding="utf-8") as f:
        text = f.read()
    start = text.index(marker)
    block = re.search(r"```text\n(.*?)```", text[start:], re.DOTALL)
    return block.group(1)


@needs_toolchain
def test_chapter_11_shows_the_golden_test_output_of_the_current_code():
    done = subprocess.run([sys.executable, os.path.join(MCU_DIR, "mcu.py"), "test", "--core", "m4"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == _text_block_after("mcu.py test --core m4"), \
        "chapter 11's committed output is stale: paste the new output of the command into it"


@pytest.mark.slow
@needs_toolchain
@pytest.mark.skipif(count.plugin_header(fetch=False) is None,
                    reason="QEMU's qemu-plugin.h is not cached; `python benchmarks/mcu/count.py` fetches it")
def test_committed_instruction_counts_and_sizes_are_those_of_the_current_kernels(tmp_path):
    results = count.load_json(count.RESULTS, "MCU benchmark results")
    plugin = count.build_plugin(str(tmp_path), count.plugin_header(fetch=False))
    # exact counts: any change to the kernels shows here; rerun `python benchmarks/mcu/count.py --save`
    assert count.count("m4", str(tmp_path), plugin) == results["counts"]["m4"]
    assert count.sizes(str(tmp_path)) == results["sizes_m4"]


@pytest.mark.slow
@needs_toolchain
@pytest.mark.skipif(count.plugin_header(fetch=False) is None,
                    reason="QEMU's qemu-plugin.h is not cached; `python benchmarks/mcu/count.py` fetches it")
def test_committed_int4_counts_are_those_of_the_current_kernels(tmp_path):
    results = count.load_json(count.RESULTS_S4, "MCU int4 results")
    plugin = count.build_plugin(str(tmp_path), count.plugin_header(fetch=False))
    # rerun `python benchmarks/mcu/count.py --int4 --save` after changing a kernel
    assert count.count("m4", str(tmp_path), plugin, "bench_s4.c") == results["counts"]["m4"]


def test_int4_on_the_m4_dsp_path_costs_under_1_5x_the_int8_instructions():
    """The committed counts: unpacking nibbles costs extra instructions, but the DSP path keeps it
    under 1.5x int8's for the same layer (the portable C is over 2x)."""
    counts = count.load_json(count.RESULTS_S4, "MCU int4 results")["counts"]
    for span in counts["m4"]:
        if "_s4" in span:
            int8 = span.replace("_s4", "_s8")
            assert counts["m4"][span] < 1.5 * counts["m4"][int8]
            assert counts["m4-portable"][span] > 2 * counts["m4-portable"][int8]


def test_results_table_ratios_are_per_multiply_accumulate_against_cmsis_nn():
    results = {"cmsis_nn_m4": {"64x64": 10_000, "256x256": 100_000},
               "counts": {"m4": {"matmul_s8 64x64": 12_000, "matmul_s8 256x256": 90_000,
                                 "softmax_f32 64": 3_000}}}
    table = count.matvec_table(results)
    assert "| matmul_s8 64x64 | 12,000 (1.20x) |" in table
    assert "| matmul_s8 256x256 | 90,000 (0.90x) |" in table
    assert "softmax" not in table and "| softmax_f32 64 | 3,000 |" in count.other_table(results)


def test_int4_on_the_m4_is_within_1_2x_of_cmsis_nn_s4_instructions():
    """The committed counts: tinylm's int4 layer with one scale per row (float in and out, activations
    quantized inside) against CMSIS-NN's arm_fully_connected_s4 (int8 in and out) on the same M4."""
    results = count.load_json(count.RESULTS_S4, "MCU int4 results")
    assert results["cmsis_nn_s4_m4"] == count.CMSIS_NN_S4_M4
    for shape, theirs in results["cmsis_nn_s4_m4"].items():
        ours = results["counts"]["m4"][f"linear_s4 {shape} g{shape.split('x')[1]}"]
        assert ours < 1.2 * theirs, (shape, ours, theirs)


def test_s4_cmsis_table_pairs_each_shape_with_its_one_group_per_row_count():
    results = {"cmsis_nn_s4_m4": {"64x64": 20_000, "256x256": 100_000},
               "counts": {"m4": {"linear_s4 64x64 g64": 15_000, "linear_s4 64x64 g32": 1,
                                 "linear_s4 256x256 g256": 110_000}}}
    table = count.s4_cmsis_table(results)
    assert "| 64x64 | 15,000 | 20,000 | 0.75x |" in table
    assert "| 256x256 | 110,000 | 100,000 | 1.10x |" in table


def test_cmsis_nn_count_names_a_folder_that_is_not_a_checkout(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a CMSIS-NN checkout: no .*arm_fully_connected_s4.c"):
        count.count_cmsis_nn_s4(str(tmp_path), str(tmp_path), "unused")
