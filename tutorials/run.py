"""Run the ```python code blocks of tutorial chapters, in order, as a reader would.

    python tutorials/run.py                    # every chapter, figures written to tutorials/figures/
    python tutorials/run.py 02-tokenizer.md    # one chapter

Each chapter runs in a fresh namespace (the blocks of one chapter share it, in order), with the
working directory set to the folder that holds `figures/`. The test suite (tests/test_tutorials.py)
calls `run_chapter` with a temporary folder instead, so a chapter that does not run fails the suite.
Blocks fenced as ```text, ```console or ```bash are shown to the reader and not run.
"""
import contextlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def chapters():
    """The chapter files, in reading order: tutorials/NN-*.md."""
    return sorted(n for n in os.listdir(HERE) if re.match(r"\d\d-.*\.md$", n))


def python_blocks(markdown):
    """[(line_number, code), ...] for every ```python block of a Markdown text."""
    return [(markdown.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(markdown)]


def run_chapter(name, workdir=HERE):
    """Execute every python block of chapter `name` in order, with `workdir` as the current folder."""
    path = os.path.join(HERE, name)
    with open(path, encoding="utf-8") as f:
        blocks = python_blocks(f.read())
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures are saved, never shown
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    namespace = {"__name__": f"tutorial_{name[:2]}"}
    with _chdir(workdir):
        for line, code in blocks:
            exec(compile(code, f"{path}:{line}", "exec"), namespace)
    with contextlib.suppress(ImportError):
        import matplotlib.pyplot as plt
        plt.close("all")
    return len(blocks)


@contextlib.contextmanager
def _chdir(folder):
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


if __name__ == "__main__":
    for chapter in sys.argv[1:] or chapters():
        n = run_chapter(os.path.basename(chapter))
        print(f"{chapter}: {n} blocks ran")
