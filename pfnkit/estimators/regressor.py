"""scikit-learn regressor serving a pretrained PFN checkpoint: fit encodes, predict decodes.

On a real table, `PFNRegressor` is an inference-time ensemble (as TabPFN is): each member
reads its own view of the table (a column order and a numeric transform,
`pfnkit.estimators.ensemble`), with the same targets, standardized as the checkpoint's
card declares. Every member's predictive is a bar distribution on the model's borders in
the same (standardized) target units, so their average density, the mixture, is again a
bar distribution on those borders, whose bucket masses are the members' averaged masses;
the shared affine map back to the user's units (`BarDistribution.affine`) then applies
to the mixture as to each member. Mean, quantiles, density and samples of the ensemble
are therefore those of one distribution, the exact equal-weight mixture of the members.
(Members with different, nonlinear target transforms would need rebinning onto common
borders; keeping the target map shared keeps the mixture exact.)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from pfnkit.distributions import BarDistribution
from pfnkit.estimators._base import DTYPES, CheckpointEstimator, DataMapping, as_table

__all__ = ["DataMapping", "PFNRegressor", "mixture_of_members"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def mixture_of_members(dist: BarDistribution, temperature: float = 1.0) -> BarDistribution:
    """The equal-weight mixture over the leading (member) dimension of bar distributions.

    All members share the borders, so the mixture is the bar distribution whose bucket
    masses are the mean of the members' masses: batch shape (E, ...) becomes (...). Each
    member's logits are divided by `temperature` first (below 1 sharpens). Each member's
    softmax runs in the logits' precision and is summed into one float64 buffer, which is
    then normalised: the mixture's masses are float64.

    Raises:
        ValueError: a member's logits hold NaN or +inf (a softmax row of NaN).
    """
    # in place, unless autograd keeps the softmax outputs for the backward pass
    in_place = not (dist.logits.requires_grad and torch.is_grad_enabled())
    probs = None
    for member_logits in dist.logits:  # one member at a time: (...) buffers, not (E, ...)
        if temperature != 1.0:
            member_logits = member_logits / temperature
        member = torch.softmax(member_logits, dim=-1).to(torch.float64)
        if probs is None:
            probs = member
        else:
            probs = probs.add_(member) if in_place else probs + member
    # a row with NaN or +inf logits is NaN throughout, so its first bar tells
    if bool(probs[..., 0].isnan().any()):
        raise ValueError(
            "the model's logits hold NaN or inf; check the inputs and the checkpoint's weights"
        )
    total = probs.sum(-1, keepdim=True)  # the mean, normalised in float64
    probs = probs.div_(total) if in_place else probs / total
    return BarDistribution(dist.borders, probs=probs, validate_args=False)


class PFNRegressor(RegressorMixin, CheckpointEstimator):
    """Bayesian regression in one forward pass per ensemble member with a pretrained PFN.

    `fit` validates the table, preprocesses it (categorical codes, missing values as NaN:
    `pfnkit.estimators.tables`), standardizes the targets as the checkpoint's card
    declares, and encodes the context once per ensemble member; every prediction reuses
    the cached keys and values, runs query points in chunks, and returns the exact
    mixture of the members' predictive distributions (module docstring).

    Inputs the checkpoint was not trained for:

    * more features than it reads: every view sees a random subset of num_features of
      them (at least ceil(d / num_features) views, so every feature is seen), with a
      `UserWarning`; fewer features are zero-padded when the card says so;
    * missing values (NaN or None) in X: imputed with the context mean of the column,
      plus a missingness indicator where the model has spare inputs; a column with no
      value in the context is dropped with a `UserWarning`. NaN or inf in y, and inf
      in X, are a `ValueError`;
    * a context larger than trained: it is used whole, with a `UserWarning`.

    Args:
        checkpoint: short name or path of a regression checkpoint. The default, "gp-lin",
            is the general-purpose GP regressor (Matérn-5/2 plus a linear part, with
            hyperpriors, 1 to 10 standardized features); "gp" is the same without the
            linear part; "gp-rbf" is a fixed 1-feature RBF GP on [0, 1].
        device: torch device for the model.
        dtype: the network's precision: "float32" (default) or "float64", about twice as
            slow on a CPU (benchmarks/inference.py). Measured on real-scale tables, float32
            predictions differ from float64 ones by under 1e-5 predictive standard deviations,
            and by as little with how the queries are split into calls or chunks. The
            ensemble's mixture and every summary of it are computed in float64 either way.
        query_chunk_size: query points per forward pass in `predict*`. A chunk's
            activations grow linearly in it; lower it if `predict` runs out of memory.
        n_estimators: ensemble members (views of the table; fewer when the table has
            fewer distinct views, e.g. one feature and preprocessing="none"). Fit and
            predict cost and memory grow linearly in it; 1 reads the table as given.
        preprocessing: the numeric transforms the views cycle through: "auto" (all of
            "none", "quantile", "power", "robust" on a checkpoint that standardizes its
            features, "none" on one with fixed feature units), one of them, or a sequence.
        categorical_features: "auto" (columns that hold strings), column indices or a
            boolean mask; categorical columns get ordinal codes.
        random_state: seed (or `numpy.random.RandomState`) of the column orders.
        softmax_temperature: each member's bar logits are divided by it before the
            mixture; below 1 sharpens the predictive distribution. "auto": 0.7 on a
            checkpoint that standardizes its features (measured on real tables, whose
            predictives were too wide at 1.0: 90% intervals covered 95%), 1.0 on one with
            fixed units, whose prior is meant to match the data.

    Memory grows linearly in the context size and the number of queries: attention runs
    through SDPA's fused kernels, which never form an (N + M)² score matrix. An allocation
    failure raises a `MemoryError` that names the knob to turn.

    Attributes:
        checkpoint_: the loaded `Checkpoint` (model and card).
        mapping_: the fitted `DataMapping` of the targets (and, for reference, of the
            untransformed features).
        preprocessor_: the fitted `TablePreprocessor`.
        views_: the fitted `FeatureViews`, one per member.
        cache_: per-layer context keys and values, one context per member.
    """

    _head = "regression"
    _AUTO_TEMPERATURE = 0.7

    def __init__(
        self,
        checkpoint: str = "gp-lin",
        device: str = "cpu",
        dtype: str = "float32",
        query_chunk_size: int = 4096,
        n_estimators: int = 4,
        preprocessing: str | Sequence[str] = "auto",
        categorical_features: str | Sequence[int] | Sequence[bool] = "auto",
        random_state: int | np.random.RandomState | None = 0,
        softmax_temperature: float | str = "auto",
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = dtype
        self.query_chunk_size = query_chunk_size
        self.n_estimators = n_estimators
        self.preprocessing = preprocessing
        self.categorical_features = categorical_features
        self.random_state = random_state
        self.softmax_temperature = softmax_temperature

    # ------------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray) -> PFNRegressor:
        """Validate and preprocess (X, y), map it into the prior's domain, encode the members."""
        self._check_n_estimators()
        X, y = validate_data(
            self, as_table(X), y, y_numeric=True, dtype=None, ensure_all_finite=False
        )
        y = np.asarray(y, dtype=np.float64)
        self._load_checkpoint()
        x = self._fit_table(X)
        self._check_feature_count(x, allow_more=True)
        self.mapping_ = DataMapping.from_context(x, y, self.checkpoint_.data_mapping)
        self._warn_if_context_exceeds_training(x.shape[0])
        self._fit_views(x, int(self.n_estimators), check_random_state(self.random_state))
        y_model = self._clip_context_targets(self.mapping_.map_y(y))
        n_members = len(self._member_views())
        y_EN = torch.as_tensor(y_model, dtype=DTYPES[self.dtype], device=self.device)
        extra = f", a smaller n_estimators (now {n_members} context encodings)"
        self.cache_ = self._encode_context(x, y_EN.expand(n_members, -1), extra_advice=extra)
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

        check_is_fitted(self, "cache_")
        temperature = self._temperature()

        def in_user_units(dist: BarDistribution) -> _T:
            mixture = mixture_of_members(dist, temperature)
            return summary(mixture.affine(self.mapping_.y_loc, self.mapping_.y_scale))

        n_members = len(self._member_views())  # the mixture checks the members' masses
        return self._decode(X, in_user_units, n_contexts=n_members, validate_args=False)

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
            return dist.quantiles(levels).double().cpu().numpy()

        return self._decode_bars(X, summary)
