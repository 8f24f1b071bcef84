"""Metric accumulation without host syncs, and the tracker the loop logs through.

The train step returns one flat dict of scalar arrays. :class:`MetricAccumulator` sums them on
the device and is read once per epoch, so the loop never waits on a step to finish. The loop
logs through a tiny :class:`Tracker` interface (params, metrics, artifacts, finish): MLflow on
process 0, nothing elsewhere, so the loop never imports a logging backend itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Protocol

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger(__name__)


@jax.jit
def tree_add(a: Mapping[str, jax.Array], b: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """``a + b`` leaf by leaf in one dispatch (an eager ``tree.map`` would launch one per key)."""
    return jax.tree.map(jnp.add, a, b)


class MetricAccumulator:
    """Sums per-step metric dicts on the device; `means()` fetches once.

    Keys named ``count_*`` are summed, not averaged (e.g. skipped steps); keys starting with
    ``_`` are for the host's per-step checks and are not accumulated. Means are taken over the
    steps that were not skipped (a skipped step reports zeros), and the discriminator's
    ``disc_*`` metrics over the steps that updated it.
    """

    def __init__(self) -> None:
        self._sum: dict[str, jax.Array] | None = None
        self._n = 0

    def add(self, metrics: Mapping[str, jax.Array]) -> None:
        metrics = {k: v for k, v in metrics.items() if not k.startswith("_")}
        if self._sum is None:
            self._sum = metrics
        else:
            self._sum = tree_add(self._sum, metrics)
        self._n += 1

    @property
    def steps(self) -> int:
        return self._n

    def state(self) -> dict[str, Any] | None:
        """Host copy of the running sums (saved in an interrupted checkpoint)."""
        if not self._sum:
            return None
        return {"n": self._n, "sums": {k: float(v) for k, v in jax.device_get(self._sum).items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> "MetricAccumulator":
        acc = cls()
        if state:
            acc._n = int(state["n"])
            acc._sum = {k: jnp.asarray(v, jnp.float32) for k, v in state["sums"].items()}
        return acc

    def means(self) -> dict[str, float]:
        if not self._sum:
            return {}
        host = {k: float(v) for k, v in jax.device_get(self._sum).items()}
        steps = self._n - host.get("count_skipped_steps", 0.0)
        disc_steps = host.get("count_disc_updates", 0.0)
        out = {}
        for k, v in host.items():
            if k.startswith("count_"):
                out[k] = v
            else:
                n = disc_steps if k.startswith("disc_") else steps
                out[k] = v / n if n > 0 else float("nan")
        return out


class Tracker(Protocol):
    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...

    def finish(self, status: str = "FINISHED") -> None: ...

    @property
    def where(self) -> str: ...


class NullTracker:
    """Logs nothing (other processes, or --no_mlflow)."""

    where = "(MLflow disabled)"

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_artifact(self, path, artifact_path=None) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


class MLflowTracker:
    """An MLflow run; `sqlite:///mlruns.db` by default (the file store errors in MLflow >= 3.13)."""

    def __init__(self, uri: str, experiment: str, run_name: str, run_id: str | None = None):
        import mlflow  # imported here: the loop and the GPU image need not have it

        os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self._mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        try:
            self._run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
        except mlflow.exceptions.MlflowException as e:
            if run_id is None:
                raise
            log.warning("MLflow run %s of the checkpoint is not in %s (%s); logging to a new run",
                        run_id, uri, e)
            self._run = mlflow.start_run(run_name=run_name)
        self.run_id = self._run.info.run_id
        self.uri = uri
        self._finished = False

    @property
    def where(self) -> str:
        return f"MLflow run {self.run_id} at {self.uri} (view with: mlflow ui --backend-store-uri {self.uri})"

    def log_params(self, params: Mapping[str, Any]) -> None:
        clean = {k: ("None" if v is None else v) for k, v in params.items()}
        self._mlflow.log_params(clean)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        finite = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        self._mlflow.log_metrics(finite, step=step)

    def log_artifact(self, path, artifact_path=None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        if not self._finished:
            self._mlflow.end_run(status=status)
            self._finished = True


def make_tracker(enabled: bool, uri: str, run_name: str, run_id: str | None = None) -> Tracker:
    """MLflow on process 0 when enabled; a :class:`NullTracker` everywhere else."""
    if not enabled or jax.process_index() != 0:
        return NullTracker()
    return MLflowTracker(uri, experiment="jaxaudio", run_name=run_name, run_id=run_id)


def summarize(prefix: str, means: Mapping[str, float]) -> dict[str, float]:
    """Step-metric names to the original's MLflow names (``train_loss``, ``val_mel``, ...)."""
    return {f"{prefix}_{k}": v for k, v in means.items()}


def write_metrics_line(path: Path, epoch: int, metrics: Mapping[str, float]) -> None:
    """Append one JSON line per epoch next to the checkpoints (readable without MLflow)."""
    import json

    with open(path, "a") as f:
        f.write(json.dumps({"epoch": epoch, **{k: float(v) for k, v in metrics.items()}}) + "\n")


def truncate_history(path: Path, epoch: int) -> None:
    """Drop ``metrics.jsonl`` rows of epochs after ``epoch`` (a resume of an older checkpoint)."""
    import json

    from jaxaudio.data.atomic_files import atomic_write_text

    if not path.exists():
        return
    rows = path.read_text().splitlines()
    keep = [r for r in rows if r.strip() and json.loads(r).get("epoch", 0) <= epoch]
    if len(keep) != len(rows):
        atomic_write_text(path, "".join(r + "\n" for r in keep))


def epoch_summary(epoch: int, epochs: int, m: Mapping[str, float]) -> str:
    """The line printed after each epoch (``epoch``: 0-based)."""
    parts = [f"epoch {epoch + 1}/{epochs}: train_loss {m['train_loss']:.4f}",
             f"val_loss {m.get('val_loss', float('nan')):.4f}"]
    for k in ("val_rms_input", "val_rms_target", "val_spectral", "val_mel"):
        if k in m:
            parts.append(f"{k[4:]} {m[k]:.4f}")
    parts.append(f"lr {m['learning_rate']:.2e}")
    if "train_samples_per_second" in m:
        parts.append(f"{m['train_samples_per_second']:.1f} samples/s")
    return ", ".join(parts)
