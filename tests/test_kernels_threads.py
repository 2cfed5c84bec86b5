"""tinylm.kernels.threads: how many threads, how rows are cut, and that every block runs exactly once."""
import os
import threading

import pytest

from tinylm.kernels import threads
from tinylm.kernels.threads import num_threads, run_rows, split_rows


@pytest.fixture
def clean_env(monkeypatch):
    for name in threads.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_thread_count_comes_from_tinylm_then_blas_variables(clean_env):
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert num_threads() == 3
    clean_env.setenv("OPENBLAS_NUM_THREADS", "2")
    assert num_threads() == 2                       # NumPy's BLAS variable before OpenMP's
    clean_env.setenv("TINYLM_NUM_THREADS", " 5 ")
    assert num_threads() == 5                       # tinylm's own before both


def test_thread_count_defaults_to_the_cpus_this_process_may_use(clean_env):
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert num_threads() == expected


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_names_the_variable(clean_env, value):
    clean_env.setenv("OPENBLAS_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"OPENBLAS_NUM_THREADS={value!r}: expected a whole number"):
        num_threads()


@pytest.mark.parametrize("rows, align, min_rows, n", [(768, 12, 12, 2), (770, 12, 24, 3), (100, 12, 12, 4),
                                                     (25, 12, 12, 2), (11, 12, 12, 2), (5000, 1, 1, 7)])
def test_blocks_cover_the_rows_once_aligned_and_long_enough(rows, align, min_rows, n):
    blocks = split_rows(rows, align, min_rows, n)
    assert blocks[0][0] == 0 and blocks[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))          # contiguous, no overlap
    assert 1 <= len(blocks) <= n
    assert all(r0 % align == 0 for r0, _ in blocks)
    if len(blocks) > 1:
        assert all(r1 - r0 >= min_rows for r0, r1 in blocks)


def test_big_work_uses_every_thread_and_small_work_one():
    assert len(split_rows(768, 12, 12, 2)) == 2
    assert split_rows(20, 12, 12, 2) == [(0, 20)]                           # two blocks would be < 12 rows
    assert split_rows(768, 12, 12, 1) == [(0, 768)]


def test_run_rows_runs_each_block_once_on_several_threads():
    seen, names = [], set()

    def work(r0, r1):
        seen.append((r0, r1))
        names.add(threading.current_thread().name)

    run_rows(work, 1000, align=8, min_rows=8, threads=4)
    assert sorted(seen) == split_rows(1000, 8, 8, 4) and len(seen) == 4
    assert threading.current_thread().name in names and len(names) >= 2   # the caller runs one block


def test_an_error_in_a_block_is_raised_after_every_block_finished():
    done = []

    def work(r0, r1):
        if r0 > 0:
            raise RuntimeError(f"block {r0} failed")
        done.append(r0)

    with pytest.raises(RuntimeError, match="block .* failed"):
        run_rows(work, 100, threads=3)
    assert done == [0]                              # the caller's own block still ran
