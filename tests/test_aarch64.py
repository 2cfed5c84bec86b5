"""The kernels' AArch64 NEON paths (kernels/simd/*_neon.h): the standalone C test (tests/c/test_kernels.c,
fresh vectors from the NumPy references) cross-compiled with Debian's gcc-aarch64-linux-gnu under
ASan/UBSan and run under qemu-aarch64 user mode, twice:
  - built for plain Armv8-A (NEON without the dot-product extension) and run on QEMU's Cortex-A53
    model, which has no SDOT: an SDOT that slipped into that build would stop it with SIGILL;
  - built for Armv8.2-A + dotprod (SDOT) and run on QEMU's "max" CPU.
Exact kernels must match bit for bit, the others stay within the contract's bounds, as on x86.
QEMU only emulates: nothing here measures speed.

Skipped when the cross compiler or qemu-aarch64 is missing; .ci/run installs both (gcc-aarch64-linux-gnu,
libc6-dev-arm64-cross, qemu-user). Everything is built in pytest's temporary folders."""
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

KERNELS = os.path.join(ROOT, "kernels")
TESTS_C = os.path.join(ROOT, "tests", "c")
CC = shutil.which("aarch64-linux-gnu-gcc")
QEMU = shutil.which("qemu-aarch64")
# -std=c99 already turns fused multiply-add contraction off; said again because the exact kernels need it
FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-ffp-contract=off",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
# LeakSanitizer cannot run under QEMU user mode (it needs ptrace); the test has no heap anyway
RUN_ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0"}

# (-march, QEMU CPU model, words tinylm_build_info must name, words it must not)
BUILDS = {"armv8-a": ("armv8-a", "cortex-a53", {"neon", "arm-fp16", "portable"}, {"arm-dotprod"}),
          "dotprod": ("armv8.2-a+dotprod", "max", {"neon", "arm-dotprod", "arm-fp16", "portable"}, set())}

# every line test_kernels.c prints on AArch64 (the larger blocking cases included); each must say "ok"
KERNEL_CHECKS = ["f32_to_f16", "f16_to_f32", "matmul_f32", "matmul_nn_f32", "matmul_tn_f32", "matmul_f16",
                 "matmul_s8", "quantize_s8",
                 "dequantize_s8", "linear_s8", "linear_s4", "dequantize_s4", "softmax_f32",
                 "softmax_f32 causal", "softmax_f16", "softmax_s8", "exp_f32", "matmul_s8 blocks",
                 "linear_s8 blocks", "exp_f32 lanes", "s8 K < 4, M >= 6"]

MISSING = ("aarch64-linux-gnu-gcc or qemu-aarch64 not found (apt-get install gcc-aarch64-linux-gnu "
           "libc6-dev-arm64-cross qemu-user; .ci/run does)") if CC is None or QEMU is None else None
needs_toolchain = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def _sysroot():
    """Where the cross libc lives (qemu-aarch64 -L): /usr/aarch64-linux-gnu on Debian."""
    libc = subprocess.run([CC, "-print-file-name=libc.so.6"], capture_output=True, text=True).stdout.strip()
    return os.path.dirname(os.path.dirname(os.path.realpath(libc)))


def _run(exe, cpu):
    return subprocess.run([QEMU, "-L", _sysroot(), "-cpu", cpu, str(exe)], capture_output=True, text=True,
                          timeout=120, env=RUN_ENV)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """build(name) -> the test program cross-compiled for BUILDS[name] (built once per module)."""
    folder = tmp_path_factory.mktemp("aarch64")
    subprocess.run([sys.executable, os.path.join(TESTS_C, "gen_vectors.py"), str(folder / "vectors.h"),
                    "--seed", "1"], check=True, capture_output=True)
    probe = folder / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    done = subprocess.run([CC, *FLAGS, str(probe), "-o", str(folder / "probe")], capture_output=True)
    if done.returncode != 0 or _run(folder / "probe", "max").returncode != 0:
        pytest.skip("the aarch64 cross compiler cannot build and run with -fsanitize=address,undefined "
                    "under qemu-aarch64 here (libasan/libubsan for arm64 missing?)")
    sources = sorted(os.path.join(KERNELS, f) for f in os.listdir(KERNELS) if f.endswith(".c"))
    built = {}

    def get(name):
        if name not in built:
            exe = folder / f"test_kernels_{name}"
            # the fresh vectors.h comes first on the include path, before the committed one
            done = subprocess.run([CC, *FLAGS, f"-march={BUILDS[name][0]}", f"-I{folder}", f"-I{KERNELS}",
                                   *sources, os.path.join(TESTS_C, "test_kernels.c"), "-o", str(exe)],
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            built[name] = exe
        return built[name]
    return get


@needs_toolchain
@pytest.mark.parametrize("name", list(BUILDS))
def test_golden_c_test_passes_under_qemu_aarch64(name, build):
    _, cpu, present, absent = BUILDS[name]
    done = _run(build(name), cpu)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines and lines[-1] == "PASSED: 0 kernel(s) failed", \
        done.stdout + done.stderr
    paths = set(lines[0].split("build: ", 1)[1].rstrip(")").split())
    assert present <= paths and not (absent & paths), lines[0]
    checks = {line[:18].strip(): line.split()[-1] for line in lines[1:-1]}
    assert checks == {check: "ok" for check in KERNEL_CHECKS}


@needs_toolchain
def test_cortex_a53_model_has_no_sdot(build):
    """The guard the armv8-a run relies on: QEMU's Cortex-A53 stops an SDOT build with SIGILL, so the
    plain-NEON build passing there shows that it holds no dot-product instruction."""
    done = _run(build("dotprod"), "cortex-a53")
    assert done.returncode != 0 and "PASSED" not in done.stdout


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="outside CI the toolchain is optional")
def test_ci_has_the_aarch64_toolchain():
    """In CI (.ci/run installs it) a missing toolchain is a failure, not two skipped NEON tests."""
    assert MISSING is None, MISSING
