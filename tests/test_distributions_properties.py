"""Property-based checks of BarDistribution over random borders and logits (hypothesis)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pfnkit.distributions import BarDistribution

FLOAT64_ATOL = 1e-9  # cdf(icdf(q)) = q for q away from 0 and 1


@st.composite
def bar_distributions(draw: st.DrawFn) -> BarDistribution:
    n_bars = draw(st.integers(3, 12))
    gaps = draw(st.lists(st.floats(0.01, 5.0), min_size=n_bars, max_size=n_bars))
    start = draw(st.floats(-50, 50))
    borders = start + torch.cumsum(torch.tensor([0.0, *gaps], dtype=torch.float64), 0)
    logits = draw(st.lists(st.floats(-20, 20), min_size=n_bars, max_size=n_bars))
    return BarDistribution(borders, torch.tensor(logits, dtype=torch.float64))


@settings(max_examples=150, deadline=None)
@given(dist=bar_distributions(), q=st.floats(1e-6, 1 - 1e-6))
def test_cdf_inverts_icdf(dist: BarDistribution, q: float) -> None:
    y = dist.icdf(torch.tensor(q, dtype=torch.float64))
    assert torch.isfinite(y)
    assert abs(float(dist.cdf(y)) - q) < FLOAT64_ATOL
    assert torch.isfinite(dist.log_prob(y))


@settings(max_examples=150, deadline=None)
@given(dist=bar_distributions(), ys=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=20))
def test_cdf_is_monotone_and_bounded(dist: BarDistribution, ys: list[float]) -> None:
    y = torch.tensor(sorted(ys), dtype=torch.float64)
    cdf = dist.cdf(y)
    assert ((cdf >= 0) & (cdf <= 1)).all()
    assert (cdf.diff() >= 0).all()
    assert not dist.log_prob(y).isnan().any()
