"""Validation each epoch, and the audio samples logged beside it.

The validation loss is the original's: the combined audio loss plus ``mask_reg_weight`` times
the agent's loss, in eval mode, averaged over batches. The last batch is filled up to the full
batch shape (no recompilation) with repeats of real clips marked invalid, which every audio
loss leaves out, so its audio losses are those of its real clips alone, as the original's
shorter last batch. The agent's regulariser is a statistic of the whole batch and still sees
the repeated clips of that one batch.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from tqdm import tqdm

from jaxaudio.training.metrics import Tracker, tree_add

log = logging.getLogger(__name__)


def validate_epoch(steps, state, loader, epoch: int, codec_state, to_global: Callable,
                   show_progress: bool) -> dict[str, float]:
    """Mean validation metrics over the batches of one pass over ``loader``."""
    sums: dict[str, jax.Array] | None = None
    it = loader.epoch(epoch)
    with it:
        for batch in tqdm(it, total=len(it), desc=f"val {epoch + 1}", leave=False,
                          disable=not show_progress, dynamic_ncols=True):
            m = steps.eval_step(state, to_global(batch), codec_state)
            sums = m if sums is None else tree_add(sums, m)
    if sums is None:
        return {}
    host = jax.device_get(sums)
    count = float(host.pop("count"))
    return {k: float(v) / max(count, 1.0) for k, v in host.items()}


def sample_batch(steps, state, loader, codec_state, to_global: Callable
                 ) -> dict[str, np.ndarray]:
    """Eval-mode ``input``, ``target``, ``output`` audio ``[B, 1, N]`` of the first validation
    batch, on the host (every process takes part; all of them get the whole batch)."""
    it = loader.epoch(0)
    with it:
        batch = next(iter(it))
    audio = steps.predict(state, to_global(batch), codec_state)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        audio = multihost_utils.process_allgather(audio, tiled=True)
    return {k: np.asarray(v, np.float32) for k, v in jax.device_get(audio).items()}


def quality(audio: dict[str, np.ndarray], *, num: int, sample_rate: int, frame_rate: float,
            song_mode: str) -> dict[str, float]:
    """:func:`jaxaudio.evaluation.evaluate_batch` of the first ``num`` clips (medians), named
    ``quality_*``: what ``python -m jaxaudio.evaluate`` measures, at every validation, the
    band-wise measures included (``quality_onset_corr_250_2000``,
    ``quality_song_onset_corr_250_2000``, ``quality_energy_corr_250_2000``, ...)."""
    from jaxaudio.evaluation import evaluate_batch

    n = min(num, audio["output"].shape[0])
    if n <= 0:
        return {}
    m = evaluate_batch(audio["output"][:n], audio["input"][:n], audio["target"][:n],
                       sample_rate=sample_rate, frame_rate=frame_rate, song_mode=song_mode)
    return {f"quality_{k}": float(v) for k, v in m.items() if k != "count"}


def log_samples(audio: dict[str, np.ndarray], tracker: Tracker, epoch: int, num: int,
                sample_rate: int) -> list[Path]:
    """Input, target and output WAVs plus waveform/spectrogram PNGs of the first ``num`` clips
    (process 0)."""
    if num <= 0 or jax.process_index() != 0:
        return []
    import soundfile as sf

    from jaxaudio.plots import plot_spectrograms, plot_waveforms

    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="jaxaudio-samples-") as tmp:
        folder = Path(tmp) / f"epoch_{epoch + 1:04d}"
        folder.mkdir()
        for i in range(min(num, audio["output"].shape[0])):
            sig = {name: audio[name][i, 0] for name in ("input", "target", "output")}
            for name, x in sig.items():
                path = folder / f"sample{i}_{name}.wav"
                sf.write(path, np.clip(x, -1.0, 1.0), sample_rate, subtype="FLOAT")
                written.append(path)
            title = f"epoch {epoch + 1}, validation clip {i}"
            written.append(plot_waveforms(sig, sample_rate, folder / f"sample{i}_waveforms.png",
                                          title))
            written.append(plot_spectrograms(sig, sample_rate,
                                             folder / f"sample{i}_spectrograms.png", title))
        for path in written:
            tracker.log_artifact(path, artifact_path=f"samples/{folder.name}")
    return written

