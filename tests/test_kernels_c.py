"""The standalone C test (tests/c/test_kernels.c): the kernels compiled with gcc in strict C99 under
AddressSanitizer and UndefinedBehaviorSanitizer, portable and with SIMD, against fresh vectors from
the NumPy references (tests/c/gen_vectors.py)."""
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

KERNELS = os.path.join(ROOT, "kernels")
TESTS_C = os.path.join(ROOT, "tests", "c")
GCC = shutil.which("gcc")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g",
          "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


@pytest.fixture(scope="module")
def vectors_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vectors")
    subprocess.run([sys.executable, os.path.join(TESTS_C, "gen_vectors.py"), str(out / "vectors.h"),
                    "--seed", "1"], check=True, capture_output=True)
    return out


def _sanitizers_work(tmp_path):
    """Can gcc build and run a program with ASan/UBSan here? (Some images lack libasan.)"""
    src = tmp_path / "probe.c"
    src.write_text("int main(void) { return 0; }\n")
    build = subprocess.run([GCC, *STRICT, str(src), "-o", str(tmp_path / "probe")], capture_output=True)
    return build.returncode == 0 and subprocess.run([str(tmp_path / "probe")]).returncode == 0


@pytest.mark.skipif(GCC is None, reason="gcc not found")
@pytest.mark.parametrize("simd", [[], ["-march=native"], ["-march=haswell"], ["-march=skylake-avx512"]],
                         ids=["portable", "native-simd", "avx2-only", "avx512-no-vnni"])
def test_standalone_c_test_passes_under_sanitizers(simd, vectors_dir, tmp_path):
    """Every SIMD block is built and checked: the portable C, this CPU's best (-march=native), and, on a
    CPU that can run them, AVX2 alone (Haswell: the AVX2 blocks that a VNNI build skips) and AVX-512
    without VNNI (Skylake-X: AVX-512 float paths, AVX2 int8)."""
    if not _sanitizers_work(tmp_path):
        pytest.skip("gcc cannot build with -fsanitize=address,undefined here (libasan/libubsan missing)")
    needed = {"-march=haswell": "__AVX2__", "-march=skylake-avx512": "__AVX512BW__"}.get(simd[0] if simd else "")
    if needed and needed not in _native_macros():
        pytest.skip(f"this CPU cannot run {simd[0]} code (no {needed})")
    sources = sorted(os.path.join(KERNELS, f) for f in os.listdir(KERNELS) if f.endswith(".c"))
    exe = tmp_path / "test_kernels"
    # vectors_dir comes first on the include path, so the fresh vectors.h wins over the committed one
    build = subprocess.run([GCC, *STRICT, *simd, f"-I{vectors_dir}", f"-I{KERNELS}", *sources,
                            os.path.join(TESTS_C, "test_kernels.c"), "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "PASSED" in run.stdout, run.stdout + run.stderr
    assert ("avx2" in run.stdout.splitlines()[0]) == bool(simd and "__AVX2__" in _native_macros())
    assert "MISMATCH" not in run.stdout


def _native_macros():
    """The predefined macros of -march=native: what this CPU's instruction sets are."""
    probe = subprocess.run([GCC, "-march=native", "-dM", "-E", "-x", "c", os.devnull],
                           capture_output=True, text=True)
    return probe.stdout


def test_committed_vectors_header_is_small_enough_for_a_512kb_board():
    assert os.path.getsize(os.path.join(TESTS_C, "vectors.h")) < 150_000
