"""Modules that moved, kept importable for one release with a DeprecationWarning.

    old name                 new home
    tinylm.checkpoint        tinylm.io.runs
    tinylm.hf                tinylm.io.hf_gpt2 (the GPT-2 mapping) and tinylm.io.safetensors
    tinylm.moe               tinylm.model.moe
    tinylm.quant.checkpoint  tinylm.io.quantized

Each old module is a few lines that call `moved(__name__, ...)`. Nothing in tinylm imports them (a test
checks), so the warning only reaches code written against the old names.
"""
import importlib
import warnings


def moved(old, *new):
    """Warn that module `old` moved to `new` (one or more module names); return their public names."""
    warnings.warn(f"{old} moved to {' and '.join(new)}; the old name goes away in the next release",
                  DeprecationWarning, stacklevel=3)
    names = {}
    for module_name in new:
        module = importlib.import_module(module_name)
        names.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    return names
