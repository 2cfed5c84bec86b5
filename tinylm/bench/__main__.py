"""`python -m tinylm.bench SUITE [options]`: run one benchmark suite (see tinylm/bench/__init__.py)."""
import importlib
import sys

from tinylm.bench import SUITES


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUITES:
        print(__doc__.strip())
        print("suites: " + ", ".join(SUITES))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(f"tinylm.bench.{argv[0]}").main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
