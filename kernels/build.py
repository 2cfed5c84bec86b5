"""cffi build script: compiles the C kernels in kernels/*.c into the extension module tinylm._kernels.

setup.py names it in `cffi_modules`, so `pip install .` runs it. It can also be run by hand:

    python kernels/build.py             # builds tinylm/_kernels*.so in place

Each kernels/<family>.c is compiled; the instruction-set variants in kernels/simd/<family>_<isa>.h
are headers that those files include (so they are listed as `depends`, not as sources).

The C declarations handed to cffi are read from kernels/tinylm_kernels.h (between the
`cffi-begin` / `cffi-end` markers), so the header stays the one place where the API is written.

Flags: the kernels are C99 and must compile cleanly with `-Wall -Wextra -Werror`. On the build
machine they are optimised with `-O3 -march=native`, which turns on the AVX2 / FMA / F16C blocks when
the CPU has them. Set TINYLM_PORTABLE=1 to build the portable C only (no -march=native, so no SIMD
block is compiled in): the build a microcontroller gets, and the one the tests also check.
"""
import glob
import os
import re
import shutil
import subprocess
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "tinylm_kernels.h")
RUNTIME = os.path.join(HERE, "..", "runtime")                  # the C runtime, built on the kernels
RUNTIME_HEADER = os.path.join(RUNTIME, "tinylm_runtime.h")


def _compiler_accepts(flag):
    """Does the C compiler Python builds extensions with accept `flag`? (Some, e.g. Apple's
    clang on arm64, reject -march=native; then we build the portable C rather than nothing.)"""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    try:
        subprocess.run(cc + [flag, "-E", "-x", "c", os.devnull], check=True, capture_output=True,
                       timeout=60)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def compile_flags():
    """The compiler flags for the kernels: strict C99, optimised, SIMD unless TINYLM_PORTABLE=1."""
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O3", "-ffp-contract=off"]
    if os.environ.get("TINYLM_PORTABLE", "") not in ("", "0") or not _compiler_accepts("-march=native"):
        return flags
    return flags + ["-march=native"]


def cdef_source(header=HEADER):
    """The declarations between the cffi markers of a header, comments removed."""
    with open(header, encoding="utf-8") as f:
        text = f.read()
    body = text.split("/* cffi-begin", 1)[1].split("/* cffi-end */", 1)[0]
    body = body.split("\n", 1)[1]                                # drop the rest of the marker line
    return re.sub(r"/\*.*?\*/", "", body, flags=re.DOTALL)


FLAGS = compile_flags()

ffibuilder = FFI()
ffibuilder.cdef(cdef_source() + cdef_source(RUNTIME_HEADER) + "\nconst char *tinylm_build_flags(void);\n")
ffibuilder.set_source(
    "tinylm._kernels",
    '#include "tinylm_kernels.h"\n#include "tinylm_runtime.h"\n'
    f'const char *tinylm_build_flags(void) {{ return "{" ".join(FLAGS)}"; }}\n',
    sources=sorted(glob.glob(os.path.join(HERE, "*.c"))) + sorted(glob.glob(os.path.join(RUNTIME, "tinylm_*.c"))),
    include_dirs=[HERE, RUNTIME],
    depends=sorted(glob.glob(os.path.join(HERE, "*.h")) + glob.glob(os.path.join(HERE, "simd", "*.h")))
    + [RUNTIME_HEADER],
    extra_compile_args=FLAGS,
)

if __name__ == "__main__":
    built = ffibuilder.compile(tmpdir=os.path.join(HERE, "..", "build", "cffi"), target=None, verbose=True)
    shutil.copy(built, os.path.join(HERE, "..", "tinylm"))       # next to tinylm/__init__.py
