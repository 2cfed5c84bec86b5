"""Deprecated: moved to tinylm.io.quantized (see tinylm._deprecated)."""
from tinylm._deprecated import moved

globals().update(moved(__name__, "tinylm.io.quantized"))
