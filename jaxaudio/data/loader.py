"""Batches of pairs: reproducible order, per-process slices, background prefetch, resumable.

Batch format (a dict of NumPy arrays; ``B`` = ``batch_size``, this process's share):

- from the latent cache (:class:`jaxaudio.data.cache.LatentCache`):
  ``input_latent [B, D, T]`` float32 (codec.encode(input)), ``input_audio [B, 1, N']`` float32
  (codec.decode(input_latent), what the losses compare against), ``target_latent [B, D, T]``,
  ``target_audio [B, 1, N]`` float32 (the raw target clip);
- from raw audio (:class:`RawSource`): ``input_raw [B, 1, N]`` and ``target_audio [B, 1, N]``
  (encode them on the device with :func:`jaxaudio.data.cache.codec_fields`);
- always: ``pair_index [B]`` int32 (the input's pair), ``target_index [B]`` int32 (the target's
  pair: equal to ``pair_index`` unless ``shuffle_targets``) and ``valid [B]`` bool.

Order. Epoch ``e`` visits the pairs in ``permutation(seed, e)`` (or in folder order with
``shuffle=False``). With ``shuffle_targets`` each pair's target is drawn uniformly (with
replacement, as the original did) from a generator seeded by ``(seed, e)``, so the same run
always sees the same targets. A global batch has ``batch_size * process_count`` rows; process
``p`` reads rows ``[p * B, (p + 1) * B)`` of each, so processes read disjoint files.

``drop_last=True`` (training): only full global batches; the last ``n mod (B * P)`` pairs of
each epoch's order are not visited that epoch. ``drop_last=False`` (validation): the last global
batch is filled up with repeats of the epoch's first pairs, marked ``valid=False``, so every
batch has the same shape (no recompilation) and the valid rows cover every pair exactly once.

Resuming. ``it = loader.epoch(e, start_batch=k)`` yields batches k, k+1, ... of epoch e;
``it.state()`` is a small dict recording the position after the last batch handed out, and
``loader.resume_position(state)`` turns it back into ``(epoch, start_batch)``, checking that
the seed, dataset size and global batch still match.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from jaxaudio.data.pairs import PairDataset

_TARGET_STREAM = 1


class PairSource(Protocol):
    def __len__(self) -> int: ...

    def fetch(self, pair_index: np.ndarray, target_index: np.ndarray) -> dict[str, np.ndarray]:
        """Input fields of the rows ``pair_index``, target fields of the rows ``target_index``."""
        ...


class RawSource:
    """Raw clips read from the WAV files on demand, ``num_workers`` files at a time."""

    def __init__(self, dataset: PairDataset, num_workers: int = 4):
        self.dataset = dataset
        self._pool = ThreadPoolExecutor(max(1, num_workers), thread_name_prefix="wav-reader")

    def __len__(self) -> int:
        return len(self.dataset)

    def fetch(self, pair_index, target_index):
        ds = self.dataset
        jobs = [(ds.load_input, int(i)) for i in pair_index]
        jobs += [(ds.load_target, int(i)) for i in target_index]
        clips = list(self._pool.map(lambda job: job[0](job[1]), jobs))
        b = len(pair_index)
        return {"input_raw": np.stack(clips[:b])[:, None, :],
                "target_audio": np.stack(clips[b:])[:, None, :]}


class PairLoader:
    """Batches of one split. See the module docstring for the format and the order."""

    def __init__(self, source: PairSource, batch_size: int, *, seed: int = 0,
                 shuffle: bool = True, shuffle_targets: bool = False, drop_last: bool = True,
                 process_index: int = 0, process_count: int = 1, prefetch: int = 2):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} must be in [0, process_count="
                             f"{process_count})")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.source = source
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.shuffle_targets = shuffle_targets
        self.drop_last = drop_last
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        self.prefetch = int(prefetch)
        self.num_examples = len(source)
        self.global_batch_size = self.batch_size * self.process_count
        if drop_last and self.num_examples < self.global_batch_size:
            raise ValueError(
                f"the split has {self.num_examples} pairs but one global batch needs "
                f"{self.global_batch_size} (batch_size {batch_size} x {process_count} processes); "
                "lower batch_size, add pairs, or use drop_last=False")

    def __len__(self) -> int:
        """Batches per epoch."""
        n, g = self.num_examples, self.global_batch_size
        return n // g if self.drop_last else -(-n // g)

    def epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pair_index, target_index, valid)``, each ``[batches, B]``, for this process."""
        n, g = self.num_examples, self.global_batch_size
        order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
                 else np.arange(n))
        targets = (np.random.default_rng([self.seed, epoch, _TARGET_STREAM]).integers(0, n, n)
                   if self.shuffle_targets else np.arange(n))
        nb = len(self)
        valid = np.arange(nb * g) < n
        order = np.resize(order, nb * g)  # drop_last truncates; otherwise wraps around
        shape = (nb, self.process_count, self.batch_size)
        mine = (slice(None), self.process_index)
        pair = order.reshape(shape)[mine].astype(np.int32)
        return pair, targets[pair].astype(np.int32), valid.reshape(shape)[mine]

    def epoch(self, epoch: int, start_batch: int = 0) -> "EpochIterator":
        """Iterator over batches ``start_batch, ...`` of ``epoch`` (prefetched if enabled)."""
        if epoch < 0 or not 0 <= start_batch <= len(self):
            raise ValueError(f"epoch {epoch}, start_batch {start_batch}: expected epoch >= 0 and "
                             f"0 <= start_batch <= {len(self)}")
        return EpochIterator(self, epoch, start_batch)

    def fingerprint(self) -> dict:
        return {"seed": self.seed, "num_examples": self.num_examples,
                "global_batch_size": self.global_batch_size, "shuffle": self.shuffle,
                "shuffle_targets": self.shuffle_targets, "drop_last": self.drop_last}

    def resume_position(self, state: dict) -> tuple[int, int]:
        """``(epoch, start_batch)`` to continue from a saved ``EpochIterator.state()``."""
        for key, ours in self.fingerprint().items():
            if key not in state:
                raise KeyError(f"loader state lacks key {key!r}; expected a dict from "
                               "EpochIterator.state()")
            if state[key] != ours:
                raise ValueError(f"loader state key {key!r} is {state[key]!r} but this loader "
                                 f"has {ours!r}: the run would not see the batches it would "
                                 "have seen; resume with the same data and settings")
        epoch, batch = int(state["epoch"]), int(state["batch"])
        return (epoch + 1, 0) if batch >= len(self) else (epoch, batch)

    def load_batch(self, pair: np.ndarray, target: np.ndarray, valid: np.ndarray) -> dict:
        batch = self.source.fetch(pair, target)
        batch.update(pair_index=pair, target_index=target, valid=valid)
        return batch


