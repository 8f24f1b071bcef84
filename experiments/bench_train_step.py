"""Time one full train step of the original's headline configuration.

Headline configuration (the original's `run_train_creative_agent_fixed.sh`): EnCodec 24 kHz
latents, cascade of 2 stages with 6 layers and 8 heads, masking creative agent, GAN weight
0.1, correlation weight 0.5, input/target RMS weights 0.3, balance weight 15, anti-cheating
0.1, batch 8 per device, 16 s clips (1200 latent frames). Batches come from the latent cache,
so the step decodes the output (with its backward) but never encodes or decodes the inputs.

Prints one JSON line per configuration: median step time, samples per second, the step's
device memory (XLA's buffer assignment, per device), the allocator's peak (clean only when
the step was loaded from `--compilation_cache_dir` rather than compiled and autotuned here), the step's FLOPs (XLA cost analysis) and model FLOPs utilisation against the H200's
dense bf16 peak (989 TFLOP/s) and, for float32, its TF32 tensor peak (494 TFLOP/s).

    python experiments/bench_train_step.py                       # 1 device, fp32
    python experiments/bench_train_step.py --devices 4           # data parallel, batch 8 each
    python experiments/bench_train_step.py --precision bf16
    python experiments/bench_train_step.py --small               # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.codecs import make_codec
from jaxaudio.training.cli import parse_config
from jaxaudio.training.setup import build_discriminator, build_mesh, build_model, replicate
from jaxaudio.training.state import init_state
from jaxaudio.training.step import Steps

HEADLINE = ["--builtin", "--encoding_dim", "128", "--nhead", "8", "--num_layers", "6",
            "--num_transformer_layers", "3", "--dropout", "0.1", "--lr", "1e-4",
            "--weight_decay", "0.01", "--use_creative_agent", "true", "--mask_reg_weight", "0.1",
            "--balance_loss_weight", "15", "--loss_weight_input", "0.3",
            "--loss_weight_target", "0.3", "--loss_weight_spectral", "0",
            "--loss_weight_mel", "0", "--gan_weight", "0.1", "--disc_lr", "5e-5",
            "--disc_update_freq", "1", "--corr_weight", "0.5", "--anti_cheating", "0.1",
            "--shuffle_targets", "true", "--mask_type", "none", "--no_mlflow"]
PEAK_BF16 = 989e12
PEAK_TF32 = 494e12


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--batch_per_device", type=int, default=8)
    p.add_argument("--clip_seconds", type=float, default=16.0)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--matmul_precision", choices=("default", "highest"), default="default",
                   help="jax_default_matmul_precision: 'default' lets XLA use TF32 on GPU")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--small", action="store_true", help="tiny sizes for a CPU check")
    p.add_argument("--compilation_cache_dir", default=None,
                   help="JAX persistent compilation cache. Run twice with the same folder: the "
                        "second process loads the compiled step instead of compiling it, so no "
                        "autotuning scratch enters its allocator peak")
    a = p.parse_args()
    if a.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", a.compilation_cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if a.matmul_precision == "highest":
        jax.config.update("jax_default_matmul_precision", "highest")

    flags = list(HEADLINE) + ["--batch_size", str(a.batch_per_device),
                              "--precision", a.precision, "--codec", "mdct"]
    codec_kw = {}
    if a.small:
        flags += ["--encoding_dim", "32", "--num_layers", "1", "--nhead", "2"]
        codec_kw = dict(n_filters=2, dimension=32, ratios=(4, 2), lstm=1)
        a.clip_seconds, a.steps, a.warmup = 0.2, 3, 1
    cfg = parse_config(flags)
    codec = make_codec("encodec", random_seed=0, **codec_kw)
    devices = jax.devices()[: a.devices]
    mesh = build_mesh(devices)
    state, statics = init_state(cfg, build_model(cfg), build_discriminator(cfg))
    state = replicate(state, mesh)
    codec_graphdef, codec_state = nnx.split(codec)
    codec_state = replicate(codec_state, mesh)
    steps = Steps(cfg, statics, codec_graphdef, mesh)

    n = int(round(a.clip_seconds * codec.sample_rate))
    n -= n % codec.hop_length
    t = n // codec.hop_length
    b = a.batch_per_device * len(devices)
    rng = np.random.default_rng(0)
    sh = steps.batch_sharding
    audio = lambda: jax.device_put((0.1 * rng.standard_normal((b, 1, n))).astype(np.float32), sh)
    latent = lambda: jax.device_put(rng.standard_normal((b, codec.dim, t)).astype(np.float32), sh)
    batch = {"input_latent": latent(), "input_audio": audio(), "target_latent": latent(),
             "target_audio": audio()}
    alpha = jnp.zeros((), jnp.float32)
    index = jnp.zeros((), jnp.int32)

    t_compile = time.perf_counter()
    compiled = steps.train_step.lower(state, batch, codec_state, alpha, index).compile()
    compile_s = time.perf_counter() - t_compile
    # The step's own device memory (per device), from XLA's buffer assignment: arguments,
    # outputs and temporaries. The allocator's peak also counts compile-time autotuning scratch.
    mem = compiled.memory_analysis()
    step_gib = None
    if mem is not None:
        step_bytes = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                      + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
        step_gib = step_bytes / 2**30
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")

    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        state, metrics = steps.train_step(state, batch, codec_state, alpha, index)
        jax.block_until_ready((state, metrics))
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    peak = None
    stats = devices[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        peak = stats["peak_bytes_in_use"] / 2**30
    # cost_analysis counts one device's program (its share of the global batch).
    achieved = flops / med if np.isfinite(flops) else float("nan")
    print(json.dumps({
        "case": "train_step_headline" + ("_small" if a.small else ""),
        "device": devices[0].device_kind, "devices": len(devices),
        "batch_per_device": a.batch_per_device, "global_batch": b, "clip_seconds": a.clip_seconds,
        "frames": t, "precision": a.precision, "matmul_precision": a.matmul_precision,
        "lstm": "scan",
        "median_step_s": round(med, 5), "min_step_s": round(min(times), 5),
        "samples_per_second": round(b / med, 2),
        "step_memory_gib": None if step_gib is None else round(step_gib, 2),
        "allocator_peak_gib": None if peak is None else round(peak, 2),
        "compile_s": round(compile_s, 2), "compilation_cache": a.compilation_cache_dir,
        "step_tflop_per_device": round(flops / 1e12, 3) if np.isfinite(flops) else None,
        "achieved_tflops_per_device": round(achieved / 1e12, 1) if np.isfinite(achieved) else None,
        "mfu_vs_bf16_peak": round(achieved / PEAK_BF16, 4) if np.isfinite(achieved) else None,
        "mfu_vs_tf32_peak": round(achieved / PEAK_TF32, 4) if np.isfinite(achieved) else None,
        "loss": float(metrics["loss"]), "jax": jax.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
