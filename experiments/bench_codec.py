"""Throughput of the full-size EnCodec SEANet in JAX and in the PyTorch ``encodec`` package, on
the same device in the same run.

Cases, each jitted (JAX) and timed after warm-up as the median of ``--runs`` runs:
``encode`` (forward), ``decode`` (forward), ``decode_fwd_bwd`` (the gradient w.r.t. the latents
of ``sum(decode(z) * R)``, the training step's path). One JSON line per case with milliseconds
per call and seconds of audio per second. Also, with torch, the largest difference between
JAX and PyTorch on the same weights.

The model is the 24 kHz configuration (n_filters 32, ratios 8-5-4-2, 2 LSTM layers) with
random frozen weights: those of ``EncodecModel.encodec_model_24khz(pretrained=False)`` when
``encodec`` and torch import (no download happens), else seeded random ones.

    python experiments/bench_codec.py                # [8, 1, 384000]: 8 clips of 16 s at 24 kHz
    python experiments/bench_codec.py --small        # a quick CPU check
    python experiments/bench_codec.py --no-torch --precision highest
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
# torch shares the GPU in this process: leave it room
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")


def median_ms(step, runs: int, warmup: int) -> tuple[float, float]:
    """``step()`` must block until its work is done; returns (median, min) in ms."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def torch_model(small: bool):
    """The reference SEANet encoder/decoder (``None`` when torch or ``encodec`` is missing)."""
    try:
        import torch
        from encodec import EncodecModel
    except ImportError as e:
        emit(case="torch_reference", skipped=f"{type(e).__name__}: {e}")
        return None, None
    torch.manual_seed(0)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    device = "cuda" if torch.cuda.is_available() and not small else "cpu"
    return model.to(device).eval(), device


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="[1, 1, 9600] on any device, 3 runs")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=384000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default=None, help="JAX conv/matmul precision (default: XLA's)")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    if args.small:
        args.batch, args.samples, args.runs, args.warmup = 1, 9600, 3, 1

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxaudio.codecs import make_codec
    from jaxaudio.codecs.encodec import encodec_from_state_dict

    dev = jax.devices()[0]
    device = f"{dev.platform}:{getattr(dev, 'device_kind', '')}"
    tmodel, tdevice = (None, None) if args.no_torch else torch_model(args.small)
    impls = ["scan"]
    b, n = args.batch, args.samples
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((b, 1, n))).astype(np.float32)

    codecs = {}
    for impl in impls:
        if tmodel is not None:
            state = {k: v.detach().cpu().numpy() for k, v in tmodel.state_dict().items()}
            codecs[impl] = encodec_from_state_dict(state, precision=args.precision, source="torch")
        else:
            codecs[impl] = make_codec("encodec", random_seed=0, precision=args.precision)
    hop, sr = codecs["scan"].hop_length, codecs["scan"].sample_rate
    t = -(-n // hop)
    latent = rng.standard_normal((b, codecs["scan"].dim, t)).astype(np.float32)
    r = rng.standard_normal((b, 1, t * hop)).astype(np.float32)
    audio_s = b * n / sr
    common = dict(batch=b, samples=n, frames=t, device=device, precision=args.precision)

    outputs = {}
    for impl, codec in codecs.items():
        graphdef, state = nnx.split(codec)
        x, z, rr = (jax.device_put(a, dev) for a in (audio, latent, r))
        enc = jax.jit(lambda s, a: nnx.merge(graphdef, s).encode(a))
        dec = jax.jit(lambda s, q: nnx.merge(graphdef, s).decode(q))
        bwd = jax.jit(
            lambda s, q, w: jax.value_and_grad(lambda q: jnp.sum(nnx.merge(graphdef, s).decode(q) * w))(q)
        )
        cases = {
            "encode": lambda: jax.block_until_ready(enc(state, x)),
            "decode": lambda: jax.block_until_ready(dec(state, z)),
            "decode_fwd_bwd": lambda: jax.block_until_ready(bwd(state, z, rr)),
        }
        for case, step in cases.items():
            t0 = time.perf_counter()
            step()
            compile_s = time.perf_counter() - t0
            ms, ms_min = median_ms(step, args.runs, args.warmup)
            emit(case=case, impl=f"jax-{impl}", ms=round(ms, 3), ms_min=round(ms_min, 3),
                 audio_s_per_s=round(audio_s / (ms / 1e3), 1), first_call_s=round(compile_s, 2), **common)
        outputs[impl] = (np.asarray(enc(state, x)), np.asarray(dec(state, z)), np.asarray(bwd(state, z, rr)[1]))

    if tmodel is not None:
        ref = time_torch(tmodel, tdevice, audio, latent, r, args.runs, args.warmup, audio_s, common)
        for impl, outs in outputs.items():
            emit(case="jax_vs_torch", impl=f"jax-{impl}", encode_rel=rel_diff(outs[0], ref[0]),
                 decode_rel=rel_diff(outs[1], ref[1]), grad_rel=rel_diff(outs[2], ref[2]), **common)


def time_torch(tmodel, tdevice, audio, latent, r, runs, warmup, audio_s, common):
    """Time the reference encoder/decoder; return its (encoded, decoded, grad) as NumPy."""
    import torch

    tx, tz, tr = (torch.from_numpy(a).to(tdevice) for a in (audio, latent, r))
    sync = torch.cuda.synchronize if tdevice == "cuda" else (lambda: None)

    def t_enc():
        with torch.no_grad():
            out = tmodel.encoder(tx)
        sync()
        return out

    def t_dec():
        with torch.no_grad():
            out = tmodel.decoder(tz)
        sync()
        return out

    def t_bwd():
        q = tz.detach().requires_grad_(True)
        tmodel.train()  # cuDNN's RNN backward needs training mode (the original kept it there)
        (tmodel.decoder(q) * tr).sum().backward()
        sync()
        return q.grad

    flags = dict(cudnn_tf32=torch.backends.cudnn.allow_tf32, matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
    for case, step in (("encode", t_enc), ("decode", t_dec), ("decode_fwd_bwd", t_bwd)):
        ms, ms_min = median_ms(step, runs, warmup)
        emit(case=case, impl=f"torch-encodec-{torch.__version__}", ms=round(ms, 3), ms_min=round(ms_min, 3),
             audio_s_per_s=round(audio_s / (ms / 1e3), 1), torch_device=tdevice, **flags, **common)
    return tuple(t().detach().cpu().numpy() for t in (t_enc, t_dec, t_bwd))


if __name__ == "__main__":
    main()
