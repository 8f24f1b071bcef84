"""Generation with a trained model (``python -m jaxaudio.generate``).

- :mod:`~jaxaudio.inference.loading`: model and codec from a jaxaudio checkpoint or the
  original's ``best_model.pt``;
- :mod:`~jaxaudio.inference.pipeline`: :class:`Generator`, jitted encode / model / decode;
- :mod:`~jaxaudio.inference.segments`: long inputs in overlapping segments, crossfaded;
- :mod:`~jaxaudio.inference.postprocess`: target fitting, level matching, notch filter, limiter;
- :mod:`~jaxaudio.inference.outputs`, :mod:`~jaxaudio.inference.modes`: files, metrics, the
  single-pair and batch modes.
"""

from jaxaudio.inference.loading import GenerateError, LoadedModel, load_for_inference
from jaxaudio.inference.pipeline import Generation, Generator
from jaxaudio.inference.postprocess import fit_target, postprocess
from jaxaudio.inference.segments import SegmentPlan, join_segments, plan_segments

__all__ = ["GenerateError", "Generation", "Generator", "LoadedModel", "SegmentPlan",
           "fit_target", "join_segments", "load_for_inference", "plan_segments", "postprocess"]
