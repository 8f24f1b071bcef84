"""Long inputs as overlapping segments of latent frames, joined by crossfades.

The model's sinusoidal position table has 2000 rows (the original's ``max_len``), so a
sequence of ``T > L`` latent frames is cut into ``K`` segments of exactly ``L`` frames
(``L`` <= the table), spread evenly so that neighbours overlap by at least ``O`` frames.
Every segment has the same shape, so the jitted model compiles once. Each segment is run
and decoded on its own; the decoded segments are joined with a raised-cosine crossfade
(``cos^2`` out, ``sin^2`` in: the two weights sum to exactly 1) over the middle half of
each overlap::

    frames  0                                                        T
    seg 0   [=================\\\\\\.....]
    seg 1               [.....//////==================\\\\\\.....]
    seg 2                                   [.....//////===========]
                        |<- overlap ->|
                         margin  fade  margin     (fade = overlap // 2, centred)

The margins keep the crossfade away from the segment edges, where a segment's own model
context and the codec's decoder are least reliable (MDCT's first and last frames, EnCodec's
padding). A constant-gain rather than an equal-power fade is used because both segments
hold the model's output for the same frames, so they are strongly correlated: an
equal-power fade would raise the level by up to 3 dB in the middle of every join.

The same weights, at one sample per frame or ``hop`` samples per frame, join latents and
audio. With a frame-local model (the identity, say) and a codec that reconstructs exactly
inside a segment (MDCT away from its first and last frame), the joined result equals the
unsegmented one everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class SegmentPlan:
    """Where the segments of a ``T``-frame sequence start, and where neighbours crossfade.

    ``fades[k] = (a, b)``: frames ``[a, b)`` where segment ``k`` fades out and ``k + 1`` in.
    """

    num_frames: int
    length: int
    starts: tuple[int, ...]
    fades: tuple[tuple[int, int], ...]

    @property
    def num_segments(self) -> int:
        return len(self.starts)


def plan_segments(num_frames: int, max_frames: int, overlap: int) -> SegmentPlan:
    """Segments of ``max_frames`` frames covering ``num_frames``, neighbours overlapping by
    at least ``overlap`` frames; one segment of ``num_frames`` when it fits."""
    if num_frames < 1:
        raise ValueError(f"plan_segments: need at least one frame, got {num_frames}")
    if num_frames <= max_frames:
        return SegmentPlan(num_frames, num_frames, (0,), ())
    if not 4 <= overlap <= max_frames // 2:
        raise ValueError(f"--overlap_frames {overlap}: expected between 4 and half the segment "
                         f"length ({max_frames // 2} frames)")
    length = max_frames
    count = math.ceil((num_frames - overlap) / (length - overlap))
    starts = tuple(round(i * (num_frames - length) / (count - 1)) for i in range(count))
    fades = []
    for k in range(count - 1):
        lo, hi = starts[k + 1], starts[k] + length  # the overlap of k and k + 1
        width = (hi - lo) // 2
        if count > 2:
            # Never longer than the step, so the two fades of a middle segment cannot overlap
            # (with three or more segments the step exceeds a quarter of the length).
            width = min(width, starts[k + 1] - starts[k] - 2)
        a = (lo + hi - width) // 2
        fades.append((a, a + width))
    return SegmentPlan(num_frames, length, starts, tuple(fades))


def _ramp(width: int) -> np.ndarray:
    """``sin^2`` from 0 to 1 over ``width`` samples (sample centres), float32."""
    t = (np.arange(width, dtype=np.float64) + 0.5) / width
    return (np.sin(0.5 * np.pi * t) ** 2).astype(np.float32)


def segment_weights(plan: SegmentPlan, k: int, unit: int = 1) -> np.ndarray:
    """Weight ``[L * unit]`` of segment ``k`` (``unit`` samples per frame); sums to 1 over
    the segments at every sample of ``[0, T * unit)``."""
    n = plan.length * unit
    w = np.ones(n, np.float32)
    origin = plan.starts[k] * unit
    if k > 0:  # fade in
        a, b = (f * unit - origin for f in plan.fades[k - 1])
        w[:a] = 0.0
        w[a:b] *= _ramp(b - a)
    if k < plan.num_segments - 1:  # fade out
        a, b = (f * unit - origin for f in plan.fades[k])
        w[a:b] *= 1.0 - _ramp(b - a)
        w[b:] = 0.0
    return w


def join_segments(segments: Sequence[np.ndarray], plan: SegmentPlan, unit: int = 1) -> np.ndarray:
    """Crossfade ``K`` arrays ``[..., L * unit]`` into one ``[..., T * unit]``."""
    if len(segments) != plan.num_segments:
        raise ValueError(f"join_segments: {len(segments)} segments for a plan of "
                         f"{plan.num_segments}")
    if plan.num_segments == 1:
        return np.asarray(segments[0])
    n = plan.length * unit
    first = np.asarray(segments[0])
    out = np.zeros(first.shape[:-1] + (plan.num_frames * unit,), np.float32)
    for k, seg in enumerate(segments):
        seg = np.asarray(seg, np.float32)
        if seg.shape[-1] != n:
            raise ValueError(f"join_segments: segment {k} has {seg.shape[-1]} samples, "
                             f"expected {n} ({plan.length} frames x {unit})")
        lo = plan.starts[k] * unit
        out[..., lo:lo + n] += seg * segment_weights(plan, k, unit)
    return out


def join_regions(plan: SegmentPlan, unit: int = 1) -> list[tuple[int, int]]:
    """The crossfade regions ``[a, b)`` in samples (frames times ``unit``)."""
    return [(a * unit, b * unit) for a, b in plan.fades]
