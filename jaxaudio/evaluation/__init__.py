"""Musical-quality evaluation of generated blends (NumPy/SciPy only).

``metrics``: the signal measures; ``bands``: the band-wise ones (blend or crossover?);
``quality``: the named metrics of one clip, their medians and a table; ``report``: the HTML
report; ``python -m jaxaudio.evaluate`` runs a checkpoint on unseen pairs and reports them.
"""

from jaxaudio.evaluation.bands import BANDS, band_metrics
from jaxaudio.evaluation.metrics import (chroma_similarity, comb_contrast_db, distance_ratio,
                                         high_frequency_share, log_spectral_distance,
                                         onset_correlation)
from jaxaudio.evaluation.quality import (aggregate, clip_metrics, evaluate_batch,
                                         folder_is_continuation, format_table)

__all__ = ["BANDS", "aggregate", "band_metrics", "chroma_similarity", "clip_metrics",
           "comb_contrast_db", "distance_ratio", "evaluate_batch", "folder_is_continuation",
           "format_table", "high_frequency_share", "log_spectral_distance", "onset_correlation"]
