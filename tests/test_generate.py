"""`python -m jaxaudio.generate`: both modes, the files and plots, segment joins, bad inputs,
and the original's PyTorch checkpoint, with tiny checkpoints made here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from flax import nnx

from jaxaudio.generate import main
from jaxaudio.inference import Generator, load_for_inference
from jaxaudio.inference.postprocess import fit_target, postprocess, rms
from jaxaudio.inference.segments import join_regions, plan_segments, segment_weights

PROJECT = Path(__file__).resolve().parents[1]
ASSETS = PROJECT / "tests" / "assets"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SR = 24000
# A cascade small enough to build and compile in seconds (MDCT dim 32: 750 frames/s).
TINY = ["--builtin", "--encoding_dim", "32", "--nhead", "2", "--num_layers", "1",
        "--num_transformer_layers", "2", "--no_mlflow"]


def save_tiny_checkpoint(directory: Path, flags: list[str]) -> Path:
    """A jaxaudio checkpoint of freshly initialised weights, as the trainer writes it."""
    from jaxaudio.training import builders
    from jaxaudio.training.checkpoint_manager import RunCheckpoints
    from jaxaudio.training.cli import parse_config
    from jaxaudio.training.state import init_state

    cfg = parse_config(flags)
    state, _ = init_state(cfg, builders.build_model(cfg), builders.build_discriminator(cfg))
    meta = {"config": cfg.to_dict(), "epoch": 0, "position": {}, "step": 0,
            "best_val_loss": None, "patience_counter": 0, "scheduler": {},
            "gan_curriculum_counter": 0, "partial_metrics": None, "mlflow_run_id": None}
    checkpoints = RunCheckpoints(directory)
    try:
        return checkpoints.save("best", 0, state, meta, {"val_loss": 0.0})
    finally:
        checkpoints.close()


def tone(seconds: float, sr: int, freq: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x = x + 0.02 * rng.standard_normal(t.size)
    return np.stack([x * (1.0 - 0.3 * c) for c in range(channels)], axis=1).astype(np.float32)


def assert_png(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, img.shape
    assert float(np.std(img[..., :3])) > 0.01, f"{path} is blank"


def run(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A training --checkpoint_dir holding best_model/ (a tiny MDCT cascade)."""
    root = tmp_path_factory.mktemp("ckpt")
    save_tiny_checkpoint(root, TINY)
    return root


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> SimpleNamespace:
    """A stereo 44.1 kHz input and a shorter mono 16 kHz target."""
    d = tmp_path_factory.mktemp("wavs")
    sf.write(d / "in.wav", tone(0.3, 44100, 220.0, channels=2), 44100)
    sf.write(d / "tg.wav", tone(0.2, 16000, 330.0, seed=1)[:, 0], 16000)
    return SimpleNamespace(input=d / "in.wav", target=d / "tg.wav", dir=d)


# --- the two modes ---------------------------------------------------------------------------


def test_single_pair_writes_wav_plots_and_metrics(ckpt, wavs, tmp_path, capsys):
    out = tmp_path / "mix" / "out.wav"
    assert run("--checkpoint", ckpt, "--input_audio", wavs.input, "--target_audio",
               wavs.target, "--output", out, "--filter") == 0
    audio, sr = sf.read(out, always_2d=True)
    assert sr == SR and audio.shape == (int(0.3 * SR), 1)  # resampled, mono, input's length
    assert 0.0 < np.max(np.abs(audio)) <= 1.0 and rms(audio[:, 0]) > 1e-3
    for png in ("out_waveforms.png", "out_spectrograms.png"):
        assert_png(out.parent / png)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not private like a mkstemp file
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    text = capsys.readouterr().out
    assert "2 channels mixed to mono, resampled 44100 -> 24000 Hz" in text
    assert "looped to the input's 0.30 s" in text
    assert "rhythm transfer: input->output" in text and "target->output" in text
    assert "notch filter at" in text

    before = out.read_bytes()
    assert run("--checkpoint", ckpt / "best_model", "--input_audio", wavs.input,
               "--target_audio", wavs.target, "--output", out) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before


