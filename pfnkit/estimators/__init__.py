"""scikit-learn estimators on pretrained checkpoints: regressor, classifier, DT posterior."""

from pfnkit.estimators._base import CheckpointEstimator, DataMapping
from pfnkit.estimators.classifier import PFNClassifier
from pfnkit.estimators.posterior import PosteriorEstimator
from pfnkit.estimators.regressor import PFNRegressor

__all__ = [
    "CheckpointEstimator",
    "DataMapping",
    "PFNClassifier",
    "PFNRegressor",
    "PosteriorEstimator",
]
