"""pfnkit: amortized Bayesian inference with prior-fitted transformers."""

__version__ = "0.1.0"

from pfnkit.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from pfnkit.data import Batch, Prior  # noqa: E402
from pfnkit.distributions import BarDistribution, borders_from_samples  # noqa: E402
from pfnkit.estimators import PFNRegressor  # noqa: E402
from pfnkit.models import PFN, PFNConfig  # noqa: E402
from pfnkit.training import TrainConfig, pretrain  # noqa: E402

__all__ = [
    "PFN",
    "BarDistribution",
    "Batch",
    "PFNConfig",
    "PFNRegressor",
    "Prior",
    "TrainConfig",
    "__version__",
    "borders_from_samples",
    "load_checkpoint",
    "pretrain",
    "save_checkpoint",
]
