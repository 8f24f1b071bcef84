"""Batching: reproducible order and targets, resumable position, per-process slices, prefetch."""

import threading

import numpy as np
import pytest
import soundfile as sf

from jaxaudio.data.loader import PairLoader, RawSource
from jaxaudio.data.pairs import BadFileError, PairDataset


class ArraySource:
    """Pair i's input is the row of value i, its target the row of value 1000 + i."""

    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def fetch(self, pair_index, target_index):
        if self.fail_at is not None and self.fail_at in pair_index:
            raise BadFileError(f"pair_{self.fail_at:04d}_input.wav", "broke")
        return {"input_raw": np.repeat(pair_index[:, None, None], 3, -1).astype(np.float32),
                "target_audio": np.repeat(1000 + target_index[:, None, None], 3, -1)
                .astype(np.float32)}


def epoch_batches(loader, epoch, start=0):
    return list(loader.epoch(epoch, start))


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_order_is_a_reproducible_function_of_seed_and_epoch():
    def make(seed, prefetch):
        return PairLoader(ArraySource(50), 8, seed=seed, prefetch=prefetch)

    a0, a1 = epoch_batches(make(3, 0), 0), epoch_batches(make(3, 0), 1)
    assert_same(a0, epoch_batches(make(3, 2), 0))  # prefetch changes nothing
    assert_same(a1, epoch_batches(make(3, 0), 1))
    order0 = np.concatenate([b["pair_index"] for b in a0])
    order1 = np.concatenate([b["pair_index"] for b in a1])
    order_other_seed = np.concatenate([b["pair_index"] for b in epoch_batches(make(4, 0), 0)])
    assert len(set(order0)) == len(order0) == 48  # 50 // 8 full batches, no repeats
    assert not np.array_equal(order0, order1)
    assert not np.array_equal(order0, order_other_seed)
    for b in a0:
        np.testing.assert_array_equal(b["input_raw"][:, 0, 0], b["pair_index"])
        np.testing.assert_array_equal(b["target_index"], b["pair_index"])
        assert b["valid"].all() and b["input_raw"].shape == (8, 1, 3)
    plain = epoch_batches(PairLoader(ArraySource(50), 8, shuffle=False), 5)
    np.testing.assert_array_equal(np.concatenate([b["pair_index"] for b in plain]), np.arange(48))


def test_shuffled_targets_are_reproducible_and_follow_target_index():
    make = lambda: PairLoader(ArraySource(64), 16, seed=7, shuffle_targets=True)  # noqa: E731
    first, again = epoch_batches(make(), 2), epoch_batches(make(), 2)
    assert_same(first, again)
    targets = np.concatenate([b["target_index"] for b in first])
    pairs = np.concatenate([b["pair_index"] for b in first])
    # chance, not round-off: a shuffled target is its own pair 1 time in 64; 0.2 catches no shuffle
    assert np.mean(targets == pairs) < 0.2 and targets.min() >= 0 and targets.max() < 64
    for b in first:
        np.testing.assert_array_equal(b["target_audio"][:, 0, 0], 1000 + b["target_index"])
    other_epoch = np.concatenate([b["target_index"] for b in epoch_batches(make(), 3)])
    assert not np.array_equal(np.sort(targets), np.sort(other_epoch))


@pytest.mark.parametrize("prefetch", [0, 3])
def test_resume_mid_epoch_sees_exactly_the_remaining_batches(prefetch):
    make = lambda: PairLoader(ArraySource(40), 4, seed=1, shuffle_targets=True,  # noqa: E731
                              prefetch=prefetch)
    reference = epoch_batches(make(), 2)
    it = make().epoch(2)
    seen = [next(it) for _ in range(3)]
    state = it.state()
    it.close()
    assert set(state) >= {"epoch", "batch", "seed"} and state["batch"] == 3
    resumed = make()
    epoch, start = resumed.resume_position(dict(state))
    assert (epoch, start) == (2, 3)
    assert_same(seen + epoch_batches(resumed, epoch, start), reference)
    full = make().epoch(2)
    list(full)
    assert make().resume_position(full.state()) == (3, 0)


