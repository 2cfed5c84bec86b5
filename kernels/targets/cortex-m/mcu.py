"""Build C for an emulated Cortex-M and run it under qemu-system-arm with semihosting.

    python kernels/targets/cortex-m/mcu.py hello --core m4        # startup + semihosting smoke test
    python kernels/targets/cortex-m/mcu.py test --core m3         # tinylm's golden C test on an M3
    python kernels/targets/cortex-m/mcu.py test --core all        # every core below
    python kernels/targets/cortex-m/mcu.py test --core m4 --opt Os   # optimised for size

The golden test is tests/c/test_kernels.c (the same program the PC build runs under sanitizers)
linked with kernels/*.c, this folder's startup.c and link.ld, and a fresh vectors.h written by
tests/c/gen_vectors.py from the NumPy references. Everything is built in a temporary folder (or
--out DIR), never in the source tree. Needs `arm-none-eabi-gcc` and `qemu-system-arm`. Chapter 11
(tutorials/11-microcontroller.md) walks through it; tests/test_mcu.py runs it for every core.

Each core is one emulated board (QEMU machine) plus the compiler flags of its floating-point unit:
M3 has no FPU (floats in software), M4F single precision, M7 double precision, M55 adds Helium (MVE).
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
KERNELS = os.path.join(ROOT, "kernels")
TESTS_C = os.path.join(ROOT, "tests", "c")

GCC = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"


@dataclass(frozen=True)
class Core:
    name: str        # "m4"
    cpu: str         # the core, as GCC spells it
    machine: str     # the QEMU board that has this core
    flags: tuple     # the floating-point ABI and unit


# -mfp16-format=ieee gives the M3/M4/M7 the __fp16 type (GCC's default there is "none"; the M55
# has it built in): with it GCC converts halves with one VCVTB instruction on the cores with an FPU.
CORES = {
    "m3": Core("m3", "cortex-m3", "mps2-an385",
               ("-mcpu=cortex-m3", "-mfloat-abi=soft", "-mfp16-format=ieee")),
    "m4": Core("m4", "cortex-m4", "mps2-an386",
               ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mfp16-format=ieee")),
    "m7": Core("m7", "cortex-m7", "mps2-an500",
               ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-mfp16-format=ieee")),
    "m55": Core("m55", "cortex-m55", "mps3-an547", ("-mcpu=cortex-m55", "-mfloat-abi=hard")),
}

# Strict C99 like the PC build; -ffp-contract=off so no a*b+c is fused behind the contract's back.
CFLAGS = ("-mthumb", "-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off",
          "-ffunction-sections", "-fdata-sections")
# Our own startup and memory map; newlib's rdimon library turns printf and exit into semihosting.
LDFLAGS = ("--specs=rdimon.specs", "-nostartfiles", "-T", os.path.join(HERE, "link.ld"),
           "-Wl,--gc-sections")


def toolchain_missing() -> str | None:
    """None when the cross compiler and the emulator are on PATH, else what is missing (a reason)."""
    missing = [tool for tool in (GCC, QEMU) if shutil.which(tool) is None]
    if not missing:
        return None
    return (f"{' and '.join(missing)} not found; install with: apt-get install -y "
            "--no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm")


def get_core(name: str) -> Core:
    try:
        return CORES[name]
    except KeyError:
        raise ValueError(f"core {name!r} is unknown; expected one of {', '.join(CORES)}") from None


def kernel_sources() -> list:
    """kernels/*.c: every kernel, exactly the files the cffi build compiles for the PC."""
    return sorted(glob.glob(os.path.join(KERNELS, "*.c")))


def compile_object(core: Core, source: str, out: str, opt: str = "-O2", extra=()) -> str:
    """One .c -> .o for `core` (no linking): what `arm-none-eabi-size` and `-nm` look at."""
    _run([GCC, *core.flags, *CFLAGS, opt, f"-I{KERNELS}", *extra, "-c", source, "-o", out])
    return out


def build(core: Core, sources, out: str, opt: str = "-O2", include_dirs=(), extra=()) -> str:
    """Compile and link `sources` + startup.c into an ELF for `core`; returns its path."""
    includes = [f"-I{d}" for d in include_dirs] + [f"-I{KERNELS}"]
    _run([GCC, *core.flags, *CFLAGS, opt, *includes, *extra,
          os.path.join(HERE, "startup.c"), *sources, *LDFLAGS, "-o", out])
    return out


def run(core: Core, elf: str, timeout: float = 60, plugin_args=()) -> subprocess.CompletedProcess:
    """Run `elf` on the emulated board; QEMU's exit status is the program's (semihosting exit)."""
    cmd = [QEMU, "-M", core.machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", *plugin_args, "-kernel", elf]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def write_vectors(folder: str, seed: int = 0) -> str:
    """A fresh tests/c/vectors.h from the NumPy references, written into `folder`."""
    path = os.path.join(folder, "vectors.h")
    _run([sys.executable, os.path.join(TESTS_C, "gen_vectors.py"), path, "--seed", str(seed)])
    return path


def build_golden(core: Core, folder: str, seed: int = 0, opt: str = "-O2", extra=()) -> str:
    """tests/c/test_kernels.c + kernels/*.c for `core`, with fresh vectors; returns the ELF path."""
    if not os.path.exists(os.path.join(folder, "vectors.h")):
        write_vectors(folder, seed)
    # `#include "vectors.h"` looks first beside the file that includes it, so the program is copied
    # next to the fresh header; compiled in place it would silently use the committed tests/c one.
    program = os.path.join(folder, "test_kernels.c")
    shutil.copyfile(os.path.join(TESTS_C, "test_kernels.c"), program)
    return build(core, [*kernel_sources(), program],
                 os.path.join(folder, f"test_kernels_{core.name}.elf"), opt, extra=extra)


def _run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} failed ({done.returncode}):\n"
                           f"{' '.join(cmd)}\n{done.stdout}{done.stderr}")
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["hello", "test"],
                        help="hello: the startup smoke test; test: tinylm's golden kernel test")
    parser.add_argument("--core", default="m4", help=f"one of {', '.join(CORES)}, or all")
    parser.add_argument("--opt", default="O2", choices=["O0", "O1", "O2", "O3", "Os"],
                        help="optimisation level, without the dash (default O2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test vectors")
    parser.add_argument("--out", help="build folder (default: a temporary one, deleted afterwards)")
    args = parser.parse_args(argv)
    reason = toolchain_missing()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    cores = list(CORES.values()) if args.core == "all" else [get_core(args.core)]
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or tmp
        os.makedirs(folder, exist_ok=True)
        for core in cores:
            if args.what == "hello":
                elf = build(core, [os.path.join(HERE, "hello.c")],
                            os.path.join(folder, f"hello_{core.name}.elf"), f"-{args.opt}")
            else:
                elf = build_golden(core, folder, args.seed, f"-{args.opt}")
            done = run(core, elf)
            print(f"== {core.cpu} on {core.machine}: exit status {done.returncode}")
            print(done.stdout + done.stderr, end="")
            status = status or done.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
