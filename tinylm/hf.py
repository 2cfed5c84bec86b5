"""Deprecated: moved to tinylm.io.hf_gpt2 and tinylm.io.safetensors (see tinylm._deprecated)."""
from tinylm._deprecated import moved

globals().update(moved(__name__, "tinylm.io.hf_gpt2", "tinylm.io.safetensors"))
