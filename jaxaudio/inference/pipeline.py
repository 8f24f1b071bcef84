"""Audio in, audio out: encode, run the model in eval mode, decode, segment by segment.

:class:`Generator` holds one model and its codec split into graph and state, and two jitted
functions: ``encode`` (the whole clip at once, so the codec sees its full context) and ``run``
(model forward plus decode of one segment). All segments of a long input have the same number
of frames, so ``run`` compiles once per segment length; clips that fit in one segment compile
once per length (a folder of equally long clips compiles once). The graph definitions are
static arguments of module-level jitted functions, so generators of the same architecture
share compiled code.

Shapes: ``N`` samples, ``D`` latent dimension, ``T`` frames, ``L`` frames per segment.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.inference.loading import GenerateError
from jaxaudio.inference.segments import SegmentPlan, join_segments, plan_segments

# The original's position table (max_len 2000); also the segment length of models that have
# no table (the single stage), which keeps attention memory bounded and stays near the clip
# lengths the model was trained on.
DEFAULT_MAX_FRAMES = 2000
MIN_FRAMES = 2  # the masking agent's temporal-diversity term needs two frames


def position_limit(model: nnx.Module) -> int | None:
    """The shortest position table (``max_len``) among the model's modules; None if none."""
    limits = [node.max_len for _, node in nnx.iter_graph(model)
              if isinstance(node, nnx.Module) and isinstance(getattr(node, "max_len", None), int)]
    return min(limits) if limits else None


@functools.partial(jax.jit, static_argnums=(0,))
def _encode(codec_graphdef, codec_state, audio):
    return nnx.merge(codec_graphdef, codec_state).encode(audio)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run(graphdef, codec_graphdef, state, codec_state, z_in, z_tgt):
    out = nnx.merge(graphdef, state)(z_in, z_tgt, train=False).output
    return out, nnx.merge(codec_graphdef, codec_state).decode(out.astype(jnp.float32))


@dataclass
class Generation:
    """One generated clip, before post-processing (NumPy, float32)."""

    input_audio: np.ndarray  # [N] mono at the codec's rate
    target_audio: np.ndarray | None  # [N], fitted to the input's length
    output_audio: np.ndarray  # [N] the decoded model output
    input_latent: np.ndarray  # [D, T]
    target_latent: np.ndarray | None  # [D, T]
    output_latent: np.ndarray  # [D, T], segments joined with the same crossfades
    plan: SegmentPlan


