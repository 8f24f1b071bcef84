"""The latent cache: each clip encoded once by the frozen codec, stored next to its audio.

Per pair ``i`` of a :class:`~jaxaudio.data.pairs.PairDataset` the cache holds row ``i`` of four
float32 arrays (one ``.npy`` file each, memory-mapped when read):

- ``input_latent [P, D, T]``: ``codec.encode(input)``;
- ``input_audio [P, 1, N']``: ``codec.decode(input_latent)``, the reconstruction the losses
  compare against (the original decodes the input latents every step);
- ``target_latent [P, D, T]``: ``codec.encode(target)``;
- ``target_audio [P, 1, N]``: the raw target clip.

A cache directory ``<cache_dir>/<folder>-<path hash>-<key>/`` is named by a key that hashes the
codec's ``identity()`` (which includes its weights hash), the rate, the clip length and the
content hash of every file in pair order, so a changed file or codec gives a new key (a miss).
Rows of clips whose content and codec are unchanged are copied from the older cache instead
of being re-encoded; the older cache is then removed (``keep_stale=False``).

A cache is written into a temporary directory, fsynced, its ``manifest.json`` written last,
then renamed into place in one step. The manifest is the cache's fingerprint of what it was
made from (codec identity, rate, clip length, every source file's content hash, which hash to
its key) and a CRC-32 checksum of each array. Opening checks the manifest against its key, the
key against the dataset's, every array's shape and (``verify="full"``, the default) every
array's checksum; anything that fails is rebuilt with a warning naming the reason. The
checksums cost one read of the cache per start (see ``experiments/README.md``).
A staging directory records its host and process id in ``OWNER``; one left by a process of
this host that is no longer running (killed mid-build) is deleted by the next build
(:func:`jaxaudio.data.atomic_files.remove_stale`).
File hashes are remembered in ``<cache_dir>/digests.json`` by (size, mtime, ctime, inode), so
unchanged files are not re-read on every start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
import weakref
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.data.atomic_files import (atomic_write_text, fault_point, fsync_path,
                                        remove_stale, write_owner)
from jaxaudio.data.atomic_files import remove_tree as _remove
from jaxaudio.data.digests import DigestMemo
from jaxaudio.data.pairs import BadFile, PairDataset

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: CRC-32 checksums of the arrays, checked on every open
FIELDS = ("input_latent", "input_audio", "target_latent", "target_audio")
_INPUT_FIELDS, _TARGET_FIELDS = FIELDS[:2], FIELDS[2:]
MANIFEST = "manifest.json"


class CacheInvalid(ValueError):
    """A cache directory that must not be used; the message says why."""


def codec_fields(codec, input_raw: jax.Array, target_raw: jax.Array, *,
                 decode_input: bool = True) -> dict[str, jax.Array]:
    """The four cached fields from raw ``[B, 1, N]`` clips (pure: use it inside ``jax.jit``).

    Input and target are encoded in one call of twice the batch: the codec treats every clip
    on its own, and its sequential parts (EnCodec's LSTM) take about as long for 2B clips as
    for B (the raw-clip headline step on one H200: 49.2 samples/s before, 55.9 after).
    ``decode_input=False`` leaves ``input_audio`` out (the train step decodes it later)."""
    b = input_raw.shape[0]
    if input_raw.shape == target_raw.shape:
        latents = codec.encode(jnp.concatenate([input_raw, target_raw], axis=0))
        input_latent, target_latent = latents[:b], latents[b:]
    else:
        input_latent, target_latent = codec.encode(input_raw), codec.encode(target_raw)
    fields = {"input_latent": input_latent}
    if decode_input:
        fields["input_audio"] = codec.decode(input_latent)
    return {**fields, "target_latent": target_latent, "target_audio": target_raw}


def _hash(data: bytes | str, size: int = 16) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.blake2b(data, digest_size=size).hexdigest()


def _array_checksum(arr: np.ndarray) -> str:
    """CRC-32 of the array's bytes, 64 rows at a time (zlib releases the GIL: the four fields
    are checked in parallel threads). CRC-32 finds any damage that is not made on purpose, at
    about four times the speed of a cryptographic hash."""
    crc = 0
    for k in range(0, arr.shape[0], 64):
        crc = zlib.crc32(np.ascontiguousarray(arr[k:k + 64]).data, crc)
    return f"crc32:{crc:08x}"


def _cache_key(codec_key: str, pairs: list[dict]) -> str:
    return _hash(codec_key + json.dumps([(p["input_digest"], p["target_digest"])
                                         for p in pairs]))


class LatentCache:
    """A verified cache directory, read through memory maps.

    ``fetch(pair_index, target_index)`` returns the input fields of the rows ``pair_index`` and
    the target fields of the rows ``target_index`` (the batch format of
    :mod:`jaxaudio.data.loader`). ``stats`` says how it was obtained (hit, rows encoded).
    """

    def __init__(self, path: str | Path, *, key: str | None = None, verify: str = "full"):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise CacheInvalid(f"{manifest_path} is missing (an unfinished cache)") from None
        except (OSError, ValueError) as e:
            raise CacheInvalid(f"{manifest_path} cannot be read ({e})") from None
        m = self.manifest
        if not isinstance(m, dict) or m.get("format") != CACHE_FORMAT:
            raise CacheInvalid(f"{manifest_path}: not a format-{CACHE_FORMAT} cache manifest")
        try:
            made_from = _cache_key(_codec_key(m["codec_identity"], m["sample_rate"],
                                              m["clip_samples"]), m["pairs"])
        except (KeyError, TypeError):
            raise CacheInvalid(f"{manifest_path}: incomplete fingerprint (codec, rate, clip "
                               f"length or source files missing)") from None
        if made_from != m.get("key"):
            raise CacheInvalid(f"{manifest_path}: its fingerprint does not match the codec and "
                               f"source files it lists (an edited or damaged manifest)")
        if key is not None and m.get("key") != key:
            raise CacheInvalid(f"{manifest_path}: made from other files or another codec "
                               f"(key {m.get('key')!r}, expected {key!r})")
        self.arrays: dict[str, np.ndarray] = {}
        for name in FIELDS:
            file = self.path / f"{name}.npy"
            try:
                spec = m["fields"][name]
                rows = len(m["pairs"])
            except (KeyError, TypeError):
                raise CacheInvalid(f"{manifest_path}: no entry for {name}") from None
            try:
                arr = np.load(file, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise CacheInvalid(f"{file} cannot be mapped ({e})") from None
            if (list(arr.shape) != spec.get("shape") or str(arr.dtype) != spec.get("dtype")
                    or arr.shape[0] != rows):
                raise CacheInvalid(f"{file}: shape {arr.shape} {arr.dtype}, expected "
                                   f"{tuple(spec['shape'])} {spec['dtype']}")
            self.arrays[name] = arr
        if verify == "full":
            with ThreadPoolExecutor(len(FIELDS)) as pool:
                sums = dict(zip(FIELDS, pool.map(_array_checksum, self.arrays.values())))
            for name in FIELDS:
                if sums[name] != m["fields"][name].get("checksum"):
                    raise CacheInvalid(f"{self.path / (name + '.npy')}: contents do not match "
                                       f"the checksum made with them (changed or damaged "
                                       f"since)")
        self.stats: dict = {"hit": True}

    def __len__(self) -> int:
        return self.arrays["input_latent"].shape[0]

    def fetch(self, pair_index, target_index) -> dict[str, np.ndarray]:
        out = {k: np.asarray(self.arrays[k][pair_index]) for k in _INPUT_FIELDS}
        out.update({k: np.asarray(self.arrays[k][target_index]) for k in _TARGET_FIELDS})
        return out


_JITTED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _jit_codec(codec):
    """Jitted ``encode -> (latent, decode(latent))`` and ``encode``, weights as arguments.

    Remembered per codec object, so building the train and val caches compiles once.
    """
    try:
        return _JITTED[codec]
    except (KeyError, TypeError):
        pass
    fns = _make_jitted(codec)
    try:
        _JITTED[codec] = fns
    except TypeError:  # not weak-referenceable or not hashable: just do not remember
        pass
    return fns


def _make_jitted(codec):
    if isinstance(codec, nnx.Module):
        graphdef, state = nnx.split(codec)

        def bind(fn):
            jitted = jax.jit(lambda st, x: fn(nnx.merge(graphdef, st), x))
            return lambda x: jitted(state, x)
    else:
        def bind(fn):
            jitted = jax.jit(lambda x: fn(codec, x))
            return jitted

    def enc_dec(c, x):
        latent = c.encode(x)
        return latent, c.decode(latent)

    return bind(enc_dec), bind(lambda c, x: c.encode(x))


def _codec_key(identity: str, sample_rate: int, clip_samples: int) -> str:
    return _hash(json.dumps({"format": CACHE_FORMAT, "codec": identity,
                             "sample_rate": sample_rate, "clip_samples": clip_samples}))


def _field_specs(codec, num_pairs: int, clip_samples: int) -> dict[str, tuple]:
    enc_dec, _ = _jit_codec(codec)
    latent, recon = jax.eval_shape(enc_dec, jax.ShapeDtypeStruct((1, 1, clip_samples),
                                                                 jnp.float32))
    return {"input_latent": (num_pairs, *latent.shape[1:]),
            "input_audio": (num_pairs, *recon.shape[1:]),
            "target_latent": (num_pairs, *latent.shape[1:]),
            "target_audio": (num_pairs, 1, clip_samples)}


def _reusable_rows(cache_dir: Path, codec_key: str, skip: Path):
    """Rows of valid caches made with this codec: digest -> (cache, row), per role."""
    inputs, targets = {}, {}
    for d in sorted(cache_dir.iterdir()):
        if d == skip or not d.is_dir() or d.name.startswith("."):
            continue
        try:
            cache = LatentCache(d)
        except CacheInvalid:
            continue
        if cache.manifest.get("codec_key") != codec_key:
            continue
        for row, p in enumerate(cache.manifest["pairs"]):
            inputs.setdefault(p["input_digest"], (cache, row))
            targets.setdefault(p["target_digest"], (cache, row))
    return inputs, targets


def build_cache(dataset: PairDataset, codec, cache_dir: str | Path, *, batch_size: int = 8,
                verify: str = "full", keep_stale: bool = False,
                num_threads: int = 4) -> LatentCache:
    """Open the cache of ``dataset`` under ``cache_dir``, encoding what is missing.

    On a miss the dataset's contents are checked first (:meth:`PairDataset.check_contents`,
    which raises on a bad file or, with ``skip_bad_files``, drops its pair), so a dataset
    opened with ``check_contents=False`` is only decoded when the cache has to be built.
    Encoding runs ``batch_size`` clips at a time through one jitted function on JAX's default
    device (the accelerator when there is one). Returns the opened cache; ``cache.stats``
    records whether it was a hit and how many inputs/targets were encoded or reused.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    identity = codec.identity()
    codec_key = _codec_key(identity, dataset.sample_rate, dataset.clip_samples)
    label = f"{dataset.folder.name}-{_hash(str(dataset.folder.resolve()), 4)}"
    memo = DigestMemo(cache_dir / "digests.json")
    if dataset.skip_bad_files and memo.bad:
        known = [BadFile(f, memo.bad[memo.digest(f)]) for p in dataset.pairs
                 for f in (p.input_path, p.target_path) if memo.digest(f) in memo.bad]
        dataset.exclude(known)
    hit, pairs, key, final = _lookup(dataset, memo, cache_dir, label, codec_key, verify)
    if hit is not None:
        return hit
    remove_stale(cache_dir, (".tmp-",), "a cache build")
    manifest = {"format": CACHE_FORMAT, "key": key, "codec_key": codec_key,
                "codec_identity": identity, "sample_rate": dataset.sample_rate,
                "clip_samples": dataset.clip_samples, "folder": str(dataset.folder),
                "pairs": pairs}
    stats = _build(dataset, codec, cache_dir, label, final, manifest, batch_size, num_threads)
    if not keep_stale:
        for d in cache_dir.glob(f"{label}-*"):
            if d != final and d.is_dir():
                _remove(d)
    cache = LatentCache(final, key=key, verify="quick")  # its checksums were just made
    cache.stats = {"hit": False, **stats}
    log.info("latent cache built: %s (%d pairs; encoded %d inputs and %d targets, reused %d)",
             final, len(cache), stats["encoded_inputs"], stats["encoded_targets"],
             stats["reused"])
    return cache


