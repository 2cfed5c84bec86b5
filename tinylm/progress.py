"""A one-line progress report with rate and ETA, for anything that takes more than a few seconds.

    >>> p = Progress(total=1000, what="merges")
    >>> for i in range(1000):
    ...     p.update(i + 1, extra="loss 2.31")   # prints at most every `every` seconds
    >>> p.done()

Lines go to stderr so that a command's real output (generated text, a table) stays clean on stdout.
"""
import sys
import time


def format_seconds(s):
    """3725.0 -> '1h02m05s', 65.2 -> '1m05s', 4.25 -> '4.2s'."""
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s"


class Progress:
    def __init__(self, total, what="steps", every=1.0, stream=None, enabled=True):
        self.total = total
        self.what = what
        self.every = every  # seconds between printed lines
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.start = time.perf_counter()
        self._last_print = -float("inf")
        self._last_line = ""

    def line(self, done, extra=""):
        """The text of the progress line for `done` of `total` units."""
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{done}/{self.total} {self.what}"]
        if extra:
            parts.append(extra)
        parts.append(f"{rate:,.1f} {self.what}/s")
        parts.append(f"elapsed {format_seconds(elapsed)}")
        if 0 < done < self.total and rate > 0:
            parts.append(f"ETA {format_seconds((self.total - done) / rate)}")
        return " | ".join(parts)

    def update(self, done, extra="", force=False):
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last_print < self.every):
            return
        self._last_print = now
        self._last_line = self.line(done, extra)
        print(self._last_line, file=self.stream, flush=True)

    def done(self, done=None, extra=""):
        self.update(self.total if done is None else done, extra, force=True)
