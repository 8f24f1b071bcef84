"""The latent cache: contents, hit, miss, invalidation by file and by codec, unfinished caches."""

import functools
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from jaxaudio.codecs.base import Codec
from jaxaudio.codecs.mdct import MDCTCodec
from jaxaudio.data.cache import LatentCache, build_cache, codec_fields
from jaxaudio.data.loader import PairLoader, RawSource
from jaxaudio.data.pairs import BadFileError, PairDataset

SR, N = 8000, 480


class FrameCodec:
    """Stand-in codec: hop-sample frames times a seeded random matrix; decodes by pseudo-inverse."""

    def __init__(self, dim=6, hop=16, seed=0, sample_rate=SR):
        self.dim, self.hop_length, self.sample_rate = dim, hop, sample_rate
        w = np.random.default_rng(seed).standard_normal((hop, dim)).astype(np.float32)
        self.w, self.w_inv = w, np.linalg.pinv(w).astype(np.float32)

    @property
    def frame_rate(self):
        return self.sample_rate / self.hop_length

    def encode(self, audio):
        b, _, n = audio.shape
        t = -(-n // self.hop_length)
        x = jnp.pad(audio[:, 0], ((0, 0), (0, t * self.hop_length - n)))
        return jnp.swapaxes(x.reshape(b, t, self.hop_length) @ self.w, 1, 2)

    def decode(self, latents):
        frames = jnp.swapaxes(latents, 1, 2) @ self.w_inv
        return frames.reshape(latents.shape[0], 1, -1)

    def identity(self):
        return f"frame:{self.dim}:{self.hop_length}:{hashlib.sha1(self.w.tobytes()).hexdigest()}"


def write_pairs(folder, count, seed=0, n=N):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        for role in ("input", "output"):
            sf.write(folder / f"pair_{i:04d}_{role}.wav", 0.3 * rng.standard_normal(n), SR,
                     subtype="FLOAT")
    return PairDataset(folder, sample_rate=SR)


CODEC = FrameCodec()  # shared, so its jitted functions compile once for the whole file


@functools.lru_cache(maxsize=None)
def jitted_fields(codec):
    return jax.jit(lambda a, b: codec_fields(codec, a, b))


def check_rows(cache, ds, codec, rows=None):
    """Cached rows equal the codec applied to the clips now on disk."""
    rows = np.arange(len(ds)) if rows is None else np.asarray(rows)
    x = np.stack([ds.load_input(i) for i in rows])[:, None]
    y = np.stack([ds.load_target(i) for i in rows])[:, None]
    want = jitted_fields(codec)(x, y)
    got = cache.fetch(rows, rows)
    for k, v in want.items():
        # the cache encoded these rows in batches of another size: round-off of the codec's 16-term
        # products (values ~1), ~1e-6; target_audio is an exact copy
        np.testing.assert_allclose(got[k], np.asarray(v), atol=1e-5, err_msg=k)


def test_build_contents_then_hit(tmp_path):
    codec = CODEC
    assert isinstance(codec, Codec)
    ds = write_pairs(tmp_path / "train", 5)
    cache = build_cache(ds, codec, tmp_path / "cache", batch_size=2)
    assert cache.stats == {"hit": False, "encoded_inputs": 5, "encoded_targets": 5, "reused": 0}
    t = -(-N // 16)
    assert cache.arrays["input_latent"].shape == (5, 6, t)
    assert cache.arrays["input_audio"].shape == (5, 1, t * 16)
    assert cache.arrays["target_audio"].shape == (5, 1, N)
    check_rows(cache, ds, codec)
    again = build_cache(ds, codec, tmp_path / "cache")
    assert again.stats == {"hit": True} and again.path == cache.path


def test_changed_file_reencodes_only_that_clip(tmp_path):
    codec = CODEC
    ds = write_pairs(tmp_path / "train", 4)
    old = build_cache(ds, codec, tmp_path / "cache")
    sf.write(ds.pairs[2].target_path, np.zeros(N), SR, subtype="FLOAT")  # same size, new content
    new = build_cache(PairDataset(tmp_path / "train", sample_rate=SR), codec, tmp_path / "cache")
    assert new.stats == {"hit": False, "encoded_inputs": 0, "encoded_targets": 1, "reused": 7}
    assert new.path != old.path and not old.path.exists()
    assert not new.fetch(np.array([2]), np.array([2]))["target_audio"].any()
    check_rows(new, ds, codec)


def test_changed_codec_is_a_miss(tmp_path):
    ds = write_pairs(tmp_path / "train", 3)
    first = build_cache(ds, CODEC, tmp_path / "cache")
    other = FrameCodec(seed=1)
    second = build_cache(ds, other, tmp_path / "cache")
    assert second.stats["encoded_inputs"] == 3 and second.stats["reused"] == 0
    assert second.path != first.path
    check_rows(second, ds, other)


@pytest.mark.parametrize("damage, why", [
    ("truncated_array", "target_latent.npy"), ("no_manifest", "manifest.json is missing"),
    ("bad_manifest", "cannot be read"), ("flipped_bytes", "input_audio.npy: contents do not match"),
    ("edited_manifest", "fingerprint does not match")])
def test_damaged_cache_is_never_used(tmp_path, damage, why, caplog):
    codec = CODEC
    ds = write_pairs(tmp_path / "train", 3)
    cache = build_cache(ds, codec, tmp_path / "cache")
    path = cache.path
    del cache
    if damage == "truncated_array":
        f = path / "target_latent.npy"
        f.write_bytes(f.read_bytes()[:-100])
    elif damage == "no_manifest":
        (path / "manifest.json").unlink()
    elif damage == "bad_manifest":
        (path / "manifest.json").write_text('{"format": 1, "key"')
    elif damage == "edited_manifest":  # one source's recorded hash changed
        m = json.loads((path / "manifest.json").read_text())
        m["pairs"][0]["input_digest"] = "0" * 32
        (path / "manifest.json").write_text(json.dumps(m))
    else:  # same size, different values: only the checksum sees it
        f = path / "input_audio.npy"
        data = bytearray(f.read_bytes())
        data[-8:] = b"\x00\x00\xc0\x7f" * 2
        f.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="jaxaudio.data.cache"):
        rebuilt = build_cache(ds, codec, tmp_path / "cache")
    assert rebuilt.stats["hit"] is False and rebuilt.path == path
    assert any("rebuilding it" in r.message and why in r.message for r in caplog.records), \
        caplog.text
    check_rows(rebuilt, ds, codec)


def test_unfinished_build_is_ignored(tmp_path, monkeypatch):
    codec = CODEC
    ds = write_pairs(tmp_path / "train", 3)
    import jaxaudio.data.cache as cache_mod

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod, "atomic_write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        build_cache(ds, codec, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["digests.json"]  # no cache
    monkeypatch.undo()
    # A leftover staging folder from a killed process is neither used nor reused.
    stale = tmp_path / "cache" / ".tmp-train-0000-deadbeef"
    stale.mkdir()
    (stale / "manifest.json").write_text("{}")
    cache = build_cache(ds, codec, tmp_path / "cache")
    assert cache.stats["encoded_inputs"] == 3 and not cache.path.name.startswith(".")


def test_contents_checked_only_on_a_miss(tmp_path):
    codec = CODEC
    write_pairs(tmp_path / "train", 4)
    bad = tmp_path / "train" / "pair_0001_output.wav"
    x = np.zeros(N, np.float32)
    x[7] = np.nan
    sf.write(bad, x, SR, subtype="FLOAT")
    lazy = PairDataset(tmp_path / "train", sample_rate=SR, check_contents=False)
    with pytest.raises(BadFileError) as err:
        build_cache(lazy, codec, tmp_path / "cache")
    assert err.value.path == bad
    open_lazily = lambda: PairDataset(tmp_path / "train", sample_rate=SR,  # noqa: E731
                                      check_contents=False, skip_bad_files=True)
    first = open_lazily()
    cache = build_cache(first, codec, tmp_path / "cache")
    assert len(cache) == len(first) == 3 and [b.path for b in first.skipped] == [bad]
    again = open_lazily()
    hit = build_cache(again, codec, tmp_path / "cache")
    assert hit.stats["hit"] and hit.path == cache.path
    assert not again.contents_checked  # the valid cache was used without decoding any file


def test_loader_serves_cached_batches_with_shuffled_targets(tmp_path):
    codec = CODEC
    ds = write_pairs(tmp_path / "train", 8)
    cache = build_cache(ds, codec, tmp_path / "cache")
    reopened = LatentCache(cache.path, verify="full")
    cached = list(PairLoader(reopened, 4, seed=3, shuffle_targets=True).epoch(1))
    raw = list(PairLoader(RawSource(ds), 4, seed=3, shuffle_targets=True).epoch(1))
    for c, r in zip(cached, raw):
        assert set(c) == {"input_latent", "input_audio", "target_latent", "target_audio",
                          "pair_index", "target_index", "valid"}
        np.testing.assert_array_equal(c["target_index"], r["target_index"])
        want = jitted_fields(codec)(r["input_raw"], r["target_audio"])
        for k, v in want.items():
            # as in check_rows: other batch sizes, round-off ~1e-6 of values ~1
            np.testing.assert_allclose(c[k], np.asarray(v), atol=1e-5, err_msg=k)


def test_mdct_codec_cache_reconstructs_the_input(tmp_path):
    codec = MDCTCodec(dim=16, sample_rate=SR)
    ds = write_pairs(tmp_path / "train", 3)
    cache = build_cache(ds, codec, tmp_path / "cache", batch_size=2)
    assert cache.arrays["input_latent"].shape == (3, 16, N // 16)
    for i in range(3):
        # MDCT round trip: two 32-point float32 FFTs, ~log2(32) eps of |x| < ~1.3
        np.testing.assert_allclose(cache.arrays["input_audio"][i, 0], ds.load_input(i), atol=1e-5)
    check_rows(cache, ds, codec, rows=[0])
    assert os.path.exists(tmp_path / "cache" / "digests.json")


def test_leftovers_of_killed_builds_are_removed(tmp_path):
    """A staging folder of a dead process on this host and a half-deleted trash folder are
    deleted by the next build; a running build's folder and another host's are kept."""
    import json
    import socket
    import subprocess
    import sys

    ds = write_pairs(tmp_path / "train", 2)
    root = tmp_path / "cache"
    root.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    owners = {".tmp-train-0000-dead": {"host": socket.gethostname(), "pid": int(dead.stdout)},
              ".tmp-train-0000-live": {"host": socket.gethostname(), "pid": os.getpid()},
              ".tmp-train-0000-other": {"host": "another-host.invalid", "pid": int(dead.stdout)}}
    for name, owner in owners.items():
        (root / name).mkdir()
        (root / name / "OWNER").write_text(json.dumps(owner))
    (root / ".trash-train-0000-x").mkdir()
    (root / ".trash-train-0000-x" / "input_latent.npy").write_bytes(b"0" * 64)
    cache = build_cache(ds, CODEC, root)
    left = sorted(p.name for p in root.iterdir() if p.name.startswith("."))
    assert left == [".tmp-train-0000-live", ".tmp-train-0000-other"]
    assert cache.stats["encoded_inputs"] == 2


def test_codec_fields_encode_input_and_target_in_one_call_as_two():
    """The batched encode (input and target as one batch of 2B) gives what two calls give,
    with EnCodec's LSTM in the path."""
    from jaxaudio.codecs.encodec import random_encodec

    codec = random_encodec(3, n_filters=2, dimension=8, ratios=(4,), lstm=1)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 1, 64)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((3, 1, 64)), jnp.float32)
    got = jax.jit(lambda a, b: codec_fields(codec, a, b))(x, y)
    # one jitted encode of 2B clips vs eager calls on B: the same float32 work blocked and fused
    # otherwise, round-off of the convolutions' and the LSTM's sums
    np.testing.assert_allclose(got["input_latent"], codec.encode(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["target_latent"], codec.encode(y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["input_audio"], codec.decode(codec.encode(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got["target_audio"], y)
