"""Musical-quality evaluation of generated blends (NumPy/SciPy only).

``metrics``: the signal measures; ``quality``: the named metrics of one clip, their medians and
a table; ``python -m jaxaudio.evaluate`` runs a checkpoint on unseen pairs and reports them.
"""

from jaxaudio.evaluation.metrics import (chroma_similarity, comb_contrast_db, distance_ratio,
                                         high_frequency_share, log_spectral_distance,
                                         onset_correlation)
from jaxaudio.evaluation.quality import (aggregate, clip_metrics, evaluate_batch,
                                         folder_is_continuation, format_table)

__all__ = ["aggregate", "chroma_similarity", "clip_metrics", "comb_contrast_db",
           "distance_ratio", "evaluate_batch", "folder_is_continuation", "format_table",
           "high_frequency_share",
           "log_spectral_distance", "onset_correlation"]
