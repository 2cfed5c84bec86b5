"""Saving and loading files safely: JSON and .npz, written atomically, read without pickle.

Every file tinylm writes goes through here, so two promises hold everywhere:
- a write goes to a temporary file in the same folder, then is renamed over the target, so a crash
  or a full disk never leaves a half-written checkpoint where the last good one was;
- a read of a missing, truncated or foreign file raises a ValueError (or FileNotFoundError) that names
  the file and says what was expected, instead of a bare traceback from deep inside json or zipfile.
"""
import contextlib
import json
import os
import tempfile
import zipfile

import numpy as np


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
    """Open a temporary file next to `path`; on success rename it to `path`, on error remove it.

    >>> with atomic_open("out.txt") as f:
    ...     _ = f.write("all or nothing")
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def check_not_replacing(folder, names, flag="--out"):
    """Refuse to write into `folder` when it already holds any of the files `names`, so that a
    command never silently replaces what a user saved (its --force flag skips this check).

    >>> check_not_replacing("no-such-folder", ["model.safetensors"])   # nothing there: fine
    """
    found = [n for n in names if os.path.exists(os.path.join(folder, n))]
    if found:
        raise FileExistsError(f"{flag} {folder} already holds {', '.join(found)}: pass --force to replace "
                              f"{'it' if len(found) == 1 else 'them'}, or choose another folder")


def save_json(path, obj):
    """Write `obj` as pretty, UTF-8 JSON (non-ASCII kept readable), atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def load_json(path, what="JSON file"):
    """Read a JSON file; a missing or malformed file raises an error that names it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a valid {what}: {exc}") from None


def save_npz(path, arrays):
    """Write a dict of NumPy arrays to an uncompressed .npz file, atomically."""
    for name, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise TypeError(f"save_npz: array {name!r} has dtype object; only numeric arrays are saved")
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_npz(path, what="array file"):
    """Read every array of a .npz file into a dict, never unpickling anything."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a valid {what} (.npz): {exc}") from None
