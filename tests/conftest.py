import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")

# Tutorials save figures; tests never open windows.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def shakespeare_path():
    """Path to ../shared/data/tinyshakespeare.txt, or skip when the shared data is not beside the repo."""
    path = os.path.join(SHARED, "data", "tinyshakespeare.txt")
    if not os.path.isfile(path):
        pytest.skip(f"shared data not found at {path} (benchmark data lives beside the repo, not in it)")
    return path
