"""Surrogates of the freeze-thaw optimiser: the protocol, the exact GP, and log-EI over them.

A surrogate conditions on partial learning curves and predicts any configuration at any
epoch. Rows are (configuration features..., epoch fraction t / T), the input layout of
the freeze-thaw prior (`priors.learning_curves`) and of a PFN trained on it, so the PFN
surrogate (`pfnkit.bo.freeze_thaw_pfn.PFNFreezeThawSurrogate`) drops in beside the exact GP.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.distributions import Distribution, Normal

from pfnkit.bo.acquisitions import log_expected_improvement, log_h
from pfnkit.distributions import BarDistribution
from pfnkit.reference.freeze_thaw import FreezeThawHyperparameters, freeze_thaw_predictive

__all__ = [
    "DEFAULT_FREEZE_THAW_HYPERPARAMETERS",
    "ExactFreezeThawSurrogate",
    "FreezeThawSurrogate",
    "log_ei",
]

# The defaults of `priors.learning_curves.FreezeThawPriorConfig` (fitted to real
# validation-error curves, benchmarks/lc_fit.py), written out here because pfnkit never
# imports priors; tests/bo/test_freeze_thaw_optimizer.py checks that the two agree.
DEFAULT_FREEZE_THAW_HYPERPARAMETERS = FreezeThawHyperparameters(
    mean=0.15, lengthscale=0.7, outputscale=0.015, curve_scale=0.25, alpha=2.5, beta=0.4,
    noise=1e-3, kernel="matern52", amplitude_mean=0.3, amplitude_var=0.08,
)  # fmt: skip


@runtime_checkable
class FreezeThawSurrogate(Protocol):
    """Conditions on observed (configuration, epoch fraction) rows; predicts others."""

    def fit(self, x_NE: Tensor, y_N: Tensor) -> None:
        """Condition on N rows (N, D + 1), the epoch fraction last, and their values (N,)."""
        ...

    def predict(self, x_ME: Tensor) -> Distribution:
        """The predictive of the values at M rows: a Distribution with batch_shape (M,)."""
        ...


class ExactFreezeThawSurrogate:
    """The exact freeze-thaw GP (`pfnkit.reference.freeze_thaw`) at fixed hyperparameters."""

    def __init__(self, hyper: FreezeThawHyperparameters = DEFAULT_FREEZE_THAW_HYPERPARAMETERS):
        self.hyper = hyper
        self._x_NE: Tensor | None = None
        self._y_N: Tensor | None = None

    def fit(self, x_NE: Tensor, y_N: Tensor) -> None:
        """Keep the context (the block-form solve is cheap enough to redo per prediction)."""
        self._x_NE, self._y_N = x_NE.double(), y_N.double()

    def predict(self, x_ME: Tensor) -> Normal:
        """Gaussian marginals of the noisy values at M rows, float64."""
        if self._x_NE is None or self._y_N is None:
            raise RuntimeError("call fit before predict")
        pred = freeze_thaw_predictive(self._x_NE, self._y_N, x_ME.double(), self.hyper)
        return pred.to_distribution()


def log_ei(dist: Distribution, incumbent: float) -> Tensor:
    """log E[(incumbent − Y)^+] for minimisation, per point, finite even where EI underflows.

    Gaussian: log σ + log h((τ − μ) / σ) (Ament et al., arXiv 2310.20708); a PFN's
    `BarDistribution`: its closed form in `pfnkit.bo.acquisitions`.
    """
    if isinstance(dist, BarDistribution):
        return log_expected_improvement(dist, incumbent)
    if isinstance(dist, Normal):
        sigma = dist.scale.clamp_min(math.sqrt(torch.finfo(dist.scale.dtype).tiny))
        return sigma.log() + log_h((incumbent - dist.loc) / sigma)
    raise TypeError(f"no expected improvement for a {type(dist).__name__} predictive")
