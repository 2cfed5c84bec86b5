import os

import pytest

from tinylm.kernels import threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")

# Tutorials save figures; tests never open windows.
os.environ.setdefault("MPLBACKEND", "Agg")


THREAD_VARS = threads.ENV_VARS + ("MKL_NUM_THREADS",)  # tinylm's and the BLAS's, all that bench's main sets


@pytest.fixture(autouse=True)
def thread_variables_restored():
    """`python -m tinylm.bench`'s main sets OPENBLAS_NUM_THREADS=1 for what it imports next; a test that
    calls it must not leave that (or any other thread count) to the tests after it."""
    before = {name: os.environ.get(name) for name in THREAD_VARS}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def shakespeare_path():
    """Path to ../shared/data/tinyshakespeare.txt, or skip when the shared data is not beside the repo."""
    path = os.path.join(SHARED, "data", "tinyshakespeare.txt")
    if not os.path.isfile(path):
        pytest.skip(f"shared data not found at {path} (benchmark data lives beside the repo, not in it)")
    return path
