"""Saving and loading files safely: JSON and .npz, written atomically, read without pickle.

Every file tinylm writes goes through here, so these promises hold everywhere:
- a write goes to a temporary file `.NAME.xxxx.tmp` in the same folder, then is renamed over the
  target, so a crash or a full disk never leaves a half-written checkpoint where the last good one
  was; the new file gets the permissions the umask gives (not the temporary file's 0600), and a
  missing folder is an error, not something to create up to the root;
- a read of a missing, truncated, foreign or hostile file raises a ValueError (or FileNotFoundError)
  that names the file and says what was expected, instead of a bare traceback from deep inside json
  or zipfile: a FIFO or /dev/zero is refused before it is opened, JSON nested thousands deep is an
  error, and an .npz member that would inflate far beyond its stored bytes (a "zip bomb") is refused
  before it is decompressed.
"""
import contextlib
import json
import os
import struct
import tempfile
import tokenize
import zipfile
import zlib

import numpy as np

MAX_TEXT_BYTES = 1 << 30  # JSON and text files: a tokenizer of 200k tokens is ~10 MB; 1 GB is not a config
MAX_INFLATION = 32  # an .npz member may decompress to at most this times its stored bytes (weights: ~1.1x)
TEMPORARY_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
    """Open a temporary file next to `path`; on success rename it to `path`, on error remove it.

    >>> with atomic_open("out.txt") as f:
    ...     _ = f.write("all or nothing")
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=TEMPORARY_SUFFIX, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a saved file is as readable as any other
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _umask():
    """The process's umask (read by setting it and putting it back: POSIX has no other way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder):
    """Remove the `.NAME.xxxx.tmp` files an atomic write leaves when its process is killed; returns
    their names. Only safe while no other process writes into `folder` (a run folder under its lock)."""
    removed = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") and name.endswith(TEMPORARY_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


def check_writable(folder, flag="--out"):
    """Fail now, before any work, when `folder` (or, if it does not exist yet, the folder it would be
    created in) cannot be written: a read-only disk should not be discovered after an hour of training."""
    folder = os.path.abspath(os.fspath(folder))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"{flag} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {folder}: {existing} is not writable")


def check_regular_file(path, what, max_bytes=None):
    """A path that exists and is a regular file (a symlink to one is fine); a FIFO, a device such as
    /dev/zero or a folder would block or never end, so it is refused before it is opened."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"{path} is not a regular file (a folder, a FIFO or a device); expected a {what}")
    size = os.path.getsize(path)
    if max_bytes is not None and size > max_bytes:
        raise ValueError(f"{path} has {size:,} bytes; a {what} of more than {max_bytes:,} is not one tinylm reads")
    return path


def read_text(path, what):
    """The text of a UTF-8 file of at most MAX_TEXT_BYTES, after `check_regular_file`; bad UTF-8 is a
    ValueError naming the file."""
    path = check_regular_file(path, what, MAX_TEXT_BYTES)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a valid {what} (not UTF-8: {exc})") from None


def check_not_replacing(folder, names, flag="--out"):
    """Refuse to write into `folder` when it already holds any of the files `names`, so that a
    command never silently replaces what a user saved (its --force flag skips this check).

    >>> check_not_replacing("no-such-folder", ["model.safetensors"])   # nothing there: fine
    """
    found = [n for n in names if os.path.exists(os.path.join(folder, n))]
    if found:
        raise FileExistsError(f"{flag} {folder} already holds {', '.join(found)}: pass --force to replace "
                              f"{'it' if len(found) == 1 else 'them'}, or choose another folder")


@contextlib.contextmanager
def removed_on_failure(folder, names):
    """Undo a failed export: the files among `names` that the block created in `folder` (and the folder,
    if the block created it and left it empty) are removed when the block raises, so a full disk does not
    leave a partial folder that a re-run then refuses to replace. Files that were there before stay."""
    folder = os.fspath(folder)
    existed = os.path.isdir(folder)
    before = {n for n in names if os.path.exists(os.path.join(folder, n))}
    try:
        yield
    except BaseException:
        for name in set(names) - before:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
        if not existed:
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def save_json(path, obj):
    """Write `obj` as pretty, UTF-8 JSON (non-ASCII kept readable), atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def load_json(path, what="JSON file"):
    """Read a JSON file; a missing, malformed or hostile file raises an error that names it.

    Refused as ValueError: a file that is not a regular file, bad UTF-8 or JSON, nesting deep enough to
    exhaust Python's recursion limit ([[[[...]]]]), an integer of thousands of digits. (NaN and
    Infinity are read, as Python writes them: the reader of each field checks its values.)
    """
    text = read_text(path, what)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"{path} is not a valid {what}: {problem}") from None
    except ValueError as exc:  # int() of a 5000-digit number
        raise ValueError(f"{path} is not a valid {what}: {str(exc)[:200]}") from None


def save_npz(path, arrays):
    """Write a dict of NumPy arrays to an uncompressed .npz file, atomically."""
    for name, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise TypeError(f"save_npz: array {name!r} has dtype object; only numeric arrays are saved")
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_npz(path, what="array file"):
    """Read every array of a .npz file into a dict, never unpickling anything.

    Each member is checked before it is decompressed: the size the zip directory declares may be at
    most MAX_INFLATION times its stored bytes, and the shape in its .npy header must need exactly the
    bytes the directory declares. So a small file never makes a large allocation.
    """
    path = check_regular_file(path, what)

    def bad(problem):
        return ValueError(f"{path} is not a valid {what} (.npz): {problem}")

    arrays = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if info.file_size > MAX_INFLATION * info.compress_size + 4096:
                    raise bad(f"member {name!r} would inflate {info.compress_size:,} stored bytes to "
                              f"{info.file_size:,} (more than {MAX_INFLATION}x)")
                with z.open(info) as f:
                    arrays[name] = _read_npy(f, info.file_size, name, bad)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, zlib.error,
            struct.error, OSError, EOFError, ValueError, SyntaxError, tokenize.TokenError) as exc:
        # RuntimeError: an encrypted member; SyntaxError, TokenError: a .npy header numpy cannot parse
        if isinstance(exc, ValueError) and str(exc).startswith(path):
            raise
        raise bad(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return arrays


def _read_npy(f, size, name, bad):
    """One .npy member of `size` bytes: its header checked against `size`, then its data read in place."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise bad(f"member {name!r} is .npy version {version}; tinylm reads versions 1.0 and 2.0")
    if dtype.kind not in "biufc" or dtype.hasobject:
        raise bad(f"member {name!r} has dtype {dtype}; tinylm reads numeric arrays only")
    count = 1
    for n in shape:
        count *= n  # Python ints: a hostile shape cannot overflow
    data_bytes = count * dtype.itemsize
    if f.tell() + data_bytes != size:
        raise bad(f"member {name!r} declares shape {shape} of {dtype} ({data_bytes:,} bytes) but holds "
                  f"{size - f.tell():,} bytes of data")
    a = np.empty(count, dtype)
    if f.readinto(a.view(np.uint8)) != data_bytes:
        raise bad(f"member {name!r} is truncated")
    return a.reshape(shape, order="F" if fortran else "C")
