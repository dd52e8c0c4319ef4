"""scikit-learn regressor serving a pretrained PFN checkpoint: fit encodes, predict decodes."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.utils.validation import validate_data

from pfnkit.distributions import BarDistribution
from pfnkit.estimators._base import DTYPES, CheckpointEstimator, DataMapping

__all__ = ["DataMapping", "PFNRegressor"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class PFNRegressor(RegressorMixin, CheckpointEstimator):
    """Bayesian regression in one forward pass with a pretrained PFN.

    `fit` validates the data, maps it into the checkpoint's prior domain (as its card
    declares) and encodes the context once; every prediction reuses the cached keys and
    values and runs query points in chunks.

    Args:
        checkpoint: short name (e.g. "gp-rbf") or path to a checkpoint file.
        device: torch device for the model.
        dtype: "float64" (default: NumPy's precision, so predictions do not depend on how
            the query rows are batched) or "float32" (about twice as fast on a CPU).
        query_chunk_size: query points per forward pass in `predict*`. A chunk's
            activations grow linearly in it; lower it if `predict` runs out of memory.

    Memory grows linearly in the context size and the number of queries: attention runs
    through SDPA's fused kernels, which never form an (N + M)² score matrix. An allocation
    failure raises a `MemoryError` that names the knob to turn.

    Attributes:
        checkpoint_: the loaded `Checkpoint` (model and card).
        mapping_: the fitted `DataMapping`.
        cache_: per-layer context keys and values.
    """

    def __init__(
        self,
        checkpoint: str = "gp-rbf",
        device: str = "cpu",
        dtype: str = "float64",
        query_chunk_size: int = 4096,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = dtype
        self.query_chunk_size = query_chunk_size

    _head = "regression"

    # ------------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray) -> PFNRegressor:
        """Validate (X, y), map it into the prior's domain and encode it as the context."""
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        self._load_checkpoint()
        self._check_feature_count(X)
        self.mapping_ = DataMapping.from_context(X, y, self.checkpoint_.data_mapping)
        self._warn_if_context_exceeds_training(X.shape[0])
        y_model = self._clip_context_targets(self.mapping_.map_y(y))
        y_BN = torch.as_tensor(y_model, dtype=DTYPES[self.dtype], device=self.device)[None]
        self.cache_ = self._encode_context(X, y_BN)
        return self

    def _clip_context_targets(self, y_model: np.ndarray) -> np.ndarray:
        borders = self.checkpoint_.model.borders.cpu().numpy()
        lo, hi = float(borders[0]), float(borders[-1])
        outside = (y_model < lo) | (y_model > hi)
        if outside.any():
            warnings.warn(
                f"{int(outside.sum())} context target(s) lie outside [{lo:.3g}, {hi:.3g}], the "
                f"range of targets the prior of checkpoint {self.checkpoint_.name!r} produced (in "
                "its units, after the card's data mapping); they are clipped to that range for "
                "encoding and predictions near them are unreliable",
                UserWarning,
                stacklevel=3,
            )
        return np.clip(y_model, lo, hi)

    def _decode_bars(self, X: np.ndarray, summary: Callable[[BarDistribution], _T]) -> _T:
        """`summary` of the predictive distribution at X, in the user's units."""

        def in_user_units(dist: BarDistribution) -> _T:
            return summary(dist[0].affine(self.mapping_.y_loc, self.mapping_.y_scale))

        return self._decode(X, in_user_units)

    def predict_distribution(self, X: np.ndarray) -> BarDistribution:
        """Posterior predictive of y at each row of X, batch shape (m,), in the user's units."""
        return self._decode_bars(X, lambda dist: dist)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Posterior predictive mean."""
        return self._decode_bars(X, lambda dist: dist.mean.double().cpu().numpy())

    def predict_quantiles(self, X: np.ndarray, quantiles: list[float] | np.ndarray) -> np.ndarray:
        """Predictive quantiles, shape (m, len(quantiles))."""
        levels = torch.as_tensor(np.asarray(quantiles, dtype=np.float64))

        def summary(dist: BarDistribution) -> np.ndarray:
            return dist.quantiles(levels.to(dist.logits.dtype)).double().cpu().numpy()

        return self._decode_bars(X, summary)