def _lookup(dataset, memo, cache_dir, label, codec_key, verify):
    """``(the cache, or None on a miss, the pairs' records, key, final folder)``: the cache of
    the dataset's contents as the digests say. On a miss the dataset's contents are checked
    (once), and a pair it drops changes the key, so the lookup repeats."""
    while True:
        pairs = [{"name": p.name, "input_file": str(p.input_path),
                  "target_file": str(p.target_path), "input_digest": memo.digest(p.input_path),
                  "target_digest": memo.digest(p.target_path)} for p in dataset.pairs]
        memo.save()
        key = _cache_key(codec_key, pairs)
        final = cache_dir / f"{label}-{key}"
        if final.exists():
            try:
                cache = LatentCache(final, key=key, verify=verify)
                log.info("latent cache hit: %s (%d pairs)", final, len(cache))
                return cache, pairs, key, final
            except CacheInvalid as e:
                log.warning("latent cache %s is not usable, rebuilding it: %s", final, e)
                _remove(final)
        if dataset.contents_checked:
            return None, pairs, key, final
        before = len(dataset.skipped)
        dataset.check_contents()
        for b in dataset.skipped[before:]:
            memo.mark_bad(b.path, b.problem)
        memo.save()
        if len(dataset.skipped) == before:
            return None, pairs, key, final  # nothing dropped: same key, still a miss


