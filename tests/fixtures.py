"""Reading the original system's reference numbers (``../shared/fixtures``).

Every parity test reads shapes, configuration and weights from these files, never from
constants. The folder is found through ``JAXAUDIO_FIXTURES`` (default: ``../shared/fixtures``
beside the project). When it is missing the parity tests fail under ``CI=true`` and skip with a
clear reason otherwise. Tolerances are the fixtures README's, and are never loosened.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def fixtures_dir() -> Path:
    env = os.environ.get("JAXAUDIO_FIXTURES")
    return Path(env) if env else (PROJECT_ROOT.parent / "shared" / "fixtures")


class Fixture:
    """One ``.npz`` file: ``config`` (parsed ``meta/config``) and prefixed array groups."""

    def __init__(self, path: Path):
        self.path = path
        with np.load(path) as z:
            self.arrays: dict[str, np.ndarray] = {k: z[k] for k in z.files}
        self.config: dict[str, Any] = json.loads(str(self.arrays.pop("meta/config")))

    def group(self, prefix: str) -> dict[str, np.ndarray]:
        """Arrays under ``prefix/`` with the prefix removed, e.g. ``group("param")``."""
        p = prefix.rstrip("/") + "/"
        return {k[len(p):]: v for k, v in self.arrays.items() if k.startswith(p)}

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays


def load_fixture(name: str) -> Fixture:
    """Load ``<fixtures>/<name>.npz`` or fail (CI) / skip (elsewhere) with the reason."""
    path = fixtures_dir() / f"{name}.npz"
    if not path.exists():
        msg = (
            f"reference fixture {path} not found; set JAXAUDIO_FIXTURES to the folder holding "
            f"the original system's .npz files"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return Fixture(path)


# --- tolerances of the fixtures README ------------------------------------------------------

OUTPUT_RTOL = 1e-4
OUTPUT_ATOL_FRACTION = 1e-5  # of the reference array's largest magnitude
GRAD_TOL = 1e-3
GRAD_TOL_STFT = 1e-2  # gradients through STFT log-magnitudes (float32 floor near 6e-3)


def assert_output_close(actual, expected, name: str = "output") -> None:
    """Outputs: relative 1e-4, absolute 1e-5 of the array's largest value."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{name}: non-finite values"
    atol = OUTPUT_ATOL_FRACTION * float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=OUTPUT_RTOL, atol=atol, err_msg=name)


def assert_grad_close(actual, expected, name: str = "grad", tol: float = GRAD_TOL) -> None:
    """Gradients: ||g - G|| / ||G|| <= tol and no element off by more than tol * max|G|."""
    g = np.asarray(actual, dtype=np.float64)
    G = np.asarray(expected, dtype=np.float64)
    assert g.shape == G.shape, f"{name}: shape {g.shape} != {G.shape}"
    assert np.all(np.isfinite(g)), f"{name}: non-finite gradient"
    ref_norm = np.linalg.norm(G)
    err = np.linalg.norm(g - G)
    if ref_norm == 0.0:
        assert err == 0.0, f"{name}: expected an all-zero gradient, got norm {err:.3e}"
        return
    rel = err / ref_norm
    max_err = float(np.max(np.abs(g - G)))
    max_ref = float(np.max(np.abs(G)))
    assert rel <= tol, f"{name}: relative L2 error {rel:.3e} > {tol:.0e}"
    assert max_err <= tol * max_ref, (
        f"{name}: max element error {max_err:.3e} > {tol:.0e} * max|G| ({max_ref:.3e})"
    )


def assert_scalar_close(actual, expected, name: str = "value", rtol: float = OUTPUT_RTOL) -> None:
    a = float(np.asarray(actual))
    e = float(np.asarray(expected))
    assert np.isfinite(a), f"{name}: non-finite ({a})"
    # 1e-12 only admits a reference of exactly 0 (e.g. identical signals, where float32 gives 0
    # too); float32 round-off of any non-zero value is far above it.
    assert abs(a - e) <= rtol * abs(e) + 1e-12, f"{name}: {a!r} vs reference {e!r}"
