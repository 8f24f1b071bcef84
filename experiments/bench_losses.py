"""Forward + backward time of jaxaudio's losses, and of the original's torch losses when torch is
importable, on the same device in the same run.

Each case times ``value_and_grad`` with respect to the prediction (the output audio), jitted,
after warm-up, and prints one JSON line: the median over ``--runs`` runs in milliseconds, and,
with torch, the torch median and the speed-up. The torch versions below follow the original's
formulas and call structure (``training/losses.py``, ``correlation_penalty.py``: a window and a
``MelSpectrogram`` built per call, host syncs of ``.any()``); they exist for timing only.

    python experiments/bench_losses.py            # [8, 384000] float32 (8 clips of 16 s at 24 kHz)
    python experiments/bench_losses.py --small    # a quick CPU check
    python experiments/bench_losses.py --no-torch
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = (
    "stft_loss",
    "mel_loss",
    "spectral_outlier_penalty",
    "modulation_correlation_penalty",
    "combined_loss",
)
# every weight on (the fixtures' combined_loss configuration)
WEIGHTS = dict(
    weight_input=0.3, weight_target=0.3, weight_spectral=0.01, weight_mel=0.02, weight_correlation=0.5
)


def make_audio(batch: int, samples: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Three ``[B, N]`` float32 signals (prediction, input, target): enveloped tones + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples, dtype=np.float64) / 24000.0
    out = []
    for _ in range(3):
        env = 1 + np.sin(2 * np.pi * rng.uniform(0.5, 4, (batch, 1)) * t)
        tone = np.sin(2 * np.pi * rng.uniform(80, 5000, (batch, 1)) * t)
        out.append((0.1 * env * (tone + 0.3 * rng.standard_normal((batch, samples)))).astype(np.float32))
    return tuple(out)


def median_ms(step, runs: int, warmup: int) -> float:
    """``step()`` must block until its work is done."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


# --- jaxaudio -------------------------------------------------------------------------------


def jax_case(name: str):
    """``f(pred, input, target) -> (value, grad wrt pred)``, jitted."""
    import jax

    from jaxaudio.training import losses as L

    fns = {
        "rms_loss": lambda y, i, t: L.rms_loss(y, t),
        "stft_loss": lambda y, i, t: L.stft_loss(y, t),
        "mel_loss": lambda y, i, t: L.mel_loss(y, t),
        "spectral_outlier_penalty": lambda y, i, t: L.spectral_outlier_penalty(y),
        "modulation_correlation_penalty": lambda y, i, t: L.modulation_correlation_penalty(
            i[:, None], t[:, None], y[:, None]
        ),
        "combined_loss": lambda y, i, t: L.combined_loss(
            y[:, None], i[:, None], t[:, None], **WEIGHTS
        ).total,
    }
    return jax.jit(jax.value_and_grad(fns[name]))


def time_jax(name, pred, inp, tgt, runs, warmup):
    import jax

    dev = jax.devices()[0]
    y, i, t = (jax.device_put(a, dev) for a in (pred, inp, tgt))
    f = jax_case(name)
    value = float(f(y, i, t)[0])
    ms = median_ms(lambda: jax.block_until_ready(f(y, i, t)), runs, warmup)
    return ms, value, f"{dev.platform}:{getattr(dev, 'device_kind', '')}"


# --- the original's losses in torch (timing only) -------------------------------------------


