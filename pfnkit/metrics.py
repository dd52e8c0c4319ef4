"""Scores of predictive distributions against observed targets: NLL and interval coverage."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = ["interval_coverage", "nll"]


def nll(dist: Distribution, y: Tensor) -> Tensor:
    """Mean negative log predictive density per point."""
    return -dist.log_prob(y).mean()


def interval_coverage(dist: Distribution, y: Tensor, levels: Sequence[float]) -> dict[float, float]:
    """Fraction of targets inside each central predictive interval.

    Args:
        dist: predictive distribution with an `icdf` (batch shape matching y).
        y: observed targets.
        levels: central interval masses, e.g. (0.5, 0.9, 0.95).
    """
    out = {}
    for level in levels:
        if not 0 < level < 1:
            raise ValueError(f"interval level must lie in (0, 1), got {level}")
        alpha = (1 - level) / 2
        lo = dist.icdf(torch.full_like(y, alpha))
        hi = dist.icdf(torch.full_like(y, 1 - alpha))
        out[level] = float(((y >= lo) & (y <= hi)).to(torch.float64).mean())
    return out
