"""Time one full train step of the original's headline configuration, in two semantics.

Headline configuration (the original's `run_train_creative_agent_fixed.sh`): EnCodec 24 kHz
latents, cascade of 2 stages with 6 layers and 8 heads, masking creative agent, GAN weight
0.1, correlation weight 0.5, input/target RMS weights 0.3, balance weight 15, anti-cheating
0.1, batch 8 per device, 16 s clips (1200 latent frames).

`--semantics`:
- `raw` (equal semantics, the original's step): raw clips enter the step, which encodes input
  and target, decodes the input (the losses' reference), runs the model and decodes the output
  (with its backward), as the original's `train_epoch` does every step;
- `cached`: batches come from the latent cache, so the step only decodes the output.

`--variant`: `original` (default) pins the original's GAN, masks and cascade update
(`--gan_variant original --mask_gate learned --cascade_update additive`), so the step does the
original's work; `jaxaudio` times jaxaudio's training defaults (the stable GAN also encodes a
real mixture and takes an R1 gradient every step), a cost reported on its own.

Prints (and appends to `--out`) one JSON line: median step time (each step waited for before
the next is dispatched) and samples per second, the same pipelined as `jaxaudio.train` runs
(each step dispatched before the previous one's metrics are read; `pipelined_*`), compile
time, the step's device memory (XLA's buffer assignment), the allocator's peak (clean only when
the step was loaded from `--compilation_cache_dir` rather than compiled and autotuned here),
the step's FLOPs (XLA's cost analysis of the compiled step, plus cuDNN attention calls, which
it does not count) and the FLOPs utilisation against the H200's dense bf16 peak (989 TFLOP/s)
and its TF32 peak (494 TFLOP/s).

    python experiments/bench_train_step.py --semantics raw           # 1 device, fp32
    python experiments/bench_train_step.py --precision bf16 --compilation_cache_dir /tmp/jcc
    python experiments/bench_train_step.py --small                   # CPU smoke test
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxaudio.runtime import configure_gpu_flags  # noqa: E402  (before jax starts a backend)

try:
    import soundfile  # noqa: F401
except ImportError:  # GPU images without it: the step reads no audio files, only imports them
    import types
    sys.modules["soundfile"] = types.ModuleType("soundfile")

HEADLINE = ["--builtin", "--encoding_dim", "128", "--nhead", "8", "--num_layers", "6",
            "--num_transformer_layers", "3", "--dropout", "0.1", "--lr", "1e-4",
            "--weight_decay", "0.01", "--use_creative_agent", "true", "--mask_reg_weight", "0.1",
            "--balance_loss_weight", "15", "--loss_weight_input", "0.3",
            "--loss_weight_target", "0.3", "--loss_weight_spectral", "0",
            "--loss_weight_mel", "0", "--gan_weight", "0.1", "--disc_lr", "5e-5",
            "--disc_update_freq", "1", "--corr_weight", "0.5", "--anti_cheating", "0.1",
            "--shuffle_targets", "true", "--mask_type", "none", "--no_mlflow"]
# The musical recipe (issue 12's, experiments/quality_ablation.py): the built-in settings with
# 4 layers and the GAN, at batch 32 of 4 s with the MDCT codec (--codec mdct --clip_seconds 4
# --batch_per_device 32).
MUSICAL = ["--builtin", "--num_layers", "4", "--use_creative_agent", "true", "--gan_weight",
           "0.1", "--no_mlflow"]
ORIGINAL_VARIANT = ["--gan_variant", "original", "--mask_gate", "learned",
                    "--cascade_update", "additive"]
PEAK_BF16 = 989e12
PEAK_TF32 = 494e12
_SHAPE = re.compile(r"\w+\[(\d+),(\d+),(\d+),(\d+)\]")


def cudnn_attention_flops(hlo_text: str) -> tuple[float, int]:
    """Model FLOPs of the cuDNN attention calls in a compiled module: forward 4*B*H*T*S*d (two
    products), backward twice that; XLA's cost analysis counts custom calls as 0. Reads q and
    k, the first two operands, in either layout (BTNH or BNTH; sequence longer than heads)."""
    total, calls = 0.0, 0
    for line in hlo_text.splitlines():
        target = re.search(r'custom_call_target="__cudnn\$fmha(\w*)"', line)
        if not target or "custom-call(" not in line:
            continue
        shapes = _SHAPE.findall(line.split("custom-call(", 1)[1])
        if len(shapes) < 2:
            continue
        q, k = ([int(x) for x in sh] for sh in shapes[:2])
        calls += 1
        total += (4.0 * q[0] * q[1] * q[2] * q[3] * max(k[1], k[2])
                  * (2 if "Backward" in target.group(1) else 1))
    return total, calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--semantics", choices=("cached", "raw"), default="cached")
    p.add_argument("--variant", choices=("original", "jaxaudio"), default="original",
                   help="original: the original's GAN, masks and cascade update (the same work "
                        "per step); jaxaudio: jaxaudio's training defaults")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--batch_per_device", type=int, default=8)
    p.add_argument("--clip_seconds", type=float, default=16.0)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--codec_precision", choices=("fp32", "bf16"), default="fp32",
                   help="the train step's loss decode (jaxaudio.train's --codec_precision)")
    p.add_argument("--matmul_precision", choices=("default", "highest"), default="default",
                   help="jax_default_matmul_precision: 'default' lets XLA use TF32 on GPU")
    p.add_argument("--call", choices=("leaves", "tree"), default=os.environ.get("BENCH_CALL", "leaves"),
                   help="leaves: the step over the state's leaves, as jaxaudio.train calls it "
                        "(Steps.leaf_step); tree: Steps.train_step on the TrainState, whose "
                        "nnx.Variable nodes are flattened and rebuilt in Python at every call "
                        "(default: $BENCH_CALL, else leaves)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--small", action="store_true", help="tiny sizes for a CPU check")
    p.add_argument("--memory_only", action="store_true",
                   help="compile, report the step's memory from XLA's buffer assignment, exit")
    p.add_argument("--trace_only", action="store_true",
                   help="stop after tracing and lowering the step (its Python time, any machine)")
    p.add_argument("--compile_only", action="store_true",
                   help="compile (filling --compilation_cache_dir) and report only compile time")
    p.add_argument("--default_xla_flags", action="store_true",
                   help="leave XLA_FLAGS alone (else cuDNN stays out of command buffers, as "
                        "jaxaudio.runtime.configure_gpu_flags sets it for training)")
    p.add_argument("--compilation_cache_dir", default=None,
                   help="JAX persistent compilation cache. Run twice with the same folder: the "
                        "second process loads the compiled step instead of compiling it, so no "
                        "autotuning scratch enters its allocator peak")
    p.add_argument("--config", choices=("headline", "musical"), default="headline",
                   help="headline: the original's headline configuration; musical: issue 12's "
                        "musical recipe (built-in settings, 4 layers, GAN 0.1)")
    p.add_argument("--agent", choices=("masking", "compositional", "none"), default="masking",
                   help="the creative agent (the headline configuration's is masking)")
    p.add_argument("--codec", choices=("encodec", "mdct"), default="encodec",
                   help="encodec: EnCodec 24 kHz with random weights (the headline); mdct: the "
                        "weight-free codec (the issue-12 musical recipe)")
    p.add_argument("--extra_flags", default="",
                   help="more jaxaudio.train flags, after the headline's (e.g. '--num_layers 4')")
    p.add_argument("--memory_report", default=None,
                   help="dump XLA's buffer assignment of the step into this folder and add its "
                        "largest live buffers to the record")
    p.add_argument("--compile_trace", default=None,
                   help="trace the compilation with jax.profiler into this folder and add the "
                        "host's longest compile phases (inclusive seconds by name) to the record")
    p.add_argument("--out", default=None, help="also append the JSON line to this file")
    p.add_argument("--profile_dir", default=None,
                   help="after timing, trace 2 more steps with jax.profiler into this folder "
                        "(summarise with experiments/profile_summary.py)")
    a = p.parse_args()
    if not a.default_xla_flags:
        configure_gpu_flags()
    if a.memory_report:  # before jax starts a backend
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to="
                                   f"{a.memory_report} --xla_dump_hlo_module_re=.*train_step.*")

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jaxaudio.codecs import make_codec
    from jaxaudio.codecs.encodec.lstm import recurrent_products, scan_unroll
    from jaxaudio.nn.attention import record_routes
    from jaxaudio.training.cli import parse_config
    from jaxaudio.training.builders import build_discriminator, build_mesh, build_model, replicate
    from jaxaudio.training.state import init_state
    from jaxaudio.training.step import Steps

    cache_entries = None
    if a.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", a.compilation_cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        folder = Path(a.compilation_cache_dir)
        cache_entries = len(list(folder.iterdir())) if folder.is_dir() else 0
    if a.matmul_precision == "highest":
        jax.config.update("jax_default_matmul_precision", "highest")

    flags = list(HEADLINE if a.config == "headline" else MUSICAL)
    flags += ORIGINAL_VARIANT if a.variant == "original" else []
    if a.agent != "masking":
        i = flags.index("--use_creative_agent")
        flags[i:i + 2] = ["--creative_agent", a.agent] if a.agent != "none" else []
    flags += ["--batch_size", str(a.batch_per_device), "--precision", a.precision,
              "--codec_precision", a.codec_precision, "--codec", "mdct"] + a.extra_flags.split()
    codec_kw = {}
    if a.small:
        flags += ["--encoding_dim", "32", "--num_layers", "1", "--nhead", "2"]
        codec_kw = dict(n_filters=2, dimension=32, ratios=(4, 2), lstm=1)
        a.clip_seconds, a.steps, a.warmup = 0.2, 3, 1
    cfg = parse_config(flags)
    codec = (make_codec("encodec", random_seed=0, **codec_kw) if a.codec == "encodec"
             else make_codec("mdct", encoding_dim=cfg.encoding_dim))
    devices = jax.devices()[: a.devices]
    mesh = build_mesh(devices)
    model = build_model(cfg)
    state, statics = init_state(cfg, model, build_discriminator(cfg))
    steps_params = state.params
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
    if a.semantics == "raw":  # what the loader yields without a cache; the step encodes it
        batch = {"input_raw": audio(), "target_audio": audio()}
    else:
        batch = {"input_latent": latent(), "input_audio": audio(), "target_latent": latent(),
                 "target_audio": audio()}
    alpha = jnp.zeros((), jnp.float32)
    index = jnp.zeros((), jnp.int32)

    t_compile = time.perf_counter()
    with record_routes() as routes:  # each attention call as traced: q's dtype, width, route
        if a.call == "leaves":  # as jaxaudio.train calls it
            state, state_def = jax.tree.flatten(state)
            codec_state, codec_def = jax.tree.flatten(codec_state)
            step_fn = steps.leaf_step(state_def, codec_def)
        else:
            step_fn = steps.train_step
        lowered = step_fn.lower(state, batch, codec_state, alpha, index)
    trace_s = time.perf_counter() - t_compile
    if a.trace_only:
        emit({"case": "trace_only", "semantics": a.semantics, "variant": a.variant,
              "trace_s": round(trace_s, 2), "hlo_ops": lowered.as_text().count(" = ")}, a.out)
        return
    if a.compile_trace:
        with jax.profiler.trace(a.compile_trace):
            compiled = lowered.compile()
    else:
        compiled = lowered.compile()
    compile_s = time.perf_counter() - t_compile
    # the loss decode's scan: bf16 products under --codec_precision bf16, except in the raw
    # step's paired decode, whose LSTM call (shared with the reference) stays float32; float32
    # weights' products take float16 operands at TF32 on a GPU
    lstm_products = ("bfloat16" if a.codec_precision == "bf16" and a.semantics == "cached"
                     else recurrent_products())
    record = {
        "case": f"train_step_{a.config}" + ("_small" if a.small else ""), "agent": a.agent,
        "codec": a.codec, "extra_flags": a.extra_flags, "parameters": int(sum(
            x.size for x in jax.tree.leaves(steps_params))),
        "semantics": a.semantics, "variant": a.variant, "call": a.call, "device": devices[0].device_kind, "devices": len(devices),
        "batch_per_device": a.batch_per_device, "global_batch": b, "clip_seconds": a.clip_seconds,
        "frames": t, "precision": a.precision, "codec_precision": a.codec_precision,
        "matmul_precision": a.matmul_precision,
        "attention": {f"width {d} {dt} x{n}": route for (dt, d, route), n
                      in sorted(collections.Counter(routes).items())},
        "lstm_products": lstm_products,
        "lstm_unroll": scan_unroll(lstm_products),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "compile_s": round(compile_s, 2), "trace_s": round(trace_s, 2),
        "hlo_ops": lowered.as_text().count(" = "), "compilation_cache": a.compilation_cache_dir,
        "cache_entries_before": cache_entries, "jax": jax.__version__,
    }
    if a.compile_trace:
        from profile_summary import compile_phases  # experiments/, beside this script

        record["compile_phases_s"] = compile_phases(a.compile_trace)
    if a.compile_only:
        emit(record, a.out)
        return
    # The step's own device memory (per device), from XLA's buffer assignment: arguments,
    # outputs and temporaries. The allocator's peak also counts compile-time autotuning scratch.
    mem = compiled.memory_analysis()
    step_gib = None
    if mem is not None:
        step_bytes = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                      + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
        step_gib = step_bytes / 2**30
    if mem is not None:
        record["temp_gib"] = round(mem.temp_size_in_bytes / 2**30, 3)
    if a.memory_report:
        record["largest_buffers"] = largest_buffers(Path(a.memory_report))
    if a.memory_only:
        record.update({"step_memory_gib": None if step_gib is None else round(step_gib, 3)})
        emit(record, a.out)
        return
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    attn_flops, attn_calls = cudnn_attention_flops(compiled.as_text())
    flops = xla_flops + attn_flops

    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch, codec_state, alpha, index)
        jax.block_until_ready((state, metrics))
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    # As jaxaudio.train runs its steps: each one dispatched before the previous step's metrics
    # are read, so the host's work for a step overlaps the GPU's work on the one before.
    pending = None
    t0 = time.perf_counter()
    for _ in range(a.steps):
        state, metrics = compiled(state, batch, codec_state, alpha, index)
        if pending is not None:
            float(pending["loss"]), float(pending["count_skipped_steps"])
        pending = metrics
    jax.block_until_ready((state, metrics))
    pipelined = (time.perf_counter() - t0) / a.steps
    if a.profile_dir:
        Path(a.profile_dir).mkdir(parents=True, exist_ok=True)
        (Path(a.profile_dir) / "hlo.txt").write_text(compiled.as_text())  # ops -> source lines
        with jax.profiler.trace(a.profile_dir):
            for _ in range(2):
                state, metrics = compiled(state, batch, codec_state, alpha, index)
                jax.block_until_ready((state, metrics))
    peak = None
    stats = devices[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        peak = stats["peak_bytes_in_use"] / 2**30
    # cost_analysis counts one device's program (its share of the global batch).
    achieved = flops / med if np.isfinite(flops) else float("nan")
    fin = lambda x, k=3: round(x, k) if np.isfinite(x) else None
    record.update({
        "median_step_s": round(med, 5), "min_step_s": round(min(times), 5),
        "samples_per_second": round(b / med, 2),
        "pipelined_step_s": round(pipelined, 5),
        "pipelined_samples_per_second": round(b / pipelined, 2),
        "step_memory_gib": None if step_gib is None else round(step_gib, 2),
        "allocator_peak_gib": None if peak is None else round(peak, 2),
        "step_tflop_per_device": fin(flops / 1e12),
        "xla_counted_tflop": fin(xla_flops / 1e12), "cudnn_attention_tflop": round(attn_flops / 1e12, 3),
        "cudnn_attention_calls": attn_calls,
        "achieved_tflops_per_device": fin(achieved / 1e12, 1),
        "mfu_vs_bf16_peak": fin(achieved / PEAK_BF16, 4),
        "mfu_vs_tf32_peak": fin(achieved / PEAK_TF32, 4),
        "loss": float(metrics["loss"]),
    })
    emit(record, a.out)


def largest_buffers(folder: Path, top: int = 25) -> list[str]:
    """The first lines of XLA's memory-usage report of the train step (buffers by size, with
    the shapes of the values that share each one)."""
    reports = sorted(folder.glob("*train_step*memory-usage-report.txt"),
                     key=lambda f: f.stat().st_mtime)
    if not reports:
        return []
    lines = reports[-1].read_text().splitlines()
    return [line[:300] for line in lines[: top + 4]]


def emit(record: dict, out: str | None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
