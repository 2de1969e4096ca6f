"""The measurements the papers use, shared by every part of the book.

- :mod:`~normbook.analysis.correlation`: correlation between channels, mean |off-diagonal| (IC-EQ8,
  DBN-EQ3);
- :mod:`~normbook.analysis.information`: entropy, binary entropy, mutual information (plug-in,
  binned, KSG k-NN) (IC-TH1);
- :mod:`~normbook.analysis.fisher`: spectrum and condition number of a layer's relative Fisher
  information matrix (DBN-F3);
- :mod:`~normbook.analysis.activity`: non-zero ratio and mean activation (NP-T1), residual-block Δ
  (NP-F2), filter coherence (NP-F3);
- :mod:`~normbook.analysis.memory`: bytes saved for backward by a forward pass (MN-T1).

The book's chapter "Measurements used across parts" (``book/foundations/measurements.ipynb``)
defines each and checks it on a case with a known answer.
"""

from normbook.analysis.activity import (
    activation_stats,
    filter_coherence,
    filter_gram,
    nonzero_ratio,
    residual_delta,
    residual_deltas,
    welch_bound,
)
from normbook.analysis.correlation import (
    channel_samples,
    constant_channels,
    correlation_matrix,
    mean_abs_correlation,
    mean_abs_off_diagonal,
)
from normbook.analysis.fisher import (
    FisherSpectrum,
    fisher_matrix,
    fisher_spectrum,
    last_linear,
    linear_per_sample_gradients,
    per_sample_gradients,
    relative_fisher,
)
from normbook.analysis.information import (
    bin_codes,
    binary_entropy,
    binned_mutual_information,
    discrete_entropy,
    discrete_mutual_information,
    gaussian_mutual_information,
    gaussian_pair,
    histogram_bins,
    ksg_mutual_information,
    plugin_mi_bias,
)
from normbook.analysis.memory import ActivationMemory, SavedTensorCounter, activation_memory

__all__ = [
    "ActivationMemory",
    "FisherSpectrum",
    "SavedTensorCounter",
    "activation_memory",
    "activation_stats",
    "bin_codes",
    "binary_entropy",
    "binned_mutual_information",
    "channel_samples",
    "constant_channels",
    "correlation_matrix",
    "discrete_entropy",
    "discrete_mutual_information",
    "filter_coherence",
    "filter_gram",
    "fisher_matrix",
    "fisher_spectrum",
    "gaussian_mutual_information",
    "gaussian_pair",
    "histogram_bins",
    "ksg_mutual_information",
    "last_linear",
    "linear_per_sample_gradients",
    "mean_abs_correlation",
    "mean_abs_off_diagonal",
    "nonzero_ratio",
    "per_sample_gradients",
    "plugin_mi_bias",
    "relative_fisher",
    "residual_delta",
    "residual_deltas",
    "welch_bound",
]
