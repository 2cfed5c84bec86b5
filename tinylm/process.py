"""Settings of the whole Python process that make tinylm faster, applied only when asked.

Nothing in tinylm changes the process as a side effect of being imported. The entry points that run
heavy NumPy work call these functions explicitly: the `tinylm` command (cli.main), `python -m
tinylm.bench`, and `tinylm.train.train`. Each call is cheap and idempotent.

    >>> tune_malloc().startswith("malloc: ")
    True
"""
import ctypes
import os
import sys

try:
    import resource  # POSIX only
except ImportError:
    resource = None

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

_malloc_settings = None  # the line tune_malloc() returned, once it ran


def tune_malloc():
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS at once.

    Every operation allocates arrays of ~1 MB (a (768, 512) float32 activation is 1.5 MB). By default
    glibc serves such sizes with mmap and gives them back on free, so the next operation page-faults its
    way through fresh memory; on a virtual machine that costs more than the arithmetic (a Linear layer
    measured 2.5x slower). Raising the mmap threshold to 32 MB and the trim threshold to 512 MB keeps that
    memory in the process. Skipped when not on glibc, when the user set MALLOC_MMAP_THRESHOLD_ or
    MALLOC_TRIM_THRESHOLD_ themselves, or when TINYLM_MALLOC=0. Returns a line for `tinylm info`.
    """
    global _malloc_settings
    if _malloc_settings is None:
        _malloc_settings = _set_malloc_thresholds()
    return _malloc_settings


def _set_malloc_thresholds():
    if os.environ.get("TINYLM_MALLOC", "1") == "0":
        return "malloc: default (TINYLM_MALLOC=0)"
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return "malloc: as set by the MALLOC_*_ environment variables"
    if not sys.platform.startswith("linux"):
        return "malloc: default (not Linux)"
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 512 << 20)
    except (OSError, AttributeError):
        return "malloc: default (no glibc mallopt)"
    return ("malloc: mmap threshold 32 MB, trim threshold 512 MB (set by tinylm.process; TINYLM_MALLOC=0 to "
            "skip)" if ok else "malloc: default (mallopt refused)")


def single_threaded_blas():
    """Make NumPy's BLAS single-threaded unless the user chose a thread count (the benchmarks compare
    one core with one core). BLAS reads these variables once, when NumPy is first imported, so this
    must run before anything imports NumPy; returns False when NumPy was already imported."""
    for var in THREAD_VARIABLES:
        os.environ.setdefault(var, "1")
    return "numpy" not in sys.modules


def available_memory():
    """Bytes this process can still allocate, as far as the system says, or None when it does not say.

    The smallest of: the kernel's MemAvailable plus free swap (/proc/meminfo), what the cgroup still
    allows (a container's memory.max minus memory.current) and the address-space limit (ulimit -v).
    Loaders compare their estimate of a model's bytes with this before allocating anything, so a
    config that asks for terabytes is a clear error instead of a process killed by the OOM killer.
    """
    limits = []
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
        if "MemAvailable" in info:
            limits.append(info["MemAvailable"] + info.get("SwapFree", 0))
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            maximum = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            current = int(f.read().strip())
        if maximum != "max":
            limits.append(max(int(maximum) - current, 0))
    except (OSError, ValueError):
        pass
    if resource is not None:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(max(soft - _address_space_used(), 0))
    return min(limits) if limits else None


def _address_space_used():
    """This process's virtual memory size in bytes (VmSize), 0 when the system does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def check_fits_in_memory(nbytes, what):
    """Raise MemoryError naming `what` when `nbytes` is more than `available_memory()` (when known).

    >>> check_fits_in_memory(1000, "a tiny model")          # fine: nothing happens
    """
    available = available_memory()
    if available is not None and nbytes > available:
        raise MemoryError(f"{what} needs about {_gigabytes(nbytes)} of memory; this machine has "
                          f"{_gigabytes(available)} available")


def _gigabytes(n):
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"
