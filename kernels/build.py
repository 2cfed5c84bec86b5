"""cffi build script: compiles kernels/*.c into the extension module tinylm._kernels.

(Placeholder until the kernels land: declares nothing yet.)
"""
import glob
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

ffibuilder = FFI()
ffibuilder.cdef("int tinylm_abi_version(void);")
ffibuilder.set_source(
    "tinylm._kernels",
    "static int tinylm_abi_version(void) { return 0; }",
    sources=sorted(glob.glob(os.path.join(HERE, "*.c"))),
    include_dirs=[HERE],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
