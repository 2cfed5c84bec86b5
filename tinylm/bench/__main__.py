"""`python -m tinylm.bench SUITE [options]`: run one benchmark suite.

Every suite runs single-threaded unless told otherwise: NumPy's BLAS reads its thread count once, when
NumPy is first imported, so it is set here, before any suite imports NumPy. Set OPENBLAS_NUM_THREADS
(or OMP_NUM_THREADS, MKL_NUM_THREADS) yourself to measure with more threads.

Each run first prints the CPU model and the code paths the C kernels' build chose (tinylm/bench/machine.py),
so that a table from another machine can be read.
"""
import importlib
import sys

from tinylm import process

process.single_threaded_blas()  # before any suite imports NumPy

from tinylm.bench import SUITES  # noqa: E402  (after the thread settings, on purpose)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUITES:
        import tinylm.bench
        print(tinylm.bench.__doc__.strip() + "\n\n" + __doc__.strip())
        print("\n`python -m tinylm.bench SUITE --help` lists a suite's options.")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    process.tune_malloc()
    from tinylm.bench.machine import describe
    print("\n".join(describe()) + "\n")           # the CPU and the kernels' paths, once, for every suite
    try:
        return importlib.import_module(f"tinylm.bench.{argv[0]}").main(argv[1:]) or 0
    except (OSError, ValueError) as exc:  # a missing corpus, a bad value: one line, not a traceback
        print(f"python -m tinylm.bench {argv[0]}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
