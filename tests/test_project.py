"""The project's own promises: the README's quick start is what CI runs, every command has help."""
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from tinylm import cli


def _readme_commands():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    block = re.search(r"## Quick start\n.*?```bash\n(.*?)```", readme, re.DOTALL)
    assert block, "README.md has no '## Quick start' section with a ```bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_quick_start_is_two_commands_install_and_demo_then_tests():
    install_demo, install_tests = _readme_commands()
    assert "pip install" in install_demo and install_demo.endswith("tinylm demo")
    assert "[test]" in install_tests and "pytest" in install_tests


def test_ci_runs_exactly_the_readme_test_command():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci_lines = [line.strip() for line in f]
    assert _readme_commands()[1] in ci_lines


def _all_parsers(parser, path=("tinylm",)):
    """Yield (command path, parser) for the top-level parser and every (nested) subcommand."""
    yield path, parser
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, path + (name,))


def test_every_command_and_option_has_help_text():
    for path, parser in _all_parsers(cli.build_parser()):
        if len(path) > 1:
            assert parser.description, f"{' '.join(path)} has no description"
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{' '.join(path)} {action.option_strings[0]} has no help text"


def test_help_runs_for_every_command():
    for path, _ in _all_parsers(cli.build_parser()):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(list(path[1:]) + ["--help"])
        assert exit_info.value.code == 0, path


def test_python_dash_m_tinylm_runs_info():
    out = subprocess.run([sys.executable, "-m", "tinylm", "info"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tinylm ")


def test_info_says_what_tinylm_changed_in_malloc_and_how_to_turn_it_off():
    def info(**env):
        done = subprocess.run([sys.executable, "-m", "tinylm", "info"], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, **env})
        return [line for line in done.stdout.splitlines() if line.startswith("malloc:")]
    assert info(TINYLM_MALLOC="0") == ["malloc: default (TINYLM_MALLOC=0)"]
    default = info()
    expected = "mmap threshold 32 MB" if sys.platform.startswith("linux") else "malloc: default"
    assert len(default) == 1 and expected in default[0]


def test_no_command_prints_usage_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: tinylm" in capsys.readouterr().out


def test_bench_help_lists_every_suite_and_an_unknown_suite_exits_2(capsys):
    from tinylm.bench import SUITES
    from tinylm.bench.__main__ import main as bench_main

    assert bench_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"python -m tinylm.bench {suite} " in out for suite in SUITES)
    assert bench_main(["no-such-suite"]) == 2


IN_CI = os.environ.get("CI") == "true"


@pytest.mark.skipif(not IN_CI, reason="outside CI a machine without a C compiler runs on the NumPy kernels")
def test_ci_runs_the_c_kernels_and_the_cortex_m_toolchain():
    """In CI a missing C extension or toolchain is a failure, not a pile of skipped kernel tests."""
    from tinylm import kernels

    assert kernels.backend() == "c", "the C extension tinylm._kernels did not build (see the pip install output)"
    sys.path.insert(0, os.path.join(ROOT, "kernels", "targets", "cortex-m"))
    import mcu

    assert mcu.toolchain_missing() is None, mcu.toolchain_missing()


def test_the_version_is_written_once():
    import tinylm

    out = subprocess.run([sys.executable, "setup.py", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == tinylm.__version__
    hits = [p for p in ("setup.py", "pyproject.toml")
            if re.search(r'version\s*=\s*"\d', open(os.path.join(ROOT, p), encoding="utf-8").read())]
    assert not hits, f"a version number is written in {hits}; tinylm/__init__.py is the one place"


def test_the_code_passes_ruff():
    """The lint configuration in pyproject.toml ([tool.ruff]) holds for the whole tree."""
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]
