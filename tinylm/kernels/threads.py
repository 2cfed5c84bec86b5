"""Rows split across threads: how the C kernels use more than one core.

A kernel call through cffi releases Python's GIL, so two Python threads that each call a kernel on half
of the rows run on two cores at once. That is all the threading tinylm does: a small pool of Python
threads (concurrent.futures), no OpenMP and no threads in C, so the C library stays single-threaded and
free of any runtime (a microcontroller build never sees this file).

How many threads: TINYLM_NUM_THREADS when set, else the variables NumPy's BLAS reads
(OPENBLAS_NUM_THREADS, then OMP_NUM_THREADS), else the CPUs this process may run on. So
`OPENBLAS_NUM_THREADS=1` (what `python -m tinylm.bench` sets unless told otherwise) makes the C kernels
single-threaded too, and one setting decides for both.

    >>> out = []
    >>> run_rows(lambda r0, r1: out.append((r0, r1)), 100, align=12, min_rows=12, threads=2)
    >>> sorted(out)
    [(0, 60), (60, 100)]
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

ENV_VARS = ("TINYLM_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")

_pool = []                  # [] until first needed, then [(ThreadPoolExecutor, its number of workers)]
_pool_lock = threading.Lock()


def num_threads() -> int:
    """Threads the C kernels may use (read at every call, so a test or a benchmark can change it)."""
    for name in ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r}: expected a whole number of threads >= 1") from None
            if n < 1:
                raise ValueError(f"{name}={value!r}: expected a whole number of threads >= 1")
            return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _executor(workers):
    """The shared pool, grown when more workers are asked for than it has."""
    with _pool_lock:
        if not _pool or _pool[0][1] < workers:
            if _pool:
                _pool[0][0].shutdown(wait=False)
            _pool[:] = [(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tinylm"), workers)]
        return _pool[0][0]


def _forget_pool():
    """In a forked child the parent's worker threads do not exist: start a new pool when needed."""
    _pool.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def split_rows(rows: int, align: int, min_rows: int, threads: int) -> list:
    """[(r0, r1), ...]: rows 0 .. rows - 1 cut into at most `threads` blocks of about equal size, each
    starting at a multiple of `align` and at least `min_rows` long (fewer blocks when rows are few)."""
    if rows <= 0:
        return [(0, rows)]
    blocks = max(1, min(threads, rows // max(min_rows, 1)))
    per = -(-rows // blocks)                  # ceil(rows / blocks)
    per = -(-per // align) * align            # rounded up to a multiple of align
    bounds = list(range(0, rows, per)) + [rows]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < min_rows:  # a short tail joins the block before
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))


def run_rows(fn, rows: int, align: int = 1, min_rows: int = 1, threads: int | None = None) -> None:
    """Call fn(r0, r1) on blocks of rows that together cover 0 .. rows - 1, on up to `threads` threads
    (default num_threads()). fn must write only its own rows. This thread runs the first block while
    the pool runs the others; an exception from any block is raised here after all blocks finish."""
    blocks = split_rows(rows, align, min_rows, num_threads() if threads is None else threads)
    if len(blocks) == 1:
        fn(*blocks[0])
        return
    futures = [_executor(len(blocks) - 1).submit(fn, r0, r1) for r0, r1 in blocks[1:]]
    error = None
    try:
        fn(*blocks[0])
    except BaseException as e:  # noqa: BLE001 -- kept, then raised once every block has finished
        error = e
    for f in futures:
        try:
            f.result()
        except BaseException as e:  # noqa: BLE001
            error = error or e
    if error is not None:
        raise error
