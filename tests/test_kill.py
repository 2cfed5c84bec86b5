"""SIGKILL at any moment of a training, then resume: the same losses and weights, bit for bit.

A run is killed again and again, each time by SIGKILL (no cleanup, no Python handler), at a moment
chosen two ways:
- at the k-th call of a function of the checkpoint code (a .npz or JSON write, state.json's commit,
  the renames after it, an fsync in the middle of an atomic write): the dangerous moments, each hit
  on purpose (tests/kill_driver.py wraps the function in the child process);
- after a random delay (seeded), wherever the run happens to be.
After each kill the run is resumed (or, when it died before its first checkpoint, started again), and
in the end its loss history and weights must equal those of a run that was never interrupted. The same
holds for a `--force` restart over an older run: killed anywhere, the folder never mixes the two runs.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinylm.fileio import load_npz
from tinylm.io import runs

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "kill_driver.py")
MAX_ITERS = 16
SETTINGS = ["--vocab-size", "260", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8",
            "--dropout", "0.1", "--max-iters", str(MAX_ITERS), "--eval-interval", "2", "--eval-iters", "2",
            "--batch-size", "4", "--quiet"]
# the moments aimed at: (module, function, which call); tinylm.io.runs imported save_npz/save_json by name
# In order, each certain to come: a fresh start killed before model.npz.next, before loss.json.next,
# before the commit (state.json); the first checkpoint killed in its renames (committed: step 2); the
# resumed run killed before step 6's optimizer.npz.next (committed: 4), in step 6's loss.csv after its
# commit (committed: 6), in step 8's renames (committed: 8).
KILL_POINTS = [("tinylm.io.runs", "save_npz", 2), ("tinylm.io.runs", "save_json", 2),
               ("tinylm.io.runs", "save_json", 3), ("tinylm.io.runs", "_promote", 2),
               ("tinylm.io.runs", "save_npz", 4), ("os", "fsync", 7), ("tinylm.io.runs", "_promote", 4)]
# a --force restart over an older run, killed: before the old run is removed, while the new tokens are
# written, inside the new run's first checkpoint, between its commit and its renames
FORCE_KILL_POINTS = [("tinylm.io.runs", "remove_run", 1), ("tinylm.io.runs", "save_npz", 1),
                     ("tinylm.io.runs", "save_npz", 2), ("tinylm.io.runs", "save_json", 2),
                     ("tinylm.io.runs", "_promote", 1)]


def _tinylm(args, kill_at=None, kill_after=None):
    """Run `tinylm ARGS` in a child process; kill it at a function call or after some seconds."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    if kill_at is not None:
        env["TINYLM_KILL_AT"] = ":".join(map(str, kill_at))
    child = subprocess.Popen([sys.executable, DRIVER, *map(str, args)], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is not None:
        try:
            child.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
    _, err = child.communicate(timeout=120)
    return child.returncode, err.decode()


def _continue(out, corpus, extra=()):
    """What a user does after a crash: resume when there is a checkpoint, else start the run again."""
    if runs.has_checkpoint(out) and os.path.exists(os.path.join(out, runs.STATE)):
        return ["train", "--out", out, "--resume", "--quiet"]
    return ["train", "--data", corpus, "--out", out, *SETTINGS, *extra, "--force"]


def _finish(out, corpus):
    """Resume until the run is complete; it leaves no temporary file behind."""
    while True:
        status, err = _tinylm(_continue(out, corpus))
        assert status == 0, err
        if json.load(open(os.path.join(out, "loss.json")))["step"][-1] == MAX_ITERS:
            break
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def _result(out):
    history = json.load(open(os.path.join(out, "loss.json")))
    return history, load_npz(os.path.join(out, "model.npz")), runs.load_tokens(out)


def _assert_same_run(a, b):
    (history_a, weights_a, tokens_a), (history_b, weights_b, tokens_b) = a, b
    assert history_a == history_b  # every step's loss and every evaluation, exactly
    assert weights_a.keys() == weights_b.keys()
    assert all(np.array_equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert all(np.array_equal(x, y) for x, y in zip(tokens_a, tokens_b))


def _assert_never_mixed(out, tokens_of):
    """Whatever a kill left: a committed run's tokens are its own (or there is no run to read)."""
    try:
        train_ids, _ = runs.load_tokens(out)
        config = runs.load_run_config(out)
    except (OSError, ValueError):
        return
    assert np.array_equal(train_ids, tokens_of[config["train"]["data"]])


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpora")
    paths = []
    for i, text in enumerate(["the quick brown fox jumps over the lazy dog. ",
                              "pack my box with five dozen liquor jugs! "]):
        path = folder / f"corpus{i}.txt"
        path.write_text(text * 60)
        paths.append(str(path))
    return paths


def test_killed_anywhere_then_resumed_gives_the_uninterrupted_run(tmp_path, corpora):
    corpus = corpora[0]
    reference = tmp_path / "reference"
    seconds = time.perf_counter()
    status, err = _tinylm(["train", "--data", corpus, "--out", reference, *SETTINGS])
    seconds = time.perf_counter() - seconds  # a whole run, start-up included: the random kills fall in it
    assert status == 0, err
    expected = _result(reference)

    out = str(tmp_path / "killed")
    for kill_at in KILL_POINTS:  # aimed: one kill at each dangerous moment, resuming after each
        status, err = _tinylm(_continue(out, corpus), kill_at=kill_at)
        assert status == -signal.SIGKILL, (kill_at, err)
    _finish(out, corpus)
    _assert_same_run(_result(out), expected)

    out = str(tmp_path / "killed-at-random")
    rng, scale, random_kills = random.Random(17), seconds, 0
    for _ in range(20):  # random moments of a run started afresh, each kill after more of it is done
        status, err = _tinylm(_continue(out, corpus), kill_after=rng.uniform(0.3, 0.9) * scale)
        assert status in (0, -signal.SIGKILL), err
        random_kills += status == -signal.SIGKILL
        if random_kills == 4:
            break
        if status == 0:  # it finished first (the machine got faster): check it, then again, sooner
            _assert_same_run(_result(out), expected)
            shutil.rmtree(out)
            scale *= 0.7
    assert random_kills == 4
    _finish(out, corpus)
    _assert_same_run(_result(out), expected)


def test_a_force_restart_killed_anywhere_never_mixes_two_runs(tmp_path, corpora):
    old_corpus, new_corpus = corpora
    reference = tmp_path / "reference"
    assert _tinylm(["train", "--data", new_corpus, "--out", reference, *SETTINGS])[0] == 0
    expected = _result(reference)
    tokens_of = {old_corpus: None, new_corpus: expected[2][0]}

    old_run = tmp_path / "old-run"
    assert _tinylm(["train", "--data", old_corpus, "--out", old_run, *SETTINGS])[0] == 0
    tokens_of[old_corpus] = runs.load_tokens(old_run)[0]
    out = str(tmp_path / "restarted")
    start = time.perf_counter()
    for kill_at in FORCE_KILL_POINTS:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(old_run, out)  # the folder holds the old run, and a --force restart is killed
        status, err = _tinylm(["train", "--data", new_corpus, "--out", out, *SETTINGS, "--force"], kill_at=kill_at)
        assert status == -signal.SIGKILL, err
        _assert_never_mixed(out, tokens_of)
        if os.path.exists(os.path.join(out, runs.STATE)):  # what the user may do next: resume, killed again
            _tinylm(_continue(out, new_corpus), kill_after=0.8)
            _assert_never_mixed(out, tokens_of)
    assert time.perf_counter() - start < 60
    status, err = _tinylm(["train", "--data", new_corpus, "--out", out, *SETTINGS, "--force"])
    assert status == 0, err
    _assert_same_run(_result(out), expected)


def test_an_fp16_run_killed_anywhere_then_resumed_gives_the_uninterrupted_run(tmp_path, corpora):
    """Mixed precision adds state to a step (the loss scale, in state.json): it resumes exactly too."""
    corpus, fp16 = corpora[0], ["--precision", "fp16"]
    reference = tmp_path / "reference"
    status, err = _tinylm(["train", "--data", corpus, "--out", reference, *SETTINGS, *fp16])
    assert status == 0, err
    expected = _result(reference)
    assert json.load(open(reference / runs.STATE))["loss_scale"]["clean_steps"] == MAX_ITERS
    out = str(tmp_path / "killed")
    for kill_at in KILL_POINTS:
        status, err = _tinylm(_continue(out, corpus, fp16), kill_at=kill_at)
        assert status == -signal.SIGKILL, (kill_at, err)
    _finish(out, corpus)
    _assert_same_run(_result(out), expected)
    assert json.load(open(os.path.join(out, runs.STATE)))["loss_scale"]["clean_steps"] == MAX_ITERS  # carried over