def torch_losses(filterbank=None):
    """The original's losses; ``filterbank(sr, n_fft, n_mels, fmin, fmax) -> [F, n_mels]`` is
    used for mel when torchaudio is missing (same matrix as torchaudio's default)."""
    import torch

    try:
        import torchaudio
    except ImportError:
        torchaudio = None

    def rms_loss(output, target):
        return torch.sqrt(torch.mean((output - target) ** 2))

    def stft_loss(y_pred, y_target, fft_sizes=(512, 1024, 2048), hop_sizes=(128, 256, 512),
                  win_sizes=(512, 1024, 2048)):
        sc, lm = 0.0, 0.0
        for n_fft, hop, win in zip(fft_sizes, hop_sizes, win_sizes):
            window = torch.hann_window(win).to(y_pred.device)
            kw = dict(n_fft=n_fft, hop_length=hop, win_length=win, window=window, return_complex=True)
            mp, mt = torch.stft(y_pred, **kw).abs(), torch.stft(y_target, **kw).abs()
            sc = sc + torch.norm(mp - mt, p="fro") / (torch.norm(mt, p="fro") + 1e-6)
            lm = lm + torch.mean(torch.abs(torch.log(mp + 1e-5) - torch.log(mt + 1e-5)))
        return (sc + lm) / len(fft_sizes)

    fb_cache = {}

    def mel_spec(x, sr, n_fft, n_mels, hop, fmin, fmax):
        if torchaudio is not None:  # built per call, as the original does
            t = torchaudio.transforms.MelSpectrogram(
                sample_rate=sr, n_fft=n_fft, n_mels=n_mels, hop_length=hop, f_min=fmin, f_max=fmax
            ).to(x.device)
            return t(x)
        key = (sr, n_fft, n_mels, fmin, fmax, x.device)
        if key not in fb_cache:
            fb_cache[key] = torch.as_tensor(
                np.array(filterbank(sr, n_fft, n_mels, fmin, fmax)), dtype=x.dtype, device=x.device
            )
        window = torch.hann_window(n_fft).to(x.device)
        spec = torch.stft(x, n_fft, hop, n_fft, window, return_complex=True).abs() ** 2
        return torch.matmul(spec.transpose(-1, -2), fb_cache[key]).transpose(-1, -2)

    def mel_loss(y_pred, y_target, sample_rate=24000, n_fft=1024, n_mels=80, hop_length=256,
                 fmin=0.0, fmax=8000.0):
        args = (sample_rate, n_fft, n_mels, hop_length, fmin, fmax)
        lp = torch.log(mel_spec(y_pred, *args) + 1e-5)
        lt = torch.log(mel_spec(y_target, *args) + 1e-5)
        return torch.mean(torch.abs(lp - lt))

    def spectral_outlier_penalty(audio, sample_rate=24000, n_fft=2048, hop_length=512,
                                 freq_bands=((1800, 2200), (3800, 4200), (5800, 6200)),
                                 percentile=90):
        if audio.dim() == 3:
            audio = audio.squeeze(1)
        window = torch.hann_window(n_fft).to(audio.device)
        mag = torch.stft(audio, n_fft=n_fft, hop_length=hop_length, win_length=n_fft,
                         window=window, return_complex=True, center=True).abs()
        res = sample_rate / n_fft
        total = 0.0
        for low, high in freq_bands:
            lo, hi = max(0, int(low / res)), min(mag.shape[1], int(high / res))
            e = mag[:, lo:hi, :].mean(dim=1)
            mean, std = e.mean(), e.std() + 1e-8
            z = (e - mean) / std
            mask = z > torch.quantile(z, percentile / 100.0)
            if mask.any():
                total = total + torch.mean((e[mask] - mean) ** 2)
        return total / len(freq_bands)

    def envelope(x, m):
        seg = x.shape[1] // m
        return x.abs()[:, : seg * m].view(x.shape[0], m, seg).max(dim=2)[0]

    def pearson(x, y, m):
        xc, yc = x - x.mean(dim=1, keepdim=True), y - y.mean(dim=1, keepdim=True)
        cov = (xc * yc).sum(dim=1) / (m - 1)
        sx = torch.sqrt((xc**2).sum(dim=1) / (m - 1))
        sy = torch.sqrt((yc**2).sum(dim=1) / (m - 1))
        return torch.clamp(cov / (sx * sy + 1e-8), -1.0, 1.0)

    def modulation_correlation_penalty(input_audio, target_audio, output_audio, m_parts=250):
        inp, tgt, out = input_audio.squeeze(1), target_audio.squeeze(1), output_audio.squeeze(1)
        if torch.isnan(out).any():
            return torch.tensor(0.0, device=out.device)
        env_out = envelope(out, m_parts)
        c_in = pearson(envelope(inp, m_parts), env_out, m_parts)
        c_tg = pearson(envelope(tgt, m_parts), env_out, m_parts)
        return (c_in.abs() ** 2 + c_tg.abs() ** 2).mean()

    def combined_loss(output_audio, input_audio, target_audio, weight_input, weight_target,
                      weight_spectral, weight_mel, weight_correlation=0.0):
        o, i, t = output_audio.squeeze(1), input_audio.squeeze(1), target_audio.squeeze(1)
        rms_in = rms_loss(o, i) if weight_input > 0 else 0.0
        rms_tg = rms_loss(o, t) if weight_target > 0 else 0.0
        spec = 0.5 * (stft_loss(o, i) + stft_loss(o, t)) if weight_spectral > 0 else 0.0
        mel = 0.5 * (mel_loss(o, i) + mel_loss(o, t)) if weight_mel > 0 else 0.0
        corr = (modulation_correlation_penalty(input_audio, target_audio, output_audio, 250)
                if weight_correlation > 0 else 0.0)
        total = (weight_input * rms_in + weight_target * rms_tg + weight_spectral * spec
                 + weight_mel * mel + weight_correlation * corr)
        return total, rms_in, rms_tg, spec, mel, corr

    cases = {
        "rms_loss": lambda y, i, t: rms_loss(y, t),
        "stft_loss": lambda y, i, t: stft_loss(y, t),
        "mel_loss": lambda y, i, t: mel_loss(y, t),
        "spectral_outlier_penalty": lambda y, i, t: spectral_outlier_penalty(y),
        "modulation_correlation_penalty": lambda y, i, t: modulation_correlation_penalty(
            i[:, None], t[:, None], y[:, None]
        ),
        "combined_loss": lambda y, i, t: combined_loss(
            y[:, None], i[:, None], t[:, None], **WEIGHTS
        )[0],
    }
    return cases, ("torchaudio" if torchaudio is not None else "stft+filterbank")


