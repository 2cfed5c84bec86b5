"""Run the ```python code blocks of tutorial chapters, in order, and check what they print.

    python tutorials/run.py                      # every chapter; figures written to tutorials/figures/
    python tutorials/run.py 02-tokenizer.md      # one chapter
    python tutorials/run.py --update 02-tokenizer.md   # rewrite its ```output blocks from what it prints

Each chapter runs in a fresh namespace (the blocks of one chapter share it, in order), with the
working directory set to the folder that holds `figures/`, and `__file__` set to the chapter's own
path, so a chapter finds files of the repository relative to itself, never through the installed
package. The test suite (tests/test_tutorials.py) calls `run_chapter` with a temporary folder.

What a block prints is compared with the ```output block that follows it (blank lines between the
two are allowed). Two markers let an output block hold what varies from machine to machine:

- `~` right before a number (`~0.75 s`, `~5.1x`) matches any number there, with any spaces before it
  (a wider number pads a column): its form is checked (a number must be printed in that place), not
  its value. Use it for timings and throughput.
- a line that is just `...` matches any number of printed lines, none included; a line that ends
  in `...` matches every printed line that starts with the text before it.

Everything else must match exactly, line by line (trailing spaces and trailing blank lines aside).
Blocks fenced as ```text, ```console or ```bash are shown to the reader and neither run nor compared.
"""
import contextlib
import difflib
import io
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FENCE = re.compile(r"^```(python|output)[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
NUMBER = r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan"
MARKED = re.compile(r"~(?:" + NUMBER + r")")


class StaleOutput(AssertionError):
    """A chapter printed something other than what its output blocks show."""


def chapters():
    """The chapter files, in reading order: tutorials/NN-*.md."""
    return sorted(n for n in os.listdir(HERE) if re.match(r"\d\d-.*\.md$", n))


def parse(markdown):
    """[{'line', 'code', 'output', 'output_line', 'span'}, ...] for every ```python block, in order.

    'output' is the text of the ```output block right after it (only blank lines between), or None;
    'span' is where that output block sits in `markdown` (start, end), or where one would go.
    """
    blocks, fences = [], list(FENCE.finditer(markdown))
    for i, m in enumerate(fences):
        if m.group(1) != "python":
            continue
        block = {"line": markdown.count("\n", 0, m.start()) + 2, "code": m.group(2), "output": None,
                 "output_line": None, "span": (m.end(), m.end())}
        after = fences[i + 1] if i + 1 < len(fences) else None
        if after is not None and after.group(1) == "output" and not markdown[m.end():after.start()].strip():
            block.update(output=after.group(2), output_line=markdown.count("\n", 0, after.start()) + 2,
                         span=(m.end(), after.end()))
        blocks.append(block)
    return blocks


def python_blocks(markdown):
    """[(line_number, code), ...] for every ```python block of a Markdown text."""
    return [(b["line"], b["code"]) for b in parse(markdown)]


def _line_pattern(expected):
    """A regex for one expected line: `~` + number matches any number, a final `...` any rest of
    the line, everything else itself."""
    rest = ""
    if expected.endswith("...") and expected != "...":
        expected, rest = expected[:-3], ".*"
    parts, last = [], 0
    for m in MARKED.finditer(expected):
        literal = expected[last:m.start()]
        stripped = literal.rstrip(" ")
        parts.append(re.escape(stripped))
        # a column of numbers printed with a width: a wider number takes some of the spaces before it
        parts.append((r" +" if stripped != literal else r" *") + f"(?:{NUMBER})")
        last = m.end()
    parts.append(re.escape(expected[last:]))
    return re.compile("".join(parts) + rest + r"\Z")


def _lines(text):
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def output_matches(expected, printed):
    """True when `printed` fits `expected`, with its `~` numbers and `...` lines (see the top)."""
    want, got = _lines(expected), _lines(printed)

    def match(i, j):
        if i == len(want):
            return j == len(got)
        if want[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and _line_pattern(want[i]).match(got[j]) is not None and match(i + 1, j + 1)

    return match(0, 0)


def _diff(expected, printed):
    return "\n".join(difflib.unified_diff(_lines(expected), _lines(printed), "the page shows",
                                          "the code prints now", lineterm="", n=2))


# The pages were printed with tinylm's C kernels on 2 threads, where a float32 Linear runs on NumPy's BLAS
# (chapter 8); on one thread it runs on tinylm's own GEMM, whose float32 rounding moves the last digits
# of trained losses. So a chapter runs with TINYLM_NUM_THREADS=2 unless it is set already.
PAGE_THREADS = "2"


@contextlib.contextmanager
def _kernel_threads(n):
    """TINYLM_NUM_THREADS=n for the duration (unless set already), restored afterwards."""
    before = os.environ.get("TINYLM_NUM_THREADS")
    if before is None:
        os.environ["TINYLM_NUM_THREADS"] = n
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TINYLM_NUM_THREADS", None)


def run_chapter(name, workdir=HERE, check=True, require_outputs=True):
    """Execute every python block of chapter `name` in order, with `workdir` as the current folder.

    With `check`, compare what each block prints with its output block and raise StaleOutput
    listing every block that differs (and, with `require_outputs`, every block that prints without
    an output block). Returns the list of blocks, each with 'printed' added.
    """
    path = os.path.join(HERE, name)
    with open(path, encoding="utf-8") as f:
        blocks = parse(f.read())
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures are saved, never shown
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    namespace = {"__name__": f"tutorial_{name[:2]}", "__file__": path}
    with _chdir(workdir), _kernel_threads(PAGE_THREADS):
        for block in blocks:
            out = io.StringIO()
            with contextlib.redirect_stdout(_Tee(out) if not check else out):
                exec(compile(block["code"], f"{path}:{block['line']}", "exec"), namespace)
            block["printed"] = out.getvalue()
    with contextlib.suppress(ImportError):
        import matplotlib.pyplot as plt
        plt.close("all")
    if check:
        problems = []
        for b in blocks:
            if b["output"] is not None and not output_matches(b["output"], b["printed"]):
                problems.append(f"{name}:{b['output_line']}: the output block of the code at line {b['line']} "
                                f"is stale\n{_diff(b['output'], b['printed'])}")
            elif b["output"] is None and b["printed"].strip() and require_outputs:
                problems.append(f"{name}:{b['line']}: this block prints, but no ```output block follows it; "
                                f"it printed:\n{b['printed'].rstrip()}")
        if problems:
            raise StaleOutput("\n\n".join(problems) + f"\n\n{len(problems)} block(s) to fix: edit the page, or "
                              f"rewrite its output blocks with: python tutorials/run.py --update {name}")
    return blocks


def update_chapter(name, workdir=HERE):
    """Run chapter `name` and rewrite its output blocks with what it prints now.

    An output block that still matches is kept as it is (with its markers); a line that still
    matches keeps its markers; a block that prints nothing loses its output block. Returns the
    number of output blocks written or changed.
    """
    blocks = run_chapter(name, workdir, check=False)
    path = os.path.join(HERE, name)
    with open(path, encoding="utf-8") as f:
        markdown = f.read()
    assert [b["line"] for b in parse(markdown)] == [b["line"] for b in blocks], "the chapter changed while it ran"
    changed = 0
    for b in reversed(blocks):
        if b["output"] is None and not b["printed"].strip():
            continue
        if b["output"] is not None and output_matches(b["output"], b["printed"]):
            continue
        old = _lines(b["output"] or "")
        new = _lines(b["printed"])
        if len(old) == len(new):  # keep the markers of lines that still match
            new = [o if output_matches(o, n) else n for o, n in zip(old, new)]
        text = "\n\n```output\n" + "\n".join(new) + "\n```" if new else ""
        start, end = b["span"]
        markdown = markdown[:start] + text + markdown[end:]
        changed += 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(markdown)
    return changed


class _Tee(io.TextIOBase):
    """Write to a buffer and to the real stdout: a reader running the chapter sees its output."""

    def __init__(self, buffer):
        self.buffer, self.stdout = buffer, sys.stdout

    def write(self, s):
        self.stdout.write(s)
        return self.buffer.write(s)

    def flush(self):
        self.stdout.flush()


@contextlib.contextmanager
def _chdir(folder):
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


USAGE = """usage: python tutorials/run.py [--update] [CHAPTER.md ...]

Run the chapters (all of them when none is named) in tutorials/, as the test suite does, and say for
each whether every ```output block still matches what its code prints. --update rewrites the output
blocks of the named chapters from what the code prints now (keeping the ~ and ... markers of lines
that still match). Chapters 7, 9, 10 and 13 load the model chapter 6 saves: run chapter 6 first."""

if __name__ == "__main__":
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        print(USAGE)
        sys.exit(0)
    update = "--update" in args
    args = [a for a in args if a != "--update"]
    for chapter in args or chapters():
        chapter = os.path.basename(chapter)
        if update:
            print(f"{chapter}: {update_chapter(chapter)} output block(s) written")
        else:
            blocks = run_chapter(chapter, check=False)
            stale = [b["line"] for b in blocks if b["output"] is not None
                     and not output_matches(b["output"], b["printed"])]
            print(f"{chapter}: {len(blocks)} blocks ran; "
                  + (f"output differs from the page after the blocks at lines {stale}" if stale
                     else "every output block matches"))
