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

Cache sizes: the SIMD matmuls cut their operands into blocks that fit the build machine's L1 data
cache and L2 (kernels/simd/matmul_avx512.h says how). With -march=native, cache_sizes() reads them:
`getconf LEVEL1_DCACHE_SIZE` / `getconf LEVEL2_CACHE_SIZE` (glibc's sysconf), else Linux's
/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}, else macOS's `sysctl hw.l1dcachesize
hw.l2cachesize`; it passes them as -DTL_L1D_BYTES=... -DTL_L2_BYTES=... (TINYLM_L1D_BYTES and
TINYLM_L2_BYTES override them, for a build meant for another machine). Portable builds pass nothing,
and the kernels' defaults (32 KB, 1 MB) are read by no portable code: only the SIMD blocks use them,
so a Cortex-M build is the same as before.
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


def _sysfs_cache_sizes():
    """{(level, type): bytes} from Linux's /sys/devices/system/cpu/cpu0/cache/index*/ ("48K" -> 49152)."""
    sizes = {}
    for index in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            with open(os.path.join(index, "level")) as f:
                level = int(f.read())
            with open(os.path.join(index, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(index, "size")) as f:
                text = f.read().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:], 1)
        if text.rstrip("KM").isdigit():
            sizes[level, kind] = int(text.rstrip("KM")) * scale
    return sizes


def _command_number(command):
    """The number a command prints (getconf, sysctl), or 0 when it fails or prints something else."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return 0
    return int(out) if out.isdigit() else 0


def cache_sizes():
    """(L1 data cache bytes, L2 bytes per core) of this machine, each None when it cannot be found:
    TINYLM_L1D_BYTES / TINYLM_L2_BYTES if set, else getconf, else sysfs, else sysctl (macOS)."""
    found = {}
    for key, env, name, sysfs, sysctl in (("l1d", "TINYLM_L1D_BYTES", "LEVEL1_DCACHE_SIZE", (1, "Data"),
                                           "hw.l1dcachesize"),
                                          ("l2", "TINYLM_L2_BYTES", "LEVEL2_CACHE_SIZE", (2, "Unified"),
                                           "hw.l2cachesize")):
        value = os.environ.get(env, "")
        if value:
            if not value.isdigit() or int(value) <= 0:
                raise SystemExit(f"kernels/build.py: {env}={value!r}; expected a positive number of bytes")
            found[key] = int(value)
            continue
        value = _command_number(["getconf", name]) or _sysfs_cache_sizes().get(sysfs, 0)
        value = value or _command_number(["sysctl", "-n", sysctl])
        found[key] = value if value > 0 else None
    return found["l1d"], found["l2"]


def compile_flags():
    """The compiler flags for the kernels: strict C99, optimised, SIMD unless TINYLM_PORTABLE=1, and
    for a SIMD build the cache sizes of this machine (-DTL_L1D_BYTES, -DTL_L2_BYTES) when found."""
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O3", "-ffp-contract=off"]
    if os.environ.get("TINYLM_PORTABLE", "") not in ("", "0") or not _compiler_accepts("-march=native"):
        return flags
    l1d, l2 = cache_sizes()
    caches = ([f"-DTL_L1D_BYTES={l1d}"] if l1d else []) + ([f"-DTL_L2_BYTES={l2}"] if l2 else [])
    return flags + ["-march=native"] + caches


def cdef_source(header=HEADER):
    """The declarations between the cffi markers of a header, comments removed."""
    with open(header, encoding="utf-8") as f:
        text = f.read()
    body = text.split("/* cffi-begin", 1)[1].split("/* cffi-end */", 1)[0]
    body = body.split("\n", 1)[1]                                # drop the rest of the marker line
    return re.sub(r"/\*.*?\*/", "", body, flags=re.DOTALL)


FLAGS = compile_flags()

# Host-side C of the extension module (not a kernel: the kernels make no OS call). AMX tiles need the
# OS's permission first: on Linux, arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) for the process,
# then ARCH_GET_XCOMP_PERM to check it. tinylm/kernels/__init__.py calls this once, before the first
# tinylm_*_s8_amx call, and uses the VNNI kernels when it returns 0 (refused, not Linux, or a build
# without AMX).
HOST_C = r"""
#if defined(__linux__) && defined(__x86_64__) && defined(__AMX_TILE__)
#include <sys/syscall.h>
#include <unistd.h>
#define TL_ARCH_GET_XCOMP_PERM 0x1022
#define TL_ARCH_REQ_XCOMP_PERM 0x1023
#define TL_XFEATURE_XTILEDATA 18
#endif
int tinylm_host_amx_request(void)
{
#if defined(__linux__) && defined(__x86_64__) && defined(__AMX_TILE__)
    unsigned long granted = 0;
    if (syscall(SYS_arch_prctl, TL_ARCH_REQ_XCOMP_PERM, TL_XFEATURE_XTILEDATA) != 0)
        return 0;
    if (syscall(SYS_arch_prctl, TL_ARCH_GET_XCOMP_PERM, &granted) != 0)
        return 0;
    return (int)((granted >> TL_XFEATURE_XTILEDATA) & 1);
#else
    return 0;
#endif
}
"""

ffibuilder = FFI()
ffibuilder.cdef(cdef_source() + cdef_source(RUNTIME_HEADER) + "\nconst char *tinylm_build_flags(void);\n"
                + "int tinylm_host_amx_request(void);\n")
ffibuilder.set_source(
    "tinylm._kernels",
    '#include "tinylm_kernels.h"\n#include "tinylm_runtime.h"\n'
    f'const char *tinylm_build_flags(void) {{ return "{" ".join(FLAGS)}"; }}\n' + HOST_C,
    sources=sorted(glob.glob(os.path.join(HERE, "*.c"))) + sorted(glob.glob(os.path.join(RUNTIME, "tinylm_*.c"))),
    include_dirs=[HERE, RUNTIME],
    depends=sorted(glob.glob(os.path.join(HERE, "*.h")) + glob.glob(os.path.join(HERE, "simd", "*.h")))
    + [RUNTIME_HEADER],
    extra_compile_args=FLAGS,
)

if __name__ == "__main__":
    built = ffibuilder.compile(tmpdir=os.path.join(HERE, "..", "build", "cffi"), target=None, verbose=True)
    shutil.copy(built, os.path.join(HERE, "..", "tinylm"))       # next to tinylm/__init__.py
