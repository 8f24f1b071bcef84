"""jaxaudio: creative audio mixing in JAX/Flax NNX over frozen codec latents.

A reimplementation of the PowerMuse (Jingle_D) PyTorch system: a cascade transformer that
blends the rhythm of one clip with the harmony and timbre of another, trained through a
frozen codec with audio losses, creative agents and a latent GAN.
"""

__version__ = "0.1.0"
