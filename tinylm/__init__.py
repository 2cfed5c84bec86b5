"""tinylm: a small language model built from scratch in NumPy, with portable C kernels.

The public names are imported lazily, so `import tinylm` is instant and a reader who only wants
the tokenizer never loads the model:

    >>> import tinylm
    >>> tok = tinylm.Tokenizer()          # loads tinylm.tokenizer on first use

`tinylm.load(path)` opens anything tinylm can read (a run folder, a quantized model, a Hugging Face
GPT-2 folder) and returns (model, tokenizer): see tinylm.io.
"""
import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "Tokenizer": "tinylm.tokenizer",
    "load_corpus": "tinylm.data",
    "Tensor": "tinylm.autograd",
    "no_grad": "tinylm.autograd",
    "GPT": "tinylm.model",
    "GPTConfig": "tinylm.model",
    "generate": "tinylm.generate",
    "load": "tinylm.io",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'tinylm' has no attribute {name!r}")
