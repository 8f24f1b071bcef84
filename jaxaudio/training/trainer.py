"""The epoch loop: train, validate, schedule, checkpoint, log; resumable at any step.

Reads top to bottom: :func:`fit` builds everything from the config, restores a checkpoint if
asked, then runs epochs. Each train step is dispatched without waiting for the previous one;
the loop reads a step's metrics only one step later (for the progress bar and the non-finite
check), so the accelerator is never idle on the host. SIGINT/SIGTERM finish the current step,
write ``interrupted_checkpoint`` (with the data position and the epoch's partial metrics),
and exit cleanly; ``--resume`` continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from tqdm import tqdm

from jaxaudio.training import checkpoint as ckpt
from jaxaudio.training.checkpoint_manager import RunCheckpoints, remove_stale_temps
from jaxaudio.training.config import TrainConfig
from jaxaudio.training.run_lock import hold_folder
from jaxaudio.training.resume import (Resume, check_resume, dataset_identity, digest_memo_path,
                                      remove_leftovers)
from jaxaudio.training.metrics import (MetricAccumulator, epoch_summary, make_tracker,
                                       truncate_history, write_metrics_line)
from jaxaudio.training.builders import (build_codec, build_data, build_discriminator, build_mesh,
                                     build_model, ensure_builtin_dataset, make_to_global,
                                     replicate)
from jaxaudio.training.state import TrainState, init_state, learning_rate, with_learning_rate
from jaxaudio.training.step import BATCH_KEYS, Steps
from jaxaudio.training.schedule import ReduceLROnPlateau, epoch_learning_rate, make_plateau
from jaxaudio.training.failures import (EXIT_INTERRUPTED, EXIT_NONFINITE, disk_full,
                                        folder_bytes, free_bytes, is_no_space)
from jaxaudio.training.signals import StopFlag
from jaxaudio.training.tracking import check_tracking_store
from jaxaudio.training.utils import count_params
from jaxaudio.training.validator import log_samples, quality, sample_batch, validate_epoch

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    pass


def curriculum_counter(cfg: TrainConfig, epoch: int) -> int:
    return epoch - cfg.gan_curriculum_start_epoch + 1 if epoch >= cfg.gan_curriculum_start_epoch else 0


def curriculum_alpha(cfg: TrainConfig, epoch: int) -> float:
    return min(cfg.gan_noise_ceiling, cfg.pure_gan_mode * curriculum_counter(cfg, epoch))


class Run:
    """One training run's mutable host-side state (everything else is in ``self.state``)."""

    def __init__(self, cfg: TrainConfig, devices: list | None = None,
                 resume: Resume | None = None):
        """``resume``: what :func:`check_resume` found (``fit`` checks it before it takes the
        folder); the folder is held (:mod:`.run_lock`) when a run is made."""
        self.cfg = cfg
        self.main = jax.process_index() == 0
        remove_leftovers(cfg)
        if self.main and not cfg.no_mlflow:
            check_tracking_store(cfg.mlflow_uri)
        ensure_builtin_dataset(cfg)
        self.codec = build_codec(cfg)
        self.mesh = build_mesh(devices)
        self.data = build_data(cfg, self.codec, self.mesh)
        codec_graphdef, codec_state = nnx.split(self.codec)
        self.codec_state = replicate(codec_state, self.mesh)
        self._codec_leaves, self._codec_def = jax.tree.flatten(self.codec_state)
        model = build_model(cfg)
        disc = build_discriminator(cfg)
        state, statics = init_state(cfg, model, disc)
        self.num_params = count_params(state.params)
        self.state = replicate(state, self.mesh)
        self.steps = Steps(cfg, statics, codec_graphdef, self.mesh)
        self.train_to_global = make_to_global(self.mesh, BATCH_KEYS + ("input_raw",))
        self.val_to_global = make_to_global(self.mesh, BATCH_KEYS + ("input_raw", "valid"))
        self.scheduler = make_plateau(cfg)
        self.epoch = 0
        self.start_batch = 0
        self.best_val_loss = math.inf
        self.patience_counter = 0
        self.partial: dict[str, Any] | None = None
        self._checkpoint_bytes = 0
        self.run_id: str | None = None
        self.ckpt_dir = Path(cfg.checkpoint_dir)
        self.checkpoints = RunCheckpoints(self.ckpt_dir)
        self.dataset = (resume.dataset if resume is not None else
                        dataset_identity(cfg.dataset_folder, digest_memo_path(cfg)))
        from jaxaudio.evaluation import folder_is_continuation

        # Drum/harmony pairs of one song have a known answer (the song); others are measured
        # reference-free.
        self.song_mode = ("none" if folder_is_continuation(Path(cfg.dataset_folder) / "val")
                          else "sum")
        if resume is not None:
            self._restore(resume.path, resume.meta)
            if resume.dataset_changed:
                self.best_val_loss, self.patience_counter = math.inf, 0
                if self.main:
                    print(f"note: --allow_dataset_change: {resume.dataset_changed}; the best "
                          f"model is chosen afresh on this dataset's validation set", flush=True)
        self.tracker = make_tracker(not cfg.no_mlflow, cfg.mlflow_uri,
                                    run_name=self._run_name(), run_id=self.run_id)
        self.run_id = getattr(self.tracker, "run_id", None)

    @property
    def state(self) -> TrainState:
        """The train state. The loop keeps it as a list of leaves (:meth:`Steps.leaf_step`);
        it is rebuilt here, once, when something else needs it."""
        if self._state is None:
            self._state = self._state_def.unflatten(self._leaves)
        return self._state

    @state.setter
    def state(self, value: TrainState) -> None:
        self._state, self._leaves = value, None
        self._state_def = jax.tree.structure(value)

    def _state_leaves(self) -> list:
        if self._leaves is None:
            self._leaves = self._state_def.flatten_up_to(self._state)
        return self._leaves

    def _run_name(self) -> str:
        c = self.cfg
        kind = "unity_test" if c.unity_test else ("builtin" if c.builtin else "continuation")
        return f"{kind}_lr{c.lr}_layers{c.num_layers}"

    # --- checkpoints ---------------------------------------------------------------------

    def _meta(self, position: dict, partial: dict | None = None) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), "epoch": self.epoch, "position": position,
                "step": int(jax.device_get(self.state.step)),
                "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
                "patience_counter": self.patience_counter,
                "scheduler": self.scheduler.state_dict(),
                "gan_curriculum_counter": curriculum_counter(self.cfg, self.epoch),
                "partial_metrics": partial, "mlflow_run_id": self.run_id,
                "dataset": self.dataset,
                "jax_version": jax.__version__}

    def save(self, kind: str, position: dict, partial: dict | None = None,
             metrics: dict[str, float] | None = None) -> Path:
        """A checkpoint of ``kind`` (``periodic``, ``best``: step = completed epochs;
        ``interrupted``: step = optimizer step), see :mod:`.checkpoint_manager`."""
        meta = self._meta(position, partial)
        step = meta["step"] if kind == "interrupted" else self.epoch
        what = f"the {kind} checkpoint (step {step})"
        # The size of the run's last checkpoint (the arrays' before the first): a save that
        # cannot fit is refused before it starts, leaving no half-written folder behind.
        needed = self._checkpoint_bytes or sum(getattr(x, "nbytes", 0)
                                               for x in jax.tree.leaves(self.state))
        free = free_bytes(self.ckpt_dir)
        if free is not None and free < needed:
            raise disk_full(self.ckpt_dir, needed, what)
        try:
            path = self.checkpoints.save(kind, step, self.state, meta, metrics)
        except Exception as e:  # the disk filled during the save
            if not is_no_space(e):
                raise
            try:  # let orbax's writes still in flight end before their folder is removed
                self.checkpoints.close()
            except Exception:
                pass
            remove_stale_temps(self.ckpt_dir)
            raise disk_full(self.ckpt_dir, needed, what) from e
        self._checkpoint_bytes = folder_bytes(path)
        return path

    def _restore(self, path: Path, meta: dict[str, Any]) -> None:
        """Continue from ``path`` (its configuration was checked by :func:`check_resume`)."""
        try:
            self.epoch, self.start_batch = self.data.train.resume_position(meta["position"])
        except (KeyError, ValueError) as e:
            raise ckpt.CheckpointError(f"{path}: cannot resume here: {e}") from e
        self.state, _ = ckpt.load_checkpoint(path, self.state, verify=False)  # checked first
        self.best_val_loss = math.inf if meta["best_val_loss"] is None else meta["best_val_loss"]
        self.patience_counter = meta["patience_counter"]
        self.scheduler = ReduceLROnPlateau.from_state_dict(meta["scheduler"])
        self.partial = meta.get("partial_metrics") if self.start_batch > 0 else None
        self.run_id = meta.get("mlflow_run_id")
        if self.main:
            truncate_history(self.ckpt_dir / "metrics.jsonl", self.epoch)
            print(f"Resumed from {path}: epoch {self.epoch + 1}, batch {self.start_batch}, "
                  f"step {meta['step']}", flush=True)

    # --- the loop --------------------------------------------------------------------------

    def train_epoch(self, stop: StopFlag) -> dict[str, float] | None:
        """One epoch (from ``start_batch``); None when interrupted mid-epoch (a checkpoint was
        saved). A stop that arrives after the epoch's last step lets the epoch finish (its
        validation and checkpoints); :meth:`fit` then stops at the epoch boundary."""
        cfg, steps = self.cfg, self.steps
        alpha = jnp.asarray(curriculum_alpha(cfg, self.epoch), jnp.float32)
        acc = MetricAccumulator.from_state(self.partial)
        self.partial = None
        it = self.data.train.epoch(self.epoch, start_batch=self.start_batch)
        bar = tqdm(total=len(self.data.train), initial=self.start_batch,
                   desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=not self.main,
                   dynamic_ncols=True)
        pending = None  # (step number, metrics) of the step before this one
        train_step = steps.leaf_step(self._state_def, self._codec_def)
        t0, n_steps = time.perf_counter(), 0
        limit = cfg.stop_after_steps
        with it, bar:
            for batch in it:
                step_no = self.state_step_hint + n_steps
                batch_index = jnp.asarray(self.start_batch + n_steps, jnp.int32)
                self._leaves, m = train_step(self._state_leaves(), self.train_to_global(batch),
                                             self._codec_leaves, alpha, batch_index)
                self._state = None  # its arrays were donated to the step
                acc.add(m)
                n_steps += 1
                if pending is not None:
                    self._check(pending, bar)
                pending = (step_no, m)
                bar.update(1)
                self.steps_this_process += 1
                if limit is not None and self.steps_this_process >= limit:
                    stop.requested, stop.signal_name = True, f"--stop_after_steps {limit}"
                # Several processes must agree (a collective), so they ask every 10 steps.
                if len(it) and (jax.process_count() == 1 or self.steps_this_process % 10 == 0):
                    if stop.agreed():
                        self._check(pending, bar)
                        self.save("interrupted", it.state(), acc.state())
                        return None
            if pending is not None:
                self._check(pending, bar)
        self.state_step_hint += n_steps
        jax.block_until_ready(self.state.step)
        elapsed = time.perf_counter() - t0
        means = acc.means()
        if n_steps:
            means["samples_per_second"] = n_steps * self.data.train.global_batch_size / elapsed
        means["alpha"] = float(alpha)
        return means

    def _check(self, pending, bar) -> None:
        """Progress bar, and the non-finite guard: the step counts consecutive skipped updates
        in its state (across epochs and resumes); too many in a row stop the run."""
        step_no, m = pending
        if self.main:
            bar.set_postfix(loss=f"{float(m['loss']):.4f}", refresh=False)
        if float(m["count_skipped_steps"]) == 0:
            return
        run = int(m["_nonfinite_run"])
        log.warning("step %d: non-finite loss or gradient norm; update skipped (%d in a row)",
                    step_no, run)
        if run >= self.cfg.max_nonfinite_steps:
            raise NonFiniteError(
                f"stopping at step {step_no}: {run} consecutive steps had a non-finite loss or "
                f"gradient norm. The last good parameters were kept; lower --lr or check the "
                f"data.")

    def fit(self) -> int:
        cfg = self.cfg
        stop = StopFlag().install()
        self.state_step_hint = int(jax.device_get(self.state.step))
        self.steps_this_process = 0
        if self.main:
            print(self.describe(), flush=True)
            if cfg.resume is None:
                self.tracker.log_params({**cfg.to_dict(), "num_params": self.num_params,
                                         "num_devices": int(self.mesh.devices.size)})
        history = self.ckpt_dir / "metrics.jsonl"
        try:
            while self.epoch < cfg.epochs:
                self._set_learning_rate()
                train = self.train_epoch(stop)
                if train is None:
                    return self._interrupted(stop)
                metrics = self._validate_and_log(train, history)
                self.epoch += 1
                self.start_batch = 0
                done = {"epoch": self.epoch - 1, "batch": len(self.data.train),
                        **self.data.train.fingerprint()}
                if self._checkpoint_epoch(metrics, done):
                    break  # early stopping
                if self.epoch < cfg.epochs and stop.agreed():  # a stop during this epoch's end
                    self.save("interrupted", done)
                    return self._interrupted(stop)
        except NonFiniteError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            self.tracker.finish("FAILED")
            return EXIT_NONFINITE
        except BaseException as e:
            self.tracker.finish("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            raise
        finally:
            stop.restore()
            self.checkpoints.close()
        self.tracker.log_metrics({"final_best_val_loss": self.best_val_loss}, self.epoch)
        self.tracker.finish()
        if self.main:
            print(f"\nTraining finished. Best validation loss {self.best_val_loss:.6f}\n"
                  f"  checkpoints: {self.ckpt_dir.resolve()} (best: best_model/)\n"
                  f"  metrics:     {history.resolve()}\n"
                  f"  MLflow:      {self.tracker.where}", flush=True)
        return 0

    def _validate_and_log(self, train: dict[str, float], history: Path) -> dict[str, float]:
        """The epoch's validation, quality metrics and samples, logged; returns the metrics."""
        cfg = self.cfg
        val = validate_epoch(self.steps, self.state, self.data.val, self.epoch,
                             self.codec_state, self.val_to_global, self.main)
        metrics = {**{f"train_{k}": v for k, v in train.items()},
                   **{f"val_{k}": v for k, v in val.items()},
                   "learning_rate": float(learning_rate(self.state))}
        self._end_epoch(metrics)
        audio = (sample_batch(self.steps, self.state, self.data.val, self.codec_state,
                              self.val_to_global)
                 if cfg.log_samples or cfg.quality_clips else None)
        if self.main:
            if audio is not None and cfg.quality_clips:
                metrics.update(quality(
                    audio, num=cfg.quality_clips, sample_rate=self.codec.sample_rate,
                    frame_rate=self.codec.frame_rate, song_mode=self.song_mode))
            self.tracker.log_metrics(metrics, step=self.epoch + 1)
            history.parent.mkdir(parents=True, exist_ok=True)
            write_metrics_line(history, self.epoch + 1, metrics)
            print(epoch_summary(self.epoch, self.cfg.epochs, metrics), flush=True)
            if audio is not None:
                log_samples(audio, self.tracker, self.epoch, cfg.log_samples,
                            self.codec.sample_rate)
        return metrics

    def _checkpoint_epoch(self, metrics: dict[str, float], done: dict) -> bool:
        """The best model and the periodic checkpoint after an epoch; True when training
        should stop early."""
        if metrics["val_loss"] < self.best_val_loss:
            self.best_val_loss = metrics["val_loss"]
            self.patience_counter = 0
            self.save("best", done, metrics={"val_loss": self.best_val_loss})
            self.tracker.log_metrics({"best_val_loss": self.best_val_loss}, self.epoch)
        else:
            self.patience_counter += 1
        if self.epoch % self.cfg.save_every == 0:
            self.save("periodic", done)
        if self.patience_counter >= self.cfg.patience:
            if self.main:
                print(f"Early stopping: no better validation loss for "
                      f"{self.patience_counter} epochs", flush=True)
            return True
        return False

    def _interrupted(self, stop: StopFlag) -> int:
        path = self.ckpt_dir / "interrupted_checkpoint"
        if self.main:
            print(f"\nInterrupted ({stop.signal_name}); saved {path}. Continue with: "
                  f"--resume {path}", flush=True)
        self.tracker.finish("KILLED")
        return EXIT_INTERRUPTED if stop.signal_name == "SIGINT" else 0

    def _set_learning_rate(self) -> None:
        """This epoch's rate: warm-up, then the plateau scheduler's or the cosine's."""
        lr = epoch_learning_rate(self.cfg, self.epoch, self.scheduler.lr)
        if lr != float(learning_rate(self.state)):
            self.state = with_learning_rate(self.state, lr)

    def _end_epoch(self, metrics: dict[str, float]) -> None:
        """The plateau scheduler steps on the validation loss (after the warm-up); its rate is
        used next epoch."""
        if self.cfg.lr_schedule == "plateau" and self.epoch >= self.cfg.warmup_epochs:
            self.scheduler.step(metrics["val_loss"])

    def describe(self) -> str:
        c = self.cfg
        return (f"jaxaudio training: {self.data.train_pairs} train / {self.data.val_pairs} val "
                f"pairs of {c.clip_seconds:g} s from {c.dataset_folder}\n"
                f"  codec {c.codec} ({self.codec.dim} x {self.codec.frame_rate:g} frames/s); "
                f"model {'cascade' if c.cascade else 'single stage'}, {c.num_layers} layers, "
                f"{c.nhead} heads, agent {c.agent or 'none'}, GAN "
                f"{c.gan_variant if c.gan_weight > 0 else 'off'}; {self.num_params:,} "
                f"parameters\n"
                f"  {self.mesh.devices.size} {self.mesh.devices.flat[0].platform} device(s) in "
                f"{jax.process_count()} process(es); global batch "
                f"{self.data.train.global_batch_size}; {len(self.data.train)} steps per epoch; "
                f"precision {c.precision}"
                + (", loss decode bf16 (--codec_precision)" if c.codec_precision == "bf16" else ""))


def fit(cfg: TrainConfig, devices: list | None = None) -> int:
    """Train ``cfg`` on ``devices`` (default: every device of every process); exit status.
    The run holds its checkpoint folder throughout (:mod:`.run_lock`)."""
    resume = check_resume(cfg)  # before any work or write: a refusal costs nothing
    with hold_folder(cfg.checkpoint_dir):
        return Run(cfg, devices, resume).fit()
