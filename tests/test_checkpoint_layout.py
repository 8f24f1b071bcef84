"""The checkpoint layout written through orbax CheckpointManager, and checkpoints of the
earlier layout (folder + meta.json + COMPLETE, optimizer state without apply_if_finite)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxaudio.inference.loading import locate_checkpoint
from jaxaudio.training.checkpoint import (COMPLETE, FORMAT, META, checkpoints_in,
                                          load_checkpoint, read_meta, resolve_checkpoint)
from jaxaudio.training.checkpoint_legacy import LegacyTrainState
from jaxaudio.training.checkpoint_manager import RunCheckpoints
from jaxaudio.training.state import TrainState, generator_optimizer, nonfinite_run


def toy_state(scale: float = 1.0) -> TrainState:
    opt = generator_optimizer(SimpleNamespace(grad_clip=1.0, lr=1e-3, weight_decay=0.01))
    params = {"w": jnp.arange(4.0) * scale}
    opt_state = opt.update({"w": jnp.ones(4)}, opt.init(params), params)[1]  # Adam moments set
    return TrainState(step=jnp.int32(5), params=params, buffers={"u": jnp.ones(2) * scale},
                      opt_state=opt_state, disc_params=None, disc_buffers=None,
                      disc_opt_state=None)


def test_earlier_layout_is_found_and_its_optimizer_state_mapped(tmp_path):
    state = toy_state(2.0)
    old = LegacyTrainState(step=state.step, params=state.params, buffers=state.buffers,
                           opt_state=state.opt_state.inner_state, disc_params=None,
                           disc_buffers=None, disc_opt_state=None,
                           nonfinite_run=jnp.int32(2))
    folder = tmp_path / "run" / "best_model"
    folder.mkdir(parents=True)
    with ocp.StandardCheckpointer() as writer:  # as the earlier trainer wrote it
        writer.save((folder / "state").absolute(), old)
    (folder / META).write_text(json.dumps({"format": FORMAT, "step": 5, "epoch": 1}))
    (folder / COMPLETE).write_text("ok\n")

    assert resolve_checkpoint(tmp_path / "run") == folder
    assert locate_checkpoint(tmp_path / "run") == ("jaxaudio", folder)
    assert read_meta(folder)["epoch"] == 1
    restored, _ = load_checkpoint(tmp_path / "run", toy_state(0.0))
    chex.assert_trees_all_equal(restored.params, state.params)
    chex.assert_trees_all_equal(restored.buffers, state.buffers)
    chex.assert_trees_all_equal(restored.opt_state.inner_state, state.opt_state.inner_state)
    assert int(nonfinite_run(restored)) == 2 and not bool(restored.opt_state.last_finite)
    # Training on in that folder: the earlier best is kept aside, the new layout takes its name.
    run = RunCheckpoints(tmp_path / "run")
    try:
        run.save("best", 2, restored, {"step": 6, "epoch": 2}, {"val_loss": 0.1})
    finally:
        run.close()
    assert [p.relative_to(tmp_path / "run").as_posix()
            for p in checkpoints_in(tmp_path / "run")] == ["best_model/epoch_2",
                                                           "legacy_best_model"]
    assert locate_checkpoint(tmp_path / "run") == ("jaxaudio", folder)
    assert resolve_checkpoint(folder) == folder / "epoch_2"


def test_run_checkpoints_keep_the_best_and_restore_exactly(tmp_path):
    run = RunCheckpoints(tmp_path)
    try:
        for epoch, loss in [(1, 0.5), (2, 0.4), (3, 0.45)]:
            run.save("periodic", epoch, toy_state(epoch), {"step": epoch, "epoch": epoch})
            if loss <= 0.4 or epoch == 1:
                run.save("best", epoch, toy_state(epoch), {"step": epoch, "epoch": epoch},
                         {"val_loss": loss})
        run.save("interrupted", 7, toy_state(7), {"step": 7})
        run.save("interrupted", 9, toy_state(9), {"step": 9})
        # Resumed from epoch 1: a new best at epoch 2 replaces the abandoned one.
        run.save("best", 2, toy_state(20), {"step": 2, "epoch": 2}, {"val_loss": 0.6})
    finally:
        run.close()
    names = [p.relative_to(tmp_path).as_posix() for p in checkpoints_in(tmp_path)]
    assert names == ["best_model/epoch_2", "checkpoint_epoch_1", "checkpoint_epoch_2",
                     "checkpoint_epoch_3", "interrupted_checkpoint/step_9"]
    assert resolve_checkpoint(tmp_path) == tmp_path / "interrupted_checkpoint/step_9"
    assert locate_checkpoint(tmp_path) == ("jaxaudio", tmp_path / "best_model")
    assert locate_checkpoint(tmp_path / "interrupted_checkpoint")[1] == (
        tmp_path / "interrupted_checkpoint")
    restored, meta = load_checkpoint(tmp_path / "best_model", toy_state(0.0))
    assert meta["step"] == 2 and meta["format"] == FORMAT
    chex.assert_trees_all_equal(restored, toy_state(20))
    np.testing.assert_array_equal(
        jax.device_get(load_checkpoint(tmp_path / "checkpoint_epoch_3", toy_state(0.0))[0]
                       .params["w"]), np.arange(4.0) * 3)


def test_checkpoint_without_the_discriminator_noise_restores_with_it_at_zero(tmp_path):
    """A GAN checkpoint written before the adaptive instance noise existed (no ``disc_noise``
    in its state) resumes with the noise's control variable at 0; other differences are still
    refused."""
    import dataclasses

    from jaxaudio.training.checkpoint import CheckpointError

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class StateBeforeNoise:  # the train state's fields before ``disc_noise``
        step: object
        params: object
        buffers: object
        opt_state: object
        disc_params: object
        disc_buffers: object
        disc_opt_state: object

    toy = toy_state(3.0)
    old = StateBeforeNoise(step=toy.step, params=toy.params, buffers=toy.buffers,
                           opt_state=toy.opt_state, disc_params={"d": jnp.ones(3)},
                           disc_buffers={}, disc_opt_state={"m": jnp.zeros(3)})
    run = RunCheckpoints(tmp_path)
    try:
        run.save("periodic", 1, old, {"step": 1, "epoch": 1})
    finally:
        run.close()
    target = dataclasses.replace(toy_state(0.0), disc_params={"d": jnp.zeros(3)},
                                 disc_buffers={}, disc_opt_state={"m": jnp.ones(3)},
                                 disc_noise=jnp.float32(0.7))
    restored, _ = load_checkpoint(tmp_path / "checkpoint_epoch_1", target)
    chex.assert_trees_all_equal(restored.disc_params, old.disc_params)
    chex.assert_trees_all_equal(restored.params, old.params)
    assert restored.disc_noise.dtype == jnp.float32 and float(restored.disc_noise) == 0.0
    # A checkpoint of another model is still an error, not a silent zero.
    other = dataclasses.replace(target, params={"w": jnp.zeros(5)})
    try:
        load_checkpoint(tmp_path / "checkpoint_epoch_1", other)
    except CheckpointError as e:
        assert "do not match" in str(e)
    else:
        raise AssertionError("a checkpoint of another shape was restored")