def time_torch(cases, name, pred, inp, tgt, runs, warmup):
    import torch

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    y0 = torch.as_tensor(pred, device=dev)
    i, t = torch.as_tensor(inp, device=dev), torch.as_tensor(tgt, device=dev)
    fn = cases[name]

    def step():
        y = y0.detach().requires_grad_(True)
        loss = fn(y, i, t)
        loss.backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return float(loss.detach())

    value = step()
    return median_ms(step, runs, warmup), value, str(torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu")


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="[2, 48000] and 20 runs: a CPU check")
    p.add_argument("--batch", type=int, default=None, help="batch size B (default 8; --small 2)")
    p.add_argument("--samples", type=int, default=None, help="samples N (default 384000; --small 48000)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per case (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs after compilation")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES) + ["rms_loss"])
    p.add_argument("--no-torch", action="store_true", help="skip the torch reference timings")
    args = p.parse_args(argv)
    batch = args.batch or (2 if args.small else 8)
    samples = args.samples or (48000 if args.small else 384000)
    runs = max(args.runs, 20)

    use_torch = not args.no_torch and torch_available()
    if use_torch:  # leave the GPU's memory to both frameworks
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")
    import jax

    pred, inp, tgt = make_audio(batch, samples)
    torch_cases, torch_mel = None, None
    if use_torch:
        from jaxaudio.dsp import mel_filterbank

        torch_cases, torch_mel = torch_losses(mel_filterbank)

    for name in args.cases:
        jms, jv, jdev = time_jax(name, pred, inp, tgt, runs, args.warmup)
        rec = {
            "case": name,
            "shape": [batch, samples],
            "dtype": "float32",
            "jax_device": jdev,
            "jax_version": jax.__version__,
            "runs": runs,
            "jax_ms": round(jms, 4),
            "jax_value": jv,
        }
        if use_torch:
            import torch

            tms, tv, tdev = time_torch(torch_cases, name, pred, inp, tgt, runs, args.warmup)
            rec.update(
                torch_device=tdev,
                torch_version=torch.__version__,
                torch_mel=torch_mel,
                torch_ms=round(tms, 4),
                torch_value=tv,
                value_rel_diff=abs(jv - tv) / max(abs(tv), 1e-30),
                speedup=round(tms / jms, 3),
            )
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
