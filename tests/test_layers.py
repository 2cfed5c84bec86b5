"""The package's architecture, checked: imports point one way, down the layers, with no cycle.

Every import in tinylm/ (at module level and inside functions) is read from the source with `ast`, so a
lazy import cannot hide an upward dependency. The layers, lowest first, and why each sits where it is,
are in CONTRIBUTING.md.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tinylm"

# lowest first; a module may import from its own layer (without a cycle) and from the layers below
LAYERS = [
    ("base", ["tinylm.fileio", "tinylm.progress", "tinylm.process"]),
    ("text and kernels", ["tinylm.data", "tinylm.tokenizer", "tinylm.bpe", "tinylm.kernels", "tinylm._kernels"]),
    ("autograd", ["tinylm.autograd"]),
    ("nn", ["tinylm.nn", "tinylm.optim"]),
    ("model", ["tinylm.model"]),
    ("generate", ["tinylm.generate"]),
    ("quant", ["tinylm.quant"]),
    ("io", ["tinylm.io"]),
    ("train", ["tinylm.train", "tinylm.amp"]),
    ("entry points", ["tinylm.cli", "tinylm.commands", "tinylm.bench", "tinylm.__main__", "tinylm"]),
]
# old module names kept for one release; they re-export their new homes and nothing may import them
DEPRECATED = ["tinylm._deprecated", "tinylm.checkpoint", "tinylm.hf", "tinylm.moe", "tinylm.quant.checkpoint"]
# where a tinylm import may sit inside a function (so that `tinylm --help` stays fast)
LAZY_ALLOWED = ["tinylm.cli", "tinylm.commands", "tinylm.bench", "tinylm"]
# modules that may be missing, so importing them is tried inside a function: the compiled C kernels
OPTIONAL = ["tinylm._kernels"]


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _owner(name, prefixes):
    """The longest prefix in `prefixes` that `name` is, or is inside of ("tinylm" itself, the package's
    __init__, only matches exactly)."""
    found = [p for p in prefixes if name == p or (p != "tinylm" and name.startswith(p + "."))]
    return max(found, key=len) if found else None


def layer_of(name):
    if _owner(name, DEPRECATED):
        return len(LAYERS)  # above everything: nothing may import them
    owner = _owner(name, [p for _, prefixes in LAYERS for p in prefixes])
    assert owner is not None, f"{name} is in no layer: add it to LAYERS in tests/test_layers.py"
    return next(i for i, (_, prefixes) in enumerate(LAYERS) if owner in prefixes)


MODULES = {_module_name(p) for p in PACKAGE.rglob("*.py")} | {"tinylm._kernels"}  # (the C extension)


def _imports(source, name, is_package=False):
    """(imported tinylm module, line, inside a function?) for every import in `source`, the text of
    module `name`. `from tinylm import nn` imports the module tinylm.nn; `from tinylm.nn import Linear`,
    tinylm.nn."""
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(source)
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..io import y
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for t in targets:
            if t == "tinylm" or t.startswith("tinylm."):
                yield t, node.lineno, id(node) in in_function


def _all_imports():
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        for target, line, lazy in _imports(path.read_text(encoding="utf-8"), name, path.name == "__init__.py"):
            out.append((name, f"{path.relative_to(PACKAGE.parent)}:{line}", target, lazy))
    return out


def test_every_module_is_in_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(_module_name(path))


def test_imports_point_down_the_layers():
    upward = [f"{where}: {src} ({LAYERS[layer_of(src)][0] if layer_of(src) < len(LAYERS) else 'deprecated'}) "
              f"imports {dst} ({LAYERS[layer_of(dst)][0] if layer_of(dst) < len(LAYERS) else 'deprecated'})"
              for src, where, dst, _ in _all_imports()
              if layer_of(dst) > layer_of(src) and not _owner(src, DEPRECATED)]
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_nothing_imports_the_deprecated_names():
    users = [f"{where}: {dst}" for src, where, dst, _ in _all_imports()
             if _owner(dst, DEPRECATED) and not _owner(src, DEPRECATED)]
    assert not users, "\n".join(users)


def test_only_entry_points_import_tinylm_lazily():
    lazy = [f"{where}: {dst}" for src, where, dst, is_lazy in _all_imports()
            if is_lazy and not _owner(src, LAZY_ALLOWED) and not _owner(src, DEPRECATED) and dst not in OPTIONAL]
    assert not lazy, "function-level imports of tinylm outside cli/commands/bench:\n" + "\n".join(lazy)


def test_the_module_graph_has_no_cycle():
    graph = {}
    for src, _, dst, _ in _all_imports():
        if dst != src and not dst.startswith(src + "."):  # a package importing its own parts is its structure
            graph.setdefault(src, set()).add(dst)
    state = {}

    def visit(node, stack):
        if state.get(node) == "done":
            return
        if state.get(node) == "open":
            cycle = stack[stack.index(node):] + [node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_the_checks_see_a_lazy_upward_import():
    """The tests above can fail: an import of tinylm.train hidden in a function of the model layer is
    found, placed above its importer, and flagged as lazy."""
    source = "import numpy\n\ndef f():\n    from tinylm.train import train\n    from tinylm import nn\n"
    found = list(_imports(source, "tinylm.model.probe"))
    assert found == [("tinylm.train", 4, True), ("tinylm.nn", 5, True)]
    assert layer_of("tinylm.train") > layer_of("tinylm.model.probe") > layer_of("tinylm.nn")
