"""Bayesian optimisation with PFN surrogates: acquisitions, surrogate, ask/tell and minimize."""

from pfnkit.bo.acqf_optim import AcquisitionOptimizerConfig, maximize_acquisition
from pfnkit.bo.acquisitions import (
    ACQUISITIONS,
    expected_improvement,
    log_expected_improvement,
    log_probability_of_improvement,
    lower_confidence_bound,
    probability_of_improvement,
    upper_confidence_bound,
)
from pfnkit.bo.ask_tell import AskTellOptimizer, OptimizeResult, default_n_init
from pfnkit.bo.box import Box
from pfnkit.bo.freeze_thaw import FreezeThaw
from pfnkit.bo.freeze_thaw_pfn import PFNFreezeThawSurrogate
from pfnkit.bo.minimize import EvaluationError, minimize
from pfnkit.bo.surrogate import DEFAULT_CHECKPOINT, PFNSurrogate
from pfnkit.bo.trust_region import TrustRegionConfig

__all__ = [
    "ACQUISITIONS",
    "DEFAULT_CHECKPOINT",
    "AcquisitionOptimizerConfig",
    "AskTellOptimizer",
    "Box",
    "EvaluationError",
    "FreezeThaw",
    "OptimizeResult",
    "PFNFreezeThawSurrogate",
    "PFNSurrogate",
    "TrustRegionConfig",
    "default_n_init",
    "expected_improvement",
    "log_expected_improvement",
    "log_probability_of_improvement",
    "lower_confidence_bound",
    "maximize_acquisition",
    "minimize",
    "probability_of_improvement",
    "upper_confidence_bound",
]
