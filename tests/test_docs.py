"""The API reference (``docs/api``) builds with every warning an error, and its examples run.

The build needs Sphinx (the ``dev`` extra): without it this test skips, except under
``CI=true``, where it fails. The examples are the docstrings' ``>>>`` lines, run in-process by
:mod:`doctest` (no Sphinx needed); every public loss of :mod:`jaxaudio.losses` must have one.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxaudio import losses

ROOT = Path(__file__).resolve().parents[1]

# The modules the reference documents whose docstrings hold examples.
DOCTEST_MODULES = (
    "jaxaudio.losses.time_domain",
    "jaxaudio.losses.spectral",
    "jaxaudio.losses.original",
    "jaxaudio.losses.penalties",
    "jaxaudio.filterbanks",
    "jaxaudio.dsp",
)


def _require_sphinx() -> None:
    if importlib.util.find_spec("sphinx") is None:
        msg = ("Sphinx is not installed; the API reference needs it (pip install -c "
               "constraints.txt -e \".[dev]\")")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)


def test_api_reference_builds_without_warnings(tmp_path):
    _require_sphinx()
    out = tmp_path / "html"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           str(ROOT / "docs" / "api"), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed (exit {proc.returncode}); warnings are errors:\n"
        f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    page = out / "losses.html"
    assert page.is_file(), f"the build wrote no {page}"
    html = page.read_text(encoding="utf-8")
    missing = [n for n in losses.__all__ if f'id="jaxaudio.losses.{n}"' not in html]
    assert not missing, f"{page} documents no entry for {missing} of jaxaudio.losses.__all__"
    for name in ("dsp", "filterbanks", "models", "codecs", "agents"):
        assert (out / f"{name}.html").is_file(), f"the build wrote no {name}.html"


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted: dict[str, int] = {}
    for module_name in DOCTEST_MODULES:
        module = importlib.import_module(module_name)
        for test in finder.find(module):
            if test.examples:
                attempted[test.name] = runner.run(test, clear_globs=True).attempted
    failed, total = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {total} docstring examples failed (the report is above)"
    without = [n for n in losses.__all__
               if not attempted.get(f"{getattr(losses, n).__module__}."
                                    f"{getattr(losses, n).__qualname__}")]
    assert not without, f"public losses without a docstring example: {without}"
