"""Deprecated: moved to tinylm.model.moe (see tinylm._deprecated)."""
from tinylm._deprecated import moved

globals().update(moved(__name__, "tinylm.model.moe"))