class Generator:
    """Eval-mode generation with one model and codec.

    Args:
        model: a ``SimpleTransformer`` (or any module called as ``model(x, y, train=False)``
            returning an object with ``.output [B, D, T]``).
        codec: the codec whose latents the model works on.
        cascade: whether the model takes the target's latents (the 2-stage cascade).
        segment_frames: frames per segment for long inputs; default and maximum: the model's
            position table (2000 frames), or 2000 for a model without one.
        overlap_frames: least overlap of neighbouring segments; default a quarter segment.
    """

    def __init__(self, model: nnx.Module, codec, *, cascade: bool,
                 segment_frames: int | None = None, overlap_frames: int | None = None):
        limit = position_limit(model)
        self.max_frames = limit or DEFAULT_MAX_FRAMES
        length = self.max_frames if segment_frames is None else int(segment_frames)
        if length > self.max_frames and limit is not None:
            raise GenerateError(f"--segment_frames {length}: the model's position table has "
                                f"{limit} rows; expected at most {limit}")
        if length < 8:
            raise GenerateError(f"--segment_frames {length}: expected at least 8 frames")
        overlap = max(4, length // 4) if overlap_frames is None else int(overlap_frames)
        if not 4 <= overlap <= length // 2:
            raise GenerateError(f"--overlap_frames {overlap}: expected between 4 and half the "
                                f"segment length ({length // 2} frames)")
        self.segment_frames, self.overlap_frames = length, overlap
        self.codec = codec
        self.cascade = cascade
        self.sample_rate = int(codec.sample_rate)
        self._graphdef, self._state = nnx.split(model)
        self._codec_graphdef, self._codec_state = nnx.split(codec)

    def seconds(self, frames: int) -> float:
        return frames / float(self.codec.frame_rate)

    def encode(self, audio: np.ndarray) -> jax.Array:
        """Mono ``[N]`` to latents ``[1, D, T]``."""
        return _encode(self._codec_graphdef, self._codec_state,
                       jnp.asarray(audio, jnp.float32)[None, None, :])

    def run_segment(self, z_in: jax.Array, z_tgt: jax.Array | None
                    ) -> tuple[jax.Array, jax.Array]:
        """Model output ``[1, D, L]`` and its decoded audio ``[1, 1, L * hop]`` for one segment
        (``z_tgt`` is ignored by a single-stage model)."""
        return _run(self._graphdef, self._codec_graphdef, self._state, self._codec_state, z_in,
                    z_tgt if self.cascade else None)

    def transform(self, z_in: jax.Array, z_tgt: jax.Array | None
                  ) -> tuple[np.ndarray, np.ndarray, SegmentPlan]:
        """Latents ``[1, D, T]`` to ``(output latents [D, T], decoded audio [T * hop], plan)``."""
        t = int(z_in.shape[-1])
        plan = plan_segments(t, self.segment_frames, self.overlap_frames)
        outs = []
        for start in plan.starts:  # dispatched without waiting; fetched together below
            seg = slice(start, start + plan.length)
            tgt = z_tgt[:, :, seg] if self.cascade else None
            outs.append(self.run_segment(z_in[:, :, seg], tgt))
        outs = jax.device_get(outs)
        latents = [np.asarray(o[0][0], np.float32) for o in outs]
        audio = [np.asarray(o[1][0, 0], np.float32) for o in outs]
        hop, rest = divmod(audio[0].shape[-1], plan.length)
        if rest:
            raise ValueError(f"the codec decoded {audio[0].shape[-1]} samples from "
                             f"{plan.length} frames; expected a whole number per frame")
        return join_segments(latents, plan, 1), join_segments(audio, plan, hop), plan

    def generate(self, input_audio: np.ndarray, target_audio: np.ndarray | None = None
                 ) -> Generation:
        """Mono ``[N]`` input (and target ``[N]``, required by the cascade) at the codec's rate."""
        input_audio = np.asarray(input_audio, np.float32)
        n = input_audio.shape[0]
        if self.cascade and target_audio is None:
            raise GenerateError("the checkpoint is a 2-stage cascade, which mixes an input with "
                                "a target: --target_audio is required")
        if target_audio is not None and target_audio.shape[0] != n:
            raise ValueError(f"target has {target_audio.shape[0]} samples, input {n}: fit it "
                             f"first (postprocess.fit_target)")
        z_in = self.encode(input_audio)
        frames = int(z_in.shape[-1])
        if frames < MIN_FRAMES:
            raise GenerateError(f"the input is {n} samples long ({frames} codec frame); "
                                f"expected at least {MIN_FRAMES} frames "
                                f"({self.seconds(MIN_FRAMES):.3f} s)")
        z_tgt = None if target_audio is None else self.encode(target_audio)
        out_latent, out_audio, plan = self.transform(z_in, z_tgt)
        if out_audio.shape[0] < n:
            raise ValueError(f"the codec decoded {out_audio.shape[0]} samples from {frames} "
                             f"frames; expected at least {n}")
        return Generation(
            input_audio=input_audio,
            target_audio=None if target_audio is None else np.asarray(target_audio, np.float32),
            output_audio=out_audio[:n],
            input_latent=np.asarray(jax.device_get(z_in[0]), np.float32),
            target_latent=None if z_tgt is None else np.asarray(jax.device_get(z_tgt[0]),
                                                                np.float32),
            output_latent=out_latent,
            plan=plan,
        )
