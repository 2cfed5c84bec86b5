"""Every ```python block of every tutorial chapter runs, in order: a chapter that breaks fails here."""
import importlib.util
import os

import pytest
from conftest import ROOT

_spec = importlib.util.spec_from_file_location("tutorial_runner", os.path.join(ROOT, "tutorials", "run.py"))
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)


def test_python_blocks_are_found_with_their_line_numbers():
    md = "# T\n\n```python\nx = 1\n```\n\ntext\n\n```text\nnot run\n```\n```python\ny = x + 1\n```\n"
    assert runner.python_blocks(md) == [(4, "x = 1\n"), (13, "y = x + 1\n")]


def test_a_failing_block_names_its_chapter_and_line(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "HERE", str(tmp_path))
    (tmp_path / "99-broken.md").write_text("intro\n\n```python\nraise RuntimeError('boom')\n```\n")
    with pytest.raises(RuntimeError) as info:
        runner.run_chapter("99-broken.md", str(tmp_path))
    assert any(str(tb.path).endswith("99-broken.md:4") for tb in info.traceback)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", runner.chapters())
def test_chapter_runs(chapter, tmp_path):
    assert runner.run_chapter(chapter, str(tmp_path)) > 0, f"{chapter} has no python blocks"
