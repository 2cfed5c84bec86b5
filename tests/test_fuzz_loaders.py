"""Every loader against mutated files (hypothesis): a clear ValueError/OSError or success, nothing else.

Each test starts from valid files (tests/fuzz/targets.py makes them) and applies a few random
mutations: flipped bytes, cuts, inserted bytes, duplicated spans, and, for JSON, a value somewhere in
the tree replaced by an extreme one (-1, 2**63, 1e308, NaN, deep nesting, a list where a string was
expected ...). The run is bounded and the same every time (EXAMPLES per loader, ~1-4 s each);
TINYLM_FUZZ_EXAMPLES=5000 runs longer, with new random mutations each time. The coverage-guided
fuzzer in tests/fuzz/fuzz.py goes deeper.
"""
import copy
import json
import math
import os

import pytest
from fuzz import targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("TINYLM_FUZZ_EXAMPLES", 0)) or 60
EXTREMES = [-1, 0, 2**31, 2**63, -(2**63), 10**400, 1e308, math.inf, math.nan, "", "x" * 300, [], {}, None,
            True, ["F32"], {"a": {}}, json.loads("[" * 40 + "]" * 40)]


def _json_paths(value, path=()):
    """Every place in a JSON tree: (path to it, ...)."""
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _json_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:50]):
            yield from _json_paths(v, path + (i,))


def _get(value, path):
    for key in path:
        value = value[key]
    return value


def _replace(value, path, new):
    if not path:
        return new
    value[path[0]] = _replace(value[path[0]], path[1:], new)
    return value


@st.composite
def mutated(draw, name):
    """A seed of target `name` with 1-4 mutations; JSON seeds get structure-aware ones too."""
    seed = draw(st.sampled_from(targets.seeds(name)))
    head, data = (seed[:2], seed[2:]) if name in ("run", "quantized", "hf") else (b"", seed)
    try:
        tree = json.loads(data)
    except ValueError:
        tree = None
    if tree is not None and draw(st.booleans()):  # 1-3 values of the tree made extreme, or keys deleted
        for _ in range(draw(st.integers(1, 3))):
            paths = list(_json_paths(tree))
            path = paths[draw(st.integers(0, len(paths) - 1))]
            if path and draw(st.integers(0, 3)) == 0:
                parent = _get(tree, path[:-1])
                del parent[path[-1]]
            else:
                tree = _replace(tree, path, copy.deepcopy(draw(st.sampled_from(EXTREMES))))  # never the constant itself
        data = json.dumps(tree).encode()
    data = bytearray(data)
    for _ in range(draw(st.integers(0 if tree is not None else 1, 4))):
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "cut", "insert", "duplicate", "digits"]))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i:i + draw(st.integers(1, 64))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "duplicate":
            data[i:i] = data[i:i + draw(st.integers(1, 256))]
        else:  # a digit becomes a long number: sizes, ids and offsets grow
            data[i:i] = b"9" * draw(st.integers(1, 24))
    if head:  # the same file of the folder (mostly), re-hashed in state.json or not
        which = head[0] if draw(st.integers(0, 7)) else draw(st.integers(0, 255))
        head = bytes([which, draw(st.integers(0, 1))])
    return head + bytes(data)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_a_mutated_file_gives_a_clear_error_or_loads(name):
    @settings(max_examples=EXAMPLES, deadline=2000, database=None, derandomize="TINYLM_FUZZ_EXAMPLES" not in os.environ,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated(name))
    def check(data):
        targets.check(name, data)

    check()


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_the_seed_files_load(name):
    """The fuzzers start from files that load: a target that fails on its seeds tests nothing."""
    for data in targets.seeds(name):
        targets.TARGETS[name](data)
