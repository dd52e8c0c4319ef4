"""Metrics against closed forms: NLL of a Normal, interval coverage of its own samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pfnkit.metrics import (
    fraction_or_none,
    interval_coverage,
    mean_or_none,
    nll,
    stderr_or_none,
)
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS


def test_nll_of_a_standard_normal_at_zero() -> None:
    dist = torch.distributions.Normal(torch.zeros(3, dtype=torch.float64), 1.0)
    assert float(nll(dist, torch.zeros(3, dtype=torch.float64))) == pytest.approx(
        0.5 * math.log(2 * math.pi), abs=FLOAT64_ATOL
    )


def test_interval_coverage_of_samples_from_the_distribution_itself() -> None:
    n = 20000
    dist = torch.distributions.Normal(torch.full((n,), 2.0, dtype=torch.float64), 3.0)
    z = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = 2.0 + 3.0 * z
    coverage = interval_coverage(dist, y, (0.5, 0.9))
    for level, value in coverage.items():
        se = math.sqrt(level * (1 - level) / n)
        assert abs(value - level) < STANDARD_ERRORS * se
    shifted = interval_coverage(dist, y + 20.0, (0.9,))  # 6.7 standard deviations off
    assert shifted[0.9] < 0.01
    with pytest.raises(ValueError, match="interval level"):
        interval_coverage(dist, y, (1.0,))


def test_mean_and_standard_error_against_numpy() -> None:
    values = [0.3, -1.2, 2.5, 0.7, 0.1]
    assert mean_or_none(values) == pytest.approx(np.mean(values), abs=FLOAT64_ATOL)
    sem = np.std(values, ddof=1) / np.sqrt(len(values))
    assert stderr_or_none(values) == pytest.approx(sem, abs=FLOAT64_ATOL)
    assert (mean_or_none([]), stderr_or_none([]), stderr_or_none([1.0])) == (None, None, None)
    assert mean_or_none([1.0]) == 1.0


def test_fraction_counts_true_flags_and_is_none_without_flags() -> None:
    assert fraction_or_none([True, False, True]) == 2 / 3
    assert fraction_or_none([False]) == 0.0
    assert fraction_or_none([]) is None
