"""Folders of WAV pairs: ``pair_XXXX_input.wav`` with ``pair_XXXX_output.wav`` (or ``_target.wav``).

A dataset root holds ``train/`` and ``val/``; each is read by :class:`PairDataset`. Every clip
becomes mono float32 ``[N]`` at the codec's ``sample_rate`` (channels averaged; other rates
resampled, with one logged notice per rate), cropped to its first ``clip_samples`` samples or
padded with trailing silence. Clips shorter than ``min_samples`` are bad files.

Bad inputs (missing partner, two partners, unreadable or corrupt file, NaN or infinite samples,
too short, an empty folder) raise :class:`BadFileError` naming the file and what was expected.
With ``skip_bad_files=True`` (``--skip_bad_files true``) the affected pairs are left out instead, with one warning that
counts them; ``dataset.skipped`` lists each one. An empty result is always an error.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxaudio.data.audio_io import BadFileError, fit_length, header, read_mono, resampled_length

log = logging.getLogger(__name__)

INPUT_SUFFIX = "_input.wav"
PARTNER_SUFFIXES = ("_output.wav", "_target.wav")
_ROLE = re.compile(r"^(?P<stem>.+)_(?P<role>input|output|target)\.wav$", re.IGNORECASE)


@dataclass(frozen=True)
class Pair:
    name: str  # the shared stem, e.g. "pair_0007"
    input_path: Path
    target_path: Path


@dataclass(frozen=True)
class BadFile:
    path: Path
    problem: str


def find_pairs(folder: str | Path) -> tuple[list[Pair], list[BadFile]]:
    """Match ``<stem>_input.wav`` files with their partner by name; sorted by stem.

    Returns the pairs and the files that could not be paired (orphans or two partners).
    Other files in the folder are ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadFileError(folder, "is not a folder; expected a folder of "
                                   "pair_XXXX_input.wav / pair_XXXX_output.wav files")
    roles: dict[str, dict[str, Path]] = {}
    for p in folder.iterdir():
        m = _ROLE.match(p.name)
        if m and p.is_file():
            roles.setdefault(m["stem"], {})[m["role"].lower()] = p
    pairs, bad = [], []
    for stem in sorted(roles):
        r = roles[stem]
        partners = [r[k] for k in ("output", "target") if k in r]
        if "input" not in r:
            for p in partners:
                bad.append(BadFile(p, f"has no partner {stem}{INPUT_SUFFIX}; expected both files"))
        elif not partners:
            bad.append(BadFile(r["input"], f"has no partner {stem}_output.wav (or "
                                           f"{stem}_target.wav); expected both files"))
        elif len(partners) > 1:
            bad.append(BadFile(r["input"], f"has two partners ({partners[0].name} and "
                                           f"{partners[1].name}); expected exactly one"))
        else:
            pairs.append(Pair(stem, r["input"], partners[0]))
    return pairs, bad


