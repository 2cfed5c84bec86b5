"""A short coverage-guided fuzzing run of every loader (atheris; tests/fuzz/fuzz.py says how to run
longer ones). Each target gets RUNS inputs mutated from its valid seeds, with a fixed libFuzzer seed,
so a run is the same on every machine (a time limit would make CI explore further on a faster CPU and
fail on findings nobody can reproduce); a crash, a timeout or an out-of-memory finding fails the test
with libFuzzer's report. Skipped where atheris is not installed
(it has wheels for CPython 3.8-3.12 on Linux x86-64: pip install atheris)."""
import os
import subprocess
import sys

import pytest
from fuzz import targets

pytest.importorskip("atheris")
pytestmark = pytest.mark.slow

FUZZ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz", "fuzz.py")
RUNS, SEED = 300, 20261202  # longer, randomised runs: tests/fuzz/fuzz.py's docstring


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_a_short_fuzzing_run_finds_nothing(name, tmp_path):
    result = subprocess.run([sys.executable, FUZZ, name, f"-runs={RUNS}", f"-seed={SEED}", "-max_total_time=60",
                             "-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr  # libFuzzer ran and reported its runs
