"""jaxaudio.losses against auraloss 0.4.0's own numbers (``auraloss.npz``).

Every case, its auraloss class, its constructor arguments and its inputs are read from the
file's ``cases.json``; the class is mapped to our function and its arguments renamed through
:data:`ARG_NAMES` (nothing about shapes or options is written here). Each value and input
gradient is matched in float64 (x64 switched on for the test only) and in float32.

Tolerances, and why:
- float64, time-domain losses: round-off (1e-12; measured <= 2e-15).
- float64, STFT losses: auraloss builds its window with torch's float32 ``cos`` (its default
  dtype, even on float64 audio) and stores its mel/chroma filterbanks and A-weighting taps in
  float32. We build the same float32 constants, but torch's float32 ``cos`` is not correctly
  rounded and ours is, so a few window values differ in their last bit. Log magnitudes of
  near-silent bins (and the sign of ``|log X - log Y|`` where the two are nearly equal) amplify
  that: scalar values agree to 1e-7 relative (measured <= 7e-9), per-element values
  (``reduction="none"``) and gradients to the fixtures README's tolerances for STFT
  log-magnitudes (outputs 1e-4 relative; gradients 1e-3, measured <= 5e-4).
- float32: the fixtures README's tolerances (outputs 1e-4 relative, 1e-5 of the largest;
  gradients 1e-3, or 1e-2 through STFT log magnitudes, measured <= 8e-3).
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fixtures import (GRAD_TOL, GRAD_TOL_STFT, assert_grad_close, assert_output_close,
                      assert_scalar_close, fixtures_dir)
from jaxaudio import losses as L

# auraloss class name -> our function
CLASSES = {
    "STFTLoss": L.multi_resolution_stft_loss,
    "MultiResolutionSTFTLoss": L.multi_resolution_stft_loss,
    "MelSTFTLoss": L.mel_stft_loss,
    "ChromaSTFTLoss": L.chroma_stft_loss,
    "SumAndDifferenceSTFTLoss": L.sum_and_difference_stft_loss,
    "ESRLoss": L.esr_loss,
    "DCLoss": L.dc_loss,
    "LogCoshLoss": L.log_cosh_loss,
    "SNRLoss": L.snr_loss,
    "SISDRLoss": L.si_sdr_loss,
    "SDSDRLoss": L.sd_sdr_loss,
}
# auraloss constructor argument -> our keyword (any other keeps its name)
ARG_NAMES = {"fft_size": "fft_sizes", "hop_size": "hop_sizes", "win_length": "win_lengths"}

F64_TIME_TOL = 1e-12
F64_STFT_VALUE_RTOL = 1e-7
F64_STFT_GRAD_TOL = 1e-3

PATH = fixtures_dir() / "auraloss.npz"


def _cases() -> dict:
    if not PATH.exists():
        return {}
    with np.load(PATH) as z:
        return json.loads(bytes(z["cases.json"]))["cases"]


def _missing():
    msg = f"auraloss fixture {PATH} not found; set JAXAUDIO_FIXTURES to its folder"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def arrays():
    if not PATH.exists():
        _missing()
    with np.load(PATH) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture
def x64():
    """float64 for one test, restored afterwards."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def translate(case: dict):
    """``(function, keyword options, is an STFT loss, goes through log magnitudes)``."""
    module, _, cls = case["cls"].rpartition(".")
    assert cls in CLASSES, f"auraloss.npz: class {case['cls']} has no jaxaudio counterpart"
    kwargs = {ARG_NAMES.get(k, k): tuple(v) if isinstance(v, list) else v
              for k, v in case["kwargs"].items()}
    stft = module.endswith(".freq")
    log_mag = stft and kwargs.get("w_log_mag", 1.0) != 0
    return CLASSES[cls], kwargs, stft, log_mag


@functools.lru_cache(maxsize=None)
def _value_and_grad(cls: str, frozen: tuple, x64: bool):
    """jitted ``(prediction, target) -> (value, d sum(value) / d prediction)``, options closed
    over (one compilation per case and precision)."""
    fn = functools.partial(CLASSES[cls], **dict(frozen))
    vg = jax.value_and_grad(lambda p, t: (lambda v: (jnp.sum(v), v))(fn(p, t)), has_aux=True)
    return jax.jit(lambda p, t: (lambda r: (r[0][1], r[1]))(vg(p, t)))


def run_case(arrays, name: str, case: dict, dtype):
    fn, kwargs, stft, log_mag = translate(case)
    a, b = (np.asarray(arrays[s.strip()], dtype) for s in case["inputs"].split(","))
    cls = case["cls"].rpartition(".")[2]
    value, grad = _value_and_grad(cls, tuple(sorted(kwargs.items())), dtype == np.float64)(a, b)
    ref, ref_grad = arrays[f"{name}/value"], arrays[f"{name}/grad"]
    value = np.asarray(value)
    assert value.size == ref.size, f"{name}: {value.shape} values, auraloss has {ref.shape}"
    assert value.dtype == dtype and np.asarray(grad).dtype == dtype
    return value.reshape(ref.shape), np.asarray(grad), ref, ref_grad, stft, log_mag


CASES = _cases()
IDS = sorted(CASES) or ["<auraloss.npz missing>"]


@pytest.mark.parametrize("name", IDS)
def test_float64_matches_auraloss(arrays, x64, name):
    value, grad, ref, ref_grad, stft, _ = run_case(arrays, name, CASES[name], np.float64)
    if not stft:
        np.testing.assert_allclose(value, ref, rtol=F64_TIME_TOL, atol=0, err_msg=name)
        assert_grad_close(grad, ref_grad, f"{name}/grad", tol=F64_TIME_TOL)
        return
    if ref.ndim == 0:
        assert_scalar_close(value, ref, name, rtol=F64_STFT_VALUE_RTOL)
    else:
        assert_output_close(value, ref, name)
    assert_grad_close(grad, ref_grad, f"{name}/grad", tol=F64_STFT_GRAD_TOL)


@pytest.mark.parametrize("name", IDS)
def test_float32_matches_auraloss(arrays, name):
    value, grad, ref, ref_grad, _, log_mag = run_case(arrays, name, CASES[name], np.float32)
    if ref.ndim == 0:
        assert_scalar_close(value, ref, name)
    else:
        assert_output_close(value, ref, name)
    assert_grad_close(grad, ref_grad, f"{name}/grad", tol=GRAD_TOL_STFT if log_mag else GRAD_TOL)


def test_every_entry_is_a_case(arrays):
    """Each ``NAME/value`` and ``NAME/grad`` of the file belongs to a case of ``cases.json``
    (so every number in it is checked above)."""
    for key in arrays:
        if "/" in key:
            assert key.split("/")[0] in CASES, f"auraloss.npz: {key} belongs to no case"
    for name, case in CASES.items():
        translate(case)  # every class and argument has a counterpart
        assert f"{name}/value" in arrays and f"{name}/grad" in arrays, name
