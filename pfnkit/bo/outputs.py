"""Increasing maps of observed values into a surrogate's standardized target units.

A PFN trained on standardized targets takes differences below its smallest noise level
for noise. Objectives with a heavy upper tail (Branin's values span 0.4 to 300) crowd
their low values into such a sliver once standardized, and BO stops resolving them: on
Branin it settles on the first basin it finds. Two warps, refitted to the values seen so
far at every step, spread that sliver out:

* ``"rank"``: the Gaussian copula of Salinas et al., "A Quantile-based
  Approach for Hyperparameter Transfer Learning" (arXiv 1909.13595): the i-th smallest of
  m distinct values goes to ``Φ⁻¹((i - 1/2) / m)``, standardized, and values in between
  (or beyond) are interpolated (or extrapolated) linearly;
* ``"power"`` (the default of `minimize`, `AskTellOptimizer` and `PFNSurrogate`):
  standardize, then a Yeo-Johnson transform fitted by maximum likelihood
  (Yeo and Johnson, Biometrika 2000), as HEBO does (Cowen-Rivers et al., arXiv
  2012.03826).

Every map is increasing, so the improvement event ``Y < τ`` and the predictive quantiles
carry over to the user's units unchanged; expected improvement is taken in the warped
units.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.preprocessing import PowerTransformer

__all__ = ["Y_TRANSFORMS", "OutputTransform"]

Y_TRANSFORMS = ("rank", "power", "standardize")
_MIN_SCALE = 1e-12
_MIN_POINTS_FOR_POWER = 3  # a power transform fitted to two points is arbitrary


class OutputTransform:
    """An increasing map of values into standardized (and warped) units.

    Args:
        kind: "rank" (Gaussian copula), "power" (standardize, Yeo-Johnson, standardize)
            or "standardize" (subtract the mean, divide by the standard deviation). With
            too few distinct values for the warp (2 for "rank", 3 for "power") it
            standardizes.
    """

    def __init__(self, kind: str = "rank") -> None:
        if kind not in Y_TRANSFORMS:
            raise ValueError(f"unknown y_transform {kind!r}; known: {Y_TRANSFORMS}")
        self.kind = kind
        self.loc = 0.0
        self.scale = 1.0
        self._knots: tuple[np.ndarray, np.ndarray] | None = None
        self._power: PowerTransformer | None = None

    def fit(self, y: np.ndarray) -> OutputTransform:
        """Fit the map to the finite values `y` (n,); their order does not matter."""
        y = np.sort(np.asarray(y, dtype=np.float64))
        self.loc = float(y.mean())
        scale = float(y.std())
        self.scale = scale if scale > _MIN_SCALE * (1 + abs(self.loc)) else 1.0
        self._knots, self._power = None, None
        values = np.unique(y)
        if self.kind == "rank" and values.size >= 2:
            levels = torch.tensor((np.arange(values.size) + 0.5) / values.size)
            scores = torch.special.ndtri(levels).numpy()
            self._knots = (values, (scores - scores.mean()) / scores.std())
        elif self.kind == "power" and values.size >= _MIN_POINTS_FOR_POWER:
            with warnings.catch_warnings():  # overflow warnings for extreme lambdas
                warnings.simplefilter("ignore", RuntimeWarning)
                power = PowerTransformer(method="yeo-johnson", standardize=True)
                z = power.fit_transform(self._standardize(y)[:, None])
            if np.isfinite(z).all():
                self._power = power
        return self

    def _standardize(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) - self.loc) / self.scale

    def transform(self, y: np.ndarray | float) -> np.ndarray:
        """Values in the surrogate's units, same shape as `y`."""
        y = np.asarray(y, dtype=np.float64)
        if self._knots is not None:
            return _interp_extrapolate(y, *self._knots)
        z = self._standardize(y)
        if self._power is None:
            return z
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self._power.transform(z.reshape(-1, 1)).reshape(z.shape)

    def inverse(self, z: np.ndarray | float) -> np.ndarray:
        """Values in the user's units for values `z` in the surrogate's units."""
        z = np.asarray(z, dtype=np.float64)
        if self._knots is not None:
            values, scores = self._knots
            return _interp_extrapolate(z, scores, values)
        if self._power is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                z = self._power.inverse_transform(z.reshape(-1, 1)).reshape(z.shape)
        return self.loc + self.scale * z


def _interp_extrapolate(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear through the increasing knots (xp, fp), continued linearly beyond."""
    out = np.interp(x, xp, fp)
    low_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
    high_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    out = np.where(x < xp[0], fp[0] + (x - xp[0]) * low_slope, out)
    return np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * high_slope, out)
