"""`tinylm info`: what this installation of tinylm is and which kernels it runs on.

    $ tinylm info
    tinylm 0.1.0
    python 3.11.7 (/usr/bin/python3)
    numpy 2.4.6
    kernels: c (TINYLM_KERNELS=numpy forces the NumPy references)
    compiled with: -std=c99 -Wall -Wextra -Werror -O3 -ffp-contract=off -march=native
    SIMD paths: avx2 fma f16c portable
    malloc: mmap threshold 32 MB, trim threshold 512 MB (set by tinylm.process; TINYLM_MALLOC=0 to ...)
    ...
"""
import os
import platform
import sys

import numpy as np

import tinylm
from tinylm import process

# environment variables that change what tinylm does, and what each one means
ENV_VARS = [
    ("TINYLM_KERNELS", "numpy forces the NumPy reference kernels; c or unset: C when built"),
    ("TINYLM_PORTABLE", "at build time, 1 compiles the portable C only (no -march=native, no SIMD)"),
    ("TINYLM_DEBUG", "1 shows the traceback of a command's error"),
    ("TINYLM_TRUST_PATTERN", "1 runs a custom pre-split regex found in a tokenizer file (default: gpt2/gpt4 only)"),
    ("TINYLM_MALLOC", "0 leaves glibc's malloc as it is (by default the tinylm command raises its thresholds)"),
    ("OPENBLAS_NUM_THREADS", "NumPy's BLAS threads (python -m tinylm.bench sets 1 when unset)"),
    ("OMP_NUM_THREADS", "OpenMP threads (python -m tinylm.bench sets 1 when unset)"),
]


def register(sub):
    p = sub.add_parser("info", help="print version, kernel backend and build flags",
                       description="Print tinylm's version, the kernel backend in use (C or NumPy), "
                                   "the compiler flags and SIMD paths compiled in, and the environment "
                                   "variables tinylm reads.")
    p.set_defaults(func=run)


def run(args):
    from tinylm import kernels

    print(f"tinylm {tinylm.__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"numpy {np.__version__}")
    info = kernels.build_info()
    print(f"kernels: {info['backend']} (TINYLM_KERNELS=numpy forces the NumPy references)")
    if info["flags"] is None:
        print("compiled with: (the C extension tinylm._kernels is not built)")
        print("SIMD paths: none")
    else:
        print(f"compiled with: {info['flags']}")
        print(f"SIMD paths: {info['simd']}")
    print(process.tune_malloc())  # what the tinylm command set (cli.main calls it first)
    print("environment:")
    for name, meaning in ENV_VARS:
        setting = f"{name}={os.environ.get(name, '(unset)')}"
        print(f"  {setting:<30} {meaning}")
    return 0
