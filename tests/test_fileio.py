import json
import os

import numpy as np
import pytest

from tinylm.fileio import atomic_open, load_json, load_npz, save_json, save_npz
from tinylm.progress import Progress, format_seconds


def test_json_round_trip_keeps_non_ascii(tmp_path):
    path = tmp_path / "a.json"
    save_json(path, {"text": "我喜欢学习AI", "n": 3})
    assert load_json(path) == {"text": "我喜欢学习AI", "n": 3}
    assert "我喜欢" in path.read_text(encoding="utf-8")


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "ckpt.json"
    save_json(path, {"step": 1})
    with pytest.raises(TypeError):
        save_json(path, {"step": object()})  # not JSON-serialisable: fails mid-write
    assert json.loads(path.read_text()) == {"step": 1}
    assert os.listdir(tmp_path) == ["ckpt.json"]


def test_atomic_open_removes_temp_on_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "x.txt") as f:
            f.write("half")
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == []


def test_load_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_json(bad, "tokenizer file")


def test_npz_round_trip_and_corrupt_file(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "q": np.array([-127, 127], np.int8)}
    save_npz(tmp_path / "a.npz", arrays)
    back = load_npz(tmp_path / "a.npz")
    assert set(back) == {"w", "q"} and back["q"].dtype == np.int8
    np.testing.assert_array_equal(back["w"], arrays["w"])
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="bad.npz"):
        load_npz(tmp_path / "bad.npz")


def test_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="object"):
        save_npz(tmp_path / "o.npz", {"o": np.array([{"a": 1}], dtype=object)})


def test_format_seconds():
    assert format_seconds(4.25) == "4.2s"
    assert format_seconds(65.2) == "1m05s"
    assert format_seconds(3725) == "1h02m05s"


def test_progress_line_has_rate_and_eta(monkeypatch):
    import tinylm.progress as progress
    clock = iter([0.0, 10.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    p = Progress(total=100, what="steps")
    line = p.line(25, extra="loss 2.0")
    assert line == "25/100 steps | loss 2.0 | 2.5 steps/s | elapsed 10.0s | ETA 30.0s"
