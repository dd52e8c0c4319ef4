"""Scores of predictive distributions against observed targets (NLL, interval coverage), and
the task-average helpers validation reports share."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = ["fraction_or_none", "interval_coverage", "mean_or_none", "nll", "stderr_or_none"]


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


def mean_or_none(values: Sequence[float]) -> float | None:
    """Mean of per-task figures; None when there are none (e.g. no trusted reference run).

    The one mean-over-tasks helper of pfnkit's reports, with `stderr_or_none` and
    `fraction_or_none`.
    """
    return statistics.fmean(values) if len(values) else None


def stderr_or_none(values: Sequence[float]) -> float | None:
    """Standard error of the mean (sample std / sqrt(n)); None for fewer than two values."""
    if len(values) < 2:
        return None
    return statistics.stdev(values) / math.sqrt(len(values))


def fraction_or_none(flags: Sequence[bool]) -> float | None:
    """Share of true flags (e.g. trusted reference runs); None when there are none."""
    return sum(map(bool, flags)) / len(flags) if len(flags) else None
