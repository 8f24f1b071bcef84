"""jaxaudio's multi-resolution STFT loss against auraloss 0.4.0's, forward and backward, on one
GPU in one run: ``[8, 1, 4 x 24000]`` (8 clips of 4 s at 24 kHz), both with auraloss's defaults
(FFT 1024/2048/512, hops 120/240/50, windows 600/1200/240, Hann, spectral convergence plus
log magnitude), float32, median of 30 calls after 5, each ending in a synchronisation.

    python experiments/bench_auraloss.py [--out results.jsonl]   # needs torch and auraloss
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def median_ms(fn, sync, n: int = 30, warmup: int = 5) -> float:
    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    shape = (a.batch, 1, int(a.seconds * 24000))
    x = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    y = (0.1 * rng.standard_normal(shape)).astype(np.float32)

    import jax

    from jaxaudio import losses

    f = jax.jit(jax.value_and_grad(lambda p, t: losses.multi_resolution_stft_loss(p, t)))
    xj, yj = jax.device_put(x), jax.device_put(y)
    jax_ms = median_ms(lambda: f(xj, yj), jax.block_until_ready)
    jax_value, jax_grad = f(xj, yj)

    import auraloss
    import torch

    loss = auraloss.freq.MultiResolutionSTFTLoss().cuda()
    xt = torch.tensor(x, device="cuda", requires_grad=True)
    yt = torch.tensor(y, device="cuda")

    def torch_step():
        xt.grad = None
        value = loss(xt, yt)
        value.backward()
        return value

    torch_ms = median_ms(torch_step, lambda _: torch.cuda.synchronize())
    torch_value = float(torch_step().detach())
    grad_rel = float(np.linalg.norm(np.asarray(jax_grad) - xt.grad.cpu().numpy())
                     / np.linalg.norm(xt.grad.cpu().numpy()))
    row = {"case": "multi_resolution_stft_loss_fwd_bwd", "shape": list(shape),
           "device": jax.devices()[0].device_kind, "jax": jax.__version__,
           "torch": torch.__version__, "auraloss": getattr(auraloss, "__version__", "0.4.0"),
           "jaxaudio_ms": round(jax_ms, 3), "auraloss_ms": round(torch_ms, 3),
           "speedup": round(torch_ms / jax_ms, 2),
           "value_rel": abs(float(jax_value) - torch_value) / abs(torch_value),
           "grad_rel": grad_rel}
    print(json.dumps(row))
    if a.out:
        with open(a.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
