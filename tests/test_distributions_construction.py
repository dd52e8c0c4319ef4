"""BarDistribution construction: equal-mass borders from samples, input checks, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from pfnkit.distributions import BarDistribution, borders_from_samples
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS
from tests.test_distributions import DTYPE


# ------------------------------------------------------------------ borders_from_samples
def test_borders_from_samples_are_equal_mass_quantiles() -> None:
    n, n_bars = 20000, 10
    y = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    borders = borders_from_samples(y.reshape(100, 200), n_bars)
    assert borders.shape == (n_bars + 1,) and borders.dtype == torch.float64
    assert (borders[1:] > borders[:-1]).all()
    assert float(borders[0]) == float(y.min()) and float(borders[-1]) == float(y.max())
    counts = np.histogram(y.numpy(), bins=borders.numpy())[0]
    np.testing.assert_allclose(counts / n, 1 / n_bars, atol=2 / n)
    # Against the population: Phi(b_k) estimates k / K with binomial standard error.
    levels = np.arange(1, n_bars) / n_bars
    se = np.sqrt(levels * (1 - levels) / n)
    assert (np.abs(stats.norm.cdf(borders.numpy()[1:-1]) - levels) < STANDARD_ERRORS * se).all()


def test_borders_from_samples_match_numpy_linear_quantiles() -> None:
    y = torch.rand(338, generator=torch.Generator().manual_seed(2), dtype=DTYPE) ** 3
    borders = borders_from_samples(y, 7)
    expected = np.quantile(y.numpy(), np.linspace(0, 1, 8), method="linear")
    np.testing.assert_allclose(borders.numpy(), expected, rtol=0, atol=FLOAT64_ATOL)


def test_borders_from_samples_errors() -> None:
    y = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    with pytest.raises(ValueError, match="at least 3"):
        borders_from_samples(y, 2)
    with pytest.raises(ValueError, match="need at least 200 samples"):
        borders_from_samples(y[:199], 20)
    repeated = torch.cat([torch.zeros(900, dtype=DTYPE), y[:100]])
    with pytest.raises(ValueError, match="repeated values"):
        borders_from_samples(repeated, 10)


# ------------------------------------------------------------------------- construction
def test_constructor_and_quantiles_reject_bad_inputs() -> None:
    logits = torch.zeros(5, dtype=DTYPE)
    good = torch.linspace(-1, 1, 6, dtype=DTYPE)
    with pytest.raises(ValueError, match="strictly increasing"):
        BarDistribution(good.flip(0), logits)
    with pytest.raises(ValueError, match="strictly increasing"):
        BarDistribution(torch.tensor([0.0, 1, 1, 2, 3, 4], dtype=DTYPE), logits)
    with pytest.raises(ValueError, match=r"borders must be \(K\+1,\)"):
        BarDistribution(good[:-1], logits)
    with pytest.raises(ValueError, match=r"borders must be \(K\+1,\)"):
        BarDistribution(good[None], logits)
    with pytest.raises(ValueError, match="at least 3 buckets"):
        BarDistribution(good[:3], logits[:2])
    dist = BarDistribution(good, logits)
    with pytest.raises(ValueError, match="one-dimensional"):
        dist.quantiles(torch.full((2, 2), 0.5, dtype=DTYPE))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        dist.quantiles([0.5, 1.5])


def test_icdf_is_infinite_not_nan_when_a_tail_mass_underflows() -> None:
    logits = torch.zeros(2, 6, dtype=torch.float64)
    logits[:, 0] = logits[:, -1] = -1e4  # exp underflows: both tails carry exactly zero mass
    dist = BarDistribution(torch.linspace(-3, 3, 7, dtype=torch.float64), logits)
    q = dist.icdf(torch.tensor([0.0, 1.0], dtype=torch.float64).reshape(2, 1))
    assert not q.isnan().any()
    assert (q[0] <= -2.0).all() and (q[1] >= 2.0).all()  # the ends of the support


def test_half_precision_logits_and_large_offsets_keep_distinct_bars() -> None:
    borders = torch.linspace(-4, 4, 1001)
    dist = BarDistribution(borders, torch.zeros(3, 1000, dtype=torch.bfloat16))
    assert dist.logits.dtype == torch.float32 and dist.borders.dtype == torch.float32
    # at 1e9 float32 spacing is 64, far wider than the bars; float64 spacing is 1.2e-7
    base = BarDistribution(borders, torch.zeros(3, 1000))
    shifted = base.affine(1e9, 1.0)
    assert shifted.borders.dtype == torch.float64
    y = torch.tensor(1e9 + 0.5, dtype=torch.float64)
    lp = base.log_prob(torch.tensor(0.5))
    torch.testing.assert_close(shifted.log_prob(y), lp.double(), atol=1e-4, rtol=0)
    torch.testing.assert_close(shifted.mean - 1e9, base.mean.double(), atol=1e-4, rtol=0)