def _build(dataset, codec, cache_dir, label, final, manifest, batch_size, num_threads) -> dict:
    """Encode into a temporary folder, then rename it to ``final`` (atomic: an interrupted
    build is never used). Returns the build's statistics."""
    tmp = cache_dir / f".tmp-{label}-{manifest['key']}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write_owner(tmp)
        stats = _write_arrays(dataset, codec, cache_dir, manifest["codec_key"], tmp, final,
                              manifest["pairs"], batch_size, num_threads)
        fault_point("cache-build")
        manifest = {**manifest, "fields": stats.pop("fields")}
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same cache first: use theirs
            log.info("latent cache %s appeared while building; using it", final)
            _remove(tmp)
        fsync_path(cache_dir)
    except BaseException:
        _remove(tmp)
        raise
    return stats


def _write_arrays(dataset, codec, cache_dir, codec_key, tmp, final, pairs, batch_size,
                  num_threads) -> dict:
    shapes = _field_specs(codec, len(pairs), dataset.clip_samples)
    out = {k: np.lib.format.open_memmap(tmp / f"{k}.npy", mode="w+", dtype=np.float32,
                                        shape=shapes[k]) for k in FIELDS}
    old_inputs, old_targets = _reusable_rows(cache_dir, codec_key, skip=final)
    todo_in, todo_tg, reused = [], [], 0
    for row, p in enumerate(pairs):
        if p["input_digest"] in old_inputs:
            cache, r = old_inputs[p["input_digest"]]
            for k in _INPUT_FIELDS:
                out[k][row] = cache.arrays[k][r]
            reused += 1
        else:
            todo_in.append(row)
        if p["target_digest"] in old_targets:
            cache, r = old_targets[p["target_digest"]]
            for k in _TARGET_FIELDS:
                out[k][row] = cache.arrays[k][r]
            reused += 1
        else:
            todo_tg.append(row)

    enc_dec, enc = _jit_codec(codec)
    with ThreadPoolExecutor(max(1, num_threads)) as pool:
        for rows, load, is_input in ((todo_in, dataset.load_input, True),
                                     (todo_tg, dataset.load_target, False)):
            for k in range(0, len(rows), batch_size):
                chunk = rows[k:k + batch_size]
                clips = np.zeros((batch_size, 1, dataset.clip_samples), np.float32)
                clips[:len(chunk), 0] = np.stack(list(pool.map(load, chunk)))
                if is_input:
                    latent, recon = jax.device_get(enc_dec(clips))
                    out["input_latent"][chunk] = latent[:len(chunk)]
                    out["input_audio"][chunk] = recon[:len(chunk)]
                else:
                    out["target_latent"][chunk] = np.asarray(enc(clips))[:len(chunk)]
                    out["target_audio"][chunk] = clips[:len(chunk)]
    fields = {}
    for k, arr in out.items():
        arr.flush()
        fields[k] = {"shape": list(arr.shape), "dtype": str(arr.dtype),
                     "checksum": _array_checksum(arr)}
        del arr
        fsync_path(tmp / f"{k}.npy")
    out.clear()
    return {"fields": fields, "encoded_inputs": len(todo_in), "encoded_targets": len(todo_tg),
            "reused": reused}
