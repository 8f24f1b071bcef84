r"""A weight-free, perfectly invertible codec: the MDCT with a sine window.

The modified discrete cosine transform with 50 % overlapping sine windows cancels its own
time-domain aliasing between neighbouring frames (TDAC), so analysis followed by
overlap-add synthesis returns the input exactly. With the orthonormal scaling used here the
whole transform is orthogonal: ``encode`` and ``decode`` are each other's inverse and
transpose, energy is preserved, and ``decode`` is differentiable with a well-conditioned
gradient. Latents are ``[B, D, T]`` with ``D = dim`` coefficients per frame and hop ``dim``.

Lengths and padding
-------------------
``encode`` takes ``[B, 1, N]`` and returns ``T = ceil(N / dim)`` frames: the input is
zero-padded at the end to ``T * dim`` samples. Frame ``t`` is centred on the block
``[t * dim, (t + 1) * dim)`` and spans ``dim / 2`` samples either side of it::

    samples   |  block 0  |  block 1  |  ...  | block T-1 |
    frame 0  [##=========\                                      (#: half-rectangular
    frame 1        /=========\                                   start window, no
    ...                        ...                               partner frame)
    frame T-1                          /=========##]

Interior frames are the standard sine-window MDCT of their ``2 * dim`` samples. The first and
the last frame have no neighbour beyond the signal's edge, so their outer half-window is
rectangular (one inside the signal, zero outside): the aliasing they would otherwise leave
there has nothing to cancel it, and with the rectangular edge there is none. Hence exactly
``T`` frames describe exactly ``T * dim`` samples. ``decode`` returns ``[B, 1, T * dim]``; for
``x`` of length ``N`` the first ``N`` samples of ``decode(encode(x))`` equal ``x`` (to
float32 round-off) and the rest are zeros.

The transform of each frame runs on ``jnp.fft`` (a ``2 * dim``-point complex FFT with pre-
and post-twiddles), never a dense matrix. Everything is pure and safe under ``jit``,
``grad`` and ``vmap``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


@functools.lru_cache(maxsize=None)
def sine_window(n: int) -> np.ndarray:
    """The ``2M``-point sine window ``sin(pi (n + 1/2) / 2M)`` (Princen-Bradley: w[n]^2 + w[n+M]^2 = 1)."""
    return np.sin(np.pi * (np.arange(n) + 0.5) / n).astype(np.float32)


@functools.lru_cache(maxsize=None)
def frame_windows(m: int, frames: int) -> np.ndarray:
    """Per-frame analysis/synthesis windows ``[T, 2M]``: sine, with rectangular outer edges.

    The first frame's rising half and the last frame's falling half reach past the signal by
    ``M / 2`` samples; there the window is 0 and inside it is 1 (see the module docstring).
    """
    w = np.tile(sine_window(2 * m), (frames, 1))
    h = m // 2
    edge = np.concatenate([np.zeros(h, np.float32), np.ones(m - h, np.float32)])
    w[0, :m] = edge
    w[-1, m:] = edge[::-1]
    return w


@functools.lru_cache(maxsize=None)
def _twiddles(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Pre-twiddle ``exp(-i pi n / 2M)`` (``[2M]``) and post-twiddle ``exp(-i pi n0 (k + 1/2) / M)`` (``[M]``)."""
    n = np.arange(2 * m)
    k = np.arange(m)
    n0 = 0.5 + m / 2.0
    pre = np.exp(-1j * np.pi * n / (2 * m)).astype(np.complex64)
    post = np.exp(-1j * np.pi * n0 * (k + 0.5) / m).astype(np.complex64)
    return pre, post


def mdct_frames(frames: jax.Array) -> jax.Array:
    """Orthonormal MDCT of windowed frames ``[..., 2M] -> [..., M]``.

    ``X[k] = sqrt(2/M) sum_n z[n] cos(pi/M (n + 1/2 + M/2)(k + 1/2))``.
    """
    m = frames.shape[-1] // 2
    pre, post = _twiddles(m)
    spec = jnp.fft.fft(frames.astype(jnp.complex64) * pre, axis=-1)[..., :m]
    return (jnp.real(spec * post) * math.sqrt(2.0 / m)).astype(frames.dtype)


