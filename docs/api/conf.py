"""Sphinx configuration of jaxaudio's API reference (built from the docstrings).

Build: ``python -m sphinx -b html docs/api docs/_build/html``; CI builds it with ``-W --keep-going``
(every warning an error) in ``tests/test_docs.py``, which also runs the docstrings' examples.
Only Sphinx's own extensions and its built-in theme are used.
"""

import os
import sys

# The package from this checkout, without installing it.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
# The examples and autodoc imports run on the CPU, quietly.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "jaxaudio"
author = "jaxaudio contributors"
copyright = "jaxaudio contributors"  # noqa: A001  (Sphinx's name)

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings' Google-style "Args:" / "Returns:" / "Examples:"
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]

# Every documented name is in its module's __all__; members are listed in source order.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
# One parameter a line once a signature is longer than this (the long loss signatures).
maximum_signature_line_length = 100
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True  # show ``fft_sizes=AURALOSS_FFT_SIZES``, not a long tuple

napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "prediction, target: ..." names two arguments in one entry; a plain list renders it as written.
napoleon_use_param = False
napoleon_use_rtype = False

# ``-b doctest`` runs the same examples as the docstrings' own ">>>" lines.
doctest_global_setup = """
import jax
import jax.numpy as jnp
import numpy as np
from jaxaudio import losses
"""



def _module_signature(app, what, name, obj, options, signature, return_annotation):
    """An ``nnx.Module``'s constructor signature: its metaclass's ``__call__(*args, **kwargs)``
    would hide it."""
    if what != "class" or not signature or "*args: Any" not in signature:
        return None
    import inspect

    try:
        sig = inspect.signature(obj.__init__)
    except (TypeError, ValueError):
        return None
    params = [p.replace(annotation=_Annotation(p.annotation)) if isinstance(p.annotation, str)
              else p for p in list(sig.parameters.values())[1:]]  # without self
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty)), None


class _Annotation:
    """A postponed (string) annotation shown as written, not quoted."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def setup(app):
    app.connect("autodoc-process-signature", _module_signature)


nitpicky = False
html_theme = "alabaster"
html_static_path = []
exclude_patterns = ["_build"]
