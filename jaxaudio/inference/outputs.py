"""What one generated sample leaves behind: WAV files, two plots, and its printed metrics.

Single mode writes ``OUT.wav`` with ``OUT_waveforms.png`` and ``OUT_spectrograms.png`` beside
it. Batch mode writes, per pair ``<stem>``, the original's names: ``<stem>_1_input.wav``,
``<stem>_2_target.wav``, ``<stem>_3_predicted.wav``, ``<stem>_waveforms.png`` and
``<stem>_spectrograms.png``, plus one ``metrics.jsonl`` for the run. WAVs are 16-bit PCM at
the codec's rate (as the original writes them). Existing files are never replaced unless
``--overwrite``: every path is checked before any work starts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxaudio.inference.loading import GenerateError
from jaxaudio.inference.pipeline import Generation
from jaxaudio.inference.postprocess import QUIET_RMS, PostInfo, rms

RHYTHM_WINDOW = 50  # frames; the original's evaluate_rhythm_transfer default


@dataclass(frozen=True)
class SampleFiles:
    output: Path
    waveforms: Path
    spectrograms: Path
    input: Path | None = None
    target: Path | None = None

    def all(self) -> list[Path]:
        return [p for p in (self.input, self.target, self.output, self.waveforms,
                            self.spectrograms) if p is not None]


def single_files(output: str | Path) -> SampleFiles:
    output = Path(output)
    if output.suffix.lower() != ".wav":
        raise GenerateError(f"--output {output}: expected a .wav file name")
    stem = output.with_suffix("")
    return SampleFiles(output, Path(f"{stem}_waveforms.png"), Path(f"{stem}_spectrograms.png"))


def batch_files(folder: str | Path, stem: str) -> SampleFiles:
    folder = Path(folder)
    return SampleFiles(folder / f"{stem}_3_predicted.wav", folder / f"{stem}_waveforms.png",
                       folder / f"{stem}_spectrograms.png", folder / f"{stem}_1_input.wav",
                       folder / f"{stem}_2_target.wav")


def check_free(paths: list[Path], overwrite: bool) -> None:
    """Raise if any of ``paths`` exists (unless ``overwrite``) or is a folder."""
    for p in paths:
        if p.is_dir():
            raise GenerateError(f"{p}: is a folder; expected a file name to write")
    taken = [p for p in paths if p.exists()]
    if taken and not overwrite:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise GenerateError(f"{taken[0]}: already exists{more}; pass --overwrite to replace it")


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM, written beside ``path`` and renamed, so a crash leaves no half file."""
    import soundfile as sf

    from jaxaudio.data.atomic_files import atomic_path

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(np.asarray(audio, np.float32), -1.0, 1.0), sample_rate,
                 subtype="PCM_16")


def write_sample(files: SampleFiles, gen: Generation, output: np.ndarray, sample_rate: int,
                 title: str) -> None:
    """The WAVs and both plots of one sample (input, target, output rows)."""
    from jaxaudio.plots import plot_spectrograms, plot_waveforms

    if files.input is not None:
        write_wav(files.input, gen.input_audio, sample_rate)
    if files.target is not None and gen.target_audio is not None:
        write_wav(files.target, gen.target_audio, sample_rate)
    write_wav(files.output, output, sample_rate)
    signals = {"input": gen.input_audio}
    if gen.target_audio is not None:
        signals["target"] = gen.target_audio
    signals["output"] = output
    files.waveforms.parent.mkdir(parents=True, exist_ok=True)
    plot_waveforms(signals, sample_rate, files.waveforms, title)
    plot_spectrograms(signals, sample_rate, files.spectrograms, title)


@functools.lru_cache(maxsize=None)
def _rhythm_fn():
    """The metrics jitted once (eagerly they compile dozens of small ops)."""
    import jax

    from jaxaudio.agents.masking import evaluate_rhythm_transfer

    return jax.jit(functools.partial(evaluate_rhythm_transfer, window_size=RHYTHM_WINDOW))


def rhythm_metrics(gen: Generation) -> dict[str, float | bool] | None:
    """The original's rhythm-transfer metrics on the latents; None for clips of at most 25
    frames (the envelope's reflect padding needs more). Without a target only the input's."""
    if gen.input_latent.shape[-1] <= RHYTHM_WINDOW // 2:
        return None
    target = gen.target_latent if gen.target_latent is not None else gen.input_latent
    m = _rhythm_fn()(gen.input_latent[None], target[None], gen.output_latent[None])
    out: dict[str, float | bool] = {k: float(v) for k, v in m.items() if k != "rhythm_preserved"}
    out["rhythm_preserved"] = bool(m["rhythm_preserved"])
    if gen.target_latent is None:
        for k in ("target_rhythm_corr", "rhythm_balance"):
            out.pop(k)
    return out


def sample_record(gen: Generation, output: np.ndarray, info: PostInfo, metrics: dict | None,
                  sample_rate: int) -> dict:
    """One JSON-able line of what happened to a sample."""
    rec = {"seconds": gen.input_audio.shape[0] / float(sample_rate),
           "segments": gen.plan.num_segments, "frames": gen.plan.num_frames,
           "input_rms": rms(gen.input_audio),
           "output_rms_raw": info.rms_before, "gain": info.gain,
           "limiter_scale": info.limiter_scale, "notches_hz": info.notches,
           "output_rms": info.rms_after}
    if gen.target_audio is not None:
        rec["target_rms"] = rms(gen.target_audio)
        rec["rms_error_vs_target"] = float(np.sqrt(np.mean((output - gen.target_audio) ** 2)))
    if metrics is not None:
        rec.update(metrics)
    return rec


def describe(rec: dict) -> list[str]:
    """Human-readable lines for one sample's record."""
    level = f"RMS input {rec['input_rms']:.4f}"
    if "target_rms" in rec:
        level += f", target {rec['target_rms']:.4f}"
    level += (f", output {rec['output_rms_raw']:.4f} -> {rec['output_rms']:.4f} "
              f"(gain {rec['gain']:.3f}x")
    if rec["limiter_scale"] != 1.0:
        level += f", limited {rec['limiter_scale']:.3f}x"
    lines = [f"  {rec['seconds']:.2f} s, {rec['frames']} frames in {rec['segments']} "
             f"segment(s); {level})"]
    if rec["notches_hz"]:
        lines.append("  notch filter at " + ", ".join(f"{f:.1f}" for f in rec["notches_hz"])
                     + " Hz")
    if "input_rhythm_corr" in rec:
        parts = [f"input->output {rec['input_rhythm_corr']:.3f}"]
        if "target_rhythm_corr" in rec:
            parts += [f"target->output {rec['target_rhythm_corr']:.3f}",
                      f"balance {rec['rhythm_balance']:.3f}"]
        parts += [f"preserved {'yes' if rec['rhythm_preserved'] else 'no'}",
                  f"output energy {rec['output_rhythm_energy']:.3f}"]
        lines.append("  rhythm transfer: " + ", ".join(parts))
    else:
        lines.append(f"  rhythm transfer: n/a (needs more than {RHYTHM_WINDOW // 2} frames)")
    if rec["output_rms"] < QUIET_RMS:
        lines.append(f"  warning: the output is very quiet (RMS < {QUIET_RMS}); likely a "
                     f"training issue")
    return lines