def test_resume_refuses_a_changed_setup():
    it = PairLoader(ArraySource(40), 4, seed=1).epoch(0)
    next(it)
    state = it.state()
    with pytest.raises(ValueError, match="'seed' is 1 but this loader has 2"):
        PairLoader(ArraySource(40), 4, seed=2).resume_position(state)
    with pytest.raises(ValueError, match="'num_examples' is 40 but this loader has 41"):
        PairLoader(ArraySource(41), 4, seed=1).resume_position(state)
    with pytest.raises(KeyError, match="lacks key 'global_batch_size'"):
        PairLoader(ArraySource(40), 4, seed=1).resume_position({"epoch": 0, "batch": 1,
                                                                "seed": 1, "num_examples": 40})


@pytest.mark.parametrize("drop_last", [True, False])
def test_process_slices_are_disjoint_and_cover(drop_last):
    n, b, procs = 23, 2, 3
    loaders = [PairLoader(ArraySource(n), b, seed=5, drop_last=drop_last, process_index=p,
                          process_count=procs) for p in range(procs)]
    single = PairLoader(ArraySource(n), b * procs, seed=5, drop_last=drop_last, prefetch=0)
    per_proc = [epoch_batches(ld, 1) for ld in loaders]
    assert len({len(x) for x in per_proc}) == 1 and len(per_proc[0]) == len(single)
    for k, whole in enumerate(epoch_batches(single, 1)):
        # Process p holds rows [p*b, (p+1)*b) of the same global batch.
        parts = [per_proc[p][k] for p in range(procs)]
        np.testing.assert_array_equal(np.concatenate([x["pair_index"] for x in parts]),
                                      whole["pair_index"])
        np.testing.assert_array_equal(np.concatenate([x["valid"] for x in parts]), whole["valid"])
    valid = np.concatenate([x["pair_index"][x["valid"]] for batches in per_proc for x in batches])
    assert len(set(valid)) == len(valid)  # disjoint
    if drop_last:
        assert len(valid) == (n // (b * procs)) * b * procs
    else:
        np.testing.assert_array_equal(np.sort(valid), np.arange(n))  # covering, once each


def test_drop_last_false_pads_with_invalid_rows_of_fixed_shape():
    loader = PairLoader(ArraySource(10), 4, shuffle=False, drop_last=False)
    batches = epoch_batches(loader, 0)
    assert len(loader) == len(batches) == 3
    assert {b["input_raw"].shape for b in batches} == {(4, 1, 3)}
    np.testing.assert_array_equal(batches[-1]["valid"], [True, True, False, False])
    np.testing.assert_array_equal(batches[-1]["pair_index"], [8, 9, 0, 1])
    with pytest.raises(ValueError, match="10 pairs but one global batch needs 12"):
        PairLoader(ArraySource(10), 4, process_count=3)


def test_errors_reach_the_consumer_and_threads_stop():
    it = PairLoader(ArraySource(40, fail_at=None), 4, seed=0, prefetch=2).epoch(0)
    next(it)
    it.close()
    assert not any(t.name.startswith("prefetch-") and t.is_alive()
                   for t in threading.enumerate())
    bad_at = PairLoader(ArraySource(40), 4, seed=0).epoch_plan(0)[0][2][0]
    it = PairLoader(ArraySource(40, fail_at=int(bad_at)), 4, seed=0, prefetch=2).epoch(0)
    next(it), next(it)
    with pytest.raises(BadFileError, match=f"pair_{bad_at:04d}_input.wav"):
        next(it)


def test_raw_source_reads_wavs(tmp_path):
    sr, n = 8000, 400
    for i in range(6):
        for role, freq in (("input", 200 + 50 * i), ("output", 1000 + 50 * i)):
            x = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / sr)
            sf.write(tmp_path / f"pair_{i:04d}_{role}.wav", x, sr, subtype="FLOAT")
    ds = PairDataset(tmp_path, sample_rate=sr)
    loader = PairLoader(RawSource(ds, num_workers=2), 3, seed=0, shuffle_targets=True)
    for batch in loader.epoch(0):
        assert set(batch) == {"input_raw", "target_audio", "pair_index", "target_index", "valid"}
        assert batch["input_raw"].shape == (3, 1, n) and batch["input_raw"].dtype == np.float32
        for row, (i, t) in enumerate(zip(batch["pair_index"], batch["target_index"])):
            np.testing.assert_array_equal(batch["input_raw"][row, 0], ds.load_input(i))
            np.testing.assert_array_equal(batch["target_audio"][row, 0], ds.load_target(t))