def test_batch_mode_shuffled_targets_and_overwrite(ckpt, tmp_path, capsys):
    val = tmp_path / "val"
    val.mkdir()
    for i in range(3):
        # 0.3 s, as the single-pair test: the same shapes, so nothing is compiled again.
        for role, freq, seed in (("input", 200.0, i), ("output", 400.0, 9 + i)):
            clip = tone(0.3, SR, freq + 50 * i, seed=seed)[:, 0]
            sf.write(val / f"pair_{i:04d}_{role}.wav", clip, SR)
    sf.write(val / "pair_0009_input.wav", tone(0.1, SR, 100.0)[:, 0], SR)  # no partner: left out
    out = tmp_path / "gen"
    args = ["--checkpoint", ckpt, "--val_folder", val, "--num_samples", 2, "--output_folder",
            out, "--shuffle_targets", "--seed", 3]
    assert run(*args) == 0
    cap = capsys.readouterr()
    assert "generate" in cap.err  # the tqdm bar
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == ["pair_0000", "pair_0001"]
    for r in records:
        assert Path(r["target"]).name != f"{r['name']}_output.wav"  # another pair's target
        assert np.isfinite(r["input_rhythm_corr"]) and np.isfinite(r["rms_error_vs_target"])
        for suffix in ("_1_input.wav", "_2_target.wav", "_3_predicted.wav"):
            assert sf.info(out / f"{r['name']}{suffix}").frames == int(0.3 * SR)
        assert_png(out / f"{r['name']}_waveforms.png")
        assert_png(out / f"{r['name']}_spectrograms.png")
    assert run(*args) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert run(*args, "--overwrite") == 0


