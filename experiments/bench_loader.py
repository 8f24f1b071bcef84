"""Loader throughput: pairs per second from raw WAVs and from the latent cache, with and
without prefetch, on the built-in synthetic set. One JSON line per case.

    python experiments/bench_loader.py --small          # CPU smoke size (seconds)
    python experiments/bench_loader.py                  # full size: 256 pairs of 16 s

Each case runs one warm-up epoch, then ``--repeats`` timed epochs (median reported). Every
batch is moved to JAX's default device with ``jax.block_until_ready``, then the consumer
sleeps ``step_ms`` to stand in for a train step (the sleep releases the GIL like a device step
does), so with ``step_ms > 0`` prefetch shows how much loading it hides. Files are read through
the page cache after the warm-up epoch, so the raw figures are decode/resample/copy costs,
not disk speed. Also reported: one ``cache_build`` line (encoding every clip once), and
``cache_open/verify=quick|full`` lines: opening the cache with shape checks only, and with the
CRC-32 check of every array that training does (``pairs_per_s`` there is one epoch without
prefetch, the open included; ``--open_only`` skips the other cases).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxaudio.codecs import make_codec  # noqa: E402
from jaxaudio.data.cache import LatentCache, build_cache  # noqa: E402
from jaxaudio.data.loader import PairLoader, RawSource  # noqa: E402
from jaxaudio.data.pairs import PairDataset  # noqa: E402
from jaxaudio.data.synth import make_synthetic_dataset  # noqa: E402


def run_epoch(loader: PairLoader, epoch: int, step_s: float) -> tuple[float, float]:
    """Seconds for one epoch, and the part of it spent waiting for the loader's batches."""
    waited = 0.0
    start = time.perf_counter()
    it = loader.epoch(epoch)
    while True:
        t = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        waited += time.perf_counter() - t
        jax.block_until_ready(jax.device_put(batch))
        if step_s:
            time.sleep(step_s)
    return time.perf_counter() - start, waited


def loader_pairs(ds, a) -> range:
    """The pairs one epoch of batch ``a.batch_size`` serves (the last partial batch dropped)."""
    return range(len(ds) // a.batch_size * a.batch_size)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="32 pairs of 2 s, batch 8, 3 repeats")
    p.add_argument("--num_pairs", type=int, default=256)
    p.add_argument("--duration", type=float, default=16.0)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--prefetch", type=int, default=4)
    p.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--step_ms", type=float, default=50.0, help="simulated train step")
    p.add_argument("--workdir", default=None, help="keep the data here (default: a temp dir)")
    p.add_argument("--open_only", action="store_true", help="only the cache_open cases")
    a = p.parse_args(argv)
    if a.small:
        a.num_pairs, a.duration, a.batch_size, a.repeats = 32, 2.0, 8, 3

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.workdir or tmp)
        sr = 24000
        t = time.perf_counter()
        root = make_synthetic_dataset(work / "synth", a.num_pairs, a.duration, seed=0,
                                      sample_rate=sr, val_fraction=0.0)
        synth_s = time.perf_counter() - t
        ds = PairDataset(root / "train", sample_rate=sr)
        codec = make_codec("mdct", encoding_dim=128, sample_rate=sr)
        t = time.perf_counter()
        cache = build_cache(ds, codec, work / "cache", batch_size=a.batch_size)
        build_s = time.perf_counter() - t
        common = {"bench": "loader", "num_pairs": len(ds), "clip_s": a.duration,
                  "batch_size": a.batch_size, "cpus": os.cpu_count(),
                  "device": str(jax.devices()[0].platform)}
        print(json.dumps({**common, "case": "synth_dataset", "seconds": round(synth_s, 3),
                          "pairs_per_s": round(a.num_pairs / synth_s, 1)}), flush=True)
        print(json.dumps({**common, "case": "cache_build", "codec": codec.identity(),
                          "hit": cache.stats["hit"], "seconds": round(build_s, 3),
                          "pairs_per_s": round(len(ds) / build_s, 1)}), flush=True)
        size = sum(arr.nbytes for arr in cache.arrays.values())
        for verify in ("quick", "full"):
            opens, epochs = [], []
            for _ in range(a.repeats):
                t = time.perf_counter()
                opened = LatentCache(cache.path, verify=verify)
                opens.append(time.perf_counter() - t)
                loader = PairLoader(opened, a.batch_size, seed=0, prefetch=0)
                epochs.append(opens[-1] + run_epoch(loader, 0, 0.0)[0])
                del opened, loader
            print(json.dumps({**common, "case": f"cache_open/verify={verify}",
                              "cache_mb": round(size / 2**20, 1),
                              "open_seconds": round(statistics.median(opens), 4),
                              "pairs_per_s": round(len(loader_pairs(ds, a)) /
                                                   statistics.median(epochs), 1)}), flush=True)
        if a.open_only:
            return
        sources = {"raw": RawSource(ds, num_workers=a.num_workers), "cache": cache}
        for step_ms in (0.0, a.step_ms):
            for name, source in sources.items():
                for prefetch in (0, a.prefetch):
                    loader = PairLoader(source, a.batch_size, seed=0, prefetch=prefetch)
                    run_epoch(loader, 0, step_ms / 1000)  # warm-up: page cache, first transfer
                    runs = [run_epoch(loader, e, step_ms / 1000) for e in range(1, a.repeats + 1)]
                    seconds = statistics.median(r[0] for r in runs)
                    pairs = len(loader) * a.batch_size
                    print(json.dumps({
                        **common, "case": f"{name}/prefetch={prefetch}/step={step_ms:g}ms",
                        "source": name, "prefetch": prefetch, "step_ms": step_ms,
                        "num_workers": a.num_workers if name == "raw" else None,
                        "pairs_per_s": round(pairs / seconds, 1),
                        "wait_fraction": round(statistics.median(r[1] / r[0] for r in runs), 3),
                        "runs_pairs_per_s": [round(pairs / r[0], 1) for r in runs]}),
                        flush=True)


if __name__ == "__main__":
    main()
