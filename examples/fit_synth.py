"""Fit a small differentiable synthesiser to a recorded note with jaxaudio's losses.

The losses of :mod:`jaxaudio.losses` in a user's own JAX loop: a harmonic-plus-noise
synthesiser (64 harmonics of the note's fundamental, each with its own amplitude and decay, a
stiffness that stretches the partials, and noise in 16 bands with their own gains and decay)
is fitted to a recording by gradient descent on the multi-resolution STFT loss plus the
mel-scaled STFT loss. It writes the loss curve, the spectrograms of the recording, the
synthesiser before and after, and the fitted sound::

    python examples/fit_synth.py                         # the bundled bass note, 300 steps
    python examples/fit_synth.py --audio my_note.wav --steps 500 --out fit_out

The bundled ``data/bass_woodsy_c.flac`` is Sonic Pi's ``bass_woodsy_c`` sample (CC0 1.0, from
the npm package ``supersonic-scsynth-samples`` 0.84.2), one second at 24 kHz. About half a
minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxaudio import losses

SR = 24000
HARMONICS, BANDS = 64, 16
HERE = Path(__file__).resolve().parent


def load(path: Path, seconds: float) -> np.ndarray:
    """Mono float32 audio at 24 kHz, at most ``seconds`` long, peak 0.8."""
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(path, dtype="float64", always_2d=True)
    x = resample_poly(x.mean(axis=1), SR, sr) if sr != SR else x.mean(axis=1)
    x = x[: int(seconds * SR)]
    return (0.8 * x / max(np.abs(x).max(), 1e-9)).astype(np.float32)


def fundamental(x: np.ndarray, lo: float = 30.0, hi: float = 1000.0) -> float:
    """The note's fundamental (Hz): the harmonic-product spectrum's peak between lo and hi."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
    freqs = np.fft.rfftfreq(8 * len(x), 1 / SR)
    hps = spec.copy()
    for k in (2, 3, 4):
        hps[: len(spec) // k] *= spec[::k][: len(spec) // k]
    band = (freqs >= lo) & (freqs <= hi)
    return float(freqs[band][np.argmax(hps[band])])


def init_params() -> dict[str, jax.Array]:
    k = jnp.arange(1, HARMONICS + 1, dtype=jnp.float32)
    return {"amp": jnp.log(0.3 / k), "decay": jnp.full(HARMONICS, 1.0), "stretch": jnp.zeros(()),
            "noise": jnp.full(BANDS, -4.0), "noise_decay": jnp.asarray(2.0)}


def synth(params: dict[str, jax.Array], f0: float, n: int, noise: jax.Array) -> jax.Array:
    """``[n]`` samples: decaying harmonics (partials stretched as ``k sqrt(1 + B k^2)``) plus
    noise shaped by 16 band gains (linear bands up to Nyquist) and its own decay."""
    t = jnp.arange(n, dtype=jnp.float32) / SR
    k = jnp.arange(1, HARMONICS + 1, dtype=jnp.float32)
    b = 1e-4 * jnp.tanh(params["stretch"])
    freqs = f0 * k * jnp.sqrt(1.0 + b * k**2)
    alive = freqs < SR / 2  # partials above Nyquist are silent
    amps = jnp.exp(params["amp"]) * alive
    decays = jax.nn.softplus(params["decay"]) * 4.0  # 1/s
    attack = jnp.clip(t / 0.005, 0.0, 1.0)
    partials = (amps[:, None] * jnp.exp(-decays[:, None] * t)
                * jnp.sin(2 * jnp.pi * freqs[:, None] * t))
    spectrum = jnp.fft.rfft(noise)
    band = jnp.minimum((jnp.arange(spectrum.shape[0]) * BANDS) // spectrum.shape[0], BANDS - 1)
    shaped = jnp.fft.irfft(spectrum * jnp.exp(params["noise"])[band], n=n)
    noise_env = jnp.exp(-jax.nn.softplus(params["noise_decay"]) * 4.0 * t)
    return attack * (partials.sum(axis=0) + shaped * noise_env)


def objective(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Multi-resolution STFT loss plus the mel-scaled STFT loss, on ``[1, N]`` audio."""
    stft = losses.multi_resolution_stft_loss(pred, target, fft_sizes=(256, 512, 1024, 2048),
                                             hop_sizes=(64, 128, 256, 512),
                                             win_lengths=(256, 512, 1024, 2048))
    mel = losses.mel_stft_loss(pred, target, sample_rate=SR, fft_sizes=2048, hop_sizes=256,
                               win_lengths=2048, n_mels=128)
    return stft + mel


def fit(target: np.ndarray, f0: float, steps: int, lr: float, seed: int = 0):
    """Adam on the synthesiser's parameters; returns (initial, fitted parameters, losses)."""
    n = len(target)
    noise = jax.random.normal(jax.random.key(seed), (n,), jnp.float32)
    y = jnp.asarray(target)[None]
    make = functools.partial(synth, f0=f0, n=n, noise=noise)
    loss = lambda params: objective(make(params)[None], y)  # noqa: E731
    opt = optax.adam(lr)

    @jax.jit
    def step(params, state):
        value, grad = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grad, state, params)
        return optax.apply_updates(params, updates), state, value

    params = init_params()
    state, curve = opt.init(params), []
    for _ in range(steps):
        params, state, value = step(params, state)
        curve.append(float(value))
    curve.append(float(jax.jit(loss)(params)))
    return init_params(), params, curve, make


def draw(out: Path, target, before, after, curve) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(curve)
    ax.set(xlabel="step", ylabel="STFT + mel loss", title="fitting the synthesiser")
    fig.tight_layout()
    fig.savefig(out / "loss_curve.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, (name, x) in zip(axes, (("recording", target), ("synthesiser, start", before),
                                    ("synthesiser, fitted", after))):
        ax.specgram(x, NFFT=1024, Fs=SR, noverlap=768, cmap="magma", vmin=-120)
        ax.set(title=name, xlabel="time (s)", ylim=(0, 6000))
    axes[0].set_ylabel("frequency (Hz)")
    fig.tight_layout()
    fig.savefig(out / "spectrograms.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", type=Path, default=HERE / "data" / "bass_woodsy_c.flac",
                   help="a recording of one note (any sample rate; mixed to mono)")
    p.add_argument("--seconds", type=float, default=1.0, help="how much of it to fit")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--out", type=Path, default=Path("fit_synth_out"))
    a = p.parse_args(argv)
    target = load(a.audio, a.seconds)
    f0 = fundamental(target)
    initial, fitted, curve, make = fit(target, f0, a.steps, a.lr)
    a.out.mkdir(parents=True, exist_ok=True)
    before, after = (np.asarray(make(q)) for q in (initial, fitted))
    draw(a.out, target, before, after, curve)
    import soundfile as sf

    sf.write(a.out / "fitted.wav", after / max(np.abs(after).max(), 1e-9) * 0.8, SR)
    summary = {"audio": str(a.audio), "f0_hz": round(f0, 2), "steps": a.steps,
               "loss_start": curve[0], "loss_end": curve[-1]}
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"f0 {f0:.1f} Hz; loss {curve[0]:.3f} -> {curve[-1]:.3f} in {a.steps} steps; "
          f"wrote {a.out}/loss_curve.png, spectrograms.png, fitted.wav, summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