def test_original_torch_checkpoint_with_mdct_and_with_encodec(wavs, tmp_path, capsys):
    pt = ASSETS / "original_best_model.pt"  # single stage, encoding_dim 32
    dim = json.loads(str(np.load(ASSETS / "original_best_model_expected.npz")["config"]))[
        "encoding_dim"]
    assert run("--checkpoint", pt, "--input_audio", wavs.input, "--output",
               tmp_path / "a.wav") == 2
    err = capsys.readouterr().err
    assert "--codec_weights" in err and "--codec mdct" in err and str(pt) in err

    assert run("--checkpoint", pt, "--codec", "mdct", "--input_audio", wavs.input,
               "--output", tmp_path / "mdct.wav") == 0
    assert "single stage" in capsys.readouterr().out
    assert sf.info(tmp_path / "mdct.wav").frames == int(0.3 * SR)

    from jaxaudio.codecs.encodec import random_encodec, save_encodec

    tiny = dict(n_filters=2, ratios=(4, 2), lstm=1)
    good = save_encodec(random_encodec(0, dimension=dim, **tiny), tmp_path / "enc.safetensors")
    bad = save_encodec(random_encodec(0, dimension=dim // 2, **tiny), tmp_path / "half.safetensors")
    assert run("--checkpoint", pt, "--codec_weights", bad, "--input_audio", wavs.input,
               "--output", tmp_path / "b.wav") == 2
    assert f"encoding_dim {dim}" in capsys.readouterr().err
    assert run("--checkpoint", pt, "--codec_weights", good, "--input_audio", wavs.input,
               "--output", tmp_path / "enc.wav") == 0
    assert sf.info(tmp_path / "enc.wav").frames == int(0.3 * SR)


# --- long inputs ------------------------------------------------------------------------------


class FrameLocal(nnx.Module):
    """Each output frame depends on its own input frame only (so segmenting cannot matter)."""

    def __call__(self, x, y=None, *, train=False):
        return SimpleNamespace(output=x + 0.5 * jnp.tanh(3.0 * x) * (1.0 if y is None else y))


class ContextGain(nnx.Module):
    """A gain set by the whole segment's level, as the cascade's RMS rescale: segments differ."""

    def __call__(self, x, y=None, *, train=False):
        return SimpleNamespace(output=x * (1.0 + 4.0 * jnp.sqrt(jnp.mean(x * x))))


def _ramped_tone(n: int) -> np.ndarray:
    t = np.arange(n) / SR
    return ((0.05 + 0.6 * t / t[-1]) * np.sin(2 * np.pi * 150.0 * t)).astype(np.float32)


def test_frame_local_model_is_unchanged_by_segmenting():
    from jaxaudio.codecs import MDCTCodec

    codec = MDCTCodec(dim=32)
    n = 180 * 32 - 7  # 180 frames, a partial last one
    x = _ramped_tone(n)
    y = np.roll(x, 500)
    whole = Generator(FrameLocal(), codec, cascade=True).generate(x, y)
    parts = Generator(FrameLocal(), codec, cascade=True, segment_frames=40,
                      overlap_frames=8).generate(x, y)
    assert whole.plan.num_segments == 1 and parts.plan.num_segments == 6
    # crossfade weights w and 1 - w sum to 1 within an ulp and each segment's MDCT rounds its
    # own way: a few ulps of |y| < ~1
    np.testing.assert_allclose(parts.output_audio, whole.output_audio, atol=2e-6, rtol=0)
    np.testing.assert_allclose(parts.output_latent, whole.output_latent, atol=2e-6, rtol=0)


def test_joins_have_no_clicks_and_segments_are_kept_between_them():
    from jaxaudio.codecs import MDCTCodec

    hop = 32
    gen = Generator(ContextGain(), MDCTCodec(dim=hop), cascade=False, segment_frames=48,
                    overlap_frames=16)
    n = 240 * hop
    x = _ramped_tone(n)
    res = gen.generate(x)
    out, plan = res.output_audio, res.plan
    assert plan.num_segments >= 5
    z = gen.encode(x)
    segs = [np.asarray(gen.run_segment(z[:, :, s:s + plan.length], None)[1][0, 0])
            for s in plan.starts]
    regions = join_regions(plan, hop)
    step = np.abs(np.diff(out))
    period = SR // 150
    for k, (a, b) in enumerate(regions):
        # The content's own pace next to the join: as long a stretch either side of it.
        near = np.concatenate([step[2 * a - b:a - 1], step[b:2 * b - a]]).max()
        # Across the join the output moves no faster than the content does next to it ...
        assert step[a - 1:b].max() <= 1.05 * near, k
        # ... whereas switching from one segment to the next near the join's centre would
        # click (the segments' gains differ), so the check above has teeth.
        cs = np.arange((a + b) // 2, (a + b) // 2 + period)
        jump = np.abs(segs[k + 1][cs - plan.starts[k + 1] * hop]
                      - segs[k][cs - 1 - plan.starts[k] * hop])
        assert jump.max() > 2.0 * near, k
    # Between the joins each segment's own output is kept exactly.
    for k, s in enumerate(plan.starts):
        lo = s * hop if k == 0 else regions[k - 1][1]
        hi = n if k == plan.num_segments - 1 else regions[k][0]
        np.testing.assert_array_equal(out[lo:hi], segs[k][lo - s * hop:hi - s * hop])


def test_trained_cascade_long_input_and_single_segment_match_the_model(ckpt):
    from jaxaudio.codecs import MDCTCodec

    loaded = load_for_inference(ckpt)
    x = _ramped_tone(int(0.3 * SR))  # 225 frames, as the CLI tests
    y = np.roll(x, 1000) * 0.5
    short = Generator(loaded.model, loaded.codec, cascade=True).generate(x, y)
    assert short.plan.num_segments == 1
    codec = MDCTCodec(dim=32)
    zx, zy = codec.encode(jnp.asarray(x)[None, None]), codec.encode(jnp.asarray(y)[None, None])
    direct = jax.jit(lambda a, b: codec.decode(loaded.model(a, b, train=False).output))(zx, zy)
    direct = np.asarray(direct[0, 0])
    # the generator's own jit of the same float32 model: fusion round-off; the fixtures' output
    # tolerance
    np.testing.assert_allclose(short.output_audio, np.asarray(direct), rtol=1e-4,
                               atol=1e-5 * float(np.max(np.abs(direct))))
    long = Generator(loaded.model, loaded.codec, cascade=True, segment_frames=96,
                     overlap_frames=24).generate(x, y)
    assert long.plan.num_segments == 3 and long.output_audio.shape == x.shape
    assert np.all(np.isfinite(long.output_audio)) and np.all(np.isfinite(long.output_latent))


def test_segment_weights_partition_unity():
    for frames, length, overlap in [(41, 40, 10), (100, 40, 10), (4001, 2000, 1000), (500, 16, 4)]:
        plan = plan_segments(frames, length, overlap)
        total = np.zeros(frames * 3)
        for k, s in enumerate(plan.starts):
            assert plan.length == length and s + length <= frames
            total[s * 3:(s + length) * 3] += segment_weights(plan, k, 3)
        # float32 ramps r and 1 - r: their sum is 1 within an ulp (1.2e-7)
        np.testing.assert_allclose(total, 1.0, atol=1e-6)
        for (a, b), s_next, s_prev in zip(plan.fades, plan.starts[1:], plan.starts):
            assert s_next < a < b < s_prev + length  # fades inside the overlap, off its edges


# --- post-processing --------------------------------------------------------------------------


def test_postprocess_level_filter_and_limiter():
    rng = np.random.default_rng(0)
    n = 3 * SR
    t = np.arange(n) / SR
    inp = 0.1 * rng.standard_normal(n).astype(np.float32)
    tgt = 0.2 * rng.standard_normal(n).astype(np.float32)
    hum = (0.1 * rng.standard_normal(n) + 0.1 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    out, info = postprocess(hum, inp, tgt, SR, apply_filter=True)
    goal = np.sqrt((rms(inp) ** 2 + rms(tgt) ** 2) / 2)
    # exact: the same float64 formula on the same float32 arrays; rel 1e-5 is moot
    assert info.gain == pytest.approx(goal / rms(hum), rel=1e-5)
    # the hum sits on an FFT bin (1/3 Hz apart over 3 s): 2 Hz allows a neighbouring bin
    assert any(abs(f - 1000.0) < 2.0 for f in info.notches)
    spec = np.abs(np.fft.rfft(out))
    assert spec[1000 * 3] < 0.05 * np.abs(np.fft.rfft(hum))[1000 * 3]  # the hum is gone
    # the filter restores the RMS over every sample, the level step skips the first 5000
    assert info.limiter_scale == 1.0 and rms(out) == pytest.approx(goal, rel=5e-3)
    loud, info = postprocess(np.full(n, 0.01, np.float32) + hum, inp * 20, tgt * 20, SR)
    # audio * (0.9 / peak) rounded to float32: 0.9 within an ulp (6e-8 relative)
    assert info.gain == 3.0 and np.max(np.abs(loud)) == pytest.approx(0.9, rel=1e-5)
    looped = fit_target(np.arange(1, 101, dtype=np.float32), 250, 1000)
    assert looped.shape == (250,) and looped[0] == 1.0 and np.all(looped > 0)


# --- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_name_the_problem(ckpt, wavs, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), np.float32), SR)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, np.full(20, 0.1, np.float32), SR)  # one MDCT frame
    out = tmp_path / "o.wav"
    base = ["--checkpoint", ckpt, "--target_audio", wavs.target, "--output", out]
    cases = [
        (["--checkpoint", ckpt, "--input_audio", tmp_path / "missing.wav", "--output", out],
         "--input_audio"),
        ([*base, "--input_audio", corrupt], "corrupt.wav"),
        ([*base, "--input_audio", empty], "contains no samples"),
        (["--checkpoint", tmp_path, "--input_audio", wavs.input, "--output", out],
         "not a checkpoint"),
        (["--checkpoint", text, "--input_audio", wavs.input, "--output", out],
         "not a PyTorch checkpoint"),
        (["--checkpoint", ckpt, "--input_audio", wavs.input, "--output", tmp_path / "o.mp3"],
         "--output"),
        (["--checkpoint", ckpt, "--input_audio", wavs.input], "--output"),
        (["--checkpoint", ckpt, "--input_audio", wavs.input, "--output", out, "--val_folder",
          tmp_path], "different modes"),
        (["--checkpoint", ckpt, "--val_folder", tmp_path, "--output_folder", tmp_path / "g"],
         "no pair_XXXX_input.wav"),
        ([*base, "--input_audio", wavs.input, "--filter_percentile", "100"],
         "--filter_percentile"),
        ([*base, "--input_audio", wavs.input, "--codec_weights", wavs.input],
         "mdct codec has no weights"),
        (["--checkpoint", ckpt, "--input_audio", wavs.input, "--output", out],
         "--target_audio is required"),
        ([*base, "--input_audio", wavs.input, "--segment_frames", 4000], "position table"),
        ([*base, "--input_audio", tiny], "tiny.wav: the input is 20 samples long"),
    ]
    for args, expected in cases:
        assert run(*args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err, (args, err)
    assert not out.exists()


def test_checkpoint_of_another_configuration_and_missing_codec_weights(ckpt, wavs, tmp_path,
                                                                      capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(ckpt / "best_model", other)
    from jaxaudio.training.checkpoint import meta_file, resolve_checkpoint

    meta_path = meta_file(resolve_checkpoint(other))
    meta = json.loads(meta_path.read_text())
    meta["config"]["num_layers"] = 2
    meta_path.write_text(json.dumps(meta))
    args = ["--input_audio", wavs.input, "--target_audio", wavs.target, "--output",
            tmp_path / "o.wav"]
    assert run("--checkpoint", other, *args) == 2
    err = capsys.readouterr().err  # the edit is caught by the metadata's checksum
    assert f"{meta_path}: damaged checkpoint" in err and "edited or garbled" in err
    # Without checksums (a checkpoint from before them) the arrays are found not to match.
    (resolve_checkpoint(other) / "checksums.json").unlink()
    assert run("--checkpoint", other, *args) == 2
    err = capsys.readouterr().err
    assert str(other) in err and "other model flags" in err

    from jaxaudio.codecs.encodec import random_encodec, save_encodec

    weights = save_encodec(random_encodec(0, dimension=32, n_filters=2, ratios=(4, 2), lstm=1),
                           tmp_path / "enc.safetensors")
    enc = save_tiny_checkpoint(tmp_path / "enc_ckpt",
                               [*TINY, "--codec", "encodec", "--codec_weights", str(weights)])
    os.remove(weights)
    assert run("--checkpoint", enc, *args) == 2
    err = capsys.readouterr().err
    assert str(weights) in err and "pass --codec_weights" in err


def test_command_line_exit_status(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "jaxaudio.generate", "--checkpoint", tmp_path / "nope",
         "--input_audio", tmp_path / "in.wav", "--output", tmp_path / "out.wav"],
        capture_output=True, text=True, cwd=PROJECT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert proc.returncode == 2
    assert "error: --input_audio" in proc.stderr and "no such file" in proc.stderr