def imdct_frames(coeffs: jax.Array) -> jax.Array:
    """Orthonormal inverse MDCT ``[..., M] -> [..., 2M]`` (the transpose of :func:`mdct_frames`)."""
    m = coeffs.shape[-1]
    pre, post = _twiddles(m)
    padded = jnp.pad(coeffs.astype(jnp.complex64) * jnp.conj(post), [(0, 0)] * (coeffs.ndim - 1) + [(0, m)])
    # sum_k c_k e^{+2 pi i n k / 2M} = 2M * ifft
    time = jnp.fft.ifft(padded, axis=-1) * (2 * m)
    return (jnp.real(time * jnp.conj(pre)) * math.sqrt(2.0 / m)).astype(coeffs.dtype)


def mdct_encode(audio: jax.Array, dim: int) -> jax.Array:
    """``[B, 1, N]`` (or ``[B, N]``) audio to ``[B, dim, ceil(N / dim)]`` MDCT coefficients."""
    x = audio[:, 0, :] if audio.ndim == 3 else audio
    n = x.shape[-1]
    if n < 1:
        raise ValueError(f"MDCT encode needs at least one sample, got audio of shape {audio.shape}")
    m, h = dim, dim // 2
    t = -(-n // m)
    x = jnp.pad(x, ((0, 0), (h, t * m - n + (m - h))))
    blocks = x.reshape(x.shape[0], t + 1, m)
    frames = jnp.concatenate([blocks[:, :-1], blocks[:, 1:]], axis=-1)  # [B, T, 2M]
    coeffs = mdct_frames(frames * frame_windows(m, t))
    return jnp.swapaxes(coeffs, 1, 2)


def mdct_decode(latents: jax.Array) -> jax.Array:
    """``[B, dim, T]`` MDCT coefficients to ``[B, 1, T * dim]`` audio (windowed overlap-add)."""
    m, t = latents.shape[1], latents.shape[2]
    h = m // 2
    frames = imdct_frames(jnp.swapaxes(latents, 1, 2)) * frame_windows(m, t)  # [B, T, 2M]
    zero = jnp.zeros_like(frames[:, :1, :m])
    blocks = jnp.concatenate([frames[:, :, :m], zero], axis=1) + jnp.concatenate([zero, frames[:, :, m:]], axis=1)
    y = blocks.reshape(blocks.shape[0], (t + 1) * m)[:, h : h + t * m]
    return y[:, None, :]


class MDCTCodec(nnx.Module):
    """Weight-free sine-window MDCT codec: ``[B, 1, N] -> [B, dim, ceil(N / dim)] -> [B, 1, T * dim]``.

    ``dim`` is both the latent dimension and the hop (default 128: 187.5 frames a second at
    24 kHz). It holds no variables, so ``nnx.split`` gives an empty state and it never appears
    in gradients or optimizer state. See the module docstring for lengths and padding.
    """

    def __init__(self, dim: int = 128, sample_rate: int = 24000):
        if dim < 2 or dim % 2:
            raise ValueError(f"MDCTCodec: dim must be an even number >= 2, got {dim}")
        self.dim = int(dim)
        self.hop_length = int(dim)
        self.sample_rate = int(sample_rate)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def encode(self, audio: jax.Array) -> jax.Array:
        """``[B, 1, N]`` audio to ``[B, dim, ceil(N / dim)]`` latents (zero-padded at the end)."""
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(f"MDCTCodec.encode expects mono audio [B, 1, N], got shape {audio.shape}")
        return mdct_encode(audio, self.dim)

    def decode(self, latents: jax.Array, *, dtype=None) -> jax.Array:
        """``[B, dim, T]`` latents to ``[B, 1, T * dim]`` audio. ``dtype`` is accepted for the
        codec interface and ignored: the inverse MDCT is an FFT and stays in float32."""
        if latents.ndim != 3 or latents.shape[1] != self.dim:
            raise ValueError(f"MDCTCodec.decode expects latents [B, {self.dim}, T], got shape {latents.shape}")
        return mdct_decode(latents)

    def identity(self) -> str:
        return f"mdct-sine-v1:dim={self.dim}:sr={self.sample_rate}"
