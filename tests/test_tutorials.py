"""Every ```python block of every tutorial chapter runs, in order, and prints what its page shows.

A chapter that breaks fails here, and so does one whose ```output blocks no longer match what its code
prints (tutorials/run.py describes the output blocks and their `~` and `...` markers).
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

_spec = importlib.util.spec_from_file_location("tutorial_runner", os.path.join(ROOT, "tutorials", "run.py"))
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)

# Chapters whose printing blocks may still lack an output block (their existing ones are compared): none.
OUTPUTS_NOT_YET_REQUIRED = set()
# Chapters that still find repository files through tinylm.__file__ (an editable install only): none.
LOCATION_NOT_YET_INDEPENDENT = set()


def test_python_blocks_are_found_with_their_line_numbers():
    md = "# T\n\n```python\nx = 1\n```\n\ntext\n\n```text\nnot run\n```\n```python\ny = x + 1\n```\n"
    assert runner.python_blocks(md) == [(4, "x = 1\n"), (13, "y = x + 1\n")]


def test_an_output_block_belongs_to_the_code_right_before_it():
    md = "```python\nprint(1)\n```\n\n```output\n1\n```\n\nprose\n\n```output\norphan\n```\n```python\nx = 2\n```\n"
    first, second = runner.parse(md)
    assert first["output"] == "1\n" and first["output_line"] == 6
    assert second["output"] is None                      # prose in between: not its output


def test_markers_check_the_form_of_varying_numbers_and_nothing_else():
    assert runner.output_matches("trained in ~0.75 s\n", "trained in 12.31 s\n")
    assert runner.output_matches("~5.1x faster, ~1,234 tokens/s", "11.0x faster, 98,765 tokens/s")
    assert runner.output_matches("without cache ~9.6 tokens/s", "without cache  123.4 tokens/s")  # padded
    assert runner.output_matches("2.898     ~29.0", "2.898    144.5")                   # a wider number
    assert not runner.output_matches("loss ~2.5", "loss2.5")                             # the space stays
    assert not runner.output_matches("trained in ~0.75 s", "trained in fast s")   # a number must be there
    assert not runner.output_matches("loss 2.55", "loss 2.56")                    # unmarked: exact
    assert runner.output_matches("first\n...\nlast\n", "first\na\nb\nlast")
    assert runner.output_matches("first\n...\nlast\n", "first\nlast\n\n")
    assert not runner.output_matches("first\n...\nlast", "first\na\nlast but one")


def _chapter(tmp_path, monkeypatch, text):
    monkeypatch.setattr(runner, "HERE", str(tmp_path))
    (tmp_path / "99-t.md").write_text(text, encoding="utf-8")
    return "99-t.md"


def test_a_failing_block_names_its_chapter_and_line(tmp_path, monkeypatch):
    name = _chapter(tmp_path, monkeypatch, "intro\n\n```python\nraise RuntimeError('boom')\n```\n")
    with pytest.raises(RuntimeError) as info:
        runner.run_chapter(name, str(tmp_path))
    assert any(str(tb.path).endswith("99-t.md:4") for tb in info.traceback)


def test_a_stale_output_fails_with_a_diff_and_the_command_that_fixes_it(tmp_path, monkeypatch):
    name = _chapter(tmp_path, monkeypatch, "```python\nprint('loss', 2.56)\n```\n\n```output\nloss 2.55\n```\n")
    with pytest.raises(runner.StaleOutput) as info:
        runner.run_chapter(name, str(tmp_path))
    message = str(info.value)
    assert "99-t.md:6" in message and "-loss 2.55" in message and "+loss 2.56" in message
    assert "python tutorials/run.py --update 99-t.md" in message


def test_a_printing_block_without_output_fails_unless_allowed(tmp_path, monkeypatch):
    name = _chapter(tmp_path, monkeypatch, "```python\nprint('hi')\n```\n")
    with pytest.raises(runner.StaleOutput, match="no ```output block"):
        runner.run_chapter(name, str(tmp_path))
    runner.run_chapter(name, str(tmp_path), require_outputs=False)


def test_update_writes_outputs_and_keeps_markers_that_still_match(tmp_path, monkeypatch):
    name = _chapter(tmp_path, monkeypatch, "```python\nprint('took', 3.0, 's')\nprint('loss', 1)\n```\n\n"
                    "```output\ntook ~1.5 s\nloss 2\n```\n\n```python\nprint('new')\n```\n")
    assert runner.update_chapter(name, str(tmp_path)) == 2
    text = (tmp_path / name).read_text(encoding="utf-8")
    assert "```output\ntook ~1.5 s\nloss 1\n```" in text and "```output\nnew\n```" in text
    runner.run_chapter(name, str(tmp_path))                     # now it passes


# Numbers quoted in a chapter's prose that some chapter's code prints: (quoted in, printed by, text).
# The test finds the text in the prose (outside code and output blocks) and in what the code printed,
# so a change that moves the number fails here until the prose follows.
PROSE_NUMBERS = [
    ("02-tokenizer.md", "02-tokenizer.md", "17 bytes"),
    ("02-tokenizer.md", "02-tokenizer.md", "1,478"),
    ("02-tokenizer.md", "02-tokenizer.md", "4,374"),
    ("02-tokenizer.md", "02-tokenizer.md", "9 tokens"),
    ("05-attention.md", "05-attention.md", "0.994"),
    ("06-training.md", "06-training.md", "142,549"),
    ("06-training.md", "06-training.md", "1.80"),
    ("06-training.md", "06-training.md", "48 times"),
    ("06-training.md", "03-embeddings.md", "2.08"),
    ("09-fp16-and-int8.md", "09-fp16-and-int8.md", "3,337,216"),
    ("09-fp16-and-int8.md", "09-fp16-and-int8.md", "3.48x"),
]
PRINTED = {}   # chapter -> everything it printed, filled by test_chapter_runs_and_prints_what_its_page_shows


def prose(chapter):
    """The chapter's text without its fenced blocks."""
    with open(os.path.join(ROOT, "tutorials", chapter), encoding="utf-8") as f:
        return re.sub(r"^```.*?^```[ \t]*$", "", f.read(), flags=re.DOTALL | re.MULTILINE)


