"""pfnkit: amortized Bayesian inference with prior-fitted transformers."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from pfnkit.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from pfnkit.classifier import PFNClassifier  # noqa: E402
from pfnkit.data import Batch, Prior  # noqa: E402
from pfnkit.distributions import BarDistribution, borders_from_samples  # noqa: E402
from pfnkit.estimators import PFNRegressor  # noqa: E402
from pfnkit.models import PFN, DistributionTransformer, DTConfig, PFNConfig  # noqa: E402
from pfnkit.posterior import PosteriorEstimator  # noqa: E402

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
