"""`tinylm ARGS`, killed by SIGKILL at the k-th call of one function: TINYLM_KILL_AT=module:function:k.

    TINYLM_KILL_AT=tinylm.io.runs:_promote:2 python tests/kill_driver.py train --out runs/x --resume

tests/test_kill.py uses it to aim kills at the moments of a checkpoint write (between its files,
after its commit, in the middle of its renames). Without TINYLM_KILL_AT it is just `tinylm`.
"""
import importlib
import os
import signal
import sys

from tinylm import cli


def kill_at(module_name, function_name, k):
    """Replace module.function by a wrapper that kills this process on its k-th call."""
    module = importlib.import_module(module_name)
    original = getattr(module, function_name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(module, function_name, wrapper)


if __name__ == "__main__":
    if os.environ.get("TINYLM_KILL_AT"):
        module_name, function_name, k = os.environ["TINYLM_KILL_AT"].split(":")
        kill_at(module_name, function_name, int(k))
    sys.exit(cli.main(sys.argv[1:]))
