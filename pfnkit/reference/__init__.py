"""Exact inference oracles that PFN predictions are checked against."""

from pfnkit.reference.analytic import (
    conjugate_gmm_posterior,
    gmm_from_covariances,
    gmm_from_scale_tril,
)
from pfnkit.reference.exact_gp import (
    KERNELS,
    GaussianPredictive,
    GPHyperparameters,
    exact_gp_predictive,
    exact_gp_predictive_batch,
    fit_ml2,
    log_marginal_likelihood,
    log_marginal_likelihood_fn,
)
from pfnkit.reference.gp_hyperprior import GPHyperprior, ScalarHyperprior
from pfnkit.reference.gp_nuts import (
    GaussianMixturePredictive,
    GPHyperPosterior,
    gp_hyperparameter_posterior,
)
from pfnkit.reference.mcmc import NUTSConfig, NUTSResult, mc_predictive_log_prob, run_nuts
from pfnkit.reference.nuts_classifier import (
    NUTSClassPredictive,
    class_probabilities,
    nuts_class_predictive,
)

__all__ = [
    "KERNELS",
    "GPHyperPosterior",
    "GPHyperparameters",
    "GPHyperprior",
    "GaussianMixturePredictive",
    "GaussianPredictive",
    "NUTSClassPredictive",
    "NUTSConfig",
    "NUTSResult",
    "ScalarHyperprior",
    "class_probabilities",
    "conjugate_gmm_posterior",
    "exact_gp_predictive",
    "exact_gp_predictive_batch",
    "fit_ml2",
    "gp_hyperparameter_posterior",
    "gmm_from_covariances",
    "gmm_from_scale_tril",
    "log_marginal_likelihood",
    "log_marginal_likelihood_fn",
    "mc_predictive_log_prob",
    "nuts_class_predictive",
    "run_nuts",
]
