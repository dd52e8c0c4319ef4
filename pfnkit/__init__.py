"""pfnkit: amortized Bayesian inference with prior-fitted transformers."""

from __future__ import annotations

from typing import Any

from pfnkit._version import __version__
from pfnkit.checkpoint import load_checkpoint, save_checkpoint
from pfnkit.data import Batch, Prior
from pfnkit.distributions import BarDistribution, borders_from_samples
from pfnkit.estimators import PFNClassifier, PFNRegressor, PosteriorEstimator
from pfnkit.models import PFN, DistributionTransformer, DTConfig, PFNConfig

__all__ = [
    "PFN",
    "BarDistribution",
    "Batch",
    "DTConfig",
    "DistributionTransformer",
    "PFNClassifier",
    "PFNConfig",
    "PFNRegressor",
    "PosteriorEstimator",
    "Prior",
    "TrainConfig",
    "__version__",
    "borders_from_samples",
    "load_checkpoint",
    "pretrain",
    "save_checkpoint",
]

_TRAINING = ("TrainConfig", "pretrain")


def __getattr__(name: str) -> Any:
    """Import the training stack (Lightning) only when it is asked for, not for inference."""
    if name in _TRAINING:
        from pfnkit import training

        return getattr(training, name)
    raise AttributeError(f"module 'pfnkit' has no attribute {name!r}")
