"""The `tinylm` command: one subcommand per module in tinylm/commands/.

Each command module defines `register(subparsers)`, which adds its parser (with help text on every
option) and sets `func` to the function that runs it. A command returns an exit status (0 = success).

User errors — a missing file, an empty corpus, a bad flag value, a checkpoint that does not match —
are raised as ValueError, TypeError or OSError by the library; here they become one line on stderr
and exit status 2, with no traceback (set TINYLM_DEBUG=1 to see the traceback). Two more are caught
as a last line of defence, though the library checks sizes and nesting before they can happen:
MemoryError (a size too large for this machine) and RecursionError (a file nested too deeply).
"""
import argparse
import importlib
import os
import sys

from tinylm import process

# the subcommands, in the order `tinylm --help` lists them
COMMANDS = [
    "tinylm.commands.tokenizer",
    "tinylm.commands.demo",
    "tinylm.commands.train",
    "tinylm.commands.eval",
    "tinylm.commands.info",
    "tinylm.commands.generate",
    "tinylm.commands.quantize",
    "tinylm.commands.export",
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tinylm",
        description="tinylm: a small language model built from scratch in NumPy, with C kernels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    process.tune_malloc()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("tinylm: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, MemoryError, RecursionError) as exc:
        if os.environ.get("TINYLM_DEBUG"):
            raise
        print(f"tinylm {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc):
    """The message of an error; a bare MemoryError or RecursionError gets one."""
    if isinstance(exc, MemoryError) and not str(exc):
        return "out of memory: the sizes asked for (model, batch or file) do not fit in this machine's memory"
    if isinstance(exc, RecursionError):
        return "input nested too deeply to process"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