class PairDataset:
    """The pairs of one folder, loaded on demand as mono float32 clips ``[N]``.

    Args:
        folder: a ``train/`` or ``val/`` folder.
        sample_rate: the codec's rate; other rates are resampled.
        clip_samples: N, the clip length; None takes the first pair's input length.
        min_samples: clips shorter than this (after resampling) are bad files; default N,
            so nothing is padded unless a shorter minimum is allowed.
        skip_bad_files: leave bad pairs out with a warning instead of raising.
        check_contents: decode every file once now (:meth:`check_contents`), so NaN samples
            or a corrupt body are found before training starts; headers are always checked.
            Pass False when the latent cache will be used: ``build_cache`` runs the check
            itself, and only when the cache has to be (re)built.
        num_threads: threads for that check.
    """

    def __init__(self, folder: str | Path, *, sample_rate: int, clip_samples: int | None = None,
                 min_samples: int | None = None, skip_bad_files: bool = False,
                 check_contents: bool = True, num_threads: int = 4):
        self.folder = Path(folder)
        self.sample_rate = int(sample_rate)
        self.skip_bad_files = skip_bad_files
        self._noticed_rates: set[int] = set()
        self._lock = threading.Lock()
        pairs, bad = find_pairs(self.folder)
        if not pairs and not bad:
            raise BadFileError(self.folder, "contains no pair_XXXX_input.wav / pair_XXXX_output"
                                            ".wav files; expected at least one pair")
        self._raise_unless_skipping(bad)
        self._require_some(pairs, bad)
        if clip_samples is None:
            clip_samples = self._infer_clip_samples(pairs, bad)
        if clip_samples <= 0:
            raise ValueError(f"clip_samples must be positive, got {clip_samples}")
        self.clip_samples = int(clip_samples)
        self.min_samples = self.clip_samples if min_samples is None else int(min_samples)
        self.num_threads = num_threads
        pairs, more = self._check(pairs, self._check_header)
        bad += more
        self._require_some(pairs, bad)
        self.pairs: list[Pair] = pairs
        self.skipped: list[BadFile] = bad
        self.contents_checked = False
        self._warn_skipped(0)
        if check_contents:
            self.check_contents()

    def check_contents(self) -> None:
        """Decode every file once; bad pairs raise, or are dropped with ``skip_bad_files``."""
        if self.contents_checked:
            return
        with ThreadPoolExecutor(max(1, self.num_threads)) as pool:
            pairs, bad = self._check(self.pairs, self._check_body, pool)
        self._require_some(pairs, self.skipped + bad)
        self.pairs = pairs
        self.skipped = self.skipped + bad
        self.contents_checked = True
        self._warn_skipped(len(self.skipped) - len(bad))

    def exclude(self, bad: list[BadFile]) -> None:
        """Leave out the pairs that use any of these files (found bad elsewhere)."""
        paths = {b.path for b in bad}
        if not paths:
            return
        self._raise_unless_skipping(bad)
        before = len(self.skipped)
        self.pairs = [p for p in self.pairs
                      if p.input_path not in paths and p.target_path not in paths]
        self.skipped = self.skipped + list(bad)
        self._require_some(self.pairs, self.skipped)
        self._warn_skipped(before)

    def _warn_skipped(self, already_reported: int) -> None:
        bad = self.skipped[already_reported:]
        if bad:
            log.warning("%s: skipped %d bad file(s), %d pairs remain; first: %s: %s",
                        self.folder, len(bad), len(self.pairs), bad[0].path.name,
                        bad[0].problem)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def duration(self) -> float:
        return self.clip_samples / self.sample_rate

    def load_input(self, index: int) -> np.ndarray:
        """Input clip of pair ``index``: float32 ``[N]``."""
        return self.load_file(self.pairs[index].input_path)

    def load_target(self, index: int) -> np.ndarray:
        """Target clip of pair ``index``: float32 ``[N]``."""
        return self.load_file(self.pairs[index].target_path)

    def load_file(self, path: Path) -> np.ndarray:
        clip, sr = read_mono(path, self.sample_rate)
        self._notice_rate(path, sr)
        if clip.shape[0] < self.min_samples:
            raise BadFileError(path, self._too_short(clip.shape[0]))
        return fit_length(clip, self.clip_samples)

    # -- checks -------------------------------------------------------------------------

    def _raise_unless_skipping(self, bad: list[BadFile]) -> None:
        if bad and not self.skip_bad_files:
            extra = f" (and {len(bad) - 1} more bad files)" if len(bad) > 1 else ""
            raise BadFileError(bad[0].path, bad[0].problem + extra +
                               "; pass --skip_bad_files true to leave them out")

    def _require_some(self, pairs: list[Pair], bad: list[BadFile]) -> None:
        if not pairs:
            raise BadFileError(self.folder, f"has no usable pairs ({len(bad)} bad files, first: "
                                            f"{bad[0].path.name}: {bad[0].problem})")

    def _check(self, pairs, check, pool=None):
        def problems(pair):
            out = []
            for path in (pair.input_path, pair.target_path):
                try:
                    check(path)
                except BadFileError as e:
                    out.append(BadFile(e.path, e.problem))
            return out

        results = list(pool.map(problems, pairs) if pool else map(problems, pairs))
        bad = [b for r in results for b in r]
        self._raise_unless_skipping(bad)
        return [p for p, r in zip(pairs, results) if not r], bad

    def _check_header(self, path: Path) -> None:
        info = header(path)
        n = resampled_length(info.frames, info.samplerate, self.sample_rate)
        if n < self.min_samples:
            raise BadFileError(path, self._too_short(n))

    def _check_body(self, path: Path) -> None:
        self.load_file(path)

    def _too_short(self, n: int) -> str:
        return (f"is {n / self.sample_rate:.3f} s long ({n} samples at {self.sample_rate} Hz); "
                f"expected at least {self.min_samples / self.sample_rate:.3f} s "
                f"({self.min_samples} samples)")

    def _infer_clip_samples(self, pairs: list[Pair], bad: list[BadFile]) -> int:
        for pair in pairs:
            try:
                info = header(pair.input_path)
            except BadFileError as e:
                if not self.skip_bad_files:
                    raise
                bad.append(BadFile(e.path, e.problem))
                continue
            return resampled_length(info.frames, info.samplerate, self.sample_rate)
        self._require_some([], bad)

    def _notice_rate(self, path: Path, sr: int) -> None:
        if sr != self.sample_rate and sr not in self._noticed_rates:
            with self._lock:
                if sr in self._noticed_rates:
                    return
                self._noticed_rates.add(sr)
            log.info("%s is at %d Hz: resampling to the codec's %d Hz (further %d Hz files in "
                     "%s are resampled without notice)", path, sr, self.sample_rate, sr,
                     self.folder)


def open_pair_folders(root: str | Path, **kwargs) -> tuple[PairDataset, PairDataset]:
    """``(train, val)`` datasets of ``root/train`` and ``root/val``; kwargs as PairDataset.

    The validation set takes the training set's clip length when none is given.
    """
    root = Path(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise BadFileError(root / split, f"is missing; expected {root} to hold train/ and "
                                             "val/ folders (made by jaxaudio.data.make_pairs or "
                                             "jaxaudio.data.synth)")
    train = PairDataset(root / "train", **kwargs)
    kwargs["clip_samples"] = train.clip_samples
    return train, PairDataset(root / "val", **kwargs)
