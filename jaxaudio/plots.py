"""Waveform and spectrogram figures of (input, target, output) triples, as PNG files.

Used by the trainer (validation samples logged to MLflow) and by `python -m jaxaudio.generate`.
matplotlib runs headless (Agg); nothing is shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, axes, path: str | Path, title: str | None) -> Path:
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_waveforms(signals: Mapping[str, np.ndarray], sample_rate: int, path: str | Path,
                   title: str | None = None) -> Path:
    """One row per named mono signal ``[N]``, shared time axis in seconds."""
    plt = _pyplot()
    n = len(signals)
    fig, axes = plt.subplots(n, 1, figsize=(12, 2.2 * n), sharex=True, squeeze=False)
    for ax, (name, x) in zip(axes[:, 0], signals.items()):
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        t = np.arange(x.size) / float(sample_rate)
        ax.plot(t, x, linewidth=0.5)
        rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
        ax.set_ylabel(name)
        ax.set_title(f"{name} (RMS {rms:.4f})", fontsize=9, loc="left")
        ax.set_ylim(-1.05, 1.05)
    return _save(plt, fig, axes, path, title)


def log_spectrogram(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """``[F, frames]`` magnitude in dB (NumPy, periodic Hann, centred with reflect padding)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    pad = n_fft // 2
    x = np.pad(x, (pad, pad), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = 1 + (x.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * window, axis=-1)).T
    return 20.0 * np.log10(spec + 1e-6)


def plot_spectrograms(signals: Mapping[str, np.ndarray], sample_rate: int, path: str | Path,
                      title: str | None = None) -> Path:
    plt = _pyplot()
    n = len(signals)
    fig, axes = plt.subplots(n, 1, figsize=(12, 2.6 * n), sharex=True, squeeze=False)
    hop = 256
    specs = {name: log_spectrogram(x, hop=hop) for name, x in signals.items()}
    # One dB scale for every row, so a quiet or silent signal looks quiet.
    top = max((float(s.max()) for s in specs.values() if s.size), default=0.0)
    for ax, (name, spec) in zip(axes[:, 0], specs.items()):
        extent = (0.0, spec.shape[1] * hop / sample_rate, 0.0, sample_rate / 2000.0)
        im = ax.imshow(spec, origin="lower", aspect="auto", extent=extent, vmin=top - 80,
                       vmax=top, cmap="magma")
        ax.set_ylabel(f"{name}\nkHz")
        fig.colorbar(im, ax=ax, label="dB")
    return _save(plt, fig, axes, path, title)


def plot_spectrogram(spec: np.ndarray, sample_rate: int, path: str | Path, *, hop: int = 256,
                     title: str | None = None, vmax: float | None = None,
                     size: tuple[float, float] = (4.0, 3.0)) -> Path:
    """One small spectrogram panel (``spec``: :func:`log_spectrogram`'s ``[F, frames]`` dB)
    with an 80 dB range below ``vmax`` (default its own maximum): pass one ``vmax`` to the
    panels of one page so a quiet signal looks quiet."""
    plt = _pyplot()
    top = float(spec.max()) if vmax is None else float(vmax)
    fig, ax = plt.subplots(figsize=size)
    extent = (0.0, spec.shape[1] * hop / sample_rate, 0.0, sample_rate / 2000.0)
    ax.imshow(spec, origin="lower", aspect="auto", extent=extent, vmin=top - 80, vmax=top,
              cmap="magma")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
