"""Exact inference oracles that PFN predictions are checked against."""

from pfnkit.reference.exact_gp import (
    KERNELS,
    GaussianPredictive,
    GPHyperparameters,
    exact_gp_predictive,
    exact_gp_predictive_batch,
    fit_ml2,
    log_marginal_likelihood,
)

__all__ = [
    "KERNELS",
    "GPHyperparameters",
    "GaussianPredictive",
    "exact_gp_predictive",
    "exact_gp_predictive_batch",
    "fit_ml2",
    "log_marginal_likelihood",
]
