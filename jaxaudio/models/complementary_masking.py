"""The original's fixed complementary masks: make input and target latents non-overlapping.

``apply_complementary_mask(encoded_input, encoded_target, mask_type)`` on ``[B, D, T]`` latents:

- ``temporal``: alternating blocks of ``temporal_segment_frames`` frames, input on the even
  blocks and target on the odd ones (``1 - mask``), with the original's short linear fades
  (``min(10, segment // 15)`` frames) applied at every block boundary;
- ``frequency``: input keeps the lowest ``int(D * freq_split_ratio)`` channels and attenuates
  the rest to 0.2; target the other way round;
- ``spectral``: a random channel permutation (from the explicit ``key``) gives the input
  ``int(D * channel_keep_ratio)`` channels and the target all others;
- ``energy``: per sample, input keeps the frames whose energy (sum over D of x^2) exceeds its
  ``energy_threshold`` quantile (linear interpolation, as ``torch.quantile``), target those at or
  below its own quantile;
- ``hybrid``: the temporal blocks without fades times a frequency split attenuating to 0.3;
- ``none``: both returned unchanged (the trainer's default).

Fixed masks are NumPy constants built once per shape; everything works under ``jax.jit`` with
``mask_type`` and the sizes static.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

MASK_TYPES = ("none", "temporal", "frequency", "spectral", "energy", "hybrid")

_DESCRIPTIONS = {
    "temporal": "Alternating time blocks (input on blocks 1, 3, 5, ... | target on blocks 2, 4, 6, ...)",
    "frequency": "Channel band split (input: low channels, bass/rhythm | target: high channels, melody)",
    "spectral": "Random channel split (input: a random share of channels | target: the rest)",
    "energy": "Energy split (input: loud frames, transients | target: quiet frames, sustain)",
    "hybrid": "Time blocks x channel split (input: low channels on odd blocks | target: high on even)",
    "none": "No masking (full overlap, plain blending)",
}


def get_mask_description(mask_type: str) -> str:
    """A one-line human-readable description of a masking strategy."""
    return _DESCRIPTIONS.get(mask_type, "Unknown masking strategy")


@functools.lru_cache(maxsize=64)
def temporal_mask(num_frames: int, segment_frames: int, fade: bool = True) -> np.ndarray:
    """The input's temporal mask ``[T]`` (float32); the target's is ``1 - mask``."""
    if segment_frames <= 0:
        raise ValueError(f"temporal_segment_frames must be positive, got {segment_frames}")
    t = num_frames
    mask = np.zeros(t, np.float32)
    for start in range(0, t, 2 * segment_frames):
        mask[start:min(start + segment_frames, t)] = 1.0
    n_fade = min(10, segment_frames // 15) if fade else 0
    # The original fades every block boundary in turn, multiplying in place, so a frame close to
    # two boundaries is scaled twice; reproduced as written.
    for boundary in range(segment_frames, t, segment_frames) if n_fade > 0 else ():
        start = max(0, boundary - n_fade)
        for j in range(n_fade):
            if start + j < t:
                mask[start + j] *= np.float32((n_fade - j) / n_fade)
        for j in range(n_fade):
            if boundary + j < t:
                mask[boundary + j] *= np.float32(j / n_fade)
    mask.setflags(write=False)
    return mask


@functools.lru_cache(maxsize=64)
def frequency_masks(num_channels: int, split_ratio: float, attenuation: float) -> tuple[np.ndarray, np.ndarray]:
    """Input and target channel masks ``[D]``: low channels for the input, high for the target."""
    split = int(num_channels * split_ratio)
    input_mask = np.ones(num_channels, np.float32)
    input_mask[split:] = attenuation
    target_mask = np.ones(num_channels, np.float32)
    target_mask[:split] = attenuation
    input_mask.setflags(write=False)
    target_mask.setflags(write=False)
    return input_mask, target_mask


def spectral_masks(key: jax.Array, num_channels: int, channel_keep_ratio: float) -> tuple[jax.Array, jax.Array]:
    """Complementary 0/1 channel masks ``[D]`` from a random permutation drawn with ``key``."""
    split = int(num_channels * channel_keep_ratio)
    perm = jax.random.permutation(key, num_channels)
    input_mask = jnp.zeros(num_channels, jnp.float32).at[perm[:split]].set(1.0)
    target_mask = jnp.zeros(num_channels, jnp.float32).at[perm[split:]].set(1.0)
    return input_mask, target_mask


def _energy_masks(encoded_input, encoded_target, energy_threshold):
    input_energy = jnp.sum(jnp.square(encoded_input), axis=1, keepdims=True)  # [B, 1, T]
    target_energy = jnp.sum(jnp.square(encoded_target), axis=1, keepdims=True)
    input_thr = jnp.quantile(input_energy, energy_threshold, axis=-1, keepdims=True)
    target_thr = jnp.quantile(target_energy, energy_threshold, axis=-1, keepdims=True)
    input_mask = jax.lax.stop_gradient((input_energy > input_thr).astype(encoded_input.dtype))
    target_mask = jax.lax.stop_gradient((target_energy <= target_thr).astype(encoded_target.dtype))
    return input_mask, target_mask


def apply_complementary_mask(
    encoded_input: jax.Array,
    encoded_target: jax.Array,
    mask_type: str = "none",
    temporal_segment_frames: int = 150,
    freq_split_ratio: float = 0.3,
    channel_keep_ratio: float = 0.5,
    energy_threshold: float = 0.7,
    *,
    key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``(masked_input, masked_target)``, both ``[B, D, T]``; ``key`` is needed for ``spectral``."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"unknown mask_type {mask_type!r}; expected one of {', '.join(MASK_TYPES)}")
    if encoded_input.shape != encoded_target.shape or encoded_input.ndim != 3:
        raise ValueError(
            f"encoded_input and encoded_target must both be [B, D, T]; got {tuple(encoded_input.shape)} "
            f"and {tuple(encoded_target.shape)}"
        )
    _, d, t = encoded_input.shape
    if mask_type == "none":
        return encoded_input, encoded_target
    if mask_type == "temporal":
        mask = jnp.asarray(temporal_mask(t, int(temporal_segment_frames)))
        return encoded_input * mask, encoded_target * (1.0 - mask)
    if mask_type == "frequency":
        m_in, m_tg = frequency_masks(d, float(freq_split_ratio), 0.2)
        return encoded_input * jnp.asarray(m_in)[:, None], encoded_target * jnp.asarray(m_tg)[:, None]
    if mask_type == "spectral":
        if key is None:
            raise ValueError("mask_type='spectral' draws a random channel split: pass key=jax.random.key(...)")
        m_in, m_tg = spectral_masks(key, d, float(channel_keep_ratio))
        return encoded_input * m_in[:, None], encoded_target * m_tg[:, None]
    if mask_type == "energy":
        m_in, m_tg = _energy_masks(encoded_input, encoded_target, energy_threshold)
        return encoded_input * m_in, encoded_target * m_tg
    # hybrid
    mask = jnp.asarray(temporal_mask(t, int(temporal_segment_frames), fade=False))
    f_in, f_tg = frequency_masks(d, float(freq_split_ratio), 0.3)
    masked_input = encoded_input * mask * jnp.asarray(f_in)[:, None]
    masked_target = encoded_target * (1.0 - mask) * jnp.asarray(f_tg)[:, None]
    return masked_input, masked_target