def test_prose_numbers_are_quoted_where_listed():
    for quoted_in, _, text in PROSE_NUMBERS:
        assert text in prose(quoted_in), f"{quoted_in} no longer quotes {text!r}: update PROSE_NUMBERS"


# The book's model: chapter 6 saves it, later chapters load it from runs/chapter6 in the same folder.
BOOK_RUN = os.path.join("runs", "chapter6")


def needs_book_run(chapter):
    with open(os.path.join(ROOT, "tutorials", chapter), encoding="utf-8") as f:
        return chapter != "06-training.md" and '"runs/chapter6"' in f.read()


@pytest.fixture(scope="module")
def book_dir(tmp_path_factory):
    """One working folder for all chapters, as `python tutorials/run.py` uses tutorials/ for all."""
    return str(tmp_path_factory.mktemp("book"))


@pytest.mark.slow
@pytest.mark.parametrize("chapter", runner.chapters())
def test_chapter_runs_and_prints_what_its_page_shows(chapter, book_dir):
    if needs_book_run(chapter) and not os.path.isdir(os.path.join(book_dir, BOOK_RUN)):
        runner.run_chapter("06-training.md", book_dir, check=False)   # only when chapter 6 was deselected
    blocks = runner.run_chapter(chapter, book_dir, require_outputs=chapter not in OUTPUTS_NOT_YET_REQUIRED)
    assert blocks, f"{chapter} has no python blocks"
    PRINTED[chapter] = "".join(b["printed"] for b in blocks)
    for quoted_in, printed_by, text in PROSE_NUMBERS:
        if printed_by == chapter:
            assert text in PRINTED[chapter], (f"{quoted_in} quotes {text!r}, but {chapter} no longer prints it: "
                                              "fix the prose (and PROSE_NUMBERS)")


def test_no_chapter_finds_files_through_the_installed_package():
    """A chapter finds repository files relative to itself (`__file__`), not via tinylm.__file__,
    which points into site-packages after `pip install .`."""
    for chapter in sorted(set(runner.chapters()) - LOCATION_NOT_YET_INDEPENDENT):
        with open(os.path.join(ROOT, "tutorials", chapter), encoding="utf-8") as f:
            code = "".join(c for _, c in runner.python_blocks(f.read()))
        assert not re.search(r"tinylm\.__file__", code), f"{chapter} locates files through tinylm.__file__"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", ["08-c-kernels.md", "13-reading-gpt2.md"])
def test_chapter_runs_against_a_copy_of_tinylm_installed_elsewhere(chapter, tmp_path):
    """The package copied alone into another folder (as `pip install .` puts it in site-packages),
    the chapter run from a third folder: its repository files are still found."""
    site = tmp_path / "site-packages"
    shutil.copytree(os.path.join(ROOT, "tinylm"), site / "tinylm",
                    ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.c"))
    work = tmp_path / "work"
    work.mkdir()
    if needs_book_run(chapter):
        runner.run_chapter("06-training.md", str(work), check=False)   # the book's model, which it loads
    script = ("import sys, importlib.util, tinylm\n"
              f"assert tinylm.__file__.startswith({str(site)!r}), tinylm.__file__\n"
              f"spec = importlib.util.spec_from_file_location('r', {os.path.join(ROOT, 'tutorials', 'run.py')!r})\n"
              "r = importlib.util.module_from_spec(spec); spec.loader.exec_module(r)\n"
              f"r.run_chapter({chapter!r}, {str(work)!r})\n")
    env = {**os.environ, "PYTHONPATH": str(site), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