class EpochIterator:
    """Batches of one epoch; a background thread keeps ``prefetch`` of them ready."""

    def __init__(self, loader: PairLoader, epoch: int, start_batch: int):
        self._loader = loader
        self.epoch = epoch
        self._plan = loader.epoch_plan(epoch)
        self._next = start_batch
        self._end = len(loader)
        self._thread = None
        if loader.prefetch > 0 and start_batch < self._end:
            self._queue: queue.Queue = queue.Queue(maxsize=loader.prefetch)
            self._stop = threading.Event()
            # The thread gets no reference to self, so dropping the iterator stops it.
            self._thread = threading.Thread(
                target=_produce, name=f"prefetch-epoch{epoch}", daemon=True,
                args=(loader, self._plan, start_batch, self._end, self._queue, self._stop))
            self._thread.start()

    def __iter__(self):
        return self

    def __len__(self) -> int:
        """Batches left."""
        return self._end - self._next

    def __next__(self) -> dict[str, np.ndarray]:
        if self._next >= self._end:
            self.close()
            raise StopIteration
        if self._thread is None:
            batch = self._loader.load_batch(*(a[self._next] for a in self._plan))
        else:
            kind, batch = self._queue.get()
            if kind == "error":
                self.close()
                raise batch
        self._next += 1
        return batch

    def state(self) -> dict:
        """Position after the last batch handed out, plus what must match to resume."""
        return {"epoch": self.epoch, "batch": self._next, **self._loader.fingerprint()}

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_thread", None) is not None:
            self._stop.set()


def _produce(loader, plan, start, end, out: queue.Queue, stop: threading.Event) -> None:
    for k in range(start, end):
        try:
            item = ("batch", loader.load_batch(*(a[k] for a in plan)))
        except BaseException as e:  # handed to the consumer, which re-raises it
            item = ("error", e)
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        if stop.is_set() or item[0] == "error":
            return
