"""What the library's losses share: checking a pair of signals, the ``valid`` rows of a padded
batch, and auraloss's reductions (``"mean"``, ``"sum"``, ``"none"``) over the rows that count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxaudio.dsp import check_float_audio, compute_dtype

REDUCTIONS = ("mean", "sum", "none")


def check_pair(prediction, target, fname: str) -> tuple[jax.Array, jax.Array]:
    """Both signals as arrays of one compute dtype (float32, float64 for float64 input).

    Audio is ``[B, N]`` (mono) or ``[B, C, N]`` (``C`` channels), of equal shapes.
    """
    p, t = jnp.asarray(prediction), jnp.asarray(target)
    check_float_audio(p, f"{fname}: prediction")
    check_float_audio(t, f"{fname}: target")
    if p.shape != t.shape:
        raise ValueError(f"{fname}: prediction {p.shape} and target {t.shape} must have equal "
                         f"shapes")
    if p.ndim not in (2, 3) or 0 in p.shape:
        raise ValueError(f"{fname}: expected audio [B, N] or [B, C, N] with no empty axis, got "
                         f"shape {p.shape}")
    dt = jnp.promote_types(compute_dtype(p), compute_dtype(t))
    return p.astype(dt), t.astype(dt)


def check_reduction(reduction: str, fname: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fname}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def keep_rows(valid, batch: int, fname: str) -> jax.Array | None:
    """``valid`` (``[B]`` bool, or 0/1 numbers) as a ``[B]`` bool mask; None stays None."""
    if valid is None:
        return None
    v = jnp.asarray(valid)
    if v.shape != (batch,):
        raise ValueError(f"{fname}: valid must be a [B] = [{batch}] mask, got shape {v.shape}")
    return v if v.dtype == jnp.bool_ else v > 0


def zero_rows(x: jax.Array, keep: jax.Array | None) -> jax.Array:
    """``x [B, ...]`` with the rows not kept set to 0 (``where``, so no NaN of theirs leaks
    into values or gradients)."""
    if keep is None:
        return x
    return jnp.where(keep.reshape((-1,) + (1,) * (x.ndim - 1)), x, jnp.zeros((), x.dtype))


def reduce(x: jax.Array, reduction: str, keep: jax.Array | None) -> jax.Array:
    """auraloss's ``apply_reduction`` over the kept rows of ``x [B, ...]``.

    ``"mean"``: the mean over every element of the kept rows (as if the others were absent);
    ``"sum"``: their sum; ``"none"``: ``x`` itself, with the rows not kept set to 0.
    """
    x = zero_rows(x, keep)
    if reduction == "none":
        return x
    if reduction == "sum":
        return jnp.sum(x)
    if keep is None:
        return jnp.mean(x)
    count = jnp.maximum(jnp.sum(keep), 1).astype(x.dtype) * (x.size // x.shape[0])
    return jnp.sum(x) / count


def is_off(weight) -> bool:
    """Whether a term's weight is known to be 0 at trace time (auraloss skips such a term)."""
    if isinstance(weight, jax.core.Tracer):
        return False
    try:
        return float(weight) == 0.0
    except (TypeError, jax.errors.ConcretizationTypeError):
        return False
